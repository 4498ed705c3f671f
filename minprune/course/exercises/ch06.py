"""Chapter 6 (structured pruning): the exercises' designed cases and hints.

Exercise 6.4 (the surgery of a conv-BN-conv triple) is in ch06_surgery, registered at the end of this module.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.structured.channel_rules import ChannelRule, register_rule
from minprune.structured.dependency import trace_groups
from minprune.structured.nm_sparsity import nm_mask
from minprune.structured.surgery import prune_channels, remove_channels


def _long(indices) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long)


def _same(got, indices) -> bool:
    indices = _long(indices)
    return isinstance(got, torch.Tensor) and got.shape == indices.shape and torch.equal(got.long(), indices)


# Exercise 6.1: the features a channel owns after a flatten ------------------------------------------------------

def flatten_index(keep: torch.Tensor, hw: int) -> torch.Tensor:
    """The surviving input features of the Linear layer after a flatten, read off `remove_channels`: a
    conv -> flatten -> Linear network whose column j holds the number j keeps the columns of the channels `keep`.

    See notebooks/06_structured_pruning.ipynb.
    """
    C = int(keep.max()) + 1
    net = nn.Sequential(nn.Conv2d(1, C, 1), nn.Flatten(), nn.Linear(C * hw, 1, bias=False))
    with torch.no_grad():
        net[2].weight.copy_(torch.arange(C * hw, dtype=torch.float32).reshape(1, -1))
    graph = trace_groups(net, torch.zeros(1, 1, 1, hw))
    small = remove_channels(net, {graph.outputs["0"]: keep}, graph)
    return small[2].weight.detach()[0].long()


def _flatten_cases() -> list[tuple]:
    """A single channel that is not channel 0, hw = 1, an odd hw, gaps between the kept channels."""
    return [(_long([1]), 4), (_long([0, 3, 4]), 1), (_long([2, 5, 6]), 5), (_long([0, 1, 7]), 2),
            (_long([3, 9]), 9)]


def _flatten_diagnosis(case, expected, got):
    keep, hw = case
    if not isinstance(got, torch.Tensor):
        return "return a LongTensor (e.g. built with torch.arange), not a list"
    if got.shape != expected.shape:
        if got.numel() == len(keep):
            return f"every kept channel owns hw = {hw} features: return all of them, {hw} per channel"
        return f"{len(keep)} channels of {hw} features each: {len(keep) * hw} indices"
    if _same(got.sort().values, expected):
        return "in order: all features of the first kept channel, then all of the next one"
    if _same(got, expected + 1) or _same(got, expected - 1):
        return "channel c's first feature is c * hw exactly (indices count from 0), its last c * hw + hw - 1"
    if _same(got, torch.arange(len(keep) * hw)):
        return ("those are positions in the *smaller* layer; return which of the original layer's features survive "
                "(channel c owns c * hw ... c * hw + hw - 1)")
    if _same(got, (keep[:, None] + torch.arange(hw)).flatten()):
        return "channel c's features start at c * hw: the channel index is multiplied by hw"
    return None


exercise("6.1", "input features of the Linear layer after a flatten that survive channel pruning", flatten_index,
         _flatten_cases, hint="channel c owns c*hw ... c*hw + hw - 1", diagnoses=(_flatten_diagnosis,))


# Exercise 6.2: the ChannelRule of ChannelAffine -----------------------------------------------------------------

class ChannelAffine(nn.Module):
    """y[:, c] = weight[c] * x[:, c] + bias[0, c, 0, 0] for an (N, C, H, W) input (the notebook's layer)."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, num_features))
        self.bias = nn.Parameter(torch.linspace(-0.1, 0.1, num_features).reshape(1, -1, 1, 1))

    def forward(self, x):
        return torch.einsum("nchw,c->nchw", x, self.weight) + self.bias


def affine_rule() -> ChannelRule:
    """The ChannelRule of ChannelAffine: a follower whose `weight` (dim 0) and `bias` (dim 1) the channels index.

    See notebooks/06_structured_pruning.ipynb.
    """
    return ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 1}, sizes={"num_features": "out"})


def _affine_cnn(layer_type: type, widths: tuple) -> nn.Sequential:
    """conv -> layer -> ReLU -> conv -> layer -> ReLU -> pooled Linear: the notebook's small_cnn, any widths."""
    a, b = widths
    with torch.random.fork_rng():  # seeded weights, and the notebook's random numbers stay as they were
        torch.manual_seed(62)
        return nn.Sequential(nn.Conv2d(1, a, 3, padding=1), layer_type(a), nn.ReLU(),
                             nn.Conv2d(a, b, 3, padding=1), layer_type(b), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(b, 10))


def pruned_affine(rule_fn, layer_type: type, widths: tuple, sparsity: float) -> tuple:
    """Register `rule_fn()` for `layer_type`, prune `sparsity` of the channels of a small CNN built with it, and
    return (num_features, weight shape, bias shape) of each pruned layer, and the pruned CNN's outputs."""
    register_rule(layer_type, rule_fn())
    model = _affine_cnn(layer_type, widths)
    small = prune_channels(model, sparsity, example=torch.zeros(1, 1, 6, 6))
    sizes = [(m.num_features, tuple(m.weight.shape), tuple(m.bias.shape))
             for m in small.modules() if isinstance(m, layer_type)]
    with torch.no_grad():
        x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(6))
        return sizes, small(x)


def _affine_cases() -> list[tuple]:
    """Widths that differ between the layers, sparsities that remove an odd number of channels, and none."""
    return [(ChannelAffine, (6, 10), 0.25), (ChannelAffine, (12, 5), 0.6), (ChannelAffine, (4, 4), 0.0)]


def _affine_diagnosis(case, expected, got):
    if isinstance(got, (ValueError, TypeError)) and "rule" in str(got).lower() and "dim" not in str(got):
        return ("ChannelAffine reads and writes the same channels (like BatchNorm): a follower, whose tensors the "
                "channels index; see the rule of ChannelScale above")
    if isinstance(got, Exception):
        if "axis" in str(got):
            return "the channels of an (N, C, H, W) input are on axis 1"
        return ("bias is stored as (1, C, 1, 1): the channels index its dim 1, while weight's channels are on "
                "dim 0; every tensor the channels index must be named in channel_tensors, with its dim")
    sizes, _ = got
    if any(size[0] != want[0] for size, want in zip(sizes, expected[0])):
        return "num_features still holds the old width: name it in sizes, so the pruned layer knows its new width"
    return None


exercise("6.2", "the ChannelRule of ChannelAffine", affine_rule, _affine_cases, call=pruned_affine,
         hint="a ChannelRule names the tensors the channels index (and along which dim) and the attribute that "
              "holds the width", diagnoses=(_affine_diagnosis,))


# Exercise 6.3: an N:M mask --------------------------------------------------------------------------------------

def _groups(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.reshape(t.shape[0], -1, m)  # (rows, cols / m, m)


def _valid_groups(scores: torch.Tensor, n: int, m: int, mask: torch.Tensor) -> torch.Tensor:
    """Which groups of `mask` keep n entries that are n highest of their group (any choice among equal scores)."""
    s, keep = _groups(scores.detach(), m), _groups(mask, m)
    lowest_kept = torch.where(keep, s, torch.inf).amin(dim=2)
    highest_dropped = torch.where(keep, -torch.inf, s).amax(dim=2)
    return (keep.sum(dim=2) == n) & (lowest_kept >= highest_dropped)


def nm_choice(fn, scores: torch.Tensor, n: int, m: int):
    """fn(scores, n, m), with each group that keeps a right choice among equal scores shown as the library's choice
    (which of two equal scores stays is not part of the answer); other groups are left as they are."""
    mask = fn(scores, n, m)
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == scores.shape):
        return mask
    valid = _valid_groups(scores, n, m, mask)
    return torch.where(valid[..., None], _groups(nm_mask(scores, n, m), m), _groups(mask, m)).reshape(scores.shape)


def _nm_cases() -> list[tuple]:
    """Ties at the n-th score, signed scores, rows of several groups, several rows (not square), n = m."""
    g = torch.Generator().manual_seed(63)
    return [(torch.tensor([[3.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 5.0, 1.0, 5.0, 5.0]]), 2, 4),
            (torch.tensor([[-1.0, -3.0, 2.0, -0.5], [0.2, -0.9, -0.1, 0.4]]), 2, 4),
            (torch.rand(3, 8, generator=g), 2, 4), (torch.randn(2, 16, generator=g), 1, 8),
            (torch.rand(4, 6, generator=g), 2, 3), (torch.rand(5, 4, generator=g), 3, 4),
            (torch.tensor([[1.0, 1.0, 2.0, 2.0], [4.0, 4.0, 4.0, 4.0]]), 1, 4),
            (torch.rand(2, 8, generator=g), 4, 4)]


def _nm_counts(case, expected, got):
    scores, n, m = case
    if not (isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == scores.shape):
        return None
    s = _groups(scores, m)
    nth_highest = s.topk(n, dim=2).values[..., -1:]
    if torch.equal(got, (s >= nth_highest).reshape(scores.shape)):
        return ("a group whose scores tie keeps more than n entries: comparing with the n-th highest score (>=) "
                "keeps every score equal to it; keep exactly n per group (choose among equal scores by position)")
    if torch.equal(got, (s > nth_highest).reshape(scores.shape)) or (
            n < m and torch.equal(got, (s > s.kthvalue(m - n, dim=2, keepdim=True).values).reshape(scores.shape))):
        return ("a group whose scores tie keeps fewer than n entries: a strict threshold (>) drops every score equal "
                "to it; keep exactly n per group")
    if bool((_groups(got, m).sum(dim=2) != n).any()):
        return (f"exactly n = {n} True in every group of m = {m} consecutive entries of a row (row r, columns "
                "j*m ... j*m + m - 1)")
    return None


def _nm_selection(case, expected, got):
    scores, n, m = case
    if not (isinstance(got, torch.Tensor) and got.shape == scores.shape and got.dtype == torch.bool):
        return None
    if bool((scores < 0).any()) and torch.equal(got, nm_mask(scores.abs(), n, m)):
        return "rank the scores as they are (higher = keep), not their absolute values"
    if torch.equal(got, nm_mask(-scores, n, m)):
        return "those are the n lowest scores of each group; the n highest stay"
    return ("a group is m *consecutive* entries of one row (row r, columns j*m ... j*m + m - 1); keep the n highest "
            "of each")


exercise("6.3", "N:M mask: the n highest of every m consecutive scores of a row", nm_mask, _nm_cases, call=nm_choice,
         hint="group each row into blocks of m, keep the n largest per block", diagnoses=(_nm_counts, _nm_selection))


from minprune.course.exercises import ch06_surgery  # noqa: E402, F401 - registers Exercise 6.4
