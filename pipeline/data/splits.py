"""Training/validation splits of a data set's training cases: nnU-Net's seeded k-fold, or a seeded random split."""
from __future__ import annotations

import math

import numpy as np
from monai.data import partition_dataset

from pipeline.errors import PipelineError

__all__ = ["split_cases"]


def split_cases(
    cases: list[dict],
    split: str,
    *,
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
) -> list[dict]:
    """Deterministic training/validation part of ``cases`` (dicts with "case"), sorted by case id.

    ``num_folds > 1``: k-fold as nnU-Net (sorted ids, ``RandomState(seed)`` shuffle, folds of n//k or
    n//k+1; seed=12345 reproduces nnU-Net's splits), unless every case carries a MONAI-style "fold" key,
    which is used as is. Otherwise a seeded random split with ``val_fraction`` (>= 1 validation case
    when there are >= 2 cases and val_fraction > 0).
    """
    if split not in ("training", "validation"):
        raise PipelineError(f"split {split!r}: split_cases handles 'training' or 'validation'")
    ids = [c.get("case") for c in cases]
    if any(not isinstance(i, str) for i in ids):
        raise PipelineError("split_cases: every case needs a string 'case' id")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PipelineError(f"case {dup}: listed twice")
    ordered = sorted(cases, key=lambda c: c["case"])
    n = len(ordered)
    if num_folds > 1:
        if not 0 <= fold < num_folds:
            raise PipelineError(f"fold={fold}: must be in [0, {num_folds}) for num_folds={num_folds}")
        if n and all(isinstance(c.get("fold"), int) for c in ordered):
            bad = next((c for c in ordered if not 0 <= c["fold"] < num_folds), None)
            if bad is not None:
                raise PipelineError(f"case {bad['case']}: 'fold' {bad['fold']} outside [0, {num_folds})")
            val_ids = {c["case"] for c in ordered if c["fold"] == fold}
        else:
            if n < num_folds:
                raise PipelineError(f"num_folds={num_folds}: only {n} case(s) to split")
            # nnU-Net's folds (sklearn KFold(shuffle=True, random_state=seed)): a RandomState(seed) shuffle, then
            # contiguous folds of n//k + 1 cases for the first n % k folds and n//k for the rest. MONAI's
            # partition_dataset shuffles the same way; given the fold sizes as ratios it cuts the same folds.
            sizes = [n // num_folds + (1 if k < n % num_folds else 0) for k in range(num_folds)]
            folds = partition_dataset(ordered, ratios=sizes, shuffle=True, seed=seed)
            val_ids = {c["case"] for c in folds[fold]}
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise PipelineError(f"val_fraction={val_fraction}: must be in [0, 1)")
        n_val = 0
        if n >= 2 and val_fraction > 0:
            n_val = min(n - 1, max(1, math.floor(n * val_fraction + 0.5)))
        # not partition_dataset: its RandomState shuffle picks other cases than this default_rng permutation,
        # and the validation cases of the recorded runs (the bundles' default split) must stay the same
        perm = np.random.default_rng(seed).permutation(n)
        val_ids = {ordered[i]["case"] for i in perm[:n_val]}
    want_val = split == "validation"
    return [c for c in ordered if (c["case"] in val_ids) == want_val]
