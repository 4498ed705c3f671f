"""The distillation losses on tensors: soft targets, the Hinton loss, attention maps and the hint distances.

Soft targets: Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network".
Feature hints: attention transfer, Zagoruyko and Komodakis 2017 (parameter-free, so a student whose
channels were pruned can still match the teacher's feature maps). Hidden-state hints between transformer blocks:
TinyBERT (Jiao et al. 2020) and Minitron (Sreenivas et al. 2024). See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minprune.validate import finite_number


def number_in(value, name: str, accepts: str, **bounds) -> float:
    """`finite_number(value, name, **bounds)`, whose ValueError reads "<name> must be <accepts>, got <value>"
    (the wording the distillation messages have always had); NaN and inf are refused too."""
    try:
        return finite_number(value, name, **bounds)
    except ValueError:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        why = " (NaN and inf are refused)" if number and not math.isfinite(value) else ""
        raise ValueError(f"{name} must be {accepts}, got {value!r}{why}") from None


def check_temperature_alpha(temperature: float, alpha: float) -> None:
    """Raise ValueError unless temperature is a finite number > 0 and alpha one in [0, 1] (the Hinton loss's two
    settings); bools, strings, NaN and inf are refused."""
    number_in(temperature, "temperature", "a number > 0", low=0, low_open=True)
    number_in(alpha, "alpha", "in [0, 1]", low=0, high=1)


def check_tensor(value, name: str, what: str = "a tensor") -> torch.Tensor:
    """`value` when it is a torch.Tensor; else TypeError naming `name` and what it should hold."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T): a higher temperature spreads probability onto the wrong classes.

    See notebooks/09_distillation.ipynb.
    """
    check_temperature_alpha(temperature, 0.0)
    check_tensor(logits, "logits", "a tensor of logits (batch, classes)")
    return F.softmax(logits / temperature, dim=-1)


def _per_position(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor):
    """(student, teacher, y) with every position one example: a sequence model's (batch, t, classes) logits become
    (batch * t, classes), its targets (batch, t) -> (batch * t,) or probabilities (batch, t, classes) ->
    (batch * t, classes). (batch, classes) logits come back as they are; ValueError for targets of another shape."""
    if student_logits.dim() <= 2:
        return student_logits, teacher_logits, y
    positions, shape = tuple(student_logits.shape[:-1]), tuple(student_logits.shape)
    if tuple(y.shape) == positions:
        y = y.flatten()
    elif tuple(y.shape) == shape:
        y = y.flatten(0, -2)
    else:
        raise ValueError(f"y must hold class indices of shape {positions} (one per position) or class probabilities "
                         f"of shape {shape} for logits of shape {shape}, got shape {tuple(y.shape)}")
    return student_logits.flatten(0, -2), teacher_logits.flatten(0, -2), y


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """ValueError unless both are logits of one shape, (batch, classes) or (batch, t, classes); TypeError unless
    both are floating-point."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}")
    if not (student_logits.is_floating_point() and teacher_logits.is_floating_point()):
        raise TypeError(f"logits must be floating-point tensors, got student {student_logits.dtype} and teacher "
                        f"{teacher_logits.dtype}")
    if student_logits.dim() < 2:
        raise ValueError(f"logits must be (batch, classes) or (batch, t, classes), got shape "
                         f"{tuple(student_logits.shape)}")


def _checked_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`y` ready for cross entropy with (N, classes) logits: int class indices (N,) in [0, classes), as int64, or
    float class probabilities (N, classes); TypeError / ValueError naming y otherwise (not torch's IndexError)."""
    n, classes = logits.shape
    if y.is_floating_point():
        if tuple(y.shape) != (n, classes):
            raise TypeError(f"y is a {y.dtype} tensor, so it must hold class probabilities of shape {(n, classes)}, "
                            f"got shape {tuple(y.shape)}; class indices are integers (y.long())")
        return y
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"y must hold int class indices or float class probabilities, got a {y.dtype} tensor")
    if tuple(y.shape) != (n,):
        raise ValueError(f"y must hold one class index per example, shape ({n},), got shape {tuple(y.shape)}")
    outside = y[(y < 0) | (y >= classes)]
    if len(outside):
        raise ValueError(f"y holds class index {int(outside[0])}, outside [0, {classes}) (the logits' classes)")
    return y.long()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton loss: alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y).

    The T^2 factor keeps the soft-target gradients the same size as the hard-target ones when T changes.
    With T=1 and alpha=0 this is plain cross entropy. Logits are (batch, classes); y is class indices (batch,)
    or class probabilities (batch, classes), such as `mixed_labels`. A sequence model's (batch, t, classes) logits
    take y (batch, t) (or (batch, t, classes)): each position is one example, both terms are means per position.
    See notebooks/09_distillation.ipynb.
    """
    check_temperature_alpha(temperature, alpha)
    check_tensor(student_logits, "student_logits", "a tensor of logits (batch, classes)")
    check_tensor(teacher_logits, "teacher_logits", "a tensor of logits (batch, classes)")
    check_tensor(y, "y", "a tensor of class indices (batch,) or class probabilities (batch, classes)")
    _check_logits(student_logits, teacher_logits)
    student_logits, teacher_logits, y = _per_position(student_logits, teacher_logits, y)
    hard = F.cross_entropy(student_logits, _checked_targets(student_logits, y))
    if alpha == 0:
        return hard
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)  # a mean per example
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Spatial attention of a feature map (batch, C, H, W): mean over channels of F^2, flattened, unit L2 norm.

    Returns (batch, H * W). See notebooks/09_distillation.ipynb.
    """
    check_tensor(features, "features", "a tensor of feature maps (batch, C, H, W)")
    if features.dim() != 4:
        raise ValueError(f"attention maps need (batch, C, H, W) features, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"attention maps need floating-point features, got a {features.dtype} tensor")
    return F.normalize(features.pow(2).mean(1).flatten(1), dim=1)


def hidden_state_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Normalised MSE of two hidden states (batch, tokens, dim): mean((h_s - h_t)^2) / var(h_t), the variance over
    all of the teacher's values. 0 when they are equal, 1 for a student that outputs the teacher's mean: the
    scale of the residual stream (which grows with depth) drops out, so one `beta` suits every block.

    The widths must match: ValueError naming both, as no projection is learned (TinyBERT's W_h would be a layer
    to train). See notebooks/09_distillation.ipynb.
    """
    check_tensor(student_hidden, "student_hidden", "a tensor of hidden states (batch, tokens, dim)")
    check_tensor(teacher_hidden, "teacher_hidden", "a tensor of hidden states (batch, tokens, dim)")
    s_shape, t_shape = tuple(student_hidden.shape), tuple(teacher_hidden.shape)
    if not (student_hidden.is_floating_point() and teacher_hidden.is_floating_point()):
        raise TypeError(f"hidden states must be floating-point tensors, got student {student_hidden.dtype} and "
                        f"teacher {teacher_hidden.dtype}")
    if student_hidden.dim() != 3 or teacher_hidden.dim() != 3 or s_shape[:2] != t_shape[:2]:
        raise ValueError(f"hidden-state hints need (batch, tokens, dim) states of the same batch and tokens, got "
                         f"student {s_shape} and teacher {t_shape}")
    if s_shape[2] != t_shape[2]:
        raise ValueError(f"hidden-state hints need the same width: the student's is {s_shape[2]}, the teacher's "
                         f"{t_shape[2]} (no projection is learned between them); hint a student module as wide as "
                         f"the teacher's")
    if 0 in s_shape:
        raise ValueError(f"hidden-state hints need at least one value, got empty states of shape {s_shape}")
    teacher_hidden = teacher_hidden.detach()
    scale = teacher_hidden.var(unbiased=False).clamp_min(torch.finfo(teacher_hidden.dtype).tiny)
    return (student_hidden - teacher_hidden).pow(2).mean() / scale


HINT_FEATURES = "4-D feature maps (batch, C, H, W) or 3-D hidden states (batch, tokens, dim)"


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """The hint distance, chosen by the features' rank: 4-D feature maps (batch, C, H, W) by attention transfer
    (mean squared difference of the two attention maps; channels may differ), 3-D hidden states (batch, tokens,
    dim) by `hidden_state_loss` (widths must match). ValueError for other ranks or ranks that differ.

    See notebooks/09_distillation.ipynb.
    """
    check_tensor(student_features, "student_features", f"a tensor: {HINT_FEATURES}")
    check_tensor(teacher_features, "teacher_features", f"a tensor: {HINT_FEATURES}")
    ranks = (student_features.dim(), teacher_features.dim())
    if ranks[0] != ranks[1] or ranks[0] not in (3, 4):
        raise ValueError(f"hints compare {HINT_FEATURES} of the same rank, got student {tuple(student_features.shape)} "
                         f"and teacher {tuple(teacher_features.shape)}")
    if ranks[0] == 3:
        return hidden_state_loss(student_features, teacher_features)
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError(f"hint features need the same spatial size, got {tuple(student_features.shape)} and "
                         f"{tuple(teacher_features.shape)}")
    return (attention_map(student_features) - attention_map(teacher_features.detach())).pow(2).sum(1).mean()
