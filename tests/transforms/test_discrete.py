"""``ChannelArgmaxd`` / ``channel_argmax``: MONAI's argmax, computed by ``torch.max(...).indices``."""
from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted

from pipeline.transforms import ChannelArgmaxd, channel_argmax


def test_same_class_map_dtype_and_metadata_as_asdiscreted():
    gen = torch.Generator().manual_seed(0)
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
    x = MetaTensor(torch.randn(3, 11, 9, 7, generator=gen), affine=affine)
    x[:, 0, 0, 0] = 0.5  # ties: the first largest channel wins in both
    x[2, 1, 0, 0], x[1, 1, 0, 0] = 1.0, 1.0
    ours = ChannelArgmaxd("pred")({"pred": x})["pred"]
    ref = AsDiscreted("pred", argmax=True)({"pred": x.clone()})["pred"]
    assert ours.shape == ref.shape == (1, 11, 9, 7) and ours.dtype == ref.dtype == torch.float32
    assert torch.equal(ours.as_tensor(), ref.as_tensor())
    assert ours[0, 0, 0, 0] == 0 and ours[0, 1, 0, 0] == 1
    assert isinstance(ours, MetaTensor) and torch.equal(ours.affine, affine)


def test_channel_argmax_on_another_axis():
    x = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(channel_argmax(x, dim=1), x.argmax(1, keepdim=True))


def test_small_tumour_components_become_the_organ_around_them():
    from monai.data import MetaTensor

    from pipeline.transforms import RemoveSmallComponentsd

    labels = torch.ones(1, 20, 20, 10)
    labels[0, 2:12, 2:12, 2:8] = 2  # 600 voxels of 2 mm: 4.8 ml
    labels[0, 15:17, 15:17, 2:4] = 2  # 8 voxels: 0.064 ml
    x = MetaTensor(labels, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out = RemoveSmallComponentsd("pred", label=2, min_ml=1.0)({"pred": x})["pred"]
    assert int((out == 2).sum()) == 600 and out[0, 15, 15, 2] == 1
    assert torch.equal(RemoveSmallComponentsd("pred", label=2, min_ml=0)({"pred": x})["pred"], x)
    assert int((RemoveSmallComponentsd("pred", label=2, min_ml=5.0)({"pred": x})["pred"] == 2).sum()) == 0
