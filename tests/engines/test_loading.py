"""Where batches are made (DataLoader workers, or the training device through a thread) and the epoch length."""
import json
import threading
import time
import types

import pytest
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor, ThreadDataLoader, get_track_meta
from monai.transforms import Compose, EnsureTyped, Lambdad, Rand2DElasticd, RandCropByLabelClassesd, RandFlipd

from pipeline.engines import METADATA_LOCK, TrainingCompose, ValidationHandler, augment_device, augments_on_device
from pipeline.engines import batch_loader, on_device_transforms
from pipeline.engines import resolve_epoch_length
from pipeline.engines.loading import GPU_EPOCH_LENGTH
from pipeline.errors import PipelineError


def test_auto_augments_on_cuda_only_and_bad_values_are_one_line_errors():
    assert augments_on_device("auto", "cuda:0") and not augments_on_device("auto", "cpu")
    assert augments_on_device("device", "cpu") and not augments_on_device("workers", "cuda")
    assert augment_device("auto", "cpu") == torch.device("cpu")
    assert augment_device("workers", "cuda:1") == torch.device("cpu")
    assert augment_device("device", "cuda:1") == torch.device("cuda:1")
    with pytest.raises(PipelineError, match="augment_on 'gpu': use one of auto, device, workers"):
        augments_on_device("gpu", "cpu")


def test_the_move_to_the_device_goes_where_caching_stops():
    pad = Lambdad("image", lambda x: x)
    crop = RandCropByLabelClassesd(["image", "label"], "label", [2, 2], num_classes=2)
    out = on_device_transforms([pad, crop], "device", "cpu")
    assert out[0] is pad and isinstance(out[1], EnsureTyped) and out[2] is crop
    assert out[1].converter.device == torch.device("cpu")
    assert on_device_transforms([pad], "device", "cpu")[-1].__class__ is EnsureTyped  # nothing random: at the end
    assert on_device_transforms([pad, crop], "workers", "cuda") == [pad, crop]  # unchanged in workers


def test_cached_items_hold_the_moved_tensors_and_the_thread_loader_serves_them():
    data = [{"image": torch.full((1, 4, 4), float(i)), "label": torch.zeros(1, 4, 4)} for i in range(3)]
    transforms = on_device_transforms([Lambdad("image", lambda x: x + 1), RandFlipd(["image", "label"], prob=1.0)],
                                      "device", "cpu")
    ds = CacheDataset(data, Compose(transforms), progress=False)
    assert ds._cache[0]["image"].max() == 1  # cached up to the move, before the random flip
    loader = batch_loader(ds, "device", "cpu", num_workers=4, batch_size=2, shuffle=False)
    assert isinstance(loader, ThreadDataLoader) and loader.num_workers == 0  # no worker processes
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 1, 4, 4)
    plain = batch_loader(ds, "workers", "cpu", num_workers=0, batch_size=2, persistent_workers=True)
    assert type(plain) is DataLoader and not plain.pin_memory and not plain.persistent_workers


def test_epoch_length():
    loader = list(range(7))
    assert resolve_epoch_length("auto", "cpu", loader) is None  # one pass over the data on a CPU
    assert resolve_epoch_length("auto", "cuda", loader) == GPU_EPOCH_LENGTH
    assert resolve_epoch_length("auto", "cuda", list(range(GPU_EPOCH_LENGTH + 9))) == GPU_EPOCH_LENGTH + 9
    assert resolve_epoch_length(None, "cuda") is None and resolve_epoch_length("12", "cpu") == 12
    for bad in (0, -3, 2.5, "many"):
        with pytest.raises(PipelineError, match="epoch_length"):
            resolve_epoch_length(bad, "cpu")


def _sample_chain(seen: list) -> list:
    """Deterministic part that records whether it saw metadata, then random crops, flips and an elastic warp."""
    def record(x):
        seen.append(isinstance(x, MetaTensor))
        return x
    return [Lambdad("image", record),
            RandCropByLabelClassesd(["image", "label"], "label", [8, 8], ratios=[1, 1], num_classes=2,
                                    num_samples=2),
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
            Rand2DElasticd(["image", "label"], spacing=4, magnitude_range=(1, 2), prob=1.0,
                           mode=["bilinear", "nearest"]),
            EnsureTyped(["image", "label"], dtype=[torch.float32, torch.uint8])]


def test_training_compose_runs_the_random_part_without_metadata_and_gives_the_same_arrays():
    gen = torch.Generator().manual_seed(0)
    data = [{"image": MetaTensor(torch.rand(1, 16, 16, generator=gen)),
             "label": MetaTensor((torch.rand(1, 16, 16, generator=gen) > 0.6).float())} for _ in range(3)]
    outputs = {}
    for track in (True, False):
        seen: list = []
        chain = TrainingCompose(_sample_chain(seen), track_meta=track).set_random_state(7)
        ds = CacheDataset(data, chain, progress=False, cache_rate=2 / 3)  # the third case is not cached
        outputs[track] = [ds[i] for i in range(3) for _ in range(2)]
        assert seen and all(seen)  # the part before the first random transform kept its metadata, cached or not
        assert get_track_meta()  # restored
    for with_meta, without in zip(outputs[True], outputs[False]):
        for a, b in zip(with_meta, without):  # the two crops of a case
            assert isinstance(a["image"], MetaTensor) and type(b["image"]) is torch.Tensor
            assert type(b["label"]) is torch.Tensor and b["label"].dtype == torch.uint8
            assert torch.equal(a["image"].as_tensor(), b["image"]) and torch.equal(a["label"].as_tensor(), b["label"])


def test_training_compose_restores_metadata_tracking_when_a_transform_fails():
    def fail(_):
        raise ValueError("boom")
    chain = TrainingCompose([RandFlipd("image", prob=1.0), Lambdad("image", fail)], track_meta=False)
    with pytest.raises(RuntimeError):
        chain({"image": MetaTensor(torch.zeros(1, 4, 4))})
    assert get_track_meta()


@pytest.mark.parametrize("augment_on", ["auto", "device"])
def test_bundles_train_without_metadata_and_validate_under_the_lock(augment_on, monkeypatch):
    from monai.bundle import ConfigParser

    from tests.bundles_util import REPO

    monkeypatch.chdir(REPO)
    # a given plan: nothing is generated or planned (the default data set would otherwise be made in the checkout)
    plan = {"target_spacing": [2.0, 2.0, 3.0], "patch_size": [32, 32, 16], "strides": [[2, 2, 1]], "batch_size": 2,
            "num_workers": 0}
    for bundle, extra in (("unet", {}), ("attn_unet", {"plan": plan, "ct_stats": None})):
        parser = ConfigParser()
        parser.read_config(f"bundles/{bundle}/train.json")
        parser.update({"device": "cpu", "augment_on": augment_on, **extra})
        chain = parser.get_parsed_content("train#preprocessing")
        assert isinstance(chain, TrainingCompose) and chain.track_meta is False, bundle
        handlers = json.loads((REPO / "bundles" / bundle / "train.json").read_text())["train"]["handlers"]
        targets = [h.get("_target_") for h in handlers if isinstance(h, dict)]
        assert "pipeline.engines.ValidationHandler" in targets and "ValidationHandler" not in targets


def _handler(validator):
    handler = ValidationHandler(interval=1, epoch_level=True)
    handler.validator = validator  # a stand-in: set_validator accepts MONAI evaluators only
    return handler


def test_a_loader_thread_never_turns_metadata_off_while_validation_runs():
    """The thread path: samples made in a thread beside a validation that holds the lock see metadata throughout."""
    seen_in_validation: list[bool] = []
    started, samples = threading.Event(), []

    def note(x):
        started.set()
        return x

    chain = TrainingCompose([RandFlipd("image", prob=1.0), Lambdad("image", note),
                             EnsureTyped("image", track_meta=None)],
                            track_meta=False)

    class Validator:
        def run(self, epoch):
            for _ in range(200):  # the loader thread keeps asking for samples meanwhile
                seen_in_validation.append(get_track_meta())
                time.sleep(0.0005)

    def loader_thread():
        for _ in range(50):
            samples.append(chain({"image": MetaTensor(torch.zeros(1, 4, 4))})["image"])

    engine = types.SimpleNamespace(state=types.SimpleNamespace(epoch=1, iteration=1))
    thread = threading.Thread(target=loader_thread)
    thread.start()
    started.wait(5)
    _handler(Validator())(engine)
    thread.join(10)
    assert all(seen_in_validation) and len(seen_in_validation) == 200
    assert len(samples) == 50 and not any(isinstance(s, MetaTensor) for s in samples)
    assert get_track_meta()


def test_validation_that_raises_releases_the_lock():
    class Broken:
        def run(self, epoch):
            raise RuntimeError("validation failed")

    engine = types.SimpleNamespace(state=types.SimpleNamespace(epoch=1, iteration=1))
    with pytest.raises(RuntimeError, match="validation failed"):
        _handler(Broken())(engine)
    acquired = []

    def other_thread():
        got = METADATA_LOCK.acquire(timeout=5)
        acquired.append(got)
        if got:
            METADATA_LOCK.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert acquired == [True]


def test_loader_workers_leave_ctrl_c_to_the_training_process(monkeypatch):
    import signal

    import monai.data.utils

    seeded = []
    monkeypatch.setattr(monai.data.utils, "worker_init_fn", seeded.append)  # needs a real worker otherwise

    from pipeline.engines.loading import batch_loader, ignore_ctrl_c_in_worker

    loader = batch_loader([1, 2], augment_on="workers", device="cpu", num_workers=1)
    assert loader.worker_init_fn is ignore_ctrl_c_in_worker
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        ignore_ctrl_c_in_worker(0)  # what each worker runs first
        assert seeded == [0]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # Ctrl-C reaches the whole process group
        assert signal.getsignal(signal.SIGTERM) is before[1]  # the loader ends its workers with SIGTERM
    finally:
        signal.signal(signal.SIGINT, before[0])
