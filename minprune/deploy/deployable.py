"""What you would ship: a plain float copy of a model (masks folded, fake quantization stripped, on the CPU).

Kept apart from `export.py` so that measuring a deployable model (the pipeline's stage table, notebook 10) does
not load ONNX. See notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

from torch import nn

from minprune.devices import cpu_only, model_device
from minprune.masked import copy_model, is_pruned, make_permanent
from minprune.quantization.uniform import FakeQuantMixin, strip_fake_quant
from minprune.validate import model_arg


def check_deployable(model) -> nn.Module:
    """`model` when a deployable copy can be made of it; else TypeError (not an nn.Module) or ValueError (PyTorch
    int8 kernels, or tensors on the meta device, which hold no values to copy). Copies nothing."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    if cpu_only(model):  # PyTorch int8 kernels (quantization.int8_modules.Int8Model, torch.ao quantized modules)
        raise ValueError("this model runs PyTorch int8 kernels, which ONNX export does not support; export the "
                         "float model and quantize the ONNX file with quantize_onnx (or `--int8` on the CLI)")
    return model_arg(model)


def deployable_copy(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """What you would ship: a plain float copy in eval mode, on the CPU, its masks made permanent and its
    fake-quant layers stripped. `model` is untouched; the result is always a copy (of a plain CPU model too).

    Returns (copy, notes): the notes say in words what was changed. The one definition of a shipped model:
    `export_onnx` exports it, bench/deploy.py and notebook 11 measure it. PyTorch int8 models are refused (export
    the float model and use `quantize_onnx`); a caller that also measures those (a pipeline's int8 stage) passes
    them through itself, e.g. `model if devices.cpu_only(model) else deployable_copy(model)[0]`. A meta-device
    model is refused (it holds no weights to copy); float16 and bfloat16 models are copied in their dtype.
    See notebooks/11_deploy.ipynb.
    """
    check_deployable(model)
    notes = []
    plain = copy_model(model)
    if model_device(plain).type != "cpu":
        plain = plain.cpu()
        notes.append(f"the copy was moved from {model_device(model)} to the CPU, where ONNX Runtime runs")
    if is_pruned(plain):
        make_permanent(plain)
        notes.append("masks were made permanent on a copy (the file holds zeros, no weight_mask)")
    if any(isinstance(m, FakeQuantMixin) for m in plain.modules()):
        strip_fake_quant(plain)
        notes.append("fake-quant layers were stripped on a copy (weights stay on their quantization grid)")
    return plain.eval(), notes
