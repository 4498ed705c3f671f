"""Tests for minprune/quantization/uniform.py: affine and fake quantization (oracle: torch), QAT layer swap."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minprune.quantization import uniform as Q

SETTINGS = settings(max_examples=30, deadline=None)


def _tensor(seed: int, shape=(6, 17), spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * spread


@SETTINGS
@given(bits=st.integers(2, 8), symmetric=st.booleans(), per_channel=st.booleans(), seed=st.integers(0, 10_000))
def test_round_trip_error_is_at_most_half_a_step(bits, symmetric, per_channel, seed):
    x = _tensor(seed)
    axis = 0 if per_channel else None
    scale, zero_point = Q.quant_params(x, bits, symmetric=symmetric, axis=axis)
    q = Q.quantize(x, scale, zero_point, bits, symmetric=symmetric, axis=axis)
    qmin, qmax = Q.qrange(bits, symmetric)
    assert q.dtype == torch.int32 and int(q.min()) >= qmin and int(q.max()) <= qmax
    error = (Q.dequantize(q, scale, zero_point, axis=axis) - x).abs()
    half_step = (scale.reshape(-1, 1) if per_channel else scale) / 2
    assert bool((error <= half_step * (1 + 1e-5)).all())


@SETTINGS
@given(bits=st.integers(2, 8), symmetric=st.booleans(), seed=st.integers(0, 10_000))
def test_zero_is_exactly_representable(bits, symmetric, seed):
    x = _tensor(seed)
    x[0, :5] = 0.0
    for axis in (None, 0, 1):
        out = Q.fake_quantize(x, bits, symmetric=symmetric, axis=axis)
        assert bool((out[0, :5] == 0).all())


@SETTINGS
@given(bits=st.integers(2, 8), symmetric=st.booleans(), seed=st.integers(0, 10_000))
def test_fake_quantize_matches_torch_oracle(bits, symmetric, seed):
    x = _tensor(seed)
    qmin, qmax = Q.qrange(bits, symmetric)
    scale, zero_point = Q.quant_params(x, bits, symmetric=symmetric)
    expected = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), qmin, qmax)
    assert torch.equal(Q.fake_quantize(x, bits, symmetric=symmetric), expected)
    scale, zero_point = Q.quant_params(x, bits, symmetric=symmetric, axis=1)
    expected = torch.fake_quantize_per_channel_affine(x, scale, zero_point.int(), 1, qmin, qmax)
    assert torch.equal(Q.fake_quantize(x, bits, symmetric=symmetric, axis=1), expected)


def test_per_channel_scales_follow_each_channel():
    x = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-100, 100, 9)])  # (2, 9): two very different rows
    scale, zero_point = Q.quant_params(x, 8, symmetric=True, axis=0)
    assert scale.shape == (2,) and torch.equal(zero_point, torch.zeros(2, dtype=torch.int64))
    assert torch.allclose(scale, torch.tensor([1 / 127, 100 / 127]))
    per_tensor = (Q.fake_quantize(x, 4, symmetric=True) - x)[0].abs().max()
    per_channel = (Q.fake_quantize(x, 4, symmetric=True, axis=0) - x)[0].abs().max()
    assert per_channel < per_tensor  # the small row is no longer crushed by the large row's scale


def test_ste_gradient_passes_inside_and_stops_outside_the_range():
    x = torch.tensor([-3.0, -0.4, 0.0, 0.3, 0.9, 5.0], requires_grad=True)
    scale, zero_point = torch.tensor(0.1), torch.tensor(8)  # 4-bit asymmetric grid covers [-0.8, 0.7]
    Q.fake_quantize(x, 4, scale=scale, zero_point=zero_point).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1, 1, 1, 0, 0]))
    oracle = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_tensor_affine(oracle, 0.1, 8, 0, 15).sum().backward()
    assert torch.equal(x.grad, oracle.grad)


@pytest.mark.parametrize("bits", [1, 9, 0, 4.0, True, "8"])
def test_unsupported_bit_widths_are_refused(bits):
    with pytest.raises(ValueError, match="bits must be an int from 2 to 8"):
        Q.qrange(bits)
    model = nn.Sequential(nn.Linear(4, 3))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="bits"):
        Q.swap_fake_quant(model, bits)
    assert type(model[0]) is nn.Linear and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_swap_keeps_parameters_and_strip_restores_plain_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    Q.swap_fake_quant(model, 3)
    assert isinstance(model[0], Q.FakeQuantConv2d) and isinstance(model[2], Q.FakeQuantLinear)
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    x = torch.randn(2, 1, 8, 8)
    out = model(x)
    out.sum().backward()
    assert model[0].weight.grad is not None  # the STE lets QAT train the float weights
    Q.strip_fake_quant(model)
    assert type(model[0]) is nn.Conv2d and type(model[2]) is nn.Linear
    assert torch.allclose(model(x), out)
    assert len(torch.unique(model[2].weight[0])) <= 2**3 - 1  # symmetric 3-bit grid: 7 values per channel


def test_quantize_weights_is_pure_and_on_the_grid():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    before = copy.deepcopy(model.state_dict())
    q = Q.quantize_weights(model, 2, per_channel=False)
    assert torch.equal(model[0].weight, before["0.weight"])
    assert len(torch.unique(q[0].weight)) <= 3


def test_model_without_quantizable_layers_is_refused():
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        Q.swap_fake_quant(nn.Sequential(nn.ReLU()), 8)
