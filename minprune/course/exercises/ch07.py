"""Chapter 7 (pruning during training): the exercises' designed cases and hints.

7.1 the cubic sparsity schedule, 7.2 one RigL drop-and-grow update of one layer, 7.3 ERK layer sparsities.
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import math

import torch

from minprune.course.check import difference
from minprune.course.exercises import exercise
from minprune.dynamic.schedules import cubic
from minprune.dynamic.sparse_training import drop_and_grow, erk_sparsities


def _same(alternative, got, atol: float = 1e-9, rtol: float = 1e-6) -> bool:
    """Whether the learner's result is what a known mistake gives (and that mistake is not the right answer)."""
    return not isinstance(got, BaseException) and difference(alternative, got, atol=atol, rtol=rtol) is None


# ---- 7.1: the cubic schedule ---------------------------------------------------------------------------------


def cubic_schedule(step: int, final: float, initial: float, start: int, end: int, interval: int) -> float:
    """`mp.dynamic.schedules.cubic` with positional arguments, as Exercise 7.1's `my_cubic` takes them."""
    return cubic(step, final, initial=initial, start=start, end=end, interval=interval)


def _schedule_cases() -> list[tuple]:
    # (step, final, initial, start, end, interval); the span end - start is not a multiple of the interval
    return [
        (95, 0.8, 0.0, 0, 100, 30),  # last update at 90: 0.9 of the span done, not all of it
        (100, 0.8, 0.0, 0, 100, 30),  # at `end` (not an update step t0 + k * interval): final
        (45, 0.8, 0.2, 10, 110, 30),  # last update at 40
        (83, 0.9, 0.1, 10, 110, 25),  # 73 steps in: the last update is at 60, the nearest one at 85
        (5, 0.8, 0.2, 10, 110, 30),  # before start: initial
        (10, 0.8, 0.2, 10, 110, 30),  # at start: initial
        (500, 0.8, 0.2, 10, 110, 30),  # long after end: final
        (109, 0.95, 0.5, 10, 110, 7),  # 99 steps in, the last update at 94 (14 updates of 7)
    ]


def _cubic_of(done: float, final: float, initial: float) -> float:
    return final + (initial - final) * (1 - done) ** 3


def _schedule_mistake(case, expected, got):
    step, final, initial, start, end, interval = case
    if isinstance(got, BaseException) or not isinstance(got, (int, float, torch.Tensor)):
        return None
    if step < start:
        return "before `start` the schedule holds `initial`: the formula only applies between start and end"
    if step >= end:
        return ("from `end` on the schedule holds `final`, even when `end` is not itself an update step "
                "start + k * interval")
    span, t = end - start, step - start
    mistakes = {
        "continuous": _cubic_of(t / span, final, initial),
        "nearest": _cubic_of(round(t / interval) * interval / span, final, initial),
        "whole intervals": _cubic_of((t // interval) / max(1, span // interval), final, initial),
        "no initial": final * (1 - (1 - (t // interval * interval) / span) ** 3),
    }
    hints = {
        "continuous": "the sparsity only changes when the pruner acts: round t down to the last update step "
                      "start + k * interval before using the formula",
        "nearest": "round t *down* to the last update step (the pruner has not acted yet at the next one), not to "
                   "the nearest",
        "whole intervals": "here end - start is not a multiple of the interval: the fraction done is the steps "
                           "done up to the last update divided by end - start, not a count of updates divided by "
                           "the number of whole intervals",
        "no initial": "the schedule starts from `initial`, which is not always 0: s_i appears in the formula",
    }
    for name, value in mistakes.items():
        if not _same(value, expected) and _same(value, got):
            return hints[name]
    return None


exercise("7.1", "the cubic sparsity schedule of Zhu & Gupta", cubic_schedule, _schedule_cases,
         hint="hold initial before start and final from end on; in between round t down to start + k * interval",
         diagnoses=(_schedule_mistake,))


# ---- 7.2: one drop-and-grow update ---------------------------------------------------------------------------


def new_mask(W: torch.Tensor, mask: torch.Tensor, grow_scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The mask after one RigL update of one layer: `drop_and_grow(...)`'s first result (True = keep)."""
    return drop_and_grow(W, mask, grow_scores, fraction)[0]


class _Update(dict):
    """What one update did, compared entry by entry; `.mask` keeps the learner's mask for the diagnoses."""

    mask = None


def _describe(new, W: torch.Tensor, mask: torch.Tensor, grow_scores: torch.Tensor) -> _Update:
    """An update as what it dropped and grew, so that any choice among tied weights compares equal.

    The entries: the mask's type and shape, how many weights were dropped and grown, the sorted |W| of the
    dropped weights and the sorted scores of the grown positions (all None when the mask is not a bool tensor
    of the layer's shape).
    """
    out = _Update()
    out.mask = new
    kind = (f"a {str(new.dtype).removeprefix('torch.')} tensor of shape {tuple(new.shape)}"
            if isinstance(new, torch.Tensor) else f"a {type(new).__name__}")
    out["new mask"] = kind
    keys = ("number dropped", "number grown", "|W| of the dropped weights", "scores of the grown positions")
    if not (isinstance(new, torch.Tensor) and new.dtype == torch.bool and new.shape == mask.shape):
        out.update(dict.fromkeys(keys))
        return out
    dropped, grown = mask & ~new, ~mask & new
    out[keys[0]], out[keys[1]] = int(dropped.sum()), int(grown.sum())
    out[keys[2]] = W.detach().abs()[dropped].sort().values
    out[keys[3]] = grow_scores.detach()[grown].sort().values
    return out


def _update(fn, W, mask, grow_scores, fraction):
    new = fn(W, mask, grow_scores, fraction)
    return None if new is None else _describe(new, W, mask, grow_scores)


def _drop_grow_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(7)
    cases = []
    # ties: three active weights share the smallest |W| (signs differ) and three inactive positions share the
    # second-largest score; k = 2 picks two of each. The active positions have the largest scores of all.
    W = torch.tensor([[0.3, -0.1, 0.1, 0.0, 0.0], [-0.1, -0.8, 0.0, 0.0, 0.0]])
    scores = torch.tensor([[9.0, 9.0, 9.0, 0.7, 0.7], [9.0, 9.0, 0.7, 0.2, 0.9]])
    cases.append((W, W != 0, scores, 0.4))
    # active weights that are exactly 0 (just regrown) and an odd count: k = int(0.5 * 7) = 3; signed scores
    W = torch.tensor([[0.0, 0.4, -0.6, 0.0, 0.0, 0.2], [0.9, 0.0, 0.0, -0.3, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False, False], [True, True, False, True, False, False]])
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4, -0.5, 0.6], [0.7, 0.8, -0.9, 1.0, 0.05, -0.2]])
    cases.append((W, mask, scores, 0.5))
    # the weights about to be dropped have the largest scores (a weight dropped now must not come straight back)
    W = torch.tensor([[0.05, 0.9, 0.0, 0.0], [0.8, 0.02, 0.0, 0.0], [0.7, 0.6, 0.0, 0.0]])
    scores = torch.tensor([[5.0, 0.0, 1.0, 2.0], [0.0, 6.0, 3.0, 0.5], [0.0, 0.0, 0.25, 0.75]])
    cases.append((W, W != 0, scores, 0.5))
    # k capped by the inactive positions: 8 active, 2 inactive, int(0.75 * 8) = 6 > 2
    W = torch.tensor([[0.5, -0.2, 0.3, 0.0, 0.7], [0.1, 0.0, -0.9, 0.4, 0.6]])
    cases.append((W, W != 0, torch.rand(2, 5, generator=g), 0.75))
    # a trained layer: W requires grad and carries a .grad; a conv weight (out, in, kh, kw)
    mask = torch.rand(3, 2, 3, 3, generator=g) < 0.4
    W = (torch.randn(3, 2, 3, 3, generator=g) * mask).requires_grad_()
    W.grad = torch.randn(3, 2, 3, 3, generator=g)
    cases.append((W, mask, W.grad.abs(), 0.375))
    for density, fraction in [(0.3, 0.25), (0.6, 0.5)]:  # non-square layers
        mask = torch.rand(7, 13, generator=g) < density
        cases.append((torch.randn(7, 13, generator=g) * mask, mask, torch.rand(7, 13, generator=g), fraction))
    return cases


def _drop_grow_mistake(case, expected, got):
    W, mask, scores, fraction = case
    if isinstance(got, BaseException) or not isinstance(got, _Update):
        return None
    if got["number dropped"] is None:
        return "return a new bool tensor (True = keep) of the same shape as `mask`"
    n_active, n_inactive = int(mask.sum()), int((~mask).sum())
    k, wanted = expected["number dropped"], int(fraction * n_active)
    dropped, grown = got["number dropped"], got["number grown"]
    if wanted > n_inactive and dropped != k:
        return "k cannot exceed the number of inactive positions: k = min(int(fraction * n_active), n_inactive)"
    magnitudes, best = W.detach().abs()[mask].sort().values, scores[~mask].sort(descending=True).values
    if dropped > k and 0 < k < n_active and magnitudes[k - 1] == magnitudes[k]:
        return ("several active weights tie at the k-th smallest |W|: drop exactly k of them (torch.topk picks "
                "exactly k), not every weight at or below a threshold")
    if grown > k and 0 < k < n_inactive and best[k - 1] == best[k]:
        return ("several positions tie at the k-th largest score: grow exactly k of them (torch.topk picks exactly "
                "k), not every position at or above a threshold")
    if dropped == grown != k and dropped in (round(fraction * n_active), math.ceil(fraction * n_active)):
        return "k is fraction * n_active rounded *down* (int(...)), then capped by the inactive positions"
    if dropped == grown < k:
        return ("a weight dropped in this update came straight back: grow only among the positions that were "
                "inactive *before* the update")
    if dropped == k and grown < k:
        return "some positions you grew were already active: grow only among the inactive positions"
    alternatives = {
        "the mask says which weights are active; a weight can be active and exactly 0 (a regrown weight starts at "
        "0): do not read the active set from W != 0": (W, W.detach() != 0, scores),
        "drop the smallest *magnitudes* |W|: a large negative weight matters as much as a large positive one":
            (W.detach() - W.detach().min(), mask, scores),
        "grow the positions of largest grow_scores as given (the caller passes |gradient| already), not of "
        "largest |grow_scores|": (W, mask, scores.abs()),
    }
    for hint, (W2, mask2, scores2) in alternatives.items():
        alt = _describe(drop_and_grow(W2, mask2, scores2, fraction)[0], W, mask, scores)
        if not _same(alt, expected) and _same(alt, got):
            return hint
    return None


exercise("7.2", "one RigL drop-and-grow update of one layer", new_mask, _drop_grow_cases,
         hint="drop among the active weights only, grow among the positions inactive before the update",
         diagnoses=(_drop_grow_mistake,), call=_update, atol=0.0, rtol=0.0)


# ---- 7.3: ERK layer sparsities -------------------------------------------------------------------------------


def _erk_cases() -> list[tuple]:
    lenet5 = {"conv1.weight": (6, 1, 5, 5), "conv2.weight": (16, 6, 5, 5), "fc1.weight": (120, 400),
              "fc2.weight": (84, 120), "fc3.weight": (10, 84)}  # mp.build('lenet5')'s weights
    return [
        ({"big": (60, 50), "mid": (2, 4), "small": (11, 3)}, 0.9),  # mid capped first, then small: two rounds
        ({"big": (400, 300), "mid": (40, 30), "out": (10, 30)}, 0.6),  # out capped, then mid
        ({"wide": (8, 200), "tall": (200, 8), "square": (40, 40)}, 0.7),  # non-square layers, none capped
        (lenet5, 0.95),  # conv kernels (out, in, kh, kw): every dimension counts
        ({"conv": (32, 16, 3, 3), "fc": (10, 512)}, 0.8),
    ]


def _erk_once(shapes, sparsity, *, repeat=False, clip=False, unweighted=False):
    """What a few mistakes give: capping once, clipping at density 1, or one epsilon not weighted by size."""
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    budget = (1 - sparsity) * sum(numel.values())
    eps = budget / (sum(raw.values()) if unweighted else sum(raw[n] * numel[n] for n in shapes))
    if clip or unweighted:
        return {n: 1 - min(1.0, eps * raw[n]) for n in shapes}
    dense = {n for n in shapes if eps * raw[n] > 1}
    budget -= sum(numel[n] for n in dense)
    eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
    return {n: 0.0 if n in dense else 1 - eps * raw[n] for n in shapes}


def _erk_mistake(case, expected, got):
    shapes, sparsity = case
    if isinstance(got, BaseException) or not isinstance(got, dict) or set(got) != set(expected):
        return None
    mistakes = {
        "return each layer's sparsity (1 - density), not its density": {n: 1 - s for n, s in expected.items()},
        "ERK gives each layer its own sparsity; the same sparsity for every layer is the uniform distribution":
            dict.fromkeys(shapes, sparsity),
        "ERK uses every dimension of the shape, the kernel's too (out + in + kh + kw over their product)":
            erk_sparsities(shapes, sparsity, include_kernel=False),
        "after you cap layers and recompute epsilon, check again: another layer may now exceed density 1; "
        "repeat until none does": _erk_once(shapes, sparsity),
        "a layer kept dense leaves fewer weights for the others: remove it from the pool, subtract its weights "
        "from the budget and recompute epsilon (clipping its density at 1 is not enough)":
            _erk_once(shapes, sparsity, clip=True),
        "the kept weights of a layer are its density times its number of weights: weight each layer's ratio by "
        "its size when you solve for epsilon": _erk_once(shapes, sparsity, unweighted=True),
    }
    for hint, value in mistakes.items():
        if not _same(value, expected) and _same(value, got):
            return hint
    return None


exercise("7.3", "ERK layer sparsities", erk_sparsities, _erk_cases,
         hint="repeat: cap the layers above density 1, recompute epsilon", diagnoses=(_erk_mistake,))
