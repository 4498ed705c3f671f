"""Optimal Brain Damage, LeCun, Denker & Solla 1990: the saliency of a weight is the loss its removal costs
under a quadratic model of the loss with a diagonal Hessian, s_q = w_q^2 * h_qq / 2.

Two Hessians, both one calibration pass:
- kind="hessian": the layer-wise reconstruction loss of OBS and SparseGPT, L = 1/2 ||X (w' - w)||^2 / n per
  output row, whose Hessian H = X^T X / n (`calibration.input_hessians`) is the same for every row: s_ij =
  w_ij^2 * H_jj / 2, exactly what zeroing w_ij alone adds to L (so OBS's L_q = w_q^2 / (2 [H^-1]_qq) <= s_q);
- kind="fisher": the empirical-Fisher diagonal of the training loss, F = mean over examples of (dl_n/dw)^2,
  which approximates the loss Hessian near a minimum: s = w^2 * F / 2.
The scores are the kit's ordinary score dicts: `mp.make_masks(scores, 0.5)` or `mp.prune(model, scores, 0.5)`.
See notebooks/13_one_shot_pruning.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.batches import check_batch_fits, check_loader
from minprune.masked import copy_model, effective_parameters
from minprune.one_shot.calibration import input_hessians, target_layers
from minprune.train import cross_entropy_loss
from minprune.unstructured.scores import check_batch
from minprune.validate import callable_arg, float_model, positive_int

KINDS = ("hessian", "fisher")


def _score_dtype(weight: torch.Tensor) -> torch.dtype:
    """Scores in the weight's dtype, at least float32 (a float64 model is ranked at float64 resolution)."""
    return torch.promote_types(weight.dtype, torch.float32)


def _saliency(weight: torch.Tensor, curvature: torch.Tensor) -> torch.Tensor:
    """w^2 * h / 2 shaped like `weight`, computed in float64 (curvature broadcasts against the weight)."""
    w = weight.detach().double()
    return (w * w * curvature.to(w.device, torch.float64) / 2).to(_score_dtype(weight))


def hessian_saliency(model: nn.Module, batches, names=None, *, max_batches: int | None = None) -> dict:
    """{weight name: w_ij^2 * H_jj / 2}, H = X^T X / n the layer's input Hessian; see `obd_scores`.

    See notebooks/13_one_shot_pruning.ipynb.
    """
    hessians = input_hessians(model, batches, names, max_batches=max_batches)
    params = effective_parameters(model)
    scores = {}
    for name, H in hessians.items():
        weight = params[name]  # (out, in) or (out, c, kh, kw); H is over the in (or c*kh*kw) inputs
        scores[name] = _saliency(weight, H.diagonal().reshape(1, *weight.shape[1:]))
    return scores


def _example_batches(batches, max_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `max_batches` (x, y) batches (default: all), read once."""
    check_loader(batches, "batches")
    positive_int(max_batches, "max_batches", none_ok=True)
    out = []
    for batch in batches:
        out.append(check_batch(batch, "batches"))
        if max_batches is not None and len(out) == max_batches:
            break
    if not out:
        raise ValueError("batches is an empty loader: the Fisher needs at least one (x, y) batch")
    return out


def _gradient_copy(model: nn.Module, names: list[str]) -> tuple[nn.Module, dict]:
    """An eval-mode copy of `model` and, per name, the leaf tensor that holds that weight (`weight_orig` once
    masked): only those leaves require gradients."""
    twin = copy_model(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    leaves = {}
    for name in names:
        module = twin.get_submodule(name.rpartition(".")[0])
        leaf = module._parameters.get("weight_orig", module._parameters.get("weight"))
        leaves[name] = leaf.requires_grad_(True)
    return twin, leaves


def _example_loss(loss_fn, twin: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """loss_fn on one example (a batch of one), as a scalar tensor; ValueError when the model cannot run it."""
    try:
        out = loss_fn(twin, x, y)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ValueError(f"the model cannot run on the batches (x of shape {tuple(x.shape)}): {exc}") from exc
    loss = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn(model, x, y) must return a scalar loss (or (loss, logits)), got {out!r:.60}")
    return loss.reshape(())


def fisher_diagonal(model: nn.Module, batches, names=None, *, max_batches: int | None = None,
                    loss_fn=None) -> dict:
    """{weight name: F = mean over examples of (dl_n/dw)^2}, the empirical-Fisher diagonal of the loss.

    One backward pass per example (a batch of one); a sequence model's example is one sequence, its loss the
    mean per-token cross entropy. loss_fn(model, x, y) -> loss or (loss, logits), default cross entropy.
    Computed in float64 on a private eval-mode copy where the model sits. See notebooks/13_one_shot_pruning.ipynb.
    """
    float_model(model, "fisher_diagonal")
    callable_arg(loss_fn, "loss_fn", none_ok=True)
    names = list(target_layers(model, names))
    data = _example_batches(batches, max_batches)
    if loss_fn is None:
        check_batch_fits(model, data[0], "batches")  # labels must be class indices of the model's outputs
    twin, leaves = _gradient_copy(model, names)
    device = next(iter(leaves.values())).device
    totals = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in leaves.items()}
    count = 0
    for x, y in data:
        for i in range(len(x)):
            loss = _example_loss(loss_fn or cross_entropy_loss, twin, x[i:i + 1].to(device), y[i:i + 1].to(device))
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            for name, g in zip(names, grads):
                if g is not None:
                    totals[name] += g.detach().double() ** 2
            count += 1
    return {n: t / count for n, t in totals.items()}


def obd_scores(model: nn.Module, batches, *, kind: str = "hessian", names=None, max_batches: int | None = None,
               loss_fn=None) -> dict:
    """Optimal Brain Damage saliencies {weight name: w^2 * h / 2}, shaped like each weight; the model unchanged.

    kind="hessian": h = H_jj of H = X^T X / n, the Hessian of 1/2 the mean squared error of the layer's output
    (the loss OBS uses), so the score is exactly what zeroing that one weight adds to it. kind="fisher": h = the
    empirical-Fisher diagonal, the mean over examples (not batches: a batch gradient's square misses the spread
    between examples) of (dl_n/dw)^2; loss_fn as in `fisher_diagonal`. names: default every prunable weight
    but the output layer (`target_layers`). Masked weights score 0. See notebooks/13_one_shot_pruning.ipynb.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    float_model(model, "obd_scores")
    if kind == "hessian":
        if loss_fn is not None:
            raise ValueError("loss_fn is for kind='fisher'; kind='hessian' uses the layers' inputs only")
        return hessian_saliency(model, batches, names, max_batches=max_batches)
    fisher = fisher_diagonal(model, batches, names, max_batches=max_batches, loss_fn=loss_fn)
    params = effective_parameters(model)
    return {name: _saliency(params[name], F) for name, F in fisher.items()}
