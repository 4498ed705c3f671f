"""ONNX export round trips (every model family, dense and compacted), int8 quantization, the CLI, clear errors.

An export takes seconds (torch.export tracing); each test exports at most once and the exports are shared.
"""

import argparse
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import minprune as mp
from minprune.deploy import export as ex
from minprune.deploy.cli import FP32, add_export_parser, export_command, measurements
from minprune.deploy.onnx_int8 import int8_weights_onnx, is_weight_only, quantize_weight
from minprune.energy import EnergyOptions, estimate_energy
from minprune.masked import apply_masks, is_pruned
from minprune.quantization.uniform import FakeQuantMixin, swap_fake_quant
from minprune.structured.surgery import prune_channels

SMALL = {"lenet300": {}, "lenet5": {}, "vgg": {"widths": (4, 8)}, "resnet": {"widths": (4, 8), "blocks": (1, 1)}}


@pytest.fixture(scope="module", autouse=True)
def _reuse_onnx_registry():
    """Test-only speed-up: build torch.onnx's table of op translations once instead of once per export.

    (Uses a private torch API; if it moved, the tests simply run slower.)
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    original, cache = _registration.ONNXRegistry.__dict__["from_torchlib"], {}

    def cached(cls, opset_version=None, **kwargs):
        key = opset_version
        if key not in cache:
            args = {} if opset_version is None else {"opset_version": opset_version}
            cache[key] = original.__func__(cls, **args, **kwargs)
        return cache[key]

    _registration.ONNXRegistry.from_torchlib = classmethod(cached)
    yield
    _registration.ONNXRegistry.from_torchlib = original


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _model(arch, variant):
    torch.manual_seed(0)
    model = mp.build(arch, **SMALL[arch]).eval()
    return prune_channels(model, 0.5).eval() if variant == "compacted" else model


@pytest.mark.parametrize("variant", ["dense", "compacted"])
@pytest.mark.parametrize("arch", list(SMALL))
def test_round_trip_matches_pytorch_at_any_batch_size(arch, variant, tmp_path):
    model = _model(arch, variant)
    before = _state(model)
    result = ex.export_onnx(model, tmp_path / f"{arch}.onnx")
    assert result.max_abs_diff <= ex.FLOAT_ATOL and result.notes == []
    onnx.checker.check_model(onnx.load(result.path))
    assert result.path.stat().st_size == result.bytes
    assert list(tmp_path.iterdir()) == [result.path]  # atomic write: no temp file left behind
    sess = ex.session(result.path, threads=1)
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(batch, *model.input_shape)
        assert ex.max_abs_diff(model, sess, x) <= ex.FLOAT_ATOL
    assert _same_state(before, model.state_dict())  # export worked on a copy
    n_params = sum(p.numel() for p in model.parameters())
    n_onnx = sum(onnx.numpy_helper.to_array(t).size for t in result.proto.graph.initializer)
    bn_stats = 2 * sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert n_onnx <= n_params + bn_stats + 16  # the model's tensors (+ a few shape constants), nothing else


def test_deployable_copy_makes_masks_permanent_and_leaves_model_alone():
    model = mp.build("lenet300")
    apply_masks(model, {"layers.1.weight": torch.rand(300, 784) > 0.5})
    before = _state(model)
    plain, notes = mp.deployable_copy(model)
    assert not is_pruned(plain) and is_pruned(model) and "permanent" in notes[0]
    assert _same_state(before, model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(plain(x), model.eval()(x))
    assert not any("mask" in k or "orig" in k for k in plain.state_dict())


def test_deployable_copy_strips_fake_quant():
    model = swap_fake_quant(mp.build("lenet5"), 4)
    x = torch.randn(3, 1, 28, 28)
    plain, notes = mp.deployable_copy(model)
    assert "fake-quant" in notes[0]
    assert not any(isinstance(m, FakeQuantMixin) for m in plain.modules())
    assert any(isinstance(m, FakeQuantMixin) for m in model.modules())  # the original is untouched
    torch.testing.assert_close(plain(x), model.eval()(x))


def test_pytorch_int8_model_is_refused_with_advice():
    model = mp.build("lenet300").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(ValueError, match="quantize_onnx"):
        mp.deployable_copy(int8)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown export format 'tflite'; choose one of onnx"):
        ex.check_format("tflite")


@pytest.fixture(scope="module")
def cnn():
    splits = mp.load("mnist-small")
    torch.manual_seed(0)
    model = mp.build("lenet5").eval()
    return model, ex.export_onnx(model).proto, splits


def test_static_int8_for_cnns_needs_calibration_and_is_close(cnn):
    model, proto, splits = cnn
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for missing in (None, torch.empty(0, 1, 28, 28)):
        with pytest.raises(ValueError, match="calibration data"):
            ex.quantize_onnx(proto, missing)
    assert copy == proto  # the failed calls changed nothing
    x, _ = splits.sample(128, "train")
    int8 = ex.quantize_onnx(proto, x)
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "QLinearConv", "QGemm", "DequantizeLinear"} <= ops and "Conv" not in ops
    assert int8.ByteSize() < proto.ByteSize() / 2.5
    sess = ex.session(int8)
    out, ref = ex.run_session(sess, x), model(x).detach()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    assert ex.max_abs_diff(model, sess, x) > 0  # int8 is an approximation, not the same model


def test_int8_weights_in_float_compute_are_small_close_and_folded_at_load(cnn, tmp_path):
    model, proto, splits = cnn
    stored = int8_weights_onnx(proto)
    assert proto.graph.initializer[0].data_type == onnx.TensorProto.FLOAT  # the float model is untouched
    int8_inits = [i for i in stored.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len([i for i in int8_inits if i.name.endswith("_int8")]) == 5  # 2 Conv + 3 Gemm weights
    assert stored.ByteSize() < proto.ByteSize() / 3.5 and is_weight_only(stored) and not is_weight_only(proto)
    x, _ = splits.sample(64, "test")
    sess = ex.session(stored)
    out, ref = ex.run_session(sess, x), model(x).detach()
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()  # int8 weights: a small, nonzero error
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.95
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(stored.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert "DequantizeLinear" not in {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}


def test_weight_quantization_by_hand_and_errors(cnn):
    W = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)  # channel 1 pruned to zero
    q, scale = quantize_weight(W, axis=0)
    assert scale.tolist() == pytest.approx([2 / 127, 1.0]) and q.dtype == np.int8
    assert q.tolist() == [[64, -127, 32], [0, 0, 0]]  # 1 / (2/127) = 63.5 -> 64 (round half to even)
    with pytest.raises(ValueError, match="op_types"):
        int8_weights_onnx(cnn[1], op_types=["Relu"])
    with pytest.raises(ValueError, match="no float"):
        int8_weights_onnx(int8_weights_onnx(cnn[1]))


def test_max_abs_diff_detects_a_different_model_and_ort_measurements(cnn):
    model, proto, splits = cnn
    sess = ex.session(proto)
    x, _ = splits.sample(16, "test")
    torch.manual_seed(1)
    assert ex.max_abs_diff(mp.build("lenet5"), sess, x) > 1e-2  # other weights: a mismatch is detected
    loader = splits.loader("test", 500)
    assert ex.onnx_accuracy(sess, loader) == pytest.approx(mp.evaluate(model, loader)["acc"])
    ms = mp.timing.interleaved_latency({"torch": model, "onnx": sess}, (1, 28, 28), batch_size=4, rounds=2, per_round=1)
    assert set(ms) == {"torch", "onnx"} and all(v > 0 for v in ms.values())
    with pytest.raises(ValueError, match="method"):
        ex.quantize_onnx(proto, x, method="int4")
    with pytest.raises(ValueError, match="threads"):
        ex.session(proto, threads=0)


def test_cli_measurements_count_energy_at_the_precision_given(cnn):
    model, proto, splits = cnn
    precision = EnergyOptions(weight_bits=8)
    table = measurements(model, proto, splits, precision=precision, rounds=1)
    assert table.column("runtime") == ["pytorch eager (fp32)", "onnxruntime (int8 weights, fp32 math)"]
    assert table.column("energy_uj") == [estimate_energy(model, options=FP32)["total_uj"],
                                         estimate_energy(model, options=precision)["total_uj"]]
    assert measurements(model, proto, splits, rounds=1).column("runtime")[1] == "onnxruntime (fp32)"


def _cli_args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["export", str(tmp_path / "model.pt"), *extra])


def test_cli_exports_a_masked_model_to_dynamic_int8(tmp_path, capsys):
    model = mp.build("lenet300")
    apply_masks(model, {"layers.1.weight": torch.rand(300, 784) > 0.8})
    mp.save_model(tmp_path / "model.pt", model)
    assert export_command(_cli_args(tmp_path, "--int8")) == 0
    out = capsys.readouterr().out
    assert "made permanent on a copy" in out and "ok" in out and "onnxruntime (int8)" in out
    int8 = onnx.load(tmp_path / "model.int8.onnx")
    assert "DynamicQuantizeLinear" in {n.op_type for n in int8.graph.node}  # an MLP: dynamic quantization
    assert not any("mask" in t.name for t in int8.graph.initializer)


def test_cli_exports_int8_weights_and_refuses_both_int8_flags(tmp_path, capsys):
    mp.save_model(tmp_path / "model.pt", mp.build("lenet5"))
    with pytest.raises(ValueError, match="choose one of"):
        export_command(_cli_args(tmp_path, "--int8", "--int8-weights"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert export_command(_cli_args(tmp_path, "--int8-weights")) == 0
    out = capsys.readouterr().out
    assert "int8 weights: max |diff|" in out and "int8 weights, fp32 math" in out
    stored = onnx.load(tmp_path / "model.int8w.onnx")
    assert is_weight_only(stored) and "Conv" in {n.op_type for n in stored.graph.node}


def test_cli_refuses_unknown_format_and_mismatched_data_before_writing(tmp_path):
    mp.save_model(tmp_path / "model.pt", mp.build("lenet300", input_shape=(1, 8, 8)))
    with pytest.raises(SystemExit):  # argparse refuses it, listing the choices
        _cli_args(tmp_path, "--format", "tflite")
    with pytest.raises(ValueError, match="unknown export format"):  # and so does the command itself
        export_command(argparse.Namespace(**{**vars(_cli_args(tmp_path)), "format": "tflite"}))
    with pytest.raises(ValueError, match="expects"):
        export_command(_cli_args(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
