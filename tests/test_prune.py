"""apply_masks / prune: torch.nn.utils.prune compatibility, optimizer steps, state_dict round trips, errors."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import minprune as mp
from minprune import masked
from minprune.unstructured import masks as M
from minprune.unstructured.scores import magnitude_scores, random_scores


def tiny():
    torch.manual_seed(0)
    return mp.build("lenet300", input_shape=(1, 6, 6), num_classes=4, hidden=[12, 8])


def cnn():
    torch.manual_seed(0)
    return mp.build("lenet5", input_shape=(1, 28, 28), num_classes=10)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prune_reaches_exact_sparsity_and_is_torch_compatible():
    model = tiny()
    masks = mp.prune(model, magnitude_scores(model), 0.7, scope="global")
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == M.n_pruned(total, 0.7)
    assert torch_prune.is_pruned(model) and masked.is_pruned(model)
    assert hasattr(model.layers[1], "weight_orig") and hasattr(model.layers[1], "weight_mask")
    for name, mask in masked.get_masks(model).items():
        assert torch.equal(mask, masks[name])
        w = mp.effective_parameters(model)[name]
        assert torch.all(w[~mask] == 0)


def test_keep_all_mask_changes_neither_outputs_nor_gradients():
    model, x = tiny(), torch.randn(5, 1, 6, 6)
    ref = copy.deepcopy(model)
    returned = masked.apply_masks(model, {n: torch.ones_like(p, dtype=torch.bool)
                                          for n, p in magnitude_scores(model).items()})
    assert returned is model
    assert torch.equal(model(x), ref(x))
    model(x).sum().backward()
    ref(x).sum().backward()
    assert torch.allclose(model.layers[1].weight_orig.grad, ref.layers[1].weight.grad)


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_pruned_weights_stay_zero_under_optimizers(opt):
    model = tiny()
    masks = mp.prune(model, magnitude_scores(model), 0.8)
    optimizer = mp.train.make_optimizer(model, opt, lr=0.1, weight_decay=0.1 if opt == "adamw" else 0.0)
    x, y = torch.randn(16, 1, 6, 6), torch.randint(0, 4, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name, mask in masks.items():
            module = model.get_submodule(name.rpartition(".")[0])
            assert torch.all(module.weight_orig.grad[~mask] == 0)  # pruned entries get zero gradient
        optimizer.step()
    model(x)
    for name, mask in masks.items():
        assert torch.all(mp.effective_parameters(model)[name][~mask] == 0)
    assert mp.model_sparsity(model) > 0.5


def test_fit_keeps_masks():
    splits = mp.load("mnist-small")
    model = mp.build("lenet300", input_shape=splits.input_shape, num_classes=10, hidden=[32, 16])
    mp.prune(model, magnitude_scores(model), 0.9, scope="global")
    before = mp.layer_sparsity(model)
    mp.fit(model, splits.loader("train", 256), mp.TrainConfig(epochs=1, optimizer="sgd"), progress=False)
    assert mp.layer_sparsity(model) == before


def test_reapplying_combines_masks_and_prune_counts_old_zeros():
    model = tiny()
    mp.prune(model, magnitude_scores(model), 0.5)
    first = masked.get_masks(model)
    mp.prune(model, random_scores(model, seed=3), 0.8)  # random scores: old zeros must still count as pruned
    second = masked.get_masks(model)
    for name in first:
        assert torch.all(second[name] <= first[name])  # nothing comes back
        assert int((~second[name]).sum()) == M.n_pruned(first[name].numel(), 0.8)
    with pytest.raises(ValueError, match="would remove every entry of 'layers.1.weight'"):  # an empty layer
        masked.apply_masks(model, {"layers.1.weight": torch.zeros_like(first["layers.1.weight"])})
    assert torch.equal(masked.get_masks(model)["layers.1.weight"], second["layers.1.weight"])


def test_make_permanent_keeps_output_and_parameter_identity():
    model, x = cnn(), torch.randn(2, 1, 28, 28)
    mp.prune(model, magnitude_scores(model), 0.6, scope="global")
    orig = model.features[0].weight_orig
    out = model(x)
    masked.make_permanent(model)
    assert not torch_prune.is_pruned(model)
    assert model.features[0].weight is orig  # optimizers still point at the same tensor
    assert torch.equal(model(x), out)
    assert mp.model_sparsity(model) > 0.5
    assert set(model.state_dict()) == set(cnn().state_dict())


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.9])
def test_parity_with_torch_l1_unstructured(amount):
    model, ref = cnn(), cnn()
    mp.prune(model, magnitude_scores(model), amount)
    for name in M.prunable_names(ref):
        torch_prune.l1_unstructured(ref.get_submodule(name.rpartition(".")[0]), "weight", amount=amount)
    mine, theirs = masked.get_masks(model), masked.get_masks(ref)  # get_masks also reads torch-made masks
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[n], theirs[n]) for n in mine)


def test_parity_with_torch_global_unstructured():
    model, ref = cnn(), cnn()
    mp.prune(model, magnitude_scores(model), 0.85, scope="global")
    params = [(ref.get_submodule(n.rpartition(".")[0]), "weight") for n in M.prunable_names(ref)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.85)
    mine, theirs = masked.get_masks(model), masked.get_masks(ref)
    assert all(torch.equal(mine[n], theirs[n]) for n in mine)


def test_torch_prune_can_remove_our_masks():
    model, x = tiny(), torch.randn(3, 1, 6, 6)
    mp.prune(model, magnitude_scores(model), 0.5)
    out = model(x)
    torch_prune.remove(model.layers[1], "weight")
    assert torch.equal(model(x), out)


def test_state_dict_round_trip_into_fresh_model(tmp_path):
    model, x = cnn(), torch.randn(2, 1, 28, 28)
    mp.prune(model, magnitude_scores(model), 0.75, scope="global")
    fresh = cnn()
    masked.load_masked_state_dict(fresh, model.state_dict())
    assert torch.equal(fresh(x), model(x))
    assert mp.layer_sparsity(fresh) == mp.layer_sparsity(model)
    mp.save_model(tmp_path / "m.pt", model)
    loaded, _ = mp.load_model(tmp_path / "m.pt")
    assert torch.equal(loaded(x), model(x))
    assert all(torch.equal(masked.get_masks(loaded)[n], m) for n, m in masked.get_masks(model).items())
    # and it keeps training with its masks
    opt = torch.optim.SGD(loaded.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        loaded(x).sum().backward()
        opt.step()
    loaded(x)  # the forward pass recomputes the effective weights
    assert mp.layer_sparsity(loaded) == mp.layer_sparsity(model)


def test_copy_model_works_right_after_a_training_step():
    model, x = tiny(), torch.randn(3, 1, 6, 6)
    mp.prune(model, magnitude_scores(model), 0.5)
    model(x).sum().backward()
    twin = masked.copy_model(model)
    assert torch.equal(twin(x), model(x))


def test_bad_input_leaves_model_untouched():
    model = tiny()
    before = state(model)
    good = magnitude_scores(model)
    cases = [
        ({"nope.weight": torch.ones(3)}, 0.5, ValueError),
        ({"layers.1.weight": torch.ones(3, 3)}, 0.5, ValueError),
        ({**good, "layers.1.weight": torch.full_like(good["layers.1.weight"], float("nan"))}, 0.5, ValueError),
        (good, 1.0, ValueError),
        (good, -0.2, ValueError),
    ]
    for scores, sparsity, error in cases:
        with pytest.raises(error):
            mp.prune(model, scores, sparsity)
        assert same_state(state(model), before) and not masked.is_pruned(model)
    bad_masks = {"layers.1.weight": torch.ones(12, 36, dtype=torch.bool), "layers.9.weight": torch.ones(2)}
    with pytest.raises(ValueError, match="unknown"):
        masked.apply_masks(model, bad_masks)
    assert same_state(state(model), before) and not masked.is_pruned(model)
    pruned = tiny()
    mp.prune(pruned, magnitude_scores(pruned), 0.5)
    with pytest.raises(ValueError, match=r"(?s)does not fit the model.*Unexpected key"):
        masked.load_masked_state_dict(model, {**pruned.state_dict(), "extra": torch.ones(1)})
    assert same_state(state(model), before) and not masked.is_pruned(model)


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 20), n_out=st.integers(1, 20), sparsity=st.floats(0, 0.99), seed=st.integers(0, 50))
def test_property_layer_reaches_exact_sparsity(n_in, n_out, sparsity, seed):
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(n_in, n_out))
    if M.n_pruned(n_in * n_out, sparsity) == n_in * n_out:  # every weight: refused, as sparsity 1.0 is
        with pytest.raises(ValueError, match="would remove every entry"):
            mp.prune(layer, magnitude_scores(layer), sparsity)
        return
    mp.prune(layer, magnitude_scores(layer), sparsity)
    zeros = int((layer[0].weight == 0).sum())
    assert zeros == M.n_pruned(n_in * n_out, sparsity)
    masked.make_permanent(layer)
    assert int((layer[0].weight == 0).sum()) == zeros
