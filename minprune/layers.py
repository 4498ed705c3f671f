"""What the kit prunes, defined once: the prunable layers, and how a layer is described, rebuilt and replaced.

A prunable layer is an `nn.Linear`, `nn.Conv1d` or `nn.Conv2d`: its `weight` is what weight pruning masks
(notebooks 02-04), its output units are what structured pruning removes (05-06), and its multiply-accumulates are
what the energy model counts (11). `module_spec` / `module_from_spec` describe a (possibly resized) layer as plain
data, so that a compacted model can be saved as a description plus a state_dict and rebuilt.
"""

from __future__ import annotations

from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def is_prunable(module: nn.Module) -> bool:
    """True for a float Linear or Conv layer (the layers whose weights and output units the kit prunes)."""
    return isinstance(module, PRUNABLE_TYPES)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{module name: layer} of every prunable layer of `model`, in module order."""
    return {name: module for name, module in model.named_modules() if is_prunable(module)}


SPEC_TYPES = {cls.__name__: cls for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d,
                                            nn.Identity)}


def module_spec(mod: nn.Module) -> list:
    """[type name, constructor kwargs] of a Linear / Conv / BatchNorm / Identity layer (for model descriptions)."""
    kind = type(mod).__name__
    if isinstance(mod, nn.Linear):
        return [kind, {"in_features": mod.in_features, "out_features": mod.out_features, "bias": mod.bias is not None}]
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        padding = mod.padding if isinstance(mod.padding, str) else list(mod.padding)  # "same", "valid" or sizes
        spec = {"in_channels": mod.in_channels, "out_channels": mod.out_channels, "kernel_size": list(mod.kernel_size),
                "stride": list(mod.stride), "padding": padding, "dilation": list(mod.dilation), "groups": mod.groups,
                "bias": mod.bias is not None}
        if mod.padding_mode != "zeros":
            spec["padding_mode"] = mod.padding_mode
        return [kind, spec]
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return [kind, {"num_features": mod.num_features, "eps": mod.eps, "momentum": mod.momentum,
                       "affine": mod.affine, "track_running_stats": mod.track_running_stats}]
    if isinstance(mod, nn.Identity):
        return [kind, {}]
    raise ValueError(f"no spec for {kind}")


def module_from_spec(spec) -> nn.Module:
    """Inverse of `module_spec`."""
    kind, kwargs = spec
    if kind not in SPEC_TYPES:
        raise ValueError(f"unknown layer type {kind!r} in a model description; allowed: {', '.join(SPEC_TYPES)}")
    return SPEC_TYPES[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called `name` ('layers.1.conv2') by `new`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
