"""Structured pruning on hypothesis-generated networks: either an exact, smaller copy, or a clear refusal.

Each network is 2-6 blocks drawn from a menu (conv, depthwise and grouped conv, BatchNorm, ReLU/Hardswish/Sigmoid,
residual add, concatenation along the channels (also into a BatchNorm), squeeze-excitation, a per-channel
nn.Parameter scale, a module called twice, a weight shared by two layers, channels-last LayerNorm + Linear, and a
flatten or pooling head), on one 6x6 image of 1-4 channels or on 4 tokens (float features or token ids). Widths
are 1-8. For random scores, sparsity and scope the property is the one notebooks/06_structured_pruning.ipynb
states: `mp.trace_groups` refuses with `mp.DependencyError`, or `mp.remove_channels` returns a copy that is no
larger and computes what `mp.masked_equivalent` computes on a fresh batch of 2 (relative difference <= 1e-4 in
float32, the limit `check_compacted` uses); the model passed in is untouched either way. Once a network is traced,
`remove_channels` must not refuse it: its own check failing would mean the tracer misread a supported model.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp

TOLERANCE = 1e-4  # relative, float32: max |compacted - masked| / max |masked|
SIDE = 6  # images are SIDE x SIDE; every conv keeps the size
TOKENS = 4  # tokens per sequence
VOCAB = 10  # token ids are in [0, VOCAB)
WIDTH = st.integers(1, 8)
ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish, "sigmoid": nn.Sigmoid}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the menu ----------------------------------------------------------------------------------------------

class Block(nn.Module):
    """One menu entry: `forward` is `fwd(self, x)`, one of the functions below; `parts` are its layers."""

    def __init__(self, fwd, **parts):
        super().__init__()
        self.fwd = fwd
        for name, part in parts.items():
            setattr(self, name, part)

    def forward(self, x):
        return self.fwd(self, x)

    def extra_repr(self) -> str:
        return self.fwd.__name__


def residual(s, x):
    return x + s.layer(x)


def concat(s, x):
    """[x, layer(x)] along the channels (axis), into a norm over both."""
    return s.norm(torch.cat([x, s.layer(x)], s.axis))


def squeeze_excite(s, x):
    """x * sigmoid(fc(pool(x))): a per-sample, per-channel gate."""
    return x * torch.sigmoid(s.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)))[:, :, None, None]


def scaled(s, x):
    """A per-channel nn.Parameter read in forward."""
    return x * s.scale


def called_twice(s, x):
    """One layer applied twice: its input and output channels are the same channels."""
    return s.layer(torch.relu(s.layer(x)))


def channels_last(s, x):
    """permute to channels-last, LayerNorm + Linear over the channels, permute back."""
    return s.fc(s.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def one_after_the_other(s, x):
    return s.second(torch.relu(s.first(x)))


def shared_weight(first: nn.Module, second: nn.Module) -> Block:
    """Two layers holding one weight tensor, applied one after the other."""
    second.weight = first.weight
    return Block(one_after_the_other, first=first, second=second)


def per_channel_scale(c: int, axis: int) -> Block:
    return Block(scaled, scale=nn.Parameter(torch.rand((c, 1, 1) if axis == 1 else (c,)) + 0.5))


class Head(nn.Module):
    """flatten + Linear, or a mean over the positions + Linear (3 outputs)."""

    def __init__(self, c: int, images: bool, kind: str):
        super().__init__()
        self.kind, self.positions = kind, (2, 3) if images else (1,)
        self.fc = nn.Linear(c * (SIDE * SIDE if images else TOKENS) if kind == "flatten" else c, 3)

    def forward(self, x):
        return self.fc(x.flatten(1) if self.kind == "flatten" else x.mean(self.positions))


# ---- drawing a network: a plain spec (hypothesis prints it), built under its own seed ----------------------

@dataclass(frozen=True)
class Choice:
    """What one block may vary: a width, which divisor of its input width is its conv's groups, an activation."""

    width: int = 3
    groups: int = 0  # index into the divisors > 1 of the input width (a grouped conv)
    act: str = "hardswish"
    flag: bool = True  # Concat: into a BatchNorm


@dataclass(frozen=True)
class Spec:
    inputs: str  # "image", "tokens" (float features) or "ids" (token ids into an nn.Embedding)
    channels: int  # input channels, token width or embedding width
    blocks: tuple  # ((kind, Choice), ...)
    head: str  # "flatten" or "pool"
    seed: int


def _groups(c: int, pick: int) -> int:
    divisors = [d for d in range(2, c + 1) if c % d == 0]
    return divisors[pick % len(divisors)] if divisors else 1


def image_block(kind: str, c: int, ch: Choice) -> tuple[nn.Module, int]:
    """One block of `kind` reading `c` channels of an image, and the width it writes."""
    conv = lambda: nn.Conv2d(c, c, 3, padding=1)  # noqa: E731
    same_width = {"depthwise": lambda: nn.Conv2d(c, c, 3, padding=1, groups=c), "bn": lambda: nn.BatchNorm2d(c),
                  "act": lambda: ACTIVATIONS[ch.act](), "residual": lambda: Block(residual, layer=conv()),
                  "se": lambda: Block(squeeze_excite, fc=nn.Linear(c, c)), "scale": lambda: per_channel_scale(c, 1),
                  "twice": lambda: Block(called_twice, layer=conv()), "shared": lambda: shared_weight(conv(), conv())}
    if kind in same_width:
        return same_width[kind](), c
    if kind == "conv":
        return nn.Conv2d(c, ch.width, 3, padding=1), ch.width
    if kind == "grouped":
        groups = _groups(c, ch.groups)
        w = groups * max(1, ch.width // groups)
        return nn.Conv2d(c, w, 1, groups=groups), w
    if kind == "concat":
        norm = nn.BatchNorm2d(c + ch.width) if ch.flag else nn.Identity()
        return Block(concat, layer=nn.Conv2d(c, ch.width, 3, padding=1), norm=norm, axis=1), c + ch.width
    return Block(channels_last, norm=nn.LayerNorm(c), fc=nn.Linear(c, ch.width)), ch.width


def token_block(kind: str, c: int, ch: Choice) -> tuple[nn.Module, int]:
    """One block over tokens (N, T, C), channels last, and the width it writes."""
    linear = lambda: nn.Linear(c, c)  # noqa: E731
    same_width = {"norm": lambda: nn.LayerNorm(c), "act": lambda: ACTIVATIONS[ch.act](),
                  "residual": lambda: Block(residual, layer=linear()), "scale": lambda: per_channel_scale(c, -1),
                  "twice": lambda: Block(called_twice, layer=linear()),
                  "shared": lambda: shared_weight(linear(), linear())}
    if kind in same_width:
        return same_width[kind](), c
    if kind == "linear":
        return nn.Linear(c, ch.width), ch.width
    return Block(concat, layer=nn.Linear(c, ch.width), norm=nn.Identity(), axis=-1), c + ch.width


IMAGE_BLOCKS = ("conv", "depthwise", "grouped", "bn", "act", "residual", "concat", "se", "scale", "twice", "shared",
                "channels_last")
TOKEN_BLOCKS = ("linear", "norm", "act", "residual", "concat", "scale", "twice", "shared")
CHOICES = st.builds(Choice, width=WIDTH, groups=st.integers(0, 3), act=st.sampled_from(sorted(ACTIVATIONS)),
                    flag=st.booleans())


@st.composite
def specs(draw) -> Spec:
    inputs = draw(st.sampled_from(["image", "image", "tokens", "ids"]))
    menu = IMAGE_BLOCKS if inputs == "image" else TOKEN_BLOCKS
    n_blocks = draw(st.integers(2, 6)) - (inputs == "ids")  # the embedding is one of the 2-6
    blocks = tuple((draw(st.sampled_from(menu)), draw(CHOICES)) for _ in range(n_blocks))
    channels = draw(st.integers(1, 4) if inputs == "image" else WIDTH)
    head = draw(st.sampled_from(["flatten", "pool"] if inputs == "image" else ["flatten", "pool", "pool"]))
    return Spec(inputs, channels, blocks, head, draw(st.integers(0, 2**16)))


def build(spec: Spec) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model in eval mode, an example batch of one, a fresh batch of two); the global random state is untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        width, layers = spec.channels, []
        if spec.inputs == "ids":
            layers.append(nn.Embedding(VOCAB, width))
        make = image_block if spec.inputs == "image" else token_block
        for kind, choice in spec.blocks:
            block, width = make(kind, width, choice)
            layers.append(block)
        layers.append(Head(width, spec.inputs == "image", spec.head))
        model = nn.Sequential(*layers)
        _randomise_norm_statistics(model)
        example, fresh = (_batch(spec, n) for n in (1, 2))
    return model.eval(), example, fresh


def _batch(spec: Spec, n: int) -> torch.Tensor:
    if spec.inputs == "image":
        return torch.randn(n, spec.channels, SIDE, SIDE)
    if spec.inputs == "ids":
        return torch.randint(0, VOCAB, (n, TOKENS))
    return torch.randn(n, TOKENS, spec.channels)


def _randomise_norm_statistics(model: nn.Module) -> None:
    """BatchNorm statistics and affine away from (0, 1), so that a misplaced entry shows in the output."""
    with torch.no_grad():
        for m in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            for t, low, high in ((m.running_mean, -1, 1), (m.running_var, 0.5, 2), (m.weight, 0.5, 1.5),
                                 (m.bias, -1, 1)):
                t.uniform_(low, high)


SELECTIONS = st.tuples(st.sampled_from(["local", "global"]), st.floats(0, 0.99), st.sampled_from([None, None, 2]),
                       st.integers(0, 2**16))  # scope, a fraction of the feasible sparsity, round_to, score seed


# ---- the property -------------------------------------------------------------------------------------------

def _keep(graph, scope: str, fraction: float, round_to, seed: int) -> dict:
    """Random scores; a sparsity that `select_channels` accepts (local: no group emptied, global: one kept each)."""
    g = torch.Generator().manual_seed(seed)
    groups = graph.prunable()
    scores = {group.id: torch.rand(group.size, generator=g) for group in groups}
    if scope == "local":
        sparsity = 0.49 * fraction  # round(size * s) < size for every size
    else:
        total = sum(group.size for group in groups)
        sparsity = fraction * (total - len(groups)) / total if total else 0.0
    return mp.select_channels(graph, scores, sparsity, scope=scope, round_to=round_to)


def _assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys(), "the model's state_dict keys changed"
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} of the model passed in changed"
    assert not model.training, "the model passed in was left in training mode"


def _relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    assert got.shape == expected.shape, f"compacted output {tuple(got.shape)}, masked {tuple(expected.shape)}"
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny))


def check_prunes_or_refuses(model: nn.Module, example: torch.Tensor, fresh: torch.Tensor, selection) -> str:
    """The property; returns 'refused' or 'pruned'."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        graph = mp.trace_groups(model, example)
    except mp.DependencyError:
        _assert_untouched(model, before)
        return "refused"
    keep = _keep(graph, *selection)
    small = mp.remove_channels(model, keep, graph)
    _assert_untouched(model, before)
    with torch.no_grad():
        difference = _relative_difference(small.eval()(fresh), mp.masked_equivalent(model, keep, graph)(fresh))
    assert difference <= TOLERANCE, f"compacted and masked outputs differ by {difference:.3g} (relative)"
    removed = any(len(idx) < graph.groups[gid].size for gid, idx in keep.items())  # a producer loses rows then
    n_small, n_model = (sum(p.numel() for p in m.parameters()) for m in (small, model))
    assert (n_small < n_model) if removed else (n_small == n_model), f"{n_small} parameters left of {n_model}"
    _assert_untouched(model, before)
    return "pruned"


@SETTINGS
@given(specs(), SELECTIONS)
def test_random_network_prunes_exactly_or_refuses(spec, selection):
    check_prunes_or_refuses(*build(spec), selection)


@pytest.mark.parametrize("kind", [*IMAGE_BLOCKS, *(f"tokens {k}" for k in TOKEN_BLOCKS)])
def test_every_block_is_followed(kind):
    """Each menu block alone between two layers of width 4 is traced and pruned (local on images, global on
    tokens): the property above does not pass by refusing."""
    images = not kind.startswith("tokens ")
    layer = ("conv" if images else "linear", Choice(width=4))
    spec = Spec("image" if images else "tokens", 2, (layer, (kind.removeprefix("tokens "), Choice()), layer),
                "pool", 0)
    assert check_prunes_or_refuses(*build(spec), ("local" if images else "global", 0.9, None, 0)) == "pruned"


def test_global_with_no_prunable_group():
    """A model whose every group is frozen has nothing to select: keep is {} (as with scope='local')."""
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(SIDE * SIDE, 3)).eval()
    graph = mp.trace_groups(model, torch.randn(1, 1, SIDE, SIDE))
    assert mp.select_channels(graph, {}, 0.0, scope="global") == {}
