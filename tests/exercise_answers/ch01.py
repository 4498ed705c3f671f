"""Wrong and right answers to chapter 1's exercises."""

import torch
from torch import nn

# ---- 1.1 ----


def count_layer_weights_and_biases(model):
    total = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            total += m.weight.numel()
            if m.bias is not None:
                total += m.bias.numel()
    return total


def count_state_dict(model):
    return sum(v.numel() for v in model.state_dict().values())


def count_nonzeros(model):
    return sum(int((p != 0).sum()) for p in model.parameters())


def count_every_module(model):
    total = 0
    for m in model.modules():
        for p in m.parameters():
            total += p.numel()
    return total


def count_tensors(model):
    return len(list(model.parameters()))


def count_with_duplicates(model):
    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))


def count_module_by_module(model):
    seen, total = set(), 0
    for m in model.modules():
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


# ---- 1.2 ----


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def conv_macs_with_bias(conv, H, W):
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    outputs = conv.out_channels * _out(H, kh, sh, ph) * _out(W, kw, sw, pw)
    return outputs * conv.in_channels * kh * kw + (outputs if conv.bias is not None else 0)


def conv_macs_square_kernel(conv, H, W):
    k, (sh, sw), (ph, pw) = conv.kernel_size[0], conv.stride, conv.padding
    return conv.out_channels * _out(H, k, sh, ph) * _out(W, k, sw, pw) * conv.in_channels * k * k


def conv_macs_true_division(conv, H, W):
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    h_out = (H + 2 * ph - kh) / sh + 1
    w_out = (W + 2 * pw - kw) / sw + 1
    return conv.out_channels * h_out * w_out * conv.in_channels * kh * kw


def conv_macs_no_padding(conv, H, W):
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    return conv.out_channels * _out(H, kh, sh, 0) * _out(W, kw, sw, 0) * conv.in_channels * kh * kw


def conv_macs_one_stride(conv, H, W):
    (kh, kw), s, (ph, pw) = conv.kernel_size, conv.stride[0], conv.padding
    return conv.out_channels * _out(H, kh, s, ph) * _out(W, kw, s, pw) * conv.in_channels * kh * kw


def conv_macs_without_c_in(conv, H, W):
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    return conv.out_channels * _out(H, kh, sh, ph) * _out(W, kw, sw, pw) * kh * kw


def conv_macs_by_running_it(conv, H, W):
    with torch.no_grad():
        out = conv(torch.zeros(1, conv.in_channels, H, W))  # (1, C_out, H_out, W_out)
    return out.numel() * conv.weight[0].numel()  # each output: one filter, (C_in, kh, kw)


WRONG = {
    "1.1": [count_layer_weights_and_biases, count_state_dict, count_nonzeros, count_every_module, count_tensors,
            count_with_duplicates],
    "1.2": [conv_macs_with_bias, conv_macs_square_kernel, conv_macs_true_division, conv_macs_no_padding,
            conv_macs_one_stride, conv_macs_without_c_in],
}
RIGHT = {"1.1": [count_module_by_module], "1.2": [conv_macs_by_running_it]}
