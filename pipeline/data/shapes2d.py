"""Synthetic 2D segmentation data: ellipses and rectangles on a noisy background.

Each grayscale image holds a few (2-6) ellipses and rectangles of random size, position, rotation
and intensity; a later shape covers an earlier one in both image and label. Label map: 0 background,
1 ellipse, 2 rectangle. Ellipse and rectangle intensities come from the same distribution, and the
shape and background intensity ranges overlap across images, so a network has to use shape, not
brightness. Within one image every shape is at least ``MIN_CONTRAST`` brighter than its background
and differs from the other shapes by at least ``MIN_SHAPE_SEPARATION``, so every label boundary is
visible in the image.

``make_shapes`` writes PNGs in the layout of a Medical Segmentation Decathlon task (imagesTr/,
labelsTr/, imagesTs/, labelsTs/, dataset.json with explicit training/validation/test lists) through the
shared writer ``pipeline.data.msd``.
Everything is deterministic by seed: image ``i`` comes from ``np.random.default_rng([seed, i])``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pipeline.data.msd import MSDCase, MSDDataset, png_bytes, write_msd_dataset
from pipeline.errors import PipelineError

__all__ = ["LABELS", "ShapeSpec", "make_shapes", "random_shapes", "render_shapes"]

LABELS = {"0": "background", "1": "ellipse", "2": "rectangle"}
KIND_LABEL = {"ellipse": 1, "rectangle": 2}

# Intensity model (0-255 scale). Shape range [70, 250] and background range [10, ~220) overlap
# across images; MIN_CONTRAST keeps every shape visible against its own background.
SHAPE_INTENSITY = (70.0, 250.0)
MIN_SHAPE_SEPARATION = 20.0
MIN_CONTRAST = 30.0
BACKGROUND_MIN = 10.0
NOISE_SIGMA = (3.0, 15.0)
MAX_RAMP = 20.0  # amplitude of a linear background gradient

FILE_PATTERN = r"shape_\d+\.png"  # every file this generator writes (an overwrite replaces only these)


@dataclass(frozen=True)
class ShapeSpec:
    """One shape: kind, centre (row, col) and half-axes in pixels, rotation in radians, intensity 0-255."""

    kind: str
    center: tuple[float, float]
    half_axes: tuple[float, float]
    angle: float
    intensity: float

    def mask(self, size: int) -> np.ndarray:
        """Boolean mask of the pixels (centres) inside the shape on a ``size`` x ``size`` grid."""
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
        dy, dx = rows - self.center[0], cols - self.center[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        a, b = self.half_axes
        if self.kind == "ellipse":
            return (u / a) ** 2 + (v / b) ** 2 <= 1.0
        if self.kind == "rectangle":
            return (np.abs(u) <= a) & (np.abs(v) <= b)
        raise PipelineError(f"shape kind {self.kind!r}: expected one of {sorted(KIND_LABEL)}")


def random_shapes(
    rng: np.random.Generator,
    n_shapes: int | None = None,
    size: int = 128,
    kinds: tuple[str, ...] = ("ellipse", "rectangle"),
) -> list[ShapeSpec]:
    """Draw ``n_shapes`` (default: 2-6) random shapes of the given kinds for a ``size`` x ``size`` image.

    Intensities are drawn from one distribution for all kinds, at least MIN_SHAPE_SEPARATION apart.
    """
    if not kinds or any(k not in KIND_LABEL for k in kinds):
        raise PipelineError(f"shape kinds {kinds!r}: expected a non-empty subset of {sorted(KIND_LABEL)}")
    if n_shapes is None:
        n_shapes = int(rng.integers(2, 7))
    if n_shapes < 0:
        raise PipelineError(f"n_shapes={n_shapes}: must be >= 0")
    specs: list[ShapeSpec] = []
    for _ in range(n_shapes):
        kind = kinds[int(rng.integers(len(kinds)))]
        center = (float(rng.uniform(0.15, 0.85) * size), float(rng.uniform(0.15, 0.85) * size))
        half_axes = (float(rng.uniform(0.06, 0.22) * size), float(rng.uniform(0.06, 0.22) * size))
        angle = float(rng.uniform(0.0, math.pi))
        intensity = _draw_intensity(rng, [s.intensity for s in specs])
        specs.append(ShapeSpec(kind, center, half_axes, angle, intensity))
    return specs


def _draw_intensity(rng: np.random.Generator, taken: list[float]) -> float:
    """Uniform over SHAPE_INTENSITY minus +-MIN_SHAPE_SEPARATION around ``taken``.

    Keeps boundaries between overlapping shapes visible. Falls back to the full range in the
    (very unlikely) case that earlier shapes block all of it.
    """
    free = [SHAPE_INTENSITY]
    for t in taken:
        a, b = t - MIN_SHAPE_SEPARATION, t + MIN_SHAPE_SEPARATION
        free = [part for lo, hi in free for part in ((lo, min(hi, a)), (max(lo, b), hi)) if part[1] > part[0]]
    total = sum(hi - lo for lo, hi in free)
    if total <= 0:
        return float(rng.uniform(*SHAPE_INTENSITY))
    u = float(rng.uniform(0.0, total))
    for lo, hi in free:
        if u <= hi - lo:
            return lo + u
        u -= hi - lo
    return free[-1][1]


def render_shapes(
    specs: list[ShapeSpec], size: int = 128, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render shapes into (image uint8, label uint8), both ``size`` x ``size``; later specs cover earlier.

    With ``rng`` the background gets a random level, linear gradient and Gaussian noise (the level stays
    MIN_CONTRAST below the dimmest shape); without it the background is 0 and there is no noise.
    """
    image = np.zeros((size, size), dtype=np.float64)
    label = np.zeros((size, size), dtype=np.uint8)
    noise_sigma = 0.0
    if rng is not None:
        dimmest = min((s.intensity for s in specs), default=SHAPE_INTENSITY[1])
        ramp = float(rng.uniform(0.0, MAX_RAMP))
        low = BACKGROUND_MIN + ramp / 2
        high = max(low, dimmest - MIN_CONTRAST - ramp / 2)
        level = float(rng.uniform(low, high))
        direction = float(rng.uniform(0.0, 2 * math.pi))
        rows, cols = np.mgrid[0:size, 0:size] / max(size - 1, 1) * 2 - 1
        proj = (rows * math.sin(direction) + cols * math.cos(direction)) / (
            abs(math.sin(direction)) + abs(math.cos(direction))
        )  # in [-1, 1]
        image += level + ramp / 2 * proj
        noise_sigma = float(rng.uniform(*NOISE_SIGMA))
    for spec in specs:
        mask = spec.mask(size)
        image[mask] = spec.intensity
        label[mask] = KIND_LABEL[spec.kind]
    if rng is not None:
        image += rng.normal(0.0, noise_sigma, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def _split_indices(n: int, seed: int, val_fraction: float, test_fraction: float) -> tuple[list, list, list]:
    """Deterministic (training, validation, test) index lists, each sorted."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise PipelineError(f"{name}={f}: must be in [0, 1)")
    n_test = math.floor(n * test_fraction + 0.5)
    n_val = math.floor(n * val_fraction + 0.5)
    if n - n_test - n_val < 1:
        raise PipelineError(
            f"n={n}, val_fraction={val_fraction}, test_fraction={test_fraction}: leaves no training image"
        )
    order = np.random.default_rng([seed, 0x5B117]).permutation(n)
    test = sorted(int(i) for i in order[:n_test])
    val = sorted(int(i) for i in order[n_test : n_test + n_val])
    train = sorted(int(i) for i in order[n_test + n_val :])
    return train, val, test


def shapes_msd_dataset(n: int, seed: int, size: int, val_fraction: float, test_fraction: float) -> MSDDataset:
    """The MSD description (dataset.json header and case list) of a shapes data set; raises on bad fractions."""
    train, val, test = _split_indices(n, seed, val_fraction, test_fraction)
    width = max(4, len(str(n - 1)))
    split_of = {**{i: "training" for i in train}, **{i: "validation" for i in val}, **{i: "test" for i in test}}
    cases = [MSDCase(i, f"shape_{i:0{width}d}.png", split_of[i]) for i in range(n)]
    header = {
        "name": "Shapes2D",
        "description": "Synthetic ellipses (1) and rectangles (2) on a noisy background, pipeline.data.shapes2d",
        "reference": "generated",
        "licence": "CC0-1.0",
        "release": f"seed={seed} n={n} size={size}",
        "tensorImageSize": "2D",
        "modality": {"0": "synthetic"},
        "labels": dict(LABELS),
    }
    return MSDDataset(header=header, cases=cases, file_pattern=FILE_PATTERN, json_indent=2)


def make_shapes(
    out_dir: str | Path,
    n: int = 1000,
    seed: int = 0,
    size: int = 128,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` shape images + labels as an MSD-style PNG data set in ``out_dir``; return its dataset.json.

    Refuses (PipelineError, nothing changed) on bad arguments or when ``out_dir`` already holds a data set,
    unless ``overwrite=True`` and that data set is a Shapes2D one. dataset.json is written last.
    """
    out_dir = Path(out_dir).absolute()
    if int(n) != n or n < 1:
        raise PipelineError(f"n={n}: must be a positive integer")
    if int(seed) != seed or seed < 0:
        raise PipelineError(f"seed={seed}: must be a non-negative integer")
    if int(size) != size or size < 8:
        raise PipelineError(f"size={size}: must be an integer >= 8")
    n, seed, size = int(n), int(seed), int(size)
    dataset = shapes_msd_dataset(n, seed, size, val_fraction, test_fraction)

    def encode(case: MSDCase) -> tuple[bytes, bytes]:
        rng = np.random.default_rng([seed, case.index])
        image, label = render_shapes(random_shapes(rng, size=size), size=size, rng=rng)
        return png_bytes(image), png_bytes(label)

    return write_msd_dataset(out_dir, dataset, encode, overwrite=overwrite)
