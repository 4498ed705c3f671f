"""Wrong and right answers to chapter 3's exercises."""

import torch

import minprune as mp

# ---- 3.1 ----


def _remove(scores, order, n):
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[order[:n]] = False
    return keep.view(scores.shape)


def topk_int_count(scores, sparsity):
    n = int(sparsity * scores.numel())
    return _remove(scores, torch.sort(scores.flatten(), stable=True).indices, n)


def topk_round_half_up(scores, sparsity):
    n = int(sparsity * scores.numel() + 0.5)
    return _remove(scores, torch.sort(scores.flatten(), stable=True).indices, n)


def topk_keep_above_cut_off(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    if n == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    cut_off = scores.flatten().kthvalue(n).values  # the n-th lowest score
    return scores > cut_off


def topk_keep_from_next(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    ordered = torch.sort(scores.flatten()).values
    return scores >= ordered[n]  # right when no score ties with the (n+1)-th lowest


def topk_descending(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    order = torch.argsort(scores.flatten(), descending=True, stable=True)  # ties: lower index first, kept
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order[:scores.numel() - n]] = True
    return keep.view(scores.shape)


def topk_on_abs(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    return _remove(scores, torch.sort(scores.abs().flatten(), stable=True).indices, n)


def topk_with_view(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    order = torch.sort(scores.view(-1), stable=True).indices
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[order[:n]] = False
    return keep.view(scores.shape)


def topk_float_mask(scores, sparsity):
    n = mp.n_pruned(scores.numel(), sparsity)
    return _remove(scores, torch.sort(scores.flatten(), stable=True).indices, n).float()


def topk_by_rank(scores, sparsity):
    flat = scores.detach().reshape(-1)
    index = torch.arange(flat.numel())
    lower = (flat[None, :] < flat[:, None]) | ((flat[None, :] == flat[:, None]) & (index[None, :] < index[:, None]))
    rank = lower.sum(dim=1)  # how many entries go before each one: lower scores, then equal ones at lower index
    return (rank >= mp.n_pruned(flat.numel(), sparsity)).reshape(scores.shape)


# ---- 3.2 ----


def threshold_inclusive(scores, threshold):
    return {name: s >= threshold for name, s in scores.items()}


def threshold_on_abs(scores, threshold):
    return {name: s.abs() > threshold for name, s in scores.items()}


def threshold_marks_pruned(scores, threshold):
    return {name: s <= threshold for name, s in scores.items()}


def threshold_float_masks(scores, threshold):
    return {name: (s > threshold).float() for name, s in scores.items()}


def threshold_in_place(scores, threshold):
    masks = {}
    for name, s in scores.items():
        s[s <= threshold] = 0.0
        masks[name] = s != 0
    return masks


def threshold_not_at_most(scores, threshold):
    return {name: ~torch.le(s, threshold) for name, s in scores.items()}


# ---- 3.3 ----


def _split(keep, scores):
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def global_per_tensor(scores, sparsity):
    return {name: mp.topk_mask(s, sparsity) for name, s in scores.items()}


def global_sorted_names(scores, sparsity):
    names = sorted(scores)
    keep = mp.topk_mask(torch.cat([scores[n].flatten() for n in names]), sparsity)
    return _split(keep, {n: scores[n] for n in names})


def global_cut_off(scores, sparsity):
    flat = torch.cat([s.flatten() for s in scores.values()])
    n = mp.n_pruned(flat.numel(), sparsity)
    cut_off = flat.kthvalue(n).values
    return {name: s > cut_off for name, s in scores.items()}


def global_int_count(scores, sparsity):
    flat = torch.cat([s.flatten() for s in scores.values()])
    order = torch.sort(flat, stable=True).indices
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:int(sparsity * flat.numel())]] = False
    return _split(keep, scores)


def global_on_abs(scores, sparsity):
    return _split(mp.topk_mask(torch.cat([s.abs().flatten() for s in scores.values()]), sparsity), scores)


def global_by_sorting(scores, sparsity):
    flat = torch.cat([s.detach().reshape(-1) for s in scores.values()])
    order = torch.argsort(flat, stable=True)  # ascending; equal scores keep their order
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[:round(sparsity * flat.numel())]] = False
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return masks


WRONG = {
    "3.1": [topk_int_count, topk_round_half_up, topk_keep_above_cut_off, topk_keep_from_next, topk_descending,
            topk_on_abs, topk_with_view, topk_float_mask],
    "3.2": [threshold_inclusive, threshold_on_abs, threshold_marks_pruned, threshold_float_masks, threshold_in_place],
    "3.3": [global_per_tensor, global_sorted_names, global_cut_off, global_int_count, global_on_abs],
}
RIGHT = {"3.1": [topk_by_rank], "3.2": [threshold_not_at_most], "3.3": [global_by_sorting]}
