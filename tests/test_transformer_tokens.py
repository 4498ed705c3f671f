"""Token pruning (EViT) and token merging (ToMe) of TinyViT at inference (minprune.transformers.tokens and
token_merging): exact at keep_rate=1 and r=0, equal to a masked oracle otherwise, the model passed in unchanged."""

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.attention_blocks import SelfAttention
from minprune.transformers.token_merging import TokenMerged, merge_tokens, merged_count
from minprune.transformers.tokens import TokenPruned, kept_count, prune_tokens


def make(seed=0, dtype=torch.float32, **sizes):
    torch.manual_seed(seed)
    model = mp.build("tinyvit", **{"dim": 32, "depth": 2, "heads": 4, **sizes}).to(dtype).eval()
    with torch.no_grad():  # random biases and a less uniform attention make index mistakes show
        for name, p in model.named_parameters():
            if name.endswith("bias") or name in ("pos", "cls_token"):
                p.normal_(std=0.3)
    return model


def images(n=7, seed=1, dtype=torch.float32):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).to(dtype)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, before):
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in now)


def embed(vit, x):
    tokens = vit.embed(vit.patches(x))
    return torch.cat([vit.cls_token.expand(len(x), -1, -1), tokens], dim=1) + vit.pos


def masked_evit(vit, x, kept, fuse):
    """Oracle: every token stays where it is; a dropped token is masked out as a key (log_size -inf) of every later
    attention, and a fused token lives in one extra slot, masked until the first stage. kept: {block: count}."""
    tokens = embed(vit, x)
    b, n = len(x), tokens.shape[1] - 1
    tokens = torch.cat([tokens, torch.zeros_like(tokens[:, :1])], dim=1)  # the fused token's slot, last
    alive = torch.ones(b, n + 1, dtype=torch.bool)
    alive[:, -1] = False
    for i, block in enumerate(vit.blocks):
        log_size = torch.zeros(b, n + 2, dtype=x.dtype).masked_fill(~torch.cat([alive[:, :1], alive], 1), -math.inf)
        out, probs = block.attn.attend(block.ln1(tokens), log_size=log_size)
        tokens = tokens + out
        if i in kept:
            w = probs[:, :, 0, 1:].mean(1)  # (b, n + 1)
            top = w[:, :n].masked_fill(~alive[:, :n], -math.inf).topk(kept[i], dim=1).indices
            now = torch.zeros_like(alive).scatter(1, top, True)
            if fuse:
                gone = (alive & ~now).to(x.dtype)
                gone[:, -1] = alive[:, -1].to(x.dtype)  # an earlier fused token joins the new one
                fused = ((w * gone)[..., None] * tokens[:, 1:]).sum(1) / (w * gone).sum(1, keepdim=True)
                tokens = torch.cat([tokens[:, :-1], fused[:, None]], dim=1)
                now[:, -1] = True
            alive = now
        tokens = tokens + block.mlp(block.ln2(tokens))
    return vit.head(vit.norm(tokens)[:, 0])


# ---- EViT -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("fuse", [True, False])
def test_keep_rate_one_is_the_dense_model_exactly(n, fuse):
    model = make()
    x = images(n)
    wrapper = TokenPruned(model, keep_rate=1.0, after=(0, 1), fuse=fuse)
    assert torch.equal(wrapper(x), model(x))
    assert wrapper.token_counts() == [17, 17]


@pytest.mark.parametrize("keep_rate, kept", [(0.5, {0: 8, 1: 4}), (0.7, {0: 12, 1: 9})])
@pytest.mark.parametrize("fuse", [True, False])
def test_pruned_tokens_equal_masking_them(keep_rate, kept, fuse):
    model = make(dtype=torch.float64)
    x = images(7, dtype=torch.float64)
    wrapper = TokenPruned(model, keep_rate=keep_rate, after=(0, 1), fuse=fuse)
    with torch.no_grad():
        got, want = wrapper(x), masked_evit(model, x, kept, fuse)
        assert torch.allclose(got, want, atol=1e-10, rtol=0)
        assert float((got - model(x)).abs().max()) > 1e-5  # pruning did change the logits


def test_pruned_tokens_equal_masking_them_in_float32():
    model, x = make(depth=3), images(5)
    wrapper = TokenPruned(model, keep_rate=0.5, after=(1, 2), fuse=True)
    with torch.no_grad():
        assert torch.allclose(wrapper(x), masked_evit(model, x, {1: 8, 2: 4}, True), atol=1e-5)


def test_prune_tokens_by_hand():
    tokens = torch.arange(15.0).reshape(1, 5, 3)  # class token, then 4 patch tokens
    probs = torch.zeros(1, 2, 5, 5)
    probs[0, 0, 0] = torch.tensor([0.0, 0.5, 0.1, 0.2, 0.2])
    probs[0, 1, 0] = torch.tensor([0.0, 0.3, 0.1, 0.4, 0.2])  # mean over heads: [0.4, 0.1, 0.3, 0.2]
    origin = torch.tensor([[3, 5, 9, 12]])
    out, kept = prune_tokens(tokens, probs, origin, 0.5, True)
    assert kept.tolist() == [[3, 9]]
    assert torch.equal(out[0, :3], tokens[0, [0, 1, 3]])
    assert torch.allclose(out[0, 3], (0.1 * tokens[0, 2] + 0.2 * tokens[0, 4]) / 0.3)
    dropped, _ = prune_tokens(tokens, probs, origin, 0.5, False)
    assert torch.equal(dropped[0], tokens[0, [0, 1, 3]])


def test_kept_count_is_the_ceiling():
    assert [kept_count(0.7, n) for n in (10, 16, 12, 1)] == [7, 12, 9, 1]
    assert [kept_count(k, 16) for k in (1.0, 0.5, 0.3, 0.01)] == [16, 8, 5, 1]


def test_kept_patches_shape_sorted_nested_and_per_image():
    model, x = make(), images(7)
    wrapper = TokenPruned(model, keep_rate=0.5, after=(0, 1))
    kept = wrapper.kept_patches(x)
    assert list(kept) == [0, 1]
    assert kept[0].shape == (7, 8) and kept[1].shape == (7, 4) and kept[0].dtype == torch.long
    for idx in kept.values():
        assert bool((idx[:, 1:] > idx[:, :-1]).all()) and int(idx.min()) >= 0 and int(idx.max()) < 16
    assert all(set(kept[1][i].tolist()) <= set(kept[0][i].tolist()) for i in range(7))
    alone = [wrapper.kept_patches(x[i:i + 1]) for i in range(7)]
    assert all(torch.equal(alone[i][1][0], kept[1][i]) for i in range(7))  # each image chooses its own
    assert len({tuple(row.tolist()) for row in kept[1]}) > 1


def mlp_token_counts(wrapper, x):
    """The number of tokens each block's MLP is given when `wrapper` runs on x."""
    seen = []
    hooks = [b.mlp.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[1]))
             for b in wrapper.vit.blocks]
    wrapper(x)
    for h in hooks:
        h.remove()
    return seen


def test_token_counts_are_what_the_blocks_run_on():
    model = make(depth=4)
    for wrapper in (TokenPruned(model, keep_rate=0.7, after=(1, 2)), TokenPruned(model, 0.5, (0, 3), fuse=False),
                    TokenMerged(model, r=3)):
        assert mlp_token_counts(wrapper, images(3)) == wrapper.token_counts()
    assert TokenPruned(model, keep_rate=0.7, after=(1, 2)).token_counts() == [17, 14, 11, 11]
    assert TokenMerged(model, r=3).token_counts() == [14, 11, 8, 5]


def test_macs_fall_with_the_keep_rate_and_with_r():
    model = make(depth=3)
    dense = mp.count_macs(model)
    pruned = [mp.count_macs(TokenPruned(model, keep_rate=k, after=(1, 2))) for k in (1.0, 0.9, 0.7, 0.5, 0.3)]
    assert pruned[0] == dense
    assert all(a > b for a, b in zip(pruned, pruned[1:]))
    merged = [mp.count_macs(TokenMerged(model, r=r)) for r in (0, 1, 2, 3)]
    assert merged[0] == dense and all(a > b for a, b in zip(merged, merged[1:]))
    dim, hidden = 32, 64  # block 2's MLP runs on 1 + 4 + 1 tokens instead of 17 at keep_rate 0.5
    mlp_saved = (17 - 6) * 2 * dim * hidden
    assert dense - pruned[3] > mlp_saved


# ---- ToMe -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7])
def test_r_zero_is_the_dense_model_exactly(n):
    model, x = make(), images(n)
    assert torch.equal(TokenMerged(model, r=0)(x), model(x))


def naive_merge(x, size, metric, r):
    """Oracle: bipartite soft matching written as loops over one image and its tokens."""
    rows_x, rows_size = [], []
    for img, s, m in zip(x, size, metric):
        a, b = list(range(0, len(img), 2)), list(range(1, len(img), 2))
        cos = torch.nn.functional.cosine_similarity
        best = {i: max((float(cos(m[i], m[j], dim=0)), j) for j in b) for i in a[1:]}
        chosen = sorted(best, key=lambda i: -best[i][0])[:r]
        groups = [[i] for i in a if i not in chosen] + [[j] + [i for i in chosen if best[i][1] == j] for j in b]
        total = torch.stack([s[g].sum(0) for g in groups])
        rows_x.append(torch.stack([(img[g] * s[g]).sum(0) for g in groups]) / total)
        rows_size.append(total)
    return torch.stack(rows_x), torch.stack(rows_size)


@pytest.mark.parametrize("t, r", [(17, 1), (17, 8), (10, 3), (6, 2)])
def test_merge_tokens_equals_a_naive_loop(t, r):
    g = torch.Generator().manual_seed(t + r)
    x, metric = torch.randn(3, t, 5, generator=g), torch.randn(3, t, 4, generator=g)
    size = torch.randint(1, 4, (3, t, 1), generator=g).float()
    got_x, got_size = merge_tokens(x, size, metric, r)
    want_x, want_size = naive_merge(x, size, metric, r)
    assert got_x.shape == (3, t - r, 5)
    assert torch.equal(got_size, want_size) and torch.allclose(got_x, want_x, atol=1e-6)


def test_merging_a_duplicate_with_proportional_attention_changes_nothing():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2)
    x = torch.randn(2, 6, 8)
    x[:, 3] = x[:, 2]  # tokens 2 (set A) and 3 (set B) are the same: their match is exact
    merged, size = merge_tokens(x, torch.ones(2, 6, 1), x, 1)
    assert size[0, :, 0].tolist() == [1, 1, 1, 2, 1]
    dense = attn.attend(x)[0][:, [0, 4, 1, 3, 5]]  # the merged order: unmerged A tokens, then B
    assert torch.allclose(attn.attend(merged, log_size=size[..., 0].log())[0], dense, atol=1e-6)


@functools.cache
def small(depth):
    return make(dim=16, depth=depth, heads=2)


@settings(max_examples=15, deadline=None)
@given(r=st.integers(0, 8), depth=st.integers(1, 5), batch=st.integers(1, 4))
def test_merged_sizes_sum_to_the_tokens_and_counts_fall_by_r(r, depth, batch):
    model = small(depth)  # never changed: a wrapper runs a copy
    sizes = TokenMerged(model, r=r).token_sizes(images(batch))
    t = 17
    for s in sizes:
        t -= merged_count(r, t)
        assert s.shape == (batch, t) and t >= 2
        assert torch.equal(s.sum(1), torch.full((batch,), 17.0))
        assert bool((s[:, 0] == 1).all())  # the class token is never merged
    assert merged_count(r, 17) == r


# ---- both wrappers as models ------------------------------------------------------------------------------

WRAPPERS = {"evit": lambda m: TokenPruned(m, keep_rate=0.5, after=(0, 1)), "tome": lambda m: TokenMerged(m, r=3)}


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_the_model_passed_in_never_changes(kind):
    model = make()
    before = state(model)
    wrapper = WRAPPERS[kind](model)
    loss = wrapper(images(4)).square().mean()  # a training step on the wrapper trains its copy only
    loss.backward()
    torch.optim.SGD(wrapper.parameters(), lr=1.0).step()
    assert same_state(model, before) and all(p.grad is None for p in model.parameters())
    assert not same_state(wrapper.vit, before)


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_no_grad_eval_and_train_mode_give_the_same_logits(kind):
    wrapper, x = WRAPPERS[kind](make()), images(7)
    with torch.no_grad():
        frozen = wrapper.eval()(x)
    trained = wrapper.train()(x)
    assert trained.requires_grad and torch.equal(trained.detach(), frozen)
    assert frozen.shape == (7, 10) and wrapper.vit.blocks[0].training


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_evaluate_and_latency_take_a_wrapper(kind):
    model = make()
    x, y = images(16, seed=3), torch.randint(0, 10, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    exact = TokenPruned(model, keep_rate=1.0, after=(0, 1)) if kind == "evit" else TokenMerged(model, r=0)
    assert mp.evaluate(exact, loader, device="cpu") == mp.evaluate(model, loader, device="cpu")
    wrapper = WRAPPERS[kind](model)
    result = mp.evaluate(wrapper, loader, device="cpu")
    logits = wrapper(x)
    assert result["acc"] == pytest.approx(100.0 * float((logits.argmax(1) == y).float().mean()))
    assert mp.latency(wrapper, batch_size=2, warmup=1, repeats=3)["median_ms"] > 0


@pytest.mark.parametrize("make_call, error, fragments", [
    (lambda m: TokenPruned(mp.build("lenet5")), ValueError, ["TokenPruned works on a TinyViT", "LeNet5"]),
    (lambda m: TokenMerged(mp.build("chargpt", n_layer=2, n_embd=32, n_head=4, block_size=16)), ValueError,
     ["TokenMerged works on a TinyViT", "CharGPT", "causal", "out of scope"]),
    (lambda m: TokenPruned("model"), TypeError, ["model must be a torch.nn.Module", "str"]),
    (lambda m: TokenPruned(m, keep_rate=0), ValueError, ["keep_rate must be a finite number in (0, 1]"]),
    (lambda m: TokenPruned(m, keep_rate=1.5), ValueError, ["keep_rate", "1.5"]),
    (lambda m: TokenPruned(m, keep_rate=float("nan")), ValueError, ["keep_rate", "NaN"]),
    (lambda m: TokenPruned(m, after=()), ValueError, ["after names no block", "[0, 2)"]),
    (lambda m: TokenPruned(m, after=(2,)), ValueError, ["after holds block index 2, outside [0, 2)"]),
    (lambda m: TokenPruned(m, after=(1, 1)), ValueError, ["after names block 1 more than once"]),
    (lambda m: TokenPruned(m, after=1), TypeError, ["after must be a tuple of block indices", "int"]),
    (lambda m: TokenPruned(m, after=(0.5,)), TypeError, ["after must list int block indices"]),
    (lambda m: TokenPruned(m, after=(0, 1), fuse="yes"), TypeError, ["fuse must be True or False", "'yes'"]),
    (lambda m: TokenMerged(m, r=-1), ValueError, ["r must be a non-negative int", "-1"]),
    (lambda m: TokenMerged(m, r=1.5), ValueError, ["r must be a non-negative int", "1.5"]),
    (lambda m: TokenMerged(m, r=True), ValueError, ["r must be a non-negative int", "True"]),
    (lambda m: TokenMerged(m, r=9), ValueError, ["r=9 would merge more than half of the 16 patch tokens"]),
    (lambda m: TokenPruned(m, after=(0,))(torch.randn(2, 3, 32, 32)), ValueError,
     ["TokenPruned expects input of shape (batch, 1, 28, 28)", "(2, 3, 32, 32)"]),
    (lambda m: TokenMerged(m, r=1).token_sizes(torch.randn(2, 28, 28)), ValueError,
     ["TokenMerged expects input of shape (batch, 1, 28, 28)"]),
])
def test_bad_arguments_are_refused_and_change_nothing(make_call, error, fragments):
    model = make()
    before = state(model)
    with pytest.raises(error) as info:
        make_call(model)
    assert type(info.value) is error
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert same_state(model, before)


def test_models_the_block_loop_cannot_reproduce_are_refused():
    model = make()
    handle = model.blocks[1].attn.register_forward_hook(lambda *_: None)
    with pytest.raises(ValueError, match="blocks.1.attn of model .TinyViT.: it has forward hooks"):
        TokenMerged(model)
    handle.remove()
    model.blocks[0] = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"model.blocks\[0\] is Identity, not a Block"):
        TokenPruned(model)

    class Wider(type(model)):
        def forward(self, x):
            return super().forward(x) * 2
    with pytest.raises(ValueError, match=r"works on a TinyViT .*got model \(Wider\)"):
        TokenPruned(Wider(dim=16, depth=1, heads=2))
