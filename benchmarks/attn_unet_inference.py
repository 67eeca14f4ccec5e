"""Sliding-window inference of a 256x256x128 CT volume through the default inference.json (target 4d: <= 15 s).

The volume is a CT phantom resampled to a 256x256x128 grid (1.5 x 1.5 x 2.5 mm). The checkpoint is taken from
--ckpt_dir (e.g. bundles/attn_unet/models after a training run); without one, a freshly initialised network is
saved in the scratch folder (the timing does not depend on the weights). Reported: the bundle process wall time and the
inference engine's own run time (loading, preprocessing, sliding window, inversion and NIfTI writing of the case).

    python benchmarks/attn_unet_inference.py [--ckpt_dir DIR]
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, run_bundle  # noqa: E402

SHAPE = (256, 256, 128)
SPACING = (1.5, 1.5, 2.5)


def make_volume(path: Path) -> None:
    from pipeline.data.phantom import generate_case

    case = generate_case(seed=123)
    img = nib.as_closest_canonical(nib.Nifti1Image(case.hu, case.affine))
    data = np.asarray(img.dataobj, dtype=np.float32)
    zoom = [t / s for t, s in zip(SHAPE, data.shape)]
    vol = ndimage.zoom(data, zoom, order=1).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([*SPACING, 1.0])), path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt_dir", default=None, help="folder with model.pt (default: an untrained net)")
    ap.add_argument("--work", default="/tmp/attn_unet_infer")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/attn_unet_inference.md"))
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    make_volume(work / "in" / "ct_256x256x128.nii.gz")
    args.ckpt_dir = args.ckpt_dir or str(work / "models")
    ckpt = Path(args.ckpt_dir) / "model.pt"
    trained = ckpt.is_file()
    if not trained:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config("bundles/attn_unet/train.json")
        net = parser.get_parsed_content("network_def")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), ckpt)
    files = ["bundles/attn_unet/train.json", "bundles/attn_unet/inference.json"]
    run = run_bundle(files, {"input_dir": work / "in", "ckpt_dir": args.ckpt_dir, "output_dir": work / "out"},
                     work / "inference.log")
    if run.returncode:
        print(run.log[-4000:])
        raise SystemExit("inference failed")
    m = re.search(r"Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)", run.log)
    engine_s = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else float("nan")
    pred = next((work / "out" / "predictions").glob("*_seg.nii.gz"))
    pshape = nib.load(pred).shape
    lines = [
        "# Attention U-Net: sliding-window inference of a 256x256x128 CT volume",
        "",
        machine_header(quoted_argv()),
        f"- input: {SHAPE} voxels at {SPACING} mm; checkpoint: {'trained' if trained else 'freshly initialised'}"
        f" ({ckpt}); prediction written with shape {pshape}",
        "",
        "| measure | seconds | target <= 15 s |",
        "|---|---|---|",
        f"| inference engine run (load, preprocess, sliding window, invert, save) | {engine_s:.1f} |"
        f" {'met' if engine_s <= 15 else 'MISSED'} |",
        f"| whole `python -m monai.bundle run` process (incl. Python/torch start-up) | {run.wall_s:.1f} | - |",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
