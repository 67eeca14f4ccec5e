"""Shared by the benchmarks: the machine description, timed bundle runs with peak memory, and the one writer of the
machine-readable result files ``benchmarks/results/<name>_<machine kind>.json`` that ``python -m benchmarks page``
turns into ``docs/benchmarks.md``."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SECOND_STAGE = "stage 'fine':"  # pipeline.engines.run_stage's log line before a second stage trains
RESULTS = REPO / "benchmarks" / "results"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (oneDNN's check for AVX512-BF16 / AMX), as ``amp: auto`` decides."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine() -> dict[str, object]:
    """The machine a result was measured on: CPU model, cores, bfloat16 support, GPU (None without one), software."""
    import monai

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "native_bfloat16": native_bf16(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "monai": monai.__version__}


def machine_kind(info: dict[str, object], by_precision: bool = True) -> str:
    """``cuda`` with a GPU, else ``cpu_bfloat16`` / ``cpu_float32`` (what ``amp: auto`` trains in on that CPU), or
    plain ``cpu`` where the precision does not matter to the benchmark."""
    if info.get("gpu"):
        return "cuda"
    if not by_precision:
        return "cpu"
    return "cpu_bfloat16" if info.get("native_bfloat16") else "cpu_float32"


def result_path(name: str, suffix: str = ".json", variant: str | None = None, by_precision: bool = True,
                info: dict[str, object] | None = None) -> Path:
    """``benchmarks/results/<name>[_<variant>]_<machine kind><suffix>``: one result per benchmark (and variant) per
    machine kind; a rerun replaces it (older results are in git's history)."""
    kind = machine_kind(info if info is not None else machine(), by_precision)
    return RESULTS / f"{name}{'_' + variant if variant else ''}_{kind}{suffix}"


def git_commit(cwd: Path = REPO) -> str | None:
    """The short commit of ``cwd`` (with ``+dirty`` when the work tree differs), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_header(command: str) -> str:
    """Markdown lines naming the machine, date, software and the command that produced a result file."""
    m = machine()
    return "\n".join(
        [
            f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            f"- machine: {m['cpu']}, {m['cores']} logical cores, torch threads {m['torch_threads']}, "
            f"native bfloat16: {m['native_bfloat16']}, CUDA: {m['gpu'] is not None}"
            + (f", GPU: {m['gpu']}" if m["gpu"] else ""),
            f"- software: python {m['python']}, torch {m['torch']}, monai {m['monai']}",
            f"- command: `{command}`",
        ]
    )


def _cell(text: str) -> object:
    """A markdown table cell as a number where it is one (``1.057`` -> 1.057, ``1687`` -> 1687), else the text."""
    t = text.strip().strip("*")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def md_tables(lines: list[str]) -> dict[str, dict[str, list]]:
    """The markdown tables among ``lines``: caption (the last non-table text line before the table, else
    ``table N``) -> {"columns": [...], "rows": [[...], ...]}, numeric cells as numbers."""
    text = "\n".join(lines).splitlines()
    tables: dict[str, dict[str, list]] = {}
    caption, i = "", 0
    while i < len(text):
        line = text[i].strip()
        if line.startswith("|") and i + 1 < len(text) and set(text[i + 1].strip()) <= set("|-: "):
            columns = [c.strip() for c in line.strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(text) and text[i].strip().startswith("|"):
                rows.append([_cell(c) for c in text[i].strip().strip("|").split("|")])
                i += 1
            key = caption or f"table {len(tables) + 1}"
            while key in tables:
                key += " (continued)"
            tables[key] = {"columns": columns, "rows": rows}
            caption = ""
            continue
        if line and not line.startswith("|"):
            caption = line.lstrip("#- ")
            caption = (caption.split(". ")[0] if len(caption.split(". ")[0]) >= 12 else caption).rstrip(":.")
            caption = caption if len(caption) <= 100 else caption[:99] + "…"
        i += 1
    return tables


def write_json(name: str, figures: dict[str, object], *, lines: list[str] | None = None, variant: str | None = None,
               by_precision: bool = True, title: str | None = None, command: str | None = None,
               commit: str | None = None, report: str | Path | None = None, path: str | Path | None = None,
               tables: dict[str, dict[str, list]] | None = None) -> Path:
    """Write the machine-readable result of benchmark ``name``: machine, date, commit, command, the headline
    ``figures`` (flat name -> number or text), the markdown tables of ``lines`` (the human-readable report the
    benchmark also writes, at ``report``) and any further ``tables``. ``path`` defaults to :func:`result_path`."""
    info = machine()
    out = Path(path) if path else result_path(name, ".json", variant, by_precision, info)
    result = {
        "benchmark": name,
        "variant": variant,
        "title": title or (lines[0].lstrip("# ").strip() if lines else name),
        "machine": {"kind": machine_kind(info, by_precision), **info},
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": commit if commit is not None else git_commit(),
        "command": command or quoted_argv(),
        "figures": figures,
        "tables": {**md_tables(lines or []), **(tables or {})},
        "report": _repo_relative(report) if report else None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    print(f"written {out}")
    return out


def _repo_relative(path: str | Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


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
    r = run_timed(["bash", "-c", command], log, env, cwd=cwd, mode=mode)
    return r["returncode"], r["wall_s"], r["peak_rss_mb"]


def run_timed(cmd: list[str], log: Path, env: dict[str, str] | None = None, stop_after: float | None = None,
              grace: float = 180.0, done_marker: str | None = None, cwd: Path = REPO,
              mode: str = "w") -> dict[str, object]:
    """The benchmarks' one way to run a child: ``cmd`` in ``cwd``, its output (after a ``$ command`` line) to
    ``log``; SIGTERM at ``stop_after`` seconds unless ``done_marker`` is in the log by then (the work is done, the
    process is closing), SIGKILL ``grace`` later. Exit code, wall seconds, whether it was stopped, and the peak RSS
    of the largest process of its tree (wait4's rusage)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stopped = killed = False
    with log.open(mode) as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            waited = time.perf_counter() - start
            if stop_after is not None and waited > stop_after and not stopped:
                if done_marker is None or done_marker not in log.read_text():
                    proc.send_signal(signal.SIGTERM)
                    stopped = True
                else:
                    stop_after = None
            if stop_after is not None and waited > stop_after + grace and not killed:
                proc.kill()
                killed = True
            time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 1), "stopped": stopped,
            "peak_rss_mb": round(usage.ru_maxrss / 1024.0)}


def run_checked(cmd: list[str], log: Path) -> float:
    """``run_timed`` for a child that must succeed: its wall seconds, or stop naming the log."""
    r = run_timed(cmd, log)
    if r["returncode"]:
        raise SystemExit(f"failed (exit {r['returncode']}), see {log}")
    return r["wall_s"]


def read_summary(csv_path: Path) -> dict[str, float]:
    """metric -> mean from a metrics_summary.csv written by CaseMetricsHandler."""
    import csv

    with csv_path.open() as f:
        return {row["metric"]: float(row["mean"]) for row in csv.DictReader(f)}


def ct_scores(eval_dirs: list[Path]) -> dict[str, float]:
    """Scores of one or more CT evaluation folders taken as one set: pancreas Dice over every case, tumour Dice over
    the cases whose label has a tumour (``recall_tumour`` defined), and the lesion-level summary."""
    import csv
    import math

    from pipeline.evaluation.lesions import lesion_summary, read_lesion_tables

    rows = [r for d in eval_dirs for r in csv.DictReader((d / "metrics_per_case.csv").open())]
    with_tumour = [float(r["dice_tumour"]) for r in rows if math.isfinite(float(r["recall_tumour"]))]
    s = lesion_summary(*read_lesion_tables(eval_dirs))
    return {"cases": len(rows), "cases_with_tumour": len(with_tumour),
            "dice_pancreas": round(sum(float(r["dice_pancreas"]) for r in rows) / len(rows), 4),
            "dice_tumour_cases_with_tumour": round(sum(with_tumour) / len(with_tumour), 4) if with_tumour else math.nan,
            "lesion_sensitivity": round(s["sensitivity"]["sensitivity"], 3),
            "lesions": s["sensitivity"]["lesions"],
            "lesion_sensitivity_goal_bin": round(s["goal_bin"]["sensitivity"], 3),
            "lesions_goal_bin": s["goal_bin"]["lesions"],
            "fp_components_per_case": round(s["fp_components_per_case"], 3),
            "case_auroc": round(s["case_auroc"], 3), "case_average_precision": round(s["case_average_precision"], 3)}


def quoted_argv() -> str:
    """The command line that ran this benchmark, as ``python -m benchmarks run NAME ...`` would repeat it."""
    argv = list(sys.argv)
    prog = Path(argv[0]).stem if argv else ""
    head = ["python", "-m", f"benchmarks.{prog}"] if prog and prog not in ("__main__", "-c") else ["python"]
    return " ".join(shlex.quote(a) for a in [*head, *argv[1:]])


SHOWS = "## What it shows"


def write_result(path: str | Path, lines: list[str]) -> None:
    """Write a result file's measured part, keeping the hand-written reading (from ``SHOWS`` on) of the file there."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    kept = old[old.index(SHOWS):] if SHOWS in old else ""
    path.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
