"""SET / RigL: constant sparsity after every update, no regrowth of just-dropped weights, ERK, validation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.dynamic.sparse_training import (
    DynamicSparseTrainer,
    SparseConfig,
    cosine_drop_fraction,
    drop_and_grow,
    erk_sparsities,
    layer_sparsities,
    random_mask,
)
from minprune.masked import apply_masks
from minprune.unstructured.masks import n_pruned


def _toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    return DataLoader(TensorDataset(x, x.flatten(1)[:, :10].argmax(1)), batch_size=32, shuffle=True, generator=g)


class Spy(DynamicSparseTrainer):
    """Checks the invariants around every update."""

    def update(self, model, step):
        before = {n: m.clone() for n, m in self.masks.items()}
        n_rows = len(self.updates)
        super().update(model, step)
        for row in self.updates[n_rows:]:
            old, new = before[row["layer"]], self.masks[row["layer"]]
            assert int(new.sum()) == int(old.sum())  # sparsity constant, exactly
            dropped, grown = old & ~new, ~old & new
            assert int(dropped.sum()) == row["pruned"] == row["regrown"] == int(grown.sum())
            assert not (dropped & new).any()  # a weight dropped now is not regrown now
        self.checked = getattr(self, "checked", 0) + 1


@pytest.mark.parametrize("method, distribution", [("rigl", "erk"), ("set", "uniform"), ("rigl", "uniform"),
                                                  ("rigl", "er"), ("set", "er")])
def test_sparsity_constant_and_no_immediate_regrowth(method, distribution):
    mp.seed_everything(0)
    model = mp.build("lenet300")
    extras = dict(rescale_init=True, accumulate=True) if distribution == "er" else {}
    cfg = SparseConfig(sparsity=0.8, method=method, distribution=distribution, interval=2, end=16, **extras)
    dst = Spy(model, cfg)
    expected = {n: 1 - int(m.sum()) / m.numel() for n, m in dst.masks.items()}
    mp.fit(model, _toy(), mp.TrainConfig(epochs=4, lr=3e-3), callbacks=[dst], progress=False)
    assert dst.checked == 7  # steps 2, 4, ..., 14 (end=16 excluded)
    assert sum(r["pruned"] for r in dst.updates) > 0  # connectivity really moved
    params = dict(model.named_parameters())
    for name, mask in dst.masks.items():
        assert 1 - int(mask.sum()) / mask.numel() == expected[name]
        assert torch.all(params[name][~mask] == 0)  # pruned weights are exactly zero after training


def test_uniform_counts_follow_the_one_rounding_rule():
    model = mp.build("lenet5")
    dst = DynamicSparseTrainer(model, SparseConfig(sparsity=0.9, distribution="uniform"))
    params = dict(model.named_parameters())
    for name, mask in dst.masks.items():
        assert int((~mask).sum()) == n_pruned(mask.numel(), 0.9)
        assert int(torch.count_nonzero(params[name])) <= int(mask.sum())


@settings(max_examples=30, deadline=None)
@given(sparsity=st.floats(0.05, 0.98), dims=st.lists(st.tuples(st.integers(2, 300), st.integers(2, 300)),
                                                      min_size=1, max_size=4))
def test_erk_total_density_and_ordering(sparsity, dims):
    shapes = {f"l{i}.weight": d for i, d in enumerate(dims)}
    out = erk_sparsities(shapes, sparsity)
    total = sum(math.prod(s) for s in shapes.values())
    kept = sum((1 - out[n]) * math.prod(s) for n, s in shapes.items())
    assert kept == pytest.approx((1 - sparsity) * total, rel=1e-6)
    assert all(-1e-9 <= v < 1 for v in out.values())
    # a larger layer (more weights per unit of sum(shape)) is never denser than a smaller one
    ratio = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    for a in shapes:
        for b in shapes:
            if ratio[a] < ratio[b]:
                assert out[a] >= out[b] - 1e-9


def test_rigl_regrows_where_the_gradient_is_largest():
    W = torch.tensor([[0.5, -0.1, 0.0, 0.0], [0.3, 0.2, 0.0, 0.0]])
    mask = W != 0
    grad = torch.tensor([[9.0, 9.0, 1.0, 5.0], [9.0, 9.0, 4.0, 2.0]])  # big grads on active weights are ignored
    new, pruned, regrown = drop_and_grow(W, mask, grad, fraction=0.5)
    assert pruned == regrown == 2
    expected = torch.tensor([[True, False, False, True], [True, False, True, False]])  # drop -0.1, 0.2; grow 5, 4
    assert torch.equal(new, expected)


def test_random_mask_is_exact_and_seeded():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = random_mask((30, 7), 0.9, g1), random_mask((30, 7), 0.9, g2)
    assert torch.equal(a, b) and int((~a).sum()) == n_pruned(210, 0.9)


def test_cosine_drop_fraction_decays_to_zero():
    assert cosine_drop_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert cosine_drop_fraction(100, 0.3, 100) == 0.0


def test_erk_keeps_small_layers_dense_when_needed():
    out = erk_sparsities({"big.weight": (1000, 1000), "tiny.weight": (10, 2)}, 0.5)
    assert out["tiny.weight"] == 0.0 and out["big.weight"] == pytest.approx(0.5 - 20 / 2_000_000 * 0.5, abs=1e-4)


def test_er_ignores_the_kernel_and_keeps_lenet5_convolutions_dense():
    model = mp.build("lenet5")
    out = layer_sparsities(model, 0.9, "er")
    assert out["features.0.weight"] == 0.0 and out["features.3.weight"] == 0.0  # (6+16)/(6*16) is large
    params = dict(model.named_parameters())
    total = sum(params[n].numel() for n in out)
    assert sum(out[n] * params[n].numel() for n in out) == pytest.approx(0.9 * total, rel=1e-6)
    assert erk_sparsities({"a": (8, 4, 3, 3)}, 0.5, include_kernel=False) == pytest.approx({"a": 0.5})


def test_rescale_init_divides_the_kept_weights_by_sqrt_density():
    mp.seed_everything(0)
    model = mp.build("lenet5")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dst = DynamicSparseTrainer(model, SparseConfig(sparsity=0.9, distribution="uniform", rescale_init=True))
    params = dict(model.named_parameters())
    for name, mask in dst.masks.items():
        density = float(mask.float().mean())
        assert torch.allclose(params[name][mask], before[name][mask] / math.sqrt(density))
        assert torch.all(params[name][~mask] == 0)
    assert torch.equal(params["features.0.bias"], before["features.0.bias"])  # biases untouched


def test_accumulate_grows_by_the_gradient_summed_over_the_interval():
    """Two steps whose gradients cancel at one position: the last batch alone would pick it, the sum does not."""
    layer = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[0.5, 0.1, 0.0, 0.0]]))
    cfg = SparseConfig(sparsity=0.5, distribution="uniform", drop_fraction=1.0, interval=2, end=100,
                       accumulate=True)
    dst = DynamicSparseTrainer(layer, cfg)
    dst.masks = {"0.weight": torch.tensor([[True, True, False, False]])}
    for step, grad in [(1, [0.0, 0.0, 3.0, -1.0]), (2, [0.0, 0.0, -3.0, -1.0])]:
        layer[0].weight.grad = torch.tensor([grad])
        dst.on_step_end(layer, step)
    assert torch.equal(dst.masks["0.weight"], torch.tensor([[True, False, False, True]]))  # |sum| 0 vs 2
    assert dst.grad_sums == {}  # the sums restart after every update


@pytest.mark.parametrize("kwargs, message", [
    (dict(sparsity=1.0), "sparsity"), (dict(method="snip"), "method"), (dict(distribution="erdos"), "distribution"),
    (dict(interval=0), "interval"), (dict(drop_fraction=1.5), "drop_fraction"), (dict(accumulate=1), "accumulate"),
    (dict(rescale_init="yes"), "rescale_init"),
])
def test_bad_config_raises_and_leaves_model_untouched(kwargs, message):
    model = mp.build("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        DynamicSparseTrainer(model, SparseConfig(**kwargs))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_without_prunable_layers_is_refused():
    with pytest.raises(ValueError, match="no prunable layers"):
        layer_sparsities(nn.Sequential(nn.ReLU()), 0.5)


def test_already_masked_model_is_refused():
    model = mp.build("lenet300")
    apply_masks(model, {"layers.1.weight": torch.ones(300, 784, dtype=torch.bool)})
    with pytest.raises(ValueError, match="make_permanent"):
        DynamicSparseTrainer(model, SparseConfig())
