"""Wanda: |W| * ||X_j||_2 scores, per-row and N:M masks, parity with torchao's WandaSparsifier."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from unchanged import Unchanged

import minprune as mp
from minprune.one_shot.wanda import row_mask, wanda, wanda_scores
from minprune.structured.nm_sparsity import is_nm, nm_mask


def _net(d=8, hidden=8, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 8), nn.ReLU(), nn.Linear(8, 3))


def _batches(d=8, seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.1, 3.0, d)  # inputs of very different loudness, so Wanda differs from magnitude
    return [(torch.randn(16, d, generator=g) * scale, torch.zeros(16, dtype=torch.long)) for _ in range(n)]


def test_closed_form_on_a_tiny_layer():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 1.0, -1.0, 2.0]]))
    x = torch.tensor([[3.0, 0.0, 0.0, 4.0], [4.0, 1.0, 0.1, 3.0]])  # column norms 5, 1, 0.1, 5
    model = nn.Sequential(layer, nn.Linear(2, 1))
    scores = wanda_scores(model, [x], ["0.weight"])["0.weight"]
    norms = torch.tensor([5.0, 1.0, 0.1, 5.0])
    torch.testing.assert_close(scores, layer.weight.detach().abs() * norms)  # [[5, 2, .3, 2.5], [20, 1, .1, 10]]
    expected = torch.tensor([[True, False, False, True], [True, False, False, True]])
    assert torch.equal(wanda(model, [x], 0.5, names=["0.weight"])["0.weight"], expected)
    two_four = wanda(model, [x], nm=(1, 2), names=["0.weight"])["0.weight"]
    assert torch.equal(two_four, torch.tensor([[True, False, False, True], [True, False, False, True]]))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), sparsity=st.sampled_from([0.1, 0.25, 0.5, 0.6, 0.9]))
def test_each_row_loses_exactly_its_lowest_scores(seed, sparsity):
    model, batches = _net(d=10, seed=seed), _batches(d=10, seed=seed)
    scores = wanda_scores(model, batches)
    masks = wanda(model, batches, sparsity)
    for name, mask in masks.items():
        s = scores[name]
        k = mp.n_pruned(s.shape[1], sparsity)
        assert ((~mask).sum(1) == k).all()
        for row, keep in zip(s, mask):  # brute force: every pruned score <= every kept score of its row
            if k:
                assert row[~keep].max() <= row[keep].min()


def test_nm_masks_are_nm_and_rank_the_wanda_scores():
    model, batches = _net(), _batches()
    scores = wanda_scores(model, batches)
    masks = wanda(model, batches, nm=(2, 4))
    for name, mask in masks.items():
        assert is_nm(mask, 2, 4) and int(mask.sum()) == mask.numel() // 2
        assert torch.equal(mask, nm_mask(scores[name], 2, 4))


def test_wanda_is_not_magnitude_when_inputs_differ_in_loudness():
    model, batches = _net(), _batches()
    by_magnitude = row_mask(model[0].weight.detach().abs(), 0.5)
    assert not torch.equal(wanda(model, batches, 0.5)["0.weight"], by_magnitude)


def test_conv_layers_score_their_unfolded_inputs():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    x = torch.randn(3, 2, 5, 5)
    s = wanda_scores(model, [x])["0.weight"]
    patches = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    expected = model[0].weight.detach().abs() * patches.norm(dim=0).view(1, 2, 3, 3)
    torch.testing.assert_close(s, expected)
    mask = wanda(model, [x], nm=(2, 6))["0.weight"]
    assert is_nm(mask, 2, 6)


def test_the_masks_work_with_the_kit():
    model, batches = _net(), _batches()
    kept = Unchanged(model)
    masks = wanda(model, batches, 0.5)
    kept.check()  # pure
    assert torch.equal(mp.make_masks(wanda_scores(model, batches), 0.5)["0.weight"].sum(), masks["0.weight"].sum())
    mp.apply_masks(model, masks)
    assert mp.masks_sparsity(mp.get_masks(model)) == 0.5
    mp.make_permanent(model)
    assert int((model[0].weight == 0).sum()) == 32


def test_a_masked_model_keeps_its_pruned_weights_pruned():
    model, batches = _net(), _batches()
    old = torch.ones(8, 8, dtype=torch.bool)
    old[:, 0] = False  # a pruned input column, whatever Wanda would say
    mp.apply_masks(model, {"0.weight": old})
    masks = wanda(model, batches, 0.5)
    assert not masks["0.weight"][:, 0].any()
    assert ((~masks["0.weight"]).sum(1) == 4).all()  # the old zeros count towards the row's sparsity
    crowded = torch.ones(8, 8, dtype=torch.bool)
    crowded[:, :6] = False  # more pruned already than asked for: they stay pruned
    model2 = _net()
    mp.apply_masks(model2, {"0.weight": crowded})
    assert ((~wanda(model2, batches, 0.5)["0.weight"]).sum(1) == 6).all()


def test_float16_models_are_scored():
    model, batches = _net().half(), _batches()
    scores = wanda_scores(model, [(x.half(), y) for x, y in batches])
    assert scores["0.weight"].dtype == torch.float32
    assert ((~wanda(model, batches, 0.5)["0.weight"]).sum(1) == 4).all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sparsity": 1.0}, ValueError, "sparsity"),
    ({"sparsity": -0.1}, ValueError, "sparsity"),
    ({"sparsity": "half"}, ValueError, "sparsity"),
    ({"nm": (2,)}, TypeError, "nm must be a pair"),
    ({"nm": "2:4"}, TypeError, "nm must be a pair"),
    ({"nm": (3, 2)}, ValueError, "nm must be a pair of ints"),
    ({"nm": (2, 4), "sparsity": 0.7}, ValueError, "not both"),
    ({"nm": (2, 3)}, ValueError, "0.weight: rows of 8"),
    ({"max_batches": 0}, ValueError, "max_batches"),
    ({"names": ["x.weight"]}, ValueError, "unknown"),
])
def test_refusals_leave_the_model_unchanged(kwargs, error, match):
    model = _net()
    kept = Unchanged(model)
    with pytest.raises(error, match=match):
        wanda(model, _batches(), **kwargs)
    kept.check()


def _torchao_masks(model, batches, names, **config):
    """Masks torchao's WandaSparsifier gives (on a copy): prepare, calibrate, step, squash."""
    wanda_ao = pytest.importorskip("torchao.sparsity").WandaSparsifier
    twin = mp.copy_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparsifier = wanda_ao(**config)
        sparsifier.prepare(twin, config=[{"tensor_fqn": n} for n in names])
        with torch.no_grad():
            for x, _ in batches:
                twin(x)
        sparsifier.step()
        sparsifier.squash_mask()
    return {n: twin.get_submodule(n.removesuffix(".weight")).weight.detach() != 0 for n in names}


def test_parity_with_torchao_machinery():
    """torchao 0.18 ranks |W| * ||X_j||^2 (its observer keeps the squared norm), over the whole layer when
    unstructured and per group of 4 of a row for 2:4: our norms and selections reproduce both exactly."""
    model, batches, names = _net(d=16), _batches(d=16), ["0.weight", "2.weight"]
    norms = mp.one_shot.calibration.input_norms(model, batches, names)
    squared = {n: model.get_submodule(n[0]).weight.detach().abs() * norms[n].pow(2) for n in names}
    ao = _torchao_masks(model, batches, names, sparsity_level=0.5)
    ours = mp.make_masks(squared, 0.5)  # per layer, as torchao compares
    assert all(torch.equal(ao[n], ours[n]) for n in names)
    ao24 = _torchao_masks(model, batches, names, semi_structured_block_size=4)
    assert all(torch.equal(ao24[n], nm_mask(squared[n], 2, 4)) for n in names)


def test_parity_with_torchao_on_the_papers_score():
    """Feeding torchao inputs scaled by ||X_j||^(-1/2) makes its statistic the paper's ||X_j||_2: then its 2:4
    masks are Wanda's 2:4 masks on the original data."""
    model, batches = _net(d=16), _batches(d=16)
    norms = mp.one_shot.calibration.input_norms(model, batches, ["0.weight"])["0.weight"]
    scaled = [(x / norms.sqrt(), y) for x, y in batches]
    ao24 = _torchao_masks(model, scaled, ["0.weight"], semi_structured_block_size=4)
    assert torch.equal(ao24["0.weight"], wanda(model, batches, nm=(2, 4), names=["0.weight"])["0.weight"])
