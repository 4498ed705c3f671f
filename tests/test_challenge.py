"""The scored challenge of notebook 03 (minprune.course.challenge): its arithmetic, its refusals, and its targets
on the shipped LeNet-300-100 baseline (uniform sparsity fails, the notebook's reference solution passes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.course.challenge import credit

# The notebook's targets and reference solution (notebooks/src/03_weight_pruning.py, Exercise 3.4)
MAX_KEPT, MAX_DROP = 0.15, 2.0
REFERENCE = {"layers.1.weight": 0.88, "layers.3.weight": 0.75, "layers.5.weight": 0.0}


def _tiny():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))  # 20 + 10 prunable weights
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(4))
    loader = DataLoader(TensorDataset(x, model(x).argmax(1).detach()), batch_size=16)  # dense accuracy: 100%
    return model, loader


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_credit_is_full_at_the_target_and_none_at_twice_it():
    assert credit(0.1, 0.15) == credit(0.15, 0.15) == 1.0
    assert credit(0.2, 0.1) == pytest.approx(0.0) and credit(0.4, 0.1) == 0.0
    assert credit(0.15, 0.1) == pytest.approx(0.5) and credit(3.0, 2.0) == pytest.approx(0.5)
    assert credit(-0.4, 2.0) == 1.0  # a pruned model more accurate than the dense one
    assert credit(0.0, 0.0) == 1.0 and credit(0.2, 0.0) == 0.0


def test_the_points_are_the_product_of_both_credits(capsys):
    model, loader = _tiny()
    before = _state(model)
    result = mp.score_sparsities(model, {"0.weight": 0.5}, loader, max_kept=0.5, max_drop=10.0)
    assert result.kept == pytest.approx((10 + 10) / 30)  # half of 20, none of the 10 of the layer left out
    assert result.sparsities == {"0.weight": 0.5, "2.weight": 0.0}
    assert result.dense_acc == 100.0
    masks = mp.make_masks(mp.magnitude_scores(model), 0.0, overrides={"0.weight": 0.5})
    acc = mp.accuracy(mp.apply_masks(mp.copy_model(model), masks), loader)
    assert result.acc == acc and result.drop == pytest.approx(100.0 - acc)
    expected = 10 * credit(2 / 3, 0.5) * credit(100.0 - acc, 10.0)
    assert result.points == round(expected, 2) and result.max_points == 10
    assert not result.passed
    out = capsys.readouterr().out
    assert out.startswith("✗ 66.7% of the weights kept (target ≤ 50.0%)") and f"{result.points:g}/10 points" in out
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the model changed"
    assert not mp.get_masks(model)


def test_meeting_both_targets_gives_full_points_and_a_tick(capsys):
    model, loader = _tiny()
    result = mp.score_sparsities(model, {}, loader, max_kept=1.0, max_drop=0.0, max_points=20)
    assert result.passed and result.points == 20 and result.kept == 1.0 and result.drop == 0.0
    assert capsys.readouterr().out.startswith("✓ 100.0% of the weights kept")
    quiet = mp.score_sparsities(model, {}, loader, max_kept=1.0, max_drop=0.0, quiet=True)
    assert quiet.points == 10 and capsys.readouterr().out == ""


@pytest.mark.parametrize(("sparsities", "error", "match"), [
    ([0.5, 0.5], TypeError, r"sparsities must be a dict"),
    ({"0": 0.5}, ValueError, r"unknown layer '0' \(did you mean 0\.weight\?\).*prunable weights"),
    ({"0.bias": 0.5}, ValueError, r"unknown layer '0\.bias'"),
    ({"0.weight": 1.0}, ValueError, r"sparsities\['0\.weight'\] must be a number in \[0, 1\)"),
    ({"0.weight": -0.1}, ValueError, r"must be a number in \[0, 1\)"),
    ({"0.weight": float("nan")}, ValueError, r"in \[0, 1\)|NaN"),
    ({"0.weight": True}, ValueError, r"must be a number"),
    ({"0.weight": "0.5"}, ValueError, r"must be a number"),
])
def test_a_bad_sparsity_dict_is_refused_clearly(sparsities, error, match):
    model, loader = _tiny()
    before = _state(model)
    with pytest.raises(error, match=match):
        mp.score_sparsities(model, sparsities, loader, max_kept=0.5, max_drop=1.0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("options", "match"), [
    ({"max_kept": 0.0, "max_drop": 1.0}, "max_kept"), ({"max_kept": 1.5, "max_drop": 1.0}, "max_kept"),
    ({"max_kept": 0.5, "max_drop": -1.0}, "max_drop"), ({"max_kept": 0.5, "max_drop": float("nan")}, "max_drop"),
    ({"max_kept": 0.5, "max_drop": 1.0, "max_points": 0}, "max_points"),
])
def test_bad_targets_are_refused(options, match):
    model, loader = _tiny()
    with pytest.raises(ValueError, match=match):
        mp.score_sparsities(model, {}, loader, **options)


def test_a_masked_model_a_bad_loader_and_a_non_model_are_refused():
    model, loader = _tiny()
    with pytest.raises(TypeError, match="model"):
        mp.score_sparsities("model", {}, loader, max_kept=0.5, max_drop=1.0)
    with pytest.raises((TypeError, ValueError), match="loader"):
        mp.score_sparsities(model, {}, [1, 2, 3], max_kept=0.5, max_drop=1.0)
    masked = mp.copy_model(model)
    mp.prune(masked, mp.magnitude_scores(masked), 0.5)
    with pytest.raises(ValueError, match="already masked"):
        mp.score_sparsities(masked, {}, loader, max_kept=0.5, max_drop=1.0)


@pytest.fixture(scope="module")
def baseline():
    """The shipped LeNet-300-100 and the notebook's fixed validation split (500 examples)."""
    return mp.pretrained("lenet300", progress=False), mp.load("mnist-small").loader("val", 500)


def test_uniform_sparsity_fails_and_the_reference_solution_passes_on_the_baseline(baseline):
    model, val_loader = baseline
    before = _state(model)
    uniform = mp.score_sparsities(model, {n: 1 - MAX_KEPT for n in mp.prunable_names(model)}, val_loader,
                                  max_kept=MAX_KEPT, max_drop=MAX_DROP, quiet=True)
    assert uniform.kept == pytest.approx(MAX_KEPT) and uniform.drop > 4 * MAX_DROP and uniform.points == 0
    solution = mp.score_sparsities(model, REFERENCE, val_loader, max_kept=MAX_KEPT, max_drop=MAX_DROP, quiet=True)
    assert solution.passed and solution.kept < MAX_KEPT - 0.01 and solution.drop < MAX_DROP - 0.4, solution
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the baseline changed"
