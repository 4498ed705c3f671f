"""Recover accuracy after pruning: one-shot prune + fine-tune, and iterative prune / fine-tune rounds.

Iterative pruning follows Han et al. 2015 ("Learning both weights and connections"): prune a little,
retrain, repeat, each round removing the same fraction of the weights that are still alive.
Masks stay applied during fine-tuning through the `apply_masks` reparametrisation, so `fit` needs no
special code. Both functions take `device=None` (meaning `mp.device()`) and move the model there in place,
like `fit`, and leave its train/eval flag as they found it. Both train, so they refuse float16/bfloat16 models
(call model.float() first), and both check every argument, and the first batch of the data (run once through the
model in eval mode, without gradients), before the model changes. See notebooks/04_fine_tuning.ipynb.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from minprune import devices
from minprune.masked import copy_model, get_masks
from minprune.train import History, TrainConfig, evaluate, fit
from minprune.unstructured.masks import check_scope, check_scores, check_sparsities, masks_sparsity, name_list
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import peek_scoring_batch
from minprune.validate import finite_number, float_model, non_negative_int


def _loaders(data, batch_size: int = 64):
    """(train loader, validation loader or None) from a DataSplits or a plain DataLoader."""
    if hasattr(data, "loader") and hasattr(data, "train"):
        return data.loader("train", batch_size), data.loader("val", 500)
    if data is None or isinstance(data, (str, bytes, Mapping)) or not hasattr(data, "__iter__"):
        raise ValueError(f"fine-tuning needs data: pass a DataSplits (mp.load(...)) or a DataLoader, got {data!r:.60}")
    return data, None


def _checked_loaders(model: nn.Module, data, device) -> tuple:
    """`_loaders(data)` after checking that `model` runs on the first training batch (`check_batch_fits`: once,
    in eval mode without gradients) and that its labels are class indices; `device` checked too. Nothing of
    `model` changes."""
    train_loader, val_loader = _loaders(data)
    peek_scoring_batch(model, train_loader, "data")
    devices.resolve(model, device)  # an unusable device is refused before the model moves
    return train_loader, val_loader


def fine_tune(model: nn.Module, data, config: TrainConfig | None = None, *, progress: bool = False,
              device=None) -> History:
    """Train a (pruned) model in place with `mp.fit` (default `TrainConfig(epochs=3)`); masks stay applied.

    data: a DataSplits (trains on 'train', validates on 'val') or a training DataLoader. Returns the History.
    device: as in `fit` (default `mp.device()`). float16/bfloat16 models are refused. The train/eval flag is
    restored afterwards. See notebooks/04_fine_tuning.ipynb.
    """
    float_model(model, "fine_tune")
    config = TrainConfig(epochs=3) if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig(epochs=, lr=, optimizer=), got {type(config).__name__}")
    train_loader, val_loader = _checked_loaders(model, data, device)
    was_training = model.training
    try:
        return fit(model, train_loader, config, val_loader=val_loader, progress=progress, device=device)
    finally:
        model.train(was_training)


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
    name_list(config.exclude, "config.exclude")
    if config.optimizer not in ("sgd", "adam", "adamw"):
        raise ValueError(f"config.optimizer must be 'sgd', 'adam' or 'adamw', got {config.optimizer!r}")
    if config.eval_split not in ("train", "val", "test"):
        raise ValueError(f"config.eval_split must be 'train', 'val' or 'test', got {config.eval_split!r}")
    finite_number(config.lr, "config.lr", low=0, low_open=True)


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
    config = IterativeConfig() if config is None else config
    _check_config(config)
    float_model(model, "iterative_prune")
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a function model -> scores (e.g. mp.magnitude_scores), got {score_fn!r}")
    sparsities = check_sparsities(sparsities, increasing=True)
    _checked_loaders(model, data, device)
    _rehearse_first_round(model, score_fn, sparsities[0], config)
    was_training = model.training
    try:
        return _prune_rounds(model, score_fn, sparsities, data, config, devices.place(model, device))
    finally:
        model.train(was_training)


def _rehearse_first_round(model: nn.Module, score_fn: Callable, target: float, config: IterativeConfig) -> None:
    """Score `model` and prune a copy to the first target: whatever the first round would refuse (scores that
    are not a dict of tensors, an unknown excluded name, a layer left empty, a model already pruned harder)
    is refused before `model` changes."""
    scores = score_fn(model)
    check_scores(scores)
    with warnings.catch_warnings():  # the first round itself warns, if it must
        warnings.simplefilter("ignore")
        prune(copy_model(model), scores, target, scope=check_scope(config.scope), exclude=config.exclude)


def _prune_rounds(model: nn.Module, score_fn: Callable, sparsities: list, data, config: IterativeConfig,
                  device) -> list[dict]:
    """The rounds of `iterative_prune` once everything is checked: prune, measure, fine-tune, measure."""
    history = []
    for k, target in enumerate(sparsities, start=1):
        prune(model, score_fn(model), target, scope=config.scope, exclude=config.exclude)
        row = {"round": k, "target": target, "sparsity": masks_sparsity(get_masks(model)),
               "acc_pruned": _accuracy(model, data, config.eval_split, device)}
        train_loader, val_loader = _loaders(data)
        fit(model, train_loader, TrainConfig(epochs=config.epochs, lr=config.lr, optimizer=config.optimizer),
            val_loader=val_loader, progress=False, device=device)
        row["acc"] = _accuracy(model, data, config.eval_split, device)
        history.append(row)
    return history
