"""From a data set fingerprint and a machine profile to a training plan, with the reason for every value.

The rules, in the order they are applied (d = spatial dims; "body" = the median foreground-cropped body extent):

1. Voxel budget per patch and batch size. CPU: the measured recipes, 64x64x32 = 131,072 voxels with batch 2 in 3D
   (262,144 voxels per step) and 128x128 with batch 8 in 2D (a 2D image costs the same per image at batch 4-16 on
   a CPU, so batch 8 gives twice the updates of 16 for the same time; recipe ``ds_bs8`` of the shapes recipes,
   docs/benchmarks.md). GPU: a crop of at most 2**18 voxels in 3D
   (twice the CPU crop; on the pancreas phantoms the labels keep nearly all their Dice through resampling to the
   grid this plans, and a larger crop buys resolution the model cannot use in a short run and costs steps), with
   batch 4 (x ``num_samples`` crops per case, 2 in the
   bundles); smaller where half the GPU memory at 1,200 bytes per voxel per crop holds less (the activations the
   attention U-Net at base width 16 keeps for the backward pass, with an allowance for its peak; the margin over a
   measured H200 train step is in the gpu_recipe result, docs/benchmarks.md).
2. Target spacing: nnU-Net's median spacing, unless the body at that spacing needs more than 2**d patches (more
   than two patches along each axis on average); then, in the manner of nnU-Net's 3d_lowres, the axes finer than
   half the coarsest are raised towards that first, then all axes together, until the body fits 2**d patches.
   Rounded to 0.01 mm.
3. Patch: a cube (square in 2D) in millimetres of the budget's size, each axis clipped to the body (the bundles
   crop to it) with the freed voxels given to the other axes; then rounded down to a multiple of the axis'
   pooling product and grown again one multiple at a time (shortest axis in mm first) while the budget allows.
4. Strides (one per pooling of the network, 3 for the ``standard`` preset): nnU-Net's rule per level: among the
   axes still >= 8 voxels after pooling, pool those whose current spacing is < 2x the finest current spacing;
   others take 1.
5. Batch size: the CPU recipe's; on a GPU the voxels per step over the crops of the patch, between 2 and 8.
6. Intensity: CT gets the HU window of the foreground 0.5/99.5 percentiles (nnU-Net's clip range), and the
   foreground mean/std for ``intensity_mode`` zscore; other modalities per-image z-scoring.
7. num_workers: CPU training keeps the cores for the network (cores // 4, at most 4); a GPU run feeds it from all
   but one core, at most 8 (used with ``augment_on workers``; by default CUDA runs augment on the GPU in a thread).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

__all__ = ["PLAN_KEYS", "make_plan", "planned_workers", "pooling_strides"]

PLAN_VERSION = 2  # raised whenever a rule changes what is planned (2: 2D batch 8 on CPU, was 16)
PLAN_KEYS = ("target_spacing", "patch_size", "strides", "batch_size", "num_workers")
POOLINGS = 3  # default: the `standard` preset of the networks
MIN_POOLED_SIZE = 8  # voxels an axis keeps after a pooling
ANISOTROPY = 2.0  # nnU-Net: pool an axis only while its spacing is < 2x the finest
CPU_BUDGET = {3: (64 * 64 * 32, 2), 2: (128 * 128, 8)}  # voxels per crop, batch size: the measured recipes
GPU_MEMORY_FRACTION = 0.5  # headroom for cuDNN workspaces, the allocator, validation windows
GPU_BYTES_PER_VOXEL = 1200  # per crop, 16-bit autocast, attention U-Net base width 16 (see module docstring)
GPU_MAX_CROP = {3: 2**18, 2: 512 * 512}  # voxels per crop on a GPU (module docstring, rule 1)
GPU_TARGET_BATCH = 4
GPU_MAX_BATCH = 8
MAX_CPU_WORKERS, MAX_GPU_WORKERS = 4, 8


def _fmt(values: Sequence[float], digits: int = 2) -> str:
    """``(0.79, 0.79, 2.5)``: rounded to ``digits`` decimals, trailing zeros dropped."""
    text = [f"{v:.{digits}f}" for v in values]
    return "(" + ", ".join(t.rstrip("0").rstrip(".") if "." in t else t for t in text) + ")"


def pooling_strides(patch: Sequence[float], spacing: Sequence[float], levels: int = POOLINGS) -> list[list[int]]:
    """Per-level pooling factors (finest first) for a patch at a spacing, by nnU-Net's rule (module docstring, 4)."""
    size, cur = [float(p) for p in patch], [float(s) for s in spacing]
    out = []
    for _ in range(levels):
        candidates = [i for i in range(len(size)) if size[i] / 2 >= MIN_POOLED_SIZE]
        stride = [1] * len(size)
        if candidates:
            finest = min(cur[i] for i in candidates)
            for i in candidates:
                if round(cur[i] / finest, 3) < ANISOTROPY:
                    stride[i] = 2
        out.append(stride)
        size = [n / s for n, s in zip(size, stride)]
        cur = [c * s for c, s in zip(cur, stride)]
    return out


def _multiple(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per axis, the product of the strides: the size multiple the network needs."""
    return [int(np.prod([s[i] for s in strides])) for i in range(len(strides[0]))]


def _coarsen(spacing: np.ndarray, extent: np.ndarray, max_voxels: float) -> np.ndarray:
    """Smallest change of ``spacing`` (finer axes up to half the coarsest, then all) so extent/spacing fits."""
    def voxels(s: np.ndarray) -> float:
        return float(np.prod(extent / s))

    if voxels(spacing) <= max_voxels:
        return spacing
    half = spacing.max() / ANISOTROPY
    if half > spacing.min() and voxels(np.maximum(spacing, half)) <= max_voxels:
        lo, hi = float(spacing.min()), float(half)
        for _ in range(60):  # bisection on the floor raised under the finer axes
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if voxels(np.maximum(spacing, mid)) <= max_voxels else (mid, hi)
        return np.maximum(spacing, hi)
    base = np.maximum(spacing, half)
    return base * (voxels(base) / max_voxels) ** (1.0 / len(spacing))


def _clipped_cube(cap: np.ndarray, spacing: np.ndarray, budget: float) -> np.ndarray:
    """Real-valued patch: a cube in mm of ``budget`` voxels, axes clipped to ``cap`` voxels, the rest regrown."""
    if np.prod(cap) <= budget:
        return cap.astype(float)
    lo, hi = 0.0, float((cap * spacing).max())
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.prod(np.minimum(cap, mid / spacing)) <= budget else (lo, mid)
    return np.minimum(cap, lo / spacing)


def _fit_patch(
    real: np.ndarray, cap: np.ndarray, spacing: np.ndarray, budget: float, levels: int = POOLINGS
) -> tuple[list[int], list[list[int]]]:
    """Integer patch divisible by its pooling product, within ``budget`` voxels, and its strides."""
    patch = real
    for _ in range(3):
        strides = pooling_strides(patch, spacing, levels)
        mult = _multiple(strides)
        q = [max(m, int(p // m) * m) for p, m in zip(patch, mult)]
        limit = [max(m, math.ceil(c / m) * m) for c, m in zip(cap, mult)]
        while True:
            grow = [i for i in range(len(q)) if q[i] + mult[i] <= limit[i]
                    and np.prod(q) / q[i] * (q[i] + mult[i]) <= budget]
            if not grow:
                break
            i = min(grow, key=lambda a: (q[a] * spacing[a], a))
            q[i] += mult[i]
        if pooling_strides(q, spacing, levels) == strides:
            break
        patch = np.array(q, float)
    strides = pooling_strides(q, spacing, levels)
    mult = _multiple(strides)  # rounding down to it keeps these strides (the size thresholds are multiples of it)
    return [max(m, p // m * m) for p, m in zip(q, mult)], strides


def _budget(machine: Mapping[str, Any], spatial_dims: int, num_samples: int) -> tuple[float, int | None, str]:
    """Voxels per crop, fixed batch size (None: decided from memory) and the reason, for this machine."""
    if machine.get("device") == "cuda" and machine.get("gpu_memory_gib"):
        mem = float(machine["gpu_memory_gib"])
        per_step = GPU_MEMORY_FRACTION * mem * 2**30 / GPU_BYTES_PER_VOXEL
        crops = GPU_TARGET_BATCH * num_samples
        fits = per_step / crops
        cap = GPU_MAX_CROP.get(spatial_dims, fits)
        if fits > cap:
            return float(cap), None, (f"GPU crop of {cap:,} voxels, batch {GPU_TARGET_BATCH} x {num_samples} crops "
                                      f"(the time-to-model cap; {mem:g} GiB would hold {fits / 1e6:.1f} M per crop)")
        why = (f"{GPU_MEMORY_FRACTION:.0%} of {mem:g} GiB at {GPU_BYTES_PER_VOXEL} B/voxel holds "
               f"{per_step / 1e6:.1f} M voxels per step, {crops} crops of {fits / 1e6:.2f} M")
        return fits, None, why
    if spatial_dims not in CPU_BUDGET:
        raise PipelineError(f"spatial_dims={spatial_dims}: plans exist for 2 or 3 spatial dimensions")
    voxels, batch = CPU_BUDGET[spatial_dims]
    return float(voxels), batch, f"CPU budget {voxels:,} voxels per crop, batch {batch} (the measured CPU recipe)"


def make_plan(
    fingerprint: Mapping[str, Any], machine: Mapping[str, Any], spatial_dims: int = 3, num_samples: int = 2,
    poolings: int = POOLINGS,
) -> dict[str, Any]:
    """Training plan (target_spacing, patch_size, strides, batch_size, intensity, num_workers) and a "why" per value.

    ``fingerprint`` from ``dataset_fingerprint``, ``machine`` from ``machine_profile`` (or a dict with "device",
    "cpu_count", "gpu_memory_gib"); ``num_samples`` is the bundles' crops per case per step; ``poolings`` the
    network's depth (one stride per pooling). Rules: module docstring.
    """
    if fingerprint.get("spatial_dims") != spatial_dims:
        raise PipelineError(
            f"the data set has {fingerprint.get('spatial_dims')} spatial dimensions but the plan is for {spatial_dims}"
        )
    median = np.asarray(fingerprint["spacing"]["median"], float)
    extent = np.asarray(fingerprint["body_extent_mm"]["median"], float)
    budget, fixed_batch, budget_why = _budget(machine, spatial_dims, num_samples)
    n_fit = 2**spatial_dims
    spacing = _coarsen(median, extent, n_fit * budget)
    spacing = np.round(spacing, 2)
    needed = float(np.prod(extent / median) / budget)
    if np.allclose(spacing, np.round(median, 2)):
        spacing_why = (f"median spacing {_fmt(median, 3)} mm (nnU-Net); the median body {_fmt(extent, 0)} mm "
                       f"needs {needed:.1f} patches at it, within {n_fit}")
    else:
        spacing_why = (f"median spacing {_fmt(median, 3)} mm would need {needed:.0f} patches for the median body "
                       f"{_fmt(extent, 0)} mm; finer axes raised towards half the coarsest, then all, "
                       f"until it fits {n_fit}")
    cap = np.maximum(1.0, extent / spacing)
    if poolings < 1:
        raise PipelineError(f"poolings={poolings}: a plan needs a network with at least one pooling")
    patch, strides = _fit_patch(_clipped_cube(cap, spacing, budget), cap, spacing, budget, poolings)
    patch_why = (f"{budget_why}: an isotropic box in mm clipped to the body {_fmt(np.round(cap), 0)} voxels, "
                 f"rounded to multiples of {_multiple(strides)}")
    strides_why = (f"nnU-Net's rule at spacing {_fmt(spacing)} mm: pool an axis while its spacing is < "
                   f"{ANISOTROPY:g}x the finest and >= {MIN_POOLED_SIZE} voxels remain, {poolings} poolings")
    crop = int(np.prod(patch))
    if fixed_batch is None:
        per_step = budget * GPU_TARGET_BATCH * num_samples
        batch = int(min(GPU_MAX_BATCH, max(2, per_step // (crop * num_samples))))
        batch_why = (f"{per_step / 1e6:.1f} M voxels per step over {num_samples} crops of {crop:,} voxels per case, "
                     f"between 2 and {GPU_MAX_BATCH}")
    else:
        batch = fixed_batch
        crops = f"{num_samples} crop{'s' if num_samples != 1 else ''}"
        batch_why = f"the CPU recipe's batch ({batch} cases x {crops} per step)"
    workers, workers_why = planned_workers(machine)
    intensity, intensity_why = _intensity(fingerprint)
    summary = {k: v for k, v in fingerprint.items() if k != "cases"}
    return {
        "version": PLAN_VERSION,
        "dataset_dir": fingerprint.get("dataset_dir"),
        "device": machine.get("device", "cpu"),
        "spatial_dims": spatial_dims,
        "target_spacing": [float(v) for v in spacing],
        "patch_size": [int(v) for v in patch],
        "strides": strides,
        "batch_size": batch,
        "num_workers": workers,
        "intensity": intensity,
        "why": {
            "target_spacing": spacing_why,
            "patch_size": patch_why,
            "strides": strides_why,
            "batch_size": batch_why,
            "num_workers": workers_why,
            "intensity": intensity_why,
        },
        "machine": dict(machine),
        "fingerprint": summary,
    }


def planned_workers(machine: Mapping[str, Any]) -> tuple[int, str]:
    """DataLoader worker processes for this machine and the reason (module docstring, rule 7)."""
    cores = int(machine.get("cpu_count") or 1)
    if machine.get("device") == "cuda":
        return min(MAX_GPU_WORKERS, max(0, cores - 1)), (
            f"{cores} cores: all but one prepare batches for the GPU (at most {MAX_GPU_WORKERS})")
    return min(MAX_CPU_WORKERS, cores // 4), (
        f"{cores} cores: CPU training keeps them for the network (cores // 4, at most {MAX_CPU_WORKERS}; one worker "
        "on 2 cores measured no faster)")


def _intensity(fingerprint: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Intensity normalisation: CT window from the foreground percentiles (+ z-score stats), else per image."""
    stats = fingerprint.get("foreground_intensity") or {}
    zscore = {k: stats.get(k) for k in ("p00_5", "p99_5", "mean", "std")}
    if not fingerprint.get("ct"):
        return {"mode": "per_image_zscore", "hu_window": None, "zscore": zscore}, (
            "not CT: intensities are not calibrated, so each image is z-scored on its own (nnU-Net)")
    if stats.get("p00_5") is None:
        raise PipelineError("no labelled voxels in the analysed cases: cannot plan the CT intensity window")
    window = [math.floor(stats["p00_5"]), math.ceil(stats["p99_5"])]
    return {"mode": "window", "hu_window": window, "zscore": zscore}, (
        f"CT: window {window} HU = foreground 0.5/99.5 percentiles over {stats.get('n_samples')} sampled voxels; "
        f"z-score statistics mean {stats['mean']:.1f}, std {stats['std']:.1f}")
