"""The sections of a pipeline recipe as dataclasses, one per TOML table, with their defaults: what each stage
of the pipeline reads. `recipe.py` turns a TOML file into one and checks it. See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RecipeError(ValueError):
    """A recipe that cannot be run: unreadable TOML, an unknown key, a wrong type or an impossible value."""


@dataclass
class BaseStep:
    """Where the dense model comes from: the cached baseline (`pretrained`) or a fresh training run."""

    arch: str = "lenet5"
    data: str = "mnist-small"
    source: str = "pretrained"  # "pretrained" | "train"
    epochs: int = 5  # only for source = "train"
    seed: int = 0


@dataclass
class PruneStep:
    """What to remove: individual weights (`weight`), whole channels (`structured`), or nothing (`none`)."""

    method: str = "weight"  # "weight" | "structured" | "none"
    score: str = "magnitude"  # weight: magnitude | random | taylor | snip; structured: l1 | l2 | bn | taylor
    sparsity: float = 0.8
    scope: str = "global"  # "global" | "local"
    layers: dict = field(default_factory=dict)  # {layer name: sparsity}: per-layer values that override `sparsity`


@dataclass
class FinetuneStep:
    """Recover accuracy after pruning, optionally taught by the dense model (knowledge distillation)."""

    epochs: int = 2
    lr: float = 1e-3
    distill: bool = True
    temperature: float = 4.0
    alpha: float = 0.9
    max_shift: int = 0  # augmentation: move each training image by up to this many pixels (0: none)
    mixup: float = 0.0  # augmentation: blend training images in pairs, weights from Beta(mixup, mixup) (0: none)


@dataclass
class QuantizeStep:
    """Fewer bits: `int8` (static: int8 weights and activations), `dynamic-int8` (int8 Linear weights),
    `fake` (weights on a `bits`-bit grid, still stored as float) or `none`."""

    method: str = "int8"
    bits: int = 8  # for method = "fake"
    per_channel: bool = True  # for method = "int8": one weight scale per output channel (false: one per layer)
    linear_weights_only: bool = False  # for method = "int8": Linear layers store int8 weights, compute in float


@dataclass
class MeasureStep:
    """How each stage is measured."""

    batch_size: int = 64
    threads: int = 1
    repeats: int = 20  # latency rounds; in each, every stage runs 3 batches in turn


@dataclass
class PipelineConfig:
    """A whole compression pipeline. See notebooks/10_capstone.ipynb."""

    name: str = "pipeline"
    base: BaseStep = field(default_factory=BaseStep)
    prune: PruneStep = field(default_factory=PruneStep)
    finetune: FinetuneStep = field(default_factory=FinetuneStep)
    quantize: QuantizeStep = field(default_factory=QuantizeStep)
    measure: MeasureStep = field(default_factory=MeasureStep)
