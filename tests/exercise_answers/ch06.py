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


WRONG = {
    "6.1": [flatten_position_major, flatten_off_by_one, flatten_no_stride, flatten_compacted_positions,
            flatten_first_feature_only, flatten_as_list],
    "6.2": [rule_bias_on_dim_0, rule_without_bias, rule_without_sizes, rule_last_axis, rule_pass],
    "6.3": [nm_at_least_nth, nm_above_threshold, nm_by_magnitude, nm_strided_groups, nm_lowest, nm_float_mask],
}
RIGHT = {"6.1": [flatten_repeat_interleave], "6.2": [rule_as_function], "6.3": [nm_stable_sort]}
