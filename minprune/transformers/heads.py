"""Attention heads: score each one, measure what losing it costs, mask it, remove it.

In `attention_blocks.SelfAttention` head h owns rows [h * head_dim, (h + 1) * head_dim) of q, k and v and the same
columns of proj. A head whose proj columns are zero adds nothing to the block's output (`mask_heads`, the masked
equivalent); removing it (`prune_heads`) slices those rows and columns away, and the smaller model computes the
same outputs. Michel et al. (2019, "Are Sixteen Heads Really Better than One?") found that many heads can go at
little cost; `head_ablation` measures that cost one head at a time. Every function that removes returns a compacted
copy: the model passed in never changes. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

from itertools import islice

import torch
from torch import nn

from minprune.attention_blocks import SelfAttention
from minprune.batches import check_loader
from minprune.masked import copy_model
from minprune.train import evaluate
from minprune.transformers.units import (
    check_keep,
    check_norm,
    layers_of,
    refuse_masked,
    select_units,
    slice_linear,
    unit_rows,
    zero_columns,
)
from minprune.validate import positive_int


def attention_layers(model: nn.Module) -> dict[str, SelfAttention]:
    """{module name: SelfAttention} of every attention layer of `model`, in module order; ValueError for none."""
    return layers_of(model, SelfAttention, "heads")


def head_counts(model: nn.Module) -> dict[str, int]:
    """{attention layer name: number of heads}."""
    return {name: attn.heads for name, attn in attention_layers(model).items()}


@torch.no_grad()
def head_scores(model: nn.Module, norm: str = "l1") -> dict[str, torch.Tensor]:
    """{attention layer name: (heads,) scores}: the L1 or L2 norm of each head's weights taken together, its
    head_dim rows of q, k and v and its head_dim columns of proj (biases left out). Float32 scores (float64 for a
    float64 model); a masked model is scored by its effective (masked) weights."""
    p = check_norm(norm)
    out = {}
    for name, attn in attention_layers(model).items():
        h, d = attn.heads, attn.head_dim
        dtype = torch.promote_types(attn.q.weight.dtype, torch.float32)
        parts = [getattr(attn, key).weight.detach().to(dtype).reshape(h, d, -1).abs() ** p for key in "qkv"]
        parts.append(attn.proj.weight.detach().to(dtype).reshape(-1, h, d).transpose(0, 1).abs() ** p)
        out[name] = (sum(t.flatten(1).sum(1) for t in parts) ** (1 / p)).cpu()
    return out


def _keep_arg(model: nn.Module, keep) -> tuple[dict[str, SelfAttention], dict[str, torch.Tensor]]:
    layers = attention_layers(model)
    return layers, check_keep(keep, {name: attn.heads for name, attn in layers.items()}, "head")


def mask_heads(model: nn.Module, keep) -> nn.Module:
    """A copy of `model` in which every head `keep` does not keep has its proj columns set to zero: same shapes, and
    a removed head contributes nothing (the masked equivalent of `prune_heads`).

    keep: {attention layer name: indices of the heads that stay}; layers it does not name keep every head.
    """
    layers, keep = _keep_arg(model, keep)
    out = copy_model(model)
    modules = dict(out.named_modules())
    for name, idx in keep.items():
        gone = torch.tensor([h for h in range(layers[name].heads) if h not in idx.tolist()], dtype=torch.long)
        zero_columns(modules[name].proj, unit_rows(gone, layers[name].head_dim))
    return out


def prune_heads(model: nn.Module, keep) -> nn.Module:
    """A smaller copy of `model` with only the heads `keep` keeps: their rows of q, k and v (weights and biases)
    and their columns of proj; proj's bias and every other layer stay. Outputs equal those of
    `mask_heads(model, keep)`. The copy saves and loads like any model (`mp.save_model`: its description records
    the resized layers).

    keep: {attention layer name: indices of the heads that stay} (as `select_heads` gives); layers it does not name
    keep every head. Refused (ValueError): an unknown layer name, an index out of range or repeated, a layer left
    with no head, and q/k/v/proj weights that carry pruning masks (fold them in first with mp.make_permanent).
    """
    layers, keep = _keep_arg(model, keep)
    refuse_masked(model, [f"{n}.{key}" for n in keep for key in ("q", "k", "v", "proj")], "prune_heads")
    out = copy_model(model)
    modules = dict(out.named_modules())
    for name, idx in keep.items():
        attn = modules[name]
        rows = unit_rows(idx, attn.head_dim)
        attn.q, attn.k, attn.v = (slice_linear(getattr(attn, key), rows=rows) for key in "qkv")
        attn.proj = slice_linear(attn.proj, cols=rows)
    return out


def select_heads(scores, fraction, *, scope: str = "local") -> dict[str, torch.Tensor]:
    """Which heads stay, {attention layer name: sorted indices}: the `fraction` of heads with the lowest scores go,
    round(fraction * heads) per layer (scope='local') or of all heads ranked together (scope='global'), and every
    layer keeps at least one head (a count that would empty a layer stops there). fraction is in [0, 1).

    Global ranking compares raw scores across layers; norms of layers with larger weights rank higher.
    """
    return select_units(scores, fraction, scope, "head")


def _head_mask_hook(cols: torch.Tensor):
    def hook(_module, args):
        x = args[0].clone()
        x[..., cols.to(x.device)] = 0
        return (x, *args[1:])
    return hook


@torch.no_grad()
def head_ablation(model: nn.Module, loader, *, max_batches: int = 4, device=None) -> dict[str, torch.Tensor]:
    """{attention layer name: (heads,)}: how much the mean loss (`mp.evaluate`'s) on the first `max_batches`
    batches of `loader` rises when that one head is masked (its output zeroed before proj), all other heads kept.

    Negative when the model does better without the head. Runs on a copy (on `device`, default `mp.device()`),
    so `model` is left exactly as it was; (1 + layers * heads) evaluations of the batches.
    """
    layers = attention_layers(model)
    positive_int(max_batches, "max_batches")
    check_loader(loader)
    batches = list(islice(iter(loader), max_batches))
    work = copy_model(model)
    base = evaluate(work, batches, device=device)["loss"]
    modules, out = dict(work.named_modules()), {}
    for name, attn in layers.items():
        rises = []
        for h in range(attn.heads):
            cols = unit_rows(torch.tensor([h]), attn.head_dim)
            handle = modules[name].proj.register_forward_pre_hook(_head_mask_hook(cols))
            try:
                rises.append(evaluate(work, batches, device=device)["loss"] - base)
            finally:
                handle.remove()
        out[name] = torch.tensor(rises, dtype=torch.float32)
    return out
