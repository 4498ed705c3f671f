"""Wrong and right answers to chapter 8's exercises."""

import copy

import torch
from torch import nn

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



# ---- 8.5: BatchNorm folding ------------------------------------------------------------------------------------


def _bn_terms(conv, bn):
    mean, var = bn.running_mean, bn.running_var
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(mean)
    return mean, var, gamma, beta, b


def _with(conv, weight, bias):
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(weight)
    folded.bias = nn.Parameter(bias)
    return folded


def fold_without_eps(conv, bn):
    mean, var, gamma, beta, b = _bn_terms(conv, bn)
    s = gamma / torch.sqrt(var)
    return _with(conv, conv.weight.detach() * s.view(-1, 1, 1, 1), (b - mean) * s + beta)


def fold_bias_without_mean(conv, bn):
    mean, var, gamma, beta, b = _bn_terms(conv, bn)
    s = gamma / torch.sqrt(var + bn.eps)
    return _with(conv, conv.weight.detach() * s.view(-1, 1, 1, 1), b * s + beta)


def fold_conv_bias_unscaled(conv, bn):
    mean, var, gamma, beta, b = _bn_terms(conv, bn)
    s = gamma / torch.sqrt(var + bn.eps)
    return _with(conv, conv.weight.detach() * s.view(-1, 1, 1, 1), b - mean * s + beta)


def fold_in_place(conv, bn):
    mean, var, gamma, beta, b = _bn_terms(conv, bn)
    s = gamma / torch.sqrt(var + bn.eps)
    with torch.no_grad():
        conv.weight.mul_(s.view(-1, 1, 1, 1))
    return _with(conv, conv.weight.detach().clone(), (b - mean) * s + beta)


def fold_keeps_missing_bias(conv, bn):
    mean, var, gamma, beta, b = _bn_terms(conv, bn)
    s = gamma / torch.sqrt(var + bn.eps)
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(conv.weight.detach() * s.view(-1, 1, 1, 1))
    if conv.bias is not None:
        folded.bias = nn.Parameter((b - mean) * s + beta)
    return folded


def fold_assumes_affine(conv, bn):
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(s)
    return _with(conv, conv.weight.detach() * s.view(-1, 1, 1, 1), (b - bn.running_mean) * s + bn.bias.detach())


def fold_by_rebuilding(conv, bn):
    """Correct, written differently: the BatchNorm as a per-channel affine map, applied to a fresh Conv2d."""
    std = (bn.running_var + bn.eps).sqrt()
    gamma = torch.ones_like(std) if bn.weight is None else bn.weight.detach()
    beta = torch.zeros_like(std) if bn.bias is None else bn.bias.detach()
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=True)
    with torch.no_grad():
        new.weight.copy_(torch.einsum("o,oihw->oihw", gamma / std, conv.weight))
        before = torch.zeros_like(std) if conv.bias is None else conv.bias.detach()
        new.bias.copy_(beta + gamma * (before - bn.running_mean) / std)
    return new


# ---- 8.6: activation ranges with forward hooks -------------------------------------------------------------


def _ranges(model, batches, types, *, eval_mode=True, restore=True, no_grad=True, remove=True, last_only=False,
            start_at_zero=False, record_input=False):
    ranges, handles = {}, []

    def make_hook(name):
        def hook(module, inputs, output):
            t = (inputs[0] if record_input else output).detach()
            lo, hi = ((0.0, 0.0) if start_at_zero else (float("inf"), float("-inf"))) if (
                last_only or name not in ranges) else ranges[name]
            ranges[name] = (min(lo, float(t.min())), max(hi, float(t.max())))
        return hook

    for name, m in model.named_modules():
        if isinstance(m, types):
            handles.append(m.register_forward_hook(make_hook(name)))
    flags = {m: m.training for m in model.modules()}
    if eval_mode:
        model.eval()
    with torch.set_grad_enabled(not no_grad):
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if last_only:
                ranges.clear()
            model(x)
    if restore:
        for m, training in flags.items():
            m.training = training
    if remove:
        for h in handles:
            h.remove()
    return ranges


def ranges_last_batch_only(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, last_only=True)


def ranges_start_at_zero(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, start_at_zero=True)


def ranges_hooks_left(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, remove=False)


def ranges_in_train_mode(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, eval_mode=False)


def ranges_mode_not_restored(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, restore=False)


def ranges_with_autograd(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, no_grad=False)


def ranges_of_inputs(model, batches, types=(nn.Conv2d, nn.Linear)):
    return _ranges(model, batches, types, record_input=True)


def ranges_children_only(model, batches, types=(nn.Conv2d, nn.Linear)):
    found = _ranges(model, batches, types)
    children = {name for name, _ in model.named_children()}
    return {k: v for k, v in found.items() if k in children}


def ranges_by_concatenation(model, batches, types=(nn.Conv2d, nn.Linear)):
    """Correct, written differently: one global hook keeps every output; min and max of all at the end."""
    names = {m: name for name, m in model.named_modules() if isinstance(m, types)}
    outputs = {}

    def keep(module, inputs, output):
        if module in names:
            outputs.setdefault(names[module], []).append(output.detach().flatten())

    flags = [(m, m.training) for m in model.modules()]
    handle = nn.modules.module.register_module_forward_hook(keep)
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        handle.remove()
        for m, training in flags:
            m.training = training
    return {name: (torch.cat(v).min().item(), torch.cat(v).max().item()) for name, v in outputs.items()}


# ---- 8.7: an integer-only Linear layer -----------------------------------------------------------------------


def _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, *, correct=True, float_bias=False,
            clamp=True, accumulate=torch.int32, rounding=torch.round, zero=True, grid=None):
    acc = q_x.to(accumulate) @ q_w.to(accumulate).T
    if correct:
        acc = acc - x_zero_point * q_w.to(accumulate).sum(dim=1)
    w_scale = torch.as_tensor(w_scale, dtype=torch.float64)
    if bias is not None:
        b = bias.double() / (x_scale * w_scale)
        acc = acc.double() + (b if float_bias else torch.round(b))
    y = rounding(acc.double() * (x_scale * w_scale / y_scale)) + (y_zero_point if zero else 0)
    lo, hi = grid or ((0, 255) if q_x.dtype == torch.uint8 else (-128, 127))
    return (y.clamp(lo, hi) if clamp else y).long().to(q_x.dtype)


def int_no_zero_point_correction(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, correct=False)


def int_bias_not_rounded(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, float_bias=True)


def int_no_clamp(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, clamp=False)


def int_float32_accumulator(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, accumulate=torch.float32)


def int_rounds_halves_up(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point,
                   rounding=lambda v: torch.floor(v + 0.5))


def int_forgets_output_zero_point(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, zero=False)


def int_clamps_to_uint8_always(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    return _linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point, grid=(0, 255))


def int_bias_in_real_units(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    acc = q_x.int() @ q_w.int().T - x_zero_point * q_w.int().sum(dim=1)
    if bias is not None:
        acc = acc + bias.double()
    M = x_scale * torch.as_tensor(w_scale, dtype=torch.float64) / y_scale
    lo, hi = (0, 255) if q_x.dtype == torch.uint8 else (-128, 127)
    return (torch.round(acc.double() * M) + y_zero_point).clamp(lo, hi).to(q_x.dtype)


def int_direct_form_int64(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    """Correct, written differently: (q_x - zx) first, in int64, with einsum; M per channel as a float64 tensor."""
    centred = q_x.long() - x_zero_point
    acc = torch.einsum("ni,oi->no", centred, q_w.long())
    acc_scale = x_scale * torch.as_tensor(w_scale, dtype=torch.float64).expand(q_w.shape[0])
    if bias is not None:
        acc = acc + torch.round(bias.double() / acc_scale).long()
    info = torch.iinfo(q_x.dtype)
    y = torch.round(acc.double() * (acc_scale / y_scale)).long() + y_zero_point
    return torch.clamp(y, info.min, info.max).to(q_x.dtype)


# ---- 8.4: one fine-tuning step of shared centroids -----------------------------------------------------------


def _kept_sums(centroids, index, weight_grad, mask):
    kept = mask.flatten()
    return torch.zeros(len(centroids)).index_add_(0, index.flatten()[kept], weight_grad.flatten()[kept])


def step_with_mean(centroids, index, weight_grad, lr, mask):
    counts = torch.bincount(index.flatten()[mask.flatten()], minlength=len(centroids)).clamp(min=1)
    return centroids - lr * _kept_sums(centroids, index, weight_grad, mask) / counts


def step_counts_pruned(centroids, index, weight_grad, lr, mask):
    grad = torch.zeros(len(centroids)).index_add_(0, index.flatten(), weight_grad.flatten())
    return centroids - lr * grad


def step_without_lr(centroids, index, weight_grad, lr, mask):
    return centroids - _kept_sums(centroids, index, weight_grad, mask)


def step_wrong_sign(centroids, index, weight_grad, lr, mask):
    return centroids + lr * _kept_sums(centroids, index, weight_grad, mask)


def step_in_place(centroids, index, weight_grad, lr, mask):
    return centroids.sub_(lr * _kept_sums(centroids, index, weight_grad, mask))


def step_by_nearest_value(centroids, index, weight_grad, lr, mask):
    values = centroids[index]  # the weights' values, then each weight's cluster found again from its value
    cluster = (values.flatten()[:, None] - centroids[None, :]).abs().argmin(dim=1).reshape(index.shape)
    return centroids - lr * _kept_sums(centroids, cluster, weight_grad, mask)


def step_by_one_hot(centroids, index, weight_grad, lr, mask):
    """Correct, written differently: a one-hot matrix of the kept weights' clusters times their gradients."""
    one_hot = nn.functional.one_hot(index.flatten(), len(centroids)).float() * mask.flatten()[:, None].float()
    grad = weight_grad.flatten().float() @ one_hot
    return (centroids.float() - lr * grad).clone()


def step_by_loop(centroids, index, weight_grad, lr, mask):
    """Correct, written differently: a Python loop over the clusters."""
    new = centroids.clone()
    for c in range(len(centroids)):
        in_cluster = (index == c) & mask
        new[c] = centroids[c] - lr * weight_grad[in_cluster].sum()
    return new


WRONG = {
    "8.1": [params_range_without_zero, params_no_eps_guard, params_eps_added, params_levels_not_steps,
            params_zero_point_truncated, params_zero_point_float],
    "8.2": [fake_no_clamp, fake_signed_clamp, fake_clamp_before_zero_point, fake_truncated, fake_forgets_zero_point,
            fake_top_off_by_one, fake_rounds_halves_up],
    "8.3": [scales_wrong_axis, scales_no_abs, scales_no_eps_guard, scales_asymmetric_steps,
            scales_over_half_the_levels, scales_eps_added, scales_in_place],
    "8.5": [fold_without_eps, fold_bias_without_mean, fold_conv_bias_unscaled, fold_in_place, fold_keeps_missing_bias,
            fold_assumes_affine],
    "8.6": [ranges_last_batch_only, ranges_start_at_zero, ranges_hooks_left, ranges_in_train_mode,
            ranges_mode_not_restored, ranges_with_autograd, ranges_of_inputs, ranges_children_only],
    "8.7": [int_no_zero_point_correction, int_bias_not_rounded, int_no_clamp, int_float32_accumulator,
            int_rounds_halves_up, int_forgets_output_zero_point, int_clamps_to_uint8_always, int_bias_in_real_units],
    "8.4": [step_with_mean, step_counts_pruned, step_without_lr, step_wrong_sign, step_in_place,
            step_by_nearest_value],
}
RIGHT = {"8.1": [params_with_python_numbers], "8.2": [fake_by_real_range], "8.3": [scales_row_by_row],
         "8.5": [fold_by_rebuilding], "8.6": [ranges_by_concatenation], "8.7": [int_direct_form_int64],
         "8.4": [step_by_one_hot, step_by_loop]}
