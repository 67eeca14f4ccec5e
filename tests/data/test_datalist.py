"""Checked data lists and label value checks on tiny NIfTI / PNG data sets built in tmp_path."""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pipeline.data.case_files import affines_match, read_header
from pipeline.data.cases import case_id, image_files
from pipeline.data.datalist import load_datalist
from pipeline.data.listing import dataset_entries, read_dataset_json
from pipeline.data.splits import split_cases
from pipeline.data.integrity import check_case_labels, check_dataset
from pipeline.errors import PipelineError
from pipeline.transforms import CheckLabelValuesd, allowed_label_values

SHAPE = (8, 8, 4)
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _nii(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _label(value: int = 1, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    lbl = np.zeros(shape, dtype=np.uint8)
    lbl[2:5, 2:5, 1:3] = value
    return lbl


def _msd(
    root: Path,
    n: int = 6,
    *,
    validation: int = 0,
    n_test: int = 2,
    test_labels: int = 1,
    write_json: bool = True,
) -> Path:
    """A tiny MSD-style task: n labelled cases (last `validation` of them in an explicit list), string test list."""
    image = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    entries = []
    for i in range(n):
        name = f"case_{i:03d}.nii.gz"
        _nii(root / "imagesTr" / name, image)
        _nii(root / "labelsTr" / name, _label(1 + i % 2))
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    test = []
    for i in range(n_test):
        name = f"case_{100 + i:03d}.nii.gz"
        _nii(root / "imagesTs" / name, image)
        if i < test_labels:
            _nii(root / "labelsTs" / name, _label())
        test.append(f"./imagesTs/{name}")
    if write_json:
        meta = {
            "name": "Tiny",
            "labels": {"0": "background", "1": "a", "2": "b"},
            "numTraining": n,
            "numTest": n_test,
            "training": entries[: n - validation],
            "test": test,
        }
        if validation:
            meta["validation"] = entries[n - validation :]
        _write_json(root, meta)
    return root


def _write_json(root: Path, meta: dict) -> None:
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))


def _meta(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _cases(items: list[dict]) -> list[str]:
    return [c["case"] for c in items]


# --- splits ------------------------------------------------------------------------------------------


def test_random_split_deterministic_disjoint_complete(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=10)
    train = load_datalist(root, "training", val_fraction=0.3, seed=5)
    val = load_datalist(root, "validation", val_fraction=0.3, seed=5)
    assert train == load_datalist(root, "training", val_fraction=0.3, seed=5)
    assert len(val) == 3 and not set(_cases(train)) & set(_cases(val))
    assert sorted(_cases(train) + _cases(val)) == [f"case_{i:03d}" for i in range(10)]
    first = train[0]
    assert set(first) == {"image", "label", "case"}
    assert Path(first["image"]).is_absolute() and first["image"] == str(root / "imagesTr" / f"{first['case']}.nii.gz")


def test_split_cases_independent_of_input_order_and_min_one_validation() -> None:
    cases = [{"case": f"c{i}"} for i in range(7)]
    a = split_cases(cases, "validation", val_fraction=0.2, num_folds=0, fold=0, seed=1)
    b = split_cases(cases[::-1], "validation", val_fraction=0.2, num_folds=0, fold=0, seed=1)
    assert a == b
    two = [{"case": "x"}, {"case": "y"}]
    assert len(split_cases(two, "validation", val_fraction=0.01, num_folds=0, fold=0, seed=0)) == 1
    assert split_cases(two, "validation", val_fraction=0.0, num_folds=0, fold=0, seed=0) == []
    with pytest.raises(PipelineError, match="listed twice"):
        split_cases([{"case": "x"}, {"case": "x"}], "training", val_fraction=0.2, num_folds=0, fold=0, seed=0)


def test_kfold_partitions_cases_like_nnunet() -> None:
    cases = [{"case": f"case_{i:02d}"} for i in range(11)]
    vals = [
        _cases(split_cases(cases, "validation", val_fraction=0.2, num_folds=3, fold=f, seed=12345)) for f in range(3)
    ]
    assert sorted(len(v) for v in vals) == [3, 4, 4]
    assert sorted(c for v in vals for c in v) == _cases(cases)
    for f in range(3):
        train = _cases(split_cases(cases, "training", val_fraction=0.2, num_folds=3, fold=f, seed=12345))
        assert sorted(train + vals[f]) == _cases(cases) and not set(train) & set(vals[f])
    # nnU-Net: sklearn KFold(shuffle=True, random_state=seed) over the sorted ids.
    order = np.arange(11)
    np.random.RandomState(12345).shuffle(order)
    assert vals[0] == sorted(f"case_{i:02d}" for i in order[:4])
    for bad_fold in (3, -1):
        with pytest.raises(PipelineError, match=f"fold={bad_fold}"):
            split_cases(cases, "training", val_fraction=0.2, num_folds=3, fold=bad_fold, seed=0)


def test_kfold_through_load_datalist_and_fold_keys(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=6)
    folds = [_cases(load_datalist(root, "validation", num_folds=3, fold=f)) for f in range(3)]
    assert sorted(sum(folds, [])) == [f"case_{i:03d}" for i in range(6)]
    with pytest.raises(PipelineError, match="fold=3"):
        load_datalist(root, "training", num_folds=3, fold=3)
    meta = _meta(root)  # MONAI/Auto3DSeg style: folds given per entry
    for i, e in enumerate(meta["training"]):
        e["fold"] = i % 2
    _write_json(root, meta)
    assert _cases(load_datalist(root, "validation", num_folds=2, fold=1)) == ["case_001", "case_003", "case_005"]
    assert load_datalist(root, "validation", num_folds=2, fold=1)[0]["fold"] == 1


def test_explicit_validation_list_taken_as_given(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=6, validation=2)
    assert _cases(load_datalist(root, "validation")) == ["case_004", "case_005"]
    assert _cases(load_datalist(root, "training", val_fraction=0.5)) == [f"case_{i:03d}" for i in range(4)]
    with pytest.raises(PipelineError, match="explicit 'validation' list"):
        load_datalist(root, "validation", num_folds=5)


# --- test split, plain folders -----------------------------------------------------------------------


def test_msd_string_test_list_attaches_existing_labels(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=3, n_test=2, test_labels=1)
    test = load_datalist(root, "test")
    assert _cases(test) == ["case_100", "case_101"]
    assert test[0]["label"] == str(root / "labelsTs" / "case_100.nii.gz")
    assert "label" not in test[1]
    meta = _meta(root)
    del meta["test"]
    _write_json(root, meta)
    with pytest.raises(PipelineError, match="no 'test' list"):
        load_datalist(root, "test")


def test_require_labels(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=3, n_test=3, test_labels=1)
    assert len(load_datalist(root, "training", require_labels=True)) == 2
    expected = r"^case case_101 \(imagesTs/case_101\.nii\.gz\): test case has no label \(and 1 more\)"
    with pytest.raises(PipelineError, match=expected):
        load_datalist(root, "test", require_labels=True)


def test_plain_folder_pairs(tmp_path: Path) -> None:
    root = _msd(tmp_path / "plain", n=4, n_test=1, test_labels=0, write_json=False)
    (root / "imagesTr" / "._case_000.nii.gz").write_bytes(b"macOS resource fork")  # ignored, as in MSD tars
    (root / "imagesTr" / "notes.txt").write_text("not an image")
    cases = load_datalist(root, "training", val_fraction=0.25) + load_datalist(root, "validation", val_fraction=0.25)
    assert sorted(_cases(cases)) == [f"case_{i:03d}" for i in range(4)]
    assert all(c["label"].endswith(f"labelsTr/{c['case']}.nii.gz") for c in cases)
    assert _cases(load_datalist(root, "test")) == ["case_100"]

    other = tmp_path / "flat"  # images/ + labels/ layout, PNG
    (other / "images").mkdir(parents=True)
    (other / "labels").mkdir()
    for i in range(2):
        Image.fromarray(np.full((6, 5), 50 * i, np.uint8)).save(other / "images" / f"p{i}.png")
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(other / "labels" / f"p{i}.png")
    assert sorted(_cases(load_datalist(other, "training") + load_datalist(other, "validation"))) == ["p0", "p1"]


def test_plain_folder_image_without_label(tmp_path: Path) -> None:
    root = _msd(tmp_path / "plain", n=3, n_test=0, write_json=False)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    before = _snapshot(root)
    with pytest.raises(PipelineError, match=r"imagesTr/case_001\.nii\.gz: image has no matching labelsTr/"):
        load_datalist(root)
    assert _snapshot(root) == before


def test_dataset_entries_public_api(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=3, validation=1, n_test=2, test_labels=1)
    listing = dataset_entries(root)
    assert listing.root == root and listing.meta == _meta(root) and listing.source == root / "dataset.json"
    assert {k: [e.case for e in v or []] for k, v in listing.splits.items()} == {
        "training": ["case_000", "case_001"],
        "validation": ["case_002"],
        "test": ["case_100", "case_101"],
    }
    entries = listing.all()
    assert [e.case for e in entries] == ["case_000", "case_001", "case_002", "case_100", "case_101"]
    first = entries[0]
    assert first.where == "training[0]" and first.rel(first.images[0]) == "imagesTr/case_000.nii.gz"
    assert first.describe(first.label) == "case case_000 (labelsTr/case_000.nii.gz)"
    assert all(e.check() is None for e in entries)
    assert first.as_dict() == load_datalist(root, "training")[0]
    (root / "labelsTr/case_001.nii.gz").unlink()  # the listing does not read files; check() does
    assert dataset_entries(root).all()[1].check() == "case case_001 (labelsTr/case_001.nii.gz): label file missing"
    plain = dataset_entries(_msd(tmp_path / "plain", n=2, n_test=0, write_json=False))
    assert plain.meta is None and plain.source == tmp_path / "plain" and plain.splits["test"] is None


def test_image_files_and_inference_image_list(tmp_path: Path) -> None:
    from pipeline.data.prepare import image_list

    folder = tmp_path / "in"
    _nii(folder / "b.nii.gz", _label())
    _nii(folder / "A.NII", _label())
    (folder / "._b.nii.gz").write_bytes(b"macOS resource fork")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub.nii.gz").mkdir()
    assert list(image_files(folder)) == ["A.NII", "b.nii.gz"]
    assert image_list(folder) == [{"image": str((folder / n).resolve())} for n in ("A.NII", "b.nii.gz")]
    with pytest.raises(PipelineError, match=r"holds no image files \(\.nii\.gz, \.nii, \.png"):
        image_list(tmp_path / "in" / "sub.nii.gz")


# --- error cases -------------------------------------------------------------------------------------


def _break_json(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "dataset.json").write_text(text)


def _edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        meta = _meta(root)
        fn(meta)
        _write_json(root, meta)

    return apply


def _overwrite(rel: str, data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)

    return apply


def _nii_at(rel: str, data: np.ndarray, affine: np.ndarray = AFFINE) -> Callable[[Path], None]:
    return lambda root: _nii(root / rel, data, affine)


def _unlink(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


SHIFTED = AFFINE.copy()
SHIFTED[:3, 3] = 1.0
ERROR_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "malformed_json": (
        _break_json('{\n  "name": "x",\n  "training": [,]\n}'),
        r"dataset\.json: invalid JSON at line 3 column 16",
    ),
    "not_an_object": (_break_json("[1, 2]"), r"dataset\.json: top level is a JSON list"),
    "no_training": (_edit(lambda m: m.pop("training")), r"dataset\.json: no 'training' list"),
    "empty_training": (_edit(lambda m: m.update(training=[])), r"dataset\.json: 'training' list is empty"),
    "entry_without_label": (
        _edit(lambda m: m["training"][1].pop("label")),
        r"dataset\.json: training\[1\] has no 'label'",
    ),
    "entry_without_image": (
        _edit(lambda m: m["training"][0].pop("image")),
        r"dataset\.json: training\[0\] has no 'image'",
    ),
    "null_label": (
        _edit(lambda m: m["training"][2].update(label=None)),
        r"dataset\.json: training\[2\] label is None; expected a non-empty path string",
    ),
    "entry_is_string": (_edit(lambda m: m["training"].append("x.nii.gz")), r"dataset\.json: training\[6\] is a str"),
    "missing_image": (
        _unlink("imagesTr/case_002.nii.gz"),
        r"^case case_002 \(imagesTr/case_002\.nii\.gz\): image file missing",
    ),
    "missing_label": (
        _unlink("labelsTr/case_003.nii.gz"),
        r"^case case_003 \(labelsTr/case_003\.nii\.gz\): label file missing",
    ),
    "corrupt_gzip": (
        _overwrite("imagesTr/case_001.nii.gz", b"this is not gzip data at all"),
        r"^case case_001 \(imagesTr/case_001\.nii\.gz\): image unreadable NIfTI \(BadGzipFile",
    ),
    "not_nifti_inside_gzip": (
        _overwrite("labelsTr/case_001.nii.gz", gzip.compress(b"x" * 400)),
        r"^case case_001 \(labelsTr/case_001\.nii\.gz\): label unreadable NIfTI \(no NIfTI-1/NIfTI-2 header\)",
    ),
    "truncated_gzip": (
        _overwrite("imagesTr/case_004.nii.gz", lambda raw: raw[: len(raw) * 2 // 3]),
        r"^case case_004 \(imagesTr/case_004\.nii\.gz\): image unreadable NIfTI \(EOFError",
    ),
    "shape_mismatch": (
        _nii_at("labelsTr/case_000.nii.gz", _label(shape=(8, 8, 5))),
        r"^case case_000 \(labelsTr/case_000\.nii\.gz\): label shape \(8, 8, 5\) differs from image shape \(8, 8, 4\)",
    ),
    "affine_mismatch": (
        _nii_at("labelsTr/case_005.nii.gz", _label(), np.diag([0.8, 0.8, 3.0, 1.0])),
        r"^case case_005 \(labelsTr/case_005\.nii\.gz\): label affine differs from image affine: spacing",
    ),
    "origin_mismatch": (
        _nii_at("labelsTr/case_005.nii.gz", _label(), SHIFTED),
        r"^case case_005 \(labelsTr/case_005\.nii\.gz\): .*origin \(1, 1, 1\) vs image \(0, 0, 0\)",
    ),
    "duplicate_case": (
        _edit(lambda m: m["training"].append(dict(m["training"][2]))),
        r"dataset\.json: case case_002 listed twice \(training\[2\], training\[6\]\)",
    ),
    "path_escape_dotdot": (
        _edit(lambda m: m["training"][0].update(image="./imagesTr/../../outside.nii.gz")),
        r"dataset\.json: training\[0\] image './imagesTr/\.\./\.\./outside\.nii\.gz' points outside",
    ),
    "path_escape_absolute": (
        _edit(lambda m: m["training"][0].update(label="/etc/passwd")),
        r"dataset\.json: training\[0\] label '/etc/passwd' points outside",
    ),
    "label_is_image": (
        _edit(lambda m: m["training"][0].update(label=m["training"][0]["image"])),
        r"^case case_000 \(imagesTr/case_000\.nii\.gz\): label is the image file itself",
    ),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_errors_name_the_file_and_touch_nothing(tmp_path: Path, name: str) -> None:
    root = _msd(tmp_path / "ds", n=6)
    (tmp_path / "outside.nii.gz").write_bytes((root / "imagesTr/case_000.nii.gz").read_bytes())
    breaker, pattern = ERROR_CASES[name]
    breaker(root)
    before = _snapshot(tmp_path)
    with pytest.raises(PipelineError, match=pattern) as info:
        # Both folds' lists together cover every case, so every per-case problem is hit.
        for split in ("training", "validation"):
            load_datalist(root, split, val_fraction=0.5)
    assert "\n" not in str(info.value)
    assert _snapshot(tmp_path) == before
    assert check_dataset(root)  # check_dataset reports rather than raises


def test_missing_folder_and_no_dataset(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="nope: data set folder not found"):
        load_datalist(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no dataset.json and no imagesTr/"):
        load_datalist(tmp_path / "empty")
    with pytest.raises(PipelineError, match=r"empty/dataset\.json: not found"):
        read_dataset_json(tmp_path / "empty")
    with pytest.raises(PipelineError, match="split 'train'"):
        load_datalist(tmp_path / "empty", "train")


def test_corrupt_png_and_rgb_label(tmp_path: Path) -> None:
    root = tmp_path / "png"
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(root / "imagesTr" / f"p{i}.png")
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(root / "labelsTr" / f"p{i}.png")
    assert len(load_datalist(root, "training")) == 1
    raw = (root / "labelsTr/p1.png").read_bytes()
    (root / "labelsTr/p1.png").write_bytes(raw[:-30])
    with pytest.raises(PipelineError, match=r"case p1 \(labelsTr/p1\.png\): label unreadable image"):
        load_datalist(root, "training", val_fraction=0.0)
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(root / "labelsTr" / "p1.png")
    with pytest.raises(PipelineError, match=r"case p1 \(labelsTr/p1\.png\): label image mode RGB"):
        load_datalist(root, "training", val_fraction=0.0)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "labelsTr" / "p1.png")
    with pytest.raises(PipelineError, match=r"label shape \(5, 5\) differs from image shape \(5, 6\)"):
        load_datalist(root, "training", val_fraction=0.0)


def test_multi_channel_image_list_and_4d_image(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=2, n_test=0)
    _nii(root / "imagesTr/t2_000.nii.gz", np.zeros(SHAPE, np.int16))
    _nii(root / "imagesTr/case_001.nii.gz", np.zeros(SHAPE + (4,), np.int16))  # BraTS-style 4D
    meta = _meta(root)
    meta["training"][0]["image"] = ["./imagesTr/case_000.nii.gz", "./imagesTr/t2_000.nii.gz"]
    _write_json(root, meta)
    cases = {c["case"]: c for c in load_datalist(root, "training", val_fraction=0.0)}
    assert cases["case_000"]["image"] == [str(root / "imagesTr/case_000.nii.gz"), str(root / "imagesTr/t2_000.nii.gz")]
    # a 4D image (channels in the 4th NIfTI dim, as MSD's multi-modal tasks) matches its 3D label at header level:
    # listed, with the extra dim recorded; a single-channel bundle refuses it at load time (CheckImaged)
    assert cases["case_001"]["image"] == str(root / "imagesTr/case_001.nii.gz")
    header = read_header(root / "imagesTr/case_001.nii.gz")
    assert header.spatial_shape == SHAPE and header.extra_shape == (4,)


def test_absolute_path_inside_folder_allowed_and_affine_tolerance(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=2, n_test=0)
    meta = _meta(root)
    meta["training"][0]["image"] = str(root / "imagesTr/case_000.nii.gz")
    _write_json(root, meta)
    _nii(root / "labelsTr/case_001.nii.gz", _label(), AFFINE + 1e-5)  # float noise in a relabelled file
    assert len(load_datalist(root, "training", val_fraction=0.0)) == 2
    assert affines_match(AFFINE, AFFINE * (1 + 5e-4)) and not affines_match(AFFINE, AFFINE * 1.01)
    assert case_id("a/b/la_003.nii.gz") == "la_003" and case_id("x.png") == "x" and case_id("v1.2.mha") == "v1.2"


def test_check_skipped_when_check_false(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=3, n_test=0)
    (root / "imagesTr/case_001.nii.gz").unlink()
    assert len(load_datalist(root, "training", val_fraction=0.0, check=False)) == 3


# --- label values ------------------------------------------------------------------------------------


def test_check_label_values_transform(tmp_path: Path) -> None:
    from monai.transforms import Compose, LoadImaged

    root = _msd(tmp_path / "ds", n=2, n_test=0)
    bad = root / "labelsTr/case_001.nii.gz"
    _nii(bad, _label(3))
    load = LoadImaged(keys=["image", "label"], image_only=True)
    check = CheckLabelValuesd(keys="label", allowed=(0, 1, 2))
    ok_item = load({"image": str(root / "imagesTr/case_000.nii.gz"), "label": str(root / "labelsTr/case_000.nii.gz")})
    assert check(ok_item)["label"] is ok_item["label"]  # no-op on valid data
    bad_item = load({"image": str(root / "imagesTr/case_001.nii.gz"), "label": str(bad)})
    expected = r"labelsTr/case_001\.nii\.gz: label has unexpected values \[3\] \(allowed 0, 1, 2\)$"
    with pytest.raises(PipelineError, match=expected):
        check(bad_item)
    # Allowed values from a dataset.json "labels" dict or a class count; errors survive MONAI's Compose wrapping.
    CheckLabelValuesd("label", allowed={"0": "background", "1": "a", "2": "b", "3": "c"})(bad_item)
    with pytest.raises(Exception) as info:
        Compose([CheckLabelValuesd("label", allowed=3)])(bad_item)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, PipelineError) for e in chain)
    # Float labels with interpolation leftovers are reported as such.
    item = {"label": ok_item["label"].float() * 0.5}
    with pytest.raises(PipelineError, match=r"unexpected values \[0\.5\]"):
        check(item)


def test_allowed_label_values_and_check_case_labels(tmp_path: Path) -> None:
    assert allowed_label_values(3) == (0.0, 1.0, 2.0)
    assert allowed_label_values({"background": 0, "liver": 1, "tumour": [1, 2]}) == (0.0, 1.0, 2.0)
    assert allowed_label_values([2, 0]) == (0.0, 2.0)
    with pytest.raises(PipelineError):
        allowed_label_values("012")
    path = tmp_path / "l.nii.gz"
    _nii(path, _label(3))
    assert check_case_labels(path, 4) == [0.0, 3.0]
    with pytest.raises(PipelineError, match=r"l\.nii\.gz: label has unexpected values \[3\]"):
        check_case_labels(path, {"0": "background", "1": "x"})


def test_check_dataset_reports_every_problem(tmp_path: Path) -> None:
    root = _msd(tmp_path / "ds", n=5, n_test=2, test_labels=2)
    assert check_dataset(root) == []
    _nii(root / "labelsTr/case_001.nii.gz", _label(3))
    _nii(root / "labelsTs/case_101.nii.gz", _label(7))
    _nii(root / "labelsTr/case_002.nii.gz", _label(shape=(8, 8, 3)))
    raw = (root / "imagesTr/case_004.nii.gz").read_bytes()
    (root / "imagesTr/case_004.nii.gz").write_bytes(raw[:-8] + bytes(4) + raw[-4:])  # bad CRC, right length
    before = _snapshot(root)
    problems = check_dataset(root)
    assert _snapshot(root) == before
    assert len(problems) == 4, problems
    assert "case case_001 (labelsTr/case_001.nii.gz): label has unexpected values [3] (allowed 0, 1, 2)" in problems
    assert "case case_101 (labelsTs/case_101.nii.gz): label has unexpected values [7] (allowed 0, 1, 2)" in problems
    assert any(p.startswith("case case_002 (labelsTr/case_002.nii.gz): label shape") for p in problems)
    assert any(p.startswith("case case_004 (imagesTr/case_004.nii.gz): image") and "CRC" in p for p in problems)
    assert check_dataset(tmp_path / "missing") == [f"{tmp_path / 'missing'}: data set folder not found"]


def test_shapes_data_set_loads_through_datalist(tmp_path: Path) -> None:
    from pipeline.data.shapes2d import make_shapes

    root = tmp_path / "shapes"
    make_shapes(root, n=10, seed=0, size=16, val_fraction=0.2, test_fraction=0.2)
    train, val, test = (load_datalist(root, s) for s in ("training", "validation", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert all("labelsTs" in c["label"] for c in test)
    assert check_dataset(root) == []
