"""Which way of making training batches pays on this machine? (issue 14, "How")

The unet bundle on the default shapes (augmentation in the main process, ~17 % of its iteration time on 2 cores
with metadata) trains a few epochs in each of these ways, each in its own process, alternating so that a shared
machine slows all alike:

- ``DataLoader``: the bundle's torch ``DataLoader``, the random transforms without metadata tracking (the default
  on CPU since ``pipeline.engines.TrainingCompose``);
- ``DataLoader+meta``: the same with MONAI's metadata tracked through the random transforms (the default before);
- ``ThreadDataLoader``: ``augment_on: device`` on the CPU, MONAI's ``ThreadDataLoader`` (a background thread
  prepares the next batch while the network trains), without metadata: the default of the device path since
  ``pipeline.engines.METADATA_LOCK`` keeps the process-wide switch on while validation runs;
- ``ThreadDataLoader+meta``: the same with metadata (the device path's default before).

Reported: the trainer's wall time and its ``data wait:`` line. A rerun keeps the file's hand-written reading.

    python benchmarks/loader_threads.py [--epochs 3] [--repeats 2] [--out benchmarks/results/loader_threads.md]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402

LOADERS: dict[str, dict[str, object]] = {
    "DataLoader": {},
    "DataLoader+meta": {"train#preprocessing#track_meta": True},
    # the bundle's own thread path (augment_on: device, the CUDA default), here on the CPU
    "ThreadDataLoader": {"augment_on": "device"},
    "ThreadDataLoader+meta": {"augment_on": "device", "train#preprocessing#track_meta": True},
}
FINISHED = re.compile(r"SupervisedTrainer - INFO - Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)")
WAIT = re.compile(r"data wait: ([\d.]+) s of ([\d.]+) s iteration time")
CHILD = """
import json, logging, sys
from pipeline.study.bundle_run import bundle_parser, run_sections
logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s",
                    stream=sys.stdout)
root, data, epochs, overrides = sys.argv[1:5]
run_sections(bundle_parser(["bundles/unet/train.json"], {"bundle_root": root, "dataset_dir": data,
    "epochs": int(epochs), "val_interval": 10**6, **json.loads(overrides)}))
"""


def run(loader: str, epochs: int, work: Path, data: Path, k: int) -> tuple[float, float]:
    """(trainer seconds, data-wait percent) of one child run."""
    root = work / f"{loader.replace('+', '_')}_{k}"
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(data), str(epochs), json.dumps(LOADERS[loader])],
                         cwd=REPO, capture_output=True, text=True)
    log = out.stdout + out.stderr
    done, wait = FINISHED.search(log), WAIT.search(log)
    if out.returncode or not done or not wait:
        raise SystemExit(f"{loader} run failed (exit {out.returncode}):\n{log[-2000:]}")
    h, m, s = done.groups()
    return int(h) * 3600 + int(m) * 60 + float(s), 100 * float(wait.group(1)) / float(wait.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/loader_threads.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "shapes2d"
        subprocess.run([sys.executable, "-m", "pipeline", "make-shapes", "--out", str(data)], cwd=REPO, check=True,
                       capture_output=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in LOADERS}
        for k in range(args.repeats):
            for name in LOADERS:
                results[name].append(run(name, args.epochs, work, data, k))
                print(name, k, results[name][-1], flush=True)
    base = statistics.median(t for t, _ in results["DataLoader"])
    lines = ["# Making training batches on the shapes (unet bundle)", "", machine_header(quoted_argv()),
             f"- {args.epochs} epochs of the default shapes recipe per run, {args.repeats} alternating runs per "
             "loader, medians; validation off", "",
             "| loader | trainer wall (s) | vs DataLoader | data wait (% of iteration time) |", "|---|---|---|---|"]
    for name, runs in results.items():
        t = statistics.median(r[0] for r in runs)
        w = statistics.median(r[1] for r in runs)
        lines.append(f"| {name} | {t:.1f} | {t / base:.2f}x | {w:.1f} |")
    write_result(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
