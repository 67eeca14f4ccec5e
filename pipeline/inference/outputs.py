"""From the resampled network output to the files a user opens: label map, probabilities, attention maps, and one
log line per case.

``EnsembleNetwork`` gives foreground probabilities (+ attention channels) on the network's grid; ``Invertd`` resamples
them (bilinear/trilinear) back through crop, spacing and orientation to the scan's grid; ``ProbabilitiesToLabeld``
then restores the background channel and takes the argmax there, as nnU-Net does (``channel_argmax``: torch's
argmax over the channel axis is slow on CPU). MONAI has the argmax
(``AsDiscreted``) but no transform that completes a probability map from its foreground channels or splits extra
channels off into another key, hence this one.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.transforms import MapTransform

from pipeline.errors import PipelineError
from pipeline.transforms.discrete import channel_argmax

logger = logging.getLogger(__name__)


class ProbabilitiesToLabeld(MapTransform):
    """``pred`` (foreground probabilities of ``num_classes - 1`` classes, then extra channels) -> ``pred``: the
    argmax label map (uint8, 1 channel); ``prob_key``: all ``num_classes`` probabilities, the background completed
    as ``1 - sum(foreground)``; ``attention_key``: the extra channels. ``None`` keys are not kept (memory)."""

    def __init__(
        self, keys: KeysCollection, num_classes: int, prob_key: str | None = None, attention_key: str | None = None,
    ) -> None:
        super().__init__(keys)
        self.num_classes = int(num_classes)
        self.prob_key = prob_key
        self.attention_key = attention_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            fg = x[: self.num_classes - 1]
            background = (1.0 - fg.sum(0, keepdim=True)).clamp_(0.0, 1.0)
            probs = torch.cat([background, fg], dim=0)
            label = channel_argmax(probs).to(torch.uint8)
            if self.attention_key and x.shape[0] > self.num_classes - 1:
                d[self.attention_key] = x[self.num_classes - 1:].clone()
            if self.prob_key:
                d[self.prob_key] = probs
            d[key] = label
        return d


def _case_name(image: Any) -> str:
    name = (getattr(image, "meta", None) or {}).get("filename_or_obj", "?")
    return str(name[0] if isinstance(name, (list, tuple)) and name else name)


class CaseLog:
    """One log line per case (input, grid, seconds including loading, pre- and post-processing and writing), and the
    total at the end. ignite/MONAI log per iteration or epoch, not per case with its wall time."""

    def __init__(self, spatial_dims: int, pred_dir: str | Path = "") -> None:
        self.spatial_dims = int(spatial_dims)
        self.pred_dir = str(pred_dir)
        self._start = 0.0
        self._times: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)
        engine.add_event_handler(Events.COMPLETED, self._summary)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def _completed(self, engine: Engine) -> None:
        seconds = time.perf_counter() - self._start
        self._times.append(seconds)
        batch = engine.state.batch
        batch = batch[0] if isinstance(batch, (list, tuple)) and batch else batch  # decollated by MONAI
        image = batch.get("image") if isinstance(batch, Mapping) else None
        grid = "x".join(str(s) for s in image.shape[-self.spatial_dims:]) if isinstance(image, torch.Tensor) else "?"
        logger.info("case %d/%d %s: %.1f s (network grid %s) -> %s", engine.state.iteration,
                    engine.state.epoch_length or 0, Path(_case_name(image)).name, seconds, grid, self.pred_dir)

    def _summary(self, engine: Engine) -> None:
        if self._times:
            logger.info("segmented %d case(s) in %.1f s", len(self._times), sum(self._times))


def check_outputs(cases: list[Mapping[str, Any]], pred_dir: str | Path, pred_ext: str,
                  pred_naming: str = "pipeline") -> None:
    """Refuse, in one line and before any case runs, outputs that would overwrite an input or each other.

    Predictions are ``<pred_dir>/<name>_seg<pred_ext>`` (and ``_prob``/``_attention``), ``<name>`` being the file
    name without its extension as MONAI's SaveImaged takes it (``pred_naming`` nnunet: ``<name><pred_ext>``, a
    ``_0000`` channel suffix removed from ``<name>``, see ``pipeline.inference.writing``). Refused: ``pred_dir``
    being a folder that holds inputs (a label ``case_seg.nii.gz`` beside ``case.nii.gz`` would be overwritten, and a
    later run would take the predictions for scans), and two inputs giving one output name (``case.nii`` and
    ``case.nii.gz``).
    """
    from monai.data.utils import create_file_basename

    from pipeline.inference.writing import nnunet_name, pred_postfix

    postfix = pred_postfix(pred_naming)
    out = Path(pred_dir).expanduser().resolve()
    seen: dict[str, str] = {}
    for case in cases:
        image = case["image"][0] if isinstance(case["image"], (list, tuple)) else case["image"]
        source = Path(str(image)).expanduser().resolve()
        if source == out or (source.parent == out and not source.is_dir()):  # a DICOM folder's parent is fine
            raise PipelineError(
                f"{out}: the predictions would be written beside the input {source.name} (over files such as its "
                "label, and taken for inputs by the next run): choose another --output_dir"
            )
        subject = nnunet_name(str(source)) if pred_naming == "nnunet" else str(source)
        name = create_file_basename(postfix, subject, str(out), separate_folder=False, makedirs=False)
        if name in seen:
            raise PipelineError(
                f"{source} and {seen[name]} would both be written to {name}{pred_ext}: rename one of them or "
                "segment them separately"
            )
        seen[name] = str(source)


def with_progress(inferer: Any, progress: bool = True) -> Any:
    """``inferer`` with MONAI's per-case sliding-window progress bar switched on (a no-op for other inferers)."""
    if hasattr(inferer, "progress"):
        inferer.progress = bool(progress)
    return inferer


__all__ = ["CaseLog", "ProbabilitiesToLabeld", "check_outputs", "with_progress"]
