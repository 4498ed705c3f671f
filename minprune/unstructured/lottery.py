"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with weight rewinding.

Train, prune the smallest weights, rewind the survivors to their values at initialisation (or at an early
step k, Frankle et al. 2020, "Linear mode connectivity"), and repeat. The control is the same mask with
freshly drawn random weights (`random_reinit`): a winning ticket trains better than its reinitialisation.
Masks stay applied through `minprune.apply_masks`, so rewinding writes the `weight_orig` tensors only.
A snapshot can be written back to the model on any device (`fit` may have moved it since the snapshot).
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minprune.masked import copy_model, get_masks, make_permanent
from minprune.train import check_model
from minprune.unstructured.masks import check_sparsity, iterative_sparsities, masks_sparsity
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer as stored (pruned weights keep their unmasked value), masks excluded.

    Keys are the plain names ('layers.1.weight', not 'layers.1.weight_orig').
    See notebooks/07_dynamic_pruning.ipynb.
    """
    check_model(model)
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
    storage = _storage(model)
    missing = sorted(set(storage) - set(saved))
    if missing or set(saved) - set(storage):
        raise ValueError(f"the snapshot does not match the model (missing {missing[:4]}, "
                         f"unknown {sorted(set(saved) - set(storage))[:4]})")
    for name, t in saved.items():
        if t.shape != storage[name].shape:
            raise ValueError(f"snapshot[{name!r}] has shape {tuple(t.shape)}, the model has "
                             f"{tuple(storage[name].shape)}")
    for name, t in saved.items():
        storage[name].copy_(t)
    for module in model.modules():  # recompute weight = weight_orig * weight_mask now
        for buffer_name, mask in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask"):
                attr = buffer_name.removesuffix("_mask")
                setattr(module, attr, getattr(module, f"{attr}_orig") * mask)
    return model


class RewindPoint:
    """A training callback that saves a `snapshot` after step `k` (k=0: call `save(model)` before training)."""

    def __init__(self, k: int):
        if not isinstance(k, int) or k < 0:
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
    See notebooks/07_dynamic_pruning.ipynb.
    """
    check_sparsity(final, "final")
    targets = iterative_sparsities(final, rounds)
    saved = rewind_to if rewind_to is not None else snapshot(model)
    rewind(copy_model(model), saved)  # check the snapshot fits before training anything
    rows = []
    for r, target in enumerate(targets, 1):
        result = train(model)
        prune(model, magnitude_scores(model), target, scope=scope)
        rewind(model, saved)
        rows.append({"round": r, "sparsity": masks_sparsity(get_masks(model)), "train_result": result})
    return rows
