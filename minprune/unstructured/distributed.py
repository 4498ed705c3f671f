"""Pruning under DistributedDataParallel: one set of masks for every rank.

Masks live in buffers (`weight_mask`), so every rank must hold the same ones. Compute them on one rank and
`broadcast_masks`, or compute them from identical weights on every rank; `masks_agree` checks. Because the
masked weight is recomputed from `weight_orig * weight_mask` in the forward pass, a pruned weight receives a
zero gradient on every rank, the all-reduced gradient is zero too, and pruned weights stay exactly zero.
Masks are bool whatever the weights' dtype, so float16/bfloat16 models work; meta-device models are refused.
See notebooks/04_fine_tuning.ipynb.
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch import nn

from minprune.masked import get_masks
from minprune.validate import model_arg, non_negative_int


def _require_process_group() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("torch.distributed is not initialised; call torch.distributed.init_process_group first")


@torch.no_grad()
def broadcast_masks(model: nn.Module, src: int = 0) -> nn.Module:
    """Copy rank `src`'s masks into every rank's model (in place; every rank must already be pruned)."""
    model_arg(model)
    non_negative_int(src, "src")
    _require_process_group()
    if src >= dist.get_world_size():
        raise ValueError(f"src must be a rank in [0, {dist.get_world_size()}), got {src}")
    for name in get_masks(model):
        module = model.get_submodule(name.rpartition(".")[0])
        buffer = getattr(module, f"{name.rpartition('.')[2]}_mask")
        dist.broadcast(buffer, src=src)
    return model


def masks_digest(model: nn.Module) -> str:
    """SHA-256 of every mask (sorted by name): equal digests mean equal masks."""
    h = hashlib.sha256()
    for name, mask in sorted(get_masks(model).items()):
        h.update(name.encode() + mask.cpu().numpy().tobytes())
    return h.hexdigest()


def masks_agree(model: nn.Module) -> bool:
    """True when every rank holds exactly the same masks (an all-gather of digests)."""
    model_arg(model)
    _require_process_group()
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, masks_digest(model))
    return len(set(digests)) == 1
