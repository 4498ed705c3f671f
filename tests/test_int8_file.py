"""Tests for minprune/quantization/int8_file.py: int8 files load back to identical outputs, are small, and are safe."""

import pytest
import torch
from torch import nn

import minprune as mp
from minprune.checkpoint import CheckpointError
from minprune.quantization import engines as int8_engines
from minprune.quantization import int8, int8_modules
from minprune.quantization.int8_file import load_int8, save_int8
from minprune.timing import num_threads

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Please use quant_min")


MAC = ["qnnpack", "none"]  # torch.backends.quantized.supported_engines on an Apple M-series Mac (ARM)
HERE = torch.backends.quantized.supported_engines


def _model(arch: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return mp.build(arch, **kwargs).eval()


def _needs(*engines: str):
    missing = [e for e in engines if e not in HERE]
    return pytest.mark.skipif(bool(missing), reason=f"this PyTorch build has no {missing} quantized engine")


def _int8_values(q: nn.Module) -> dict[str, torch.Tensor]:
    """The stored integers of every quantized tensor (conv weights, packed Linear weights, ...)."""
    out = {}
    for key, value in q.state_dict().items():
        for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
            if isinstance(v, torch.Tensor) and v.is_quantized:
                out[f"{key}.{i}"] = v.int_repr()
    return out


def _make(arch: str, kwargs: dict, method: str, engine: str, x: torch.Tensor):
    model = _model(arch, **kwargs)
    if method == "dynamic":
        return model, int8.dynamic_int8(model, engine=engine)
    if method == "qat":
        prepared = int8.prepare_qat_int8(model, engine=engine)
        prepared(x)  # one step of observing, as training would
        return model, int8.convert_qat_int8(prepared)
    return model, int8.static_int8(model, [x], engine=engine, linear_weights_only=method == "linear-weights-only")


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    """Bit-identical outputs, compared at 1 thread: oneDNN's int8 kernels are not deterministic across runs with
    several threads (results differ by one output quantization step), even for the same model object."""
    with num_threads(1):
        return torch.equal(a(x), b(x))


def _round_trip(q, tmp_path):
    info = save_int8(tmp_path / "m.mpq", q)
    assert info["bytes"] == (tmp_path / "m.mpq").stat().st_size
    return info, load_int8(tmp_path / "m.mpq")


@pytest.mark.parametrize("arch,kwargs,method", [
    ("lenet300", {"hidden": (64, 32)}, "dynamic"), ("lenet300", {"hidden": (64, 32)}, "static"),
    ("lenet5", {}, "static"), ("resnet", {"widths": (8, 16), "blocks": (1, 1)}, "static")])
def test_round_trip_gives_identical_outputs_and_a_small_file(arch, kwargs, method, tmp_path):
    model = _model(arch, **kwargs)
    x = torch.randn(16, 1, 28, 28)
    q = int8.dynamic_int8(model) if method == "dynamic" else int8.static_int8(model, [x])
    info, loaded = _round_trip(q, tmp_path)
    assert _same_outputs(loaded, q, x)
    assert (loaded.method, loaded.engine, loaded.input_shape) == (method, q.engine, q.input_shape)
    assert int8_modules.int8_weights(loaded) == int8_modules.int8_weights(q)
    float_bytes = mp.size_on_disk(model)["bytes"]
    assert info["bytes"] < mp.size_on_disk(q)["bytes"]  # smaller than torch.save of the state_dict
    assert info["bytes"] < float_bytes / 4 + 8192  # one byte per weight plus a few KB of scales and layout


def test_linear_weights_only_round_trips(tmp_path):
    model = _model("lenet5")
    x = torch.randn(16, 1, 28, 28)
    q = int8.static_int8(model, [x], per_channel=False, linear_weights_only=True)
    info, loaded = _round_trip(q, tmp_path)
    assert _same_outputs(loaded, q, x) and loaded.recipe["linear_weights_only"] is True
    assert info["bytes"] < mp.size_on_disk(model)["bytes"] / 4 + 8192


def test_compacted_and_qat_models_round_trip(tmp_path):
    compacted = mp.prune_channels(_model("lenet5"), 0.5)
    x = torch.randn(8, 1, 28, 28)
    q = int8.static_int8(compacted, [x])
    assert _same_outputs(_round_trip(q, tmp_path)[1], q, x)
    prepared = int8.prepare_qat_int8(_model("lenet5"))
    prepared(x)  # one step of observing, as training would
    qat = int8.convert_qat_int8(prepared)
    loaded = _round_trip(qat, tmp_path)[1]
    assert loaded.method == "qat" and _same_outputs(loaded, qat, x)


@_needs("qnnpack")
@pytest.mark.parametrize("arch,kwargs,method", [
    ("lenet300", {"hidden": (64, 32)}, "dynamic"), ("lenet300", {}, "static"), ("lenet5", {}, "static"),
    ("lenet5", {}, "linear-weights-only"), ("lenet5", {}, "qat"),
    ("resnet", {"widths": (8, 16), "blocks": (1, 1)}, "static")])
def test_qnnpack_models_round_trip_to_identical_outputs(arch, kwargs, method, tmp_path):
    x = torch.randn(16, 1, 28, 28)
    model, q = _make(arch, kwargs, method, "qnnpack", x)
    info, loaded = _round_trip(q, tmp_path)
    assert (loaded.engine, loaded.recipe["engine"]) == ("qnnpack", "qnnpack")
    assert _same_outputs(loaded, q, x) and int8_modules.int8_weights(loaded) == int8_modules.int8_weights(q)
    assert info["bytes"] < mp.size_on_disk(model)["bytes"] / 4 + 8192


@pytest.mark.parametrize("saved,engines,arch,method,loads_as", [
    pytest.param("onednn", MAC, "lenet5", "static", "qnnpack", marks=_needs("onednn", "qnnpack")),
    pytest.param("x86", MAC, "lenet300", "dynamic", "qnnpack", marks=_needs("x86", "qnnpack")),
    pytest.param("x86", MAC, "lenet5", "linear-weights-only", "qnnpack", marks=_needs("x86", "qnnpack")),
    pytest.param("qnnpack", ["none", "onednn", "x86", "fbgemm"], "lenet5", "static", "onednn",
                 marks=_needs("onednn", "qnnpack"))])
def test_a_file_from_an_engine_this_build_lacks_is_repacked_for_one_it_has(saved, engines, arch, method, loads_as,
                                                                          tmp_path, monkeypatch):
    x = torch.randn(32, 1, 28, 28)
    model, q = _make(arch, {}, method, saved, x)
    save_int8(tmp_path / "m.mpq", q)
    monkeypatch.setattr(int8_engines, "supported_engines", lambda: list(engines))  # as on the other machine
    with pytest.warns(UserWarning, match=f"made with the '{saved}' quantized engine, which this PyTorch build "
                                         f"lacks .*re-packed for '{loads_as}'"):
        loaded = load_int8(tmp_path / "m.mpq")
    assert loaded.engine == loads_as and loaded.recipe["engine"] == saved  # how its scales were chosen
    values, loaded_values = _int8_values(q), _int8_values(loaded)  # the same integers, packed for another engine
    assert values and loaded_values.keys() == values.keys()
    assert all(torch.equal(loaded_values[k], v) for k, v in values.items())
    out, ref = loaded(x), q(x)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()  # other kernels, the same int8 model
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    save_int8(tmp_path / "again.mpq", loaded)  # saved on the other machine, loaded back here: the same file
    monkeypatch.undo()
    assert _same_outputs(load_int8(tmp_path / "again.mpq"), q, x)


@_needs("qnnpack")
def test_a_file_is_refused_clearly_where_no_int8_engine_exists(tmp_path, monkeypatch):
    q = int8.static_int8(_model("lenet5"), [torch.randn(4, 1, 28, 28)], engine="qnnpack")
    save_int8(tmp_path / "m.mpq", q)
    monkeypatch.setattr(int8_engines, "supported_engines", lambda: ["none"])
    with pytest.raises(RuntimeError, match=r"made with the 'qnnpack' quantized engine.*available: \['none'\]"):
        load_int8(tmp_path / "m.mpq")


def test_tampered_or_foreign_files_are_refused(tmp_path):
    q = int8.dynamic_int8(_model("lenet300", hidden=(16, 8)))
    save_int8(tmp_path / "m.mpq", q)
    payload = torch.load(tmp_path / "m.mpq", weights_only=True)
    payload["blobs"]["int8"][0] += 1
    torch.save(payload, tmp_path / "bad.mpq")
    with pytest.raises(CheckpointError, match="integrity"):
        load_int8(tmp_path / "bad.mpq")
    payload = torch.load(tmp_path / "m.mpq", weights_only=True)
    payload["recipe"]["description"]["hidden"] = [16, 9]  # the recipe is covered by the hash too
    torch.save(payload, tmp_path / "bad.mpq")
    with pytest.raises(CheckpointError, match="integrity"):
        load_int8(tmp_path / "bad.mpq")
    torch.save({"format": "something else"}, tmp_path / "other.mpq")
    with pytest.raises(CheckpointError, match="minprune-int8/2"):
        load_int8(tmp_path / "other.mpq")
    (tmp_path / "junk.mpq").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_int8(tmp_path / "junk.mpq")
    with pytest.raises(FileNotFoundError):
        load_int8(tmp_path / "missing.mpq")


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="save_int8 expects"):
        save_int8(tmp_path / "m.mpq", _model("lenet300", hidden=(16, 8)))

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_shape = (4,)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="cannot describe"):
        save_int8(tmp_path / "m.mpq", int8.dynamic_int8(Tiny().eval()))
    assert not (tmp_path / "m.mpq").exists()


def test_scales_that_float32_cannot_hold_are_kept_in_float64():
    from minprune.quantization.int8_file import _pack, _Packer, _unpack

    scales = torch.tensor([0.1, 1 / 3], dtype=torch.float64)  # not float32 values
    q = torch.quantize_per_channel(torch.randn(2, 3), scales, torch.zeros(2, dtype=torch.long), 0, torch.qint8)
    packer = _Packer()
    entry = _pack(q, packer)
    blobs = packer.blobs()
    assert set(blobs) == {"int8", "float64"}  # values and zero points int8, scales float64
    back = _unpack(entry, blobs)
    assert torch.equal(back.int_repr(), q.int_repr()) and torch.equal(back.q_per_channel_scales(), scales)
