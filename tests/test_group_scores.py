"""Unit scores: shapes, oracles, and the network-slimming penalty."""

import pytest
import torch
from torch import nn

import minprune as mp
from minprune.structured.unit_scores import (
    SlimmingCallback,
    activation_scores,
    bn_l1_penalty,
    bn_scale_scores,
    norm_scores,
    slimming_loss,
    taylor_unit_scores,
)


def batches(model, n=2, size=8):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, *model.input_shape, generator=g), torch.randint(0, 10, (size,), generator=g))
            for _ in range(n)]


def test_norm_scores_match_hand_computation():
    model = mp.build("lenet5")
    W = model.features[0].weight  # (6, 1, 5, 5)
    scores = norm_scores(model, p=1)
    torch.testing.assert_close(scores["features.0.weight"], W.detach().abs().sum((1, 2, 3)))
    torch.testing.assert_close(norm_scores(model, p=2)["classifier.1.weight"],
                               model.classifier[1].weight.detach().norm(dim=1))
    with pytest.raises(ValueError, match="p must be"):
        norm_scores(model, p=3)


def test_bn_scores_are_abs_gamma():
    model = mp.build("vgg")
    with torch.no_grad():
        model.features[0][1].weight.copy_(torch.linspace(-1, 1, 16))
    assert torch.equal(bn_scale_scores(model)["features.0.1.weight"], torch.linspace(-1, 1, 16).abs())
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn_scale_scores(mp.build("lenet300"))


def test_slimming_loss_and_callback_shrink_gammas():
    model = mp.build("vgg")
    x, y = batches(model, 1)[0]
    loss_plain, _ = slimming_loss(0.0)(model, x, y)
    loss_pen, _ = slimming_loss(1e-2)(model, x, y)
    torch.testing.assert_close(loss_pen - loss_plain, 1e-2 * bn_l1_penalty(model))
    before = bn_l1_penalty(model).item()
    SlimmingCallback(strength=1.0, lr=1e-2).on_step_end(model, 1)
    assert bn_l1_penalty(model).item() < before
    mp.fit(model, batches(model), mp.TrainConfig(epochs=1), loss_fn=slimming_loss(1e-3), progress=False)


def test_activation_scores_shapes_and_ranges():
    model = mp.build("vgg").train()
    data = batches(model)
    mean = activation_scores(model, data, stat="mean")
    apoz = activation_scores(model, data, stat="apoz")
    assert mean.keys() == norm_scores(model).keys()
    assert all(s.shape == (model.get_submodule(k[:-7]).weight.shape[0],) for k, s in mean.items())
    assert all(((s >= 0) & (s <= 1)).all() for s in apoz.values())
    assert model.training  # mode restored


def test_apoz_zero_for_dead_unit():
    model = mp.build("lenet300")
    with torch.no_grad():
        model.layers[1].weight[3] = 0
        model.layers[1].bias[3] = -1.0  # always negative -> always zero after ReLU
    apoz = activation_scores(model, batches(model), stat="apoz")["layers.1.weight"]
    assert apoz[3] == 0 and apoz.max() > 0


def test_taylor_scores_oracle_on_linear_unit():
    model = mp.build("lenet300")
    data = batches(model, n=1)
    scores = taylor_unit_scores(model, data)["layers.3.weight"]
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    x, y = data[0]
    h = model.layers[:4](x)  # (batch, 100) pre-ReLU activations of layers.3
    h.retain_grad()
    loss = nn.functional.cross_entropy(model.layers[4:](h), y)
    loss.backward()
    torch.testing.assert_close(scores, (h * h.grad).abs().mean(0).detach())


def test_bad_stat_refused():
    with pytest.raises(ValueError, match="stat"):
        activation_scores(mp.build("lenet300"), [], stat="median")
