"""The README's main command on a fresh clone, timed end to end, and its model scored on held-out phantoms.

Clones the repository's HEAD into a scratch folder, creates an empty virtual environment there and runs, in that
clone, exactly the README's quick-start line (``bash scripts/setup.sh && python -m monai.bundle run --config_file
bundles/attn_unet/train.json``): set-up, phantom generation, planning, caching, training, validation and
checkpointing are all inside the measured wall time. Peak memory is the largest resident set of the command's
processes (wait4). The best checkpoint is then scored with ``evaluate.json`` (outside the timed part) on the 4 test
phantoms of the generated set and on 8 further phantoms of the same generator with another seed (1000), which no
run ever trains on. Both sets are also segmented by ``inference.json`` (probabilities resampled back onto each
scan's own grid before the argmax) and scored there by ``python -m pipeline evaluate`` against the original labels:
the Dice a user of the predictions gets.

    python -m benchmarks run user_command [--work /tmp/user_command] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.common import (SECOND_STAGE, fresh_clone, machine_header, quoted_argv, read_summary, result_path,
                               timed_shell, write_json)

COMMAND = "bash scripts/setup.sh && python -m monai.bundle run --config_file bundles/attn_unet/train.json"
VAL_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*val_dice_pancreas.*)")
BUDGET_S, TARGET = 900.0, 0.80


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/user_command")
    ap.add_argument("--out", default=None, help="the report (default benchmarks/results/user_command_<kind>.md)")
    ap.add_argument("--ref", default="HEAD", help="the commit or branch of this repository to clone (default HEAD)")
    args = ap.parse_args()
    work = Path(args.work)
    clone, venv, env, commit = fresh_clone(args.ref, work)
    code, wall, rss = timed_shell(COMMAND, clone, env, work / "train.log")
    log = (work / "train.log").read_text()
    if code:
        print(log[-3000:])
        raise SystemExit(f"the user's command failed (exit {code}); log {work / 'train.log'}")
    first, _, second = log.partition(SECOND_STAGE)  # a cascade (--cascade true) trains its second stage after this
    history, history2 = ([(int(e), dict((k, float(v)) for k, v in re.findall(r"(\w+): ([-\d.]+)", text)))
                          for e, text in VAL_LINE.findall(part)] for part in (first, second))
    best_epoch, best = max(history, key=lambda h: h[1].get("val_mean_dice", -1))

    unseen = work / "unseen_phantoms"
    subprocess.run([str(venv / "bin" / "python"), "-m", "pipeline", "make-pancreas", "--out", str(unseen), "--n", "1",
                    "--n-test", "8", "--seed", "1000"], cwd=clone, env=env, check=True, capture_output=True)
    held_out = {}
    for name, data in (("test4", None), ("unseen8", unseen)):
        cmd = [str(venv / "bin" / "python"), "-m", "monai.bundle", "run", "--config_file",
               "['bundles/attn_unet/train.json','bundles/attn_unet/evaluate.json']", "--eval_dir", str(work / name)]
        if data is not None:
            cmd += ["--dataset_dir", str(data)]
        with (work / f"eval_{name}.log").open("w") as f:
            if subprocess.run(cmd, cwd=clone, env=env, stdout=f, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"evaluation on {name} failed; log {work / f'eval_{name}.log'}")
        held_out[name] = read_summary(work / name / "metrics_summary.csv")
    pancreas12 = (4 * held_out["test4"]["dice_pancreas"] + 8 * held_out["unseen8"]["dice_pancreas"]) / 12
    grid = {}  # the same phantoms segmented on their own grid by inference.json, scored against the original labels
    for name, data in (("test4", clone / "data" / "pancreas_phantom"), ("unseen8", unseen)):
        steps = [["-m", "monai.bundle", "run", "--config_file", "bundles/attn_unet/inference.json", "--input",
                  str(data / "imagesTs"), "--output_dir", str(work / f"infer_{name}"), "--progress", "false"],
                 ["-m", "pipeline", "evaluate", "--pred", str(work / f"infer_{name}" / "predictions"), "--labels",
                  str(data / "labelsTs"), "--out", str(work / f"grid_{name}")]]
        with (work / f"infer_{name}.log").open("w") as f:
            for step in steps:
                if subprocess.run([str(venv / "bin" / "python"), *step], cwd=clone, env=env, stdout=f,
                                  stderr=subprocess.STDOUT).returncode:
                    raise SystemExit(f"inference or scoring on {name} failed; log {work / f'infer_{name}.log'}")
        summary = read_summary(work / f"grid_{name}" / "metrics_summary.csv")
        grid[name] = {"pancreas": summary["dice_pancreas"],  # dataset.json calls label 2 "cancer"
                      "tumour": summary.get("dice_cancer", summary.get("dice_tumour", float("nan")))}
    grid12 = (4 * grid["test4"]["pancreas"] + 8 * grid["unseen8"]["pancreas"]) / 12
    plan = re.search(r"plan for .*?\n((?:  .*\n)+)", log)
    waits = re.search(r"data wait: .*", log)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        "# The user's command on a fresh clone (attn_unet, CT phantoms, 2 CPU cores)", "",
        machine_header(quoted_argv()), f"- commit: {commit.strip()}", "",
        f"Timed: `{COMMAND}` in a fresh clone with an empty virtual environment (set-up, data generation, planning,"
        " caching, training, validation, checkpoints). Held-out scores come afterwards from `evaluate.json` with the"
        " best checkpoint (in the network's resampled space; a cascade's first stage) and from `inference.json` +"
        " `python -m pipeline evaluate` on each scan's own grid (what the user's predictions score, both stages of a"
        " cascade): the 4 test phantoms of the generated set and 8 unseen phantoms of generator seed 1000.", "",
        "| target (issue 14a) | measured | verdict |", "|---|---|---|",
        f"| wall time <= {BUDGET_S / 60:.0f} min including set-up and data generation | {wall:.0f} s "
        f"({wall / 60:.1f} min) | {verdict(wall <= BUDGET_S)} |",
        f"| pancreas Dice >= {TARGET} on >= 10 never-trained phantoms | {pancreas12:.4f} (12 phantoms: test 4 "
        f"{held_out['test4']['dice_pancreas']:.4f}, unseen 8 {held_out['unseen8']['dice_pancreas']:.4f}) | "
        f"{verdict(pancreas12 >= TARGET)} |",
        f"| the same on each scan's own grid (inference.json, `pipeline evaluate`) | {grid12:.4f} (test 4 "
        f"{grid['test4']['pancreas']:.4f}, unseen 8 {grid['unseen8']['pancreas']:.4f}; "
        f"tumour {grid['test4']['tumour']:.4f}"
        f" / {grid['unseen8']['tumour']:.4f}) | {verdict(grid12 >= TARGET)} |",
        f"| pancreas Dice >= {TARGET} on the validation cases | {best.get('val_dice_pancreas', float('nan')):.4f} "
        f"(best checkpoint, epoch {best_epoch}) | {verdict(best.get('val_dice_pancreas', 0) >= TARGET)} |",
        f"| tumour Dice reported (aim >= 0.50) | test 4 {held_out['test4']['dice_tumour']:.4f}, unseen 8 "
        f"{held_out['unseen8']['dice_tumour']:.4f} (mean over phantoms with a tumour), validation "
        f"{best.get('val_dice_tumour', float('nan')):.4f} | "
        f"{verdict(min(held_out['test4']['dice_tumour'], held_out['unseen8']['dice_tumour']) >= 0.5)} |",
        f"| peak memory <= 4 GB | {rss / 1024:.2f} GB | {verdict(rss <= 4096)} |", "",
        "Validation history (sliding window on the validation phantoms, resampled space; a cascade's second stage "
        "on crops of the labelled gland):", "",
        "| stage | epoch | Dice pancreas | Dice tumour | HD95 pancreas (mm) |", "|---|---|---|---|---|",
    ]
    for stage, points in ((1, history), (2, history2)):
        for epoch, m in points:
            lines.append(f"| {stage} | {epoch} | {m.get('val_dice_pancreas', float('nan')):.4f} | "
                         f"{m.get('val_dice_tumour', float('nan')):.4f} | "
                         f"{m.get('val_hd95_pancreas', float('nan')):.1f} |")
    lines += ["", f"Data loading: `{waits.group(0) if waits else 'not logged'}`", ""]
    if plan:
        lines += ["The plan the run followed (from its log):", "", "```", plan.group(1).rstrip(), "```", ""]
    out = Path(args.out) if args.out else result_path("user_command", ".md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    wait = re.search(r"\(([\d.]+) %\); train steps ([\d.]+) s", waits.group(0)) if waits else None
    figures = {
        "wall_s": round(wall), "peak_memory_gb": round(rss / 1024, 2), "best_epoch": best_epoch,
        "val_pancreas_dice": round(best.get("val_dice_pancreas", float("nan")), 4),
        "val_tumour_dice": round(best.get("val_dice_tumour", float("nan")), 4),
        "heldout12_pancreas_dice": round(pancreas12, 4),
        "test4_pancreas_dice": round(held_out["test4"]["dice_pancreas"], 4),
        "unseen8_pancreas_dice": round(held_out["unseen8"]["dice_pancreas"], 4),
        "test4_tumour_dice": round(held_out["test4"]["dice_tumour"], 4),
        "unseen8_tumour_dice": round(held_out["unseen8"]["dice_tumour"], 4),
        "heldout12_pancreas_dice_input_grid": round(grid12, 4),
        "test4_pancreas_dice_input_grid": round(grid["test4"]["pancreas"], 4),
        "unseen8_pancreas_dice_input_grid": round(grid["unseen8"]["pancreas"], 4),
        "test4_tumour_dice_input_grid": round(grid["test4"]["tumour"], 4),
        "unseen8_tumour_dice_input_grid": round(grid["unseen8"]["tumour"], 4),
        "data_wait_percent": float(wait.group(1)) if wait else None,
        "train_steps_s": float(wait.group(2)) if wait else None,
    }
    write_json("user_command", figures, lines=lines, commit=commit.strip(), report=out,
               path=out.with_suffix(".json") if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
