"""Integer-only inference of one layer: what an int8 kernel computes, written with integer tensors.

Activations are uint8 (or int8) integers q_x standing for `x_scale * (q_x - x_zero_point)`; weights are int8,
symmetric (zero point 0), with one scale per tensor or per output channel. A Linear layer then computes
`y = x_scale * w_scale * sum((q_x - zx) * q_w) + bias`, and its output is quantized again with (y_scale, zy):

1. the int32 accumulator `acc = sum(q_x * q_w) - zx * sum(q_w)`: the zero-point correction expanded, as real
   kernels do (`sum(q_w)` per output channel is computed once, when the weights are packed);
2. the bias quantized to int32 with the scale `x_scale * w_scale` (so it adds to acc directly);
3. requantization: `q_y = clamp(round(M * acc) + zy, qmin, qmax)` with `M = x_scale * w_scale / y_scale`.

Everything is integer except M: by default `M * acc` is computed in float64 and rounded half to even, as
PyTorch's fbgemm and qnnpack kernels requantize (in float32). Integer-only hardware instead stores M as an int32
multiplier and a right shift (`fixed_point_multiplier`, M ~ multiplier * 2^-shift) and computes
`(acc * multiplier) >> shift` with rounding in int64: `fixed_point=True` does that. `integer_conv2d` runs the same
arithmetic on the patches of the image (padded with x_zero_point: the integer that stands for 0).
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.nn import functional as F

INT32_MAX = 2**31 - 1
QRANGE = {torch.uint8: (0, 255), torch.int8: (-128, 127)}


# ---- checks -------------------------------------------------------------------------------------------------


def _integers(t, name: str, dtypes: tuple, dims: tuple) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dtype not in dtypes:
        kind = f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a torch.Tensor of dtype {' or '.join(map(str, dtypes))}, got {kind}")
    if t.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, got shape {tuple(t.shape)}")
    return t


def _scale(value, name: str, channels: int | None = None) -> torch.Tensor:
    """A positive finite scale as a float64 tensor: one number, or (when `channels`) one per output channel."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a positive number{' or a tensor' if channels else ''}, got "
                        f"{type(value).__name__} {value!r:.60}")
    t = torch.as_tensor(value).detach().to("cpu", torch.float64)
    sizes = (1,) if channels is None else (1, channels)
    if t.dim() > 1 or t.numel() not in sizes or t.is_complex():
        raise ValueError(f"{name} must hold {' or '.join(map(str, sizes))} value(s), got shape {tuple(t.shape)}")
    if not bool((torch.isfinite(t) & (t > 0)).all()):
        raise ValueError(f"{name} must be positive and finite, got {value!r:.60}")
    return t.reshape(-1)


def _zero_point(value, name: str, dtype: torch.dtype) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    lo, hi = QRANGE[dtype]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}] (the {dtype} grid), got {value!r:.60}")
    return int(value)


def _out_dtype(out_dtype, q_x: torch.Tensor) -> torch.dtype:
    out_dtype = q_x.dtype if out_dtype is None else out_dtype
    if out_dtype not in QRANGE:
        raise ValueError(f"out_dtype must be torch.uint8 or torch.int8, got {out_dtype!r}")
    return out_dtype


def _bias(bias, channels: int) -> torch.Tensor | None:
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
        raise TypeError(f"bias must be None or a float tensor, got {type(bias).__name__} {bias!r:.60}")
    if tuple(bias.shape) != (channels,) or not bool(torch.isfinite(bias).all()):
        raise ValueError(f"bias must hold {channels} finite values (one per output channel), got shape "
                         f"{tuple(bias.shape)}")
    return bias.detach().to("cpu", torch.float64)


# ---- the arithmetic -------------------------------------------------------------------------------------------


def fixed_point_multiplier(M: float) -> tuple[int, int]:
    """(multiplier, shift) with M ~ multiplier * 2^-shift and 2^30 <= multiplier < 2^31: M as integer hardware
    stores it (gemmlowp, TFLite), with 31 significant bits. M must be in [2^-32, 2^30)."""
    if isinstance(M, bool) or not isinstance(M, numbers.Real) or not math.isfinite(M) or not 2**-32 <= M < 2**30:
        raise ValueError(f"fixed_point_multiplier: M must be a number in [2^-32, 2^30), got {M!r:.60}")
    mantissa, exponent = math.frexp(M)  # M = mantissa * 2^exponent, 0.5 <= mantissa < 1
    multiplier = round(mantissa * 2**31)
    if multiplier == 2**31:  # the mantissa rounded up to 1
        multiplier, exponent = 2**30, exponent + 1
    return multiplier, 31 - exponent


def rounding_shift(product: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """round(product / 2^shift) for int64 tensors, halves to even, with integer operations only (shift >= 1)."""
    floor = product >> shift
    rest = product - (floor << shift)
    half = torch.ones_like(shift) << (shift - 1)
    up = (rest > half) | ((rest == half) & (floor % 2 == 1))
    return floor + up.to(torch.int64)


def quantize_bias(bias: torch.Tensor | None, x_scale: torch.Tensor, w_scale: torch.Tensor,
                  channels: int) -> torch.Tensor:
    """The bias as int32 on the accumulator's grid, scale x_scale * w_scale (zeros when there is no bias)."""
    if bias is None:
        return torch.zeros(channels, dtype=torch.int32)
    q = torch.round(bias / (x_scale * w_scale))
    if bool((q.abs() > INT32_MAX).any()):
        raise ValueError("bias is too large for int32 on the accumulator's grid (bias / (x_scale * w_scale)); "
                         "the scales are too small for these values")
    return q.to(torch.int32)


def accumulate(q_x: torch.Tensor, x_zero_point: int, q_w: torch.Tensor) -> torch.Tensor:
    """The int32 accumulator sum((q_x - zx) * q_w) of rows q_x (n, in) and weights q_w (out, in), as
    sum(q_x * q_w) - zx * sum(q_w): shape (n, out)."""
    w = q_w.to(torch.int32)
    return q_x.to(torch.int32) @ w.T - x_zero_point * w.sum(dim=1, dtype=torch.int32)  # sum() alone gives int64


def requantize(acc: torch.Tensor, M: torch.Tensor, y_zero_point: int, dtype: torch.dtype, *,
               fixed_point: bool = False) -> torch.Tensor:
    """clamp(round(M * acc) + zy) in `dtype` (uint8 or int8): M one value or one per column of acc (float64)."""
    if fixed_point:
        pairs = [fixed_point_multiplier(float(m)) for m in M]
        multiplier = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
        shift = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
        scaled = rounding_shift(acc.to(torch.int64) * multiplier, shift)
    else:
        scaled = torch.round(acc.to(torch.float64) * M).to(torch.int64)
    lo, hi = QRANGE[dtype]
    return torch.clamp(scaled + y_zero_point, lo, hi).to(dtype)


def _finish(acc, q_x, x_scale, w_scale, bias, y_scale, y_zero_point, out_dtype, fixed_point):
    """The checked scales, the bias added and the accumulator requantized: the steps linear and conv share."""
    channels = acc.shape[1]
    sx, sy = _scale(x_scale, "x_scale"), _scale(y_scale, "y_scale")
    sw = _scale(w_scale, "w_scale", channels)
    dtype = _out_dtype(out_dtype, q_x)
    zy = _zero_point(y_zero_point, "y_zero_point", dtype)
    q_bias = quantize_bias(_bias(bias, channels), sx, sw, channels)
    peak = int(acc.abs().max()) if acc.numel() else 0
    if bool((q_bias.abs().to(torch.int64) + peak > INT32_MAX).any()):
        raise ValueError("the accumulator plus the quantized bias overflows int32; the scales are too small")
    if not isinstance(fixed_point, bool):
        raise TypeError(f"fixed_point must be True or False, got {fixed_point!r:.60}")
    return requantize(acc + q_bias, sx * sw / sy, zy, dtype, fixed_point=fixed_point)


def _check_accumulator(in_features: int) -> None:
    if 2 * in_features * 255 * 128 > INT32_MAX:
        raise ValueError(f"{in_features} inputs per output could overflow the int32 accumulator (at most "
                         f"{INT32_MAX // (2 * 255 * 128)})")


def integer_linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, *,
                   fixed_point: bool = False, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """A quantized Linear layer in integer arithmetic: q_y, the integers of its output on the grid (y_scale, zy).

    q_x: uint8 or int8 activations (..., in) with (x_scale, x_zero_point); q_w: int8 weights (out, in), symmetric,
    with w_scale one number or one per output channel; bias: float (out,) or None. The output has the dtype of
    q_x (or `out_dtype`) and shape (..., out). fixed_point=True requantizes with an int32 multiplier and a shift
    instead of a float64 M. TypeError / ValueError name the argument that is wrong; the inputs are not changed.
    """
    q_x = _integers(q_x, "q_x", tuple(QRANGE), (1, 2, 3, 4))
    q_w = _integers(q_w, "q_w", (torch.int8,), (2,))
    if q_x.shape[-1] != q_w.shape[1]:
        raise ValueError(f"q_x has {q_x.shape[-1]} features but q_w has {q_w.shape[1]} inputs per output")
    _check_accumulator(q_w.shape[1])
    zx = _zero_point(x_zero_point, "x_zero_point", q_x.dtype)
    acc = accumulate(q_x.reshape(-1, q_x.shape[-1]), zx, q_w)
    q_y = _finish(acc, q_x, x_scale, w_scale, bias, y_scale, y_zero_point, out_dtype, fixed_point)
    return q_y.reshape(*q_x.shape[:-1], q_w.shape[0])


def _pair(value, name: str, low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in pair)):
        raise ValueError(f"{name} must be an int >= {low} or a pair of them, got {value!r:.60}")
    return tuple(pair)


def _patches(q_x: torch.Tensor, zx: int, kernel, stride, padding, dilation) -> torch.Tensor:
    """(N, H_out, W_out, C, kh, kw): the input windows, the image padded with zx (the integer of the real 0)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    padded = F.pad(q_x, (pw, pw, ph, ph), value=zx)
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padded.shape[2] < span_h or padded.shape[3] < span_w:
        raise ValueError(f"the kernel ({kh}, {kw}) with dilation ({dh}, {dw}) is larger than the padded input "
                         f"{tuple(padded.shape[2:])}")
    windows = padded.unfold(2, span_h, sh).unfold(3, span_w, sw)[..., ::dh, ::dw]
    return windows.permute(0, 2, 3, 1, 4, 5)


def integer_conv2d(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, *, stride=1, padding=0,
                   dilation=1, groups: int = 1, fixed_point: bool = False,
                   out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """A quantized Conv2d in integer arithmetic: `integer_linear` on every window of the image.

    q_x: (N, C, H, W) uint8 or int8; q_w: int8 (out, C / groups, kh, kw); stride, padding, dilation: an int or a
    pair, as nn.Conv2d takes them (padding fills with x_zero_point, which stands for 0). Returns (N, out, H', W').
    """
    q_x = _integers(q_x, "q_x", tuple(QRANGE), (4,))
    q_w = _integers(q_w, "q_w", (torch.int8,), (4,))
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or q_w.shape[0] % groups:
        raise ValueError(f"groups must be a positive int that divides the {q_w.shape[0]} output channels, "
                         f"got {groups!r:.60}")
    if q_x.shape[1] != q_w.shape[1] * groups:
        raise ValueError(f"q_x has {q_x.shape[1]} channels but q_w expects {q_w.shape[1] * groups} "
                         f"({q_w.shape[1]} per group, {groups} group(s))")
    _check_accumulator(q_w[0].numel())
    zx = _zero_point(x_zero_point, "x_zero_point", q_x.dtype)
    windows = _patches(q_x, zx, tuple(q_w.shape[2:]), _pair(stride, "stride", 1), _pair(padding, "padding", 0),
                       _pair(dilation, "dilation", 1))
    n, h, w = windows.shape[:3]
    per_in, per_out = q_w.shape[1], q_w.shape[0] // groups
    accs = [accumulate(windows[:, :, :, g * per_in:(g + 1) * per_in].reshape(n * h * w, -1), zx,
                       q_w[g * per_out:(g + 1) * per_out].reshape(per_out, -1)) for g in range(groups)]
    q_y = _finish(torch.cat(accs, dim=1), q_x, x_scale, w_scale, bias, y_scale, y_zero_point, out_dtype,
                  fixed_point)
    return q_y.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
