"""Seeds and ``--deterministic``: the same seed gives the same run, also when it was killed and resumed.

MONAI's ``set_determinism`` seeds torch, numpy and Python once per process and can switch torch to deterministic
algorithms; ignite and MONAI lack a per-epoch reseed. ``EpochSeeder`` adds it: with ``--deterministic true`` every
training epoch starts its random streams (loader order, worker seeds, augmentations, global generators) from
(seed, epoch, rank), so epoch e draws the same numbers whether the run got there in one go or was resumed.
"""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import set_determinism

from pipeline.config import flag
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

def seed_run(seed: int, deterministic: bool | str = False) -> None:
    """Seed torch, numpy and Python (MONAI's set_determinism, which also fixes cuDNN's algorithm choice); with
    ``deterministic`` also ask torch for deterministic algorithms, warning where an op has none (on GPU)."""
    on = flag(deterministic, "deterministic")
    if on:
        # cuBLAS needs a fixed workspace for reproducible matrix products; it is read when cuBLAS starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_determinism(seed=int(seed))
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
        logger.info("deterministic: seed %d, torch deterministic algorithms, random streams reseeded every epoch",
                    int(seed))


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 31-bit seed for one epoch of one rank, independent streams for different (seed, epoch, rank)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0] & 0x7FFFFFFF)


class EpochSeeder:
    """Reseeds every random stream of a training epoch at its start when ``enabled`` (``--deterministic``).

    The train loader's generator (shuffling order and the worker seeds MONAI's worker_init_fn derives), the
    loader dataset's random transforms (used in the main process when ``num_workers`` is 0) and the global torch,
    numpy and Python generators; then the epoch's loader iterator is created. The loader must not keep
    persistent workers, whose transforms it cannot reach.
    """

    def __init__(self, seed: int, enabled: bool | str = False) -> None:
        self.seed = int(seed)
        self.enabled = flag(enabled, "deterministic")

    def attach(self, engine: Engine) -> None:
        """Reseed at every EPOCH_STARTED (before ignite creates the epoch's loader iterator)."""
        if self.enabled:
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        from pipeline.engines.distributed import rank

        s = epoch_seed(self.seed, engine.state.epoch, rank())
        loader = getattr(engine, "data_loader", None)
        if loader is not None:
            if getattr(loader, "persistent_workers", False):
                raise PipelineError("--deterministic needs a loader without persistent workers")
            if getattr(loader, "generator", None) is not None:
                loader.generator.manual_seed(s)
            dataset = getattr(loader, "dataset", None)
            set_rnd(getattr(dataset, "transform", dataset), s)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
        if loader is not None:
            # a fresh iterator now: the previous epoch's one would draw from the reseeded generator when ignite
            # finds it exhausted (RandomSampler's remainder permutation), which a resumed run never does
            engine.set_data(loader)


__all__ = ["EpochSeeder", "epoch_seed", "seed_run"]
