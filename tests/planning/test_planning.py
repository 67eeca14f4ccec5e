"""Fingerprints and plans: two tiny synthetic CT sets of different spacing and size, the CPU and GPU rules, plan
files, the ``plan`` command, and a bundle run that follows a plan."""
import json
import logging

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.planning import (
    Preparation,
    dataset_fingerprint,
    machine_profile,
    make_plan,
    pooling_strides,
    read_plan,
    write_plan,
)
from pipeline.planning.plan import CPU_BUDGET, GPU_MAX_CROP, PLAN_VERSION
from tests.bundles_util import REPO
from tests.planning.synthetic import write_ct_dataset

def bundle_plan(dataset_dir, path, device, poolings=3):
    """The plan a bundle's initialize step settles for ``dataset_dir`` with ``plan_file`` ``path``."""
    return Preparation(dataset_dir, {"dir": str(dataset_dir), "generator": "none"}, path, device,
                       poolings=poolings).run()


CPU = {"device": "cpu", "cpu_count": 2, "cpu_bf16": False, "gpu_name": None, "gpu_memory_gib": None}
GPU_80GB = {"device": "cuda", "cpu_count": 16, "cpu_bf16": False, "gpu_name": "fake", "gpu_memory_gib": 80.0}


@pytest.fixture(scope="module")
def iso(tmp_path_factory):
    """Isotropic 1.5 mm, 64^3, stored in RAS order."""
    return write_ct_dataset(tmp_path_factory.mktemp("iso") / "data", (1.5, 1.5, 1.5), (64, 64, 64), n=3, seed=1)


@pytest.fixture(scope="module")
def aniso(tmp_path_factory):
    """MSD-like 0.8 x 0.8 x 2.5 mm, 128 x 128 x 24, stored slices-first and flipped (not RAS order on disk)."""
    return write_ct_dataset(tmp_path_factory.mktemp("aniso") / "data", (0.8, 0.8, 2.5), (128, 128, 24), n=3, seed=2,
                            stored_axes=(2, 0, 1), flip=(True, False, True))


def _multiple(strides):
    return [int(np.prod([s[i] for s in strides])) for i in range(len(strides[0]))]


def test_fingerprint_reports_geometry_in_ras_order_and_foreground_statistics(aniso):
    fp = dataset_fingerprint(aniso)
    assert fp["n_training_cases"] == fp["n_analysed"] == 3
    assert fp["spacing"]["median"] == pytest.approx([0.8, 0.8, 2.5])
    assert fp["shape"]["median"] == [128, 128, 24]
    assert fp["cases"][0]["spacing"] == pytest.approx([0.8, 0.8, 2.5])  # on disk the slices come first
    body = fp["body_extent_mm"]["median"]
    assert body[0] == pytest.approx(0.85 * 128 * 0.8, rel=0.05) and body[1] == pytest.approx(0.65 * 128 * 0.8, rel=0.05)
    assert body[2] == pytest.approx(24 * 2.5)
    assert fp["ct"] is True and fp["modality"] == "CT"
    assert set(fp["class_frequencies"]) == {"0", "1", "2"}
    assert sum(fp["class_frequencies"].values()) == pytest.approx(1.0, abs=1e-5)
    fg = fp["foreground_intensity"]
    assert fg["n_samples"] <= 3 * 10_000
    assert 55 <= fg["p00_5"] < fg["mean"] < fg["p99_5"] <= 140  # organ 100 +- 10 HU, lesion 60 HU; no air, no body


def test_fingerprint_is_seeded_and_can_sample_cases(iso):
    a, b = dataset_fingerprint(iso, seed=3), dataset_fingerprint(iso, seed=3)
    assert a["foreground_intensity"] == b["foreground_intensity"]
    two = dataset_fingerprint(iso, max_cases=2, seed=0)
    assert two["n_analysed"] == 2 and two["n_training_cases"] == 3


def test_plans_follow_the_spacing_of_the_data(iso, aniso):
    p_iso = make_plan(dataset_fingerprint(iso), CPU)
    p_aniso = make_plan(dataset_fingerprint(aniso), CPU)
    assert p_iso["target_spacing"] == pytest.approx([1.5, 1.5, 1.5])
    assert p_aniso["target_spacing"] == pytest.approx([0.8, 0.8, 2.5])
    assert p_iso["strides"][0] == [2, 2, 2]
    assert p_aniso["strides"][0] == [2, 2, 1]  # 2.5 mm slices are not pooled while in-plane is 0.8 mm
    assert p_aniso["patch_size"][2] <= 24 < p_aniso["patch_size"][0]  # the patch never exceeds the 24 slices
    for plan in (p_iso, p_aniso):
        assert len(plan["strides"]) == 3
        assert all(p % m == 0 for p, m in zip(plan["patch_size"], _multiple(plan["strides"])))
        assert np.prod(plan["patch_size"]) <= CPU_BUDGET[3][0]
        assert plan["batch_size"] == 2 and plan["num_workers"] == 0
        assert plan["intensity"]["mode"] == "window"
        assert set(plan["why"]) >= {"target_spacing", "patch_size", "strides", "batch_size", "num_workers"}


def test_a_large_gpu_gets_a_larger_patch_and_batch(aniso):
    fp = dataset_fingerprint(aniso)
    cpu, gpu = make_plan(fp, CPU), make_plan(fp, GPU_80GB)
    assert np.prod(gpu["patch_size"]) > np.prod(cpu["patch_size"])
    assert gpu["batch_size"] > cpu["batch_size"]
    assert gpu["num_workers"] > cpu["num_workers"]
    assert gpu["strides"][0] == [2, 2, 1]


def _fingerprint(spacing, body_mm, n=24):
    """A fingerprint with the given median spacing and body extent (the planner reads nothing else for geometry)."""
    return {"spatial_dims": 3, "ct": True, "dataset_dir": "/data/x", "n_training_cases": n, "n_analysed": n,
            "spacing": {"median": list(spacing)}, "body_extent_mm": {"median": list(body_mm)},
            "foreground_intensity": {"n_samples": 1000, "p00_5": -50.0, "p99_5": 90.5, "mean": 34.0, "std": 25.0}}


def test_cpu_coarsens_real_ct_geometry_to_fit_the_body_in_eight_patches():
    # the 24 default phantoms (measured fingerprint) and MSD Task07-like geometry: 0.8 x 0.8 x 2.5 mm, 512^2 x 80
    for spacing, body in (((0.793, 0.793, 2.5), (328.3, 259.1, 159.2)), ((0.8, 0.8, 2.5), (347.2, 265.6, 200.0))):
        plan = make_plan(_fingerprint(spacing, body), CPU)
        s = plan["target_spacing"]
        assert s[0] == s[1] > spacing[0] and s[2] == pytest.approx(2 * s[0], abs=0.011)
        assert np.prod(np.array(body) / s) <= 8 * CPU_BUDGET[3][0] * 1.02
        assert plan["patch_size"] == [64, 64, 32]
        assert plan["strides"] == [[2, 2, 1], [2, 2, 2], [2, 2, 2]]
        assert plan["intensity"]["hu_window"] == [-50, 91]
        gpu = make_plan(_fingerprint(spacing, body), GPU_80GB)
        # the GPU crop is capped at 2**18 voxels (time to a good model, not memory): finer than the CPU plan,
        # coarser than the median spacing, batch 4 x 2 crops
        g = gpu["target_spacing"]
        assert spacing[0] < g[0] < s[0] and g[0] == g[1] and g[2] == pytest.approx(2 * g[0], abs=0.011)
        assert CPU_BUDGET[3][0] < np.prod(gpu["patch_size"]) <= GPU_MAX_CROP[3]
        assert gpu["strides"][0] == [2, 2, 1] and gpu["batch_size"] == 4
    # the measured phantom plan on a GPU (benchmarks/results/gpu_recipe.md)
    gpu = make_plan(_fingerprint((0.793, 0.793, 2.5), (328.3, 259.1, 159.2)), GPU_80GB)
    assert gpu["target_spacing"] == [1.48, 1.48, 2.96] and gpu["patch_size"] == [80, 80, 40]
    assert "time-to-model cap" in gpu["why"]["patch_size"]


def test_a_small_gpu_plans_from_its_memory():
    small = {**GPU_80GB, "gpu_memory_gib": 2.0}
    plan = make_plan(_fingerprint((0.793, 0.793, 2.5), (328.3, 259.1, 159.2)), small)
    assert np.prod(plan["patch_size"]) < GPU_MAX_CROP[3] and "of 2 GiB" in plan["why"]["patch_size"]


def test_pooling_strides_rule():
    assert pooling_strides([64, 64, 32], [0.8, 0.8, 2.5]) == [[2, 2, 1], [2, 2, 2], [2, 2, 2]]
    assert pooling_strides([64, 64, 16], [1.0, 1.0, 1.0]) == [[2, 2, 2], [2, 2, 1], [2, 2, 1]]  # >= 8 voxels remain
    assert pooling_strides([64, 64, 64], [1.0, 1.0, 2.0]) == [[2, 2, 1], [2, 2, 2], [2, 2, 2]]  # exactly 2x: not pooled


def test_planning_for_2d_uses_the_2d_budget():
    fp = {**_fingerprint((1.0, 1.0), (128.0, 128.0)), "spatial_dims": 2}
    plan = make_plan(fp, CPU, spatial_dims=2)
    assert plan["patch_size"] == [128, 128] and plan["batch_size"] == 8
    with pytest.raises(PipelineError, match="spatial dimensions"):
        make_plan(fp, CPU, spatial_dims=3)


def test_machine_profile_on_cpu():
    m = machine_profile("cpu")
    assert m["device"] == "cpu" and m["cpu_count"] >= 1 and isinstance(m["cpu_bf16"], bool)
    assert m["gpu_name"] is None and m["gpu_memory_gib"] is None


def test_plan_file_round_trips(aniso, tmp_path):
    plan = make_plan(dataset_fingerprint(aniso), CPU)
    path = write_plan(plan, tmp_path / "plans" / "p.json")
    assert read_plan(path) == json.loads(json.dumps(plan))
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temporary file left


@pytest.mark.parametrize("text, fragment", [
    ('{"patch_size": [64, 64', "invalid JSON at line 1"),
    ("[1, 2]", "top level is a JSON list"),
    ('{"target_spacing": [2, 2, 3], "patch_size": [64, 64, 32], "strides": [[2, 2, 1]], "batch_size": 2}',
     "num_workers: missing"),
    ('{"target_spacing": [2, 2, 3], "patch_size": [64, 64], "strides": [[2, 2, 1]], "batch_size": 2, "num_workers": 0}',
     "target_spacing"),
])
def test_a_broken_plan_file_is_one_line(tmp_path, text, fragment):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PipelineError) as err:
        read_plan(path)
    message = str(err.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_bundle_plan_writes_once_then_follows_the_file(iso, tmp_path, caplog):
    path = tmp_path / "plan.json"
    with caplog.at_level(logging.INFO, logger="pipeline.planning"):
        first = bundle_plan(iso, path, "cpu")
    assert path.is_file() and "plan written to" in caplog.text and "patch_size" in caplog.text
    edited = {**first, "batch_size": 3}
    write_plan(edited, path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.planning"):
        assert bundle_plan(iso, path, "cpu")["batch_size"] == 3  # an existing plan is followed as written
    assert "following the plan" in caplog.text


@pytest.mark.parametrize("poolings", [2, 4])
def test_plans_have_one_stride_per_pooling_of_the_network(aniso, poolings):
    plan = make_plan(dataset_fingerprint(aniso), CPU, poolings=poolings)
    assert len(plan["strides"]) == poolings
    assert all(p % m == 0 for p, m in zip(plan["patch_size"], _multiple(plan["strides"])))
    assert f"{poolings} poolings" in plan["why"]["strides"]


def test_a_plan_for_another_depth_or_data_set_is_planned_again_and_the_file_kept(iso, aniso, tmp_path, caplog):
    path = tmp_path / "plan.json"
    bundle_plan(iso, path, "cpu")  # the standard preset: 3 poolings
    before = path.read_bytes()
    with caplog.at_level(logging.INFO, logger="pipeline.planning"):
        plan = bundle_plan(iso, path, "cpu", poolings=4)
    assert len(plan["strides"]) == 4 and "planned again" in caplog.text and "poolings 3 (this run: 4)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.planning"):
        plan = bundle_plan(aniso, path, "cpu")
    assert plan["target_spacing"] == make_plan(dataset_fingerprint(aniso), machine_profile("cpu"))["target_spacing"]
    assert "data set" in caplog.text and "planned again" in caplog.text
    assert path.read_bytes() == before


def test_a_plan_from_an_older_planner_is_planned_again_and_one_without_version_followed(iso, tmp_path, caplog):
    path = tmp_path / "plan.json"
    current = bundle_plan(iso, path, "cpu")
    write_plan({**current, "version": PLAN_VERSION - 1, "batch_size": 16}, path)  # e.g. the 2D CPU batch before 8
    before = path.read_bytes()
    with caplog.at_level(logging.INFO, logger="pipeline.planning"):
        plan = bundle_plan(iso, path, "cpu")
    assert plan["batch_size"] == current["batch_size"] and "planned again" in caplog.text
    assert f"planner version {PLAN_VERSION - 1} (this run: {PLAN_VERSION})" in caplog.text
    assert path.read_bytes() == before
    write_plan({k: v for k, v in current.items() if k != "version"} | {"batch_size": 5}, path)  # written by hand
    assert bundle_plan(iso, path, "cpu")["batch_size"] == 5


def test_resolving_config_ids_writes_nothing_and_the_plan_waits_for_initialize(iso, tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/attn_unet/train.json"))
    parser.update({"dataset_dir": str(tmp_path / "missing"), "bundle_root": str(tmp_path / "b"), "device": "cpu"})
    for key in ("prepare", "network_def#spatial_dims", "optimizer#lr", "ckpt_dir"):
        parser.get_parsed_content(key)
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("patch_size")
    causes = []
    e = err.value
    while e is not None:
        causes.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("before the initialize step ran Preparation.run()" in c for c in causes), causes
    assert not (tmp_path / "missing").exists() and not (tmp_path / "b").exists()
    parser.update({"dataset_dir": str(iso)})
    parser.get_parsed_content("initialize")  # the explicit step: plans and writes plan.json
    assert (tmp_path / "b" / "plan.json").is_file() and parser.get_parsed_content("patch_size")
