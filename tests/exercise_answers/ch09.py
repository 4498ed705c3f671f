"""Wrong and right answers to chapter 9's exercises."""

import warnings

import torch
import torch.nn.functional as F


# ---- 9.1 soft targets
def soft_targets_naive_exp(logits, T):
    e = torch.exp(logits / T)  # overflows to inf for logits above about 88 T
    return e / e.sum(dim=-1, keepdim=True)


def soft_targets_global_max(logits, T):
    z = logits / T
    e = torch.exp(z - z.max())  # one max for the whole tensor: a row far below it underflows to 0 / 0
    return e / e.sum(dim=-1, keepdim=True)


def soft_targets_over_dim0(logits, T):
    return torch.softmax(logits / T, dim=0)


def soft_targets_over_dim1(logits, T):
    return torch.softmax(logits / T, dim=1)


def soft_targets_times_T(logits, T):
    return torch.softmax(logits * T, dim=-1)


def soft_targets_divided_after(logits, T):
    return torch.softmax(logits, dim=-1) / T


def soft_targets_in_place(logits, T):
    logits /= T
    return torch.softmax(logits, dim=-1)


def soft_targets_logsumexp(logits, T):
    z = logits / T
    return torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True))


# ---- 9.2 the Hinton loss
def kd_loss_without_T2(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_kl_reversed(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(teacher_logits.detach() / T, dim=1), F.log_softmax(student_logits / T, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_mean_reduction(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    with warnings.catch_warnings():  # PyTorch warns that 'mean' is not the KL divergence: the mistake itself
        warnings.simplefilter("ignore")
        soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits.detach() / T, dim=1),
                        reduction="mean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_softmax_target(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_log_of_softmax(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    log_ps = torch.log(F.softmax(student_logits / T, dim=1))  # -inf where a probability underflows to 0
    log_pt = torch.log(F.softmax(teacher_logits.detach() / T, dim=1))
    soft = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_teacher_not_detached(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits / T, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


def kd_loss_soft_cross_entropy(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits / T, y)


def kd_loss_as_number(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean", log_target=True)
    return (alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)).item()


def kd_loss_by_hand(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / T, dim=-1)
    log_p_student = torch.log_softmax(student_logits / T, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1).mean()
    ce = -torch.log_softmax(student_logits, dim=-1).gather(1, y[:, None]).mean()
    return alpha * T**2 * kl + (1 - alpha) * ce


def kd_loss_probability_target(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    with torch.no_grad():
        p_teacher = torch.softmax(teacher_logits / T, dim=1)
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), p_teacher, reduction="sum") / len(student_logits)
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, y)


# ---- 9.3 the attention map
def attention_map_no_guard(features):
    a = (features**2).mean(dim=1).flatten(1)
    return a / a.norm(dim=1, keepdim=True)


def attention_map_eps_added(features):
    a = (features**2).mean(dim=1).flatten(1)
    return a / (a.norm(dim=1, keepdim=True) + 1e-6)


def attention_map_abs(features):
    return F.normalize(features.abs().mean(dim=1).flatten(1), dim=1)


def attention_map_square_of_mean(features):
    return F.normalize(features.mean(dim=1).pow(2).flatten(1), dim=1)


def attention_map_batch_mean(features):
    return F.normalize(features.pow(2).mean(dim=0).flatten(1), dim=1)


def attention_map_column_order(features):
    a = features.pow(2).mean(dim=1)  # (batch, H, W)
    return F.normalize(a.transpose(1, 2).reshape(len(features), -1), dim=1)


def attention_map_one_norm_for_the_batch(features):
    a = features.pow(2).mean(dim=1).flatten(1)
    return a / a.norm().clamp_min(1e-12)


def attention_map_l1(features):
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), p=1, dim=1)


def attention_map_einsum(features):
    a = torch.einsum("bchw,bchw->bhw", features, features).reshape(features.shape[0], -1)  # the sum: same direction
    n = a.pow(2).sum(dim=1, keepdim=True).sqrt()
    return a / torch.where(n > 0, n, torch.ones_like(n))


WRONG = {
    "9.1": [soft_targets_naive_exp, soft_targets_global_max, soft_targets_over_dim0, soft_targets_over_dim1,
            soft_targets_times_T, soft_targets_divided_after, soft_targets_in_place],
    "9.2": [kd_loss_without_T2, kd_loss_kl_reversed, kd_loss_mean_reduction, kd_loss_softmax_target,
            kd_loss_log_of_softmax, kd_loss_teacher_not_detached, kd_loss_soft_cross_entropy, kd_loss_as_number],
    "9.3": [attention_map_no_guard, attention_map_eps_added, attention_map_abs, attention_map_square_of_mean,
            attention_map_batch_mean, attention_map_column_order, attention_map_one_norm_for_the_batch,
            attention_map_l1],
}
RIGHT = {"9.1": [soft_targets_logsumexp], "9.2": [kd_loss_by_hand, kd_loss_probability_target],
         "9.3": [attention_map_einsum]}
