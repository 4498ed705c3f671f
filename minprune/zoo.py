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
from minprune.text import bits_per_char, perplexity
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
    "tinyvit": Recipe(epochs=20),
    "chargpt": Recipe(epochs=20, lr=2e-3),  # 20 epochs of 103 batches of 64 windows of 64 characters
}
BASELINE_DATA = {"chargpt": "pydoc-text"}  # the data set a baseline trains on when none is named


def check_data_fits(arch: str, dataset: str) -> None:
    """ValueError unless `arch` reads `dataset`: the language model CharGPT reads text ('pydoc-text'), every other
    model images."""
    data_lib.check_name(dataset)
    if (dataset in data_lib.TEXT_NAMES) != (arch in BASELINE_DATA):
        reads = "text ('pydoc-text')" if arch in BASELINE_DATA else "images"
        raise ValueError(f"{arch!r} reads {reads}; it has no baseline on {dataset!r}")


def default_dataset(arch: str) -> str:
    """The data set `arch`'s baseline trains on: 'pydoc-text' for CharGPT, 'mnist-small' for the image models."""
    return BASELINE_DATA.get(arch, "mnist-small")


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


def train_baseline(arch: str, dataset: str | None = None, *, seed: int = 0, recipe: Recipe | None = None,
                   progress: bool = True) -> tuple[nn.Module, dict]:
    """Train a fresh baseline with the fixed recipe; returns (model, meta with history and test metrics).

    dataset: default `default_dataset(arch)`. Image models record the test accuracy; a language model (CharGPT on
    'pydoc-text', windows of block_size characters) records the test loss in nats per character, its perplexity
    and bits per character, and the next-character accuracy."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    recipe = recipe or BASELINE_RECIPES[arch]
    dataset = dataset or default_dataset(arch)
    check_data_fits(arch, dataset)
    splits = data_lib.load(dataset) if dataset in data_lib.TEXT_NAMES else data_lib.load(dataset, seed=seed)
    seed_everything(seed)
    if dataset in data_lib.TEXT_NAMES:
        model = build(arch, vocab_size=splits.vocab_size)
        block = model.config["block_size"]
        train, val, test = (splits.loader(split, block, recipe.batch_size, seed=seed) for split in
                            ("train", "val", "test"))
    else:
        model = build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
        train, val, test = splits.loader("train", recipe.batch_size, seed=seed), splits.loader("val", 500), \
            splits.loader("test", 500)
    history = fit(model, train, TrainConfig(epochs=recipe.epochs, lr=recipe.lr, optimizer=recipe.optimizer),
                  val_loader=val, progress=progress)
    result = evaluate(model, test)
    meta = {"data": dataset, "seed": seed, "recipe": asdict(recipe), "history": history.as_dict(),
            "test_acc": result["acc"]}
    if dataset in data_lib.TEXT_NAMES:
        meta.update(test_loss=result["loss"], test_perplexity=perplexity(result["loss"]),
                    test_bits_per_char=bits_per_char(result["loss"]))
    return model, meta


def pretrained(arch: str, dataset: str | None = None, *, seed: int = 0, retrain: bool = False,
               progress: bool = True) -> nn.Module:
    """The baseline `arch` trained on `dataset` (default `default_dataset(arch)`: 'pydoc-text' for 'chargpt',
    else 'mnist-small') with the fixed recipe: the shipped file, or trained on first use."""
    recipe = BASELINE_RECIPES.get(arch)
    if recipe is None:
        raise ValueError(f"no baseline recipe for {arch!r}; choose one of {', '.join(BASELINE_RECIPES)}")
    dataset = dataset or default_dataset(arch)
    check_data_fits(arch, dataset)
    model, meta = shipped_or_cached(
        baseline_filename(arch, dataset, seed, recipe),
        lambda: train_baseline(arch, dataset, seed=seed, recipe=recipe, progress=progress),
        what=f"baseline {arch} ({dataset}, seed {seed})", retrain=retrain)
    model.baseline_meta = meta
    return model
