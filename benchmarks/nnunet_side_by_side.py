"""This project's attn_unet bundle against nnU-Net v2 on the same machine, data, held-out cases and wall-clock budget.

Steps (each skipped when its output is already in ``--work``, so an interrupted run resumes):

1. Data and plans, outside the budgets: the 24 default CT phantoms (``pipeline.data.protocol.DEVELOPMENT['ct'][0]``)
   converted by ``pipeline.data.nnunet_convert`` (``python -m pipeline convert --to nnunet``) into
   ``nnUNet_raw/Dataset<ID>_PancreasPhantom``; nnU-Net's own ``nnUNetv2_plan_and_preprocess -c 3d_fullres``; this
   project's ``python -m pipeline plan``, which every bundle run then follows. Both are timed.
2. Per budget (``--budget-min``), nnU-Net: ``benchmarks/nnunet_driver.py`` runs nnU-Net's default ``nnUNetTrainer``
   (its plan, loss, augmentation, optimiser, fold 0 of its 5-fold split) through its own hooks until the budget is
   spent and writes ``checkpoint_final.pth``; ``--nnunet-schedule budget`` (default) fits its poly schedule to the
   budget, ``--own-schedule-min`` adds a run on its own 1000-epoch schedule, cut where the given time ends. Then
   the bundle: ``bundles/attn_unet/train.json`` (default recipe, epochs set to fit, SIGTERM at the budget if still
   training; its best validated ``model.pt`` counts), plus one run at a tenth of nnU-Net's longest budget (the goal
   "within 0.02 pancreas Dice of nnU-Net's longest run in a tenth of its time"; ``--no-tenth`` skips it).
3. Held-out cases (default: the 4 test phantoms of the training data; ``--held-out dev36``: the 36 of
   ``DEVELOPMENT_CT_36``): ``nnUNetv2_predict --disable_tta`` and, on CUDA or with ``--mirroring on``, with its
   mirroring (8 passes: on a CPU about 8x the minutes per case of one pass), with ``--save_probabilities``, converted
   to ``<case>_prob.nii.gz`` so that the case AUROC is defined for nnU-Net too; the bundle's ``inference.json`` with
   its defaults. Both scored alike in the scans' own space (``pipeline.evaluation.folders.evaluate_folders`` +
   ``benchmarks.common.ct_scores``).
4. Report (``benchmarks/nnunet_report.py``): the two plans side by side, the training runs, the scores per system,
   budget and prediction mode, the goals with their margins, both learning curves against wall time in one PNG.

nnU-Net runs in its own environment (``--nnunet-python``): ``python -m venv --system-site-packages /tmp/nnunet_venv``
and ``/tmp/nnunet_venv/bin/pip install -c constraints.txt "nnunetv2>=2.5"`` with ``torch==<the installed version>``
in constraints.txt (the ``nnunet`` extra of pyproject.toml names it). pip's torchvision for a CPU-only torch is a
CUDA build that does not load; nnU-Net's default trainer (the driver imports its class, not nnU-Net's lookup by
name, which imports every variant) and ``nnUNetv2_predict`` do not need it.

Cost on 2 CPU cores (AMD EPYC), the defaults: preprocessing and planning 3-6 min, 15 min of training per system
and 1.5 min for the tenth, nnU-Net's prediction 5.5-7 min per case without mirroring (4 cases: 22-28 min), the
bundle's 1-2 min per case and model: about 65-75 min in all, nnU-Net's training peaking near 12 GB. ``--quick``:
3 tiny phantoms (scale 4), 1 minute per system, 1 held-out case, both prediction modes, results under
``--work``/results instead of benchmarks/results: about 5 minutes.

    python -m benchmarks run nnunet_side_by_side --nnunet-python /tmp/nnunet_venv/bin/python
    python -m benchmarks run nnunet_side_by_side --quick --nnunet-python /tmp/nnunet_venv/bin/python
    python -m benchmarks run nnunet_side_by_side --nnunet-python PY --budget-min 5 30 --own-schedule-min 120  # CUDA
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, ct_scores, run_timed
from benchmarks.nnunet_report import parse_train_loss, write_report
from benchmarks.recipes import TRAIN_FINISHED, child_command, parse_curve

CLASSES = ("pancreas", "tumour")
CONFIGURATION = "3d_fullres"
DRIVER = REPO / "benchmarks" / "nnunet_driver.py"
INSTALL = ('python -m venv --system-site-packages /tmp/nnunet_venv && /tmp/nnunet_venv/bin/pip install '
           '"nnunetv2>=2.5" "torch==$(python -c \'import torch; print(torch.__version__)\')"')


def find_nnunet_python(given: str | None) -> str:
    """The interpreter that runs nnU-Net: ``given``, else this one if it imports nnunetv2; a one-line error else."""
    python = given or sys.executable
    probe = subprocess.run([python, "-c", "import importlib.metadata as m, nnunetv2; print(m.version('nnunetv2'))"],
                           capture_output=True, text=True)
    if probe.returncode or not probe.stdout.strip():
        where = f"--nnunet-python {given}" if given else "this interpreter"
        raise SystemExit(f"error: {where} cannot import nnunetv2; install it in its own environment ({INSTALL}) "
                         "and pass --nnunet-python /tmp/nnunet_venv/bin/python")
    return python


def nnunet_version(python: str) -> str:
    """nnunetv2's version in ``python``'s environment, and torch's there."""
    code = "import importlib.metadata as m, torch; print(m.version('nnunetv2'), torch.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.split()
    return f"nnunetv2 {out[0]}, torch {out[1]}" if len(out) == 2 else "unknown"


def nnunet_command(python: str, name: str) -> list[str]:
    """nnU-Net's console script ``name`` beside ``python`` (the venv's bin folder, not resolved through links)."""
    script = Path(python).parent / name
    if not script.is_file():
        raise SystemExit(f"error: {script} not found; is {python} the interpreter of nnU-Net's environment?")
    return [str(script)]


def _done(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def prepare_data(args: argparse.Namespace, work: Path) -> tuple[Path, list[Path]]:
    """The training data set and the data sets whose test split is held out."""
    if args.quick:
        from pipeline.data.phantom.dataset import make_pancreas_dataset

        out = work / "quick_phantoms"
        if not (out / "dataset.json").is_file():
            make_pancreas_dataset(out, n=3, n_test=1, seed=0, scale=4.0)
        return out, [out]
    from pipeline.data.protocol import DEVELOPMENT, DEVELOPMENT_CT_36, ensure_generated

    train = ensure_generated(DEVELOPMENT["ct"][0], args.data_root)
    if args.held_out == "dev36":
        return train, [ensure_generated(s, args.data_root) for s in DEVELOPMENT_CT_36]
    return train, [train]


def held_out_folders(sets: list[Path], work: Path, max_cases: int | None) -> list[dict]:
    """Per held-out data set, folders of links: ``nnunet_in/<case>_0000.nii.gz`` (nnU-Net's input naming),
    ``images/`` and ``labels/`` (the cases scored, so that a label never lacks its prediction) and the datalist the
    bundle infers."""
    from pipeline.data.datalist import load_datalist

    out = []
    for d in sets:
        cases = load_datalist(d, "test")[: max_cases or None]
        root = work / "held_out" / d.name
        for sub in ("nnunet_in", "images", "labels"):
            shutil.rmtree(root / sub, ignore_errors=True)
            (root / sub).mkdir(parents=True)
        for c in cases:
            image, label = Path(c["image"]), Path(c.get("label") or d / "labelsTs" / Path(c["image"]).name)
            ending = image.name[len(c["case"]):]
            (root / "nnunet_in" / f"{c['case']}_0000{ending}").symlink_to(image.resolve())
            (root / "images" / image.name).symlink_to(image.resolve())
            (root / "labels" / label.name).symlink_to(label.resolve())
        out.append({"name": d.name, "dataset": d, "root": root, "cases": len(cases),
                    "datalist": [{"image": c["image"], "case": c["case"]} for c in cases]})
    return out


def nnunet_base_env(work: Path, threads_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"),
            "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"), "nnUNet_results": str(work / "nnUNet_results"),
            **threads_env}


def convert_and_preprocess(args: argparse.Namespace, work: Path, train: Path, py: str, env: dict[str, str]) -> dict:
    """The nnU-Net raw data set (this project's converter) and nnU-Net's plan + preprocess, once."""
    from pipeline.data.nnunet_convert import nnunet_dataset_name

    name = nnunet_dataset_name(args.dataset_id, "PancreasPhantom")
    raw = work / "nnUNet_raw" / name
    if not (raw / "dataset.json").is_file():
        from pipeline.data.nnunet_convert import convert_dataset

        shutil.rmtree(raw, ignore_errors=True)
        convert_dataset(train, work / "nnUNet_raw", "nnunet", dataset_id=args.dataset_id, name="PancreasPhantom")
    marker = work / "nnunet_preprocess.json"
    done = _done(marker)
    if done is None:
        n_train = int(json.loads((raw / "dataset.json").read_text()).get("numTraining", 0))
        if n_train < 5:  # nnU-Net's 5-fold split needs 5 cases: fold 0 = all but the last, which validates
            pre = work / "nnUNet_preprocessed" / name
            pre.mkdir(parents=True, exist_ok=True)
            ids = sorted(p.name.split(".")[0] for p in (raw / "labelsTr").iterdir())
            (pre / "splits_final.json").write_text(json.dumps([{"train": ids[:-1], "val": ids[-1:]}]))
        cmd = nnunet_command(py, "nnUNetv2_plan_and_preprocess") + [
            "-d", str(args.dataset_id), "-c", CONFIGURATION, "-np", str(min(8, os.cpu_count() or 1))]
        print(f"nnU-Net: plan and preprocess ({work / 'nnunet_preprocess.log'})", flush=True)
        r = run_timed(cmd, work / "nnunet_preprocess.log", env)
        if r["returncode"]:
            raise SystemExit(f"nnUNetv2_plan_and_preprocess failed, see {work / 'nnunet_preprocess.log'}")
        done = {**r, "dataset": name}
        marker.write_text(json.dumps(done))
    return done


def train_nnunet(args: argparse.Namespace, py: str, env: dict[str, str], dataset: str, label: str, budget_s: float,
                 schedule: str, root: Path) -> dict:
    result = _done(root / "train_result.json")
    if result is not None:
        return result
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ipe = args.iterations_per_epoch
    cmd = [py, str(DRIVER), "--dataset", dataset, "--configuration", CONFIGURATION, "--device", args.device,
           "--budget-s", str(budget_s), "--schedule", schedule, "--curve", str(root / "curve.json")]
    if ipe:
        cmd += ["--iterations-per-epoch", str(ipe), "--val-iterations", str(max(1, round(50 * ipe / 250)))]
    print(f"nnU-Net {label}: training for {budget_s:.0f} s ({root / 'train.log'})", flush=True)
    t0 = time.time()
    r = run_timed(cmd + ["--t0", str(t0)], root / "train.log", {**env, "nnUNet_results": str(root / "results")},
                  stop_after=2 * budget_s + 900)
    curve = _done(root / "curve.json") or {}
    if r["returncode"] or not curve.get("finished"):
        raise SystemExit(f"nnU-Net training {label} failed (exit {r['returncode']}), see {root / 'train.log'}")
    result = {**r, "label": label, "budget_s": budget_s, "schedule": schedule,
              **{k: v for k, v in curve.items() if k != "points"}}
    (root / "train_result.json").write_text(json.dumps(result))
    return result


def bundle_epochs(budget_s: float, cuda: bool) -> int:
    """Epochs of the default recipe that fit ``budget_s``: on this project's CPU 120 epochs take about 12 of 15
    minutes (benchmarks/results/recipes_ct_*); on an H200 about 3.3 s per epoch after some 130 s of start
    (gpu_recipe_cuda.md). The run is stopped at the budget in any case."""
    if cuda:
        return max(2, int((budget_s - 130) / 3.3))
    return max(2, int(120 * budget_s / 900))


def plan_bundle(args: argparse.Namespace, work: Path, train: Path) -> dict:
    """This project's plan (``python -m pipeline plan``), once and outside the budgets, as nnU-Net's preprocessing;
    every bundle run then follows it (``plan.json`` in its bundle root) instead of planning inside its budget."""
    done = _done(work / "bundle_plan_timing.json")
    if done is None:
        cmd = [sys.executable, "-m", "pipeline", "plan", str(train), "--out", str(work / "bundle_plan.json"),
               "--device", args.device]
        print(f"this project: plan ({work / 'bundle_plan.log'})", flush=True)
        done = run_timed(cmd, work / "bundle_plan.log")
        if done["returncode"]:
            raise SystemExit(f"python -m pipeline plan failed, see {work / 'bundle_plan.log'}")
        (work / "bundle_plan_timing.json").write_text(json.dumps(done))
    return {**done, "plan": str(work / "bundle_plan.json")}


def train_bundle(args: argparse.Namespace, label: str, budget_s: float, data: Path, root: Path, plan: str) -> dict:
    result = _done(root / "train_result.json")
    if result is not None:
        return result
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copyfile(plan, root / "plan.json")
    epochs = args.epochs or bundle_epochs(budget_s, args.device == "cuda")
    extra = {"epochs": epochs, "val_interval": max(1, epochs // 12), "seed": args.seed, "device": args.device}
    cmd = child_command("ct", "default", args.seed, root, data, extra, ["bundles/attn_unet/train.json"])
    print(f"this project {label}: training {epochs} epochs, stopped at {budget_s:.0f} s ({root / 'train.log'})",
          flush=True)
    start = dt.datetime.now()
    r = run_timed(cmd, root / "train.log", stop_after=budget_s, done_marker=TRAIN_FINISHED)
    log = (root / "train.log").read_text()
    has_model = (root / "models" / "model.pt").is_file()
    if not has_model:  # e.g. stopped before its first validation: scored as nothing, the report says so
        print(f"this project {label}: no model.pt (exit {r['returncode']}), see {root / 'train.log'}", flush=True)
    elif r["returncode"] and not r["stopped"]:
        raise SystemExit(f"this project {label}: training failed (exit {r['returncode']}), see {root / 'train.log'}")
    result = {**r, "label": label, "has_model": has_model, "budget_s": budget_s, "epochs_set": epochs,
              "val_interval": extra["val_interval"],
              "finished": TRAIN_FINISHED in log and not r["stopped"], "curve": parse_curve(log, start),
              "loss": parse_train_loss(log, start)}
    (root / "train_result.json").write_text(json.dumps(result))
    return result


def npz_to_prob_nifti(pred_dir: Path) -> int:
    """nnU-Net's ``<case>.npz`` probabilities (channels, then its z, y, x array order) as ``<case>_prob.nii.gz``
    (x, y, z, channels, the label map's affine), the file evaluate_folders reads for the case-level score."""
    import nibabel as nib
    import numpy as np

    n = 0
    for npz in sorted(pred_dir.glob("*.npz")):
        seg = nib.load(str(npz.with_suffix(".nii.gz")))
        probs = np.load(npz)["probabilities"].astype(np.float32)
        probs = np.moveaxis(probs.transpose(0, 3, 2, 1), 0, -1)
        if probs.shape[:3] != seg.shape[:3]:
            raise SystemExit(f"{npz}: probabilities {probs.shape[:3]} do not match the label map {seg.shape[:3]}")
        nib.save(nib.Nifti1Image(probs, seg.affine), str(pred_dir / f"{npz.name[:-4]}_prob.nii.gz"))
        npz.unlink()
        n += 1
    return n


def predict_nnunet(args: argparse.Namespace, py: str, env: dict[str, str], results: Path, hold: dict, mirroring: bool,
                   out: Path) -> dict:
    timing = _done(out / "timing.json")
    if timing is not None:
        return timing
    shutil.rmtree(out, ignore_errors=True)
    cmd = nnunet_command(py, "nnUNetv2_predict") + [
        "-i", str(hold["root"] / "nnunet_in"), "-o", str(out / "pred"), "-d", str(args.dataset_id), "-c",
        CONFIGURATION, "-f", "0", "-device", args.device, "--save_probabilities"] + ([] if mirroring else
                                                                                      ["--disable_tta"])
    print(f"nnU-Net: predicting {hold['cases']} case(s) of {hold['name']}, mirroring {mirroring} ({out})", flush=True)
    r = run_timed(cmd, out / "predict.log", {**env, "nnUNet_results": str(results)})
    if r["returncode"]:
        raise SystemExit(f"nnUNetv2_predict failed, see {out / 'predict.log'}")
    npz_to_prob_nifti(out / "pred")
    timing = {**r, "cases": hold["cases"]}
    (out / "timing.json").write_text(json.dumps(timing))
    return timing


def predict_bundle(ckpt: Path, hold: dict, out: Path, device: str) -> dict:
    timing = _done(out / "timing.json")
    if timing is not None:
        return timing
    shutil.rmtree(out, ignore_errors=True)
    overrides = {"ckpt_dir": str(ckpt), "dataset_dir": str(hold["dataset"]), "infer_split": "test",
                 "pred_dir": str(out / "pred"), "save_probabilities": True, "progress": False,
                 "infer#datalist": hold["datalist"], "device": device}
    print(f"this project: predicting {hold['cases']} case(s) of {hold['name']} ({out})", flush=True)
    r = run_timed([sys.executable, "-m", "benchmarks.cascade", "--child-infer", json.dumps(overrides)],
                  out / "predict.log")
    if r["returncode"]:
        raise SystemExit(f"bundle inference failed, see {out / 'predict.log'}")
    timing = {**r, "cases": hold["cases"]}
    (out / "timing.json").write_text(json.dumps(timing))
    return timing


def scored(pred_root: Path, holds: list[dict], timings: list[dict]) -> dict:
    """ct_scores over every held-out set of one model and prediction mode, with the time per case."""
    from pipeline.evaluation.folders import evaluate_folders

    evals = []
    for hold in holds:
        eval_dir = pred_root / hold["name"] / "eval"
        if not (eval_dir / "metrics_summary.csv").is_file():
            evaluate_folders(pred_root / hold["name"] / "pred", hold["root"] / "labels", eval_dir, CLASSES,
                             lesion_class=2, image_dir=hold["root"] / "images")
        evals.append(eval_dir)
    s = ct_scores(evals)
    cases = sum(t["cases"] for t in timings)
    return {**s, "dice_tumour": s["dice_tumour_cases_with_tumour"],
            "predict_s_per_case": round(sum(t["wall_s"] for t in timings) / cases, 1),
            "predict_peak_rss_mb": max(t["peak_rss_mb"] for t in timings)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nnunet-python", default=None, help="interpreter of nnU-Net's environment (default: this one "
                    "if it imports nnunetv2)")
    ap.add_argument("--budget-min", nargs="*", type=float, default=None,
                    help="wall-clock budgets per system in minutes (default: 15 on a CPU, 5 and 30 on CUDA, 1 with "
                         "--quick)")
    ap.add_argument("--own-schedule-min", type=float, default=None,
                    help="also train nnU-Net with its own 1000-epoch schedule for this many minutes (cut there)")
    ap.add_argument("--nnunet-schedule", choices=("budget", "default"), default="budget",
                    help="budget: nnU-Net's poly schedule fitted to each budget; default: its 1000 epochs, cut")
    ap.add_argument("--iterations-per-epoch", type=int, default=None,
                    help="nnU-Net iterations per epoch (its default 250; validation iterations scale with it); a "
                         "deviation from nnU-Net's defaults that the report states")
    ap.add_argument("--epochs", type=int, default=None, help="the bundle's epochs (default: what fits the budget)")
    ap.add_argument("--no-tenth", action="store_true",
                    help="skip the bundle run at a tenth of nnU-Net's longest budget (the 'tenth of its time' goal)")
    ap.add_argument("--held-out", choices=("test4", "dev36"), default="test4")
    ap.add_argument("--max-cases", type=int, default=None, help="score only the first N held-out cases of each set")
    ap.add_argument("--mirroring", choices=("auto", "on", "off"), default="auto",
                    help="also predict with nnU-Net's mirroring (auto: on CUDA and with --quick, not on a CPU)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--dataset-id", type=int, default=501)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="/tmp/ct_recipes", help="where the default phantoms are (generated)")
    ap.add_argument("--work", default=None, help="default /tmp/nnunet_side_by_side[_quick]")
    ap.add_argument("--quick", action="store_true",
                    help="3 tiny phantoms, 1 minute per system, 1 held-out case: checks the plumbing")
    args = ap.parse_args()
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    budgets = args.budget_min or ([1.0] if args.quick else [5.0, 30.0] if cuda else [15.0])
    mirroring = args.mirroring == "on" or (args.mirroring == "auto" and (cuda or args.quick))
    work = Path(args.work or ("/tmp/nnunet_side_by_side_quick" if args.quick else "/tmp/nnunet_side_by_side"))
    work.mkdir(parents=True, exist_ok=True)
    py = find_nnunet_python(args.nnunet_python)
    train, sets = prepare_data(args, work)
    holds = held_out_folders(sets, work, 1 if args.quick else args.max_cases)
    threads = {"nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", str(min(12, os.cpu_count() or 1)))}
    env = nnunet_base_env(work, threads)
    pre = convert_and_preprocess(args, work, train, py, env)
    pre["bundle_plan"] = plan_bundle(args, work, train)
    pre["nnunet_version"] = nnunet_version(py)
    runs: dict[str, dict] = {}  # "<system> <label>" -> training result
    nn_jobs = [(f"{b:g} min", b * 60, args.nnunet_schedule) for b in budgets]
    if args.own_schedule_min:
        nn_jobs.append((f"own schedule, {args.own_schedule_min:g} min", args.own_schedule_min * 60, "default"))
    us_jobs = [(f"{b:g} min", b * 60) for b in budgets]
    longest = max(j[1] for j in nn_jobs)
    if not (args.quick or args.no_tenth or any(abs(j[1] - longest / 10) < 1 for j in us_jobs)):
        us_jobs.append((f"{longest / 600:g} min (a tenth)", longest / 10))
    for label, budget_s, schedule in nn_jobs:
        root = work / "nnunet" / label.replace(" ", "_").replace(",", "")
        runs[f"nnunet {label}"] = {"root": root, **train_nnunet(args, py, env, pre["dataset"], label, budget_s,
                                                                 schedule, root)}
    for label, budget_s in us_jobs:
        root = work / "bundle" / label.split(" (")[0].replace(" ", "_")
        runs[f"bundle {label}"] = {"root": root, **train_bundle(args, label, budget_s, train, root,
                                                                 pre["bundle_plan"]["plan"])}
    rows = []
    for key, run in runs.items():
        system, label = key.split(" ", 1)
        modes = ([False, True] if mirroring else [False]) if system == "nnunet" else [None]
        if system == "bundle" and not run["has_model"]:
            rows.append({"system": system, "budget": label, "mode": "no model within the budget",
                         "budget_s": run["budget_s"], "train_wall_s": run["wall_s"]})
            continue
        for mode in modes:
            sub = run["root"] / ("predict" if mode is None else "predict_mirroring" if mode else "predict_no_mirroring")
            if system == "nnunet":
                timings = [predict_nnunet(args, py, env, run["root"] / "results", h, mode, sub / h["name"])
                           for h in holds]
            else:
                timings = [predict_bundle(run["root"] / "models", h, sub / h["name"], args.device) for h in holds]
            rows.append({"system": system, "budget": label, "mode": ("bundle default" if mode is None else
                                                                      "mirroring" if mode else "no mirroring"),
                         "budget_s": run["budget_s"], "train_wall_s": run["wall_s"], **scored(sub, holds, timings)})
            print(json.dumps(rows[-1]), flush=True)
    write_report(args, work, pre, runs, rows, holds, mirroring, CONFIGURATION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
