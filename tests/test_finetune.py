"""Fine-tuning and iterative pruning: masks persist, schedules are exact, history has what plots need."""

import dataclasses

import pytest
import torch
from torch.utils.data import Subset

import minprune as mp
from minprune.masked import get_masks
from minprune.unstructured import finetune as FT
from minprune.unstructured.masks import n_pruned
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores


@pytest.fixture(scope="module")
def splits():
    full = mp.load("mnist-small")  # a 640-example training subset keeps these tests fast
    return dataclasses.replace(full, train=Subset(full.train, range(640)), val=Subset(full.val, range(250)))


def small(splits):
    torch.manual_seed(0)
    return mp.build("lenet300", input_shape=splits.input_shape, num_classes=10, hidden=[32, 16])


def test_iterative_sparsities_geometric():
    steps = mp.iterative_sparsities(0.99, 2)
    assert steps[-1] == pytest.approx(0.99) and steps[0] == pytest.approx(0.9)
    assert steps == sorted(steps)
    with pytest.raises(ValueError):
        mp.iterative_sparsities(1.0, 3)
    with pytest.raises(ValueError):
        mp.iterative_sparsities(0.9, 0)


def test_fine_tune_keeps_masks_and_learns(splits):
    model = small(splits)
    prune(model, magnitude_scores(model), 0.8, scope="global")
    masks = get_masks(model)
    history = FT.fine_tune(model, splits, mp.TrainConfig(epochs=2, lr=3e-3))
    assert len(history.train_loss) == 2 and history.val_acc[-1] > 25  # chance is 10%
    after = get_masks(model)
    assert all(torch.equal(after[n], masks[n]) for n in masks)
    weights = mp.effective_parameters(model)
    assert all(torch.all(weights[n][~m] == 0) for n, m in masks.items())


def test_iterative_prune_history(splits):
    model = small(splits)
    targets = mp.iterative_sparsities(0.9, 3)
    config = FT.IterativeConfig(epochs=1, lr=3e-3)
    history = FT.iterative_prune(model, magnitude_scores, targets, splits, config)
    assert [row["round"] for row in history] == [1, 2, 3]
    total = sum(m.numel() for m in get_masks(model).values())
    for row, target in zip(history, targets):
        assert row["target"] == target
        assert row["sparsity"] == pytest.approx(n_pruned(total, target) / total)
        assert 0 <= row["acc_pruned"] <= 100 and 0 <= row["acc"] <= 100
    assert history[-1]["acc"] > 40


def test_iterative_prune_refuses_bad_schedules(splits):
    model = small(splits)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for bad in ([0.5, 0.3], [0.5, 1.0]):
        with pytest.raises(ValueError):
            FT.iterative_prune(model, magnitude_scores, bad, splits)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fine_tune_needs_data(splits):
    with pytest.raises(ValueError, match="needs data"):
        FT.fine_tune(small(splits), None, mp.TrainConfig(epochs=1))
