"""Values of a bundle config as the command line gives them."""
from __future__ import annotations

from monai.utils import str2bool

from pipeline.errors import PipelineError


def flag(value: bool | str | int | None, key: str) -> bool:
    """A bundle switch given as ``true``/``false`` on the command line (a string there) or as a JSON bool: MONAI's
    ``str2bool`` (yes/no, true/false, t/f, y/n, 1/0), with None as false and a one-line error naming ``--key``."""
    if value is None:
        return False
    try:
        return str2bool(value if isinstance(value, bool) else str(value).strip())
    except ValueError:
        raise PipelineError(f"--{key} {value!r} is not a switch: use true or false") from None


__all__ = ["flag"]
