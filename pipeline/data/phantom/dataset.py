"""A data set of phantoms in the MSD Task07_Pancreas layout (NIfTI, int16 HU images and uint8 labels).

Case ``i`` of a data set generated with ``seed`` is ``generate_case(case_seed(seed, i), scale, tumour_contrast)``,
so a case does not depend on the data set size. Arguments are checked, then the shared MSD writer checks the output folder,
before anything on disk changes.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.data.msd import MSDCase, MSDDataset, nifti_bytes, write_msd_dataset
from pipeline.data.phantom.case import build_case, case_seed, check_scale, check_tumour_contrast, single_torch_thread
from pipeline.errors import PipelineError

NAME = "Pancreas phantom"
FILE_PATTERN = r"pancreas_\d+\.nii\.gz"


def _count(name: str, value: object, minimum: int) -> int:
    """`value` as an int >= minimum, else a one-line PipelineError naming the argument."""
    try:
        number = int(value)  # type: ignore[call-overload]
        ok = number == value and number >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise PipelineError(f"phantom data set: {name}={value!r} must be an integer >= {minimum}")
    return number


def pancreas_msd_dataset(n: int, seed: int, n_test: int, scale: float, tumour_contrast: str = "v1") -> MSDDataset:
    """The MSD description (dataset.json header and case list) of a phantom data set; arguments already checked."""
    width = max(3, len(str(n + n_test - 1)))
    cases = [MSDCase(i, f"pancreas_{i:0{width}d}.nii.gz", "training" if i < n else "test") for i in range(n + n_test)]
    header = {
        "name": NAME,
        # the module path in the description is kept as first released so that same-seed files stay identical
        "description": ("Synthetic portal-venous abdominal CT phantoms with pancreas and pancreatic tumour labels "
                        f"(pipeline.data.pancreas_phantom, seed={seed}, scale={scale}"
                        + (f", tumour_contrast={tumour_contrast})" if tumour_contrast != "v1" else ")")),
        "reference": "Synthetic; layout of the Medical Segmentation Decathlon Task07_Pancreas (Antonelli et al. 2022)",
        "licence": "CC0-1.0 (synthetic data, no patient information)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
    }
    return MSDDataset(header=header, cases=cases, file_pattern=FILE_PATTERN, lists=("training", "test"),
                      test_labels_listed=False, json_indent=4)


def make_pancreas_dataset(out_dir: str | Path, n: int = 20, seed: int = 0, n_test: int | None = None,
                          scale: float = 1.0, overwrite: bool = False, tumour_contrast: str = "published") -> Path:
    """Write n training phantoms (+ n_test held-out, default max(1, n // 5)) in MSD Task07 layout; return out_dir.

    dataset.json is written last, so a folder without it is an interrupted run. labelsTs/ holds the held-out
    labels (real MSD has none); `tumour_contrast`: see `generate_case`. Invalid arguments or an existing data set
    (without overwrite=True, or not a
    phantom set) raise a one-line PipelineError with nothing on disk changed.
    """
    out = Path(out_dir)
    n = _count("n", n, 1)
    n_test = max(1, n // 5) if n_test is None else _count("n_test", n_test, 0)
    seed = _count("seed", seed, 0)
    check_scale(scale)
    check_tumour_contrast(tumour_contrast)
    dataset = pancreas_msd_dataset(n, seed, n_test, scale, tumour_contrast)

    def encode(case: MSDCase) -> tuple[bytes, bytes]:
        phantom = build_case(case_seed(seed, case.index), scale, tumour_contrast)
        return nifti_bytes(phantom.hu, phantom.affine), nifti_bytes(phantom.label, phantom.affine)

    # one case in flight per core (2 to 8): numpy, torch and zlib release the GIL, so generation and compression
    # use the cores; every case has its own seed, so the files are the same bytes whatever the order
    with single_torch_thread():
        write_msd_dataset(out, dataset, encode, overwrite=overwrite, workers=min(8, max(2, os.cpu_count() or 1)))
    return out
