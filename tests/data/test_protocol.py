"""The named data sets: final test seeds written once, apart from the development data; the final test runs once
per bundle version; the phantoms' tumour-contrast option changes the tumour's HU and nothing else."""
import numpy as np
import pytest

from pipeline.data.phantom import case_seed, generate_case
from pipeline.data.protocol import DEVELOPMENT, DEVELOPMENT_CT_36, FINAL_TEST, GeneratedSet, ensure_generated
from pipeline.errors import PipelineError


def test_final_test_sets_are_large_enough_and_apart_from_development():
    ct, ct_v1 = FINAL_TEST["ct"]
    assert ct.kwargs["n_test"] >= 20 and ct.kwargs["seed"] == ct_v1.kwargs["seed"]
    assert (ct.kwargs["tumour_contrast"], ct_v1.kwargs["tumour_contrast"]) == ("published", "v1")
    (shapes,) = FINAL_TEST["shapes"]
    assert round(shapes.kwargs["n"] * shapes.kwargs["test_fraction"]) >= 200
    dev_seeds = {s.kwargs["seed"] for sets in (*DEVELOPMENT.values(), DEVELOPMENT_CT_36) for s in sets}
    final_seeds = {s.kwargs["seed"] for sets in FINAL_TEST.values() for s in sets}
    assert not dev_seeds & final_seeds
    # the enlarged development set holds the 12 (same test phantoms; the 8 unseen are its first 8, same seed)
    (test4, unseen8), (same_test4, unseen32) = DEVELOPMENT["ct"], DEVELOPMENT_CT_36
    assert same_test4 == test4 and unseen32.kwargs["seed"] == unseen8.kwargs["seed"]
    assert unseen32.kwargs["n"] == unseen8.kwargs["n"] and unseen32.kwargs["n_test"] > 3 * unseen8.kwargs["n_test"]


def test_ensure_generated_makes_a_set_once(tmp_path):
    small = GeneratedSet("tiny", "pancreas_phantom", {"n": 1, "n_test": 1, "seed": 5, "scale": 4.0})
    out = ensure_generated(small, tmp_path)
    before = (out / "dataset.json").stat().st_mtime_ns
    assert ensure_generated(small, tmp_path) == out and (out / "dataset.json").stat().st_mtime_ns == before
    assert "tumour_contrast=published" in (out / "dataset.json").read_text()
    with pytest.raises(PipelineError, match="unknown data generator"):
        ensure_generated(GeneratedSet("x", "nope"), tmp_path)


def test_tumour_contrast_changes_the_tumour_only():
    seed = next(case_seed(0, i) for i in range(10) if generate_case(case_seed(0, i), 4.0).has_tumour)
    v1, published = generate_case(seed, 4.0, "v1"), generate_case(seed, 4.0, "published")
    assert np.array_equal(v1.label, published.label) and np.array_equal(v1.affine, published.affine)
    changed = v1.hu != published.hu
    assert changed.any() and (v1.label[changed] > 0).mean() > 0.5  # mostly gland and tumour voxels
    with pytest.raises(PipelineError, match="tumour_contrast"):
        generate_case(seed, 4.0, "brighter")


def test_final_test_refuses_a_second_scoring_of_a_bundle_version(tmp_path, monkeypatch):
    import benchmarks.final_test as final_test

    monkeypatch.setattr(final_test, "RESULTS", tmp_path)
    version = final_test.bundle_version("attn_unet")
    assert final_test.already_scored("attn_unet", version) == []
    (tmp_path / f"final_test_attn_unet_{version}_cpu_float32.json").write_text("{}")
    monkeypatch.setattr("sys.argv", ["final_test", "--bundle", "attn_unet", "--work", str(tmp_path / "w")])
    with pytest.raises(SystemExit, match="once per bundle version"):
        final_test.main()
    assert not (tmp_path / "w").exists()


def test_ct_scores_average_the_tumour_over_cases_that_have_one_and_pool_the_lesions(tmp_path):
    from benchmarks.common import ct_scores
    from pipeline.evaluation.lesions import lesion_summary, write_lesion_tables

    folders = []
    for name, rows, lesions, cases in (
        ("a", [("c1", 0.8, 0.5, 0.6), ("c2", 0.9, "nan", "nan")],
         [{"case": "c1", "lesion": 1, "volume_ml": 2.0, "contrast_hu": 30.0, "detected": True, "iou": 0.4}],
         [{"case": "c1", "lesions": 1, "detected": 1, "fp_components": 0, "max_prob": 0.9},
          {"case": "c2", "lesions": 0, "detected": 0, "fp_components": 1, "max_prob": 0.2}]),
        ("b", [("c3", 0.7, 0.0, 0.0)],
         [{"case": "c3", "lesion": 1, "volume_ml": 0.5, "contrast_hu": 5.0, "detected": False, "iou": 0.0}],
         [{"case": "c3", "lesions": 1, "detected": 0, "fp_components": 0, "max_prob": 0.4}]),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics_per_case.csv").write_text("case,dice_pancreas,dice_tumour,recall_tumour\n" + "".join(
            f"{c},{p},{t},{r}\n" for c, p, t, r in rows))
        write_lesion_tables(lesions, cases, lesion_summary(lesions, cases), folder)
        folders.append(folder)
    s = ct_scores(folders)
    assert (s["cases"], s["cases_with_tumour"]) == (3, 2)
    assert s["dice_pancreas"] == pytest.approx(0.8) and s["dice_tumour_cases_with_tumour"] == pytest.approx(0.25)
    assert (s["lesions"], s["lesion_sensitivity"], s["lesions_goal_bin"]) == (2, 0.5, 1)
    assert s["fp_components_per_case"] == 0.333 and s["case_auroc"] == 1.0  # rounded to 3 decimals
