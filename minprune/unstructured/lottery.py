"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with weight rewinding.

Train, prune the smallest weights, rewind the survivors to their values at initialisation (or at an early
step k, Frankle et al. 2020, "Linear mode connectivity"), and repeat. The control is the same mask with
freshly drawn random weights (`random_reinit`): a winning ticket trains better than its reinitialisation.
Masks stay applied through `minprune.apply_masks`, so rewinding writes the `weight_orig` tensors only.
A snapshot can be written back to the model on any device (`fit` may have moved it since the snapshot).
Snapshots, rewinding and `random_reinit` work in any float dtype; `find_ticket` trains, so it refuses float16
and bfloat16 models (call model.float() first). See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from torch import nn

from minprune.masked import copy_model, get_masks, make_permanent
from minprune.unstructured.masks import check_scope, check_sparsity, iterative_sparsities, masks_sparsity
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores
from minprune.validate import callable_arg, float_model, model_arg, non_negative_int


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer as stored (pruned weights keep their unmasked value), masks excluded.

    Keys are the plain names ('layers.1.weight', not 'layers.1.weight_orig').
    See notebooks/07_dynamic_pruning.ipynb.
    """
    model_arg(model)
    state = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not name.endswith("_mask"):
            state[name.removesuffix("_orig")] = t.detach().clone()
    return state


def _storage(model: nn.Module) -> dict[str, torch.Tensor]:
    """Where each snapshot entry is written back: the parameter, its `_orig`, or the buffer."""
    out = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not name.endswith("_mask"):
            out[name.removesuffix("_orig")] = t
    return out


@torch.no_grad()
def rewind(model: nn.Module, saved: dict[str, torch.Tensor]) -> nn.Module:
    """Write the `saved` snapshot back into `model` in place; masks are kept. Returns `model`.

    See notebooks/07_dynamic_pruning.ipynb.
    """
    model_arg(model)
    return _rewind(model, saved, "saved")


@torch.no_grad()
def _rewind(model: nn.Module, saved, what: str) -> nn.Module:
    _check_snapshot(saved, what)
    storage = _storage(model)
    missing = sorted(set(storage) - set(saved))
    if missing or set(saved) - set(storage):
        raise ValueError(f"{what} (the snapshot) does not match the model (missing {missing[:4]}, "
                         f"unknown {sorted(set(saved) - set(storage))[:4]})")
    for name, t in saved.items():
        if t.shape != storage[name].shape:
            raise ValueError(f"{what}[{name!r}] has shape {tuple(t.shape)}, the model has "
                             f"{tuple(storage[name].shape)}")
    for name, t in saved.items():
        storage[name].copy_(t)
    for module in model.modules():  # recompute weight = weight_orig * weight_mask now
        for buffer_name, mask in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask"):
                attr = buffer_name.removesuffix("_mask")
                setattr(module, attr, getattr(module, f"{attr}_orig") * mask)
    return model


def _check_snapshot(saved, what: str = "saved") -> None:
    """TypeError/ValueError unless `saved` is a dict {name: tensor with values}, as `snapshot` returns."""
    if not isinstance(saved, Mapping):
        raise TypeError(f"{what} must be a snapshot dict {{name: tensor}} (mp.snapshot(model)), got "
                        f"{type(saved).__name__}")
    for name, t in saved.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}[{name!r}] must be a tensor, got {type(t).__name__}")
        if t.is_meta:
            raise ValueError(f"{what}[{name!r}] is on the meta device and holds no values")


class RewindPoint:
    """A training callback that saves a `snapshot` after step `k` (k=0: call `save(model)` before training)."""

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a step >= 0, got {k!r}")
        self.k, self.state = k, None

    def save(self, model: nn.Module) -> None:
        self.state = snapshot(model)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        if step == self.k:
            self.save(model)


def random_reinit(model: nn.Module, seed: int = 0) -> nn.Module:
    """The control: keep the masks, draw fresh random weights with each layer's own initialiser (in place).

    The weights are drawn on a CPU copy, so the same seed gives the same control on every device.
    See notebooks/07_dynamic_pruning.ipynb.
    """
    model_arg(model)
    non_negative_int(seed, "seed")
    fresh = make_permanent(copy_model(model)).cpu()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return rewind(model, snapshot(fresh))


def find_ticket(model: nn.Module, train: Callable[[nn.Module], object], final: float, *, rounds: int = 3,
                rewind_to: dict | None = None, scope: str = "global") -> list[dict]:
    """Iterative magnitude pruning in place: `rounds` times train(model), prune, rewind to `rewind_to`.

    rewind_to: a `snapshot` (default: the weights `model` has now, i.e. rewinding to initialisation).
    Returns one row per round; afterwards `model` is the ticket: final masks, rewound weights, not trained.
    Every argument is checked, and the first round's pruning rehearsed on a copy, before `train` runs.
    float16/bfloat16 models are refused. See notebooks/07_dynamic_pruning.ipynb.
    """
    float_model(model, "find_ticket")
    callable_arg(train, "train")
    check_sparsity(final, "final")
    targets = iterative_sparsities(final, rounds)
    check_scope(scope)
    saved = rewind_to if rewind_to is not None else snapshot(model)
    _rehearse_round(model, saved, targets[0], scope)
    rows = []
    for r, target in enumerate(targets, 1):
        result = train(model)
        prune(model, magnitude_scores(model), target, scope=scope)
        rewind(model, saved)
        rows.append({"round": r, "sparsity": masks_sparsity(get_masks(model)), "train_result": result})
    return rows


def _rehearse_round(model: nn.Module, saved: dict, target: float, scope: str) -> None:
    """Rewind and prune a copy of `model` as the first round will: a snapshot that does not fit, weights that
    cannot be scored or a model already pruned harder than `target` are refused before anything trains."""
    twin = _rewind(copy_model(model), saved, "rewind_to")
    with warnings.catch_warnings():  # the first round itself warns, if it must
        warnings.simplefilter("ignore")
        prune(twin, magnitude_scores(twin), target, scope=scope)
