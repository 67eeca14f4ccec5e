"""Realism benchmark of the synthetic pancreas CT phantoms.

Measures per-tissue HU statistics against typical published ranges, generation time, the best Dice a single HU
interval threshold can reach for the pancreas (it should be low: the task must need a network), and renders a
montage of axial and coronal slices with label contours.

    python -m benchmarks run phantom_realism [--n 10 --seed 0 --scale 1.0 --dataset-n 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from benchmarks.common import cpu_model, result_path, write_json  # noqa: E402
from pipeline.data.phantom import TISSUES, PhantomCase, case_seed, generate_case, make_pancreas_dataset  # noqa: E402

HU_MIN, HU_BINS = -1024, 4096  # int16 HU clipped to [-1024, 3071] by the generator

# Typical values in portal-venous-phase abdominal CT as used for this project's specification (common radiology
# reference values; unenhanced soft tissue would be lower, true portal-venous liver/pancreas often 90-120 HU).
TYPICAL_RANGES: dict[str, tuple[float, float, str]] = {
    "subcutaneous_fat": (-120, -80, "fat about -100"),
    "visceral_fat": (-120, -80, "fat about -100"),
    "muscle": (35, 65, "skeletal muscle 40-60"),
    "liver": (50, 70, "liver 50-70 (spec, venous phase)"),
    "spleen": (45, 60, "spleen 45-60"),
    "pancreas": (30, 60, "pancreas 30-60 (spec, venous phase)"),
    "tumour": (0, 50, "hypodense PDAC 10-40 below pancreas"),
    "kidney_cortex": (150, 200, "renal cortex 150-200"),
    "kidney_medulla": (80, 120, "renal medulla 80-120"),
    "aorta": (150, 300, "contrast aorta 150-250 or more"),
    "ivc": (120, 180, "IVC 120-180"),
    "bone_cortical": (300, 2000, "cortical bone > 300 (rim > 700)"),
    "bone_cancellous": (150, 350, "cancellous bone 200-300"),
    "bowel_fluid": (-10, 30, "water-like fluid 0-20"),
    "bowel_gas": (-1024, -900, "gas about -1000"),
    "gallbladder": (-10, 30, "bile 0-20"),
    "lung": (-900, -700, "lung -900 to -700"),
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def canonical(case: PhantomCase) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HU, label, tissue reoriented to RAS array order with nibabel (only the affine is used), plus spacing."""
    ornt = nib.orientations.io_orientation(case.affine)
    arrays = [nib.orientations.apply_orientation(a, ornt) for a in (case.hu, case.label, case.tissue)]
    spacing = np.asarray(case.spacing)[np.argsort(ornt[:, 0])]
    return arrays[0], arrays[1], arrays[2], spacing


def core_mask(tissue: np.ndarray) -> np.ndarray:
    """Voxels whose 4 in-plane neighbours have the same tissue (away from partial-volume edges)."""
    core = np.zeros(tissue.shape, bool)
    t = tissue[1:-1, 1:-1]
    core[1:-1, 1:-1] = ((t == tissue[:-2, 1:-1]) & (t == tissue[2:, 1:-1]) & (t == tissue[1:-1, :-2])
                        & (t == tissue[1:-1, 2:]))
    return core


def tissue_histograms(hu: np.ndarray, tissue: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(n_tissues, 4096) histogram of integer HU per tissue class."""
    n_t = max(TISSUES.values()) + 1
    key = tissue.astype(np.int64) * HU_BINS + (hu.astype(np.int64) - HU_MIN)
    if mask is not None:
        key = key[mask]
    return np.bincount(key.ravel(), minlength=n_t * HU_BINS).reshape(n_t, HU_BINS)


def hist_stats(h: np.ndarray) -> dict[str, float]:
    values = np.arange(HU_BINS) + HU_MIN
    n = h.sum()
    if n == 0:
        return {}
    mean = float((h * values).sum() / n)
    std = float(np.sqrt((h * (values - mean) ** 2).sum() / n))
    cdf = np.cumsum(h) / n
    pct = {p: float(values[np.searchsorted(cdf, p / 100)]) for p in (5, 50, 95)}
    return {"n": int(n), "mean": mean, "std": std, "p5": pct[5], "p50": pct[50], "p95": pct[95]}


def best_interval_dice(hu: np.ndarray, target: np.ndarray) -> tuple[float, int, int]:
    """Best Dice over all HU intervals [lo, hi] used as a whole-volume threshold segmentation of `target`."""
    idx = hu.astype(np.int64).ravel() - HU_MIN
    all_h = np.bincount(idx, minlength=HU_BINS)
    tgt_h = np.bincount(idx[target.ravel()], minlength=HU_BINS)
    n_target = int(tgt_h.sum())
    if n_target == 0:
        return 0.0, 0, 0
    present = np.flatnonzero(tgt_h)
    lo_b, hi_b = present[0], present[-1] + 1  # an optimal interval starts and ends on target HU values
    all_c = np.concatenate([[0], np.cumsum(all_h[lo_b:hi_b])])
    tgt_c = np.concatenate([[0], np.cumsum(tgt_h[lo_b:hi_b])])
    tp = tgt_c[None, 1:] - tgt_c[:-1, None]  # [i, j]: interval from bin i to bin j (inclusive)
    pred = all_c[None, 1:] - all_c[:-1, None]
    dice = np.divide(2.0 * tp, pred + n_target, out=np.zeros(tp.shape), where=pred > 0)
    dice = np.triu(dice)
    i, j = np.unravel_index(int(np.argmax(dice)), dice.shape)
    return float(dice[i, j]), int(lo_b + i + HU_MIN), int(lo_b + j + HU_MIN)


def render_montage(cases: list[PhantomCase], path: Path) -> None:
    """Axial slice through the largest pancreas cross-section and coronal slice through the pancreas, W400/L40,
    radiological display (patient right on the image left); pancreas outline yellow, tumour red."""
    fig, axes = plt.subplots(2, len(cases), figsize=(4.2 * len(cases), 8.4), facecolor="black")
    axes = np.atleast_2d(axes).reshape(2, len(cases))
    for col, case in enumerate(cases):
        hu, label, _, sp = canonical(case)
        focus = label == 2 if case.has_tumour else label > 0  # show the tumour when there is one
        z = int(np.argmax(focus.sum(axis=(0, 1))))
        y = int(round(np.nonzero(focus)[1].mean()))
        body = np.argwhere((hu > -500).any(axis=2))
        (x0, y0), (x1, y1) = np.maximum(body.min(axis=0) - 8, 0), body.max(axis=0) + 9
        hu, label = hu[x0:x1, y0:y1], label[x0:x1, y0:y1]
        y -= y0
        views = [
            (hu[::-1, ::-1, z].T, label[::-1, ::-1, z].T, sp[1] / sp[0], f"axial, case {col}"),
            (hu[::-1, y, ::-1].T, label[::-1, y, ::-1].T, sp[2] / sp[0], "coronal"),
        ]
        for row, (img, lab, aspect, title) in enumerate(views):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=-160, vmax=240, aspect=aspect, interpolation="bilinear")
            if (lab > 0).any():
                ax.contour((lab > 0).astype(float), [0.5], colors=["yellow"], linewidths=0.7)
            if (lab == 2).any():
                ax.contour((lab == 2).astype(float), [0.5], colors=["red"], linewidths=0.7)
            ax.text(0.02, 0.5, "R", color="white", transform=ax.transAxes, fontsize=9, va="center")
            ax.text(0.96, 0.5, "L", color="white", transform=ax.transAxes, fontsize=9, va="center")
            tumour = "tumour" if case.has_tumour else "no tumour"
            ax.set_title(f"{title} ({tumour})" if row == 0 else f"{title}, {'x'.join(f'{s:.2f}' for s in sp)} mm",
                         color="white", fontsize=9)
            ax.axis("off")
    fig.suptitle("Pancreas phantoms, W400/L40, yellow = pancreas (label 1+2), red = tumour (label 2)",
                 color="white", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, facecolor="black")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="cases to analyse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--dataset-n", type=int, default=20,
                        help="also time make_pancreas_dataset(n=...) into a temporary folder (0: skip)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report (default benchmarks/results/phantom_realism_cpu.md)")
    parser.add_argument("--montage", type=Path, default=ROOT / "docs/img/phantom_montage.png")
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.phantom_realism", *sys.argv[1:]])
    out = args.out or result_path("phantom_realism", ".md", by_precision=False)

    n_t = max(TISSUES.values()) + 1
    hist_all = np.zeros((n_t, HU_BINS), np.int64)
    hist_core = np.zeros((n_t, HU_BINS), np.int64)
    per_case_means: dict[str, list[float]] = {name: [] for name in TISSUES}
    rows, montage_cases = [], []
    for i in range(args.n):
        t0, c0 = time.perf_counter(), time.process_time()
        case = generate_case(case_seed(args.seed, i), args.scale)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        hu, label, tissue, spacing = canonical(case)
        h_all = tissue_histograms(hu, tissue)
        hist_all += h_all
        hist_core += tissue_histograms(hu, tissue, core_mask(tissue))
        for name, tid in TISSUES.items():
            if h_all[tid].sum():
                per_case_means[name].append(hist_stats(h_all[tid])["mean"])
        d1, lo1, hi1 = best_interval_dice(hu, label == 1)
        d12, lo12, hi12 = best_interval_dice(hu, label > 0)
        rows.append(dict(i=i, seconds=seconds, cpu=cpu, shape=hu.shape, spacing=spacing, axcodes="".join(case.axcodes),
                         tumour=case.has_tumour, pancreas_ml=float((label > 0).sum() * np.prod(spacing) / 1000),
                         tumour_ml=float((label == 2).sum() * np.prod(spacing) / 1000),
                         dice1=(d1, lo1, hi1), dice12=(d12, lo12, hi12)))
        if len(montage_cases) < 4:
            montage_cases.append(case)
        print(f"case {i}: {seconds:.2f} s, {hu.shape}, Dice(best HU interval) pancreas {d1:.3f}, "
              f"pancreas+tumour {d12:.3f}",
              flush=True)
    render_montage(montage_cases, args.montage)

    dataset_seconds = None
    if args.dataset_n > 0:
        with tempfile.TemporaryDirectory() as tmp:
            load_before = os.getloadavg()[0]
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            make_pancreas_dataset(Path(tmp) / "Task07_Pancreas_phantom", n=args.dataset_n, seed=args.seed,
                                  scale=args.scale)
            dataset_seconds = time.perf_counter() - t0
            dataset_cpu = cpu_seconds() - cpu0
            load_after = os.getloadavg()[0]
            n_files = args.dataset_n + max(1, args.dataset_n // 5)
            dataset_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*.nii.gz")) / 1e6
        print(f"make_pancreas_dataset(n={args.dataset_n}): {dataset_seconds:.1f} s wall, {dataset_cpu:.1f} s CPU "
              f"for {n_files} cases", flush=True)

    secs = np.array([r["seconds"] for r in rows])
    cpus = np.array([r["cpu"] for r in rows])
    vox = np.array([np.prod(r["shape"]) for r in rows])
    d1 = np.array([r["dice1"][0] for r in rows])
    d12 = np.array([r["dice12"][0] for r in rows])
    lines = [
        "# Pancreas phantom realism benchmark",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs visible, Python {platform.python_version()}, "
        f"numpy {np.__version__}",
        f"- Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- Command: `{command}`",
        f"- Cases: {args.n} (seed {args.seed}, scale {args.scale}); {sum(r['tumour'] for r in rows)} with tumour",
        "",
        "## Generation time",
        "",
        f"- `generate_case`: mean {secs.mean():.2f} s, min {secs.min():.2f} s, max {secs.max():.2f} s per case "
        f"wall ({vox.mean() / 1e6:.1f} M voxels on average); CPU {cpus.mean():.2f} s per case, "
        f"{cpus.sum() / vox.sum() * 1e9:.0f} ns per voxel",
        "- `generate_case` runs in one thread; `make_pancreas_dataset` runs two cases at a time (generation and gzip "
        "release the GIL), so on two free cores its wall time is about half its CPU time.",
    ]
    if dataset_seconds is not None:
        n_files = args.dataset_n + max(1, args.dataset_n // 5)
        lines.append(f"- `make_pancreas_dataset(n={args.dataset_n})` incl. writing .nii.gz ({n_files} cases: "
                     f"{args.dataset_n} training + {n_files - args.dataset_n} test, {dataset_mb:.0f} MB): "
                     f"{dataset_seconds:.1f} s wall ({dataset_seconds / n_files:.2f} s per case), {dataset_cpu:.1f} s "
                     f"CPU in 2 threads; 1-min load average {load_before:.1f} before, {load_after:.1f} after "
                     "(other users' jobs on the same cores lengthen the wall time)")
    lines += [
        "",
        "## HU per tissue class",
        "",
        "All voxels of the class (partial-volume edges included) and core voxels (4 in-plane neighbours of the same "
        "class). Per-case mean range = min..max of the per-case class means.",
        "",
        "| tissue | typical | mean | std | p5 | p50 | p95 | core mean | core std | per-case mean range | in range |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, tid in TISSUES.items():
        st = hist_stats(hist_all[tid])
        if not st:
            continue
        core = hist_stats(hist_core[tid])
        typical = TYPICAL_RANGES.get(name)
        ok = ""
        if typical:
            ok = "yes" if typical[0] <= st["mean"] <= typical[1] else "NO"
        cm = per_case_means[name]
        lines.append(
            f"| {name} | {typical[2] if typical else ''} | {st['mean']:.0f} | {st['std']:.0f} | {st['p5']:.0f} | "
            f"{st['p50']:.0f} | {st['p95']:.0f} | {core.get('mean', float('nan')):.0f} | "
            f"{core.get('std', float('nan')):.0f} | {min(cm):.0f}..{max(cm):.0f} | {ok} |")
    lines += [
        "",
        "## Single HU-interval threshold baseline",
        "",
        "Best Dice over all intervals [lo, hi] (1 HU steps) predicting the target wherever lo <= HU <= hi in the whole "
        "volume, best interval chosen per case (an optimistic oracle). Goal: < 0.3.",
        "",
        f"- pancreas (label 1): mean {d1.mean():.3f}, max {d1.max():.3f}",
        f"- pancreas + tumour (label 1 or 2): mean {d12.mean():.3f}, max {d12.max():.3f}",
        "",
        "| case | shape (RAS) | spacing mm | stored axcodes | pancreas ml | tumour ml | Dice label 1 [lo, hi] | "
        "Dice label 1+2 [lo, hi] | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sp = "x".join(f"{s:.2f}" for s in r["spacing"])
        lines.append(
            f"| {r['i']} | {'x'.join(map(str, r['shape']))} | {sp} | {r['axcodes']} | {r['pancreas_ml']:.0f} | "
            f"{r['tumour_ml']:.1f} | {r['dice1'][0]:.3f} [{r['dice1'][1]}, {r['dice1'][2]}] | "
            f"{r['dice12'][0]:.3f} [{r['dice12'][1]}, {r['dice12'][2]}] | {r['seconds']:.2f} | {r['cpu']:.2f} |")
    lines += ["", f"Montage: `{os.path.relpath(args.montage, ROOT)}`", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out} and {args.montage}")
    figures = {"generate_case_mean_s": round(float(secs.mean()), 2),
               "make_pancreas_dataset_n{}_wall_s".format(args.dataset_n):
                   round(dataset_seconds, 1) if dataset_seconds is not None else None,
               "threshold_dice_pancreas_mean": round(float(d1.mean()), 3),
               "threshold_dice_pancreas_max": round(float(d1.max()), 3),
               "threshold_dice_pancreas_tumour_mean": round(float(d12.mean()), 3)}
    write_json("phantom_realism", figures, lines=lines, by_precision=False, command=command, report=out,
               path=out.with_suffix(".json") if args.out else None)


if __name__ == "__main__":
    main()
