"""Why sparsity is not speed: the CSR model computes what the dense one does; latency grids have one row per
setting, state their threads, restore the models' modes, and feed channels_last models NHWC inputs."""

import pytest
import torch
from torch import nn

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
    grid = mp.latency_grid(models, (1, 28, 28), batch_sizes=(1, 2), threads=(1,), repeats=1, warmup=0)
    assert [(r["threads"], r["batch"]) for r in grid.rows] == [(1, 1), (1, 2)]
    assert all(r["dense"] > 0 and r["small"] > 0 for r in grid.rows)
    ratios = mp.speedups(models, (1, 28, 28), batch_size=2, threads=1, repeats=1)
    assert ratios["dense"] == 1.0 and ratios["small"] > 0
    assert all(m.training for m in models.values())  # timed in eval mode, their mode restored


def test_grid_calls_interleave_and_channels_last_models_get_nhwc_inputs():
    seen = []

    class Spy(nn.Module):
        def __init__(self, name, nhwc):
            super().__init__()
            self.name, self.conv = name, nn.Conv2d(2, 4, 3)
            if nhwc:
                self.conv.to(memory_format=torch.channels_last)

        def forward(self, x):
            seen.append((self.name, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
            return self.conv(x)

    models = {"nchw": Spy("nchw", False), "nhwc": Spy("nhwc", True)}
    mp.latency_grid(models, (2, 6, 6), batch_sizes=(2,), threads=(1,), repeats=1, warmup=0)
    # one round, a warm and a timed call per model in turn; the channels_last model sees NHWC inputs
    assert seen == [("nchw", False)] * 2 + [("nhwc", True)] * 2


def test_threads_none_means_the_current_count_and_the_row_says_so():
    before = torch.get_num_threads()
    grid = mp.latency_grid({"a": nn.Linear(4, 2)}, (4,), batch_sizes=(2,), threads=(None, 1), repeats=1, warmup=0)
    assert grid.column("threads") == [before, 1] and torch.get_num_threads() == before


@pytest.mark.parametrize("call, message", [
    (lambda: mp.latency_grid({"dense": nn.Linear(4, 2)}, (4,), repeats=0), "repeats must be a positive int"),
    (lambda: mp.latency_grid({"dense": nn.Linear(4, 2)}, (4,), threads=(1, 0)), "threads must be a positive int"),
    (lambda: mp.latency_grid({}, (4,)), "models must be a non-empty dict"),
    (lambda: mp.speedups({"dense": nn.Linear(4, 2)}, (4,), baseline="fast"), "baseline must be one of the model"),
    (lambda: mp.speedups({"dense": nn.Linear(4, 2)}, (4,), repeats=0), "repeats must be a positive int"),
])
def test_bad_arguments_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
