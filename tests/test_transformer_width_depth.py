"""Residual-width and depth pruning of TinyViT and CharGPT (minprune.transformers.width / .depth): each removal a
smaller copy equal to its masked equivalent (a LayerNorm over the kept channels; a block replaced by nn.Identity),
the model passed in unchanged, and the copy saved and loaded back with the same outputs."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune import models
from minprune.measure import count_params
from minprune.transformers import depth as D
from minprune.transformers import heads as H
from minprune.transformers import mlp_neurons as M
from minprune.transformers import width as W

SMALL = {"tinyvit": {"dim": 32, "depth": 2, "heads": 4},
         "chargpt": {"n_layer": 2, "n_embd": 32, "n_head": 4, "block_size": 16},
         "tied": {"n_layer": 2, "n_embd": 32, "n_head": 4, "block_size": 16, "tie_weights": True}}
ARCHS = list(SMALL)
KEEP = [0, 2, 3, 5, 8, 9, 13, 17, 20, 21, 26, 31]  # 12 of 32 channels


def make(arch, seed=0, dtype=torch.float32, **extra):
    """A small model with random biases and LayerNorm parameters (the GPT-2 init sets them to 0 and 1, which would
    hide a slicing or normalising mistake)."""
    torch.manual_seed(seed)
    model = mp.build("tinyvit" if arch == "tinyvit" else "chargpt", **{**SMALL[arch], **extra}).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
            elif ".ln" in name or name.startswith(("norm", "ln_f")):
                p.normal_(1.0, 0.3)
    return model


def inputs(arch, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    if arch == "tinyvit":
        return torch.randn(n, 1, 28, 28, generator=g)
    return torch.randint(0, 103, (n, 16), generator=g)


@pytest.fixture(scope="module")
def batches():
    """Two real batches per model: mnist-small digits for TinyViT, pydoc-text windows for CharGPT."""
    x, y = mp.load("mnist-small").sample(16, "val")
    text = list(mp.load("pydoc-text").loader("val", seq_len=16, batch_size=4, max_batches=2))
    vit = [(x[:8], y[:8]), (x[8:], y[8:])]
    return {"tinyvit": vit, "chargpt": text, "tied": text}


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)


def close(a, b, rtol=1e-5):
    return bool(((a - b).abs().max() <= rtol * b.abs().max()).item())


# ---- width -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_prune_width_equals_masked_layernorms_not_plain_zeros(tmp_path, arch):
    model = make(arch)
    before, x = state(model), inputs(arch)
    reference = model(x)
    pruned, masked, zeroed = W.prune_width(model, KEEP), W.mask_width(model, KEEP), W.zero_width(model, KEEP)
    assert close(pruned(x), masked(x))
    gap = (pruned(x) - zeroed(x)).abs().max() / pruned(x).abs().max()
    assert gap > 1e-2  # the LayerNorm effect: zeroed channels still count in the mean and the variance
    assert same_state(model, before) and torch.equal(model(x), reference)
    dim_key = "dim" if arch == "tinyvit" else "n_embd"
    assert pruned.config[dim_key] == 12 and pruned.config["head_dim"] == 8
    assert pruned.blocks[0].attn.q.weight.shape == (32, 12) and pruned.blocks[1].ln2.weight.shape == (12,)
    assert count_params(masked) == count_params(model) > count_params(pruned)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "w.pt", pruned))
    assert models.describe(loaded) == models.describe(pruned)
    assert torch.equal(loaded.eval()(x), pruned(x))
    if arch == "tied":
        assert pruned.head.weight is pruned.tok_emb.weight and loaded.head.weight is loaded.tok_emb.weight
        assert pruned.head.in_features == 12


@pytest.mark.parametrize("arch", ["tinyvit", "chargpt"])
def test_prune_width_float64_matches_to_rounding(arch):
    model = make(arch, dtype=torch.float64)
    x = inputs(arch).double() if arch == "tinyvit" else inputs(arch)
    pruned, masked = W.prune_width(model, KEEP), W.mask_width(model, KEEP)
    assert (pruned(x) - masked(x)).abs().max() < 1e-12
    assert pruned.blocks[0].attn.q.weight.dtype == torch.float64


@settings(max_examples=8, deadline=None)
@given(st.sets(st.integers(0, 31), min_size=1, max_size=32))
def test_prune_width_equals_mask_width_for_any_keep(keep):
    model, x = make("tinyvit"), inputs("tinyvit", 2)
    assert close(W.prune_width(model, sorted(keep))(x), W.mask_width(model, list(keep))(x))


def test_keeping_every_channel_changes_nothing():
    model, x = make("chargpt"), inputs("chargpt")
    everything = list(range(32))
    assert torch.allclose(W.prune_width(model, everything)(x), model(x), atol=1e-6)
    assert torch.allclose(W.mask_width(model, everything)(x), model(x), atol=1e-6)


def test_masked_layernorm_normalises_over_the_kept_channels_only():
    torch.manual_seed(0)
    norm = nn.LayerNorm(6)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    kept = torch.tensor([True, False, True, True, False, True])
    x = torch.randn(2, 3, 6)
    out = W.MaskedLayerNorm(norm, kept)(x)
    idx = kept.nonzero().flatten()
    assert torch.allclose(out[..., idx], F.layer_norm(x[..., idx], (4,), norm.weight[idx], norm.bias[idx]))
    assert not out[..., ~kept].any()
    assert torch.allclose(W.MaskedLayerNorm(norm, torch.ones(6, dtype=torch.bool))(x), norm(x))


@pytest.mark.parametrize("arch", ["tinyvit", "chargpt"])
def test_width_after_heads_and_mlp_neurons(tmp_path, arch):
    model, x = make(arch), inputs(arch)
    heads = H.prune_heads(model, {"blocks.0.attn": [1, 3], "blocks.1.attn": [2]})
    neurons = M.prune_mlp(heads, {"blocks.0.mlp": list(range(0, 40, 3)), "blocks.1.mlp": [4, 7]})
    pruned = W.prune_width(neurons, KEEP)
    assert close(pruned(x), W.mask_width(neurons, KEEP)(x))
    assert pruned.blocks[1].attn.q.weight.shape == (8, 12) and pruned.blocks[1].mlp.fc1.weight.shape == (2, 12)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "hmw.pt", pruned))
    assert torch.equal(loaded.eval()(x), pruned(x))


def test_width_weight_scores_closed_form_and_follow_the_slicing():
    model = make("tinyvit")
    by_axis = {"embed.weight": 0, "cls_token": -1, "pos": -1, "head.weight": 1, "norm.weight": 0}
    for name, _ in model.named_parameters():
        if name.startswith("blocks") and not name.endswith("bias"):
            by_axis[name] = 0 if (".proj." in name or ".fc2." in name or ".ln" in name) else 1
    params = dict(model.named_parameters())
    for norm, p in (("l1", 1), ("l2", 2)):
        expect = sum((params[n].detach().abs() ** p).movedim(a, 0).reshape(32, -1).sum(1) for n, a in by_axis.items())
        assert torch.allclose(W.width_scores(model, norm), expect ** (1 / p))
    scores = W.width_scores(model)
    assert torch.allclose(W.width_scores(W.prune_width(model, KEEP)), scores[KEEP])
    gone = [c for c in range(32) if c not in KEEP]
    assert not W.width_scores(W.mask_width(model, KEEP))[gone].any()


@pytest.mark.parametrize("arch", ARCHS)
def test_width_activation_scores(batches, arch):
    model = make(arch).train()
    before = state(model)
    scores = W.width_scores(model, "l1", loader=batches[arch], max_batches=1)
    assert scores.shape == (32,) and scores.dtype == torch.float32 and bool((scores > 0).all())
    assert same_state(model, before) and model.training
    assert not torch.equal(scores, W.width_scores(model, "l1", loader=batches[arch], max_batches=2))
    masked = W.mask_width(model, KEEP)
    masked_scores = W.width_scores(masked, "l2", loader=batches[arch])
    assert not masked_scores[[c for c in range(32) if c not in KEEP]].any()
    assert W.select_width(masked_scores, 20 / 32).tolist() == KEEP


def test_width_activation_scores_closed_form(batches):
    """l1: summed over the LayerNorms, the mean |output| of each channel over every token, computed by hand."""
    model = make("tinyvit")
    total = torch.zeros(32, dtype=torch.float64)
    with torch.no_grad():
        outputs = {name: [] for name in ["norm"] + [f"{i}.{ln}" for i in range(2) for ln in ("ln1", "ln2")]}
        for x, _ in batches["tinyvit"][:1]:
            h = torch.cat([model.cls_token.expand(len(x), -1, -1), model.embed(model.patches(x))], dim=1) + model.pos
            for i, block in enumerate(model.blocks):
                outputs[f"{i}.ln1"].append(block.ln1(h))
                h = h + block.attn(block.ln1(h))
                outputs[f"{i}.ln2"].append(block.ln2(h))
                h = h + block.mlp(block.ln2(h))
            outputs["norm"].append(model.norm(h))
    for outs in outputs.values():
        total += torch.cat(outs).reshape(-1, 32).double().abs().mean(0)
    assert torch.allclose(W.width_scores(model, "l1", loader=batches["tinyvit"], max_batches=1), total.float())


def test_select_width():
    scores = torch.tensor([4.0, 1.0, 3.0, 2.0, 2.0, 5.0])
    assert W.select_width(scores, 0.5).tolist() == [0, 2, 5]  # the later of the two 2.0s goes first
    assert W.select_width(scores, 0.0).tolist() == list(range(6))
    assert W.select_width(torch.ones(2), 0.9).tolist() == [0]  # at least one channel stays
    assert len(W.select_width(torch.rand(64), 0.5)) == 32


@pytest.mark.parametrize("call,error,match", [
    (lambda m: W.prune_width(m, []), ValueError, "keep keeps no channel"),
    (lambda m: W.prune_width(m, [0, 32]), ValueError, r"channel index 32, outside \[0, 32\)"),
    (lambda m: W.mask_width(m, [3, 3]), ValueError, "names channel 3 more than once"),
    (lambda m: W.zero_width(m, [0.5]), TypeError, "must list int channel indices"),
    (lambda m: W.prune_width(m, {"blocks.0": [1]}), TypeError, "keep must be a list or 1-D tensor"),
    (lambda m: W.prune_width(mp.build("lenet5"), [0]), ValueError, "prune_width prunes the residual width of TinyViT"),
    (lambda m: W.width_scores("model"), TypeError, "model must be a torch.nn.Module"),
    (lambda m: W.width_scores(m, "l3"), ValueError, "norm must be 'l1' or 'l2'"),
    (lambda m: W.width_scores(m, loader=[(torch.zeros(2, 1, 28, 28), torch.zeros(2).long())], max_batches=0),
     ValueError, "max_batches must be a positive int"),
    (lambda m: W.width_scores(m, loader="data"), TypeError, "loader must be an iterable"),
    (lambda m: W.width_scores(mp.copy_model(m).half(), loader=[(torch.zeros(2, 1, 28, 28), torch.zeros(2).long())]),
     ValueError, "width_scores with a loader works on float32 or float64 models"),
    (lambda m: W.prune_width(W.mask_width(m, [0, 1]), [0]), ValueError,
     "prune_width cannot prune the width of 'norm': it is a MaskedLayerNorm"),
    (lambda m: W.select_width(torch.tensor([1.0, float("nan")]), 0.5), ValueError, "NaN"),
    (lambda m: W.select_width(torch.ones(3), 1.0), ValueError, "fraction must be in"),
    (lambda m: W.select_width(torch.ones(2, 2), 0.5), ValueError, "1-D tensor"),
])
def test_width_bad_inputs_are_refused_and_the_model_unchanged(call, error, match):
    model = make("tinyvit")
    before = state(model)
    with pytest.raises(error, match=match):
        call(model)
    assert same_state(model, before)


def test_width_refuses_masked_layers_and_masked_width_files(tmp_path):
    model = make("tinyvit")
    mp.apply_masks(model, {"blocks.1.attn.k.weight": torch.rand(32, 32) > 0.5})
    with pytest.raises(ValueError, match="prune_width slices 'blocks.1.attn.k'.*make_permanent"):
        W.prune_width(model, KEEP)
    x = inputs("tinyvit")
    folded = mp.make_permanent(mp.copy_model(model))
    assert close(W.prune_width(folded, KEEP)(x), W.mask_width(model, KEEP)(x))  # masks honoured by mask_width
    with pytest.raises(ValueError, match="kept"):  # a masked-width model is not saved as a plain one
        mp.save_model(tmp_path / "m.pt", W.mask_width(folded, KEEP))


# ---- depth -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_drop_blocks_equals_identity_blocks(tmp_path, arch):
    model, x = make(arch, n_layer=3) if arch != "tinyvit" else make(arch, depth=3), inputs(arch)
    before, reference = state(model), model(x)
    dropped, masked = D.drop_blocks(model, [1]), D.mask_blocks(model, [1])
    assert isinstance(masked.blocks[1], nn.Identity) and len(dropped.blocks) == 2
    assert torch.equal(dropped(x), masked(x))
    assert same_state(model, before) and torch.equal(model(x), reference)
    assert dropped.config["depth" if arch == "tinyvit" else "n_layer"] == 2
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "d.pt", dropped))
    assert torch.equal(loaded.eval()(x), dropped(x))
    assert torch.equal(D.drop_blocks(model, [])(x), reference)


@pytest.mark.parametrize("arch", ["tinyvit", "chargpt"])
def test_drop_blocks_renumbers_pruned_shapes(tmp_path, arch):
    model, x = make(arch, n_layer=3) if arch != "tinyvit" else make(arch, depth=3), inputs(arch)
    pruned = H.prune_heads(model, {"blocks.2.attn": [0, 3]})
    dropped = D.drop_blocks(pruned, [0])
    shapes = models.describe(dropped)["shapes"]
    assert shapes["blocks.1.attn.q"][1]["out_features"] == 16 and not any(k.startswith("blocks.2") for k in shapes)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "hd.pt", dropped))
    assert torch.equal(loaded.eval()(x), dropped(x)) and torch.equal(dropped(x), D.mask_blocks(pruned, [0])(x))
    narrow = W.prune_width(dropped, KEEP)  # width pruning after depth pruning, and of a model with an Identity block
    assert close(narrow(x), W.mask_width(D.mask_blocks(pruned, [0]), KEEP)(x))


def _hidden_states(model, x):
    """The residual stream entering each block and leaving the last one, computed by hand."""
    if isinstance(model, mp.TinyViT):
        h = model.embed(model.patches(x))
        h = torch.cat([model.cls_token.expand(len(x), -1, -1), h], dim=1) + model.pos
    else:
        h = model.tok_emb(x) + model.pos_emb(torch.arange(x.shape[1]))
    states = [h]
    for block in model.blocks:
        states.append(block(states[-1]))
    return states


@pytest.mark.parametrize("arch", ["tinyvit", "chargpt"])
def test_block_importance_is_one_minus_mean_cosine(batches, arch):
    model = make(arch).train()
    before = state(model)
    scores = D.block_importance(model, batches[arch], max_batches=2)
    assert same_state(model, before) and model.training and scores.shape == (2,)
    with torch.no_grad():
        cos = [[], []]
        for x, _ in batches[arch]:
            states = _hidden_states(model.eval(), x)
            for i in range(2):
                cos[i].append(F.cosine_similarity(states[i], states[i + 1], dim=-1).flatten())
    expect = torch.stack([1 - torch.cat(c).double().mean() for c in cos]).float()
    assert torch.allclose(scores, expect, atol=1e-6)
    assert D.block_importance(D.mask_blocks(model, [0]), batches[arch])[0].abs() < 1e-6


@pytest.mark.parametrize("arch", ["tinyvit", "chargpt"])
def test_block_ablation_is_the_loss_rise_of_skipping_one_block(batches, arch):
    model = make(arch)
    with torch.no_grad():  # block 1 writes nothing to the residual stream: skipping it costs nothing
        for layer in (model.blocks[1].attn.proj, model.blocks[1].mlp.fc2):
            layer.weight.zero_(), layer.bias.zero_()
    before = state(model)
    rises = D.block_ablation(model, batches[arch], max_batches=1, device="cpu")
    assert same_state(model, before) and rises.shape == (2,) and rises.dtype == torch.float32
    assert rises[1].abs() < 1e-6 and rises[0] != 0
    base = mp.evaluate(model, batches[arch][:1], device="cpu")["loss"]
    expect = mp.evaluate(D.drop_blocks(model, [0]), batches[arch][:1], device="cpu")["loss"] - base
    assert abs(rises[0].item() - expect) < 1e-5
    assert D.select_blocks(rises, 1) == [1]


def test_select_blocks():
    assert D.select_blocks(torch.tensor([0.3, 0.1, 0.2, 0.4]), 2) == [1, 2]
    assert D.select_blocks(torch.tensor([0.5, 0.2, 0.2]), 1) == [2]  # among ties the later block goes first
    assert D.select_blocks(torch.tensor([0.5, 0.2]), 0) == []


@pytest.mark.parametrize("call,error,match", [
    (lambda m: D.drop_blocks(m, [0, 1]), ValueError, "drop names all 2 blocks"),
    (lambda m: D.drop_blocks(m, [2]), ValueError, r"drop holds block index 2, outside \[0, 2\)"),
    (lambda m: D.mask_blocks(m, [1, 1]), ValueError, "drop names block 1 more than once"),
    (lambda m: D.drop_blocks(m, [0.0]), TypeError, "must list int block indices"),
    (lambda m: D.drop_blocks(m, 1), TypeError, "drop must be a list or 1-D tensor"),
    (lambda m: D.drop_blocks(mp.build("lenet300"), [0]), ValueError, "drop_blocks drops the blocks of TinyViT"),
    (lambda m: D.block_importance(m, None), TypeError, "loader must be an iterable"),
    (lambda m: D.block_importance(m, [(torch.zeros(2, 1, 28, 28), torch.zeros(2).long())], max_batches=0),
     ValueError, "max_batches must be a positive int"),
    (lambda m: D.block_importance(mp.copy_model(m).half(), [(torch.zeros(2, 1, 28, 28), torch.zeros(2).long())]),
     ValueError, "block_importance works on float32 or float64"),
    (lambda m: D.block_ablation(m, "data"), TypeError, "loader must be an iterable"),
    (lambda m: D.block_ablation(m, [], max_batches=True), ValueError, "max_batches"),
    (lambda m: D.select_blocks(torch.ones(3), 3), ValueError, "n_drop must leave at least one of the 3 blocks"),
    (lambda m: D.select_blocks(torch.ones(3), -1), ValueError, "n_drop must be a non-negative int"),
    (lambda m: D.select_blocks([0.1, 0.2], 1), TypeError, "scores must be a 1-D tensor"),
])
def test_depth_bad_inputs_are_refused_and_the_model_unchanged(call, error, match):
    model = make("tinyvit")
    before = state(model)
    with pytest.raises(error, match=match):
        call(model)
    assert same_state(model, before)
