"""Real int8 models with PyTorch: dynamic quantization, static post-training quantization, QAT.

Which path, and why: on a CPU without torch.compile, only the `torch.ao.quantization` kernels (fbgemm/x86 and
oneDNN; qnnpack on ARM) run int8 arithmetic and store int8 weights. In torch 2.14 that API warns that it is
deprecated in favour of torchao; we leave those DeprecationWarnings visible. torchao's `quantize_` (int8
configs) and its pt2e flow with X86InductorQuantizer are the maintained path, but they only get fast after a
`torch.compile` (minutes on 2 cores): measured here, torchao's dynamic int8 LeNet-300-100 ran about 200x
*slower* than float in eager mode, and a pt2e model that is not compiled keeps float weights. So the library uses
eager `quantize_dynamic` for Linear layers and FX graph mode (`prepare_fx`/`convert_fx`, which handles
functional ops and residual additions) for static PTQ and QAT. Every result is checked to hold int8 weights.

Which engine runs them, and why: `engines.py` (oneDNN for CNNs and x86 for MLPs on x86-64, qnnpack on ARM).
What they return, an `Int8Model` (and `Int8WeightLinear` layers for `linear_weights_only=True`): `int8_modules.py`.
See notebooks/08_quantization.ipynb and notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.quantization import quantize_fx

from minprune.models import check_input_shape, describe
from minprune.quantization.engines import observer_notice_hidden, pick_engine, qconfig_mapping, using_engine
from minprune.quantization.int8_modules import Int8Model, Int8WeightLinear, int8_weights
from minprune.validate import check_flag, float_model, model_arg


def _float_linears_to_int8_weights(model: nn.Module) -> None:
    """Replace, in place, every float nn.Linear of `model` (left float by the quantization) by an Int8WeightLinear."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, Int8WeightLinear(child))


def _recipe(model: nn.Module, method: str, engine: str, per_channel: bool, linear_weights_only: bool = False
            ) -> dict | None:
    """What load_int8 needs to rebuild the int8 model; None for models minprune cannot describe."""
    try:
        description = getattr(model, "minprune_description", None) or describe(model)
    except ValueError:
        return None
    return {"description": description, "method": method, "engine": engine, "per_channel": per_channel,
            "linear_weights_only": linear_weights_only}


def _check_float_model(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if hasattr(module, "weight_orig"):
            raise ValueError(f"{name} carries a pruning mask (weight_orig); call make_permanent(model) first")
        if hasattr(module, "parametrizations"):
            raise ValueError(f"{name} has parametrized weights (e.g. k-means sharing); call unshare_weights first")


def _cpu_copy(model: nn.Module) -> nn.Module:
    """A float32 copy on the CPU: PyTorch's int8 kernels are CPU kernels, so a model on a GPU is quantized from a
    copy, and their observers and packed weights start from float32 (a float16 or bfloat16 model is quantized from
    its float32 copy; the int8 model then takes float32 inputs, like every PyTorch int8 model)."""
    return copy.deepcopy(model).cpu().float()


def _finish(quantized: nn.Module, model: nn.Module, method: str, engine: str, per_channel: bool,
            linear_weights_only: bool = False) -> Int8Model:
    recipe = _recipe(model, method, engine, per_channel, linear_weights_only)
    result = Int8Model(quantized, model.input_shape, method, engine, recipe)
    if not int8_weights(result):
        kinds = sorted({type(m).__name__ for m in model.modules() if list(m.parameters(recurse=False))})
        raise ValueError(f"{method}: the {engine} backend quantized none of the layers ({', '.join(kinds)})")
    return result


def dynamic_int8(model: nn.Module, *, engine: str = "auto") -> Int8Model:
    """Int8 weights for every nn.Linear; activations are quantized on the fly per batch. Returns a copy.

    No calibration needed. Dynamic quantization in PyTorch covers Linear (and recurrent) layers only.
    engine: 'auto' (see the module docstring), 'x86', 'fbgemm', 'onednn' or 'qnnpack' (ARM, Apple silicon).
    Float16 and bfloat16 models are quantized from a float32 copy.
    """
    model_arg(model)
    engine = pick_engine(model, engine)
    _check_float_model(model)
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError("dynamic int8 quantizes nn.Linear layers only and this model has none; "
                         "use static_int8 (with calibration data) for convolutions")
    with using_engine(engine):
        quantized = tq.quantize_dynamic(_cpu_copy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    return _finish(quantized, model, "dynamic", engine, True)


CALIBRATION = "a DataLoader, a list of (x, y) batches, a list of input tensors or one input tensor"


def _batches(calibration, model: nn.Module) -> list[torch.Tensor]:
    """Float32 CPU inputs from a DataLoader, a list of (x, y) batches, a list of tensors or one tensor; every batch
    is checked (a tensor, real-valued, of the model's input_shape) before the model is copied or run."""
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    if calibration is None or isinstance(calibration, (str, bytes, dict)) or not hasattr(calibration, "__iter__"):
        raise TypeError(f"calibration must be {CALIBRATION}, got {type(calibration).__name__}")
    xs = [b[0] if isinstance(b, (tuple, list)) and b else b for b in calibration]
    for i, x in enumerate(xs):
        if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"calibration batch {i} must hold an input tensor ({CALIBRATION}), got "
                            f"{type(x).__name__}")
    if not xs or all(x.numel() == 0 for x in xs):
        raise ValueError("calibration data is empty: static quantization needs a few batches of real inputs "
                         "to measure activation ranges")
    if getattr(model, "input_shape", None) is not None:
        for x in xs:
            check_input_shape(model, (x,))  # "LeNet5 expects input of shape (batch, 1, 28, 28), got ..."
    return [x.cpu().float() for x in xs]


@torch.no_grad()
def static_int8(model: nn.Module, calibration, *, per_channel: bool = True, engine: str = "auto",
                linear_weights_only: bool = False) -> Int8Model:
    """Static post-training quantization: fuse conv-BN(-ReLU), observe activation ranges on the calibration
    batches, convert weights and activations to int8. Returns a copy; `model` is untouched.
    engine: 'auto' (oneDNN for CNNs, x86/fbgemm otherwise, qnnpack on ARM; see the module docstring), or one of
    'x86', 'fbgemm', 'onednn', 'qnnpack'.
    linear_weights_only: the nn.Linear layers store int8 weights but compute in float (`Int8WeightLinear`),
    for networks whose Linear layers are too small for int8 kernels to pay; convolutions stay fully int8.
    """
    model_arg(model)
    check_flag(linear_weights_only, "linear_weights_only")
    check_flag(per_channel, "per_channel")
    engine = pick_engine(model, engine)
    _check_float_model(model)
    xs = _batches(calibration, model)
    mapping = qconfig_mapping(per_channel, engine)
    if linear_weights_only:
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                mapping = mapping.set_module_name(name, None)  # left float by FX, then swapped below
    with using_engine(engine), observer_notice_hidden():
        prepared = quantize_fx.prepare_fx(_cpu_copy(model).eval(), mapping, (xs[0][:1],))
        for x in xs:  # calibration: observers record min/max (histograms) of every activation
            prepared(x)
        quantized = quantize_fx.convert_fx(prepared)
    if linear_weights_only:
        _float_linears_to_int8_weights(quantized)
    return _finish(quantized, model, "static", engine, per_channel, linear_weights_only)


def prepare_qat_int8(model: nn.Module, *, per_channel: bool = True, engine: str = "auto") -> nn.Module:
    """A copy with fake-quant observers for quantization-aware training; train it with `mp.fit`, then
    call `convert_qat_int8`. The copy keeps `input_shape` so the rest of minprune works with it.
    engine: as for `static_int8`; per_channel=False fake-quantizes each weight with one scale per layer.
    QAT trains, so float16 and bfloat16 models are refused (call model.float() first).
    """
    float_model(model, "prepare_qat_int8")
    check_flag(per_channel, "per_channel")
    if getattr(model, "input_shape", None) is None:
        raise ValueError(f"prepare_qat_int8 traces the model with one example input, but this "
                         f"{type(model).__name__} has no input_shape; set model.input_shape = (C, H, W) first "
                         f"(minprune's models have it)")
    engine = pick_engine(model, engine)
    _check_float_model(model)
    example = torch.zeros(1, *model.input_shape)
    mapping = qconfig_mapping(per_channel, engine, qat=True)  # fake-quant weights and activations
    with using_engine(engine), observer_notice_hidden():
        prepared = quantize_fx.prepare_qat_fx(_cpu_copy(model).train(), mapping, (example,))
    prepared.input_shape = tuple(model.input_shape)
    prepared.quantized_engine, prepared.per_channel = engine, per_channel
    recipe = _recipe(model, "qat", engine, per_channel)
    prepared.minprune_description = recipe and recipe["description"]
    return prepared


def convert_qat_int8(prepared: nn.Module) -> Int8Model:
    """Turn a model from `prepare_qat_int8` (after training) into a real int8 model. Returns a copy."""
    if not hasattr(prepared, "quantized_engine") or not isinstance(prepared, torch.fx.GraphModule):
        raise ValueError("convert_qat_int8 expects the model returned by prepare_qat_int8")
    with using_engine(prepared.quantized_engine):
        quantized = quantize_fx.convert_fx(_cpu_copy(prepared).eval())
    return _finish(quantized, prepared, "qat", prepared.quantized_engine, prepared.per_channel)
