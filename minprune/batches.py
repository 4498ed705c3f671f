"""What a loader is, and its first batch read without side effects: the checks every function taking data runs
before it changes anything (`fit`, `evaluate`, scores, distillation, the pipeline).

`check_loader` refuses None, strings, dicts and tensors (they iterate, but not over (x, y) batches);
`peek_batches` reads the first batch and puts the random state back, so a run that follows is unchanged.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn


def _loader_error(name: str, what: str) -> TypeError:
    return TypeError(f"{name} must be an iterable of (x, y) batches such as a DataLoader, {what}")


def check_loader(loader, name: str = "loader", *, reiterable: bool = False) -> None:
    """Raise TypeError unless `loader` can be iterated for (x, y) batches (a DataLoader, a list of pairs, ...).

    None, strings, dicts and tensors are refused; reiterable=True also refuses one-shot iterators (generators),
    which `fit` could read for one epoch only. Reads nothing.
    """
    if loader is None or isinstance(loader, (str, bytes, Mapping, torch.Tensor)) or not hasattr(loader, "__iter__"):
        raise _loader_error(name, f"got {type(loader).__name__} {loader!r:.60}")
    if reiterable and isinstance(loader, Iterator):
        raise _loader_error(name, f"that can be read again for every epoch; got a one-shot {type(loader).__name__}")


def _generators(loader) -> list[torch.Generator]:
    """The torch generators a DataLoader draws from when it starts an iteration (its own and its sampler's)."""
    found = [getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)]
    unique = []
    for g in found:
        if isinstance(g, torch.Generator) and all(g is not u for u in unique):
            unique.append(g)
    return unique


@contextmanager
def _random_state_kept(loader):
    """Put back the global torch RNG and the loader's generators after the block (a peek must not shift them)."""
    global_state = torch.random.get_rng_state()
    states = [(g, g.get_state()) for g in _generators(loader)]
    try:
        yield
    finally:
        torch.random.set_rng_state(global_state)
        for g, state in states:
            g.set_state(state)


def _check_batch(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise _loader_error(name, f"but its first batch is {type(batch).__name__} {batch!r:.60}")
    x, y = batch
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(f"{name} yields batches whose x and y differ in length: x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}; each batch must be (inputs, labels) of the same batch size")
    return x, y


def peek_batches(loader, name: str = "loader", *, reiterable: bool = False):
    """(first batch (x, y), the batches to iterate): the first batch checked before anything changes.

    A re-iterable loader (a DataLoader) is read once with its random state put back, so the run that follows is
    the same as without the peek; a one-shot iterator is read once and its first batch chained back.
    Raises TypeError for a loader that is not one, or whose first batch is not an (x, y) pair of tensors, and
    ValueError for an empty loader.
    """
    check_loader(loader, name, reiterable=reiterable)
    if isinstance(loader, Iterator):
        first = next(loader, None)
        batches = loader if first is None else chain([first], loader)
    else:
        with _random_state_kept(loader):
            first = next(iter(loader), None)
        batches = loader
    if first is None:
        raise ValueError(f"{name} is an empty loader: it yielded no batches")
    return _check_batch(first, name), batches


def input_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype every batch is cast to: the model's, when all its floating parameters share one."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def to_model_input(x: torch.Tensor, device, dtype) -> torch.Tensor:
    return x.to(device, dtype) if dtype is not None and x.is_floating_point() else x.to(device)
