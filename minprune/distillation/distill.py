"""Knowledge distillation: a dense teacher teaches a pruned or smaller student.

Soft targets: Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network".
Feature hints: attention transfer, Zagoruyko and Komodakis 2017 (parameter-free, so a student whose
channels were pruned can still match the teacher's feature maps).
More inputs for the teacher to label: random shifts and mixup (Zhang et al. 2018); the teacher labels the very
images the student sees ("function matching", Beyer et al. 2022, "Knowledge distillation: A good teacher is
patient and consistent"). See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from minprune import devices
from minprune.data import load
from minprune.devices import model_device
from minprune.models import build
from minprune.train import History, cross_entropy_loss, fit, seed_everything
from minprune.zoo import shipped_or_cached


def _check_kd_args(temperature: float, alpha: float) -> None:
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T): a higher temperature spreads probability onto the wrong classes.

    See notebooks/09_distillation.ipynb.
    """
    _check_kd_args(temperature, 0.0)
    return F.softmax(logits / temperature, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton loss: alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y).

    The T^2 factor keeps the soft-target gradients the same size as the hard-target ones when T changes.
    With T=1 and alpha=0 this is plain cross entropy. Logits are (batch, classes); y is class indices (batch,)
    or class probabilities (batch, classes), such as `mixed_labels`.
    See notebooks/09_distillation.ipynb.
    """
    _check_kd_args(temperature, alpha)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}")
    hard = F.cross_entropy(student_logits, y)
    if alpha == 0:
        return hard
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def gap_closed(teacher_acc: float, alone_acc: float, distilled_acc: float) -> float:
    """Share (in %) of the teacher-student accuracy gap closed: 100 * (distilled - alone) / (teacher - alone).

    100 means the distilled student matches the teacher, 0 no gain, negative a loss; NaN when the student alone
    already matches the teacher (no gap to close). See notebooks/09_distillation.ipynb.
    """
    gap = teacher_acc - alone_acc
    return 100.0 * (distilled_acc - alone_acc) / gap if gap > 0 else float("nan")


def _check_max_shift(max_shift) -> None:
    if not isinstance(max_shift, int) or isinstance(max_shift, bool) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0 (pixels), got {max_shift!r}")


def _check_strength(strength) -> None:
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not strength > 0:
        raise ValueError(f"mixup strength must be a number > 0 (the Beta distribution's parameter), got {strength!r}")


def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Move each image of a batch (batch, C, H, W) by its own random whole-pixel offset in [-max_shift, max_shift]
    along each axis; the edge pixels are repeated into the gap (MNIST's edges are background). Returns a new tensor.

    Draws from torch's global generator, so `seed_everything` makes it repeatable. See notebooks/09_distillation.ipynb.
    """
    _check_max_shift(max_shift)
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
    _check_max_shift(max_shift)  # now, not at the first batch (and without drawing random numbers)

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
    _check_strength(strength)
    if x.dim() < 2:
        raise ValueError(f"mix_images needs a batch (batch, ...), got shape {tuple(x.shape)}")
    lam = torch.distributions.Beta(float(strength), float(strength)).sample((x.shape[0],)).to(x.device)
    partner = torch.randperm(x.shape[0]).to(x.device)  # drawn on the CPU: the same pairs on every device
    weight = lam.view(-1, *([1] * (x.dim() - 1)))
    return weight * x + (1 - weight) * x[partner], lam, partner


def mixed_labels(y: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The labels of `mix_images`'s output as class probabilities (batch, classes):
    lam * one_hot(y) + (1 - lam) * one_hot(y[partner]). `F.cross_entropy` takes them as targets.
    """
    one_hot = F.one_hot(y, num_classes).to(lam.dtype)
    return lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[partner]


def mixup_loss(strength: float = 1.0) -> Callable:
    """A `loss_fn(model, x, y)` for `fit`: cross entropy on mixed images against their mixed labels (mixup
    without a teacher, the fair baseline for `distill_loss(..., mixup=)`). `fit`'s training accuracy then
    compares the predictions on mixed images with the first image's label. See notebooks/09_distillation.ipynb.
    """
    _check_strength(strength)  # now, not at the first batch (and without drawing random numbers)

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
    return with_shifts(mixup_loss(mixup) if mixup else cross_entropy_loss, max_shift)


def shift_trained_teacher(arch: str = "lenet5", dataset: str = "mnist-small", *, epochs: int = 15, max_shift: int = 2,
                          seed: int = 0, progress: bool = False) -> nn.Module:
    """A teacher trained on randomly shifted images, so that it labels shifted images well: the shipped file
    (LeNet-5, the defaults), else trained on first use and cached, like `pretrained`. A teacher that never saw
    shifts mislabels them, and then its soft targets on augmented batches mislead the student.
    See notebooks/09_distillation.ipynb.
    """
    _check_max_shift(max_shift)
    filename = shift_teacher_filename(arch, dataset, epochs=epochs, max_shift=max_shift, seed=seed)
    return shipped_or_cached(filename, lambda: train_shift_teacher(arch, dataset, epochs=epochs, max_shift=max_shift,
                                                                   seed=seed, progress=progress),
                             what=f"shift-trained teacher {arch}")[0]


def shift_teacher_filename(arch: str, dataset: str, *, epochs: int, max_shift: int, seed: int) -> str:
    """The file name of a shift-trained teacher (shipped or cached)."""
    return f"{arch}-{dataset}-shift{max_shift}-epochs{epochs}-seed{seed}-teacher.pt"


def train_shift_teacher(arch: str, dataset: str, *, epochs: int, max_shift: int, seed: int,
                        progress: bool = False) -> tuple[nn.Module, dict]:
    """Train a fresh teacher on shifted images (seeded); returns (model, meta)."""
    _check_max_shift(max_shift)
    splits = load(dataset, seed=seed)
    seed_everything(seed)
    model = build(arch, input_shape=splits.input_shape, num_classes=splits.num_classes)
    fit(model, splits.loader("train", 64, seed=seed), epochs=epochs, progress=progress,
        loss_fn=labels_loss(max_shift))
    return model, {"max_shift": max_shift, "epochs": epochs}


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Spatial attention of a feature map (batch, C, H, W): mean over channels of F^2, flattened, unit L2 norm.

    Returns (batch, H * W). See notebooks/09_distillation.ipynb.
    """
    if features.dim() != 4:
        raise ValueError(f"attention maps need (batch, C, H, W) features, got shape {tuple(features.shape)}")
    return F.normalize(features.pow(2).mean(1).flatten(1), dim=1)


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Attention-transfer distance: mean squared difference of the two attention maps (channels may differ).

    See notebooks/09_distillation.ipynb.
    """
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError(f"hint features need the same spatial size, got {tuple(student_features.shape)} and "
                         f"{tuple(teacher_features.shape)}")
    return (attention_map(student_features) - attention_map(teacher_features.detach())).pow(2).sum(1).mean()


def _hint_pairs(student: nn.Module, teacher: nn.Module, hints) -> dict[str, str]:
    """Normalise `hints` (a list of module names shared by both, or {student_name: teacher_name})."""
    pairs = dict(hints) if isinstance(hints, Mapping) else {name: name for name in hints}
    student_names, teacher_names = dict(student.named_modules()), dict(teacher.named_modules())
    for s_name, t_name in pairs.items():
        if s_name not in student_names:
            raise ValueError(f"hint module {s_name!r} is not in the student; try one of {list(student_names)[1:8]}")
        if t_name not in teacher_names:
            raise ValueError(f"hint module {t_name!r} is not in the teacher; try one of {list(teacher_names)[1:8]}")
    return pairs


@contextmanager
def _capture(model: nn.Module, names: Iterable[str]):
    """Record the outputs of the named submodules during the forward passes inside the block."""
    modules, out, handles = dict(model.named_modules()), {}, []
    for name in names:
        handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o)))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def distill_loss(teacher: nn.Module, *, temperature: float = 4.0, alpha: float = 0.9,
                 hints=None, beta: float = 10.0, mixup: float = 0.0) -> Callable:
    """A `loss_fn(model, x, y) -> (loss, logits)` for `fit` that adds the teacher's soft targets.

    hints: module names (or {student_name: teacher_name}) whose feature maps the student should match,
    weighted by `beta`. mixup > 0: both models see `mix_images(x, mixup)`, so the teacher labels images that
    are not in the training set ("function matching", Beyer et al. 2022); the hard-label term uses
    `mixed_labels`. The teacher runs in eval mode without gradients. See notebooks/09_distillation.ipynb.
    """
    _check_kd_args(temperature, alpha)
    if not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    if mixup:
        _check_strength(mixup)
    hints = hints or []

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        pairs = _hint_pairs(model, teacher, hints)
        if mixup:
            x, lam, partner = mix_images(x, mixup)
        teacher.eval()
        with torch.no_grad(), _capture(teacher, pairs.values()) as t_feats:
            teacher_logits = teacher(x.to(model_device(teacher)))
        with _capture(model, pairs) as s_feats:
            logits = model(x)
        if mixup:
            y = mixed_labels(y, lam, partner, logits.shape[-1])
        loss = kd_loss(logits, teacher_logits.to(logits.device), y, temperature=temperature, alpha=alpha)
        for s_name, t_name in pairs.items():
            loss = loss + beta * hint_loss(s_feats[s_name], t_feats[t_name].to(logits.device))
        return loss, logits

    return loss_fn


def distill_student(student: nn.Module, teacher: nn.Module, train_loader, *, epochs: int = 3, lr: float = 1e-3,
                    temperature: float = 4.0, alpha: float = 0.9, hints=None, beta: float = 10.0,
                    max_shift: int = 0, mixup: float = 0.0, device=None, **fit_kwargs) -> History:
    """Train `student` in place on the teacher's soft targets (plus hints); returns its History.

    max_shift > 0: augment every batch with `random_shift` (teacher and student see the same shifted images).
    mixup > 0: then blend the images in pairs (`mix_images`); the teacher labels the blends.
    device: as in `fit` (default `mp.device()`); student and teacher both move there (an int8 teacher stays on the
    CPU). Extra keyword arguments go to `fit` (val_loader, callbacks such as a mask keeper, optimizer, progress).
    See notebooks/09_distillation.ipynb.
    """
    if student is teacher:
        raise ValueError("the student and the teacher must be different models (copy the teacher first)")
    _check_kd_args(temperature, alpha)
    if hints:
        _hint_pairs(student, teacher, hints)  # fail before training starts
    device = devices.resolve(student, device)
    if not devices.cpu_only(teacher):
        devices.place(teacher, device)
    loss_fn = with_shifts(distill_loss(teacher, temperature=temperature, alpha=alpha, hints=hints, beta=beta,
                                       mixup=mixup), max_shift)
    return fit(student, train_loader, epochs=epochs, lr=lr, loss_fn=loss_fn, device=device, **fit_kwargs)
