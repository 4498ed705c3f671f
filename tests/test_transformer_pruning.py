"""Pruning TinyViT and CharGPT (minprune.transformers): whole attention heads and MLP neurons, each removal a
smaller copy equal to its masked equivalent, with the model passed in unchanged."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import models
from minprune.measure import count_params
from minprune.transformers import heads as H
from minprune.transformers import mlp_neurons as M

SMALL = {"tinyvit": {"dim": 16, "depth": 2, "heads": 4},
         "chargpt": {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 4, "n_embd": 16}}
ARCHS = list(SMALL)


def make(arch, seed=0):
    torch.manual_seed(seed)
    model = mp.build(arch, **SMALL[arch]).eval()
    with torch.no_grad():  # the GPT-2 init zeroes biases; random ones make the slicing of biases count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
    return model


def inputs(arch, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    if arch == "tinyvit":
        return torch.randn(n, 1, 28, 28, generator=g)
    return torch.randint(0, 11, (n, 8), generator=g)


def loader(arch, n=16):
    x = inputs(arch, n, seed=2)
    y = torch.randint(0, 10, (n,)) if arch == "tinyvit" else torch.randint(0, 11, (n, 8))
    return DataLoader(TensorDataset(x, y), batch_size=8)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)


def close(a, b, rtol=1e-5):
    return bool(((a - b).abs().max() <= rtol * b.abs().max()).item())


KEEP_HEADS = {"blocks.0.attn": [0, 2], "blocks.1.attn": [3]}
KEEP_NEURONS = {"blocks.0.mlp": list(range(0, 32, 3)), "blocks.1.mlp": [5]}


@pytest.mark.parametrize("arch", ARCHS)
def test_prune_heads_equals_masking_and_leaves_the_model(tmp_path, arch):
    model = make(arch)
    before, x = state(model), inputs(arch)
    reference = model(x)
    pruned, masked = H.prune_heads(model, KEEP_HEADS), H.mask_heads(model, KEEP_HEADS)
    assert close(pruned(x), masked(x))
    assert same_state(model, before) and torch.equal(model(x), reference)
    dim, hd = 16, 4
    removed_heads = 2 + 3
    assert count_params(model) - count_params(pruned) == removed_heads * (4 * hd * dim + 3 * hd)
    assert count_params(masked) == count_params(model)
    assert H.head_counts(pruned) == {"blocks.0.attn": 2, "blocks.1.attn": 1}
    assert pruned.blocks[1].attn.q.weight.shape == (hd, dim) and pruned.blocks[1].attn.proj.weight.shape == (dim, hd)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "p.pt", pruned))
    assert models.describe(loaded) == models.describe(pruned) and "shapes" in models.describe(pruned)
    assert torch.equal(loaded.eval()(x), pruned(x))


def test_pruned_chargpt_stays_causal():
    gpt = H.prune_heads(M.prune_mlp(make("chargpt"), KEEP_NEURONS), KEEP_HEADS)
    x = inputs("chargpt", 2)
    base = gpt(x)
    for i in (0, 4, 7):
        y = x.clone()
        y[:, i] = (y[:, i] + 1) % 11
        out = gpt(y)
        assert torch.equal(out[:, :i], base[:, :i]) and not torch.allclose(out[:, i:], base[:, i:])


def test_masked_heads_contribute_nothing():
    model = make("tinyvit")
    masked = H.mask_heads(model, {"blocks.0.attn": [1]})
    proj = masked.blocks[0].attn.proj.weight
    assert torch.count_nonzero(proj[:, 4:8]) == proj.shape[0] * 4 and not proj[:, :4].any() and not proj[:, 8:].any()


@pytest.mark.parametrize("arch", ARCHS)
def test_head_score_shapes(arch):
    model = make(arch)
    for norm in ("l1", "l2"):
        scores = H.head_scores(model, norm)
        assert list(scores) == ["blocks.0.attn", "blocks.1.attn"]
        assert all(s.shape == (4,) and s.dtype == torch.float32 and bool((s > 0).all()) for s in scores.values())
    pruned = H.prune_heads(model, KEEP_HEADS)
    assert [s.shape for s in H.head_scores(pruned).values()] == [(2,), (1,)]
    kept = H.head_scores(model)["blocks.0.attn"][[0, 2]]
    assert torch.allclose(H.head_scores(pruned)["blocks.0.attn"], kept)


def test_head_scores_closed_form():
    model = mp.build("tinyvit", dim=8, depth=1, heads=2)
    attn = model.blocks[0].attn  # head_dim 4: head 0 = rows 0-3 of q/k/v and columns 0-3 of proj
    with torch.no_grad():
        for key in "qkv":
            w = getattr(attn, key).weight
            w.fill_(1.0)
            w[4:] = -2.0
        attn.proj.weight.fill_(0.5)
        attn.proj.weight[:, 4:] = 3.0
    per_layer = 4 * 8  # weights per head in each of q, k, v (4 rows x 8 inputs) and proj (8 rows x 4 columns)
    l1 = H.head_scores(model, "l1")["blocks.0.attn"]
    assert torch.allclose(l1, torch.tensor([3 * per_layer * 1.0 + per_layer * 0.5,
                                            3 * per_layer * 2.0 + per_layer * 3.0]))
    l2 = H.head_scores(model, "l2")["blocks.0.attn"]
    assert torch.allclose(l2, torch.tensor([(3 * per_layer + per_layer * 0.25) ** 0.5,
                                            (3 * per_layer * 4.0 + per_layer * 9.0) ** 0.5]))


@pytest.mark.parametrize("arch", ARCHS)
def test_head_ablation(arch):
    model = make(arch)
    with torch.no_grad():
        model.blocks[0].attn.proj.weight[:, 4:8] = 0  # head 1 of the first layer already contributes nothing
    before, data = state(model), loader(arch)
    rises = H.head_ablation(model, data, max_batches=1, device="cpu")
    assert same_state(model, before) and not model.training
    assert all(r.shape == (4,) for r in rises.values())
    assert rises["blocks.0.attn"][1] == 0
    assert rises["blocks.0.attn"].abs().sum() > 0 and rises["blocks.1.attn"].abs().sum() > 0
    base = mp.evaluate(model, list(data)[:1], device="cpu")["loss"]
    masked = H.mask_heads(model, {"blocks.1.attn": [0, 1, 3]})
    expect = mp.evaluate(masked, list(data)[:1], device="cpu")["loss"] - base
    assert abs(rises["blocks.1.attn"][2].item() - expect) < 1e-5


def test_select_heads():
    scores = {"a": torch.tensor([4.0, 1.0, 3.0, 2.0]), "b": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    local = H.select_heads(scores, 0.5)
    assert {k: v.tolist() for k, v in local.items()} == {"a": [0, 2], "b": [2, 3]}
    glob = H.select_heads(scores, 0.5, scope="global")  # the 4 lowest of 8: all of b's but its last
    assert {k: v.tolist() for k, v in glob.items()} == {"a": [0, 2, 3], "b": [3]}
    for scope in ("local", "global"):
        most = H.select_heads(scores, 0.99, scope=scope)
        assert all(len(v) == 1 for v in most.values())  # at least one kept per layer
        assert sum(len(v) for v in H.select_heads(scores, 0.25, scope=scope).values()) == 6
        assert all(len(v) == 4 for v in H.select_heads(scores, 0.0, scope=scope).values())
    ties = H.select_heads({"a": torch.ones(4)}, 0.5)
    assert ties["a"].tolist() == [0, 1]  # among equal scores the later head goes first
    model = make("tinyvit")
    keep = H.select_heads(H.head_scores(model), 0.5, scope="global")
    assert sum(len(v) for v in keep.values()) == 4
    assert count_params(H.prune_heads(model, keep)) < count_params(model)


@pytest.mark.parametrize("call,error,match", [
    (lambda m: H.prune_heads(m, {"blocks.9.attn": [0]}), ValueError, "'blocks.9.attn', which is not a layer"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": [0, 4]}), ValueError, r"head index 4, outside \[0, 4\)"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": [-1]}), ValueError, "outside"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": [1, 1]}), ValueError, "head 1 more than once"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": []}), ValueError, "keeps no head"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": torch.tensor([0.0])}), TypeError, "int head indices"),
    (lambda m: H.prune_heads(m, {"blocks.0.attn": [True]}), TypeError, "int head indices"),
    (lambda m: H.prune_heads(m, [0, 1]), TypeError, "keep must be a dict"),
    (lambda m: H.mask_heads(m, {"blocks.0.attn": [7]}), ValueError, "outside"),
    (lambda m: H.head_scores(m, "l3"), ValueError, "norm must be 'l1' or 'l2'"),
    (lambda m: H.head_ablation(m, loader("tinyvit"), max_batches=0), ValueError, "max_batches"),
    (lambda m: H.head_ablation(m, None), TypeError, "loader"),
    (lambda m: H.head_scores(mp.build("lenet300")), ValueError, "no SelfAttention layers"),
    (lambda m: H.head_scores("model"), TypeError, "model must be a torch.nn.Module"),
    (lambda m: H.select_heads({"a": torch.ones(2)}, 1.0), ValueError, "fraction must be in"),
    (lambda m: H.select_heads({"a": torch.ones(2)}, 0.5, scope="all"), ValueError, "scope must be"),
    (lambda m: H.select_heads({"a": torch.tensor([1.0, float("nan")])}, 0.5), ValueError, "NaN"),
    (lambda m: H.select_heads({"a": torch.ones(2, 2)}, 0.5), ValueError, "1-D tensor"),
    (lambda m: H.select_heads({}, 0.5), TypeError, "non-empty dict"),
    (lambda m: M.prune_mlp(m, {"blocks.0.mlp": [32]}), ValueError, r"neuron index 32, outside \[0, 32\)"),
    (lambda m: M.prune_mlp(m, {"blocks.0.attn": [0]}), ValueError, "not a layer with neurons"),
    (lambda m: M.prune_mlp(m, {"blocks.0.mlp": ()}), ValueError, "keeps no neuron"),
    (lambda m: M.neuron_scores(m, norm=1), ValueError, "norm must be"),
    (lambda m: M.neuron_scores(mp.build("lenet5")), ValueError, "no MLP layers"),
])
def test_bad_inputs_are_refused_and_the_model_unchanged(call, error, match):
    model = make("tinyvit")
    before = state(model)
    with pytest.raises(error, match=match):
        call(model)
    assert same_state(model, before)


def test_masked_layers_must_be_folded_first():
    model = make("tinyvit")
    mp.apply_masks(model, {"blocks.0.attn.q.weight": torch.rand(16, 16) > 0.5,
                           "blocks.1.mlp.fc1.weight": torch.rand(32, 16) > 0.5})
    with pytest.raises(ValueError, match="'blocks.0.attn.q.weight' carries a pruning mask.*make_permanent"):
        H.prune_heads(model, KEEP_HEADS)
    with pytest.raises(ValueError, match="carries a pruning mask"):
        M.prune_mlp(model, KEEP_NEURONS)
    x = inputs("tinyvit")
    assert close(H.prune_heads(model, {"blocks.1.attn": [0]})(x), H.mask_heads(model, {"blocks.1.attn": [0]})(x))
    folded = mp.make_permanent(mp.copy_model(model))
    assert close(H.prune_heads(folded, KEEP_HEADS)(x), H.mask_heads(model, KEEP_HEADS)(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_prune_mlp_equals_zeroing_fc1_outputs(tmp_path, arch):
    model = make(arch)
    before, x = state(model), inputs(arch)
    pruned = M.prune_mlp(model, KEEP_NEURONS)
    hooked, hidden = mp.copy_model(model), model.blocks[0].mlp.fc1.out_features  # 32 (TinyViT), 64 (CharGPT)
    for name, idx in KEEP_NEURONS.items():
        gone = [j for j in range(hidden) if j not in idx]
        hooked.get_submodule(name).fc1.register_forward_hook(lambda _m, _i, out, gone=gone: out.index_fill(
            -1, torch.tensor(gone), 0.0))
    assert close(pruned(x), hooked(x)) and close(pruned(x), M.mask_neurons(model, KEEP_NEURONS)(x))
    assert same_state(model, before)
    removed = (hidden - len(KEEP_NEURONS["blocks.0.mlp"])) + hidden - 1
    assert count_params(model) - count_params(pruned) == removed * (2 * 16 + 1)
    assert M.neuron_counts(pruned) == {"blocks.0.mlp": 11, "blocks.1.mlp": 1}
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "p.pt", pruned))
    assert torch.equal(loaded.eval()(x), pruned(x))


def test_neuron_scores_and_selection():
    model = mp.build("tinyvit", dim=8, depth=1, heads=2, mlp_ratio=2)
    mlp = model.blocks[0].mlp
    with torch.no_grad():
        mlp.fc1.weight.fill_(1.0)
        mlp.fc1.weight[3] = -2.0
        mlp.fc2.weight.fill_(0.5)
    l1 = M.neuron_scores(model)["blocks.0.mlp"]
    expect = torch.full((16,), 8 * 1.0 + 8 * 0.5)
    expect[3] = 8 * 2.0 + 8 * 0.5
    assert torch.allclose(l1, expect)
    l2 = M.neuron_scores(model, "l2")["blocks.0.mlp"]
    assert torch.allclose(l2[0], torch.tensor(8 * 1.0 + 8 * 0.25).sqrt())
    keep = M.select_neurons(M.neuron_scores(model), 0.75)
    assert len(keep["blocks.0.mlp"]) == 4 and 3 in keep["blocks.0.mlp"].tolist()
    assert all(len(v) == 1 for v in M.select_neurons(M.neuron_scores(model), 0.999, scope="global").values())
