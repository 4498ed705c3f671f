"""Scores for whole units (a neuron of a Linear layer, an output channel of a convolution).

Same shape as the weight scores: a dict keyed by the layer's weight name, but each value is a 1-D tensor with
one score per output unit (higher = more important). BatchNorm scores are keyed by the BatchNorm's weight.
- norm: L1 / L2 norm of a unit's weights (Li et al. 2017, "Pruning filters for efficient ConvNets");
- BatchNorm |gamma| with an L1 penalty during training (Liu et al. 2017, "network slimming");
- first-order Taylor on activations (Molchanov et al. 2017): |mean(a * dL/da)|;
- activation statistics: mean activation, and 1 - APoZ (Hu et al. 2016, average percentage of zeros).
The data-driven ones take `device=None` (meaning `mp.device()`): they run there, on a copy if the model sits
elsewhere (the model never moves), and return the scores on the model's device.
See notebooks/05_neuron_and_filter_pruning.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minprune.devices import model_device, resolve, same
from minprune.masked import copy_model
from minprune.train import cross_entropy_loss

UNIT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def unit_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Linear and Conv layers whose output units can be scored, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, UNIT_TYPES)}


def unit_norms(W: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Lp norm of each row of W (one row per neuron or filter): (out, in, *kernel) -> (out,).

    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return W.detach().flatten(1).norm(p=p, dim=1)


@torch.no_grad()
def norm_scores(model: nn.Module, p: int = 1) -> dict[str, torch.Tensor]:
    """Lp norm of each unit's incoming weights: {'<layer>.weight': (out,)}; an embedding's unit is a column of its
    table (one embedding dimension).

    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    scores = {}
    for name, mod in unit_layers(model).items():
        scores[f"{name}.weight"] = unit_norms(mod.weight, p).cpu()  # weight: (out, in, *kernel)
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding):
            scores[f"{name}.weight"] = unit_norms(mod.weight.T, p).cpu()  # weight: (tokens, dims)
    return scores


@torch.no_grad()
def bn_scale_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """|gamma| of every BatchNorm: {'<bn>.weight': (channels,)} (network slimming).

    See notebooks/06_structured_pruning.ipynb.
    """
    scores = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.weight is not None:
            scores[f"{name}.weight"] = mod.weight.detach().abs().cpu()
    if not scores:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with a scale to score")
    return scores


def bn_l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |gamma| over every BatchNorm: the sparsity-inducing term of network slimming."""
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not terms:
        raise ValueError(f"{type(model).__name__} has no BatchNorm scales to penalise")
    return torch.stack(terms).sum()


def slimming_loss(strength: float = 1e-4):
    """A `fit(loss_fn=...)`: cross entropy + strength * sum |gamma| (Liu et al. 2017 use 1e-5 to 1e-4).

    See notebooks/06_structured_pruning.ipynb.
    """
    if not strength >= 0:
        raise ValueError(f"strength must be >= 0, got {strength!r}")

    def loss_fn(model, x, y):
        loss, logits = cross_entropy_loss(model, x, y)
        return loss + strength * bn_l1_penalty(model), logits

    return loss_fn


class SlimmingCallback:
    """The same penalty as a `fit(callbacks=[...])` object: a subgradient step on every gamma after each step."""

    def __init__(self, strength: float = 1e-4, lr: float = 1e-3):
        if not strength >= 0 or not lr > 0:
            raise ValueError(f"need strength >= 0 and lr > 0, got {strength!r}, {lr!r}")
        self.strength, self.lr = strength, lr

    @torch.no_grad()
    def on_step_end(self, model, step):
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                m.weight.sub_(self.lr * self.strength * torch.sign(m.weight))


def _probe_points(model: nn.Module) -> dict[str, nn.Module]:
    """Where each unit's activation is read: the BatchNorm right after the layer if any, else the layer."""
    from minprune.structured.dependency import DependencyError, trace_groups

    layers = unit_layers(model)
    try:
        after = trace_groups(model).after if hasattr(model, "input_shape") else {}
    except DependencyError:
        after = {}
    return {name: model.get_submodule(after.get(name, name)) for name in layers}


def _collect(model, loader, max_batches: int, stat_fn, backward: bool, device=None) -> dict[str, torch.Tensor]:
    """Run up to `max_batches` batches with hooks and average `stat_fn(a, grad) -> (out,)` per unit."""
    home, device = model_device(model), resolve(model, device)
    if not same(home, device):  # the caller's model stays where it is
        model = copy_model(model).to(device)
    points, sums, acts, handles = _probe_points(model), {}, {}, []
    for name, mod in points.items():
        def hook(_m, _inp, out, name=name):
            if backward:
                out.retain_grad()
            acts[name] = out
        handles.append(mod.register_forward_hook(hook))
    device, was_training, n = model_device(model), model.training, 0
    model.eval()
    try:
        for x, y in loader:
            if n >= max_batches:
                break
            with torch.set_grad_enabled(backward):
                loss, _ = cross_entropy_loss(model, x.to(device), y.to(device))
                if backward:
                    model.zero_grad(set_to_none=True)
                    loss.backward()
            for name, a in acts.items():
                value = stat_fn(a.detach(), a.grad if backward else None).cpu()
                sums[name] = sums.get(name, 0) + value
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader gave no batches")
    return {f"{name}.weight": (s / n).to(home) for name, s in sums.items()}


def _stat_dtype(a: torch.Tensor) -> torch.dtype:
    """The activations' own dtype, at least float32: a float64 model gets float64 scores like its weights'."""
    return torch.promote_types(a.dtype, torch.float32)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(batch, C, *spatial) -> (batch, C) mean over spatial positions."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def taylor_unit_scores(model: nn.Module, loader, *, max_batches: int = 4, device=None) -> dict[str, torch.Tensor]:
    """First-order Taylor importance of each unit: |mean over positions of a * dL/da|, averaged over examples.

    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    return _collect(model, loader, max_batches, lambda a, g: _per_channel(a * g).abs().mean(0), backward=True,
                    device=device)


def activation_scores(model: nn.Module, loader, *, stat: str = "mean", max_batches: int = 4, device=None):
    """Activation statistics after ReLU: stat='mean' (mean activation) or 'apoz' (1 - fraction of zeros).

    Assumes a ReLU follows each unit (after its BatchNorm), as in every minprune model.
    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    if stat == "mean":
        fn = lambda a, g: _per_channel(F.relu(a)).mean(0)  # noqa: E731
    elif stat == "apoz":
        fn = lambda a, g: 1.0 - _per_channel((a <= 0).to(_stat_dtype(a))).mean(0)  # noqa: E731
    else:
        raise ValueError(f"stat must be 'mean' or 'apoz', got {stat!r}")
    return _collect(model, loader, max_batches, fn, backward=False, device=device)
