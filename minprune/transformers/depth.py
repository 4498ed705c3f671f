"""Depth: score whole transformer blocks and drop them (ShortGPT, Men et al. 2024).

A pre-norm block adds to the residual stream, x -> x + attn(LN(x)) + mlp(LN(x)). A block whose output hidden state
points the way its input did changed little: ShortGPT's Block Influence, 1 - the mean cosine similarity between
each token's hidden state before and after the block, ranks blocks by that (`block_importance`, one cheap pass);
`block_ablation` measures the real cost, the loss rise when that one block alone is skipped, the oracle to compare
it with. Skipping block i is replacing it by nn.Identity (`mask_blocks`, the masked equivalent); `drop_blocks`
removes it, renumbers the blocks after it and updates the config, so the shallower copy saves and loads. Every
function that removes returns a copy: the model passed in never changes. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from minprune.attention_blocks import Block
from minprune.batches import check_loader, input_dtype, peek_fitting_batches, to_model_input
from minprune.chargpt import CharGPT
from minprune.devices import model_device
from minprune.masked import copy_model
from minprune.structured.selection import check_scores
from minprune.tinyvit import TinyViT
from minprune.train import evaluate
from minprune.transformers.units import unit_indices
from minprune.validate import float_model, model_arg, non_negative_int, positive_int

DEPTH_KEYS = {TinyViT: "depth", CharGPT: "n_layer"}  # where each model's config records its number of blocks


def transformer_blocks(model: nn.Module, how: str = "transformer_blocks") -> nn.Sequential:
    """`model.blocks` of a TinyViT or CharGPT, each an attention_blocks.Block (or an nn.Identity a block was masked
    to); else ValueError naming `how`."""
    model_arg(model)
    if type(model) not in DEPTH_KEYS:
        raise ValueError(f"{how} drops the blocks of TinyViT and CharGPT (minprune.attention_blocks); model is a "
                         f"{type(model).__name__}")
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise ValueError(f"{how}: {type(model).__name__}.blocks is a {type(blocks).__name__}, not the nn.Sequential "
                         f"of blocks it builds")
    for i, block in enumerate(blocks):
        if not isinstance(block, (Block, nn.Identity)):
            raise ValueError(f"{how}: 'blocks.{i}' is a {type(block).__name__}, not an attention_blocks.Block")
    return blocks


def _drop_arg(drop, depth: int) -> list[int]:
    """`drop` as a sorted list of block indices; TypeError / ValueError for one out of range, repeated or all."""
    if isinstance(drop, (list, tuple, range)) and len(drop) == 0:
        return []
    if isinstance(drop, torch.Tensor) and drop.numel() == 0 and not drop.is_floating_point():
        return []
    drop = unit_indices(drop, "drop", depth, "block").tolist()
    if len(drop) == depth:
        raise ValueError(f"drop names all {depth} blocks; a model keeps at least one")
    return drop


def mask_blocks(model: nn.Module, drop) -> nn.Module:
    """A copy of `model` in which every block `drop` names is an nn.Identity (the masked equivalent of
    `drop_blocks`: same block numbers and config). drop: a list of block indices."""
    drop = _drop_arg(drop, len(transformer_blocks(model, "mask_blocks")))
    out = copy_model(model)
    for i in drop:
        out.blocks[i] = nn.Identity()
    return out


def drop_blocks(model: nn.Module, drop) -> nn.Module:
    """A shallower copy of `model` without the blocks `drop` names (a list of block indices): the blocks after them
    are renumbered (blocks.3 becomes blocks.2 when blocks.1 goes) and the config's depth / n_layer updated, so it
    saves and loads (`mp.save_model`), heads or neurons pruned before included. Outputs equal those of
    `mask_blocks(model, drop)`. Refused (ValueError): an index out of range or repeated, and dropping every block;
    TypeError for a drop that is not a list of ints."""
    drop = _drop_arg(drop, len(transformer_blocks(model, "drop_blocks")))
    out = copy_model(model)
    training = out.blocks.training
    out.blocks = nn.Sequential(*[b for i, b in enumerate(out.blocks) if i not in drop]).train(training)
    out.config[DEPTH_KEYS[type(out)]] = len(out.blocks)
    return out


def select_blocks(scores, n_drop: int) -> list[int]:
    """The `n_drop` blocks with the lowest scores, sorted (what `drop_blocks` takes); among equal scores the later
    block goes first. scores: (depth,) finite, as `block_importance` or `block_ablation` gives; n_drop in
    [0, depth)."""
    if isinstance(scores, torch.Tensor) and (scores.dim() != 1 or len(scores) == 0):
        raise ValueError(f"scores must be a 1-D tensor with one score per block, got shape {tuple(scores.shape)}")
    check_scores(scores, "scores", len(scores) if isinstance(scores, torch.Tensor) else 0)
    non_negative_int(n_drop, "n_drop")
    if n_drop >= len(scores):
        raise ValueError(f"n_drop must leave at least one of the {len(scores)} blocks, got n_drop={n_drop}")
    lowest_first = torch.argsort(scores.detach().double().cpu(), descending=True, stable=True).flip(0)
    return sorted(lowest_first[:n_drop].tolist())


@torch.no_grad()
def block_importance(model: nn.Module, loader, max_batches: int = 4) -> torch.Tensor:
    """(depth,) ShortGPT's Block Influence of each block: 1 - the mean cosine similarity between a token's hidden
    state entering the block and leaving it, over every token of the first `max_batches` batches of `loader`
    (cosine, not the angular arccos(cos) / pi variant). Near 0: the block barely turns the residual stream.

    Measured with forward hooks on an eval-mode copy where the model sits, so `model` is left exactly as it was.
    Refused: float16 / bfloat16 models (ValueError), a loader that is not one (TypeError). Float32 scores.
    """
    blocks = transformer_blocks(model, "block_importance")
    float_model(model, "block_importance")
    positive_int(max_batches, "max_batches")
    _, batches = peek_fitting_batches(model, loader, "loader")
    work = copy_model(model).eval()
    device, dtype = model_device(work), input_dtype(work)
    total, tokens = torch.zeros(len(blocks), dtype=torch.float64), [0]

    def recorder(i):
        def hook(_module, args, out):
            cos = F.cosine_similarity(args[0].double(), out.double(), dim=-1)  # (batch, tokens)
            total[i] += cos.sum().cpu()
            if i == 0:
                tokens[0] += cos.numel()
        return hook

    handles = [block.register_forward_hook(recorder(i)) for i, block in enumerate(work.blocks)]
    try:
        for x, _ in islice(batches, max_batches):
            work(to_model_input(x, device, dtype))
    finally:
        for handle in handles:
            handle.remove()
    return (1 - total / tokens[0]).float()


@torch.no_grad()
def block_ablation(model: nn.Module, loader, *, max_batches: int = 4, device=None) -> torch.Tensor:
    """(depth,): how much the mean loss (`mp.evaluate`'s) on the first `max_batches` batches of `loader` rises when
    that one block alone is skipped (`mask_blocks(model, [i])`), the others kept. Negative when the model does
    better without it. Runs on copies (on `device`, default `mp.device()`), `model` untouched; depth + 1
    evaluations of the batches. Float32 rises."""
    blocks = transformer_blocks(model, "block_ablation")
    positive_int(max_batches, "max_batches")
    check_loader(loader)
    batches = list(islice(iter(loader), max_batches))
    base = evaluate(copy_model(model), batches, device=device)["loss"]
    rises = [evaluate(mask_blocks(model, [i]), batches, device=device)["loss"] - base for i in range(len(blocks))]
    return torch.tensor(rises, dtype=torch.float32)
