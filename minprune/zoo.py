"""Baseline models trained on first use and cached, so later notebooks start from the same baselines.

`pretrained("lenet5")` trains LeNet-5 on the embedded data with a fixed recipe and seed, saves it
to the cache (a safe model file) and returns it; the next call loads it in a fraction of a second.
Training is deterministic on CPU, so a cache miss reproduces the same model.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from . import data as data_lib
from .checkpoint import CheckpointError, load_model, save_model
from .models import ARCHS, build
from .train import evaluate, fit, seed_everything


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained."""

    epochs: int
    lr: float = 1e-3
    optimizer: str = "adam"
    batch_size: int = 64


BASELINE_RECIPES = {
    "lenet300": Recipe(epochs=12),
    "lenet5": Recipe(epochs=12),
    "vgg": Recipe(epochs=8, lr=2e-3),
    "resnet": Recipe(epochs=8, lr=2e-3),
}


def cache_dir() -> Path:
    """$MINPRUNE_CACHE, or ~/.cache/minprune/models."""
    return Path(os.environ.get("MINPRUNE_CACHE", Path.home() / ".cache" / "minprune" / "models"))


def _cache_file(arch: str, dataset: str, seed: int, recipe: Recipe) -> Path:
    key = json.dumps({"arch": arch, "data": dataset, "seed": seed, **asdict(recipe)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_dir() / f"{arch}-{dataset}-seed{seed}-{digest}.pt"


def train_baseline(arch: str, dataset: str = "mnist-small", *, seed: int = 0, recipe: Recipe | None = None,
                   progress: bool = True) -> tuple[nn.Module, dict]:
    """Train a fresh baseline with the fixed recipe; returns (model, meta with history and test accuracy)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    recipe = recipe or BASELINE_RECIPES[arch]
    splits = data_lib.load(dataset, seed=seed)
    seed_everything(seed)
    model = build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    history = fit(model, splits.loader("train", recipe.batch_size, seed=seed), epochs=recipe.epochs, lr=recipe.lr,
                  optimizer=recipe.optimizer, val_loader=splits.loader("val", 500), progress=progress)
    meta = {"data": dataset, "seed": seed, "recipe": asdict(recipe), "history": history.as_dict(),
            "test_acc": evaluate(model, splits.loader("test", 500))["acc"]}
    return model, meta


def pretrained(arch: str, dataset: str = "mnist-small", *, seed: int = 0, retrain: bool = False,
               progress: bool = True) -> nn.Module:
    """The cached baseline `arch` trained on `dataset` (trained and cached on first use)."""
    recipe = BASELINE_RECIPES.get(arch)
    if recipe is None:
        raise ValueError(f"no baseline recipe for {arch!r}; choose one of {', '.join(BASELINE_RECIPES)}")
    path = _cache_file(arch, dataset, seed, recipe)
    if path.exists() and not retrain:
        try:
            model, meta = load_model(path)
            model.baseline_meta = meta
            return model
        except CheckpointError:
            pass  # a damaged cache entry is simply retrained and overwritten
    model, meta = train_baseline(arch, dataset, seed=seed, recipe=recipe, progress=progress)
    save_model(path, model, meta=meta)
    model.baseline_meta = meta
    return model
