"""The network(s) inference runs: one checkpoint folder or several (an ensemble, e.g. the folds of ``--num_folds``),
each from ``model.pt`` or a TorchScript file, wrapped so that one call gives the averaged softmax probabilities
(over checkpoints and, with test-time augmentation, over flips) and, on request, the attention maps.

MONAI's ``CheckpointLoader`` loads one state dict into one network when the engine starts and reports a bad file
with a traceback; here every checkpoint is loaded and checked before the first case is read, so a corrupt file or
weights of another network stop the run with one line and nothing written. MONAI has no ensemble-with-flips
network wrapper for sliding-window use (its ``TestTimeAugmentation`` inverts random transforms on whole volumes);
``EnsembleNetwork`` runs inside the sliding window, per patch, as nnU-Net does.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from pipeline.config import flag
from pipeline.engines.placement import place
from pipeline.engines.model_config import FILENAME, network_from_config, read_model_config
from pipeline.errors import PipelineError, short_error

logger = logging.getLogger(__name__)

# what every member of an ensemble must share: the data they take and the classes they give
SHARED_KEYS = ("spatial_dims", "in_channels", "out_channels", "class_names")
# the preprocessing every member's plan must share (patch sizes may differ: each is a sliding window's size)
SHARED_PLAN_KEYS = ("target_spacing", "intensity")


def checkpoint_dirs(ckpt_dir: str | Path | Sequence[str | Path]) -> list[str]:
    """``ckpt_dir`` as a list of folders: one folder, or a list of them (an ensemble)."""
    dirs = [ckpt_dir] if isinstance(ckpt_dir, (str, Path)) else list(ckpt_dir or [])
    if not dirs:
        raise PipelineError("ckpt_dir is empty: give a checkpoint folder or a list of them")
    return [str(d) for d in dirs]


def fine_checkpoints(ckpt_dir: str | Path | Sequence[str | Path], cascade: bool | str = "auto") -> list[str] | None:
    """The cascade's second-stage folders, ``<folder>_fine`` beside each of ``ckpt_dir`` (train.json with
    ``--cascade true`` writes them), or None for a one-stage run: ``cascade`` auto takes them when every one holds a
    ``model.pt``; true requires them (one line naming the missing folder); false never takes them."""
    dirs = [f"{d.rstrip('/')}_fine" for d in checkpoint_dirs(ckpt_dir)]
    present = [(Path(d) / "model.pt").is_file() for d in dirs]
    if str(cascade).lower() == "auto":
        return dirs if all(present) else None
    if not flag(cascade, "cascade"):
        return None
    missing = [d for d, ok in zip(dirs, present) if not ok]
    if missing:
        raise PipelineError(f"{missing[0]}: no model.pt for the cascade's second stage (train with --cascade true, "
                            "or infer with --cascade false)")
    return dirs


def _shared(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in SHARED_KEYS}


def ensemble_model_config(ckpt_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """The ``model_config.json`` of the first checkpoint folder, after checking that every other folder's network
    takes the same data (dims, channels, preprocessing state) and gives the same classes. Its ``mirror_axes`` are
    those every member was trained with (None if one of them does not say)."""
    configs = [read_model_config(d) for d in ckpt_dirs]
    first = _shared(configs[0])
    for d, config in zip(ckpt_dirs[1:], configs[1:]):
        other = _shared(config)
        for key in SHARED_KEYS:
            if other[key] != first[key]:
                raise PipelineError(
                    f"{Path(d) / FILENAME}: {key} = {other[key]} differs from {first[key]} in "
                    f"{Path(ckpt_dirs[0]) / FILENAME}: an ensemble's checkpoints must take the same data and give "
                    "the same classes"
                )
    mirrored = [c.get("mirror_axes") for c in configs]
    common = None if any(m is None for m in mirrored) else sorted(set.intersection(*(set(m) for m in mirrored)))
    return {**configs[0], "mirror_axes": common}


def ensemble_plan(ckpt_dirs: Sequence[str | Path], device: str = "auto") -> dict[str, Any]:
    """The plan of the first checkpoint folder (``pipeline.planning.checkpoint_plan``), after checking that every
    other member was trained on identically prepared data; a one-line PipelineError names the first difference."""
    from pipeline.planning import CHECKPOINT_PLAN, checkpoint_plan

    plans = [checkpoint_plan(d, device) for d in ckpt_dirs]
    for d, plan in zip(ckpt_dirs[1:], plans[1:]):
        for key in SHARED_PLAN_KEYS:
            if plan.get(key) != plans[0].get(key):
                raise PipelineError(
                    f"{Path(d) / CHECKPOINT_PLAN}: {key} = {plan.get(key)} differs from {plans[0].get(key)} in "
                    f"{Path(ckpt_dirs[0]) / CHECKPOINT_PLAN}: an ensemble's checkpoints must take the same data"
                )
    return plans[0]


def check_data_fragment(ckpt_dirs: Sequence[str | Path], spatial_dims: int, intensity: Mapping[str, Any]) -> None:
    """Refuse (one line) a checkpoint trained on another kind of data than this config's data fragment (2D vs 3D,
    or another intensity preprocessing, e.g. CT windowing vs the shapes' min-max scaling)."""
    from pipeline.planning import CHECKPOINT_PLAN, read_plan

    for d in ckpt_dirs:
        config = read_model_config(d)
        saved_dims = config.get("spatial_dims")
        saved_mode = (read_plan(Path(d) / CHECKPOINT_PLAN).get("intensity") or {}).get("mode")
        if saved_dims != spatial_dims or saved_mode != intensity.get("mode"):
            net = str((config.get("network") or {}).get("_target_", "?")).rsplit(".", 1)[-1]
            raise PipelineError(
                f"{Path(d) / FILENAME}: a {saved_dims}D {net} checkpoint trained with intensity {saved_mode!r}, but "
                f"this inference config's data fragment is {spatial_dims}D with {intensity.get('mode')!r}: add the "
                "data fragment it was trained with (configs/data/pancreas_ct.json or configs/data/shapes2d.json) "
                "after inference.json"
            )


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch/pickle/zip raise many types for a damaged file
        raise PipelineError(f"{path}: unreadable checkpoint ({short_error(e)})") from None
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]  # a CheckpointSaver file holding several objects
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path}: not a network state dict (expected the model.pt that training writes)")
    return dict(state)


def _check_torchscript_archive(path: Path) -> None:
    """Refuse (one line) a ``.ts`` file that is not a TorchScript archive (a zip holding ``code/``, ``data.pkl``
    and ``constants.pkl`` under one folder) before TorchScript's loader sees it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise PipelineError(f"{path}: not a TorchScript file (not a zip archive: {short_error(e)})") from None
    roots = {n.split("/", 1)[0] for n in names}
    needed = ("data.pkl", "constants.pkl")
    if len(roots) != 1 or not all(f"{next(iter(roots))}/{n}" in names for n in needed) or not any(
            n.startswith(f"{next(iter(roots))}/code/") for n in names):
        raise PipelineError(f"{path}: not a TorchScript file (the zip lacks code/, data.pkl or constants.pkl)")


def load_network(ckpt_dir: str | Path, model_file: str = "model.pt", device: str | torch.device = "cpu") -> nn.Module:
    """The network of one checkpoint folder in eval mode on ``device``: ``model_config.json``'s class with the
    weights of ``model_file`` (a state dict), or a TorchScript file (``*.ts``, e.g. from ``ckpt_export``)."""
    path = Path(ckpt_dir) / model_file
    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found (train the bundle first, or set --ckpt_dir/--model_file)")
    if path.suffix == ".ts":
        _check_torchscript_archive(path)
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise PipelineError(f"{path}: unreadable TorchScript file ({short_error(e)})") from None
        return net.eval().to(device)
    config = read_model_config(ckpt_dir)
    net = network_from_config(config, Path(ckpt_dir) / FILENAME)
    state = _state_dict(path)
    ours = net.state_dict()
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    wrong = [k for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{n} {what} (e.g. {keys[0]})"
            for n, what, keys in ((len(missing), "missing", missing), (len(unexpected), "unexpected", unexpected),
                                  (len(wrong), "of another shape", wrong))
            if n
        )
        raise PipelineError(
            f"{path}: holds the weights of another network than the {type(net).__name__} that "
            f"{Path(ckpt_dir) / FILENAME} describes ({detail})"
        )
    net.load_state_dict(state)
    return place(net.eval(), device)


def network_def(ckpt_dirs: Sequence[str | Path], model_file: str = "model.pt") -> nn.Module:
    """The network ``ckpt_export`` and ``verify_net_in_out`` build (``inference.json``'s ``network_def``):
    ``model_config.json``'s class from the first checkpoint folder. The weights file beside it, when there is one,
    is read first (``weights_only``), so that a hostile or damaged file stops with one line here instead of a
    traceback from MONAI's own loading."""
    folder = Path(ckpt_dirs[0])
    net = network_from_config(read_model_config(folder), folder / FILENAME)
    path = folder / model_file
    if path.suffix != ".ts" and path.is_file():
        _state_dict(path)
    return net


def load_networks(
    ckpt_dirs: Sequence[str | Path], model_file: str = "model.pt", device: str | torch.device = "cpu"
) -> list[nn.Module]:
    """``load_network`` for each checkpoint folder (all of them checked before any is used)."""
    nets = [load_network(d, model_file, device) for d in ckpt_dirs]
    for d, net in zip(ckpt_dirs, nets):
        logger.info("network %s from %s", type(net).__name__, Path(d) / model_file)
    if len(nets) > 1:
        logger.info("ensemble of %d checkpoints: their softmax probabilities are averaged", len(nets))
    return nets


def flip_sets(spatial_dims: int, axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every subset of the spatial ``axes`` (default all), as tensor dims of a (B, C, *S) batch: the mirrorings
    of flip test-time augmentation, the identity ``()`` first (8 passes in 3D, 4 in 2D)."""
    axes = list(range(spatial_dims)) if axes is None else sorted(set(int(a) for a in axes))
    bad = [a for a in axes if not 0 <= a < spatial_dims]
    if bad:
        raise PipelineError(f"tta_axes {bad}: spatial axes are 0..{spatial_dims - 1}")
    dims = [a + 2 for a in axes]
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def trained_mirror_axes(transforms: Sequence[Any], spatial_dims: int) -> list[int]:
    """The spatial axes a training augmentation list mirrors: ``RandFlip(d)`` along its ``spatial_axis`` (all axes
    for None), ``RandAxisFlip(d)`` along every axis, searched through nested ``Compose`` / ``OneOf`` lists. Training
    records them in ``model_config.json`` (``mirror_axes``) as the axes flip TTA may use, as nnU-Net stores its
    ``inference_allowed_mirroring_axes``: a model never shown a mirrored scan is not asked to segment one."""
    from monai.transforms import RandAxisFlip, RandAxisFlipd, RandFlip, RandFlipd

    axes: set[int] = set()
    for t in transforms:
        if isinstance(t, (RandFlip, RandFlipd)) and t.prob > 0:
            axis = (t.flipper if isinstance(t, RandFlipd) else t).spatial_axis
            axes.update(range(spatial_dims) if axis is None else [axis] if isinstance(axis, int) else axis)
        elif isinstance(t, (RandAxisFlip, RandAxisFlipd)) and t.prob > 0:
            axes.update(range(spatial_dims))
        elif isinstance(getattr(t, "transforms", None), (list, tuple)):
            axes.update(trained_mirror_axes(t.transforms, spatial_dims))
    return sorted(int(a) % spatial_dims for a in axes)


def tta_flips(tta: bool | str, spatial_dims: int, tta_axes: Sequence[int] | None = None,
              mirror_axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """The mirrorings of flip TTA for the ``tta`` key: ``auto`` the axes training mirrored (``mirror_axes``; one
    pass when there are none or they are unknown), ``true`` ``tta_axes`` (default all), ``false`` one pass."""
    if str(tta).strip().lower() == "auto":
        return flip_sets(spatial_dims, mirror_axes) if mirror_axes else [()]
    return flip_sets(spatial_dims, tta_axes) if flag(tta, "tta") else [()]


def tta_inferer(inferer: Inferer, flips: Sequence[Sequence[int]]) -> Inferer:
    """A ``MirroringInferer`` around ``inferer`` (one pass when ``flips`` has one entry): the output is softmax
    probabilities either way, so evaluation can read the case's maximum lesion probability from it."""
    return MirroringInferer(inferer, flips or [()])


def _mirror(y: torch.Tensor, flip: tuple[int, ...]) -> torch.Tensor:
    """``y`` mirrored along the tensor dims ``flip`` (none: ``y`` itself); a mirroring is its own inverse."""
    return torch.flip(y, flip) if flip else y


class MirroringInferer(Inferer):
    """Flip test-time augmentation around another MONAI inferer, for evaluators: ``inferer`` runs on the input and on
    each of its mirrorings (``flip_sets``), and the softmax probabilities of all classes, mirrored back, are
    averaged. The output is probabilities, not logits: an argmax after it picks the same class as on their mean.

    Evaluators call their inferer with the plain network, so handlers that re-run the network (the attention panels)
    still see it unwrapped; inference's ``EnsembleNetwork`` does the same per sliding-window patch over several
    checkpoints. MONAI has no flip-TTA inferer (its ``TestTimeAugmentation`` inverts random transforms).
    """

    def __init__(self, inferer: Inferer, flips: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.inferer = inferer
        self.flips = [tuple(f) for f in flips] or [()]

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        total: torch.Tensor | None = None
        for flip in self.flips:
            out = self.inferer(_mirror(inputs, flip), network, *args, **kwargs)
            if isinstance(out, (list, tuple)):  # deep supervision outputs: the full-resolution one
                out = out[0]
            y = _mirror(torch.softmax(out.float(), dim=1), flip)
            total = y if total is None else total.add_(y)
        assert total is not None
        return total.div_(len(self.flips))


class EnsembleNetwork(nn.Module):
    """Averaged softmax of ``networks`` over the ``flips`` (TTA mirrorings; ``[()]`` = none), foreground classes
    only, followed by the attention maps if ``attention`` (one channel per gated level, resampled to the input).

    Input ``(B, in_channels, *S)``; output ``(B, out_channels - 1 + n_levels, *S)`` float32. The background channel
    is left out on purpose: it is ``1 - sum(foreground)``, restored after resampling to the scan's grid, which
    spares resampling one channel and makes whatever lies outside the network's crop background.
    """

    def __init__(
        self, networks: Sequence[nn.Module], spatial_dims: int, flips: Sequence[Sequence[int]] = ((),),
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.spatial_dims = spatial_dims
        self.flips = [tuple(f) for f in flips] or [()]
        self.attention = attention
        self.levels: list[int] = []
        if attention:
            levels = [tuple(getattr(n, "attention_levels", ()) or ()) for n in networks]
            if not levels[0] or any(lv != levels[0] for lv in levels):
                kinds = ", ".join(sorted({type(n).__name__ for n in networks}))
                raise PipelineError(
                    f"save_attention: the network(s) ({kinds}) have no attention gates, or not the same gated levels "
                    "(TorchScript files do not expose attention maps: use model.pt)"
                )
            self.levels = list(levels[0])

    def _attention(self, net: nn.Module, size: Sequence[int]) -> torch.Tensor:
        """The gated levels' coefficients of the last forward pass, up-sampled to ``size`` and stacked as channels."""
        mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
        maps = []
        for level in self.levels:
            alpha = net.attention_maps[level].float()
            # level l's grid is ceil(S / f) for its pooling factor f: up-sample by f and crop to S
            factor = [-(-s // a) for s, a in zip(size, alpha.shape[2:])]
            up = nn.functional.interpolate(alpha, scale_factor=factor, mode=mode, align_corners=False)
            maps.append(up[(..., *[slice(0, s) for s in size])])
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        total: torch.Tensor | None = None
        for net in self.networks:
            for flip in self.flips:
                out = net(_mirror(x, flip))
                if isinstance(out, (list, tuple)):  # deep supervision in train mode; eval gives the full output
                    out = out[0]
                parts = [torch.softmax(out.float(), dim=1)[:, 1:]]
                if self.attention:
                    parts.append(self._attention(net, size))
                y = _mirror(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0], flip)
                total = y if total is None else total.add_(y)
        assert total is not None
        return total.div_(len(self.networks) * len(self.flips))


__all__ = [
    "EnsembleNetwork",
    "MirroringInferer",
    "check_data_fragment",
    "checkpoint_dirs",
    "ensemble_model_config",
    "ensemble_plan",
    "flip_sets",
    "trained_mirror_axes",
    "tta_flips",
    "tta_inferer",
    "load_network",
    "network_def",
    "load_networks",
]
