"""Recover accuracy after pruning: one-shot prune + fine-tune, and iterative prune / fine-tune rounds.

Iterative pruning follows Han et al. 2015 ("Learning both weights and connections"): prune a little,
retrain, repeat, each round removing the same fraction of the weights that are still alive.
Masks stay applied during fine-tuning through the `apply_masks` reparametrisation, so `fit` needs no
special code. Both functions take `device=None` (meaning `mp.device()`) and move the model there in place,
like `fit`. See notebooks/04_fine_tuning.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from minprune import devices
from minprune.masked import get_masks
from minprune.train import History, TrainConfig, evaluate, fit
from minprune.unstructured.masks import check_sparsity, masks_sparsity
from minprune.unstructured.prune import prune
from minprune.validate import non_negative_int


def _loaders(data, batch_size: int = 64):
    """(train loader, validation loader or None) from a DataSplits or a plain DataLoader."""
    if hasattr(data, "loader") and hasattr(data, "train"):
        return data.loader("train", batch_size), data.loader("val", 500)
    if data is None or isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise ValueError(f"fine-tuning needs data: pass a DataSplits (mp.load(...)) or a DataLoader, got {data!r:.60}")
    return data, None


def fine_tune(model: nn.Module, data, config: TrainConfig | None = None, *, progress: bool = False,
              device=None) -> History:
    """Train a (pruned) model in place with `mp.fit` (default `TrainConfig(epochs=3)`); masks stay applied.

    data: a DataSplits (trains on 'train', validates on 'val') or a training DataLoader. Returns the History.
    device: as in `fit` (default `mp.device()`). See notebooks/04_fine_tuning.ipynb.
    """
    train_loader, val_loader = _loaders(data)
    return fit(model, train_loader, config or TrainConfig(epochs=3), val_loader=val_loader, progress=progress,
               device=device)


@dataclass
class IterativeConfig:
    """How each round of `iterative_prune` prunes and fine-tunes."""

    epochs: int = 2  # fine-tuning epochs per round
    lr: float = 1e-3
    optimizer: str = "adam"
    scope: str = "global"  # 'local' or 'global', as in make_masks
    exclude: tuple = ()
    eval_split: str = "val"


def _check_config(config: IterativeConfig) -> None:
    """Refuse a bad config before the first round prunes anything."""
    if not isinstance(config, IterativeConfig):
        raise TypeError(f"config must be an IterativeConfig, got {type(config).__name__}")
    non_negative_int(config.epochs, "config.epochs")
    if config.scope not in ("local", "global"):
        raise ValueError(f"config.scope must be 'local' or 'global', got {config.scope!r}")
    if config.optimizer not in ("sgd", "adam", "adamw"):
        raise ValueError(f"config.optimizer must be 'sgd', 'adam' or 'adamw', got {config.optimizer!r}")
    if config.eval_split not in ("train", "val", "test"):
        raise ValueError(f"config.eval_split must be 'train', 'val' or 'test', got {config.eval_split!r}")
    if not isinstance(config.lr, (int, float)) or not config.lr > 0:
        raise ValueError(f"config.lr must be a number > 0, got {config.lr!r}")


def _accuracy(model, data, split: str, device) -> float:
    if hasattr(data, "loader") and hasattr(data, "train"):
        return evaluate(model, data.loader(split, 500), device=device)["acc"]
    return evaluate(model, data, device=device)["acc"]


def iterative_prune(model: nn.Module, score_fn: Callable, sparsities, data,
                    config: IterativeConfig | None = None, *, device=None) -> list[dict]:
    """Prune to each sparsity in turn (score_fn(model) -> scores), fine-tuning after each round. In place.

    Returns one row per round: target and reached sparsity, accuracy right after pruning (`acc_pruned`)
    and after fine-tuning (`acc`), on `config.eval_split` of a DataSplits (or on `data` itself).
    Pass `iterative_sparsities(0.98, 5)` for Han-style rounds, or a single value for one-shot.
    device: as in `fit`; the model moves there before the first round. See notebooks/04_fine_tuning.ipynb.
    """
    config = config or IterativeConfig()
    _check_config(config)
    _loaders(data)
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a function model -> scores (e.g. mp.magnitude_scores), got {score_fn!r}")
    sparsities = [sparsities] if isinstance(sparsities, (int, float)) else list(sparsities)
    for s in sparsities:
        check_sparsity(s)
    if sparsities != sorted(sparsities):
        raise ValueError(f"sparsities must not decrease, got {sparsities}")
    device = devices.place(model, device)
    history = []
    for k, target in enumerate(sparsities, start=1):
        prune(model, score_fn(model), target, scope=config.scope, exclude=config.exclude)
        row = {"round": k, "target": target, "sparsity": masks_sparsity(get_masks(model)),
               "acc_pruned": _accuracy(model, data, config.eval_split, device)}
        fine_tune(model, data, TrainConfig(epochs=config.epochs, lr=config.lr, optimizer=config.optimizer),
                  device=device)
        row["acc"] = _accuracy(model, data, config.eval_split, device)
        history.append(row)
    return history
