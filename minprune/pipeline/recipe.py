"""Pipeline recipes: a small TOML file (read with Python's tomllib) turned into a validated @dataclass config.

Every section maps to one dataclass, every key to one field. Unknown keys, wrong types and impossible
values are refused with a message that names the key, e.g. `prune.sparsity must be in [0, 1), got 1.2`.
Validation allocates no weights and traces nothing: the layer names `[prune.layers]` may use come from the
architecture built on the `meta` device (`prunable_layers`). See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib

import torch

from minprune.assets import recipe_file
from minprune.data import NAMES as DATA_NAMES
from minprune.layers import prunable_layers as prunable_modules
from minprune.models import ARCHS, build
from minprune.pipeline.config import (  # noqa: F401 (the sections are re-exported: recipe.PruneStep, ...)
    BaseStep,
    FinetuneStep,
    MeasureStep,
    PipelineConfig,
    PruneStep,
    QuantizeStep,
    RecipeError,
)
from minprune.pipeline.registry import score_names

CHOICES = {
    "base.arch": tuple(a for a in ARCHS if a != "chargpt"),  # the pipeline prunes image classifiers
    "base.data": DATA_NAMES,
    "base.source": ("pretrained", "train"),
    "prune.method": ("weight", "structured", "none"),
    "prune.scope": ("global", "local"),
    "quantize.method": ("int8", "dynamic-int8", "fake", "none"),
}
# (key, lowest, highest, highest included?)
RANGES = [("prune.sparsity", 0.0, 1.0, False), ("finetune.lr", 0.0, 1.0, True),
          ("finetune.alpha", 0.0, 1.0, True), ("finetune.temperature", 0.0, 100.0, True),
          ("quantize.bits", 2, 8, True), ("base.epochs", 0, 1000, True), ("finetune.epochs", 0, 1000, True),
          ("finetune.max_shift", 0, 4, True), ("finetune.mixup", 0.0, 10.0, True),
          ("base.seed", 0, 2**31, True), ("measure.batch_size", 1, 4096, True), ("measure.threads", 1, 256, True),
          ("measure.repeats", 1, 10_000, True)]
MAX_STRUCTURED_SPARSITY = 0.9  # every layer must keep some channels


def allowed_scores(method: str) -> tuple[str, ...]:
    """The score names a prune method accepts: the registry's weight or unit scores ('none' scores nothing).

    See notebooks/10_capstone.ipynb.
    """
    _check_method(method)
    if method == "none":
        return ("magnitude", "l1")
    return score_names("weight" if method == "weight" else "unit")


def _check_method(method) -> str:
    allowed = CHOICES["prune.method"]
    if not isinstance(method, str) or method not in allowed:
        raise RecipeError(f"prune.method must be one of {', '.join(allowed)}; got {method!r}")
    return method


def _type_ok(value, kind) -> bool:
    if kind in ("float", float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("int", int):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("bool", bool):
        return isinstance(value, bool)
    if kind in ("dict", dict):
        return isinstance(value, dict)
    return isinstance(value, str)


def _unknown(key: str, known) -> RecipeError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], [k.rsplit(".", 1)[-1] for k in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return RecipeError(f"unknown key {key!r}{hint}; allowed: {', '.join(known)}")


def _section(cls, values: dict, prefix: str):
    """Build one section dataclass from a TOML table, checking keys and types."""
    if not isinstance(values, dict):
        raise RecipeError(f"{prefix} must be a table ([{prefix}]), got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"{prefix}.{key}", [f"{prefix}.{k}" for k in fields])
        _check_type(f"{prefix}.{key}", value, fields[key].type)
    return cls(**values)


def _check_type(key: str, value, kind) -> None:
    """Raise RecipeError unless `value` has the field's type (`kind`: 'float', 'int', 'bool', 'dict' or 'str')."""
    if not _type_ok(value, kind):
        article = "an" if str(kind) == "int" else "a"
        kind = "table ({layer name = sparsity})" if str(kind) == "dict" else kind
        raise RecipeError(f"{key} must be {article} {kind}, got {value!r} ({type(value).__name__})")


def check_types(config: PipelineConfig) -> None:
    """Raise unless `config` is a PipelineConfig whose sections and fields have their types (a config built
    or changed in code is checked like one read from TOML)."""
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig (load_recipe(path), from_dict(values) or "
                        f"PipelineConfig()), got {type(config).__name__}")
    if not isinstance(config.name, str) or not config.name:
        raise RecipeError(f"name must be a non-empty string, got {config.name!r}")
    for section in dataclasses.fields(PipelineConfig):
        if section.name == "name":
            continue
        value, cls = getattr(config, section.name), type(section.default_factory())
        if not isinstance(value, cls):
            raise RecipeError(f"{section.name} must be a {cls.__name__}, got {type(value).__name__}")
        for f in dataclasses.fields(cls):
            _check_type(f"{section.name}.{f.name}", getattr(value, f.name), f.type)


def _get(config: PipelineConfig, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def validate(config: PipelineConfig) -> PipelineConfig:
    """Check choices, ranges and combinations; raise RecipeError naming the bad key. Returns `config`.

    Types are checked too (a config built in code), NaN and inf are refused, and `base.data` must name a data
    set `minprune.data.load` knows. See notebooks/10_capstone.ipynb.
    """
    check_types(config)
    for key, allowed in CHOICES.items():
        if _get(config, key) not in allowed:
            raise RecipeError(f"{key} must be one of {', '.join(allowed)}; got {_get(config, key)!r}")
    for key, low, high, closed in RANGES:
        value = _get(config, key)
        inside = low <= value <= high and (closed or value < high)  # False for NaN
        if not inside or not math.isfinite(value):
            raise RecipeError(f"{key} must be in [{low}, {high}{']' if closed else ')'}, got {value!r}")
    prune = config.prune
    if prune.score not in allowed_scores(prune.method):
        raise RecipeError(f"prune.score for method {prune.method!r} must be one of "
                          f"{', '.join(allowed_scores(prune.method))}; got {prune.score!r}")
    if prune.method == "structured" and prune.sparsity > MAX_STRUCTURED_SPARSITY:
        raise RecipeError(f"prune.sparsity {prune.sparsity} is impossible for structured pruning: every layer must "
                          f"keep channels; use at most {MAX_STRUCTURED_SPARSITY}")
    _check_layers(config)
    if config.finetune.lr <= 0:
        raise RecipeError(f"finetune.lr must be > 0, got {config.finetune.lr}")
    if config.finetune.temperature <= 0:
        raise RecipeError(f"finetune.temperature must be > 0, got {config.finetune.temperature}")
    return config


def prunable_layers(arch: str, method: str) -> tuple[str, ...]:
    """Layer names that `prune.layers` may name, in module order: every prunable (Linear/Conv) layer for
    `weight`; for `structured` the same but the last one, the output layer, whose units are the classes.

    The names come from the model's own constructor (its loops over widths and blocks name the layers), built
    on the `meta` device: no weights are allocated and nothing is traced. Whether a layer's channels can really
    be removed is checked by the run (`prune_channels` refuses a layer it cannot prune, by name).
    See notebooks/10_capstone.ipynb.
    """
    if not isinstance(arch, str) or arch not in ARCHS:
        raise RecipeError(f"base.arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    _check_method(method)
    return _prunable_layers(arch, method)


@functools.cache
def _prunable_layers(arch: str, method: str) -> tuple[str, ...]:
    with torch.device("meta"):
        model = build(arch)
    names = list(prunable_modules(model))
    return tuple(names[:-1] if method == "structured" else names)


prunable_layers.cache_clear = _prunable_layers.cache_clear  # the names are cached per (arch, method)


def _check_layers(config: PipelineConfig) -> None:
    prune = config.prune
    if not prune.layers:
        return
    if prune.method == "none":
        raise RecipeError("prune.layers needs prune.method weight or structured, not none")
    if prune.method == "structured" and prune.scope != "local":
        raise RecipeError("prune.layers with structured pruning needs prune.scope = \"local\"")
    allowed = prunable_layers(config.base.arch, prune.method)
    for name, value in prune.layers.items():
        if name not in allowed:
            raise RecipeError(f"prune.layers names {name!r}, which is not a prunable layer of "
                              f"{config.base.arch} for {prune.method} pruning; choose from {', '.join(allowed)}")
        top, closed = (MAX_STRUCTURED_SPARSITY, "]") if prune.method == "structured" else (1, ")")
        if not _type_ok(value, float) or not 0 <= value <= top or (closed == ")" and value == top):
            raise RecipeError(f"prune.layers.{name} must be a number in [0, {top}{closed}, got {value!r}")


def from_dict(values: dict) -> PipelineConfig:
    """A validated PipelineConfig from nested dicts (missing keys keep their defaults).

    See notebooks/10_capstone.ipynb.
    """
    if not isinstance(values, dict):
        raise RecipeError(f"a recipe must be a table of sections ([base], [prune], ...): a dict, "
                          f"got {type(values).__name__}")
    sections = {f.name: f.default_factory for f in dataclasses.fields(PipelineConfig) if f.name != "name"}
    kwargs = {}
    for key, value in values.items():
        if key == "name":
            if not isinstance(value, str) or not value:
                raise RecipeError(f"name must be a non-empty string, got {value!r}")
            kwargs["name"] = value
        elif key in sections:
            kwargs[key] = _section(type(sections[key]()), value, key)
        else:
            raise _unknown(key, ["name", *sections])
    return validate(PipelineConfig(**kwargs))


def load_recipe(path) -> PipelineConfig:
    """Read a TOML recipe file (a path, or a shipped recipe's name: 'lenet5-capstone') into a PipelineConfig.

    See notebooks/10_capstone.ipynb.
    """
    path = recipe_file(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}") from None
    try:
        return from_dict(values)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def to_dict(config: PipelineConfig) -> dict:
    """The config as nested plain dicts (for reports and JSON). See notebooks/10_capstone.ipynb."""
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
    return dataclasses.asdict(config)
