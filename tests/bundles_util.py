"""Run bundle commands the way a user does (a child ``python -m monai.bundle`` process) from the repo root."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]


def bundle(command: str, config_files: list[str], timeout: int = 300,
           **overrides: object) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <command> --config_file [...] --key value ...``; returns the completed process."""
    cmd = [sys.executable, "-m", "monai.bundle", command, "--config_file", repr(config_files)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The process failed with a single ``error: ...`` line (no traceback) containing every fragment."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


class LossTurningNaN(torch.nn.Module):
    """A training loss that becomes NaN after ``finite_calls`` calls (for the non-finite-loss guard's test); with
    ``only_rank``, only in that torch.distributed rank."""

    def __init__(self, loss: torch.nn.Module, finite_calls: int = 1, only_rank: int | None = None) -> None:
        super().__init__()
        self.loss, self.finite_calls, self.calls, self.only_rank = loss, finite_calls, 0, only_rank

    def forward(self, *args: object) -> torch.Tensor:
        self.calls += 1
        value = self.loss(*args)
        here = self.only_rank is None or torch.distributed.get_rank() == self.only_rank
        return value if self.calls <= self.finite_calls or not here else value * float("nan")


def shapes_parser(tmp_path: Path, monkeypatch, config_files: tuple[str, ...] = ("bundles/unet/train.json",),
                  **overrides: object) -> ConfigParser:
    """The unet bundle parsed in this process, on CPU, over 8 generated 32x32 shapes images (``tmp_path/data``,
    written once) with ``bundle_root`` ``tmp_path/b`` and batch 2; ``overrides`` as from the command line."""
    from pipeline.data.shapes2d import make_shapes

    monkeypatch.chdir(REPO)  # config_files are relative to the repository root
    if not (tmp_path / "data").is_dir():
        make_shapes(tmp_path / "data", n=8, seed=3, size=32)
    parser = ConfigParser()
    parser.read_config(list(config_files))
    parser.update({"device": "cpu", "dataset_dir": str(tmp_path / "data"), "bundle_root": str(tmp_path / "b"),
                   "batch_size": 2, **overrides})
    parser.get_parsed_content("prepare").run()  # the initialize step's planning, as a run does it first
    return parser
