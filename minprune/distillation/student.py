"""Teaching a student: the distillation settings (`KDConfig`), the `loss_fn` that runs the teacher on every batch
(`distill_loss`), the training call (`distill_student`), and how much of the gap it closed (`gap_closed`).

The student copies the teacher's soft targets (Hinton et al. 2015), optionally its attention maps (Zagoruyko and
Komodakis 2017), on the very images it sees, shifted or blended (Beyer et al. 2022).
See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from minprune import devices
from minprune.batches import check_batch_fits, peek_batches
from minprune.devices import model_device
from minprune.distillation.augment import check_max_shift, check_mixup, mix_images, mixed_labels, with_shifts
from minprune.distillation.losses import check_temperature_alpha, hint_loss, kd_loss, number_in
from minprune.train import History, TrainConfig, eval_mode, fit
from minprune.validate import finite_number, float_model

DEFAULT_TRAIN = TrainConfig(epochs=3, lr=1e-3)  # distill_student's training when `train` is None
FIT_OPTIONS = ("val_loader", "callbacks", "progress", "device")  # what distill_student passes on to `fit`


@dataclass(frozen=True)
class KDConfig:
    """What the student learns from its teacher: `distill_student(student, teacher, loader, KDConfig(alpha=0.5))`.

    temperature, alpha: as in `kd_loss`. hints: module names (or {student_name: teacher_name}) whose outputs the
    student should match, weighted by `beta` (`hint_loss`, by rank: 4-D feature maps by attention transfer, 3-D
    hidden states (batch, tokens, dim) by normalised MSE, widths equal). max_shift > 0: every image batch is moved
    by `random_shift`; mixup > 0: then its images are blended in pairs (`mix_images`, that strength). The teacher
    labels the very images the student sees. Checked when built. See notebooks/09_distillation.ipynb.
    """

    temperature: float = 4.0
    alpha: float = 0.9
    hints: Iterable[str] | Mapping[str, str] | None = None
    beta: float = 10.0
    max_shift: int = 0
    mixup: float = 0.0

    def __post_init__(self):
        check_temperature_alpha(self.temperature, self.alpha)
        number_in(self.beta, "beta", "a number >= 0", low=0)
        check_max_shift(self.max_shift)
        check_mixup(self.mixup)  # 0 means no mixup
        if self.hints is not None:  # a copy, so that the frozen config cannot change under the training run
            object.__setattr__(self, "hints", _checked_hints(self.hints))


HINTS = "a list of module names or a {student module name: teacher module name} dict"


def _checked_hints(hints) -> dict[str, str] | tuple[str, ...]:
    """A copy of `hints` (module names, or {student name: teacher name}); TypeError if it is neither."""
    if isinstance(hints, (str, bytes)) or not isinstance(hints, (Mapping, Iterable)):
        raise TypeError(f"hints must be {HINTS}, got {type(hints).__name__} {hints!r:.60}")
    copied = dict(hints) if isinstance(hints, Mapping) else tuple(hints)
    names = [*copied.items()] if isinstance(copied, dict) else [(name,) for name in copied]
    if not all(isinstance(name, str) for pair in names for name in pair):
        raise TypeError(f"hints must be {HINTS} (strings), got {hints!r:.60}")
    return copied


def _checked_kd(kd: KDConfig | None) -> KDConfig:
    """`kd`, or the default `KDConfig()` for None; a TypeError for anything else."""
    if kd is None:
        return KDConfig()
    if not isinstance(kd, KDConfig):
        raise TypeError(f"kd must be a KDConfig(temperature=, alpha=, hints=, beta=, max_shift=, mixup=), "
                        f"got {type(kd).__name__}")
    return kd


def _checked_train(train: TrainConfig | None) -> TrainConfig:
    """`train`, or DEFAULT_TRAIN for None; a TypeError for anything else."""
    if train is None:
        return DEFAULT_TRAIN
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig(epochs=, lr=, optimizer=), got {type(train).__name__}")
    return train


def _check_fit_options(options: Mapping) -> None:
    """Refuse what `fit` must not get from distill_student: a loss of its own, or an unknown keyword."""
    if "loss_fn" in options:
        raise TypeError("distill_student sets fit's loss_fn itself (the teacher's soft targets); "
                        "to train on a loss of your own, call mp.fit")
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise TypeError(f"distill_student got unknown option(s) {unknown}: distillation settings go in "
                        f"kd=KDConfig(...), epochs, lr and optimizer in train=TrainConfig(...); "
                        f"options for fit: {', '.join(FIT_OPTIONS)}")


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


def distill_loss(teacher: nn.Module, kd: KDConfig | None = None) -> Callable:
    """A `loss_fn(model, x, y) -> (loss, logits)` for `fit` that adds the teacher's soft targets (`kd`: default
    `KDConfig()`), plus `beta` times the hint distance of each hinted pair of modules.

    kd.max_shift > 0: `random_shift` first; kd.mixup > 0: both models see `mix_images(x, mixup)`, so the teacher
    labels images that are not in the training set ("function matching", Beyer et al. 2022); the hard-label term
    uses `mixed_labels`. The teacher runs in eval mode without gradients. See notebooks/09_distillation.ipynb.
    """
    float_model(teacher, "distill_loss", "teacher")
    kd = _checked_kd(kd)
    hints = kd.hints or ()

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        pairs = _hint_pairs(model, teacher, hints)
        if kd.mixup:
            x, lam, partner = mix_images(x, kd.mixup)
        with torch.no_grad(), eval_mode(teacher), _capture(teacher, pairs.values()) as t_feats:
            teacher_logits = teacher(x.to(model_device(teacher)))
        with _capture(model, pairs) as s_feats:
            logits = model(x)
        if kd.mixup:
            y = mixed_labels(y, lam, partner, logits.shape[-1])
        loss = kd_loss(logits, teacher_logits.to(logits.device), y, temperature=kd.temperature, alpha=kd.alpha)
        if pairs:
            loss = loss + kd.beta * _hints_loss(pairs, s_feats, t_feats)
        return loss, logits

    return with_shifts(loss_fn, kd.max_shift)  # max_shift=0: the batches as they come


def _hints_loss(pairs: Mapping[str, str], s_feats: dict, t_feats: dict):
    """The sum of `hint_loss` over the hinted pairs (0 for none), on the student's device; a pair `hint_loss`
    refuses (ranks, widths, sizes) raises its error again naming both modules."""
    total = 0.0
    for s_name, t_name in pairs.items():
        if s_name not in s_feats or t_name not in t_feats:
            raise ValueError(f"hint {s_name!r} (student) -> {t_name!r} (teacher): the module did not run in the "
                             f"forward pass, so it has no output to match; hint modules that run")
        s_feat, t_feat = s_feats[s_name], t_feats[t_name]
        try:
            t_feat = t_feat.to(s_feat.device) if isinstance(s_feat, torch.Tensor) else t_feat
            total = total + hint_loss(s_feat, t_feat)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"hint {s_name!r} (student) -> {t_name!r} (teacher): {exc}") from None
    return total


def _check_teacher_fits(teacher: nn.Module, batch, classes: int) -> None:
    """Run the first batch through the teacher too (`check_batch_fits`): it must take the student's inputs and
    give as many outputs (`classes`) as the student, or its soft targets cannot be compared with the student's."""
    teacher_classes = check_batch_fits(teacher, batch, "train_loader (through the teacher)")
    if teacher_classes != classes:
        raise ValueError(f"the teacher has {teacher_classes} outputs but the student {classes}: distillation "
                         f"needs the same classes in both (for sequence models, the same vocabulary)")


def _check_augmentable(kd: KDConfig, x: torch.Tensor) -> None:
    """ValueError unless the augmentation `kd` asks for fits the first batch's x: shifts need images (batch, C,
    H, W), mixup floating inputs (token ids cannot be blended)."""
    got = f"train_loader yields {x.dtype} x of shape {tuple(x.shape)}"
    if kd.max_shift and x.dim() != 4:
        raise ValueError(f"KDConfig(max_shift={kd.max_shift}) shifts images (batch, C, H, W), but {got}; "
                         f"use max_shift=0 for other inputs (a sequence model's token ids)")
    if kd.mixup and not x.is_floating_point():
        raise ValueError(f"KDConfig(mixup={kd.mixup}) blends inputs, but {got}, which cannot be blended; "
                         f"use mixup=0 for integer inputs (a sequence model's token ids)")


def _check_fits(student: nn.Module, teacher: nn.Module, batch, kd: KDConfig) -> None:
    """The first batch through both models once (`check_batch_fits`, eval mode, nothing changes), with the hinted
    modules' outputs recorded on the way, so that every hint pair is computed once before training."""
    pairs = _hint_pairs(student, teacher, kd.hints or ())
    _check_augmentable(kd, batch[0])
    with _capture(student, pairs) as s_feats:
        classes = check_batch_fits(student, batch, "train_loader")
    with _capture(teacher, pairs.values()) as t_feats:
        _check_teacher_fits(teacher, batch, classes)
    with torch.no_grad():
        _hints_loss(pairs, s_feats, t_feats)


def distill_student(student: nn.Module, teacher: nn.Module, train_loader, kd: KDConfig | None = None,
                    train: TrainConfig | None = None, **fit_options) -> History:
    """Train `student` in place on the teacher's soft targets (plus hints); returns its History.

    kd: what it learns (default `KDConfig()`); train: epochs, lr, optimizer (default `TrainConfig(epochs=3)`).
    fit_options go to `fit`: val_loader, callbacks (such as a mask keeper), progress, device (default
    `mp.device()`; student and teacher both move there, an int8 teacher stays on the CPU). Sequence models
    (CharGPT: (batch, t, vocab) logits) distil per position. Bad settings fail before training (the first batch is
    run once through both models, in eval mode: its shape, labels in [0, outputs), the same number of outputs, every
    hint pair), and a failed call leaves both models as they were (train/eval flag, device); float16 and bfloat16
    models are refused (call .float() first). See notebooks/09_distillation.ipynb.
    """
    float_model(student, "distill_student", "student")
    float_model(teacher, "distill_student", "teacher")
    if student is teacher:
        raise ValueError("the student and the teacher must be different models (copy the teacher first)")
    kd, train = _checked_kd(kd), _checked_train(train)
    _check_fit_options(fit_options)
    first, _ = peek_batches(train_loader, "train_loader", reiterable=True)
    _check_fits(student, teacher, first, kd)  # fail before training starts
    device = devices.resolve(student, fit_options.pop("device", None))
    loss_fn = distill_loss(teacher, kd)
    teacher_device = model_device(teacher)
    try:
        if not devices.cpu_only(teacher):
            devices.place(teacher, device)
        return fit(student, train_loader, train, loss_fn=loss_fn, device=device, **fit_options)
    except BaseException:
        if model_device(teacher) != teacher_device:
            teacher.to(teacher_device)
        raise


def gap_closed(teacher_acc: float, alone_acc: float, distilled_acc: float) -> float:
    """Share (in %) of the teacher-student accuracy gap closed: 100 * (distilled - alone) / (teacher - alone).

    100 means the distilled student matches the teacher, 0 no gain, negative a loss; NaN when the student alone
    already matches the teacher (no gap to close). Each accuracy must be a finite number in [0, 100].
    See notebooks/09_distillation.ipynb.
    """
    for name, acc in (("teacher_acc", teacher_acc), ("alone_acc", alone_acc), ("distilled_acc", distilled_acc)):
        finite_number(acc, name, low=0, high=100)
    gap = teacher_acc - alone_acc
    return 100.0 * (distilled_acc - alone_acc) / gap if gap > 0 else float("nan")
