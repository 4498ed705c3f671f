"""Token merging at inference, ToMe (Bolya et al. 2023, "Token Merging: Your ViT but Faster").

Instead of dropping tokens, ToMe merges similar ones: in every block, between attention and MLP, the tokens are
split into two alternating sets, each token of the first set is matched with its most similar token of the second
(cosine similarity of the attention keys, mean over heads: bipartite soft matching), and the r best-matched pairs
are merged into their size-weighted average. A token's size counts the patches it stands for; the attention
weighs a key of size n as n tokens (proportional attention: `attend(x, log_size=size.log())`). The class token is
never merged. Each block leaves r tokens fewer, with no training. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minprune.attention_blocks import SelfAttention
from minprune.tinyvit import TinyViT
from minprune.transformers.tokens import TokenWrapper, check_vit
from minprune.validate import non_negative_int


def merged_count(r: int, tokens: int) -> int:
    """How many tokens a block merges when `tokens` (class token included) come in: r, capped at (tokens - 1) // 2
    (at most half of the patch tokens, so every merged token has a partner of the other set)."""
    return min(r, (tokens - 1) // 2)


@torch.no_grad()
def match_tokens(metric: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bipartite soft matching of metric (batch, tokens, d): (merged, into, unmerged) indices (batch, .).

    Set A holds the even tokens (the class token, token 0, among them), set B the odd ones. `merged`: the r
    tokens of A with the most similar partner in B; `into`: the index in B of each one's partner; `unmerged`:
    the other tokens of A, in their order (the class token first: it is never merged).
    """
    metric = F.normalize(metric, dim=-1)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (batch, A, B) cosine similarities
    scores[:, 0, :] = float("-inf")  # the class token is never merged
    best, partner = scores.max(dim=-1)  # (batch, A)
    order = best.argsort(dim=-1, descending=True)
    merged = order[:, :r]
    return merged, partner.gather(1, merged), order[:, r:].sort(dim=1).values


def _merge(t: torch.Tensor, merged: torch.Tensor, into: torch.Tensor, unmerged: torch.Tensor) -> torch.Tensor:
    """(batch, A - r + B, c): the unmerged tokens of A, then the tokens of B with the merged ones of A added."""
    a, b = t[:, ::2], t[:, 1::2]
    c = t.shape[-1]
    kept = a.gather(1, unmerged[..., None].expand(-1, -1, c))
    moved = a.gather(1, merged[..., None].expand(-1, -1, c))
    return torch.cat([kept, b.scatter_add(1, into[..., None].expand(-1, -1, c), moved)], dim=1)


def merge_tokens(tokens: torch.Tensor, size: torch.Tensor, metric: torch.Tensor,
                 r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, size) with r tokens fewer: tokens (batch, t, dim), size (batch, t, 1) the patches each stands
    for, metric (batch, t, d) the keys they are matched on (`match_tokens`). A merged token is the size-weighted
    average of the tokens it joins, its size their sum. r=0 returns the inputs themselves."""
    if r == 0:
        return tokens, size
    idx = match_tokens(metric, r)
    size_out = _merge(size, *idx)
    return _merge(tokens * size, *idx) / size_out, size_out


def attend_with_keys(attn: SelfAttention, x: torch.Tensor,
                     log_size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(attn.attend(x, log_size)'s output, the keys (batch, tokens, heads * head_dim) it computed): a hook on
    attn.k keeps them, so they are not computed twice."""
    keys = []
    handle = attn.k.register_forward_hook(lambda _module, _args, out: keys.append(out))
    try:
        out, _ = attn.attend(x, log_size=log_size)
    finally:
        handle.remove()
    return out, keys[0]


class TokenMerged(TokenWrapper):
    """ToMe on a copy of a TinyViT: forward(x) -> logits, and in every block, between attention and MLP, r tokens
    are merged away (`merged_count`: capped at half the patch tokens once few are left), with proportional
    attention. r=0 gives the dense model's logits exactly.

    r: a non-negative int of at most half the patch tokens (8 for TinyViT's 16), larger r is refused. The model
    passed in is copied, never changed. See notebooks/12_transformers.ipynb.
    """

    def __init__(self, model: TinyViT, r: int = 2):
        check_vit(model, "TokenMerged")
        non_negative_int(r, "r")
        patches = model.pos.shape[1] - 1
        if r > patches // 2:
            raise ValueError(f"r={r} would merge more than half of the {patches} patch tokens in the first block; "
                             f"r must be in [0, {patches // 2}]")
        super().__init__(model)
        self.r = r

    def run_blocks(self, tokens: torch.Tensor, sizes: list | None = None) -> torch.Tensor:
        """The last block's output tokens; `sizes`, if given, gets each block's token sizes (batch, tokens)."""
        size = tokens.new_ones(*tokens.shape[:2], 1)  # (batch, tokens, 1): patches per token
        for block in self.vit.blocks:
            out, keys = attend_with_keys(block.attn, block.ln1(tokens), size[..., 0].log())
            tokens = tokens + out
            metric = block.attn.split(keys).mean(dim=1)  # (batch, tokens, head_dim): keys, mean over heads
            tokens, size = merge_tokens(tokens, size, metric, merged_count(self.r, tokens.shape[1]))
            tokens = tokens + block.mlp(block.ln2(tokens))
            if sizes is not None:
                sizes.append(size[..., 0])
        return tokens

    @torch.no_grad()
    def token_sizes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """For each block, (batch, tokens): how many of the image's tokens (patches and class token) each token
        leaving it stands for; every row sums to patches + 1, and the class token (first) stays 1."""
        sizes = []
        self.run_blocks(self.embed(x), sizes)
        return sizes

    def token_counts(self) -> list[int]:
        """The number of tokens each block's MLP runs on (and leaves), the class token included."""
        counts, t = [], self.patch_count + 1
        for _ in self.vit.blocks:
            t -= merged_count(self.r, t)
            counts.append(t)
        return counts
