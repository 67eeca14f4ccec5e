"""A second stage run by the same bundle command: the coarse-to-fine cascade trains (and infers with) a second network
after the first, from the same config with a few ids changed.

``train.json`` ends its ``run`` list with ``run_stage('fine', {...})``: the config this process is running (the
files as read plus every command-line override) is parsed again with the given values and then the ids of its
``fine`` section replaced, and that copy's ``initialize``, ``run`` and ``finalize`` run here, as
``monai.bundle run`` would run them. So ``--dataset_dir``, ``--seed`` or ``--network_def#base_width`` reach both
stages, and ``--fine#...`` changes the second stage only. MONAI runs one config per workflow; what it lacks is the
run of a derived config from inside one, so this module reads the parser that is evaluating the calling expression.
"""
from __future__ import annotations

import copy
import inspect
import logging
from typing import Any, Mapping

from monai.bundle import ConfigParser

from pipeline.config import flag
from pipeline.errors import PipelineError

__all__ = ["check_stage", "running_parser", "run_stage", "stage_config"]

logger = logging.getLogger(__name__)
SECTIONS = ("initialize", "run", "finalize")


def running_parser() -> ConfigParser:
    """The ConfigParser whose expression called this function (MONAI evaluates a config's ``$`` expressions inside
    ``ConfigParser.get_parsed_content``, so that parser is on the call stack)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, ConfigParser):
                return candidate
            frame = frame.f_back
    finally:
        del frame
    raise PipelineError("run_stage() is called from a bundle config's expression (its run list), not directly")


def stage_config(config: Mapping[str, Any], section: str, values: Mapping[str, Any]) -> ConfigParser:
    """A parser over a copy of the raw ``config`` with ``values`` (resolved by the calling stage) and then the ids of
    ``config[section]`` (id -> value, resolved in the new stage, so ``--fine#epochs 5`` wins over a value) replaced.
    ``section`` itself is dropped, so the copy cannot start a stage of its own."""
    raw = copy.deepcopy(dict(config))
    overrides = _section(raw, section)
    del raw[section]
    parser = ConfigParser(raw)
    parser.update(dict(values))
    parser.update({k: v for k, v in overrides.items() if not str(k).startswith("_")})
    return parser


def _section(config: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    overrides = config.get(section)
    if not isinstance(overrides, Mapping):
        raise PipelineError(f"this config has no '{section}' section (the ids its second stage changes): its data "
                            "defines no cascade (configs/data/pancreas_ct.json does); train without --cascade true")
    return overrides


def check_stage(enabled: bool | str, section: str) -> None:
    """With ``enabled`` (``--cascade true``), refuse in the ``initialize`` step, before the first stage trains, a
    config that has no ``section`` for its second stage."""
    if flag(enabled, "cascade"):
        _section(running_parser().get(), section)


def run_stage(section: str, values: Mapping[str, Any]) -> None:
    """Run the calling config again as the stage ``section`` describes (see ``stage_config``): its ``initialize``,
    ``run`` and ``finalize`` expression lists in order, ``finalize`` also when ``run`` fails (it releases folder
    locks)."""
    parser = stage_config(running_parser().get(), section, values)
    logger.info("stage '%s': %s", section, ", ".join(f"{k}={v}" for k, v in values.items()))
    parser.parse(reset=True)
    try:
        for name in SECTIONS[:2]:
            _run_list(parser, name)
    finally:
        _run_list(parser, SECTIONS[2])
    logger.info("stage '%s' finished", section)


def _run_list(parser: ConfigParser, name: str) -> None:
    """Evaluate the expression list ``name`` item by item, forgetting each result (as ConfigWorkflow does)."""
    if name not in parser:
        return
    items = parser[name] if isinstance(parser[name], list) else [parser[name]]
    for i in range(len(items)):
        sub_id = f"{name}#{i}" if isinstance(parser[name], list) else name
        parser.get_parsed_content(sub_id)
        parser.ref_resolver.remove_resolved_content(sub_id)
