"""Chapter 8, "Under the hood of int8": the designed cases and hints of Exercises 8.5-8.7 (registered when ch08
is imported; a module of its own to keep each file one idea).

8.5 BatchNorm folding (checked on the folded weight, bias and output), 8.6 activation ranges with forward hooks
(checked also for hooks left behind and autograd left on), 8.7 an integer-only Linear layer.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from minprune.course.check import CheckFailed, difference
from minprune.course.exercises import exercise
from minprune.quantization.folding import fold_batchnorm
from minprune.quantization.integer import QRANGE, integer_linear
from minprune.quantization.ranges import activation_ranges


def _match(mistakes: dict, expected, got, atol: float = 0.0, rtol: float = 0.0) -> str | None:
    """The hint of the first mistake whose result the learner's matches (and that is not the right answer)."""
    for hint, make in mistakes.items():
        try:
            value = make()
        except Exception:  # noqa: BLE001 - a mistake that cannot be reproduced on this case says nothing
            continue
        if difference(value, expected, atol=atol, rtol=rtol) and not difference(value, got, atol=atol, rtol=rtol):
            return hint
    return None


def _name(fn) -> str:
    return getattr(fn, "__name__", "your function")


# ---- 8.5: BatchNorm folding ----------------------------------------------------------------------------------


def _fold_call(fn, conv, bn, x):
    """What the check compares: the folded conv's weight and bias, and its output on x."""
    folded = fn(conv, bn)
    if not isinstance(folded, nn.Conv2d):
        raise CheckFailed(f"✗ {_name(fn)} returned {type(folded).__name__}: return a new nn.Conv2d")
    with torch.no_grad():
        bias = None if folded.bias is None else folded.bias.detach()
        return {"weight": folded.weight.detach(), "bias": bias, "output": folded(x)}


def _bn(channels: int, g: torch.Generator, *, affine: bool = True, eps: float = 1e-5, var=(0.5, 2.0)):
    bn = nn.BatchNorm2d(channels, eps=eps, affine=affine)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(var[0] + (var[1] - var[0]) * torch.rand(channels, generator=g))
        if affine:
            bn.weight.copy_(torch.randn(channels, generator=g))
            bn.bias.copy_(torch.randn(channels, generator=g))
    return bn.eval()


def _fold_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(84)
    torch.manual_seed(84)  # the convolutions' initial weights
    return [
        (nn.Conv2d(3, 4, 3, stride=2, padding=1), _bn(4, g, eps=0.1), torch.randn(2, 3, 7, 7, generator=g)),
        (nn.Conv2d(4, 4, (3, 5), padding=(1, 2), bias=False), _bn(4, g, var=(1e-3, 1e-2)),  # no bias; eps matters
         torch.randn(2, 4, 6, 9, generator=g)),
        (nn.Conv2d(4, 6, 3, groups=2, dilation=2, padding=2), _bn(6, g, affine=False, eps=1e-2),
         torch.randn(1, 4, 8, 8, generator=g)),
    ]


def _fold_mistake(case, expected, got):
    conv, bn, _ = case
    if isinstance(got, BaseException):
        if bn.weight is None:
            return "this BatchNorm has affine=False: bn.weight and bn.bias are None, so use gamma = 1 and beta = 0"
        if conv.bias is None:
            return "this convolution has no bias (conv.bias is None): take b = 0, and give the folded conv a bias"
        return None
    if got["bias"] is None:
        return "the folded convolution needs a bias, (b - running_mean) * s + beta, even when the conv had none"
    W, mean, var, eps = conv.weight.detach(), bn.running_mean, bn.running_var, bn.eps
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + eps)
    weights = {
        "divide by sqrt(running_var + eps): eps is in the square root, and it matters for small variances":
            lambda: W * (gamma / torch.sqrt(var)).view(-1, 1, 1, 1),
        "divide by the standard deviation sqrt(running_var + eps), not by the variance":
            lambda: W * (gamma / (var + eps)).view(-1, 1, 1, 1),
        "scale each output channel's filter (dim 0 of the weight), not the input channels (dim 1)":
            lambda: W * s.view(1, -1, 1, 1),
        "multiply by gamma (bn.weight) too: s = gamma / sqrt(running_var + eps)":
            lambda: W / torch.sqrt(var + eps).view(-1, 1, 1, 1),
    }
    biases = {
        "subtract running_mean: the folded bias is (b - running_mean) * s + beta": lambda: b * s + beta,
        "the conv's own bias goes through the BatchNorm too: scale (b - running_mean) by s, not only the mean":
            lambda: b - mean * s + beta,
        "add beta (bn.bias): the folded bias is (b - running_mean) * s + beta": lambda: (b - mean) * s,
        "keep the convolution's own bias b: the folded bias is (b - running_mean) * s + beta":
            lambda: -mean * s + beta,
    }
    return (_match(weights, expected["weight"], got["weight"], 1e-5, 1e-4)
            or _match(biases, expected["bias"], got["bias"], 1e-5, 1e-4))


exercise("8.5", "BatchNorm folding", fold_batchnorm, _fold_cases, call=_fold_call,
         hint="s = gamma / sqrt(running_var + eps) per output channel: weight W * s, bias (b - running_mean) * s "
              "+ beta",
         diagnoses=(_fold_mistake,), atol=1e-5, rtol=1e-4)


# ---- 8.6: activation ranges with forward hooks ---------------------------------------------------------------


class GradProbe(nn.Module):
    """Passes its input through and notes whether autograd was on (the check wants calibration under no_grad)."""

    def __init__(self):
        super().__init__()
        self.grad_enabled = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return x


def _hooks(model: nn.Module) -> int:
    global_hooks = nn.modules.module._global_forward_hooks
    return len(global_hooks) + sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _ranges_call(fn, model, batches, *types):
    """fn(model, batches[, types]), failing a function that leaves hooks behind or runs with autograd on."""
    probes = [m for m in model.modules() if isinstance(m, GradProbe)]
    for probe in probes:
        probe.grad_enabled.clear()
    before = _hooks(model)
    got = fn(model, batches, *types)
    if _hooks(model) != before:
        raise CheckFailed(f"✗ {_name(fn)} left {_hooks(model) - before} forward hook(s) registered on the model: "
                          "keep each handle register_forward_hook returns and call handle.remove() at the end "
                          "(in a finally: block, so that an error removes them too)")
    if any(any(p.grad_enabled) for p in probes):
        raise CheckFailed(f"✗ {_name(fn)} ran the model with autograd on: run the batches under torch.no_grad(), "
                          "calibration needs no gradients (and autograd would keep every activation)")
    return got


class _Net(nn.Module):
    """A small CNN with nested names (features.0, ...), BatchNorm and Dropout, and a probe on its output."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(3 * 4 * 4, 5)
        self.probe = GradProbe()

    def forward(self, x):
        return self.probe(self.head(self.features(x).flatten(1)))


def _ranges_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(85)
    torch.manual_seed(85)
    net = _Net()
    with torch.no_grad():
        net.features[1].running_mean.copy_(torch.tensor([0.5, -0.3, 0.1]))
        net.features[1].running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    batches = [torch.randn(2, 1, 6, 6, generator=g) * s for s in (3.0, 1.0, 0.5)]  # the widest range comes first
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3), GradProbe()).eval()
    with torch.no_grad():
        mlp[3].bias.add_(10.0)  # its outputs are all positive: a range started at 0 is wrong
    pairs = DataLoader(TensorDataset(torch.randn(7, 8, generator=g) - 2, torch.zeros(7, dtype=torch.long)), 3)
    eval_net = _Net().eval()
    return [
        (net.train(), batches),  # in train mode: calibrate in eval mode, and leave it in train mode
        (mlp, pairs),  # (x, y) batches from a DataLoader with an uneven last batch; all-positive outputs
        (eval_net, batches[1:], (nn.Linear,)),  # only the types asked for
        (eval_net, batches, (nn.Conv2d, nn.ReLU)),
    ]


def _ranges_mistake(case, expected, got):
    model, batches, *types = case
    if isinstance(got, BaseException) or not isinstance(got, dict):
        return None
    if set(got) < set(expected):
        return "use model.named_modules(): it visits nested modules too, whose names look like 'features.0'"
    if set(got) > set(expected):
        return "hook only the modules of the given types: isinstance(module, types)"
    mistakes = {
        "the range covers all the batches: widen min and max with each batch instead of overwriting them":
            lambda: activation_ranges(model, list(batches)[-1:], *types),
        "record each module's output (the hook's third argument), not its input": lambda: _input_ranges(
            model, batches, *types),
    }
    if found := _match(mistakes, expected, got, 1e-6, 1e-5):
        return found
    if any(got[k][0] == 0.0 < expected[k][0] or got[k][1] == 0.0 > expected[k][1] for k in expected):
        return "start from the first output's min and max (or from +inf and -inf), not from 0"
    return None


def _input_ranges(model, batches, types=(nn.Conv2d, nn.Linear)):
    """What a hook that records its module's input (inputs[0]) instead of its output returns."""
    seen = {}
    handles = [m.register_forward_hook(lambda m, inputs, out: seen.setdefault(m, []).append(inputs[0].detach()))
               for m in model.modules() if isinstance(m, types)]
    try:
        activation_ranges(model, batches, types)  # runs the batches as the reference does
    finally:
        for h in handles:
            h.remove()
    return {name: (min(float(t.min()) for t in seen[m]), max(float(t.max()) for t in seen[m]))
            for name, m in model.named_modules() if m in seen}


exercise("8.6", "activation ranges with forward hooks", activation_ranges, _ranges_cases, call=_ranges_call,
         hint="hook every module of the types, run all batches in eval mode under no_grad, remove the hooks, "
              "restore the train/eval flags", diagnoses=(_ranges_mistake,), atol=1e-6, rtol=1e-5)


# ---- 8.7: an integer-only Linear layer -----------------------------------------------------------------------


def _int_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(86)

    def u8(*shape, low=0, high=256):
        return torch.randint(low, high, shape, generator=g, dtype=torch.uint8)

    def s8(*shape, low=-127, high=128):
        return torch.randint(low, high, shape, generator=g, dtype=torch.int8)

    half_x = u8(5, 6, low=120, high=136)  # M = 0.5: odd accumulators land exactly on halves
    half_bias = torch.tensor([0.3, -0.2, 0.0, 0.4]) * 0.125  # a fraction of a step: it rounds away to 0
    big = torch.full((3, 4096), 128, dtype=torch.uint8)  # sum(q_x q_w) > 2^24 and odd: float32 cannot hold it
    big[:, :3] = torch.tensor([[129, 128, 128], [127, 128, 128], [129, 127, 129]], dtype=torch.uint8)
    big_w = torch.where(torch.rand(4, 4096, generator=g) < 0.5, 63, 65).to(torch.int8)
    channel_scales = torch.tensor([0.002, 0.01, 0.0005, 0.004], dtype=torch.float64)
    return [
        (u8(4, 16), 0.05, 0, s8(3, 16), 0.01, torch.randn(3, generator=g), 0.04, 0),  # clamps at 0 and at 255
        (u8(4, 16), 0.05, 255, s8(3, 16), 0.01, torch.randn(3, generator=g), 0.04, 255),  # zero points at the top
        (u8(6, 12), 0.02, 37, s8(4, 12), channel_scales, torch.randn(4, generator=g), 0.03, 128),  # per channel
        (half_x, 0.5, 128, s8(4, 6, low=-3, high=4), 0.25, half_bias, 0.25, 128),  # halves round to even
        (u8(3, 8, low=0, high=40), 2**-7, 5, s8(2, 8, low=-20, high=20), 2**-9, torch.tensor([0.62, -0.55]),
         2**-7, 128),  # the bias needs int32: 0.62 / 2^-16 is 40632, beyond int16
        (big, 0.5, 128, big_w, 0.25, None, 0.125, 128),  # M = 1, no bias: int32, not float32, accumulation
        (torch.randint(-128, 128, (4, 10), generator=g, dtype=torch.int8), 0.1, -128, s8(3, 10), 0.02,
         torch.randn(3, generator=g), 0.3, 5),  # int8 activations: the output grid is [-128, 127]
    ]


def _int_mistake(case, expected, got):
    q_x, sx, zx, q_w, sw, bias, sy, zy = case
    if isinstance(got, BaseException):
        return "bias may be None (a layer without bias): add nothing then" if bias is None else None
    x, w = q_x.long(), q_w.long()
    sw = torch.as_tensor(sw, dtype=torch.float64)
    M, lo, hi = sx * sw / sy, *QRANGE[q_x.dtype]
    acc = x @ w.T - zx * w.sum(dim=1)
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.double()
    bq = torch.round(b / (sx * sw))

    def out(total, rounding=torch.round, zero=zy, low=lo, high=hi, clamp=True):
        y = rounding(total.double() * M) + zero
        return (y.clamp(low, high) if clamp else y).long().to(q_x.dtype)

    float32 = q_x.float() @ q_w.float().T - zx * q_w.float().sum(dim=1)
    mistakes = {
        "subtract the zero-point correction zx * sum(q_w) (per output channel) from sum(q_x * q_w)":
            lambda: out(x @ w.T + bq),
        "accumulate in int32 (q_x.int() @ q_w.int().T): float32 holds integers exactly only up to 2^24, and this "
        "sum is larger": lambda: out(float32.double() + bq),
        "quantize the bias to int32 first, round(bias / (x_scale * w_scale)), and add that integer": lambda: out(
            acc + b / (sx * sw)),
        "the bias is in real units: divide it by the accumulator's scale x_scale * w_scale": lambda: out(acc + b),
        "the bias's scale is x_scale * w_scale (the accumulator's), not y_scale":
            lambda: out(acc + torch.round(b / sy)),
        "add y_zero_point after rounding: the output's integer for the real 0": lambda: out(acc + bq, zero=0),
        "clamp to the output grid before converting: out-of-range values wrap around in uint8 / int8":
            lambda: out(acc + bq, clamp=False),
        "clamp to the range of the output dtype: int8 is [-128, 127], uint8 is [0, 255]":
            lambda: out(acc + bq, low=0, high=255),
        "torch.round rounds halves to the even integer, as PyTorch's kernels do; floor(v + 0.5) rounds them up":
            lambda: out(acc + bq, rounding=lambda v: torch.floor(v + 0.5)),
        "round to the nearest integer with torch.round (converting to int truncates toward 0)":
            lambda: out(acc + bq, rounding=torch.trunc),
    }
    return _match(mistakes, expected, got)


exercise("8.7", "an integer-only Linear layer", integer_linear, _int_cases,
         hint="acc = q_x @ q_w.T - zx * sum(q_w) in int32, plus round(bias / (x_scale * w_scale)); then "
              "round(M * acc) + zy, clamped to the output dtype's range", diagnoses=(_int_mistake,), atol=0.0, rtol=0.0)
