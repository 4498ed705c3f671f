"""Calibration for one-shot pruning: layer inputs, H = X^T X / n, input norms, the sequential driver."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from unchanged import Unchanged

import minprune as mp
from minprune.one_shot.calibration import (
    calibration_batches,
    forward_order,
    input_hessians,
    input_norms,
    layer_rows,
    prune_sequentially,
    target_layers,
)


def _mlp():
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


def _tokens_batches():
    """Two batches of 3-D inputs (batch, tokens, features) with labels."""
    return [(torch.randn(2, 3, 5), torch.zeros(2, dtype=torch.long)) for _ in range(2)]


def test_default_targets_leave_out_the_output_layer():
    gpt = mp.build("chargpt", n_layer=2, n_embd=16, n_head=2, block_size=8)
    names = list(target_layers(gpt))
    inner = [f"blocks.{i}.{p}.weight" for i in range(2) for p in ("attn.q", "attn.k", "attn.v", "attn.proj",
                                                                  "mlp.fc1", "mlp.fc2")]
    assert names == inner
    assert list(target_layers(_mlp())) == ["0.weight", "2.weight"]
    assert list(target_layers(_mlp(), "4.weight")) == ["4.weight"]


def test_hessian_is_x_transpose_x_over_rows():
    model, batches = _mlp(), _tokens_batches()
    model.train()
    kept = Unchanged(model)
    H = input_hessians(model, batches, ["0.weight", "2.weight"])
    X = torch.cat([x.reshape(-1, 5) for x, _ in batches]).double()  # (12, 5)
    torch.testing.assert_close(H["0.weight"], X.T @ X / 12)
    hidden = torch.relu(model[0](X.float())).double()
    torch.testing.assert_close(H["2.weight"], hidden.T @ hidden / 12)
    assert H["0.weight"].dtype == torch.float64
    kept.check()  # weights, train flags and hooks as they were
    assert model.training


def test_input_norms_are_column_norms_over_all_rows():
    model, batches = _mlp(), _tokens_batches()
    norms = input_norms(model, batches, max_batches=1)
    X = batches[0][0].reshape(-1, 5)
    torch.testing.assert_close(norms["0.weight"], X.norm(dim=0))
    assert norms["0.weight"].dtype == torch.float32
    H = input_hessians(model, batches, max_batches=1)
    torch.testing.assert_close(norms["2.weight"].double(), (H["2.weight"].diagonal() * 6).sqrt(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1),
                                  nn.Conv2d(2, 3, (2, 3), padding=(1, 0), dilation=(2, 1)),
                                  nn.Conv1d(3, 5, 3, stride=2, padding=2, dilation=2)])
def test_unfolded_rows_reproduce_the_convolution(conv):
    x = torch.randn(2, conv.in_channels, *([9, 8] if isinstance(conv, nn.Conv2d) else [11]))
    rows = layer_rows(conv, x)  # (batch * positions, d)
    out = conv.double()(x.double())  # (batch, out, *positions)
    W = conv.weight.double().reshape(conv.out_channels, -1)
    again = (rows @ W.T + conv.bias.double()).reshape(2, -1, conv.out_channels)
    torch.testing.assert_close(again, out.flatten(2).transpose(1, 2))


def test_conv_hessian_in_a_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = torch.randn(4, 1, 6, 6)
    H = input_hessians(model, [x])
    rows = F.unfold(x.double(), 3).transpose(1, 2).reshape(-1, 9)
    torch.testing.assert_close(H["0.weight"], rows.T @ rows / rows.shape[0])


def test_forward_order_follows_the_calls_not_the_definitions():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late, self.early = nn.Linear(4, 2), nn.Linear(3, 4)

        def forward(self, x):
            return self.late(self.early(x))

    model = Backwards()
    layers = target_layers(model, ["late.weight", "early.weight"])
    assert forward_order(model, torch.randn(2, 3), layers) == ["early.weight", "late.weight"]


def test_sequential_driver_calibrates_on_the_pruned_layers_before():
    model = _mlp()
    batches = _tokens_batches()
    kept, seen = Unchanged(model), {}

    def prune_layer(name, layer, H):
        seen[name] = H
        with torch.no_grad():
            layer.weight[:, ::2] = 0  # prune in place: every second input

    pruned = prune_sequentially(model, batches, prune_layer)
    kept.check()
    assert pruned is not model and list(seen) == ["0.weight", "2.weight"]
    X = torch.cat([x.reshape(-1, 5) for x, _ in batches])
    W0 = model[0].weight.detach().clone()
    W0[:, ::2] = 0
    hidden = torch.relu(X @ W0.T + model[0].bias).double()  # what layer 2 sees after layer 0 was pruned
    torch.testing.assert_close(seen["2.weight"], hidden.T @ hidden / 12)
    assert torch.equal(pruned[2].weight[:, ::2], torch.zeros(4, 3))


def test_a_layer_called_twice_is_calibrated_on_both_calls():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared, self.out = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.out(self.shared(self.shared(x)))

    model, x = Twice(), torch.randn(4, 3)
    seen = {}
    prune_sequentially(model, [x], lambda name, layer, H: seen.setdefault(name, H), ["shared.weight"])
    X = torch.cat([x, model.shared(x).detach()]).double()
    torch.testing.assert_close(seen["shared.weight"], X.T @ X / 8)


def test_masked_model_is_calibrated_through_its_masks():
    model = _mlp()
    mp.apply_masks(model, {"0.weight": torch.rand(6, 5) > 0.5})
    x = torch.randn(7, 5)
    H = input_hessians(model, [x], ["2.weight"])
    hidden = torch.relu(model[0](x)).double()
    torch.testing.assert_close(H["2.weight"], hidden.T @ hidden / 7)


def test_batches_as_pairs_tensors_and_generators():
    xs = [torch.randn(2, 5) for _ in range(3)]
    assert len(calibration_batches(xs)) == 3
    assert len(calibration_batches(((x, x) for x in xs), max_batches=2)) == 2
    assert calibration_batches([(xs[0], torch.zeros(2))])[0] is xs[0]


@pytest.mark.parametrize("batches, error, match", [
    ("text", TypeError, "batches must be"),
    ({"x": 1}, TypeError, "batches must be"),
    ([], ValueError, "empty"),
    ([3], TypeError, "batches must yield"),
    ([torch.randn(2, 7)], ValueError, "cannot run"),
])
def test_bad_batches_are_refused_and_the_model_unchanged(batches, error, match):
    model = _mlp()
    kept = Unchanged(model)
    with pytest.raises(error, match=match):
        input_hessians(model, batches)
    kept.check()


@pytest.mark.parametrize("names, error, match", [
    (["nope.weight"], ValueError, "unknown"),
    ([], ValueError, "empty"),
    ([3], TypeError, "names must be"),
    (["0.bias"], ValueError, "unknown"),
])
def test_bad_names_are_refused(names, error, match):
    with pytest.raises(error, match=match):
        target_layers(_mlp(), names)


def test_what_cannot_be_calibrated_is_refused_by_name():
    with pytest.raises(ValueError, match="only prunable layer"):
        target_layers(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="groups=2"):
        target_layers(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1)))
    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1))
    tied[1].weight = tied[0].weight
    with pytest.raises(ValueError, match="shared weight"):
        target_layers(tied)
    broken = _mlp()
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'0.weight' contains NaN|0.weight contains NaN"):
        target_layers(broken)
    with pytest.raises(TypeError, match="model must be"):
        target_layers("model")


def test_unused_layer_and_bad_options_are_refused():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.head(self.a(x))

    with pytest.raises(ValueError, match=r"\['b.weight'\] did not run"):
        input_hessians(Unused(), [torch.randn(2, 3)])
    with pytest.raises(ValueError, match="max_batches"):
        input_norms(_mlp(), [torch.randn(2, 5)], max_batches=0)
    with pytest.raises(TypeError, match="prune_layer"):
        prune_sequentially(_mlp(), [torch.randn(2, 5)], "zero")
