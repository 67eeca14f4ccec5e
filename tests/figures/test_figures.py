"""``python -m pipeline figures``: panels from prediction files (3D in radiological convention, 2D as pictures),
the Dice in the titles, the CT window, refusals that write nothing (a run from a checkpoint, which starts its bundle
as a process, is in ``tests/integration/test_figures_bundle.py``)."""
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pipeline.apps.cli import main
from pipeline.apps.figures.cases import figure_cases, load_case
from pipeline.apps.figures.panels import SOFT_TISSUE_WINDOW, case_dice, case_figure, display_range

# stored as the scanner often does, not RAS: x towards the patient's left, y posterior, z inferior (axcodes L, P, I)
LPI = np.diag([-2.0, -2.0, -3.0, 1.0])
SHAPE = (24, 20, 10)


def _nifti(path, array, affine=LPI):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture()
def ct_case(tmp_path):
    """A CT-like volume with a bright marker on the patient's right, anterior, and a label only in file slice 7."""
    image = np.full(SHAPE, -1000.0, np.float32)  # air around a body
    image[2:22, 2:18, :] = 40.0
    image[2:5, 2:5, :] = 300.0  # x index small = patient's right (x points left), y small = anterior
    label = np.zeros(SHAPE, np.uint8)
    label[8:12, 8:12, 7] = 1  # 16 voxels of class 1
    pred = np.zeros(SHAPE, np.uint8)
    pred[8:12, 10:14, 7] = 1  # 16 voxels, 8 of them shared: Dice 0.5
    pred[15:17, 15:17, 3] = 2  # class 2 predicted where the label has none: Dice 0
    attention = np.random.default_rng(0).random(SHAPE + (2,)).astype(np.float32)
    files = {
        "image": _nifti(tmp_path / "images" / "case_a.nii.gz", image),
        "label": _nifti(tmp_path / "labels" / "case_a.nii.gz", label),
        "pred": _nifti(tmp_path / "pred" / "case_a_seg.nii.gz", pred),
        "attention": _nifti(tmp_path / "pred" / "case_a_attention.nii.gz", attention),
    }
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ", "2": "lesion"}}))
    return tmp_path, files


def test_3d_case_is_shown_axial_in_radiological_convention(ct_case):
    root, files = ct_case
    (case,) = figure_cases([{"image": str(files["image"]), "label": str(files["label"])}], root / "pred", 3)
    assert case.attention == files["attention"]
    arrays = load_case(case, 3)
    assert arrays.image.shape == SHAPE and len(arrays.attention) == 2 and arrays.si_flipped
    fig, title = case_figure(arrays, "case_a", ["organ", "lesion"], level_names=[1, 2])
    # the default slice is the one with the most label foreground, named by the file's own slice number
    assert "axial slice 7 of 10 (most foreground)" in title
    ax = fig.axes[0]
    # the marker (patient's right, anterior) must appear on the viewer's left and at the top
    shown = ax.images[0].get_array()  # (y, x) of the cropped RAS slice
    ys, xs = np.nonzero(shown > 200)
    x_pix, y_pix = ax.transData.transform((xs.mean(), ys.mean()))
    (x0, y0), (x1, y1) = ax.get_window_extent().get_points()
    assert x_pix < (x0 + x1) / 2 and y_pix > (y0 + y1) / 2
    assert [a.get_title() for a in fig.axes if a.get_title()][-2:] == ["attention level 1", "attention level 2"]


def test_titles_carry_the_dice_per_class(ct_case):
    root, files = ct_case
    (case,) = figure_cases([{"image": str(files["image"]), "label": str(files["label"])}], root / "pred", 3)
    arrays = load_case(case, 3)
    dice = case_dice(arrays.pred, arrays.label, ["organ", "lesion"])
    # lesion: predicted where the label has none, which the evaluation does not score (NaN); the title says so
    assert dice["organ"] == pytest.approx(0.5) and np.isnan(dice["lesion"])
    _, title = case_figure(arrays, "case_a", ["organ", "lesion"])
    assert "case Dice organ 0.500, lesion n/a (FP)" in title
    # a class in neither map is not scored either: plain n/a
    missed = np.zeros_like(arrays.pred)
    assert case_dice(missed, arrays.label, ["organ", "lesion"])["organ"] == 0.0  # a missed class scores 0
    arrays.pred = arrays.label.copy()
    _, title = case_figure(arrays, "case_a", ["organ", "lesion"])
    assert title.endswith("case Dice organ 1.000, lesion n/a")


def test_ct_is_shown_in_the_soft_tissue_window():
    ct = np.array([[[-1000.0, 40.0]]])
    assert display_range(ct, 3) == (40 - 200, 40 + 200) and SOFT_TISSUE_WINDOW == (400.0, 40.0)
    assert display_range(ct, 3, window=(1500, -600)) == (-1350, 150)  # lung window on request
    assert display_range(np.array([[0.0, 1.0]]), 2) is None  # not CT: percentiles


def test_cli_writes_one_png_per_case(ct_case):
    root, files = ct_case
    out = root / "figs"
    rc = main(["figures", "--pred", str(root / "pred"), "-i", str(root / "images"), "--labels", str(root / "labels"),
               "--out", str(out), "--slice", "3"])
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ["case_a.png"]
    with Image.open(out / "case_a.png") as im:
        assert im.size[0] > 4 * im.size[1]  # image, label, prediction and two attention maps side by side


def test_2d_case_is_drawn_as_the_picture(tmp_path):
    image = np.zeros((16, 24), np.uint8)  # PNG rows x columns
    image[:4, :] = 255  # bright top rows
    label = np.zeros_like(image)
    label[:4, :6] = 1
    for folder, array in (("images", image), ("labels", label), ("pred", label)):
        (tmp_path / folder).mkdir()
        name = "s_0_seg.png" if folder == "pred" else "s_0.png"
        Image.fromarray(array).save(tmp_path / folder / name)
    (case,) = figure_cases([{"image": str(tmp_path / "images" / "s_0.png"),
                             "label": str(tmp_path / "labels" / "s_0.png")}], tmp_path / "pred", 2)
    fig, title = case_figure(load_case(case, 2), "s_0", ["a"])
    assert title == "s_0   case Dice a 1.000"
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    assert shown.shape == (16, 24) and not ax.xaxis_inverted()
    _, y_pix = ax.transData.transform((0, np.nonzero(shown.mean(1) > 200)[0].mean()))
    (_, y0), (_, y1) = ax.get_window_extent().get_points()
    assert y_pix > (y0 + y1) / 2  # the PNG's top rows stay on top


def test_bad_input_is_one_line_and_writes_nothing(ct_case, capsys):
    root, files = ct_case
    out = root / "figs"
    base = ["figures", "-i", str(root / "images"), "--labels", str(root / "labels"), "--out", str(out)]
    cases = [
        (["--pred", str(root / "nowhere")], "prediction folder not found"),
        (["--pred", str(root / "pred"), "--slice", "10"], "outside 0..9"),
        (["--pred", str(root / "pred"), "--cases", "case_z"], "case(s) case_z not found"),
        (["--pred", str(root / "labels")], "no prediction case_a_seg"),
        (["--ckpt", str(root / "no_models")], "model_config.json not found"),
    ]
    for extra, fragment in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
        assert not out.exists()
    # a prediction on another grid than its image
    _nifti(files["pred"], np.zeros(SHAPE, np.uint8), np.diag([2.0, 2.0, 3.0, 1.0]))
    assert main(base + ["--pred", str(root / "pred")]) == 2
    assert "affine differs from the image's" in capsys.readouterr().err and not out.exists()
