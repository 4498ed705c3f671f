"""Which int8 engine (`torch.backends.quantized.engine`) runs a quantized model, and with which observers.

Measured on a 2-core AMD EPYC with AVX2 and no AVX-512/VNNI (bench/quantization.py), the default 'x86' engine
(fbgemm kernels) spends ~80% of a LeNet-5 forward pass in its int8 convolution of the 1-channel input (no fast path
for so few input channels) and is *slower* than float (0.6x), while 'onednn' runs it ~1.5-2x faster than float and
VGG/ResNet ~2.5-3.5x. For Linear-only models fbgemm's int8 GEMM is the faster one (dynamic LeNet-300-100: ~1.5x vs
~0.9x). So engine='auto' picks 'onednn' for models with convolutions and 'x86' otherwise; pass engine= to choose.
The weights are packed for the engine they were quantized with, and the model runs under that engine.

On an ARM Mac (Apple M-series) PyTorch has none of those: its int8 engine is 'qnnpack' (`supported_engines()`
is ['qnnpack', 'none']), and engine='auto' falls back to it wherever the engines above are missing (ARM Linux
builds that list 'onednn' get it for CNNs). qnnpack's settings: uint8 activations on all 8 bits (reduce_range=False;
its kernels sum in 32 bits), symmetric int8 weights. x86 builds ship qnnpack too, so engine='qnnpack' makes a
Mac's int8 model here; its speed on ARM was not measured for this kit.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

import torch
from torch import nn
from torch.ao import quantization as tq

from minprune.train import check_model
from minprune.validate import check_flag

BACKEND = "x86"  # fbgemm kernels with x86-specific choices; PyTorch's default engine on x86 CPUs
ENGINES = ("auto", "x86", "fbgemm", "onednn", "qnnpack")
# engine='auto' takes the first of these that the build has: measured on x86 (see above), qnnpack on ARM
AUTO_ORDER = {"cnn": ("onednn", "x86", "fbgemm", "qnnpack"), "mlp": ("x86", "fbgemm", "qnnpack")}


@contextmanager
def using_engine(name: str):
    """Run the block under the quantized engine `name`, then restore the one before."""
    if not isinstance(name, str) or name not in ENGINES[1:]:
        raise ValueError(f"engine must be one of {', '.join(ENGINES[1:])}, got {name!r:.60}")
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def supported_engines() -> list[str]:
    """The quantized engines this PyTorch build has (x86: 'x86', 'fbgemm', 'onednn', 'qnnpack'; an ARM Mac:
    'qnnpack', 'none'). Everything in minprune asks here, so a test can stand in for another machine."""
    return list(torch.backends.quantized.supported_engines)


def pick_engine(model: nn.Module, engine: str = "auto") -> str:
    """The quantized engine to use: 'auto' is 'onednn' for models with convolutions, else 'x86', and 'qnnpack'
    on builds that lack those (ARM, Apple silicon); see the module docstring."""
    check_model(model)  # only the layer types are read, so a model on the meta device is fine
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    available = supported_engines()
    if engine != "auto":
        if engine not in available:
            usable = [e for e in ENGINES if e in available]
            raise RuntimeError(f"this PyTorch build has no {engine!r} quantized engine (available: {available}); "
                               f"use engine='auto' or one of {usable}")
        return engine
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    order = AUTO_ORDER["cnn" if has_conv else "mlp"]
    for candidate in order:
        if candidate in available:
            return candidate
    kind = "with convolutions" if has_conv else "without convolutions"
    raise RuntimeError(f"engine='auto' found no int8 engine for this {type(model).__name__} (a model {kind}, "
                       f"which runs on {', '.join(order)}): this PyTorch build has only {available}; "
                       f"int8 needs a build with quantized CPU kernels")


# oneDNN instruction-set limits (ONEDNN_MAX_CPU_ISA) below the first one with VNNI int8 dot products
NO_VNNI_ISAS = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def onednn_has_vnni() -> bool:
    """Whether oneDNN's int8 kernels use VNNI here: the CPU has it and ONEDNN_MAX_CPU_ISA does not forbid it
    (forcing the kernels down to AVX2 on a VNNI CPU gives the int8 arithmetic of an AVX2 CPU, so also its limits)."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return getattr(torch.cpu, "_is_vnni_supported", lambda: False)() and limit not in NO_VNNI_ISAS


def _defaults_of(engine: str) -> str:
    """Whose default observers to use. oneDNN's use all 8 bits of the activations, which can saturate the
    16-bit intermediate sums of AVX2 int8 kernels on CPUs without VNNI; x86's use 7 (reduce_range=True)."""
    return BACKEND if engine == "onednn" and not onednn_has_vnni() else engine


@contextmanager
def observer_notice_hidden():
    """Build observers without torch's notice that `reduce_range` "will be deprecated": x86's own default
    observers set it, so the notice tells a learner nothing they can act on. Only that warning is hidden."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Please use quant_min and quant_max", category=UserWarning)
        yield


# int8 weights, symmetric: {(per_channel, qat): observer (post-training) or fake-quant module (QAT)}
_WEIGHTS = {(True, False): tq.default_per_channel_weight_observer, (False, False): tq.default_weight_observer,
            (True, True): tq.default_fused_per_channel_wt_fake_quant, (False, True): tq.default_fused_wt_fake_quant}


def qconfig_mapping(per_channel: bool = True, engine: str = BACKEND, *, qat: bool = False) -> tq.QConfigMapping:
    """The engine's default activation observers (uint8, histograms; fake-quant for qat=True) and symmetric
    int8 weights, one scale per output channel or per layer. For x86 and oneDNN with per_channel=True this is
    exactly torch's default mapping; qnnpack's default has per-layer weights, so per_channel swaps them."""
    check_flag(per_channel, "per_channel")
    check_flag(qat, "qat")
    if not isinstance(engine, str) or engine not in ENGINES[1:]:
        raise ValueError(f"engine must be one of {', '.join(ENGINES[1:])}, got {engine!r:.60}")
    defaults = tq.get_default_qat_qconfig_mapping if qat else tq.get_default_qconfig_mapping
    mapping = defaults(_defaults_of(engine))
    activation = mapping.global_qconfig.activation
    return mapping.set_global(tq.QConfig(activation=activation, weight=_WEIGHTS[per_channel, qat]))
