"""Where do the shapes models err: near a shape's edge, or deep inside it? (issue 14 b, the precision preset)

A network with fewer poolings sees less around each pixel. If that is what caps the *precision* preset (2
poolings), its errors should grow with the distance from a pixel to the nearest pixel of another class, where
telling an ellipse from a rectangle needs the far edges, while the deeper presets' should not. For each trained run
of ``benchmarks/recipes.py --task shapes`` named here, this script rebuilds the bundle's network from the run's
plan, loads its best checkpoint (``models/model.pt``, else the last epoch checkpoint), predicts the 100 test images
and writes the share of wrongly labelled foreground pixels by that distance.

    python benchmarks/shapes_errors.py --runs precision_s0 ds_bs8_s0 context_s0 [--work /tmp/shapes_recipes]
        [--out benchmarks/results/shapes_errors.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402
from recipes import SHAPES_RECIPES  # noqa: E402

BINS = [0, 3, 6, 10, 15, 20, 30]


def network(run: Path, data: Path) -> tuple[torch.nn.Module, str]:
    """The run's network (its recipe's overrides, its plan) with its best weights, and which file they came from."""
    from pipeline.study.bundle_run import bundle_parser

    recipe = run.name.rsplit("_s", 1)[0]
    overrides = {**SHAPES_RECIPES[recipe], "bundle_root": str(run), "dataset_dir": str(data), "device": "cpu"}
    net = bundle_parser(["bundles/unet/train.json"], overrides).get_parsed_content("network_def")
    best = run / "models" / "model.pt"
    if best.is_file():
        state, source = torch.load(best, map_location="cpu", weights_only=True), "model.pt"
    else:
        last = max((run / "models").glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
        state, source = torch.load(last, map_location="cpu", weights_only=False)["network"], last.name
    net.load_state_dict(state)
    return net.eval(), source


def errors_by_distance(net: torch.nn.Module, data: Path) -> tuple[np.ndarray, np.ndarray]:
    cases = json.loads((data / "dataset.json").read_text())["test"]
    wrong, total = np.zeros(len(BINS)), np.zeros(len(BINS))
    for case in cases:
        image = np.asarray(Image.open(data / case["image"]), dtype=np.float32)
        label = np.asarray(Image.open(data / case["label"]))
        x = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)  # the bundle's ScaleIntensityd
        with torch.no_grad():
            pred = net(torch.from_numpy(x)[None, None]).argmax(1)[0].numpy()
        dist = np.zeros(label.shape)
        for c in np.unique(label[label > 0]):
            inside = label == c
            dist[inside] = ndimage.distance_transform_edt(inside)[inside]
        fg = label > 0
        which = np.digitize(dist[fg], BINS) - 1
        bad = pred[fg] != label[fg]
        for b in range(len(BINS)):
            total[b] += (which == b).sum()
            wrong[b] += bad[which == b].sum()
    return wrong, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders under WORK/runs, e.g. precision_s0")
    ap.add_argument("--work", default="/tmp/shapes_recipes")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/shapes_errors.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    data = Path(args.work) / "shapes2d"
    labels = [f"{lo}-{hi}" for lo, hi in zip(BINS, BINS[1:])] + [f">={BINS[-1]}"]
    lines = ["# Shapes: wrongly labelled foreground pixels by distance to another class (test split, 100 images)",
             "", machine_header(quoted_argv()),
             "- distance: Euclidean, in pixels, from a foreground pixel to the nearest pixel of another label "
             "(background or the other shape); cell = share of that bin's pixels labelled wrongly", "",
             "| run | weights | all | " + " | ".join(labels) + " |", "|---" * (len(labels) + 3) + "|"]
    counts = None
    for name in args.runs:
        net, source = network(Path(args.work) / "runs" / name, data)
        wrong, total = errors_by_distance(net, data)
        counts = total
        cells = [f"{w / t:.3f}" if t else "-" for w, t in zip(wrong, total)]
        lines.append(f"| {name} | {source} | {wrong.sum() / total.sum():.3f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", "pixels per bin: " + ", ".join(f"{lab}: {int(n)}" for lab, n in zip(labels, counts))]
    write_result(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
