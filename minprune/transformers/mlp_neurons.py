"""MLP neurons: score each hidden unit of a transformer block's MLP, mask it, remove it.

In `attention_blocks.MLP` (fc1, GELU, fc2) hidden neuron j is row j of fc1 (and its bias) and column j of fc2.
GELU(0) = 0, so a neuron whose fc1 output is zero, or whose fc2 column is zero, adds nothing (`mask_neurons`, the
masked equivalent); removing it (`prune_mlp`) slices that row and column away and the smaller model computes the
same outputs. The MLP holds about two thirds of a block's weights, so this is where most of a transformer's size
goes. Every function that removes returns a compacted copy: the model passed in never changes.
See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.attention_blocks import MLP
from minprune.masked import copy_model
from minprune.transformers.units import (
    check_keep,
    check_norm,
    layers_of,
    refuse_masked,
    select_units,
    slice_linear,
    zero_columns,
)


def mlp_layers(model: nn.Module) -> dict[str, MLP]:
    """{module name: MLP} of every transformer MLP of `model`, in module order; ValueError for none."""
    return layers_of(model, MLP, "MLP neurons")


def neuron_counts(model: nn.Module) -> dict[str, int]:
    """{MLP name: hidden neurons}."""
    return {name: mlp.fc1.out_features for name, mlp in mlp_layers(model).items()}


@torch.no_grad()
def neuron_scores(model: nn.Module, norm: str = "l1") -> dict[str, torch.Tensor]:
    """{MLP name: (hidden,) scores}: the L1 or L2 norm of each neuron's weights taken together, its fc1 row and its
    fc2 column (a sum, not a product, like `heads.head_scores`; biases left out). Float32 scores (float64 for a
    float64 model); a masked model is scored by its effective (masked) weights."""
    p = check_norm(norm)
    out = {}
    for name, mlp in mlp_layers(model).items():
        dtype = torch.promote_types(mlp.fc1.weight.dtype, torch.float32)
        w1, w2 = mlp.fc1.weight.detach().to(dtype), mlp.fc2.weight.detach().to(dtype)
        out[name] = ((w1.abs() ** p).sum(1) + (w2.abs() ** p).sum(0)) ** (1 / p)
        out[name] = out[name].cpu()
    return out


def _keep_arg(model: nn.Module, keep) -> dict[str, torch.Tensor]:
    return check_keep(keep, neuron_counts(model), "neuron")


def mask_neurons(model: nn.Module, keep) -> nn.Module:
    """A copy of `model` in which every neuron `keep` does not keep has its fc2 column set to zero: same shapes, and
    a removed neuron contributes nothing (the masked equivalent of `prune_mlp`).

    keep: {MLP name: indices of the hidden neurons that stay}; MLPs it does not name keep every neuron.
    """
    keep = _keep_arg(model, keep)
    out = copy_model(model)
    modules = dict(out.named_modules())
    for name, idx in keep.items():
        kept = torch.zeros(modules[name].fc1.out_features, dtype=torch.bool)
        kept[idx] = True
        zero_columns(modules[name].fc2, torch.nonzero(~kept).flatten())
    return out


def prune_mlp(model: nn.Module, keep) -> nn.Module:
    """A smaller copy of `model` with only the hidden neurons `keep` keeps: their rows of fc1 (weight and bias) and
    their columns of fc2; fc2's bias and every other layer stay. Outputs equal those of `mask_neurons(model, keep)`,
    and the copy saves and loads like any model (`mp.save_model`).

    keep: {MLP name: indices of the neurons that stay} (as `select_neurons` gives); MLPs it does not name keep
    every neuron. Refused (ValueError): an unknown MLP name, an index out of range or repeated, an MLP left with no
    neuron, and fc1/fc2 weights that carry pruning masks (fold them in first with mp.make_permanent).
    """
    keep = _keep_arg(model, keep)
    refuse_masked(model, [f"{n}.{key}" for n in keep for key in ("fc1", "fc2")], "prune_mlp")
    out = copy_model(model)
    modules = dict(out.named_modules())
    for name, idx in keep.items():
        mlp = modules[name]
        mlp.fc1, mlp.fc2 = slice_linear(mlp.fc1, rows=idx), slice_linear(mlp.fc2, cols=idx)
    return out


def select_neurons(scores, fraction, *, scope: str = "local") -> dict[str, torch.Tensor]:
    """Which neurons stay, {MLP name: sorted indices}: the `fraction` with the lowest scores go, round(fraction *
    hidden) per MLP (scope='local') or of all neurons ranked together ('global'); every MLP keeps at least one.
    fraction is in [0, 1)."""
    return select_units(scores, fraction, scope, "neuron")
