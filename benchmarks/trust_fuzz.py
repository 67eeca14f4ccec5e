"""The fuzzed scans of ``benchmarks/trust.py`` (part 2): seeded generators and the three paths each case goes through.

``fuzz_case(i, root)`` rebuilds case ``i`` exactly (``random.Random(SEED + i)``): cases below ``NIFTI_CASES`` are a
one-case MSD data set whose image (or label) is a mutated NIfTI file; the others are a broken DICOM series.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.trust import SEED, Outcome, attempt, files_under, run_inference, scan

NIFTI_CASES = 200
FUZZ_TOTAL = 224  # NIfTI mutations + broken DICOM series (benchmarks.trust.FUZZ_CASES)
NIFTI_KINDS = ("truncate", "flip_header", "dims", "pixdim", "datatype", "scl_slope", "xform_codes", "vox_offset")
DICOM_KINDS = ("missing_slice", "mixed_sizes", "duplicate_position", "truncated_slice", "garbage_slice",
               "flipped_slice")
LABELS = {"0": "background", "1": "pancreas", "2": "tumour"}
NAN, INF = float("nan"), float("inf")


@dataclass
class FuzzCase:
    """One fuzzed input: the data set folder (NIfTI) or the series folder (DICOM), the scan to infer on."""

    index: int
    kind: str
    folder: Path
    image: Path
    dataset: bool  # a data set folder (check-data and training apply), else only inference
    detail: str = ""
    outcomes: list[Outcome] = field(default_factory=list)


def _put(raw: bytearray, fmt: str, offset: int, *values: Any) -> None:
    struct.pack_into("<" + fmt, raw, offset, *values)


def mutate_nifti(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """``data`` (an uncompressed NIfTI-1 file) with one kind of damage; the damage in words."""
    raw = bytearray(data)
    if kind == "truncate":
        cut = rng.randrange(0, len(raw))
        return bytes(raw[:cut]), f"cut at {cut}"
    if kind == "flip_header":
        spots = [rng.randrange(0, 348) for _ in range(rng.randint(1, 8))]
        for s in spots:
            raw[s] ^= 1 << rng.randrange(8)
        return bytes(raw), f"bits flipped at {spots}"
    if kind == "dims":
        i = rng.randrange(0, 5)
        value = rng.choice([0, -1, -3, 1, 7, 8, 100, 1000, 32767]) if i else rng.choice([0, -1, 5, 8, 9, 100])
        _put(raw, "h", 40 + 2 * i, value)
        return bytes(raw), f"dim[{i}] = {value}"
    if kind == "pixdim":
        i = rng.randrange(0, 4)
        value = rng.choice([0.0, -1.0, NAN, INF, -INF, 1e30, 1e-30, 1e-6, 5.0])
        _put(raw, "f", 76 + 4 * i, value)
        return bytes(raw), f"pixdim[{i}] = {value}"
    if kind == "datatype":
        value = rng.choice([0, 1, 3, 6, 32, 128, 255, 1536, 1792, 2048, 2304, 9999, -2])
        _put(raw, "h", 70, value)
        if rng.random() < 0.5:
            _put(raw, "h", 72, rng.choice([0, 1, 7, 64, 128, 256]))
        return bytes(raw), f"datatype = {value}"
    if kind == "scl_slope":
        slope, inter = rng.choice([NAN, INF, -INF, 0.0, 1e38, -1e38, 1e-38]), rng.choice([0.0, NAN, INF, 1e38])
        _put(raw, "ff", 112, slope, inter)
        return bytes(raw), f"scl_slope = {slope}, scl_inter = {inter}"
    if kind == "xform_codes":
        q, s = rng.choice([-1, 0, 1, 2, 5, 100, 32767]), rng.choice([-1, 0, 1, 4, 5, 100, -32768])
        _put(raw, "hh", 252, q, s)
        bad = rng.choice([NAN, INF, 1e30, 0.0, 2.0])
        where = rng.choice(["srow", "quatern", "none"])
        if where == "srow":
            _put(raw, "ffff", 280 + 16 * rng.randrange(3), bad, bad, 0.0, 0.0)
        elif where == "quatern":
            _put(raw, "fff", 256, bad, bad, bad)
        return bytes(raw), f"qform_code = {q}, sform_code = {s}, {where} = {bad}"
    value = rng.choice([0.0, 10.0**9, -1.0, NAN, 347.0, 349.0, 1e30])
    _put(raw, "f", 108, value)
    return bytes(raw), f"vox_offset = {value}"


def _nifti(path: Path, label: bool) -> bytes:
    """The base scan (or its label map) as uncompressed NIfTI-1 bytes."""
    import nibabel as nib
    import numpy as np

    base = scan(path.with_suffix(".tmp.nii"))
    img = nib.load(str(base))
    if label:
        values = (np.asarray(img.dataobj) > 0).astype(np.uint8)
        values[10:14, 8:12, 4:6] = 2
        img = nib.Nifti1Image(values, img.affine)
        nib.save(img, str(base))
    data = base.read_bytes()
    base.unlink()
    return data


def nifti_case(i: int, root: Path) -> FuzzCase:
    """Case ``i`` (< NIFTI_CASES): a one-case data set whose image or label is mutated."""
    rng = random.Random(SEED + i)
    kind = NIFTI_KINDS[i % len(NIFTI_KINDS)]
    gz = rng.random() < 0.6
    target = "label" if rng.random() < 0.2 else "image"
    folder = root / f"case_{i:03d}"
    name = "c0.nii.gz" if gz else "c0.nii"
    paths, what = {}, ""
    for part, sub in (("image", "imagesTr"), ("label", "labelsTr")):
        raw = _nifti(folder / sub / "c0", part == "label")
        detail = ""
        if part == target:
            if kind == "truncate" and gz:  # cut the compressed stream
                raw, detail = mutate_nifti(gzip.compress(raw, mtime=0), kind, rng)
            else:
                raw, detail = mutate_nifti(raw, kind, rng)
                raw = gzip.compress(raw, mtime=0) if gz else raw
        elif gz:
            raw = gzip.compress(raw, mtime=0)
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / name).write_bytes(raw)
        paths[part] = folder / sub / name
        if detail:
            what = f"{target} {name}: {detail}"
    meta = {"name": "fuzz", "modality": {"0": "CT"}, "labels": LABELS, "numTraining": 1,
            "training": [{"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"}]}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return FuzzCase(i, kind, folder, paths["image"], True, what)


def _series(folder: Path, shape: tuple[int, int, int], uid: str, seed: int = 0) -> None:
    """A CT DICOM series of ``shape`` (one file per slice) written with SimpleITK, as scanners write them."""
    import numpy as np
    import SimpleITK as sitk

    from pipeline.inference.sources import keep_locale

    folder.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(seed).normal(40, 20, shape).astype(np.float32)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(shape[2]):
        s = sitk.GetImageFromArray(np.ascontiguousarray(values[:, :, k].T))
        s.SetSpacing((2.0, 2.0))
        for tag, value in {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0020|000d": "1.2.3.4",
            "0020|000e": uid, "0008|0018": f"{uid}.{k + 1}", "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{3.0 * k:.1f}", "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": "2\\2",
            "0018|0050": "3", "0028|1052": "-1024", "0028|1053": "1", "0028|0100": "16", "0028|0101": "16",
            "0028|0102": "15", "0028|0103": "0",
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
        with keep_locale():
            writer.Execute(s)


def dicom_case(i: int, root: Path) -> FuzzCase:
    """Case ``i`` (>= NIFTI_CASES): a DICOM series with one kind of damage."""
    rng = random.Random(SEED + i)
    kind = DICOM_KINDS[(i - NIFTI_CASES) % len(DICOM_KINDS)]
    folder = root / f"case_{i:03d}" / "series"
    n = rng.randint(4, 9)
    uid = f"1.2.826.0.1.3680043.8.498.{i}"
    _series(folder, (rng.randint(8, 24), rng.randint(8, 24), n), uid, seed=i)
    files = sorted(folder.glob("*.dcm"))
    k = rng.randrange(1, n - 1)
    if kind == "missing_slice":
        files[k].unlink()
    elif kind == "mixed_sizes":  # the same series, some slices of another size
        other = folder.parent / "other"
        _series(other, (rng.randint(25, 30), rng.randint(25, 30), k), uid, seed=i + 1)
        for f in sorted(other.glob("*.dcm")):
            shutil.move(str(f), str(folder / f.name))
        other.rmdir()
    elif kind == "duplicate_position":
        shutil.copyfile(files[k], files[k + 1])
    elif kind == "truncated_slice":
        data = files[k].read_bytes()
        files[k].write_bytes(data[: rng.randrange(0, len(data))])
    elif kind == "garbage_slice":
        files[k].write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000))))
    else:
        data = bytearray(files[k].read_bytes())
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] ^= 0xFF
        files[k].write_bytes(bytes(data))
    return FuzzCase(i, kind, folder, folder, False, f"slice {k} of {n}")


def fuzz_case(i: int, root: Path) -> FuzzCase:
    """Case ``i`` of the fuzz set, written under ``root``."""
    return nifti_case(i, root) if i < NIFTI_CASES else dicom_case(i, root)


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: the inputs must be byte-identical after a case."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def training_chain() -> Any:
    """The deterministic ``preprocessing`` of ``bundles/attn_unet/train.json`` with a fixed plan (nothing planned)."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from benchmarks.trust import REPO

    plan = {"target_spacing": [4.0, 4.0, 6.0], "patch_size": [32, 32, 16], "strides": [[2, 2, 1]],
            "batch_size": 2, "num_workers": 0}
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/attn_unet/train.json"))
    parser.update({"device": "cpu", "plan": plan, "ct_stats": None})
    return Compose(parser.get_parsed_content("preprocessing"))


def _train_load(case: FuzzCase, chain: Any) -> None:
    from pipeline.data.datalist import load_datalist

    for item in load_datalist(case.folder, "training", val_fraction=0.0):
        chain(item)


def _check_data(case: FuzzCase) -> None:
    from pipeline.data.integrity import check_dataset
    from pipeline.errors import PipelineError

    problems = check_dataset(case.folder)
    if problems:
        raise PipelineError(problems[0])


def run_case(case: FuzzCase, ckpt: Path, out: Path, chain: Any, seconds: float) -> list[str]:
    """Every path on one case; the problems found ([] = every path accepted it or refused it in one line, wrote
    nothing when it refused, and the inputs are unchanged)."""
    root = case.folder if case.dataset else case.folder.parent
    before = digest(root)
    if case.dataset:
        case.outcomes.append(attempt("check-data", lambda: _check_data(case), seconds))
        case.outcomes.append(attempt("training", lambda: _train_load(case, chain), seconds))
    infer = attempt("inference", lambda: run_inference(ckpt_dir=ckpt, input=case.image, output_dir=out), seconds)
    case.outcomes.append(infer)
    problems = [f"{o.entry}: {'hang' if o.hang else o.traceback}" for o in case.outcomes if o.hang or o.traceback]
    if infer.refused and files_under(out):
        problems.append(f"inference refused but wrote {files_under(out)[:3]}")
    if digest(root) != before:
        problems.append("the input files changed")
    shutil.rmtree(out, ignore_errors=True)
    return [f"case {case.index} ({case.kind}, {case.detail}): {p}" for p in problems]


__all__ = ["DICOM_KINDS", "FuzzCase", "NIFTI_KINDS", "digest", "fuzz_case", "mutate_nifti", "run_case",
           "training_chain"]
