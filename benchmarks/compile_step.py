"""What torch.compile buys the CT train step on this machine, and what it costs to compile (issue 14, "How").

The train step (forward, deep-supervised DiceCE, backward, AdamW) of the attn_unet bundle's default CT network
(standard preset, base width 8, planned strides, the memory format and precision ``auto`` picks here) eager and
through ``torch.compile``, the way ``--compile true`` runs it (MONAI's ``SupervisedTrainer(compile=True)`` compiles
the network's forward; autograd differentiates the compiled graph):

- the step on the recipe's batch of 4 crops 64x64x32 and on the 2-crop batch that ends each epoch (19 training
  cases, 2 cases x 2 crops per step: 9 steps of 4 crops and 1 of 2), eager and compiled interleaved, so that a
  shared, noisy machine slows both alike;
- the first compiled step of each batch shape with an empty inductor cache (a fresh temporary
  ``TORCHINDUCTOR_CACHE_DIR``; ``--warm-cache`` keeps the user's cache instead), with static shapes (the bundle's
  ``compile_kwargs``: one graph per batch shape) and with ``dynamic=True`` (one graph for both);
- the training time of the default's 120 epochs that follows: steps saved against the compile paid.

    python benchmarks/compile_step.py [--repeats 8] [--out benchmarks/results/compile_step.md]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "--warm-cache" not in sys.argv:  # before torch is imported: inductor reads its cache folder from the environment
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cold_")

import torch  # noqa: E402
from monai.losses import DeepSupervisionLoss, DiceCELoss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402

from ct_step_layout import PATCH, STRIDES, network  # noqa: E402

from pipeline.engines import place, resolve_memory_format, resolve_precision  # noqa: E402

BATCHES = (4, 2)
EPOCH = {4: 9, 2: 1}  # steps per epoch of each batch size on the default phantoms
EPOCHS = 120


class Step:
    """A network, its optimiser and the forward it trains through (eager or compiled)."""

    def __init__(self, compiled: bool | str, dtype: torch.dtype | None) -> None:
        net = network(8, channels_last=False)  # seeded; place() below picks the format as the bundle does
        self.channels_last = resolve_memory_format(net, "cpu")[0] is torch.channels_last_3d
        self.net = place(net, "cpu")  # the memory format memory_format=auto picks
        self.net.train()
        self.forward = self.net if not compiled else torch.compile(self.net, dynamic=compiled == "dynamic")
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=6e-3, weight_decay=1e-5)
        self.loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="exp")
        self.dtype = dtype
        gen = torch.Generator().manual_seed(1)
        self.data = {}
        for b in BATCHES:
            x = torch.randn(b, 1, *PATCH, generator=gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            self.data[b] = (x, torch.randint(0, 3, (b, 1, *PATCH), generator=gen).float())

    def __call__(self, batch: int) -> tuple[float, float]:
        x, y = self.data[batch]
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext():
            out = self.forward(x)
        loss = self.loss([o.float() for o in out], y)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--warm-cache", action="store_true", help="use the user's inductor cache (first steps not cold)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/compile_step.md"))
    args = ap.parse_args()
    precision = resolve_precision("auto", "cpu")
    dtype = precision.dtype if precision.autocast else None
    eager, static, dynamic = Step(False, dtype), Step(True, dtype), Step("dynamic", dtype)
    first: dict[tuple[str, int], float] = {}
    for name, step in (("static", static), ("dynamic", dynamic)):
        for b in BATCHES:
            first[name, b] = step(b)[0]
            print(f"first {name} step, batch {b}: {first[name, b]:.1f} s", flush=True)
    for b in BATCHES:  # eager warm-up (oneDNN primitives)
        eager(b)
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in ("eager", "static", "dynamic") for b in BATCHES}
    losses: dict[str, list[float]] = {n: [] for n in ("eager", "static", "dynamic")}
    variants = [("eager", eager), ("static", static), ("dynamic", dynamic)]
    for repeat in range(args.repeats):
        order = variants[repeat % 3:] + variants[:repeat % 3]  # each variant first in turn
        for b in BATCHES:
            for name, step in order:
                t, loss = step(b)
                times[name, b].append(t)
                losses[name].append(loss)
    med = {k: statistics.median(v) for k, v in times.items()}
    epoch = {n: sum(EPOCH[b] * med[n, b] for b in BATCHES) for n in ("eager", "static", "dynamic")}
    compile_cost = {n: sum(first[n, b] - med[n, b] for b in BATCHES) for n in ("static", "dynamic")}
    fmt = "channels_last_3d" if eager.channels_last else "contiguous"
    lines = [
        "# torch.compile and the CT train step",
        "",
        machine_header(quoted_argv()),
        f"- precision: {precision.dtype if precision.autocast else 'float32'}, memory format {fmt}, "
        f"{args.repeats} interleaved repeats, medians; inductor cache: "
        f"{'the user’s (warm)' if args.warm_cache else 'empty at start (cold)'}",
        "",
        "Train step of the default CT network (width 8, strides "
        f"{STRIDES}, deep supervision) on crops {'x'.join(map(str, PATCH))}:",
        "",
        "| forward | batch | median s/step | vs eager | first step (compile included), s |",
        "|---|---|---|---|---|",
    ]
    labels = {"eager": "eager", "static": "torch.compile, static shapes (`--compile true`)",
              "dynamic": "torch.compile, dynamic=True"}
    for name in ("eager", "static", "dynamic"):
        for b in BATCHES:
            cold = f"{first[name, b]:.1f}" if name != "eager" else "-"
            lines.append(f"| {labels[name]} | {b} crops | {med[name, b]:.3f} | "
                         f"{med[name, b] / med['eager', b]:.2f}x | {cold} |")
    lines += [
        "",
        f"An epoch of the default phantoms ({EPOCH[4]} steps of 4 crops, {EPOCH[2]} of 2) and the default's {EPOCHS} "
        "epochs (train steps only; data, validation and checkpoints are the same in every variant):",
        "",
        "| forward | s/epoch | compile, s | steps + compile over the run, s | vs eager |",
        "|---|---|---|---|---|",
        f"| eager | {epoch['eager']:.2f} | - | {EPOCHS * epoch['eager']:.0f} | 1.00x |",
    ]
    for name in ("static", "dynamic"):
        total = EPOCHS * epoch[name] + compile_cost[name]
        lines.append(f"| {labels[name]} | {epoch[name]:.2f} | {compile_cost[name]:.0f} | {total:.0f} | "
                     f"{total / (EPOCHS * epoch['eager']):.2f}x |")
    lines += [
        "",
        "Loss of the last three 4-crop steps (same initial weights and batches; the compiled graph fuses and reorders "
        "float operations):",
        "",
    ]
    for name in ("eager", "static", "dynamic"):
        last = [v for i, v in enumerate(losses[name]) if i % 2 == 0][-3:]
        lines.append(f"- {labels[name]}: {', '.join(f'{v:.4f}' for v in last)}")
    write_result(args.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
