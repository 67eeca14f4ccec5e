"""The CT recipe on one CUDA GPU (issue 14c): step time by width and memory format, the user's command with its
defaults, its held-out scores, and the data-wait share of the on-device and worker-process loading paths.

Run on a GPU machine from the repository root, after the data directory is empty (a fresh checkout):

1. Train step (forward, deep-supervised DiceCE, backward, AdamW) of the CT network on the plan's GPU batch
   (4 cases x 2 crops of the planned patch), 16-bit autocast, cuDNN autotuning, for base widths 8/16/32 in the
   contiguous and channels-last-3d formats; medians of timed steps after warm-up (synchronised).
2. The user's command, ``python -m monai.bundle run --config_file bundles/attn_unet/train.json``, unchanged, timed
   from its start (phantom generation, planning, caching, training, validation); each validation is placed on
   that clock, so the Dice reached within 5 minutes can be read off.
3. Its best checkpoint scored with ``evaluate.json`` on the 4 test phantoms and 8 unseen phantoms (generator seed
   1000), as benchmarks/user_command.py does on a CPU.
4. Two epochs of the same recipe with ``--augment_on workers`` (random transforms in ``num_workers`` DataLoader
   processes, the previous behaviour, with the plan's 8 workers) and ``--augment_on device``: data-wait share
   side by side.
5. One epoch of multi_gpu_train.json under torchrun (1 process, NCCL): the DDP wrapping on CUDA.

    python -m benchmarks run gpu_recipe --out DIR [--deadline 540]

DIR receives ``gpu_recipe_<kind>.md`` and ``.json`` (copy them into benchmarks/results/) and the logs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import REPO, bundle_command, machine_header, quoted_argv, read_summary, result_path, write_json
from benchmarks.ct_step_layout import network

TRAIN = "bundles/attn_unet/train.json"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Epoch\[(\d+)\] Metrics -- (.*val_dice_pancreas.*)$",
                      re.M)
WAIT = re.compile(r"data wait: ([\d.]+) s of ([\d.]+) s iteration time \(([\d.]+) %\)")


def step_times(patch: list[int], widths=(8, 16, 32), repeats: int = 8) -> list[str]:
    """The CT network of ct_step_layout.py (the planned strides) on CUDA: one row per width and memory format."""
    from monai.losses import DeepSupervisionLoss, DiceCELoss

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, *patch, generator=gen).to(dev)
    y = torch.randint(0, 3, (8, 1, *patch), generator=gen).float().to(dev)
    loss_fn = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="exp")
    rows = ["| base width | memory format | median ms/step | peak GPU memory (GiB) |", "|---|---|---|---|"]
    for width in widths:
        for cl in (False, True):
            net = network(width, cl).to(dev)
            xi = x.contiguous(memory_format=torch.channels_last_3d) if cl else x
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler("cuda")
            torch.cuda.reset_peak_memory_stats()
            times = []
            for i in range(3 + repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16):
                    out = net(xi)
                    loss = loss_fn([o.float() for o in out], y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                torch.cuda.synchronize()
                if i >= 3:
                    times.append(time.perf_counter() - t0)
            rows.append(f"| {width} | {'channels_last_3d' if cl else 'contiguous'} | "
                        f"{1000 * statistics.median(times):.1f} | {torch.cuda.max_memory_allocated() / 2**30:.2f} |")
            del net, opt
            torch.cuda.empty_cache()
    return rows


def run(cmd: list[str], log: Path, timeout: float) -> tuple[int, float, str]:
    """(exit code or 124 on timeout, seconds, log text)."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        try:
            code = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - t0, log.read_text(errors="replace")


EXTRA: dict[str, str] = {}


def bundle(*configs: str, **overrides: object) -> list[str]:
    """The bundle command with the ``--extra`` overrides under the given ones."""
    return bundle_command(list(configs), {**EXTRA, **overrides})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds: later parts are skipped past it")
    ap.add_argument("--train_timeout", type=float, default=330.0)
    ap.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every bundle run (smoke tests)")
    args = ap.parse_args()
    EXTRA.update(kv.split("=", 1) for kv in args.extra)
    begin = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    left = lambda: args.deadline - (time.perf_counter() - begin)  # noqa: E731
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [f"# The CT recipe on one GPU ({gpu})", "", machine_header(quoted_argv()), f"- GPU: {gpu}", ""]
    figures: dict[str, object] = {}
    stem = result_path("gpu_recipe", "").name

    def flush() -> None:
        (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        write_json("gpu_recipe", figures, lines=lines, report=f"benchmarks/results/{stem}.md",
                   path=out / f"{stem}.json")

    # 1. step times at the plan's GPU patch
    patch = [80, 80, 40]  # the plan's GPU patch on the phantoms, with ct_step_layout's STRIDES
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
        lines += [f"## 1. Train step, 8 crops {'x'.join(map(str, patch))} (the plan's GPU batch), float16 autocast", ""]
        lines += step_times(patch)
    except Exception as e:  # noqa: BLE001 - a benchmark part that fails is reported, the others still run
        lines += [f"step benchmark failed: {e!r}"]
    lines.append("")
    flush()

    # 2. the user's command
    start = dt.datetime.now()
    code, wall, log = run(bundle(TRAIN), out / "train.log", args.train_timeout)
    history = []
    for stamp, epoch, text in LOG_TIME.findall(log):
        at = (dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") - start).total_seconds()
        m = dict((k, float(v)) for k, v in re.findall(r"(\w+): ([-\d.]+)", text))
        history.append((int(epoch), at, m))
    plan = re.search(r"plan for .*?\n((?:  .*\n)+)", log)
    wait = WAIT.search(log)
    figures.update({"user_command_exit": code, "user_command_wall_s": round(wall)})
    if history:
        epoch, at, m = max(history, key=lambda h: h[2].get("val_mean_dice", -1))
        figures.update({"best_epoch": epoch, "seconds_at_best_epoch": round(at),
                        "val_pancreas_dice_best": round(m.get("val_dice_pancreas", float("nan")), 4)})
    lines += ["## 2. The user's command with its defaults", "",
              f"`python -m monai.bundle run --config_file {TRAIN}` on an empty data folder: exit {code}"
              f"{' (stopped at the time limit)' if code == 124 else ''}, {wall:.0f} s wall.", "",
              f"Data loading: `{wait.group(0) if wait else 'not logged'}`", "",
              "| epoch | seconds since start | Dice pancreas | Dice tumour |", "|---|---|---|---|"]
    for epoch, at, m in history:
        lines.append(f"| {epoch} | {at:.0f} | {m.get('val_dice_pancreas', float('nan')):.4f} | "
                     f"{m.get('val_dice_tumour', float('nan')):.4f} |")
    if plan:
        lines += ["", "```", plan.group(1).rstrip(), "```"]
    if code not in (0, 124):
        lines += ["", "```", log[-2500:], "```"]
    lines.append("")
    flush()

    # 3. held-out scores of the best checkpoint
    if (REPO / "bundles/attn_unet/models/model.pt").exists() and left() > 90:
        gen = subprocess.Popen([sys.executable, "-m", "pipeline", "make-pancreas", "--out", "/tmp/unseen8", "--n",
                                "1", "--n-test", "8", "--seed", "1000"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
        scores = {}
        for name, data in (("test4", None), ("unseen8", "/tmp/unseen8")):
            if data:
                gen.wait()
            over = {"eval_dir": f"/tmp/eval_{name}"}
            if data:
                over["dataset_dir"] = data
            c, s, elog = run(bundle(TRAIN, "bundles/attn_unet/evaluate.json", **over), out / f"eval_{name}.log", 150)
            if c == 0:
                scores[name] = read_summary(Path(f"/tmp/eval_{name}") / "metrics_summary.csv")
            else:
                lines += [f"evaluation on {name} failed (exit {c}):", "```", elog[-1500:], "```"]
        if len(scores) == 2:
            p12 = (4 * scores["test4"]["dice_pancreas"] + 8 * scores["unseen8"]["dice_pancreas"]) / 12
            figures.update({"heldout12_pancreas_dice": round(p12, 4),
                            "test4_pancreas_dice": round(scores["test4"]["dice_pancreas"], 4),
                            "unseen8_pancreas_dice": round(scores["unseen8"]["dice_pancreas"], 4),
                            "test4_tumour_dice": round(scores["test4"].get("dice_tumour", float("nan")), 4),
                            "unseen8_tumour_dice": round(scores["unseen8"].get("dice_tumour", float("nan")), 4)})
            lines += ["## 3. Held-out phantoms (best checkpoint, evaluate.json)", "",
                      f"- pancreas Dice, 12 never-trained phantoms: {p12:.4f} (test 4 "
                      f"{scores['test4']['dice_pancreas']:.4f}, unseen 8 {scores['unseen8']['dice_pancreas']:.4f})",
                      f"- tumour Dice: test 4 {scores['test4'].get('dice_tumour', float('nan')):.4f}, unseen 8 "
                      f"{scores['unseen8'].get('dice_tumour', float('nan')):.4f}", ""]
        flush()

    # 4. data wait: worker processes against the device, a few epochs each
    rows = ["## 4. Data wait by loading path (2 epochs each, no validation)", "",
            "| augment_on | num_workers | exit | wall (s) | data wait |", "|---|---|---|---|---|"]
    for mode, workers in (("workers", 8), ("device", 0)):
        if left() < 75:
            rows.append(f"| {mode} | {workers} | skipped (time) | | |")
            continue
        root = f"/tmp/wait_{mode}_{workers}"
        c, s, wlog = run(bundle(TRAIN, bundle_root=root, augment_on=mode, num_workers=workers, epochs=2,
                                val_interval=1000), out / f"wait_{mode}_{workers}.log", min(150, left() - 10))
        w = WAIT.search(wlog)
        if w:
            figures[f"data_wait_percent_{mode}_{workers}"] = float(w.group(3))
        rows.append(f"| {mode} | {workers} | {c} | {s:.0f} | {w.group(0) if w else '-'} |")
        if c not in (0,):
            err = [ln for ln in wlog.splitlines() if "Error" in ln or "error" in ln][-3:]
            rows.append(f"|  |  | error lines: {' / '.join(e.strip()[:200] for e in err)} | | |")
    lines += rows + [""]
    flush()

    # 5. DistributedDataParallel over NCCL (one process: the CUDA path of multi_gpu_train.json)
    if left() > 60 and torch.cuda.is_available():
        cmd = bundle_command([TRAIN, "bundles/attn_unet/multi_gpu_train.json"],
                             {**EXTRA, "bundle_root": "/tmp/ddp", "epochs": 1, "val_interval": 1},
                             launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc_per_node=1", "-m"])
        c, s, dlog = run(cmd, out / "ddp.log", min(120, left() - 5))
        val = LOG_TIME.findall(dlog)
        lines += ["## 5. DDP over NCCL, 1 process, 1 epoch", "",
                  f"exit {c}, {s:.0f} s; nccl named in the log: {'nccl' in dlog.lower()}; validation: "
                  f"{val[-1][2] if val else 'none'}", ""]
        if c:
            lines += ["```", dlog[-1500:], "```", ""]
        flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
