"""Data-driven scores of attention heads: the Taylor (gradient) score of each head's output, and its attention entropy.

Taylor (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"; Molchanov et al. 2019): multiply head h's
output, its head_dim columns of the input to `proj`, by a gate g_h = 1. Removing the head sets g_h to 0, so
|dL/dg_h| (one backward pass for all heads) is the first-order estimate of what `head_ablation` measures with one
evaluation per head; it equals |sum over tokens of head output * dL/d(head output)|.
Entropy: -sum_k p_k log p_k of a head's attention probabilities over the keys, averaged over queries; near 0 for a
head that looks at one token, log(tokens) for one that averages them all. Both return `head_scores`' format,
{attention layer name: (heads,) tensor}, so `select_heads` takes them as they are. See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

from itertools import islice

import torch
from torch import nn

from minprune.attention_blocks import SelfAttention
from minprune.batches import eval_mode_kept, input_dtype, peek_fitting_batches, to_model_input
from minprune.devices import model_device, resolve, same
from minprune.masked import copy_model
from minprune.train import cross_entropy_loss
from minprune.transformers.heads import attention_layers
from minprune.validate import float_model, positive_int


def _checked_batches(model: nn.Module, loader, max_batches: int) -> tuple[dict[str, SelfAttention], list]:
    """(the attention layers, the first `max_batches` batches of `loader`), every argument checked before anything
    runs: the model has SelfAttention layers, max_batches is a positive int, the loader's first batch fits."""
    layers = attention_layers(model)
    positive_int(max_batches, "max_batches")
    _, batches = peek_fitting_batches(model, loader)
    return layers, list(islice(iter(batches), max_batches))


def _on_device(model: nn.Module, device) -> tuple[nn.Module, torch.device]:
    """(the model to run, where): `model` itself when it already sits on `device`, else a copy moved there, so the
    caller's model never moves."""
    dev = resolve(model, device)
    return (model if same(model_device(model), dev) else copy_model(model).to(dev)), dev


def _gate_hook(gate: torch.Tensor, head_dim: int):
    """A forward pre-hook for `proj` that multiplies head h's columns of its input by gate[h]."""
    def hook(_module, args):
        x = args[0]  # (batch, tokens, heads * head_dim): the heads' outputs side by side
        return (x * gate.repeat_interleave(head_dim).to(x.dtype), *args[1:])
    return hook


def head_taylor_scores(model: nn.Module, loader, *, max_batches: int = 4, device=None) -> dict[str, torch.Tensor]:
    """{attention layer name: (heads,)}: |d loss / d gate| of a gate of ones on each head's output, averaged over
    the first `max_batches` batches (one gradient per batch, of its mean cross-entropy, `mp.evaluate`'s loss).

    Higher = keep (`select_heads` removes the lowest); a head whose proj columns are zero scores exactly 0. Opposite
    gradients of examples cancel inside a batch, so small batches (Michel et al. take |.| per example) usually rank
    heads closer to `head_ablation`. Only the gates get gradients: the model's parameters, .grad, requires_grad,
    train/eval flags and hooks stay as they were; it runs on `device` (default `mp.device()`), on a copy if it sits
    elsewhere. Float16 and bfloat16 models are refused (call model.float() first).
    """
    float_model(model, "head_taylor_scores")
    layers, batches = _checked_batches(model, loader, max_batches)
    work, dev = _on_device(model, device)
    modules, dtype = dict(work.named_modules()), input_dtype(work)
    gates = {name: torch.ones(attn.heads, dtype=attn.proj.weight.dtype, device=dev, requires_grad=True)
             for name, attn in layers.items()}
    sums = {name: torch.zeros_like(g) for name, g in gates.items()}
    handles = [modules[name].proj.register_forward_pre_hook(_gate_hook(gates[name], attn.head_dim))
               for name, attn in layers.items()]
    try:
        with eval_mode_kept(work), torch.enable_grad():
            for x, y in batches:
                loss, _ = cross_entropy_loss(work, to_model_input(x, dev, dtype), y.to(dev))
                grads = torch.autograd.grad(loss, list(gates.values()))  # fills no parameter's .grad
                for name, g in zip(gates, grads):
                    sums[name] += g.abs()
    finally:
        for handle in handles:
            handle.remove()
    return {name: (s / len(batches)).cpu() for name, s in sums.items()}


def _entropy_hook(name: str, sums: dict, counts: dict):
    """A forward hook for a SelfAttention that adds the entropy of each of its queries' attention, per head."""
    def hook(module, args, _out):
        _, probs = module.attend(args[0])  # (batch, heads, queries, keys); 0 for a key a causal query cannot see
        per_query = torch.special.entr(probs.float()).sum(-1)  # -sum p log p, with 0 log 0 = 0
        sums[name] = sums.get(name, 0) + per_query.double().sum((0, 2))
        counts[name] = counts.get(name, 0) + probs.shape[0] * probs.shape[2]
    return hook


@torch.no_grad()
def head_entropy(model: nn.Module, loader, *, max_batches: int = 4, device=None) -> dict[str, torch.Tensor]:
    """{attention layer name: (heads,)}: the entropy, in nats, of each head's attention over the keys, averaged
    over every query of every example of the first `max_batches` batches (float32 tensors on the CPU).

    It is the entropy itself: ~0 for a focused head, log(tokens) for uniform attention (a causal query i sees
    i + 1 keys). `select_heads` keeps the highest scores, so `select_heads(ent, f)` removes the most focused heads;
    to remove the most diffuse (high-entropy) heads first, the usual heuristic, rank the negated entropy:
    `select_heads({name: -e for name, e in ent.items()}, f)`. The model is left as it was (`head_taylor_scores`).
    """
    layers, batches = _checked_batches(model, loader, max_batches)
    work, dev = _on_device(model, device)
    modules, dtype, sums, counts = dict(work.named_modules()), input_dtype(work), {}, {}
    handles = [modules[name].register_forward_hook(_entropy_hook(name, sums, counts)) for name in layers]
    try:
        with eval_mode_kept(work):
            for x, _ in batches:
                work(to_model_input(x, dev, dtype))
    finally:
        for handle in handles:
            handle.remove()
    unused = [name for name in layers if name not in counts]
    if unused:
        raise ValueError(f"the attention layers {unused} did not run on the loader's batches, so they have no entropy")
    return {name: (sums[name] / counts[name]).float().cpu() for name in layers}
