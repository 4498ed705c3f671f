"""The pipeline: every stage is a separate model, measured alike; the input model is never changed."""

import copy
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.masked import get_masks, is_pruned
from minprune.pipeline import pareto, recipe, report, runner, stages
from minprune.quantization import int8_modules


@pytest.fixture(scope="module")
def splits():
    full = mp.load("mnist-small")  # a 640-example training split keeps every test to seconds
    return dataclasses.replace(full, train=torch.utils.data.Subset(full.train, range(640)))


def _config(**sections):
    # a one-epoch base trained in the test (the cached baselines would be trained in a private cache: slower)
    values = {"base": {"arch": "lenet300", "source": "train", "epochs": 1}, "finetune": {"epochs": 1, "lr": 3e-4},
              "quantize": {"method": "none"}, "measure": {"repeats": 2}}
    values.update(sections)
    return recipe.from_dict(values)


def test_weight_pipeline_stages_and_table(splits):
    config = _config(prune={"method": "weight", "sparsity": 0.75, "scope": "global"},
                     quantize={"method": "fake", "bits": 4})
    result = runner.run_pipeline(config, splits)
    names = list(result.models)
    assert names == ["dense", "pruned (weight)", "distilled", "fake-int4"]
    rows = {row["stage"]: row for row in result.table.rows}
    dense_params = rows["dense"]["params"]
    assert rows["dense"]["nonzeros"] == dense_params and rows["dense"]["x smaller"] == 1.0
    pruned_weights = sum(int(m.numel()) for m in get_masks(result.models["pruned (weight)"]).values())
    pruned_zeros = sum(int((~m).sum()) for m in get_masks(result.models["pruned (weight)"]).values())
    assert pruned_zeros == round(0.75 * pruned_weights)  # exact global sparsity over the weights
    assert rows["pruned (weight)"]["nonzeros"] == dense_params - pruned_zeros
    assert rows["distilled"]["nonzeros"] <= rows["pruned (weight)"]["nonzeros"]  # masks stayed applied
    # folded masks: the deployable pruned model is no bigger than the dense one
    assert rows["pruned (weight)"]["KB"] <= rows["dense"]["KB"] * 1.01
    assert rows["fake-int4"]["x smaller zip"] > rows["distilled"]["x smaller zip"]
    for row in result.table.rows:
        assert {"acc", "params", "nonzeros", "MACs", "ms@b64", "KB", "x smaller", "x faster"} <= row.keys()
        assert row["drop"] == pytest.approx(rows["dense"]["acc"] - row["acc"])
    assert result.history is not None and len(result.history.epoch) == 1
    fake = result.models["fake-int4"]
    W = fake.layers[1].weight.detach()
    assert not is_pruned(fake) and torch.unique(W[0]).numel() <= 2**4  # 4-bit grid per output row


def test_structured_pipeline_makes_a_smaller_model_without_changing_the_baseline(splits):
    config = _config(base={"arch": "lenet5", "source": "train", "epochs": 1},
                     prune={"method": "structured", "score": "l1", "sparsity": 0.5, "scope": "local"},
                     finetune={"epochs": 0}, quantize={"method": "int8"})
    models, history, seconds = runner.run_stages(config, splits)
    before = copy.deepcopy(models["dense"].state_dict())
    assert list(models) == ["dense", "pruned (structured)", "int8"] and history is None
    assert len(int8_modules.int8_weights(models["int8"])) == 5  # two convolutions and three Linear layers
    dense, small = models["dense"], models["pruned (structured)"]
    assert small.features[0].out_channels == 3 and small.features[3].out_channels == 8
    assert mp.count_params(small) < mp.count_params(dense) / 3
    assert mp.count_macs(small) < mp.count_macs(dense) / 2
    assert set(seconds) == set(models)
    table = report.measure_stages(models, splits.loader("test", 500), measure=recipe.MeasureStep(repeats=1))
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())  # measuring changes nothing
    assert table.rows[1]["x smaller"] > 3 and table.rows[1]["MACs"] == mp.count_macs(small)
    assert table.rows[2]["KB"] < table.rows[1]["KB"] / 2 and table.rows[2]["params"] == table.rows[1]["params"]
    assert abs(table.rows[2]["acc"] - table.rows[1]["acc"]) < 3  # int8 costs little accuracy


def test_no_prune_pipeline_is_just_the_dense_model(splits):
    config = _config(prune={"method": "none"}, finetune={"epochs": 3})
    result = runner.run_pipeline(config, splits, timing=False)
    assert list(result.models) == ["dense"]
    assert "ms@b64" not in result.table.rows[0]


def test_invalid_config_is_refused_before_any_work(splits):
    config = _config()
    config.prune.sparsity = 1.5  # edited after validation
    with pytest.raises(recipe.RecipeError, match="prune.sparsity"):
        runner.run_stages(config, splits)


def test_bn_scores_need_batchnorm(splits):
    config = _config(base={"arch": "lenet5", "source": "train", "epochs": 0},
                     prune={"method": "structured", "score": "bn", "sparsity": 0.5})
    with pytest.raises(ValueError, match="BatchNorm"):
        runner.run_stages(config, splits)


def _beats(q, p) -> bool:
    """q is at least as good as p in both (size, accuracy) and strictly better in one."""
    return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])


# sizes and accuracies drawn from a few values, so that ties and identical points are common
@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1.0, 2.0, 5.0, 1e6]) | st.floats(1, 1e6),
                          st.sampled_from([90.0, 95.0, 100.0]) | st.floats(0, 100)), min_size=1, max_size=12))
def test_pareto_front_is_exactly_the_undominated_points(points):
    front = pareto.pareto_front(points)
    undominated = [i for i, p in enumerate(points) if not any(_beats(q, p) for q in points)]
    assert sorted(front) == undominated
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)


def test_pareto_front_ties_and_identical_points():
    assert pareto.pareto_front([(5, 90), (10, 95), (5, 90)]) == [0, 2, 1]  # identical points: both on the front
    assert pareto.pareto_front([(8, 90), (5, 92), (8, 90)]) == [1]  # ... or both off it
    assert pareto.pareto_front([(5, 90), (5, 92), (8, 95)]) == [1, 2]  # same size: the more accurate beats it
    assert pareto.pareto_front([(5, 90), (8, 90), (3, 80)]) == [2, 0]  # same accuracy: the smaller beats it
    assert pareto.pareto_front([(5, 90.0), (5.0, 90)]) == [0, 1]


def test_plot_pareto_returns_a_figure():
    rows = [{"stage": "a", "KB": 100.0, "acc": 97.0}, {"stage": "b", "KB": 10.0, "acc": 96.0},
            {"stage": "c", "KB": 50.0, "acc": 90.0}]
    fig = pareto.plot_pareto(rows)
    assert len(fig.axes[0].collections[0].get_offsets()) == 3


def test_ratios_against_the_dense_row():
    dense = {"acc": 97.0, "KB": 240.0, "zip KB": 220.0, "ms@b64": 2.0}
    small = {"acc": 96.5, "KB": 24.0, "zip KB": 11.0, "ms@b64": 0.5}
    assert report.ratios(dense, small) == {"drop": 0.5, "x smaller": 10.0, "x smaller zip": 20.0, "x faster": 4.0}
    assert "x faster" not in report.ratios(dense, small, None)
    assert report.ratios(dense, dense)["drop"] == 0 and report.ratios(dense, dense)["x faster"] == 1


def test_finetune_with_shifts_runs_and_keeps_masks(splits):
    config = _config(prune={"method": "weight", "sparsity": 0.5}, finetune={"epochs": 1, "distill": False,
                                                                            "max_shift": 2})
    models, history, _ = runner.run_stages(config, splits)
    tuned = models["fine-tuned"]
    assert len(history.epoch) == 1
    assert mp.count_nonzeros(tuned) <= mp.count_nonzeros(models["pruned (weight)"])
    again, _ = stages.finetune_step(models["pruned (weight)"], models["dense"], config, splits)
    other, _ = stages.finetune_step(models["pruned (weight)"], models["dense"], config, splits, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(tuned.parameters(), again.parameters()))  # base.seed by default
    assert not all(torch.equal(a, b) for a, b in zip(tuned.parameters(), other.parameters()))



@pytest.mark.parametrize("distill", [False, True])
def test_finetune_with_mixup_trains_on_blends_and_keeps_masks(splits, distill):
    config = _config(prune={"method": "weight", "sparsity": 0.5}, finetune={"epochs": 1, "distill": distill,
                                                                            "mixup": 1.0})
    models, history, _ = runner.run_stages(config, splits)
    tuned, pruned = models["distilled" if distill else "fine-tuned"], models["pruned (weight)"]
    plain, _ = stages.finetune_step(pruned, models["dense"], dataclasses.replace(
        config, finetune=dataclasses.replace(config.finetune, mixup=0.0)), splits)
    assert len(history.epoch) == 1 and mp.count_nonzeros(tuned) <= mp.count_nonzeros(pruned)
    assert not all(torch.equal(a, b) for a, b in zip(tuned.parameters(), plain.parameters()))  # blends changed it


def test_per_layer_structured_sparsities_set_each_width(splits):
    layers = {"features.0": 0.5, "classifier.1": 2 / 3}  # the others keep prune.sparsity
    config = _config(base={"arch": "lenet5", "source": "train", "epochs": 1},
                     prune={"method": "structured", "score": "l1", "sparsity": 0.25, "scope": "local",
                            "layers": layers},
                     finetune={"epochs": 0})
    models, _, _ = runner.run_stages(config, splits)
    small = models["pruned (structured)"]
    widths = [small.features[0].out_channels, small.features[3].out_channels, small.classifier[1].out_features,
              small.classifier[3].out_features]
    assert widths == [3, 12, 40, 63]  # 6 * 0.5, 16 * 0.75, 120 / 3, 84 * 0.75


def test_coupled_layers_take_the_value_named_for_any_of_them():
    model = mp.build("resnet")
    step = recipe.PruneStep(method="structured", score="l1", sparsity=0.25, scope="local",
                            layers={"stem.0": 0.5})  # stem.0 shares its channels with layers.0.conv2
    values = stages.channel_sparsities(model, step)
    assert values["stem.0"] == values["layers.0.conv2"] == 0.5 and values["layers.0.conv1"] == 0.25
    step.layers = {"stem.0": 0.5, "layers.0.conv2": 0.25}
    with pytest.raises(ValueError, match="share channels"):
        mp.prune_channels(model, stages.channel_sparsities(model, step))


def test_per_layer_weight_sparsities_override_the_global_one(splits):
    config = _config(prune={"method": "weight", "sparsity": 0.5, "scope": "global", "layers": {"layers.3": 0.9}})
    model = mp.build("lenet300")
    pruned = stages.prune_step(model, config, None)
    masks = get_masks(pruned)
    out = masks["layers.3.weight"]
    assert int((~out).sum()) == round(0.9 * out.numel())
    rest = [m for name, m in masks.items() if name != "layers.3.weight"]
    assert sum(int((~m).sum()) for m in rest) == round(0.5 * sum(m.numel() for m in rest))
    assert not is_pruned(model)


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_stage_uses_the_recipes_weight_scales(splits, per_channel):
    config = _config(base={"arch": "lenet5"}, quantize={"method": "int8", "per_channel": per_channel})
    model = mp.build("lenet5")
    quantized = stages.quantize_step(model, config, splits)
    schemes = {m.weight().qscheme() for m in quantized.modules() if callable(getattr(m, "weight", None))}
    expected = torch.per_channel_affine if per_channel else torch.per_tensor_affine
    assert schemes == {expected} and len(int8_modules.int8_weights(quantized)) == 5


def test_int8_stage_can_keep_linear_arithmetic_float(splits):
    config = _config(base={"arch": "lenet5"}, quantize={"method": "int8", "linear_weights_only": True})
    quantized = stages.quantize_step(mp.build("lenet5"), config, splits)
    assert sum(isinstance(m, int8_modules.Int8WeightLinear) for m in quantized.modules()) == 3


@pytest.mark.parametrize("sections, names", [
    ({"prune": {"method": "weight"}, "finetune": {"epochs": 0}, "quantize": {"method": "fake", "bits": 4}},
     ["dense", "pruned (weight)", "fake-int4"]),
    ({"prune": {"method": "structured", "score": "l1", "sparsity": 0.5}, "finetune": {"epochs": 2, "distill": False},
      "quantize": {"method": "int8"}}, ["dense", "pruned (structured)", "fine-tuned", "int8"]),
    ({"prune": {"method": "none"}, "finetune": {"epochs": 3}, "quantize": {"method": "dynamic-int8"}},
     ["dense", "dynamic-int8"]),  # nothing pruned: nothing to fine-tune
])
def test_the_stage_plan_names_the_stages_the_recipe_asks_for(splits, sections, names):
    plan = runner.stage_plan(_config(**sections), splits, stages.RunOptions())
    assert [name for name, _ in plan] == names


def test_a_named_layer_that_cannot_be_channel_pruned_is_refused_by_the_run():
    # validation only checks names; the run finds out that the output layer has no removable channels
    step = recipe.PruneStep(method="structured", score="l1", sparsity=0.25, scope="local",
                            layers={"classifier.5": 0.5})
    model = mp.build("lenet5")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"sparsity names \['classifier.5'\], which are not prunable layers"):
        stages.prune_step(model, recipe.PipelineConfig(prune=step), None)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_as_deployed_folds_masks_into_a_copy_and_keeps_int8_models():
    model = mp.build("lenet300").eval()
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    shipped = report.as_deployed(model)
    x = torch.randn(4, 1, 28, 28)
    assert shipped is not model and is_pruned(model) and not is_pruned(shipped)
    assert torch.equal(shipped(x), model(x)) and mp.count_nonzeros(shipped) == mp.count_nonzeros(model)
    dense = mp.build("lenet300")
    assert report.as_deployed(dense) is not dense  # a copy: measuring never touches the stage itself
    quantized = mp.dynamic_int8(dense)
    assert report.as_deployed(quantized) is quantized  # int8 kernels: already what is shipped, on the CPU

