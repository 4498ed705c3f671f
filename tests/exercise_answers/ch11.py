"""Wrong and right answers to chapter 11's exercises."""

import math

# Exercise 11.1 ---------------------------------------------------------------------------------------------------


def energy_bias_always(layer, input_shape):  # the notebook's first draft: fails on a layer built with bias=False
    n_out, n_in = layer.weight.shape
    weight_values = layer.weight.numel() + layer.bias.numel()
    picojoules = n_in * n_out * (3.7 + 0.9) + weight_values * 640 + (n_in + n_out) * 5
    return picojoules / 1e6


def energy_no_bias(layer, input_shape):
    tokens = math.prod(input_shape[:-1])
    n_out, n_in = layer.weight.shape
    picojoules = tokens * n_in * n_out * (3.7 + 0.9) + layer.weight.numel() * 640 + tokens * (n_in + n_out) * 5
    return picojoules / 1e6


def energy_one_token(layer, input_shape):
    n_out, n_in = layer.weight.shape
    weights = sum(p.numel() for p in layer.parameters())
    return (n_in * n_out * (3.7 + 0.9) + weights * 640 + (n_in + n_out) * 5) / 1e6


def energy_per_byte_640(layer, input_shape):  # 640 pJ per byte instead of per 4-byte value
    tokens = math.prod(input_shape[:-1])
    n_out, n_in = layer.weight.shape
    weights = sum(p.numel() for p in layer.parameters())
    return (tokens * n_in * n_out * 4.6 + weights * 4 * 640 + tokens * (n_in + n_out) * 5) / 1e6


def energy_input_only(layer, input_shape):  # forgets writing the output
    tokens = math.prod(input_shape[:-1])
    n_out, n_in = layer.weight.shape
    weights = sum(p.numel() for p in layer.parameters())
    return (tokens * n_in * n_out * 4.6 + weights * 640 + tokens * n_in * 5) / 1e6


def energy_in_picojoules(layer, input_shape):
    tokens = math.prod(input_shape[:-1])
    n_out, n_in = layer.weight.shape
    weights = sum(p.numel() for p in layer.parameters())
    return tokens * n_in * n_out * 4.6 + weights * 640 + tokens * (n_in + n_out) * 5


def energy_multiply_only(layer, input_shape):
    tokens = math.prod(input_shape[:-1])
    n_out, n_in = layer.weight.shape
    weights = sum(p.numel() for p in layer.parameters())
    return (tokens * n_in * n_out * 3.7 + weights * 640 + tokens * (n_in + n_out) * 5) / 1e6


def energy_by_counting(layer, input_shape):
    """Written differently: per token, from the parameters' sizes, in joules then scaled."""
    pj_mac, pj_dram, pj_sram = 3.7e-12 + 0.9e-12, 640e-12, 5e-12
    tokens = 1
    for size in input_shape[:-1]:
        tokens *= size
    n_out, n_in = layer.out_features, layer.in_features
    joules = sum(p.numel() for p in layer.parameters()) * pj_dram
    for _ in range(tokens):
        joules += n_out * n_in * pj_mac + (n_in + n_out) * pj_sram
    return joules * 1e6


WRONG = {"11.1": [energy_bias_always, energy_no_bias, energy_one_token, energy_per_byte_640, energy_input_only,
                  energy_in_picojoules, energy_multiply_only]}
RIGHT = {"11.1": [energy_by_counting]}
