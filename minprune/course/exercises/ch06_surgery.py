"""Chapter 6, Exercise 6.4: the surgery of one conv -> BatchNorm -> conv triple, checked tensor by tensor.

The check compares every sliced tensor, the size attributes and BatchNorm's settings of the learner's three new
modules with `remove_conv_bn_channels`, and the output of next_conv(relu(bn(conv(x)))). Registered by ch06.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from minprune.course.check import CheckFailed, difference
from minprune.course.exercises import exercise
from minprune.structured.surgery import remove_conv_bn_channels


def _long(indices) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long)



_SIZES = (("conv", "in_channels"), ("conv", "out_channels"), ("bn", "num_features"), ("next_conv", "in_channels"),
          ("next_conv", "out_channels"))


def _pair_summary(conv, bn, next_conv, x) -> dict:
    """What the check compares: every sliced tensor, the size attributes, BN's settings, and the triple's output
    next_conv(relu(bn(conv(x)))) computed on eval-mode copies (so BN uses the running statistics)."""
    summary = {"conv.weight": conv.weight, "conv.bias": conv.bias, "conv.out_channels": conv.out_channels,
               "bn.num_features": bn.num_features}
    for name in ("weight", "bias", "running_mean", "running_var"):
        summary[f"bn.{name}"] = getattr(bn, name)
    summary.update({"bn.eps": bn.eps, "bn.momentum": bn.momentum, "bn.training": bn.training,
                    "next_conv.weight": next_conv.weight, "next_conv.in_channels": next_conv.in_channels,
                    "next_conv.bias": next_conv.bias})
    try:
        with torch.no_grad():
            summary["output"] = copy.deepcopy(nn.Sequential(conv, bn, nn.ReLU(), next_conv)).eval()(x)
    except RuntimeError as err:  # shapes that do not fit: the differences above say which
        summary["output"] = f"the new triple does not run: {err}"
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in summary.items()}


def pair_surgery(fn, conv, bn, next_conv, keep, x) -> dict:
    """fn(conv, bn, next_conv, keep) summarised for comparison (see `_pair_summary`); a result that is not three
    modules, or a size attribute of an input changed, fails with what to do."""
    name = getattr(fn, "__name__", "your function")
    inputs = {"conv": conv, "bn": bn, "next_conv": next_conv}
    sizes = [getattr(inputs[owner], attr) for owner, attr in _SIZES]
    new = fn(conv, bn, next_conv, keep)
    after = [getattr(inputs[owner], attr) for owner, attr in _SIZES]
    if after != sizes:
        raise CheckFailed(f"✗ {name} changed its inputs in place (their sizes went from {sizes} to {after}); "
                          "return new modules, e.g. built from copy.deepcopy(conv), and leave the inputs as they were")
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Conv2d)
    if not (isinstance(new, (tuple, list)) and len(new) == 3 and all(isinstance(m, k) for m, k in zip(new, kinds))):
        raise CheckFailed(f"✗ {name} should return three modules (new_conv, new_bn, new_next_conv), got "
                          f"{type(new).__name__}")
    if any(m is old for m, old in zip(new, (conv, bn, next_conv))):
        raise CheckFailed(f"✗ {name} returned one of its inputs; return new modules (the inputs stay as they were)")
    return _pair_summary(*new, x)


def _pair(c_in, c_mid, c_out, kernel, *, bias, seed, train=False, eps=1e-5, momentum=0.1) -> tuple:
    """A seeded conv -> BN (shift, scale and running statistics far from their defaults) -> conv triple."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        conv = nn.Conv2d(c_in, c_mid, 3, padding=1, bias=bias)
        bn = nn.BatchNorm2d(c_mid, eps=eps, momentum=momentum)
        next_conv = nn.Conv2d(c_mid, c_out, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c_mid, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(c_mid, generator=g))
        bn.running_mean.copy_(torch.randn(c_mid, generator=g))
        bn.running_var.copy_(torch.rand(c_mid, generator=g) + 0.5)
    bn.train(train)
    return conv, bn, next_conv, torch.randn(2, c_in, 6, 7, generator=g)


def _surgery_cases() -> list[tuple]:
    """A conv without bias, a non-square next kernel, BN in train mode with its own eps and momentum, one kept
    channel, every channel kept, the last channels kept."""
    cases = [((3, 6, 4, (1, 3)), dict(bias=False, seed=640), [0, 2, 5]),
             ((2, 5, 3, (3, 1)), dict(bias=True, seed=641, train=True, eps=1e-3, momentum=0.3), [3]),
             ((4, 8, 2, (3, 3)), dict(bias=True, seed=642), [1, 2, 3, 4, 5, 6, 7]),
             ((1, 4, 5, (1, 1)), dict(bias=False, seed=643, train=True), [0, 1, 2, 3])]
    out = []
    for sizes, options, keep in cases:
        conv, bn, next_conv, x = _pair(*sizes, **options)
        out.append((conv, bn, next_conv, _long(keep), x))
    return out


_STALE = "still says the old width: set out_channels, num_features and in_channels to len(keep)"
_STATS = ("is a buffer, not a parameter, but it has one entry per channel too: keep the kept channels' statistics "
          "(BN in eval mode normalises with them)")
_SETTINGS = "differs from the original BatchNorm: the new one keeps its settings (copy.deepcopy keeps them all)"
_PAIR_HINTS = {
    "conv.weight": "conv's output channels are the rows of its weight (dim 0): keep weight[keep]; zeroing the other "
                   "rows masks them, it does not remove them",
    "conv.bias": "conv's bias has one entry per output channel: keep bias[keep] too",
    "conv.out_channels": _STALE, "bn.num_features": _STALE, "next_conv.in_channels": _STALE,
    "bn.weight": "bn's weight (scale) has one entry per channel: keep weight[keep]",
    "bn.bias": "bn's bias (shift) has one entry per channel: keep bias[keep]",
    "bn.running_mean": _STATS, "bn.running_var": _STATS,
    "bn.eps": _SETTINGS, "bn.momentum": _SETTINGS, "bn.training": _SETTINGS,
    "next_conv.weight": "next_conv's weight is (out, in, kh, kw): the channels it reads are dim 1 (weight[:, keep]); "
                        "its own output channels stay",
    "next_conv.bias": "next_conv's bias belongs to its own output channels, which all stay: keep it whole",
}


def _surgery_diagnosis(case, expected, got):
    if isinstance(got, IndexError):
        return ("index each tensor where the channels are: dim 0 of conv's weight and of bn's four tensors, dim 1 of "
                "next_conv's weight")
    if not isinstance(got, dict):
        return None
    first = next((key for key in expected if difference(expected[key], got.get(key), atol=1e-5)), None)
    if first in _PAIR_HINTS:
        text = _PAIR_HINTS[first]
        return f"{first} {text}" if text in (_STALE, _STATS, _SETTINGS) else text
    return None


exercise("6.4", "channel surgery of a conv-BN-conv triple", remove_conv_bn_channels, _surgery_cases,
         call=pair_surgery, hint="every tensor indexed by the removed channels loses them: conv's rows (and bias), "
                                 "all four per-channel tensors of bn, next_conv's columns (dim 1)",
         diagnoses=(_surgery_diagnosis,), atol=1e-5)
