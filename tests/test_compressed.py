"""Tests for minprune/quantization/compressed.py: the Deep Compression file decodes back to exactly the same weights."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.quantization import compressed, kmeans


def _pruned_shared(seed: int = 0, sparsity: float = 0.9, bits: int = 3):
    torch.manual_seed(seed)
    model = mp.build("lenet300", hidden=(40, 20))
    with torch.no_grad():
        for layer in (model.layers[1], model.layers[3], model.layers[5]):
            layer.weight[torch.rand_like(layer.weight) < sparsity] = 0.0
    return kmeans.share_weights(model, bits)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.0, 1.0), max_gap=st.integers(1, 70))
def test_sparse_encoding_round_trip(seed, density, max_gap):
    g = torch.Generator().manual_seed(seed)
    W = torch.randint(-3, 4, (13, 11), generator=g).float() * (torch.rand(13, 11, generator=g) < density)
    centroids, gaps, indices = compressed.encode_sparse(W, max_gap)
    assert gaps.min(initial=1) >= 1 and gaps.max(initial=1) <= max_gap
    assert torch.equal(compressed.decode_sparse(centroids, gaps, indices, W.shape), W)


def test_file_decodes_to_the_same_model(tmp_path):
    model = _pruned_shared()
    info = compressed.save_compressed(tmp_path / "m.mpdc", model, float_dtype="float32")
    assert info["bytes"] == (tmp_path / "m.mpdc").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["m.mpdc"]  # atomic write leaves no temporary file
    decoded = compressed.load_compressed(tmp_path / "m.mpdc")
    for name, tensor in decoded.state_dict().items():
        module, _, attr = name.rpartition(".")
        assert torch.equal(tensor, getattr(model.get_submodule(module), attr)), name
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(decoded(x), model(x))


def test_float16_biases_and_size_accounting(tmp_path):
    model = _pruned_shared()
    info = compressed.save_compressed(tmp_path / "m.mpdc", model)
    decoded = compressed.load_compressed(tmp_path / "m.mpdc")
    assert torch.equal(decoded.layers[1].bias, model.layers[1].bias.detach().half().float())
    assert torch.equal(decoded.layers[1].weight, model.layers[1].weight)
    assert info["by_tensor"]["layers.1.bias"] == 2 * 40
    dense = mp.size_on_disk(mp.build("lenet300", hidden=(40, 20)))["bytes"]
    assert info["bytes"] * 5 < dense  # 90% zeros and 3-bit indices: far smaller than float32


def test_unshared_weights_are_refused_and_nothing_is_written(tmp_path):
    model = mp.build("lenet300", hidden=(40, 20))
    with pytest.raises(ValueError, match="share them first"):
        compressed.save_compressed(tmp_path / "m.mpdc", model)
    with pytest.raises(ValueError, match="max_gap"):
        compressed.save_compressed(tmp_path / "m.mpdc", _pruned_shared(), max_gap=0)
    assert list(tmp_path.iterdir()) == []


def test_damaged_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "m.mpdc"
    compressed.save_compressed(path, _pruned_shared())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mp.CheckpointError, match="integrity check"):
        compressed.load_compressed(path)
    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(ValueError, match="not a minprune Deep Compression file"):
        compressed.load_compressed(path)


def test_models_with_batchnorm_buffers_round_trip(tmp_path):
    torch.manual_seed(0)
    model = mp.build("vgg", widths=(4, 8))
    with torch.no_grad():
        model.features[0][1].running_mean.uniform_()
    kmeans.share_weights(model, 4)
    compressed.save_compressed(tmp_path / "v.mpdc", model, float_dtype="float32")
    decoded = compressed.load_compressed(tmp_path / "v.mpdc").eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(decoded(x), model.eval()(x), atol=1e-6)
    assert decoded.features[0][1].num_batches_tracked.dtype == torch.int64
    assert np.isclose(float(decoded.features[0][1].running_mean[0]), float(model.features[0][1].running_mean[0]))
