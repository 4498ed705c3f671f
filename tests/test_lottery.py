"""Lottery tickets: rewinding restores saved weights exactly, masks survive, IMP reaches the final sparsity."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.masked import apply_masks, get_masks
from minprune.unstructured.lottery import RewindPoint, find_ticket, random_reinit, rewind, snapshot
from minprune.unstructured.masks import iterative_sparsities, make_masks, n_pruned
from minprune.unstructured.scores import magnitude_scores


def _toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    return DataLoader(TensorDataset(x, x.flatten(1)[:, :10].argmax(1)), batch_size=32, shuffle=True, generator=g)


def _masked_model(sparsity=0.7):
    mp.seed_everything(0)
    model = mp.build("lenet5")
    masks = make_masks(magnitude_scores(model), sparsity)
    return apply_masks(model, masks), masks


def test_rewind_restores_saved_weights_exactly_and_keeps_masks():
    model, masks = _masked_model()
    saved = snapshot(model)
    mp.fit(model, _toy(), mp.TrainConfig(epochs=1, lr=1e-2), progress=False)
    assert not torch.equal(model.features[0].weight_orig, saved["features.0.weight"])  # training moved it
    rewind(model, saved)
    for name, p in model.named_parameters():
        assert torch.equal(p, saved[name.removesuffix("_orig")])  # bit-for-bit
    for name, mask in get_masks(model).items():
        assert torch.equal(mask, masks[name])
        effective = mp.effective_parameters(model)[name]
        assert torch.equal(effective, saved[name] * mask)  # the forward pass sees the rewound, masked weights


def test_rewind_point_saves_at_step_k():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    point, log = RewindPoint(3), {}

    class Grab:
        def on_step_end(self, model, step):
            if step == 3:
                log["w"] = model.layers[1].weight.detach().clone()

    mp.fit(model, _toy(), mp.TrainConfig(epochs=2), callbacks=[point, Grab()], progress=False)
    assert torch.equal(point.state["layers.1.weight"], log["w"])
    rewind(model, point.state)
    assert torch.equal(model.layers[1].weight, log["w"])


def test_random_reinit_keeps_masks_changes_weights_and_is_seeded():
    model, masks = _masked_model()
    before = snapshot(model)
    random_reinit(model, seed=1)
    after = snapshot(model)
    assert not torch.equal(after["features.0.weight"], before["features.0.weight"])
    assert get_masks(model).keys() == masks.keys()
    assert all(torch.equal(get_masks(model)[n], m) for n, m in masks.items())
    other, _ = _masked_model()
    random_reinit(other, seed=1)
    assert all(torch.equal(snapshot(other)[n], t) for n, t in after.items())
    # the fresh weights follow the layer's own init scale (kaiming uniform bound 1/sqrt(fan_in) for Linear)
    assert after["classifier.5.weight"].abs().max() <= 1 / 84 ** 0.5 + 1e-6


def test_find_ticket_reaches_final_sparsity_and_ends_rewound():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    init = snapshot(model)
    rows = find_ticket(model, lambda m: mp.fit(m, _toy(), mp.TrainConfig(epochs=1), progress=False), 0.9, rounds=2)
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[0]["sparsity"] == pytest.approx(1 - 0.1 ** 0.5, abs=1e-5)
    masks = get_masks(model)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == n_pruned(total, 0.9)
    for name, p in model.named_parameters():
        assert torch.equal(p, init[name.removesuffix("_orig")])


def test_iterative_sparsities_compound():
    assert iterative_sparsities(0.75, 2) == pytest.approx([0.5, 0.75])
    with pytest.raises(ValueError, match="rounds"):
        iterative_sparsities(0.9, 0)


def test_mismatched_snapshot_is_refused_and_model_untouched():
    model, _ = _masked_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = snapshot(mp.build("lenet300"))
    with pytest.raises(ValueError, match="does not match"):
        rewind(model, bad)
    wrong_shape = snapshot(model)
    wrong_shape["features.0.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shape"):
        rewind(model, wrong_shape)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
