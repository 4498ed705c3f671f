"""Recipes: TOML into a validated config; every mistake is refused with a message naming the key."""


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.assets import shipped_recipes
from minprune.layers import prunable_layers
from minprune.pipeline import recipe
from minprune.pipeline.recipe import RecipeError

RECIPES = sorted(shipped_recipes().values())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_example_recipes_load(path):
    config = recipe.load_recipe(path)
    assert config.name == path.stem
    assert recipe.from_dict(recipe.to_dict(config)) == config  # round trip
    assert recipe.load_recipe(path.stem) == config  # a shipped recipe loads by its name too


def test_defaults_and_overrides():
    config = recipe.from_dict({"prune": {"sparsity": 0.5}, "finetune": {"epochs": 1}})
    assert config.prune.sparsity == 0.5 and config.finetune.epochs == 1
    assert config.base == recipe.BaseStep() and config.quantize == recipe.QuantizeStep()
    assert recipe.from_dict({"finetune": {"lr": 1}}).finetune.lr == 1  # an int is a fine float


@pytest.mark.parametrize("values, message", [
    ({"prune": {"sparsty": 0.5}}, r"unknown key 'prune.sparsty' \(did you mean 'sparsity'\?\)"),
    ({"prunning": {}}, r"unknown key 'prunning' \(did you mean 'prune'\?\)"),
    ({"prune": {"sparsity": "high"}}, r"prune.sparsity must be a float, got 'high' \(str\)"),
    ({"finetune": {"epochs": 2.5}}, r"finetune.epochs must be an int"),
    ({"finetune": {"distill": "yes"}}, r"finetune.distill must be a bool"),
    ({"finetune": {"epochs": True}}, r"finetune.epochs must be an int"),
    ({"prune": 0.5}, r"prune must be a table"),
    ({"name": ""}, r"name must be a non-empty string"),
    ({"prune": {"sparsity": 1.0}}, r"prune.sparsity must be in \[0.0, 1.0\), got 1.0"),
    ({"prune": {"sparsity": -0.1}}, r"prune.sparsity must be in"),
    ({"prune": {"method": "structured", "score": "l1", "sparsity": 0.95}}, r"impossible for structured"),
    ({"prune": {"method": "weight", "score": "l1"}}, r"prune.score for method 'weight' must be one of"),
    ({"prune": {"method": "lottery"}}, r"prune.method must be one of weight, structured, none"),
    ({"base": {"arch": "gpt"}}, r"base.arch must be one of lenet300"),
    ({"finetune": {"lr": 0}}, r"finetune.lr must be > 0"),
    ({"finetune": {"temperature": 0.0}}, r"finetune.temperature must be > 0"),
    ({"quantize": {"bits": 1}}, r"quantize.bits must be in \[2, 8\]"),
    ({"measure": {"threads": 0}}, r"measure.threads must be in"),
    ({"finetune": {"max_shift": 5}}, r"finetune.max_shift must be in \[0, 4\]"),
    ({"finetune": {"max_shift": 1.0}}, r"finetune.max_shift must be an int"),
    ({"finetune": {"mixup": -0.5}}, r"finetune.mixup must be in \[0.0, 10.0\]"),
    ({"finetune": {"mixup": "yes"}}, r"finetune.mixup must be a"),
    ({"quantize": {"per_channel": 0}}, r"quantize.per_channel must be a bool"),
])
def test_bad_recipes_name_the_key(values, message):
    with pytest.raises(RecipeError, match=message):
        recipe.from_dict(values)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recipe file"):
        recipe.load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[prune\nsparsity = 0.5\n")
    with pytest.raises(RecipeError, match="bad.toml is not valid TOML"):
        recipe.load_recipe(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[finetune]\nepoch = 3\n")
    with pytest.raises(RecipeError, match=r"typo.toml: unknown key 'finetune.epoch' \(did you mean 'epochs'\?\)"):
        recipe.load_recipe(typo)


@settings(max_examples=40, deadline=None)
@given(sparsity=st.floats(-2, 3, allow_nan=False), method=st.sampled_from(["weight", "structured", "none"]))
def test_sparsity_is_accepted_exactly_when_possible(sparsity, method):
    score = {"weight": "magnitude", "structured": "l1", "none": "magnitude"}[method]
    values = {"prune": {"method": method, "score": score, "sparsity": sparsity}}
    high = recipe.MAX_STRUCTURED_SPARSITY if method == "structured" else 1.0
    possible = 0 <= sparsity < 1 and sparsity <= high
    if possible:
        assert recipe.from_dict(values).prune.sparsity == sparsity
    else:
        with pytest.raises(RecipeError, match="prune.sparsity"):
            recipe.from_dict(values)


@pytest.mark.parametrize("arch", ["lenet300", "lenet5", "vgg", "resnet"])
def test_the_layer_names_a_recipe_may_use_are_the_ones_the_tracer_finds(arch):
    model = mp.build(arch)
    assert recipe.prunable_layers(arch, "weight") == tuple(prunable_layers(model))
    traced = {name for group in mp.trace_groups(model).prunable() for name in group.producers}
    assert set(recipe.prunable_layers(arch, "structured")) == traced  # every layer but the output layer


def test_recipes_are_validated_without_tracing_or_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validation traced the model")

    built = []

    def spy_build(arch, **kwargs):
        model = real_build(arch, **kwargs)
        built.append({p.device.type for p in model.parameters()})
        return model

    real_build = recipe.build
    recipe.prunable_layers.cache_clear()
    monkeypatch.setattr(torch.fx.Tracer, "trace", refuse)
    monkeypatch.setattr(recipe, "build", spy_build)
    config = recipe.from_dict({"base": {"arch": "resnet"}, "prune": {"method": "structured", "score": "l1",
                                                                     "scope": "local", "layers": {"stem.0": 0.5}}})
    assert config.prune.layers == {"stem.0": 0.5}
    assert built == [{"meta"}]  # names only: no weights were allocated
    with pytest.raises(RecipeError, match="prune.layers names 'fc', which is not a prunable layer of resnet"):
        recipe.from_dict({"base": {"arch": "resnet"}, "prune": {"method": "structured", "score": "l1",
                                                                "scope": "local", "layers": {"fc": 0.5}}})
    recipe.prunable_layers.cache_clear()  # computed with the spy: not for the tests that follow
