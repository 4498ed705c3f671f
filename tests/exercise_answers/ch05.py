"""Wrong and right answers to chapter 5's exercises."""

import math

import torch


def _n_keep(scores, sparsity):
    return len(scores) - int(round(sparsity * len(scores)))


# Exercise 5.1 ---------------------------------------------------------------------------------------------------

def kept_lowest(scores, sparsity):
    return torch.argsort(scores)[:_n_keep(scores, sparsity)].sort().values


def kept_unsorted(scores, sparsity):
    return torch.argsort(scores, descending=True, stable=True)[:_n_keep(scores, sparsity)]


def kept_truncated_count(scores, sparsity):
    n_remove = int(sparsity * len(scores))
    return torch.argsort(scores, descending=True, stable=True)[:len(scores) - n_remove].sort().values


def kept_by_magnitude(scores, sparsity):
    return torch.argsort(scores.abs(), descending=True, stable=True)[:_n_keep(scores, sparsity)].sort().values


def kept_earlier_tie_goes(scores, sparsity):
    n_remove = len(scores) - _n_keep(scores, sparsity)
    return torch.argsort(scores, stable=True)[n_remove:].sort().values


def kept_ceil_count(scores, sparsity):
    n_remove = math.ceil(sparsity * len(scores))
    return torch.argsort(scores, descending=True, stable=True)[:len(scores) - n_remove].sort().values


def kept_by_key(scores, sparsity):
    values = scores.tolist()
    ranked = sorted(range(len(values)), key=lambda i: (-values[i], i))  # highest first, earlier first among equals
    return torch.tensor(sorted(ranked[:_n_keep(scores, sparsity)]), dtype=torch.long)


# Exercise 5.2 ---------------------------------------------------------------------------------------------------

def neurons_rows_of_W2(W1, b1, W2, keep):
    return W1[keep], b1[keep], W2[keep]


def neurons_transposed(W1, b1, W2, keep):  # as if W were (in, out)
    return W1[:, keep], b1[keep], W2[keep]


def neurons_bias_untouched(W1, b1, W2, keep):
    return W1[keep], b1, W2[:, keep]


def neurons_first_k(W1, b1, W2, keep):
    k = len(keep)
    return W1[:k], b1[:k], W2[:, :k]


def neurons_removes_keep(W1, b1, W2, keep):
    gone = torch.zeros(len(b1), dtype=torch.bool)
    gone[keep] = True
    stay = ~gone
    return W1[stay], b1[stay], W2[:, stay]


def neurons_index_select(W1, b1, W2, keep):
    return (torch.index_select(W1, 0, keep).detach(), b1.detach().index_select(0, keep),
            W2.detach().t()[keep].t().contiguous())


# Exercise 5.3 ---------------------------------------------------------------------------------------------------

def filter_l1_signed(W):
    return W.detach().flatten(1).sum(dim=1)


def filter_l2(W):
    return W.detach().flatten(1).norm(dim=1)


def filter_sum_axis_1(W):
    return W.detach().abs().sum(dim=1)


def filter_fixed_axes(W):
    return W.detach().abs().sum(dim=(1, 2, 3))


def filter_in_place(W):
    with torch.no_grad():
        return W.abs_().flatten(1).sum(dim=1)


def filter_mean(W):
    return W.detach().abs().flatten(1).mean(dim=1)


def filter_stacked(W):
    return torch.stack([w.abs().sum() for w in W.detach()])


WRONG = {
    "5.1": [kept_lowest, kept_unsorted, kept_truncated_count, kept_by_magnitude, kept_earlier_tie_goes,
            kept_ceil_count],
    "5.2": [neurons_rows_of_W2, neurons_transposed, neurons_bias_untouched, neurons_first_k, neurons_removes_keep],
    "5.3": [filter_l1_signed, filter_l2, filter_sum_axis_1, filter_fixed_axes, filter_in_place, filter_mean],
}
RIGHT = {"5.1": [kept_by_key], "5.2": [neurons_index_select], "5.3": [filter_stacked]}
