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

from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from minprune.batches import check_batch_fits, check_loader
from minprune.devices import model_device, resolve, same
from minprune.masked import copy_model
from minprune.train import check_finite_weights, check_model, cross_entropy_loss
from minprune.validate import finite_number, float_dtype, float_model, model_arg, positive_int

UNIT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _check_p(p) -> None:
    if isinstance(p, bool) or not isinstance(p, int) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")


def _at_least_zero(value, name: str) -> float:
    """`finite_number(value, name, low=0)`, worded as the documented '<name> must be >= 0'."""
    try:
        return finite_number(value, name, low=0)
    except ValueError as exc:
        raise ValueError(f"{name} must be >= 0, a finite number, got {value!r}") from exc


def unit_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Linear and Conv layers whose output units can be scored, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, UNIT_TYPES)}


def unit_norms(W: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Lp norm of each row of W (one row per neuron or filter): (out, in, *kernel) -> (out,).

    Any float dtype; the norms have W's dtype. See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    _check_p(p)
    if not isinstance(W, torch.Tensor) or not W.is_floating_point():
        kind = f"a {W.dtype} tensor" if isinstance(W, torch.Tensor) else type(W).__name__
        raise TypeError(f"W must be a floating-point weight tensor (out, in, *kernel), got {kind}")
    if W.dim() < 2:
        raise ValueError(f"W must have one row per unit (2-D or more, (out, in, *kernel)), got shape {tuple(W.shape)}")
    return W.detach().flatten(1).norm(p=p, dim=1)


@torch.no_grad()
def norm_scores(model: nn.Module, p: int = 1) -> dict[str, torch.Tensor]:
    """Lp norm of each unit's incoming weights: {'<layer>.weight': (out,)}; an embedding's unit is a column of its
    table (one embedding dimension).

    Any float dtype (float16 and bfloat16 too); a meta-device model (no values) is refused.
    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    _check_p(p)
    model_arg(model)
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
    model_arg(model)
    scores = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.weight is not None:
            scores[f"{name}.weight"] = mod.weight.detach().abs().cpu()
    if not scores:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with a scale to score")
    return scores


def bn_l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |gamma| over every BatchNorm: the sparsity-inducing term of network slimming."""
    check_model(model)
    terms = [m.weight.abs().sum() for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not terms:
        raise ValueError(f"{type(model).__name__} has no BatchNorm scales to penalise")
    return torch.stack(terms).sum()


def slimming_loss(strength: float = 1e-4):
    """A `fit(loss_fn=...)`: cross entropy + strength * sum |gamma| (Liu et al. 2017 use 1e-5 to 1e-4).

    See notebooks/06_structured_pruning.ipynb.
    """
    strength = _at_least_zero(strength, "strength")

    def loss_fn(model, x, y):
        loss, logits = cross_entropy_loss(model, x, y)
        return loss + strength * bn_l1_penalty(model), logits

    return loss_fn


class SlimmingCallback:
    """The same penalty as a `fit(callbacks=[...])` object: a subgradient step on every gamma after each step."""

    def __init__(self, strength: float = 1e-4, lr: float = 1e-3):
        self.strength = _at_least_zero(strength, "strength")
        self.lr = finite_number(lr, "lr", low=0, low_open=True)

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


def _checked_batches(model: nn.Module, loader):
    """The batches of `loader`, read once: its first one checked to be an (x, y) pair of tensors that `model`
    runs on, with class labels in [0, outputs) (`check_batch_fits`), before anything runs; none for an empty one."""
    check_loader(loader)
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        return iter(())
    if not (isinstance(first, (tuple, list)) and len(first) == 2 and all(isinstance(t, torch.Tensor) for t in first)):
        raise TypeError(f"loader must yield (x, y) batches of tensors such as a DataLoader gives, got a "
                        f"{type(first).__name__} {first!r:.60}")
    check_batch_fits(model, first, "loader")
    return chain([first], batches)


def _collect(model, loader, max_batches: int, stat_fn, backward: bool, device=None) -> dict[str, torch.Tensor]:
    """Run up to `max_batches` batches with hooks and average `stat_fn(a, grad) -> (out,)` per unit.

    Everything is checked before the model is touched: the model (finite float weights; float32/float64 when
    gradients are taken), max_batches and the loader's first batch (run once through the model, labels in
    [0, outputs)).
    """
    if backward:
        float_model(model, "taylor_unit_scores")
    model_arg(model)
    check_finite_weights(model)
    positive_int(max_batches, "max_batches")
    loader = _checked_batches(model, loader)
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
    device, dtype, was_training, n = model_device(model), float_dtype(model), model.training, 0
    model.eval()
    try:
        for x, y in loader:
            if n >= max_batches:
                break
            with torch.set_grad_enabled(backward):
                x = x.to(device, dtype) if x.is_floating_point() else x.to(device)  # a float16 model: float16 x
                loss, _ = cross_entropy_loss(model, x, y.to(device))
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

    It takes gradients, so float16 and bfloat16 models are refused (call model.float() first).
    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    return _collect(model, loader, max_batches, lambda a, g: _per_channel(a * g).abs().mean(0), backward=True,
                    device=device)


def activation_scores(model: nn.Module, loader, *, stat: str = "mean", max_batches: int = 4, device=None):
    """Activation statistics after ReLU: stat='mean' (mean activation) or 'apoz' (1 - fraction of zeros).

    Assumes a ReLU follows each unit (after its BatchNorm), as in every minprune model. Float16 and bfloat16
    models work (the batches are cast to the model's dtype, the statistics computed in float32).
    See notebooks/05_neuron_and_filter_pruning.ipynb.
    """
    if stat == "mean":
        fn = lambda a, g: _per_channel(F.relu(a).to(_stat_dtype(a))).mean(0)  # noqa: E731
    elif stat == "apoz":
        fn = lambda a, g: 1.0 - _per_channel((a <= 0).to(_stat_dtype(a))).mean(0)  # noqa: E731
    else:
        raise ValueError(f"stat must be 'mean' or 'apoz', got {stat!r}")
    return _collect(model, loader, max_batches, fn, backward=False, device=device)
