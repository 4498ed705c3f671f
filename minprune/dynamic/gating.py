"""Input-dependent (runtime) pruning: neuron gating for an MLP, trained with a sparsity penalty.

A cheap gate (two small Linear layers, rank r) looks at a hidden layer's input and decides, per example,
which of the layer's neurons to compute. Training uses a straight-through estimator (hard 0/1 gates
forward, sigmoid gradients backward) and a penalty on the fraction of open gates; at inference the closed
neurons are never computed (`sparse_forward`) and `gated_macs` counts what was really spent, gates included.
The static baseline of the same average cost is a narrower MLP holding the largest neurons (`narrow_mlp`).
New models (`GatedMLP`, `narrow_mlp`) are built where the MLP they come from sits; train them with `mp.fit`.
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from minprune.models import LeNet300100
from minprune.validate import finite_number, float_model, model_arg, positive_int


class NeuronGate(nn.Module):
    """x (batch, in) -> gates (batch, out) in {0, 1}; straight-through gradients while training."""

    def __init__(self, n_in: int, n_out: int, rank: int = 16):
        super().__init__()
        self.down = nn.Linear(n_in, rank)
        self.up = nn.Linear(rank, n_out)
        nn.init.constant_(self.up.bias, 1.0)  # start with (almost) every gate open

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft = torch.sigmoid(self.up(torch.relu(self.down(x))))
        hard = (soft > 0.5).to(soft.dtype)
        return hard + soft - soft.detach(), soft  # forward value: hard; gradient: that of soft


def _mlp_linears(model: nn.Module) -> list[nn.Linear]:
    model_arg(model)
    if not isinstance(model, LeNet300100):
        raise TypeError(f"neuron gating needs a LeNet300100-style MLP, got {type(model).__name__}")
    return [m for m in model.layers if isinstance(m, nn.Linear)]


class GatedMLP(nn.Module):
    """A copy of an MLP whose hidden neurons are switched on or off per input by `NeuronGate`s."""

    def __init__(self, model: nn.Module, rank: int = 16):
        super().__init__()
        positive_int(rank, "rank")
        linears = _mlp_linears(model)
        float_model(model, "GatedMLP")  # it is trained (straight-through gradients): float32 or float64
        self.input_shape = model.input_shape
        self.linears = nn.ModuleList(copy.deepcopy(linears))  # a copy: `model` itself is left untouched
        self.gates = nn.ModuleList(NeuronGate(m.in_features, m.out_features, rank) for m in linears[:-1])
        self.gates.to(linears[0].weight.device)  # drawn on the CPU (the same gates everywhere), run beside the MLP
        self.last_density = torch.tensor(1.0)  # mean soft gate of the last batch (for the penalty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(x, 1)
        densities = []
        for linear, gate in zip(self.linears, self.gates):
            g, soft = gate(h)
            h = torch.relu(linear(h)) * g
            densities.append(soft.mean())
        self.last_density = torch.stack(densities).mean()
        return self.linears[-1](h)

    @torch.no_grad()
    def open_gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Boolean gates (batch, width) of every hidden layer for the inputs x."""
        h, out = torch.flatten(x, 1), []
        for linear, gate in zip(self.linears, self.gates):
            g = gate(h)[0] > 0.5
            h = torch.relu(linear(h)) * g
            out.append(g)
        return out


def gating_loss(penalty: float):
    """loss_fn for `mp.fit`: cross entropy + penalty * (mean fraction of open gates)."""
    try:
        finite_number(penalty, "penalty", low=0)
    except ValueError:
        raise ValueError(f"penalty must be >= 0 (a finite number), got {penalty!r}") from None

    def loss_fn(model: GatedMLP, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        return F.cross_entropy(logits, y) + penalty * model.last_density, logits

    return loss_fn


def _check_gated(model, x) -> None:
    """Raise TypeError unless `model` is a GatedMLP and `x` a tensor of inputs."""
    if not isinstance(model, GatedMLP):
        raise TypeError(f"model must be a GatedMLP (GatedMLP(mlp)), got {type(model).__name__}")
    model_arg(model)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of inputs (batch, ...), got {type(x).__name__}")


@torch.no_grad()
def sparse_forward(model: GatedMLP, x: torch.Tensor) -> torch.Tensor:
    """One example at a time, computing only the rows of each weight whose gate is open (and only the
    columns whose input neuron is alive). Returns the same logits as the eval-mode forward."""
    _check_gated(model, x)
    outputs = []
    for example in torch.flatten(x, 1):
        h, alive = example, torch.arange(example.numel(), device=x.device)
        for linear, gate in zip(model.linears, model.gates):
            full_in = torch.zeros(linear.in_features, device=x.device).index_copy_(0, alive, h)
            rows = torch.nonzero(gate(full_in[None])[0][0] > 0.5).flatten()  # open neurons of this layer
            h = torch.relu(linear.weight[rows][:, alive] @ h + linear.bias[rows])
            alive = rows
        last = model.linears[-1]
        outputs.append(last.weight[:, alive] @ h + last.bias)
    return torch.stack(outputs)


@torch.no_grad()
def gated_macs(model: GatedMLP, x: torch.Tensor) -> torch.Tensor:
    """Multiply-accumulates spent on each example (batch,), counting gates and skipped neurons honestly."""
    _check_gated(model, x)
    gates = model.open_gates(x)
    n_in = torch.full((len(x),), model.linears[0].in_features, device=x.device)
    total = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for gate, g in zip(model.gates, gates):
        n_out = g.sum(1)
        total += n_in * gate.down.out_features + gate.up.in_features * gate.up.out_features  # the gate itself
        total += n_in * n_out
        n_in = n_out
    return total + n_in * model.linears[-1].out_features


def dense_macs(model: nn.Module) -> int:
    """MACs of the plain MLP (for the ratio against gating)."""
    linears = _mlp_linears(model)
    return sum(m.in_features * m.out_features for m in linears)


def matching_widths(model: nn.Module, macs: float) -> tuple[int, ...]:
    """Hidden widths (same fraction f of every layer) whose dense MLP costs about `macs`."""
    linears = _mlp_linears(model)
    finite_number(macs, "macs", low=0, low_open=True)
    if len(linears) != 3:
        raise ValueError("matching_widths expects an MLP with two hidden layers")
    n_in, w1, w2, n_out = linears[0].in_features, linears[0].out_features, linears[1].out_features, \
        linears[2].out_features
    a, b = w1 * w2, n_in * w1 + w2 * n_out  # cost(f) = a f^2 + b f
    f = (-b + math.sqrt(b * b + 4 * a * macs)) / (2 * a)
    return max(1, round(f * w1)), max(1, round(f * w2))


@torch.no_grad()
def narrow_mlp(model: nn.Module, widths: tuple[int, ...]) -> LeNet300100:
    """Static neuron pruning: a new, narrower MLP keeping the neurons with the largest incoming L2 norm.

    Works in the model's dtype (float16 and bfloat16 included): the new MLP has the dtype and device of `model`.
    """
    linears = _mlp_linears(model)
    if (not isinstance(widths, (tuple, list)) or len(widths) != len(linears) - 1
            or any(isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= m.out_features
                   for w, m in zip(widths, linears))):
        raise ValueError(f"widths must give 1..width neurons for each of the {len(linears) - 1} hidden layers, "
                         f"got {widths}")
    small = LeNet300100(model.input_shape, linears[-1].out_features, hidden=tuple(widths))
    keep_in = torch.arange(linears[0].in_features)
    for i, (src, dst) in enumerate(zip(linears, _mlp_linears(small))):
        keep_out = torch.arange(src.out_features) if i == len(widths) else \
            torch.sort(torch.topk(src.weight.norm(dim=1), widths[i]).indices).values
        dst.weight.copy_(src.weight[keep_out][:, keep_in])
        dst.bias.copy_(src.bias[keep_out])
        keep_in = keep_out
    return small.to(linears[0].weight.device, linears[0].weight.dtype)
