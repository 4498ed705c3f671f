"""The transformer block TinyViT and CharGPT share: pre-norm multi-head self-attention, then an MLP.

Attention is written out, not taken from `nn.MultiheadAttention`: `q`, `k`, `v` and the output projection
`proj` are four plain `nn.Linear` layers, heads are split with view/transpose. Head h owns rows
[h * head_dim, (h + 1) * head_dim) of q, k and v and the same columns of proj, so a learner can see each head's
weights, score them and prune them like any other Linear layer; torch's fused MultiheadAttention keeps q/k/v in
one `in_proj_weight` and runs a fused kernel, hiding them. The attention width (heads * head_dim) is its own size,
not tied to the residual width `dim` (head_dim defaults to dim // heads), so a model whose residual width was
pruned (transformers/width.py) keeps its heads whole. The block stores `head_dim` and reads
the number of heads from the layers (`q.out_features // head_dim`): a block whose whole heads were removed
(transformers/heads.py) keeps running, and since a model's description records the resized q/k/v/proj layers
(models.describe), it saves and loads back with the heads it kept. Used by tinyvit.py and chargpt.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention on (batch, tokens, dim); causal=True lets token i see only tokens 0..i.

    q, k and v map dim -> heads * head_dim (head_dim defaults to dim // heads) and proj maps it back to dim.
    """

    def __init__(self, dim: int, heads: int, *, head_dim: int | None = None, causal: bool = False):
        super().__init__()
        self.head_dim, self.causal = dim // heads if head_dim is None else head_dim, causal
        width = heads * self.head_dim
        self.q, self.k, self.v = nn.Linear(dim, width), nn.Linear(dim, width), nn.Linear(dim, width)
        self.proj = nn.Linear(width, dim)

    @property
    def heads(self) -> int:
        """The number of heads, read from the layers: q's rows come in blocks of head_dim, one per head."""
        return self.q.out_features // self.head_dim

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, heads * head_dim) -> (batch, heads, tokens, head_dim)."""
        b, t, _ = x.shape
        return x.view(b, t, -1, self.head_dim).transpose(1, 2)

    def attend(self, x: torch.Tensor, log_size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(output (batch, tokens, dim), attention probabilities (batch, heads, tokens, tokens)).

        log_size (batch, tokens), optional: added to every query's score for each key, so a key that stands for
        n merged tokens counts n times ("proportional attention" of token merging, transformers/token_merging.py).
        """
        b, t, _ = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, heads, tokens, tokens)
        if log_size is not None:
            scores = scores + log_size[:, None, None, :]
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        probs = scores.softmax(dim=-1)
        out = probs @ v  # (batch, heads, tokens, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, t, -1)), probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]


class MLP(nn.Module):
    """Linear (dim -> hidden), GELU, Linear (hidden -> dim): the feed-forward half of a block."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, *, head_dim: int | None = None, causal: bool = False):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads, head_dim=head_dim, causal=causal)
        self.ln2, self.mlp = nn.LayerNorm(dim), MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def init_transformer(model: nn.Module) -> None:
    """GPT-2 style initialisation: Linear and Embedding weights ~ N(0, 0.02), biases 0, LayerNorm 1 and 0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
