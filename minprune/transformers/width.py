"""Embedding (residual) width: score each channel of the residual stream, mask it, remove it.

Channel c of TinyViT's or CharGPT's residual stream is a set of coupled entries: row c of every layer that writes
the stream (TinyViT's patch `embed`, `cls_token` and `pos`; CharGPT's `tok_emb` and `pos_emb`; each block's
attn.proj and mlp.fc2, biases too), column c of every layer that reads it (q, k, v and fc1 of each block, and the
`head`) and entry c of every LayerNorm (ln1, ln2, norm / ln_f). Removing the channel slices all of them.
THE SUBTLETY: a LayerNorm normalises over all channels, so a zeroed channel is not a removed one (it still counts
in the mean and the variance). The honest masked equivalent, `mask_width`, zeroes the channel everywhere AND swaps
each LayerNorm for a `MaskedLayerNorm` over the kept channels; `prune_width` equals it, the plainly zeroed model
(`zero_width`) does not. Activation scores follow Minitron (Muralidharan et al. 2024): channels ranked by the
LayerNorm outputs on data. Every function that removes returns a copy. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from minprune.attention_blocks import MLP, Block, SelfAttention
from minprune.batches import input_dtype, peek_fitting_batches, to_model_input
from minprune.chargpt import CharGPT
from minprune.devices import model_device
from minprune.layers import set_module
from minprune.masked import copy_model
from minprune.structured.selection import check_scores
from minprune.tinyvit import TinyViT
from minprune.transformers.units import check_norm, refuse_masked, slice_linear, unit_indices
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import float_model, model_arg, positive_int


@dataclass(frozen=True)
class Stream:
    """The layers coupled by the residual stream, by module or parameter name (see the module docstring)."""

    dim: int  # channels of the stream
    dim_key: str  # its name in the model's config: "dim" (TinyViT) or "n_embd" (CharGPT)
    head_dim: int  # of every attention layer, kept by width pruning
    writers: tuple[str, ...]  # Linear layers whose output rows (and biases) are the channels
    readers: tuple[str, ...]  # Linear layers whose input columns are the channels (not a tied head)
    norms: tuple[str, ...]  # LayerNorms over the channels
    vectors: tuple[str, ...]  # parameters whose last axis is the channels (cls_token, tok_emb.weight, ...)
    tied: bool  # CharGPT's head shares tok_emb's weight


def _expect(model: nn.Module, name: str, kind, how: str) -> nn.Module:
    """model.get_submodule(name) when its type is `kind` (or one of a tuple); else ValueError naming it and `how`."""
    try:
        mod = model.get_submodule(name)
    except AttributeError:
        mod = None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(mod) not in kinds:
        raise ValueError(f"{how} cannot prune the width of {name!r}: it is a {type(mod).__name__}, not the "
                         f"{kinds[0].__name__} that {type(model).__name__} builds (minprune.attention_blocks)")
    return mod


def _check_sizes(model: nn.Module, stream: Stream, how: str, norm_kinds: tuple) -> None:
    """ValueError naming the first coupled layer that does not hold the stream's `dim` channels as the kit's do."""
    dim, linears = stream.dim, [*stream.writers, *stream.readers, *(["head"] if stream.tied else [])]
    for name in linears:
        mod = _expect(model, name, nn.Linear, how)
        if (mod.out_features if name in stream.writers else mod.in_features) != dim:
            raise ValueError(f"{how} cannot prune the width of {name!r}: {mod} is not on the {dim} channels of the "
                             f"residual stream")
    for name in [*stream.norms, *(v.rpartition(".")[0] for v in stream.vectors if "." in v)]:
        mod = _expect(model, name, norm_kinds if name in stream.norms else nn.Embedding, how)
        size = mod.normalized_shape if name in stream.norms else (mod.embedding_dim,)
        if tuple(size) != (dim,) or getattr(mod, "max_norm", None) is not None:  # max_norm: rows over all channels
            raise ValueError(f"{how} cannot prune the width of {name!r}: {mod} is not on the {dim} channels of the "
                             f"residual stream")


def residual_stream(model: nn.Module, how: str = "residual_stream", *, masked_ok: bool = False) -> Stream:
    """The layers coupled by `model`'s residual stream (a `Stream` of names). ValueError for a model that is not a
    TinyViT or CharGPT, or whose layers are not the kit's (a swapped LayerNorm, a resized stream), naming `how`;
    masked_ok=True accepts the MaskedLayerNorms of a `mask_width` copy (scoring it)."""
    model_arg(model)
    if not isinstance(model, (TinyViT, CharGPT)):
        raise ValueError(f"{how} prunes the residual width of TinyViT and CharGPT (minprune.attention_blocks); model "
                         f"is a {type(model).__name__}")
    vit = isinstance(model, TinyViT)
    dim_key = "dim" if vit else "n_embd"
    tied = not vit and model.head.weight is model.tok_emb.weight
    writers, readers = ["embed"] if vit else [], [] if tied else ["head"]
    norms, head_dims = ["norm" if vit else "ln_f"], set()
    for i, block in enumerate(_expect(model, "blocks", nn.Sequential, how)):
        if isinstance(block, nn.Identity):  # a block masked away (transformers/depth.py): no coupled tensors
            continue
        name = f"blocks.{i}"
        for part, kind in (("", Block), (".attn", SelfAttention), (".mlp", MLP)):
            _expect(model, name + part, kind, how)
        norms += [f"{name}.ln1", f"{name}.ln2"]
        writers += [f"{name}.attn.proj", f"{name}.mlp.fc2"]
        readers += [f"{name}.attn.{key}" for key in "qkv"] + [f"{name}.mlp.fc1"]
        head_dims.add(block.attn.head_dim)
    if len(head_dims) > 1:
        raise ValueError(f"{how}: the attention layers of {type(model).__name__} have head_dims {sorted(head_dims)}; "
                         f"a model's config records one")
    dim = model.config[dim_key]
    vectors = ("cls_token", "pos") if vit else ("tok_emb.weight", "pos_emb.weight")
    head_dim = head_dims.pop() if head_dims else model.config.get("head_dim", dim)
    stream = Stream(dim, dim_key, head_dim, tuple(writers), tuple(readers), tuple(norms), vectors, tied)
    _check_sizes(model, stream, how, (nn.LayerNorm, MaskedLayerNorm) if masked_ok else (nn.LayerNorm,))
    return stream


def _coupled(model: nn.Module, stream: Stream) -> list[tuple[nn.Module, str, int]]:
    """(module, tensor attribute, channel axis) of every tensor that holds residual channels."""
    out = []
    for name in stream.writers:
        out += [(model.get_submodule(name), "weight", 0), (model.get_submodule(name), "bias", 0)]
    out += [(model.get_submodule(name), "weight", 1) for name in stream.readers]
    for name in stream.norms:
        out += [(model.get_submodule(name), "weight", 0), (model.get_submodule(name), "bias", 0)]
    for name in stream.vectors:
        owner, _, attr = name.rpartition(".")
        out.append((model.get_submodule(owner), attr, -1))
    return [(mod, attr, axis) for mod, attr, axis in out if getattr(mod, attr, None) is not None]


class MaskedLayerNorm(nn.Module):
    """A LayerNorm over the kept channels only (mean and variance of those), zero on the others: what a LayerNorm
    of the width-pruned model computes, at the full width. `kept` is a (dim,) bool buffer; it is saved, so a
    masked model is not mistaken for a plain one (mp.save_model refuses it)."""

    def __init__(self, norm: nn.LayerNorm, kept: torch.Tensor):
        super().__init__()
        if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
            raise TypeError(f"norm must be an nn.LayerNorm over the last axis, got {norm!r:.60}")
        n = norm.normalized_shape[0]
        if not isinstance(kept, torch.Tensor) or kept.dtype != torch.bool:
            raise TypeError(f"kept must be a bool tensor ({n},), True for the channels that stay, got {kept!r:.60}")
        if tuple(kept.shape) != (n,) or not kept.any():
            raise ValueError(f"kept must keep some of the {n} channels (shape ({n},), a True), got {kept!r:.60}")
        self.eps, self.weight, self.bias, self.normalized_shape = norm.eps, norm.weight, norm.bias, (len(kept),)
        self.register_buffer("kept", kept.to(norm.weight.device if norm.weight is not None else "cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.nonzero(self.kept).flatten()
        w, b = (None if t is None else t[idx] for t in (self.weight, self.bias))
        y = F.layer_norm(x[..., idx], (len(idx),), w, b, self.eps)
        return x.new_zeros(x.shape).index_copy(x.dim() - 1, idx, y)


@torch.no_grad()
def _zeroed(model: nn.Module, keep, how: str) -> tuple[nn.Module, Stream, torch.Tensor]:
    """(a copy of `model` whose removed channels are zero in every coupled tensor, the stream, kept as a bool mask)."""
    stream = residual_stream(model, how)
    keep = unit_indices(keep, "keep", stream.dim, "channel")
    kept = torch.zeros(stream.dim, dtype=torch.bool).index_fill_(0, keep, True)
    gone = torch.nonzero(~kept).flatten()
    out = copy_model(model)
    for mod, attr, axis in _coupled(out, stream):
        for key in (attr, f"{attr}_orig"):  # a masked layer's stored original too
            t = getattr(mod, key, None)
            if isinstance(t, torch.Tensor):
                t.index_fill_(axis % t.dim(), gone.to(t.device), 0)
    return out, stream, kept


def mask_width(model: nn.Module, keep) -> nn.Module:
    """The masked equivalent of `prune_width(model, keep)`: a copy of the same shapes in which every channel `keep`
    does not keep is zero in every coupled tensor, and every LayerNorm is a `MaskedLayerNorm` over the kept
    channels. keep: the indices of the residual channels that stay (as `select_width` gives)."""
    out, stream, kept = _zeroed(model, keep, "mask_width")
    for name in stream.norms:
        set_module(out, name, MaskedLayerNorm(out.get_submodule(name), kept).train(out.training))
    return out


def zero_width(model: nn.Module, keep) -> nn.Module:
    """A copy in which every channel `keep` does not keep is zero in every coupled tensor, LayerNorms left as they
    are: NOT what `prune_width` computes, since each LayerNorm's mean and variance still count the zeros."""
    return _zeroed(model, keep, "zero_width")[0]


@torch.no_grad()
def _slice_norm(norm: nn.LayerNorm, keep: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(len(keep), eps=norm.eps, elementwise_affine=norm.weight is not None, bias=norm.bias is not None)
    for attr in ("weight", "bias"):
        old = getattr(norm, attr)
        if old is not None:
            setattr(new, attr, nn.Parameter(old.detach()[keep.to(old.device)].clone(), requires_grad=old.requires_grad))
    return new.train(norm.training)


@torch.no_grad()
def _slice_vector(model: nn.Module, name: str, keep: torch.Tensor) -> None:
    """Keep entries `keep` of the last axis of parameter `name` (an Embedding's weight: a new Embedding)."""
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    old = getattr(owner, attr)
    kept = old.detach()[..., keep.to(old.device)].clone()
    if isinstance(owner, nn.Embedding):
        new = nn.Embedding.from_pretrained(kept, freeze=not old.requires_grad, padding_idx=owner.padding_idx)
        set_module(model, owner_name, new.train(owner.training))
    else:
        setattr(owner, attr, nn.Parameter(kept, requires_grad=old.requires_grad))


def prune_width(model: nn.Module, keep) -> nn.Module:
    """A narrower copy of `model` with only the residual channels `keep` keeps, sliced from every coupled tensor
    (writers' rows, readers' columns, LayerNorm entries, embeddings). Outputs equal `mask_width(model, keep)`'s,
    not `zero_width`'s. The config records the new dim / n_embd and the attention's head_dim, so the copy saves
    and loads (`mp.save_model`); a tied CharGPT stays tied. Works after heads and MLP neurons were pruned.

    Refused: a model not built of attention_blocks, a bad keep (errors.md), coupled weights with pruning masks.
    """
    stream = residual_stream(model, "prune_width")
    keep = unit_indices(keep, "keep", stream.dim, "channel")
    refuse_masked(model, [*stream.writers, *stream.readers], "prune_width")
    out = copy_model(model)
    for name in stream.writers:
        set_module(out, name, slice_linear(out.get_submodule(name), rows=keep))
    for name in stream.readers:
        set_module(out, name, slice_linear(out.get_submodule(name), cols=keep))
    for name in stream.norms:
        set_module(out, name, _slice_norm(out.get_submodule(name), keep))
    for name in stream.vectors:
        _slice_vector(out, name, keep)
    if stream.tied:
        out.head = slice_linear(out.head, cols=keep)  # a Linear of the new in_features, then the shared weight
        out.head.weight = out.tok_emb.weight
    out.config[stream.dim_key], out.config["head_dim"] = len(keep), stream.head_dim
    return out


def select_width(scores, fraction) -> torch.Tensor:
    """The residual channels that stay, sorted: the `fraction` (in [0, 1)) with the lowest scores go,
    round(fraction * dim) of them (the kit's rounding rule), at least one channel kept; among equal scores the
    later channel goes first. scores: (dim,) finite, as `width_scores` gives."""
    fraction = check_sparsity(fraction, "fraction")
    if isinstance(scores, torch.Tensor) and (scores.dim() != 1 or len(scores) == 0):
        raise ValueError(f"scores must be a 1-D tensor with one score per channel, got shape {tuple(scores.shape)}")
    check_scores(scores, "scores", len(scores) if isinstance(scores, torch.Tensor) else 0)
    n_drop = min(n_pruned(len(scores), fraction), len(scores) - 1)
    lowest_first = torch.argsort(scores.detach().double().cpu(), descending=True, stable=True).flip(0)
    return torch.sort(lowest_first[n_drop:]).values


@torch.no_grad()
def _weight_scores(stream: Stream, model: nn.Module, p: int) -> torch.Tensor:
    total = None
    for mod, attr, axis in _coupled(model, stream):
        if attr == "bias":
            continue
        t = getattr(mod, attr).detach()
        t = t.to(torch.promote_types(t.dtype, torch.float32)).movedim(axis, 0)
        t = t.reshape(len(t), -1)  # (dim, everything else)
        part = (t.abs() ** p).sum(1).cpu()
        total = part if total is None else total + part
    return total ** (1 / p)


@torch.no_grad()
def _activation_scores(stream: Stream, model: nn.Module, p: int, loader, max_batches: int) -> torch.Tensor:
    float_model(model, "width_scores with a loader")
    _, batches = peek_fitting_batches(model, loader, "loader")
    work = copy_model(model).eval()
    device, dtype = model_device(work), input_dtype(work)
    sums = {name: torch.zeros(stream.dim, dtype=torch.float64) for name in stream.norms}
    counts = dict.fromkeys(stream.norms, 0)

    def recorder(name):
        def hook(_module, _args, out):
            a = out.detach().double().flatten(0, -2)  # (tokens of the batch, dim)
            sums[name] += (a.abs() ** p).sum(0).cpu()
            counts[name] += len(a)
        return hook

    handles = [work.get_submodule(name).register_forward_hook(recorder(name)) for name in stream.norms]
    try:
        for x, _ in islice(batches, max_batches):
            work(to_model_input(x, device, dtype))
    finally:
        for handle in handles:
            handle.remove()
    score = sum((sums[name] / counts[name]) ** (1 / p) for name in stream.norms)
    return score.to(torch.promote_types(dtype or torch.float32, torch.float32))


def width_scores(model: nn.Module, norm: str = "l2", *, loader=None, max_batches: int = 4) -> torch.Tensor:
    """(dim,) importance of each residual channel. Without a loader: the L1 or L2 norm of all the channel's
    weights taken together (every coupled tensor but the biases: writers' rows, readers' columns, LayerNorm
    weights, embeddings, cls_token and pos). With a loader (Minitron's activation score): summed over every
    LayerNorm (ln1, ln2, norm / ln_f), the mean |output| (l1) or its root mean square (l2) of channel c over every
    token of the first `max_batches` batches, measured on an eval-mode copy (`model` untouched; float16 refused).
    Float32 scores (float64 for a float64 model); a masked model is scored by its effective weights."""
    p = check_norm(norm)
    stream = residual_stream(model, "width_scores", masked_ok=True)
    positive_int(max_batches, "max_batches")  # checked without a loader too: a bad value is never ignored
    if loader is None:
        return _weight_scores(stream, model, p)
    return _activation_scores(stream, model, p, loader, max_batches)
