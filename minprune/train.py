"""Training and evaluation: `fit`, `evaluate`, `seed_everything`.

The loop is plain on purpose, so that pruning code can hook into it through callbacks
(`on_step_end(model, step)` after every optimizer step, `on_epoch_end(model, epoch, history)`)
and masks applied with `minprune.apply_masks` stay applied while training.
Devices: `fit` and `evaluate` take `device=None`, meaning `mp.device()` (the GPU if there is one, or
$MINPRUNE_DEVICE); they move the model there in place and every batch with it (see `minprune.devices`).
Bad arguments are refused before the model changes: the loaders' first batches are read (and the random state
put back) and run through the model once in eval mode without gradients (`batches.check_batch_fits`: the input
shape, and labels that must be class indices of the model's outputs) before training starts, and a failed call
leaves the model's train/eval flag and device as they were.
fit trains float32 or float64 models; evaluate also runs float16 and bfloat16 ones (each batch is cast to the
model's dtype). See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from minprune import devices
from minprune.batches import check_labels, input_dtype, peek_fitting_batches, to_model_input
from minprune.optimizers import check_lr, check_optimizer, check_optimizer_name, make_optimizer
from minprune.validate import callable_arg, check_flag, float_model, model_arg, non_negative_int

SEED_LIMIT = 2**32  # NumPy's seeds are below 2**32
HALF_DTYPES = (torch.float16, torch.bfloat16)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch so that CPU runs are bit-for-bit repeatable."""
    non_negative_int(seed, "seed")
    if seed >= SEED_LIMIT:
        raise ValueError(f"seed must be a non-negative int below 2**32, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def check_model(model, what: str = "model") -> None:
    """Raise TypeError unless `model` is a torch.nn.Module (so a wrong argument fails with a clear message)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")


def check_finite_weights(model: nn.Module) -> None:
    """Raise ValueError naming the first parameter that holds NaN or Inf (training diverged, or a bad file)."""
    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ValueError(f"model weights must be finite, but {name!r} contains NaN or Inf; "
                             f"reload or re-initialise the model")


@contextmanager
def _state_kept_on_error(model: nn.Module):
    """Restore the model's train/eval flag after the block, and on an error move it back to where it was."""
    was_training, where = model.training, devices.model_device(model)
    try:
        yield
    except BaseException:
        if devices.model_device(model) != where:
            model.to(where)
        raise
    finally:
        model.train(was_training)


@dataclass
class History:
    """Per-epoch training record: lists that plot directly (`plots.plot_history`)."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}

    def record(self, train_loss: float, train_acc: float) -> None:
        """Append one epoch's training loss and accuracy (the epoch number follows the last one)."""
        self.epoch.append(len(self.epoch) + 1)
        self.train_loss.append(train_loss)
        self.train_acc.append(train_acc)

    def extend(self, later: History) -> History:
        """Append the epochs of `later` (a run that continued this one), renumbered to follow; returns self."""
        if not isinstance(later, History):
            raise TypeError(f"later must be a History (what fit returns), got {type(later).__name__}")
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            getattr(self, name).extend(getattr(later, name))
        self.epoch.extend(range(len(self.epoch) + 1, len(self.epoch) + 1 + len(later.epoch)))
        return self


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The default loss function of `fit`: returns (loss, logits). Classes are the logits' last axis, so a sequence
    model's (batch, t, vocabulary) logits and (batch, t) next-token labels work as (batch, classes) and (batch,)."""
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, -2), y.flatten()), logits


def _correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(-1) == y).sum())  # the classes are the last axis


@dataclass(frozen=True)
class TrainConfig:
    """How long and how fast to train: `fit(model, loader, TrainConfig(epochs=3, lr=1e-3))`.

    optimizer: 'sgd', 'adam' or 'adamw' (`make_optimizer`), or a torch optimizer built over the model's
    parameters (build it after moving the model to its device). Checked when built: epochs an int >= 0, lr a
    finite number >= 0, a torch optimizer's settings finite. See notebooks/01_train_baseline.ipynb.
    """

    epochs: int = 5
    lr: float = 1e-3
    optimizer: object = "adam"

    def __post_init__(self):
        non_negative_int(self.epochs, "epochs")
        check_lr(self.lr)
        if isinstance(self.optimizer, str):
            check_optimizer_name(self.optimizer)
        else:
            check_optimizer(self.optimizer)


def _call(callbacks, hook: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


HOOKS = ("on_step_end", "on_epoch_end")


def check_callbacks(callbacks) -> list:
    """`callbacks` as a list, each with a callable on_step_end or on_epoch_end; else TypeError naming it."""
    if isinstance(callbacks, (str, bytes, Mapping, nn.Module)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of objects with on_step_end(model, step) or "
                        f"on_epoch_end(model, epoch, history), got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        hooks = [getattr(cb, hook, None) for hook in HOOKS]
        if all(h is None for h in hooks) or any(h is not None and not callable(h) for h in hooks):
            raise TypeError(f"callbacks[{i}] must have a method on_step_end(model, step) or "
                            f"on_epoch_end(model, epoch, history), got {type(cb).__name__}")
    return callbacks


def _checked_loss(result) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(result, (tuple, list)) and len(result) == 2
            and all(isinstance(t, torch.Tensor) for t in result)):
        raise TypeError(f"loss_fn(model, x, y) must return (loss, logits), two tensors; got "
                        f"{type(result).__name__} {result!r:.60}")
    return result


def _train_epoch(model: nn.Module, batches, opt, loss_fn: Callable, callbacks: list, step: int) -> tuple:
    """One pass over `batches` ((x, y) on the training device): (mean loss, accuracy in %, steps so far)."""
    total_loss, correct, seen = 0.0, 0, 0
    model.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss, logits = _checked_loss(loss_fn(model, x, y))
        if not torch.isfinite(loss):
            raise FloatingPointError(loss.item())
        loss.backward()
        opt.step()
        step += 1
        _call(callbacks, "on_step_end", model, step)
        total_loss += loss.item() * y.numel()
        correct += _correct(logits, y)
        seen += y.numel()
    return total_loss / seen, 100.0 * correct / seen, step


def fit(model: nn.Module, train_loader, config: TrainConfig | None = None, *, val_loader=None,
        loss_fn: Callable | None = None, callbacks: Iterable = (), progress: bool = True, device=None) -> History:
    """Train `model` in place (`config`: epochs, learning rate, optimizer) and return its History.

    loss_fn(model, x, y) -> (loss, logits) replaces cross entropy (distillation, regularisers). callbacks get
    `on_step_end(model, step)` and `on_epoch_end(model, epoch, history)`. device: where to train (default
    `mp.device()`); the model is moved there in place. To continue a History, `history.extend(fit(...))`.
    Every argument is checked, and the first batch of each loader run through the model once (eval mode, no
    gradients: its shape, labels in [0, outputs)), before anything changes; float16 and bfloat16 models are
    refused (call model.float() first). The model's train/eval flag is the caller's afterwards.
    See notebooks/01_train_baseline.ipynb.
    """
    float_model(model, "fit")
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig(epochs=, lr=, optimizer=), got {type(config).__name__}")
    callable_arg(loss_fn, "loss_fn", none_ok=True)
    callbacks = check_callbacks(callbacks)
    check_flag(progress, "progress")
    device = devices.resolve(model, device)
    check_finite_weights(model)
    if isinstance(config.optimizer, str):
        opt = make_optimizer(model, config.optimizer, config.lr)
    else:
        opt = config.optimizer
        check_optimizer(opt, model)
    peek_fitting_batches(model, train_loader, "train_loader", reiterable=True)
    if val_loader is not None:  # checked now, not after a whole epoch of training
        peek_fitting_batches(model, val_loader, "val_loader", reiterable=True)
    with _state_kept_on_error(model):
        return _fit_epochs(model, train_loader, config.epochs, opt, loss_fn or cross_entropy_loss, callbacks,
                           val_loader=val_loader, progress=progress, device=device)


def _fit_epochs(model, train_loader, epochs: int, opt, loss_fn, callbacks, *, val_loader, progress, device):
    """fit's loop once everything is checked: `epochs` passes over train_loader, each then evaluated."""
    history, step, dtype = History(), 0, input_dtype(model)
    devices.place(model, device)
    total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
    bar = tqdm(total=total, disable=not progress, desc="train", leave=False)
    for epoch in range(1, epochs + 1):
        batches = ((to_model_input(x, device, dtype), y.to(device)) for x, y in _counting(train_loader, bar))
        try:
            loss, acc, step = _train_epoch(model, batches, opt, loss_fn, callbacks, step)
        except FloatingPointError as exc:
            raise FloatingPointError(f"loss became {exc.args[0]} at epoch {epoch}; lower the learning rate") from None
        history.record(loss, acc)
        if val_loader is not None:
            metrics = evaluate(model, val_loader, device=device)
            history.val_loss.append(metrics["loss"])
            history.val_acc.append(metrics["acc"])
            bar.set_postfix(val_acc=f"{metrics['acc']:.2f}")
        _call(callbacks, "on_epoch_end", model, epoch, history)
    bar.close()
    return history


def _counting(loader, bar):
    for batch in loader:
        yield batch
        bar.update(1)


@contextmanager
def eval_mode(model: nn.Module):
    """Switch `model` to eval mode for a block and restore its train/eval flag afterwards, also on errors."""
    check_model(model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, device=None) -> dict:
    """Mean cross-entropy loss and accuracy (in percent) of `model` on `loader`; leaves train/eval mode as it was.
    Per label: a sequence model's loss is the mean over every position, in nats (`text.perplexity(loss)`).

    device: where to run (default `mp.device()`; an int8 model runs on the CPU); the model is moved there in place.
    float16 and bfloat16 models are evaluated as they are (each batch is cast to the model's dtype; the loss is
    summed in float32). A model on the meta device is refused. The first batch is run once before the model
    moves (`batches.check_batch_fits`), and every batch's labels must be class indices in [0, outputs).
    """
    model_arg(model)
    _, batches = peek_fitting_batches(model, loader, "loader")
    device = devices.resolve(model, device)
    dtype = input_dtype(model)
    total_loss, correct, seen = 0.0, 0, 0
    with _state_kept_on_error(model), eval_mode(model):
        devices.place(model, device)
        for x, y in batches:
            x, y = to_model_input(x, device, dtype), y.to(device)
            logits = model(x)
            check_labels(y, logits.shape[-1], "loader", tuple(logits.shape[:-1]))  # later batches too
            summed = logits.float() if logits.dtype in HALF_DTYPES else logits  # float16 sums overflow
            total_loss += F.cross_entropy(summed.flatten(0, -2), y.flatten(), reduction="sum").item()
            correct += _correct(logits, y)
            seen += y.numel()
    return {"loss": total_loss / seen, "acc": 100.0 * correct / seen}


def accuracy(model: nn.Module, loader, *, device=None) -> float:
    """Accuracy of `model` on `loader`, in percent (`evaluate`'s device rule)."""
    return evaluate(model, loader, device=device)["acc"]
