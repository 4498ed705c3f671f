"""The score registry: the one place recipes, widgets and the pipeline find importance scores by name."""

import pytest
import torch

import minprune as mp
from minprune.course import widgets
from minprune.pipeline import recipe
from minprune.pipeline import registry as importance
from minprune.pipeline.recipe import RecipeError


def test_the_registered_names():
    assert importance.score_names("weight") == ("magnitude", "random", "taylor", "snip")
    assert importance.score_names("unit") == ("l1", "l2", "bn", "taylor", "random")


@pytest.mark.parametrize("kind, name", [("weight", "snipp"), ("unit", "magnitude"), ("weight", "L1")])
def test_an_unknown_name_lists_the_known_ones(kind, name):
    with pytest.raises(ValueError, match=f"unknown {kind} score '{name}'; choose one of "
                                         f"{', '.join(importance.score_names(kind))}"):
        importance.get_score(kind, name)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="score kind must be one of weight, unit"):
        importance.score_names("channel")


def test_each_entry_computes_what_its_library_function_does():
    model = mp.build("lenet5")
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loader = [(x, y)]
    expected = {("weight", "magnitude"): mp.magnitude_scores(model), ("weight", "random"): mp.random_scores(model),
                ("weight", "taylor"): mp.taylor_scores(model, loader),
                ("weight", "snip"): mp.snip_scores(model, loader),
                ("unit", "l1"): mp.norm_scores(model, p=1), ("unit", "l2"): mp.norm_scores(model, p=2),
                ("unit", "taylor"): mp.taylor_unit_scores(model, loader)}
    for (kind, name), want in expected.items():
        got = importance.compute_scores(kind, name, model, loader)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), (kind, name)
    random_units = importance.compute_scores("unit", "random", model)
    assert random_units.keys() == expected["unit", "l1"].keys()
    assert all(0 <= float(v.min()) and float(v.max()) < 1 for v in random_units.values())


def test_the_pipeline_recipes_and_widgets_read_the_registry(monkeypatch):
    calls = []
    fake = importance.Score("constant", "constant", False,
                            lambda model, loader, device: calls.append(1) or mp.magnitude_scores(model))
    monkeypatch.setitem(importance.REGISTRY["weight"], "constant", fake)
    config = recipe.from_dict({"base": {"arch": "lenet300", "source": "train", "epochs": 0},
                               "prune": {"method": "weight", "score": "constant", "sparsity": 0.5},
                               "quantize": {"method": "none"}, "finetune": {"epochs": 0}})
    assert config.prune.score == "constant"  # the recipe accepts it
    mp.pipeline.stages.prune_step(mp.build("lenet300"), config, loader=None)
    assert calls == [1]  # the pipeline computed it
    assert ("constant", "constant") in widgets.score_options("weight")  # the widgets offer it


def test_a_recipe_with_an_unregistered_score_is_refused():
    with pytest.raises(RecipeError, match="prune.score for method 'weight' must be one of magnitude, random, taylor"):
        recipe.from_dict({"prune": {"method": "weight", "score": "l1"}})


def test_register_checks_its_argument():
    with pytest.raises(TypeError, match="importance.Score"):
        importance.register("weight", lambda model: {})


@pytest.mark.parametrize("method, kind", [("weight", "weight"), ("structured", "unit")])
def test_a_pipeline_stage_refuses_an_unknown_score_by_listing_the_known_ones(method, kind):
    config = recipe.PipelineConfig(prune=recipe.PruneStep(method=method, score="l3"))  # not validated
    with pytest.raises(ValueError, match=f"unknown {kind} score 'l3'; choose one of "
                                         f"{', '.join(importance.score_names(kind))}"):
        mp.pipeline.stages.prune_step(mp.build("lenet5"), config, loader=None)
