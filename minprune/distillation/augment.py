"""More inputs for the teacher to label: random whole-pixel shifts and mixup, applied through `fit`'s loss hook.

mixup: Zhang et al. 2018. The teacher labels the very images the student sees ("function matching", Beyer et al.
2022, "Knowledge distillation: A good teacher is patient and consistent"). The `loss_fn`s without a teacher
(`mixup_loss`, `labels_loss`) are the fair baselines for a distilled student. See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minprune.distillation.losses import check_tensor, number_in
from minprune.train import cross_entropy_loss
from minprune.validate import callable_arg, positive_int


def check_max_shift(max_shift) -> None:
    """Raise ValueError unless `max_shift` is an int >= 0 (a bool is not a pixel count)."""
    if not isinstance(max_shift, int) or isinstance(max_shift, bool) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0 (pixels), got {max_shift!r}")


def check_mixup_strength(strength) -> None:
    """Raise ValueError unless `strength` is a finite number > 0 (the Beta distribution's parameter)."""
    number_in(strength, "mixup strength", "a number > 0 (the Beta distribution's parameter)", low=0, low_open=True)


def check_mixup(mixup) -> None:
    """Raise ValueError unless `mixup` is 0 (no mixup) or a mixup strength (`check_mixup_strength`)."""
    if isinstance(mixup, bool) or not (isinstance(mixup, (int, float)) and mixup == 0):
        check_mixup_strength(mixup)


def check_images(x, what: str) -> torch.Tensor:
    """`x` when it is a tensor; else TypeError saying what `what` needs."""
    return check_tensor(x, "x", f"a tensor for {what}")


def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Move each image of a batch (batch, C, H, W) by its own random whole-pixel offset in [-max_shift, max_shift]
    along each axis; the edge pixels are repeated into the gap (MNIST's edges are background). Returns a new tensor.

    Draws from torch's global generator, so `seed_everything` makes it repeatable. See notebooks/09_distillation.ipynb.
    """
    check_max_shift(max_shift)
    check_images(x, "random_shift (batch, C, H, W)")
    if x.dim() != 4:
        raise ValueError(f"random_shift needs images (batch, C, H, W), got shape {tuple(x.shape)}")
    if max_shift == 0:
        return x.clone()
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (batch, C, H + 2s, W + 2s)
    start = torch.randint(0, 2 * max_shift + 1, (n, 2)).tolist()  # top-left corner of each crop
    return torch.stack([padded[i, :, r:r + h, c:c + w] for i, (r, c) in enumerate(start)])


def with_shifts(loss_fn: Callable, max_shift: int = 2) -> Callable:
    """Data augmentation through `fit`'s loss hook: `loss_fn(model, random_shift(x), y)`.

    Wrapped around `distill_loss`, the teacher labels the very images the student sees, so every epoch brings
    new soft targets (a "consistent" teacher, Beyer et al. 2022). See notebooks/09_distillation.ipynb.
    """
    check_max_shift(max_shift)  # now, not at the first batch (and without drawing random numbers)
    callable_arg(loss_fn, "loss_fn")

    def shifted_loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        return loss_fn(model, random_shift(x, max_shift) if max_shift else x, y)

    return shifted_loss_fn


def mix_images(x: torch.Tensor, strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al. 2018): blend each image of a batch with a random partner from the same batch,
    lam * x + (1 - lam) * x[partner], with its own lam ~ Beta(strength, strength).

    Returns (mixed images, lam of shape (batch,), partner indices of shape (batch,)). A larger strength mixes
    more evenly. Draws from torch's global generator, so `seed_everything` makes it repeatable.
    See notebooks/09_distillation.ipynb.
    """
    check_mixup_strength(strength)
    check_images(x, "mix_images (batch, ...)")
    if x.dim() < 2:
        raise ValueError(f"mix_images needs a batch (batch, ...), got shape {tuple(x.shape)}")
    lam = torch.distributions.Beta(float(strength), float(strength)).sample((x.shape[0],)).to(x.device)
    partner = torch.randperm(x.shape[0]).to(x.device)  # drawn on the CPU: the same pairs on every device
    weight = lam.view(-1, *([1] * (x.dim() - 1)))
    return weight * x + (1 - weight) * x[partner], lam, partner


def mixed_labels(y: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The labels of `mix_images`'s output as class probabilities (batch, classes):
    lam * one_hot(y) + (1 - lam) * one_hot(y[partner]). `F.cross_entropy` takes them as targets.

    See notebooks/09_distillation.ipynb.
    """
    positive_int(num_classes, "num_classes")
    for name, t in (("y", y), ("lam", lam), ("partner", partner)):
        check_tensor(t, name, "a tensor of shape (batch,)")
        if t.dim() != 1 or len(t) != len(y):
            raise ValueError(f"y, lam and partner must have the same shape (batch,), got {name} {tuple(t.shape)} "
                             f"for y {tuple(y.shape)}")
    if y.is_floating_point() or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
        raise ValueError(f"y must hold class indices in [0, {num_classes}), got {y.tolist()!r:.60}")
    one_hot = F.one_hot(y, num_classes).to(lam.dtype)
    return lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[partner]


def mixup_loss(strength: float = 1.0) -> Callable:
    """A `loss_fn(model, x, y)` for `fit`: cross entropy on mixed images against their mixed labels (mixup
    without a teacher, the fair baseline for `distill_loss` with `KDConfig(mixup=)`). `fit`'s training accuracy
    then compares the predictions on mixed images with the first image's label. See notebooks/09_distillation.ipynb.
    """
    check_mixup_strength(strength)  # now, not at the first batch (and without drawing random numbers)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        mixed, lam, partner = mix_images(x, strength)
        logits = model(mixed)
        return F.cross_entropy(logits, mixed_labels(y, lam, partner, logits.shape[-1])), logits

    return loss_fn


def labels_loss(max_shift: int = 0, mixup: float = 0.0) -> Callable:
    """A `loss_fn` for `fit` that trains on the labels alone with the augmentation `distill_student` takes
    (`random_shift`, then `mix_images` with blended labels): the fair baseline for a distilled student.
    See notebooks/09_distillation.ipynb.
    """
    check_max_shift(max_shift)
    check_mixup(mixup)
    return with_shifts(mixup_loss(mixup) if mixup else cross_entropy_loss, max_shift)
