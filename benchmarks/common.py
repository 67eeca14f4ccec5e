"""Shared by the benchmark scripts: machine description and timed bundle runs with peak memory."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_header(command: str) -> str:
    """Markdown lines naming the machine, date, software and the command that produced a result file."""
    import monai

    from pipeline.engines import cpu_has_native_bf16

    return "\n".join(
        [
            f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, "
            f"native bfloat16: {cpu_has_native_bf16()}, CUDA: {torch.cuda.is_available()}",
            f"- software: python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}",
            f"- command: `{command}`",
        ]
    )


@dataclass
class RunResult:
    returncode: int
    wall_s: float
    peak_rss_mb: float
    log: str


def bundle_command(config_files: list[str], overrides: dict[str, object],
                   launcher: list[str] | None = None) -> list[str]:
    """``python -m monai.bundle run --config_file [...] --key value ...``; ``launcher`` replaces ``python -m``
    (e.g. torchrun's ``python -m torch.distributed.run ... -m``)."""
    cmd = [*(launcher or [sys.executable, "-m"]), "monai.bundle", "run", "--config_file", repr(list(config_files))]
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    return cmd


def run_bundle(config_files: list[str], overrides: dict[str, object], log_file: Path) -> RunResult:
    """Run ``python -m monai.bundle run`` in a child process; wall time and the child's peak RSS (wait4)."""
    cmd = bundle_command(config_files, overrides)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_file.open("w") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return RunResult(proc.returncode, wall, usage.ru_maxrss / 1024.0, log_file.read_text())


def fresh_clone(ref: str, work: Path) -> tuple[Path, Path, dict[str, str], str]:
    """Clone this repository at ``ref`` into ``work/clone`` (``work`` emptied first) and create an empty virtual
    environment in ``work/venv``; return (clone, venv, the environment that activates it, the short commit)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    clone, venv = work / "clone", work / "venv"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", ref], cwd=clone, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    return clone, venv, env, commit


def timed_shell(command: str, cwd: Path, env: dict[str, str], log: Path, mode: str = "w") -> tuple[int, float, float]:
    """Run ``command`` with bash, output to ``log``; (exit code, wall seconds, peak RSS in MB of its processes)."""
    start = time.perf_counter()
    with log.open(mode) as f:
        proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024.0


def read_summary(csv_path: Path) -> dict[str, float]:
    """metric -> mean from a metrics_summary.csv written by CaseMetricsHandler."""
    import csv

    with csv_path.open() as f:
        return {row["metric"]: float(row["mean"]) for row in csv.DictReader(f)}


def quoted_argv() -> str:
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


SHOWS = "## What it shows"


def write_result(path: str | Path, lines: list[str]) -> None:
    """Write a result file's measured part, keeping the hand-written reading (from ``SHOWS`` on) of the file there."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    kept = old[old.index(SHOWS):] if SHOWS in old else ""
    path.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
