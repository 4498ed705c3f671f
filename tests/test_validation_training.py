"""Bad input to training, data, distillation, dynamic pruning and the pipeline: refused with a message that names
the argument, before anything changes (state_dict, train/eval flag, dtype), and half precision supported or refused
on purpose, function by function.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import batches, train
from minprune.distillation import augment, losses, student, teacher
from minprune.dynamic import gating, gradual, schedules, sparse_training
from minprune.pipeline import pareto, recipe, registry, report, runner, stages

NAN, INF = float("nan"), float("inf")


def _loader(n: int = 8, shape=(1, 28, 28), dtype=torch.float32, shuffle: bool = False):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, *shape, generator=g).to(dtype), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(1))


def _mlp(dtype=torch.float32, *, eval_mode: bool = False):
    model = mp.build("lenet300").to(dtype)
    return model.eval() if eval_mode else model


def _meta_mlp():
    with torch.device("meta"):
        return mp.build("lenet300")


def _snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()}, model.training,
            {p.dtype for p in model.parameters()})


def _assert_unchanged(model, before) -> None:
    state, training, dtypes = before
    after = model.state_dict()
    assert after.keys() == state.keys()
    for k in state:
        assert torch.equal(after[k], state[k]) or (after[k].isnan() == state[k].isnan()).all(), k
    assert model.training == training, "train/eval flag changed although the call failed"
    assert {p.dtype for p in model.parameters()} == dtypes


def _refused(call, error, fragment: str, *models) -> str:
    """Run `call`, expect exactly `error` with `fragment` in its message, and every model as it was."""
    before = [_snapshot(m) for m in models]
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is error, f"raised {type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), str(info.value)
    for m, b in zip(models, before):
        _assert_unchanged(m, b)
    return str(info.value)


def _recipe(tmp_path, text: str):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return lambda: mp.load_recipe(path)


# ---- the train/eval flag is the caller's after a failed fit or distill_student -----------------------------

def test_fit_keeps_an_eval_model_in_eval_mode_when_it_raises():
    model = _mlp(eval_mode=True)
    _refused(lambda: mp.fit(model, _loader(shape=(3, 32, 32)), mp.TrainConfig(epochs=1), progress=False),
             ValueError, "expects input of shape", model)


def test_distill_student_keeps_both_flags_when_it_raises():
    s, t = _mlp(eval_mode=True), _mlp()  # a teacher in train mode stays in train mode
    _refused(lambda: mp.distill_student(s, t, _loader(shape=(3, 32, 32)), train=mp.TrainConfig(epochs=1),
                                        progress=False), ValueError, "expects input of shape", s, t)


def test_distill_student_leaves_the_teacher_flag_as_it_was_after_training():
    s, t = _mlp(), _mlp()
    mp.distill_student(s, t, _loader(), train=mp.TrainConfig(epochs=1), progress=False)
    assert t.training and s.training


def test_fit_restores_the_flag_after_success_too():
    model = _mlp(eval_mode=True)
    mp.fit(model, _loader(), mp.TrainConfig(epochs=1), progress=False)
    assert not model.training


# ---- NaN and inf do not pass range checks ------------------------------------------------------------------

NON_FINITE = [
    ("TrainConfig lr nan", lambda: mp.TrainConfig(lr=NAN), "lr (the learning rate)"),
    ("TrainConfig lr inf", lambda: mp.TrainConfig(lr=INF), "lr (the learning rate)"),
    ("make_optimizer weight_decay", lambda: train.make_optimizer(_mlp(), "sgd", weight_decay=NAN), "weight_decay"),
    ("SGD momentum", lambda: mp.TrainConfig(optimizer=torch.optim.SGD(_mlp().parameters(), lr=0.1, momentum=NAN)),
     "['momentum']"),
    ("Adam weight_decay", lambda: mp.TrainConfig(optimizer=torch.optim.Adam(_mlp().parameters(), weight_decay=INF)),
     "['weight_decay']"),
    ("kd_loss temperature inf", lambda: mp.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(),
                                                   temperature=INF), "temperature must be a number > 0"),
    ("kd_loss temperature nan", lambda: mp.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(),
                                                   temperature=NAN), "temperature must be a number > 0"),
    ("kd_loss alpha nan", lambda: mp.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(),
                                             alpha=NAN), "alpha must be in [0, 1]"),
    ("soft_targets inf", lambda: losses.soft_targets(torch.zeros(2, 3), INF), "temperature must be a number > 0"),
    ("KDConfig beta nan", lambda: mp.KDConfig(beta=NAN), "beta must be a number >= 0"),
    ("KDConfig mixup inf", lambda: mp.KDConfig(mixup=INF), "mixup strength must be a number > 0"),
    ("mix_images inf", lambda: augment.mix_images(torch.zeros(2, 1, 4, 4), INF), "mixup strength"),
    ("gap_closed nan", lambda: student.gap_closed(NAN, 90.0, 95.0), "teacher_acc"),
    ("gating_loss nan", lambda: gating.gating_loss(NAN), "penalty must be >= 0"),
    ("matching_widths nan", lambda: gating.matching_widths(_mlp(), NAN), "macs"),
    ("SparseConfig sparsity nan", lambda: sparse_training.DynamicSparseTrainer(
        _mlp(), sparse_training.SparseConfig(sparsity=NAN)), "sparsity must be in [0, 1)"),
    ("layer_sparsities nan", lambda: sparse_training.layer_sparsities(_mlp(), NAN), "sparsity must be in [0, 1)"),
    ("erk_sparsities inf", lambda: sparse_training.erk_sparsities({"a": (3, 4)}, INF), "sparsity must be in [0, 1)"),
    ("drop_and_grow nan", lambda: sparse_training.drop_and_grow(torch.ones(4), torch.ones(4, dtype=torch.bool),
                                                                torch.ones(4), NAN), "fraction"),
    ("GradualPruner.update nan", lambda: gradual.GradualPruner(_mlp(), lambda s: 0.0).update(_mlp(), NAN),
     "target"),
    ("pareto_front nan", lambda: pareto.pareto_front([(NAN, 1.0), (1.0, 2.0)]), "points[0]"),
]


@pytest.mark.parametrize("label, call, fragment", NON_FINITE, ids=[c[0] for c in NON_FINITE])
def test_nan_and_inf_are_refused(label, call, fragment):
    message = _refused(call, ValueError, fragment)
    assert "nan" in message or "inf" in message


@pytest.mark.parametrize("key, text", [
    ("prune.sparsity", "[prune]\nsparsity = nan"), ("finetune.lr", "[finetune]\nlr = nan"),
    ("finetune.lr", "[finetune]\nlr = inf"), ("finetune.temperature", "[finetune]\ntemperature = nan"),
    ("finetune.alpha", "[finetune]\nalpha = nan"), ("finetune.mixup", "[finetune]\nmixup = nan"),
    ("finetune.temperature", "[finetune]\ntemperature = inf")])
def test_recipe_refuses_nan_and_inf_literals(tmp_path, key, text):
    _refused(_recipe(tmp_path, text), mp.RecipeError, f"{key} must be in")


def test_recipe_refuses_an_unknown_data_set_when_validated(tmp_path):
    message = _refused(_recipe(tmp_path, "[base]\ndata = 'imagenet'"), mp.RecipeError, "base.data must be one of")
    assert "mnist-small, mnist, fashion-mnist, cifar10" in message
    config = recipe.PipelineConfig()
    config.base.data = "imagenet"  # changed in code: validate (and so run_pipeline) refuses it before any data
    _refused(lambda: mp.run_pipeline(config), mp.RecipeError, "base.data must be one of")


def test_validate_checks_the_types_of_a_config_built_in_code():
    config = recipe.PipelineConfig()
    config.prune.sparsity = "0.5"
    _refused(lambda: recipe.validate(config), mp.RecipeError, "prune.sparsity must be a float")
    _refused(lambda: recipe.validate({"prune": {}}), TypeError, "config must be a PipelineConfig")
    _refused(lambda: recipe.from_dict([1]), mp.RecipeError, "a recipe must be a table")


# ---- a schedule that returns NaN or an impossible sparsity is refused when it is used, naming the step --------

@pytest.mark.parametrize("bad", [NAN, 1.0, 1.5, -0.1, "0.5", INF])
def test_gradual_pruner_refuses_a_bad_schedule_at_construction(bad):
    model = _mlp()
    _refused(lambda: gradual.GradualPruner(model, lambda step: bad), ValueError, "schedule(0) returned", model)


@pytest.mark.parametrize("bad", [NAN, 1.0])
def test_gradual_pruner_refuses_a_bad_schedule_value_at_the_step_it_is_used(bad):
    model = _mlp(eval_mode=True)
    pruner = gradual.GradualPruner(model, lambda step: 0.0 if step < 2 else bad)
    with pytest.raises(ValueError, match="schedule\\(2\\) returned .*target sparsity at step 2"):
        mp.fit(model, _loader(), mp.TrainConfig(epochs=1), callbacks=[pruner], progress=False)
    assert mp.get_masks(model) == {} and pruner.history == []  # nothing was pruned
    assert not model.training


def test_schedule_built_directly_is_checked():
    _refused(lambda: schedules.Schedule("cubic", NAN, end=10), ValueError, "final must be a sparsity in [0, 1)")
    _refused(lambda: schedules.Schedule("cubic", 0.5, end=10)(NAN), TypeError, "step must be an int step")


# ---- bools are not ints; every int argument ---------------------------------------------------------------

BOOLS = [
    ("TrainConfig epochs", lambda: mp.TrainConfig(epochs=True), ValueError, "epochs must be a non-negative int"),
    ("seed_everything", lambda: mp.seed_everything(True), ValueError, "seed must be a non-negative int"),
    ("load val_size", lambda: mp.load(val_size=True), ValueError, "val_size must be a non-negative int"),
    ("load seed", lambda: mp.load(seed=True), ValueError, "seed must be a non-negative int"),
    ("loader batch_size", lambda: mp.load().loader(batch_size=True), ValueError, "batch_size must be a positive int"),
    ("loader seed", lambda: mp.load().loader(seed=True), ValueError, "seed must be a non-negative int"),
    ("sample n", lambda: mp.load().sample(True), ValueError, "n must be a positive int"),
    ("stratified_split", lambda: mp.data.stratified_split([0, 1], True), ValueError, "n_holdout"),
    ("make_schedule start", lambda: mp.make_schedule("cubic", 0.5, start=True, end=10), TypeError,
     "start must be an int step"),
    ("schedule step", lambda: mp.make_schedule("cubic", 0.5, end=10)(True), TypeError, "step must be an int step"),
    ("SparseConfig interval", lambda: sparse_training.DynamicSparseTrainer(
        _mlp(), sparse_training.SparseConfig(interval=True)), ValueError, "interval must be a positive int"),
    ("SparseConfig seed", lambda: sparse_training.DynamicSparseTrainer(
        _mlp(), sparse_training.SparseConfig(seed=True)), ValueError, "seed must be a non-negative int"),
    ("GatedMLP rank", lambda: gating.GatedMLP(_mlp(), rank=True), ValueError, "rank must be a positive int"),
    ("narrow_mlp widths", lambda: gating.narrow_mlp(_mlp(), (True, 5)), ValueError, "widths must give"),
    ("KDConfig max_shift", lambda: mp.KDConfig(max_shift=True), ValueError, "max_shift must be an int >= 0"),
    ("KDConfig mixup", lambda: mp.KDConfig(mixup=True), ValueError, "mixup strength"),
    ("teacher epochs", lambda: teacher.shift_teacher_filename("lenet5", "mnist-small", epochs=True, max_shift=2,
                                                              seed=0), ValueError, "epochs must be a non-negative int"),
    ("finetune_step seed", lambda: stages.finetune_step(_mlp(), _mlp(), recipe.PipelineConfig(), mp.load(),
                                                        seed=True), ValueError, "seed must be a non-negative int"),
    ("fit progress", lambda: mp.fit(_mlp(), _loader(), mp.TrainConfig(epochs=1), progress="no"), TypeError,
     "progress must be True or False"),
]


@pytest.mark.parametrize("label, call, error, fragment", BOOLS, ids=[c[0] for c in BOOLS])
def test_bools_and_other_non_ints_are_refused(label, call, error, fragment):
    _refused(call, error, fragment)


def test_fit_refuses_bool_epochs_and_leaves_the_model():
    model = _mlp(eval_mode=True)
    _refused(lambda: mp.fit(model, _loader(), mp.TrainConfig(epochs=True), progress=False), ValueError,
             "epochs must be a non-negative int", model)


# ---- wrong types: the loaders, callables, models ----------------------------------------------------------

LOADER_CALLS = [
    ("fit", lambda m, bad: mp.fit(m, bad, mp.TrainConfig(epochs=1), progress=False)),
    ("fit val_loader", lambda m, bad: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), val_loader=bad, progress=False)),
    ("evaluate", lambda m, bad: mp.evaluate(m, bad)),
    ("accuracy", lambda m, bad: mp.accuracy(m, bad)),
    ("distill_student", lambda m, bad: mp.distill_student(m, _mlp(), bad, train=mp.TrainConfig(epochs=1),
                                                          progress=False)),
    ("measure_stages", lambda m, bad: report.measure_stages({"dense": m}, bad, timing=False)),
]


@pytest.mark.parametrize("bad", [{"x": 1}, [1, 2], "loader", None, torch.zeros(4, 1, 28, 28)],
                         ids=["dict", "list", "str", "None", "tensor"])
@pytest.mark.parametrize("label, call", LOADER_CALLS, ids=[c[0] for c in LOADER_CALLS])
def test_a_loader_that_is_not_one_is_refused(label, call, bad):
    if label == "fit val_loader" and bad is None:
        pytest.skip("val_loader=None means no validation")
    model = _mlp(eval_mode=True)
    message = _refused(lambda: call(model, bad), TypeError, "(x, y) batches", model)
    assert "loader must be" in message


@pytest.mark.parametrize("call", [
    lambda m: mp.fit(m, DataLoader(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0).long())),
                     mp.TrainConfig(epochs=1), progress=False),
    lambda m: mp.evaluate(m, [])], ids=["fit", "evaluate"])
def test_an_empty_loader_is_refused_before_anything_changes(call):
    model = _mlp(eval_mode=True)
    _refused(lambda: call(model), ValueError, "empty loader", model)


def test_fit_refuses_a_one_shot_iterator_it_could_read_for_one_epoch_only():
    model = _mlp()
    _refused(lambda: mp.fit(model, iter(_loader()), mp.TrainConfig(epochs=2), progress=False), TypeError,
             "read again for every epoch", model)


def test_evaluate_reads_a_one_shot_iterator_in_full():
    model = _mlp()
    assert mp.evaluate(model, iter(_loader(8))) == mp.evaluate(model, _loader(8))


def test_the_peek_at_the_first_batch_leaves_the_random_state():
    loader = _loader(shuffle=True)
    global_state, loader_state = torch.random.get_rng_state(), loader.generator.get_state()
    batches.peek_batches(loader, "train_loader", reiterable=True)
    assert torch.equal(torch.random.get_rng_state(), global_state)
    assert torch.equal(loader.generator.get_state(), loader_state)


def test_fit_is_repeatable_with_the_peek():
    def run():
        mp.seed_everything(0)
        model = _mlp()
        mp.fit(model, _loader(shuffle=True), mp.TrainConfig(epochs=2), progress=False)
        return model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


WRONG_TYPES = [
    ("fit loss_fn", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), loss_fn="ce", progress=False),
     TypeError, "loss_fn must be a function"),
    ("fit callbacks str", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), callbacks="x", progress=False),
     TypeError, "callbacks must be a list"),
    ("fit callback without hooks", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), callbacks=[3],
                                                    progress=False), TypeError, "callbacks[0] must have"),
    ("fit optimizer int", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1, optimizer=3), progress=False),
     TypeError, "optimizer must be 'sgd', 'adam', 'adamw' or a torch.optim.Optimizer"),
    ("fit foreign optimizer", lambda m: mp.fit(m, _loader(), mp.TrainConfig(
        epochs=1, optimizer=torch.optim.SGD(_mlp().parameters(), lr=0.1)), progress=False), ValueError,
     "optimizer updates parameters that are not the model's"),
    ("fit loss_fn result", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), progress=False,
                                            loss_fn=lambda model, x, y: model(x).sum()), TypeError,
     "must return (loss, logits)"),
    ("distill teacher str", lambda m: mp.distill_student(m, "teacher", _loader(), progress=False), TypeError,
     "teacher must be a torch.nn.Module"),
    ("distill student str", lambda m: mp.distill_student("student", m, _loader(), progress=False), TypeError,
     "student must be a torch.nn.Module"),
    ("distill_loss teacher", lambda m: mp.distill_loss("teacher"), TypeError, "teacher must be a torch.nn.Module"),
    ("KDConfig hints str", lambda m: mp.KDConfig(hints="layers.1"), TypeError, "hints must be a list of module"),
    ("with_shifts loss_fn", lambda m: augment.with_shifts("ce", 1), TypeError, "loss_fn must be a function"),
    ("kd_loss logits list", lambda m: mp.kd_loss([1.0], torch.zeros(1, 3), torch.zeros(1).long()), TypeError,
     "student_logits must be a tensor"),
    ("random_shift list", lambda m: augment.random_shift([1.0], 1), TypeError, "x must be a tensor"),
    ("gap_closed str", lambda m: student.gap_closed("a", 1.0, 2.0), ValueError, "teacher_acc"),
    ("Score compute", lambda m: registry.Score("a", "a", False, "magnitude"), TypeError, "Score.compute"),
    ("DynamicSparseTrainer config", lambda m: sparse_training.DynamicSparseTrainer(m, {"sparsity": 0.5}),
     TypeError, "config must be a SparseConfig"),
    ("DynamicSparseTrainer model", lambda m: sparse_training.DynamicSparseTrainer("model"), TypeError,
     "model must be a torch.nn.Module"),
    ("GradualPruner score_fn", lambda m: gradual.GradualPruner(m, lambda s: 0.0, score_fn="magnitude"), TypeError,
     "score_fn must be a function"),
    ("sparse_forward model", lambda m: gating.sparse_forward(m, torch.zeros(1, 1, 28, 28)), TypeError,
     "model must be a GatedMLP"),
    ("run_pipeline config", lambda m: mp.run_pipeline({"prune": {}}), TypeError, "config must be a PipelineConfig"),
    ("base_model run", lambda m: stages.base_model(recipe.PipelineConfig(), None, run="fast"), TypeError,
     "run must be a RunOptions"),
    ("measure_stages measure", lambda m: report.measure_stages({"d": m}, _loader(), measure={"repeats": 1}),
     TypeError, "measure must be a MeasureStep"),
    ("ratios rows", lambda m: report.ratios({}, {}), ValueError, "base must be a row of measure_stages"),
    ("pareto_front None", lambda m: pareto.pareto_front(None), TypeError, "points must be a list"),
    ("plot_pareto columns", lambda m: pareto.plot_pareto([{"stage": "a"}]), ValueError, "rows[0] lacks"),
    ("run_stages splits", lambda m: runner.run_stages(recipe.PipelineConfig(), splits="mnist"), TypeError,
     "splits must be a DataSplits"),
    ("History.extend", lambda m: train.History().extend({"epoch": [1]}), TypeError, "later must be a History"),
    ("load root", lambda m: mp.load("cifar10", root=3), TypeError, "root must be a path"),
]


@pytest.mark.parametrize("label, call, error, fragment", WRONG_TYPES, ids=[c[0] for c in WRONG_TYPES])
def test_wrong_types_are_refused_with_the_argument_named(label, call, error, fragment):
    model = _mlp(eval_mode=True)
    _refused(lambda: call(model), error, fragment, model)


# ---- half precision and the meta device: supported or refused, function by function -----------------------

HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("label, call", [
    ("fit", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), progress=False)),
    ("distill_student student", lambda m: mp.distill_student(m, _mlp(), _loader(), progress=False)),
    ("distill_student teacher", lambda m: mp.distill_student(_mlp(), m, _loader(), progress=False)),
    ("distill_loss teacher", lambda m: mp.distill_loss(m)),
    ("GatedMLP", lambda m: gating.GatedMLP(m)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_training_refuses_half_precision(label, call, dtype):
    model = _mlp(dtype, eval_mode=True)
    message = _refused(lambda: call(model), ValueError, "works on float32 or float64 models", model)
    assert "model.float()" in message


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_evaluate_supports_half_precision(dtype):
    model = _mlp(dtype, eval_mode=True)
    metrics = mp.evaluate(model, _loader())
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["acc"] <= 100
    assert {p.dtype for p in model.parameters()} == {dtype} and not model.training
    assert mp.accuracy(model, _loader(dtype=dtype)) == metrics["acc"]


def test_evaluate_runs_a_float64_model_on_float32_batches():
    model = _mlp(torch.float64)
    assert mp.evaluate(model, _loader())["acc"] == mp.evaluate(model.float(), _loader())["acc"]


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_narrowing_supports_half_precision(dtype):
    small = gating.narrow_mlp(_mlp(dtype), (10, 5))
    assert {p.dtype for p in small.parameters()} == {dtype}


@pytest.mark.parametrize("label, call", [
    ("fit", lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), progress=False)),
    ("evaluate", lambda m: mp.evaluate(m, _loader())),
    ("distill_student", lambda m: mp.distill_student(_mlp(), m, _loader(), progress=False)),
    ("narrow_mlp", lambda m: gating.narrow_mlp(m, (10, 5))),
    ("DynamicSparseTrainer", lambda m: sparse_training.DynamicSparseTrainer(m)),
    ("GradualPruner", lambda m: gradual.GradualPruner(m, lambda s: 0.0)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_meta_models_are_refused(label, call):
    model = _meta_mlp()
    with pytest.raises(ValueError, match="on the meta device"):
        call(model)
    assert all(p.is_meta for p in model.parameters())
