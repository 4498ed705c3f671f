"""Chapter 11 (deployment and energy): the exercises' designed cases and hints."""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.energy import HOROWITZ_45NM, estimate_energy

# Exercise 11.1: the energy of one Linear layer -----------------------------------------------------------------

def linear_energy(layer: nn.Linear, input_shape: tuple) -> float:
    """`estimate_energy(layer, input_shape)["total_uj"]`: microjoules of one fp32 inference of a Linear layer.

    input_shape: the shape of one example, (in,) or (tokens, in); the layer runs on every token.
    See notebooks/11_deploy.ipynb.
    """
    return estimate_energy(layer, input_shape)["total_uj"]


def _energy_cases() -> list[tuple]:
    """Small layers whose activations cost as much as their weights, with and without bias, and inputs with a
    token axis (the weights are fetched once, but used once per token)."""
    with torch.random.fork_rng(devices=[]):  # seeded layers, and the caller's random stream left as it was
        torch.manual_seed(11)
        return [(nn.Linear(5, 4, bias=False), (5,)), (nn.Linear(3, 2), (50, 3)), (nn.Linear(6, 3), (6,)),
                (nn.Linear(4, 7, bias=False), (3, 4)), (nn.Linear(2, 3), (2, 5, 2)), (nn.Linear(8, 1), (8,))]


def _parts(layer: nn.Linear, input_shape: tuple) -> dict[str, float]:
    """The estimate's pieces in uJ, and the same pieces as typical mistakes compute them."""
    costs, tokens = HOROWITZ_45NM, 1
    for size in input_shape[:-1]:
        tokens *= size
    n_out, n_in = layer.weight.shape
    bias = 0 if layer.bias is None else n_out
    dram, sram = costs.per_byte("dram") * 4, costs.per_byte("sram") * 4  # pJ per 4-byte value
    mac = costs.mac(32)
    return {"macs": tokens * n_in * n_out * mac / 1e6, "weights": n_in * n_out * dram / 1e6,
            "bias": bias * dram / 1e6, "activations": tokens * (n_in + n_out) * sram / 1e6,
            "one_token_macs": n_in * n_out * mac / 1e6, "one_token_activations": (n_in + n_out) * sram / 1e6,
            "inputs_only": tokens * n_in * sram / 1e6, "multiply_only": tokens * n_in * n_out * costs.fp32_mult / 1e6}


def _close(got, value) -> bool:
    return isinstance(got, (int, float)) and abs(got - value) <= 1e-9 * max(1.0, abs(value))


def _energy_number(got):
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        return float(got)
    return got


def _bias_missing(case, expected, got):
    layer, _ = case
    if isinstance(got, AttributeError) and layer.bias is None:
        return ("this layer was built with bias=False, so layer.bias is None: count the bias values only when "
                "the layer has a bias")
    p, got = _parts(*case), _energy_number(got)
    if layer.bias is not None and _close(got, expected - p["bias"]):
        return "the bias is a weight too: its out values are fetched from DRAM like the weight matrix"
    return None


def _one_token(case, expected, got):
    layer, input_shape = case
    p, got = _parts(*case), _energy_number(got)
    if len(input_shape) > 1 and (_close(got, expected - p["macs"] + p["one_token_macs"])
                                 or _close(got, expected - p["macs"] - p["activations"] + p["one_token_macs"]
                                           + p["one_token_activations"])):
        return (f"an example of shape {tuple(input_shape)} has several tokens and the layer runs on each of them: "
                "the MACs and the activations grow with the tokens, the weights are fetched once")
    return None


def _units(case, expected, got):
    got = _energy_number(got)
    if not isinstance(got, (int, float)):
        return None
    for factor, unit in ((1e6, "picojoules"), (1e3, "nanojoules"), (1e-3, "millijoules")):
        if _close(got, expected * factor):
            return f"that is the energy in {unit}: return microjoules (1 uJ = 1,000,000 pJ)"
    return None


def _memory_bytes(case, expected, got):
    p, got = _parts(*case), _energy_number(got)
    memory = p["weights"] + p["bias"]
    if _close(got, expected + 3 * memory) or _close(got, expected - 0.75 * memory):
        return ("640 pJ is the energy of one 32-bit read from DRAM, i.e. of one fp32 value (4 bytes): "
                "check how many picojoules a weight costs")
    if _close(got, expected + 3 * p["activations"]) or _close(got, expected - 0.75 * p["activations"]):
        return ("5 pJ is one 32-bit (one fp32 value) read or write in SRAM: check how many picojoules an "
                "activation costs")
    return None


def _activations_wrong(case, expected, got):
    p, got = _parts(*case), _energy_number(got)
    if _close(got, expected - p["activations"]):
        return "the activations count too: the layer reads its input and writes its output in SRAM"
    if _close(got, expected - p["activations"] + p["inputs_only"]):
        return "the layer reads its input *and* writes its output: both are activation traffic in SRAM"
    if _close(got, expected - p["macs"] + p["multiply_only"]):
        return "a multiply-accumulate is a multiply (3.7 pJ) plus an add (0.9 pJ)"
    return None


exercise("11.1", "energy (uJ) of one fp32 inference of a Linear layer", linear_energy, _energy_cases,
         hint="MACs at 3.7 + 0.9 pJ, every weight and bias value from DRAM (640 pJ), every input and output value "
              "in SRAM (5 pJ), in microjoules",
         diagnoses=(_bias_missing, _units, _one_token, _memory_bytes, _activations_wrong),
         atol=0.0, rtol=1e-9, dtype_strict=False)
