"""Training throughput and peak memory: one process against N torch.distributed processes (torchrun, gloo on CPU,
nccl on GPUs), same bundle, data and settings.

Each run trains ``--epochs`` epochs in a fresh bundle folder with validation switched off (``val_interval`` past the
last epoch), so the epoch times are training steps plus the per-epoch checkpoint. Images per second = training
cases per epoch x timed epochs / their summed time, leaving out epoch 1 (caching, worker start-up). Peak memory is
the largest resident set of any one process of the run (``RUSAGE_CHILDREN`` of a child that starts only that run:
the bundle process, or the largest torchrun worker); GPU memory is not measured here. The data set is the bundle's
default (generated on first use) unless ``--dataset_dir``.

    python -m benchmarks run train_throughput                        # attn_unet defaults, 1 and 2 CPU processes
    python -m benchmarks run train_throughput --procs 1 2 4 --device cuda
    python -m benchmarks run train_throughput --quick --out /tmp/tp.md   # seconds, to check the script works
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, machine_header, quoted_argv, result_path, write_json

EPOCH_TIME = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")
QUICK = {  # per bundle default data: 3D CT phantoms for attn_unet, 2D shapes for unet
    "attn_unet": {"epochs": 3, "patch_size": "[32,32,16]", "target_spacing": "[8,8,12]", "base_width": 8},
    "unet": {"epochs": 3, "preset": "precision", "base_width": 8},
}


def epoch_seconds(log: str) -> dict[int, float]:
    """Epoch -> seconds, from the trainer's 'Epoch[k] Complete' lines (rank 0's under torchrun)."""
    return {int(e): int(h) * 3600 + int(m) * 60 + float(s) for e, h, m, s in EPOCH_TIME.findall(log)}


def training_cases(config: list[str], overrides: dict[str, object]) -> int:
    """How many training cases one epoch covers (the bundle's initialize step generates its default data set and plan
    first, if they are missing)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config)
    parser.update({k: v for k, v in overrides.items() if k in ("dataset_dir", "val_fraction", "num_folds", "fold")})
    parser.get_parsed_content("prepare").run()
    return len(parser.get_parsed_content("train#datalist"))


def run(procs: int, bundle: str, device: str, overrides: dict[str, object], log_file: Path) -> tuple[int, float]:
    """Train with ``procs`` processes (torchrun when > 1); (return code, wall seconds)."""
    config = [f"bundles/{bundle}/train.json"]
    if procs > 1:
        config.append(f"bundles/{bundle}/multi_gpu_train.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    else:
        cmd = [sys.executable]
    cmd += ["-m", "monai.bundle", "run", "--config_file", repr(config)]
    for key, value in {**overrides, **({"device": device} if procs == 1 else {})}.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ)
    if procs > 1 and device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU even on a GPU machine
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_file.open("w") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.perf_counter() - start


def measure_one(procs: int, bundle: str, device: str, overrides: dict[str, object], root: Path) -> dict[str, float]:
    """One run in a child of its own, so that RUSAGE_CHILDREN holds this run's largest process only."""
    cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--_measure", str(procs), "--bundle", bundle,
           "--device", device, "--_overrides", json.dumps(overrides), "--_root", str(root)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measuring {procs} process(es) failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="attn_unet", choices=["attn_unet", "unet"])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not timed)")
    ap.add_argument("--dataset_dir", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing useful")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one, removed)")
    ap.add_argument("--out", default=None, help="the report (default benchmarks/results/train_throughput_<kind>.md)")
    ap.add_argument("--_measure", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_overrides", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--_root", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._measure:
        rc, wall = run(args._measure, args.bundle, args.device, json.loads(args._overrides),
                       Path(args._root) / "log.txt")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        print(json.dumps({"rc": rc, "wall": wall, "peak_mb": peak}))
        return 0

    overrides: dict[str, object] = {"epochs": args.epochs}
    if args.quick:
        overrides.update(QUICK[args.bundle])
    overrides["val_interval"] = int(overrides["epochs"]) + 1  # no validation inside the timed epochs
    if args.dataset_dir:
        overrides["dataset_dir"] = args.dataset_dir
    config = [f"bundles/{args.bundle}/train.json"]
    n_cases = training_cases(config, overrides)
    work = Path(args.work or tempfile.mkdtemp(prefix="train_throughput_"))
    rows = []
    for procs in sorted(args.procs):
        root = work / f"procs_{procs}"
        shutil.rmtree(root, ignore_errors=True)
        result = measure_one(procs, args.bundle, args.device, {**overrides, "bundle_root": str(root)}, root)
        log = (root / "log.txt").read_text()
        if result["rc"] != 0:
            print(f"{procs} process(es): exit code {result['rc']}, see {root / 'log.txt'}\n{log[-3000:]}",
                  file=sys.stderr)
            return 1
        times = epoch_seconds(log)
        timed = [times[e] for e in sorted(times) if e > 1]
        ips = n_cases * len(timed) / sum(timed) if timed and sum(timed) > 0 else float("nan")
        rows.append((procs, ips, sum(timed) / max(1, len(timed)), times.get(1, float("nan")), result["peak_mb"],
                     result["wall"]))
        print(f"{procs} process(es): {ips:.2f} images/s, {result['peak_mb']:.0f} MB peak per process, "
              f"{result['wall']:.0f} s wall", flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)

    backend = "nccl" if args.device == "cuda" else "gloo"
    lines = [
        f"# Training throughput and peak memory: {args.bundle}, 1 vs N processes ({args.device})",
        "",
        machine_header(quoted_argv()),
        f"- settings: {', '.join(f'{k}={v}' for k, v in overrides.items())}; {n_cases} training cases per epoch; "
        f"N > 1: torchrun --standalone, {backend}, batch_size per process, OMP_NUM_THREADS=1 per process (torchrun)",
    ]
    if args.quick:
        lines.append("- **quick settings: a check that the script runs, not a measurement of the default recipe**")
    lines += [
        "",
        "| processes | images/s (epochs 2+) | s per epoch (2+) | epoch 1 s | peak RSS per process (MB) | wall s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {p} | {i:.2f} | {s:.1f} | {e1:.1f} | {m:.0f} | {w:.0f} |" for p, i, s, e1, m, w in rows]
    if len(rows) > 1 and rows[0][1] > 0:
        lines += ["", "Speed-up over one process: " + ", ".join(f"{p} processes {i / rows[0][1]:.2f}x"
                                                              for p, i, *_ in rows[1:])]
    out = Path(args.out) if args.out else result_path("train_throughput", ".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")
    figures: dict[str, object] = {}
    for p, i, _, _, m, _ in rows:
        unit = "process" if p == 1 else "processes"
        figures[f"images_per_s_{p}_{unit}"] = round(i, 2)
        figures[f"peak_rss_mb_{p}_{unit}"] = round(m)
        if p != rows[0][0] and rows[0][1] > 0:
            figures[f"speedup_{p}_{unit}"] = round(i / rows[0][1], 2)
    # --quick or a custom --out is a check, not the suite's result: its JSON goes beside the report
    write_json("train_throughput", figures, lines=lines, report=out,
               path=out.with_suffix(".json") if (args.out or args.quick) else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
