"""Where training batches are prepared: in DataLoader worker processes, or on the training device itself.

``augment_on`` (a top-level key of the training bundles):

- ``workers``: the deterministic part of the preprocessing is cached in host memory (``CacheDataset``) and the
  random part (crops, elastic/affine deformation, intensity) runs in ``num_workers`` DataLoader processes.
- ``device``: MONAI's fast-training pattern. The cached volumes are moved to the training device once, as the last
  step of the cached part, and the random transforms run there, in a ``ThreadDataLoader`` thread beside the
  training loop (no worker processes, no host-to-device copy per batch). Random spatial transforms that take a
  ``device`` argument get the training device through the bundle's ``augment_device`` key.
- ``auto`` (default): ``device`` on CUDA, where a GPU step is short enough that CPU workers cannot keep up;
  ``workers`` on a CPU, where a thread beside the step takes cores from the convolutions (both measured:
  docs/decisions.md, docs/benchmarks.md).

Metadata: the random part runs with MONAI's metadata tracking off (``TrainingCompose(track_meta=False)``), as MONAI's
fast-training tutorial does: a training batch needs only the arrays, and the ``MetaTensor`` bookkeeping (affine and
history updates in every transform, collating the metadata dicts) made training and batch making measurably
slower (docs/decisions.md).
MONAI's switch (``set_track_meta``) is process-wide, not per thread, so it is off only while one sample's random
transforms run, under ``METADATA_LOCK``. In ``device`` mode those run in the loader thread beside the main thread,
where validation, inversion and saving need the metadata: the bundles' ``ValidationHandler`` (this module's,
MONAI's with the lock) holds the lock for the whole validation, so the loader thread finishes the sample in hand
and waits until validation ends. The training step itself reads no metadata.

``epoch_length`` ``auto``: one pass over the training cases on a CPU; on CUDA, at least ``GPU_EPOCH_LENGTH`` iterations,
so that an epoch (the unit of ``epochs``, ``val_interval`` and the learning-rate schedule) is long enough for the
short GPU steps to outweigh validation, in the manner of nnU-Net's fixed 250-iteration epoch.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch
from monai.data import DataLoader, ThreadDataLoader, get_track_meta, set_track_meta
from monai.handlers import ValidationHandler as _MonaiValidationHandler
from monai.transforms import Compose, EnsureTyped, RandomizableTrait, Transform

from pipeline.errors import PipelineError

__all__ = ["AUGMENT_ON", "GPU_EPOCH_LENGTH", "METADATA_LOCK", "TrainingCompose", "ValidationHandler", "augment_device",
           "augments_on_device", "on_device_transforms", "resolve_epoch_length", "batch_loader"]

logger = logging.getLogger(__name__)

AUGMENT_ON = ("auto", "device", "workers")
GPU_EPOCH_LENGTH = 40
#: held while MONAI's process-wide metadata tracking is off for a training sample, and by validation (module docstring)
METADATA_LOCK = threading.RLock()


def augments_on_device(augment_on: str, device: str | torch.device) -> bool:
    """Whether the random transforms run on the training device (module docstring)."""
    key = str(augment_on).strip().lower()
    if key not in AUGMENT_ON:
        raise PipelineError(f"augment_on {augment_on!r}: use one of {', '.join(AUGMENT_ON)}")
    if key == "auto":
        return torch.device(device).type == "cuda"
    return key == "device"


def augment_device(augment_on: str, device: str | torch.device) -> torch.device:
    """The device the random spatial transforms build their grids on: the training device, or the CPU."""
    return torch.device(device) if augments_on_device(augment_on, device) else torch.device("cpu")


def on_device_transforms(transforms: Sequence[Any], augment_on: str, device: str | torch.device,
                         keys: Sequence[str] = ("image", "label")) -> list[Any]:
    """``transforms`` with ``EnsureTyped(keys, device=device)`` before the first random one (at the end if none).

    ``CacheDataset`` caches the output of the transforms before the first random one, so the cached volumes then
    live on ``device``. Unchanged when augmenting in workers.
    """
    transforms = list(transforms)
    if not augments_on_device(augment_on, device):
        return transforms
    first_random = first_random_index(transforms)
    move = EnsureTyped(keys=list(keys), device=torch.device(device), track_meta=True)
    return transforms[:first_random] + [move] + transforms[first_random:]


def first_random_index(transforms: Sequence[Any]) -> int:
    """Where ``CacheDataset`` stops caching: the first random transform or non-``Transform`` (else the end)."""
    return next((i for i, t in enumerate(transforms)
                 if isinstance(t, RandomizableTrait) or not isinstance(t, Transform)), len(transforms))


class TrainingCompose(Compose):
    """MONAI's ``Compose`` whose random part can run without metadata tracking (module docstring).

    ``track_meta`` False: the transforms from the first random one on run under ``monai.data.set_track_meta(False)``
    and the previous setting is restored afterwards, so the samples come out as plain tensors. The part before
    (what ``CacheDataset`` caches, or runs per sample when a case is not cached) keeps its metadata; the random
    streams and the arrays are the same as with ``track_meta`` True. The switch is flipped under ``METADATA_LOCK``,
    so a thread that holds the lock (validation, through ``ValidationHandler``) sees it on throughout.
    """

    def __init__(self, transforms: Sequence[Any] | None = None, track_meta: bool = True, **kwargs: Any) -> None:
        super().__init__(transforms, **kwargs)
        self.track_meta = bool(track_meta)

    def __call__(self, input_: Any, start: int = 0, end: int | None = None, threading: bool = False,
                 lazy: bool | None = None) -> Any:
        if self.track_meta:
            return super().__call__(input_, start, end, threading, lazy)
        stop = len(self.transforms) if end is None else end
        first = first_random_index(self.transforms)
        if start < first:
            input_ = super().__call__(input_, start, min(first, stop), threading, lazy)
            start = first
        if start >= stop:
            return input_
        with METADATA_LOCK:
            previous = get_track_meta()
            set_track_meta(False)
            try:
                return super().__call__(input_, start, stop, threading, lazy)
            finally:
                set_track_meta(previous)


class ValidationHandler(_MonaiValidationHandler):
    """MONAI's ``ValidationHandler`` that runs the validator while holding ``METADATA_LOCK``.

    MONAI has no per-thread metadata switch; this keeps a loader thread (``augment_on: device``) from turning the
    process-wide one off while validation runs (module docstring). The lock is released when validation ends or
    raises.
    """

    def __call__(self, engine: Any) -> None:
        with METADATA_LOCK:
            super().__call__(engine)


def ignore_ctrl_c_in_worker(worker_id: int) -> None:
    """A DataLoader worker's start: MONAI's seeding (``worker_init_fn``), then SIGINT ignored, so that a Ctrl-C in a
    terminal (sent to the whole process group) reaches the training process, which stops at the end of its
    iteration (``pipeline.handlers.PreemptionHandler``), instead of killing the workers under it. SIGTERM keeps its
    default: the loader and multiprocessing end their workers with it when the training process exits."""
    import signal

    from monai.data.utils import worker_init_fn

    worker_init_fn(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batch_loader(dataset: Any, augment_on: str, device: str | torch.device, num_workers: int = 0,
                    pin_memory: bool | None = None, persistent_workers: bool = False, **kwargs: Any) -> DataLoader:
    """A ``ThreadDataLoader`` without worker processes when augmenting on the device, else a ``DataLoader``.

    ``pin_memory`` None: pinned when the batches go from host memory to a CUDA device.
    """
    cuda = torch.device(device).type == "cuda"
    if augments_on_device(augment_on, device):
        if num_workers:
            logger.info("augmenting on %s: the batches are made in a thread beside the training loop, so "
                        "num_workers=%d is not used", device, num_workers)
        return ThreadDataLoader(dataset, num_workers=0, **kwargs)
    pin = cuda if pin_memory is None else bool(pin_memory)
    kwargs.setdefault("worker_init_fn", ignore_ctrl_c_in_worker)
    return DataLoader(dataset, num_workers=num_workers, pin_memory=pin,
                      persistent_workers=bool(persistent_workers and num_workers > 0), **kwargs)


def resolve_epoch_length(epoch_length: int | str | None, device: str | torch.device,
                         loader: Any = None) -> int | None:
    """Iterations per epoch: None is one pass over ``loader``; ``auto`` picks per device (module docstring).

    On CUDA ``auto`` is the longer of one pass and ``GPU_EPOCH_LENGTH``; the loader starts a new pass when one
    ends inside an epoch (ignite restarts its iterator).
    """
    if epoch_length is None or (isinstance(epoch_length, str) and epoch_length.strip().lower() == "none"):
        return None
    if isinstance(epoch_length, str) and epoch_length.strip().lower() == "auto":
        if torch.device(device).type != "cuda":
            return None
        return max(GPU_EPOCH_LENGTH, len(loader)) if loader is not None else GPU_EPOCH_LENGTH
    try:
        value = int(epoch_length)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(epoch_length).strip():
        raise PipelineError(f"epoch_length {epoch_length!r}: use auto, null (one pass over the data) or a whole "
                            "number of iterations >= 1")
    return value
