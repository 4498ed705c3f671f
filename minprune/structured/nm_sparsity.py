"""N:M semi-structured sparsity: in every group of M consecutive weights of a row, keep the N largest.

2:4 is the pattern NVIDIA Ampere and later GPUs accelerate in hardware (sparse tensor cores, about 2x for
large matrix multiplies): the weight is stored as its N values plus a small index per value.
`torch.sparse.to_sparse_semi_structured` builds that format on a CUDA device of compute capability >= 8.0.
CPUs have no such kernels: on CPU, N:M saves storage and (theoretical) MACs only, never time.
Masks use the usual format: {param name: bool tensor shaped like the weight, True = keep}.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minprune.train import check_model
from minprune.validate import check_flag, positive_int


def _check_n_m(n, m) -> None:
    if isinstance(n, bool) or isinstance(m, bool) or not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
        raise ValueError(f"need integers 0 < n <= m, got n={n!r}, m={m!r}")


def _check_scores(scores, name: str = "scores") -> None:
    if not isinstance(scores, torch.Tensor) or scores.dtype == torch.bool or scores.is_complex():
        kind = f"a {scores.dtype} tensor" if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"{name} must be a real-valued tensor shaped like the weight, got {kind}")


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep the `n` highest scores in each group of `m` consecutive entries of every row (dim 0 = rows).

    Any real dtype (float16 and bfloat16 too). See notebooks/06_structured_pruning.ipynb.
    """
    _check_n_m(n, m)
    _check_scores(scores)
    if scores.dim() < 2:
        raise ValueError(f"N:M needs a weight with rows (2-D or more), got shape {tuple(scores.shape)}")
    if scores.is_floating_point() and bool(scores.isnan().any()):
        raise ValueError(f"scores contains NaN at {int(scores.isnan().sum())} of {scores.numel()} entries; N:M "
                         f"ranks scores, so they must be numbers (recompute them from finite weights)")
    rows = scores.reshape(scores.shape[0], -1)  # (out, in * kh * kw)
    if rows.shape[1] % m:
        raise ValueError(f"a row of {rows.shape[1]} weights does not split into groups of {m}")
    groups = rows.reshape(rows.shape[0], -1, m)  # (out, in/m, m)
    top = groups.topk(n, dim=2).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True)
    return mask.reshape(scores.shape)


def nm_masks(scores: dict, n: int = 2, m: int = 4, *, strict: bool = False) -> dict[str, torch.Tensor]:
    """N:M masks for every scored weight; rows not divisible by m are skipped (or refused if strict).

    See notebooks/06_structured_pruning.ipynb.
    """
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict {{parameter name: tensor}}, got {type(scores).__name__}")
    _check_n_m(n, m)
    check_flag(strict, "strict")
    for name, s in scores.items():
        _check_scores(s, f"scores[{name!r}]")
    masks = {}
    for name, s in scores.items():
        row = s[0].numel() if s.dim() >= 2 else 0
        if s.dim() < 2 or row % m:
            if strict:
                raise ValueError(f"{name}: rows of {row} weights cannot hold an {n}:{m} pattern")
            continue
        masks[name] = nm_mask(s, n, m)
    return masks


def is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of `m` consecutive entries of each row keeps at most `n`."""
    rows = mask.reshape(mask.shape[0], -1)
    return rows.shape[1] % m == 0 and bool((rows.reshape(rows.shape[0], -1, m).sum(2) <= n).all())


def _check_report_masks(model: nn.Module, masks) -> None:
    """TypeError/ValueError unless `masks` is {parameter name of `model`: bool tensor of its shape} and every mask
    keeps at least one weight. Reads the model's shapes only (a meta-device model is fine)."""
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{parameter name: bool tensor}}, got {type(masks).__name__}")
    shapes = {name.removesuffix("_orig"): p.shape for name, p in model.named_parameters()}
    for name, mk in masks.items():
        if not isinstance(mk, torch.Tensor) or mk.dtype != torch.bool:
            kind = f"a {mk.dtype} tensor" if isinstance(mk, torch.Tensor) else type(mk).__name__
            raise TypeError(f"masks must be a dict {{parameter name: bool tensor}}, got {kind} for {name!r}")
        if name not in shapes:
            raise ValueError(f"masks names unknown parameter name {name!r}; the model has e.g. {list(shapes)[:6]}")
        if mk.shape != shapes[name]:
            raise ValueError(f"masks[{name!r}] has shape {tuple(mk.shape)} but the parameter has "
                             f"{tuple(shapes[name])}")
        if mk.is_meta:
            raise ValueError(f"masks[{name!r}] is on the meta device and holds no values")
        if mk.numel() and not bool(mk.any()):
            raise ValueError(f"masks[{name!r}] keeps no weight (all False): a layer with no weights left cuts the "
                             f"network; pass masks that keep at least one weight per layer (nm_masks(scores))")


def nm_report(model: nn.Module, masks: dict, n: int = 2, m: int = 4, *, value_bits: int = 16) -> dict:
    """Storage and MACs of the masked layers, dense versus compressed N:M (values + index bits per value).

    MACs assume a kernel that skips the zeros, as sparse tensor cores do; a dense CPU kernel does not.
    See notebooks/06_structured_pruning.ipynb.
    """
    check_model(model)
    _check_report_masks(model, masks)
    _check_n_m(n, m)
    positive_int(value_bits, "value_bits")
    dense = sum(mk.numel() for mk in masks.values())  # a mask has its weight's shape (also once applied)
    kept = sum(int(mk.sum()) for mk in masks.values())
    index_bits = max(1, math.ceil(math.log2(m)))
    return {"layers": len(masks), "weights": dense, "kept": kept, "density": kept / max(dense, 1),
            "dense_bytes": dense * value_bits // 8, "nm_bytes": kept * (value_bits + index_bits) // 8,
            "mac_ratio": dense / max(kept, 1)}


def semi_structured_supported() -> bool:
    """Whether this machine has a GPU that accelerates 2:4 sparsity (CUDA, compute capability >= 8.0)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def to_semi_structured(layer: nn.Linear) -> nn.Linear:
    """Store a 2:4-masked Linear weight in the hardware format (fp16, CUDA); in place, returns the layer.

    See notebooks/06_structured_pruning.ipynb.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    if not semi_structured_supported():
        raise RuntimeError("2:4 semi-structured kernels need a CUDA GPU of compute capability >= 8.0; on CPU "
                           "report storage and MACs with nm_report instead")
    if not isinstance(layer, nn.Linear) or not is_nm(layer.weight != 0, 2, 4):
        raise ValueError("to_semi_structured takes an nn.Linear whose weight already has a 2:4 pattern")
    from torch.sparse import to_sparse_semi_structured

    layer.weight = nn.Parameter(to_sparse_semi_structured(layer.weight.detach().half().cuda()))
    return layer
