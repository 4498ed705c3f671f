"""SparseGPT: one-shot pruning with the inverse Hessian, Frantar and Alistarh 2023 (arXiv:2301.00774), Algorithm 1.

For one layer with calibration Hessian H = X^T X / n (`calibration`), the weights are visited column by column.
Removing w_i (or keeping it) leaves an error err = (w_i - q_i) / U_ii that the later columns absorb:
W[:, i:] -= err * U[i, i:], where U is the upper Cholesky factor of the damped inverse Hessian,
U^T U = (H + damp * mean(diag H) * I)^-1 (the OBS update with earlier columns frozen, all rows at once).
Lazy batch updates: inside a block of `blocksize` columns the update stays in the block, and the block's
accumulated errors reach the later columns in one matrix product. Mask selection is adaptive: at the start of
each block (or every m columns for N:M) the lowest w^2 / U_ii^2 of the current, already updated weights go.
Here each output row loses the same count (as in Wanda), so every row has exactly the requested sparsity; the
paper's code instead compares a block's weights over all rows together. Inputs never seen (H_ii = 0) get
H_ii = 1 and their weights go first (they cost nothing on the calibration data).
`sparsegpt` runs it layer by layer (`calibration.prune_sequentially`): each layer's H comes from a copy whose
earlier layers are already pruned. See notebooks/13_one_shot_pruning.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.masked import apply_masks, get_masks
from minprune.one_shot.calibration import prune_sequentially, target_layers
from minprune.one_shot.wanda import check_nm, check_rows_fit, lowest_per_row
from minprune.unstructured.masks import n_pruned
from minprune.validate import finite_number, model_arg, positive_int


def _check_hessian(H, d: int) -> None:
    if not isinstance(H, torch.Tensor) or not H.is_floating_point() or tuple(H.shape) != (d, d):
        got = f"shape {tuple(H.shape)} {H.dtype}" if isinstance(H, torch.Tensor) else type(H).__name__
        raise ValueError(f"H must be a float ({d}, {d}) tensor, the layer's input Hessian, got {got}")
    if not bool(torch.isfinite(H).all()) or not torch.allclose(H, H.T, rtol=1e-6, atol=1e-8 * float(H.abs().max())):
        raise ValueError("H must be a finite symmetric matrix (X^T X / n from calibration.input_hessians)")


def _check_weight(W, pruned) -> None:
    if not isinstance(W, torch.Tensor) or not W.is_floating_point() or W.dim() != 2:
        got = f"shape {tuple(W.shape)} {W.dtype}" if isinstance(W, torch.Tensor) else type(W).__name__
        raise ValueError(f"W must be a 2-D float tensor (out, d), got {got}")
    if not bool(torch.isfinite(W).all()):
        raise ValueError("W contains NaN or Inf; SparseGPT needs finite weights")
    if pruned is not None and (not isinstance(pruned, torch.Tensor) or pruned.dtype != torch.bool
                               or pruned.shape != W.shape):
        raise ValueError(f"pruned must be a bool tensor shaped like W {tuple(W.shape)} (True: already pruned)")


def inverse_hessian_factor(H: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, dead): U the upper Cholesky factor of (H + damp * mean(diag H) * I)^-1 in float64, after every dead
    input (H_ii = 0, flagged in `dead`) got H_ii = 1. ValueError if the damped H is not positive definite."""
    if not isinstance(H, torch.Tensor) or H.dim() != 2:
        got = f"shape {tuple(H.shape)}" if isinstance(H, torch.Tensor) else type(H).__name__
        raise ValueError(f"H must be a square float tensor (d, d), the layer's input Hessian, got {got}")
    _check_hessian(H, H.shape[0])
    damp = finite_number(damp, "damp", low=0)
    H = H.detach().to(torch.float64).clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    H.diagonal().add_(damp * float(H.diagonal().mean()))
    L, info = torch.linalg.cholesky_ex(H)
    if int(info):
        raise ValueError(f"the damped Hessian is not positive definite (damp={damp}); use a larger damp or more "
                         f"calibration data")
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True), dead


def _check_blocksize(blocksize, nm) -> int:
    positive_int(blocksize, "blocksize")
    if nm is not None and blocksize % nm[1]:
        raise ValueError(f"blocksize must be a multiple of m={nm[1]} for nm={nm}, got {blocksize}")
    return blocksize


def _select(W1, u, forced1, dead1, k: int) -> torch.Tensor:
    """Bool (rows, c), True at the k lowest w^2 / u^2 of each row, a dead input's weight scoring 0 (it costs
    nothing); `forced` entries go first, and always go."""
    scores = (W1 / u).pow(2).masked_fill(dead1, 0.0).masked_fill(forced1, float("-inf"))
    return lowest_per_row(scores, k) | forced1


def _prune_block(W1, U1, forced1, dead1, k: int | None, nm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of columns: (Q1 the pruned weights, Err1 the scaled errors, pruned1). k: how many per row go
    (unstructured, chosen at the block's start), or nm=(n, m): m - n of every m columns (chosen as they come)."""
    W1, Q1, Err1 = W1.clone(), torch.zeros_like(W1), torch.zeros_like(W1)
    u = U1.diagonal()
    pruned1 = _select(W1, u, forced1, dead1, k) if nm is None else torch.zeros_like(forced1)
    for i in range(W1.shape[1]):
        if nm is not None and i % nm[1] == 0:
            j = slice(i, i + nm[1])
            pruned1[:, j] = _select(W1[:, j], u[j], forced1[:, j], dead1[j], nm[1] - nm[0])
        q = W1[:, i].masked_fill(pruned1[:, i], 0.0)
        err = (W1[:, i] - q) / U1[i, i]  # (rows,)
        W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)  # the OBS update of this and the later columns
        Q1[:, i], Err1[:, i] = q, err
    return Q1, Err1, pruned1


def sparsegpt_weight(W: torch.Tensor, H: torch.Tensor, sparsity: float = 0.5, *, nm=None, blocksize: int = 128,
                     damp: float = 0.01, pruned: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', keep): one layer's weight W (out, d) pruned by SparseGPT against its input Hessian H (d, d); W' is
    float64 with zeros where `keep` is False. pruned: entries that must go (a mask the layer already has).

    Every row loses exactly n_pruned(d, sparsity) weights (block by block, by cumulative rounding), or with
    nm=(n, m) keeps n of every m. W and H are not changed. See notebooks/13_one_shot_pruning.ipynb.
    """
    nm = check_nm(nm, sparsity)
    blocksize = _check_blocksize(blocksize, nm)
    damp = finite_number(damp, "damp", low=0)
    _check_weight(W, pruned)
    if nm is not None:
        check_rows_fit("W", W, nm[1])
    _check_hessian(H, W.shape[1])
    U, dead = inverse_hessian_factor(H.to(W.device), damp)
    W = W.detach().to(torch.float64).clone()
    forced = torch.zeros_like(W, dtype=torch.bool) if pruned is None else pruned.to(W.device)
    keep = torch.ones_like(W, dtype=torch.bool)
    for i1 in range(0, W.shape[1], blocksize):
        i2 = min(i1 + blocksize, W.shape[1])
        k = None if nm is not None else n_pruned(i2, sparsity) - n_pruned(i1, sparsity)
        Q1, Err1, pruned1 = _prune_block(W[:, i1:i2], U[i1:i2, i1:i2], forced[:, i1:i2], dead[i1:i2], k, nm)
        W[:, i1:i2], keep[:, i1:i2] = Q1, ~pruned1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # the lazy update: the block's errors reach the later columns at once
    return W, keep


def sparsegpt(model: nn.Module, batches, sparsity: float = 0.5, *, nm=None, blocksize: int = 128,
              damp: float = 0.01, names=None, max_batches: int | None = None) -> nn.Module:
    """A pruned copy of `model`: SparseGPT on every target layer in forward order, each calibrated with the layers
    before it already pruned; the weights are updated and the masks applied the kit's way (`mp.get_masks`,
    `mp.make_permanent` work). The model passed in never changes.

    sparsity: per row of every layer; or nm=(n, m), e.g. (2, 4). damp: added to H's diagonal, times its mean.
    names: default every prunable Linear/Conv weight except the output layer (`calibration.target_layers`).
    A model that already has masks keeps its pruned weights pruned; float16 models are pruned in float64 and
    written back in their dtype. See notebooks/13_one_shot_pruning.ipynb.
    """
    nm = check_nm(nm, sparsity)
    _check_blocksize(blocksize, nm)
    damp = finite_number(damp, "damp", low=0)
    model_arg(model)
    layers = target_layers(model, names)
    for name, layer in layers.items():
        if nm is not None:
            check_rows_fit(name, layer.weight, nm[1])
    old, masks = get_masks(model), {}

    def prune_layer(name: str, layer: nn.Module, H: torch.Tensor) -> None:
        W = layer.weight.detach()  # the effective weight (out, in) or (out, in, kh, kw), refreshed by the last pass
        forced = None if name not in old else ~old[name].to(W.device).reshape(W.shape[0], -1)
        W_new, keep = sparsegpt_weight(W.reshape(W.shape[0], -1), H, sparsity, nm=nm, blocksize=blocksize,
                                       damp=damp, pruned=forced)
        stored = layer._parameters["weight_orig" if "weight_orig" in layer._parameters else "weight"]
        with torch.no_grad():
            stored.copy_(W_new.reshape(stored.shape).to(stored.dtype))
        masks[name] = keep.reshape(W.shape)

    work = prune_sequentially(model, batches, prune_layer, list(layers), max_batches=max_batches)
    return apply_masks(work, masks)
