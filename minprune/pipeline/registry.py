"""One registry of importance scores by name: the only place recipes, widgets and the pipeline look them up.

Two kinds, as the course teaches them:
- weight scores (one number per weight; notebooks 02-04): `magnitude`, `random`, `taylor`, `snip`;
- unit scores (one number per output neuron or channel; notebooks 05-06): `l1`, `l2`, `bn`, `taylor`, `random`.
A name that is not registered is an error that lists the registered ones; nothing falls back to a default.
Add a score with `register(kind, Score(...))`. See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from minprune.structured import unit_scores as group_scores
from minprune.unstructured import scores
from minprune.validate import callable_arg

KINDS = ("weight", "unit")


@dataclass(frozen=True)
class Score:
    """A named importance score: `compute(model, loader, device)` returns {parameter name: scores}."""

    name: str
    label: str  # how a widget shows it
    needs_data: bool  # True: `compute` reads batches from `loader`
    compute: Callable[[nn.Module, object, object], dict]

    def __post_init__(self):
        for field_name in ("name", "label"):
            if not isinstance(getattr(self, field_name), str) or not getattr(self, field_name):
                raise TypeError(f"Score.{field_name} must be a non-empty str, got {getattr(self, field_name)!r}")
        if not isinstance(self.needs_data, bool):
            raise TypeError(f"Score.needs_data must be True or False, got {self.needs_data!r}")
        callable_arg(self.compute, "Score.compute")


def random_unit_scores(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A uniform random score per output unit, seeded: the control every unit score has to beat."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(s.shape, generator=g) for name, s in group_scores.norm_scores(model).items()}


REGISTRY: dict[str, dict[str, Score]] = {
    "weight": {s.name: s for s in (
        Score("magnitude", "magnitude", False, lambda model, loader, device: scores.magnitude_scores(model)),
        Score("random", "random", False, lambda model, loader, device: scores.random_scores(model)),
        Score("taylor", "taylor", True, lambda model, loader, device: scores.taylor_scores(model, loader,
                                                                                           device=device)),
        Score("snip", "SNIP", True, lambda model, loader, device: scores.snip_scores(model, loader, device=device)),
    )},
    "unit": {s.name: s for s in (
        Score("l1", "L1", False, lambda model, loader, device: group_scores.norm_scores(model, p=1)),
        Score("l2", "L2", False, lambda model, loader, device: group_scores.norm_scores(model, p=2)),
        Score("bn", "BN scale", False, lambda model, loader, device: group_scores.bn_scale_scores(model)),
        Score("taylor", "taylor", True, lambda model, loader, device: group_scores.taylor_unit_scores(
            model, loader, device=device)),
        Score("random", "random", False, lambda model, loader, device: random_unit_scores(model)),
    )},
}


def score_names(kind: str) -> tuple[str, ...]:
    """The registered names of one kind ('weight' or 'unit'), in the order they were registered.

    See notebooks/10_capstone.ipynb.
    """
    return tuple(_of_kind(kind))


def get_score(kind: str, name: str) -> Score:
    """The registered score `name` of `kind`; an unknown name is a ValueError listing the known ones.

    See notebooks/10_capstone.ipynb.
    """
    known = _of_kind(kind)
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"unknown {kind} score {name!r}; choose one of {', '.join(known)}")
    return known[name]


def compute_scores(kind: str, name: str, model: nn.Module, loader=None, *, device=None) -> dict:
    """Scores `name` of `kind` for `model` (data-driven ones read `loader`). See notebooks/10_capstone.ipynb."""
    return get_score(kind, name).compute(model, loader, device)


def register(kind: str, score: Score) -> None:
    """Add a score (or replace one of the same name) for recipes, widgets and the pipeline.

    See notebooks/10_capstone.ipynb.
    """
    if not isinstance(score, Score):
        raise TypeError(f"register expects an importance.Score, got {type(score).__name__}")
    _of_kind(kind)[score.name] = score


def _of_kind(kind: str) -> dict[str, Score]:
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise ValueError(f"score kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return REGISTRY[kind]
