"""Data-driven head scores (minprune.transformers.head_importance): the Taylor score of each head's output, checked
against finite differences, explicit autograd and head_ablation; attention entropy against closed forms and a
brute-force computation; the model passed in unchanged; bad input refused."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.attention_blocks import SelfAttention
from minprune.transformers import head_importance as HI
from minprune.transformers import heads as H

SMALL = {"tinyvit": {"dim": 16, "depth": 2, "heads": 4},
         "chargpt": {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 4, "n_embd": 16}}
ARCHS = list(SMALL)
LAYERS = ("blocks.0.attn", "blocks.1.attn")


def make(arch, seed=0, dtype=torch.float64):
    """A tiny model with weights large enough (std 0.3) that attention is far from uniform."""
    torch.manual_seed(seed)
    model = mp.build(arch, **SMALL[arch]).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or name.endswith("bias"):
                p.normal_(std=0.3)
    return model


def loader(arch, n=16, batch_size=8):
    g = torch.Generator().manual_seed(2)
    if arch == "tinyvit":
        x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    else:
        x, y = torch.randint(0, 11, (n, 8), generator=g), torch.randint(0, 11, (n, 8), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)


def batch_loss(model, batch):
    return mp.evaluate(model, [batch], device="cpu")["loss"]


def scaled_head(model, layer, head, factor):
    """A copy of `model` whose head `head` of `layer` has its proj columns times `factor`: the gate set to factor."""
    out = mp.copy_model(model)
    attn = dict(out.named_modules())[layer]
    d = attn.head_dim
    with torch.no_grad():
        attn.proj.weight[:, head * d:(head + 1) * d] *= factor
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_taylor_score_is_the_gate_derivative_by_finite_differences(arch):
    model, data = make(arch), loader(arch)
    scores = HI.head_taylor_scores(model, data, max_batches=1, device="cpu")
    first, eps = next(iter(data)), 1e-5
    for layer in LAYERS:
        for head in range(4):
            up = batch_loss(scaled_head(model, layer, head, 1 + eps), first)
            down = batch_loss(scaled_head(model, layer, head, 1 - eps), first)
            expect = abs(up - down) / (2 * eps)
            assert scores[layer][head].item() == pytest.approx(expect, rel=1e-5, abs=1e-10), (layer, head)


@pytest.mark.parametrize("arch", ARCHS)
def test_taylor_score_is_mean_over_batches_of_abs_output_times_gradient(arch):
    model, data = make(arch), loader(arch, n=20)  # batches of 8, 8 and 4: three read, each weighs the same
    work, expect, seen = mp.copy_model(model), {layer: torch.zeros(4, dtype=torch.float64) for layer in LAYERS}, {}
    hooks = [dict(work.named_modules())[layer].proj.register_forward_pre_hook(
        lambda m, args, layer=layer: seen.__setitem__(layer, args[0])) for layer in LAYERS]
    for x, y in data:
        logits = work(x.double() if x.is_floating_point() else x)
        loss = nn.functional.cross_entropy(logits.flatten(0, -2), y.flatten())
        outputs = [seen[layer] for layer in LAYERS]  # (batch, tokens, heads * head_dim), the input of proj
        grads = torch.autograd.grad(loss, outputs)
        for layer, a, g in zip(LAYERS, outputs, grads):
            expect[layer] += (a * g).unflatten(-1, (4, -1)).sum((0, 1, 3)).abs() / 3
    for hook in hooks:
        hook.remove()
    scores = HI.head_taylor_scores(model, data, max_batches=3, device="cpu")
    for layer in LAYERS:
        assert torch.allclose(scores[layer], expect[layer], rtol=1e-9, atol=1e-14), layer


@pytest.mark.parametrize("arch", ARCHS)
def test_a_head_with_zero_proj_columns_scores_exactly_zero(arch):
    model = make(arch, dtype=torch.float32)
    with torch.no_grad():
        model.blocks[1].attn.proj.weight[:, 8:12] = 0  # head 2 of the second layer contributes nothing
    scores = HI.head_taylor_scores(model, loader(arch), device="cpu")
    assert scores["blocks.1.attn"][2] == 0
    assert (scores["blocks.1.attn"][[0, 1, 3]] > 0).all() and (scores["blocks.0.attn"] > 0).all()
    assert scores["blocks.1.attn"].dtype == torch.float32


@pytest.mark.parametrize("arch", ARCHS)
def test_taylor_matches_ablation_for_a_head_with_a_small_output(arch):
    """Removing a head whose output is scaled by s changes the loss by -s dL/ds + O(s^2): first order is exact."""
    model = scaled_head(make(arch), "blocks.0.attn", 1, 1e-3)
    data = loader(arch)
    taylor = HI.head_taylor_scores(model, data, max_batches=1, device="cpu")["blocks.0.attn"][1].item()
    rise = H.head_ablation(model, data, max_batches=1, device="cpu")["blocks.0.attn"][1].item()
    assert taylor > 0 and abs(rise) == pytest.approx(taylor, rel=1e-2)


def uniform_attention(model):
    with torch.no_grad():
        for attn in H.attention_layers(model).values():
            attn.q.weight.zero_()
            attn.q.bias.zero_()  # every query-key score 0: uniform over the keys a query sees
    return model


def test_entropy_of_uniform_attention_is_log_tokens():
    ent = HI.head_entropy(uniform_attention(make("tinyvit")), loader("tinyvit"), device="cpu")
    tokens = 16 + 1  # 4 x 4 patches and the class token
    for layer in LAYERS:
        assert torch.allclose(ent[layer], torch.full((4,), math.log(tokens)), rtol=1e-6)


def test_entropy_of_uniform_causal_attention_is_mean_log_of_visible_keys():
    ent = HI.head_entropy(uniform_attention(make("chargpt")), loader("chargpt"), device="cpu")
    expect = sum(math.log(i + 1) for i in range(8)) / 8  # query i sees keys 0..i
    for layer in LAYERS:
        assert torch.allclose(ent[layer], torch.full((4,), expect), rtol=1e-6)


class SelfLooking(nn.Module):
    """One attention layer on (batch, tokens, dim) inputs, logits = the mean over tokens of its output."""

    def __init__(self, dim=4, sharpness=1000.0):
        super().__init__()
        self.attn = SelfAttention(dim, 1)
        with torch.no_grad():
            for layer in (self.attn.q, self.attn.k):
                layer.weight.copy_(torch.eye(dim))
                layer.bias.zero_()
            self.attn.q.weight.mul_(sharpness)  # one-hot tokens: each query looks at its own key only

    def forward(self, x):
        return self.attn(x).mean(1)


def test_entropy_of_one_hot_attention_is_zero():
    x = torch.eye(4).repeat(6, 1, 1)  # (6, 4 tokens, 4): token i is the one-hot vector e_i
    data = [(x, torch.zeros(6, dtype=torch.long))]
    assert HI.head_entropy(SelfLooking(), data, device="cpu")["attn"].item() < 1e-6
    assert HI.head_entropy(SelfLooking(sharpness=0.0), data, device="cpu")["attn"].item() == pytest.approx(
        math.log(4), rel=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_entropy_equals_a_brute_force_mean_over_every_query(arch):
    model, data = make(arch), loader(arch, n=11)  # batches of 8 and 3: every query counts once
    inputs = {}
    hooks = [model.blocks[i].attn.register_forward_pre_hook(
        lambda m, args, i=i: inputs.setdefault(i, []).append(args[0])) for i in range(2)]
    for x, _ in data:
        model(x.double() if x.is_floating_point() else x)
    for hook in hooks:
        hook.remove()
    ent = HI.head_entropy(model, data, device="cpu")
    for i, layer in enumerate(LAYERS):
        probs = torch.cat([model.blocks[i].attn.attend(a)[1] for a in inputs[i]])  # (11, heads, t, t)
        logs = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
        expect = -(probs * logs).sum(-1).mean((0, 2))
        assert torch.allclose(ent[layer], expect.float(), rtol=1e-5), layer
        assert ent[layer].std() > 0.01  # the heads differ, so the test can tell them apart


def hooks_of(model):
    return [(len(m._forward_pre_hooks), len(m._forward_hooks), len(m._backward_hooks)) for m in model.modules()]


@pytest.mark.parametrize("score", [HI.head_taylor_scores, HI.head_entropy])
@pytest.mark.parametrize("arch", ARCHS)
def test_the_model_is_left_exactly_as_it_was(arch, score):
    model = make(arch, dtype=torch.float32).train()
    model.blocks[0].mlp.eval()  # a mixed flag must survive too
    model.blocks[1].attn.k.weight.requires_grad_(False)
    marked = model.blocks[0].attn.q.weight
    marked.grad = torch.full_like(marked, 7.0)
    before, flags, hooks = state(model), [m.training for m in model.modules()], hooks_of(model)
    wanted = [p.requires_grad for p in model.parameters()]
    score(model, loader(arch), max_batches=2, device="cpu")
    assert same_state(model, before) and hooks_of(model) == hooks
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == wanted
    assert torch.equal(marked.grad, torch.full_like(marked, 7.0))
    assert all(p.grad is None for p in model.parameters() if p is not marked)


@pytest.mark.parametrize("score", [HI.head_taylor_scores, HI.head_entropy])
@pytest.mark.parametrize("arch", ARCHS)
def test_select_heads_and_prune_heads_take_the_scores_as_they_are(arch, score):
    model, data = make(arch, dtype=torch.float32), loader(arch)
    scores = score(model, data, device="cpu")
    assert list(scores) == list(LAYERS) and all(s.shape == (4,) for s in scores.values())
    keep = H.select_heads(scores, 0.5)
    for layer in LAYERS:
        assert keep[layer].tolist() == sorted(scores[layer].argsort(descending=True)[:2].tolist())
    small = H.prune_heads(model, keep)
    assert all(attn.heads == 2 for attn in H.attention_layers(small).values())


def test_the_flat_api_exports_both():
    assert mp.head_taylor_scores is HI.head_taylor_scores and mp.head_entropy is HI.head_entropy


@pytest.mark.parametrize("score", [HI.head_taylor_scores, HI.head_entropy])
@pytest.mark.parametrize("call, error, match", [
    (lambda s, m: s(mp.build("lenet5"), loader("tinyvit")), ValueError, "no SelfAttention layers"),
    (lambda s, m: s(m, loader("tinyvit"), max_batches=0), ValueError, "max_batches must be a positive int, got 0"),
    (lambda s, m: s(m, None), TypeError, "loader must be an iterable"),
    (lambda s, m: s(m, []), ValueError, "empty loader"),
    (lambda s, m: s(m, loader("chargpt")), ValueError, "loader yields"),
    (lambda s, m: s("model", loader("tinyvit")), TypeError, "model must be a torch.nn.Module"),
])
def test_bad_inputs_are_refused_and_the_model_unchanged(score, call, error, match):
    model = make("tinyvit", dtype=torch.float32)
    before, hooks = state(model), hooks_of(model)
    with pytest.raises(error, match=match):
        call(score, model)
    assert same_state(model, before) and hooks_of(model) == hooks


def test_taylor_refuses_a_half_precision_model():
    model = make("tinyvit", dtype=torch.float16)
    with pytest.raises(ValueError, match="head_taylor_scores works on float32 or float64 models"):
        HI.head_taylor_scores(model, loader("tinyvit"))
