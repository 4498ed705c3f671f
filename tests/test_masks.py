"""Masks: exact counts, one rounding rule, threshold semantics, local vs global, overrides, validation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minprune.unstructured import masks as M


def test_n_pruned_is_the_one_rounding_rule():
    assert M.n_pruned(10, 0.25) == 2  # round half to even, like torch.nn.utils.prune
    assert M.n_pruned(10, 0.35) == 4
    assert M.n_pruned(7, 0.0) == 0
    assert M.n_pruned(1000, 0.999) == 999


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.3, float("nan"), "0.5", True, None])
def test_sparsity_outside_range_is_refused(bad):
    with pytest.raises(ValueError, match="sparsity"):
        M.n_pruned(10, bad)
    with pytest.raises(ValueError):
        M.make_masks({"w": torch.rand(4, 4)}, bad if bad is not None else -1)


def test_topk_mask_ties_go_by_index():
    scores = torch.tensor([1.0, 0.5, 0.5, 0.5, 2.0])
    assert M.topk_mask(scores, 0.4).tolist() == [True, False, False, True, True]


def test_threshold_semantics_strictly_above_is_kept():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3]), "b": torch.tensor([[0.2, 0.5]])}
    masks = M.make_masks(scores, threshold=0.2)
    assert masks["a"].tolist() == [False, False, True]
    assert masks["b"].tolist() == [[False, True]]


def test_global_vs_local():
    scores = {"small": torch.arange(4.0), "big": torch.arange(10.0, 14.0)}
    local = M.make_masks(scores, 0.5)
    glob = M.make_masks(scores, 0.5, scope="global")
    assert local["small"].sum() == 2 and local["big"].sum() == 2
    assert glob["small"].sum() == 0 and glob["big"].sum() == 4


def test_overrides_and_exclude():
    scores = {"a": torch.rand(10, 10), "b": torch.rand(10, 10), "out": torch.rand(10, 10)}
    masks = M.make_masks(scores, 0.9, scope="global", overrides={"out": 0.2}, exclude=["b"])
    assert set(masks) == {"a", "out"}
    assert int((~masks["out"]).sum()) == 20
    assert int((~masks["a"]).sum()) == 90


def test_errors_name_the_problem():
    scores = {"a": torch.rand(3, 3)}
    with pytest.raises(ValueError, match="unknown"):
        M.make_masks(scores, 0.5, overrides={"nope": 0.1})
    with pytest.raises(ValueError, match="unknown"):
        M.make_masks(scores, 0.5, exclude=["nope"])
    with pytest.raises(ValueError, match="NaN"):
        M.make_masks({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ValueError, match="exactly one"):
        M.make_masks(scores, 0.5, threshold=0.1)
    with pytest.raises(ValueError, match="scope"):
        M.make_masks(scores, 0.5, scope="layer")


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=4),
       sparsity=st.floats(0, 0.99), scope=st.sampled_from(["local", "global"]), seed=st.integers(0, 1000))
def test_exact_counts_property(shapes, sparsity, scope, seed):
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}.weight": torch.randint(0, 5, s, generator=g).float() for i, s in enumerate(shapes)}  # many ties
    masks = M.make_masks(scores, sparsity, scope=scope)
    for name, s in scores.items():
        assert masks[name].shape == s.shape and masks[name].dtype == torch.bool
        if scope == "local":
            assert int((~masks[name]).sum()) == M.n_pruned(s.numel(), sparsity)
    if scope == "global":
        total = sum(s.numel() for s in scores.values())
        assert int(sum((~m).sum() for m in masks.values())) == M.n_pruned(total, sparsity)
    # every kept score is >= every pruned score (within the ranking's scope)
    pools = [list(scores)] if scope == "global" else [[n] for n in scores]
    for pool in pools:
        kept = torch.cat([scores[n][masks[n]] for n in pool])
        gone = torch.cat([scores[n][~masks[n]] for n in pool])
        if len(kept) and len(gone):
            assert kept.min() >= gone.max()
    assert M.make_masks(scores, sparsity, scope=scope).keys() == masks.keys()  # deterministic
    assert all(torch.equal(M.make_masks(scores, sparsity, scope=scope)[n], masks[n]) for n in masks)


@settings(max_examples=25, deadline=None)
@given(numel=st.integers(1, 200), sparsity=st.floats(0, 0.99), seed=st.integers(0, 100))
def test_shuffle_masks_keeps_layer_sparsity(numel, sparsity, seed):
    mask = M.topk_mask(torch.rand(numel), sparsity)
    shuffled = M.shuffle_masks({"w": mask}, seed)["w"]
    assert shuffled.shape == mask.shape and int(shuffled.sum()) == int(mask.sum())


def test_shuffle_masks_moves_positions():
    mask = M.topk_mask(torch.arange(1000.0), 0.5)
    assert not torch.equal(M.shuffle_masks({"w": mask}, 0)["w"], mask)


def test_prunable_names_are_linear_and_conv_weights():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3))
    assert M.prunable_names(model) == ["0.weight", "3.weight"]
