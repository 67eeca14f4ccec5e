"""The explicit first step of a training run: make sure the data set exists, then settle the plan.

A bundle's ``initialize`` list calls ``Preparation.run()``; config ids such as ``patch_size`` read ``plan``
afterwards. Building a ``Preparation`` does nothing: resolving a config id never generates data or writes a file.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.data.prepare import ensure_dataset
from pipeline.errors import PipelineError
from pipeline.planning.fingerprint import dataset_fingerprint
from pipeline.planning.io import log_plan, read_plan, write_plan
from pipeline.planning.machine import machine_profile
from pipeline.planning.plan import PLAN_VERSION, make_plan

logger = logging.getLogger("pipeline.planning")

__all__ = ["Preparation", "plan_dataset"]


def plan_dataset(
    dataset_dir: str | Path, device: str = "auto", spatial_dims: int = 3, num_samples: int = 2,
    max_cases: int | None = None, poolings: int = 3,
) -> dict[str, Any]:
    """Fingerprint ``dataset_dir`` (all training cases, or ``max_cases``), profile this machine, return the plan."""
    machine = machine_profile(device)  # first: a CUDA request without a GPU fails before the data is read
    fingerprint = dataset_fingerprint(dataset_dir, max_cases=max_cases)
    logger.info("fingerprint of %d training cases took %.1f s", fingerprint["n_analysed"], fingerprint["seconds"])
    return make_plan(fingerprint, machine, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)


class Preparation:
    """Data set and plan of a training run, settled by ``run()`` (the bundle's ``initialize`` step).

    Args:
        dataset_dir: the data set folder (MSD layout, or a folder of image/label pairs).
        default_data: ``{"dir": ..., "generator": ..., **generator arguments}``: when ``dataset_dir`` is this
            folder and holds no data set yet, it is generated (and the log says so).
        plan_file: followed when it exists and was made for this data set, device type, network depth and planner
            version; written there when it does not exist; planned again in memory (file left as it is, with a
            warning) when it was made for something else. A file without ``version`` (by hand) counts as current.
        device, spatial_dims, num_samples, poolings: what the planner needs to know of the run.
    """

    def __init__(self, dataset_dir: str | Path, default_data: Mapping[str, Any], plan_file: str | Path,
                 device: str = "auto", spatial_dims: int = 3, num_samples: int = 2, poolings: int = 3) -> None:
        self.dataset_dir, self.default_data, self.plan_file = str(dataset_dir), dict(default_data), Path(plan_file)
        self.device, self.spatial_dims, self.num_samples, self.poolings = device, spatial_dims, num_samples, poolings
        self._plan: dict[str, Any] | None = None

    @property
    def plan(self) -> dict[str, Any]:
        """The plan settled by ``run()``."""
        if self._plan is None:
            raise PipelineError("the plan is read before the initialize step ran Preparation.run() (config order)")
        return self._plan

    def run(self) -> dict[str, Any]:
        """Generate the default data set if it is missing, then read or make the plan; returns the plan."""
        args = {k: v for k, v in self.default_data.items() if k not in ("dir", "generator")}
        ensure_dataset(self.dataset_dir, self.default_data["dir"], self.default_data["generator"], **args)
        self._plan = self._settle()
        log_plan(self._plan)
        return self._plan

    def _new_plan(self) -> dict[str, Any]:
        return plan_dataset(self.dataset_dir, self.device, spatial_dims=self.spatial_dims,
                            num_samples=self.num_samples, poolings=self.poolings)

    def _settle(self) -> dict[str, Any]:
        path = self.plan_file
        if not path.exists():
            logger.info("planning %s (no plan in %s yet)", self.dataset_dir, path)
            plan = self._new_plan()
            write_plan(plan, path)
            logger.info("plan written to %s (edit it to change a value; delete it to plan again)", path)
            return plan
        plan = read_plan(path)
        here, now = str(Path(self.dataset_dir).absolute()), machine_profile(self.device)["device"]
        differs = [
            f"{what} {was} (this run: {this})"
            for what, was, this in (
                ("data set", plan.get("dataset_dir"), here),
                ("device", plan.get("device"), now),
                ("poolings", len(plan["strides"]), self.poolings),
                ("planner version", plan.get("version"), PLAN_VERSION),
            )
            if was is not None and was != this
        ]
        if differs:
            logger.warning("%s was planned for %s: planned again for this run; the file is left as it is (delete it "
                           "to store the new plan)", path, ", ".join(differs))
            return self._new_plan()
        logger.info("following the plan in %s (delete it to plan again)", path)
        return plan
