"""Preemption, full disks and a second run, measured on a tiny unet training run (CPU, generated shapes).

- SIGTERM after the first epoch checkpoint, ``--repeats`` times at different moments: seconds from the signal to the
  end of the process, its exit code, the one line, complete epochs lost (completed before the signal but not kept)
  and the share of an epoch trained again; then ``--resume true`` of the first interrupted run, compared with an
  uninterrupted run (``--deterministic true``: the final weights should be equal).
- Injected write failures (``OSError(ENOSPC)`` while writing and at the rename) at every place a run writes a file
  for later use, in this process: in how many cases the previous file is still there and loads.
- A real nearly full file system where this machine can mount a tmpfs (root): the one-line error and the previous
  checkpoint.
- A second run into the folder of a live one: refused in one line? After ``kill -9`` of the first: taken over?
- The per-iteration all-reduce of the stop flag between two gloo processes (what torchrun runs pay for agreeing on
  the iteration to stop at).

    python -m benchmarks run preemption [--repeats 3] [--work /tmp/preemption]
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks.common import REPO, bundle_command, write_json

TRAIN = ["bundles/unet/train.json"]
RUN = {"epochs": 3, "val_interval": 1, "batch_size": 4, "preset": "precision", "base_width": 8, "num_workers": 0,
       "deterministic": "true"}
STOPPED = re.compile(r"training stopped by SIG\w+ (?:at epoch (\d+) iteration (\d+) of (\d+)|at the end of epoch "
                     r"(\d+)).*?(?:epoch (\d+), the last complete one\) is kept|no epoch was complete)")


def _start(data: Path, root: Path, **extra: object) -> subprocess.Popen:
    cmd = bundle_command(TRAIN, {"dataset_dir": data, "bundle_root": root, **RUN, **extra})
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(data: Path, root: Path, **extra: object) -> subprocess.CompletedProcess:
    cmd = bundle_command(TRAIN, {"dataset_dir": data, "bundle_root": root, **RUN, **extra})
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not path.exists():
        raise SystemExit(f"{path} never appeared: {proc.communicate()[1][-2000:]}")


def sigterm(data: Path, work: Path, delay: float) -> dict[str, object]:
    """One run stopped by SIGTERM ``delay`` seconds after its first epoch checkpoint appeared."""
    root = work / f"cut_{delay:g}"
    proc = _start(data, root)
    _wait_for(root / "models" / "checkpoint_epoch=1.pt", proc)
    time.sleep(delay)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    took = time.monotonic() - sent
    lines = [ln for ln in err.splitlines() if ln.startswith("training stopped by")]
    m = STOPPED.search(lines[0]) if len(lines) == 1 else None
    if m is None:
        return {"root": root, "seconds": took, "code": proc.returncode, "line": lines, "ok": False}
    if m.group(4):  # at the end of an epoch: that epoch is kept, nothing is trained again
        completed, kept, redone = int(m.group(4)), int(m.group(5) or 0), 0.0
    else:
        completed, kept = int(m.group(1)) - 1, int(m.group(5) or 0)
        redone = int(m.group(2)) / int(m.group(3))
    return {"root": root, "seconds": took, "code": proc.returncode, "line": lines[0], "ok": True,
            "epochs_lost": completed - kept, "epoch_share_redone": redone, "kept": kept}


def _weights_equal(a: Path, b: Path) -> bool:
    import torch

    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return all(torch.equal(x["network"][k], y["network"][k]) for k in x["network"])


def injected_failures(work: Path) -> tuple[int, int, list[str]]:
    """Every write site, failing while writing and at the rename: (previous file loads, cases, failed cases)."""
    import numpy as np
    import torch
    from ignite.engine import Engine, Events
    from monai.data import MetaTensor
    from PIL import Image

    from pipeline.engines import BestModelSaver, EpochCheckpointSaver
    from pipeline.evaluation.case_metrics import write_tables
    from pipeline.fileio import WriteError, write_text_atomic
    from pipeline.inference.writing import AtomicSaveImaged
    from pipeline.planning.io import write_plan

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def raise_full(*args: object, **kwargs: object) -> None:
        raise full

    def half_torch_save(obj: object, f: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04 half")  # type: ignore[attr-defined]
        raise full

    def half_text(self: Path, text: str, *args: object, **kwargs: object) -> None:
        Path.write_bytes(self, text[: len(text) // 2].encode())
        raise full

    def half_png(self: object, fp: object, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"\x89PNG half")  # type: ignore[arg-type]
        raise full

    def epoch(folder: Path, fail: mock._patch) -> bool:
        net, engine = torch.nn.Linear(3, 2), Engine(lambda e, b: None)
        saver = EpochCheckpointSaver(folder, {"network": net, "head": torch.nn.Linear(2, 1)})
        engine.state.epoch = 1
        saver(engine)
        engine.state.epoch = 2
        with fail, _expect_write_error(WriteError):
            saver(engine)
        torch.load(folder / "checkpoint_epoch=1.pt", weights_only=True)
        return not (folder / "checkpoint_epoch=2.pt").exists()

    def best(folder: Path, fail: mock._patch) -> bool:
        net = torch.nn.Linear(3, 2)
        saver = BestModelSaver(save_dir=str(folder), save_dict={"model": net}, save_key_metric=True,
                               key_metric_filename="model.pt", key_metric_name="val_mean_dice")

        def evaluate(score: float) -> None:
            ev = Engine(lambda e, b: None)
            ev.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=score))
            saver.attach(ev)
            ev.run([0], max_epochs=1)

        evaluate(0.5)
        with fail, _expect_write_error(WriteError):
            evaluate(0.7)
        torch.load(folder / "model.pt", weights_only=True)
        return True

    def text(folder: Path, fail: mock._patch, plan: bool) -> bool:
        path = folder / ("plan.json" if plan else "model_config.json")
        write = (lambda v: write_plan({"v": v}, path)) if plan else (lambda v: write_text_atomic(path, json.dumps(
            {"v": v})))
        write(1)
        with fail, _expect_write_error(WriteError):
            write(2)
        return json.loads(path.read_text()) == {"v": 1}

    def prediction(folder: Path, fail: mock._patch) -> bool:
        save = AtomicSaveImaged(keys="pred", output_dir=str(folder), output_postfix="seg", output_ext=".png",
                                output_dtype=np.uint8, resample=False, separate_folder=False, print_log=False)

        def label(v: int) -> MetaTensor:
            a = np.zeros((1, 8, 8), dtype=np.uint8)
            a[0, 2:5, 2:5] = v
            return MetaTensor(torch.from_numpy(a), meta={"filename_or_obj": str(folder / "case.png")})

        save({"pred": label(1)})
        with fail, _expect_write_error(WriteError):
            save({"pred": label(2)})
        return int(np.array(Image.open(folder / "case_seg.png")).max()) == 1

    def tables(folder: Path, fail: mock._patch) -> bool:
        summary = {"dice_a": {"mean": 0.5, "std": 0.0, "median": 0.5, "n": 1}}
        paths = write_tables([{"case": "a", "dice_a": 0.5}], summary, folder)
        before = [p.read_bytes() for p in paths]
        with fail, _expect_write_error(WriteError):
            write_tables([{"case": "a", "dice_a": 0.9}], summary, folder)
        return [p.read_bytes() for p in paths] == before

    rename = lambda: mock.patch("os.replace", raise_full)  # noqa: E731
    cases = {
        "epoch checkpoint, write": lambda d: epoch(d, mock.patch("torch.save", half_torch_save)),
        "epoch checkpoint, rename": lambda d: epoch(d, rename()),
        "model.pt, write": lambda d: best(d, mock.patch("torch.save", half_torch_save)),
        "model.pt, rename": lambda d: best(d, rename()),
        "model_config.json, write": lambda d: text(d, mock.patch.object(Path, "write_text", half_text), False),
        "model_config.json, rename": lambda d: text(d, rename(), False),
        "plan.json, write": lambda d: text(d, mock.patch.object(Path, "write_text", half_text), True),
        "plan.json, rename": lambda d: text(d, rename(), True),
        "prediction, write": lambda d: prediction(d, mock.patch.object(Image.Image, "save", half_png)),
        "prediction, rename": lambda d: prediction(d, rename()),
        "metric tables, rename": lambda d: tables(d, rename()),
    }
    failed = []
    for i, (name, case) in enumerate(cases.items()):
        folder = work / f"inject_{i}"
        folder.mkdir(parents=True)
        try:
            ok = case(folder) and not [p for p in folder.rglob(".tmp-*")]
        except Exception as e:  # the case itself broke: count it as a failure, with the reason
            ok, name = False, f"{name} ({type(e).__name__}: {e})"
        if not ok:
            failed.append(name)
    return len(cases) - len(failed), len(cases), failed


class _expect_write_error:
    """A context that requires the block to raise ``error_type`` (and swallows it)."""

    def __init__(self, error_type: type) -> None:
        self.error_type = error_type

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, value: BaseException | None, tb: object) -> bool:
        if kind is None:
            raise AssertionError("no WriteError")
        return issubclass(kind, self.error_type)


def full_disk(data: Path, work: Path, reference: Path) -> str:
    """Train into a tmpfs with room for one epoch checkpoint but not two: the stderr ``error:`` line, or why not."""
    size = (reference / "checkpoint_epoch=3.pt").stat().st_size
    best = (reference / "model.pt").stat().st_size
    disk = work / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    kb = (best + size + size // 2) // 1024 + 32
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        return f"skipped: cannot mount a tmpfs ({mounted.stderr.strip()})"
    try:
        proc = _run(data, work / "full", ckpt_dir=disk / "models")
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        names = sorted(p.name for p in (disk / "models").iterdir())
        kept = [n for n in names if n.startswith("checkpoint_epoch=")]
        import torch

        loads = all(torch.load(disk / "models" / n, weights_only=True) is not None for n in kept)
        return (f"exit {proc.returncode}; {len(lines)} error line(s): {lines[0] if lines else proc.stderr[-300:]}; "
                f"kept {kept} loads: {loads}; temporary files: {len([n for n in names if n.startswith('.tmp-')])}")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def second_run(data: Path, work: Path) -> tuple[bool, str, bool]:
    """(refused in one line naming the live run, that line, stale lock taken over after kill -9)."""
    root = work / "twice"
    first = _start(data, root, epochs=200, epoch_length=100000)  # its first epoch never ends: no checkpoint
    try:
        _wait_for(root / "models" / ".pipeline.lock", first)
        second = _run(data, root, epochs=200, epoch_length=100000)
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
        refused = second.returncode != 0 and len(lines) == 1 and f"pid {first.pid}" in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    for path in (root / "models").glob("checkpoint_epoch=*.pt"):
        path.unlink()
    third = _run(data, root, epochs=1)
    taken = third.returncode == 0 and "took over the stale lock" in third.stdout + third.stderr
    return refused, lines[0] if lines else second.stderr[-300:], taken


def _allreduce_worker(rank: int, init: str, n: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    flag = torch.zeros(1)
    for _ in range(20):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    start = time.perf_counter()
    for _ in range(n):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if rank == 0:
        Path(out).write_text(str((time.perf_counter() - start) / n * 1e6))
    dist.destroy_process_group()


def allreduce_us(work: Path, n: int = 2000) -> float:
    """Mean microseconds of one all-reduce of a one-element flag between two gloo processes on this machine."""
    import torch.multiprocessing as mp

    out = work / "allreduce.txt"
    mp.spawn(_allreduce_worker, args=(f"file://{work / 'gloo_init'}", n, str(out)), nprocs=2)
    return float(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="SIGTERMs at different moments of the second epoch")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="preemption_"))
    try:
        from pipeline.data.shapes2d import make_shapes

        data = work / "data"
        make_shapes(data, n=64, seed=3, size=32)
        whole = _run(data, work / "whole")
        if whole.returncode:
            raise SystemExit(f"the uninterrupted run failed: {whole.stderr[-2000:]}")
        stops = [sigterm(data, work, delay) for delay in [0.05 * i for i in range(args.repeats)]]
        first = stops[0]
        resumed = _run(data, Path(first["root"]), resume="true")
        equal = resumed.returncode == 0 and _weights_equal(work / "whole" / "models" / "checkpoint_epoch=3.pt",
                                                           Path(first["root"]) / "models" / "checkpoint_epoch=3.pt")
        loads, total, failed = injected_failures(work / "inject")
        disk = full_disk(data, work / "tmpfs", work / "whole" / "models")
        refused, refused_line, taken = second_run(data, work)
        reduce_us = allreduce_us(work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    good = [s for s in stops if s["ok"]]
    figures = {
        "sigterm_to_exit_s_max": round(max(float(s["seconds"]) for s in stops), 2),
        "sigterm_to_exit_s_mean": round(sum(float(s["seconds"]) for s in stops) / len(stops), 2),
        "sigterm_bound_s": 20,
        "sigterm_exit_codes": sorted({int(s["code"]) for s in stops}),
        "sigterm_one_line": f"{len(good)}/{len(stops)}",
        "complete_epochs_lost_max": max((int(s["epochs_lost"]) for s in good), default=None),
        "epoch_share_trained_again_max": round(max((float(s["epoch_share_redone"]) for s in good), default=0.0), 3),
        "resumed_weights_equal_uninterrupted": equal,
        "write_failures_previous_file_loads": f"{loads}/{total}",
        "write_failures_not_kept": failed,
        "full_tmpfs": disk,
        "second_run_refused": refused,
        "second_run_line": refused_line,
        "stale_lock_taken_over": taken,
        "gloo_allreduce_us_per_iteration": round(reduce_us, 1),
        "sigterm_lines": [str(s["line"]) for s in stops],
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    write_json("preemption", figures, by_precision=False,
               title="Preemption, write failures and one run per folder (tiny unet, CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
