"""Wrong and right answers to chapter 13's exercises."""

import torch

# Exercise 13.1 ---------------------------------------------------------------------------------------------------


def obd_no_half(W, H):
    return W**2 * H.diagonal()[None, :]


def obd_divided_by_h(W, H):
    return W**2 / H.diagonal()[None, :] / 2


def obd_inverse_diagonal(W, H):
    return W**2 * torch.linalg.inv(H).diagonal()[None, :] / 2


def obd_abs_weight(W, H):
    return W.abs() * H.diagonal() / 2


def obd_diagonal_on_rows(W, H):
    return W**2 * H.diagonal()[:, None] / 2


def obd_matmul(W, H):
    return (W**2) @ H / 2


def obd_in_place(W, H):
    return W.detach().pow_(2).mul_(H.diagonal()).div_(2)  # detach() shares W's storage


def obd_by_einsum(W, H):
    """Written differently: the diagonal by einsum, the square as a product."""
    return 0.5 * torch.einsum("ij,jj->ij", W * W, H)


# Exercise 13.2 ---------------------------------------------------------------------------------------------------


def obs_h_not_inverse(w, H_inv, q):
    H = torch.linalg.inv(H_inv)
    return -w[q] / H[q, q] * H_inv[:, q], float(w[q] ** 2 / (2 * H[q, q]))


def obs_wrong_sign(w, H_inv, q):
    return w[q] / H_inv[q, q] * H_inv[:, q], float(w[q] ** 2 / (2 * H_inv[q, q]))


def obs_keeps_w_q(w, H_inv, q):  # moves the others but leaves w_q where it was
    delta = -w[q] / H_inv[q, q] * H_inv[:, q]
    delta[q] = 0
    return delta, float(w[q] ** 2 / (2 * H_inv[q, q]))


def obs_returns_new_row(w, H_inv, q):
    return w - w[q] / H_inv[q, q] * H_inv[:, q], float(w[q] ** 2 / (2 * H_inv[q, q]))


def obs_loss_without_2(w, H_inv, q):
    return -w[q] / H_inv[q, q] * H_inv[:, q], float(w[q] ** 2 / H_inv[q, q])


def obs_loss_times_h_inv(w, H_inv, q):
    return -w[q] / H_inv[q, q] * H_inv[:, q], float(w[q] ** 2 * H_inv[q, q] / 2)


def obs_magnitude_only(w, H_inv, q):
    delta = torch.zeros_like(w)
    delta[q] = -w[q]
    return delta, float(w[q] ** 2 / 2)


def obs_updates_in_place(w, H_inv, q):
    delta = -w[q] / H_inv[q, q] * H_inv[:, q]
    loss = float(w[q] ** 2 / (2 * H_inv[q, q]))
    w += delta
    return delta, loss


def obs_by_lagrange(w, H_inv, q):
    """Written differently: the multiplier lambda = w_q / [H^-1]_qq, then delta = -lambda H^-1 e_q."""
    e_q = torch.zeros_like(w)
    e_q[q] = 1
    lam = w[q] / (e_q @ H_inv @ e_q)
    delta = -lam * (H_inv @ e_q)
    return delta, 0.5 * float(lam * w[q])


WRONG = {
    "13.1": [obd_no_half, obd_divided_by_h, obd_inverse_diagonal, obd_abs_weight, obd_diagonal_on_rows, obd_matmul,
             obd_in_place],
    "13.2": [obs_h_not_inverse, obs_wrong_sign, obs_keeps_w_q, obs_returns_new_row, obs_loss_without_2,
             obs_loss_times_h_inv, obs_magnitude_only, obs_updates_in_place],
}
RIGHT = {"13.1": [obd_by_einsum], "13.2": [obs_by_lagrange]}
