"""Which channels stay: one score per channel of each coupled group, then the lowest-scored channels go.

`score_groups` sums the unit scores of a group's members; `select_channels` keeps, per group (scope='local') or
over the whole model (scope='global'), the highest-scored channels. Ties are broken the same way everywhere: among
equal scores the later channel goes first. Global selection removes exactly the number of channels asked and
never empties a layer. Groups read by multi-head attention keep the same number of channels in every head.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import torch

from minprune.structured.channel_groups import DependencyGraph, Group, check_graph
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import positive_int


def check_scores(s, name: str, size: int) -> torch.Tensor:
    """`s` when it is a real 1-D tensor of `size` finite scores; else TypeError / ValueError naming `name`.

    NaN cannot be ranked (every comparison with it is False) and inf sums to NaN, so both are refused.
    """
    if not isinstance(s, torch.Tensor) or s.dtype == torch.bool or s.is_complex():
        kind = f"a {s.dtype} tensor" if isinstance(s, torch.Tensor) else type(s).__name__
        raise TypeError(f"{name} must be a 1-D tensor of unit scores (numbers), got {kind}")
    if s.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {tuple(s.shape)}")
    if s.is_floating_point() and not bool(torch.isfinite(s).all()):
        bad = int((~torch.isfinite(s)).sum())
        raise ValueError(f"{name} contains NaN or Inf ({bad} of {size} entries); scores are ranked, so they must be "
                         f"finite numbers (recompute them from finite weights)")
    return s


def score_groups(graph: DependencyGraph, scores: dict) -> dict[int, torch.Tensor]:
    """One score per channel of each prunable group: the sum of its members' unit scores.

    scores: {'<module>.weight': 1-D tensor over output units}, e.g. from `group_scores.norm_scores`.
    See notebooks/06_structured_pruning.ipynb.
    """
    check_graph(graph)
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict {{'<module>.weight': 1-D tensor of unit scores}}, "
                        f"got {type(scores).__name__}")
    out = {}
    for group in graph.prunable():
        total = torch.zeros(group.size)
        found = False
        for name in group.producers + group.followers:
            s = scores.get(f"{name}.weight")
            if s is not None:
                check_scores(s, f"scores['{name}.weight']", group.size)
                total += s.detach().float().cpu()
                found = True
        if not found:
            raise ValueError(f"no unit scores for the group of {group.producers}; score one of its layers")
        out[group.id] = total
    return out


def _group_sparsity(group: Group, sparsity) -> float:
    if not isinstance(sparsity, dict):
        return check_sparsity(sparsity)
    values = {check_sparsity(sparsity[n], f"sparsity[{n!r}]") for n in group.producers if n in sparsity}
    if len(values) > 1:
        raise ValueError(f"layers {group.producers} share channels (coupled) but got different sparsities {values}")
    return values.pop() if values else 0.0


def select_channels(graph: DependencyGraph, group_scores: dict, sparsity, *, scope: str = "local",
                    round_to: int | None = None) -> dict:
    """Which channels stay: {group id: sorted LongTensor of kept channel indices}; lowest scores go.

    sparsity: a fraction of channels in [0, 1), or {producer module name: fraction} per layer (local only).
    scope='global' ranks all channels together, removes exactly that fraction of them and keeps at least one per
    group. Among equal scores the later channel goes first.
    round_to: round each group's kept count down to a multiple of `round_to` (at least `round_to`), as
    Torch-Pruning does, so that widths fit the CPU's vector lanes (8 floats for AVX2, 16 for AVX-512).
    See notebooks/06_structured_pruning.ipynb.
    """
    check_graph(graph)
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    positive_int(round_to, "round_to", none_ok=True)
    groups = {g.id: g for g in graph.prunable()}
    if not groups:
        return {}
    if not isinstance(group_scores, dict):
        raise TypeError(f"group_scores must be a dict {{group id: 1-D tensor}} from score_groups(graph, scores), "
                        f"got {type(group_scores).__name__}")
    missing = [gid for gid in groups if gid not in group_scores]
    if missing:
        raise ValueError(f"group_scores has no scores for groups {missing}; use score_groups(graph, scores)")
    for gid, group in groups.items():
        check_scores(group_scores[gid], f"group_scores[{gid}]", group.size)
    if scope == "global":
        if isinstance(sparsity, dict):
            raise ValueError("scope='global' takes one sparsity for the whole model, not a dict")
        n_keep = _global_counts(groups, group_scores, check_sparsity(sparsity))
    else:
        n_keep = _local_counts(groups, sparsity)
    keep = {}
    for gid, group in groups.items():
        blocks = graph.blocks.get(gid, 1)
        k = _rounded(n_keep[gid], group.size, round_to)
        keep[gid] = _top(group_scores[gid], k, blocks)
    return keep


def _top(scores: torch.Tensor, k: int, blocks: int) -> torch.Tensor:
    """Sorted indices of the k best scores; with blocks > 1, the same number from each of `blocks` equal blocks."""
    if blocks == 1:
        return torch.argsort(scores, descending=True, stable=True)[:k].sort().values
    size = len(scores) // blocks
    per_block = max(1, k // blocks)
    return torch.cat([_top(scores[b * size:(b + 1) * size], per_block, 1) + b * size for b in range(blocks)])


def _rounded(n_keep: int, size: int, round_to: int | None) -> int:
    """`n_keep` rounded down to a multiple of `round_to`, but at least `round_to` (and at most `size`)."""
    if not round_to or n_keep == size:
        return n_keep
    return min(size, max(round_to, n_keep - n_keep % round_to))


def _local_counts(groups: dict, sparsity) -> dict[int, int]:
    if isinstance(sparsity, dict):
        known = [name for g in groups.values() for name in g.producers]
        unknown = [name for name in sparsity if name not in known]
        if unknown:
            raise ValueError(f"sparsity names {unknown}, which are not prunable layers; choose from {known}")
    counts = {}
    for gid, group in groups.items():
        n_remove = n_pruned(group.size, _group_sparsity(group, sparsity))
        if n_remove >= group.size:
            raise ValueError(f"sparsity would remove every channel of {group.producers}; keep at least one")
        counts[gid] = group.size - n_remove
    return counts


def _global_counts(groups: dict, group_scores: dict, sparsity: float) -> dict[int, int]:
    """Kept channels per group when all channels are ranked together: exactly the fraction asked goes, from the
    lowest score up (ties: the later channel first), skipping a group's last channel."""
    ids = list(groups)
    flat = torch.cat([group_scores[gid] for gid in ids])
    owner = torch.cat([torch.full((groups[gid].size,), i) for i, gid in enumerate(ids)])
    n_remove = n_pruned(len(flat), sparsity)
    left = [groups[gid].size for gid in ids]
    removed = 0
    for i in owner[torch.argsort(flat, descending=True, stable=True).flip(0)].tolist():
        if removed == n_remove:
            break
        if left[i] > 1:
            left[i] -= 1
            removed += 1
    if removed < n_remove:
        raise ValueError(f"sparsity {sparsity} would empty a layer: at most {removed} of {len(flat)} channels can go")
    return {gid: left[i] for i, gid in enumerate(ids)}
