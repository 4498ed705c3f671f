"""Masks on a model that stay applied: the `torch.nn.utils.prune` reparametrisation, and how to copy, save
and load a masked model.

A pruned layer keeps its original tensor as the parameter `weight_orig`, the mask as the buffer
`weight_mask` (1.0 keep, 0.0 pruned), and recomputes `weight = weight_orig * weight_mask` in a forward
pre-hook. The gradient of a pruned entry is therefore zero and its effective value is exactly zero
under any optimizer. Because the hook *is* `torch.nn.utils.prune`'s, `prune.is_pruned` and `prune.remove`
work on our models, and `get_masks` reads masks made by `torch.nn.utils.prune`.
Every chapter masks through this module; `unstructured/prune.py` turns scores into masks and applies them here.
See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from minprune.train import check_model
from minprune.validate import model_arg

STORAGE_SUFFIXES = ("_orig", "_mask")  # where torch.nn.utils.prune keeps a masked tensor's original and its mask


def _split(name: str) -> tuple[str, str]:
    mod_name, _, attr = name.rpartition(".")
    return mod_name, attr


def _hook(module: nn.Module, attr: str):
    """The torch.nn.utils.prune hook of `module.attr`, or None when that tensor is not pruned."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == attr:
            return hook
    return None


def _locate(model: nn.Module, name: str) -> tuple[nn.Module, str, torch.Tensor]:
    """(module, attribute, effective tensor) for a parameter name; ValueError for unknown names."""
    mod_name, attr = _split(name)
    try:
        module = model.get_submodule(mod_name)
    except AttributeError:
        module = None
    if module is None or not (attr in module._parameters or _hook(module, attr) is not None):
        raise ValueError(f"unknown parameter name {name!r}; the model has e.g. {_some_names(model)}")
    return module, attr, getattr(module, attr)


def _pruned(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, attribute) of every tensor that carries a torch.nn.utils.prune mask, in module order."""
    found = []
    for mod_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                attr = hook._tensor_name
                found.append((f"{mod_name}.{attr}" if mod_name else attr, module, attr))
    return found


def refuse_emptied(masks: dict, how: str) -> None:
    """ValueError naming the first tensor whose mask removes every entry (a layer with no weights left cuts the
    network, which is why a sparsity of 1.0 is refused too)."""
    for name, mask in masks.items():
        if mask.numel() and not bool(mask.any()):
            raise ValueError(f"{how} would remove every entry of {name!r} (sparsity 1.0): a layer with no weights "
                             f"left cuts the network; keep at least one (a lower sparsity or threshold, or exclude it)")


def check_mask_values(mask: torch.Tensor, what: str) -> None:
    """ValueError unless `mask` is bool or holds only 0 and 1 (True/1 keeps), on a device with values."""
    if mask.is_meta:
        raise ValueError(f"{what} is on the meta device and holds no values")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{what} must be bool (or 0/1 values), got other values (e.g. "
                         f"{mask[(mask != 0) & (mask != 1)].flatten()[0].item()!r})")


def _check_maskable(module: nn.Module, attr: str, name: str, what: str) -> None:
    """Refuse names that masking would get wrong: the `_orig`/`_mask` tensors pruning stores (masking them nests
    a second reparametrisation), and a tensor whose module has a `<attr>_orig`/`<attr>_mask` of its own that
    masking would overwrite."""
    suffix = next((s for s in STORAGE_SUFFIXES if attr.endswith(s)), None)
    if suffix is not None:
        plain = name.removesuffix(suffix)
        if _hook(module, attr.removesuffix(suffix)) is not None:
            raise ValueError(f"{what}[{name!r}] names the {'original' if suffix == '_orig' else 'mask'} that pruning "
                             f"stores for {plain!r}; name the parameter itself: {plain!r}")
        raise ValueError(f"{what}[{name!r}]: a name ending in '_orig' or '_mask' is where torch.nn.utils.prune keeps "
                         f"a masked tensor's original and mask, so it cannot be masked; name the parameter itself, "
                         f"or rename a parameter of your own that ends so")
    if _hook(module, attr) is None:
        for own in (f"{attr}{s}" for s in STORAGE_SUFFIXES):
            if own in module._parameters or own in module._buffers:
                raise ValueError(f"{what}[{name!r}]: the module already has a tensor {own!r} of its own (not from "
                                 f"pruning), which masking {attr!r} would overwrite; rename that tensor first")


def _some_names(model: nn.Module) -> list[str]:
    names = [n.removesuffix("_orig") for n, _ in model.named_parameters()]
    return names[:6] + (["..."] if len(names) > 6 else [])


def check_against_model(model: nn.Module, tensors: dict, what: str = "masks") -> None:
    """Raise ValueError unless every name exists in `model` (and can be masked) and every tensor has its
    parameter's shape; TypeError for a model that is not an nn.Module, or `tensors` that is not a dict of tensors.
    A model on the meta device is refused: masking computes with its values."""
    model_arg(model)
    if not isinstance(tensors, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: tensor}}, got {type(tensors).__name__}")
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"{what} must be keyed by parameter names (str), got the key {name!r}")
        module, attr, param = _locate(model, name)
        _check_maskable(module, attr, name, what)
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}[{name!r}] must be a tensor, got {type(t).__name__}")
        if t.shape != param.shape:
            raise ValueError(f"{what}[{name!r}] has shape {tuple(t.shape)} but the parameter has {tuple(param.shape)}")


@torch.no_grad()
def _refresh(module: nn.Module, attr: str) -> None:
    """Recompute the effective tensor orig * mask outside autograd (a graph-free tensor can be deep-copied)."""
    setattr(module, attr, _hook(module, attr).apply_mask(module))


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as the forward pass sees it: a pruned `weight_orig` is replaced by the masked `weight`.

    Keyed by use: a tensor shared by two layers (weight tying) appears under both names, each as its layer sees
    it; `measure.stored_tensors` groups the uses of one stored tensor, so counts take it once.
    See notebooks/03_weight_pruning.ipynb.
    """
    check_model(model)
    out = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if p_name.endswith("_orig"):  # torch.nn.utils.prune style reparametrisation
                p_name = p_name[: -len("_orig")]
                p = getattr(module, p_name)
            out[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    return out


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that also works right after a training step on a masked model.

    (After backward, a masked layer's `weight` is a non-leaf tensor that `copy.deepcopy` refuses to copy;
    it is recomputed without a graph first, which changes no values.)
    See notebooks/04_fine_tuning.ipynb.
    """
    check_model(model)
    for _, module, attr in _pruned(model):
        _refresh(module, attr)
    return copy.deepcopy(model)


def is_pruned(model: nn.Module) -> bool:
    """True when at least one tensor of `model` carries a pruning mask."""
    check_model(model)
    return torch_prune.is_pruned(model)


def apply_masks(model: nn.Module, masks: dict) -> nn.Module:
    """Mask parameters in place (True keeps); an already masked tensor gets the product of old and new masks.

    Validates every name, shape and value before touching anything: masks must be bool or 0/1, named by the
    parameter itself ('fc.weight', not 'fc.weight_orig'), and must leave every tensor at least one entry (a
    layer with no weights left cuts the network). Works in any float dtype; the model keeps its own.
    Returns `model`. See notebooks/03_weight_pruning.ipynb.
    """
    check_against_model(model, masks)
    for name, mask in masks.items():
        check_mask_values(mask, f"masks[{name!r}]")
    _refuse_emptying(model, masks)
    for name, mask in masks.items():
        module, attr, param = _locate(model, name)
        mask = mask.to(device=param.device, dtype=param.dtype)
        hook = _hook(module, attr)
        if hook is None:
            torch_prune.custom_from_mask(module, attr, mask)
        else:
            with torch.no_grad():
                getattr(module, f"{attr}_mask").mul_(mask)
        _refresh(module, attr)
    return model


def _refuse_emptying(model: nn.Module, masks: dict) -> None:
    """ValueError naming a tensor that `masks`, together with the mask it already carries, would empty."""
    combined = {}
    for name, mask in masks.items():
        module, attr, _ = _locate(model, name)
        keep = mask.detach().cpu() != 0
        if _hook(module, attr) is not None:
            keep = keep & (getattr(module, f"{attr}_mask").detach().cpu() != 0)
        combined[name] = keep
    refuse_emptied(combined, "the masks (with those already applied)")


def get_masks(model: nn.Module) -> dict:
    """The bool mask of every masked tensor ({name: mask}); also reads masks set by torch.nn.utils.prune.

    A model on the meta device is refused: its masks hold no values.
    See notebooks/03_weight_pruning.ipynb.
    """
    model_arg(model)
    return {name: getattr(module, f"{attr}_mask").detach() != 0 for name, module, attr in _pruned(model)}


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its tensor and remove the reparametrisation (in place; parameters keep identity).

    Afterwards the model is a plain model whose pruned weights are zeros. Returns `model`.
    See notebooks/03_weight_pruning.ipynb.
    """
    check_model(model)
    for _, module, attr in _pruned(model):
        torch_prune.remove(module, attr)
    return model


def load_masked_state_dict(model: nn.Module, state_dict: dict, *, strict: bool = True) -> nn.Module:
    """Load a state_dict saved from a masked model into a freshly built one; pruned weights stay zero.

    Tensors with a `<name>_mask` entry are masked first (so `<name>_orig` and `<name>_mask` have a place
    to go), then the state_dict is loaded and every effective weight is recomputed. Returns `model`.
    Masks in the state_dict must hold 0/1 values and leave every tensor at least one entry. A state_dict that
    does not fit raises a ValueError before `model` changes: unknown names, bad masks, missing or unexpected keys
    and shapes that differ (torch's own list of them in the message). See notebooks/04_fine_tuning.ipynb.
    """
    model_arg(model)
    _check_state_dict(state_dict, strict)
    try:
        _load(copy_model(model), state_dict, strict)  # raises on a mismatch before `model` is touched
    except RuntimeError as exc:  # load_state_dict's "Error(s) in loading state_dict ...": missing, unexpected, shapes
        raise ValueError(f"the state_dict does not fit the model: {str(exc)[:600]}") from exc
    return _load(model, state_dict, strict)


def _check_state_dict(state_dict, strict) -> None:
    """Refuse a state_dict that is not a mapping of names to tensors, or whose masks are not 0/1 with a kept entry."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict {{name: tensor}} (model.state_dict()), got "
                        f"{type(state_dict).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] must be a tensor, got {type(t).__name__}")
    masks = {key: t for key, t in state_dict.items()
             if key.endswith("_mask") and key.removesuffix("_mask") + "_orig" in state_dict}
    for key, t in masks.items():
        check_mask_values(t, f"state_dict[{key!r}]")
    refuse_emptied({key.removesuffix("_mask"): t.detach().cpu() != 0 for key, t in masks.items()},
                   "the state_dict's masks")


def _load(model: nn.Module, state_dict: dict, strict: bool) -> nn.Module:
    needed = {}
    for key in state_dict:
        if key.endswith("_mask") and key.removesuffix("_mask") + "_orig" in state_dict:
            name = key.removesuffix("_mask")
            if name not in get_masks(model):
                needed[name] = torch.ones_like(state_dict[key], dtype=torch.bool)
    apply_masks(model, needed)
    model.load_state_dict(state_dict, strict=strict)
    for _, module, attr in _pruned(model):
        _refresh(module, attr)
    return model
