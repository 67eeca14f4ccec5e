"""A 512x512x300 CT at 0.8 x 0.8 x 1.5 mm through the default attn_unet inference.json: time and peak memory, without
and with flip test-time augmentation (issue 15 targets: <= 60 s and <= 6 GB on 2 CPU cores without TTA).

The volume is a CT phantom (pipeline.data.phantom, seed 123) resampled onto a 512x512x300 grid at 0.8 x 0.8 x 1.5 mm,
the body filling the field of view as in an abdominal scan, written as int16 NIfTI. The checkpoint is --ckpt_dir
(e.g. bundles/attn_unet/models after a training run); without one, the default recipe's network with the values its
plan chooses on the default phantoms (target spacing 1.86 x 1.86 x 3.72 mm, patch 64x64x32, strides
[[2,2,1],[2,2,2],[2,2,2]]; benchmarks/results/user_command_cpu_*.md) is saved freshly initialised beside the scratch
volume: the time does not depend on the weights. Each configuration runs as its own ``python -m monai.bundle run``
child process; reported are the process wall time, the case time the inference log gives (reading, preprocessing,
sliding window, resampling the probabilities back, argmax, writing), and the child's peak resident memory.

    python -m benchmarks run attn_unet_inference [--ckpt_dir DIR] [--device cuda] [--no-tta]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from benchmarks.common import REPO, machine_header, quoted_argv, result_path, run_bundle, write_json, write_result

SHAPE = (512, 512, 300)
SPACING = (0.8, 0.8, 1.5)
# the default attn_unet recipe's plan on the default phantoms (benchmarks/results/user_command_cpu_*.md)
DEFAULT_PLAN = {"target_spacing": [1.86, 1.86, 3.72], "patch_size": [64, 64, 32],
                "strides": [[2, 2, 1], [2, 2, 2], [2, 2, 2]]}


def make_volume(path: Path) -> None:
    """A phantom resampled onto SHAPE at SPACING (RAS, int16 HU)."""
    from pipeline.data.phantom import generate_case

    case = generate_case(seed=123)
    img = nib.as_closest_canonical(nib.Nifti1Image(case.hu, case.affine))
    data = np.asarray(img.dataobj, dtype=np.float32)
    vol = ndimage.zoom(data, [t / s for t, s in zip(SHAPE, data.shape)], order=1, output=np.float32)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(SHAPE, SPACING)]
    nib.save(nib.Nifti1Image(np.round(vol).astype(np.int16), affine), path)


def default_checkpoint(folder: Path) -> Path:
    """The default recipe's network (planned values above), freshly initialised, with its model_config.json and plan.json."""
    from monai.bundle import ConfigParser

    from pipeline.engines import save_run_files

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/attn_unet/train.json"))
    plan = {**DEFAULT_PLAN, "batch_size": 2, "num_workers": 0, "intensity": {"hu_window": [-175, 250]}}
    parser.update({"plan": plan, "bundle_root": str(folder), "ckpt_dir": str(folder)})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    save_run_files(folder, parser.get_parsed_content("model_config"), parser.get_parsed_content("trained_plan"))
    return folder


def measure(name: str, work: Path, ckpt_dir: str, extra: dict) -> dict:
    out = work / f"out_{name}"
    load = os.getloadavg()[0]
    run = run_bundle(["bundles/attn_unet/inference.json"],
                     {"input": work / "in", "ckpt_dir": ckpt_dir, "output_dir": out, **extra}, work / f"{name}.log")
    if run.returncode:
        print(run.log[-4000:])
        raise SystemExit(f"inference ({name}) failed")
    m = re.search(r"case 1/1 \S+: ([\d.]+) s \(network grid (\S+)\)", run.log)
    pred = nib.load(next((out / "predictions").glob("*_seg.nii.gz")))
    scan = nib.load(next((work / "in").glob("*.nii.gz")))
    same = pred.shape == scan.shape and np.allclose(pred.affine, scan.affine, atol=1e-5)
    return {"wall": run.wall_s, "case": float(m.group(1)) if m else float("nan"), "grid": m.group(2) if m else "?",
            "rss_gb": run.peak_rss_mb / 1024, "same_grid": same, "load": load,
            "precision": (re.search(r"precision: (\S+ on \S+)", run.log) or [None, "?"])[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt_dir", default=None, help="folder with model.pt + model_config.json (default: untrained)")
    ap.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    ap.add_argument("--no-tta", action="store_true", help="skip the flip-TTA run")
    ap.add_argument("--overlaps", nargs="*", type=float, default=[],
                    help="also run with these sliding-window overlaps (--sw_overlap), side by side with the default")
    ap.add_argument("--work", default="/tmp/attn_unet_infer")
    ap.add_argument("--out", default=None, help="the report (default benchmarks/results/attn_unet_inference_<kind>.md)")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    make_volume(work / "in" / "ct_512x512x300.nii.gz")
    trained = bool(args.ckpt_dir)
    ckpt_dir = args.ckpt_dir or str(default_checkpoint(work / "models"))
    runs = {"default": measure("default", work, ckpt_dir, {"device": args.device})}
    for overlap in args.overlaps:
        runs[f"sw_overlap {overlap}"] = measure(f"overlap_{overlap}", work, ckpt_dir,
                                                {"device": args.device, "sw_overlap": overlap})
    if not args.no_tta:
        runs["flip TTA (8 passes)"] = measure("tta", work, ckpt_dir, {"device": args.device, "tta": True})
    base = runs["default"]
    checkpoint = (f"trained ({ckpt_dir})" if trained
                  else "default recipe, freshly initialised (the time does not depend on the weights)")
    lines = [
        "# Attention U-Net: inference of a 512x512x300 CT (0.8 x 0.8 x 1.5 mm) through the default inference.json",
        "",
        machine_header(quoted_argv()),
        f"- input: {SHAPE} voxels at {SPACING} mm, int16 NIfTI; checkpoint: "
        f"{checkpoint}"
        f"; network grid after resampling and cropping: {base['grid']}; precision: {base['precision']}",
        f"- label map on the input's grid (shape and affine equal): {all(r['same_grid'] for r in runs.values())}",
        "",
        "| run | case time (s) | whole process (s) | peak memory (GB) | load average before | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        target = "-"
        if name == "default":
            met = r["wall"] <= 60 and r["rss_gb"] <= 6
            target = f"<= 60 s, <= 6 GB: {'met' if met else 'MISSED'}"
        lines.append(f"| {name} | {r['case']:.1f} | {r['wall']:.1f} | {r['rss_gb']:.2f} | {r['load']:.1f} | {target} |")
    lines += ["", "Case time: the inference log's line for the case (read, preprocess, sliding window, resample the "
              "probabilities to the scan's grid, argmax, write). Whole process: `python -m monai.bundle run` including "
              "Python, torch and MONAI start-up. Peak memory: the child process's maximum resident set size. "
              "Load average: the machine's 1-minute load "
              "before the run (above the core count, other work shared the cores and the times are longer).", ""]
    out = Path(args.out) if args.out else result_path("attn_unet_inference", ".md")
    write_result(out, lines)  # the hand-written reading of an earlier run survives
    print("\n".join(lines))
    figures: dict[str, object] = {"case_s": round(base["case"], 1), "process_s": round(base["wall"], 1),
                                  "peak_memory_gb": round(base["rss_gb"], 2), "network_grid": base["grid"],
                                  "label_map_on_input_grid": all(r["same_grid"] for r in runs.values())}
    for name, r in runs.items():
        if name != "default":
            suffix = "tta" if name.startswith("flip") else name.replace("sw_", "").replace(" ", "_")
            figures.update({f"case_s_{suffix}": round(r["case"], 1), f"process_s_{suffix}": round(r["wall"], 1),
                            f"peak_memory_gb_{suffix}": round(r["rss_gb"], 2)})
    write_json("attn_unet_inference", figures, lines=lines, report=out,
               path=out.with_suffix(".json") if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
