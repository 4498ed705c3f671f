"""Chapter 5 (neuron and filter pruning): the exercises' designed cases and hints."""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.structured.dependency import trace_groups
from minprune.structured.selection import select_channels
from minprune.structured.surgery import remove_channels
from minprune.structured.unit_scores import unit_norms
from minprune.unstructured.masks import n_pruned


def _one_hidden_layer(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out, bias=False))


def _same(got, indices) -> bool:
    indices = torch.as_tensor(indices, dtype=torch.long)
    return isinstance(got, torch.Tensor) and got.shape == indices.shape and bool(torch.equal(got.long(), indices))


# Exercise 5.1: which neurons stay -------------------------------------------------------------------------------

def kept_neurons(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The library's kept neurons for these scores: `select_channels` on the hidden layer of a Linear-ReLU-Linear
    network (lowest scores go, round(sparsity * n) of them; among equal scores the later neuron goes first).

    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    net = _one_hidden_layer(1, len(scores), 1)
    graph = trace_groups(net, torch.zeros(1, 1))
    hidden = graph.prunable()[0].id
    return select_channels(graph, {hidden: scores}, sparsity)[hidden]


def _kept_cases() -> list[tuple]:
    """Ties (the later neuron goes first), signed scores, counts that round half to even, and keep-all."""
    g = torch.Generator().manual_seed(51)
    return [(torch.tensor([0.2, 0.5, 0.2, 0.9, 0.2, 0.1]), 0.5),  # the 0.1 and two of the three 0.2s go
            (torch.tensor([-3.0, 1.0, -0.5, 2.0, 0.1]), 0.4),  # signed: -3 and -0.5 are the lowest
            (torch.tensor([4.0, 1.0, 3.0, 6.0, 5.0, 2.0]), 0.25),  # round(1.5) = 2 neurons go
            (torch.randn(10, generator=g), 0.25),  # round(2.5) = 2 (ties to even), not 3
            (torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.5),  # all equal: the last two go
            (torch.rand(7, generator=g), 0.0),
            (torch.randn(23, generator=g), 0.7)]


def _kept_count(case, expected, got):
    scores, sparsity = case
    if isinstance(got, torch.Tensor) and got.dim() == 1 and len(got) != len(expected):
        n = len(scores)
        return (f"keep {len(expected)} of {n}: remove round(sparsity * n) = round({sparsity * n:g}) = "
                f"{n_pruned(n, sparsity)} neurons (mp.n_pruned: Python's round, halves to even), not int() or ceil")
    return None


def _kept_unsorted(case, expected, got):
    if _same(torch.as_tensor(got).sort().values, expected) and not _same(got, expected):
        return "the right neurons, in score order: return their indices sorted ascending"
    return None


def _kept_lowest(case, expected, got):
    scores, sparsity = case
    n_keep = len(scores) - n_pruned(len(scores), sparsity)
    if _same(got, torch.argsort(scores, stable=True)[:n_keep].sort().values):
        return "those are the lowest scores; the neurons with the lowest scores go, the highest stay"
    return None


def _kept_by_magnitude(case, expected, got):
    scores, sparsity = case
    if bool((scores < 0).any()) and _same(got, kept_neurons(scores.abs(), sparsity)):
        return "rank the scores as they are (higher = keep): a negative score is lower than any positive one"
    return None


def _kept_ties(case, expected, got):
    scores, sparsity = case
    if len(set(scores.tolist())) < len(scores) and isinstance(got, torch.Tensor) and len(got) == len(expected):
        return ("some neurons have equal scores here: among equal scores the later neuron goes first (the library's "
                "rule everywhere), so the earlier one stays; a stable sort keeps ties in index order")
    return None


exercise("5.1", "indices of the neurons that stay (lowest scores go)", kept_neurons, _kept_cases,
         hint="remove the round(sparsity * n) lowest scores and return the others' indices, sorted ascending",
         diagnoses=(_kept_count, _kept_unsorted, _kept_lowest, _kept_by_magnitude, _kept_ties))


# Exercise 5.2: remove hidden neurons from two Linear layers -----------------------------------------------------

def remove_neurons(W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor, keep: torch.Tensor) -> tuple:
    """`remove_channels` on a Linear-ReLU-Linear network holding these weights: (W1, b1, W2) of the smaller copy.

    W1: (hidden, in), b1: (hidden,), W2: (out, hidden), keep: sorted indices of the hidden neurons that stay.
    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    net = _one_hidden_layer(W1.shape[1], W1.shape[0], W2.shape[0])
    with torch.no_grad():
        net[0].weight.copy_(W1), net[0].bias.copy_(b1), net[2].weight.copy_(W2)
    graph = trace_groups(net, torch.zeros(1, W1.shape[1]))
    small = remove_channels(net, {graph.prunable()[0].id: keep}, graph)
    return small[0].weight.detach(), small[0].bias.detach(), small[2].weight.detach()


def _neuron_cases() -> list[tuple]:
    """Layers that are not square (in != hidden != out), so a wrong axis shows; one square case for the values."""
    g = torch.Generator().manual_seed(52)
    layers = [(3, 6, 4, [0, 3, 5]), (7, 5, 2, [1, 2]), (5, 8, 6, [1, 4]), (4, 4, 4, [0, 3]), (2, 5, 3, [2])]
    cases = []
    for n_in, hidden, n_out, keep in layers:
        cases.append((torch.randn(hidden, n_in, generator=g), torch.randn(hidden, generator=g),
                      torch.randn(n_out, hidden, generator=g), torch.tensor(keep)))
    return cases


_AXES = ("W1 is (hidden, in): a hidden neuron is a row of W1 (dim 0); W2 is (out, hidden): the same neuron is a "
         "column of W2 (dim 1), since every output reads it")


def _neuron_axes(case, expected, got):
    W1, b1, W2, keep = case
    if isinstance(got, (IndexError, RuntimeError)):
        return f"an index went past the end of an axis: {_AXES}"
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        return "return the three tensors (W1, b1, W2) as a tuple"
    shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in got]
    if shapes[0] != tuple(expected[0].shape) or shapes[2] != tuple(expected[2].shape):
        return _AXES
    if shapes[1] != tuple(expected[1].shape):
        return "b1 has one entry per hidden neuron: it loses the removed neurons' entries too"
    return None


def _neuron_indices(case, expected, got):
    W1, b1, W2, keep = case
    if isinstance(got, (tuple, list)) and len(got) == 3 and isinstance(got[1], torch.Tensor):
        if got[1].shape == b1[keep].shape and torch.equal(got[1], b1[: len(keep)]):
            return "`keep` lists the indices of the neurons that stay, not how many stay"
        dropped = torch.ones(len(b1), dtype=torch.bool)
        dropped[keep] = False
        if got[1].shape == b1[dropped].shape and torch.equal(got[1], b1[dropped]):
            return "`keep` lists the neurons that stay; those are the ones removed"
    return None


exercise("5.2", "remove hidden neurons from two Linear layers (W1 rows, b1 entries, W2 columns)", remove_neurons,
         _neuron_cases, hint="the next layer loses columns, not rows", diagnoses=(_neuron_axes, _neuron_indices))


# Exercise 5.3: the L1 score of every filter ---------------------------------------------------------------------

def _filter_cases() -> list[tuple]:
    """Signed weights, non-square kernels, 2-D, 3-D and 4-D weights, an all-zero filter, a weight that needs grad."""
    g = torch.Generator().manual_seed(53)
    conv = torch.randn(6, 4, 3, 5, generator=g)
    conv[2] = 0
    return [(conv,), (torch.randn(5, 7, generator=g),), (torch.randn(4, 2, 3, generator=g),),
            (torch.tensor([[[[-2.0]]], [[[0.5]]], [[[-0.25]]]]),),
            (nn.Parameter(torch.randn(3, 2, 1, 4, generator=g)),)]


def _filter_axes(case, expected, got):
    (W,) = case
    if isinstance(got, (IndexError, RuntimeError)) and "dimension" in str(got).lower():
        return (f"W is {W.dim()}-D here: a Linear weight is 2-D, a Conv1d's 3-D, a Conv2d's 4-D; sum over every axis "
                "but the first, whatever their number (W[i] is all of unit i)")
    if isinstance(got, torch.Tensor) and got.dim() > 1 and got.shape[0] == W.shape[0]:
        return "one number per unit: sum |W[i]| over every axis but the first, not only axis 1"
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        return f"one score per output unit: W.shape[0] = {W.shape[0]} scores (axis 0 of W indexes the units)"
    return None


def _filter_values(case, expected, got):
    (W,) = case
    if not (isinstance(got, torch.Tensor) and got.shape == expected.shape):
        return None
    rows = W.detach().flatten(1)
    close = lambda other: bool(torch.allclose(got.double(), other.double(), rtol=1e-4, atol=1e-6))  # noqa: E731
    if close(rows.sum(1)):
        return "that is the sum of W[i] with its signs: L1 adds the absolute values |W[i]|"
    if close(rows.norm(dim=1)):
        return "that is the L2 (Euclidean) norm; the L1 score adds the absolute values |W[i]|"
    if close(rows.abs().mean(1)):
        return "that is the mean of |W[i]|; the L1 score is their sum"
    return None


exercise("5.3", "L1 norm of every output unit of a weight (out, in, *kernel)", unit_norms, _filter_cases,
         hint="sum |W[i]| over every axis but the first", diagnoses=(_filter_axes, _filter_values))
