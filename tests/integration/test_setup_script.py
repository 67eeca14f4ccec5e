"""scripts/setup.sh, run against a stand-in Python that records its arguments (nothing is installed)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # runs scripts/setup.sh in bash

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "{log}"
if [ "$1" = "-c" ] && [ "$2" = "import torch" ]; then exit {torch_status}; fi
if [ "$1" = "-c" ]; then echo "2.13.0"; fi
exit 0
"""


def run_setup(tmp_path: Path, *args: str, torch_installed: bool = True, dont_write_bytecode: bool = False) -> list[str]:
    """Run setup.sh with a stand-in python; return the pip commands it ran."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(log=log, torch_status=0 if torch_installed else 1))
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHON"] = str(fake)
    if dont_write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    subprocess.run(["bash", str(REPO / "scripts/setup.sh"), *args], env=env, check=True, capture_output=True)
    return [line for line in log.read_text().splitlines() if line.startswith("-m pip install")]


def test_pip_skips_byte_compiling_where_python_caches_at_import(tmp_path):
    pips = run_setup(tmp_path, "--dev", torch_installed=False)
    assert len(pips) == 2  # the CPU torch first, then the project
    assert "torch==2.13.0" in pips[0] and pips[1].endswith("-e .[dev]")
    assert all("--no-compile" in p for p in pips)


@pytest.mark.parametrize("torch_installed", [True, False])
def test_pip_byte_compiles_where_python_writes_no_cache(tmp_path, torch_installed):
    pips = run_setup(tmp_path, torch_installed=torch_installed, dont_write_bytecode=True)
    assert len(pips) == (1 if torch_installed else 2)  # an importable torch is kept
    assert pips[-1].endswith("-e .")
    assert not any("--no-compile" in p for p in pips)
