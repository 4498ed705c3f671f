"""Tests for minprune/quantization/int8.py and int8_modules.py: real int8 weights, outputs close to float, clear errors.

torch.ao.quantization warns that it is deprecated (see the module docstring for why it is still the path
used here); those DeprecationWarnings are expected and filtered for this file only.
"""

import copy

import pytest
import torch
from torch import nn

import minprune as mp
from minprune.quantization import engines as int8_engines
from minprune.quantization import int8, int8_modules, kmeans
from minprune.timing import num_threads

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Please use quant_min")


MAC = ["qnnpack", "none"]  # torch.backends.quantized.supported_engines on an Apple M-series Mac (ARM)
X86 = ["qnnpack", "none", "onednn", "x86", "fbgemm"]  # on an x86 PC
HERE = torch.backends.quantized.supported_engines


def _model(arch: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return mp.build(arch, **kwargs).eval()


def _engines(monkeypatch, engines: list[str]) -> None:
    """Let int8 see only `engines`, as if on another machine (the kernels used must still exist here)."""
    monkeypatch.setattr(int8_engines, "supported_engines", lambda: list(engines))


def _needs(*engines: str):
    missing = [e for e in engines if e not in HERE]
    return pytest.mark.skipif(bool(missing), reason=f"this PyTorch build has no {missing} quantized engine")


def _close(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """Within 10% of the output scale (plus a little): int8 rounding, not a different function."""
    return bool((out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05)


def _weight_qschemes(q: nn.Module) -> set:
    """The qschemes of the stored int8 weights (quantized conv weights and packed Linear weights)."""
    schemes = set()
    for value in q.state_dict().values():
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, torch.Tensor) and v.dtype == torch.qint8:
                schemes.add(v.qscheme())
    return schemes


def _unchanged(model, before) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dynamic_int8_has_int8_weights_and_close_outputs():
    model = _model("lenet300", hidden=(64, 32))
    q = int8.dynamic_int8(model)
    assert len(int8_modules.int8_weights(q)) == 3 and set(int8_modules.int8_weights(q).values()) == {torch.qint8}
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
    weights = int8_modules.int8_weights(q)
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
    assert q.method == "qat" and len(int8_modules.int8_weights(q)) == 5
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


@pytest.mark.parametrize("engines,cnn,mlp", [
    (X86, "onednn", "x86"),  # measured on x86 (see the module docstring)
    (["qnnpack", "none", "x86", "fbgemm"], "x86", "x86"),  # an x86 build without oneDNN
    (["qnnpack", "none", "fbgemm"], "fbgemm", "fbgemm"),
    (MAC, "qnnpack", "qnnpack"),  # ARM: Apple silicon, Raspberry Pi
    (["qnnpack", "none", "onednn"], "onednn", "qnnpack")])
def test_auto_engine_takes_the_measured_one_and_qnnpack_where_it_is_missing(engines, cnn, mlp, monkeypatch):
    _engines(monkeypatch, engines)
    assert int8_engines.pick_engine(_model("lenet5")) == cnn
    assert int8_engines.pick_engine(_model("lenet300", hidden=(16, 8))) == mlp
    assert int8_engines.pick_engine(_model("resnet", widths=(4, 8), blocks=(1, 1)), "auto") == cnn
    assert int8_engines.pick_engine(_model("lenet5"), engines[0]) == engines[0]  # a named engine that exists is kept


def test_supported_engines_are_this_builds():
    assert int8_engines.supported_engines() == list(torch.backends.quantized.supported_engines)
    assert "qnnpack" in int8_engines.ENGINES and "none" not in int8_engines.ENGINES


def test_unknown_or_missing_engines_are_refused_before_anything_changes(monkeypatch):
    model = _model("lenet5")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="engine must be one of .*qnnpack.*got 'tpu'"):
        int8.static_int8(model, [torch.randn(2, 1, 28, 28)], engine="tpu")
    _engines(monkeypatch, MAC)
    with pytest.raises(RuntimeError, match=r"no 'onednn' quantized engine .*\['qnnpack', 'none'\].*\['qnnpack'\]"):
        int8.static_int8(model, [torch.randn(2, 1, 28, 28)], engine="onednn")
    _engines(monkeypatch, ["none"])
    with pytest.raises(RuntimeError, match=r"LeNet5 \(a model with convolutions.*has only \['none'\]"):
        int8.static_int8(model, [torch.randn(2, 1, 28, 28)])
    with pytest.raises(RuntimeError, match="LeNet300100 .a model without convolutions"):
        int8.dynamic_int8(_model("lenet300", hidden=(16, 8)))
    with pytest.raises(RuntimeError, match="found no int8 engine"):
        int8.prepare_qat_int8(model)
    assert _unchanged(model, before)


@_needs("qnnpack")
def test_on_a_mac_auto_quantizes_lenets_with_qnnpack_end_to_end(monkeypatch):
    _engines(monkeypatch, MAC)
    x = torch.randn(32, 1, 28, 28)
    lenet5, mlp = _model("lenet5"), _model("lenet300")  # full-size LeNet-300-100
    for q, model in [(int8.static_int8(lenet5, [x]), lenet5), (int8.dynamic_int8(mlp), mlp),
                     (int8.static_int8(lenet5, [x], linear_weights_only=True), lenet5)]:
        assert q.engine == "qnnpack" and q.recipe["engine"] == "qnnpack"
        out, ref = q(x), model(x)
        assert _close(out, ref) and (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    assert len(int8_modules.int8_weights(int8.dynamic_int8(mlp))) == 3


@_needs("qnnpack")
@pytest.mark.parametrize("arch,kwargs,method", [
    ("lenet300", {"hidden": (64, 32)}, "dynamic"), ("lenet300", {"hidden": (64, 32)}, "static"),
    ("lenet5", {}, "static"), ("lenet5", {}, "per-layer"), ("lenet5", {}, "linear-weights-only"),
    ("vgg", {"widths": (8, 16)}, "static"), ("resnet", {"widths": (8, 16), "blocks": (1, 1)}, "static")])
def test_qnnpack_int8_models_stay_close_to_float(arch, kwargs, method):
    model = _model(arch, **kwargs)
    x = torch.randn(32, 1, 28, 28)
    if method == "dynamic":
        q = int8.dynamic_int8(model, engine="qnnpack")
    else:
        q = int8.static_int8(model, [x[:16]], engine="qnnpack", per_channel=method != "per-layer",
                             linear_weights_only=method == "linear-weights-only")
    assert q.engine == "qnnpack" and int8_modules.int8_weights(q)
    out, ref = q(x), model(x)
    assert _close(out, ref) and (out.argmax(1) == ref.argmax(1)).float().mean() > 0.8
    per_layer = method in ("dynamic", "per-layer")  # dynamic Linear weights have one scale per layer
    assert _weight_qschemes(q) == {torch.per_tensor_affine if per_layer else torch.per_channel_affine}


@_needs("qnnpack")
@pytest.mark.parametrize("per_channel", [True, False])
def test_qnnpack_qat_fake_quantizes_weights_and_converts_to_int8(per_channel):
    model = _model("lenet5")
    prepared = int8.prepare_qat_int8(model, engine="qnnpack", per_channel=per_channel)
    fake = [m.weight_fake_quant for m in prepared.modules() if hasattr(m, "weight_fake_quant")]
    assert len(fake) == 5 and all(isinstance(f, torch.ao.quantization.FakeQuantizeBase) for f in fake)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    nn.functional.cross_entropy(prepared(x), y).backward()
    opt.step()
    q = int8.convert_qat_int8(prepared)
    assert (q.method, q.engine) == ("qat", "qnnpack") and len(int8_modules.int8_weights(q)) == 5
    assert _weight_qschemes(q) == {torch.per_channel_affine if per_channel else torch.per_tensor_affine}
    out, ref = q(x), prepared.eval()(x)
    assert _close(out, ref) and (out.argmax(1) == ref.argmax(1)).float().mean() > 0.8


@pytest.mark.parametrize("engine", [pytest.param(e, marks=_needs(e)) for e in ("x86", "onednn", "qnnpack")])
def test_each_engine_runs_under_its_own_engine_whatever_the_global_one(engine):
    model = _model("lenet5")
    x = torch.randn(8, 1, 28, 28)
    q = int8.static_int8(model, [x], engine=engine)
    assert q.engine == engine and q.recipe["engine"] == engine
    others = [e for e in HERE if e not in (engine, "none")]
    if not others:
        pytest.skip(f"{engine} is this build's only quantized engine (an ARM Mac): no other one to switch to")
    before = torch.backends.quantized.engine
    with num_threads(1):  # oneDNN int8 is deterministic only at 1 thread
        ref = q(x)
        torch.backends.quantized.engine = others[0]
        try:
            assert torch.equal(q(x), ref)
            assert torch.backends.quantized.engine == others[0]  # restored after the forward pass
        finally:
            torch.backends.quantized.engine = before
    assert (ref.argmax(1) == model(x).argmax(1)).float().mean() > 0.7


def test_int8_weight_linear_stores_int8_and_computes_with_the_dequantized_weight():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    layer = int8_modules.Int8WeightLinear(linear)
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
    assert sum(k.endswith("weight_int8") for k in int8_modules.int8_weights(q)) == 3
    out, ref = q(x), model(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    assert q.recipe["linear_weights_only"] is True


@pytest.mark.parametrize("cpu_vnni, limit, vnni", [(True, None, True), (True, "AVX512_CORE_VNNI", True),
                                                   (True, "avx2", False), (True, "AVX512_CORE", False),
                                                   (False, None, False)])
def test_onednn_observers_follow_the_kernels_that_really_run(monkeypatch, cpu_vnni, limit, vnni):
    """A VNNI CPU forced down to AVX2 kernels (ONEDNN_MAX_CPU_ISA) gets an AVX2 CPU's 7-bit activations."""
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: cpu_vnni)
    if limit is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    assert int8_engines.onednn_has_vnni() is vnni
    assert int8_engines._defaults_of("onednn") == ("onednn" if vnni else "x86")
