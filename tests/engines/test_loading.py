"""Where batches are made (DataLoader workers, or the training device through a thread) and the epoch length."""
import pytest
import torch
from monai.data import CacheDataset, DataLoader, ThreadDataLoader
from monai.transforms import Compose, EnsureTyped, Lambdad, RandCropByLabelClassesd, RandFlipd

from pipeline.engines import augment_device, augments_on_device, batch_loader, on_device_transforms
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
