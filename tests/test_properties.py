"""Property tests across the library (hypothesis), on small random models so that the file runs in seconds.

What is *not* repeated here, because the module tests already check it on random cases: masked == compacted on
random hand-written CNNs (test_surgery), exact counts of `make_masks` on score dicts (test_masks), per-tensor
quantization round trips (test_quantize), Huffman round trips of small alphabets (test_huffman).
Here: the same invariants through the models and the whole-model calls a learner uses.
"""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune.quantization import huffman
from minprune.train import make_optimizer
from minprune.unstructured.masks import n_pruned

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 10_000)
sparsities = st.floats(0.0, 0.95)
scopes = st.sampled_from(["local", "global"])


def mlp(seed: int, hidden: list[int], side: int = 5, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return mp.build("lenet300", input_shape=(1, side, side), num_classes=classes, hidden=hidden)


def prune_or_reject(model: nn.Module, scores: dict, sparsity: float, **options) -> dict:
    """mp.prune, rejecting the example where it would leave a layer empty (refused, as sparsity 1.0 is)."""
    try:
        return mp.prune(model, scores, sparsity, **options)
    except ValueError as exc:
        if "would remove every entry" not in str(exc):
            raise
        reject()


def small_cnn(seed: int, kind: str, widths: list[int], blocks: int = 1) -> nn.Module:
    """A VGG or ResNet with a few channels and random BatchNorm statistics (so BN is not the identity)."""
    torch.manual_seed(seed)
    if kind == "vgg":
        model = mp.build("vgg", input_shape=(2, 8, 8), num_classes=3, widths=widths)
    elif kind == "resnet":
        model = mp.build("resnet", input_shape=(2, 8, 8), num_classes=3, widths=widths, blocks=[blocks] * len(widths))
    else:
        model = mp.build("lenet5", input_shape=(1, 28, 28), num_classes=3, channels=widths[:2] * (3 - len(widths[:2])),
                         hidden=[6, 5])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def pruned_counts(model: nn.Module, names) -> dict[str, int]:
    masks = mp.get_masks(model)
    return {n: int((~masks[n]).sum()) if n in masks else 0 for n in names}


# ---- masked == compacted ------------------------------------------------------------------------------------

def _masked_and_compacted(model: nn.Module, sparsity: float, scope: str):
    graph = mp.trace_groups(model)
    try:
        keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), sparsity, scope=scope)
    except ValueError as exc:  # a sparsity that rounds to "every channel" of a narrow layer is refused (global:
        assert "every channel" in str(exc) or "empty a layer" in str(exc)  # more than all but one per layer)
        reject()
    masked = mp.apply_masks(mp.copy_model(model), mp.channel_masks(model, keep, graph)).eval()
    compacted = mp.remove_channels(model, keep, graph).eval()
    return masked, compacted, keep, graph


@FAST
@given(seed=seeds, hidden=st.lists(st.integers(2, 12), min_size=1, max_size=3), sparsity=st.floats(0.0, 0.9),
       scope=scopes)
def test_mlp_masked_equals_compacted(seed, hidden, sparsity, scope):
    model = mlp(seed, hidden).eval()
    masked, compacted, keep, graph = _masked_and_compacted(model, sparsity, scope)
    x = torch.randn(6, 1, 5, 5)
    torch.testing.assert_close(compacted(x), masked(x), atol=1e-5, rtol=1e-5)
    kept = sum(len(idx) for idx in keep.values())
    widths = [m.out_features for m in compacted.layers if isinstance(m, nn.Linear)][:-1]
    assert sum(widths) == kept and all(w >= 1 for w in widths)
    if scope == "local":
        assert widths == [h - n_pruned(h, sparsity) for h in hidden]
    assert mp.count_params(compacted) <= mp.count_params(model)


@SLOW
@given(seed=seeds, kind=st.sampled_from(["vgg", "resnet", "lenet5"]),
       widths=st.lists(st.integers(2, 6), min_size=1, max_size=2), blocks=st.integers(1, 2),
       sparsity=st.floats(0.0, 0.8), scope=scopes)
def test_cnn_masked_equals_compacted_and_saves(seed, kind, widths, blocks, sparsity, scope, tmp_path_factory):
    model = small_cnn(seed, kind, widths, blocks)
    masked, compacted, _, _ = _masked_and_compacted(model, sparsity, scope)
    shape = model.input_shape
    x = torch.randn(3, *shape)
    torch.testing.assert_close(compacted(x), masked(x), atol=1e-4, rtol=1e-4)
    path = mp.save_model(tmp_path_factory.mktemp("c") / "small.pt", compacted)  # resized layers are described
    loaded, _ = mp.load_model(path)
    assert torch.equal(loaded.eval()(x), compacted(x))


# ---- exact sparsity -----------------------------------------------------------------------------------------

@FAST
@given(seed=seeds, hidden=st.lists(st.integers(1, 15), min_size=1, max_size=3), s1=sparsities, s2=sparsities,
       scope1=scopes, scope2=scopes)
def test_prune_twice_reaches_exact_counts_and_keeps_old_zeros(seed, hidden, s1, s2, scope1, scope2):
    model = mlp(seed, hidden)
    names = mp.prunable_names(model)
    sizes = {n: mp.effective_parameters(model)[n].numel() for n in names}
    prune_or_reject(model, mp.magnitude_scores(model), s1, scope=scope1)
    old_masks = mp.get_masks(model)
    old = pruned_counts(model, names)
    if scope1 == "local":
        assert old == {n: n_pruned(sizes[n], s1) for n in names}
    else:
        assert sum(old.values()) == n_pruned(sum(sizes.values()), s1)
    prune_or_reject(model, mp.random_scores(model, seed=seed), s2, scope=scope2)
    new = pruned_counts(model, names)
    if scope2 == "local":  # the total sparsity of each tensor, old zeros included
        assert new == {n: max(old[n], n_pruned(sizes[n], s2)) for n in names}
    else:
        assert sum(new.values()) == max(sum(old.values()), n_pruned(sum(sizes.values()), s2))
    masks = mp.get_masks(model)
    assert all(bool((masks[n] <= old_masks[n]).all()) for n in names)  # nothing regrows
    assert math.isclose(mp.masks_sparsity(masks), sum(new.values()) / sum(sizes.values()))
    for n in names:  # the forward pass sees exactly the masked zeros
        assert int((mp.effective_parameters(model)[n] == 0).sum()) >= new[n]


@FAST
@given(seed=seeds, c1=st.integers(1, 6), c2=st.integers(1, 6), sparsity=sparsities, scope=scopes,
       override=st.floats(0.0, 0.95), exclude_last=st.booleans())
def test_conv_and_linear_counts_with_overrides_and_exclusions(seed, c1, c2, sparsity, scope, override, exclude_last):
    torch.manual_seed(seed)
    model = mp.build("lenet5", channels=[c1, c2], hidden=[7, 5], num_classes=3)
    names = mp.prunable_names(model)
    sizes = {n: p.numel() for n, p in mp.effective_parameters(model).items() if n in names}
    first, last = names[0], names[-1]
    exclude = [last] if exclude_last else []
    prune_or_reject(model, mp.magnitude_scores(model), sparsity, scope=scope, overrides={first: override},
                    exclude=exclude)
    counts = pruned_counts(model, names)
    assert counts[first] == n_pruned(sizes[first], override)
    if exclude_last:
        assert counts[last] == 0 and last not in mp.get_masks(model)
    rest = [n for n in names if n != first and n not in exclude]
    if scope == "local":
        assert all(counts[n] == n_pruned(sizes[n], sparsity) for n in rest)
    else:
        assert sum(counts[n] for n in rest) == n_pruned(sum(sizes[n] for n in rest), sparsity)


# ---- masks survive optimizer steps and save/load -------------------------------------------------------------

@FAST
@given(seed=seeds, hidden=st.lists(st.integers(2, 10), min_size=1, max_size=2), sparsity=st.floats(0.05, 0.95),
       optimizer=st.sampled_from(["sgd", "adam", "adamw"]), lr=st.floats(1e-3, 0.5), steps=st.integers(1, 4))
def test_masks_survive_optimizer_steps_and_save_load(seed, hidden, sparsity, optimizer, lr, steps, tmp_path_factory):
    model = mlp(seed, hidden)
    masks = prune_or_reject(model, mp.magnitude_scores(model), sparsity, scope="global")
    opt = make_optimizer(model, optimizer, lr=lr, weight_decay=0.1 if optimizer == "adamw" else 0.0)
    x, y = torch.randn(8, 1, 5, 5), torch.randint(0, 4, (8,))
    for _ in range(steps):  # SGD with momentum 0.9, Adam, AdamW with weight decay
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)  # the pre-hook recomputes weight = weight_orig * mask
    params = mp.effective_parameters(model)
    assert mp.get_masks(model).keys() == masks.keys()
    for n, mask in masks.items():
        assert torch.equal(mp.get_masks(model)[n], mask)
        assert bool((params[n][~mask] == 0).all())
    path = mp.save_model(tmp_path_factory.mktemp("m") / "masked.pt", model)
    loaded, _ = mp.load_model(path)
    for n, mask in masks.items():
        assert torch.equal(mp.get_masks(loaded)[n], mask)
    model.eval(), loaded.eval()
    assert torch.equal(loaded(x), model(x))
    fresh = mp.load_masked_state_dict(mlp(seed + 1, hidden), model.state_dict())
    assert torch.equal(fresh.eval()(x), model(x))
    mp.make_permanent(loaded)
    assert mp.count_nonzeros(loaded) <= mp.count_params(loaded) - sum(int((~m).sum()) for m in masks.values())


# ---- quantization ---------------------------------------------------------------------------------------------

@FAST
@given(seed=seeds, hidden=st.lists(st.integers(1, 10), min_size=1, max_size=2), bits=st.integers(2, 8),
       per_channel=st.booleans(), sparsity=st.floats(0.0, 0.9))
def test_quantized_model_weights_are_within_half_a_step(seed, hidden, bits, per_channel, sparsity):
    model = mlp(seed, hidden)
    prune_or_reject(model, mp.magnitude_scores(model), sparsity)
    mp.make_permanent(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    q = mp.quantize_weights(model, bits, per_channel=per_channel)
    for n in mp.prunable_names(model):
        W, Wq = before[n], dict(q.named_parameters())[n].detach()
        scale, _ = mp.quant_params(W, bits, symmetric=True, axis=0 if per_channel else None)
        step = scale.reshape(-1, 1) if per_channel else scale
        assert bool(((Wq - W).abs() <= step / 2 + 1e-6).all())  # rounding error at most half a step
        assert bool((Wq[W == 0] == 0).all())  # pruned weights stay exactly zero
        rows = Wq if per_channel else Wq.reshape(1, -1)
        assert all(len(torch.unique(r)) <= 2**bits - 1 for r in rows)  # on the symmetric grid
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # the original is untouched


@FAST
@given(seed=seeds, shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), bits=st.integers(2, 8),
       symmetric=st.booleans(), spread=st.floats(1e-3, 1e3))
def test_quantize_dequantize_error_at_most_half_a_step_at_any_scale(seed, shape, bits, symmetric, spread):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * spread
    scale, zero_point = mp.quant_params(x, bits, symmetric=symmetric)
    q = mp.quantization.uniform.quantize(x, scale, zero_point, bits, symmetric=symmetric)
    lo, hi = mp.quantization.uniform.qrange(bits, symmetric)
    assert int(q.min()) >= lo and int(q.max()) <= hi
    x_hat = mp.dequantize(q, scale, zero_point)
    assert bool(((x_hat - x).abs() <= scale / 2 * (1 + 1e-5) + 1e-7).all())
    torch.testing.assert_close(mp.fake_quantize(x, bits, symmetric=symmetric), x_hat, atol=1e-6 * spread, rtol=0)


# ---- Huffman and Deep Compression files -------------------------------------------------------------------------

@FAST
@given(symbols=st.lists(st.integers(-(2**20), 2**20), max_size=200), skew=st.integers(0, 5))
def test_huffman_round_trip_any_ints_and_kraft_equality(symbols, skew):
    symbols = symbols + [0] * (skew * len(symbols))  # a skewed distribution: one very frequent symbol
    data, lengths = huffman.encode(symbols)
    assert huffman.decode(data, lengths, len(symbols)) == symbols
    assert len(data) == -(-huffman.coded_bits(symbols) // 8)
    if len(lengths) > 1:  # a complete prefix code: sum 2^-length == 1
        assert sum(2.0 ** -n for n in lengths.values()) == 1.0


@SLOW
@given(seed=seeds, hidden=st.lists(st.integers(2, 12), min_size=1, max_size=2), sparsity=st.floats(0.5, 0.98),
       bits=st.integers(2, 5), max_gap=st.integers(1, 40))
def test_deep_compression_file_round_trip(seed, hidden, sparsity, bits, max_gap, tmp_path_factory):
    model = mlp(seed, hidden, side=4)
    prune_or_reject(model, mp.magnitude_scores(model), sparsity, scope="global")
    mp.make_permanent(model)
    mp.share_weights(model, bits)
    mp.unshare_weights(model)
    path = tmp_path_factory.mktemp("dc") / "model.mpdc"
    info = mp.save_compressed(path, model, max_gap=max_gap, float_dtype="float32")
    loaded = mp.load_compressed(path)
    assert info["bytes"] == path.stat().st_size
    original, decoded = model.state_dict(), loaded.state_dict()
    assert original.keys() == decoded.keys()
    for n in original:  # pruned zeros, shared values and float32 biases all exact
        assert torch.equal(original[n], decoded[n]), n
