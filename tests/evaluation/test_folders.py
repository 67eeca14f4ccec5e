"""Scoring a folder of predictions against a folder of labels: pairing, geometry checks, tables."""
import csv
import json

import nibabel as nib
import numpy as np
import pytest

from pipeline.apps.cli import main
from pipeline.errors import PipelineError
from pipeline.evaluation.folders import evaluate_folders

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _write(path, array, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))


@pytest.fixture()
def folders(tmp_path):
    label = np.zeros((20, 20, 8), np.uint8)
    label[5:15, 5:15, 2:6] = 1
    label[8:10, 8:10, 3:5] = 2
    pred = label.copy()
    pred[5:15, 5:10, 2:6][pred[5:15, 5:10, 2:6] == 1] = 0  # half of the organ missed (tumour kept)
    _write(tmp_path / "labels" / "case_a.nii.gz", label)
    _write(tmp_path / "pred" / "case_a_seg.nii.gz", pred)  # the _seg suffix is matched to case_a
    empty = np.zeros_like(label)
    _write(tmp_path / "labels" / "case_b.nii.gz", label)
    _write(tmp_path / "pred" / "case_b.nii.gz", empty)  # nothing predicted
    return tmp_path


def test_folders_are_scored_per_case_and_class(folders):
    summary = evaluate_folders(folders / "pred", folders / "labels", folders / "out", ["organ", "tumour"])
    rows = {r["case"]: r for r in csv.DictReader((folders / "out" / "metrics_per_case.csv").open())}
    organ_label = 10 * 10 * 4 - 2 * 2 * 2  # voxels of class 1 (the tumour is inside the organ)
    kept = 10 * 5 * 4  # the half without the tumour (columns 10-14)
    assert float(rows["case_a"]["recall_organ"]) == pytest.approx(kept / organ_label)
    assert float(rows["case_a"]["precision_organ"]) == 1.0 and float(rows["case_a"]["dice_tumour"]) == 1.0
    assert float(rows["case_b"]["dice_organ"]) == 0.0 and rows["case_b"]["hd95_organ"] == "nan"
    assert summary["dice_organ"]["n"] == 2 and summary["hd95_organ"]["n"] == 1  # the missed case has no distance
    data = json.loads((folders / "out" / "metrics_summary.json").read_text())
    assert set(data) >= {"nsd_organ", "assd_tumour", "precision_tumour", "recall_organ"}


def test_a_prediction_in_another_grid_or_a_missing_case_is_refused_before_writing(folders):
    _write(folders / "pred" / "case_b.nii.gz", np.zeros((20, 20, 8)), affine=np.diag([1.0, 0.8, 2.5, 1.0]))
    with pytest.raises(PipelineError, match="case_b.nii.gz: affine differs"):
        evaluate_folders(folders / "pred", folders / "labels", folders / "out", ["organ", "tumour"])
    (folders / "pred" / "case_b.nii.gz").unlink()
    with pytest.raises(PipelineError, match="no prediction for case"):
        evaluate_folders(folders / "pred", folders / "labels", folders / "out", ["organ", "tumour"])
    assert not (folders / "out").exists()


def test_evaluate_command_reads_class_names_from_dataset_json(folders, capsys):
    (folders / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ", "2": "tumour"}}))
    assert main(["evaluate", "--pred", str(folders / "pred"), "--labels", str(folders / "labels"),
                 "--out", str(folders / "out")]) == 0
    assert "dice_organ" in capsys.readouterr().out and (folders / "out" / "metrics_summary.md").is_file()
    assert main(["evaluate", "--pred", str(folders / "nowhere"), "--labels", str(folders / "labels"),
                 "--out", str(folders / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "prediction folder not found" in err[-1]
    assert not (folders / "out2").exists()


def test_lesion_tables_read_images_beside_the_labels_and_probability_maps(folders, capsys):
    """The CLI finds the tumour class by name, the images in imagesX beside labelsX and the case score in the
    ``<case>_prob`` maps that inference writes (which are not taken for predictions)."""
    for name in ("labels", "pred"):
        (folders / name).rename(folders / f"{name}Ts")
    label = nib.load(str(folders / "labelsTs" / "case_a.nii.gz")).get_fdata()
    image = np.where(label == 2, 40.0, np.where(label == 1, 100.0, -100.0))
    for case, tumour_prob in (("case_a", 0.95), ("case_b", 0.2)):
        (folders / "imagesTs").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(image.astype(np.int16), AFFINE), str(folders / "imagesTs" / f"{case}_0000.nii.gz"))
        prob = np.zeros(label.shape + (3,), np.float32)
        prob[..., 2] = tumour_prob
        nib.save(nib.Nifti1Image(prob, AFFINE), str(folders / "predTs" / f"{case}_prob.nii.gz"))
    assert main(["evaluate", "--pred", str(folders / "predTs"), "--labels", str(folders / "labelsTs"),
                 "--out", str(folders / "out"), "--classes", "organ", "tumour"]) == 0
    assert "false-positive components per case" in capsys.readouterr().out
    lesions = list(csv.DictReader((folders / "out" / "lesions.csv").open()))
    assert [(r["case"], r["detected"]) for r in lesions] == [("case_a", "True"), ("case_b", "False")]
    assert float(lesions[0]["contrast_hu"]) == pytest.approx(60.0)
    cases = {r["case"]: float(r["max_prob"]) for r in csv.DictReader((folders / "out" / "lesion_cases.csv").open())}
    assert cases == pytest.approx({"case_a": 0.95, "case_b": 0.2})
    assert main(["evaluate", "--pred", str(folders / "predTs"), "--labels", str(folders / "labelsTs"),
                 "--out", str(folders / "out2"), "--classes", "organ", "tumour", "--lesion-class", "none"]) == 0
    assert not (folders / "out2" / "lesions.csv").exists()
