"""CT intensity handling: a HU window scaled to [0, 1] (default) or nnU-Net's CT normalisation.

nnU-Net's scheme clips to the 0.5 / 99.5 percentiles of the foreground (labelled) voxels of the training cases
and z-scores with their mean and standard deviation. MONAI has the clip and the z-score (``ScaleIntensityRange``,
``NormalizeIntensity``) but not the data-set statistics; ``foreground_statistics`` computes them once and stores
them as JSON next to the checkpoint, so that evaluation and inference reuse exactly the training values.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, NormalizeIntensity, ScaleIntensityRange

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

MODES = ("window", "zscore")


def foreground_statistics(
    datalist: Sequence[Mapping[str, str]] | None, cache_file: str | Path, max_voxels_per_case: int = 100_000,
    seed: int = 0,
) -> dict[str, float]:
    """HU percentiles (0.5, 99.5), mean and std of labelled voxels over the training cases, cached in JSON.

    A cache file written for the same list of cases is reused; each case contributes at most
    ``max_voxels_per_case`` randomly sampled voxels (seeded), as nnU-Net does. ``datalist=None`` (inference,
    no training data at hand) reads the statistics the training run stored in ``cache_file``.
    """
    cache = Path(cache_file)
    if datalist is None:
        if not cache.is_file():
            raise PipelineError(
                f"{cache} not found: intensity_mode 'zscore' needs the statistics stored at training time"
            )
        return _read_statistics(cache)["statistics"]
    cases = sorted(str(Path(d["image"]).name) for d in datalist)
    if cache.is_file():
        stored = _read_statistics(cache)
        if stored.get("cases") == cases:
            return stored["statistics"]
        logger.info("CT statistics in %s were computed on other cases: recomputing", cache)
    rng = np.random.default_rng(seed)
    samples = []
    for d in datalist:
        img = np.asarray(nib.load(d["image"]).dataobj, dtype=np.float32)
        lab = np.asarray(nib.load(d["label"]).dataobj)
        fg = img[lab > 0]
        if fg.size > max_voxels_per_case:
            fg = rng.choice(fg, max_voxels_per_case, replace=False)
        samples.append(fg)
    values = np.concatenate(samples) if samples else np.empty(0)
    if values.size == 0:
        raise PipelineError(f"no labelled voxels in the {len(datalist)} training cases: cannot compute CT statistics")
    stats = {
        "p00_5": float(np.percentile(values, 0.5)),
        "p99_5": float(np.percentile(values, 99.5)),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"cases": cases, "statistics": stats}, indent=2) + "\n")
    logger.info("CT foreground statistics of %d cases stored in %s: %s", len(cases), cache, stats)
    return stats


def _read_statistics(cache: Path) -> dict:
    try:
        stored = json.loads(cache.read_text())
        stats = stored["statistics"]
        if not all(isinstance(stats.get(k), (int, float)) for k in ("p00_5", "p99_5", "mean", "std")):
            raise KeyError("p00_5/p99_5/mean/std")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise PipelineError(f"{cache}: unreadable CT statistics ({type(e).__name__}: {e})") from None
    return stored


class CTIntensityd(MapTransform):
    """``mode="window"``: clip HU to ``window`` and scale to [0, 1]; ``mode="zscore"``: clip to the stored
    foreground percentiles, subtract the mean, divide by the std (``stats`` from ``foreground_statistics``)."""

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "window",
        window: Sequence[float] = (-175.0, 250.0),
        stats: Mapping[str, float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in MODES:
            raise PipelineError(f"intensity_mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "window":
            lo, hi = float(window[0]), float(window[1])
            if not hi > lo:
                raise PipelineError(f"hu_window {list(window)} must be [low, high] with high > low")
            self.ops = [ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)]
        else:
            if not stats:
                raise PipelineError("intensity_mode 'zscore' needs the foreground statistics of the training cases")
            lo, hi = stats["p00_5"], stats["p99_5"]
            self.ops = [
                ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True),
                NormalizeIntensity(subtrahend=stats["mean"], divisor=max(stats["std"], 1e-6)),
            ]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            for op in self.ops:
                d[key] = op(d[key])
        return d
