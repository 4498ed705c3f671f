"""Uniform affine quantization from first principles, fake quantization and quantization-aware training.

A b-bit quantized number is an integer q in [qmin, qmax] that stands for the real number
`scale * (q - zero_point)`. Asymmetric quantization maps [min(x, 0), max(x, 0)] onto [0, 2^b - 1];
symmetric quantization uses zero_point = 0 and the signed grid [-(2^(b-1) - 1), 2^(b-1) - 1]. Either way
the real number 0 is exactly representable, so pruned weights stay exactly zero.
Fake quantization (quantize then dequantize, in float) with a straight-through estimator is what
quantization-aware training trains through (Jacob et al. 2018; Bengio et al. 2013 for the STE).
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import copy
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from minprune.validate import check_flag, model_arg

MIN_BITS, MAX_BITS = 2, 8
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_bits(bits) -> None:
    """Refuse a bit width that is not an int from MIN_BITS to MAX_BITS (2 to 8)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int from {MIN_BITS} to {MAX_BITS}, got {bits!r}")


def qrange(bits: int, symmetric: bool = False) -> tuple[int, int]:
    """The integer grid (qmin, qmax): [0, 2^b - 1] asymmetric, [-(2^(b-1) - 1), 2^(b-1) - 1] symmetric."""
    check_bits(bits)
    if symmetric:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def check_tensor(x, name: str = "x") -> torch.Tensor:
    """`x` when it is a real-valued tensor (float or int, not bool or complex); else TypeError naming `name`."""
    if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_complex():
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a real-valued torch.Tensor, got {kind}")
    if x.is_meta:
        raise ValueError(f"{name} is on the meta device and holds no values to quantize")
    return x


def _as_parameter(value, name: str, x: torch.Tensor, axis) -> torch.Tensor:
    """scale or zero_point as a tensor: a real number, or a real tensor with one entry (per tensor) or
    x.shape[axis] entries (per channel); all finite. Else TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__} {value!r:.60}")
    t = check_tensor(torch.as_tensor(value), name)
    sizes = (1,) if axis is None else (1, x.shape[axis])
    if t.dim() > 1 or t.numel() not in sizes:
        expected = "one value" if axis is None else f"one value or {x.shape[axis]} (one per channel of axis {axis})"
        raise ValueError(f"{name} must hold {expected}, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value!r:.60} (NaN and inf are refused)")
    return t


def _check_scale(scale, x: torch.Tensor, axis) -> torch.Tensor:
    """A scale (grid step) > 0: zero or a negative step has no grid (x / 0 is inf)."""
    t = _as_parameter(scale, "scale", x, axis)
    if not bool((t > 0).all()):
        raise ValueError(f"scale must be > 0 (the grid step), got {scale!r:.60}")
    return t


def _check_zero_point(zero_point, qmin, qmax, x: torch.Tensor, axis) -> torch.Tensor:
    """A zero point: whole numbers on the integer grid [qmin, qmax] (the integer that stands for 0.0)."""
    t = _as_parameter(zero_point, "zero_point", x, axis)
    integral = not t.is_floating_point() or bool((t == torch.round(t)).all())
    if not integral or (qmin is not None and not bool(((t >= qmin) & (t <= qmax)).all())):
        where = "" if qmin is None else f" in [{qmin}, {qmax}]"
        raise ValueError(f"zero_point must be a whole number{where}, got {zero_point!r:.60}")
    return t


def _check_axis(x: torch.Tensor, axis) -> None:
    """Refuse an axis that is not None or an int in [-x.dim(), x.dim()) (no silent `axis % dim`)."""
    if axis is None:
        return
    valid = f"an int from {-x.dim()} to {x.dim() - 1} or None" if x.dim() else "None (x is 0-d)"
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis!r} is out of range for a tensor of shape {tuple(x.shape)}; axis must be {valid}")


def _check_finite(*parts: torch.Tensor) -> None:
    """Refuse NaN or Inf in x; `parts` are x itself or its (per-channel) min and max, which carry any NaN/Inf."""
    if not all(bool(torch.isfinite(t).all()) for t in parts):
        raise ValueError("x must be finite, but it contains NaN or Inf (a diverged weight?); quantization "
                         "needs finite values")


def _reduce_dims(x: torch.Tensor, axis: int | None) -> list[int]:
    _check_axis(x, axis)
    if axis is None:
        return list(range(x.dim()))
    axis = axis % x.dim()
    return [d for d in range(x.dim()) if d != axis]


def _broadcast(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape per-channel parameters (C,) so that they broadcast along `axis` of x."""
    _check_axis(x, axis)
    if axis is None:
        return t
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return t.reshape(shape)


def quant_params(x: torch.Tensor, bits: int = 8, *, symmetric: bool = False, axis: int | None = None):
    """Scale and zero point that cover x (per tensor, or per channel along `axis`); returns (scale, zero_point).

    scale is float32, zero_point int64; both are 0-d per tensor or shaped (x.shape[axis],) per channel.
    x may be float16 or bfloat16 (the parameters are computed in float32).
    """
    check_tensor(x)
    check_flag(symmetric, "symmetric")
    qmin, qmax = qrange(bits, symmetric)
    dims = _reduce_dims(x, axis)
    x = x.detach().float()
    lo = torch.clamp(x.amin(dim=dims), max=0.0)  # the range always contains 0, so 0 is on the grid
    hi = torch.clamp(x.amax(dim=dims), min=0.0)
    _check_finite(lo, hi)
    if symmetric:
        scale = torch.maximum(-lo, hi) / qmax
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = torch.clamp(scale, min=torch.finfo(torch.float32).eps)  # an all-zero tensor still gets a valid grid
    if not symmetric:
        zero_point = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int64)
    return scale, zero_point


def quantize(x: torch.Tensor, scale, zero_point, bits: int = 8, *, symmetric: bool = False,
             axis: int | None = None) -> torch.Tensor:
    """Real numbers to integers: clamp(round(x / scale) + zero_point, qmin, qmax), as int32 (pure).

    scale: > 0 and finite; zero_point: whole numbers in [qmin, qmax]; per tensor or one per channel of `axis`.
    """
    check_tensor(x)
    check_flag(symmetric, "symmetric")
    qmin, qmax = qrange(bits, symmetric)
    _check_axis(x, axis)
    scale, zero_point = _check_scale(scale, x, axis), _check_zero_point(zero_point, qmin, qmax, x, axis)
    scale, zero_point = _broadcast(scale, x, axis), _broadcast(zero_point, x, axis)
    xf = x.float() if x.dtype in HALF_DTYPES else x  # rounded in float32: half would mis-round near .5
    q = torch.round(xf / scale) + zero_point
    return torch.clamp(q, qmin, qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale, zero_point, *, axis: int | None = None) -> torch.Tensor:
    """Integers back to real numbers: scale * (q - zero_point), as float32 (pure)."""
    check_tensor(q, "q")
    _check_axis(q, axis)
    scale, zero_point = _check_scale(scale, q, axis), _check_zero_point(zero_point, None, None, q, axis)
    scale, zero_point = _broadcast(scale, q, axis), _broadcast(zero_point, q, axis)
    return scale * (q.float() - zero_point)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def fake_quantize(x: torch.Tensor, bits: int = 8, *, symmetric: bool = False, axis: int | None = None,
                  scale=None, zero_point=None) -> torch.Tensor:
    """Quantize then dequantize in float, differentiably: the gradient passes straight through the rounding
    and is zero where the value was clipped (as in torch.fake_quantize_per_tensor_affine).

    scale and zero_point default to `quant_params(x, bits, ...)`; given, scale must be > 0 and finite and
    zero_point whole numbers in [qmin, qmax]. A float16 or bfloat16 x gives a result of its own dtype.
    """
    check_tensor(x)
    check_flag(symmetric, "symmetric")
    qmin, qmax = qrange(bits, symmetric)
    _check_axis(x, axis)
    if scale is None or zero_point is None:
        scale, zero_point = quant_params(x, bits, symmetric=symmetric, axis=axis)  # refuses NaN/Inf in x
    else:
        scale, zero_point = _check_scale(scale, x, axis), _check_zero_point(zero_point, qmin, qmax, x, axis)
        _check_finite(x)
    scale, zero_point = _broadcast(scale, x, axis), _broadcast(zero_point, x, axis)
    xf = x.float() if x.dtype in HALF_DTYPES else x  # the grid arithmetic in float32, the result in x's dtype
    q = torch.clamp(round_ste(xf / scale) + zero_point, qmin, qmax)
    out = (q - zero_point) * scale
    return out.to(x.dtype) if x.is_floating_point() else out


class FakeQuantMixin:
    """Weights are fake-quantized on every forward pass; the float weights are what the optimizer updates."""

    bits: int
    symmetric: bool
    per_channel: bool

    def quantized_weight(self) -> torch.Tensor:
        axis = 0 if self.per_channel else None  # output channels: dim 0 of Linear (out, in) and Conv (out, in, kh, kw)
        return fake_quantize(self.weight, self.bits, symmetric=self.symmetric, axis=axis)

    def extra_repr(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        return f"{super().extra_repr()}, bits={self.bits}, {kind}, symmetric={self.symmetric}"


class FakeQuantLinear(FakeQuantMixin, nn.Linear):
    """nn.Linear whose weight goes through `fake_quantize` (same parameters and state_dict keys)."""

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)


class FakeQuantConv2d(FakeQuantMixin, nn.Conv2d):
    """nn.Conv2d whose weight goes through `fake_quantize` (same parameters and state_dict keys)."""

    def forward(self, x):
        return self._conv_forward(x, self.quantized_weight(), self.bias)


SWAPS = {nn.Linear: FakeQuantLinear, nn.Conv2d: FakeQuantConv2d}


def swap_fake_quant(model: nn.Module, bits: int = 8, *, per_channel: bool = True, symmetric: bool = True) -> nn.Module:
    """Swap every Linear and Conv2d for its fake-quant twin, in place (the parameters are the same objects).

    Train the result with `mp.fit` for quantization-aware training; `strip_fake_quant` ends it. Float16 and
    bfloat16 models keep their dtype (the grid is computed in float32, the weights stay in their dtype).
    """
    model_arg(model)
    check_bits(bits)
    check_flag(per_channel, "per_channel")
    check_flag(symmetric, "symmetric")
    targets = [m for m in model.modules() if type(m) in SWAPS or isinstance(m, FakeQuantMixin)]
    if not targets:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to quantize")
    for module in model.modules():
        if hasattr(module, "weight_orig"):
            raise ValueError("the model carries pruning masks (weight_orig); call make_permanent(model) first")
    for module in targets:
        base = next(b for b in SWAPS if isinstance(module, b))
        module.__class__ = SWAPS[base]  # same object, same parameters: optimizers keep working
        module.bits, module.per_channel, module.symmetric = bits, per_channel, symmetric
    return model


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Write the quantized values into the weights and swap the plain layers back, in place."""
    model_arg(model)
    bad = [name for name, m in model.named_modules() if isinstance(m, FakeQuantMixin)
           and not bool(torch.isfinite(m.weight).all())]
    if bad:  # checked for every layer before any is written, so a refused model is left as it was
        raise ValueError(f"the weights of {bad} contain NaN or Inf; quantization needs finite values "
                         f"(reload or re-initialise the model)")
    for module in model.modules():
        if isinstance(module, FakeQuantMixin):
            with torch.no_grad():
                module.weight.copy_(module.quantized_weight())
            module.__class__ = next(base for base, swap in SWAPS.items() if isinstance(module, swap))
            del module.bits, module.per_channel, module.symmetric
    return model


def quantize_weights(model: nn.Module, bits: int = 8, *, per_channel: bool = True, symmetric: bool = True) -> nn.Module:
    """Post-training quantization from scratch: a copy whose Linear/Conv2d weights are on a `bits`-bit grid
    (float16 and bfloat16 models keep their dtype)."""
    model_arg(model)
    check_bits(bits)
    check_flag(per_channel, "per_channel")
    check_flag(symmetric, "symmetric")
    return strip_fake_quant(swap_fake_quant(copy.deepcopy(model), bits, per_channel=per_channel, symmetric=symmetric))
