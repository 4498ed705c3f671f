"""How each layer type is pruned: a registry the tracer and the surgery both read, open to your own layers.

A rule says, for one module type, which axis of its input holds the channels, which of its tensors are indexed by
output channels or by input features, and how to update its size attributes once they are sliced. Three kinds:

- "layer": reads input features and writes channels of its own (Linear, Conv): rows are output channels, columns
  input features, so removing an output channel removes a row and removing an input channel a column;
- "follower": indexed by the channels it reads and writes the same channels (BatchNorm, LayerNorm over channels, a
  depthwise convolution, a per-channel scale): removing a channel removes an entry;
- "pass": keeps every channel where it is and owns no channel-indexed tensor (activations, dropout, pooling).

The surgery derives every rebuilt module from the module itself (a copy with sliced tensors and updated sizes), so
every constructor option, the dtype and the device survive. Register a layer of your own in a few lines:

    mp.register_rule(MyScale, mp.ChannelRule("follower", axis=1, channel_tensors={"scale": 0},
                                             sizes={"num_channels": "out"}))

See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from minprune.structured import attention

__all__ = ["ChannelRule", "register_pass_through", "register_rule", "rule_for", "registered_rules"]

KINDS = ("layer", "follower", "pass")


@dataclass(frozen=True)
class ChannelRule:
    """How one layer type is pruned.

    kind: "layer", "follower" or "pass" (see the module docstring).
    axis: the axis of the input (and output) that holds the channels: 1 for (N, C, ...) layouts, -1 for the last.
    channel_tensors: {parameter or buffer name: dim indexed by the output channels (a follower: by its channels)}.
    input_tensors: {parameter name: dim indexed by the input features} (layers only).
    sizes: {attribute: "out" | "in" | "both"}, the size attributes to set after slicing (a tuple attribute such as
        LayerNorm's normalized_shape becomes a 1-tuple).
    statistics: True for a LayerNorm-like layer over the last axis (weight, bias, eps): removing a channel then
        changes the others, and the masked equivalent normalises over the kept channels only.
    refuse: optional function(module) -> reason or None; a reason freezes the channels the module touches.
    blocks: optional function(module) -> number of equal blocks (attention heads) that must keep the same number
        of channels each.
    rebuild / mask: optional functions for layers whose tensors are not simply sliced (multi-head attention):
        rebuild(module copy, kept indices) -> module, mask(module copy, kept indices) -> None (zero the rest).
    """

    kind: str
    axis: int = 1
    channel_tensors: dict = field(default_factory=dict)
    input_tensors: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    statistics: bool = False
    refuse: Callable | None = None
    blocks: Callable | None = None
    rebuild: Callable | None = None
    mask: Callable | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ChannelRule kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "pass" and (self.channel_tensors or self.input_tensors):
            raise ValueError("a 'pass' rule owns no channel-indexed tensors; use kind='follower'")
        if self.kind == "layer" and not self.channel_tensors:
            raise ValueError("a 'layer' rule needs channel_tensors: the tensor (and dim) its output channels index")
        if self.kind != "layer" and self.input_tensors:
            raise ValueError("only a 'layer' rule has input_tensors (the columns it reads)")
        bad = {k: v for k, v in self.sizes.items() if v not in ("out", "in", "both")}
        if bad:
            raise ValueError(f"sizes values must be 'out', 'in' or 'both', got {bad}")


_RULES: dict[type, ChannelRule | Callable] = {}


def register_rule(layer_type: type, rule) -> None:
    """Tell the tracer and the surgery how `layer_type` (an nn.Module subclass) is pruned; replaces an older rule.

    rule: a ChannelRule, or a function(module) -> ChannelRule when the rule depends on the module's options.
    A registered type is traced as one call (its forward is not looked into). See notebooks/06_structured_pruning.ipynb.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
    if not (isinstance(rule, ChannelRule) or callable(rule)):
        raise TypeError(f"rule must be a ChannelRule or a function(module) -> ChannelRule, got {type(rule).__name__}")
    _RULES[layer_type] = rule


def register_pass_through(*layer_types: type, axis: int = 1) -> None:
    """Register element-wise or per-position layers that keep every channel where it is."""
    for layer_type in layer_types:
        register_rule(layer_type, ChannelRule("pass", axis=axis))


def rule_for(module: nn.Module) -> ChannelRule | None:
    """The rule of `module`'s type (the nearest registered base class), or None."""
    for cls in type(module).__mro__:
        if cls in _RULES:
            rule = _RULES[cls]
            rule = rule if isinstance(rule, ChannelRule) else rule(module)
            if not isinstance(rule, ChannelRule):
                raise TypeError(f"the rule function for {cls.__name__} returned {type(rule).__name__}, "
                                f"not a ChannelRule")
            return rule
    return None


def has_own_rule(module: nn.Module) -> bool:
    """True when `module`'s exact type is registered: the tracer then keeps it as one call (a subclass with a
    forward of its own is looked into instead)."""
    return type(module) in _RULES


def registered_rules() -> dict[str, str]:
    """{layer type name: kind} of every registered rule (what the tracer follows)."""
    return {cls.__name__: rule.kind if isinstance(rule, ChannelRule) else "depends on the module"
            for cls, rule in _RULES.items()}


def _grouped(conv) -> str | None:
    return f"grouped convolution (groups={conv.groups})" if conv.groups > 1 else None


def _per_tensor_norm(norm) -> str | None:
    shape = tuple(norm.normalized_shape)
    return None if len(shape) == 1 else f"LayerNorm over {shape} (more than the channel axis)"


def _group_norm(norm) -> str | None:
    if norm.num_groups == norm.num_channels:
        return None
    return f"GroupNorm with {norm.num_groups} groups of channels (statistics across channels)"


_LINEAR = ChannelRule("layer", axis=-1, channel_tensors={"weight": 0, "bias": 0}, input_tensors={"weight": 1},
                      sizes={"out_features": "out", "in_features": "in"})
_CONV = ChannelRule("layer", axis=1, channel_tensors={"weight": 0, "bias": 0}, input_tensors={"weight": 1},
                    sizes={"out_channels": "out", "in_channels": "in"}, refuse=_grouped)
_CONV_TRANSPOSE = ChannelRule("layer", axis=1, channel_tensors={"weight": 1, "bias": 0}, input_tensors={"weight": 0},
                              sizes={"out_channels": "out", "in_channels": "in"}, refuse=_grouped)
_BATCH_NORM = ChannelRule("follower", axis=1, sizes={"num_features": "out"},
                          channel_tensors={"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0})
_LAYER_NORM = ChannelRule("follower", axis=-1, channel_tensors={"weight": 0, "bias": 0},
                          sizes={"normalized_shape": "out"}, statistics=True, refuse=_per_tensor_norm)
_GROUP_NORM = ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 0},
                          sizes={"num_channels": "out", "num_groups": "out"}, statistics=True, refuse=_group_norm)
_DEPTHWISE = ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 0},
                         sizes={"in_channels": "out", "out_channels": "out", "groups": "out"})
_PRELU = ChannelRule("follower", axis=1, channel_tensors={"weight": 0}, sizes={"num_parameters": "out"})


_GROUPED = ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 0},
                       sizes={"in_channels": "out", "out_channels": "out"}, blocks=attention.grouped_blocks,
                       rebuild=attention.grouped_rebuild, mask=attention.grouped_mask)


def _conv_rule(conv) -> ChannelRule:
    """A depthwise convolution maps channel i to channel i, a grouped one with as many inputs as outputs block b
    to block b: both follow their input's channels. Other grouped convolutions freeze theirs."""
    if conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels:
        return _DEPTHWISE
    if conv.groups > 1 and conv.in_channels == conv.out_channels:
        return _GROUPED
    return _CONV


def _prelu_rule(prelu) -> ChannelRule:
    """One slope per channel follows the channels; a single shared slope passes them through."""
    return _PRELU if prelu.num_parameters > 1 else ChannelRule("pass", axis=1)

_EMBEDDING = ChannelRule("layer", axis=-1, channel_tensors={"weight": 1}, sizes={"embedding_dim": "out"})

register_rule(nn.Linear, _LINEAR)
for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_rule(_cls, _conv_rule)
for _cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_rule(_cls, _CONV_TRANSPOSE)
for _cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register_rule(_cls, _BATCH_NORM)
register_rule(nn.LayerNorm, _LAYER_NORM)
register_rule(nn.GroupNorm, _GROUP_NORM)
register_rule(nn.PReLU, _prelu_rule)
register_rule(nn.Embedding, _EMBEDDING)
register_rule(nn.MultiheadAttention, ChannelRule("follower", axis=-1, refuse=attention.refuse,
                                                 blocks=attention.blocks, rebuild=attention.rebuild,
                                                 mask=attention.mask))
register_pass_through(
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)
