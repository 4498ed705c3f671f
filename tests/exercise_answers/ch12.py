"""Wrong and right answers to chapter 12's exercises."""

import torch
import torch.nn.functional as F
from torch import nn

from minprune.attention_blocks import SelfAttention

# Exercise 12.1 ---------------------------------------------------------------------------------------------------


def _rows(head, head_dim):
    return torch.arange(head * head_dim, (head + 1) * head_dim)


def _build(attn, kept, *, head_dim=None, causal=None, proj_cols=None, biases=True, proj_bias=True):
    """A SelfAttention holding rows `kept` of q, k, v and columns `proj_cols` (default: kept) of proj."""
    dim = attn.q.in_features
    hd = attn.head_dim if head_dim is None else head_dim
    new = SelfAttention(dim, len(kept) // attn.head_dim, head_dim=hd,
                        causal=attn.causal if causal is None else causal)
    cols = kept if proj_cols is None else proj_cols
    with torch.no_grad():
        for key in ("q", "k", "v"):
            old = getattr(attn, key)
            layer = nn.Linear(dim, len(kept))
            layer.weight.copy_(old.weight[kept])
            if biases:
                layer.bias.copy_(old.bias[kept])
            setattr(new, key, layer)
        new.proj = nn.Linear(len(cols), dim)
        new.proj.weight.copy_(attn.proj.weight[:, cols])
        if proj_bias:
            new.proj.bias.copy_(attn.proj.bias)
    return new


def _kept(attn, head):
    return torch.cat([_rows(h, attn.head_dim) for h in range(attn.heads) if h != head])


def remove_head_default_head_dim(attn, head):  # SelfAttention(dim, heads - 1): head_dim becomes dim // (heads - 1)
    dim, kept = attn.q.in_features, _kept(attn, head)
    new = SelfAttention(dim, attn.heads - 1, causal=attn.causal)
    return _build(attn, kept, head_dim=new.head_dim)


def remove_head_strided_rows(attn, head):  # head h taken as rows h, h + heads, h + 2 heads, ...
    width = attn.heads * attn.head_dim
    kept = torch.tensor([r for r in range(width) if r % attn.heads != head])
    return _build(attn, kept)


def remove_head_proj_rows(attn, head):  # slices proj's rows instead of its columns
    kept = _kept(attn, head)
    new = _build(attn, kept)
    with torch.no_grad():
        new.proj.weight.copy_(attn.proj.weight[kept][:, kept])
    return new


def remove_head_fresh_biases(attn, head):  # copies the weights only
    return _build(attn, _kept(attn, head), biases=False, proj_bias=False)


def remove_head_not_causal(attn, head):
    return _build(attn, _kept(attn, head), causal=False)


def remove_head_packed_qkv(attn, head):  # written for a packed qkv layer (3 * width rows)
    width = attn.heads * attn.head_dim
    rows = torch.cat([_kept(attn, head) + i * width for i in range(3)])
    W = attn.qkv.weight[rows]
    return W


def remove_head_in_place(attn, head):  # shrinks the caller's attention and returns it
    kept = _kept(attn, head)
    with torch.no_grad():
        for key in ("q", "k", "v"):
            old = getattr(attn, key)
            layer = nn.Linear(old.in_features, len(kept))
            layer.weight.copy_(old.weight[kept])
            layer.bias.copy_(old.bias[kept])
            setattr(attn, key, layer)
        proj = nn.Linear(len(kept), attn.proj.out_features)
        proj.weight.copy_(attn.proj.weight[:, kept])
        proj.bias.copy_(attn.proj.bias)
        attn.proj = proj
    return attn


def remove_head_by_mask(attn, head):
    """Written differently: a boolean mask over the rows, and a deep copy of the attention resized in place."""
    import copy

    new = copy.deepcopy(attn)
    keep = torch.ones(attn.heads, attn.head_dim, dtype=torch.bool)
    keep[head] = False
    keep = keep.flatten()
    with torch.no_grad():
        for key in ("q", "k", "v"):
            layer = getattr(new, key)
            layer.weight = nn.Parameter(layer.weight[keep].clone())
            layer.bias = nn.Parameter(layer.bias[keep].clone())
            layer.out_features = int(keep.sum())
        new.proj.weight = nn.Parameter(new.proj.weight[:, keep].clone())
        new.proj.in_features = int(keep.sum())
    return new


# Exercise 12.3 ---------------------------------------------------------------------------------------------------


def influence_cos_not_one_minus(h_in, h_out):
    return float(F.cosine_similarity(h_in, h_out, dim=-1).mean())


def influence_flattened(h_in, h_out):
    return float(1 - F.cosine_similarity(h_in.flatten(), h_out.flatten(), dim=0))


def influence_default_dim(h_in, h_out):  # torch's default dim=1 is the tokens axis here
    return float(1 - F.cosine_similarity(h_in, h_out).mean())


def influence_angular(h_in, h_out):
    cos = F.cosine_similarity(h_in, h_out, dim=-1).clamp(-1, 1)
    return float(torch.arccos(cos).mean() / torch.pi)


def influence_abs(h_in, h_out):
    return float(1 - F.cosine_similarity(h_in, h_out, dim=-1).abs().mean())


def influence_per_example(h_in, h_out):
    return float(1 - F.cosine_similarity(h_in.flatten(1), h_out.flatten(1), dim=1).mean())


def influence_normalised_in_place(h_in, h_out):
    h_in /= h_in.norm(dim=-1, keepdim=True)
    h_out = h_out / h_out.norm(dim=-1, keepdim=True)
    return float(1 - (h_in * h_out).sum(-1).mean())


def influence_by_hand(h_in, h_out):
    """Written differently: dot products and norms per token, averaged with a sum and a count."""
    a, b = h_in.detach().double(), h_out.detach().double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return 1.0 - cos.sum().item() / cos.numel()


WRONG = {
    "12.1": [remove_head_default_head_dim, remove_head_strided_rows, remove_head_proj_rows, remove_head_fresh_biases,
             remove_head_not_causal, remove_head_packed_qkv, remove_head_in_place],
    "12.3": [influence_cos_not_one_minus, influence_flattened, influence_default_dim, influence_angular,
             influence_abs, influence_per_example, influence_normalised_in_place],
}
RIGHT = {"12.1": [remove_head_by_mask], "12.3": [influence_by_hand]}
