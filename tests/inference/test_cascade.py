"""The cascade's second stage: each scan paired with the first stage's label map, cropped around its main component,
and the bundle sections that configure both stages."""
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.errors import PipelineError
from pipeline.inference import coarse_region, with_coarse

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "attn_unet"


def test_each_scan_gets_its_first_stage_label_map_in_either_naming(tmp_path):
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    for name in ("a_seg.nii.gz", "a_prob.nii.gz", "b.nii.gz"):  # pipeline naming for a, nnU-Net's for b
        (coarse / name).write_bytes(b"")
    cases = [{"image": "/scans/a.nii.gz"}, {"image": ["/scans/b_0000.nii.gz", "/scans/b_0001.nii.gz"]}]
    out = with_coarse(cases, coarse)
    assert [Path(c["coarse"]).name for c in out] == ["a_seg.nii.gz", "b.nii.gz"]
    assert out[1]["image"] == cases[1]["image"]
    with pytest.raises(PipelineError, match=r"c.nii.gz: no first-stage label map c_seg"):
        with_coarse([{"image": "/scans/c.nii.gz"}], coarse)
    with pytest.raises(PipelineError, match="coarse_dir is not set"):
        with_coarse(cases, None)


def test_crop_source_is_the_largest_component_or_the_whole_scan():
    mask = torch.zeros(1, 20, 20, 8)
    mask[0, 2:10, 2:10, 1:6] = 1  # the gland
    mask[0, 15:17, 15:17, 3:5] = 2  # a stray false positive far from it
    region = coarse_region(mask)
    assert bool(region[0, 5, 5, 3]) and not bool(region[0, 16, 16, 4])
    assert bool(coarse_region(torch.zeros(1, 4, 4, 4)).all())


def test_second_stage_sections_refine_the_plan_and_crop_around_the_gland():
    """train.json's and inference.json's ``fine`` sections, applied as run_stage applies them."""
    from pipeline.engines.stages import stage_config

    train = ConfigParser()
    train.read_config(BUNDLE / "train.json")
    train.update({"plan": {"target_spacing": [1.86, 1.86, 3.72]}, "fine#epochs": 3})
    fine = stage_config(train.get(), "fine", {"target_spacing": [1.24, 1.24, 2.48], "epochs": 80})
    assert fine.get_parsed_content("preprocessing#5#margin") == [21, 21, 11]  # 25 mm
    assert fine["preprocessing#5#source_key"] == "label" and fine["epochs"] == 3  # --fine#epochs wins
    assert fine["cascade"] is False and "fine" not in fine.get()  # no stage of its own
    assert train.get_parsed_content("fine_epochs") == train.get_parsed_content("epochs")
    infer = stage_config(ConfigParser.load_config_files(BUNDLE / "inference.json"), "fine", {"ckpt_dir": "m_fine"})
    crop = infer["infer_preprocessing#4"]
    assert crop["_target_"] == "CropForegroundd" and crop["source_key"] == "coarse"
    assert all(infer[f"infer_preprocessing#{i}#keys"] == ["image", "coarse"] for i in (0, 2, 3))
    assert np.allclose(infer.get_parsed_content("cascade_margin_mm"), 25.0)


def test_cascade_switch_finds_the_second_stage_beside_the_first(tmp_path):
    from pipeline.inference import fine_checkpoints

    (tmp_path / "models").mkdir()
    assert fine_checkpoints(str(tmp_path / "models"), "auto") is None
    with pytest.raises(PipelineError, match=r"models_fine: no model.pt for the cascade's second stage"):
        fine_checkpoints(str(tmp_path / "models"), "true")
    (tmp_path / "models_fine").mkdir()
    (tmp_path / "models_fine" / "model.pt").write_bytes(b"")
    assert fine_checkpoints(str(tmp_path / "models"), "auto") == [str(tmp_path / "models_fine")]
    assert fine_checkpoints(str(tmp_path / "models"), False) is None


def test_second_stage_segments_only_around_the_first_stages_main_component(tmp_path):
    """Both stages through the bundle files in this process: a bright blob far from the organ is labelled by stage 1
    (a threshold stand-in) and left out by stage 2, whose crop follows the organ; the maps stay on the scan's grid."""
    import nibabel as nib

    from tests.checkpoints import write_checkpoint
    from tests.inference.helpers import ThresholdNet, ct_like_volume, oblique_affine

    hu, organ = ct_like_volume()
    hu[2:5, 28:31, 5:8] = 200  # a stray bright blob, away from the organ
    affine = oblique_affine(spacing=(2.0, 2.0, 4.0), flip=(False, False, False))
    (tmp_path / "scans").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "scans" / "ct.nii.gz")
    ckpt = write_checkpoint(tmp_path / "ckpt", ThresholdNet())

    def run(**overrides) -> None:  # as monai.bundle run does: initialize, run, finalize
        parser = ConfigParser()
        parser.read_config(BUNDLE / "inference.json")
        parser.update({"input": str(tmp_path / "scans"), "progress": False, "device": "cpu", "tta": False,
                       "cascade_margin_mm": 4.0, **overrides})
        try:
            parser.get_parsed_content("initialize")
            parser.get_parsed_content("run")
        finally:
            parser.get_parsed_content("finalize")

    run(ckpt_dir=str(ckpt), pred_dir=str(tmp_path / "stage1"))  # one stage: no <ckpt>_fine
    assert not (tmp_path / "out" / "predictions_coarse").exists()
    write_checkpoint(tmp_path / "ckpt_fine", ThresholdNet())  # the same stand-in as stage 2: auto finds it
    run(ckpt_dir=str(ckpt), pred_dir=str(tmp_path / "stage2"), output_dir=str(tmp_path / "out"))
    stage1 = nib.load(tmp_path / "stage1" / "ct_seg.nii.gz")
    stage2 = nib.load(tmp_path / "stage2" / "ct_seg.nii.gz")
    one, two = np.asarray(stage1.dataobj), np.asarray(stage2.dataobj)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "out" / "predictions_coarse" / "ct_seg.nii.gz").dataobj), one)
    assert one.shape == two.shape == hu.shape and np.allclose(stage2.affine, affine, atol=1e-4)
    assert one[3, 29, 6] == 1 and two[3, 29, 6] == 0  # the blob: stage 1 only
    inside = organ & (hu > 100)
    assert (two[inside] == 1).mean() > 0.95 and (one[inside] == 1).mean() > 0.95


def test_cascade_without_a_second_stage_section_is_refused_before_training():
    """--cascade true on data that defines no cascade (the shapes) stops in the initialize step, in one line."""
    import pipeline.engines  # noqa: F401  (the expressions' global)

    config = {"cascade": True, "initialize": ["$pipeline.engines.check_stage(@cascade, 'fine')"]}

    def initialize(cfg: dict) -> None:
        ConfigParser(cfg, globals={"pipeline": "pipeline"}).get_parsed_content("initialize")

    with pytest.raises(RuntimeError) as caught:
        initialize(config)
    assert isinstance(caught.value.__cause__, PipelineError) and "no 'fine' section" in str(caught.value.__cause__)
    initialize({**config, "fine": {"cascade": False}})  # with one: fine
    initialize({**config, "cascade": "false"})  # off: nothing to check
