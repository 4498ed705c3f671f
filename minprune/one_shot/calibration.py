"""Calibration: what each layer sees on a few batches, the data one-shot pruners need instead of retraining.

A layer y = W x computes on rows x of its input: a Linear's (batch * tokens, in_features), a Conv's patches
unfolded by im2col (batch * positions, in_channels * kh * kw), so `W.reshape(out, -1) @ x` is the layer again and
the same math prunes both. From the rows X (n_rows, d) of every calibration batch:
- `input_hessians`: H = X^T X / n_rows (d, d), float64: the Hessian of the layer's reconstruction error
  ||W X^T - W' X^T||^2 / n_rows up to a factor 2 (OBD, OBS, SparseGPT);
- `input_norms`: ||X_j||_2 over all rows (d,), float32 (Wanda);
- `prune_sequentially`: layer by layer in forward order, each layer calibrated on a copy whose earlier layers
  are already pruned (as SparseGPT does), so a layer repairs the error of the ones before it.
The model runs in eval mode without gradients, where it sits; hooks are removed and train/eval flags put back.
See notebooks/13_one_shot_pruning.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minprune.batches import CANNOT_RUN, check_loader, eval_mode_kept, input_dtype, to_model_input
from minprune.devices import model_device
from minprune.masked import copy_model
from minprune.unstructured.masks import name_list, prunable_names
from minprune.validate import callable_arg, model_arg, positive_int


def target_layers(model: nn.Module, names=None) -> dict[str, nn.Module]:
    """{weight name ('blocks.0.attn.q.weight'): layer} of the layers one-shot pruning calibrates, in module order.

    Default: every prunable Linear/Conv weight except the model's output layer (its last prunable layer: for
    CharGPT every Linear inside the blocks, q, k, v, proj, fc1, fc2, and not the head; embeddings are never
    prunable). names= picks others. Refused: unknown names, grouped or non-zero-padded convolutions, weights with
    NaN/Inf, and one weight shared by two target layers. See notebooks/13_one_shot_pruning.ipynb.
    """
    model_arg(model)
    prunable = prunable_names(model)
    if names is None:
        names = prunable[:-1]
        if not names:
            raise ValueError(f"the model's only prunable layer is its output layer ({prunable}); one-shot pruning "
                             f"leaves the output layer alone by default: pass names={prunable} to prune it")
    names = name_list(names, "names")
    unknown = [n for n in names if n not in prunable]
    if unknown or not names:
        got = f"unknown name(s) {unknown}" if unknown else "an empty list"
        raise ValueError(f"names must list weights of prunable layers; got {got}, the prunable ones are {prunable}")
    layers = {n: model.get_submodule(n.removesuffix("weight").removesuffix(".")) for n in dict.fromkeys(names)}
    for name, layer in layers.items():
        _check_layer(name, layer)
    _refuse_shared(layers)
    return layers


def _check_layer(name: str, layer: nn.Module) -> None:
    """ValueError for a layer whose inputs im2col cannot unfold, or whose weight is not finite."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if layer.groups != 1 or layer.padding_mode != "zeros" or layer.padding == "same":
            raise ValueError(f"{name}: one-shot pruning unfolds a convolution's inputs (im2col) and handles "
                             f"groups=1 with zero padding only; this layer has groups={layer.groups}, "
                             f"padding={layer.padding!r}, padding_mode={layer.padding_mode!r}")
    weight = layer.weight
    if not weight.is_floating_point() or not bool(torch.isfinite(weight).all()):
        raise ValueError(f"{name} contains NaN or Inf (or is not a float tensor); one-shot pruning needs finite "
                         f"weights (did training diverge?)")


def _stored_weight(layer: nn.Module) -> torch.Tensor:
    """The tensor a layer stores its weight in (`weight_orig` once masked)."""
    return layer._parameters.get("weight_orig", layer._parameters.get("weight"))


def _refuse_shared(layers: dict[str, nn.Module]) -> None:
    seen: dict[int, str] = {}
    for name, layer in layers.items():
        key = id(_stored_weight(layer))
        if key in seen:
            raise ValueError(f"{seen[key]!r} and {name!r} are one shared weight (tied layers): pruning it once per "
                             f"use would give two different answers; name only one of them in names=")
        seen[key] = name


def calibration_batches(batches, *, max_batches: int | None = None) -> list[torch.Tensor]:
    """The inputs x of the first `max_batches` batches (default: all) as a list, read once.

    `batches` is a DataLoader or any iterable of (x, y) pairs (y is ignored) or of input tensors x.
    See notebooks/13_one_shot_pruning.ipynb.
    """
    check_loader(batches, "batches")
    positive_int(max_batches, "max_batches", none_ok=True)
    xs = []
    for batch in batches:
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
            batch = batch[0]
        if not isinstance(batch, torch.Tensor) or batch.dim() == 0:
            raise TypeError(f"batches must yield (x, y) pairs or input tensors x, got {type(batch).__name__} "
                            f"{batch!r:.60}")
        xs.append(batch)
        if max_batches is not None and len(xs) == max_batches:
            break
    if not xs:
        raise ValueError("batches is an empty loader: calibration needs at least one batch")
    return xs


def layer_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows (n_rows, d) a layer multiplies by W.reshape(out, d), in float64: a Linear's inputs flattened
    over batch and tokens, a Conv's patches unfolded (im2col). See notebooks/13_one_shot_pruning.ipynb."""
    x = x.detach().to(torch.float64)
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(layer, nn.Conv1d):  # (batch, C, L) as a (batch, C, 1, L) image under a (1, k) kernel
        x = x.unsqueeze(0) if x.dim() == 2 else x
        cols = F.unfold(x.unsqueeze(2), (1, *layer.kernel_size), dilation=(1, *layer.dilation),
                        padding=(0, *layer.padding), stride=(1, *layer.stride))
    elif isinstance(layer, nn.Conv2d):
        x = x.unsqueeze(0) if x.dim() == 3 else x
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    else:
        raise TypeError(f"layer must be an nn.Linear, nn.Conv1d or nn.Conv2d, got {type(layer).__name__}")
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (batch * positions, C * kh * kw)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer it records has run (the rest is not needed)."""


def _run(model: nn.Module, xs: list[torch.Tensor]) -> None:
    """Every batch through the model, eval mode and no gradients; a batch it cannot run raises ValueError."""
    device, dtype = model_device(model), input_dtype(model)
    with torch.no_grad(), eval_mode_kept(model):
        for x in xs:
            try:
                model(to_model_input(x, device, dtype))
            except _Stop:
                continue
            except torch.cuda.OutOfMemoryError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise ValueError(f"{CANNOT_RUN}: batches yields x of shape {tuple(x.shape)} ({x.dtype}): "
                                 f"{exc}") from exc


def _collect(model: nn.Module, xs: list, layers: dict, stat: Callable, *, stop: bool = False) -> dict[str, list]:
    """{name: [sum of stat(rows) over every call, n_rows]} for each layer, from one pass over `xs`; stop=True
    (one layer called once per pass) ends each forward pass as soon as that layer has run."""
    sums: dict[str, list] = {}

    def recorder(name):
        def hook(layer, args, _out):
            rows = layer_rows(layer, args[0])
            total = sums.setdefault(name, [0, 0])
            total[0], total[1] = total[0] + stat(rows), total[1] + rows.shape[0]
            if stop:
                raise _Stop
        return hook

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        _run(model, xs)
    finally:
        for handle in handles:
            handle.remove()
    silent = [name for name in layers if name not in sums or sums[name][1] == 0]
    if silent:
        raise ValueError(f"the layers {silent} did not run on the calibration batches, so they have no inputs to "
                         f"calibrate on; leave them out of names=")
    return sums


def input_hessians(model: nn.Module, batches, names=None, *, max_batches: int | None = None) -> dict:
    """{weight name: H = X^T X / n_rows} (d, d) float64 on the model's device, X the layer's input rows
    (`layer_rows`) over every calibration batch; one forward pass, the model unchanged.

    names: as in `target_layers`. See notebooks/13_one_shot_pruning.ipynb.
    """
    layers = target_layers(model, names)
    sums = _collect(model, calibration_batches(batches, max_batches=max_batches), layers, lambda X: X.T @ X)
    return {name: total / n for name, (total, n) in sums.items()}


def input_norms(model: nn.Module, batches, names=None, *, max_batches: int | None = None) -> dict:
    """{weight name: ||X_j||_2} (d,) float32: the 2-norm of each input feature j over every row of every
    calibration batch (Wanda's activation norm); one forward pass, the model unchanged.

    names: as in `target_layers`. See notebooks/13_one_shot_pruning.ipynb.
    """
    layers = target_layers(model, names)
    sums = _collect(model, calibration_batches(batches, max_batches=max_batches), layers,
                    lambda X: X.pow(2).sum(0))
    return {name: total.sqrt().float() for name, (total, _) in sums.items()}


def _trace(model: nn.Module, x: torch.Tensor, layers: dict) -> tuple[list[str], dict[str, int]]:
    """(the names of `layers` in the order the model first calls them on the batch x, calls per name)."""
    calls: dict[str, int] = {}

    def counter(name):
        def hook(*_):
            calls[name] = calls.get(name, 0) + 1
        return hook

    handles = [layer.register_forward_hook(counter(name)) for name, layer in layers.items()]
    try:
        _run(model, [x])
    finally:
        for handle in handles:
            handle.remove()
    silent = [name for name in layers if name not in calls]
    if silent:
        raise ValueError(f"the layers {silent} did not run on the calibration batches; leave them out of names=")
    return list(calls), calls


def forward_order(model: nn.Module, x: torch.Tensor, layers: dict) -> list[str]:
    """The names of `layers` ({weight name: layer}) in the order the model first calls them on the batch `x`."""
    return _trace(model, x, layers)[0]


def prune_sequentially(model: nn.Module, batches, prune_layer: Callable, names=None, *,
                       max_batches: int | None = None) -> nn.Module:
    """A pruned copy of `model`: for each target layer in forward order, H = X^T X / n_rows (float64) is
    collected on the copy, whose earlier layers are already pruned, then `prune_layer(name, layer, H)` changes
    that layer of the copy in place (its return value is ignored). The model passed in never changes.

    The simplest correct driver: the calibration batches run through the copy once per layer, each pass stopped
    once that layer has run (L layers, L passes: fine at the kit's scale; SparseGPT's code caches each block's
    inputs instead). A layer called twice per pass (shared) is calibrated on both calls.
    names: as in `target_layers`. See notebooks/13_one_shot_pruning.ipynb.
    """
    callable_arg(prune_layer, "prune_layer")
    layers = target_layers(model, names)
    xs = calibration_batches(batches, max_batches=max_batches)
    order, calls = _trace(model, xs[0], layers)
    work = copy_model(model)
    work_layers = target_layers(work, order)
    for name in order:
        sums = _collect(work, xs, {name: work_layers[name]}, lambda X: X.T @ X, stop=calls[name] == 1)
        total, n = sums[name]
        prune_layer(name, work_layers[name], total / n)
    return work
