"""TinyViT: a Vision Transformer (Dosovitskiy et al. 2021) small enough to train on 2 CPU cores in a minute.

A 28x28 digit is cut into patch_size x patch_size patches (7 -> 16 patches), each flattened and embedded by one
`nn.Linear`; a learned class token and learned position embeddings are added, `depth` pre-norm blocks of
multi-head self-attention and a GELU MLP follow (attention_blocks.py), then a final LayerNorm and a Linear head
on the class token (head_dim, default dim // heads, sets the attention width heads * head_dim apart from dim; the
config records it only when given). The attention is written out (separate q, k, v and proj Linear layers,
heads split with view/transpose) rather than `nn.MultiheadAttention`: each head's rows of q/k/v and columns of
proj are plain tensors that a learner can see, score and prune, which torch's fused multi-head attention hides
inside one `in_proj_weight` and a fused kernel. Defaults (dim=64, depth=4, heads=4, mlp_ratio=2): 139,018 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.attention_blocks import Block, init_transformer
from minprune.classifier import Classifier
from minprune.validate import positive_int


class TinyViT(Classifier):
    """Patch embedding, class token, position embeddings, `depth` transformer blocks, LayerNorm, Linear head."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, patch_size=7, dim=64, depth=4, heads=4,
                 mlp_ratio=2, head_dim=None):
        super().__init__(input_shape, num_classes=num_classes, patch_size=patch_size, dim=dim, depth=depth,
                         heads=heads, mlp_ratio=mlp_ratio, **({} if head_dim is None else {"head_dim": head_dim}))
        c, h, w = input_shape
        self.patch_size = patch_size
        n_patches = (h // patch_size) * (w // patch_size)
        self.embed = nn.Linear(c * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, dim * mlp_ratio, head_dim=head_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        init_transformer(self)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) -> (batch, patches, C * p * p), patches in row-major order."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.patches(x))
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def check_vit_sizes(shape: list, kwargs: dict) -> None:
    """Refuse TinyViT sizes no model can have: non-positive ints, dim not divisible by heads (unless head_dim, a
    positive int or None, is given), a patch size that does not divide the image's height and width (`shape` is
    the checked (C, H, W); `kwargs` plain data)."""
    sizes = {key: kwargs.get(key, default) for key, default in
             (("patch_size", 7), ("dim", 64), ("depth", 4), ("heads", 4), ("mlp_ratio", 2))}
    sizes = {key: positive_int(value, key) for key, value in sizes.items()}
    head_dim = positive_int(kwargs.get("head_dim"), "head_dim", none_ok=True)
    if head_dim is None and sizes["dim"] % sizes["heads"]:
        raise ValueError(f"dim of 'tinyvit' must be divisible by heads, got dim={sizes['dim']}, "
                         f"heads={sizes['heads']}")
    p = sizes["patch_size"]
    if shape[1] % p or shape[2] % p:
        raise ValueError(f"patch_size of 'tinyvit' must divide the image's height and width, got patch_size={p} "
                         f"for input_shape={shape}")

