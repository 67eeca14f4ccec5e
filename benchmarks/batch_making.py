"""How long does the thread path take to make one training batch, with and without MONAI's metadata? (issue 14 c)

On a GPU the bundles augment the cached volumes in a ``ThreadDataLoader`` thread beside the training loop
(``augment_on: device``); when that thread needs longer per batch than the train step, the GPU waits for data.
This script times the batch making alone, with no training beside it: the bundle's own ``train#dataloader`` with
``augment_on: device`` on this machine's device, iterated for ``--batches`` batches after one warm-up pass, in a
fresh process per run, alternating the two settings of ``train#preprocessing#track_meta`` (False, the default
since ``pipeline.engines.METADATA_LOCK``; True, the device path before it). Caching is not timed.

    python benchmarks/batch_making.py [--task ct|shapes|both] [--batches 60] [--repeats 2]
        [--out benchmarks/results/batch_making.md]

The CT task uses the attn_unet bundle on phantoms the script generates (``make-pancreas --n 20``), the shapes task
the unet bundle on the default 1000 shapes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402

TASKS = {"ct": ("bundles/attn_unet/train.json", ["make-pancreas", "--n", "20"]),
         "shapes": ("bundles/unet/train.json", ["make-shapes"])}
CHILD = """
import json, sys, time, torch
from pipeline.study.bundle_run import bundle_parser
from pipeline.engines import seed_run
bundle, root, data, batches, track = sys.argv[1:6]
seed_run(0, False)
parser = bundle_parser([bundle], {"bundle_root": root, "dataset_dir": data, "augment_on": "device",
                                  "train#preprocessing#track_meta": track == "1"})
loader = parser.get_parsed_content("train#dataloader")
device = parser.get_parsed_content("precision").device
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
for _ in loader:  # warm-up pass (and any lazy set-up)
    pass
sync()
n, start = 0, time.perf_counter()
while n < int(batches):
    for batch in loader:
        n += 1
        if n == int(batches):
            break
sync()
print(json.dumps({"ms": 1000 * (time.perf_counter() - start) / n, "batch": int(batch["image"].shape[0]),
                  "shape": list(batch["image"].shape[2:]), "device": str(device)}))
"""


def run(bundle: str, root: Path, data: Path, batches: int, track: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, bundle, str(root), str(data), str(batches), str(int(track))],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{bundle} track_meta={track} failed (exit {out.returncode}):\n"
                         f"{(out.stdout + out.stderr)[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["ct", "shapes", "both"], default="both")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/batch_making.md"))
    args = ap.parse_args()
    tasks = ["ct", "shapes"] if args.task == "both" else [args.task]
    lines = ["# Making one training batch on the thread path (augment_on: device), with and without metadata", "",
             machine_header(quoted_argv()),
             f"- the bundle's train#dataloader alone (no training beside it), {args.batches} batches after a warm-up "
             f"pass, {args.repeats} alternating fresh processes per setting, medians", "",
             "| task | device | batch | patch | ms per batch, no metadata (default) | ms per batch, metadata | "
             "ratio |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for task in tasks:
            bundle, make = TASKS[task]
            data = work / f"{task}_data"
            subprocess.run([sys.executable, "-m", "pipeline", *make, "--out", str(data)], cwd=REPO, check=True,
                           capture_output=True)
            ms: dict[bool, list[float]] = {False: [], True: []}
            for k in range(args.repeats):
                for track in (False, True):
                    r = run(bundle, work / f"{task}_{k}_{int(track)}", data, args.batches, track)
                    ms[track].append(r["ms"])
                    print(task, "track_meta", track, k, r, flush=True)
            off, on = statistics.median(ms[False]), statistics.median(ms[True])
            lines.append(f"| {task} | {r['device']} | {r['batch']} | {'x'.join(map(str, r['shape']))} | {off:.1f} | "
                         f"{on:.1f} | {on / off:.2f}x |")
    write_result(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
