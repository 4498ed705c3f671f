"""Chapter 13 (one-shot pruning): the exercises' designed cases and hints."""

from __future__ import annotations

import torch

from minprune.course.exercises import exercise
from minprune.one_shot.obs import obs_remove

# Exercise 13.1: OBD's saliency ---------------------------------------------------------------------------------


def obd_saliency(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """W_ij^2 * H_jj / 2 for a weight W (out, in) and its layer's input Hessian H (in, in): what
    `mp.hessian_saliency` computes for every layer, in W's dtype (at least float32).
    See notebooks/13_one_shot_pruning.ipynb.
    """
    w = W.detach().double()
    return (w * w * H.detach().double().diagonal()[None, :] / 2).to(torch.promote_types(W.dtype, torch.float32))


def _hessian(n_in: int, n: int, g: torch.Generator, dead: int | None = None) -> torch.Tensor:
    """X^T X / n of n correlated inputs (float64); input `dead` always 0 (a zero on H's diagonal)."""
    X = torch.randn(n, n_in, generator=g, dtype=torch.float64) @ torch.randn(n_in, n_in, generator=g,
                                                                           dtype=torch.float64)
    if dead is not None:
        X[:, dead] = 0
    return X.T @ X / n


def _obd_cases() -> list[tuple]:
    """Signed weights, H with large off-diagonal entries (correlated inputs) and a dead input (H_jj = 0),
    W not square (out != in) and square (rows and columns of H confused show), float32 and float64, a weight
    that needs grad, zeros in W."""
    g = torch.Generator().manual_seed(131)
    W1 = torch.randn(3, 5, generator=g)
    W2 = torch.randn(4, 4, generator=g, dtype=torch.float64)
    W3 = torch.randn(2, 6, generator=g)
    W3[0, :3] = 0
    W3.requires_grad_()
    W4 = torch.tensor([[-2.0, 0.5, 1.5]])
    H1, H2, H3 = _hessian(5, 20, g, dead=2).float(), _hessian(4, 12, g), _hessian(6, 40, g).float()
    H4 = torch.tensor([[1.0, 0.6, -0.2], [0.6, 2.0, 0.3], [-0.2, 0.3, 0.5]])  # positive definite
    return [(W4, H4), (W2, H2), (W1, H1), (W3, H3)]


def _obd_variants(W: torch.Tensor, H: torch.Tensor) -> dict[str, torch.Tensor]:
    w, h = W.detach().double(), H.detach().double()
    d = h.diagonal()[None, :]
    out = {"no_half": w * w * d, "divided": w * w / d / 2, "abs": w.abs() * d / 2, "signed": w * d / 2,
           "row_sums": w * w * h.sum(0)[None, :] / 2, "matmul": (w * w) @ h / 2, "not_squared_h": w * w * d * d / 2}
    if W.shape[0] == W.shape[1]:
        out["rows"] = w * w * h.diagonal()[:, None] / 2
    if torch.linalg.matrix_rank(h) == len(h):
        out["inverse_diagonal"] = w * w * torch.linalg.inv(h).diagonal()[None, :] / 2
    return out


_OBD_HINTS = {
    "no_half": "twice the saliency: the cost of removing a weight is w^2 H_jj / 2 (the 1/2 of the quadratic loss)",
    "divided": "H_jj multiplies the squared weight: a weight whose input is large costs more to remove",
    "abs": "the saliency uses the squared weight, not its absolute value",
    "signed": "the saliency uses the squared weight: it is never negative",
    "row_sums": "only H's diagonal enters OBD's saliency (OBD assumes H diagonal), not sums over its rows",
    "matmul": "only H's diagonal enters OBD's saliency: multiply each weight by the H_jj of its own input column j",
    "not_squared_h": "the weight is squared, H_jj is not",
    "rows": "H_jj belongs to input j, which is column j of W (out, in): H's diagonal runs along W's columns",
    "inverse_diagonal": "that is the diagonal of H^-1 (what OBS uses); OBD uses the diagonal of H itself",
}


def _obd_mistake(case, expected, got):
    W, H = case
    if isinstance(got, torch.linalg.LinAlgError):
        return ("OBD needs no inverse: it reads the diagonal of H itself (and H may be singular, e.g. for an input "
                "that is always 0)")
    if isinstance(got, RuntimeError):
        return ("H.diagonal() has one value per input (W's columns): it must line up with W's last axis, "
                "e.g. as a (1, in) row")
    if not isinstance(got, torch.Tensor):
        return None
    if got.shape != W.shape:
        return (f"the saliency is shaped like W {tuple(W.shape)}, got {tuple(got.shape)}: H's diagonal has one value "
                "per input, which is a column of W (out, in), so it must line up with W's last axis")
    mine = got.detach().double()
    for name, value in _obd_variants(W, H).items():
        if value.shape == mine.shape and torch.allclose(mine, value, rtol=1e-5, atol=0, equal_nan=True) and not \
                torch.allclose(expected.double(), value, rtol=1e-5, atol=0, equal_nan=True):
            return _OBD_HINTS[name]
    return None


exercise("13.1", "OBD's saliency W_ij^2 H_jj / 2", obd_saliency, _obd_cases,
         hint="square the weights; take H's diagonal, one value per input column, and halve",
         diagnoses=(_obd_mistake,), atol=0.0, rtol=1e-6)


# Exercise 13.2: one OBS step -----------------------------------------------------------------------------------


def _obs_cases() -> list[tuple]:
    """H^-1 of correlated inputs (the update moves every weight), the last and the first weight, negative and
    positive w_q, a diagonal H^-1 that is not I ([H^-1]_qq != H_qq != 1), float32, a weight already at 0."""
    g = torch.Generator().manual_seed(132)
    H_inv = torch.linalg.inv(_hessian(6, 30, g) + 0.01 * torch.eye(6, dtype=torch.float64))
    w = torch.randn(6, generator=g, dtype=torch.float64)
    w[5], w[0] = -abs(w[5]) - 0.5, abs(w[0]) + 0.5
    H_inv32 = torch.linalg.inv(_hessian(4, 20, g) + 0.01 * torch.eye(4, dtype=torch.float64)).float()
    w32 = torch.tensor([0.7, -1.2, 0.4, 2.0])
    zero = w.clone()
    zero[2] = 0
    return [(w, H_inv, 5), (w, H_inv, 0), (torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64),
                                           torch.diag(torch.tensor([2.0, 0.25, 1.0], dtype=torch.float64)), 1),
            (w32, H_inv32, 1), (zero, H_inv, 2)]


def _obs_variants(w: torch.Tensor, H_inv: torch.Tensor, q: int) -> dict[str, tuple]:
    """(delta_w, L_q) as typical mistakes compute them, in float64."""
    w, Hi = w.detach().double(), H_inv.detach().double()
    H = torch.linalg.inv(Hi)
    h, col, wq = Hi[q, q], Hi[:, q], w[q]
    delta = -wq / h * col
    kept_only = delta.clone()
    kept_only[q] = 0
    magnitude = torch.zeros_like(w)
    magnitude[q] = -wq
    return {"sign": (-delta, None), "H_qq": (-wq / H[q, q] * col, float(wq**2 / (2 * H[q, q]))),
            "kept_only": (kept_only, None), "new_row": (w + delta, None), "magnitude": (magnitude, float(wq**2 / 2)),
            "no_half": (None, float(wq**2 / h)), "times": (None, float(wq**2 * h / 2)),
            "not_squared": (None, float(wq / (2 * h))), "abs": (None, float(abs(wq) / (2 * h)))}


_OBS_HINTS = {
    "sign": ("the update points the wrong way: w + delta_w must have w_q = 0, so delta_w at q is -w_q, and the "
             "other weights move along -w_q / [H^-1]_qq times column q of H^-1"),
    "H_qq": "the formula divides by [H^-1]_qq, the diagonal entry of the *inverse* Hessian (H_inv[q, q]), not H_qq",
    "kept_only": ("w + delta_w still has w_q there: the update removes weight q too (delta_w at q is -w_q), besides "
                  "moving the others"),
    "new_row": "that is the new row w + delta_w; return the update delta_w itself",
    "magnitude": "that only zeroes w_q: OBS also moves the other weights, along column q of H^-1",
    "no_half": "the loss is w_q^2 / (2 [H^-1]_qq): the 2 is missing",
    "times": "the loss divides by [H^-1]_qq: L_q = w_q^2 / (2 [H^-1]_qq)",
    "not_squared": "the loss uses the squared weight w_q^2",
    "abs": "the loss uses the squared weight w_q^2",
}


def _obs_mistake(case, expected, got):
    if isinstance(got, Exception) or not isinstance(got, (tuple, list)) or len(got) != 2:
        if isinstance(got, (tuple, list)) or isinstance(got, torch.Tensor):
            return "return a pair (delta_w, L_q): the update of the row, then the loss as a number"
        return None
    delta, loss = got
    loss = float(loss) if isinstance(loss, torch.Tensor) and loss.numel() == 1 else loss
    want_delta, want_loss = expected
    delta_right = isinstance(delta, torch.Tensor) and delta.shape == want_delta.shape and torch.allclose(
        delta.detach().double(), want_delta.double(), rtol=1e-5, atol=1e-10)
    for name, (d, L) in _obs_variants(*case).items():
        if d is not None and not delta_right and isinstance(delta, torch.Tensor) and delta.shape == d.shape and \
                torch.allclose(delta.detach().double(), d, rtol=1e-5, atol=1e-10):
            return _OBS_HINTS[name]
        if d is None and delta_right and isinstance(loss, (int, float)) and abs(L - want_loss) > 1e-9 * abs(want_loss) \
                and abs(loss - L) <= 1e-6 * abs(L):
            return _OBS_HINTS[name]
    return None


exercise("13.2", "one OBS step: the update that removes weight q, and its loss", obs_remove, _obs_cases,
         hint="delta_w is column q of H^-1 scaled so that w_q + delta_w[q] = 0; the loss is w_q^2 / (2 [H^-1]_qq)",
         diagnoses=(_obs_mistake,), atol=1e-12, rtol=1e-6)
