"""GradualPruner: follows the schedule, reaches the final sparsity exactly, monotone masks, structured compaction."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.dynamic.gradual import GradualPruner
from minprune.dynamic.schedules import make_schedule
from minprune.masked import get_masks, is_pruned
from minprune.unstructured.masks import n_pruned
from minprune.unstructured.scores import random_scores


def _toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    return DataLoader(TensorDataset(x, x.flatten(1)[:, :10].argmax(1)), batch_size=32, shuffle=True, generator=g)


class MaskLog:
    """Records the masks after every step (for monotonicity checks)."""

    def __init__(self):
        self.masks = []

    def on_step_end(self, model, step):
        self.masks.append({n: m.clone() for n, m in get_masks(model).items()})


@pytest.mark.parametrize("shape", ["cubic", "linear", "exponential", "one-shot"])
def test_reaches_final_sparsity_exactly_and_masks_only_grow(shape):
    mp.seed_everything(0)
    model = mp.build("lenet300")
    schedule = make_schedule(shape, 0.9, start=2, end=None if shape == "one-shot" else 10, interval=3)
    pruner, log = GradualPruner(model, schedule), MaskLog()
    mp.fit(model, _toy(), mp.TrainConfig(epochs=4), callbacks=[pruner, log], progress=False)  # 16 steps
    for mask in get_masks(model).values():
        assert int((~mask).sum()) == n_pruned(mask.numel(), 0.9)  # local: every layer exactly at 90%
    for before, after in zip(log.masks, log.masks[1:]):
        for name, mask in after.items():
            assert not (mask & ~before.get(name, torch.ones_like(mask))).any()  # nothing comes back
    steps = sorted({row["step"] for row in pruner.history})
    assert steps == schedule.update_steps()[1:] if shape != "one-shot" else steps == [2]
    for row in pruner.history:
        assert row["sparsity"] == pytest.approx(schedule(row["step"]), abs=1e-3)


def test_masked_weights_stay_zero_while_training():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    pruner = GradualPruner(model, make_schedule("cubic", 0.8, end=4, interval=2), score_fn=lambda m: random_scores(m))
    mp.fit(model, _toy(), mp.TrainConfig(epochs=2), callbacks=[pruner], progress=False)
    for name, p in mp.effective_parameters(model).items():
        if name in get_masks(model):
            assert torch.all(p[~get_masks(model)[name]] == 0)
    final = pruner.finish(model)
    assert final is model and not is_pruned(model) and mp.layer_sparsity(model)["layers.1.weight"] >= 0.8


def test_global_scope_reaches_total_sparsity():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    pruner = GradualPruner(model, make_schedule("linear", 0.95, end=6, interval=2), scope="global")
    mp.fit(model, _toy(), mp.TrainConfig(epochs=2), callbacks=[pruner], progress=False)
    masks = get_masks(model)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == n_pruned(total, 0.95)


def test_structured_masks_then_compacts_to_the_same_function():
    mp.seed_everything(0)
    model = mp.build("lenet5")
    pruner = GradualPruner(model, make_schedule("cubic", 0.5, end=4, interval=2), structured=True)
    mp.fit(model, _toy(), mp.TrainConfig(epochs=2), callbacks=[pruner], progress=False)
    small = pruner.finish(model)
    assert small.features[0].out_channels == 3 and small.classifier[1].out_features == 60
    assert mp.count_params(small) < mp.count_params(model) / 2
    x = torch.randn(8, 1, 28, 28)
    model.eval(), small.eval()
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)


def test_records_per_layer_sparsity_and_pruned_counts():
    mp.seed_everything(0)
    model = mp.build("lenet300")
    pruner = GradualPruner(model, make_schedule("linear", 0.6, end=6, interval=3), keep_masks=True)
    mp.fit(model, _toy(), mp.TrainConfig(epochs=2), callbacks=[pruner], progress=False)
    rows = [r for r in pruner.history if r["layer"] == "layers.1.weight"]
    assert [r["step"] for r in rows] == [3, 6]
    assert sum(r["pruned"] for r in rows) == n_pruned(300 * 784, 0.6) and all(r["regrown"] == 0 for r in rows)
    assert set(pruner.snapshots) == {3, 6}


def test_model_without_prunable_layers_is_refused():
    with pytest.raises(ValueError, match="no prunable layers"):
        GradualPruner(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), make_schedule("cubic", 0.5, end=10))


def test_bad_arguments_leave_model_untouched():
    model = mp.build("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="scope"):
        GradualPruner(model, make_schedule("cubic", 0.5, end=10), scope="layer")
    with pytest.raises(TypeError, match="schedule"):
        GradualPruner(model, 0.5)
    assert not is_pruned(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dynamics_plots_draw_the_records():
    import matplotlib

    matplotlib.use("Agg")
    from minprune.course import plots_dynamic

    mp.seed_everything(0)
    model = mp.build("lenet300")
    schedule = make_schedule("cubic", 0.5, end=4, interval=2)
    pruner = GradualPruner(model, schedule, keep_masks=True)
    mp.fit(model, _toy(), mp.TrainConfig(epochs=1), callbacks=[pruner], progress=False)
    fig = plots_dynamic.plot_layer_sparsity(pruner.history)
    assert len(fig.axes[0].lines) == 3  # one curve per layer
    fig = plots_dynamic.plot_mask_snapshots(pruner.snapshots, "layers.1.weight", max_images=2)
    assert len(fig.axes) == 2
    assert len(plots_dynamic.plot_schedules({"cubic": schedule}, 10).axes[0].lines) == 1
    with pytest.raises(ValueError, match="keep_masks"):
        plots_dynamic.plot_mask_snapshots({}, "layers.1.weight")
