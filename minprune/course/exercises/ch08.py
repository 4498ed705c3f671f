"""Chapter 8 (quantization): the exercises' designed cases and hints.

8.1 the scale and zero point of asymmetric quantization, 8.2 fake quantization on a given grid (values beyond its
ends are clamped), 8.3 symmetric scales per output channel. 8.4 (a k-means centroid step) is in ch08_kmeans and
8.5-8.7 (BatchNorm folding, activation ranges with hooks, an integer-only Linear layer) in ch08_integer, both
registered at the end of this module.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import torch

from minprune.course.check import difference
from minprune.course.exercises import exercise
from minprune.quantization.uniform import fake_quantize, quant_params

EPS = torch.finfo(torch.float32).eps  # 1.19e-7: the smallest scale; the checks below tell it from 0 (atol=0)


def _same(alternative, got, rtol: float = 1e-6) -> bool:
    """Whether the learner's result is what a known mistake gives."""
    return not isinstance(got, BaseException) and difference(alternative, got, atol=0.0, rtol=rtol) is None


def _first_hint(mistakes: dict, expected, got) -> str | None:
    """The hint of the first mistake whose result the learner's matches (and that is not the right answer)."""
    for hint, make in mistakes.items():
        try:
            value = make()
        except Exception:  # noqa: BLE001 - a mistake that cannot be reproduced on this case says nothing
            continue
        if not _same(value, expected) and _same(value, got):
            return hint
    return None


# ---- 8.1: scale and zero point -------------------------------------------------------------------------------


def _params_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(8)
    return [
        (torch.zeros(5), 8),  # all zero: scale eps (not 0), zero point 0
        (torch.tensor([0.5, 1.0, 3.0]), 8),  # all positive: lo = 0, zero point 0, scale 3/255
        (torch.tensor([-2.0, -0.5, -1.0]), 4),  # all negative: hi = 0, zero point 15 (the top of the grid)
        (torch.tensor([-1.6, 1.4]), 2),  # scale 1: -lo / scale = 1.6 rounds to 2 (truncating gives 1)
        (torch.tensor([0.0, 1e-3, 2e-3, -1e-3]), 8),  # a small range: scale 1.2e-5, far from eps
        (torch.randn(6, 9, generator=g).requires_grad_(), 4),  # a weight matrix that requires grad
        (torch.randn(200, generator=g) * 3 - 2, 3),
    ]


def _params_mistake(case, expected, got):
    x, bits = case
    if isinstance(got, BaseException) or not isinstance(got, (tuple, list)) or len(got) != 2:
        return None
    scale, zero_point = got
    x = x.detach().float()
    lo, hi, qmax = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0), 2**bits - 1
    if isinstance(zero_point, torch.Tensor) and zero_point.is_floating_point():
        return "the zero point is an integer of the grid: round it and return it as an int64 tensor"
    if isinstance(scale, torch.Tensor) and scale.dtype != torch.float32:
        return "return the scale as a float32 tensor (0-d), like mp.quant_params"
    if float(x.abs().max()) == 0.0 and float(scale) != EPS:
        return ("x is all zero, so hi - lo = 0: keep the scale at least torch.finfo(torch.float32).eps (take the "
                "larger of the two, do not add eps), or the zero point divides by 0")

    def raw(lo_, hi_, levels=qmax):
        return torch.clamp((hi_ - lo_) / levels, min=EPS)

    mistakes = {
        "lo = min(x, 0) and hi = max(x, 0): the range must hold 0, even when x is all positive or all negative":
            lambda: raw(x.min(), x.max()),
        f"{bits} bits give 2^{bits} = {qmax + 1} levels but {qmax} steps between the lowest and the highest: "
        f"divide the range by 2^b - 1":
            lambda: raw(lo, hi, qmax + 1),
        "keep the scale at least eps by taking the larger of the two; adding eps changes every scale":
            lambda: (hi - lo) / qmax + EPS,
    }
    found = _first_hint(mistakes, expected[0], scale)
    if found:
        return found
    s = expected[0]
    zero_mistakes = {
        "round the zero point to the nearest integer (converting to int truncates)":
            lambda: torch.clamp(torch.trunc(-lo / s), 0, qmax).to(torch.int64),
        "the zero point is the integer that stands for the real value 0: -lo / scale, which is >= 0":
            lambda: torch.round(lo / s).to(torch.int64),
    }
    return _first_hint(zero_mistakes, expected[1], zero_point)


exercise("8.1", "scale and zero point of asymmetric quantization", quant_params, _params_cases,
         hint="lo = min(x, 0) and hi = max(x, 0): the range holds 0; scale at least eps; zero point rounded",
         diagnoses=(_params_mistake,), atol=0.0, rtol=1e-6)


# ---- 8.2: fake quantization on a given grid ------------------------------------------------------------------


def fake_quantize_on(x: torch.Tensor, scale, zero_point, bits: int = 8) -> torch.Tensor:
    """`mp.fake_quantize` on a given grid (scale, zero_point), as Exercise 8.2's `my_fake_quantize` takes it."""
    return fake_quantize(x, bits, scale=scale, zero_point=zero_point)


def _fake_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(8)
    calibration = torch.randn(100, generator=g)
    scale4, zero4 = quant_params(calibration, 4)
    negative = -torch.rand(50, generator=g) - 0.1
    scale_n, zero_n = quant_params(negative, 3)  # zero point 7: the top of the 3-bit grid
    x = torch.tensor([-1.5, 0.0, 1.5])
    scale_x, zero_x = quant_params(x, 2)  # its own grid -2, -1, 0, 1: 1.5 rounds one step past the top
    return [
        (torch.randn(60, generator=g) * 3, scale4, zero4, 4),  # x beyond the calibrated range, on both sides
        (torch.randn(40, generator=g), scale_n, zero_n, 3),  # positive values clamp to 0, the top of the grid
        (x, scale_x, zero_x, 2),
        (torch.randn(5, 7, generator=g).requires_grad_(), scale4, zero4, 8),  # a weight matrix, requires grad
    ]


def _fake_mistake(case, expected, got):
    x, scale, zero_point, bits = case
    if isinstance(got, BaseException) or not isinstance(got, torch.Tensor):
        return None
    x, qmax = x.detach(), 2**bits - 1
    r = torch.round(x / scale)
    mistakes = {
        "clamp the integers to the grid [0, 2^b - 1]: values beyond the grid's ends (and a rounding that steps past "
        "the top) must land on its first or last point": lambda: scale * (r + zero_point - zero_point),
        "the integers of asymmetric quantization are 0 ... 2^b - 1, not the signed range -2^(b-1) ... 2^(b-1) - 1":
            lambda: scale * (torch.clamp(r + zero_point, -(qmax + 1) // 2, qmax // 2) - zero_point),
        "the grid has 2^b points, 0 ... 2^b - 1: clamp at 2^b - 1": lambda: scale * (
            torch.clamp(r + zero_point, 0, qmax + 1) - zero_point),
        "clamp after adding the zero point: the integers q = round(x / scale) + zero_point lie in [0, 2^b - 1]":
            lambda: scale * torch.clamp(r, 0, qmax),
        "torch.round rounds halves to the even integer, as PyTorch's quantized kernels do; floor(v + 0.5) rounds "
        "them up": lambda: scale * (torch.clamp(torch.floor(x / scale + 0.5) + zero_point, 0, qmax) - zero_point),
        "round to the nearest integer with torch.round (converting to int truncates toward 0)":
            lambda: scale * (torch.clamp(torch.trunc(x / scale) + zero_point, 0, qmax) - zero_point),
        "dequantize subtracts the zero point again: the real value is scale * (q - zero_point)":
            lambda: scale * torch.clamp(r + zero_point, 0, qmax),
    }
    return _first_hint(mistakes, expected, got)


exercise("8.2", "fake quantization on a given grid", fake_quantize_on, _fake_cases,
         hint="round x / scale, add the zero point, clamp to [0, 2^b - 1], then map back",
         diagnoses=(_fake_mistake,), atol=1e-6, rtol=1e-5)


# ---- 8.3: per-channel symmetric scales -----------------------------------------------------------------------


def channel_scales(W: torch.Tensor, bits: int) -> torch.Tensor:
    """One symmetric scale per row (output channel) of W: `mp.quant_params(W, bits, symmetric=True, axis=0)[0]`."""
    return quant_params(W, bits, symmetric=True, axis=0)[0]


def _scale_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(8)
    W = torch.randn(3, 5, generator=g)
    W[1] = torch.tensor([0.2, -3.0, 1.0, 0.5, -0.1])  # the largest magnitude is negative
    W[2] = 0.0  # a pruned output channel: scale eps, not 0
    square = torch.randn(4, 4, generator=g)
    square[:, 0] *= 5  # the columns' maxima differ from the rows'
    layer = torch.randn(6, 10, generator=g).requires_grad_()  # a layer's weight, as the model holds it
    return [(W, 4), (square, 8), (layer, 3), (torch.tensor([[1e-3, -2e-3], [5e-4, 0.0]]), 8)]


def _scale_mistake(case, expected, got):
    W, bits = case
    if isinstance(got, BaseException) or not isinstance(got, torch.Tensor):
        return None
    W, qmax = W.detach(), 2 ** (bits - 1) - 1

    def scales(values, levels=qmax):
        return torch.clamp(values / levels, min=EPS)

    if got.shape != expected.shape:
        if got.numel() == W.shape[1]:
            return "one scale per row (output channel): take the maximum along dim 1, over each row's inputs"
        if got.numel() == 1:
            return "one scale per output channel, not one for the whole tensor"
        return None
    mistakes = {
        "one scale per row (output channel): take the maximum along dim 1, over each row's inputs":
            lambda: scales(W.abs().amax(dim=0)),
        "the largest *magnitude* of each row: a weight of -3 needs as much range as one of +3":
            lambda: scales(W.amax(dim=1)),
        "an all-zero (pruned) row has max |W| = 0: keep its scale at least torch.finfo(torch.float32).eps":
            lambda: W.abs().amax(dim=1) / qmax,
        "keep the scale at least eps by taking the larger of the two; adding eps changes every scale":
            lambda: W.abs().amax(dim=1) / qmax + EPS,
        f"the symmetric grid is -(2^(b-1) - 1) ... 2^(b-1) - 1, so for {bits} bits divide by {qmax}, not "
        f"{2**bits - 1} (that is the asymmetric grid's number of steps)":
            lambda: scales(W.abs().amax(dim=1), 2**bits - 1),
        f"the symmetric grid stops at 2^(b-1) - 1 = {qmax} (it leaves out -2^(b-1) so that it is symmetric): "
        f"divide by {qmax}, not {qmax + 1}": lambda: scales(W.abs().amax(dim=1), qmax + 1),
        "one scale per output channel, not one for the whole tensor":
            lambda: scales(W.abs().max().expand(W.shape[0])),
    }
    return _first_hint(mistakes, expected, got)


exercise("8.3", "symmetric scales per output channel", channel_scales, _scale_cases,
         hint="the largest |weight| of each row over 2^(b-1) - 1, at least eps", diagnoses=(_scale_mistake,),
         atol=0.0, rtol=1e-6)


from minprune.course.exercises import ch08_integer, ch08_kmeans  # noqa: E402, F401 - register Exercises 8.4-8.7
