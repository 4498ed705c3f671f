"""Dynamic sparse training at constant sparsity: SET and RigL.

SET (Mocanu et al. 2018) drops the smallest-magnitude weights and regrows as many at random;
RigL (Evci et al. 2020) regrows where the dense gradient is largest. The drop fraction decays with a cosine
to zero at `end`, after which the connectivity is frozen. Per-layer sparsities are uniform, ERK
(Erdos-Renyi-Kernel: density proportional to (sum of dims) / (product of dims)) or ER (the same over the
(out, in) channel dims only, ignoring the kernel: Evci et al.'s `include_kernel=False`, which keeps small
convolutions dense). Options that help at short budgets: `rescale_init` (the kept initial weights are divided
by sqrt(layer density), so each unit's pre-activation variance is the dense one: the "sparse init" of
Evci et al. 2022) and `accumulate` (RigL regrows by the gradient summed over the whole update interval
rather than one mini-batch's).
Masked weights are zeroed in place after every optimizer step (not reparametrised), so `.grad` at a
pruned position is the dense gradient RigL needs. Random draws come from a seeded CPU generator and the masks
follow the weights to whatever device `fit` moved the model to, so every device gets the same masks.
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from minprune.unstructured.masks import n_pruned, prunable_names
from minprune.validate import finite_number, float_model, model_arg, non_negative_int, positive_int


def _fraction(value, name: str, high_open: bool) -> float:
    """`value` as a float in [0, 1) (or [0, 1]); else ValueError in the kit's wording, NaN, inf, bools refused."""
    try:
        return finite_number(value, name, low=0, high=1, high_open=high_open)
    except ValueError:
        raise ValueError(f"{name} must be in [0, 1{')' if high_open else ']'}, got {value!r}") from None

METHODS = ("set", "rigl")
DISTRIBUTIONS = ("uniform", "erk", "er")


def erk_sparsities(shapes: dict[str, tuple[int, ...]], sparsity: float, *, include_kernel: bool = True
                   ) -> dict[str, float]:
    """Per-layer sparsities whose total is `sparsity`, with density proportional to sum(shape) / prod(shape).

    include_kernel=False (ER) uses only the first two dims (out, in channels) in that ratio.
    Layers that would need a density above 1 are kept dense and the others rescaled (Evci et al. 2020).
    """
    _fraction(sparsity, "sparsity", high_open=True)
    if not isinstance(shapes, dict) or not shapes:
        raise ValueError(f"shapes must be a non-empty {{name: shape}} dict, got {shapes!r:.60}")
    numel = {n: math.prod(s) for n, s in shapes.items()}
    dims = {n: s if include_kernel else s[:2] for n, s in shapes.items()}
    raw = {n: sum(d) / math.prod(d) for n, d in dims.items()}
    dense: set[str] = set()
    while True:
        budget = (1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)
        eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
        too_dense = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not too_dense:
            return {n: 0.0 if n in dense else 1 - eps * raw[n] for n in shapes}
        dense |= too_dense


def layer_sparsities(model: nn.Module, sparsity: float, distribution: str = "erk") -> dict[str, float]:
    """Target sparsity of every prunable weight for the 'uniform', 'erk' or 'er' distribution."""
    model_arg(model)
    _fraction(sparsity, "sparsity", high_open=True)
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    params = dict(model.named_parameters())
    names = prunable_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no prunable layers (Linear or Conv weights)")
    if any(n not in params for n in names):
        raise ValueError("the model already carries pruning masks; call make_permanent(model) first")
    if distribution == "uniform":
        return {n: sparsity for n in names}
    shapes = {n: tuple(params[n].shape) for n in names}
    return erk_sparsities(shapes, sparsity, include_kernel=distribution == "erk")


@dataclass
class SparseConfig:
    """Settings of SET / RigL. `interval`: steps between connectivity updates; `end`: last update step.

    rescale_init: divide the kept initial weights by sqrt(layer density); accumulate: RigL grows by |sum of the
    gradients since the last update| instead of the last mini-batch's gradient.
    """

    sparsity: float = 0.9
    method: str = "rigl"
    distribution: str = "erk"
    drop_fraction: float = 0.3
    interval: int = 50
    end: int = 1000
    seed: int = 0
    rescale_init: bool = False
    accumulate: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (NaN, inf and bools where numbers belong included)."""
        _fraction(self.sparsity, "sparsity", high_open=True)
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.distribution, str) or self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        _fraction(self.drop_fraction, "drop_fraction", high_open=False)
        positive_int(self.interval, "interval")
        positive_int(self.end, "end")
        non_negative_int(self.seed, "seed")
        for name in ("rescale_init", "accumulate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def cosine_drop_fraction(step: int, initial: float, end: int) -> float:
    """alpha_t = alpha / 2 * (1 + cos(pi t / end)), and 0 from `end` on."""
    non_negative_int(step, "step")
    _fraction(initial, "initial", high_open=False)
    positive_int(end, "end")
    return 0.0 if step >= end else initial / 2 * (1 + math.cos(math.pi * step / end))


def random_mask(shape, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """A mask with exactly n_pruned(numel, sparsity) False entries at random positions."""
    numel = math.prod(shape)
    order = torch.randperm(numel, generator=generator)
    mask = torch.ones(numel, dtype=torch.bool)
    mask[order[: n_pruned(numel, sparsity)]] = False
    return mask.view(shape)


def drop_and_grow(W: torch.Tensor, mask: torch.Tensor, grow_scores: torch.Tensor, fraction: float):
    """One update of one layer: returns (new mask, number dropped, number regrown); counts are equal.

    Drops the `fraction` of active weights with the smallest |W|; regrows as many among the positions that
    were inactive *before* this update (so a just-dropped weight is never regrown), largest score first.
    """
    _fraction(fraction, "fraction", high_open=False)
    for name, t in (("W", W), ("mask", mask), ("grow_scores", grow_scores)):
        if not isinstance(t, torch.Tensor) or t.shape != W.shape:
            raise ValueError(f"W, mask and grow_scores must be tensors of one shape; {name} is "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    active = mask.flatten()
    k = min(int(fraction * int(active.sum())), int((~active).sum()))
    if k == 0:
        return mask.clone(), 0, 0
    magnitude = W.detach().abs().flatten().masked_fill(~active, math.inf)
    dropped = torch.topk(magnitude, k, largest=False).indices
    growable = grow_scores.flatten().to(torch.float32).masked_fill(active, -math.inf)  # before-update inactive
    grown = torch.topk(growable, k).indices
    new = active.clone()
    new[dropped] = False
    new[grown] = True
    return new.view_as(mask), k, k


class DynamicSparseTrainer:
    """A training callback that keeps `model` at constant sparsity while moving its connections (SET / RigL).

    Use: `dst = DynamicSparseTrainer(model, SparseConfig(...)); mp.fit(model, loader, callbacks=[dst])`.
    Records `updates` (one row per layer and update: step, layer, pruned, regrown, sparsity) and, with
    `keep_masks=True`, a copy of the masks at every update in `snapshots` {step: masks}. The model must be float32
    or float64 (it is trained): float16 and bfloat16 are refused when the trainer is built, before any mask is
    applied. See notebooks/07_dynamic_pruning.ipynb.
    """

    def __init__(self, model: nn.Module, config: SparseConfig | None = None, *, keep_masks: bool = False):
        float_model(model, "DynamicSparseTrainer")  # it trains (RigL reads gradients): float16/bfloat16 refused now
        if config is not None and not isinstance(config, SparseConfig):
            raise TypeError(f"config must be a SparseConfig(sparsity=, method=, ...), got {type(config).__name__}")
        if not isinstance(keep_masks, bool):
            raise TypeError(f"keep_masks must be True or False, got {keep_masks!r}")
        self.config = config or SparseConfig()
        self.config.validate()
        targets = layer_sparsities(model, self.config.sparsity, self.config.distribution)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        params = dict(model.named_parameters())
        self.masks = {n: random_mask(params[n].shape, s, self.generator).to(params[n].device)
                      for n, s in targets.items()}
        self.updates: list[dict] = []
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.keep_masks = keep_masks
        self.grad_sums: dict[str, torch.Tensor] = {}
        if self.config.rescale_init:
            self.rescale(model)
        self.apply(model)
        if keep_masks:
            self.snapshots[0] = {n: m.clone().cpu() for n, m in self.masks.items()}

    def _follow(self, params: dict) -> None:
        """Move each mask to its weight's device (`fit` may have moved the model since the masks were made)."""
        for name, mask in self.masks.items():
            if mask.device != params[name].device:
                self.masks[name] = mask.to(params[name].device)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero every masked weight in place."""
        params = dict(model.named_parameters())
        self._follow(params)
        for name, mask in self.masks.items():
            params[name].mul_(mask)

    @torch.no_grad()
    def rescale(self, model: nn.Module) -> None:
        """Divide every layer's weights by sqrt(its mask density): the dense pre-activation variance."""
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            params[name].div_(math.sqrt(max(float(mask.float().mean()), 1e-12)))

    def on_step_end(self, model: nn.Module, step: int) -> None:
        non_negative_int(step, "step")
        cfg = self.config
        if cfg.accumulate and cfg.method == "rigl" and step < cfg.end:
            self._accumulate(model)
        if step % cfg.interval == 0 and step < cfg.end:
            self.update(model, step)
        self.apply(model)

    @torch.no_grad()
    def _accumulate(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name in self.masks:
            grad = params[name].grad
            if grad is not None:
                total = self.grad_sums.get(name)
                self.grad_sums[name] = grad.clone() if total is None else total.add_(grad)

    def _grow_scores(self, name: str, p: nn.Parameter) -> torch.Tensor:
        if self.config.method == "set":
            return torch.rand(p.shape, generator=self.generator).to(p.device)
        if name in self.grad_sums:
            return self.grad_sums.pop(name).abs()
        if p.grad is None:
            raise RuntimeError("RigL needs gradients: call update() after loss.backward(), before zero_grad()")
        return p.grad.abs()

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Drop and regrow in every layer (the fraction decays with a cosine), then zero the dropped weights."""
        model_arg(model)
        non_negative_int(step, "step")
        fraction = cosine_drop_fraction(step, self.config.drop_fraction, self.config.end)
        params = dict(model.named_parameters())
        self._follow(params)
        for name, mask in self.masks.items():
            p = params[name]
            new, n_drop, n_grow = drop_and_grow(p, mask, self._grow_scores(name, p), fraction)
            p.mul_(new)  # dropped weights become 0; regrown ones start from 0 (RigL)
            self.masks[name] = new
            self.updates.append({"step": step, "layer": name, "pruned": n_drop, "regrown": n_grow,
                                 "sparsity": 1 - int(new.sum()) / new.numel()})
        if self.keep_masks:
            self.snapshots[step] = {n: m.clone().cpu() for n, m in self.masks.items()}
