"""Wrong and right answers to chapter 6's exercises."""

import torch

import minprune as mp

# Exercise 6.1 ---------------------------------------------------------------------------------------------------


def flatten_position_major(keep, hw):
    return (keep[:, None] * hw + torch.arange(hw)).T.flatten()


def flatten_off_by_one(keep, hw):
    return (keep[:, None] * hw + torch.arange(1, hw + 1)).flatten()


def flatten_no_stride(keep, hw):
    return (keep[:, None] + torch.arange(hw)).flatten()


def flatten_compacted_positions(keep, hw):
    return torch.arange(len(keep) * hw)


def flatten_first_feature_only(keep, hw):
    return keep * hw


def flatten_as_list(keep, hw):
    return [int(c) * hw + j for c in keep for j in range(hw)]


def flatten_repeat_interleave(keep, hw):
    starts = (keep * hw).repeat_interleave(hw)
    return starts + torch.arange(hw).repeat(len(keep))


# Exercise 6.2 ---------------------------------------------------------------------------------------------------

def rule_bias_on_dim_0():
    return mp.ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 0}, sizes={"num_features": "out"})


def rule_without_bias():
    return mp.ChannelRule("follower", axis=1, channel_tensors={"weight": 0}, sizes={"num_features": "out"})


def rule_without_sizes():
    return mp.ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 1})


def rule_last_axis():
    return mp.ChannelRule("follower", axis=-1, channel_tensors={"weight": 0, "bias": 1}, sizes={"num_features": "out"})


def rule_pass():
    return mp.ChannelRule("pass", axis=1, channel_tensors={"weight": 0, "bias": 1}, sizes={"num_features": "out"})


def rule_as_function():
    def rule(module):
        return mp.ChannelRule("follower", channel_tensors={"weight": 0, "bias": module.bias.dim() - 3},
                              sizes={"num_features": "out"})
    return rule


# Exercise 6.3 ---------------------------------------------------------------------------------------------------

def nm_at_least_nth(scores, n, m):
    groups = scores.reshape(scores.shape[0], -1, m)
    nth = groups.topk(n, dim=2).values[..., -1:]
    return (groups >= nth).reshape(scores.shape)


def nm_above_threshold(scores, n, m):
    groups = scores.reshape(scores.shape[0], -1, m)
    if n == m:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = groups.kthvalue(m - n, dim=2, keepdim=True).values  # the highest score that goes
    return (groups > threshold).reshape(scores.shape)


def nm_by_magnitude(scores, n, m):
    groups = scores.abs().reshape(scores.shape[0], -1, m)
    top = groups.topk(n, dim=2).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True).reshape(scores.shape)


def nm_strided_groups(scores, n, m):
    groups = scores.reshape(scores.shape[0], m, -1)  # every (cols / m)-th entry, not m consecutive ones
    top = groups.topk(n, dim=1).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(1, top, True).reshape(scores.shape)


def nm_lowest(scores, n, m):
    groups = scores.reshape(scores.shape[0], -1, m)
    top = groups.topk(n, dim=2, largest=False).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True).reshape(scores.shape)


def nm_float_mask(scores, n, m):
    groups = scores.reshape(scores.shape[0], -1, m)
    top = groups.topk(n, dim=2).indices
    return torch.zeros_like(groups).scatter_(2, top, 1.0).reshape(scores.shape)


def nm_stable_sort(scores, n, m):
    rows, cols = scores.shape
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        for start in range(0, cols, m):
            order = torch.argsort(scores[r, start:start + m], descending=True, stable=True)
            mask[r, start + order[:n]] = True
    return mask


# Exercise 6.4 ---------------------------------------------------------------------------------------------------

def _copies(conv, bn, next_conv):
    import copy

    return copy.deepcopy(conv), copy.deepcopy(bn), copy.deepcopy(next_conv)


def _slice_conv_bn(conv, bn, keep, *, stats=True, bias=True):
    conv.weight = torch.nn.Parameter(conv.weight.detach()[keep].clone())
    if bias and conv.bias is not None:
        conv.bias = torch.nn.Parameter(conv.bias.detach()[keep].clone())
    bn.weight = torch.nn.Parameter(bn.weight.detach()[keep].clone())
    bn.bias = torch.nn.Parameter(bn.bias.detach()[keep].clone())
    if stats:
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()


def surgery_without_running_stats(conv, bn, next_conv, keep):
    conv, bn, next_conv = _copies(conv, bn, next_conv)
    _slice_conv_bn(conv, bn, keep, stats=False)
    bn.running_mean, bn.running_var = torch.zeros(len(keep)), torch.ones(len(keep))  # a fresh BN's statistics
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[:, keep].clone())
    conv.out_channels = bn.num_features = next_conv.in_channels = len(keep)
    return conv, bn, next_conv


def surgery_next_conv_on_dim_0(conv, bn, next_conv, keep):
    conv, bn, next_conv = _copies(conv, bn, next_conv)
    _slice_conv_bn(conv, bn, keep)
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[keep].clone())
    conv.out_channels = bn.num_features = next_conv.in_channels = len(keep)
    return conv, bn, next_conv


def surgery_without_bias(conv, bn, next_conv, keep):
    conv, bn, next_conv = _copies(conv, bn, next_conv)
    _slice_conv_bn(conv, bn, keep, bias=False)
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[:, keep].clone())
    conv.out_channels = bn.num_features = next_conv.in_channels = len(keep)
    return conv, bn, next_conv


def surgery_in_place(conv, bn, next_conv, keep):
    _slice_conv_bn(conv, bn, keep)
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[:, keep].clone())
    conv.out_channels = bn.num_features = next_conv.in_channels = len(keep)
    return conv, bn, next_conv


def surgery_tensors_in_place(conv, bn, next_conv, keep):
    new = _copies(conv, bn, next_conv)
    with torch.no_grad():
        bn.running_var.clamp_(min=1.0)  # "tidies" the caller's statistics
    _slice_conv_bn(new[0], new[1], keep)
    new[2].weight = torch.nn.Parameter(new[2].weight.detach()[:, keep].clone())
    new[0].out_channels = new[1].num_features = new[2].in_channels = len(keep)
    return new


def surgery_stale_sizes(conv, bn, next_conv, keep):
    conv, bn, next_conv = _copies(conv, bn, next_conv)
    _slice_conv_bn(conv, bn, keep)
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[:, keep].clone())
    return conv, bn, next_conv


def surgery_zeroed_not_removed(conv, bn, next_conv, keep):
    conv, bn, next_conv = _copies(conv, bn, next_conv)
    gone = torch.ones(conv.out_channels, dtype=torch.bool)
    gone[keep] = False
    with torch.no_grad():
        conv.weight[gone] = 0.0
    return conv, bn, next_conv


def surgery_fresh_bn_settings(conv, bn, next_conv, keep):
    conv, old_bn, next_conv = _copies(conv, bn, next_conv)
    bn = torch.nn.BatchNorm2d(len(keep))  # default eps, momentum and train mode
    with torch.no_grad():
        bn.weight.copy_(old_bn.weight[keep])
        bn.bias.copy_(old_bn.bias[keep])
        bn.running_mean.copy_(old_bn.running_mean[keep])
        bn.running_var.copy_(old_bn.running_var[keep])
    conv.weight = torch.nn.Parameter(conv.weight.detach()[keep].clone())
    if conv.bias is not None:
        conv.bias = torch.nn.Parameter(conv.bias.detach()[keep].clone())
    next_conv.weight = torch.nn.Parameter(next_conv.weight.detach()[:, keep].clone())
    conv.out_channels = next_conv.in_channels = len(keep)
    return conv, bn, next_conv


def surgery_built_from_scratch(conv, bn, next_conv, keep):
    n = len(keep)
    new_conv = torch.nn.Conv2d(conv.in_channels, n, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                               bias=conv.bias is not None)
    new_bn = torch.nn.BatchNorm2d(n, eps=bn.eps, momentum=bn.momentum).train(bn.training)
    new_next = torch.nn.Conv2d(n, next_conv.out_channels, next_conv.kernel_size, next_conv.stride, next_conv.padding,
                               next_conv.dilation, bias=next_conv.bias is not None)
    with torch.no_grad():
        new_conv.weight.copy_(torch.index_select(conv.weight, 0, keep))
        if conv.bias is not None:
            new_conv.bias.copy_(conv.bias[keep])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new_bn, name).copy_(torch.index_select(getattr(bn, name), 0, keep))
        new_next.weight.copy_(torch.index_select(next_conv.weight, 1, keep))
        if next_conv.bias is not None:
            new_next.bias.copy_(next_conv.bias)
    return new_conv, new_bn, new_next


WRONG = {
    "6.1": [flatten_position_major, flatten_off_by_one, flatten_no_stride, flatten_compacted_positions,
            flatten_first_feature_only, flatten_as_list],
    "6.2": [rule_bias_on_dim_0, rule_without_bias, rule_without_sizes, rule_last_axis, rule_pass],
    "6.3": [nm_at_least_nth, nm_above_threshold, nm_by_magnitude, nm_strided_groups, nm_lowest, nm_float_mask],
    "6.4": [surgery_without_running_stats, surgery_next_conv_on_dim_0, surgery_without_bias, surgery_in_place,
            surgery_tensors_in_place, surgery_stale_sizes, surgery_zeroed_not_removed, surgery_fresh_bn_settings],
}
RIGHT = {"6.1": [flatten_repeat_interleave], "6.2": [rule_as_function], "6.3": [nm_stable_sort],
         "6.4": [surgery_built_from_scratch]}
