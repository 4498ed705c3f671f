"""The modules an int8 model is made of: `Int8Model`, the wrapper every int8 flow returns, `Int8WeightLinear`, a
Linear layer with int8 weights and float arithmetic, and `int8_weights`, which says which weights really are int8.

The flows that build them (dynamic, static PTQ, QAT) are `int8.py`; the engine that runs them is `engines.py`.

Small Linear layers: under oneDNN an int8 Linear call of a pruned LeNet-5 (200x40 or smaller) cost more than
the float call it replaced. `static_int8(..., linear_weights_only=True)` keeps int8 convolutions but gives the
Linear layers int8 weights with float arithmetic (`Int8WeightLinear`). See notebooks/08_quantization.ipynb
and notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from minprune.models import check_input_shape
from minprune.quantization.engines import BACKEND, using_engine
from minprune.quantization.uniform import dequantize, quant_params, quantize
from minprune.train import check_model
from minprune.validate import input_shape_arg, model_arg


@contextmanager
def _no_determinism_alerts():
    """Quantized CPU kernels resize their outputs with an op that torch flags as 'not deterministic' when
    `seed_everything` has switched deterministic algorithms on; the results are reproducible on CPU, so the
    flag is switched off during the int8 forward pass only, and restored afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class Int8Model(nn.Module):
    """A quantized model plus what the rest of minprune expects: `input_shape`, input checks, `method`.

    `engine` is the quantized engine its weights were packed for (it runs under it); `recipe` holds what
    `save_int8`/`load_int8` need to rebuild it: the float model's description, method, per_channel and the
    engine it was quantized with (a file loaded where that engine is missing runs under another one).
    See notebooks/08_quantization.ipynb.
    """

    def __init__(self, quantized: nn.Module, input_shape, method: str, engine: str = BACKEND, recipe=None):
        model_arg(quantized, "quantized")
        input_shape = input_shape_arg(input_shape)
        if not isinstance(method, str) or not isinstance(engine, str):
            raise TypeError(f"method and engine must be strings (e.g. 'static', 'x86'), got {method!r:.40}, "
                            f"{engine!r:.40}")
        super().__init__()
        self.quantized = quantized
        self.input_shape = tuple(input_shape)
        self.method = method
        self.engine = engine
        self.recipe = recipe
        self.register_forward_pre_hook(check_input_shape)

    def forward(self, x):
        with _no_determinism_alerts(), using_engine(self.engine):
            return self.quantized(x)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, engine={self.engine!r}, int8 weights={len(int8_weights(self))}"


class Int8WeightLinear(nn.Module):
    """A Linear layer that stores its weight in int8 (symmetric, one float scale per output row) and computes in
    float: the weight is dequantized once, when the layer is built or loaded, into a buffer that is not saved.
    The file holds one byte per weight; the arithmetic runs the float kernel.

    Why: for small layers an int8 kernel call costs more than the float one it replaces (on this kit's CPU the
    int8 Linear layers of a pruned LeNet-5 took 0.11-0.13 ms each, their float versions 0.02-0.07 ms; see
    `profile.layer_latency`). `onnx_int8.int8_weights_onnx` does the same for ONNX files, where ONNX Runtime
    dequantizes the weights once, when the session is created. See notebooks/10_capstone.ipynb.
    """

    def __init__(self, linear: nn.Linear):
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        model_arg(linear, "linear")  # a meta-device layer holds no weights to quantize
        if not bool(torch.isfinite(linear.weight).all()):
            raise ValueError("linear.weight contains NaN or Inf (a diverged weight?); int8 weights need finite values")
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale, zero_point = quant_params(weight, 8, symmetric=True, axis=0)
        self.register_buffer("weight_int8", quantize(weight, scale, zero_point, 8, symmetric=True, axis=0)
                             .to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.register_buffer("weight", self.dequantized(), persistent=False)
        self.register_load_state_dict_post_hook(Int8WeightLinear._refresh)

    @torch.no_grad()
    def _refresh(self, _incompatible_keys) -> None:
        """After load_state_dict: dequantize the loaded int8 weight into the float buffer."""
        self.weight.copy_(self.dequantized())

    def dequantized(self) -> torch.Tensor:
        """The float weight: int8 values times their row's scale."""
        return dequantize(self.weight_int8, self.weight_scale, 0, axis=0)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, float arithmetic"


def int8_weights(model: nn.Module) -> dict[str, torch.dtype]:
    """Name and dtype of every stored int8 weight (quantized tensors, including packed Linear params).

    See notebooks/08_quantization.ipynb.
    """
    check_model(model)
    out = {}
    for name, value in model.state_dict().items():
        values = value if isinstance(value, tuple) else (value,)
        for i, v in enumerate(values):
            if isinstance(v, torch.Tensor) and v.dtype in (torch.qint8, torch.quint8, torch.int8):
                out[f"{name}.{i}" if isinstance(value, tuple) else name] = v.dtype
    return out
