"""Tests for minprune/int8.py: real int8 weights, outputs close to float, clear errors.

torch.ao.quantization warns that it is deprecated (see the module docstring for why it is still the path
used here); those DeprecationWarnings are expected and filtered for this file only.
"""

import copy

import pytest
import torch
from torch import nn

import minprune as mp
from minprune import int8, kmeans
from minprune.measure import num_threads

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Please use quant_min")


def _model(arch: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return mp.build(arch, **kwargs).eval()


def _unchanged(model, before) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dynamic_int8_has_int8_weights_and_close_outputs():
    model = _model("lenet300", hidden=(64, 32))
    q = int8.dynamic_int8(model)
    assert len(int8.int8_weights(q)) == 3 and set(int8.int8_weights(q).values()) == {torch.qint8}
    x = torch.randn(16, 1, 28, 28)
    assert (q(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()
    assert mp.size_on_disk(q)["bytes"] * 3 < mp.size_on_disk(model)["bytes"]


@pytest.mark.parametrize("arch,kwargs", [("lenet5", {}), ("resnet", {"widths": (8, 16), "blocks": (1, 1)})])
def test_static_int8_quantizes_convs_and_stays_close(arch, kwargs):
    model = _model(arch, **kwargs)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(32, 1, 28, 28)
    q = int8.static_int8(model, [x[:16], x[16:]])
    assert _unchanged(model, before)
    weights = int8.int8_weights(q)
    assert any("conv" in n or "features" in n or "stem" in n for n in weights)
    out, ref = q(x), model(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.8
    with pytest.raises(ValueError, match="expects input of shape"):
        q(torch.randn(2, 3, 28, 28))


def test_qat_round_trip_gives_int8_model():
    model = _model("lenet5")
    prepared = int8.prepare_qat_int8(model)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    nn.functional.cross_entropy(prepared(x), y).backward()
    opt.step()
    q = int8.convert_qat_int8(prepared)
    assert q.method == "qat" and len(int8.int8_weights(q)) == 5
    assert (q(x).argmax(1) == prepared.eval()(x).argmax(1)).float().mean() > 0.8


def test_empty_calibration_data_is_refused():
    model = _model("lenet5")
    for empty in ([], torch.empty(0, 1, 28, 28)):
        with pytest.raises(ValueError, match="calibration data is empty"):
            int8.static_int8(model, empty)


def test_layers_the_backend_cannot_quantize_dynamically_are_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    model.input_shape = (1, 8, 8)
    with pytest.raises(ValueError, match="nn.Linear layers only"):
        int8.dynamic_int8(model)


def test_nothing_quantized_is_an_error():
    class OnlyNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_shape = (4,)
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(x)

    with pytest.raises(ValueError, match="quantized none of the layers"):
        int8.static_int8(OnlyNorm().eval(), [torch.randn(4, 4)])


def test_pruned_or_shared_models_must_be_made_plain_first():
    model = _model("lenet300", hidden=(16, 8))
    torch.nn.utils.prune.l1_unstructured(model.layers[1], "weight", amount=0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        int8.dynamic_int8(model)
    plain = _model("lenet300", hidden=(16, 8))
    kmeans.share_weights(plain, 4)
    with pytest.raises(ValueError, match="unshare_weights"):
        int8.static_int8(plain, [torch.randn(2, 1, 28, 28)])


def test_auto_engine_is_onednn_for_cnns_and_x86_for_mlps():
    assert int8.pick_engine(_model("lenet5")) == "onednn"
    assert int8.pick_engine(_model("lenet300", hidden=(16, 8))) == "x86"
    assert int8.pick_engine(_model("lenet5"), "fbgemm") == "fbgemm"
    with pytest.raises(ValueError, match="engine must be one of"):
        int8.static_int8(_model("lenet5"), [torch.randn(2, 1, 28, 28)], engine="tpu")


@pytest.mark.parametrize("engine", ["x86", "onednn"])
def test_each_engine_runs_under_its_own_engine_whatever_the_global_one(engine):
    model = _model("lenet5")
    x = torch.randn(8, 1, 28, 28)
    q = int8.static_int8(model, [x], engine=engine)
    assert q.engine == engine and q.recipe["engine"] == engine
    before = torch.backends.quantized.engine
    with num_threads(1):  # oneDNN int8 is deterministic only at 1 thread
        ref = q(x)
        other = "onednn" if engine == "x86" else "x86"
        torch.backends.quantized.engine = other
        try:
            assert torch.equal(q(x), ref)
            assert torch.backends.quantized.engine == other  # restored after the forward pass
        finally:
            torch.backends.quantized.engine = before
    assert (ref.argmax(1) == model(x).argmax(1)).float().mean() > 0.7


def test_int8_weight_linear_stores_int8_and_computes_with_the_dequantized_weight():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    layer = int8.Int8WeightLinear(linear)
    state = layer.state_dict()
    assert set(state) == {"weight_int8", "weight_scale", "bias"} and state["weight_int8"].dtype == torch.int8
    assert state["weight_int8"].abs().max() == 127  # symmetric: each row's largest weight maps to +-127
    step = layer.weight_scale[:, None]
    assert ((layer.weight - linear.weight).abs() <= step / 2 + 1e-7).all()  # within half a step per row
    x = torch.randn(3, 6)
    assert torch.allclose(layer(x), x @ layer.weight.T + linear.bias)
    state["weight_int8"] = -state["weight_int8"]
    layer.load_state_dict(state)  # the float weight follows what is loaded
    assert torch.equal(layer.weight, state["weight_int8"].float() * step)


def test_linear_weights_only_keeps_convolutions_int8_and_linear_arithmetic_float():
    model = _model("lenet5")
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(32, 1, 28, 28)
    q = int8.static_int8(model, [x], linear_weights_only=True)
    assert _unchanged(model, before)
    kinds = [type(m).__name__ for m in q.modules()]
    assert kinds.count("Int8WeightLinear") == 3 and kinds.count("ConvReLU2d") == 2
    assert not any(isinstance(m, nn.Linear) for m in q.modules())  # every Linear was swapped
    assert sum(k.endswith("weight_int8") for k in int8.int8_weights(q)) == 3
    out, ref = q(x), model(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    assert q.recipe["linear_weights_only"] is True
