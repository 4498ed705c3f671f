"""Wrong and right answers to chapter 8's exercises."""

import torch

EPS = torch.finfo(torch.float32).eps

# ---- 8.1: scale and zero point -------------------------------------------------------------------------------


def params_range_without_zero(x, bits):
    qmax = 2**bits - 1
    lo, hi = x.detach().min(), x.detach().max()
    scale = torch.clamp((hi - lo) / qmax, min=EPS)
    return scale, torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int64)


def params_no_eps_guard(x, bits):
    qmax = 2**bits - 1
    lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
    scale = (hi - lo) / qmax
    return scale, torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int64)


def params_eps_added(x, bits):
    qmax = 2**bits - 1
    lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
    scale = (hi - lo) / qmax + EPS
    return scale, torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int64)


def params_levels_not_steps(x, bits):
    lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / 2**bits, min=EPS)
    return scale, torch.clamp(torch.round(-lo / scale), 0, 2**bits - 1).to(torch.int64)


def params_zero_point_truncated(x, bits):
    qmax = 2**bits - 1
    lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=EPS)
    return scale, torch.clamp(-lo / scale, 0, qmax).to(torch.int64)


def params_zero_point_float(x, bits):
    qmax = 2**bits - 1
    lo, hi = torch.clamp(x.detach().min(), max=0.0), torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=EPS)
    return scale, torch.clamp(torch.round(-lo / scale), 0, qmax)


def params_with_python_numbers(x, bits):
    """Correct, written differently: plain Python floats for the range, tensors only at the end."""
    values = x.detach().flatten().tolist()
    lo, hi = min(min(values), 0.0), max(max(values), 0.0)
    scale = torch.tensor((hi - lo) / (2**bits - 1), dtype=torch.float32).clamp_min(EPS)
    zero_point = torch.round(-torch.tensor(lo, dtype=torch.float32) / scale).clamp(0, 2**bits - 1)
    return scale, zero_point.long()


# ---- 8.2: fake quantization on a given grid ------------------------------------------------------------------


def fake_no_clamp(x, scale, zero_point, bits=8):
    q = torch.round(x / scale) + zero_point
    return scale * (q - zero_point)


def fake_signed_clamp(x, scale, zero_point, bits=8):
    q = torch.clamp(torch.round(x / scale) + zero_point, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return scale * (q - zero_point)


def fake_clamp_before_zero_point(x, scale, zero_point, bits=8):
    q = torch.clamp(torch.round(x / scale), 0, 2**bits - 1) + zero_point
    return scale * (q - zero_point)


def fake_truncated(x, scale, zero_point, bits=8):
    q = torch.clamp((x / scale).int() + zero_point, 0, 2**bits - 1)
    return scale * (q - zero_point)


def fake_forgets_zero_point(x, scale, zero_point, bits=8):
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1)
    return scale * q


def fake_top_off_by_one(x, scale, zero_point, bits=8):
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits)
    return scale * (q - zero_point)


def fake_rounds_halves_up(x, scale, zero_point, bits=8):
    q = torch.clamp(torch.floor(x / scale + 0.5) + zero_point, 0, 2**bits - 1)
    return scale * (q - zero_point)


def fake_by_real_range(x, scale, zero_point, bits=8):
    """Correct, written differently: clamp in real units to the grid's ends, then round to the nearest point."""
    lowest = (0 - zero_point) * scale
    highest = (2**bits - 1 - zero_point) * scale
    steps = torch.round(x.detach() / scale)
    steps = torch.minimum(torch.maximum(steps, -zero_point.float()), 2**bits - 1 - zero_point.float())
    out = steps * scale
    return torch.minimum(torch.maximum(out, lowest), highest)


# ---- 8.3: per-channel symmetric scales -----------------------------------------------------------------------


def scales_wrong_axis(W, bits):
    return torch.clamp(W.abs().amax(dim=0) / (2 ** (bits - 1) - 1), min=EPS)


def scales_no_abs(W, bits):
    return torch.clamp(W.amax(dim=1) / (2 ** (bits - 1) - 1), min=EPS)


def scales_no_eps_guard(W, bits):
    return W.abs().amax(dim=1) / (2 ** (bits - 1) - 1)


def scales_asymmetric_steps(W, bits):
    return torch.clamp(W.abs().amax(dim=1) / (2**bits - 1), min=EPS)


def scales_over_half_the_levels(W, bits):
    return torch.clamp(W.abs().amax(dim=1) / 2 ** (bits - 1), min=EPS)


def scales_eps_added(W, bits):
    return W.abs().amax(dim=1) / (2 ** (bits - 1) - 1) + EPS


def scales_in_place(W, bits):
    W = W.detach()
    return torch.clamp(W.abs_().amax(dim=1) / (2 ** (bits - 1) - 1), min=EPS)


def scales_row_by_row(W, bits):
    """Correct, written differently: a loop over the output channels."""
    qmax = 2 ** (bits - 1) - 1
    out = torch.empty(W.shape[0])
    for i, row in enumerate(W.detach()):
        out[i] = max(float(row.abs().max()) / qmax, EPS)
    return out


WRONG = {
    "8.1": [params_range_without_zero, params_no_eps_guard, params_eps_added, params_levels_not_steps,
            params_zero_point_truncated, params_zero_point_float],
    "8.2": [fake_no_clamp, fake_signed_clamp, fake_clamp_before_zero_point, fake_truncated, fake_forgets_zero_point,
            fake_top_off_by_one, fake_rounds_halves_up],
    "8.3": [scales_wrong_axis, scales_no_abs, scales_no_eps_guard, scales_asymmetric_steps,
            scales_over_half_the_levels, scales_eps_added, scales_in_place],
}
RIGHT = {"8.1": [params_with_python_numbers], "8.2": [fake_by_real_range], "8.3": [scales_row_by_row]}
