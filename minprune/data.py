"""Data sets: the embedded 5,000-digit MNIST sample (offline), full torchvision data sets (online) and the
shipped Python documentation text for character-level language models (offline).

`load(name)` is the one entry point. For images it returns a `DataSplits` with a fixed, seeded, stratified
train / validation / test split and normalised tensors, plus `loader()` to get DataLoaders.
See notebooks/00_welcome.ipynb. For 'pydoc-text' it returns a `minprune.text.TextSplits` (split by position,
with `encode`, `decode` and a next-character `loader`); see notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from minprune.assets import asset_dir
from minprune.validate import non_negative_int, positive_int

# The compact file shipped in minprune/assets/ and the SHA-256 of its arrays (images bytes, then labels bytes).
DATA_DIR = Path(os.environ.get("MINPRUNE_DATA", asset_dir()))
MNIST_SMALL_FILE = "mnist_small.npz"
MNIST_SMALL_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"

# Channel means and standard deviations of the training sets (the usual published values).
NORMALISATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
TORCHVISION_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
NAMES = ("mnist-small", *TORCHVISION_SETS)  # the image sets (what models, recipes and `minprune export` take)
TEXT_NAMES = ("pydoc-text",)  # text, read one character at a time (minprune/text.py)
KNOWN_NAMES = (*NAMES, *TEXT_NAMES)  # every name `load` knows


SPLITS = ("train", "val", "test")


def check_split(split) -> str:
    """`split` when it is 'train', 'val' or 'test'; else ValueError listing them."""
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return split


def check_path(path, name: str, *, none_ok: bool = False):
    """`path` when it is a str or os.PathLike (or None, with none_ok=True); else TypeError naming `name`."""
    if (path is None and none_ok) or isinstance(path, (str, os.PathLike)):
        return path
    raise TypeError(f"{name} must be a path (str or pathlib.Path){' or None' if none_ok else ''}, "
                    f"got {type(path).__name__} {path!r:.60}")


@dataclass
class DataSplits:
    """Train / validation / test data sets of one task, ready for DataLoaders."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]  # (channels, height, width) of one image
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def loader(self, split: str = "train", batch_size: int = 64, *, shuffle=None, seed: int = 0):
        """A DataLoader over `split`; the training split is shuffled with a seeded generator."""
        check_split(split)
        positive_int(batch_size, "batch_size")
        non_negative_int(seed, "seed")
        if shuffle is not None and not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True, False or None (shuffle the training split only), got {shuffle!r}")
        shuffle = (split == "train") if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(getattr(self, split), batch_size=batch_size, shuffle=shuffle, generator=generator)

    def sample(self, n: int = 64, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` examples of a split as two tensors (x, y), for quick looks and calibration."""
        positive_int(n, "n")
        x, y = next(iter(self.loader(split, batch_size=n, shuffle=False)))
        return x, y

    def __repr__(self):
        sizes = f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}"
        return f"DataSplits({self.name!r}, {sizes}, input_shape={self.input_shape})"


def load(name: str = "mnist-small", *, root=None, download: bool = False, val_size=500, seed: int = 0):
    """Load a data set by name: 'mnist-small' (embedded, offline), 'mnist', 'fashion-mnist' or 'cifar10'
    (images, a DataSplits), or 'pydoc-text' (embedded text, a TextSplits; see minprune/text.py).

    The torchvision sets read from `root` (default ~/.cache/minprune/data) and only download
    when `download=True`. The validation set is carved from the training set, stratified by class.
    'pydoc-text' is split by position (90% / 5% / 5%), so val_size and seed do not apply to it.
    """
    check_name(name)
    non_negative_int(val_size, "val_size")
    non_negative_int(seed, "seed")
    check_path(root, "root", none_ok=True)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if name in TEXT_NAMES:
        if val_size != 500 or seed != 0:
            raise ValueError(f"{name!r} is split by position (90% / 5% / 5% of the text), so val_size and seed do "
                             f"not apply; got val_size={val_size}, seed={seed}. Seed its loaders instead: "
                             f"splits.loader('train', seed=...)")
        from minprune.text import load_text

        return load_text(name)
    if name == "mnist-small":
        return _load_mnist_small(val_size=val_size, seed=seed)
    return _load_torchvision(name, root=root, download=download, val_size=val_size, seed=seed)


def check_name(name) -> str:
    """`name` when it is a data set `load` knows; else ValueError listing them (KNOWN_NAMES)."""
    if not isinstance(name, str) or name not in KNOWN_NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(KNOWN_NAMES)}")
    return name


def read_mnist_small(path=None) -> tuple[np.ndarray, np.ndarray]:
    """Read the embedded sample: images uint8 (5000, 28, 28) and labels uint8 (5000,), hash-checked."""
    path = Path(check_path(path, "path", none_ok=True)) if path is not None else DATA_DIR / MNIST_SMALL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships inside the package (see data/README.md)")
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except Exception as exc:  # zip, key or format errors all mean the same thing to the user
        raise ValueError(f"{path} is not a readable minprune data file: {exc}") from exc
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != MNIST_SMALL_SHA256:
        raise ValueError(f"{path} failed its hash check (got {digest[:12]}..., expected "
                         f"{MNIST_SMALL_SHA256[:12]}...); restore it with data/make_mnist_small.py")
    return images, labels


def stratified_split(labels, n_holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, holdout) with the same class proportions, after a seeded shuffle."""
    non_negative_int(n_holdout, "n_holdout")
    non_negative_int(seed, "seed")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one class label per example (a 1-d array), got shape {labels.shape}")
    if n_holdout > len(labels):
        raise ValueError(f"cannot hold out {n_holdout} of {len(labels)} examples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    classes = np.unique(labels)
    holdout = []
    for c in classes:  # take each class's share of the holdout from the shuffled order
        of_class = order[labels[order] == c]
        share = round(n_holdout * len(of_class) / len(labels))
        holdout.extend(of_class[:share].tolist())
    holdout = np.array(sorted(holdout)[:n_holdout], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), holdout)
    return rng.permutation(keep), rng.permutation(holdout)


def _load_mnist_small(val_size: int, seed: int, test_size: int = 1000) -> DataSplits:
    images, labels = read_mnist_small()
    if val_size + test_size >= len(labels):
        raise ValueError(f"val_size={val_size} leaves no training data ({len(labels)} images in all)")
    mean, std = NORMALISATION["mnist"]
    x = (torch.from_numpy(images).float().div(255).unsqueeze(1) - mean[0]) / std[0]  # (N, 1, 28, 28)
    y = torch.from_numpy(labels).long()
    train_idx, test_idx = stratified_split(labels, test_size, seed=0)  # the test set never moves
    fit_idx, val_idx = stratified_split(labels[train_idx], val_size, seed=seed)
    fit_idx, val_idx = train_idx[fit_idx], train_idx[val_idx]

    def part(idx):
        idx = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return TensorDataset(x[idx], y[idx])

    return DataSplits("mnist-small", part(fit_idx), part(val_idx), part(test_idx), (1, 28, 28), 10, mean, std)


def default_root() -> Path:
    """Where torchvision data sets are looked for: $MINPRUNE_DATA_ROOT or ~/.cache/minprune/data."""
    return Path(os.environ.get("MINPRUNE_DATA_ROOT", Path.home() / ".cache" / "minprune" / "data"))


def _load_torchvision(name: str, root, download: bool, val_size: int, seed: int) -> DataSplits:
    from torchvision import datasets, transforms

    root = Path(root) if root is not None else default_root()
    cls = getattr(datasets, TORCHVISION_SETS[name])
    mean, std = NORMALISATION[name]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        full_train = cls(str(root), train=True, download=download, transform=transform)
        test = cls(str(root), train=False, download=download, transform=transform)
    except RuntimeError as exc:
        hint = (f"{name} is not in {root}. Connect to the internet and call "
                f"minprune.data.load({name!r}, download=True), or copy torchvision's {cls.__name__} "
                f"files there. Offline, use 'mnist-small', which ships with the kit.")
        raise FileNotFoundError(hint) from exc
    labels = np.asarray(full_train.targets)
    fit_idx, val_idx = stratified_split(labels, val_size, seed=seed)
    x0, _ = full_train[0]
    return DataSplits(name, Subset(full_train, fit_idx.tolist()), Subset(full_train, val_idx.tolist()), test,
                      tuple(x0.shape), len(full_train.classes), mean, std)
