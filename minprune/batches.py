"""What a loader is, and its first batch read without side effects: the checks every function taking data runs
before it changes anything (`fit`, `evaluate`, scores, distillation, the pipeline).

`check_loader` refuses None, strings, dicts and tensors (they iterate, but not over (x, y) batches);
`peek_batches` reads the first batch and puts the random state back, so a run that follows is unchanged;
`check_batch_fits` runs that batch through the model once, changing nothing, and refuses a batch the model
cannot run or labels that are not class indices of its outputs (`check_labels`); `peek_fitting_batches` does
all three. See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn

from minprune.devices import model_device
from minprune.validate import model_arg

CANNOT_RUN = "the model cannot run on the loader's batches"  # every message of check_batch_fits starts so
LABEL_DTYPES = (torch.int64, torch.uint8)  # the class-index dtypes cross entropy takes


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


def read_first_batch(loader, name: str = "loader", *, reiterable: bool = False):
    """(the first batch as it comes, the batches to iterate): `peek_batches` without its check of the batch, for
    the functions that word that check themselves. ValueError for an empty loader."""
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
    return first, batches


def peek_batches(loader, name: str = "loader", *, reiterable: bool = False):
    """(first batch (x, y), the batches to iterate): the first batch checked before anything changes.

    A re-iterable loader (a DataLoader) is read once with its random state put back, so the run that follows is
    the same as without the peek; a one-shot iterator is read once and its first batch chained back.
    Raises TypeError for a loader that is not one, or whose first batch is not an (x, y) pair of tensors, and
    ValueError for an empty loader.
    """
    first, batches = read_first_batch(loader, name, reiterable=reiterable)
    return _check_batch(first, name), batches


def input_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype every batch is cast to: the model's, when all its floating parameters share one."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def to_model_input(x: torch.Tensor, device, dtype) -> torch.Tensor:
    return x.to(device, dtype) if dtype is not None and x.is_floating_point() else x.to(device)


@contextmanager
def eval_mode_kept(model: nn.Module):
    """Every module in eval mode for the block; each module's own train/eval flag put back afterwards."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, training in flags.items():
            m.training = training


def _expected_input(model: nn.Module) -> str:
    shape = getattr(model, "input_shape", None)
    return f"; the model expects input of shape (batch, {', '.join(map(str, shape))})" if shape else ""


def _run_once(model: nn.Module, x: torch.Tensor, name: str):
    """model(x) in eval mode without gradients, where the model sits: nothing of the model changes (BatchNorm
    statistics neither); a batch it cannot run raises ValueError naming `name` and the expected input shape."""
    try:
        with torch.no_grad(), eval_mode_kept(model):
            return model(to_model_input(x, model_device(model), input_dtype(model)))
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # a wrong input shape or dtype, found inside
        expected = "" if "expects input of shape" in str(exc) else _expected_input(model)
        raise ValueError(f"{CANNOT_RUN}: {name} yields x of shape {tuple(x.shape)} ({x.dtype}){expected}: "
                         f"{exc}") from exc


def _label_shape(out, x: torch.Tensor, name: str) -> tuple[int, ...]:
    """The labels' shape the model's output `out` asks for: the output's shape without its last axis, the classes
    ((batch,) for (batch, classes) logits; (batch, t) for a sequence model's (batch, t, vocabulary) logits)."""
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or len(out) != len(x):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{CANNOT_RUN}: on {name}'s first batch (x of shape {tuple(x.shape)}) the model returns "
                         f"{got}, not logits of shape ({len(x)}, classes) or ({len(x)}, ..., classes)")
    return tuple(out.shape[:-1])


def check_labels(y: torch.Tensor, classes: int, name: str = "loader", shape: tuple | None = None) -> None:
    """Raise ValueError, naming `name`, unless `y` holds integer class indices (int64 or uint8) in [0, classes)
    of the given `shape` (default: one per example). Reads y only."""
    accepted = f"integer class indices in [0, {classes})"
    if y.dtype not in LABEL_DTYPES:
        raise ValueError(f"{CANNOT_RUN}: {name} yields {y.dtype} labels, but labels must be {accepted} "
                         f"(torch.long: y.long())")
    shape = (len(y),) if shape is None else tuple(shape)
    if tuple(y.shape) != shape:
        raise ValueError(f"{CANNOT_RUN}: {name} yields labels of shape {tuple(y.shape)}, but the model needs "
                         f"{shape}: one of {accepted} per example")
    bad = y[(y < 0) | (y >= classes)]
    if bad.numel():
        raise ValueError(f"{CANNOT_RUN}: {name} yields label {int(bad[0])}, but the model has {classes} outputs; "
                         f"labels must be {accepted}")


def check_batch_fits(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], name: str = "loader") -> int:
    """The model's number of outputs, after running `batch` (x, y), the first batch of `name`, through `model`
    once without changing it (eval mode, no gradients, on the model's device and dtype; every train/eval flag
    put back, BatchNorm statistics untouched).

    ValueError naming `name` for a batch the model cannot run (with the input shape it expects), an output that
    is not (batch, classes) logits, or labels that are not integer class indices in [0, outputs). The one check
    every function taking data runs before it changes anything; a model on the meta device is refused.
    """
    model_arg(model)
    x, y = batch
    out = _run_once(model, x, name)
    shape = _label_shape(out, x, name)
    check_labels(y, out.shape[-1], name, shape)
    return out.shape[-1]


def peek_fitting_batches(model: nn.Module, loader, name: str = "loader", *, reiterable: bool = False):
    """`peek_batches(loader)` whose first batch passed `check_batch_fits(model)`: (first batch, the batches)."""
    first, batches = peek_batches(loader, name, reiterable=reiterable)
    check_batch_fits(model, first, name)
    return first, batches
