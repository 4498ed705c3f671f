"""N:M masks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.structured.nm_sparsity import (
    is_nm,
    nm_mask,
    nm_masks,
    nm_report,
    semi_structured_supported,
    to_semi_structured,
)


def test_two_four_by_eye():
    W = torch.tensor([[1.0, -5.0, 3.0, 0.5, 9.0, 8.0, -7.0, 6.0]])
    expected = torch.tensor([[False, True, True, False, True, True, False, False]])
    assert torch.equal(nm_mask(W.abs()), expected)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), extra=st.integers(0, 4), rows=st.integers(1, 5), groups=st.integers(1, 4),
       seed=st.integers(0, 99))
def test_property_exactly_n_per_group_and_largest_kept(n, extra, rows, groups, seed):
    m = n + extra
    scores = torch.rand(rows, groups * m, generator=torch.Generator().manual_seed(seed))
    mask = nm_mask(scores, n, m)
    per_group = mask.reshape(rows, groups, m)
    assert (per_group.sum(2) == n).all() and is_nm(mask, n, m)
    kept_min = torch.where(per_group, scores.reshape(rows, groups, m), torch.inf).amin(2)
    dropped_max = torch.where(~per_group, scores.reshape(rows, groups, m), -torch.inf).amax(2)
    assert (kept_min >= dropped_max).all()


def test_conv_rows_and_incompatible_layers():
    model = mp.build("vgg")
    scores = {n: p.detach().abs() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    masks = nm_masks(scores, 2, 4)
    assert "features.0.0.weight" not in masks  # a row of 1*3*3 = 9 weights has no 2:4 pattern
    assert masks["features.1.0.weight"].shape == (16, 16, 3, 3) and is_nm(masks["features.1.0.weight"], 2, 4)
    with pytest.raises(ValueError, match="features.0.0.weight"):
        nm_masks(scores, 2, 4, strict=True)
    with pytest.raises(ValueError, match="0 < n <= m"):
        nm_mask(torch.rand(4, 8), 5, 4)


def test_report_counts():
    model = mp.build("lenet300")
    masks = nm_masks({"layers.3.weight": model.layers[3].weight.detach().abs()}, 2, 4)
    report = nm_report(model, masks, 2, 4)
    assert report["weights"] == 30000 and report["kept"] == 15000 and report["mac_ratio"] == 2.0
    assert report["nm_bytes"] == 15000 * 18 // 8 < report["dense_bytes"]


def test_report_counts_after_the_masks_are_applied():
    """Once applied, the parameter is `weight_orig`: the report must still count the layer (notebook 06)."""
    model = mp.build("lenet300")
    masks = nm_masks(mp.magnitude_scores(model), 2, 4)
    before = nm_report(model, masks, 2, 4)
    mp.apply_masks(model, masks)
    after = nm_report(model, masks, 2, 4)
    assert after == before and after["weights"] == mp.count_params(model) - (300 + 100 + 10)
    assert after["density"] == 0.5 and after["mac_ratio"] == 2.0


@pytest.mark.skipif(semi_structured_supported(), reason="checks the CPU refusal")
def test_semi_structured_refused_on_cpu():
    with pytest.raises(RuntimeError, match="compute capability"):
        to_semi_structured(torch.nn.Linear(8, 8))
