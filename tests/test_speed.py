"""Timing helpers: the CSR model computes what the dense one does; latency grids have one row per setting."""

import pytest
import torch

import minprune as mp
from minprune.structured.speed import CSRLinear


def test_csr_model_matches_masked_dense_model():
    torch.manual_seed(0)
    model = mp.build("lenet300").eval()
    mp.prune(model, mp.magnitude_scores(model), 0.9)
    csr = mp.to_csr(model)
    assert all(isinstance(m, CSRLinear) for m in [csr.layers[1], csr.layers[3], csr.layers[5]])
    assert csr.layers[1].weight.layout == torch.sparse_csr
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(csr(x), model(x), atol=1e-5, rtol=1e-5)
    assert hasattr(model.layers[1], "weight_orig")  # the original keeps its masks


@pytest.mark.parametrize("channels_last", [False, True])
def test_latency_grid_rows_and_speedups(channels_last):
    models = {"dense": mp.build("vgg"), "small": mp.prune_channels(mp.build("vgg"), 0.5)}
    if channels_last:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    grid = mp.latency_grid(models, (1, 28, 28), batch_sizes=(1, 2), threads=(1,), repeats=1, warmup=0,
                           channels_last=channels_last)
    assert [(r["threads"], r["batch"]) for r in grid.rows] == [(1, 1), (1, 2)]
    assert all(r["dense"] > 0 and r["small"] > 0 for r in grid.rows)
    ratios = mp.speedups(models, (1, 28, 28), batch_size=2, threads=1, repeats=1, channels_last=channels_last)
    assert ratios["dense"] == 1.0 and ratios["small"] > 0


def test_bad_repeats_refused():
    with pytest.raises(ValueError, match="repeats >= 1"):
        mp.latency_grid({"dense": mp.build("lenet300")}, (1, 28, 28), repeats=0)
