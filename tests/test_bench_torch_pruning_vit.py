"""bench/torch_pruning_vit.py: Torch-Pruning's head and MLP-neuron pruning of TinyViT next to minprune's chapter.
Same shares give the same shapes and parameter counts, the same units (L1 and L2), a copy that is exactly
minprune's surgery on the units Torch-Pruning kept, and an untouched input model."""

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.transformers import heads as H
from minprune.transformers import mlp_neurons as M

pytest.importorskip("torch_pruning")
_SPEC = importlib.util.spec_from_file_location(
    "torch_pruning_vit", Path(__file__).resolve().parent.parent / "bench" / "torch_pruning_vit.py")
B = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(B)

DIM, HEADS, HIDDEN = 32, 4, 64


def make(seed=0):
    torch.manual_seed(seed)
    model = mp.build("tinyvit", dim=DIM, depth=2, heads=HEADS).eval()
    with torch.no_grad():  # the GPT-2 init zeroes biases; random ones make the slicing of biases count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
    return model


def images(n=4, seed=1):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning Torch-Pruning lets out fails the test: the bench keeps it quiet
        yield


def test_torch_pruning_removes_whole_heads_and_neurons_and_keeps_the_width():
    model = make()
    before, x = state(model), images()
    reference = model(x)
    pruned = B.prune_vit_with_torch_pruning(model, 0.5, 0.5)
    assert same_state(model, before) and torch.equal(model(x), reference)
    assert pruned is not model and pruned.embed.weight.shape == (DIM, 49) and pruned.head.weight.shape == (10, DIM)
    assert pruned.pos.shape == (1, 17, DIM) and pruned.cls_token.shape == (1, 1, DIM)
    for block in pruned.blocks:
        attn = block.attn
        assert attn.heads == 2 and attn.head_dim == DIM // HEADS
        assert attn.q.weight.shape == attn.k.weight.shape == attn.v.weight.shape == (2 * 8, DIM)
        assert attn.proj.weight.shape == (DIM, 2 * 8)
        assert block.mlp.fc1.weight.shape == (HIDDEN // 2, DIM) and block.mlp.fc2.weight.shape == (DIM, HIDDEN // 2)
        assert block.ln1.weight.shape == block.ln2.weight.shape == (DIM,)
    assert torch.isfinite(pruned(x)).all() and pruned(x).shape == (4, 10)


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_both_tools_keep_the_same_units_and_parameter_counts(importance):
    model = make()
    before = state(model)
    theirs = B.prune_vit_with_torch_pruning(model, 0.5, 0.5, importance)
    ours = B.minprune_vit(model, 0.5, 0.5, importance)
    assert same_state(model, before)
    assert mp.count_params(theirs) == mp.count_params(ours) < mp.count_params(model)
    assert B.unit_differences(model, theirs, ours) == {"heads": 0, "neurons": 0}
    keep = B.kept_units(model, ours)
    chosen = H.select_heads(H.head_scores(model, importance), 0.5)
    assert all(torch.equal(keep["heads"][name], idx) for name, idx in chosen.items())
    x = images()
    assert torch.isfinite(ours(x)).all() and torch.allclose(theirs(x), ours(x), atol=1e-6)


def test_torch_pruning_equals_the_masked_equivalent_of_its_units():
    model = make(seed=3)
    pruned = B.prune_vit_with_torch_pruning(model, 0.5, 0.25)
    keep = B.kept_units(model, pruned)
    masked = M.mask_neurons(H.mask_heads(model, keep["heads"]), keep["neurons"])
    x = images(6)
    assert mp.count_params(masked) == mp.count_params(model)
    assert torch.allclose(pruned(x), masked(x), atol=1e-5)


def test_the_units_differ_when_the_scores_do():
    model = make()
    l1, l2 = B.minprune_vit(model, 0.5, 0.5, "l1"), B.minprune_vit(model, 0.5, 0.5, "l2")
    differ = B.unit_differences(model, l1, l2)
    assert differ["neurons"] > 0 and differ == B.unit_differences(model, l2, l1)


@settings(max_examples=8, deadline=None)
@given(head_ratio=st.floats(0, 0.95), mlp_ratio=st.floats(0, 0.95), seed=st.integers(0, 3))
def test_any_shares_give_equal_models_with_the_kits_counts(head_ratio, mlp_ratio, seed):
    model = make(seed)
    theirs = B.prune_vit_with_torch_pruning(model, head_ratio, mlp_ratio)
    ours = B.minprune_vit(model, head_ratio, mlp_ratio)
    want_heads = HEADS - min(round(head_ratio * HEADS), HEADS - 1)
    want_hidden = HIDDEN - min(round(mlp_ratio * HIDDEN), HIDDEN - 1)
    assert H.head_counts(theirs) == {"blocks.0.attn": want_heads, "blocks.1.attn": want_heads}
    assert M.neuron_counts(theirs) == {"blocks.0.mlp": want_hidden, "blocks.1.mlp": want_hidden}
    assert mp.count_params(theirs) == mp.count_params(ours)
    assert B.unit_differences(model, theirs, ours) == {"heads": 0, "neurons": 0}


def test_the_torch_pruning_copy_saves_and_loads_back(tmp_path):
    pruned = B.prune_vit_with_torch_pruning(make(), 0.5, 0.5)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "tp.pt", pruned))
    x = images()
    assert torch.equal(loaded.eval()(x), pruned(x)) and H.head_counts(loaded) == H.head_counts(pruned)


def test_a_model_that_is_not_the_surgery_is_refused():
    model = make()
    ours = B.minprune_vit(model, 0.5, 0.5)
    B.check_same_as_surgery(model, ours)  # the surgery itself passes
    bent = mp.copy_model(ours)
    with torch.no_grad():
        bent.blocks[1].attn.k.weight[0, 0] += 1.0
    with pytest.raises(RuntimeError, match="blocks.1.attn: unit 0 of the pruned model equals no unit"):
        B.check_same_as_surgery(model, bent)
    moved = mp.copy_model(ours)
    with torch.no_grad():
        moved.norm.weight[3] = 2.0
    with pytest.raises(RuntimeError, match="'norm.weight' of the pruned model differs"):
        B.check_same_as_surgery(model, moved)
    narrow = mp.copy_model(ours)
    narrow.blocks[0].attn.head_dim = 4
    with pytest.raises(RuntimeError, match="blocks.0.attn: the pruned model changed head_dim"):
        B.check_same_as_surgery(model, narrow)


@pytest.mark.parametrize("fn", [B.prune_vit_with_torch_pruning, B.minprune_vit])
def test_bad_arguments_are_refused_before_anything_changes(fn):
    model = make()
    before = state(model)
    with pytest.raises(TypeError, match="prunes a TinyViT"):
        fn(mp.build("lenet5"))
    with pytest.raises(ValueError, match=r"head_ratio must be in \[0, 1\)"):
        fn(model, 1.0, 0.5)
    with pytest.raises(ValueError, match="mlp_ratio must be a number"):
        fn(model, 0.5, float("nan"))
    with pytest.raises(ValueError, match="importance must be 'l1' or 'l2'"):
        fn(model, 0.5, 0.5, "taylor")
    assert same_state(model, before)
    torch.nn.utils.prune.l1_unstructured(model.blocks[0].attn.q, "weight", amount=0.5)
    masked = state(model)
    with pytest.raises(ValueError, match="'blocks.0.attn.q.weight' carries one"):
        fn(model)
    assert same_state(model, masked)


def test_compare_gives_a_row_per_method():
    model = make()
    before = state(model)
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(images(16), torch.randint(0, 10, (16,), generator=g)), batch_size=8)
    rows = B.compare(model, data)
    assert [r["method"] for r in rows] == ["dense", "minprune", "torch_pruning"]
    dense, ours, theirs = rows
    assert dense["params"] == mp.count_params(model) > ours["params"] == theirs["params"]
    assert dense["macs"] > ours["macs"] == theirs["macs"] > 0
    assert all(r["latency_ms"] > 0 and 0 <= r["acc"] <= 100 for r in rows)
    assert (theirs["heads_differ"], theirs["neurons_differ"]) == (0, 0) and dense["heads_differ"] is None
    assert same_state(model, before)
    with pytest.raises(TypeError, match="loader must be"):
        B.compare(model, None)
