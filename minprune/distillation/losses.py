"""The distillation losses on tensors: soft targets, the Hinton loss, attention maps and the hint distance.

Soft targets: Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network".
Feature hints: attention transfer, Zagoruyko and Komodakis 2017 (parameter-free, so a student whose
channels were pruned can still match the teacher's feature maps). See notebooks/09_distillation.ipynb.
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


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton loss: alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y).

    The T^2 factor keeps the soft-target gradients the same size as the hard-target ones when T changes.
    With T=1 and alpha=0 this is plain cross entropy. Logits are (batch, classes); y is class indices (batch,)
    or class probabilities (batch, classes), such as `mixed_labels`.
    See notebooks/09_distillation.ipynb.
    """
    check_temperature_alpha(temperature, alpha)
    check_tensor(student_logits, "student_logits", "a tensor of logits (batch, classes)")
    check_tensor(teacher_logits, "teacher_logits", "a tensor of logits (batch, classes)")
    check_tensor(y, "y", "a tensor of class indices (batch,) or class probabilities (batch, classes)")
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


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Spatial attention of a feature map (batch, C, H, W): mean over channels of F^2, flattened, unit L2 norm.

    Returns (batch, H * W). See notebooks/09_distillation.ipynb.
    """
    check_tensor(features, "features", "a tensor of feature maps (batch, C, H, W)")
    if features.dim() != 4:
        raise ValueError(f"attention maps need (batch, C, H, W) features, got shape {tuple(features.shape)}")
    return F.normalize(features.pow(2).mean(1).flatten(1), dim=1)


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Attention-transfer distance: mean squared difference of the two attention maps (channels may differ).

    See notebooks/09_distillation.ipynb.
    """
    check_tensor(student_features, "student_features", "a tensor of feature maps (batch, C, H, W)")
    check_tensor(teacher_features, "teacher_features", "a tensor of feature maps (batch, C, H, W)")
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError(f"hint features need the same spatial size, got {tuple(student_features.shape)} and "
                         f"{tuple(teacher_features.shape)}")
    return (attention_map(student_features) - attention_map(teacher_features.detach())).pow(2).sum(1).mean()
