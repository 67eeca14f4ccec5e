"""Train-step speed of the Attention U-Net (issue: Attention U-Net, targets 4b and 4c), all ratios from one run.

(b) widths (16, 32, 64, 128, 256), patch 96^3, batch 1, train step = forward + DiceCE + backward + AdamW step:
    float32 vs float32: ours no slower than monai.networks.nets.AttentionUnet, at most 1.3x our plain U-Net;
    out of the box: ours in its default precision vs MONAI's AttentionUnet under MONAI's SupervisedTrainer on CPU
    (float32, since MONAI autocasts on CUDA only): ours >= 3x faster on a bfloat16-capable CPU.
(c) the train step's FLOP rate (torch.utils.flop_counter) >= 60 % of the FLOP rate its own convolutions reach when
    timed alone (same shapes, same precision, forward + backward) in the same run.

    python -m benchmarks run attn_unet_speed [--size 96] [--steps 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import AttentionUnet as MonaiAttentionUnet
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine_header, quoted_argv, result_path, write_json

from pipeline.engines import AutocastInferer, Precision, resolve_precision
from pipeline.networks import AttentionUNet, UNet

WIDTHS = (16, 32, 64, 128, 256)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "ours_attention":
        return AttentionUNet(3, 1, 3, channels=WIDTHS)
    if name == "ours_unet":
        return UNet(3, 1, 3, channels=WIDTHS)
    return MonaiAttentionUnet(spatial_dims=3, in_channels=1, out_channels=3, channels=WIDTHS, strides=(2, 2, 2, 2))


def step_times(net: torch.nn.Module, precision: Precision, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """Seconds per train step (forward under autocast, DiceCE in float32, backward, AdamW step)."""
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            out = net(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()
        if i:  # the first step warms oneDNN's kernel caches
            times.append(time.perf_counter() - t)
    return times


def trainer_step_times(net: torch.nn.Module, precision: Precision, x, y, steps: int, ours: bool) -> list[float]:
    """Seconds per iteration of MONAI's SupervisedTrainer (ours: with the AutocastInferer of the bundles)."""
    from monai.inferers import SimpleInferer

    data = [{"image": x[0], "label": y[0]}] * (steps + 1)
    loader = torch.utils.data.DataLoader(data, batch_size=1)
    inferer = AutocastInferer(SimpleInferer(), precision) if ours else SimpleInferer()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=net,
        optimizer=torch.optim.AdamW(net.parameters(), 1e-3), loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        inferer=inferer, amp=False, decollate=False,
    )
    stamps = []
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
    trainer.run()
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def count_flops(net: torch.nn.Module, precision: Precision, x, y) -> int:
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            out = net(x)
        loss_fn(out.float(), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def conv_alone(net: torch.nn.Module, precision: Precision, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(FLOPs, seconds) of every convolution of ``net`` run alone, forward + backward, on its recorded shapes."""
    shapes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0].shape)))
        for m in net.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))
    ]
    with torch.no_grad(), precision.autocast():
        net(x)
    for h in hooks:
        h.remove()
    flops, seconds = 0, 0.0
    for module, shape in shapes:
        inp = torch.randn(shape, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            with precision.autocast():
                out = module(inp)
            out.sum().backward()
        flops += counter.get_total_flops()
        best = float("inf")
        for _ in range(repeats):
            module.zero_grad(set_to_none=True)
            inp.grad = None
            t = time.perf_counter()
            with precision.autocast():
                out = module(inp)
            out.backward(torch.ones_like(out))
            best = min(best, time.perf_counter() - t)
        seconds += best
    return flops, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=None, help="the report (default benchmarks/results/attn_unet_speed_<kind>.md)")
    args = ap.parse_args()
    x = torch.randn(1, 1, *(args.size,) * 3)
    y = torch.randint(0, 3, (1, 1, *(args.size,) * 3))
    fp32 = resolve_precision("float32", "cpu")
    default = resolve_precision("auto", "cpu")

    med = {}
    for name in ("ours_attention", "ours_unet", "monai_attention"):
        med[(name, "float32")] = statistics.median(step_times(build(name), fp32, x, y, args.steps))
        print(name, "float32", f"{med[(name, 'float32')]:.3f} s", flush=True)
    med[("ours_attention", "default")] = statistics.median(
        trainer_step_times(build("ours_attention"), default, x, y, args.steps, ours=True))
    med[("monai_attention", "trainer")] = statistics.median(
        trainer_step_times(build("monai_attention"), fp32, x, y, args.steps, ours=False))
    print("trainers", med[("ours_attention", "default")], med[("monai_attention", "trainer")], flush=True)

    net = build("ours_attention")
    step_flops = count_flops(net, default, x, y)
    step_s = statistics.median(step_times(net, default, x, y, args.steps))
    conv_flops, conv_s = conv_alone(net, default, x, repeats=3)
    step_rate, conv_rate = step_flops / step_s, conv_flops / conv_s

    r_monai = med[("monai_attention", "float32")] / med[("ours_attention", "float32")]
    r_unet = med[("ours_attention", "float32")] / med[("ours_unet", "float32")]
    r_box = med[("monai_attention", "trainer")] / med[("ours_attention", "default")]
    ok = lambda c: "met" if c else "MISSED"  # noqa: E731
    lines = [
        "# Attention U-Net train-step speed",
        "",
        machine_header(quoted_argv()),
        f"- input: batch 1, 1 channel, {args.size}^3, 3 classes; widths {WIDTHS}; median of {args.steps} steps after"
        " one warm-up step; train step = forward, DiceCE, backward, AdamW step",
        f"- default precision of ours on this machine: {default}",
        "",
        "| network | precision | s / step |",
        "|---|---|---|",
        f"| ours AttentionUNet | float32 | {med[('ours_attention', 'float32')]:.3f} |",
        f"| ours UNet (same widths) | float32 | {med[('ours_unet', 'float32')]:.3f} |",
        f"| monai.networks.nets.AttentionUnet | float32 | {med[('monai_attention', 'float32')]:.3f} |",
        f"| ours AttentionUNet, SupervisedTrainer + AutocastInferer (out of the box) | {default.mode} | "
        f"{med[('ours_attention', 'default')]:.3f} |",
        f"| MONAI AttentionUnet, SupervisedTrainer (out of the box) | float32 | "
        f"{med[('monai_attention', 'trainer')]:.3f} |",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| float32: ours no slower than MONAI AttentionUnet | MONAI / ours = {r_monai:.2f}x | {ok(r_monai >= 1.0)} |",
        f"| float32: ours at most 1.3x our plain U-Net | ours / U-Net = {r_unet:.2f}x | {ok(r_unet <= 1.3)} |",
        f"| out of the box: ours >= 3x faster than MONAI's | {r_box:.2f}x | {ok(r_box >= 3.0)} |",
        f"| step FLOP rate >= 60 % of its convolutions alone | {step_flops / 1e9:.1f} GFLOP in {step_s:.3f} s ="
        f" {step_rate / 1e9:.1f} GFLOP/s; convolutions alone {conv_flops / 1e9:.1f} GFLOP in {conv_s:.3f} s ="
        f" {conv_rate / 1e9:.1f} GFLOP/s; ratio {step_rate / conv_rate:.0%} | {ok(step_rate >= 0.6 * conv_rate)} |",
        "",
    ]
    out = Path(args.out) if args.out else result_path("attn_unet_speed", ".md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    figures = {
        "ours_attention_float32_s": round(med[("ours_attention", "float32")], 3),
        "ours_unet_float32_s": round(med[("ours_unet", "float32")], 3),
        "monai_attention_float32_s": round(med[("monai_attention", "float32")], 3),
        "ours_attention_out_of_the_box_s": round(med[("ours_attention", "default")], 3),
        "monai_attention_out_of_the_box_s": round(med[("monai_attention", "trainer")], 3),
        "monai_over_ours_float32": round(r_monai, 2), "ours_over_unet_float32": round(r_unet, 2),
        "out_of_the_box_speedup": round(r_box, 2),
        "flop_rate_share_of_convolutions_percent": round(100 * step_rate / conv_rate),
    }
    write_json("attn_unet_speed", figures, lines=lines, report=out, path=out.with_suffix(".json") if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
