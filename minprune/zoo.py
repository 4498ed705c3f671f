"""Baselines that every learner shares: shipped in the package, else trained on first use and cached.

`pretrained("lenet5")` loads the baseline that ships in `minprune/assets/baselines/` (a hash-checked safe model
file, made by `make baselines` with the fixed recipe below). Every learner's notebook then starts from the same
weights, whatever their CPU: training itself is not bit-identical across CPUs or thread counts (the float kernels
add in different orders). A model, data set, seed or recipe with no shipped file is trained on first use, with a
message saying so, and cached in `cache_dir()`; the next call loads it in a fraction of a second.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from minprune import data as data_lib
from minprune.assets import baselines_dir
from minprune.checkpoint import CheckpointError, load_model, save_model
from minprune.models import ARCHS, build
from minprune.train import TrainConfig, evaluate, fit, seed_everything


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


def baseline_filename(arch: str, dataset: str, seed: int, recipe: Recipe) -> str:
    """The file name of a baseline: the digest changes with any part of its recipe."""
    key = json.dumps({"arch": arch, "data": dataset, "seed": seed, **asdict(recipe)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{arch}-{dataset}-seed{seed}-{digest}.pt"


def _cache_file(arch: str, dataset: str, seed: int, recipe: Recipe) -> Path:
    return cache_dir() / baseline_filename(arch, dataset, seed, recipe)


def shipped_or_cached(filename: str, train: Callable[[], tuple[nn.Module, dict]], *, what: str,
                      retrain: bool = False) -> tuple[nn.Module, dict]:
    """(model, meta) from the shipped file `filename`, else from the cache, else `train()` and cache it.

    A damaged shipped file is an error (reinstall the kit); a damaged cache entry is moved aside to
    `<name>.damaged` and retrained, with a warning that says so.
    `retrain=True` skips both and trains (the result goes to the cache; the shipped file is never written).
    """
    shipped, cached = baselines_dir() / filename, cache_dir() / filename
    if not retrain and shipped.exists():
        return load_model(shipped)
    if not retrain and cached.exists():
        try:
            return load_model(cached)
        except CheckpointError as exc:
            damaged = cached.with_name(cached.name + ".damaged")
            os.replace(cached, damaged)
            warnings.warn(f"{what}: the cached file cannot be used ({exc}); it is kept as {damaged} and the "
                          f"model is trained again", UserWarning, stacklevel=3)
    elif not retrain:
        print(f"{what}: no shipped file ({filename}); training it on this machine, then caching it in {cache_dir()}")
    model, meta = train()
    save_model(cached, model, meta=meta)
    return model.cpu(), meta  # as a loaded file would be, wherever it trained


def train_baseline(arch: str, dataset: str = "mnist-small", *, seed: int = 0, recipe: Recipe | None = None,
                   progress: bool = True) -> tuple[nn.Module, dict]:
    """Train a fresh baseline with the fixed recipe; returns (model, meta with history and test accuracy)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    recipe = recipe or BASELINE_RECIPES[arch]
    splits = data_lib.load(dataset, seed=seed)
    seed_everything(seed)
    model = build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    history = fit(model, splits.loader("train", recipe.batch_size, seed=seed),
                  TrainConfig(epochs=recipe.epochs, lr=recipe.lr, optimizer=recipe.optimizer),
                  val_loader=splits.loader("val", 500), progress=progress)
    meta = {"data": dataset, "seed": seed, "recipe": asdict(recipe), "history": history.as_dict(),
            "test_acc": evaluate(model, splits.loader("test", 500))["acc"]}
    return model, meta


def pretrained(arch: str, dataset: str = "mnist-small", *, seed: int = 0, retrain: bool = False,
               progress: bool = True) -> nn.Module:
    """The baseline `arch` trained on `dataset` with the fixed recipe: the shipped file, or trained on first use."""
    recipe = BASELINE_RECIPES.get(arch)
    if recipe is None:
        raise ValueError(f"no baseline recipe for {arch!r}; choose one of {', '.join(BASELINE_RECIPES)}")
    model, meta = shipped_or_cached(
        baseline_filename(arch, dataset, seed, recipe),
        lambda: train_baseline(arch, dataset, seed=seed, recipe=recipe, progress=progress),
        what=f"baseline {arch} ({dataset}, seed {seed})", retrain=retrain)
    model.baseline_meta = meta
    return model
