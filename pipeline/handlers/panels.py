"""Image / label / prediction / attention-map panels of one validation case, to TensorBoard and to a PNG file.

MONAI's TensorBoardImageHandler shows raw tensors (3D volumes as frame strips); a panel here picks the slice with
the most foreground, overlays the classes and adds the Attention U-Net's gate coefficients, which MONAI lacks.
"""
from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.image
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure  # a plain Figure renders with Agg: no pyplot, no global backend switch

from pipeline.transforms.discrete import channel_argmax

logger = logging.getLogger(__name__)

CLASS_COLOURS = ["#00000000", "#ffd700", "#ff3030", "#30c0ff", "#40ff40"]


def _labels(t: torch.Tensor) -> np.ndarray:
    """Channel-first one-hot or single-channel label tensor -> integer map without the channel axis."""
    a = torch.as_tensor(t).detach().cpu().float()
    return (channel_argmax(a)[0] if a.shape[0] > 1 else a[0]).numpy().astype(np.int64)


def best_slice(label: np.ndarray) -> int:
    """Index along the last axis of a 3D label map with the most foreground (the middle if none)."""
    counts = (label > 0).reshape(-1, label.shape[-1]).sum(0)
    return int(counts.argmax()) if counts.max() > 0 else label.shape[-1] // 2


def panel_figure(
    image: np.ndarray, label: np.ndarray | None, pred: np.ndarray, attention: Mapping[int | str, np.ndarray],
    class_names: Sequence[str], title: str = "", radiological: bool = False,
    window: tuple[float, float] | None = None, subtitles: Mapping[str, str] | None = None,
) -> Figure:
    """Figure with image, label overlay (left out when ``label`` is None), prediction overlay and one panel per
    attention map (2D arrays indexed (x, y)); ``attention`` keys are gated levels (int) or panel titles (str).

    ``radiological``: an axial RAS slice, shown with the patient's right on the viewer's left and anterior up;
    otherwise a picture (y down, as PNG files are stored). ``window``: the displayed intensity range (lo, hi),
    default the 1st-99th percentile. ``subtitles`` extend the titles of ``"image"``, ``"label"``, ``"prediction"``.
    """
    layers = [("image", None)] + ([("label", label)] if label is not None else []) + [("prediction", pred)]
    n = len(layers) + len(attention)
    aspect = min(max(image.shape[1] / image.shape[0], 0.5), 2.0)  # shown height / width (arrays are (x, y))
    fig = Figure(figsize=(3.2 * n, 3.2 * aspect + 0.9))
    axes = fig.subplots(1, n, squeeze=False)[0]
    cmap = ListedColormap(CLASS_COLOURS[: len(class_names) + 1])
    lo, hi = window if window is not None else np.percentile(image, [1, 99])
    origin = "lower" if radiological else "upper"
    subtitles = subtitles or {}
    for ax, (name, overlay) in zip(axes, layers):
        ax.imshow(image.T, cmap="gray", vmin=lo, vmax=hi, origin=origin)
        if overlay is not None:
            ax.imshow(np.ma.masked_equal(overlay.T, 0), cmap=cmap, vmin=0, vmax=len(class_names), alpha=0.55,
                      origin=origin, interpolation="nearest")
        sub = textwrap.fill(subtitles[name], 44) if subtitles.get(name) else ""
        ax.set_title(name + (f"\n{sub}" if sub else ""), fontsize=9)
    for ax, (key, att) in zip(axes[len(layers):], attention.items()):
        ax.imshow(image.T, cmap="gray", vmin=lo, vmax=hi, origin=origin)
        im = ax.imshow(att.T, cmap="jet", vmin=0, vmax=1, alpha=0.5, origin=origin)
        ax.set_title(f"attention level {key}" if isinstance(key, int) else str(key), fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes:
        if radiological:
            ax.invert_xaxis()
        ax.set_xticks([])
        ax.set_yticks([])
    if radiological:  # say which side is which: the convention is easy to get wrong
        for x, y, text, ha, va in ((0.02, 0.5, "R", "left", "center"), (0.98, 0.5, "L", "right", "center"),
                                   (0.5, 0.98, "A", "center", "top"), (0.5, 0.02, "P", "center", "bottom")):
            axes[0].text(x, y, text, transform=axes[0].transAxes, color="white", fontsize=9, ha=ha, va=va)
    legend = ", ".join(f"{c}: {name}" for c, name in zip(("yellow", "red", "blue", "green"), class_names))
    fig.suptitle(f"{title}   ({legend})" if title else legend, fontsize=9)
    fig.tight_layout()
    return fig


class SegmentationPanelHandler:
    """At the end of each evaluator epoch, renders the first case of the epoch as a panel.

    The panel goes to TensorBoard (tag ``<tag>/panel``) and to ``<log_dir>/<tag>_panel.png``. If the network
    exposes ``attention_maps`` (AttentionUNet), it is re-run on a ``roi_size`` crop centred on the foreground so
    the gate coefficients shown belong to that very slice.
    """

    def __init__(
        self, log_dir: str, class_names: Sequence[str], roi_size: Sequence[int] | None = None, tag: str = "val",
    ) -> None:
        self.log_dir = Path(log_dir)
        self.class_names = list(class_names)
        self.roi_size = list(roi_size) if roi_size is not None else None
        self.tag = tag
        self._case: dict | None = None
        self._writer = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.store)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.render)

    def store(self, engine: Engine) -> None:
        if self._case is not None:  # keep the first case of the epoch
            return
        items = engine.state.output
        item = items[0] if isinstance(items, list) else items
        self._case = {k: item[k].detach().cpu() for k in ("image", "label", "pred") if k in item}

    def _attention(self, network: torch.nn.Module, image: torch.Tensor, label: np.ndarray, z: int | None) -> dict:
        if not hasattr(network, "attention_maps"):
            return {}
        x = torch.as_tensor(image)[None].float()
        spatial = x.shape[2:]
        starts = [0] * len(spatial)
        if self.roi_size is not None:
            fg = np.argwhere(label > 0)
            centre = fg.mean(0).round().astype(int) if len(fg) else [s // 2 for s in spatial]
            if z is not None:
                centre[-1] = z
            sizes = [min(r, s) for r, s in zip(self.roi_size, spatial)]
            starts = [int(min(max(c - r // 2, 0), s - r)) for c, r, s in zip(centre, sizes, spatial)]
            x = x[(slice(None), slice(None)) + tuple(slice(b, b + r) for b, r in zip(starts, sizes))]
        device = next(network.parameters()).device
        was_training = network.training
        network.eval()
        with torch.no_grad():
            network(x.to(device))
        network.train(was_training)
        maps = {}
        for level, alpha in network.attention_maps.items():
            a = F.interpolate(alpha.float(), size=x.shape[2:], mode="nearest")[0, 0].cpu().numpy()
            full = np.zeros(tuple(spatial), dtype=np.float32)
            full[tuple(slice(b, b + s) for b, s in zip(starts, a.shape))] = a
            maps[level] = full[..., z] if z is not None else full
        return maps

    def render(self, engine: Engine) -> None:
        if self._case is None or "pred" not in self._case:
            return
        image = torch.as_tensor(self._case["image"])
        label = _labels(self._case["label"]) if "label" in self._case else np.zeros(image.shape[1:], np.int64)
        pred = _labels(self._case["pred"])
        z = best_slice(label if label.any() else pred) if image.ndim == 4 else None
        try:
            attention = self._attention(engine.network, image, label, z)
        except RuntimeError as e:  # a panel must never stop a training run
            logger.warning("attention maps not rendered: %s", e)
            attention = {}
        img = image[0].float().numpy()
        pick = (lambda a: a[..., z]) if z is not None else (lambda a: a)
        epoch = engine.state.epoch
        fig = panel_figure(pick(img), pick(label), pick(pred), attention, self.class_names,
                           title=f"{self.tag} epoch {epoch}" + (f", axial slice {z}" if z is not None else ""),
                           radiological=z is not None)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # drawn once, for both the PNG file and TensorBoard (savefig and add_figure would each draw it again)
        fig.set_dpi(80)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        matplotlib.image.imsave(self.log_dir / f"{self.tag}_panel.png", rgba)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._writer.add_image(f"{self.tag}/panel", rgba[..., :3], global_step=epoch, dataformats="HWC")
        self._writer.flush()
        self._case = None
