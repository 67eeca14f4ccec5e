"""A bundle run in this process, as ``python -m monai.bundle run`` does it, with overrides that reach into fragments.

``monai.bundle run --key value`` sets top-level ids before the ``%`` macros of the fragments are expanded, so an id
inside a fragment (``data#augmentation#3#prob``) cannot be changed that way. Here the macros are expanded first and
the overrides applied after, so any config id can be changed. Used by the study and by ``benchmarks/recipes.py``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

SECTIONS = ("initialize", "run", "finalize")


def bundle_parser(files: Sequence[str | Path], overrides: Mapping[str, Any]) -> ConfigParser:
    """A ConfigParser of ``files`` (later files win) with macros expanded, then ``overrides`` (config id -> value)."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.resolve_macro_and_relative_ids()
    parser.update(dict(overrides))
    return parser


def run_sections(parser: ConfigParser, sections: Sequence[str] = SECTIONS) -> None:
    """Evaluate the ``initialize``, ``run`` and ``finalize`` lists of a bundle config, as ``monai.bundle run``."""
    for section in sections:
        if section in parser:
            parser.get_parsed_content(section)
