"""Token pruning at inference, EViT (Liang et al. 2022, "Not All Patches are What You Need").

A ViT spends its work on tokens, and many patches of a digit are background. In chosen blocks, between attention
and MLP, EViT keeps the patch tokens the class token attends to most and drops the others, or fuses them into one
extra token; every later layer runs on fewer tokens. Which patches go depends on the image, so this is not a
smaller copy but a wrapper that runs the blocks itself (`TokenPruned`). `TokenWrapper` is what it shares with
token merging (token_merging.py): the model check, a private copy of the model (the model passed in never
changes), the patch embedding and the classifier on the class token. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from minprune.attention_blocks import Block, SelfAttention
from minprune.chargpt import CharGPT
from minprune.classifier import check_input_shape
from minprune.masked import copy_model
from minprune.tinyvit import TinyViT
from minprune.validate import check_flag, finite_number, model_arg


def check_vit(model, what: str) -> TinyViT:
    """`model` when `what` (a wrapper's name) can run its blocks itself: a TinyViT whose forward and blocks are the
    kit's own (attention_blocks.Block) and carry no hooks the wrapper's block loop would skip. TypeError for a
    non-module; ValueError naming the model's type (a CharGPT: causal token pruning is out of scope)."""
    model_arg(model)
    name = type(model).__name__
    if isinstance(model, CharGPT) or any(m.causal for m in model.modules() if isinstance(m, SelfAttention)):
        raise ValueError(f"{what} works on a TinyViT; model ({name}) is a causal language model: pruning or "
                         f"merging the tokens of a GPT (CharGPT) is out of scope")
    if not isinstance(model, TinyViT) or type(model).forward is not TinyViT.forward:
        raise ValueError(f"{what} works on a TinyViT (a class token `cls_token`, position embeddings `pos`, "
                         f"`blocks` of attention blocks, `head` on token 0); got model ({name})")
    for i, block in enumerate(model.blocks):
        if type(block) is not Block:
            raise ValueError(f"{what} runs the blocks of attention_blocks.Block itself; model.blocks[{i}] is "
                             f"{type(block).__name__}, not a Block")
    _refuse_hooks(model, what)
    return model


def _refuse_hooks(model: TinyViT, what: str) -> None:
    """ValueError when the model, a block or an attention layer has hooks: the wrapper calls blocks' parts (and
    `attn.attend`) directly, so those hooks would silently not run. The model's own input check is allowed."""
    checked = {"model": model}
    for i, block in enumerate(model.blocks):
        checked[f"blocks.{i}"], checked[f"blocks.{i}.attn"] = block, block.attn
    for name, module in checked.items():
        pre = [h for h in module._forward_pre_hooks.values() if not (module is model and h is model.input_check)]
        if pre or module._forward_hooks:
            raise ValueError(f"{what} cannot run {name} of model ({type(model).__name__}): it has forward hooks, "
                             f"which the wrapper's own block loop would not call; remove them first")


class TokenWrapper(nn.Module):
    """A copy of a TinyViT (`self.vit`; the model passed in is never changed) whose blocks a subclass runs itself
    (its `run_blocks(tokens)`). Inputs are checked like TinyViT's (in `embed`), and `input_shape` lets
    mp.evaluate, mp.count_macs and mp.latency take the wrapper like any model. See notebooks/12_transformers.ipynb.
    """

    def __init__(self, model: TinyViT):
        super().__init__()
        self.vit = copy_model(model)
        self.input_shape = tuple(model.input_shape)

    @property
    def patch_count(self) -> int:
        """The number of patch tokens of an image (the class token not counted)."""
        return self.vit.pos.shape[1] - 1

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) -> tokens (batch, 1 + patches, dim): class token first, position embeddings added."""
        check_input_shape(self, (x,))
        vit = self.vit
        tokens = vit.embed(vit.patches(x))
        return torch.cat([vit.cls_token.expand(len(x), -1, -1), tokens], dim=1) + vit.pos

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, classes) from the class token (token 0) of the last block's output."""
        return self.vit.head(self.vit.norm(tokens)[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.run_blocks(self.embed(x)))


def check_after(after, depth: int) -> tuple[int, ...]:
    """`after` (the blocks that prune) as a sorted tuple of distinct ints in [0, depth). TypeError for a
    non-sequence or a non-int entry; ValueError for an empty one, an index out of range or repeated."""
    if not isinstance(after, (tuple, list, range)):
        raise TypeError(f"after must be a tuple of block indices such as (1, 2), got {type(after).__name__} "
                        f"{after!r:.60}")
    values = list(after)
    if any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in values):
        raise TypeError(f"after must list int block indices, got {values!r:.80}")
    if not values:
        raise ValueError(f"after names no block: give at least one block index in [0, {depth})")
    bad = [int(i) for i in values if not 0 <= i < depth]
    if bad:
        raise ValueError(f"after holds block index {bad[0]}, outside [0, {depth}) (the model has {depth} blocks)")
    if len(set(values)) != len(values):
        raise ValueError(f"after names block {next(i for i in values if values.count(i) > 1)} more than once")
    return tuple(sorted(int(i) for i in values))


def kept_count(keep_rate: float, n: int) -> int:
    """How many of `n` patch tokens a stage keeps: ceil(keep_rate * n) (EViT's rule; float noise such as
    0.7 * 10 = 7.000000000000001 rounded away first), at least 1."""
    return max(1, math.ceil(round(keep_rate * n, 9)))


def prune_tokens(tokens: torch.Tensor, probs: torch.Tensor, origin: torch.Tensor, keep_rate: float,
                 fuse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, origin) after one EViT stage. tokens (batch, 1 + n [+ 1 fused], dim), probs the block's attention
    (batch, heads, t, t), origin (batch, n) the original patch index of each patch token.

    The kept_count(keep_rate, n) patch tokens with the highest class-token attention (mean over heads) stay, in
    their order; the class token stays. fuse=True: the dropped ones and an earlier fused token become one fused
    token, last, their average weighted by that attention (the paper's code sums without normalising).
    """
    n = origin.shape[1]
    k = kept_count(keep_rate, n)
    if k == n:
        return tokens, origin
    weight = probs[:, :, 0, 1:].mean(dim=1)  # (batch, t - 1): class-token attention to every other token
    top = weight[:, :n].topk(k, dim=1).indices.sort(dim=1).values  # (batch, k)
    kept = tokens[:, 1:n + 1].gather(1, top[..., None].expand(-1, -1, tokens.shape[-1]))
    parts = [tokens[:, :1], kept]
    if fuse:
        weight = weight.scatter(1, top, 0.0)  # the kept tokens do not count in the fused one
        total = weight.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
        parts.append(torch.einsum("bt,btd->bd", weight / total, tokens[:, 1:])[:, None])
    return torch.cat(parts, dim=1), origin.gather(1, top)


class TokenPruned(TokenWrapper):
    """EViT on a copy of a TinyViT: forward(x) -> logits, and in each block of `after`, between attention and MLP,
    only the top ceil(keep_rate * patches) patch tokens (by class-token attention) go on; the others are fused
    into one token (fuse=True) or dropped. Every image keeps the same number, so batches stay rectangular.

    keep_rate in (0, 1] (1 gives the dense model's logits exactly); after: distinct block indices. The model
    passed in is copied, never changed. See notebooks/12_transformers.ipynb.
    """

    def __init__(self, model: TinyViT, keep_rate: float = 0.7, after=(1, 2), fuse: bool = True):
        check_vit(model, "TokenPruned")
        keep_rate = finite_number(keep_rate, "keep_rate", low=0, high=1, low_open=True)
        after = check_after(after, len(model.blocks))
        fuse = check_flag(fuse, "fuse")
        super().__init__(model)
        self.keep_rate, self.after, self.fuse = keep_rate, after, fuse

    def run_blocks(self, tokens: torch.Tensor, kept: dict | None = None) -> torch.Tensor:
        """The last block's output tokens; `kept`, if given, is filled with {block: origin after it prunes}."""
        origin = torch.arange(self.patch_count, device=tokens.device).expand(len(tokens), -1)
        for i, block in enumerate(self.vit.blocks):
            out, probs = block.attn.attend(block.ln1(tokens))
            tokens = tokens + out
            if i in self.after:
                tokens, origin = prune_tokens(tokens, probs, origin, self.keep_rate, self.fuse)
                if kept is not None:
                    kept[i] = origin.clone()  # not a view of the arange a stage that keeps all returns
            tokens = tokens + block.mlp(block.ln2(tokens))
        return tokens

    @torch.no_grad()
    def kept_patches(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """{block in `after`: (batch, kept) LongTensor}: for each image, the sorted indices (row-major, 0 ..
        patches - 1; a 4x4 grid for TinyViT) of the original patches whose tokens survive that block."""
        kept = {}
        self.run_blocks(self.embed(x), kept)
        return kept

    def token_counts(self) -> list[int]:
        """The number of tokens each block's MLP runs on (the class token and a fused token included)."""
        counts, n = [], self.patch_count
        for i in range(len(self.vit.blocks)):
            if i in self.after and kept_count(self.keep_rate, n) < n:
                n = kept_count(self.keep_rate, n)
            counts.append(1 + n + int(self.fuse and n < self.patch_count))
        return counts
