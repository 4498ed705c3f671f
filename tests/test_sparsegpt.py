"""SparseGPT: OBS updates with the Cholesky of the damped inverse Hessian, lazy blocks, unstructured and N:M."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from unchanged import Unchanged

import minprune as mp
from minprune.one_shot.sparsegpt import inverse_hessian_factor, sparsegpt, sparsegpt_weight
from minprune.one_shot.wanda import row_mask
from minprune.structured.nm_sparsity import is_nm, nm_mask


def _layer_data(seed, out=6, d=16, n=200, mix=1.0):
    """W (out, d), correlated calibration rows X (n, d) and H = X^T X / n, float64."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.eye(d, dtype=torch.float64) + mix * torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    X = torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing
    W = torch.randn(out, d, generator=g, dtype=torch.float64)
    return W, X, X.T @ X / n


def _error(W, W_new, X):
    return float(((X @ (W - W_new).T) ** 2).sum())


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), sparsity=st.sampled_from([0.25, 0.5, (2, 4), (4, 8)]))
def test_reconstruction_beats_magnitude_and_wanda(seed, sparsity):
    """On a layer of 64 inputs with mildly correlated calibration inputs (rows of X mixed by I + A / 8, A
    Gaussian), the default blocksize. Not a theorem: with blocks much narrower than the row, or strongly
    ill-conditioned inputs, SparseGPT's greedy mask can lose to magnitude on single layers."""
    W, X, H = _layer_data(seed, out=8, d=64, n=512, mix=0.5)
    nm = sparsity if isinstance(sparsity, tuple) else None
    select = (lambda s: row_mask(s, sparsity)) if nm is None else (lambda s: nm_mask(s, *nm))
    W_new, keep = sparsegpt_weight(W, H, 0.5 if nm else sparsity, nm=nm)
    error = _error(W, W_new, X)
    assert error <= _error(W, W * select(W.abs()), X)
    assert error <= _error(W, W * select(W.abs() * X.norm(dim=0)), X)
    assert torch.equal(W_new == 0, ~keep)
    if nm is None:
        assert ((~keep).sum(1) == mp.n_pruned(64, sparsity)).all()  # exactly the sparsity, in every row
    else:
        assert is_nm(keep, *nm) and int(keep.sum()) == W.numel() * nm[0] // nm[1]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), sparsity=st.sampled_from([0.1, 0.3, 0.5, 0.8]), blocksize=st.integers(1, 20))
def test_every_row_loses_exactly_its_share_whatever_the_blocks(seed, sparsity, blocksize):
    W, _, H = _layer_data(seed, d=17)
    W_new, keep = sparsegpt_weight(W, H, sparsity, blocksize=blocksize)
    assert ((~keep).sum(1) == mp.n_pruned(17, sparsity)).all()
    assert torch.equal(W_new == 0, ~keep)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), nm=st.sampled_from([(2, 4), (1, 4), (4, 8)]))
def test_lazy_blocks_change_nothing(seed, nm):
    W, _, H = _layer_data(seed)
    W_new, keep = sparsegpt_weight(W, H, nm=nm, blocksize=8)
    again, keep_again = sparsegpt_weight(W, H, nm=nm, blocksize=128)  # one block: no lazy update
    torch.testing.assert_close(again, W_new)
    assert torch.equal(keep, keep_again)


def _column_by_column(W, H, nm, damp):
    """Algorithm 1 without the lazy blocks, written from the paper: visit each column, choose the N:M mask of
    the next m columns from the current weights, remove, spread the error over all later columns."""
    H = H + damp * H.diagonal().mean() * torch.eye(H.shape[0], dtype=H.dtype)
    U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    W, keep = W.clone(), torch.ones_like(W, dtype=torch.bool)
    n, m = nm
    for i in range(W.shape[1]):
        if i % m == 0:
            group = (W[:, i:i + m] / U.diagonal()[i:i + m]) ** 2
            lowest = group.argsort(dim=1)[:, :m - n]
            keep[:, i:i + m] = torch.ones_like(group, dtype=torch.bool).scatter_(1, lowest, False)
        err = W[:, i] * ~keep[:, i] / U[i, i]
        W[:, i:] -= err[:, None] * U[i, i:][None, :]
    return W, keep


def test_equals_the_column_by_column_algorithm():
    W, _, H = _layer_data(3, d=24)
    ours, keep = sparsegpt_weight(W, H, nm=(2, 4), blocksize=8, damp=0.05)
    reference, keep_ref = _column_by_column(W, H, (2, 4), 0.05)
    assert torch.equal(keep, keep_ref)
    torch.testing.assert_close(ours, reference * keep_ref)


def test_pruning_a_prefix_is_the_least_squares_optimum():
    """Columns 0..k-1 removed: the OBS updates give exactly the best reconstruction by the other columns."""
    W, X, H = _layer_data(7, out=3, d=8)
    W[:, :2] *= 1e-3  # the two lowest scores of every row: sparsity 0.25 removes them
    W_new, keep = sparsegpt_weight(W, H, 0.25, damp=0.0)
    assert not keep[:, :2].any() and keep[:, 2:].all()
    best = torch.linalg.lstsq(X[:, 2:], X @ W.T).solution.T  # (3, 6): minimise ||X W^T - X[:, 2:] V^T||
    torch.testing.assert_close(W_new[:, 2:], best)


def test_huge_damp_is_magnitude_per_row():
    W, _, H = _layer_data(11, d=32)
    _, keep = sparsegpt_weight(W, H, 0.5, damp=1e8)
    assert torch.equal(keep, row_mask(W.abs(), 0.5))


def test_sparsity_zero_changes_nothing_and_dead_inputs_go_first():
    W, X, H = _layer_data(5)
    X[:, 3] = 0  # an input the calibration data never sets
    H = X.T @ X / len(X)
    same, keep = sparsegpt_weight(W, H, 0.0)
    assert torch.equal(same, W) and keep.all()
    _, keep = sparsegpt_weight(W, H, 0.25)
    assert not keep[:, 3].any()


def _gpt():
    torch.manual_seed(0)
    return mp.build("chargpt", n_layer=2, n_embd=16, n_head=2, block_size=8)


def _tokens(n=4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 103, (8, 8), generator=g), torch.zeros(8, 8, dtype=torch.long)) for _ in range(n)]


def test_a_model_pruned_the_kit_way(tmp_path):
    model, batches = _gpt(), _tokens()
    kept = Unchanged(model)
    pruned = sparsegpt(model, batches, 0.5)
    kept.check()  # the model passed in never changes
    masks = mp.get_masks(pruned)
    assert list(masks) == [f"blocks.{i}.{p}.weight" for i in range(2) for p in
                           ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")]
    assert mp.masks_sparsity(masks) == 0.5 and all(((~m).sum(1) == m.shape[1] // 2).all() for m in masks.values())
    x = batches[0][0]
    with torch.no_grad():
        before = pruned.eval()(x)
        loaded, _ = mp.load_model(mp.save_model(tmp_path / "sparsegpt.pt", pruned))
        torch.testing.assert_close(loaded.eval()(x), before)
        mp.make_permanent(pruned)
        torch.testing.assert_close(pruned(x), before)
    assert int((pruned.blocks[0].attn.q.weight == 0).sum()) == 128


def test_model_nm_and_sparsity_zero():
    model, batches = _gpt(), _tokens()
    two_four = sparsegpt(model, batches, nm=(2, 4), blocksize=16)
    assert all(is_nm(m, 2, 4) for m in mp.get_masks(two_four).values())
    dense = sparsegpt(model, batches, 0.0)
    x = batches[0][0]
    with torch.no_grad():
        torch.testing.assert_close(dense.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_on_the_shipped_chargpt_it_beats_wanda_and_magnitude():
    """Held-out loss at 50% on the first two blocks of the pretrained CharGPT, calibrated on 32 sequences."""
    model, text = mp.pretrained("chargpt"), mp.load("pydoc-text")
    calibration, test = text.loader("train", 64, 16, max_batches=2), text.loader("test", 64, 32, max_batches=2)
    names = [n for n in mp.one_shot.calibration.target_layers(model) if n.startswith(("blocks.0", "blocks.1"))]
    ours = sparsegpt(model, calibration, 0.5, names=names)
    wanda = mp.apply_masks(mp.copy_model(model), mp.one_shot.wanda.wanda(model, calibration, 0.5, names=names))
    local = mp.make_masks(mp.magnitude_scores(model, names=names), 0.5)
    magnitude = mp.apply_masks(mp.copy_model(model), local)
    loss = {k: mp.evaluate(m, test)["loss"] for k, m in (("sgpt", ours), ("wanda", wanda), ("mag", magnitude))}
    assert loss["sgpt"] < loss["wanda"] and loss["sgpt"] < loss["mag"], loss


def test_conv_masked_and_float16_models():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 2))
    xs = [torch.randn(8, 4, 6, 6) for _ in range(2)]
    masks = mp.get_masks(sparsegpt(conv, xs, nm=(2, 4), blocksize=4))
    assert list(masks) == ["0.weight", "2.weight"] and all(is_nm(m, 2, 4) for m in masks.values())
    old = torch.rand(4, 4, 3, 3) > 0.3
    mp.apply_masks(conv, {"0.weight": old})
    again = mp.get_masks(sparsegpt(conv, xs, 0.5))["0.weight"]
    assert not (again & ~old).any() and ((~again).flatten(1).sum(1) >= 18).all()
    half = sparsegpt(_gpt().half(), _tokens(2), 0.5)
    assert half.blocks[0].attn.q.weight.dtype == torch.float16
    assert mp.masks_sparsity(mp.get_masks(half)) == 0.5


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sparsity": 1.0}, ValueError, "sparsity"),
    ({"sparsity": float("nan")}, ValueError, "sparsity"),
    ({"damp": -1.0}, ValueError, "damp"),
    ({"damp": float("inf")}, ValueError, "damp"),
    ({"blocksize": 0}, ValueError, "blocksize"),
    ({"blocksize": 6, "nm": (2, 4)}, ValueError, "blocksize must be a multiple of m=4"),
    ({"nm": [2]}, TypeError, "nm must be a pair"),
    ({"nm": (2, 4), "sparsity": 0.3}, ValueError, "not both"),
    ({"nm": (3, 32)}, ValueError, r"blocks\.0\.attn\.q\.weight: rows of 16"),
    ({"names": ["head.bias"]}, ValueError, "unknown"),
    ({"max_batches": -1}, ValueError, "max_batches"),
])
def test_refusals_leave_the_model_unchanged(kwargs, error, match):
    model = _gpt()
    kept = Unchanged(model)
    with pytest.raises(error, match=match):
        sparsegpt(model, _tokens(1), **kwargs)
    kept.check()


def test_bad_layer_inputs_are_refused():
    W, _, H = _layer_data(0)
    with pytest.raises(ValueError, match="H must be a float"):
        sparsegpt_weight(W, H[:4, :4])
    with pytest.raises(ValueError, match="symmetric"):
        sparsegpt_weight(W, H + torch.triu(torch.ones_like(H), 1))
    with pytest.raises(ValueError, match="W must be a 2-D"):
        sparsegpt_weight(W[0], H)
    with pytest.raises(ValueError, match="pruned must be"):
        sparsegpt_weight(W, H, pruned=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="not positive definite"):
        inverse_hessian_factor(-torch.eye(4, dtype=torch.float64), damp=0.0)
    with pytest.raises(TypeError, match="model must be"):
        sparsegpt("gpt", _tokens(1))
    with pytest.raises(ValueError, match="cannot run"):
        sparsegpt(_gpt(), [torch.randn(2, 8)])
