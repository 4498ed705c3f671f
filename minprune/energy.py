"""Energy per inference, estimated from counts: arithmetic plus memory traffic, times energy per operation.

The per-operation energies are Horowitz's (ISSCC 2014, "Computing's energy problem"), 45 nm, 0.9 V:

    32-bit float multiply 3.7 pJ, add 0.9 pJ      8-bit int multiply 0.2 pJ, add 0.03 pJ
    32-bit read from an 8 KB on-chip SRAM 5 pJ    32-bit read from DRAM 640 pJ

The model (every assumption can be changed by an argument):
- only layers with weights (Linear, Conv) cost anything: BatchNorm is folded into the convolution before
  deployment, and ReLU and pooling are fused into the layer before them;
- a MAC is one multiply plus one add at the deployed precision (`bits=32`: float, `bits=8`: int8);
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

from dataclasses import dataclass

import torch
from torch import nn

from .table import Table

MEMORIES = ("dram", "sram")


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per operation in picojoules (pJ); the defaults are Horowitz, ISSCC 2014, 45 nm.

    See notebooks/11_deploy.ipynb.
    """

    fp32_mult: float = 3.7
    fp32_add: float = 0.9
    int8_mult: float = 0.2
    int8_add: float = 0.03
    dram_32bit: float = 640.0
    sram_32bit: float = 5.0  # 8 KB SRAM

    def mac(self, bits: int) -> float:
        """pJ of one multiply-accumulate at 32-bit float or 8-bit int. See notebooks/11_deploy.ipynb."""
        return self.fp32_mult + self.fp32_add if bits == 32 else self.int8_mult + self.int8_add

    def per_byte(self, memory: str) -> float:
        """pJ to move one byte from/to `memory` ('dram' or 'sram'). See notebooks/11_deploy.ipynb."""
        return (self.dram_32bit if memory == "dram" else self.sram_32bit) / 4


HOROWITZ_45NM = EnergyCosts()


def _example_input(model: nn.Module, input_shape) -> torch.Tensor:
    shape = tuple(input_shape or getattr(model, "input_shape", ()))
    if not shape:
        raise ValueError("pass input_shape=(C, H, W) (or (features,)); the model does not record one")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros(1, *shape, device=device)


def _weights_of(module: nn.Module) -> list[torch.Tensor]:
    """The effective weight and bias (a masked `weight` is weight_orig * weight_mask)."""
    return [t for t in (getattr(module, "weight", None), getattr(module, "bias", None)) if t is not None]


@torch.no_grad()
def layer_counts(model: nn.Module, input_shape=None) -> list[dict]:
    """Per Linear/Conv layer, for one example: MACs (dense and nonzero-only), weights, activations.

    Returns [{"layer", "macs", "nonzero_macs", "weights", "nonzero_weights", "activations"}] where
    `weights` counts weight and bias values and `activations` counts input plus output values.
    See notebooks/11_deploy.ipynb.
    """
    x = _example_input(model, input_shape)
    rows, handles = [], []

    def record(name):
        def hook(module, args, out):
            W = module.weight  # Linear (out, in); Conv (out, in / groups, kh, kw)
            uses = out.numel() // W.shape[0]  # how often each weight is used: output positions per channel
            params = _weights_of(module)
            rows.append({"layer": name, "macs": W.numel() * uses, "nonzero_macs": int(torch.count_nonzero(W)) * uses,
                         "weights": sum(t.numel() for t in params),
                         "nonzero_weights": sum(int(torch.count_nonzero(t)) for t in params),
                         "activations": args[0].numel() + out.numel()})
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not rows:
        raise ValueError("the model has no Linear or Conv layer: nothing to estimate")
    return rows


def _check_options(bits, sparse, weights, activations, index_bits) -> None:
    if bits not in (8, 32):
        raise ValueError(f"bits must be 32 (float) or 8 (int8), got {bits!r}")
    for arg, value in (("weights", weights), ("activations", activations)):
        if value not in MEMORIES:
            raise ValueError(f"{arg} must be one of {MEMORIES}, got {value!r}")
    if not isinstance(sparse, bool):
        raise TypeError(f"sparse must be True or False, got {sparse!r}")
    if not isinstance(index_bits, int) or index_bits < 0:
        raise ValueError(f"index_bits must be a non-negative int, got {index_bits!r}")


def layer_energy(counts: dict, *, bits: int = 32, sparse: bool = False, weights: str = "dram",
                 activations: str = "sram", index_bits: int = 4, costs: EnergyCosts = HOROWITZ_45NM) -> dict:
    """Energy in pJ of one layer from its `layer_counts` row: compute, weight fetch, activation traffic.

    See notebooks/11_deploy.ipynb.
    """
    _check_options(bits, sparse, weights, activations, index_bits)
    nbytes = bits / 8
    if sparse:  # only nonzeros are stored, each with a relative index, and zero products are skipped
        macs, weight_bytes = counts["nonzero_macs"], counts["nonzero_weights"] * (nbytes + index_bits / 8)
    else:
        macs, weight_bytes = counts["macs"], counts["weights"] * nbytes
    return {"compute_pj": macs * costs.mac(bits),
            "weights_pj": weight_bytes * costs.per_byte(weights),
            "activations_pj": counts["activations"] * nbytes * costs.per_byte(activations)}


def estimate_energy(model: nn.Module, input_shape=None, *, bits: int = 32, sparse: bool = False,
                    weights: str = "dram", activations: str = "sram", index_bits: int = 4,
                    costs: EnergyCosts = HOROWITZ_45NM) -> dict:
    """Estimated energy of one inference (batch 1) in microjoules, split into compute and memory.

    bits: deployed precision (32 float, 8 int8); weights / activations: 'dram' or 'sram';
    sparse: hardware that stores only nonzero weights and skips zero products (see the module docstring).
    Returns {"compute_uj", "weights_uj", "activations_uj", "total_uj", "macs", "weight_bytes"}.
    See notebooks/11_deploy.ipynb.
    """
    _check_options(bits, sparse, weights, activations, index_bits)
    options = {"bits": bits, "sparse": sparse, "weights": weights, "activations": activations,
               "index_bits": index_bits, "costs": costs}
    total = {"compute_pj": 0.0, "weights_pj": 0.0, "activations_pj": 0.0}
    macs = weight_bytes = 0
    for counts in layer_counts(model, input_shape):
        for key, value in layer_energy(counts, **options).items():
            total[key] += value
        macs += counts["nonzero_macs" if sparse else "macs"]
        n = counts["nonzero_weights"] if sparse else counts["weights"]
        weight_bytes += n * (bits / 8 + (index_bits / 8 if sparse else 0))
    out = {key.replace("_pj", "_uj"): value / 1e6 for key, value in total.items()}
    out["total_uj"] = sum(out.values())
    return {**out, "macs": macs, "weight_bytes": weight_bytes}


def energy_table(model: nn.Module, input_shape=None, **options) -> Table:
    """A Table with one row per layer: MACs, weights, and energy (nJ) by compute / weights / activations.

    options as in `estimate_energy`. See notebooks/11_deploy.ipynb.
    """
    rows = []
    for counts in layer_counts(model, input_shape):
        e = layer_energy(counts, **options)
        rows.append({"layer": counts["layer"], "MACs": counts["macs"], "weights": counts["weights"],
                     "nonzeros": counts["nonzero_weights"], "compute nJ": e["compute_pj"] / 1e3,
                     "weights nJ": e["weights_pj"] / 1e3, "activations nJ": e["activations_pj"] / 1e3})
    return Table(rows, title="Estimated energy per inference (Horowitz 45 nm)")
