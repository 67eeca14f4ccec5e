"""Inference on nnU-Net-style inputs (``<case>_0000.nii.gz``): ``pred_naming`` nnunet writes ``<case>.nii.gz`` (and
``<case>_prob``), the default keeps ``<input>_seg``; a folder of channel files becomes one case per ``<case>``."""
import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.apps.predict import bundle_command
from pipeline.errors import PipelineError
from pipeline.inference import check_outputs, inference_inputs, nnunet_name, pred_postfix
from tests.inference.helpers import ThresholdNet, ct_like_volume, dice, oblique_affine, run_inference, write_checkpoint


@pytest.fixture(scope="module")
def images_ts(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    hu, organ = ct_like_volume()
    (root / "imagesTs").mkdir()
    nib.save(nib.Nifti1Image(hu, oblique_affine()), root / "imagesTs" / "pan_001_0000.nii.gz")
    return root, organ, write_checkpoint(root / "threshold", ThresholdNet())


def test_nnunet_naming_strips_the_channel_suffix(images_ts, tmp_path):
    root, organ, ckpt = images_ts
    run_inference(input=root / "imagesTs", ckpt_dir=ckpt, output_dir=tmp_path, pred_naming="nnunet",
                  save_probabilities=True, dataset_dir=tmp_path / "none")
    written = sorted(p.name for p in (tmp_path / "predictions").iterdir() if not p.name.startswith("."))
    assert written == ["pan_001.nii.gz", "pan_001_prob.nii.gz"]
    pred = nib.load(tmp_path / "predictions" / "pan_001.nii.gz")
    np.testing.assert_allclose(pred.affine, oblique_affine(), atol=1e-5)
    assert dice(np.asarray(pred.dataobj) == 1, organ) > 0.9


def test_default_naming_is_unchanged(images_ts, tmp_path):
    root, _, ckpt = images_ts
    run_inference(input=root / "imagesTs", ckpt_dir=ckpt, output_dir=tmp_path, dataset_dir=tmp_path / "none")
    assert (tmp_path / "predictions" / "pan_001_0000_seg.nii.gz").is_file()


def test_naming_helpers_and_their_errors(tmp_path):
    assert nnunet_name("/x/la_003_0000.nii.gz") == "/x/la_003.nii.gz"
    assert nnunet_name("/x/la_003_0001.nii.gz") == "/x/la_003_0001.nii.gz" and nnunet_name("a.png") == "a.png"
    assert pred_postfix("pipeline") == "seg" and pred_postfix("nnunet") == ""
    with pytest.raises(PipelineError, match="pred_naming 'nnU-Net': expected one of pipeline, nnunet"):
        pred_postfix("nnU-Net")
    cases = [{"image": str(tmp_path / "in" / "a_0000.nii.gz")}, {"image": str(tmp_path / "in" / "a.nii.gz")}]
    check_outputs(cases, tmp_path / "out", ".nii.gz")  # a_0000_seg and a_seg
    with pytest.raises(PipelineError, match=r"would both be written to .*/out/a.nii.gz"):
        check_outputs(cases, tmp_path / "out", ".nii.gz", "nnunet")


def test_folder_of_channel_files_gives_one_case_per_case(tmp_path):
    hu, _ = ct_like_volume((12, 10, 6))
    for case in ("a", "b"):
        for c in range(2):
            nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / f"{case}_{c:04d}.nii.gz")
    cases = inference_inputs(tmp_path, 3, channels=2)
    assert [[Path(p).name for p in c["image"]] for c in cases] == [["a_0000.nii.gz", "a_0001.nii.gz"],
                                                                  ["b_0000.nii.gz", "b_0001.nii.gz"]]
    (tmp_path / "b_0001.nii.gz").unlink()
    with pytest.raises(PipelineError, match=r"b_0001.nii.gz: missing"):
        inference_inputs(tmp_path, 3, channels=2)


def test_predict_passes_the_naming_to_the_bundle(tmp_path):
    args = argparse.Namespace(input=str(tmp_path), output=str(tmp_path / "o"), bundle=None, ckpt=None, tta=None,
                              save_probabilities=False, save_attention=False, series_uid=None, device=None,
                              pred_naming="nnunet")
    cmd = bundle_command(args)
    assert cmd[cmd.index("--pred_naming") + 1] == "'nnunet'"
