"""The benchmark suite: ``python -m benchmarks list | run NAME [args] | page``.

Each benchmark is a module of this package with a ``main()`` that reads its arguments from ``sys.argv`` and writes
its result through :func:`benchmarks.common.write_json` to ``benchmarks/results/<name>[_<variant>]_<kind>.json``;
``python -m benchmarks page`` turns the result files into ``docs/benchmarks.md``. Analyses that closed a question
are not here: their conclusions are in ``docs/decisions.md``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Benchmark:
    name: str
    measures: str
    cost: str

    def module(self) -> ModuleType:
        """The benchmark's module (imported on demand: importing the registry loads no benchmark)."""
        return importlib.import_module(f"{__name__}.{self.name}")


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("user_command", "the README's command on a fresh clone: wall time, peak memory, validation and "
              "held-out Dice (evaluate.json and inference.json)", "15-35 min on 2 CPU cores; about 1 GB of disk"),
    Benchmark("final_test", "a bundle's default recipe per seed on the final test sets of pipeline.data.protocol "
              "(once per bundle version): Dice, lesion detection, case AUROC, learning curves",
              "about 17 min per CT seed, 12 min per shapes seed on 2 CPU cores"),
    Benchmark("recipes", "bundle recipes as config overrides: validation curves against time and held-out scores "
              "(--task ct|shapes)", "10-30 min per recipe and seed on 2 CPU cores; resumable"),
    Benchmark("cascade", "the coarse-to-fine cascade (stage 2 trained on crops of the gland at 2/3 of the plan's "
              "spacing) against one-stage recipes, all scored in the scans' own space on the CT development set of 36",
              "about 15 min per stage 2 and 3-5 min of inference per model on 2 CPU cores; resumable"),
    Benchmark("nnunet_side_by_side", "nnU-Net v2 (its own plan, trainer and predictor, in its own virtual "
              "environment) against the attn_unet bundle on the same data, machine and wall-clock budget, both scored "
              "by this project's evaluation; plans and learning curves side by side",
              "about 70 min on 2 CPU cores (15 min training each, nnU-Net predicts 5-7 min per case); --quick: 5 min"),
    Benchmark("train_throughput", "training images/s and peak memory per process, 1 against N torchrun processes",
              "2-3 min per process count (attn_unet, 4 epochs); --quick: seconds"),
    Benchmark("attn_unet_inference", "inference.json on a 512x512x300 CT: case time and peak memory (TTA, overlaps)",
              "1-3 min per configuration on 2 CPU cores"),
    Benchmark("attn_unet_speed", "the Attention U-Net train step at 96^3 against MONAI's AttentionUnet and our "
              "U-Net, and its FLOP rate", "about 5 min on 2 CPU cores"),
    Benchmark("ct_step_layout", "the CT train step by width and memory format, validation window size, instance "
              "norm implementations, argmax", "5-10 min on 2 CPU cores"),
    Benchmark("setup_time", "scripts/setup.sh in an empty virtual environment plus the first imports, two commits "
              "side by side", "about 2 min per set-up; needs pip's index or cache"),
    Benchmark("gpu_recipe", "the CT recipe on one CUDA GPU: step times, the user's command on a clock, held-out "
              "scores, data wait, DDP over nccl", "about 9 min on one GPU (--deadline)"),
    Benchmark("phantom_realism", "the CT phantom generator: HU per tissue against published ranges, generation "
              "time, best single-threshold Dice; the montage in docs/img", "about 2 min on 2 CPU cores"),
    Benchmark("tumour_conspicuity", "the phantoms' tumour-pancreas contrast and size (v1 and published generator) "
              "against published portal-venous series", "about 3 min on 2 CPU cores"),
    Benchmark("trust", "hostile checkpoint folders (code run, tracebacks) and fuzzed NIfTI/DICOM inputs through "
              "check-data, training loading and inference (tracebacks, hangs, modified inputs)",
              "about 5-10 min on 2 CPU cores (--cli adds the real commands: about 15 s per folder)"),
    Benchmark("preemption", "SIGTERM during training: seconds to exit, epochs lost, resumed weights against an "
              "uninterrupted run; injected write failures (previous file loads), a full tmpfs, a second run into "
              "a live run's folder, the per-iteration gloo all-reduce", "about 3-5 min on 2 CPU cores"),
)}


def get(name: str) -> Benchmark:
    """The registered benchmark ``name``; a one-line error naming the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise SystemExit(f"error: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
