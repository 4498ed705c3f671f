"""Activation-range calibration with forward hooks: the smallest and largest output each layer gives on some
calibration batches, from which static int8 quantization takes each activation's scale and zero point.

`activation_ranges(model, batches)` registers a forward hook on every nn.Conv2d and nn.Linear (or the module
types given), runs the batches without gradients, and returns {module name: (min, max)} over all the batches,
as torch's MinMaxObserver would record them. Calibration runs in eval mode (BatchNorm uses its running statistics
and Dropout is off, as the int8 model will run); every module's train/eval flag is put back afterwards, the hooks
are removed even when a batch fails, and nothing else of the model changes.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from minprune.batches import eval_mode_kept, input_dtype, to_model_input
from minprune.devices import model_device
from minprune.validate import model_arg

LAYERS = (nn.Conv2d, nn.Linear)


def _check_types(types) -> tuple[type, ...]:
    if isinstance(types, type):
        types = (types,)
    if not isinstance(types, tuple) or not types or not all(isinstance(t, type) and issubclass(t, nn.Module)
                                                            for t in types):
        raise TypeError(f"activation_ranges: types must be a tuple of nn.Module classes such as (nn.Conv2d, "
                        f"nn.Linear), got {types!r:.80}")
    return types


def _check_batches(batches) -> None:
    if batches is None or isinstance(batches, (str, bytes, Mapping, torch.Tensor)) or not isinstance(batches,
                                                                                                   Iterable):
        raise TypeError(f"activation_ranges: batches must be a list of input tensors or of (x, y) pairs, or a "
                        f"DataLoader; got {type(batches).__name__} {batches!r:.60}")


def _inputs(batch, index: int) -> torch.Tensor:
    """The input tensor of one batch: the batch itself, or x of an (x, y) pair."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"activation_ranges: batch {index} must be an input tensor or an (x, y) pair of tensors, "
                        f"got {type(batch).__name__} {batch!r:.60}")
    return x


class _RangeRecorder:
    """A forward hook that widens one module's running (min, max) with each output it sees."""

    def __init__(self, name: str):
        self.name, self.low, self.high = name, None, None

    def __call__(self, module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            raise TypeError(f"activation_ranges: module {self.name!r} ({type(module).__name__}) returned "
                            f"{type(output).__name__}, not a float tensor; pass types= of modules that do")
        low, high = float(output.detach().min()), float(output.detach().max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)


def activation_ranges(model: nn.Module, batches, types=LAYERS) -> dict[str, tuple[float, float]]:
    """{module name: (min, max) of its output over all `batches`} for every module of `types` that ran.

    batches: input tensors, or (x, y) pairs such as a DataLoader yields (only x is used), each moved to the
    model's device. Runs in eval mode under torch.no_grad(); the model is left exactly as it was (train/eval
    flags, no hooks, no gradients, BatchNorm statistics unchanged). Modules that never ran are left out.
    TypeError for a model that is not an nn.Module, bad types or batches; ValueError when the model has no module
    of `types` or `batches` is empty.
    """
    model_arg(model)
    types = _check_types(types)
    _check_batches(batches)
    recorders = {name: _RangeRecorder(name) for name, m in model.named_modules() if isinstance(m, types)}
    if not recorders:
        raise ValueError(f"activation_ranges: the model has no module of types {[t.__name__ for t in types]}")
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(recorder) for name, recorder in recorders.items()]
    device, dtype, seen = model_device(model), input_dtype(model), 0
    try:
        with torch.no_grad(), eval_mode_kept(model):
            for seen, batch in enumerate(batches, start=1):
                model(to_model_input(_inputs(batch, seen - 1), device, dtype))
    finally:
        for handle in handles:
            handle.remove()
    if seen == 0:
        raise ValueError("activation_ranges: batches is empty; calibration needs at least one batch")
    return {name: (r.low, r.high) for name, r in recorders.items() if r.low is not None}
