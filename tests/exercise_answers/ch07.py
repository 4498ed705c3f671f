"""Wrong and right answers to chapter 7's exercises."""

import math

import torch

# ---- 7.1: the cubic schedule ---------------------------------------------------------------------------------


def cubic_not_rounded_down(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


def cubic_counts_whole_intervals(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step <= start:
        return initial
    if step >= end:
        return final
    n = (end - start) // interval  # the number of updates, as if end - start were a multiple of the interval
    k = (step - start) // interval
    return final + (initial - final) * (1 - min(k / n, 1.0)) ** 3


def cubic_no_guard_before_start(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step >= end:
        return final
    last_update = start + (step - start) // interval * interval
    return final + (initial - final) * (1 - (last_update - start) / (end - start)) ** 3


def cubic_final_only_after_end(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step <= start:
        return initial
    if step > end:
        return final
    last_update = start + (step - start) // interval * interval
    return final + (initial - final) * (1 - (last_update - start) / (end - start)) ** 3


def cubic_without_initial(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step <= start:
        return initial
    if step >= end:
        return final
    done = (step - start) // interval * interval / (end - start)
    return final * (1 - (1 - done) ** 3)


def cubic_nearest_update(step, final, initial=0.0, start=0, end=1000, interval=1):
    if step <= start:
        return initial
    if step >= end:
        return final
    done = round((step - start) / interval) * interval / (end - start)
    return final + (initial - final) * (1 - done) ** 3


def cubic_clamped_progress(step, final, initial=0.0, start=0, end=1000, interval=1):
    t = min(max(step, start), end)
    done = 1.0 if t == end else math.floor((t - start) / interval) * interval / (end - start)
    return initial + (final - initial) * (1 - (1 - done) ** 3)


# ---- 7.2: one drop-and-grow update ---------------------------------------------------------------------------


def drop_grow_threshold(W, mask, grow_scores, fraction):
    k = min(int(fraction * int(mask.sum())), int((~mask).sum()))
    if k == 0:
        return mask.clone()
    magnitude = W.detach().abs()
    cut = magnitude[mask].sort().values[k - 1]
    best = grow_scores[~mask].sort(descending=True).values[k - 1]
    return (mask & ~(magnitude <= cut)) | (~mask & (grow_scores >= best))


def drop_grow_regrows_dropped(W, mask, grow_scores, fraction):
    active = mask.flatten()
    k = min(int(fraction * int(active.sum())), int((~active).sum()))
    new = active.clone()
    if k > 0:
        new[torch.topk(W.detach().abs().flatten().masked_fill(~active, float("inf")), k, largest=False).indices] = False
        new[torch.topk(grow_scores.flatten().masked_fill(new, -float("inf")), k).indices] = True  # after dropping
    return new.view_as(mask)


def drop_grow_active_from_weights(W, mask, grow_scores, fraction):
    active = (W.detach() != 0).flatten()
    k = min(int(fraction * int(active.sum())), int((~active).sum()))
    new = active.clone()
    if k > 0:
        new[torch.topk(W.detach().abs().flatten().masked_fill(~active, float("inf")), k, largest=False).indices] = False
        new[torch.topk(grow_scores.flatten().masked_fill(active, -float("inf")), k).indices] = True
    return new.view_as(mask)


def drop_grow_k_not_capped(W, mask, grow_scores, fraction):
    active = mask.flatten()
    k = int(fraction * int(active.sum()))
    new = active.clone()
    if k > 0:
        new[torch.topk(W.detach().abs().flatten().masked_fill(~active, float("inf")), k, largest=False).indices] = False
        new[torch.topk(grow_scores.flatten().masked_fill(active, -float("inf")), k).indices] = True
    return new.view_as(mask)


def drop_grow_signed_weights(W, mask, grow_scores, fraction):
    active = mask.flatten()
    k = min(int(fraction * int(active.sum())), int((~active).sum()))
    new = active.clone()
    if k > 0:
        new[torch.topk(W.detach().flatten().masked_fill(~active, float("inf")), k, largest=False).indices] = False
        new[torch.topk(grow_scores.flatten().masked_fill(active, -float("inf")), k).indices] = True
    return new.view_as(mask)


def drop_grow_k_rounded(W, mask, grow_scores, fraction):
    active = mask.flatten()
    k = min(round(fraction * int(active.sum())), int((~active).sum()))
    new = active.clone()
    if k > 0:
        new[torch.topk(W.detach().abs().flatten().masked_fill(~active, float("inf")), k, largest=False).indices] = False
        new[torch.topk(grow_scores.flatten().masked_fill(active, -float("inf")), k).indices] = True
    return new.view_as(mask)


def drop_grow_in_place(W, mask, grow_scores, fraction):
    k = min(int(fraction * int(mask.sum())), int((~mask).sum()))
    flat = mask.view(-1)  # a view: the caller's mask is changed
    if k > 0:
        drop = torch.topk(W.detach().abs().flatten().masked_fill(~flat, float("inf")), k, largest=False).indices
        grow = torch.topk(grow_scores.flatten().masked_fill(flat, -float("inf")), k).indices
        flat[drop] = False
        flat[grow] = True
    return mask


def drop_grow_sorted(W, mask, grow_scores, fraction):
    """Correct, with stable sorts and explicit index lists instead of topk."""
    flat_mask = mask.reshape(-1)
    active = torch.nonzero(flat_mask).flatten()
    inactive = torch.nonzero(~flat_mask).flatten()
    k = min(math.floor(fraction * len(active)), len(inactive))
    new = flat_mask.clone()
    order = torch.argsort(W.detach().reshape(-1)[active].abs(), stable=True)
    new[active[order[:k]]] = False
    order = torch.argsort(grow_scores.reshape(-1)[inactive], descending=True, stable=True)
    new[inactive[order[:k]]] = True
    return new.reshape(mask.shape)


# ---- 7.3: ERK layer sparsities -------------------------------------------------------------------------------


def _ratios(shapes):
    numel = {n: math.prod(s) for n, s in shapes.items()}
    return numel, {n: sum(s) / numel[n] for n, s in shapes.items()}


def erk_capped_once(shapes, sparsity):
    numel, raw = _ratios(shapes)
    eps = (1 - sparsity) * sum(numel.values()) / sum(raw[n] * numel[n] for n in shapes)
    dense = {n for n in shapes if eps * raw[n] > 1}
    budget = (1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)
    eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
    return {n: 0.0 if n in dense else 1 - eps * raw[n] for n in shapes}


def erk_clipped(shapes, sparsity):
    numel, raw = _ratios(shapes)
    eps = (1 - sparsity) * sum(numel.values()) / sum(raw[n] * numel[n] for n in shapes)
    return {n: 1 - min(1.0, eps * raw[n]) for n in shapes}


def erk_first_two_dims(shapes, sparsity):
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s[:2]) / math.prod(s[:2]) for n, s in shapes.items()}
    dense = set()
    while True:
        budget = (1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)
        eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
        too_dense = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not too_dense:
            return {n: 0.0 if n in dense else 1 - eps * raw[n] for n in shapes}
        dense |= too_dense


def erk_densities(shapes, sparsity):
    numel, raw = _ratios(shapes)
    dense = set()
    while True:
        budget = (1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)
        eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
        too_dense = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not too_dense:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= too_dense


def erk_unweighted(shapes, sparsity):
    numel, raw = _ratios(shapes)
    eps = (1 - sparsity) * sum(numel.values()) / sum(raw.values())
    return {n: 1 - min(1.0, eps * raw[n]) for n in shapes}


def erk_one_at_a_time(shapes, sparsity):
    """Correct, written differently: caps the single densest layer per round, in a for loop over the layers."""
    numel, raw = _ratios(shapes)
    dense = []
    for _ in shapes:
        free = [n for n in shapes if n not in dense]
        eps = ((1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)) / sum(sum(shapes[n]) for n in free)
        densest = max(free, key=lambda n: raw[n])
        if eps * raw[densest] <= 1:
            break
        dense.append(densest)
    return {n: 0.0 if n in dense else 1.0 - eps * raw[n] for n in shapes}


WRONG = {
    "7.1": [cubic_not_rounded_down, cubic_counts_whole_intervals, cubic_no_guard_before_start,
            cubic_final_only_after_end, cubic_without_initial, cubic_nearest_update],
    "7.2": [drop_grow_threshold, drop_grow_regrows_dropped, drop_grow_active_from_weights, drop_grow_k_not_capped,
            drop_grow_signed_weights, drop_grow_k_rounded, drop_grow_in_place],
    "7.3": [erk_capped_once, erk_clipped, erk_first_two_dims, erk_densities, erk_unweighted],
}
RIGHT = {"7.1": [cubic_clamped_progress], "7.2": [drop_grow_sorted], "7.3": [erk_one_at_a_time]}
