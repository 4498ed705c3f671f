"""CharGPT: a character-level GPT (nanoGPT, scaled down) that trains on 2 CPU cores.

Token embedding plus learned position embedding (up to `block_size` positions), `n_layer` pre-norm blocks of
causal multi-head self-attention and a GELU MLP (attention_blocks.py: q, k, v and proj are separate Linear
layers, so each head's weights are plain tensors to score and prune), a final LayerNorm and a Linear head to
`vocab_size` logits (tied to the token embedding only with tie_weights=True). head_dim (default n_embd // n_head)
sets the attention width n_head * head_dim apart from n_embd; the config records it only when given.
Input: (batch, t) integer token ids, 1 <= t <= block_size; output: (batch, t, vocab_size) logits, where position i
depends on tokens 0..i only.
`input_shape = (block_size,)` and `example_input(batch_size)` give the integer examples measuring needs.
Defaults (vocab_size=103, block_size=64, n_layer=4, n_head=4, n_embd=64, MLP 4 * n_embd): 217,344 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.attention_blocks import Block, init_transformer
from minprune.classifier import Classifier
from minprune.validate import check_flag, finite_number, input_shape_arg, non_negative_int, positive_int

TOKEN_DTYPES = (torch.int64, torch.int32)


def check_tokens(model: CharGPT, idx, *, crop: bool = False) -> None:
    """Refuse what CharGPT cannot read: not a tensor or not integer ids (TypeError), not (batch, t), t outside
    [1, block_size] (unless crop: generating keeps the last block_size), ids outside [0, vocab_size) (ValueError)."""
    name, limit = type(model).__name__, model.config["block_size"]
    expected = f"int64 token ids of shape (batch, t) with 1 <= t <= {limit}"
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"{name} expects {expected}, got {type(idx).__name__}")
    if idx.dtype not in TOKEN_DTYPES:
        raise TypeError(f"{name} expects {expected}, got a {idx.dtype} tensor of shape {tuple(idx.shape)} "
                        f"(token ids are integers: x.long())")
    if idx.dim() != 2 or idx.shape[1] < 1 or (idx.shape[1] > limit and not crop):
        raise ValueError(f"{name} expects {expected}, got shape {tuple(idx.shape)}")
    if idx.numel() and not idx.is_meta:
        low, high = int(idx.min()), int(idx.max())
        vocab = model.config["vocab_size"]
        if low < 0 or high >= vocab:
            raise ValueError(f"{name} has a vocabulary of {vocab} tokens; input of shape {tuple(idx.shape)} holds "
                             f"token id {low if low < 0 else high}, outside [0, {vocab})")


def _token_hook(module, args):
    check_tokens(module, args[0])


class CharGPT(Classifier):
    """GPT: token + position embeddings, `n_layer` causal transformer blocks, LayerNorm, Linear head."""

    input_check = staticmethod(_token_hook)
    input_shape_in_config = False

    def __init__(self, vocab_size=103, block_size=64, n_layer=4, n_head=4, n_embd=64, tie_weights=False,
                 head_dim=None):
        super().__init__((block_size,), vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                         n_head=n_head, n_embd=n_embd, tie_weights=tie_weights,
                         **({} if head_dim is None else {"head_dim": head_dim}))
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, 4 * n_embd, head_dim=head_dim, causal=True)
                                      for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        init_transformer(self)
        if tie_weights:
            self.head.weight = self.tok_emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        return self.head(self.ln_f(self.blocks(x)))

    def example_input(self, batch_size: int = 1, input_shape=None) -> torch.Tensor:
        """Token ids (all 0) shaped (batch_size, t) on the model's device: t = block_size, or input_shape=(t,)."""
        positive_int(batch_size, "batch_size")
        shape = input_shape_arg(input_shape) if input_shape is not None else self.input_shape
        if len(shape) != 1 or shape[0] > self.block_size:
            raise ValueError(f"CharGPT reads (t,) tokens with t <= {self.block_size}, got input_shape={shape}")
        return torch.zeros(batch_size, shape[0], dtype=torch.long, device=self.tok_emb.weight.device)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
        """`idx` (batch, t) followed by `max_new_tokens` sampled tokens: (batch, t + max_new_tokens).

        Each step reads the last block_size tokens. temperature=0 is greedy (argmax); otherwise tokens are drawn
        from softmax(logits / temperature) with a generator seeded by `seed`, so a seed gives the same text every
        time. The model runs in eval mode; its train/eval flag is put back afterwards.
        """
        check_tokens(self, idx, crop=True)
        non_negative_int(max_new_tokens, "max_new_tokens")
        temperature = finite_number(temperature, "temperature", low=0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r:.60}")
        generator = torch.Generator(device=idx.device).manual_seed(seed)
        training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits = self(idx[:, -self.block_size:])[:, -1]
                if temperature == 0:
                    token = logits.argmax(dim=-1, keepdim=True)
                else:
                    probs = (logits.float() / temperature).softmax(dim=-1)
                    token = torch.multinomial(probs, 1, generator=generator)
                idx = torch.cat([idx, token.to(idx.dtype)], dim=1)
        finally:
            self.train(training)
        return idx


def check_gpt_sizes(kwargs: dict) -> None:
    """Refuse CharGPT sizes no model can have: non-positive ints, n_embd not divisible by n_head (unless head_dim,
    a positive int or None, is given), a tie_weights that is not a bool (`kwargs` as plain data)."""
    sizes = {key: kwargs.get(key, default) for key, default in
             (("vocab_size", 103), ("block_size", 64), ("n_layer", 4), ("n_head", 4), ("n_embd", 64))}
    sizes = {key: positive_int(value, key) for key, value in sizes.items()}
    head_dim = positive_int(kwargs.get("head_dim"), "head_dim", none_ok=True)
    if head_dim is None and sizes["n_embd"] % sizes["n_head"]:
        raise ValueError(f"n_embd of 'chargpt' must be divisible by n_head, got n_embd={sizes['n_embd']}, "
                         f"n_head={sizes['n_head']}")
    check_flag(kwargs.get("tie_weights", False), "tie_weights")
