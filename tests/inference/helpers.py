"""Tiny checkpoints written without training (speed and geometry do not depend on the weights) and in-process runs
of a bundle's inference.json, as ``monai.bundle run`` does them (initialize, then run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from pipeline.engines import register_network
from pipeline.networks import AttentionUNet, UNet
from tests.bundles_util import REPO
from tests.checkpoints import write_checkpoint  # noqa: F401 - re-exported for the inference tests

def ct_network(kind: str = "attn", seed: int = 0) -> torch.nn.Module:
    """A 3-class 3D network of width 4 (the CT bundle's layout, deep supervision on, as trained)."""
    torch.manual_seed(seed)
    cls = AttentionUNet if kind == "attn" else UNet
    return cls(3, 1, 3, preset="standard", base_width=4, strides=[[2, 2, 1]], deep_supervision=True).eval()


def parser_for(bundle: str, **overrides: Any) -> ConfigParser:
    """The bundle's inference.json with ``overrides`` (like ``--key value`` on the command line)."""
    parser = ConfigParser()
    parser.read_config([str(REPO / f"bundles/{bundle}/inference.json")])
    parser.update({k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()})
    return parser


def run_inference(bundle: str = "attn_unet", **overrides: Any) -> ConfigParser:
    """Run the bundle's inference.json in this process (``initialize``, ``run`` and ``finalize``, as ``monai.bundle
    run``)."""
    overrides.setdefault("progress", False)
    overrides.setdefault("device", "cpu")
    parser = parser_for(bundle, **overrides)
    try:
        parser.get_parsed_content("initialize")
        parser.get_parsed_content("run")
    finally:  # releases the pred_dir lock, as the process's exit does after `monai.bundle run`
        parser.get_parsed_content("finalize")
    return parser


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@register_network
class ThresholdNet(torch.nn.Module):
    """A stand-in "network" whose class 1 is where the (windowed) input exceeds ``level``, so that a test can tell
    where a prediction lands: class 1 must cover the bright voxels of the input wherever the scan's grid points."""

    def __init__(self, spatial_dims: int = 3, level: float = 0.6) -> None:
        super().__init__()
        self.init_args = {"spatial_dims": spatial_dims, "level": level}
        self.level = torch.nn.Parameter(torch.tensor(float(level)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 40.0 * (x - self.level)
        return torch.cat([torch.zeros_like(x), fg, torch.full_like(x, -20.0)], dim=1)


def ct_like_volume(shape: tuple[int, int, int] = (40, 34, 14), seed: int = 0):
    """(HU array, bright mask): air around an elliptic body of soft tissue (40 HU) holding an off-centre bright
    organ (200 HU, the only voxels above 100 HU), plus mild noise; asymmetric, so a flip or shift shows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = sum((g / r) ** 2 for g, r in zip(grid, (0.9, 0.8, 1.3))) < 1
    organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (0.35, -0.2, 0.1), (0.3, 0.35, 0.6))) < 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, shape)
    hu[organ & body] = 200.0
    return hu.astype(np.int16), organ & body


def oblique_affine(spacing=(2.5, 3.0, 7.0), flip=(True, False, True), degrees=(0.0, 0.0, 0.0), origin=(-40, 30, -20)):
    """A voxel-to-world affine with the given spacing, axis flips and rotations (degrees about x, y, z)."""
    import numpy as np

    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag([(-1 if f else 1) * s for f, s in zip(flip, spacing)])
    affine[:3, 3] = origin
    return affine


def dice(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def write_dicom_series(folder: Path, hu, affine, series_uid: str,
                       study_uid: str = "1.2.826.0.1.3680043.8.498.1") -> Path:
    """Write ``hu`` (i, j, k array) as a CT DICOM series, one file per k-slice, with SimpleITK: the usual geometry
    tags (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness) from the RAS ``affine`` and
    unsigned 16-bit stored values with RescaleIntercept -1024 / RescaleSlope 1, as scanners write them (GDCM
    converts the float HU slices with these tags)."""
    import numpy as np
    import SimpleITK as sitk

    from pipeline.inference.sources import keep_locale

    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    values = np.asarray(hu, dtype=np.float32)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.10f}" for v in (*direction[:, 0], *direction[:, 1]))
    for k in range(values.shape[2]):
        s = sitk.GetImageFromArray(np.ascontiguousarray(values[:, :, k].T))  # (j, i): rows x columns
        s.SetSpacing((float(spacing[0]), float(spacing[1])))
        position = lps[:3, 3] + lps[:3, 2] * k
        for tag, value in {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0010|0010": "Phantom^Test",
            "0020|000d": study_uid, "0020|000e": series_uid, "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation, "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
            "0018|0050": f"{spacing[2]:.6f}", "0028|1052": "-1024", "0028|1053": "1", "0028|0100": "16",
            "0028|0101": "16", "0028|0102": "15", "0028|0103": "0",
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"series{series_uid.rsplit('.', 1)[-1]}_{k:03d}.dcm"))
        with keep_locale():  # GDCM leaves the C locale behind when it converts the float slices
            writer.Execute(s)
    return folder
