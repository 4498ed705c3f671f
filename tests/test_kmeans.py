
"""Tests for minprune/quantization/kmeans.py: weight sharing keeps zeros, uses 2^bits centroids, trains centroids."""

import copy

import pytest
import torch
import torch.nn.utils.prune  # noqa: F401 (the tests call torch.nn.utils.prune directly)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune.quantization import kmeans


def _sparse_mlp(seed: int = 0, sparsity: float = 0.7) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight[torch.rand_like(layer.weight) < sparsity] = 0.0
    return model


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 16), seed=st.integers(0, 10_000))
def test_kmeans_assigns_every_value_to_its_nearest_centroid(k, seed):
    x = torch.randn(200, generator=torch.Generator().manual_seed(seed))
    centroids, index = kmeans.kmeans_1d(x, k)
    assert centroids.shape == (k,) and index.shape == x.shape
    distances = (x[:, None] - centroids[None, :]).abs()
    assert torch.allclose(distances.gather(1, index[:, None]).squeeze(1), distances.min(1).values)


def test_kmeans_recovers_obvious_clusters():
    x = torch.cat([torch.full((10,), -2.0), torch.full((5,), 0.5), torch.full((7,), 3.0)])
    centroids, index = kmeans.kmeans_1d(x, 3)
    assert torch.allclose(centroids.sort().values, torch.tensor([-2.0, 0.5, 3.0]))
    assert len(torch.unique(index[:10])) == 1


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_sharing_keeps_zeros_and_uses_at_most_2_to_the_bits_values(bits):
    model = _sparse_mlp()
    zeros = {n: p == 0 for n, p in model.named_parameters() if n.endswith("weight")}
    kmeans.share_weights(model, bits)
    for name, layer in (("0.weight", model[0]), ("2.weight", model[2])):
        W = layer.weight
        assert torch.equal(W == 0, zeros[name])
        assert len(torch.unique(W[W != 0])) <= 2**bits
        assert layer.parametrizations.weight[0].centroids.shape == (2**bits,)


def test_centroid_fine_tuning_moves_centroids_not_zeros():
    model = _sparse_mlp()
    kmeans.share_weights(model, 2)
    zeros = model[0].weight == 0
    before = model[0].parametrizations.weight[0].centroids.detach().clone()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("original" not in n for n in trainable)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert not torch.equal(before, model[0].parametrizations.weight[0].centroids)
    assert torch.equal(model[0].weight == 0, zeros)
    assert len(torch.unique(model[0].weight[~zeros])) <= 4


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    model = _sparse_mlp()
    W_plain = model[0].weight.detach().clone()
    kmeans.share_weights(model, 2)
    shared = model[0].parametrizations.weight[0]
    twin = _sparse_mlp()
    with torch.no_grad():  # same weights as plain parameters
        twin[0].weight.copy_(model[0].weight)
        twin[2].weight.copy_(model[2].weight)
    x = torch.randn(8, 20)
    model(x).pow(2).sum().backward()
    twin(x).pow(2).sum().backward()
    g = twin[0].weight.grad
    expected = torch.zeros(4).index_add_(0, shared.index[shared.mask], g[shared.mask])
    assert torch.allclose(shared.centroids.grad, expected, atol=1e-5)
    assert torch.equal(twin[0].weight == 0, W_plain == 0)


def test_unshare_gives_a_plain_model_with_the_same_outputs():
    model = _sparse_mlp()
    kmeans.share_weights(model, 3)
    x = torch.randn(5, 20)
    out = model(x)
    kmeans.unshare_weights(model)
    assert type(model[0]) is nn.Linear and set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert torch.allclose(model(x), out)


def test_bad_input_leaves_the_model_untouched():
    model = _sparse_mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="bits"):
        kmeans.share_weights(model, 9)
    with pytest.raises(ValueError, match="k must be"):
        kmeans.kmeans_1d(torch.randn(5), 0)
    assert set(model.state_dict()) == set(before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pruning_masks_must_be_made_permanent_first():
    model = mp.build("lenet300", hidden=(8, 6))
    torch.nn.utils.prune.l1_unstructured(model.layers[1], "weight", amount=0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        kmeans.share_weights(model, 4)
    assert not hasattr(model.layers[3], "parametrizations")


def test_per_layer_bits_by_name_and_unknown_names_refused():
    model = _sparse_mlp()
    kmeans.share_weights(model, 2, names=["0.weight"])
    kmeans.share_weights(model, 5)
    assert kmeans.shared_layers(model)["0"].centroids.shape == (4,)
    assert kmeans.shared_layers(model)["2"].centroids.shape == (32,)
    with pytest.raises(ValueError, match="cannot share"):
        kmeans.share_weights(_sparse_mlp(), 4, names=["0.bias"])


def test_centroid_gradients_equal_autograd_through_share_weights():
    model = _sparse_mlp(seed=3)
    kmeans.share_weights(model, 3)
    shared = kmeans.shared_layers(model)["0"]
    x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
    with torch.nn.utils.parametrize.cached():  # model[0].weight is one tensor, whose gradient autograd keeps
        W = model[0].weight
        W.retain_grad()
        nn.functional.cross_entropy(model(x), y).backward()
    assert bool((W.grad[~shared.mask] != 0).any())  # the pruned weights have gradients, which must not count
    ours = kmeans.centroid_gradients(W.grad, shared.index, 8, shared.mask)
    assert torch.allclose(ours, shared.centroids.grad, atol=1e-6, rtol=1e-5)
    lr, before = 0.1, shared.centroids.detach().clone()
    expected = kmeans.centroid_step(shared.centroids, shared.index, W.grad, lr, shared.mask)
    torch.optim.SGD([shared.centroids], lr=lr).step()
    assert torch.allclose(expected, shared.centroids.detach(), atol=1e-7)
    assert not torch.equal(before, shared.centroids.detach())


def test_centroid_step_closed_form_and_inputs_untouched():
    centroids = torch.tensor([-0.5, 0.0, 0.5])
    index = torch.tensor([[0, 2, 2], [0, 2, 1]])
    grad = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, 4.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    copies = [t.clone() for t in (centroids, index, grad, mask)]
    assert torch.equal(kmeans.centroid_gradients(grad, index, 3, mask), torch.tensor([4.0, 0.0, -0.5]))
    assert torch.equal(kmeans.centroid_gradients(grad, index, 4), torch.tensor([4.0, 4.0, -0.5, 0.0]))
    new = kmeans.centroid_step(centroids, index, grad, 0.1, mask)
    assert torch.allclose(new, torch.tensor([-0.9, 0.0, 0.55])) and new.dtype == torch.float32
    same = kmeans.centroid_step(centroids, index, grad, 0, mask)
    assert torch.equal(same, centroids) and same.data_ptr() != centroids.data_ptr()
    assert all(torch.equal(a, b) for a, b in zip(copies, (centroids, index, grad, mask)))
    conv = kmeans.centroid_gradients(torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3, dtype=torch.long), 2)
    assert torch.equal(conv, torch.tensor([18.0, 0.0]))


@pytest.mark.parametrize("call, match", [
    (lambda: kmeans.centroid_gradients(torch.ones(3), torch.tensor([0, 1, 4]), 4), "index must hold"),
    (lambda: kmeans.centroid_gradients(torch.ones(3), torch.tensor([0, -1, 2]), 4), "index must hold"),
    (lambda: kmeans.centroid_gradients(torch.ones(3), torch.tensor([[0, 1, 2]]), 4), "index must have the shape"),
    (lambda: kmeans.centroid_gradients(torch.ones(3), torch.tensor([0, 1, 2]), 4, torch.ones(2, dtype=torch.bool)),
     "mask must have the shape"),
    (lambda: kmeans.centroid_gradients(torch.ones(3), torch.tensor([0, 1, 2]), 0), "k must be"),
    (lambda: kmeans.centroid_step(torch.zeros(2, 2), torch.tensor([0, 1]), torch.ones(2), 0.1), "centroids must"),
    (lambda: kmeans.centroid_step(torch.zeros(2), torch.tensor([0, 1]), torch.ones(2), float("nan")), "lr must"),
])
def test_centroid_functions_refuse_bad_inputs_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_centroid_gradients_refuse_a_float_index_and_a_float_mask():
    with pytest.raises(TypeError, match="index must be an integer"):
        kmeans.centroid_gradients(torch.ones(3), torch.tensor([0.0, 1.0, 2.0]), 4)
    with pytest.raises(TypeError, match="mask must be None or a bool"):
        kmeans.centroid_gradients(torch.ones(3), torch.tensor([0, 1, 2]), 4, torch.ones(3))
