"""Energy per inference, estimated from counts: arithmetic plus memory traffic, times energy per operation.

The per-operation energies are Horowitz's (ISSCC 2014, "Computing's energy problem"), 45 nm, 0.9 V:

    32-bit float multiply 3.7 pJ, add 0.9 pJ      8-bit int multiply 0.2 pJ, add 0.03 pJ
    32-bit read from an 8 KB on-chip SRAM 5 pJ    32-bit read from DRAM 640 pJ

The model (every assumption is a field of `EnergyOptions`, every energy one of `EnergyCosts`):
- only layers with weights (Linear, Conv) and attention's two products (q k^T, probs v) cost anything: BatchNorm
  is folded into the convolution, and ReLU, pooling, softmax and LayerNorm are fused into the layer before them;
- a MAC is one multiply plus one add at the layer's precision (32: float, 8: int8). Each layer has its own:
  int8 layers of a PyTorch int8 model count at 8 bits, float layers at 32 (a mixed model mixes them);
  `EnergyOptions(bits=8)` or `bits={"classifier.1": 8}` sets it for all or for the named layers, and
  `weight_bits` the same for the stored weights alone (int8 weights computed in float: `weight_bits=8`, `bits=32`);
- every weight and bias is fetched once per inference (batch 1: no reuse across examples) from `weights`
  memory ("dram" by default: a model of 250 KB does not fit an 8 KB SRAM);
- each layer reads its input and writes its output once, in `activations` memory ("sram" by default);
- a value takes bits/8 bytes; memory energy scales linearly with bytes (640 pJ per 4 bytes of DRAM);
- `sparse=True` models hardware that stores weights in a sparse format (only nonzeros are fetched, each with
  an `index_bits` relative index, 4 bits as in Deep Compression) and skips multiplications by zero (EIE).
  Dense hardware (the default) fetches and multiplies the zeros too.
Deep Compression's argument (Han et al. 2016) is visible in the numbers: a DRAM access costs over a hundred
times a float multiply, so bytes moved, not arithmetic, dominate the energy of small networks.
See notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from minprune.attention_blocks import SelfAttention
from minprune.devices import model_device
from minprune.layers import is_prunable
from minprune.table import Table
from minprune.train import eval_mode
from minprune.validate import float_dtype, input_shape_arg, model_arg, non_negative_int

MEMORIES = ("dram", "sram")
PRECISIONS = (8, 32)


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per operation in picojoules (pJ); the defaults are Horowitz, ISSCC 2014, 45 nm. See notebooks/11."""

    fp32_mult: float = 3.7
    fp32_add: float = 0.9
    int8_mult: float = 0.2
    int8_add: float = 0.03
    dram_32bit: float = 640.0
    sram_32bit: float = 5.0  # 8 KB SRAM

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"EnergyCosts.{f.name} must be a finite number >= 0 (picojoules), got {value!r}")

    def mac(self, bits: int) -> float:
        """pJ of one multiply-accumulate at 32-bit float or 8-bit int. See notebooks/11_deploy.ipynb."""
        return self.fp32_mult + self.fp32_add if bits == 32 else self.int8_mult + self.int8_add

    def per_byte(self, memory: str) -> float:
        """pJ to move one byte from/to `memory` ('dram' or 'sram'). See notebooks/11_deploy.ipynb."""
        return (self.dram_32bit if memory == "dram" else self.sram_32bit) / 4


HOROWITZ_45NM = EnergyCosts()


def _is_quantized(module: nn.Module) -> bool:
    """An int8 Linear/Conv of torch.ao (static or dynamic): its weight() is a method returning a qint8 tensor."""
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))


def _is_counted(module: nn.Module) -> bool:
    """A prunable float layer (`layers.is_prunable`) or a torch.ao int8 Linear/Conv (its weight() a method)."""
    return is_prunable(module) or (_is_quantized(module) and callable(getattr(module, "weight", None)))


def _example_input(model: nn.Module, input_shape) -> torch.Tensor:
    """One example (batch 1) on the model's device: the model's own (`measure.example_batch`; CharGPT's: token ids,
    all 0) if it makes them, else zeros (1, *shape) in its float dtype. Counts depend on shapes only, and zeros draw
    no random numbers (an estimate leaves the random state, and what a notebook computes after it, as it was)."""
    if callable(getattr(model, "example_input", None)):
        from minprune.measure import example_batch  # imported here: measure imports this module
        return example_batch(model, input_shape, 1)
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("pass input_shape=(C, H, W) (or (features,)); the model does not record one")
    return torch.zeros(1, *input_shape_arg(shape), device=model_device(model), dtype=float_dtype(model))


def _weights_of(module: nn.Module) -> list[torch.Tensor]:
    """The effective weight and bias (a masked `weight` is weight_orig * weight_mask; int8 ones dequantized)."""
    if _is_quantized(module):
        return [t.dequantize() if t.is_quantized else t for t in (module.weight(), module.bias()) if t is not None]
    return [t for t in (getattr(module, "weight", None), getattr(module, "bias", None)) if t is not None]


def _layer_row(name: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict:
    """The `layer_counts` row of one Linear/Conv layer that read `x` and wrote `out`."""
    params = _weights_of(module)
    W = params[0]  # Linear (out, in); Conv (out, in / groups, kh, kw)
    uses = out.numel() // W.shape[0]  # how often each weight is used: output positions per channel
    return {"layer": name, "macs": W.numel() * uses, "nonzero_macs": int(torch.count_nonzero(W)) * uses,
            "weights": sum(t.numel() for t in params), "nonzero_weights": sum(int(t.count_nonzero()) for t in params),
            "activations": x.numel() + out.numel(), "bits": 8 if _is_quantized(module) else 32}


def _products_row(name: str, attn: SelfAttention, heads_out: torch.Tensor) -> dict:
    """The row of an attention's products q k^T and probs v from proj's input (batch, tokens, heads * head_dim):
    2 tokens^2 head_dim MACs a head; it reads q, k, v, writes out, and writes and reads the scores once."""
    t = heads_out.shape[-2]
    scores = heads_out.numel() // heads_out.shape[-1] * attn.heads * t
    macs = 2 * heads_out.numel() * t
    return {"layer": f"{name}.products", "macs": macs, "nonzero_macs": macs, "weights": 0, "nonzero_weights": 0,
            "activations": 4 * heads_out.numel() + 2 * scores, "bits": 32}


@torch.no_grad()
def layer_counts(model: nn.Module, input_shape=None) -> list[dict]:
    """Per Linear/Conv layer (float or PyTorch int8), for one example: MACs (dense and nonzero-only), weights,
    activations, its precision; a self-attention adds "<name>.products" (q k^T, probs v: no weights, so the MACs
    are `count_macs`'s).

    Returns [{"layer", "macs", "nonzero_macs", "weights", "nonzero_weights", "activations", "bits"}] where
    `weights` counts weight and bias values, `activations` counts input plus output values and `bits` is 8
    for an int8 layer, 32 for a float one. Any float dtype; a meta-device model (no values to count) is refused.
    See notebooks/11_deploy.ipynb.
    """
    model_arg(model)
    x = _example_input(model, input_shape)
    rows, handles = [], []
    for name, module in model.named_modules():
        if isinstance(module, SelfAttention):  # hooked on proj (also run by `attend`), before proj's own row
            handles.append(module.proj.register_forward_hook(
                lambda m, args, out, name=name, attn=module: rows.append(_products_row(name, attn, args[0]))))
        if _is_counted(module):
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: rows.append(_layer_row(name, m, args[0], out))))
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not rows:
        raise ValueError("the model has no Linear or Conv layer: nothing to estimate")
    return rows


def _check_precision(arg: str, bits, layers: list[str] | None = None) -> None:
    """bits: None (each layer's own), 8 or 32 (every layer), or {layer name: 8 or 32} for some layers."""
    if bits is None:
        return
    values = list(bits.values()) if isinstance(bits, dict) else [bits]
    if any(isinstance(v, bool) or not isinstance(v, int) or v not in PRECISIONS for v in values):
        raise ValueError(f"{arg} must be 32 (float) or 8 (int8), a dict {{layer: 32 or 8}} or None (each layer's "
                         f"own precision), got {bits!r}")
    unknown = sorted(set(bits) - set(layers)) if isinstance(bits, dict) and layers is not None else []
    if unknown:
        raise ValueError(f"{arg} names layers the model does not have: {unknown}; its layers: {layers}")


@dataclass(frozen=True)
class EnergyOptions:
    """The hardware the estimate assumes: precisions, sparse storage, and where weights and activations live.

    bits: precision of each layer's arithmetic and activations: None = the model's own (int8 layers of a
    PyTorch int8 model 8, float layers 32), 8 or 32 for every layer, or {layer name: 8 or 32} for some.
    weight_bits: the same for the stored weights only (default: as `bits`; int8 weights computed in float
    are bits=32, weight_bits=8). sparse: hardware that stores only nonzero weights, each with an `index_bits`
    relative index, and skips zero products. weights / activations: 'dram' or 'sram'.
    See notebooks/11_deploy.ipynb.
    """

    bits: int | dict[str, int] | None = None
    weight_bits: int | dict[str, int] | None = None
    sparse: bool = False
    weights: str = "dram"
    activations: str = "sram"
    index_bits: int = 4

    def __post_init__(self):
        for arg, value in (("weights", self.weights), ("activations", self.activations)):
            if value not in MEMORIES:
                raise ValueError(f"{arg} must be one of {MEMORIES}, got {value!r}")
        if not isinstance(self.sparse, bool):
            raise TypeError(f"sparse must be True or False, got {self.sparse!r}")
        non_negative_int(self.index_bits, "index_bits")
        for arg in ("bits", "weight_bits"):
            value = getattr(self, arg)
            _check_precision(arg, value)  # values here, layer names in `check_layers` once the layers are known
            if isinstance(value, dict):
                object.__setattr__(self, arg, dict(value))  # a copy: later edits of the caller's dict change nothing

    def check_layers(self, layers: list[str]) -> None:
        """ValueError if `bits` or `weight_bits` names a layer not in `layers`. See notebooks/11_deploy.ipynb."""
        for arg in ("bits", "weight_bits"):
            _check_precision(arg, getattr(self, arg), layers)

    def layer_bits(self, counts: dict) -> tuple[int, int]:
        """(compute bits, weight bits) of one `layer_counts` row: an override for it if given, else the layer's
        own precision. See notebooks/11_deploy.ipynb."""
        def pick(choice, default):
            choice = choice.get(counts["layer"]) if isinstance(choice, dict) else choice
            return default if choice is None else choice
        compute = pick(self.bits, counts.get("bits", 32))
        return compute, pick(self.weight_bits, compute)


EACH_LAYER_OWN = EnergyOptions()  # the defaults: each layer's own precision, dense, weights in DRAM


def _check_options(options, costs) -> None:
    if not isinstance(options, EnergyOptions):
        raise TypeError(f"options must be an EnergyOptions, e.g. EnergyOptions(bits=8), got {type(options).__name__}")
    if not isinstance(costs, EnergyCosts):
        raise TypeError(f"costs must be an EnergyCosts, e.g. EnergyCosts(dram_32bit=320.0), got {type(costs).__name__}")


COUNT_KEYS = ("layer", "macs", "nonzero_macs", "weights", "nonzero_weights", "activations")


def _check_counts(counts) -> None:
    """`counts` must be one row of `layer_counts`: a dict with the keys it writes."""
    if not isinstance(counts, dict):
        raise TypeError(f"counts must be one row of layer_counts(model) (a dict), got {type(counts).__name__}")
    missing = [k for k in COUNT_KEYS if k not in counts]
    if missing:
        raise ValueError(f"counts must be one row of layer_counts(model) with keys {list(COUNT_KEYS)}; "
                         f"missing {missing}")


def layer_energy(counts: dict, *, options: EnergyOptions = EACH_LAYER_OWN, costs: EnergyCosts = HOROWITZ_45NM) -> dict:
    """Energy in pJ of one layer from its `layer_counts` row: compute, weight fetch, activation traffic.

    MACs and activations count at the layer's compute precision, weights at its weight precision (see
    `EnergyOptions` for `bits` and `weight_bits`). See notebooks/11_deploy.ipynb.
    """
    _check_options(options, costs)
    _check_counts(counts)
    compute, stored = options.layer_bits(counts)
    if options.sparse:  # only nonzeros are stored, each with a relative index, and zero products are skipped
        macs = counts["nonzero_macs"]
        weight_bytes = counts["nonzero_weights"] * (stored / 8 + options.index_bits / 8)
    else:
        macs, weight_bytes = counts["macs"], counts["weights"] * stored / 8
    return {"compute_pj": macs * costs.mac(compute),
            "weights_pj": weight_bytes * costs.per_byte(options.weights),
            "activations_pj": counts["activations"] * compute / 8 * costs.per_byte(options.activations),
            "weight_bytes": weight_bytes}


def estimate_energy(model: nn.Module, input_shape=None, *, options: EnergyOptions = EACH_LAYER_OWN,
                    costs: EnergyCosts = HOROWITZ_45NM) -> dict:
    """Estimated energy of one inference (batch 1) in microjoules, split into compute and memory.

    options: the hardware assumed (`EnergyOptions`: precisions, sparse storage, memories); the default counts
    each layer at its own precision on dense hardware, weights from DRAM, activations in SRAM.
    Returns {"compute_uj", "weights_uj", "activations_uj", "total_uj", "macs", "weight_bytes"}.
    See notebooks/11_deploy.ipynb.
    """
    _check_options(options, costs)
    rows = layer_counts(model, input_shape)
    options.check_layers([r["layer"] for r in rows])
    total = {"compute_pj": 0.0, "weights_pj": 0.0, "activations_pj": 0.0, "weight_bytes": 0.0}
    macs = 0
    for counts in rows:
        for key, value in layer_energy(counts, options=options, costs=costs).items():
            total[key] += value
        macs += counts["nonzero_macs" if options.sparse else "macs"]
    weight_bytes = total.pop("weight_bytes")
    out = {key.replace("_pj", "_uj"): value / 1e6 for key, value in total.items()}
    out["total_uj"] = sum(out.values())
    return {**out, "macs": macs, "weight_bytes": weight_bytes}


def energy_table(model: nn.Module, input_shape=None, *, options: EnergyOptions = EACH_LAYER_OWN,
                 costs: EnergyCosts = HOROWITZ_45NM) -> Table:
    """A Table with one row per layer: MACs, weights, and energy (nJ) by compute / weights / activations.

    options and costs as in `estimate_energy`. See notebooks/11_deploy.ipynb.
    """
    _check_options(options, costs)
    rows = []
    for counts in layer_counts(model, input_shape):
        e = layer_energy(counts, options=options, costs=costs)
        compute, stored = options.layer_bits(counts)
        rows.append({"layer": counts["layer"], "bits": compute if compute == stored else f"{compute}/w{stored}",
                     "MACs": counts["macs"], "weights": counts["weights"],
                     "nonzeros": counts["nonzero_weights"], "compute nJ": e["compute_pj"] / 1e3,
                     "weights nJ": e["weights_pj"] / 1e3, "activations nJ": e["activations_pj"] / 1e3})
    return Table(rows, title="Estimated energy per inference (Horowitz 45 nm)")
