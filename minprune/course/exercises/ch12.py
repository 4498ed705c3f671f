"""Chapter 12 (transformers): the exercises' designed cases and hints."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minprune.attention_blocks import SelfAttention
from minprune.course.exercises import exercise
from minprune.transformers.heads import prune_heads

# Exercise 12.1: one attention head removed by hand -------------------------------------------------------------


def remove_head(attn: SelfAttention, head: int) -> SelfAttention:
    """A copy of `attn` without head `head`: `mp.prune_heads` applied to this one attention layer.

    See notebooks/12_transformers.ipynb.
    """
    kept = [h for h in range(attn.heads) if h != head]
    return prune_heads(nn.Sequential(attn), {"0": kept})[0]


def removed_head(fn, attn: SelfAttention, head: int, x: torch.Tensor) -> dict | None:
    """Call `fn(attn, head)` and describe the attention it returns: its shape attributes, its layers' weights and
    biases, and its output on `x` (batch, tokens, dim); None if it returned None."""
    with torch.random.fork_rng(devices=[]):  # new layers draw random numbers: leave the caller's stream as it was
        new = fn(attn, head)
    if new is None:
        return None
    out = {"head_dim": new.head_dim, "heads": new.heads, "causal": new.causal}
    for key in ("q", "k", "v", "proj"):
        layer = getattr(new, key)
        out[f"{key}.weight"], out[f"{key}.bias"] = layer.weight.detach(), layer.bias.detach()
    try:
        with torch.no_grad():
            out["output"] = new(x)
    except RuntimeError as exc:  # shapes that do not fit: reported after the attributes that explain why
        out["output"] = exc
    return out


def _attention(dim: int, heads: int, head_dim: int | None = None, causal: bool = False) -> SelfAttention:
    attn = SelfAttention(dim, heads, head_dim=head_dim, causal=causal)
    with torch.no_grad():  # biases of a visible size, so a bias left at its fresh value shows
        for p in attn.parameters():
            p.uniform_(-1, 1)
    return attn


def _head_cases() -> list[tuple]:
    """The last head; head_dim 3 and 5 (not a power of 2, and not dim // (heads - 1)); q, k, v wider than the
    model (heads * head_dim != dim: proj is not square); a causal attention."""
    specs = [((8, 4), {}, 3), ((12, 4), {"head_dim": 3, "causal": True}, 1), ((10, 3), {"head_dim": 5}, 0),
             ((9, 3), {"causal": True}, 2), ((8, 2), {"head_dim": 6}, 1)]
    cases = []
    with torch.random.fork_rng(devices=[]):  # seeded cases, and the caller's random stream left as it was
        torch.manual_seed(12)
        for (dim, heads), options, head in specs:
            cases.append((_attention(dim, heads, **options), head, torch.randn(2, 5, dim)))
    return cases


def _rows_of(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def _head_exception(case, expected, got):
    if not isinstance(got, Exception):
        return None
    text = str(got)
    if isinstance(got, AttributeError) and ("qkv" in text or "in_proj" in text):
        return ("this SelfAttention keeps q, k and v as three separate Linear layers (attn.q, attn.k, attn.v), each "
                "with heads * head_dim rows: slice the same rows of each")
    if isinstance(got, (IndexError, RuntimeError)):
        return ("q, k and v lose the head's rows (their outputs), proj loses the same columns (its inputs), and "
                "proj's bias (one value per model dimension) stays whole; mind that heads * head_dim need not be dim")
    return None


def _head_structure(case, expected, got):
    attn, head, _ = case
    if not isinstance(got, dict):
        return None
    if got["head_dim"] != expected["head_dim"]:
        return (f"the new attention has head_dim {got['head_dim']}, the old one {attn.head_dim}: a head keeps its "
                "size; SelfAttention(dim, heads) computes dim // heads, so pass head_dim= explicitly")
    if got["heads"] != expected["heads"]:
        return f"the new attention should have one head fewer ({attn.heads - 1}), it has {got['heads']}"
    if got["causal"] != expected["causal"]:
        return "this attention is causal: the new one must be too (causal=attn.causal)"
    return None


def _head_rows(case, expected, got):
    attn, head, _ = case
    if not isinstance(got, dict) or got["q.weight"].shape != expected["q.weight"].shape:
        return None
    W, hd, heads = attn.q.weight.detach(), attn.head_dim, attn.heads
    strided = torch.tensor([r for r in range(heads * hd) if r % heads != head])
    if torch.equal(got["q.weight"], W[strided]):
        return ("head h owns a block of head_dim consecutive rows (h * head_dim up to (h + 1) * head_dim - 1), "
                "not every heads-th row")
    for other in range(heads):
        if other != head and torch.equal(got["q.weight"], W[_rows_of([h for h in range(heads) if h != other], hd)]):
            return f"these are the rows without head {other}; the head to remove is head {head}"
    return None


def _head_parts(case, expected, got):
    if not isinstance(got, dict):
        return None
    for key in ("q", "k", "v"):
        if not torch.equal(got[f"{key}.weight"], expected[f"{key}.weight"]):
            return f"{key} loses the same rows as q: the rows of the removed head"
        if not torch.equal(got[f"{key}.bias"], expected[f"{key}.bias"]):
            return f"{key}'s bias has one value per row: keep the kept rows' values (a new layer starts with new ones)"
    if not torch.equal(got["proj.weight"], expected["proj.weight"]):
        return "proj reads the heads' outputs side by side: it loses the removed head's columns, not rows"
    if not torch.equal(got["proj.bias"], expected["proj.bias"]):
        return "proj's bias (one value per model dimension) stays whole: copy it unchanged"
    return None


exercise("12.1", "a SelfAttention without one head", remove_head, _head_cases, call=removed_head,
         hint="keep the other heads' rows of q, k, v (weights and biases), the same columns of proj, and all of "
              "proj's bias",
         diagnoses=(_head_exception, _head_structure, _head_rows, _head_parts), atol=1e-6, rtol=1e-5)


# Exercise 12.3: the Block Influence ----------------------------------------------------------------------------


def block_influence(h_in: torch.Tensor, h_out: torch.Tensor) -> float:
    """1 - the mean over every token of every example of cos(h_in, h_out), for (batch, tokens, dim) hidden states:
    the per-block number of `mp.block_importance`. See notebooks/12_transformers.ipynb."""
    return float(1 - F.cosine_similarity(h_in.detach().double(), h_out.detach().double(), dim=-1).mean())


def _influence_cases() -> list[tuple]:
    """Tokens of very different norms (the cosine over the flattened tensor is not the mean of the tokens'),
    tokens turned by more than 90 degrees (negative cosines), more examples than tokens and the reverse, one
    token alone, a block that barely changes its input."""
    g = torch.Generator().manual_seed(123)
    scale = torch.tensor([0.1, 1.0, 10.0, 3.0, 0.5])[None, :, None]  # (1, tokens, 1)
    h = torch.randn(2, 5, 3, generator=g) * scale
    turned = torch.randn(3, 2, 6, generator=g)
    flipped = turned.clone()
    flipped[:, 0] = -flipped[:, 0] + 0.3 * torch.randn(3, 6, generator=g)  # cos near -1 for token 0
    base = torch.randn(4, 7, 5, generator=g)
    wide = torch.randn(2, 3, 4, generator=g)
    return [(h, h + torch.randn(2, 5, 3, generator=g)), (turned, flipped),
            (torch.tensor([[[1.0, 2.0, 2.0, 0.0]]]), torch.tensor([[[2.0, 0.0, 1.0, 1.0]]])),
            (base, base + 0.05 * torch.randn(4, 7, 5, generator=g)),
            (wide, 2 * wide + torch.randn(2, 3, 4, generator=g))]


def _number(got):
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        return float(got)
    return got


def _influence_variants(h_in: torch.Tensor, h_out: torch.Tensor) -> dict[str, float]:
    a, b = h_in.detach().double(), h_out.detach().double()
    cos = F.cosine_similarity(a, b, dim=-1)
    return {
        "cos": float(cos.mean()),
        "flat": float(1 - F.cosine_similarity(a.flatten(), b.flatten(), dim=0)),
        "per_example": float(1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).mean()),
        "tokens_axis": float(1 - F.cosine_similarity(a, b, dim=1).mean()),
        "batch_axis": float(1 - F.cosine_similarity(a, b, dim=0).mean()),
        "abs": float(1 - cos.abs().mean()),
        "angular": float(torch.arccos(cos.clamp(-1, 1)).mean() / math.pi),
    }


_INFLUENCE_HINTS = {
    "cos": "that is the mean cosine similarity itself; the Block Influence is one minus it",
    "flat": ("that is one cosine over the whole flattened tensor: large tokens then weigh more; take the cosine of "
             "each token (over the last, dim axis) and average those"),
    "per_example": "that is one cosine per example over all its tokens; take one cosine per token (over dim)",
    "tokens_axis": ("the cosine ran over the tokens axis (dim=1, torch's default); a token's hidden state is its "
                    "last axis: dim=-1"),
    "batch_axis": "the cosine ran over the batch axis; a token's hidden state is its last axis: dim=-1",
    "abs": "a token turned by more than 90 degrees has a negative cosine: keep its sign",
    "angular": "that is the angular distance arccos(cos) / pi; ShortGPT's Block Influence is 1 - cos",
}


def _influence_mistake(case, expected, got):
    if isinstance(got, torch.Tensor) and got.numel() > 1:
        return f"return one number (a float): the mean over every token of every example, not shape {tuple(got.shape)}"
    got = _number(got)
    if not isinstance(got, (int, float)):
        return None
    for name, value in _influence_variants(*case).items():
        if abs(got - value) < 1e-6 and abs(value - expected) > 1e-6:
            return _INFLUENCE_HINTS[name]
    return None


exercise("12.3", "the Block Influence 1 - mean cos(h_in, h_out)", block_influence, _influence_cases,
         hint="cosine over the last (dim) axis of each token, then the mean over batch and tokens, then 1 - that",
         diagnoses=(_influence_mistake,), dtype_strict=False)
