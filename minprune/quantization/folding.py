"""BatchNorm folding: a convolution (or Linear layer) followed by a BatchNorm in eval mode is one affine map, so
the pair becomes one layer with a bias, before int8 conversion quantizes it.

In eval mode BatchNorm computes `gamma * (z - running_mean) / sqrt(running_var + eps) + beta` per channel. With
`s = gamma / sqrt(running_var + eps)`, the folded layer has weight `W * s` (each output channel's filter scaled)
and bias `(b - running_mean) * s + beta` (b = 0 for a layer without bias). The folded layer uses the running
statistics, so it equals the pair in eval mode only; a BatchNorm in training mode normalizes with each batch's own
statistics and is refused. Non-affine BatchNorms use gamma = 1, beta = 0. The inputs are never changed.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

PAIRS = {nn.Conv2d: nn.BatchNorm2d, nn.Linear: nn.BatchNorm1d}  # layer type -> the BatchNorm that may follow it


def _check_pair(layer, bn) -> None:
    """Refuse anything but a Conv2d + BatchNorm2d or Linear + BatchNorm1d pair that can be folded exactly."""
    kind = next((k for k in PAIRS if isinstance(layer, k)), None)
    if kind is None:
        raise TypeError(f"fold_batchnorm: conv must be an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    if not isinstance(bn, PAIRS[kind]):
        raise TypeError(f"fold_batchnorm: a {kind.__name__} is followed by an nn.{PAIRS[kind].__name__}, "
                        f"got {type(bn).__name__}")
    channels = layer.out_channels if kind is nn.Conv2d else layer.out_features
    if bn.num_features != channels:
        raise ValueError(f"fold_batchnorm: bn ({bn}) has {bn.num_features} channels but conv ({layer}) has "
                         f"{channels} output channels; the BatchNorm must be the one that follows this layer")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"fold_batchnorm: bn ({bn}) keeps no running statistics (track_running_stats=False), "
                         "so it always normalizes with the batch's own statistics and cannot be folded")
    if bn.training:
        raise ValueError(f"fold_batchnorm: bn ({bn}) is in training mode, where it normalizes with each batch's "
                         "statistics; folding uses its running statistics and equals the pair in eval mode: "
                         "call model.eval() first")
    if parametrize.is_parametrized(layer):
        raise ValueError(f"fold_batchnorm: conv ({layer}) carries a parametrization (a pruning mask?); call "
                         "make_permanent(model) first")
    tensors = [layer.weight, bn.running_mean, bn.running_var] + [t for t in (layer.bias, bn.weight, bn.bias)
                                                                  if t is not None]
    if any(t.is_meta for t in tensors):
        raise ValueError("fold_batchnorm: conv or bn has tensors on the meta device; they hold no values")
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise ValueError(f"fold_batchnorm: conv ({layer}) or bn ({bn}) holds NaN or Inf values")


def folded_parameters(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the layer that equals `bn(layer(x))` in eval mode (computed in float64, returned in the
    layer's dtype). No checks: `fold_batchnorm` checks first."""
    W = layer.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    weight = W * s.reshape(-1, *[1] * (W.dim() - 1))  # each output channel (the first axis) scaled
    bias = (b - mean) * s + beta
    return weight.to(layer.weight.dtype), bias.to(layer.weight.dtype)


def fold_batchnorm(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A new layer, with a bias, whose output equals `bn(conv(x))` with `bn` in eval mode.

    conv: an nn.Conv2d followed by the nn.BatchNorm2d `bn`, or an nn.Linear followed by an nn.BatchNorm1d.
    The result is a copy of `conv` (same stride, padding, dilation, groups, dtype and device) with the folded weight
    and bias; neither input is changed. TypeError for other layer types, ValueError for a BatchNorm in training
    mode or without running statistics, a channel count that does not match, a masked layer or NaN values.
    """
    _check_pair(conv, bn)
    weight, bias = folded_parameters(conv, bn)
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    folded.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    return folded
