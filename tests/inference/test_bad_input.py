"""Bad input to inference: each case stops with one line naming the file and the problem, before anything is
written, and leaves an existing output folder exactly as it was. In this process (the error the one-line hook
prints), plus the ``predict`` alias end to end as a user runs it (slow: child processes)."""
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.errors import _find_pipeline_error

from tests.inference.helpers import (
    ct_like_volume,
    ct_network,
    oblique_affine,
    run_inference,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    hu, _ = ct_like_volume((24, 20, 8))
    affine = oblique_affine()
    (root / "good").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), root / "good" / "scan.nii.gz")
    ckpt = write_checkpoint(root / "ckpt", ct_network())
    return root, hu, affine, ckpt


@pytest.fixture
def out(tmp_path):
    """An output folder holding an earlier prediction that must survive a refused run untouched."""
    pred = tmp_path / "out" / "predictions"
    pred.mkdir(parents=True)
    (pred / "earlier_seg.nii.gz").write_bytes(b"earlier result")
    return tmp_path / "out"


def _refused(out, **overrides) -> str:
    """Run inference expecting a PipelineError; return its line after checking the output folder is untouched."""
    with pytest.raises(Exception) as info:
        run_inference(output_dir=out, **overrides)
    error = _find_pipeline_error(info.value)
    assert error is not None, repr(info.value)
    assert [p.name for p in out.rglob("*")] == ["predictions", "earlier_seg.nii.gz"]
    assert (out / "predictions" / "earlier_seg.nii.gz").read_bytes() == b"earlier result"
    return str(error)


def test_input_that_does_not_exist(setup, out):
    root, _, _, ckpt = setup
    line = _refused(out, input=root / "nowhere" / "scan.nii.gz", ckpt_dir=ckpt)
    assert "nowhere/scan.nii.gz: input not found" in line


def test_folder_with_no_images_and_dicom_folder_with_no_readable_series(setup, out, tmp_path):
    root, _, _, ckpt = setup
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no scans here")
    line = _refused(out, input=empty, ckpt_dir=ckpt)
    assert str(empty) in line and "no readable DICOM series and no image files" in line
    junk = tmp_path / "dicom"
    junk.mkdir()
    for i in range(3):
        (junk / f"IM{i:04d}.dcm").write_bytes(b"DICM" + bytes(200))
    line = _refused(out, input=junk, ckpt_dir=ckpt)
    assert str(junk) in line and "no readable DICOM series" in line and "3 file(s)" in line


@pytest.mark.parametrize("shape, problem", [((24, 20, 8, 2), "a 3D image with 2 channels or time points"),
                                            ((24, 20), "a 2D image")])
def test_4d_or_2d_image_given_to_the_3d_bundle(setup, out, tmp_path, shape, problem):
    root, _, affine, ckpt = setup
    (tmp_path / "in").mkdir()
    shutil.copy(root / "good" / "scan.nii.gz", tmp_path / "in" / "a_good.nii.gz")  # good cases first: still refused
    bad = tmp_path / "in" / "b_bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), affine), bad)
    line = _refused(out, input=tmp_path / "in", ckpt_dir=ckpt)
    assert line.startswith(f"{bad}: {problem}") and "takes 3D images with 1 channel" in line


def test_predictions_beside_the_inputs_or_two_inputs_with_one_output_name(setup, tmp_path):
    """A label case_seg.nii.gz beside case.nii.gz would be overwritten by case's prediction: refused, the folder
    untouched; so are two scans whose predictions would share one name."""
    root, hu, affine, ckpt = setup
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(hu, affine), scans / "case.nii.gz")
    (scans / "case_seg.nii.gz").write_bytes(b"the user's label")
    with pytest.raises(Exception) as info:
        run_inference(input=scans / "case.nii.gz", ckpt_dir=ckpt, output_dir=tmp_path, pred_dir=scans)
    line = str(_find_pipeline_error(info.value))
    assert "predictions would be written beside the input case.nii.gz" in line and "--output_dir" in line
    assert (scans / "case_seg.nii.gz").read_bytes() == b"the user's label"
    assert sorted(p.name for p in scans.iterdir()) == ["case.nii.gz", "case_seg.nii.gz"]
    (scans / "case_seg.nii.gz").unlink()
    nib.save(nib.Nifti1Image(hu, affine), scans / "case.nii")
    with pytest.raises(Exception) as info:
        run_inference(input=scans, ckpt_dir=ckpt, output_dir=tmp_path / "out")
    line = str(_find_pipeline_error(info.value))
    assert "case.nii" in line and "would both be written to" in line and "case_seg.nii.gz" in line
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_the_other_network(setup, out, tmp_path):
    from pipeline.networks import UNet

    root, _, _, ckpt = setup
    # the 2D unet bundle's checkpoint given to the 3D attn_unet bundle
    torch.manual_seed(0)
    shapes = write_checkpoint(tmp_path / "unet2d", UNet(2, 1, 3, preset="standard", base_width=4), spatial_dims=2)
    line = _refused(out, input=root / "good", ckpt_dir=shapes)
    assert f"{shapes / 'model_config.json'}: a 2D UNet checkpoint" in line and "data fragment is 3D" in line
    # a U-Net's model.pt in a folder whose model_config.json describes an Attention U-Net
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt, mixed)
    torch.save(ct_network("unet").state_dict(), mixed / "model.pt")
    line = _refused(out, input=root / "good", ckpt_dir=mixed)
    assert f"{mixed / 'model.pt'}: holds the weights of another network than the AttentionUNet" in line


def test_corrupt_or_missing_checkpoint_file(setup, out, tmp_path):
    root, _, _, ckpt = setup
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    line = _refused(out, input=root / "good", ckpt_dir=broken)
    assert f"{broken / 'model.pt'}: unreadable checkpoint" in line
    line = _refused(out, input=root / "good", ckpt_dir=ckpt, model_file="model.ts")
    assert f"{ckpt / 'model.ts'}: checkpoint not found" in line


def test_ensemble_of_checkpoints_trained_on_differently_prepared_data(setup, out, tmp_path):
    root, _, _, ckpt = setup
    other = write_checkpoint(tmp_path / "other", ct_network(seed=1), target_spacing=[2, 2, 3])
    line = _refused(out, input=root / "good", ckpt_dir=[str(ckpt), str(other)])
    assert f"{other / 'plan.json'}: target_spacing = " in line and "must take the same data" in line


def test_series_uid_the_folder_does_not_hold(setup, out, tmp_path):
    from tests.inference.helpers import write_dicom_series

    root, hu, affine, ckpt = setup
    write_dicom_series(tmp_path / "dicom", hu[:, :, :3], affine, "1.2.826.0.1.3680043.8.498.7")
    line = _refused(out, input=tmp_path / "dicom", ckpt_dir=ckpt, series_uid="1.2.3")
    assert "no DICOM series with SeriesInstanceUID 1.2.3" in line and "1.2.826.0.1.3680043.8.498.7" in line
