"""A teacher for shifted images: trained on random shifts once (shipped or cached), so that it labels them well.

A teacher that never saw shifts mislabels shifted digits, and then its soft targets on augmented batches mislead
the student. `tools/make_baselines.py` writes the shipped file. See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

from torch import nn

from minprune.data import load
from minprune.distillation.augment import check_max_shift, labels_loss
from minprune.models import build
from minprune.train import TrainConfig, fit, seed_everything
from minprune.validate import check_flag, non_negative_int
from minprune.zoo import shipped_or_cached


def shift_trained_teacher(arch: str = "lenet5", dataset: str = "mnist-small", *, epochs: int = 15, max_shift: int = 2,
                          seed: int = 0, progress: bool = False) -> nn.Module:
    """A teacher trained on randomly shifted images, so that it labels shifted images well: the shipped file
    (LeNet-5, the defaults), else trained on first use and cached, like `pretrained`. A teacher that never saw
    shifts mislabels them, and then its soft targets on augmented batches mislead the student.
    See notebooks/09_distillation.ipynb.
    """
    check_teacher_settings(arch, dataset, epochs, max_shift, seed)
    check_flag(progress, "progress")
    filename = shift_teacher_filename(arch, dataset, epochs=epochs, max_shift=max_shift, seed=seed)
    return shipped_or_cached(filename, lambda: train_shift_teacher(arch, dataset, epochs=epochs, max_shift=max_shift,
                                                                   seed=seed, progress=progress),
                             what=f"shift-trained teacher {arch}")[0]


def check_teacher_settings(arch, dataset, epochs, max_shift, seed) -> None:
    """Raise unless arch and dataset are names (str), epochs, max_shift and seed ints >= 0 (bools refused)."""
    for name, value in (("arch", arch), ("dataset", dataset)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a name (str), got {type(value).__name__} {value!r:.60}")
    non_negative_int(epochs, "epochs")
    check_max_shift(max_shift)
    non_negative_int(seed, "seed")


def shift_teacher_filename(arch: str, dataset: str, *, epochs: int, max_shift: int, seed: int) -> str:
    """The file name of a shift-trained teacher (shipped or cached). See notebooks/09_distillation.ipynb."""
    check_teacher_settings(arch, dataset, epochs, max_shift, seed)
    return f"{arch}-{dataset}-shift{max_shift}-epochs{epochs}-seed{seed}-teacher.pt"


def train_shift_teacher(arch: str, dataset: str, *, epochs: int, max_shift: int, seed: int,
                        progress: bool = False) -> tuple[nn.Module, dict]:
    """Train a fresh teacher on shifted images (seeded); returns (model, meta). See notebooks/09_distillation.ipynb."""
    check_teacher_settings(arch, dataset, epochs, max_shift, seed)
    check_flag(progress, "progress")
    splits = load(dataset, seed=seed)
    seed_everything(seed)
    model = build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    fit(model, splits.loader("train", 64, seed=seed), TrainConfig(epochs=epochs), progress=progress,
        loss_fn=labels_loss(max_shift))
    return model, {"max_shift": max_shift, "epochs": epochs}
