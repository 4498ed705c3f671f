"""The device rule: `mp.device()`, its MINPRUNE_DEVICE override and its errors, and where each function runs.

Without a GPU, "uses the rule" is proved with a rule that says 'meta' (a device with shapes and no data): a model
that really went there ends on it and fails at the first value read. Tests marked `cuda` run on a real GPU
(tools/gpu_check.sh) and compare with the CPU.
"""

import dataclasses
import re

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

import minprune as mp
from minprune import devices
from minprune.dynamic import gating
from minprune.pipeline import recipe, stages
from minprune.pipeline import runner as pipeline


def _loader(n: int = 32, shape=(1, 28, 28), batch_size: int = 8):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)


def _on(model: torch.nn.Module) -> str:
    return next(model.parameters()).device.type


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as a CPU-only one, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_count", lambda kind: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(devices, "_count", lambda kind: 2 if kind == "cuda" else 0)


@pytest.fixture
def rule_says_meta(monkeypatch):
    """The rule picks 'meta' (and the device checks let it through)."""
    monkeypatch.setattr(devices, "device", lambda: torch.device("meta"))
    monkeypatch.setattr(devices, "_why_unusable", lambda dev: None)


# ---- the rule ---------------------------------------------------------------------------------------------

def test_default_is_cuda_when_available_else_cpu(monkeypatch):
    monkeypatch.delenv(devices.ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mp.device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mp.device() == torch.device("cpu")
    monkeypatch.setenv(devices.ENV, "  ")  # blank counts as unset
    assert mp.device() == torch.device("cpu")


def test_the_environment_variable_overrides_the_default(monkeypatch, two_gpus):
    for value, expected in [("cpu", "cpu"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1")]:
        monkeypatch.setenv(devices.ENV, value)
        assert mp.device() == torch.device(expected), value
    assert devices.available() == ["cpu", "cuda:0", "cuda:1"]


@pytest.mark.parametrize("value, fragments", [
    ("banana", ["MINPRUNE_DEVICE='banana'", "is not a device name", "available here: cpu", "unset MINPRUNE_DEVICE"]),
    ("cuda", ["MINPRUNE_DEVICE='cuda'", "torch.cuda.is_available() is False", "available here: cpu"]),
    ("mps", ["MINPRUNE_DEVICE='mps'", "torch.backends.mps.is_available() is False"]),
    ("meta", ["MINPRUNE_DEVICE='meta'", "not meta", "available here: cpu"]),
    ("cpu:1", ["MINPRUNE_DEVICE='cpu:1'", "one CPU device"]),
])
def test_a_value_naming_no_usable_device_is_refused(monkeypatch, no_gpu, value, fragments):
    monkeypatch.setenv(devices.ENV, value)
    with pytest.raises(ValueError) as info:
        mp.device()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_gpu_index_beyond_the_last_is_refused(monkeypatch, two_gpus):
    monkeypatch.setenv(devices.ENV, "cuda:2")
    with pytest.raises(ValueError, match=r"2 cuda device\(s\), numbered from 0; available here: cpu, cuda:0, cuda:1"):
        mp.device()


def test_a_bad_device_argument_is_refused_before_anything_changes(no_gpu):
    model = mp.build("lenet300")
    before = _state(model)
    for bad, fragment in [("banana", "not a device name"), ("cuda", "torch.cuda.is_available() is False")]:
        with pytest.raises(ValueError, match=f"device='{bad}'.*{re.escape(fragment)}"):
            mp.fit(model, _loader(), mp.TrainConfig(epochs=1), progress=False, device=bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_has_no_second_rule():
    assert not hasattr(mp.train, "default_device")
    assert mp.device is devices.device and not hasattr(mp.train, "model_device")


# ---- training and evaluation move the model to the rule's device ------------------------------------------

def test_fit_and_evaluate_move_the_model_to_the_rule(rule_says_meta):
    for call in (lambda m: mp.fit(m, _loader(), mp.TrainConfig(epochs=1), progress=False),
                 lambda m: mp.evaluate(m, _loader()), lambda m: mp.accuracy(m, _loader())):
        model = mp.build("lenet300")
        with pytest.raises(RuntimeError, match="meta"):
            call(model)
        assert _on(model) == "meta"


def test_fine_tuning_and_iterative_pruning_move_the_model_to_the_rule(rule_says_meta):
    for call in (lambda m: mp.fine_tune(m, _loader(), mp.TrainConfig(epochs=1)),
                 lambda m: mp.iterative_prune(m, mp.magnitude_scores, [0.5], _loader())):
        model = mp.build("lenet300")
        with pytest.raises((RuntimeError, ValueError), match="meta"):  # torch's error there, or the kit's refusal
            call(model)
        assert _on(model) == "meta"


def test_distillation_moves_student_and_teacher_to_the_rule(rule_says_meta):
    student, teacher = mp.build("lenet300", hidden=(20, 10)), mp.build("lenet300")
    with pytest.raises(RuntimeError, match="meta"):
        mp.distill_student(student, teacher, _loader(), train=mp.TrainConfig(epochs=1), progress=False)
    assert _on(student) == _on(teacher) == "meta"


def test_an_explicit_device_beats_the_rule(rule_says_meta, monkeypatch):
    model, twin = mp.build("lenet300"), mp.build("lenet300")
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    mp.fit(model, _loader(), mp.TrainConfig(epochs=1), progress=False, device="cpu")
    monkeypatch.setattr(devices, "device", lambda: torch.device("cpu"))
    torch.manual_seed(1)
    mp.fit(twin, _loader(), mp.TrainConfig(epochs=1), progress=False)
    assert _on(model) == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


class _Stop(Exception):
    pass


def test_the_pipeline_trains_on_the_rule(monkeypatch, rule_says_meta):
    seen = {}

    def spy_fit(model, loader, config=None, **kwargs):
        seen["device"] = kwargs.get("device")
        raise _Stop

    monkeypatch.setattr(stages, "fit", spy_fit)
    config = recipe.from_dict({"base": {"arch": "lenet300", "source": "train", "epochs": 1}})
    with pytest.raises(_Stop):
        pipeline.run_pipeline(config, mp.load("mnist-small"), timing=False)
    assert seen["device"] == torch.device("meta")


# ---- scoring runs on the rule's device, the model stays put ----------------------------------------------

SCORES = {
    "taylor": lambda m, **kw: mp.taylor_scores(m, _loader(), **kw),
    "gradient": lambda m, **kw: mp.gradient_scores(m, _loader(), **kw),
    "snip": lambda m, **kw: mp.snip_scores(m, _loader(), **kw),
    "grasp": lambda m, **kw: mp.grasp_scores(m, _loader(), **kw),
    "synflow": lambda m, **kw: mp.synflow_scores(m, **kw),
    "synflow_masks": lambda m, **kw: mp.synflow_masks(m, 0.5, rounds=2, **kw),
    "taylor_unit": lambda m, **kw: mp.taylor_unit_scores(m, _loader(), **kw),
    "activation": lambda m, **kw: mp.activation_scores(m, _loader(), **kw),
}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_scores_compute_on_the_rule_without_moving_the_model(rule_says_meta, name):
    model = mp.build("lenet5")
    before = _state(model)
    with pytest.raises((RuntimeError, NotImplementedError, ValueError), match="meta"):  # computed there: no data
        SCORES[name](model)
    assert _on(model) == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", sorted(SCORES))
def test_an_explicit_device_beats_the_rule_for_scores(rule_says_meta, name, monkeypatch):
    model = mp.build("lenet5")
    got = SCORES[name](model, device="cpu")
    monkeypatch.setattr(devices, "device", lambda: torch.device("cpu"))
    expected = SCORES[name](model)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) and got[k].device.type == "cpu" for k in got)


# ---- measuring and CPU-only work never follow the rule ----------------------------------------------------

def test_measuring_runs_where_the_model_is_and_says_so(rule_says_meta):
    model = mp.build("lenet300")
    assert mp.latency(model, repeats=1, warmup=0)["device"] == "cpu"
    row = mp.summary(model, _loader())
    assert row["device"] == "cpu" and "acc" in row
    assert "device" not in mp.summary(model, timing=False)
    assert mp.layer_latency(model, repeats=1, warmup=0).title.endswith("on cpu")
    grid = mp.latency_grid({"a": model}, model.input_shape, batch_sizes=(2,), threads=(1,), repeats=1, warmup=0)
    assert grid.title.endswith("on cpu")
    assert _on(model) == "cpu"


def test_an_int8_model_runs_on_the_cpu_whatever_the_rule(rule_says_meta):
    int8 = mp.dynamic_int8(mp.build("lenet300"))
    assert devices.cpu_only(int8) and not devices.cpu_only(mp.build("lenet300"))
    assert devices.resolve(int8) == torch.device("cpu")
    assert 0 <= mp.evaluate(int8, _loader())["acc"] <= 100
    with pytest.raises(ValueError, match="int8 kernels, which exist for the CPU only; pass device='cpu'"):
        mp.evaluate(int8, _loader(), device="cuda")


def test_the_pipeline_table_measures_on_the_cpu():
    splits = mp.load("mnist-small")
    small = dataclasses.replace(splits, train=Subset(splits.train, range(128)))
    config = recipe.from_dict({"base": {"arch": "lenet300", "source": "train", "epochs": 1},
                               "finetune": {"epochs": 0}, "quantize": {"method": "dynamic-int8"},
                               "measure": {"repeats": 1}})
    result = mp.run_pipeline(config, small, device="cpu")
    assert [row["device"] for row in result.table.rows] == ["cpu"] * len(result.table.rows)


# ---- callbacks and built models follow the model ----------------------------------------------------------

def test_sparse_training_masks_follow_the_model():
    model = mp.build("lenet300")
    dst = mp.DynamicSparseTrainer(model, mp.SparseConfig(sparsity=0.8, method="set"))
    model.to("meta")
    dst.apply(model)
    assert {m.device.type for m in dst.masks.values()} == {"meta"}


def test_gating_builds_beside_the_mlp():
    mlp = mp.build("lenet300")
    gated = gating.GatedMLP(mlp)
    assert {p.device.type for p in gated.parameters()} == {"cpu"}
    x = torch.randn(3, 1, 28, 28)
    assert gating.gated_macs(gated, x).device == x.device
    assert _on(gating.narrow_mlp(mlp, (10, 5))) == "cpu"


# ---- on a real GPU (tools/gpu_check.sh) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    splits = mp.load("mnist-small")
    return dataclasses.replace(splits, train=Subset(splits.train, range(256)))


def _cpu_and_cuda(build, train, seed: int = 0):
    """The same seeded `train(model, device)` on the CPU and on the GPU; returns the two models."""
    out = []
    for device in ("cpu", "cuda"):
        mp.seed_everything(seed)
        model = build()
        train(model, device)
        out.append(model)
    return out


def _close(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-3) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k].float().cpu(), sb[k].float().cpu(), atol=atol)
                                          for k in sa)


@pytest.mark.cuda
def test_fit_and_evaluate_on_cuda(small):
    test = small.loader("test", 500)
    cpu, gpu = _cpu_and_cuda(lambda: mp.build("lenet300"),
                             lambda m, d: mp.fit(m, small.loader("train", 64, seed=0), mp.TrainConfig(epochs=1),
                                                 progress=False,
                                                 device=d))
    assert _on(cpu) == "cpu" and _on(gpu) == "cuda"
    assert _close(cpu, gpu)
    a, b = mp.evaluate(cpu, test, device="cpu"), mp.evaluate(gpu, test)  # default rule: the GPU
    assert _on(gpu) == "cuda" and abs(a["loss"] - b["loss"]) < 1e-3 and abs(a["acc"] - b["acc"]) <= 0.2


@pytest.mark.cuda
def test_taylor_scores_on_cuda(small):
    model = mp.build("lenet300")
    loader = small.loader("train", 64, shuffle=False)
    on_cpu = mp.taylor_scores(model, loader, device="cpu")
    computed_on_gpu = mp.taylor_scores(model, loader)  # the model stays on the CPU, so do the scores
    assert _on(model) == "cpu" and {s.device.type for s in computed_on_gpu.values()} == {"cpu"}
    model.cuda()
    on_gpu = mp.taylor_scores(model, loader)
    assert {s.device.type for s in on_gpu.values()} == {"cuda"}
    for name in on_cpu:
        assert torch.allclose(on_cpu[name], on_gpu[name].cpu(), rtol=1e-3, atol=1e-7)
        assert torch.allclose(on_cpu[name], computed_on_gpu[name], rtol=1e-3, atol=1e-7)


@pytest.mark.cuda
def test_fine_tune_on_cuda(small):
    def pruned():
        model = mp.build("lenet300")
        mp.prune(model, mp.magnitude_scores(model), 0.8)
        return model

    cpu, gpu = _cpu_and_cuda(pruned, lambda m, d: mp.fine_tune(m, small, mp.TrainConfig(epochs=1), device=d))
    assert _on(gpu) == "cuda" and _close(cpu, gpu)
    assert mp.masks_sparsity(mp.get_masks(gpu)) == mp.masks_sparsity(mp.get_masks(cpu))


@pytest.mark.cuda
def test_distill_student_on_cuda(small):
    teacher = mp.build("lenet300")

    def train(student, device):
        mp.distill_student(student, teacher, small.loader("train", 64, seed=0), mp.KDConfig(max_shift=2, mixup=1.0),
                           mp.TrainConfig(epochs=1), progress=False, device=device)

    cpu, gpu = _cpu_and_cuda(lambda: mp.build("lenet300", hidden=(50, 20)), train)
    assert _on(gpu) == _on(teacher) == "cuda"
    assert _close(cpu, gpu)


@pytest.mark.cuda
def test_run_pipeline_on_cuda(small):
    values = {"name": "tiny", "base": {"arch": "lenet300", "source": "train", "epochs": 1},
              "prune": {"method": "weight", "sparsity": 0.5, "score": "taylor"}, "finetune": {"epochs": 1},
              "quantize": {"method": "dynamic-int8"}, "measure": {"repeats": 2}}
    on_cpu = mp.run_pipeline(recipe.from_dict(values), small, device="cpu")
    on_gpu = mp.run_pipeline(recipe.from_dict(values), small)
    for name, model in on_gpu.models.items():
        assert devices.model_device(model).type == ("cpu" if devices.cpu_only(model) else "cuda"), name
    for a, b in zip(on_cpu.table.rows, on_gpu.table.rows):
        assert a["stage"] == b["stage"] and b["device"] == "cpu"
        assert (a["params"], a["nonzeros"], a["MACs"]) == (b["params"], b["nonzeros"], b["MACs"])
        assert abs(a["acc"] - b["acc"]) <= 1.0


@pytest.mark.cuda
def test_cpu_only_work_accepts_a_gpu_model(small):
    model = mp.build("lenet300").cuda()
    plain, notes = mp.deployable_copy(model)
    assert _on(plain) == "cpu" and any("to the CPU" in note for note in notes)
    assert _on(model) == "cuda"
    assert mp.size_on_disk(model) == mp.size_on_disk(model.cpu())
    x = torch.randn(4, 1, 28, 28)
    int8, from_cpu = mp.dynamic_int8(model.cuda()), mp.dynamic_int8(model.cpu())
    assert torch.equal(int8(x), from_cpu(x))  # quantized from a CPU copy
    static = mp.static_int8(model.cuda(), [x.cuda()])  # calibration batches on the GPU are fine too
    assert static(x).shape == (4, 10) and _on(model) == "cuda"


@pytest.mark.cuda
def test_random_reinit_gives_the_same_control_on_cuda():
    model = mp.build("lenet300")
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    on_cpu = mp.copy_model(model)
    mp.random_reinit(model.cuda(), seed=1)
    mp.random_reinit(on_cpu, seed=1)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(model.state_dict().values(), on_cpu.state_dict().values()))


@pytest.mark.cuda
def test_timing_on_cuda_names_the_gpu():
    model = mp.build("lenet5").cuda()
    assert mp.latency(model, repeats=2, warmup=1)["device"].startswith("cuda")
    assert "cuda" in mp.layer_latency(model, repeats=1, warmup=1).title
    grid = mp.latency_grid({"gpu": model, "cpu": mp.build("lenet5")}, model.input_shape, batch_sizes=(4,),
                           threads=(1,), repeats=1, warmup=1)
    assert grid.title.endswith("on cuda:0, cpu")
    assert set(mp.timing.interleaved_latency({"gpu": model}, model.input_shape, rounds=1)) == {"gpu"}


@pytest.mark.cuda
def test_callbacks_follow_the_model_to_cuda(small):
    loader = small.loader("train", 64, seed=0)
    model = mp.build("lenet300")
    dst = mp.DynamicSparseTrainer(model, mp.SparseConfig(sparsity=0.8, method="rigl", interval=2, end=4))
    mp.fit(model, loader, mp.TrainConfig(epochs=1), progress=False, callbacks=[dst])
    assert {m.device.type for m in dst.masks.values()} == {"cuda"}
    cnn = mp.build("lenet5")
    pruner = mp.GradualPruner(cnn, mp.make_schedule("cubic", 0.5, end=3, interval=1), structured=True)
    mp.fit(cnn, loader, mp.TrainConfig(epochs=1), progress=False, callbacks=[pruner])
    assert _on(pruner.finish(cnn)) == "cuda"
    gated = gating.GatedMLP(model)
    x = small.sample(4, "test")[0].cuda()
    assert torch.allclose(gating.sparse_forward(gated.eval(), x), gated(x), atol=1e-5)
