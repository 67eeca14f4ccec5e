"""A checkpoint folder or a scan from a stranger is data, never code (issue 36, items 1 and 5), in-process.

Hostile folders (``benchmarks.trust.HOSTILE``): inference.json, its network_def (ckpt_export) and the figures
command refuse each one with a one-line PipelineError naming the file, run no payload and write nothing. Fuzzed
scans (``benchmarks.trust_fuzz``, seeded: ``fuzz_case(i)`` rebuilds case ``i``): check-data, training's data loading
and inference accept each one or refuse it in one line, within a time limit, writing nothing when they refuse and
leaving the input files byte-identical. ``python -m benchmarks run trust`` runs all of them and records the counts.
"""
import json
import random

import pytest

from benchmarks.trust import HOSTILE, SEED, check_hostile, good_checkpoint, hostile_problems, scan
from benchmarks.trust_fuzz import NIFTI_CASES, FUZZ_TOTAL, fuzz_case, mutate_nifti, run_case, training_chain
from pipeline.engines import read_model_config
from pipeline.errors import PipelineError
from pipeline.planning import read_plan

#: a fixed sample of the benchmark's fuzz cases (every NIfTI kind and DICOM kind appears), to keep the suite fast
#: (case 90, a label with dims x, y, z, 1, 1, was a traceback in training's loading before the header check)
FUZZ_SAMPLE = sorted({90, *random.Random(SEED).sample(range(NIFTI_CASES), 16), *range(NIFTI_CASES, NIFTI_CASES + 6)})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    return root, good_checkpoint(root / "good"), scan(root / "scan" / "scan.nii.gz")


@pytest.fixture(scope="module")
def chain():
    return training_chain()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_folder_is_refused_in_one_line_naming_the_file_and_runs_nothing(world, name, monkeypatch):
    root, good, image = world
    monkeypatch.chdir(root)  # a payload writing PWNED into the working folder would show here
    result = check_hostile(name, root / "hostile", good, image)
    assert hostile_problems(result) == []
    assert not result["marker"] and not result["written"]


def test_the_good_folder_itself_loads(world):
    _, good, _ = world
    assert read_model_config(good)["network"]["_target_"] == "AttentionUNet"
    assert read_plan(good / "plan.json")["patch_size"] == [32, 32, 16]


@pytest.mark.parametrize("edit, field", [
    ({"spatial_dims": 4}, "spatial_dims"),
    ({"in_channels": 0}, "in_channels"),
    ({"class_names": ["a", 3]}, "class_names[1]"),
    ({"class_names": ["a"]}, "class_names"),
    ({"split": {"seed": "0"}}, "split.seed"),
    ({"mirror_axes": [0, 0]}, "mirror_axes"),
    ({"pred_ext": ".exe"}, "pred_ext"),
])
def test_model_config_problems_name_the_file_and_the_field(world, tmp_path, edit, field):
    _, good, _ = world
    config = {**json.loads((good / "model_config.json").read_text()), **edit}
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(PipelineError) as e:
        read_model_config(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'model_config.json'}: {field}") and "\n" not in str(e.value)


@pytest.mark.parametrize("edit, field", [
    ({"patch_size": [32, 32, 4096]}, "patch_size[2]"),
    ({"target_spacing": [4.0, 4.0, 500.0]}, "target_spacing[2]"),
    ({"target_spacing": [4.0, 4.0]}, "target_spacing"),
    ({"strides": [[2, 2, 9]]}, "strides[0][2]"),
    ({"batch_size": True}, "batch_size"),
    ({"intensity": {"mode": "window", "hu_window": [1, "2"]}}, "intensity.hu_window[1]"),
    ({"intensity": {"mode": "zscore", "zscore": None}}, "intensity.zscore.p00_5"),
    ({"postprocessing": {"keep_largest_component": "yes"}}, "postprocessing.keep_largest_component"),
    ({"extra": 1}, "extra"),
])
def test_plan_problems_name_the_file_and_the_field(world, tmp_path, edit, field):
    _, good, _ = world
    plan = {**json.loads((good / "plan.json").read_text()), **edit}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(PipelineError) as e:
        read_plan(tmp_path / "plan.json")
    assert str(e.value).startswith(f"{tmp_path / 'plan.json'}: {field}") and "\n" not in str(e.value)


def test_the_fuzz_generator_is_reproducible(tmp_path):
    a, b = fuzz_case(5, tmp_path / "a"), fuzz_case(5, tmp_path / "b")
    assert a.detail == b.detail and a.image.read_bytes() == b.image.read_bytes()
    assert FUZZ_TOTAL >= 200 and mutate_nifti(bytes(400), "dims", random.Random(0))[0] != bytes(400)


@pytest.mark.parametrize("index", FUZZ_SAMPLE, ids=lambda i: f"case_{i:03d}")
def test_a_fuzzed_input_is_accepted_or_refused_in_one_line_and_left_untouched(world, chain, tmp_path, index):
    root, good, _ = world
    case = fuzz_case(index, tmp_path / "fuzz")
    assert run_case(case, good, tmp_path / "out", chain, seconds=60) == []
