"""Variants of the 2D shapes built so that the context-vs-precision trade-off can show (``python -m pipeline study``).

Three variants share the label set of ``pipeline.data.shapes2d`` (0 background, 1 ellipse, 2 rectangle), its MSD
layout and its split rule, so every shapes recipe trains on them unchanged:

* ``shapes``: the report's shapes, exactly ``make_shapes`` (same seed, same bytes); shapes overlap, a later one
  covers an earlier one.
* ``context``: 1-3 large shapes (half-axes 15-35 % of the side) drawn only as a 2-pixel outline; their interior
  is the background itself (same level, gradient, texture and noise), and open strokes of the same brightness
  (straight segments and arcs, labelled background) clutter the image. A pixel inside a shape looks like any
  background pixel, and a piece of outline looks like a stroke: only a view of the whole outline tells whether
  a pixel is background, ellipse or rectangle.
* ``precision``: many small objects that a coarse output grid loses: thin rectangles (2-3.6 px thick), small
  ellipses (diameter 3.6-10 px) and pairs of objects 0-2 px apart (a touching pair of the same class always keeps
  a 1-2 px background gap, as the touching cells of the U-Net paper do, so its two objects stay two objects).

Case ``i`` of a variant comes from ``np.random.default_rng([seed, i, tag])`` (``tag`` per variant; the ``shapes``
variant uses ``[seed, i]`` as ``make_shapes`` does), so a case does not depend on the data set size.
``variant_case`` also returns the shape masks, from which the study derives the overlap regions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.data.msd import MSDCase, MSDDataset, png_bytes, write_msd_dataset
from pipeline.data.shapes2d import (
    KIND_LABEL,
    ShapeSpec,
    _draw_intensity,
    make_shapes,
    random_shapes,
    render_shapes,
    shapes_msd_dataset,
)
from pipeline.errors import PipelineError

__all__ = ["VARIANTS", "VariantCase", "make_shape_variant", "variant_case"]

VARIANTS = ("shapes", "context", "precision")
_TAG = {"context": 0xC0E7, "precision": 0x9EC1}
OUTLINE_WIDTH = 2.0  # px, the context variant's outlines and strokes
CONTEXT_HALF_AXES = (0.15, 0.35)  # fraction of the side
PRECISION_GAPS_SAME_CLASS = (1, 2)  # background pixels between the two objects of a same-class pair
PRECISION_GAPS_OTHER_CLASS = (0, 1, 2)


@dataclass(frozen=True)
class VariantCase:
    """One generated case: image and label (uint8, ``size`` x ``size``) and the mask of every shape (``(n, size,
    size)`` bool, drawing order; a later shape covers an earlier one where they overlap)."""

    image: np.ndarray
    label: np.ndarray
    masks: np.ndarray

    @property
    def coverage(self) -> np.ndarray:
        """Number of shapes covering each pixel (``>= 2``: an overlap region)."""
        return self.masks.sum(0).astype(np.uint8) if len(self.masks) else np.zeros(self.label.shape, np.uint8)


def _masks(specs: list[ShapeSpec], size: int) -> np.ndarray:
    return np.stack([s.mask(size) for s in specs]) if specs else np.zeros((0, size, size), bool)


def variant_case(variant: str, seed: int, index: int, size: int) -> VariantCase:
    """Case ``index`` of ``variant`` for generator ``seed`` at ``size`` x ``size`` pixels (deterministic)."""
    if variant == "shapes":
        rng = np.random.default_rng([seed, index])
        specs = random_shapes(rng, size=size)
        image, label = render_shapes(specs, size=size, rng=rng)
        return VariantCase(image, label, _masks(specs, size))
    if variant not in _TAG:
        raise PipelineError(f"unknown shapes variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    rng = np.random.default_rng([seed, index, _TAG[variant]])
    return _context_case(rng, size) if variant == "context" else _precision_case(rng, size)


def _background(rng: np.random.Generator, size: int, level: tuple[float, float]) -> np.ndarray:
    """A background level with a linear gradient and a smooth texture (Gaussian-filtered noise, sigma 2 px)."""
    rows, cols = np.mgrid[0:size, 0:size] / max(size - 1, 1) * 2 - 1
    direction = float(rng.uniform(0.0, 2 * math.pi))
    ramp = float(rng.uniform(0.0, 20.0))
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 2.0)
    texture *= float(rng.uniform(6.0, 14.0)) / max(float(texture.std()), 1e-6)
    return float(rng.uniform(*level)) + ramp / 2 * (rows * math.sin(direction) + cols * math.cos(direction)) + texture


def _fits(spec: ShapeSpec, size: int, margin: float) -> bool:
    """Whether the whole shape lies at least ``margin`` px inside the image (its circumscribed circle does)."""
    a, b = spec.half_axes
    radius = max(a, b) if spec.kind == "ellipse" else math.hypot(a, b)
    return all(margin + radius <= c <= size - 1 - margin - radius for c in spec.center)


def _ring(spec: ShapeSpec, size: int, width: float) -> np.ndarray:
    """The outline: pixels of the shape within about ``width`` px of its border."""
    a, b = spec.half_axes
    inner = replace(spec, half_axes=(max(a - width, 0.1), max(b - width, 0.1)))
    return spec.mask(size) & ~inner.mask(size)


def _stroke(rng: np.random.Generator, size: int) -> np.ndarray:
    """An open stroke ``OUTLINE_WIDTH`` px wide: a straight segment or a circular arc of 60-200 degrees."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    half = OUTLINE_WIDTH / 2
    if rng.uniform() < 0.5:
        length = float(rng.uniform(0.2, 0.6)) * size
        angle = float(rng.uniform(0.0, math.pi))
        r0, c0 = (float(rng.uniform(0.1, 0.9) * size) for _ in range(2))
        dr, dc = math.sin(angle), math.cos(angle)
        t = np.clip((rows - r0) * dr + (cols - c0) * dc, 0.0, length)
        return np.hypot(rows - (r0 + t * dr), cols - (c0 + t * dc)) <= half
    radius = float(rng.uniform(0.1, 0.35)) * size
    r0, c0 = (float(rng.uniform(0.1, 0.9) * size) for _ in range(2))
    start, span = float(rng.uniform(0.0, 2 * math.pi)), math.radians(float(rng.uniform(60.0, 200.0)))
    theta = np.mod(np.arctan2(rows - r0, cols - c0) - start, 2 * math.pi)
    return (np.abs(np.hypot(rows - r0, cols - c0) - radius) <= half) & (theta <= span)


def _context_case(rng: np.random.Generator, size: int) -> VariantCase:
    image = _background(rng, size, (40.0, 140.0))
    label = np.zeros((size, size), np.uint8)
    specs: list[ShapeSpec] = []
    taken = np.zeros((size, size), bool)  # shapes grown by 3 px: later shapes and strokes stay off them
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(30):
            kind = ("ellipse", "rectangle")[int(rng.integers(2))]
            a, b = (float(rng.uniform(*CONTEXT_HALF_AXES)) * size for _ in range(2))
            if min(a, b) < 0.5 * max(a, b):
                continue
            spec = ShapeSpec(kind, (float(rng.uniform(0, size)), float(rng.uniform(0, size))), (a, b),
                             float(rng.uniform(0.0, math.pi)), 0.0)
            mask = spec.mask(size)
            if _fits(spec, size, 2.0) and not (mask & taken).any():
                specs.append(spec)
                taken |= ndimage.binary_dilation(mask, iterations=3)
                label[mask] = KIND_LABEL[kind]
                image[_ring(spec, size, OUTLINE_WIDTH)] += float(rng.uniform(35.0, 80.0))
                break
    for _ in range(int(rng.integers(2, 6))):
        for _attempt in range(10):
            stroke = _stroke(rng, size)
            if stroke.any() and not (stroke & taken).any():
                image[stroke] += float(rng.uniform(35.0, 80.0))
                break
    image += rng.normal(0.0, float(rng.uniform(3.0, 8.0)), image.shape)
    return VariantCase(np.clip(np.rint(image), 0, 255).astype(np.uint8), label, _masks(specs, size))


def _small_spec(rng: np.random.Generator, size: int, kind: str, role: str, intensity: float) -> ShapeSpec:
    """A thin rectangle, a small round ellipse, or (role ``pair``) a small-to-medium object, at a random place."""
    if role == "thin":
        half_axes = (float(rng.uniform(5.0, 14.0)), float(rng.uniform(1.0, 1.8)))
    elif role == "small":
        r = float(rng.uniform(1.8, 5.0))
        half_axes = (r, r * float(rng.uniform(0.65, 1.0)))
    else:
        half_axes = (float(rng.uniform(3.0, 8.0)), float(rng.uniform(3.0, 8.0)))
    center = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
    return ShapeSpec(kind, center, half_axes, float(rng.uniform(0.0, math.pi)), intensity)


def _place_partner(rng: np.random.Generator, size: int, first: ShapeSpec, second: ShapeSpec, gap: int,
                   free: np.ndarray) -> ShapeSpec | None:
    """Slide ``second`` towards ``first`` along a random direction until exactly ``gap`` background pixels
    separate them (nearest pixel centres ``gap + 1`` to ``gap + 2`` px apart); None when no direction works."""
    distance = ndimage.distance_transform_edt(~first.mask(size))
    for _attempt in range(8):
        theta = float(rng.uniform(0.0, 2 * math.pi))
        step = (math.sin(theta), math.cos(theta))
        t = sum(first.half_axes) + sum(second.half_axes) + gap + 3.0
        while t > 0:
            spec = replace(second, center=(first.center[0] + t * step[0], first.center[1] + t * step[1]))
            mask = spec.mask(size)
            nearest = float(distance[mask].min()) if mask.any() else math.inf
            if nearest < gap + 2:
                ok = nearest >= gap + 1 and _fits(spec, size, 1.0) and free[mask].all()
                if ok:
                    return spec
                break
            t -= 0.25
    return None


def _precision_case(rng: np.random.Generator, size: int) -> VariantCase:
    specs: list[ShapeSpec] = []
    occupied = np.zeros((size, size), bool)  # objects grown by 3 px: unrelated objects keep 3 px apart

    def add(group: list[ShapeSpec]) -> None:
        for s in group:
            specs.append(s)
        grown = ndimage.binary_dilation(np.any([s.mask(size) for s in group], axis=0), iterations=3)
        occupied[grown] = True

    def intensity() -> float:
        return _draw_intensity(rng, [s.intensity for s in specs])

    for role, count in (("pair", int(rng.integers(1, 3))), ("thin", int(rng.integers(1, 4))),
                        ("small", int(rng.integers(2, 5)))):
        for _ in range(count):
            for _attempt in range(30):
                kind = "rectangle" if role == "thin" else "ellipse" if role == "small" else \
                    ("ellipse", "rectangle")[int(rng.integers(2))]
                first = _small_spec(rng, size, kind, role, intensity())
                if not _fits(first, size, 1.0) or occupied[first.mask(size)].any():
                    continue
                if role != "pair":
                    add([first])
                    break
                other = ("ellipse", "rectangle")[int(rng.integers(2))]
                gaps = PRECISION_GAPS_SAME_CLASS if other == kind else PRECISION_GAPS_OTHER_CLASS
                gap = int(gaps[int(rng.integers(len(gaps)))])
                partner = _small_spec(rng, size, other, role, _draw_intensity(rng, [s.intensity for s in specs]
                                                                              + [first.intensity]))
                partner = _place_partner(rng, size, first, partner, gap, ~occupied)
                if partner is not None:
                    add([first, partner])
                    break
    image, label = render_shapes(specs, size=size, rng=rng)
    return VariantCase(image, label, _masks(specs, size))


def variant_msd_dataset(variant: str, n: int, seed: int, size: int, val_fraction: float,
                        test_fraction: float) -> MSDDataset:
    """The MSD description of a variant: the shapes split and file names, the variant named in the header."""
    base = shapes_msd_dataset(n, seed, size, val_fraction, test_fraction)
    header = dict(base.header, name=f"Shapes2D {variant}",
                  description=f"Shapes variant '{variant}' (pipeline.data.shapes_variants): ellipses (1) and "
                              "rectangles (2)",
                  release=f"variant={variant} seed={seed} n={n} size={size}")
    return replace(base, header=header)


def make_shape_variant(
    out_dir: str | Path, variant: str, n: int = 1000, seed: int = 0, size: int = 128, val_fraction: float = 0.1,
    test_fraction: float = 0.1, overwrite: bool = False,
) -> Path:
    """Write ``n`` cases of ``variant`` as an MSD-style PNG data set in ``out_dir``; return its dataset.json.

    ``shapes`` is ``make_shapes`` itself. Refuses (PipelineError, nothing changed) on bad arguments or an existing
    data set, unless ``overwrite=True`` and that data set is the same variant.
    """
    if variant == "shapes":
        return make_shapes(out_dir, n=n, seed=seed, size=size, val_fraction=val_fraction,
                           test_fraction=test_fraction, overwrite=overwrite)
    if variant not in _TAG:
        raise PipelineError(f"unknown shapes variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if int(n) != n or n < 1 or int(seed) != seed or seed < 0:
        raise PipelineError(f"n={n}, seed={seed}: n must be a positive integer and seed a non-negative one")
    if int(size) != size or size < 32:
        raise PipelineError(f"size={size}: the {variant} variant needs an integer size >= 32")
    n, seed, size = int(n), int(seed), int(size)
    dataset = variant_msd_dataset(variant, n, seed, size, val_fraction, test_fraction)

    def encode(case: MSDCase) -> tuple[bytes, bytes]:
        c = variant_case(variant, seed, case.index, size)
        return png_bytes(c.image), png_bytes(c.label)

    return write_msd_dataset(Path(out_dir).absolute(), dataset, encode, overwrite=overwrite)
