"""Training and evaluation: `fit`, `evaluate`, `seed_everything`.

The loop is plain on purpose, so that pruning code can hook into it through callbacks
(`on_step_end(model, step)` after every optimizer step, `on_epoch_end(model, epoch, history)`)
and masks applied with `minprune.apply_masks` stay applied while training.
Devices: `fit` and `evaluate` take `device=None`, meaning `mp.device()` (the GPU if there is one, or
$MINPRUNE_DEVICE); they move the model there in place and every batch with it (see `minprune.devices`).
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from minprune import devices
from minprune.validate import non_negative_int


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch so that CPU runs are bit-for-bit repeatable."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
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
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            getattr(self, name).extend(getattr(later, name))
        self.epoch.extend(range(len(self.epoch) + 1, len(self.epoch) + 1 + len(later.epoch)))
        return self


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The default loss function of `fit`: returns (loss, logits)."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def make_optimizer(model: nn.Module, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0):
    """'sgd' (momentum 0.9), 'adam' or 'adamw' over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'sgd', 'adam' or 'adamw'")


def _call(callbacks, hook: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


@dataclass(frozen=True)
class TrainConfig:
    """How long and how fast to train: `fit(model, loader, TrainConfig(epochs=3, lr=1e-3))`.

    optimizer: 'sgd', 'adam' or 'adamw' (`make_optimizer`), or a torch optimizer built over the model's
    parameters (build it after moving the model to its device). See notebooks/01_train_baseline.ipynb.
    """

    epochs: int = 5
    lr: float = 1e-3
    optimizer: object = "adam"

    def __post_init__(self):
        non_negative_int(self.epochs, "epochs")


def _train_epoch(model: nn.Module, batches, opt, loss_fn: Callable, callbacks: list, step: int) -> tuple:
    """One pass over `batches` ((x, y) on the training device): (mean loss, accuracy in %, steps so far)."""
    total_loss, correct, seen = 0.0, 0, 0
    model.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss, logits = loss_fn(model, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(loss.item())
        loss.backward()
        opt.step()
        step += 1
        _call(callbacks, "on_step_end", model, step)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, 100.0 * correct / seen, step


def fit(model: nn.Module, train_loader, config: TrainConfig | None = None, *, val_loader=None,
        loss_fn: Callable | None = None, callbacks: Iterable = (), progress: bool = True, device=None) -> History:
    """Train `model` in place (`config`: epochs, learning rate, optimizer) and return its History.

    loss_fn(model, x, y) -> (loss, logits) replaces cross entropy (distillation, regularisers). callbacks get
    `on_step_end(model, step)` and `on_epoch_end(model, epoch, history)`. device: where to train (default
    `mp.device()`); the model is moved there in place. To continue a History, `history.extend(fit(...))`.
    See notebooks/01_train_baseline.ipynb.
    """
    check_model(model)
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig(epochs=, lr=, optimizer=), got {type(config).__name__}")
    device = devices.resolve(model, device)
    check_finite_weights(model)
    opt = make_optimizer(model, config.optimizer, config.lr) if isinstance(config.optimizer, str) else config.optimizer
    callbacks, history, step = list(callbacks), History(), 0
    devices.place(model, device)
    bar = tqdm(total=config.epochs * len(train_loader), disable=not progress, desc="train", leave=False)
    for epoch in range(1, config.epochs + 1):
        batches = ((x.to(device), y.to(device)) for x, y in _counting(train_loader, bar))
        try:
            loss, acc, step = _train_epoch(model, batches, opt, loss_fn or cross_entropy_loss, callbacks, step)
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
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, device=None) -> dict:
    """Mean cross-entropy loss and accuracy (in percent) of `model` on `loader`; leaves train/eval mode as it was.

    device: where to run (default `mp.device()`; an int8 model runs on the CPU); the model is moved there in place.
    """
    check_model(model)
    if loader is None or isinstance(loader, (str, bytes)) or not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must be an iterable of (x, y) batches such as a DataLoader, got {loader!r:.60}")
    device = devices.place(model, device)
    total_loss, correct, seen = 0.0, 0, 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    if seen == 0:
        raise ValueError("cannot evaluate on an empty loader")
    return {"loss": total_loss / seen, "acc": 100.0 * correct / seen}


def accuracy(model: nn.Module, loader, *, device=None) -> float:
    """Accuracy of `model` on `loader`, in percent (`evaluate`'s device rule)."""
    return evaluate(model, loader, device=device)["acc"]
