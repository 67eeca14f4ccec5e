"""The study's outputs from ``runs.csv``: the markdown results (mean ± std over seeds, differences set against the
spread between seeds), each metric against network depth with error bars, and panels of the same test cases for
every model (as the report's Fig. 1.9).

A difference is called "beyond the seed spread" only when the seed ranges do not overlap: every seed of one model
scores better than every seed of the other (with 3 seeds each, 1 chance in 10 under no difference at all); otherwise
it is "within the seed spread". Standard deviations are over seeds (n - 1 in the denominator).
"""
from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.apps.study.design import ABLATIONS, MODELS_2D, MODELS_3D, Budget

METRICS_2D = [("iou", "IoU"), ("dice", "Dice"), ("bf1", "boundary F1 @2 px"), ("hd95", "HD95 (px)"),
              ("overlap_iou", "IoU in overlaps"), ("gap_accuracy", "gap accuracy"), ("iou_small", "IoU small obj."),
              ("iou_medium", "IoU medium obj."), ("iou_large", "IoU large obj.")]
METRICS_3D = [("dice_pancreas", "Dice pancreas"), ("dice_tumour", "Dice tumour"),
              ("hd95_pancreas", "HD95 pancreas (mm)"), ("hd95_tumour", "HD95 tumour (mm)"),
              ("recall_pancreas", "recall pancreas"), ("recall_tumour", "recall tumour")]
LOWER_IS_BETTER = {"hd95", "hd95_pancreas", "hd95_tumour"}
SHOWS = "## What it shows"
CLASS_COLOURS = [(0, 0, 0), (1.0, 0.6, 0.1), (0.2, 0.8, 1.0)]  # background, ellipse, rectangle


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def values(rows: Sequence[dict], part: str, variant: str, model: str, arm: str, metric: str) -> dict[int, float]:
    """seed -> value of ``metric`` for the finished runs of one model/arm (missing and NaN values left out)."""
    out = {}
    for r in rows:
        if (r["part"], r["variant"], r["model"], r["arm"]) == (part, variant, model, arm):
            x = _num(r.get(metric))
            if x is not None:
                out[int(r["seed"])] = x
    return out


def mean_std(xs: Sequence[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value); None for none."""
    if not xs:
        return None
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def fmt(xs: Sequence[float], metric: str) -> str:
    """``mean ± std`` of a metric's values over seeds, ``–`` when there are none."""
    ms = mean_std(list(xs))
    if ms is None:
        return "–"
    digits = 1 if metric.startswith("hd95") else 3
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def spread_verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """"beyond the seed spread" when the value ranges of ``a`` and ``b`` do not overlap, else "within"."""
    if len(a) < 2 or len(b) < 2:
        return "one seed: no spread"
    return "beyond the seed spread" if max(a) < min(b) or max(b) < min(a) else "within the seed spread"


def _delta(a: Sequence[float], b: Sequence[float], metric: str) -> str:
    if not a or not b:
        return "–"
    digits = 1 if metric.startswith("hd95") else 3
    return f"{np.mean(b) - np.mean(a):+.{digits}f}"


def machine_lines(command: str) -> list[str]:
    """Markdown lines naming the machine, the software and the command."""
    import monai
    import torch

    from pipeline.planning.machine import cpu_has_native_bf16

    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [f"- machine: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, native "
            f"bfloat16: {cpu_has_native_bf16()}, CUDA: {torch.cuda.is_available()}",
            f"- software: python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}",
            f"- command: `{command}`"]


def _timing_lines(rows: Sequence[dict]) -> list[str]:
    total = sum(_num(r.get("run_s")) or 0.0 for r in rows)
    train = sum(_num(r.get("train_s")) or 0.0 for r in rows)
    days = sorted({str(r.get("finished", ""))[:10] for r in rows if r.get("finished")})
    return [f"- runs finished: {len(rows)}, on {', '.join(days) or '–'}; run time {total / 60:.1f} min in all "
            f"(training {train / 60:.1f} min; the rest is process start, caching, inference and scoring; data "
            "generation not included)"]


def _variant_section(rows: Sequence[dict], budget: Budget, variant: str) -> list[str]:
    size = budget.variants[variant]
    labels = " | ".join(label for _, label in METRICS_2D)
    head = f"| model | depth | seeds | {labels} | objects s/m/l | train (s) |"
    lines = [f"### Data: `{variant}` ({size} x {size} px)", "", head, "|" + "---|" * (len(METRICS_2D) + 5)]
    for name in budget.models_2d:
        m = MODELS_2D[name]
        seeds = values(rows, "2d", variant, name, "recipe", "iou")
        cells = [fmt(list(values(rows, "2d", variant, name, "recipe", k).values()), k) for k, _ in METRICS_2D]
        counts = [values(rows, "2d", variant, name, "recipe", f"objects_{b}") for b in ("small", "medium", "large")]
        objects = "/".join(f"{np.mean(list(c.values())):.0f}" if c else "–" for c in counts)
        train = list(values(rows, "2d", variant, name, "recipe", "train_s").values())
        seconds = f"{np.mean(train):.0f}" if train else "–"
        lines.append(f"| {m.label} | {m.depth} | {len(seeds)} | {' | '.join(cells)} | {objects} | {seconds} |")
    lines += ["", "Best against runner-up (difference: best minus runner-up), and the context U-Net against the "
              "precision U-Net (difference: context minus precision); HD95: lower is better.", "",
              "| metric | best | runner-up | difference | | context minus precision | |",
              "|---|---|---|---|---|---|---|"]
    for key, label in METRICS_2D:
        per_model = {n: list(values(rows, "2d", variant, n, "recipe", key).values()) for n in budget.models_2d}
        ranked = sorted((n for n in per_model if per_model[n]), key=lambda n: np.mean(per_model[n]),
                        reverse=key not in LOWER_IS_BETTER)
        if len(ranked) >= 2:
            best, second = ranked[0], ranked[1]
            difference = _delta(per_model[second], per_model[best], key)
            cmp = (f"{MODELS_2D[best].label} | {MODELS_2D[second].label} | {difference} | "
                   f"{spread_verdict(per_model[best], per_model[second])}")
        else:
            cmp = "– | – | – | –"
        p, c = per_model.get("unet_precision", []), per_model.get("unet_context", [])
        pc = f"{_delta(p, c, key)} | {spread_verdict(p, c)}" if p and c else "– | –"
        lines.append(f"| {label} | {cmp} | {pc} |")
    return lines + [""]


def _ablation_section(rows: Sequence[dict], budget: Budget) -> list[str]:
    lines = ["## Ablations", ""]
    for arm in budget.ablations:
        a = ABLATIONS[arm]
        what = {"boundary_loss": "boundary-weighted loss (w0 = 10, sigma = 5 px, class-balanced w_c) instead of DiceCE",
                "no_elastic": "elastic deformation off (the recipe has it on, p = 0.2)"}[arm]
        lines += [f"### {what}: {MODELS_2D[a.model].label} on `{a.variant}`", "", f"Why there: {a.why}.", "",
                  "| metric | recipe | ablation | difference (ablation - recipe) | per seed | |",
                  "|---|---|---|---|---|---|"]
        for key, label in METRICS_2D:
            base = values(rows, "2d", a.variant, a.model, "recipe", key)
            test = values(rows, "ablation", a.variant, a.model, arm, key)
            paired = [test[s] - base[s] for s in sorted(set(base) & set(test))]
            digits = 1 if key.startswith("hd95") else 3
            per_seed = ", ".join(f"{d:+.{digits}f}" for d in paired) or "–"
            b, t = list(base.values()), list(test.values())
            lines.append(f"| {label} | {fmt(b, key)} | {fmt(t, key)} | {_delta(b, t, key)} | {per_seed} | "
                         f"{spread_verdict(b, t) if b and t else '–'} |")
        lines.append("")
    return lines


def _ct_section(rows: Sequence[dict], budget: Budget) -> list[str]:
    lines = ["## 3D: Attention U-Net against the U-Net of equal width (CT pancreas phantoms)", "",
             f"{budget.ct_cases} phantoms (20 % of them for validation, drawn by the seed), {budget.ct_test_cases} "
             f"held-out test phantoms, {budget.epochs_3d} epochs each; both networks base width 16, preset standard, "
             "deep supervision. Oktay et al. 2018 report Dice 0.840 (Attention U-Net) against 0.814 (U-Net) on "
             "CT-150.", "",
             "| model | seeds | " + " | ".join(label for _, label in METRICS_3D) + " | train (s) |",
             "|" + "---|" * (len(METRICS_3D) + 3)]
    per = {}
    for name, m in MODELS_3D.items():
        per[name] = {k: list(values(rows, "3d", "pancreas", name, "recipe", k).values()) for k, _ in METRICS_3D}
        train = list(values(rows, "3d", "pancreas", name, "recipe", "train_s").values())
        seconds = f"{np.mean(train):.0f}" if train else "–"
        cells = " | ".join(fmt(per[name][k], k) for k, _ in METRICS_3D)
        lines.append(f"| {m.label} | {len(per[name]['dice_pancreas'])} | {cells} | {seconds} |")
    a, u = per["attention_unet"], per["unet"]
    lines.append("| difference (attention - plain) | | " + " | ".join(
        f"{_delta(u[k], a[k], k)} ({spread_verdict(u[k], a[k]) if u[k] and a[k] else '–'})" for k, _ in METRICS_3D)
        + " | |")
    return lines + [""]


def write_markdown(out: Path, budget: Budget, rows: Sequence[dict], command: str | None = None) -> Path:
    """``results.md``: tables per data variant, ablations and 3D; a hand-written "What it shows" survives reruns."""
    command = command or " ".join(shlex.quote(a) for a in ["python", "-m", "pipeline", *sys.argv[1:]])
    lines = [f"# Context against precision: results ({budget.name} study)", "",
             f"- written: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", *machine_lines(command),
             *_timing_lines(rows), "",
             f"Equal budget: {budget.epochs_2d} epochs for every 2D model ({budget.n_images} images per variant, "
             f"10 % validation, 20 % test; batch {budget.batch_size_2d}); the best validation checkpoint is scored on "
             "the test images. Every cell is mean ± std over the seeds. See `docs/study.md` for the design, "
             "`runs.csv` for every run, `metrics_vs_depth.png` and `panels_<variant>.png` for the plots.", "",
             "## 2D: FCN, U-Net precision / standard / context, Attention U-Net", ""]
    for variant in budget.variants:
        lines += _variant_section(rows, budget, variant)
    lines += _ablation_section(rows, budget)
    lines += _ct_section(rows, budget)
    path = out / "results.md"
    old = path.read_text() if path.is_file() else ""
    kept = old[old.index(SHOWS):] if SHOWS in old else ""
    path.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
    return path


def plot_depth(out: Path, budget: Budget, rows: Sequence[dict]) -> Path:
    """Each 2D metric against depth (poolings): U-Net presets as lines with error bars (std over seeds), FCN and
    Attention U-Net as markers beside depth 3; one colour per data variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 11))
    axes = fig.subplots(3, 3).ravel()
    colours = dict(zip(budget.variants, ("tab:blue", "tab:orange", "tab:green")))
    for ax, (key, label) in zip(axes, METRICS_2D):
        for variant, colour in colours.items():
            xs, ms, ss = [], [], []
            for name in ("unet_precision", "unet_standard", "unet_context"):
                stats = mean_std(list(values(rows, "2d", variant, name, "recipe", key).values()))
                if stats and name in budget.models_2d:
                    xs.append(MODELS_2D[name].depth)
                    ms.append(stats[0])
                    ss.append(stats[1])
            if xs:
                ax.errorbar(xs, ms, yerr=ss, color=colour, marker="o", capsize=3, label=f"U-Net, {variant}")
            for name, dx, marker in (("fcn", -0.15, "s"), ("attention_unet", 0.15, "^")):
                stats = mean_std(list(values(rows, "2d", variant, name, "recipe", key).values()))
                if stats:
                    ax.errorbar([MODELS_2D[name].depth + dx], [stats[0]], yerr=[stats[1]], color=colour,
                                marker=marker, capsize=3, ls="none",
                                label=f"{MODELS_2D[name].label}, {variant}")
        ax.set_title(label)
        ax.set_xticks([2, 3, 4], ["2\nprecision", "3\nstandard", "4\ncontext"])
        ax.set_xlim(1.6, 4.4)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ± std over seeds")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle("Metrics against depth (poolings); squares: FCN, triangles: Attention U-Net (both depth 3)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    path = out / "metrics_vs_depth.png"
    fig.savefig(path, dpi=70)
    return path


def panel_cases(data: dict[str, Any], n: int = 4) -> list[tuple[str, str]]:
    """``(case id, why)`` of up to ``n`` test cases chosen from the data alone: the most overlap, the narrowest
    gaps, the smallest object, the largest object, then the most objects."""
    from scipy import ndimage

    from pipeline.data.shapes_variants import variant_case
    from pipeline.apps.study.metrics import gap_mask

    facts = []
    for path in sorted((Path(data["dir"]) / "labelsTs").glob("*.png")):
        index = int(path.stem.split("_")[-1])
        case = variant_case(data["variant"], data["seed"], index, data["size"])
        parts = [ndimage.label(case.label == c, np.ones((3, 3)))[0] for c in (1, 2)]
        areas = [int(a) for p in parts for a in np.bincount(p.ravel())[1:]]
        facts.append({"case": path.stem, "overlap": int((case.coverage >= 2).sum()),
                      "gap": int(gap_mask(case.label).sum()), "small": -min(areas, default=10**9),
                      "large": max(areas, default=0), "count": len(areas)})
    chosen: list[tuple[str, str]] = []
    for key, why in (("overlap", "most overlap"), ("gap", "narrowest gaps"), ("small", "smallest object"),
                     ("large", "largest object"), ("count", "most objects")):
        taken = {c for c, _ in chosen}
        candidates = [f for f in facts if f["case"] not in taken and (f[key] > 0 or key not in ("overlap", "gap"))]
        if candidates and len(chosen) < n:
            chosen.append((min(candidates, key=lambda f: (-f[key], f["case"]))["case"], why))
    return chosen


def _case_iou(pred: np.ndarray, label: np.ndarray) -> float:
    ious = [((pred == c) & (label == c)).sum() / ((pred == c) | (label == c)).sum() for c in (1, 2)
            if ((pred == c) | (label == c)).any()]
    return float(np.mean(ious)) if ious else float("nan")


def plot_panels(out: Path, budget: Budget, data: dict[str, Any], work: Path) -> Path | None:
    """Fig. 1.9-style panels: chosen test cases (rows) of one variant, image, label and every model's prediction
    (first seed), each prediction with its mean IoU over the classes present."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from PIL import Image

    cases = panel_cases(data)
    if not cases:
        return None
    seed = budget.seeds[0]
    cmap = ListedColormap(CLASS_COLOURS)
    models = list(budget.models_2d)
    fig = Figure(figsize=(1.9 * (len(models) + 2), 2.0 * len(cases) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(cases), len(models) + 2))
    root = Path(data["dir"])
    for row, (case, why) in enumerate(cases):
        image = np.array(Image.open(root / "imagesTs" / f"{case}.png"))
        label = np.array(Image.open(root / "labelsTs" / f"{case}.png"))
        axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(f"{case}\n({why})", fontsize=8)
        axes[row, 1].imshow(label, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        for col, name in enumerate(models, start=2):
            run_dir = work / "runs" / "2d" / data["variant"] / name / f"seed{seed}"
            pred_path = run_dir / "predictions" / f"{case}_seg.png"
            ax = axes[row, col]
            if pred_path.is_file():
                pred = np.array(Image.open(pred_path))
                ax.imshow(pred, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
                ax.set_xlabel(f"IoU {_case_iou(pred, label):.2f}", fontsize=8)
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    for col, title in enumerate(["image", "label"] + [MODELS_2D[m].label for m in models]):
        axes[0, col].set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"'{data['variant']}' test cases (seed {seed}); orange: ellipse, blue: rectangle", fontsize=10)
    fig.tight_layout()
    path = out / f"panels_{data['variant']}.png"
    fig.savefig(path, dpi=70)
    return path


def plot_variant_examples(path: Path, variants: dict[str, int], n: int = 4, seed: int = 0) -> Path:
    """Examples of each data variant (cases 0..n-1 of generator ``seed``): image above, label below."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from pipeline.data.shapes_variants import variant_case

    fig = Figure(figsize=(1.6 * n * len(variants), 3.5))
    axes = fig.subplots(2, n * len(variants))
    for v, (variant, size) in enumerate(variants.items()):
        for i in range(n):
            case = variant_case(variant, seed, i, size)
            col = v * n + i
            axes[0, col].imshow(case.image, cmap="gray", vmin=0, vmax=255)
            axes[1, col].imshow(case.label, cmap=ListedColormap(CLASS_COLOURS), vmin=0, vmax=2,
                                interpolation="nearest")
            if i == 0:
                axes[0, col].set_title(f"{variant} ({size} px)", loc="left", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=60)
    return path


def write_report(out: Path, budget: Budget, rows: Sequence[dict], data: dict[str, dict[str, Any]], work: Path) -> Path:
    """Every output of the study from its rows: ``results.md``, ``metrics_vs_depth.png``, ``panels_<variant>.png``,
    and ``variants.png`` (examples of the data)."""
    path = write_markdown(out, budget, rows)
    plot_depth(out, budget, rows)
    plot_variant_examples(out / "variants.png", budget.variants)
    for variant in budget.variants:
        if variant in data:
            plot_panels(out, budget, data[variant], work)
    return path
