"""Chapter 3 (weight pruning): the exercises' designed cases and hints.

3.1 a top-k mask with an exact count and ties by index, 3.2 threshold masks for a whole model, 3.3 global masks.
The hints look at what went wrong: how many entries the learner's mask removes (ties at the cut-off, `>=` for `>`,
the rounding of the count), which ones (ties by index, signed scores, True = keep) and, for 3.3, whether the
ranking was per tensor or in another order. See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import math

import torch

from minprune.course.exercises import exercise
from minprune.unstructured.masks import make_masks, n_pruned, topk_mask


def _keep_all_but(numel: int, removed: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(numel, dtype=torch.bool)
    keep[removed] = False
    return keep


def _lowest_first(flat: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask removing the n lowest of a 1-D tensor, ties by lower index."""
    return _keep_all_but(flat.numel(), torch.sort(flat, stable=True).indices[:n])


def _flat_mistakes(flat: torch.Tensor, sparsity: float) -> dict[str, torch.Tensor]:
    """The flat keep-masks that typical mistakes give for these scores, by mistake."""
    flat = flat.detach().cpu()
    numel, n = flat.numel(), n_pruned(flat.numel(), sparsity)
    ordered = torch.sort(flat).values
    out = {"inverted": ~_lowest_first(flat, n), "abs": _lowest_first(flat.abs(), n)}
    # a wrong rounding first: a comparison mistake fails an earlier case, with ties and a count that is exact
    for mistake, count in (("floor", math.floor(sparsity * numel)), ("half up", math.floor(sparsity * numel + 0.5)),
                           ("ceil", math.ceil(sparsity * numel)), ("keep count", numel - n)):
        out[mistake] = _lowest_first(flat, count)
    if n > 0:
        out["gt cut-off"] = flat > ordered[n - 1]  # every score tied with the n-th lowest goes
        out["ge cut-off"] = flat >= ordered[n - 1]  # the n-th lowest and its ties stay
    if n < numel:
        out["ge next"] = flat >= ordered[n]  # right without ties; ties with the (n+1)-th lowest all stay
        out["gt next"] = flat > ordered[n]
    flipped = torch.sort(flat.flip(0), stable=True).indices[:n]  # ties: the higher index goes first
    out["ties by high index"] = _keep_all_but(numel, numel - 1 - flipped)
    return out


_MASK_HINTS = {
    "inverted": "True means keep: your mask keeps the lowest scores and removes the highest ones",
    "abs": "the scores here are signed: rank them as they are (the most negative go first), without abs()",
    "gt cut-off": "keeping the scores above the n-th lowest one removes every score tied with it, so with ties at "
                  "the cut-off too many go: remove exactly mp.n_pruned(numel, sparsity) entries, among equal scores "
                  "the lower (flattened) index first",
    "ge cut-off": "keeping the scores >= the n-th lowest one keeps that score itself and every score tied with it, "
                  "so too few go: remove exactly mp.n_pruned(numel, sparsity) entries, among equal scores the lower "
                  "(flattened) index first",
    "ge next": "a comparison with a cut-off value keeps every score tied with it, so with ties at the cut-off too "
               "many stay: remove exactly mp.n_pruned(numel, sparsity) entries, among equal scores the lower "
               "(flattened) index first",
    "gt next": "keeping the scores above the (n+1)-th lowest one removes that one too: one (or more, with ties) too "
               "many go",
    "floor": "the count is round(sparsity * numel) = round({product:g}) = {n}, as mp.n_pruned gives it: int() "
             "rounds down, to {floor}",
    "ceil": "the count is round(sparsity * numel) = round({product:g}) = {n}, as mp.n_pruned gives it: rounding up "
            "is not the rule",
    "half up": "the count is round(sparsity * numel) = round({product:g}) = {n}: Python's round() rounds halves to "
               "even (round(2.5) == 2, round(3.5) == 4); take the count from mp.n_pruned(numel, sparsity)",
    "keep count": "sparsity is the fraction removed, not the fraction kept",
    "ties by high index": "among equal scores the lower (flattened) index goes first; yours removes the higher one",
}


def _which_mistake(flat_scores: torch.Tensor, sparsity: float, flat_expected: torch.Tensor, flat_got: torch.Tensor):
    """The hint of the first typical mistake whose mask is the learner's (and not the right one), else None."""
    for mistake, wrong in _flat_mistakes(flat_scores, sparsity).items():
        if torch.equal(flat_got, wrong) and not torch.equal(wrong, flat_expected):
            numel = flat_scores.numel()
            return _MASK_HINTS[mistake].format(product=sparsity * numel, n=n_pruned(numel, sparsity),
                                               floor=math.floor(sparsity * numel))
    return None


def _counts(flat_expected: torch.Tensor, flat_got: torch.Tensor) -> str:
    removed, right = int((~flat_got).sum()), int((~flat_expected).sum())
    if removed != right:
        return (f"your mask removes {removed} of {flat_got.numel()} entries, the library {right}: remove exactly "
                "mp.n_pruned(numel, sparsity) of the lowest scores")
    return ("the count is right but not which entries: remove the lowest scores, among equal scores the lower "
            "(flattened) index first")


def _is_mask(got, like: torch.Tensor) -> bool:
    return isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == like.shape


def _raised(case, expected, got):
    if isinstance(got, RuntimeError) and "view" in str(got):
        return ("the scores may be non-contiguous (a transposed tensor, a slice): flatten them with flatten() or "
                "reshape(), which copy when they must, not view()")
    if isinstance(got, RuntimeError) and "kthvalue" in str(got).lower() or isinstance(got, IndexError):
        return "a sparsity of 0 removes nothing (n = 0): the mask keeps every entry"
    return None


# ---- 3.1: a top-k mask -----------------------------------------------------------------------------------------


def _topk_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(31)
    distinct = lambda *shape: torch.randperm(math.prod(shape), generator=g).float().add(1).div(10).view(shape)  # noqa: E731
    return [
        (torch.tensor([0.2, 0.1, 0.2, 0.3, 0.2, 0.5]), 0.5),       # 3 go: 0.1 and the first two of the three 0.2s
        (distinct(2, 5), 0.35),                                     # 3.5 rounds to 4
        (distinct(7), 0.3),                                         # 2.1 rounds to 2
        (distinct(4), 0.625),                                       # 2.5 rounds to 2 (halves to even)
        (torch.ones(5), 0.4),                                       # all tied: the first two go
        (torch.tensor([[0.5, -0.7, 0.1, -0.2], [-0.05, 0.3, -0.4, 0.6], [0.2, -0.9, 0.8, 0.0]]), 0.5),  # signed
        (torch.rand(2, 3, generator=g), 0.0),                       # nothing goes
        (torch.randint(0, 4, (4, 6), generator=g).float().t(), 0.5),  # non-contiguous, many ties
        (torch.rand(3, 2, 3, 3, generator=g, dtype=torch.float64), 0.7),  # conv-shaped, float64
    ]


def _topk_mistake(case, expected, got):
    scores, sparsity = case
    if not _is_mask(got, expected):
        return "return a bool tensor shaped like scores (True = keep)" if isinstance(got, torch.Tensor) else None
    flat_expected, flat_got = expected.flatten().cpu(), got.flatten().cpu()
    found = _which_mistake(scores.flatten(), sparsity, flat_expected, flat_got)
    return found or _counts(flat_expected, flat_got)


exercise("3.1", "a mask removing exactly the lowest scores, ties by index", topk_mask, _topk_cases,
         hint="remove exactly mp.n_pruned(numel, sparsity) of the lowest scores, among equal scores the lower "
              "(flattened) index first",
         diagnoses=(_raised, _topk_mistake))


# ---- 3.2: threshold masks ----------------------------------------------------------------------------------------


def threshold_masks(scores: dict, threshold: float) -> dict:
    """The library's masks by threshold: `make_masks(scores, threshold=threshold)` (strictly above is kept).

    The reference of exercise 3.2. See notebooks/03_weight_pruning.ipynb.
    """
    return make_masks(scores, threshold=threshold)


def _threshold_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(32)
    ties = {"conv": torch.tensor([0.0, 0.25, 0.5, 0.25, 0.75, 0.125]).view(1, 2, 3, 1),
            "fc": torch.tensor([[0.25, 0.5, 1.0], [0.0, 0.25, 0.0625]])}
    signed = {"a": torch.tensor([-0.5, -0.25, 0.0, 0.25, 0.5]), "b": torch.tensor([[-1.0, 0.125], [0.375, -0.125]])}
    return [(ties, 0.25), (ties, 0), (signed, -0.25), (signed, 0.25),
            ({"w": torch.rand(3, 4, generator=g, dtype=torch.float64)}, 0.5), (ties, 2.0)]


def _threshold_mistake(case, expected, got):
    scores, threshold = case
    if not isinstance(got, dict) or set(got) != set(expected):
        return "return a dict with one mask per name of scores, keyed by the same names" if isinstance(got, dict) \
            else None
    for name, s in scores.items():
        mask = got[name]
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            return "each mask is a bool tensor (True = keep): the comparison itself gives one, no .float()"
        if torch.equal(mask, expected[name]):
            continue
        mistakes = ((s >= threshold, "a score equal to the threshold is pruned: keep only the scores strictly above "
                                     "it ('>' not '>=')"),
                    (s.abs() > threshold, "the scores here are signed: compare them as they are, without abs()"),
                    (s <= threshold, "True means keep: your masks mark the pruned entries"),
                    (s < threshold, "True means keep: your masks mark the entries below the threshold"))
        for wrong, hint in mistakes:
            if mask.shape == wrong.shape and torch.equal(mask, wrong) and not torch.equal(wrong, expected[name]):
                return hint
    return None


exercise("3.2", "threshold masks for a whole model (strictly above is kept)", threshold_masks, _threshold_cases,
         hint="for every name, keep the scores strictly above the threshold ('>' not '>=')",
         diagnoses=(_threshold_mistake,))


# ---- 3.3: global masks -----------------------------------------------------------------------------------------


def global_masks(scores: dict, sparsity: float) -> dict:
    """The library's global masks: `make_masks(scores, sparsity, scope='global')` (one ranking, exact total count).

    The reference of exercise 3.3. See notebooks/03_weight_pruning.ipynb.
    """
    return make_masks(scores, sparsity, scope="global")


def _global_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(33)
    tied = {"b": torch.tensor([0.3, 0.1, 0.2, 0.5]), "a": torch.tensor([[0.1, 0.4], [0.2, 0.1]])}  # not name order
    scaled = {"conv": 10 * torch.rand(4, 2, 3, 3, generator=g), "fc": torch.rand(10, 5, generator=g)}
    halves = {"x": torch.tensor([0.4, 0.1, 0.6]), "y": torch.tensor([0.2, 0.5, 0.3])}
    return [
        (tied, 0.25),  # 2 of 8 go: the first two of the three 0.1s in dict order, b[1] and a[0, 0]
        (scaled, 0.5),  # the small fc scores go first: local masks differ
        (halves, 0.5),  # 3 of 6 go globally; per tensor 1.5 rounds to 2 each
        ({"p": torch.arange(10.0).flip(0).view(2, 5), "q": torch.tensor([4.5])}, 0.35),  # 11 entries: 3.85 -> 4
        ({"u": torch.tensor([-0.3, 0.2, -0.1]), "v": torch.tensor([[0.05, -0.4]])}, 0.4),  # signed
        ({"m": torch.randint(0, 3, (3, 4), generator=g).float().t(), "n": torch.ones(2, 2)}, 0.5),  # ties, .t()
    ]


def _cat(masks: dict, order) -> torch.Tensor:
    return torch.cat([masks[name].flatten().cpu() for name in order])


def _global_mistake(case, expected, got):
    scores, sparsity = case
    if not isinstance(got, dict) or set(got) != set(expected):
        return "return a dict with one mask per name of scores, keyed by the same names" if isinstance(got, dict) \
            else None
    if not all(_is_mask(got[name], expected[name]) for name in expected):
        return "each mask is a bool tensor shaped like its scores (True = keep)"
    names = list(scores)
    flat_expected, flat_got = _cat(expected, names), _cat(got, names)
    local = {name: topk_mask(s, sparsity) for name, s in scores.items()}
    if all(torch.equal(got[n], local[n]) for n in names):
        return "that is one ranking per tensor (local): rank the entries of all tensors together"
    by_name = sorted(names)
    if by_name != names:
        flat = torch.cat([scores[n].detach().flatten().cpu() for n in by_name])
        keep = _lowest_first(flat, n_pruned(flat.numel(), sparsity))
        if torch.equal(_cat(got, by_name), keep):
            return f"concatenate the tensors in the dict's order ({names}), not sorted by name: ties follow that order"
    flat_scores = torch.cat([scores[n].detach().flatten().cpu() for n in names])
    found = _which_mistake(flat_scores, sparsity, flat_expected, flat_got)
    return found or _counts(flat_expected, flat_got)


exercise("3.3", "global masks with an exact total count", global_masks, _global_cases,
         hint="one ranking over the entries of all tensors (concatenated in the dict's order), then split it",
         diagnoses=(_raised, _global_mistake))
