"""torch.distributed for the bundles: join the process group torchrun describes, and the rank rules of a run.

``bundles/<name>/multi_gpu_train.json`` calls ``init_distributed`` in its ``initialize`` list; the shared engine
wiring (the bundles' train.json) calls the other helpers on every run, and each is a no-op in a single process
(no process group): the samplers are None, every handler is kept, every rank is the main one. MONAI supplies
``DistributedSampler`` (uneven shards for validation) and metric buffers that all-gather themselves; what it
lacks, and is here: picking nccl or gloo and the device from LOCAL_RANK with one-line errors, rank-0-first
generation of the data set and the plan, the handler filter for ranks > 0, and gathering our per-case metric rows.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine
from monai.data import DistributedSampler

from pipeline.engines.placement import place
from pipeline.errors import PipelineError
from pipeline.handlers.case_metrics import CaseMetricsHandler

logger = logging.getLogger(__name__)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """Whether this process is one rank of an initialised torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on global rank 0 and in a single process: the one process that logs and writes files."""
    return rank() == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PipelineError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def distributed_device() -> str:
    """``cuda:<LOCAL_RANK>`` when this machine has GPUs, else ``cpu``; one line when LOCAL_RANK has no GPU.

    More processes per node than GPUs would put two ranks on one GPU (nccl refuses, or memory runs out later).
    """
    if not torch.cuda.is_available():
        return "cpu"
    local_rank, gpus = _env_int("LOCAL_RANK"), torch.cuda.device_count()
    if local_rank >= gpus:
        procs = os.environ.get("LOCAL_WORLD_SIZE", str(local_rank + 1))
        raise PipelineError(
            f"torchrun started {procs} processes on this node but it has {gpus} GPU(s) (LOCAL_RANK {local_rank} "
            f"has none): use --nproc_per_node={gpus} or fewer"
        )
    return f"cuda:{local_rank}"


def init_distributed(timeout_min: float = 30.0) -> str:
    """Join the process group torchrun set up in the environment: nccl on GPUs, gloo on CPUs; returns the device.

    Ranks > 0 log warnings only (unless PIPELINE_LOG_ALL_RANKS is set), so the log appears once.
    """
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise PipelineError(
            f"multi_gpu_train.json runs under torchrun, but {', '.join(missing)} is not set: start it with "
            "torchrun --standalone --nproc_per_node=N -m monai.bundle run --config_file \"[...]\""
        )
    device = distributed_device()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not is_distributed():
        from datetime import timedelta

        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_min))
    if rank() > 0 and not os.environ.get("PIPELINE_LOG_ALL_RANKS"):
        logging.disable(logging.INFO)
    logger.info(
        "distributed: %d processes (%s), rank %d on %s, %d per node", world_size(), backend, rank(), device,
        _env_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in os.environ else 1,
    )
    return device


def finalize_distributed() -> None:
    """Leave the process group (the ``finalize`` step of multi_gpu_train.json); a no-op in a single process."""
    if is_distributed():
        dist.destroy_process_group()


def wait_for_rank_zero() -> None:
    """Ranks > 0 wait here until rank 0 reaches ``release_ranks``: rank 0 generates the data set and the plan
    between the two calls, the others then find them written. A no-op in a single process."""
    if is_distributed() and rank() > 0:
        dist.barrier()


def release_ranks() -> None:
    """Rank 0's half of ``wait_for_rank_zero``: let the waiting ranks go on."""
    if is_distributed() and rank() == 0:
        dist.barrier()


def per_process_workers(num_workers: int) -> int:
    """The planned DataLoader workers shared among the training processes of this node (at least 0)."""
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if is_distributed() else 1
    return max(0, int(num_workers) // max(1, procs))


def distributed_sampler(dataset: Sequence, shuffle: bool, seed: int = 0, even_divisible: bool = True,
                        what: str = "training") -> DistributedSampler | None:
    """MONAI's DistributedSampler over ``dataset`` when distributed, else None (the loader then shuffles itself).

    ``even_divisible=False`` (validation) gives every case to exactly one rank, so metrics gathered over the
    ranks equal a single-process evaluation; each rank needs at least one case, or the metric gather would hang.
    """
    if not is_distributed():
        return None
    if not even_divisible and len(dataset) < world_size():
        raise PipelineError(
            f"the {what} split has {len(dataset)} case(s) for {world_size()} processes: every process needs at "
            "least one; use fewer processes or a larger split (--val_fraction)"
        )
    return DistributedSampler(dataset, even_divisible=even_divisible, shuffle=shuffle, seed=int(seed))


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel (for validation: no buffer broadcasts, uneven shards are fine)."""
    return network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network


def wrap_ddp(network: torch.nn.Module, device: str | torch.device, memory_format: str = "auto") -> torch.nn.Module:
    """``network`` placed on ``device`` (``place``) inside DistributedDataParallel (gradients averaged over the
    ranks)."""
    device = torch.device(device)
    network = place(network, device, memory_format)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids, output_device=ids[0] if ids else None)


def _writer_types() -> tuple[type, ...]:
    from ignite.handlers import BasicTimeProfiler
    from ignite.handlers.tqdm_logger import ProgressBar
    from monai.handlers import CheckpointSaver, MLFlowHandler, StatsHandler, TensorBoardHandler

    from pipeline.handlers.panels import SegmentationPanelHandler

    return (StatsHandler, TensorBoardHandler, ProgressBar, BasicTimeProfiler, SegmentationPanelHandler, CheckpointSaver,
            MLFlowHandler)


def rank_zero_handlers(handlers: Iterable[Any] | None) -> list[Any]:
    """All ``handlers`` on rank 0 (and in a single process); on other ranks only those that take part in training
    (LR schedule, validation, metric gathering, loss guard, seeding): the ones that log, draw or write are left out."""
    handlers = [h for h in (handlers or []) if h is not None]
    if is_main_process():
        return handlers
    writers = _writer_types()
    return [h for h in handlers if not isinstance(h, writers)]


def gather_objects(items: list[Any]) -> list[list[Any]]:
    """``items`` of every rank, indexed by rank (``[items]`` in a single process)."""
    if not is_distributed():
        return [items]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, items)
    return out


class DistributedCaseMetricsHandler(CaseMetricsHandler):
    """CaseMetricsHandler whose per-case rows are gathered from every rank before the means are taken.

    With MONAI's DistributedSampler (``even_divisible=False``, no shuffling) rank ``r`` scores cases
    ``r, r + W, r + 2W, ...``; the rows are put back in data-list order, so the means and tables equal a
    single-process run's. In a single process it is CaseMetricsHandler.
    """

    def complete(self, engine: Engine) -> None:
        if is_distributed() and world_size() > 1:
            per_rank = gather_objects(self.rows)
            rows: list[dict] = []
            for i in range(max(len(r) for r in per_rank)):
                rows += [r[i] for r in per_rank if i < len(r)]
            self.rows = rows
        if is_main_process():
            super().complete(engine)
            return
        out, self.output_dir = self.output_dir, None  # the tables are rank 0's to write
        try:
            super().complete(engine)
        finally:
            self.output_dir = out


__all__ = [
    "DistributedCaseMetricsHandler",
    "distributed_device",
    "distributed_sampler",
    "finalize_distributed",
    "gather_objects",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "per_process_workers",
    "rank",
    "rank_zero_handlers",
    "release_ranks",
    "unwrap",
    "wait_for_rank_zero",
    "world_size",
    "wrap_ddp",
]
