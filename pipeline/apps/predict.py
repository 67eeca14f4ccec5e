"""``python -m pipeline predict -i IN -o OUT``: an nnU-Net-style alias that only runs a bundle's inference.json.

It translates its flags into the bundle's keys, prints the equivalent ``python -m monai.bundle run`` command, and runs
it as a child process from the repository root (the data fragments are named by paths relative to it), so the
bundle stays the one place where inference is defined.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]


def _checkpoints(paths: list[str]) -> tuple[str | list[str], str | None]:
    """(ckpt_dir: one folder or a list, model_file or None) from folders or model files given by the user."""
    dirs, files = [], set()
    for p in paths:
        path = Path(p).expanduser().resolve()
        if path.is_file():
            dirs.append(str(path.parent))
            files.add(path.name)
        else:
            dirs.append(str(path))
    if len(files) > 1:
        raise PipelineError(f"--ckpt: the model files must share one name (got {', '.join(sorted(files))})")
    return (dirs[0] if len(dirs) == 1 else dirs), (files.pop() if files else None)


#: the data fragment that prepares images of each dimensionality: added after the bundle's inference.json, it gives
#: the preprocessing of the checkpoint's data (its values come from the checkpoint's plan.json); any bundle's
#: inference.json rebuilds whatever network a checkpoint names, so the data, not the network, chooses
DATA_FRAGMENT = {2: "configs/data/shapes2d.json", 3: "configs/data/pancreas_ct.json"}


def inference_configs(ckpt: list[str] | None, bundle: str | None = None) -> list[str]:
    """The config files for a checkpoint: ``bundle``'s (default attn_unet) inference.json, then the data fragment of
    the checkpoint's ``spatial_dims`` (none without --ckpt: the bundle's own checkpoint folder and data)."""
    configs = [f"bundles/{bundle or 'attn_unet'}/inference.json"]
    if not ckpt:
        return configs
    from pipeline.engines.model_config import read_model_config

    dirs, _ = _checkpoints(ckpt)
    folder = dirs if isinstance(dirs, str) else dirs[0]
    dims = read_model_config(folder).get("spatial_dims")
    if dims not in DATA_FRAGMENT:
        raise PipelineError(f"{folder}: model_config.json gives spatial_dims {dims!r}; expected 2 or 3")
    return configs + [DATA_FRAGMENT[dims]]


def bundle_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m monai.bundle run`` command line that ``predict`` stands for."""
    configs = inference_configs(args.ckpt, args.bundle)
    output = str(Path(args.output).expanduser().resolve())
    keys: dict[str, object] = {"input": str(Path(args.input).expanduser().resolve()), "output_dir": output,
                               "pred_dir": output}
    if args.ckpt:
        keys["ckpt_dir"], model_file = _checkpoints(args.ckpt)
        if model_file:
            keys["model_file"] = model_file
    if args.tta is not None:
        keys["tta"] = args.tta
    if args.save_probabilities:
        keys["save_probabilities"] = True
    if args.save_attention:
        keys["save_attention"] = True
    if getattr(args, "pred_naming", None):
        keys["pred_naming"] = args.pred_naming
    if args.series_uid:
        keys["series_uid"] = args.series_uid
    if args.device:
        keys["device"] = args.device
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs)]
    for key, value in keys.items():
        cmd += [f"--{key}", repr(value)]  # quoted: the bundle's parser reads literals (a UID "1.2" stays a string)
    return cmd


def predict(args: argparse.Namespace) -> int:
    """Run the bundle's inference; its exit status is returned (its own one-line error on bad input)."""
    cmd = bundle_command(args)
    print("running: " + " ".join(shlex.quote(c) for c in ["python", *cmd[1:]]), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


__all__ = ["DATA_FRAGMENT", "bundle_command", "inference_configs", "predict"]
