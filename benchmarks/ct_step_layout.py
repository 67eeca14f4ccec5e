"""Where the CT recipe's compute goes, and which memory format pays at which width (issue 14, "How").

The attn_unet network of the planned CT recipe (standard preset, strides [[2,2,1],[2,2,2],[2,2,2]], deep
supervision) at base width 16 (the former default) and 8 (the default) timed in the bundle's precision (bfloat16
autocast on a CPU that runs it natively), interleaved so that a shared, noisy machine slows every variant alike:

- train step (forward + deep-supervised DiceCE + backward + AdamW) on a batch of 4 crops 64x64x32 (2 cases x 2
  crops, the recipe's batch), in contiguous (NCDHW) and channels-last-3d (NDHWC) memory format, which
  ``memory_format=auto`` chooses between (pipeline/engines/placement.py);
- validation forward passes of one resampled validation phantom (about 177 x 139 x 43 voxels) through the sliding
  window (default network, its auto format), with the training patch as window and with larger windows;
- the same train step, and the validation forward passes of one volume, of the default network (width 8,
  channels-last-3d) with four implementations of the same affine instance normalisation: torch's
  ``InstanceNorm3d``, the networks' default ``InstanceNormCL3d`` (``InstanceNorm3d`` in training, torch's group-norm
  kernel at inference on channels-last CPU tensors; norm ``"instance_cl"``), ``GroupNorm`` with one channel per
  group (``InstanceNormGroups`` here, once ``pipeline.networks.blocks.InstanceNormGroups``), and mean/variance over the
  spatial axes written out in autograd ops (``InstanceNormStats``, here only).
  ``InstanceNorm3d`` reshapes its input to one batch of N*C channels: on a channels-last tensor that costs copies to
  and from contiguous memory around every convolution, and the in-place LeakyReLU on its view adds a CopySlices in
  the backward pass (torch.profiler on the float32 step of an AVX2-only EPYC: 0.88 s of copies in a 1.8 s step);
- the class map of a network output: ``torch.argmax`` over the channel axis against ``channel_argmax``
  (``torch.max(...).indices``, what validation and inference use), on the validation volume and on a scan of the
  grid of real MSD Task07 data (3 x 512 x 512 x 100).

    python -m benchmarks run ct_step_layout [--repeats 5] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from monai.inferers import SlidingWindowInferer
from monai.losses import DeepSupervisionLoss, DiceCELoss

from benchmarks.common import machine_header, quoted_argv, result_path, write_json

from pipeline.engines import place, resolve_memory_format, resolve_precision
from pipeline.networks import AttentionUNet
from pipeline.networks.blocks import InstanceNormCL3d
from pipeline.transforms import channel_argmax

STRIDES = [[2, 2, 1], [2, 2, 2], [2, 2, 2]]
PATCH = (64, 64, 32)
VOLUME = (177, 139, 43)


WIDTHS = (16, 8)
DEFAULT_WIDTH = 8


def network(width: int, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = AttentionUNet(3, 1, 3, preset="standard", base_width=width, strides=STRIDES, deep_supervision=True,
                        num_side_outputs=2)
    return net.to(memory_format=torch.channels_last_3d) if channels_last else net


def train_step_seconds(net: torch.nn.Module, channels_last: bool, dtype: torch.dtype | None) -> float:
    """One timed train step after the batch is built (the data are not part of the time)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, *PATCH, generator=gen)
    y = torch.randint(0, 3, (4, 1, *PATCH), generator=gen).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    loss_fn = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="exp")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train()
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = net(x)
        loss = loss_fn([o.float() for o in out], y)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


class InstanceNormGroups(torch.nn.GroupNorm):
    """Affine instance normalisation as ``GroupNorm`` with one channel per group: keeps channels-last memory."""

    def __init__(self, num_features: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__(num_features, num_features, eps=eps, affine=affine)


class InstanceNormStats(torch.nn.Module):
    """Affine instance normalisation from ``torch.var_mean`` over the spatial axes: keeps the input's memory format."""

    def __init__(self, num_features: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_features))
        self.bias = torch.nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.ndim)), unbiased=False, keepdim=True)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale = torch.rsqrt(var + self.eps) * self.weight.view(shape)
        return x * scale + (self.bias.view(shape) - mean * scale)


NORMS = {"InstanceNorm3d": None, "InstanceNormCL3d (the networks' default)": InstanceNormCL3d,
         "GroupNorm, one channel per group": InstanceNormGroups,
         "var_mean in autograd ops": InstanceNormStats}


def norm_network(norm: type | None) -> torch.nn.Module:
    """The default network (width 8, channels-last-3d) with another implementation of its instance norm."""
    from monai.networks.layers.factories import Norm

    name = {None: "instance", InstanceNormCL3d: "instance_cl"}.get(norm, f"bench_{norm.__name__.lower()}")
    if name.upper() not in Norm.names:  # the benchmark's own norms (and instance_cl where pipeline registers none)
        Norm.add_factory_callable(name, lambda dim: norm)
    spec = (name, {"affine": True})
    torch.manual_seed(0)
    net = AttentionUNet(3, 1, 3, preset="standard", base_width=DEFAULT_WIDTH, strides=STRIDES, deep_supervision=True,
                        num_side_outputs=2, norm=spec)
    return net.to(memory_format=torch.channels_last_3d)


def norm_difference(norm: type) -> float:
    """Largest inference output difference from InstanceNorm3d on a random channels-last tensor (float32)."""
    x = torch.randn(2, 8, 16, 12, 8, generator=torch.Generator().manual_seed(3))
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        return float((torch.nn.InstanceNorm3d(8, affine=True).eval()(x) - norm(8).eval()(x)).abs().max())


ARGMAX_SHAPES = ((3, *VOLUME), (3, 512, 512, 100))


def argmax_seconds(shape: tuple[int, ...], fast: bool) -> float:
    """One class map of a float32 channel-first volume: torch.argmax or channel_argmax over the channels."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    t0 = time.perf_counter()
    channel_argmax(x) if fast else torch.argmax(x, dim=0, keepdim=True)
    return time.perf_counter() - t0


def validation_seconds(net: torch.nn.Module, roi: tuple[int, int, int], dtype: torch.dtype | None) -> float:
    x = torch.randn(1, 1, *VOLUME, generator=torch.Generator().manual_seed(2))
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=4, overlap=0.25, mode="gaussian")
    net.eval()
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        inferer(x, net)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="the report (default benchmarks/results/ct_step_layout_<kind>.md)")
    args = ap.parse_args()
    precision = resolve_precision("auto", "cpu")
    dtype = precision.dtype if precision.autocast else None
    variants = [(w, cl) for w in WIDTHS for cl in (False, True)]
    nets = {v: network(*v) for v in variants}
    default = place(network(DEFAULT_WIDTH, False), "cpu")  # the format memory_format=auto picks
    rois = [PATCH, (96, 96, 32), (128, 128, 48)]
    for v in variants:  # warm-up (one-off allocations, oneDNN primitive creation)
        train_step_seconds(nets[v], v[1], dtype)
    for roi in rois:
        validation_seconds(default, roi, dtype)
    norm_nets = {name: norm_network(cls) for name, cls in NORMS.items()}
    for net in norm_nets.values():
        train_step_seconds(net, True, dtype)
    norm_steps: dict[str, list[float]] = {name: [] for name in NORMS}
    norm_vals: dict[str, list[float]] = {name: [] for name in NORMS}
    argmaxes: dict[tuple, list[float]] = {(shape, fast): [] for shape in ARGMAX_SHAPES for fast in (False, True)}
    steps: dict[tuple, list[float]] = {v: [] for v in variants}
    vals: dict[tuple, list[float]] = {roi: [] for roi in rois}
    for repeat in range(args.repeats):
        for v in variants:
            steps[v].append(train_step_seconds(nets[v], v[1], dtype))
        for roi in rois:
            vals[roi].append(validation_seconds(default, roi, dtype))
        names = list(norm_nets)
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # each variant first in turn
            norm_steps[name].append(train_step_seconds(norm_nets[name], True, dtype))
            norm_vals[name].append(validation_seconds(norm_nets[name], PATCH, dtype))
        for key in argmaxes:
            argmaxes[key].append(argmax_seconds(*key))
    base = statistics.median(steps[(16, False)])
    auto = {w: resolve_memory_format(nets[(w, False)], "cpu")[0] is torch.channels_last_3d for w in WIDTHS}
    lines = [
        "# CT recipe: train step by width and memory format, validation window size, instance norm, argmax",
        "",
        machine_header(quoted_argv()),
        f"- precision: {precision.dtype if precision.autocast else 'float32'}, {args.repeats} interleaved repeats, "
        "medians",
        "",
        "Train step (forward, deep-supervised DiceCE, backward, AdamW) of the CT network on 4 crops "
        f"{'x'.join(map(str, PATCH))}:",
        "",
        "| base width | memory format | median s/step | vs width 16 contiguous | memory_format=auto picks it |",
        "|---|---|---|---|---|",
    ]
    for (w, cl), times in steps.items():
        m = statistics.median(times)
        lines.append(f"| {w} | {'channels_last_3d' if cl else 'contiguous'} | {m:.3f} | {m / base:.2f}x | "
                     f"{'yes' if auto[w] == cl else 'no'} |")
    vbase = statistics.median(vals[PATCH])
    lines += ["", f"Sliding-window validation of one {'x'.join(map(str, VOLUME))} volume with the default network "
              f"(width {DEFAULT_WIDTH}, auto memory format; overlap 0.25, Gaussian, 4 windows per batch):", "",
              "| window | median s | vs training patch |", "|---|---|---|"]
    for roi, times in vals.items():
        m = statistics.median(times)
        lines.append(f"| {'x'.join(map(str, roi))} | {m:.2f} | {m / vbase:.2f}x |")
    nbase = statistics.median(norm_steps[next(iter(NORMS))])
    vnbase = statistics.median(norm_vals[next(iter(NORMS))])
    lines += ["", f"Train step and sliding-window validation of one {'x'.join(map(str, VOLUME))} volume (training "
              f"patch as window) of the default network (width {DEFAULT_WIDTH}, channels-last-3d) by implementation "
              "of its affine instance normalisation (the same function: largest inference output difference from "
              "InstanceNorm3d on a random channels-last tensor in float32):", "",
              "| instance norm | median s/step | vs InstanceNorm3d | validation median s | vs InstanceNorm3d | "
              "output difference |", "|---|---|---|---|---|---|"]
    for name, cls in NORMS.items():
        m, v = statistics.median(norm_steps[name]), statistics.median(norm_vals[name])
        diff = "-" if cls is None else f"{norm_difference(cls):.1e}"
        lines.append(f"| {name} | {m:.3f} | {m / nbase:.2f}x | {v:.2f} | {v / vnbase:.2f}x | {diff} |")
    lines += ["", "Class map of a float32 network output (channel axis first, contiguous), median seconds:", "",
              "| volume | torch.argmax | channel_argmax (torch.max indices) | ratio |", "|---|---|---|---|"]
    for shape in ARGMAX_SHAPES:
        slow, fast = (statistics.median(argmaxes[(shape, f)]) for f in (False, True))
        lines.append(f"| {'x'.join(map(str, shape))} | {slow:.3f} | {fast:.3f} | {fast / slow:.2f}x |")
    out = Path(args.out) if args.out else result_path("ct_step_layout", ".md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figures: dict[str, object] = {}
    for (w, cl), times in steps.items():
        figures[f"step_s_width{w}_{'channels_last_3d' if cl else 'contiguous'}"] = round(statistics.median(times), 3)
    for roi, times in vals.items():
        figures[f"validation_s_window_{'x'.join(map(str, roi))}"] = round(statistics.median(times), 2)
    for name in NORMS:
        figures[f"validation_s_{name.split(' (')[0].split(',')[0].split(' ')[0]}"] = round(
            statistics.median(norm_vals[name]), 2)
    for shape in ARGMAX_SHAPES:
        for fast, label in ((False, "torch_argmax"), (True, "channel_argmax")):
            key = f"argmax_s_{'x'.join(map(str, shape))}_{label}"
            figures[key] = round(statistics.median(argmaxes[(shape, fast)]), 3)
    write_json("ct_step_layout", figures, lines=lines, report=out, path=out.with_suffix(".json") if args.out else None)


if __name__ == "__main__":
    main()
