"""Chapter 1 (baselines and measurement): the exercises' designed cases and hints.

1.1 counts the parameters of a model, 1.2 the multiply-accumulates of one Conv2d.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.measure import count_macs, count_params

# ---- 1.1: count the parameters -------------------------------------------------------------------------------


def _bn_model() -> nn.Module:
    """A conv without bias, BatchNorm (2 parameter tensors and 3 buffers), a Linear with and one without bias."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, (3, 2), bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 2 * 3, 5), nn.ReLU(), nn.Linear(5, 2, bias=False))


def _tied_model() -> nn.Module:
    """Two Linear layers that share one weight tensor (stored once, so counted once)."""
    torch.manual_seed(2)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    return nn.Sequential(first, nn.ReLU(), second)


def _model_with_zeros() -> nn.Module:
    """A layer with exact zeros among its weights: a zero is still a stored parameter."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[:, :4] = 0.0
    return model


def _count_cases() -> list[tuple]:
    return [(_bn_model(),), (_tied_model(),), (_model_with_zeros(),)]


def _wrong_counts(model: nn.Module) -> dict[str, int]:
    """The counts that typical mistakes give on `model`, by mistake."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return {
        "weights only": sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")),
        "layer weights only": sum(m.weight.numel() for m in layers),
        "state_dict": sum(t.numel() for t in model.state_dict().values()),
        "nonzeros": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
        "tensors": len(list(model.parameters())),
        "every module": sum(p.numel() for m in model.modules() for p in m.parameters()),
        "per layer": sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in layers),
        "duplicates": sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)),
    }


_SHARED = ("a weight shared by two layers is stored once: count each parameter tensor once (model.parameters() "
           "lists it once)")
_COUNT_HINTS = {
    "weights only": "the biases and the BatchNorm parameters are parameters too, not only the weights",
    "layer weights only": "the biases and the BatchNorm parameters are parameters too, not only the weights",
    "state_dict": "the state_dict holds buffers too (BatchNorm's running statistics are not parameters); count "
                  "model.parameters()",
    "nonzeros": "a weight that is exactly zero is still a stored parameter: count every entry, not the nonzero ones",
    "tensors": "that is the number of parameter tensors; count their entries (numel)",
    "every module": "model.modules() includes the model itself and every container, and m.parameters() includes "
                    "the submodules' parameters: each parameter is counted several times",
    "duplicates": _SHARED,
}


def _count_mistake(case, expected, got):
    if isinstance(got, BaseException):
        return None
    model = case[0]
    for mistake, wrong in _wrong_counts(model).items():
        if wrong != expected and int(got) == wrong:
            if mistake == "per layer":
                has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
                return ("BatchNorm layers have parameters too (a weight and a bias per channel): count every "
                        "parameter of the model, not only those of Linear and Conv2d layers") if has_bn else _SHARED
            if mistake == "state_dict" and not list(model.buffers()):
                return _SHARED  # the state_dict lists a shared weight under each of its names
            return _COUNT_HINTS[mistake]
    return None


exercise("1.1", "the number of parameters of a model", count_params, _count_cases,
         hint="add up p.numel() of every parameter tensor of the model, each stored tensor once",
         diagnoses=(_count_mistake,))


# ---- 1.2: the MACs of a convolution --------------------------------------------------------------------------


def conv_macs(conv: nn.Conv2d, H: int, W: int) -> int:
    """The library's count: `count_macs` of `conv` alone on one (in_channels, H, W) input (bias not counted).

    The reference of exercise 1.2. See notebooks/01_train_baseline.ipynb.
    """
    return count_macs(conv, (conv.in_channels, H, W))


def _conv_cases() -> list[tuple]:
    torch.manual_seed(12)
    return [
        (nn.Conv2d(2, 3, (3, 5)), 9, 12),                                   # a non-square kernel, a non-square input
        (nn.Conv2d(3, 4, (5, 3), stride=(2, 1), padding=(1, 2)), 11, 10),  # stride and padding differ per axis
        (nn.Conv2d(2, 5, 3, stride=2), 10, 10),                            # (10 - 3) / 2 is not a whole number
        (nn.Conv2d(4, 2, 1), 7, 5),                                        # a 1x1 convolution
        (nn.Conv2d(3, 6, 3, stride=3, padding=1, bias=False), 13, 17),
    ]


def _conv_formula(conv: nn.Conv2d, H: int, W: int, mistake: str):
    """The MAC count with one typical mistake in it."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    c_in, c_out = conv.in_channels, conv.out_channels
    if mistake == "square kernel":
        kw = kh
    if mistake == "one stride":
        sw = sh
    if mistake == "one padding":
        pw = ph
    if mistake == "no padding":
        ph = pw = 0
    if mistake == "one padding side":
        ph, pw = ph / 2, pw / 2
    size = {"true division": lambda n, p, k, s: (n + 2 * p - k) / s + 1,
            "no +1": lambda n, p, k, s: (n + 2 * p - k) // s,
            "input over stride": lambda n, p, k, s: n // s}.get(mistake, lambda n, p, k, s: (n + 2 * p - k) // s + 1)
    h_out, w_out = size(H, ph, kh, sh), size(W, pw, kw, sw)
    if mistake == "H for both":
        w_out = h_out
    per_output = {"no C_in": kh * kw, "no kernel": c_in}.get(mistake, c_in * kh * kw)
    macs = c_out * h_out * w_out * per_output
    return macs + c_out * h_out * w_out if mistake == "bias" else macs


_CONV_HINTS = {
    "bias": "a bias is an addition, not a multiply-accumulate: do not count it",
    "no C_in": "every output value sums over all input channels: count C_in * kh * kw multiply-accumulates for it",
    "no kernel": "every output value sums over the whole kh x kw window of every input channel",
    "square kernel": "the kernel need not be square: conv.kernel_size is (kh, kw); use kh for the height, kw for "
                     "the width",
    "one stride": "conv.stride is (sh, sw): the height and the width may have different strides",
    "H for both": "the output width comes from W (and kw, the width's stride and padding), the height from H",
    "one padding": "conv.padding is (ph, pw): the height and the width may be padded differently",
    "no padding": "padding adds p rows (and columns) on both sides: H + 2p, not H",
    "one padding side": "padding adds p rows on both sides: H + 2p",
    "true division": "the output size is a whole number: floor division // (a filter that does not fit is not applied)",
    "no +1": "the output size formula ends with + 1: the first position of the filter counts too",
    "input over stride": "the output size depends on the kernel size and the padding too: (H + 2p - kh) // s + 1",
}


def _conv_mistake(case, expected, got):
    if isinstance(got, BaseException) or not isinstance(got, (int, float, torch.Tensor)):
        return None
    got = float(got)
    for mistake, hint in _CONV_HINTS.items():
        wrong = _conv_formula(*case, mistake)
        if wrong != expected and abs(got - wrong) < 1e-6:
            return hint
    return None


exercise("1.2", "multiply-accumulates of one Conv2d (groups=1)", conv_macs, _conv_cases,
         hint="output positions H_out * W_out, times C_out filters, times C_in * kh * kw MACs each",
         diagnoses=(_conv_mistake,), dtype_strict=False)
