"""Chapter 9 (distillation): the exercises' designed cases and hints.

9.1 soft targets, 9.2 the Hinton loss, 9.3 the attention map of a feature tensor.
See notebooks/09_distillation.ipynb.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from minprune.course.exercises import exercise
from minprune.distillation.losses import attention_map, kd_loss, soft_targets


def _close(got, candidate, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Whether the learner's tensor `got` equals `candidate` (a known wrong answer) in shape and values."""
    return (isinstance(got, torch.Tensor) and got.shape == candidate.shape
            and bool(torch.allclose(got.detach().double(), candidate.detach().double(), rtol=rtol, atol=atol,
                                   equal_nan=True)))


def _first_hint(got, expected, variants, **tolerance) -> str | None:
    """The hint of the first (candidate, hint) whose candidate the learner's result matches, among the candidates
    that differ from the expected value on this case (at T = 1, multiplying by T is no mistake)."""
    for candidate, hint in variants:
        if _close(got, candidate, **tolerance) and not _close(expected, candidate, **tolerance):
            return hint
    return None


# ---- 9.1 soft targets ------------------------------------------------------------------------------------------

def _soft_targets_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(9)
    return [
        (torch.tensor([[1000.0, 999.0, 0.0], [0.0, -1.0, -2.0]]), 1.0),  # a naive exp overflows; rows far apart
        (torch.tensor([800.0, 790.0, 0.0]), 10.0),  # still too large for exp at T = 10
        (torch.randn(2, 3, 4, generator=g) * 3, 2.0),  # 3-d logits: the classes are the last dimension only
        (torch.randn(3, 5, generator=g) * 2, 0.5),  # T < 1 sharpens
        (torch.randn(4, 6, generator=g, dtype=torch.float64) * 4, 3.0),  # float64 stays float64
    ]


def _soft_targets_diagnoses(case, expected, got):
    logits, T = case
    if isinstance(got, IndexError):
        return "the logits may have any number of dimensions: the classes are the last one (dim=-1)"
    if isinstance(got, Exception):
        return None
    z = logits / T
    rows_apart = z - z.max()  # the largest logit of the whole tensor, not of each row
    e = rows_apart.exp()
    variants = [(e / e.sum(-1, keepdim=True), "subtract each row's own largest logit, not the largest of the "
                 "whole tensor: a row far below it underflows to 0 / 0")]
    variants += [(F.softmax(z, dim=d), f"normalise over the last dimension (the classes), not over dimension {d}")
                 for d in range(logits.dim() - 1)]
    variants += [(F.softmax(logits * T, dim=-1), "divide the logits by T: multiplying by T sharpens instead of "
                  "softening"),
                 (F.softmax(logits, dim=-1), "the temperature is missing: divide the logits by T first"),
                 (F.softmax(logits, dim=-1) / T, "divide the logits by T before the softmax, not the probabilities "
                  "after it (they no longer sum to 1)")]
    found = _first_hint(got, expected, variants)
    if found:
        return found
    if isinstance(got, torch.Tensor) and not bool(torch.isfinite(got).all()):
        return ("NaN or inf for large logits: exp overflows above about 88 in float32. Subtracting a row's largest "
                "logit changes no probability and keeps exp in range")
    return None


exercise("9.1", "soft targets: softmax(logits / T) over the last dimension", soft_targets, _soft_targets_cases,
         hint="divide the logits by T, then normalise over the last dimension", diagnoses=(_soft_targets_diagnoses,),
         rtol=1e-4)  # a right answer through logsumexp rounds logits near 1000 to float32's 6e-5


# ---- 9.2 the Hinton loss ---------------------------------------------------------------------------------------

def kd_loss_positional(student_logits, teacher_logits, y, temperature, alpha):
    """`kd_loss` with the temperature and alpha passed by position, as the exercise's `my_kd_loss` takes them."""
    return kd_loss(student_logits, teacher_logits, y, temperature=temperature, alpha=alpha)


def _reaches(grad) -> bool:
    return grad is not None and bool((grad != 0).any())  # NaN counts as a gradient


def _kd_call(fn, student_logits, teacher_logits, y, temperature, alpha) -> dict:
    """The loss and which logits it sends a gradient to (the teacher's must get none), computed on copies."""
    student = student_logits.detach().clone().requires_grad_(True)
    teacher = teacher_logits.detach().clone().requires_grad_(True)
    loss = fn(student, teacher, y, temperature, alpha)
    grads = (None, None)
    if isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1:
        grads = torch.autograd.grad(loss.sum(), [student, teacher], allow_unused=True)
    if isinstance(loss, torch.Tensor):
        loss = loss.detach()
    return {"loss": loss, "gradient reaches the student": _reaches(grads[0]),
            "gradient reaches the teacher": _reaches(grads[1])}


def _kd_loss_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(92)

    def logits(*shape, scale=3.0, dtype=torch.float32):
        return torch.randn(*shape, generator=g, dtype=dtype) * scale

    return [
        (logits(5, 7), logits(5, 7), torch.randint(0, 7, (5,), generator=g), 4.0, 0.9),
        (logits(3, 4), logits(3, 4), torch.tensor([0, 3, 1]), 0.5, 0.5),  # T < 1
        (logits(4, 6), logits(4, 6), torch.tensor([5, 0, 2, 2]), 2.0, 1.0),  # the soft term alone
        (logits(4, 6), logits(4, 6), torch.tensor([1, 4, 0, 3]), 3.0, 0.0),  # cross entropy alone, at T = 3
        (logits(6, 5, scale=40.0), logits(6, 5, scale=40.0), torch.arange(6) % 5, 1.0, 0.5),  # probabilities ~ 0
        (logits(1, 10), logits(1, 10), torch.tensor([7]), 8.0, 0.7),  # a batch of one example
        (logits(3, 5, dtype=torch.float64), logits(3, 5, dtype=torch.float64), torch.tensor([0, 1, 2]), 2.0, 0.3),
    ]


def _kd_variants(case):
    """(wrong loss, hint) for the usual mistakes."""
    s, t, y, T, alpha = case
    log_ps, log_pt = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)
    hard = F.cross_entropy(s, y)

    def mix(soft, factor=T * T, hard_term=hard):
        return alpha * factor * soft + (1 - alpha) * hard_term

    kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    with warnings.catch_warnings():  # reduction='mean' warns that it will change: the learner's mistake, not ours
        warnings.simplefilter("ignore")
        kl_mean = F.kl_div(log_ps, log_pt, reduction="mean", log_target=True)
    return [
        (mix(kl, factor=1.0), "the soft term is missing its T^2 factor (its gradients shrink like 1/T^2)"),
        (mix(kl, factor=T), "the soft term is scaled by T, not by T^2"),
        (mix(F.kl_div(log_pt, log_ps, reduction="batchmean", log_target=True)),
         "the KL divergence goes the other way: it is KL(teacher || student), the teacher's probabilities weigh "
         "the log-ratio; F.kl_div takes the student's log-probabilities first"),
        (mix(kl_mean),
         "reduction='mean' divides by batch x classes; the loss is a mean per example: reduction='batchmean'"),
        (mix(F.kl_div(log_ps, log_pt, reduction="sum", log_target=True)),
         "the soft term is summed over the batch: divide by the number of examples (reduction='batchmean')"),
        (mix(F.kl_div(log_ps, F.softmax(t / T, dim=1), reduction="batchmean", log_target=True)),
         "with log_target=True the target must be log-probabilities (log_softmax), not probabilities"),
        (mix(F.kl_div(F.softmax(s / T, dim=1), log_pt, reduction="batchmean", log_target=True)),
         "F.kl_div's first argument is the student's log-probabilities (log_softmax), not probabilities"),
        (mix(kl, hard_term=F.cross_entropy(s / T, y)),
         "the cross entropy with the labels uses the student's logits as they are, not divided by T"),
        (alpha * hard + (1 - alpha) * T * T * kl, "alpha weighs the soft (teacher) term and 1 - alpha the labels"),
    ]


def _kd_diagnoses(case, expected, got):
    if isinstance(got, RuntimeError) and "in-place" in str(got):
        return "do not change the logits in place: compute new tensors (logits / T, not logits /= T)"
    if isinstance(got, Exception):
        return None
    if isinstance(got["loss"], torch.Tensor) and got["loss"].dim() != 0:
        return "the loss is one number, a mean over the batch: reduce it to a 0-dim tensor"
    loss = got["loss"]
    if isinstance(loss, (torch.Tensor, float)) and not bool(torch.isfinite(torch.as_tensor(loss)).all()):
        return ("NaN or inf: the log of a softmax that underflowed to 0 for large logits? F.log_softmax computes "
                "log-probabilities without that underflow")
    if got["gradient reaches the teacher"] and not expected["gradient reaches the teacher"]:
        return "the teacher is not trained: detach its logits so that no gradient flows back to it"
    if not got["gradient reaches the student"] and expected["gradient reaches the student"]:
        return "return the loss as a tensor that carries the student's gradient (no .item(), float() or no_grad)"
    loss = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    variants = [(candidate.detach(), hint) for candidate, hint in _kd_variants(case)]
    return _first_hint(loss, expected["loss"], variants, rtol=1e-5, atol=1e-7)


exercise("9.2", "the Hinton distillation loss", kd_loss_positional, _kd_loss_cases, call=_kd_call,
         hint="alpha * T^2 * KL(teacher || student) at temperature T, a mean per example, + (1 - alpha) * cross "
              "entropy of the student's logits with the labels",
         diagnoses=(_kd_diagnoses,), atol=1e-7, rtol=1e-5)


# ---- 9.3 the attention map -------------------------------------------------------------------------------------

def _attention_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(93)
    with_zero = torch.randn(2, 2, 3, 3, generator=g)
    with_zero[0] = 0  # a feature map that is zero everywhere (a dead ReLU layer): its attention map is zero
    return [
        (torch.randn(2, 3, 4, 5, generator=g),),  # H != W, batch != channels
        (torch.randn(3, 3, 2, 5, generator=g),),  # batch == channels: averaging the wrong one keeps the shape
        (with_zero,),
        (torch.randn(2, 4, 3, 2, generator=g) * 3e-3,),  # small features: an eps added to the norm shows
        (torch.randn(1, 4, 2, 3, generator=g, dtype=torch.float64),),  # float64 stays float64
    ]


def _attention_diagnoses(case, expected, got):
    (features,) = case
    if isinstance(got, Exception) or not isinstance(got, torch.Tensor):
        return None
    squares = features.pow(2)
    a = squares.mean(1).flatten(1)
    if got.shape != expected.shape:
        return (f"one map of H * W = {expected.shape[1]} values per example: average the squares over the channels "
                "(dimension 1), then flatten each example's map")
    if bool(torch.isnan(got).any()) and not bool(torch.isnan(expected).any()):
        return "NaN for a map that is zero everywhere: guard the division by its norm (clamp the norm from below)"
    norm = a.norm(dim=1, keepdim=True)
    variants = [
        (a, "divide each example's map by its L2 norm"),
        (a / a.sum(1, keepdim=True).clamp_min(1e-12), "normalise by the L2 norm (square root of the sum of "
         "squares), not by the sum"),
        (a / a.norm(), "normalise each example's map by its own norm, not the whole batch by one norm"),
        (F.normalize(a, dim=0), "the norm is taken over the batch (dimension 0): take it over each map's H * W values"),
        (F.normalize(features.abs().mean(1).flatten(1), dim=1), "square the features: |F| is not F^2"),
        (F.normalize(features.mean(1).pow(2).flatten(1), dim=1),
         "square first, then average over the channels (the mean of squares, not the square of the mean)"),
        (F.normalize(squares.mean(1).transpose(1, 2).flatten(1), dim=1),
         "flatten each map row by row (H, W) -> H * W, in the order of the tensor; it was flattened column by column"),
    ]
    if features.shape[0] == features.shape[1]:
        variants.append((F.normalize(squares.mean(0).flatten(1), dim=1),
                         "average over the channels (dimension 1), not over the batch (dimension 0)"))
    found = _first_hint(got, expected, variants)
    if found:
        return found
    if bool((norm < 1e-3).all()) and _close(got, expected, rtol=0.5, atol=0):
        return ("close, but not for small features: an eps added to the norm changes small maps; only clamp the "
                "norm from below at a tiny value (1e-12), which changes nothing but the zero map")
    return None


exercise("9.3", "the attention map of a feature tensor", attention_map, _attention_cases,
         hint="the mean over the channels of the squared features, each map flattened to H * W values and divided "
              "by its L2 norm",
         diagnoses=(_attention_diagnoses,), atol=1e-7, rtol=1e-5)
