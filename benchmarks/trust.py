"""Trust: hostile checkpoint folders run no code, and fuzzed scans end cleanly (``python -m benchmarks run trust``).

Part 1 builds ``len(HOSTILE)`` checkpoint folders from one good tiny checkpoint, each with one hostile or broken
file (an import path to ``os``/``subprocess``/``builtins``, wrong types, huge values, missing keys, a pickle with a
``__reduce__`` payload as ``model.pt``, a ``model.ts`` that is not TorchScript or a zip with a payload, hostile plan
values). Every payload would create a marker file if it ran. Each folder goes through what the user's commands do:
``inference.json`` (initialize + run), its ``network_def`` (``ckpt_export``) and ``python -m pipeline figures``;
in-process, and as the real commands in child processes (``--cli``, the slow integration test does a handful).

Part 2 mutates a small CT scan ``FUZZ_CASES`` times (seeded: ``fuzz_case(i)`` rebuilds case ``i``): NIfTI files
truncated at random offsets, flipped header bytes, absurd dims / pixdim / datatype / scl_slope / qform and sform
codes, and broken DICOM series (missing slices, mixed sizes, duplicate positions, a truncated slice). Each case goes
through ``check-data`` (``check_dataset``), training's data loading (``load_datalist`` + the ``preprocessing`` chain
of ``bundles/attn_unet/train.json``) and inference (``inference.json`` in-process), with a time limit per case.
A case passes when every path either accepts it or stops with a PipelineError, writes nothing when it stops, and
leaves the input files byte-identical.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 20261207
FUZZ_CASES = 224  # 200 NIfTI mutations + 24 broken DICOM series
DICOM_CASES = 24
CASE_TIMEOUT_S = 60.0
MARKER = "PWNED"


# ---------------------------------------------------------------------------------------------------- part 1
def good_checkpoint(folder: Path) -> Path:
    """A tiny 3D Attention U-Net checkpoint folder as training writes it (model.pt, model_config.json, plan.json)."""
    import torch

    from pipeline.engines import network_config, save_run_files
    from pipeline.networks import AttentionUNet

    torch.manual_seed(0)
    net = AttentionUNet(3, 1, 3, preset="standard", base_width=4, strides=[[2, 2, 1]], deep_supervision=True).eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    config = {"network": network_config(net), "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
              "class_names": ["pancreas", "tumour"], "pred_ext": ".nii.gz",
              "split": {"val_fraction": 0.2, "num_folds": 0, "fold": 0, "seed": 0}, "mirror_axes": [0, 1, 2]}
    plan = {"target_spacing": [4.0, 4.0, 6.0], "patch_size": [32, 32, 16], "strides": [[2, 2, 1]], "batch_size": 2,
            "num_workers": 0, "intensity": {"mode": "window", "hu_window": [-175, 250], "zscore": None},
            "postprocessing": {"keep_largest_component": False}}
    save_run_files(folder, config, plan)
    return folder


class _Payload:
    """Unpickling this calls ``os.system('touch <marker>')``: what a hostile ``model.pt`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return os.system, (f"touch {self.marker}",)


def _edit_json(name: str, change: Callable[[dict, Path], Any]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, marker: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        out = change(data, marker)
        path.write_text(out if isinstance(out, str) else json.dumps(data))
    return apply


def _net(**values: Any) -> Callable[[Path, Path], None]:
    return _edit_json("model_config.json", lambda c, m: c["network"].update(
        {k: (v(m) if callable(v) else v) for k, v in values.items()}))


def _config(**values: Any) -> Callable[[Path, Path], None]:
    return _edit_json("model_config.json", lambda c, m: c.update(values))


def _plan(**values: Any) -> Callable[[Path, Path], None]:
    return _edit_json("plan.json", lambda p, m: p.update(values))


def _raw(name: str, text: str) -> Callable[[Path, Path], None]:
    return lambda folder, marker: (folder / name).write_text(text)


def _pickle_pt(folder: Path, marker: Path) -> None:
    (folder / "model.pt").write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))


def _torch_save_pt(folder: Path, marker: Path) -> None:
    import torch

    torch.save({"model": _Payload(marker)}, folder / "model.pt")  # the zip format, payload in data.pkl


def _not_torchscript(folder: Path, marker: Path) -> None:
    (folder / "model.ts").write_bytes(b"#!/bin/sh\ntouch " + str(marker).encode() + b"\n")


def _zip_payload_ts(folder: Path, marker: Path) -> None:
    with zipfile.ZipFile(folder / "model.ts", "w") as z:
        for name in ("data.pkl", "constants.pkl"):
            z.writestr(f"model/{name}", pickle.dumps(_Payload(marker), protocol=2))
        z.writestr("model/code/__torch__/m.py", "import os\nos.system('touch " + str(marker) + "')\n")
        z.writestr("model/version", "3\n")


def _drop(name: str) -> Callable[[Path, Path], None]:
    return lambda folder, marker: (folder / name).unlink()


#: name -> (edit of a good folder, model file the commands load, file the error must name)
HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str, str]] = {
    "target_subprocess": (_net(_target_="subprocess.run", args=lambda m: ["touch", str(m)]), "model.pt",
                          "model_config.json"),
    "target_os_system": (_net(_target_="os.system", command=lambda m: f"touch {m}"), "model.pt", "model_config.json"),
    "target_builtins_eval": (_net(_target_="builtins.eval", source=lambda m: f"open({str(m)!r}, 'w')"), "model.pt",
                             "model_config.json"),
    "target_block": (_net(_target_="pipeline.networks.blocks.ConvBlock"), "model.pt", "model_config.json"),
    "target_expression": (_net(_target_=lambda m: f"$__import__('os').system('touch {m}')"), "model.pt",
                          "model_config.json"),
    "act_import_path": (_net(act=["os.system", {}]), "model.pt", "model_config.json"),
    "norm_huge_argument": (_net(norm=["group", {"num_groups": 10**9}]), "model.pt", "model_config.json"),
    "spatial_dims_string": (_config(spatial_dims="3"), "model.pt", "model_config.json"),
    "class_names_string": (_config(class_names="pancreas"), "model.pt", "model_config.json"),
    "base_width_huge": (_net(base_width=10**9), "model.pt", "model_config.json"),
    "channels_huge": (_net(channels=[10**6, 10**6, 10**6], preset=None, base_width=None), "model.pt",
                      "model_config.json"),
    "strides_huge": (_net(strides=[[10**6, 2, 1]]), "model.pt", "model_config.json"),
    "out_channels_huge": (_config(out_channels=10**6), "model.pt", "model_config.json"),
    "unknown_key": (_config(imports=["$import os"]), "model.pt", "model_config.json"),
    "mirror_axes_out_of_range": (_config(mirror_axes=[7]), "model.pt", "model_config.json"),
    "pred_ext_path": (_config(pred_ext="/../../x.sh"), "model.pt", "model_config.json"),
    "missing_network": (_edit_json("model_config.json", lambda c, m: c.pop("network")), "model.pt",
                        "model_config.json"),
    "model_config_list": (_raw("model_config.json", "[1, 2]"), "model.pt", "model_config.json"),
    "model_config_nan": (_raw("model_config.json", '{"network": {"_target_": "UNet"}, "spatial_dims": NaN}'),
                         "model.pt", "model_config.json"),
    "model_config_deep": (_raw("model_config.json", "[" * 100000 + "]" * 100000), "model.pt", "model_config.json"),
    "model_config_bigint": (_raw("model_config.json", '{"spatial_dims": ' + "9" * 5000 + "}"), "model.pt",
                            "model_config.json"),
    "missing_plan": (_drop("plan.json"), "model.pt", "plan.json"),
    "plan_patch_huge": (_plan(patch_size=[10**7, 10**7, 10**7]), "model.pt", "plan.json"),
    "plan_spacing_negative": (_plan(target_spacing=[-1.0, 4.0, 6.0]), "model.pt", "plan.json"),
    "plan_spacing_inf": (_edit_json("plan.json", lambda p, m: json.dumps(p).replace("6.0]", "1e999]", 1)),
                         "model.pt", "plan.json"),
    "plan_mode_expression": (_plan(intensity={"mode": "$__import__('os').system('touch x')"}), "model.pt",
                             "plan.json"),
    "plan_window_reversed": (_plan(intensity={"mode": "window", "hu_window": [250, -175], "zscore": None}),
                             "model.pt", "plan.json"),
    "plan_zscore_std_zero": (_plan(intensity={"mode": "zscore", "hu_window": None, "zscore": {
        "p00_5": -100, "p99_5": 200, "mean": 40, "std": 0}}), "model.pt", "plan.json"),
    "plan_batch_string": (_plan(batch_size="2; touch x"), "model.pt", "plan.json"),
    "plan_missing_strides": (_edit_json("plan.json", lambda p, m: p.pop("strides")), "model.pt", "plan.json"),
    "model_pt_pickle_payload": (_pickle_pt, "model.pt", "model.pt"),
    "model_pt_torch_save_payload": (_torch_save_pt, "model.pt", "model.pt"),
    "model_ts_not_torchscript": (_not_torchscript, "model.ts", "model.ts"),
    "model_ts_zip_payload": (_zip_payload_ts, "model.ts", "model.ts"),
}


def hostile_folder(name: str, root: Path, good: Path) -> tuple[Path, Path]:
    """Copy of ``good`` under ``root/name`` with the hostile edit ``name``; (folder, marker its payload makes)."""
    folder = root / name
    shutil.copytree(good, folder)
    marker = root / f"{name}.{MARKER}"
    HOSTILE[name][0](folder, marker)
    return folder, marker


def scan(path: Path, shape: tuple[int, int, int] = (24, 20, 10), seed: int = 0) -> Path:
    """A small CT-like NIfTI scan (int16 HU, 3 x 3 x 5 mm) and nothing else."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = sum(g**2 for g in grid) < 0.8
    hu = np.where(body, 40, -1000) + rng.normal(0, 5, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([3.0, 3.0, 5.0, 1.0])), str(path))
    return path


def pipeline_error(exc: BaseException) -> Any:
    """The PipelineError in ``exc``'s chain (MONAI wraps errors raised while a config is parsed), else None."""
    from pipeline.errors import _find_pipeline_error

    return _find_pipeline_error(exc)


@dataclass
class Outcome:
    """How one input went through one entry point: accepted, refused with a one-line PipelineError (``error``),
    or a failure (``traceback``: any other exception; ``hang``: over the time limit)."""

    entry: str
    error: str | None = None
    traceback: str | None = None
    hang: bool = False

    @property
    def refused(self) -> bool:
        return self.error is not None


class CaseTimeout(BaseException):
    """Raised by the alarm when a case runs past its time limit (a BaseException: no ``except Exception`` eats it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` (no-op outside the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(entry: str, call: Callable[[], Any], seconds: float = CASE_TIMEOUT_S) -> Outcome:
    """Run ``call`` under a time limit and classify how it ended."""
    try:
        with time_limit(seconds):
            call()
    except CaseTimeout:
        return Outcome(entry, hang=True)
    except Exception as e:  # noqa: BLE001 - classifying every failure is the point
        found = pipeline_error(e)
        if found is not None and "\n" not in str(found):
            return Outcome(entry, error=str(found))
        return Outcome(entry, traceback="".join(traceback.format_exception(e))[-3000:])
    return Outcome(entry)


def inference_parser(**overrides: Any) -> Any:
    """``bundles/attn_unet/inference.json`` with command-line style overrides, on the CPU, quiet."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles/attn_unet/inference.json")])
    parser.update({"device": "cpu", "progress": False, **{k: str(v) if isinstance(v, Path) else v
                                                          for k, v in overrides.items()}})
    return parser


def run_inference(**overrides: Any) -> None:
    """``monai.bundle run`` of inference.json in this process: initialize, then run."""
    parser = inference_parser(**overrides)
    parser.get_parsed_content("initialize")
    try:
        parser.get_parsed_content("run")
    finally:
        if "finalize" in parser:  # releases what initialize took (e.g. the output folder's lock)
            parser.get_parsed_content("finalize")


def run_figures(folder: Path, model_file: str, image: Path, out: Path) -> None:
    """``python -m pipeline figures --ckpt ... --input ... --out ...`` in this process (a non-zero exit raises)."""
    import contextlib

    from pipeline.apps.cli import main
    from pipeline.errors import PipelineError

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["figures", "--ckpt", str(folder / model_file), "--input", str(image), "--out", str(out),
                     "--device", "cpu"])
    if code:
        line = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {code}"
        raise PipelineError(line.removeprefix("error: "))


def files_under(folder: Path) -> list[str]:
    """Files (not folders) under ``folder``, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def check_hostile(name: str, root: Path, good: Path, image: Path) -> dict[str, Any]:
    """Every in-process entry point on hostile folder ``name``: outcomes, whether the payload ran, what was written."""
    folder, marker = hostile_folder(name, root, good)
    _, model_file, names = HOSTILE[name]
    out = root / f"{name}.out"
    outcomes = [
        attempt("inference", lambda: run_inference(ckpt_dir=folder, model_file=model_file, input=image,
                                                   output_dir=out)),
    ]
    if names == "model_config.json":  # figures and ckpt_export build the network from model_config.json first
        outcomes.append(attempt("figures", lambda: run_figures(folder, model_file, image, out / "figures")))
        outcomes.append(attempt("export", lambda: inference_parser(ckpt_dir=folder).get_parsed_content("network_def")))
    # (past that, figures runs inference.json in a child process: the --cli check and the slow test cover it)
    return {"name": name, "names": names, "marker": marker.exists() or (Path.cwd() / MARKER).exists(),
            "written": files_under(out), "outcomes": outcomes}


def hostile_problems(result: dict[str, Any]) -> list[str]:
    """What is wrong with one hostile folder's result ([] = refused cleanly everywhere, nothing ran)."""
    problems = [f"{result['name']}: the payload ran"] if result["marker"] else []
    if result["written"]:
        problems.append(f"{result['name']}: wrote {result['written'][:3]}")
    for o in result["outcomes"]:
        if o.traceback or o.hang:
            problems.append(f"{result['name']} {o.entry}: {'hang' if o.hang else o.traceback}")
        elif not o.refused:
            problems.append(f"{result['name']} {o.entry}: accepted")
        elif result["names"] not in o.error:
            problems.append(f"{result['name']} {o.entry}: error does not name {result['names']}: {o.error}")
    return problems


def cli_commands(folder: Path, model_file: str, image: Path, out: Path) -> dict[str, list[str]]:
    """The user's commands on one checkpoint folder: inference, figures, and (for .pt folders) ckpt_export."""
    py = sys.executable
    commands = {
        "inference": [py, "-m", "monai.bundle", "run", "--config_file", "bundles/attn_unet/inference.json",
                      "--ckpt_dir", str(folder), "--model_file", model_file, "--input", str(image),
                      "--output_dir", str(out), "--device", "cpu", "--progress", "false"],
        "figures": [py, "-m", "pipeline", "figures", "--ckpt", str(folder / model_file), "--input", str(image),
                    "--out", str(out / "figures"), "--device", "cpu"],
    }
    if model_file == "model.pt":
        commands["export"] = [py, "-m", "monai.bundle", "ckpt_export", "network_def", "--config_file",
                              "bundles/attn_unet/inference.json", "--ckpt_dir", str(folder),
                              "--filepath", str(out / "model.ts"), "--ckpt_file", str(folder / model_file)]
    return commands


def check_hostile_cli(name: str, root: Path, good: Path, image: Path, timeout: float = 300) -> dict[str, Any]:
    """The real commands (child processes, run from the repository root) on hostile folder ``name``: per command
    the exit code, the ``error:`` lines and whether stderr holds a traceback; whether the payload ran; what was
    written."""
    import subprocess

    folder, marker = hostile_folder(name, root, good)
    _, model_file, names = HOSTILE[name]
    out = root / f"{name}.out"
    runs = {}
    for entry, argv in cli_commands(folder, model_file, image, out).items():
        if entry == "export" and names == "plan.json":
            continue  # ckpt_export builds the network and loads the weights; it never reads the plan
        p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
        runs[entry] = {"rc": p.returncode, "errors": errors, "traceback": "Traceback (most recent call last)" in
                       p.stderr, "tail": p.stderr[-1500:]}
    return {"name": name, "names": names, "marker": marker.exists() or (REPO / MARKER).exists(),
            "written": files_under(out), "runs": runs}


def cli_problems(result: dict[str, Any]) -> list[str]:
    """What is wrong with one hostile folder's command results ([] = one ``error:`` line naming the file, non-zero
    exit, no traceback, nothing written, payload not run)."""
    problems = [f"{result['name']}: the payload ran"] if result["marker"] else []
    if result["written"]:
        problems.append(f"{result['name']}: wrote {result['written'][:3]}")
    for entry, run in result["runs"].items():
        ok = (run["rc"] != 0 and not run["traceback"] and len(run["errors"]) == 1
              and result["names"] in run["errors"][0])
        if not ok:
            problems.append(f"{result['name']} {entry}: rc {run['rc']}, errors {run['errors']}, tail {run['tail']}")
    return problems


def main() -> None:
    """Build and run every hostile folder and fuzz case; write ``benchmarks/results/trust_<kind>.json``."""
    import argparse

    from benchmarks.common import write_json
    from benchmarks.trust_fuzz import NIFTI_CASES, fuzz_case, run_case, training_chain

    p = argparse.ArgumentParser(prog="python -m benchmarks run trust", description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=FUZZ_CASES, help="fuzz cases (all by default)")
    p.add_argument("--cli", nargs="*", default=None,
                   help="also run the real commands on these hostile folders (no names: all of them)")
    p.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="seconds per fuzz case and path")
    args = p.parse_args(sys.argv[1:])
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="trust_") as tmp:
        root = Path(tmp)
        good = good_checkpoint(root / "good")
        image = scan(root / "scan" / "scan.nii.gz")
        hostile = [check_hostile(name, root / "hostile", good, image) for name in HOSTILE]
        problems = [p for r in hostile for p in hostile_problems(r)]
        cli = []
        if args.cli is not None:
            for name in args.cli or list(HOSTILE):
                cli.append(check_hostile_cli(name, root / "cli", good, image))
            problems += [p for r in cli for p in cli_problems(r)]
        chain, cases = training_chain(), []
        for i in range(args.cases):
            case = fuzz_case(i, root / "fuzz")
            problems += run_case(case, good, root / "fuzz_out", chain, args.timeout)
            shutil.rmtree(case.folder if case.dataset else case.folder.parent, ignore_errors=True)
            cases.append(case)
    for line in problems:
        print(line[:2000])

    def count(cond: Callable[[Outcome], bool], group: list) -> int:
        return sum(any(cond(o) for o in x.outcomes) for x in group)

    figures = {
        "hostile_folders": len(hostile), "hostile_ran_code": sum(r["marker"] for r in hostile),
        "hostile_tracebacks": sum(any(o.traceback for o in r["outcomes"]) for r in hostile),
        "hostile_refused_everywhere": sum(not hostile_problems(r) for r in hostile),
        "hostile_cli_folders": len(cli), "hostile_cli_tracebacks": sum(
            any(run["traceback"] for run in r["runs"].values()) for r in cli),
        "hostile_cli_ran_code": sum(r["marker"] for r in cli),
        "fuzz_cases": len(cases), "fuzz_nifti": min(len(cases), NIFTI_CASES),
        "fuzz_dicom": max(0, len(cases) - NIFTI_CASES),
        "fuzz_rejected": count(lambda o: o.refused, cases),
        "fuzz_accepted": sum(all(not o.refused and not o.traceback and not o.hang for o in c.outcomes)
                             for c in cases),
        "fuzz_tracebacks": count(lambda o: bool(o.traceback), cases), "fuzz_hangs": count(lambda o: o.hang, cases),
        "fuzz_modified": sum("the input files changed" in p for p in problems),
        "problems": len(problems), "seed": SEED, "seconds": round(time.time() - started, 1),
    }
    lines = ["# Trust: hostile checkpoint folders and fuzzed scans", "",
             "| measure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in figures.items()]]
    write_json("trust", figures, lines=lines, by_precision=False)
    if problems:
        raise SystemExit(f"error: {len(problems)} problem(s); see above")
