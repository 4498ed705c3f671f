"""Optimal Brain Surgeon, Hassibi & Stork 1993, layer-wise as in Optimal Brain Compression (Frantar & Alistarh 2022).

One output row w of a layer (in_features weights) is pruned against the quadratic loss
L(w') = 1/2 (w' - w)^T H (w' - w), with H = X^T X / n the layer's input Hessian (calibration.input_hessians):
L is half the mean squared error of that row's output on the calibration inputs X. Removing weight q and moving
the others to compensate costs L_q = w_q^2 / (2 [H^-1]_qq) at best, reached by
delta_w = -w_q / [H^-1]_qq * H^-1[:, q] (which sets w_q to exactly 0). After a removal the inverse Hessian of the
remaining weights is H^-1 - H^-1[:, q] H^-1[q, :] / H^-1[q, q], so repeated steps stay exact: each one gives the
least-squares optimum with every removed weight fixed to zero. This costs O(in^2) memory per row, so it is for
small layers (in_features <= 1024); SparseGPT (`sparsegpt`) is the scalable approximation.
See notebooks/13_one_shot_pruning.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.masked import apply_masks, check_mask_values
from minprune.one_shot.calibration import prune_sequentially, target_layers
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import finite_number, float_model

MAX_IN_FEATURES = 1024  # beyond this the per-row inverse Hessians (rows x in x in) are too big: use sparsegpt
_CHUNK_ELEMENTS = 2**24  # rows of a layer pruned together: at most this many float64 inverse-Hessian entries


def _float_tensor(t, name: str, dims: int) -> torch.Tensor:
    """`t` as a finite float tensor with `dims` axes; TypeError/ValueError naming `name` otherwise."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a float tensor, got {got}")
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimension(s), got shape {tuple(t.shape)}")
    if t.is_meta or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must hold finite values (no NaN, no Inf, not on the meta device)")
    return t


def _check_row_and_inverse(w, H_inv) -> None:
    _float_tensor(w, "w", 1)
    _float_tensor(H_inv, "H_inv", 2)
    if H_inv.shape != (len(w), len(w)):
        raise ValueError(f"H_inv must be ({len(w)}, {len(w)}) for a w of {len(w)} weights, got {tuple(H_inv.shape)}")


def obs_remove(w: torch.Tensor, H_inv: torch.Tensor, q: int) -> tuple[torch.Tensor, float]:
    """(delta_w, L_q): the update that removes weight q of the row w, delta_w = -w_q / [H^-1]_qq * H^-1[:, q],
    and the loss it costs, L_q = w_q^2 / (2 [H^-1]_qq). w + delta_w has w_q exactly 0. Pure (float64 inside).

    See notebooks/13_one_shot_pruning.ipynb.
    """
    _check_row_and_inverse(w, H_inv)
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q < len(w):
        raise ValueError(f"q must be an int in [0, {len(w)}), got {q!r}")
    h_qq = float(H_inv[q, q])
    if not h_qq > 0:
        raise ValueError(f"H_inv[{q}, {q}] must be positive (an inverse Hessian), got {h_qq}")
    w64, column = w.double(), H_inv[:, q].double()
    delta = -float(w64[q]) / h_qq * column
    delta[q] = -w64[q]  # w_q + delta_q is exactly 0, not 0 up to rounding
    return delta.to(w.dtype), float(w64[q]) ** 2 / (2 * h_qq)


def obs_step(w: torch.Tensor, H_inv: torch.Tensor, *, removed=None) -> tuple[int, torch.Tensor, float]:
    """(q, delta_w, L_q) for the weight of row w whose removal costs least, q = argmin_q w_q^2 / (2 [H^-1]_qq),
    with its `obs_remove` update. removed: a bool tensor of the weights already removed (not candidates).

    See notebooks/13_one_shot_pruning.ipynb.
    """
    _check_row_and_inverse(w, H_inv)
    removed = torch.zeros(len(w), dtype=torch.bool) if removed is None else _removed_arg(removed, len(w))
    if bool(removed.all()):
        raise ValueError("removed marks every weight of w as removed: nothing is left to remove")
    diag = H_inv.diagonal().double().cpu()
    if not bool((diag[~removed] > 0).all()):
        raise ValueError("H_inv must have a positive diagonal on the weights not yet removed (an inverse Hessian)")
    costs = (w.double().cpu() ** 2 / (2 * diag)).masked_fill(removed, float("inf"))
    q = int(costs.argmin())
    delta, loss = obs_remove(w, H_inv, q)
    return q, delta, loss


def _removed_arg(removed, d: int) -> torch.Tensor:
    if not isinstance(removed, torch.Tensor) or removed.dtype != torch.bool or removed.shape != (d,):
        raise TypeError(f"removed must be a bool tensor of shape ({d},), got {removed!r:.60}")
    return removed.cpu()


def downdate_inverse(H_inv: torch.Tensor, q: int) -> torch.Tensor:
    """The inverse Hessian of the weights left after removing q: H^-1 - H^-1[:, q] H^-1[q, :] / H^-1[q, q]
    (row and column q become 0). Pure. See notebooks/13_one_shot_pruning.ipynb."""
    _float_tensor(H_inv, "H_inv", 2)
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q < len(H_inv):
        raise ValueError(f"q must be an int in [0, {len(H_inv)}), got {q!r}")
    if not float(H_inv[q, q]) > 0:
        raise ValueError(f"H_inv[{q}, {q}] must be positive (an inverse Hessian), got {float(H_inv[q, q])}")
    return H_inv - torch.outer(H_inv[:, q], H_inv[q, :]) / H_inv[q, q]


def check_damp(damp) -> float:
    """`damp` as a float >= 0 (the dampening, a fraction of the mean diagonal of H); else ValueError."""
    return finite_number(damp, "damp", low=0)


def damped_inverse(H: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """(H + lambda I)^-1 in float64 by Cholesky, lambda = damp * mean(diag H) (SparseGPT's dampening): it keeps
    the inverse finite when the calibration inputs span too few directions (e.g. pixels that are always 0)."""
    _float_tensor(H, "H", 2)
    check_damp(damp)
    if H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square (in_features, in_features), got {tuple(H.shape)}")
    H = H.double()
    lam = damp * float(H.diagonal().mean())
    lam = lam if lam > 0 or damp == 0 else damp  # an all-zero H (no signal) still gets a positive diagonal
    L, info = torch.linalg.cholesky_ex(H + lam * torch.eye(len(H), dtype=H.dtype, device=H.device))
    if int(info) != 0:
        raise ValueError(f"H + damp * mean(diag H) * I is not positive definite with damp={damp!r} (the calibration "
                         f"inputs span too few directions, or H is not X^T X / n): use a larger damp such as 0.01")
    return torch.cholesky_inverse(L)


def _step_rows(W, Hinv, removed, pending) -> None:
    """One OBS step on every row at once, in place. W (r, d), Hinv (r, d, d), removed/pending (r, d): weights
    already removed / already masked (those go first, at no cost: they are 0)."""
    rows = torch.arange(len(W), device=W.device)
    costs = W**2 / (2 * Hinv.diagonal(dim1=1, dim2=2))
    costs = costs.masked_fill(removed, float("inf")).masked_fill(pending & ~removed, -1.0)
    q = costs.argmin(dim=1)  # (r,)
    column = Hinv[rows, :, q]  # (r, d): H^-1[:, q] of each row (a copy)
    h_qq = column[rows, q]
    W.sub_((W[rows, q] / h_qq)[:, None] * column)
    # H^-1 -= H^-1[:, q] H^-1[q, :] / H^-1[q, q], H^-1 symmetric; one fused in-place batched product
    Hinv.baddbmm_(column[:, :, None], (column / h_qq[:, None])[:, None, :], alpha=-1)
    removed[rows, q] = True
    W.masked_fill_(removed, 0.0)  # removed weights exactly zero, not zero up to rounding


def _prune_rows(W, Hinv0, pending, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OBS on the rows of W (r, d) until each has max(k, its pending count) removed: (new W, removed).
    Rows are sorted by how many steps they need, so the rows still working are a prefix (views, no copies)."""
    target = torch.clamp(pending.sum(dim=1), min=k)
    order = torch.argsort(target, descending=True, stable=True)
    W, pending, target = W[order].clone(), pending[order], target[order]
    Hinv = Hinv0.expand(len(W), -1, -1).clone()
    removed = torch.zeros_like(pending)
    for step in range(int(target[0]) if len(W) else 0):
        n = int((target > step).sum())
        _step_rows(W[:n], Hinv[:n], removed[:n], pending[:n])
    back = torch.argsort(order)
    return W[back], removed[back]


def _check_layer_args(weight, H, sparsity, damp, mask) -> torch.Tensor:
    """The checks of `obs_prune_layer`; returns the keep mask as (out, in) bool (all True when mask is None)."""
    _float_tensor(weight, "weight", weight.dim() if isinstance(weight, torch.Tensor) else 2)
    if weight.dim() < 2:
        raise ValueError(f"weight must be (out, in) or (out, c, kh, kw), got shape {tuple(weight.shape)}")
    d = weight[0].numel()
    if d > MAX_IN_FEATURES:
        raise ValueError(f"obs_prune_layer keeps an in x in inverse Hessian per output row, so it is for layers with "
                         f"at most {MAX_IN_FEATURES} inputs; this one has {d}: use sparsegpt instead")
    _float_tensor(H, "H", 2)
    if H.shape != (d, d):
        raise ValueError(f"H must be ({d}, {d}) for a weight of shape {tuple(weight.shape)}, got {tuple(H.shape)}")
    check_sparsity(sparsity)
    check_damp(damp)
    if mask is None:
        return torch.ones(len(weight), d, dtype=torch.bool, device=weight.device)
    if not isinstance(mask, torch.Tensor) or mask.shape != weight.shape:
        raise ValueError(f"mask must be a tensor shaped like weight {tuple(weight.shape)}, got {mask!r:.60}")
    check_mask_values(mask, "mask")
    return (mask != 0).reshape(len(weight), d).to(weight.device)


def obs_prune_layer(weight: torch.Tensor, H: torch.Tensor, sparsity: float, *, damp: float = 0.01,
                    mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(new weight, mask): every output row pruned to `sparsity` by repeated OBS steps. Pure.

    weight (out, in) or a Conv2d's (out, c, kh, kw) with H over its unfolded inputs (c*kh*kw); H = X^T X / n,
    damped by damp * mean(diag H) (`damped_inverse`). Each row loses n_pruned(in, sparsity) weights (so the
    layer's sparsity is that count over in) and the rest move to compensate. mask: the weight's current keep
    mask; its pruned entries count as removed first. Layers with more than 1024 inputs are refused: use
    sparsegpt. See notebooks/13_one_shot_pruning.ipynb.
    """
    keep = _check_layer_args(weight, H, sparsity, damp, mask)
    d = keep.shape[1]
    k = n_pruned(d, sparsity)
    if k == d:
        raise ValueError(f"sparsity={sparsity!r} removes all {d} weights of every row: keep at least one")
    Hinv0 = damped_inverse(H.to(weight.device), damp)
    W = weight.detach().double().reshape(len(weight), d) * keep  # effective weights: masked entries are 0
    chunk = max(1, _CHUNK_ELEMENTS // (d * d))
    new_rows, removed_rows = [], []
    for start in range(0, len(W), chunk):
        rows, removed = _prune_rows(W[start:start + chunk], Hinv0, ~keep[start:start + chunk], k)
        new_rows.append(rows)
        removed_rows.append(removed)
    new_mask = ~torch.cat(removed_rows).reshape(weight.shape)
    return torch.cat(new_rows).reshape(weight.shape).to(weight.dtype), new_mask


def _check_model_layers(layers: dict, sparsity: float) -> None:
    """Refuse, before any calibration pass, a layer too wide for OBS or one the sparsity would empty."""
    for name, layer in layers.items():
        d = layer.weight[0].numel()
        if d > MAX_IN_FEATURES:
            raise ValueError(f"obs_prune keeps an in x in inverse Hessian per output row, so it is for layers with at "
                             f"most {MAX_IN_FEATURES} inputs; {name!r} has {d}: use sparsegpt, or leave it out "
                             f"of names=")
        if n_pruned(d, sparsity) == d:
            raise ValueError(f"sparsity={sparsity!r} removes all {d} weights of every row of {name!r}: keep at "
                             f"least one")


def _prune_layer_in_place(layer: nn.Module, H: torch.Tensor, sparsity: float, damp: float) -> None:
    """OBS on one layer of the working copy: its stored weight updated, its mask applied (old masks kept)."""
    old = getattr(layer, "weight_mask", None)
    new_weight, mask = obs_prune_layer(layer.weight.detach(), H, sparsity, damp=damp, mask=old)
    stored = layer._parameters.get("weight_orig", layer._parameters.get("weight"))
    with torch.no_grad():
        stored.copy_(new_weight)
    apply_masks(layer, {"weight": mask})


def obs_prune(model: nn.Module, batches, sparsity: float, *, names=None, damp: float = 0.01,
              max_batches: int | None = None) -> nn.Module:
    """A pruned copy of `model`: every target layer's rows pruned to `sparsity` by OBS (`obs_prune_layer`), the
    kept weights updated to compensate, the kit's masks applied (`mp.get_masks`, `mp.make_permanent` work).

    Layer by layer in forward order, each calibrated on a copy whose earlier layers are already pruned
    (`calibration.prune_sequentially`). names: default every prunable weight but the output layer. A masked model's
    pruned weights stay pruned and count toward `sparsity`. The model passed in never changes.
    See notebooks/13_one_shot_pruning.ipynb.
    """
    float_model(model, "obs_prune")
    check_sparsity(sparsity)
    check_damp(damp)
    _check_model_layers(target_layers(model, names), sparsity)

    def prune_layer(name: str, layer: nn.Module, H: torch.Tensor) -> None:
        _prune_layer_in_place(layer, H, sparsity, damp)

    return prune_sequentially(model, batches, prune_layer, names, max_batches=max_batches)
