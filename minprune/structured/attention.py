"""Layers whose channels come in equal blocks: multi-head attention, and grouped convolutions with as many inputs
as outputs (ResNeXt, RegNet), both as followers of the channels they read.

A grouped convolution maps the channels of block b to block b, so it keeps the index set of its input, and every
block (group) must keep the same number of channels; its weight loses, in block b's rows, block b's columns.

`nn.MultiheadAttention` needs its query, key and value width (embed_dim) to equal the width it reads, so the
channels removed from its input are removed from q, k and v as well (the same index set, as Torch-Pruning does),
and from both sides of the output projection. Every head must keep the same number of channels (`blocks`), and
the queries are rescaled by sqrt(new head_dim / old head_dim): the scores q.k / sqrt(head_dim) then equal those of
the masked model, whose zeroed channels add nothing to q.k. See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _rows(module: nn.MultiheadAttention, keep: torch.Tensor) -> torch.Tensor:
    """Rows of in_proj_weight (q, k and v stacked) that `keep` keeps."""
    e = module.embed_dim
    keep = keep.to(module.in_proj_weight.device)
    return torch.cat([keep, keep + e, keep + 2 * e])


def refuse(module: nn.MultiheadAttention) -> str | None:
    if not module._qkv_same_embed_dim:
        return "attention with separate key / value widths (kdim, vdim)"
    return None


def blocks(module: nn.MultiheadAttention) -> int:
    return module.num_heads


@torch.no_grad()
def mask(module: nn.MultiheadAttention, keep: torch.Tensor) -> None:
    """Zero q, k, v rows and input columns, and the output projection's rows and columns, outside `keep`."""
    e = module.embed_dim
    cols = torch.zeros(e, dtype=torch.bool, device=module.in_proj_weight.device)
    cols[keep.to(cols.device)] = True
    rows = cols.repeat(3)
    module.in_proj_weight.mul_(rows[:, None] & cols[None, :])
    if module.in_proj_bias is not None:
        module.in_proj_bias.mul_(rows)
    module.out_proj.weight.mul_(cols[:, None] & cols[None, :])
    if module.out_proj.bias is not None:
        module.out_proj.bias.mul_(cols)
    for bias in (module.bias_k, module.bias_v):
        if bias is not None:
            bias.mul_(cols)


@torch.no_grad()
def rebuild(module: nn.MultiheadAttention, keep: torch.Tensor) -> nn.MultiheadAttention:
    """`module` (a copy) with only the channels `keep`; heads keep len(keep) / num_heads channels each."""
    e, heads = module.embed_dim, module.num_heads
    n = len(keep)
    rows = _rows(module, keep)
    keep = keep.to(module.in_proj_weight.device)
    w = module.in_proj_weight[rows][:, keep].clone()
    b = module.in_proj_bias[rows].clone() if module.in_proj_bias is not None else None
    scale = math.sqrt((n // heads) / (e // heads))  # keeps q.k / sqrt(head_dim) of the masked model
    w[:n] *= scale
    if b is not None:
        b[:n] *= scale
    module.in_proj_weight = nn.Parameter(w, requires_grad=module.in_proj_weight.requires_grad)
    if b is not None:
        module.in_proj_bias = nn.Parameter(b, requires_grad=module.in_proj_bias.requires_grad)
    out = module.out_proj
    out.weight = nn.Parameter(out.weight[keep][:, keep].clone(), requires_grad=out.weight.requires_grad)
    if out.bias is not None:
        out.bias = nn.Parameter(out.bias[keep].clone(), requires_grad=out.bias.requires_grad)
    out.in_features = out.out_features = n
    for name in ("bias_k", "bias_v"):
        bias = getattr(module, name)
        if bias is not None:
            setattr(module, name, nn.Parameter(bias[..., keep].clone(), requires_grad=bias.requires_grad))
    module.embed_dim = module.kdim = module.vdim = n
    module.head_dim = n // heads
    return module


def grouped_blocks(conv: nn.Module) -> int:
    return conv.groups


@torch.no_grad()
def grouped_mask(conv: nn.Module, keep: torch.Tensor) -> None:
    """A grouped convolution with as many inputs as outputs, channel c in block b: zero the removed rows, and in
    each block's rows the columns of that block's removed inputs."""
    size = conv.out_channels // conv.groups
    kept = torch.zeros(conv.out_channels, dtype=torch.bool, device=conv.weight.device)
    kept[keep.to(kept.device)] = True
    cols = kept.reshape(conv.groups, 1, size).expand(conv.groups, size, size).reshape(conv.out_channels, size)
    shape = (conv.out_channels, size) + (1,) * (conv.weight.dim() - 2)
    conv.weight.mul_((kept[:, None] & cols).reshape(shape).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.mul_(kept.to(conv.bias.dtype))


@torch.no_grad()
def grouped_rebuild(conv: nn.Module, keep: torch.Tensor) -> nn.Module:
    """`conv` (a copy) keeping channels `keep`, the same number in each of its groups."""
    size = conv.out_channels // conv.groups
    keep = keep.to(conv.weight.device)
    parts = []
    for b in range(conv.groups):
        local = keep[(keep >= b * size) & (keep < (b + 1) * size)] - b * size
        parts.append(conv.weight[local + b * size][:, local])
    conv.weight = nn.Parameter(torch.cat(parts).clone(), requires_grad=conv.weight.requires_grad)
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias[keep].clone(), requires_grad=conv.bias.requires_grad)
    conv.in_channels = conv.out_channels = len(keep)
    return conv
