"""The report of ``benchmarks/nnunet_side_by_side.py``: the two plans side by side, the goal comparison, the curves.

Functions of what the runs left on disk (nnU-Net's ``plans.json``, the bundle's ``plan.json`` and
``model_config.json``, the logs and curve files): nothing here needs nnunetv2, trains or predicts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
from pathlib import Path

from benchmarks.common import REPO, machine, machine_header, quoted_argv, result_path, write_json

TRAIN_LOSS = re.compile(r"^(\S+ \S+) - INFO - Epoch\[(\d+)\] Metrics -- train_loss: ([-\d.eE+]+)", re.M)
PANCREAS_MARGIN = 0.02  # the "within 0.02 pancreas Dice of nnU-Net's longest run in a tenth of its time"
TIME_FRACTION = 0.1
NAME = "nnunet_side_by_side"


def _xyz(values: list, transpose_backward: list[int]) -> list:
    """An nnU-Net per-axis list (array order after ``transpose_forward``; SimpleITK's z, y, x for NIfTI, which
    nnU-Net's NIfTI readers both give) as x, y, z, the order of this project's plan."""
    return [values[i] for i in transpose_backward][::-1]


def nnunet_plan_summary(plans: dict, configuration: str = "3d_fullres", parameters: int | None = None) -> dict:
    """Spacing, patch, strides, batch and network of one configuration of an nnU-Net v2 ``plans.json`` dict, axes
    as x, y, z (nnU-Net writes z, y, x); ``inherits_from`` is followed; older plans (``pool_op_kernel_sizes``,
    ``UNet_class_name``) are read too."""
    configs = plans["configurations"]
    cfg: dict = {}
    name = configuration
    while name is not None:  # a configuration overrides the one it inherits from
        cfg = {**configs[name], **cfg}
        name = configs[name].get("inherits_from")
    back = list(plans.get("transpose_backward", [0, 1, 2]))
    arch = cfg.get("architecture", {})
    kwargs = arch.get("arch_kwargs", {})
    strides = kwargs.get("strides") or [[1] * len(back)] + list(cfg.get("pool_op_kernel_sizes", [])[1:])
    features = kwargs.get("features_per_stage")
    if features is None and "UNet_base_num_features" in cfg:
        features = [min(cfg["UNet_base_num_features"] * 2 ** i, cfg.get("unet_max_num_features", 320))
                    for i in range(len(strides))]
    network = arch.get("network_class_name") or cfg.get("UNet_class_name", "?")
    return {
        "system": "nnU-Net v2", "configuration": configuration,
        "spacing_xyz_mm": [round(float(s), 3) for s in _xyz(cfg["spacing"], back)],
        "patch_xyz": [int(p) for p in _xyz(cfg["patch_size"], back)],
        "batch": f"{cfg['batch_size']} crops",
        # the first stage's [1, 1, 1] is no pooling; the rest are the downsampling strides
        "strides_xyz": [[int(v) for v in _xyz(s, back)] for s in strides[1:]],
        "stages": kwargs.get("n_stages", len(strides)),
        "features": features,
        "network": str(network).rsplit(".", 1)[-1],
        "normalisation": ", ".join(cfg.get("normalization_schemes", [])),
        "parameters": parameters,
    }


def bundle_plan_summary(plan: dict, model_config: dict, num_samples: int, parameters: int | None = None) -> dict:
    """The same facts from the bundle's ``plan.json`` and ``model_config.json`` (checkpoint folder)."""
    net = model_config.get("network", {})
    strides = plan["strides"]
    channels = net.get("channels")
    return {
        "system": "this project (attn_unet bundle)", "configuration": f"preset {net.get('preset', '?')}",
        "spacing_xyz_mm": [round(float(s), 3) for s in plan["target_spacing"]],
        "patch_xyz": [int(p) for p in plan["patch_size"]],
        "batch": f"{plan['batch_size']} cases x {num_samples} crops",
        "strides_xyz": [[int(v) for v in s] for s in strides],
        "stages": len(strides) + 1,
        "features": channels if channels else f"base width {net.get('base_width', '?')}",
        "network": str(net.get("_target_", "?")),
        "normalisation": str(plan.get("intensity", {}).get("mode", "window")),
        "parameters": parameters,
    }


PLAN_ROWS = (("spacing (x, y, z) mm", "spacing_xyz_mm"), ("patch (x, y, z) voxels", "patch_xyz"),
             ("batch per step", "batch"), ("downsampling strides (x, y, z)", "strides_xyz"),
             ("resolution stages", "stages"), ("features per stage", "features"), ("network", "network"),
             ("configuration", "configuration"), ("intensity normalisation", "normalisation"),
             ("parameters", "parameters"))


def plan_table(nnunet: dict | None, bundle: dict | None) -> list[str]:
    """A markdown table: one row per plan fact, one column per system."""
    def cell(plan: dict | None, key: str) -> str:
        if plan is None or plan.get(key) is None:
            return "-"
        v = plan[key]
        if key == "parameters":
            return f"{v:,}"
        if isinstance(v, list) and v and isinstance(v[0], list):
            return " ".join("x".join(str(a) for a in s) for s in v)
        return " x ".join(str(a) for a in v) if isinstance(v, list) else str(v)

    lines = ["| | nnU-Net v2 | this project |", "|---|---|---|"]
    lines += [f"| {label} | {cell(nnunet, key)} | {cell(bundle, key)} |" for label, key in PLAN_ROWS]
    return lines


def parse_train_loss(log: str, start: dt.datetime) -> list[dict[str, float]]:
    """The bundle's training loss per epoch (its ``Epoch[N] Metrics -- train_loss`` lines) against seconds."""
    points = []
    for stamp, epoch, loss in TRAIN_LOSS.findall(log):
        t = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        points.append({"epoch": int(epoch), "seconds": (t - start).total_seconds(), "train_loss": float(loss)})
    return points


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def compare_goals(rows: list[dict]) -> list[dict]:
    """The issue's goals from scored rows (``system`` nnunet|bundle, ``budget`` label, ``budget_s``,
    ``dice_pancreas``, ``dice_tumour``; nnU-Net rows may have several prediction ``mode``s, the best counts).

    - ahead at equal wall-clock: per budget both systems ran, margin = bundle - nnU-Net per class (> 0 is ahead);
    - within 0.02 of nnU-Net's longest run in a tenth of its time: nnU-Net's longest training budget against the
      bundle's best pancreas Dice among its runs with at most a tenth of that budget; margin = bundle - (nnU-Net -
      0.02) (>= 0 is met)."""
    def best(rs: list[dict], key: str) -> float:
        vals = [r[key] for r in rs if _finite(r.get(key))]
        return max(vals) if vals else math.nan

    goals = []
    for b in dict.fromkeys(r["budget"] for r in rows):
        nn = [r for r in rows if r["budget"] == b and r["system"] == "nnunet"]
        us = [r for r in rows if r["budget"] == b and r["system"] == "bundle"]
        if not nn or not us:
            continue
        for cls, key in (("pancreas", "dice_pancreas"), ("tumour", "dice_tumour")):
            ours, theirs = best(us, key), best(nn, key)
            margin = ours - theirs if _finite(ours) and _finite(theirs) else math.nan
            goals.append({"goal": f"ahead at equal wall-clock ({b}), {cls} Dice", "bundle": ours, "nnunet": theirs,
                          "margin": margin, "met": bool(_finite(margin) and margin > 0)})
    nn_runs = [r for r in rows if r["system"] == "nnunet" and _finite(r.get("budget_s"))]
    if nn_runs:
        longest = max(r["budget_s"] for r in nn_runs)
        ref = best([r for r in nn_runs if r["budget_s"] == longest], "dice_pancreas")
        quick = [r for r in rows if r["system"] == "bundle" and _finite(r.get("budget_s"))
                 and r["budget_s"] <= TIME_FRACTION * longest * 1.001]
        ours = best(quick, "dice_pancreas")
        margin = ours - (ref - PANCREAS_MARGIN) if _finite(ours) and _finite(ref) else math.nan
        goals.append({"goal": f"within {PANCREAS_MARGIN} pancreas Dice of nnU-Net's longest run ({longest:.0f} s) "
                              f"in a tenth of its time ({TIME_FRACTION * longest:.0f} s)",
                      "bundle": ours, "nnunet": ref, "margin": margin, "met": bool(_finite(margin) and margin >= 0),
                      "note": "" if quick else "no bundle run had a tenth of that budget or less"})
    return goals


def goal_lines(goals: list[dict]) -> list[str]:
    def f(v: object) -> str:
        return f"{v:+.3f}" if _finite(v) else "n/a"

    lines = ["| goal | this project | nnU-Net | margin | met |", "|---|---|---|---|---|"]
    for g in goals:
        if g["met"]:
            status = "yes"
        elif not _finite(g["margin"]):
            status = "not measured"
        else:
            status = "tied, not ahead" if g["margin"] == 0 else "behind by " + f(-g["margin"])[1:]
        lines.append(f"| {g['goal']} | {_fmt(g['bundle'])} | {_fmt(g['nnunet'])} | {f(g['margin'])} | {status}"
                     f"{' (' + g['note'] + ')' if g.get('note') else ''} |")
    return lines


def _fmt(v: object, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "-"


def plot_curves(nnunet: dict[str, dict], bundle: dict[str, dict], out: Path) -> None:
    """One PNG: validation Dice (the bundle's on its validation cases, nnU-Net's pseudo Dice on its validation
    patches) and each system's own training loss, against seconds since its training process started."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5))
    ax_dice, ax_loss = fig.subplots(1, 2)
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"])
    for label, run in bundle.items():
        c = next(colours)
        val = run.get("curve", [])
        ax_dice.plot([p["seconds"] for p in val], [p.get("val_dice_pancreas", math.nan) for p in val], "-o", ms=3,
                     color=c, label=f"this project {label}: pancreas (validation)")
        ax_dice.plot([p["seconds"] for p in val], [p.get("val_dice_tumour", math.nan) for p in val], "--o", ms=3,
                     color=c, label=f"this project {label}: tumour")
        loss = run.get("loss", [])
        ax_loss.plot([p["seconds"] for p in loss], [p["train_loss"] for p in loss], "-", color=c,
                     label=f"this project {label} (Dice + CE, deep supervision)")
    for label, run in nnunet.items():
        c = next(colours)
        pts = run.get("points", [])
        ends = [p for p in pts if p.get("epoch_end")]
        for i, (cls, ls) in enumerate((("pancreas", "-s"), ("tumour", "--s"))):
            ax_dice.plot([p["seconds"] for p in ends], [p["pseudo_dice"][i] if len(p["pseudo_dice"]) > i else math.nan
                                                       for p in ends], ls, ms=3, color=c,
                         label=f"nnU-Net {label}: {cls} (pseudo Dice)")
        its = [p for p in pts if not p.get("epoch_end")]
        ax_loss.plot([p["seconds"] for p in its], [p["train_loss"] for p in its], "-", lw=0.8, color=c,
                     label=f"nnU-Net {label} per iteration (CE - soft Dice, deep supervision)")
    ax_dice.set_ylim(0, 1)
    ax_dice.set_ylabel("validation Dice")
    ax_loss.set_ylabel("training loss (each system's own)")
    for ax in (ax_dice, ax_loss):
        ax.set_xlabel("seconds since the training process started")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


def _plans(work: Path, runs: dict[str, dict], dataset: str, configuration: str) -> tuple[dict | None, dict | None]:
    """Both plans from the files the runs left: nnU-Net's plans.json, the bundle's checkpoint folder."""
    import torch

    plans_file = work / "nnUNet_preprocessed" / dataset / "nnUNetPlans.json"
    nn_params = next((r.get("parameters") for k, r in runs.items() if k.startswith("nnunet")), None)
    nn = nnunet_plan_summary(json.loads(plans_file.read_text()), configuration, nn_params)
    ours = next((r for k, r in runs.items() if k.startswith("bundle") and r.get("has_model", True)), None)
    if ours is None:
        return nn, None
    ckpt = ours["root"] / "models"
    state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    params = sum(v.numel() for v in state.values() if hasattr(v, "numel"))
    num_samples = json.loads((REPO / "bundles/attn_unet/train.json").read_text()).get("num_samples", "?")
    return nn, bundle_plan_summary(json.loads((ckpt / "plan.json").read_text()),
                                   json.loads((ckpt / "model_config.json").read_text()), num_samples, params)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _f(v: object, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def write_report(args: argparse.Namespace, work: Path, pre: dict, runs: dict[str, dict], rows: list[dict],
                 holds: list[dict], mirroring: bool, configuration: str = "3d_fullres") -> None:
    """The markdown report, the result JSON (``write_json``), the curves (PNG and JSON) of a side-by-side run;
    ``--quick`` writes them under ``work/results`` instead of ``benchmarks/results``."""
    info = machine()
    out_dir = work / "results" if args.quick else None
    md = (out_dir / f"{NAME}_quick.md") if out_dir else result_path(NAME, ".md", info=info)
    extra = md.with_suffix("")  # a folder beside the result (curves.png, curves.json): no other *.json at its level
    extra.mkdir(parents=True, exist_ok=True)
    nn_plan, our_plan = _plans(work, runs, pre["dataset"], configuration)
    nn_runs = [r for k, r in runs.items() if k.startswith("nnunet")]
    deviations = [f"{r['iterations_per_epoch']} iterations per epoch and {r['val_iterations']} validation iterations "
                  f"(nnU-Net: {r['nnunet_defaults']['iterations_per_epoch']} and "
                  f"{r['nnunet_defaults']['val_iterations']})"
                  for r in nn_runs if r["iterations_per_epoch"] != r["nnunet_defaults"]["iterations_per_epoch"]]
    cases = sum(h["cases"] for h in holds)
    lines = ["# This project's attn_unet bundle against nnU-Net v2 at equal wall-clock"
             + (" (--quick)" if args.quick else ""),
             "", machine_header(quoted_argv()), "",
             f"Training data: `{pre['dataset']}` (converted from the phantoms by `python -m pipeline convert --to "
             f"nnunet`). Held-out: {cases} case(s) of {', '.join(h['name'] for h in holds)}, scored in the scans' "
             "own space by `pipeline.evaluation.folders` (tumour Dice over the cases with a tumour; a lesion is found "
             f"at IoU > 0.1). nnU-Net ({pre.get('nnunet_version', '?')}, its own environment): its default "
             f"`nnUNetTrainer`, fold 0, device {args.device}, through `benchmarks/nnunet_driver.py` (its own hooks, "
             "stopped at the budget, "
             f"schedule `{args.nnunet_schedule}`); its plan + preprocess took {pre['wall_s']:.0f} s, outside its "
             "budget. The bundle: `bundles/attn_unet/train.json` default recipe following a plan made once by "
             f"`python -m pipeline plan` ({pre['bundle_plan']['wall_s']:.0f} s, outside its budget), epochs set to "
             "fit, SIGTERM at the budget; its best validated `model.pt` is scored, with `inference.json`'s "
             "defaults. Budgets count "
             "from each training process's start (imports, data loading and caching included). nnU-Net's case AUROC "
             "comes from its `--save_probabilities` maps, converted to `<case>_prob.nii.gz`. Peak memory: the "
             "largest process of each tree (wait4).",
             "", "## Plans", "", *plan_table(nn_plan, our_plan), "",
             "## Training runs", "",
             "| system | budget | wall s | stopped at the budget | epochs | iterations or val. interval | "
             "peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for key, r in runs.items():
        system, label = key.split(" ", 1)
        if system == "nnunet":
            lines.append(f"| nnU-Net | {label} | {r['wall_s']:.0f} | {r['cut_by_budget']} | {r['epochs_completed']} "
                         f"of {r['num_epochs_final']} | {r['iterations']} iterations (start {r['start_s']:.0f} s) | "
                         f"{r['peak_rss_mb']} |")
        else:
            last = r["curve"][-1]["epoch"] if r["curve"] else 0
            lines.append(f"| this project | {label} | {r['wall_s']:.0f} | {r['stopped']} | {last} validated of "
                         f"{r['epochs_set']} | every {r['val_interval']} epochs | {r['peak_rss_mb']} |")
    if deviations:
        lines += ["", "Deviation from nnU-Net's defaults: " + "; ".join(sorted(set(deviations))) + "."]
    if not mirroring:
        lines += ["", "nnU-Net's mirroring (8 passes per case, its default) was not run: on this CPU one pass takes "
                  "minutes per case (`--mirroring on` to run it)."]
    lines += ["", "## Held-out scores", "",
              "| system | budget | prediction | train wall s | pancreas Dice | tumour Dice | lesions found | "
              "FP components / case | case AUROC | predict s / case | predict peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'nnU-Net' if r['system'] == 'nnunet' else 'this project'} | {r['budget']} | {r['mode']} | "
                     f"{r['train_wall_s']:.0f} | {_f(r.get('dice_pancreas'))} | {_f(r.get('dice_tumour'))} | "
                     f"{_f(r.get('lesion_sensitivity'))} of {r.get('lesions', '-')} | "
                     f"{_f(r.get('fp_components_per_case'), 2)} | {_f(r.get('case_auroc'))} | "
                     f"{r.get('predict_s_per_case', '-')} | {r.get('predict_peak_rss_mb', '-')} |")
    goals = compare_goals(rows)
    png = extra / "curves.png"
    lines += ["", "## Goals (issue 38)", "", *goal_lines(goals), "",
              f"Learning curves: `{extra.name}/curves.png` (points in `{extra.name}/curves.json`)."]
    md.write_text("\n".join(lines) + "\n")
    nn_curves = {k.split(" ", 1)[1]: _json(r["root"] / "curve.json") for k, r in runs.items()
                 if k.startswith("nnunet")}
    our_curves = {k.split(" ", 1)[1]: {"curve": r["curve"], "loss": r["loss"]} for k, r in runs.items()
                  if k.startswith("bundle")}
    plot_curves(nn_curves, our_curves, png)
    (extra / "curves.json").write_text(json.dumps({"nnunet": nn_curves, "bundle": our_curves}, indent=1))
    figures = {f"{r['system']}_{r['budget']}_{r['mode']}_{k}".replace(" ", "_"): r[k] for r in rows
               for k in ("dice_pancreas", "dice_tumour", "lesion_sensitivity", "case_auroc", "predict_s_per_case")
               if k in r}
    figures.update({f"goal_{i}_margin": round(g["margin"], 4) for i, g in enumerate(goals)})
    cols = list(dict.fromkeys(c for r in rows for c in r))
    write_json(NAME, figures, lines=lines, report=md,
               path=(md.with_suffix(".json") if out_dir else None),
               title="attn_unet bundle against nnU-Net v2 at equal wall-clock",
               tables={"scores": {"columns": cols, "rows": [[r.get(c) for c in cols] for r in rows]},
                       "goals": {"columns": ["goal", "bundle", "nnunet", "margin", "met"],
                                 "rows": [[g[c] for c in ("goal", "bundle", "nnunet", "margin", "met")]
                                          for g in goals]}})
