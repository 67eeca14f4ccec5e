"""Does a heavier tumour class at the decision, chosen on the validation cases, lift tumour Dice on held-out phantoms?

The default CT model under-segments the tumours it finds (precision 0.58-1.00, recall 0.03-0.74:
``results/tumour_cases.md``). Without retraining, the class map can favour the tumour: label = argmax of
(p_background, p_pancreas, w * p_tumour) over the softmax probabilities, w = 1 being the bundle's argmax. For each
trained run of ``recipes.py`` (its best checkpoint, its seed's split), the sliding window runs once per case as
``evaluate.json`` runs it (resampled grid, no TTA), and Dice is computed for every w on:

- the run's 5 validation cases (where a user would choose w),
- the 4 test phantoms and the 8 unseen phantoms (generator seed 1000) that no run trained on.

Dice per case as the bundle's metrics (a case without the class in its label is left out of that class's mean),
averaged over cases.

    python benchmarks/tumour_weighting.py --runs lr6e3_s0 lr6e3_s1 lr6e3_s2 [--work /tmp/ct_recipes]
        [--weights 1 1.5 2 3 4 6] [--out benchmarks/results/tumour_weighting.md]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402

from pipeline.study.bundle_run import bundle_parser  # noqa: E402

FILES = [REPO / "bundles/attn_unet/train.json", REPO / "bundles/attn_unet/evaluate.json"]
SETS = (("validation", "pancreas_phantom", "validation"), ("test 4", "pancreas_phantom", "test"),
        ("unseen 8", "unseen_phantoms", "test"))


def dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Dice of one class; None where the label has none of it (left out of the mean, as the bundle's metrics)."""
    if not truth.any():
        return None
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))


def case_probabilities(run: Path, seed: int, dataset_dir: Path, split: str, recipe_overrides: dict):
    """(softmax probabilities, label) of each case of ``split``, through the run's best checkpoint."""
    parser = bundle_parser(FILES, {"bundle_root": str(run), "dataset_dir": str(dataset_dir), "seed": seed,
                                   "eval_split": split, "tta": False, "device": "cpu", **recipe_overrides})
    parser.get_parsed_content("initialize")
    net = parser.get_parsed_content("network")
    net.load_state_dict(torch.load(run / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    inferer = parser.get_parsed_content("validate#inferer")
    for batch in parser.get_parsed_content("validate#dataloader"):
        with torch.no_grad():
            logits = inferer(batch["image"], net)
        yield torch.softmax(logits.float(), dim=1)[0].numpy(), np.asarray(batch["label"])[0, 0].astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders under WORK/runs, named <recipe>_s<seed>")
    ap.add_argument("--work", default="/tmp/ct_recipes")
    ap.add_argument("--weights", nargs="+", type=float, default=[1, 1.5, 2, 3, 4, 6])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/tumour_weighting.md"))
    args = ap.parse_args()
    from recipes import CT_RECIPES  # the benchmarks folder is on sys.path (above)

    work = Path(args.work)
    results: dict[tuple[str, str, float], tuple[float, float]] = {}  # (run, set, w) -> (pancreas, tumour) means
    for name in args.runs:
        recipe, seed = re.fullmatch(r"(.+)_s(\d+)", name).groups()
        for set_name, data, split in SETS:
            per_w: dict[float, list[tuple[float | None, float | None]]] = {w: [] for w in args.weights}
            for prob, label in case_probabilities(work / "runs" / name, int(seed), work / data, split,
                                                  CT_RECIPES[recipe]):
                for w in args.weights:
                    pred = np.argmax(prob * np.array([1.0, 1.0, w])[:, None, None, None], axis=0)
                    per_w[w].append((dice(pred == 1, label == 1), dice(pred == 2, label == 2)))
            for w, cases in per_w.items():
                means = [float(np.mean([c[i] for c in cases if c[i] is not None] or [np.nan])) for i in (0, 1)]
                results[name, set_name, w] = (means[0], means[1])
            print(name, set_name, {w: tuple(round(v, 3) for v in results[name, set_name, w]) for w in args.weights},
                  flush=True)
    lines = ["# Tumour weight at the decision: argmax of (p_background, p_pancreas, w x p_tumour)", "",
             machine_header(quoted_argv()),
             f"- runs: {', '.join(args.runs)} (best checkpoints of `recipes.py`, folder {work}/runs); resampled grid, "
             "no TTA", "",
             "Dice pancreas / tumour (mean over cases; tumour over the cases that have one):", "",
             "| run | w | " + " | ".join(s[0] for s in SETS) + " |", "|---|---|" + "---|" * len(SETS)]
    for name in args.runs:
        for w in args.weights:
            cells = [f"{results[name, s[0], w][0]:.4f} / {results[name, s[0], w][1]:.4f}" for s in SETS]
            lines.append(f"| {name} | {w:g} | " + " | ".join(cells) + " |")
    lines += ["", "w chosen on each run's validation cases (highest tumour Dice; ties to the smaller w), and what it "
              "gives on the held-out phantoms:", "",
              "| run | chosen w | validation tumour | test 4 tumour | unseen 8 tumour | held-out 12 pancreas "
              "| same at w = 1 |", "|---|---|---|---|---|---|---|"]
    for name in args.runs:
        best = max(args.weights, key=lambda w: (round(results[name, "validation", w][1], 4), -w))

        def row(w: float) -> str:
            pan = (4 * results[name, "test 4", w][0] + 8 * results[name, "unseen 8", w][0]) / 12
            return (f"{results[name, 'validation', w][1]:.4f} | {results[name, 'test 4', w][1]:.4f} | "
                    f"{results[name, 'unseen 8', w][1]:.4f} | {pan:.4f}")

        lines.append(f"| {name} | {best:g} | {row(best)} | {row(1.0).replace(' | ', ' / ')} |")
    write_result(args.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
