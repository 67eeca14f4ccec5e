"""Inference on new scans through the bundles' inference.json (in this process, tiny volumes): the label map comes
back on the scan's own grid for flipped, oblique, anisotropic NIfTI files and a DICOM series; probabilities and
attention maps in the same space; ensembles average; TTA is flip-equivariant; a TorchScript file predicts as the
eager network; no data set is needed."""
import locale
import logging
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipeline.inference import EnsembleNetwork, MirroringInferer, flip_sets
from tests.inference.helpers import (
    ThresholdNet,
    ct_like_volume,
    ct_network,
    dice,
    oblique_affine,
    parser_for,
    run_inference,
    write_checkpoint,
    write_dicom_series,
)

SERIES_14, SERIES_6 = "1.2.826.0.1.3680043.8.498.14", "1.2.826.0.1.3680043.8.498.6"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """CT-like volumes written at odd geometries: NIfTI files in one folder, two DICOM series in another."""
    root = tmp_path_factory.mktemp("scans")
    hu, organ = ct_like_volume()
    affines = {
        "flipped_anisotropic": oblique_affine(spacing=(2.5, 3.0, 7.0), flip=(True, False, True)),
        "oblique": oblique_affine(spacing=(2.0, 3.5, 6.0), flip=(False, True, False), degrees=(12, -8, 25)),
    }
    (root / "nifti").mkdir()
    for name, affine in affines.items():
        nib.save(nib.Nifti1Image(hu, affine), root / "nifti" / f"{name}.nii.gz")
    write_dicom_series(root / "dicom", hu, affines["oblique"], SERIES_14)
    write_dicom_series(root / "dicom", hu[:, :, :6], affines["oblique"], SERIES_6)
    ckpt = write_checkpoint(root / "threshold", ThresholdNet())
    return root, hu, organ, affines, ckpt


def _sitk_geometry(path):
    img = sitk.ReadImage(str(path)) if path.is_file() else None
    if img is None:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), SERIES_14))
        img = reader.Execute()
    return img.GetSize(), np.array(img.GetSpacing()), np.array(img.GetDirection()), np.array(img.GetOrigin())


def _same_geometry(a, b):
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_nifti_label_maps_come_back_on_the_scans_grid_without_a_data_set(scans, tmp_path):
    root, hu, organ, affines, ckpt = scans
    run_inference(input=root / "nifti", ckpt_dir=ckpt, output_dir=tmp_path / "out",
                  dataset_dir=tmp_path / "no_data_set")
    assert not (tmp_path / "no_data_set").exists()
    for name, affine in affines.items():
        scan, pred = root / "nifti" / f"{name}.nii.gz", tmp_path / "out" / "predictions" / f"{name}_seg.nii.gz"
        out = nib.load(pred)
        assert out.shape == hu.shape and out.get_data_dtype() == np.uint8
        np.testing.assert_allclose(out.affine, affine, atol=1e-5)
        _same_geometry(_sitk_geometry(pred), _sitk_geometry(scan))
        # the stand-in network marks the bright organ: a flip, shift or axis swap would move the mask off it
        assert dice(np.asarray(out.dataobj) == 1, organ) > 0.9


def test_dicom_series_largest_by_default_or_chosen_by_uid(scans, tmp_path, caplog):
    root, hu, organ, affines, ckpt = scans
    before = locale.setlocale(locale.LC_ALL, None)
    with caplog.at_level(logging.INFO):
        run_inference(input=root / "dicom", ckpt_dir=ckpt, output_dir=tmp_path / "a")
    assert locale.setlocale(locale.LC_ALL, None) == before  # GDCM's C locale would make child output ASCII-only
    assert f"DICOM series {SERIES_14} (14 slices)" in caplog.text and SERIES_6 in caplog.text
    pred = tmp_path / "a" / "predictions" / "dicom_seg.nii.gz"
    _same_geometry(_sitk_geometry(pred), _sitk_geometry(root / "dicom"))  # the series' geometry as SimpleITK reads it
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / "dicom"), SERIES_14))
    series = sitk.GetArrayFromImage(reader.Execute())  # GDCM orders the slices along the normal: k may be reversed
    assert series.max() == 200 and dice(sitk.GetArrayFromImage(sitk.ReadImage(str(pred))) == 1, series > 100) > 0.9

    run_inference(input=root / "dicom", ckpt_dir=ckpt, output_dir=tmp_path / "b", series_uid=SERIES_6)
    assert nib.load(tmp_path / "b" / "predictions" / "dicom_seg.nii.gz").shape == hu[:, :, :6].shape


@pytest.fixture(scope="module")
def two_checkpoints(scans, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return [write_checkpoint(root / f"fold_{i}", ct_network(seed=i)) for i in range(2)]


def _outputs(folder, name="oblique"):
    pred = folder / "predictions"
    return {kind: np.asarray(nib.load(pred / f"{name}_{kind}.nii.gz").dataobj)
            for kind in ("seg", "prob", "attention") if (pred / f"{name}_{kind}.nii.gz").is_file()}


@pytest.fixture(scope="module")
def single_input(scans, tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    shutil.copy(scans[0] / "nifti" / "oblique.nii.gz", folder / "oblique.nii.gz")
    return folder / "oblique.nii.gz"


def test_probabilities_and_attention_maps_in_the_scans_space(single_input, two_checkpoints, tmp_path):
    # min_lesion_ml 0: no post-processing, so that the label map is exactly the argmax of the probabilities
    run_inference(input=single_input, ckpt_dir=two_checkpoints[0], output_dir=tmp_path, save_probabilities=True,
                  save_attention=True, amp="float32", min_lesion_ml=0)
    out, shape = _outputs(tmp_path), nib.load(single_input).shape
    assert out["prob"].shape == (*shape, 3) and out["attention"].shape == (*shape, 2)  # classes; gated levels 1, 2
    np.testing.assert_allclose(out["prob"].sum(-1), 1.0, atol=1e-4)
    assert np.array_equal(out["prob"].argmax(-1), out["seg"])  # the label map is the argmax of the written map
    assert out["attention"].min() >= 0 and out["attention"].max() <= 1 and out["attention"].std() > 0
    for kind in ("prob", "attention"):
        np.testing.assert_allclose(nib.load(tmp_path / "predictions" / f"oblique_{kind}.nii.gz").affine,
                                   nib.load(single_input).affine, atol=1e-5)


def test_ensemble_averages_the_checkpoints_probabilities(single_input, two_checkpoints, tmp_path):
    single = []
    for i, ckpt in enumerate(two_checkpoints):
        run_inference(input=single_input, ckpt_dir=ckpt, output_dir=tmp_path / str(i), save_probabilities=True,
                      amp="float32")
        single.append(_outputs(tmp_path / str(i))["prob"])
    assert np.abs(single[0] - single[1]).max() > 0.05  # two different networks
    run_inference(input=single_input, ckpt_dir=[str(c) for c in two_checkpoints], output_dir=tmp_path / "both",
                  save_probabilities=True, amp="float32")
    np.testing.assert_allclose(_outputs(tmp_path / "both")["prob"], (single[0] + single[1]) / 2, atol=1e-4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_file_predicts_as_the_eager_network(single_input, two_checkpoints, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(two_checkpoints[0], ckpt)
    eager = ct_network(seed=0)
    torch.jit.trace(eager, torch.zeros(1, 1, 32, 32, 16)).save(str(ckpt / "model.ts"))
    for model_file in ("model.pt", "model.ts"):
        run_inference(input=single_input, ckpt_dir=ckpt, model_file=model_file, output_dir=tmp_path / model_file,
                      save_probabilities=True, amp="float32")
    a, b = _outputs(tmp_path / "model.pt"), _outputs(tmp_path / "model.ts")
    np.testing.assert_allclose(a["prob"], b["prob"], atol=1e-4)
    assert np.array_equal(a["seg"], b["seg"])


def test_flip_tta_averages_every_mirroring_and_is_flip_equivariant():
    assert flip_sets(3) == [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    net = ct_network(seed=3)
    tta = EnsembleNetwork([net], 3, flip_sets(3))
    plain = EnsembleNetwork([net], 3)
    x = torch.rand(1, 1, 16, 16, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, y_flipped = tta(x), tta(torch.flip(x, (2, 4)))
        p, p_flipped = plain(x), plain(torch.flip(x, (2, 4)))
        by_hand = sum(torch.flip(torch.softmax(net(torch.flip(x, f) if f else x), 1), f) if f
                      else torch.softmax(net(x), 1) for f in flip_sets(3)) / 8
    torch.testing.assert_close(y_flipped, torch.flip(y, (2, 4)), atol=1e-5, rtol=0)
    assert (p_flipped - torch.flip(p, (2, 4))).abs().max() > 1e-3  # without TTA the network is not equivariant
    torch.testing.assert_close(y, by_hand[:, 1:], atol=1e-5, rtol=0)  # foreground channels of the mean softmax


def test_mirroring_inferer_averages_the_softmax_of_every_mirroring_around_a_sliding_window():
    """The evaluators' flip TTA: all classes (background included), whole-volume mirrorings around MONAI's
    sliding window; with no flips it is the softmax of the plain inferer."""
    from monai.inferers import SlidingWindowInferer

    net = ct_network(seed=3).eval()
    window = SlidingWindowInferer(roi_size=(16, 16, 8), sw_batch_size=2, overlap=0.25)
    x = torch.rand(1, 1, 24, 20, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = MirroringInferer(window, flip_sets(3))(x, net)
        by_hand = sum(torch.flip(torch.softmax(window(torch.flip(x, f), net), 1), f) if f
                      else torch.softmax(window(x, net), 1) for f in flip_sets(3)) / 8
        plain = MirroringInferer(window, [()])(x, net)
        y_flipped = MirroringInferer(window, flip_sets(3))(torch.flip(x, (3,)), net)
    assert y.shape == (1, 3, 24, 20, 12)
    torch.testing.assert_close(y, by_hand, atol=1e-5, rtol=0)
    torch.testing.assert_close(y.sum(1), torch.ones(1, 24, 20, 12), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, torch.softmax(window(x, net), 1), atol=1e-6, rtol=0)
    assert (y - plain).abs().max() > 1e-3
    # the mirrorings of a mirrored volume are the same set of volumes: flip-equivariant, windows and all
    torch.testing.assert_close(y_flipped, torch.flip(y, (3,)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bundle_name, overrides, flips", [
    ("unet", {}, 4),  # tta auto: the shapes recipe flips both axes
    ("unet", {"tta": "false"}, None),
    ("unet", {"augmentation#0#prob": 0.0}, 2),  # auto: only the axis training still flips
    ("attn_unet", {"patch_size": [32, 32, 16]}, None),  # auto: the CT recipe never flips
    ("attn_unet", {"patch_size": [32, 32, 16], "tta": True}, 8),
    ("attn_unet", {"patch_size": [32, 32, 16], "tta": True, "tta_axes": [0, 1]}, 4),
])
def test_evaluate_json_validates_through_flip_tta_when_asked(bundle_name, overrides, flips):
    from monai.bundle import ConfigParser

    from tests.bundles_util import REPO

    parser = ConfigParser()
    parser.read_config([str(REPO / f"bundles/{bundle_name}/train.json"), str(REPO / f"bundles/{bundle_name}/evaluate.json")])
    parser.update(overrides)
    inferer = parser.get_parsed_content("validate#inferer").inferer
    # one pass is a MirroringInferer too, with the identity alone: evaluation always gets probabilities
    assert isinstance(inferer, MirroringInferer) and inferer.flips == ([()] if flips is None else inferer.flips)
    assert len(inferer.flips) == (flips or 1)


def test_tta_auto_mirrors_the_axes_training_flipped_and_switches_still_work():
    from monai.transforms import Compose, OneOf, RandAxisFlipd, RandFlipd, RandRotate90d

    from pipeline.inference import trained_mirror_axes, tta_flips
    from pipeline.errors import PipelineError

    k = ["image"]
    assert trained_mirror_axes([RandFlipd(k, prob=0.5, spatial_axis=1), RandRotate90d(k, prob=0.5)], 2) == [1]
    assert trained_mirror_axes([RandFlipd(k, prob=0.0, spatial_axis=1)], 2) == []  # never applied
    assert trained_mirror_axes([Compose([OneOf([RandFlipd(k, prob=0.5, spatial_axis=[0, 2])])])], 3) == [0, 2]
    assert trained_mirror_axes([RandFlipd(k, prob=0.5)], 3) == [0, 1, 2]  # spatial_axis None: all
    assert trained_mirror_axes([RandAxisFlipd(k, prob=0.5)], 2) == [0, 1]
    assert tta_flips("auto", 2, None, [1]) == [(), (3,)]
    assert tta_flips("auto", 3, None, []) == [()] and tta_flips("auto", 3, None, None) == [()]  # unknown: one pass
    assert len(tta_flips("true", 3, None, [])) == 8 and tta_flips(False, 3, None, [0, 1, 2]) == [()]
    with pytest.raises(PipelineError, match="--tta 'maybe' is not a switch"):
        tta_flips("maybe", 2)


def test_inference_mirrors_along_the_axes_every_checkpoint_was_trained_to_flip(tmp_path):
    import json

    from pipeline.networks import UNet

    torch.manual_seed(0)
    folders = []
    for name, axes in (("both", [0, 1]), ("one", [1]), ("old", None)):
        folder = write_checkpoint(tmp_path / name, UNet(2, 1, 3, preset="standard", base_width=4), spatial_dims=2)
        if axes is not None:
            config = json.loads((folder / "model_config.json").read_text())
            (folder / "model_config.json").write_text(json.dumps({**config, "mirror_axes": axes}))
        folders.append(str(folder))
    flips = {key: parser_for("unet", ckpt_dir=dirs, device="cpu").get_parsed_content("network").flips
             for key, dirs in (("both", folders[0]), ("ensemble", folders[:2]), ("old", folders[2]),
                               ("old in ensemble", folders))}
    assert flips == {"both": [(), (2,), (3,), (2, 3)], "ensemble": [(), (3,)], "old": [()], "old in ensemble": [()]}


def test_2d_bundle_writes_pngs_on_the_inputs_grid(tmp_path):
    from PIL import Image

    from pipeline.networks import UNet

    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(48, 40), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).save(tmp_path / "in" / f"s{i}.png")
    torch.manual_seed(0)
    ckpt = write_checkpoint(tmp_path / "ckpt", UNet(2, 1, 3, preset="standard", base_width=4).eval(), spatial_dims=2)
    run_inference("unet", input=tmp_path / "in", ckpt_dir=ckpt, output_dir=tmp_path / "out", tta=True)
    for i, size in enumerate([(48, 40), (64, 64)]):
        with Image.open(tmp_path / "out" / "predictions" / f"s{i}_seg.png") as im:
            assert im.size == size and set(np.unique(np.asarray(im))) <= {0, 1, 2}


def test_switches_given_as_false_on_the_command_line_are_off(tmp_path):
    """`--tta false` reaches the config as the string "false" (fire keeps unknown words as strings): it must not
    switch TTA on, nor the other switches."""
    from pipeline.networks import UNet

    torch.manual_seed(0)
    ckpt = write_checkpoint(tmp_path / "ckpt", UNet(2, 1, 3, preset="standard", base_width=4).eval(), spatial_dims=2)
    off = {k: "false" for k in ("tta", "save_attention", "save_probabilities", "progress")}
    parser = parser_for("unet", ckpt_dir=ckpt, device="cpu", **off)
    network = parser.get_parsed_content("network")
    assert network.flips == [()] and network.attention is False
    assert parser.get_parsed_content("infer#save_probabilities") == []
    assert parser.get_parsed_content("infer#save_attention") == []
    with pytest.raises(Exception) as err:  # MONAI wraps it; the command line prints the cause as one line
        parser_for("unet", ckpt_dir=ckpt, device="cpu", tta="maybe").get_parsed_content("network")
    assert "--tta 'maybe' is not a switch" in str(err.value.__cause__)


def test_predict_adds_the_data_fragment_of_the_checkpoints_data(tmp_path):
    import argparse

    from pipeline.apps.predict import bundle_command
    from pipeline.networks import UNet

    two_d = write_checkpoint(tmp_path / "2d", UNet(2, 1, 3, preset="standard", base_width=4), spatial_dims=2)
    three_d = write_checkpoint(tmp_path / "3d", ct_network())
    ct, shapes = "configs/data/pancreas_ct.json", "configs/data/shapes2d.json"
    for ckpt, configs in ((two_d, [shapes]), (three_d / "model.pt", [ct]), (None, [])):
        args = argparse.Namespace(input=str(tmp_path), output=str(tmp_path / "out"), bundle=None,
                                  ckpt=[str(ckpt)] if ckpt else None, tta=False, save_probabilities=False,
                                  save_attention=False, series_uid=None, device=None)
        cmd = bundle_command(args)
        assert cmd[cmd.index("--config_file") + 1] == repr(["bundles/attn_unet/inference.json", *configs])


def test_a_scan_thinner_than_the_mirror_border_is_segmented(scans, tmp_path):
    """Two slices, fewer than a border of 2 per side (asked for: the CT default is none): torch's reflect padding
    refuses that; numpy's symmetric padding repeats the mirror."""
    root, _, _, _, ckpt = scans
    hu, organ = (a[:, :, 6:8] for a in ct_like_volume((40, 34, 14)))  # two slices through the organ
    affine = oblique_affine(spacing=(2.0, 2.0, 3.0))
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "in" / "slab.nii.gz")
    run_inference(input=tmp_path / "in", ckpt_dir=ckpt, output_dir=tmp_path / "out", mirror_border=[2, 2, 2])
    pred = nib.load(tmp_path / "out" / "predictions" / "slab_seg.nii.gz")
    assert pred.shape == hu.shape and np.allclose(pred.affine, affine, atol=1e-5)
    assert dice(np.asarray(pred.dataobj) == 1, organ) > 0.8
