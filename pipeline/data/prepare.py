"""Resolve a bundle's ``dataset_dir``: use it when it exists, generate the built-in default set when it is missing."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.data.cases import IMAGE_EXTENSIONS, image_files
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

GENERATORS = ("shapes2d", "pancreas_phantom")


def generate(kind: str, out_dir: str | Path, **kwargs: Any) -> Path:
    """Write a generated data set of ``kind`` (shapes2d or pancreas_phantom) to ``out_dir``."""
    if kind == "shapes2d":
        from pipeline.data.shapes2d import make_shapes

        return Path(make_shapes(out_dir, **kwargs))
    if kind == "pancreas_phantom":
        from pipeline.data.phantom import make_pancreas_dataset

        return Path(make_pancreas_dataset(out_dir, **kwargs))
    raise PipelineError(f"unknown data generator {kind!r}: choose one of {', '.join(GENERATORS)}")


def ensure_dataset(dataset_dir: str | Path, default_dir: str | Path, generator: str, **kwargs: Any) -> str:
    """Return ``dataset_dir``; if it is the default folder and holds no data set yet, generate it first.

    A missing ``dataset_dir`` that is not the default is a one-line PipelineError (nothing is created).
    """
    path, default = Path(dataset_dir), Path(default_dir)
    is_default = path.resolve() == default.resolve()
    if path.is_dir() and (path / "dataset.json").is_file():
        return str(path)
    if not is_default:
        if not path.exists():
            raise PipelineError(
                f"dataset_dir {str(path)!r} does not exist (only the default {str(default)!r} is generated)"
            )
        return str(path)  # a plain folder of image/label pairs: the data list checks it
    logger.info("generating the default %s data set in %s (%s)", generator, path, kwargs)
    # the default folder without dataset.json is an interrupted generation: the writer replaces only its own files
    generate(generator, path, overwrite=path.exists(), **kwargs)
    return str(path)


def image_list(input_dir: str | Path) -> list[dict[str, str]]:
    """Images to run inference on: every image file in ``input_dir`` (sorted), as ``[{"image": path}]``."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise PipelineError(f"input_dir {str(folder)!r} is not a folder")
    files = [p for p in image_files(folder).values() if p.is_file()]
    if not files:
        raise PipelineError(f"input_dir {str(folder)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return [{"image": str(p.resolve())} for p in files]
