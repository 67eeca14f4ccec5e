"""A full checkpoint every epoch, written atomically, and ``--resume true`` from the latest one.

Every epoch (after validation and the best-model saver) ``<ckpt_dir>/checkpoint_epoch=N.pt`` receives the network,
optimizer, LR scheduler, gradient scaler (float16 on CUDA), trainer state, the best metric so far with the
best-model saver's record, the RNG states and the run's model_config.json; the previous one is deleted only
after the new one is on disk. ignite's ``Checkpoint`` gathers the state dicts (unwrapping DDP); its DiskSaver
renames a temporary file but never fsyncs it, so a crash can leave an empty file under the final name:
``SyncedDiskSaver`` adds the fsyncs, and keeps the previous file when a write fails (a full disk stops the run
with one line, ``WriteError``). Resuming loads the file with MONAI's ``CheckpointLoader``; ``resume_checkpoint``
first refuses, in one line, a folder without a checkpoint, an unreadable (truncated) one, or one trained with
another network or data fragment. Everything stored is a tensor or a plain type: ``torch.load(weights_only=True)``
reads it.
"""
from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from pipeline.engines.model_config import FILENAME as MODEL_CONFIG, check_model_config
from pipeline.config import flag
from pipeline.fileio import RecordingWriter, atomic_path
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

PREFIX = "checkpoint_epoch="
_PATTERN = re.compile(re.escape(PREFIX) + r"(\d+)\.pt$")
REQUIRED = ("network", "optimizer", "lr_scheduler", "trainer", "best_metric", "rng", "run")
EMA_KEY = "ema_network"


def epoch_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``checkpoint_epoch=N.pt`` in ``ckpt_dir``, oldest first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.match(p.name)) and p.is_file()]
    return sorted(found)


class SyncedDiskSaver(DiskSaver):
    """ignite's DiskSaver writing through a temporary file that is fsynced before the rename (and the folder after).

    ignite's atomic mode renames without fsync: after a power cut the final name can hold nothing. A write that
    fails (a full disk) removes the temporary file, keeps the previous file and raises ``WriteError``, one line.
    ``filename`` fixes the name every save goes to (the best model's ``model.pt``): the new file then replaces the
    old one by the rename, and ``remove`` (which ignite's Checkpoint calls before it saves the new best) keeps it,
    so that a failed save leaves the previous best model in place.
    """

    def __init__(self, dirname: str, filename: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("require_empty", False)
        super().__init__(dirname, **kwargs)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None and idist.get_rank() == self.save_on_rank:
            Path(self.dirname, filename).unlink(missing_ok=True)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            out = RecordingWriter(f)
            try:
                func(checkpoint, out, **self.kwargs)
            except Exception:
                if out.error is not None:  # the disk's reason, not torch's stream-position report
                    raise out.error from None
                raise
            f.flush()


class BestModelSaver(CheckpointSaver):
    """MONAI's CheckpointSaver whose best-metric file (``key_metric_filename``, ``model.pt``) is written through
    ``SyncedDiskSaver``: MONAI's own saver deletes the previous best before it writes the new one, in place, so a
    full disk or a kill while saving would leave no loadable best model."""

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        if self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.save_handler = SyncedDiskSaver(
                save_dir, filename=kwargs.get("key_metric_filename"), create_dir=True)


class RNGState:
    """``state_dict``/``load_state_dict`` of the random streams training draws from: torch (CPU and each CUDA device),
    numpy's and Python's global generators and the training loader's generator, as tensors and plain numbers."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        version, py_state, py_gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(gauss),
            "python_version": int(version), "python_state": torch.tensor(py_state, dtype=torch.int64),
            "python_gauss": py_gauss,
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.generator is not None:
            state["loader"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        np.random.set_state(("MT19937", state["numpy_keys"].cpu().numpy().astype(np.uint32), state["numpy_pos"],
                             state["numpy_has_gauss"], state["numpy_gauss"]))
        random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"].tolist()),
                         state["python_gauss"]))
        cuda = [s.cpu() for s in state.get("cuda", [])]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        if self.generator is not None and "loader" in state:
            self.generator.set_state(state["loader"].cpu())


class BestMetricState:
    """The best validation metric so far and its epoch (the evaluator's), the trainer's best loss, and the
    best-model saver's record, so that a resumed run overwrites ``model.pt`` only with a better model."""

    def __init__(self, trainer: Engine, evaluator: Engine | None = None, saver: CheckpointSaver | None = None) -> None:
        self.trainer, self.evaluator, self.saver = trainer, evaluator, saver

    def _saver_checkpoint(self) -> Checkpoint | None:
        # MONAI's CheckpointSaver restores this record (load_state_dict) but has no getter for it
        return getattr(self.saver, "_key_metric_checkpoint", None)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, engine in (("train", self.trainer), ("val", self.evaluator)):
            if engine is not None:
                state[f"{name}_best_metric"] = float(engine.state.best_metric)
                state[f"{name}_best_metric_epoch"] = int(engine.state.best_metric_epoch)
        ckpt = self._saver_checkpoint()
        state["saved"] = [(float(p), str(f)) for p, f in ckpt.state_dict()["_saved"]] if ckpt is not None else []
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, engine in (("train", self.trainer), ("val", self.evaluator)):
            if engine is not None and f"{name}_best_metric" in state:
                engine.state.best_metric = state[f"{name}_best_metric"]
                engine.state.best_metric_epoch = state[f"{name}_best_metric_epoch"]
        if self.saver is not None and state.get("saved"):
            self.saver.load_state_dict({"_saved": [tuple(item) for item in state["saved"]]})


class RunRecord:
    """What the checkpoint was written by: its epoch and the text of the run's model_config.json (read back when
    the file is written), so that a resume can refuse another network or data fragment."""

    def __init__(self, trainer: Engine, ckpt_dir: str | Path) -> None:
        self.trainer, self.ckpt_dir = trainer, Path(ckpt_dir)

    def state_dict(self) -> dict[str, Any]:
        path = self.ckpt_dir / MODEL_CONFIG
        return {"epoch": int(self.trainer.state.epoch), "model_config": path.read_text() if path.is_file() else ""}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore: ``resume_checkpoint`` compared it before training started."""


def training_state(
    trainer: Engine, evaluator: Engine | None, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
    lr_scheduler: Any, ckpt_dir: str | Path, best_model_saver: CheckpointSaver | None = None,
    ema: Any = None,
) -> dict[str, Any]:
    """The objects a full checkpoint saves and a resume loads (each with ``state_dict``/``load_state_dict``);
    ``ema`` (``--ema true``, an ``EMAWeights``) adds the averaged network as ``ema_network``."""
    state: dict[str, Any] = {
        "network": network, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "trainer": trainer,
        "best_metric": BestMetricState(trainer, evaluator, best_model_saver),
        "rng": RNGState(getattr(getattr(trainer, "data_loader", None), "generator", None)),
        "run": RunRecord(trainer, ckpt_dir),
    }
    scaler = getattr(trainer, "scaler", None)
    if scaler is not None:
        state["scaler"] = scaler
    if ema is not None:
        state[EMA_KEY] = ema.ema_model
    return state


class EpochCheckpointSaver:
    """Writes the full training state to ``<ckpt_dir>/checkpoint_epoch=N.pt`` at the end of every epoch and then
    deletes the older ones, so the folder always holds one complete checkpoint (attach it on rank 0 only, after the
    validation and best-model handlers so that the epoch's best metric is in it)."""

    def __init__(self, ckpt_dir: str | Path, state: Mapping[str, Any]) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.checkpoint = Checkpoint(
            dict(state), SyncedDiskSaver(str(self.ckpt_dir), require_empty=False, create_dir=True),
            n_saved=None, global_step_transform=lambda engine, _: engine.state.epoch,
            filename_pattern=PREFIX + "{global_step}.{ext}",
        )

    def attach(self, engine: Engine) -> None:
        """Save at every EPOCH_COMPLETED (not on a terminated epoch: a non-finite loss never completes it)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.checkpoint(engine)
        latest = Path(str(self.checkpoint.last_checkpoint)).name
        for _, path in epoch_checkpoints(self.ckpt_dir):
            if path.name != latest:
                path.unlink(missing_ok=True)
        for tmp in self.ckpt_dir.glob(f".tmp-*-{PREFIX}*"):  # left by a run killed while writing
            tmp.unlink(missing_ok=True)


def resume_checkpoint(ckpt_dir: str | Path, model_config: Mapping[str, Any] | None, epochs: int,
                      epoch_length: int | None = None, learning_rates: list[float] | None = None,
                      ema: bool | None = None, plan: Mapping[str, Any] | None = None) -> str:
    """The latest ``checkpoint_epoch=N.pt`` of ``ckpt_dir`` once it is known to suit this run; otherwise a one-line
    PipelineError (none there, unreadable or truncated, another network or data fragment, past ``epochs``, epochs
    of another length, with or without ``--ema`` unlike this run). Nothing is written. ``model_config`` /
    ``epoch_length`` / ``ema`` None: those checks are skipped."""
    found = epoch_checkpoints(ckpt_dir)
    if not found:
        raise PipelineError(
            f"{ckpt_dir}: no {PREFIX}N.pt to resume from (they are written at the end of each epoch); "
            "train without --resume true"
        )
    _, path = found[-1]
    try:  # mmap: only the parts read below come from disk, so checking a large checkpoint twice costs little
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, not a torch file, unpickling refused ...
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise PipelineError(
            f"{path}: not a readable checkpoint, perhaps truncated ({reason}); nothing was changed: delete it and "
            "resume from an earlier copy, or train without --resume true"
        ) from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, Mapping) or k not in ckpt]
    if missing:
        raise PipelineError(f"{path}: not a full training checkpoint (missing {', '.join(missing)})")
    saved_config = str(ckpt["run"].get("model_config", ""))
    folder_config = Path(ckpt_dir) / MODEL_CONFIG
    if not saved_config or not folder_config.is_file() or \
            json.loads(saved_config) != json.loads(folder_config.read_text()):
        raise PipelineError(
            f"{path}: written by another run than the {MODEL_CONFIG} beside it describes (a later run started in "
            "this folder); train without --resume true"
        )
    if model_config is not None:
        check_model_config(ckpt_dir, model_config, plan)
        saved_split = _plain_split(json.loads(saved_config).get("split"))
        if saved_split != _plain_split(model_config.get("split")):
            raise PipelineError(
                f"{path}: trained on another split ({saved_split}; this run: {_plain_split(model_config.get('split'))}"
                "): resume with its --seed, --val_fraction, --num_folds and --fold, or cases it trained on would be "
                "validated"
            )
    epoch = int(ckpt["run"]["epoch"])
    planned = ckpt["trainer"].get("max_epochs")
    if planned is not None and int(planned) != int(epochs):
        raise PipelineError(
            f"{path}: that run was planned for --epochs {int(planned)} (its learning-rate schedule ends there), this "
            f"one for {epochs}: resume with --epochs {int(planned)}"
        )
    saved_length = ckpt["trainer"].get("epoch_length")
    if epoch_length is not None and saved_length is not None and int(saved_length) != int(epoch_length):
        raise PipelineError(
            f"{path}: its epochs had {saved_length} iterations, this run's have {epoch_length} (another batch size, "
            "split or number of processes); resume with the settings it was trained with"
        )
    saved_lrs = ckpt["lr_scheduler"].get("base_lrs") if isinstance(ckpt["lr_scheduler"], Mapping) else None
    if learning_rates is not None and saved_lrs is not None and \
            not np.allclose(saved_lrs, learning_rates, rtol=1e-6, atol=0):
        # the optimizer and schedule come back from the file: a new rate would be ignored
        raise PipelineError(
            f"{path}: trained with learning rate {saved_lrs[0]:g}, this run asks for {learning_rates[0]:g}: "
            "resume with the rate it was trained with"
        )
    if ema is not None and bool(ema) != (EMA_KEY in ckpt):
        saved = "true" if EMA_KEY in ckpt else "false"
        raise PipelineError(
            f"{path}: trained with --ema {saved}, this run asks for --ema {'true' if ema else 'false'}: resume with "
            f"--ema {saved} (the averaged weights are {'in' if EMA_KEY in ckpt else 'not in'} the checkpoint)"
        )
    logger.info("resuming from %s (epoch %d of %d)", path, epoch, int(epochs))
    return str(path)


def _plain_split(split: Any) -> dict[str, str]:
    """A split's settings as text (a value from the command line and one from JSON compare equal)."""
    return {str(k): str(v) for k, v in dict(split or {}).items()}


def refuse_interrupted(ckpt_dir: str | Path) -> None:
    """A run without ``--resume`` would replace the full checkpoint of an interrupted run in ``ckpt_dir`` at the
    end of its first epoch: refuse in one line while that checkpoint can still be resumed (a finished run's last
    checkpoint, or an unreadable one, is replaced as before)."""
    found = epoch_checkpoints(ckpt_dir)
    if not found:
        return
    _, path = found[-1]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epoch, planned = int(ckpt["run"]["epoch"]), int(ckpt["trainer"]["max_epochs"])
    except Exception:  # unreadable or not ours: nothing a resume could use
        return
    if epoch < planned:
        raise PipelineError(
            f"{path}: a run stopped at epoch {epoch} of {planned} can be resumed from this folder; add --resume true "
            "to go on, or delete the file (or choose another --bundle_root) to train afresh"
        )


def check_resume(resume: bool | str, ckpt_dir: str | Path, epochs: int) -> None:
    """With ``--resume true``, refuse a folder without a readable checkpoint before anything is built or written
    (the ``initialize`` step); ``resume_loader`` checks again with the network, data fragment and epoch length.
    Without it, refuse to overwrite the checkpoint of an interrupted run (``refuse_interrupted``)."""
    if flag(resume, "resume"):
        resume_checkpoint(ckpt_dir, None, epochs)
    else:
        refuse_interrupted(ckpt_dir)


def resume_loader(trainer: Engine, state: Mapping[str, Any], ckpt_dir: str | Path, model_config: Mapping[str, Any],
                  plan: Mapping[str, Any] | None = None, map_location: Any = None) -> CheckpointLoader:
    """MONAI's CheckpointLoader for the latest checkpoint (checked by ``resume_checkpoint``), attached to ``trainer``
    to load ``state`` when the run starts."""
    lrs = getattr(state.get("lr_scheduler"), "base_lrs", None)
    path = resume_checkpoint(ckpt_dir, model_config, trainer.state.max_epochs, trainer.state.epoch_length,
                             learning_rates=list(lrs) if lrs is not None else None, ema=EMA_KEY in state, plan=plan)
    loader = CheckpointLoader(load_path=path, load_dict=dict(state), map_location=map_location)
    loader.attach(trainer)
    return loader


__all__ = [
    "BestMetricState",
    "BestModelSaver",
    "EpochCheckpointSaver",
    "PREFIX",
    "RNGState",
    "RunRecord",
    "SyncedDiskSaver",
    "check_resume",
    "epoch_checkpoints",
    "refuse_interrupted",
    "resume_checkpoint",
    "resume_loader",
    "training_state",
]
