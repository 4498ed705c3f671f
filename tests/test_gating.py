"""Neuron gating: sparse inference equals the masked forward, MACs are counted honestly, penalty closes gates."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.dynamic.gating import (
    GatedMLP,
    dense_macs,
    gated_macs,
    gating_loss,
    matching_widths,
    narrow_mlp,
    sparse_forward,
)


def _toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    return DataLoader(TensorDataset(x, x.flatten(1)[:, :10].argmax(1)), batch_size=32, shuffle=True, generator=g)


def _half_closed(seed=0):
    torch.manual_seed(seed)
    gated = GatedMLP(mp.build("lenet300"), rank=8).eval()
    for gate in gated.gates:
        torch.nn.init.normal_(gate.up.bias, 0, 1.0)  # about half the gates open, depending on the input
    return gated


def test_sparse_forward_skips_neurons_and_matches_the_masked_forward():
    gated = _half_closed()
    x = torch.randn(6, 1, 28, 28)
    torch.testing.assert_close(sparse_forward(gated, x), gated(x), atol=1e-5, rtol=1e-5)
    gates = gated.open_gates(x)
    assert 0 < float(gates[0].float().mean()) < 1  # some neurons really are skipped
    assert not torch.equal(gates[0][0], gates[0][1])  # and which ones depends on the input


def test_gated_macs_counts_gates_and_open_neurons():
    gated = _half_closed()
    x = torch.randn(4, 1, 28, 28)
    g1, g2 = gated.open_gates(x)
    n1, n2 = g1.sum(1), g2.sum(1)
    expected = (784 * 8 + 8 * 300) + 784 * n1 + (n1 * 8 + 8 * 100) + n1 * n2 + n2 * 10
    assert torch.equal(gated_macs(gated, x), expected)
    all_open = GatedMLP(mp.build("lenet300"), rank=8).eval()  # gates start open: dense cost plus the gates
    assert int(gated_macs(all_open, x)[0]) == dense_macs(mp.build("lenet300")) + 784 * 8 + 8 * 300 + 300 * 8 + 8 * 100


def test_penalty_closes_gates_and_original_model_is_untouched():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gated = GatedMLP(model, rank=8)
    x = next(iter(_toy()))[0]
    open_before = float(gated.open_gates(x)[0].float().mean())
    mp.fit(gated, _toy(), mp.TrainConfig(epochs=4, lr=1e-2), loss_fn=gating_loss(2.0), progress=False)
    assert float(gated.open_gates(x)[0].float().mean()) < open_before - 0.2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_narrow_mlp_matches_cost_and_keeps_largest_neurons():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    widths = matching_widths(model, 60_000)
    small = narrow_mlp(model, widths)
    assert abs(mp.count_macs(small) - 60_000) < 0.03 * 60_000
    norms = model.layers[1].weight.norm(dim=1)
    kept = set(torch.topk(norms, widths[0]).indices.tolist())
    rows = {i for i in range(300) if any(torch.equal(model.layers[1].weight[i], r) for r in small.layers[1].weight)}
    assert rows == kept


def test_errors():
    with pytest.raises(TypeError, match="LeNet300100"):
        GatedMLP(mp.build("lenet5"))
    with pytest.raises(ValueError, match="rank"):
        GatedMLP(mp.build("lenet300"), rank=0)
    with pytest.raises(ValueError, match="widths"):
        narrow_mlp(mp.build("lenet300"), (400, 10))
    with pytest.raises(ValueError, match="penalty"):
        gating_loss(-1.0)
