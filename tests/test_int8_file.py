"""Tests for minprune/int8_file.py: compact int8 files load back to identical outputs, are small, and are safe."""

import pytest
import torch
from torch import nn

import minprune as mp
from minprune import int8
from minprune.checkpoint import CheckpointError
from minprune.int8_file import load_int8, save_int8
from minprune.measure import num_threads

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Please use quant_min")


def _model(arch: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return mp.build(arch, **kwargs).eval()


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
    assert int8.int8_weights(loaded) == int8.int8_weights(q)
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


def test_tampered_or_foreign_files_are_refused(tmp_path):
    q = int8.dynamic_int8(_model("lenet300", hidden=(16, 8)))
    save_int8(tmp_path / "m.mpq", q)
    payload = torch.load(tmp_path / "m.mpq", weights_only=True)
    payload["blobs"]["int8"][0] += 1
    torch.save(payload, tmp_path / "bad.mpq")
    with pytest.raises(CheckpointError, match="integrity"):
        load_int8(tmp_path / "bad.mpq")
    torch.save({"format": "something else"}, tmp_path / "other.mpq")
    with pytest.raises(CheckpointError, match="minprune-int8/1"):
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
    from minprune.int8_file import _pack, _Packer, _unpack

    scales = torch.tensor([0.1, 1 / 3], dtype=torch.float64)  # not float32 values
    q = torch.quantize_per_channel(torch.randn(2, 3), scales, torch.zeros(2, dtype=torch.long), 0, torch.qint8)
    packer = _Packer()
    entry = _pack(q, packer)
    blobs = packer.blobs()
    assert set(blobs) == {"int8", "float64"}  # values and zero points int8, scales float64
    back = _unpack(entry, blobs)
    assert torch.equal(back.int_repr(), q.int_repr()) and torch.equal(back.q_per_channel_scales(), scales)
