"""nnU-Net v2 raw data sets: listing (channels, labels, numTraining, regions), file types (NRRD / MetaImage with the
NIfTI affine, multi-page TIFF refused), conversion from and to the MSD layout, and evaluation's pairing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.data.case_files import read_header
from pipeline.data.datalist import load_datalist
from pipeline.data.integrity import check_dataset
from pipeline.data.listing import dataset_entries
from pipeline.data.nnunet import group_channel_files, label_classes, label_regions, label_values
from pipeline.data.nnunet_convert import convert_dataset
from pipeline.errors import PipelineError

SHAPE = (8, 8, 8)
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -5.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])
LABELS = {"background": 0, "pancreas": 1, "tumour": 2}
REPO = Path(__file__).resolve().parents[2]


def _nii(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _image(seed: int, channels: int = 1) -> np.ndarray:
    data = np.random.default_rng(seed).integers(-100, 200, SHAPE + ((channels,) if channels > 1 else ()))
    return data.astype(np.int16)


def _label(value: int = 1) -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[2:5, 2:6, 3:6] = 1
    label[3:4, 3:4, 4:5] = value
    return label


def _raw(root: Path, n: int = 3, channels: int = 2, n_test: int = 1, labels: dict | None = None) -> Path:
    """An nnU-Net v2 raw data set: n training cases of ``channels`` files, n_test test cases (first one labelled)."""
    for folder, cases in (("Tr", range(n)), ("Ts", range(100, 100 + n_test))):
        for i in cases:
            for c in range(channels):
                _nii(root / f"images{folder}" / f"case_{i:03d}_{c:04d}.nii.gz", _image(10 * i + c))
            if folder == "Tr" or i == 100:
                _nii(root / f"labels{folder}" / f"case_{i:03d}.nii.gz", _label(1 + i % 2))
    meta = {"channel_names": {str(c): ("CT" if c == 0 else f"mr{c}") for c in range(channels)},
            "labels": labels or LABELS, "numTraining": n, "file_ending": ".nii.gz", "name": "Tiny"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _msd(root: Path, channels: int = 2) -> Path:
    """An MSD data set: 3 training cases (4D images of ``channels`` channels when > 1), a labelled test case."""
    training = []
    for i in range(3):
        _nii(root / "imagesTr" / f"case_{i:03d}.nii.gz", _image(i, channels))
        _nii(root / "labelsTr" / f"case_{i:03d}.nii.gz", _label(1 + i % 2))
        training.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"})
    _nii(root / "imagesTs" / "case_100.nii.gz", _image(100, channels))
    _nii(root / "labelsTs" / "case_100.nii.gz", _label())
    meta = {"name": "Tiny", "tensorImageSize": "4D" if channels > 1 else "3D",
            "modality": {str(c): ("FLAIR", "T1w", "T1gd")[c] for c in range(channels)},
            "labels": {"0": "background", "1": "pancreas", "2": "tumour"}, "numTraining": 3, "numTest": 1,
            "training": training, "test": ["./imagesTs/case_100.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


# ------------------------------------------------------------------------------------------------------- listing
def test_v2_folder_lists_cases_with_their_channels_and_checks_clean(tmp_path):
    root = _raw(tmp_path / "Dataset001_Tiny")
    listing = dataset_entries(root)
    train, test = listing.splits["training"], listing.splits["test"]
    assert [e.case for e in train] == ["case_000", "case_001", "case_002"] and [e.case for e in test] == ["case_100"]
    assert [p.name for p in train[1].images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert train[1].label.name == "case_001.nii.gz" and test[0].label.name == "case_100.nii.gz"
    cases = load_datalist(root, "training", val_fraction=0.34)
    assert all(isinstance(c["image"], list) and len(c["image"]) == 2 for c in cases)
    assert all(c["case"].startswith("case_0") for c in cases)
    assert check_dataset(root) == []
    from monai.transforms import LoadImaged

    loaded = LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True)(cases[0])
    assert tuple(loaded["image"].shape) == (2, *SHAPE) and tuple(loaded["label"].shape) == (1, *SHAPE)
    np.testing.assert_allclose(loaded["image"].affine, AFFINE, atol=1e-5)


def test_single_channel_case_is_one_file_and_the_test_split_has_imagests(tmp_path):
    root = _raw(tmp_path / "d", channels=1, n_test=2)
    test = load_datalist(root, "test")
    assert [Path(c["image"]).name for c in test] == ["case_100_0000.nii.gz", "case_101_0000.nii.gz"]
    assert "label" in test[0] and "label" not in test[1]  # labelsTs/ holds only the first


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "imagesTr/case_001_0001.nii.gz").unlink(),
     "imagesTr/case_001_0001.nii.gz: missing (case case_001 has channel(s) 0000 of 2)"),
    (lambda r: (r / "labelsTr/case_002.nii.gz").unlink(), "labelsTr/case_002.nii.gz: missing (the label of case"),
    (lambda r: _nii(r / "imagesTr/case_000_0002.nii.gz", _image(0)),
     "imagesTr/case_000_0002.nii.gz: channel 0002, but dataset.json channel_names lists 2 channel(s)"),
    (lambda r: _nii(r / "imagesTr/case_009.nii.gz", _image(0)),
     "imagesTr/case_009.nii.gz: image name lacks the channel"),
    (lambda r: _nii(r / "labelsTr/case_007.nii.gz", _label()), "labelsTr/case_007.nii.gz: label has no image"),
])
def test_missing_or_stray_files_are_one_line_errors_naming_the_file(tmp_path, damage, message):
    root = _raw(tmp_path / "d")
    damage(root)
    with pytest.raises(PipelineError) as info:
        load_datalist(root)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert check_dataset(root) == [str(info.value)]  # check-data reports the same line


@pytest.mark.parametrize("change, message", [
    ({"numTraining": 4}, "numTraining is 4, but imagesTr/ holds 3 case(s)"),
    ({"file_ending": ".xyz"}, "file_ending '.xyz' is not a file type this pipeline reads"),
    ({"overwrite_image_reader_writer": "Tiff3DIO"}, "overwrite_image_reader_writer 'Tiff3DIO' is not supported"),
    ({"channel_names": {"0": "CT", "2": "MR"}}, "channel_names keys ['0', '2'] are not 0..1"),
])
def test_dataset_json_problems(tmp_path, change, message):
    root = _raw(tmp_path / "d")
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        dataset_entries(root)


def test_region_labels_are_accepted_as_the_union_of_their_values(tmp_path):
    regions = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": 3}
    root = _raw(tmp_path / "d", labels=regions)
    assert check_dataset(root) == []  # labels 1 and 2 are within 0..3
    assert label_values(regions) == [0, 1, 2, 3]
    assert label_regions(regions) == {"whole tumour": (1, 2, 3), "tumour core": (2, 3)}
    assert dataset_entries(root).meta["labels"] == regions  # the definitions stay available
    _nii(root / "labelsTr" / "case_000.nii.gz", _label(7))
    assert "unexpected values" in check_dataset(root)[0] and "case_000" in check_dataset(root)[0]
    assert label_classes(regions) is None and label_classes(LABELS) == ["pancreas", "tumour"]
    assert label_classes({"0": "background", "1": "a", "2": "b"}) == ["a", "b"]


# ---------------------------------------------------------------------------------------------------- file types
def _sitk_volume() -> sitk.Image:
    array = np.random.default_rng(0).integers(-50, 50, (6, 7, 8)).astype(np.int16)  # (k, j, i)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((12.0, -30.0, 4.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    return image


def test_nrrd_and_mha_read_with_the_array_and_affine_of_the_nifti_equivalent(tmp_path):
    from monai.transforms import LoadImage

    from pipeline.inference import LoadScand

    image = _sitk_volume()
    for ending in (".nii.gz", ".nrrd", ".mha"):
        sitk.WriteImage(image, str(tmp_path / f"v{ending}"))
    reference = LoadImage(image_only=True)(str(tmp_path / "v.nii.gz"))  # nibabel
    for ending in (".nrrd", ".mha"):
        loaded = LoadScand("image", image_only=True)({"image": str(tmp_path / f"v{ending}")})["image"]
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(reference))
        np.testing.assert_allclose(np.asarray(loaded.affine), np.asarray(reference.affine), atol=1e-5)
        np.testing.assert_allclose(read_header(tmp_path / f"v{ending}").affine, reference.affine, atol=1e-5)
    # nnU-Net's one file per channel, as a list: stacked in front
    pair = {"image": [str(tmp_path / "v.nrrd"), str(tmp_path / "v.mha")]}
    both = LoadScand("image", image_only=True, ensure_channel_first=True)(pair)["image"]
    assert tuple(both.shape) == (2, 8, 7, 6)
    np.testing.assert_allclose(np.asarray(both.affine), np.asarray(reference.affine), atol=1e-5)


def test_nrrd_data_set_checks_clean(tmp_path):
    root = tmp_path / "d"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    image = _sitk_volume()
    for i in range(2):
        for c in range(2):
            sitk.WriteImage(image, str(root / "imagesTr" / f"c{i}_{c:04d}.nrrd"))
        label = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) > 30).astype(np.uint8))
        label.CopyInformation(image)
        sitk.WriteImage(label, str(root / "labelsTr" / f"c{i}.nrrd"))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"}, "labels": LABELS,
                                                   "numTraining": 2, "file_ending": ".nrrd"}))
    assert check_dataset(root) == []
    assert [len(c["image"]) for c in load_datalist(root, val_fraction=0.5)] == [2]


def test_multi_page_tiff_is_refused_in_one_line(tmp_path):
    from PIL import Image

    pages = [Image.fromarray(np.full((6, 5), v, np.uint8)) for v in (1, 2, 3)]
    pages[0].save(tmp_path / "v.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(PipelineError, match=r"v.tif: multi-page image \(3 pages, a 3D TIFF\?\) is not read here"):
        read_header(tmp_path / "v.tif")


def test_inference_folder_of_channel_files_groups_into_cases(tmp_path):
    files = [tmp_path / f"{c}_{k:04d}.nii.gz" for c in ("a", "b") for k in range(2)]
    groups = group_channel_files(files, 2)
    assert groups == {"a": files[:2], "b": files[2:]}
    assert group_channel_files(files, 1) is None  # _0001 cannot be a channel of a 1-channel network
    assert group_channel_files([tmp_path / "scan_7.nii.gz"], 1) is None
    with pytest.raises(PipelineError, match=r"b_0001.nii.gz: missing \(case b has channel\(s\) 0000 of 2\)"):
        group_channel_files(files[:3], 2)


# --------------------------------------------------------------------------------------------------- conversion
def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asanyarray(image.dataobj), image.affine


def test_msd_to_nnunet_to_msd_gives_identical_arrays_and_affines(tmp_path):
    src = _msd(tmp_path / "Task01_Tiny", channels=2)
    raw = convert_dataset(src, tmp_path / "raw", "nnunet", dataset_id=7)
    assert raw == tmp_path / "raw" / "Dataset007_Tiny"
    meta = json.loads((raw / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "T1w"} and meta["labels"] == LABELS
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (raw / "imagesTr").iterdir())[:2] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    data, affine = _arrays(src / "imagesTr" / "case_001.nii.gz")
    channel, channel_affine = _arrays(raw / "imagesTr" / "case_001_0001.nii.gz")
    np.testing.assert_array_equal(channel, data[..., 1])
    np.testing.assert_array_equal(channel_affine, affine)
    assert (raw / "labelsTs" / "case_100.nii.gz").is_file() and check_dataset(raw) == []
    back = convert_dataset(raw, tmp_path / "back", "msd")
    assert check_dataset(back) == []
    for rel in ("imagesTr/case_000.nii.gz", "imagesTr/case_002.nii.gz", "labelsTr/case_001.nii.gz",
                "imagesTs/case_100.nii.gz", "labelsTs/case_100.nii.gz"):
        (a, aff_a), (b, aff_b) = _arrays(src / rel), _arrays(back / rel)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(aff_a, aff_b)
    meta = json.loads((back / "dataset.json").read_text())
    assert meta["modality"] == {"0": "FLAIR", "1": "T1w"} and meta["tensorImageSize"] == "4D"
    assert meta["labels"] == {"0": "background", "1": "pancreas", "2": "tumour"}
    assert meta["test"] == ["./imagesTs/case_100.nii.gz"] and len(meta["training"]) == 3


def test_single_channel_conversion_copies_the_files(tmp_path):
    src = _msd(tmp_path / "src", channels=1)
    raw = convert_dataset(src, tmp_path / "raw", "nnunet")
    assert (raw / "imagesTr" / "case_000_0000.nii.gz").read_bytes() == (src / "imagesTr/case_000.nii.gz").read_bytes()
    back = convert_dataset(raw, tmp_path / "back", "msd")
    for rel in ("imagesTr/case_001.nii.gz", "labelsTr/case_001.nii.gz", "imagesTs/case_100.nii.gz"):
        assert (back / rel).read_bytes() == (src / rel).read_bytes()


def test_msd_image_listed_as_files_maps_channel_by_channel(tmp_path):
    src = _msd(tmp_path / "src", channels=1)
    meta = json.loads((src / "dataset.json").read_text())
    _nii(src / "imagesTr" / "case_000_t2.nii.gz", _image(7))
    meta["modality"] = {"0": "T1", "1": "T2"}
    meta["training"] = [{"image": ["./imagesTr/case_000.nii.gz", "./imagesTr/case_000_t2.nii.gz"],
                         "label": "./labelsTr/case_000.nii.gz"}]
    meta["test"] = []
    (src / "dataset.json").write_text(json.dumps(meta))
    raw = convert_dataset(src, tmp_path / "raw", "nnunet")
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    assert (raw / "imagesTr" / "case_000_0001.nii.gz").read_bytes() == (src / "imagesTr/case_000_t2.nii.gz").read_bytes()
    assert json.loads((raw / "dataset.json").read_text())["channel_names"] == {"0": "T1", "1": "T2"}


def test_conversion_refuses_to_overwrite_and_writes_nothing_for_a_bad_source(tmp_path):
    src = _msd(tmp_path / "src", channels=1)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match=r"taken: already exists and is not empty; refusing to overwrite it"):
        convert_dataset(src, tmp_path / "taken", "nnunet")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert (convert_dataset(src, tmp_path / "empty", "nnunet") / "dataset.json").is_file()  # an empty folder is fine
    with pytest.raises(PipelineError, match="not an nnU-Net v2 raw data set"):
        convert_dataset(src, tmp_path / "x", "msd")
    _nii(src / "labelsTr" / "case_002.nii.gz", np.zeros((8, 8, 7), np.uint8))  # shape differs from the image
    with pytest.raises(PipelineError, match=r"case case_002 \(labelsTr/case_002.nii.gz\): label shape"):
        convert_dataset(src, tmp_path / "new", "nnunet")
    assert not (tmp_path / "new").exists()


def test_interrupted_conversion_has_no_dataset_json(tmp_path, monkeypatch):
    import pipeline.data.nnunet_convert as convert

    src = _msd(tmp_path / "src", channels=1)
    calls = []

    def failing_copy(a: Path, b: Path) -> None:
        calls.append(b)
        if len(calls) == 3:
            raise OSError("disk full")
        b.write_bytes(a.read_bytes())

    monkeypatch.setattr(convert, "_copy", failing_copy)
    with pytest.raises(OSError):
        convert_dataset(src, tmp_path / "raw", "nnunet")
    assert (tmp_path / "raw" / "imagesTr").is_dir() and not (tmp_path / "raw" / "dataset.json").exists()


# --------------------------------------------------------------------------------------------------- evaluation
def test_evaluate_pairs_nnunet_named_predictions_and_reads_v2_class_names(tmp_path):
    from pipeline.apps.cli import _class_names
    from pipeline.evaluation.folders import evaluate_folders

    root = _raw(tmp_path / "d", channels=1, n_test=1)
    label = root / "labelsTs" / "case_100.nii.gz"
    _nii(tmp_path / "pred" / "case_100.nii.gz", _label(1 + 100 % 2))  # nnU-Net's naming
    classes = _class_names(str(root / "labelsTs"))
    assert classes == ["pancreas", "tumour"]
    summary = evaluate_folders(tmp_path / "pred", root / "labelsTs", tmp_path / "out", classes)
    assert summary["dice_pancreas"]["mean"] == pytest.approx(1.0) and summary["dice_pancreas"]["n"] == 1
    # pipeline naming of an nnU-Net input: <case>_0000_seg
    (tmp_path / "pred" / "case_100.nii.gz").rename(tmp_path / "pred" / "case_100_0000_seg.nii.gz")
    summary = evaluate_folders(tmp_path / "pred", root / "labelsTs", tmp_path / "out2", classes)
    assert summary["dice_pancreas"]["n"] == 1 and label.is_file()


@pytest.mark.slow
def test_convert_and_check_data_commands(tmp_path):
    src = _msd(tmp_path / "Task07_Tiny", channels=1)
    run = [sys.executable, "-m", "pipeline"]
    done = subprocess.run(run + ["convert", "--to", "nnunet", str(src), str(tmp_path), "--dataset-id", "7"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'Dataset007_Tiny'}" in done.stdout
    done = subprocess.run(run + ["check-data", str(tmp_path / "Dataset007_Tiny")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "no problems found" in done.stdout, done.stdout + done.stderr
    again = subprocess.run(run + ["convert", "--to", "msd", str(tmp_path / "Dataset007_Tiny"), str(src)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "refusing to overwrite" in again.stderr


def test_bundle_training_preprocessing_loads_an_nrrd_case_with_two_channels(tmp_path):
    """train.json's loader reads what check-data accepts: NRRD channel files and label (no itk package needed)."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    test_nrrd_data_set_checks_clean(tmp_path)
    parser = ConfigParser()
    parser.read_config(Path(__file__).resolve().parents[2] / "bundles/attn_unet/train.json")
    parser.update({"plan": {}, "in_channels": 2, "target_spacing": [1.0, 1.0, 2.0], "out_channels": 2})
    case = load_datalist(tmp_path / "d", val_fraction=0.5)[0]
    out = Compose(parser.get_parsed_content("preprocessing"))(case)
    assert tuple(out["image"].shape[:1]) == (2,) and tuple(out["label"].shape[:1]) == (1,)
    assert set(np.unique(np.asarray(out["label"]))) <= {0, 1}
