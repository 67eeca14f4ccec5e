"""Region-based training: the nested-region head gives normalised class probabilities, the loss reads both kinds
of network output and falls as the prediction approaches the label."""
import torch

from pipeline.losses import NestedRegionDiceBCELoss
from pipeline.networks import AttentionUNet
from pipeline.networks.unet import nested_log_probs


def test_nested_log_probs_are_the_regions_probabilities():
    z = torch.randn(2, 2, 4, 4, 4)
    p = nested_log_probs(z).exp()
    assert torch.allclose(p.sum(1), torch.ones(2, 4, 4, 4), atol=1e-6)
    s = torch.sigmoid(z)
    assert torch.allclose(p[:, 1] + p[:, 2], s[:, 0], atol=1e-6)  # P(label >= 1) = sigmoid of the first logit
    assert torch.allclose(p[:, 2], s[:, 0] * s[:, 1], atol=1e-6)
    assert torch.allclose(torch.softmax(nested_log_probs(z), 1), p, atol=1e-6)  # softmax consumers read them back


def test_network_with_nested_regions_returns_class_log_probs():
    net = AttentionUNet(3, 1, 3, preset="precision", base_width=4, nested_regions=True, deep_supervision=True)
    assert net.head.conv.out_channels == 2
    outs = net.train()(torch.randn(1, 1, 16, 16, 16))
    assert all(o.shape[1] == 3 and torch.allclose(o.exp().sum(1), torch.ones(()), atol=1e-5) for o in outs)


def test_loss_falls_towards_the_label_and_takes_logits_or_log_probs():
    label = torch.zeros(1, 1, 8, 8, 8)
    label[:, :, 2:6, 2:6, 2:6] = 1
    label[:, :, 3:5, 3:5, 3:5] = 2
    onehot = torch.nn.functional.one_hot(label[:, 0].long(), 3).permute(0, 4, 1, 2, 3).float()
    loss = NestedRegionDiceBCELoss()
    good, bad = loss(onehot * 10, label), loss(torch.zeros(1, 3, 8, 8, 8), label)
    assert good < 0.05 < bad
    logits = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    value = loss(logits, label)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    # log-probabilities in, the same loss as their logits: log_softmax is idempotent
    assert torch.allclose(loss(torch.log_softmax(logits, 1), label), value)
    assert NestedRegionDiceBCELoss(batch=True)(onehot * 10, label) < 0.05
