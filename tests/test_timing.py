"""The one timer and what is built on it: interleaving order, warm calls, threads and modes restored, sessions
recognised by duck typing; per-layer latency (which layer the time goes to, hooks cleaned up) and the spread of
a speedup (median/lowest/highest arithmetic). Timings are only bounded from below (a sleep never ends early)."""

import time

import pytest
import torch
from torch import nn

import minprune as mp
from minprune import profile, timing


class Sleep(nn.Module):
    """Waits `seconds` and passes its input on: a layer whose time we know."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


class TwiceSlow(nn.Module):
    """Calls one slow layer twice, as a ResNet block calls its one ReLU twice."""

    def __init__(self):
        super().__init__()
        self.fc, self.slow = nn.Linear(4, 4), Sleep(0.004)

    def forward(self, x):
        return self.slow(self.fc(self.slow(x)))


def _hooks(model):
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()]


def test_every_layer_of_lenet5_gets_a_row_and_the_shares_add_up():
    model = mp.build("lenet5").train()
    hooks = _hooks(model)
    table = mp.layer_latency(model, repeats=3, warmup=1)
    names = [name for name, m in model.named_modules() if name and not list(m.children())]
    assert table.column("layer") == names + [profile.OUTSIDE]
    assert table.column("type")[:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert all(ms >= 0 for ms in table.column("ms"))
    assert sum(table.column("share %")) >= 100 - 1e-6
    assert model.training and _hooks(model) == hooks  # mode restored, timers removed


def test_int8_layers_carry_the_float_names():
    model = mp.build("lenet5")
    quantized = mp.static_int8(model, torch.rand(64, 1, 28, 28))
    layers = mp.layer_latency(quantized, repeats=2, warmup=1).column("layer")
    # convolutions and Linear layers fused with their ReLU: one row each, named as in the float model
    assert layers == ["features.0", "features.2", "features.3", "features.5", "classifier.0", "classifier.1",
                      "classifier.3", "classifier.5", profile.OUTSIDE]


def test_layers_side_by_side_leave_blanks_where_int8_fused_a_relu():
    model = mp.build("lenet5")
    quantized = mp.static_int8(model, torch.rand(64, 1, 28, 28))
    table = mp.compare_layer_latency({"float": model, "int8": quantized}, repeats=2, warmup=1)
    rows = {row["layer"]: row for row in table.rows}
    assert table.columns == ["layer", "float ms", "float %", "int8 ms", "int8 %"]
    assert list(rows)[-1] == profile.OUTSIDE and len(rows) == 13  # 12 float layers, then the rest
    assert rows["features.1"]["int8 ms"] == "" and rows["features.1"]["float ms"] >= 0
    assert rows["features.0"]["int8 ms"] >= 0 and rows["classifier.5"]["int8 %"] >= 0


def test_the_time_goes_to_the_slow_layer_and_repeated_calls_add_up():
    model = nn.Sequential(nn.Linear(4, 4), Sleep(0.005))
    rows = {row["layer"]: row for row in mp.layer_latency(model, (4,), repeats=3, warmup=0, threads=None).rows}
    assert rows["1"]["ms"] >= 5 and rows["1"]["share %"] > 50
    twice = {row["layer"]: row for row in mp.layer_latency(TwiceSlow(), (4,), repeats=3, warmup=0).rows}
    assert twice["slow"]["ms"] >= 8 and twice["slow"]["share %"] > twice["fc"]["share %"]


def test_speedup_spread_reports_median_lowest_and_highest(monkeypatch):
    passes = iter([{"dense": 4.0, "small": 2.0}, {"dense": 6.0, "small": 1.5}, {"dense": 3.0, "small": 2.0}])
    monkeypatch.setattr(timing, "interleaved_latency", lambda models, *args, **kwargs: next(passes))
    table = mp.speedup_spread({"dense": None, "small": None}, (1, 28, 28), passes=3)
    rows = {row["model"]: row for row in table.rows}
    assert rows["dense"] == {"model": "dense", "x faster": 1.0, "lowest": 1.0, "highest": 1.0, "passes": 3}
    assert (rows["small"]["x faster"], rows["small"]["lowest"], rows["small"]["highest"]) == (2.0, 1.5, 4.0)


def test_speedup_spread_times_real_models_against_the_named_baseline():
    small, big = nn.Linear(8, 2), nn.Sequential(nn.Linear(8, 512), nn.Linear(512, 2))
    rows = mp.speedup_spread({"small": small, "big": big}, (8,), baseline="big", passes=2, rounds=2).rows
    assert rows[1]["model"] == "big" and rows[1]["x faster"] == rows[1]["lowest"] == 1.0
    assert rows[0]["lowest"] <= rows[0]["x faster"] <= rows[0]["highest"] and rows[0]["passes"] == 2


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size must be a positive int"),
                                             ({"warmup": -1}, "warmup must be an int >= 0"),
                                             ({"repeats": True}, "repeats must be a positive int"),
                                             ({"threads": 0}, "threads must be a positive int or None")])
def test_bad_counts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mp.layer_latency(mp.build("lenet300"), **kwargs)


def test_interleaved_latency_times_in_eval_mode_and_restores_each_mode():
    seen = []

    class Spy(nn.Linear):
        def forward(self, x):
            seen.append(self.training)
            return super().forward(x)

    trained, evaluated = Spy(8, 2).train(), Spy(8, 2).eval()
    ms = mp.timing.interleaved_latency({"a": trained, "b": evaluated}, (8,), batch_size=2, rounds=2, per_round=2)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())
    assert len(seen) == 2 * 2 * (1 + 2) and not any(seen)  # one warm call and two timed calls per model and round
    assert trained.training and not evaluated.training


def test_a_sampler_keeps_every_pass_until_asked_for_the_table(monkeypatch):
    passes = iter([{"dense": 4.0, "small": 1.0}, {"dense": 4.0, "small": 2.0}])
    monkeypatch.setattr(timing, "interleaved_latency", lambda models, *args, **kwargs: next(passes))
    sampler = mp.timing.SpeedupSampler({"dense": None, "small": None}, (1, 28, 28), rounds=1)
    with pytest.raises(ValueError, match="no passes yet"):
        sampler.table()
    sampler.sample()
    assert sampler.passes == 1 and sampler.table().rows[1]["x faster"] == 4.0
    sampler.sample()
    assert sampler.ratios["small"] == [4.0, 2.0] and sampler.table().rows[1]["x faster"] == 3.0


def test_timing_leaves_the_global_random_stream_alone():
    model = nn.Linear(8, 2)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    mp.timing.interleaved_latency({"a": model}, (8,), batch_size=2, rounds=1, per_round=1)
    assert torch.equal(torch.rand(3), expected)


class Recorder(nn.Linear):
    """A Linear layer that logs (name, training flag, torch's thread count, input layout) at every call."""

    def __init__(self, name: str, log: list):
        super().__init__(8, 2)
        self.name, self.log = name, log

    def forward(self, x):
        self.log.append((self.name, self.training, torch.get_num_threads(), x.is_contiguous()))
        return super().forward(x)


def test_time_models_interleaves_turns_with_one_warm_call_each():
    log = []
    models = {"a": Recorder("a", log), "b": Recorder("b", log)}
    timed = mp.time_models(models, torch.zeros(2, 8), rounds=2, per_round=2, warmup=1)
    assert [name for name, *_ in log] == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert {name: len(s) for name, s in timed.samples.items()} == {"a": 2, "b": 2}  # the warm-up round is dropped
    assert all(ms > 0 for s in timed.samples.values() for ms in s)
    assert (timed.batch_size, timed.threads, timed.device) == (2, 1, "cpu")
    assert timed.medians().keys() == {"a", "b"} and timed.describe() == "batch 2, 1 thread(s), on cpu"


def test_one_model_needs_no_warm_call_between_its_rounds():
    log = []
    timed = mp.time_models({"a": Recorder("a", log)}, torch.zeros(2, 8), rounds=3, per_round=1, warmup=2)
    assert len(log) == 2 + 3 and len(timed.samples["a"]) == 3


@pytest.mark.parametrize("threads", [1, 2, None])
def test_threads_are_set_stated_and_restored(threads):
    log, before = [], torch.get_num_threads()
    timed = mp.time_models({"a": Recorder("a", log)}, torch.zeros(2, 8), threads=threads, rounds=1, per_round=1)
    expected = before if threads is None else threads
    assert timed.threads == expected and {n for _, _, n, _ in log} == {expected}
    assert torch.get_num_threads() == before


def test_modes_are_restored_and_timing_runs_in_eval_mode():
    log = []
    trained, evaluated = Recorder("t", log).train(), Recorder("e", log).eval()
    mp.time_models({"t": trained, "e": evaluated}, torch.zeros(2, 8), rounds=1, per_round=1)
    assert not any(training for _, training, _, _ in log)
    assert trained.training and not evaluated.training


def test_a_failing_model_still_restores_threads_and_modes():
    class Broken(nn.Linear):
        def forward(self, x):
            raise RuntimeError("boom")

    model, before = Broken(8, 2).train(), torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        mp.time_models({"broken": model}, torch.zeros(2, 8), threads=1)
    assert model.training and torch.get_num_threads() == before


class FakeSession:
    """Runs like an ONNX Runtime InferenceSession (`run`, `get_inputs`), without onnxruntime."""

    class Input:
        name = "input"

    def __init__(self):
        self.fed = []

    def get_inputs(self):
        return [self.Input()]

    def run(self, outputs, feed):
        self.fed.append(feed["input"])
        return [feed["input"][:, :2]]


def test_sessions_are_recognised_by_what_they_do():
    session = FakeSession()
    assert timing.is_session(session) and not timing.is_session(nn.Linear(2, 2))
    timed = mp.time_models({"torch": nn.Linear(8, 2), "onnx": session}, torch.zeros(2, 8), rounds=2, per_round=1)
    assert len(session.fed) == 2 * 2 and session.fed[0].shape == (2, 8)  # a warm and a timed call per round
    assert timed.device == "cpu" and len(timed.samples["onnx"]) == 2


def test_a_channels_last_model_is_fed_nhwc_inputs():
    log = []

    class Conv(nn.Conv2d):
        def forward(self, x):
            log.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return super().forward(x)

    nhwc = Conv(3, 4, 3).to(memory_format=torch.channels_last)
    assert timing.is_channels_last(nhwc) and not timing.is_channels_last(Conv(3, 4, 3))
    mp.time_models({"nchw": Conv(3, 4, 3), "nhwc": nhwc}, torch.zeros(2, 3, 8, 8), rounds=1, per_round=1)
    assert log == [False, False, True, True]  # per model: a warm call and a timed one


@pytest.mark.parametrize("models, kwargs, error, message", [
    ({}, {}, ValueError, "models must be a non-empty dict"),
    ({"a": "model"}, {}, TypeError, "torch.nn.Modules or ONNX Runtime sessions, got str for 'a'"),
    ({"a": nn.Linear(8, 2)}, {"rounds": 0}, ValueError, "rounds must be a positive int"),
    ({"a": nn.Linear(8, 2)}, {"per_round": 0}, ValueError, "per_round must be a positive int"),
    ({"a": nn.Linear(8, 2)}, {"warmup": -1}, ValueError, "warmup must be an int >= 0"),
    ({"a": nn.Linear(8, 2)}, {"threads": 0}, ValueError, "threads must be a positive int or None"),
])
def test_time_models_refuses_bad_arguments_before_running_anything(models, kwargs, error, message):
    model = models.get("a")
    mode = model.train().training if isinstance(model, nn.Module) else None
    with pytest.raises(error, match=message):
        mp.time_models(models, torch.zeros(2, 8), **kwargs)
    assert mode is None or model.training


def test_a_sampler_states_the_threads_it_used(monkeypatch):
    monkeypatch.setattr(timing, "interleaved_latency", lambda models, *args, **kwargs: {"dense": 2.0, "small": 1.0})
    sampler = mp.SpeedupSampler({"dense": None, "small": None}, (1, 28, 28), threads=None)
    sampler.sample()
    assert f"{torch.get_num_threads()} thread(s)" in sampler.table().title
    assert "1 thread(s)" in mp.speedup_spread({"dense": None, "small": None}, (8,), passes=1).title


def test_the_baseline_must_be_one_of_the_models():
    with pytest.raises(ValueError, match=r"baseline must be one of the model names \['dense'\], got 'fast'"):
        mp.SpeedupSampler({"dense": nn.Linear(8, 2)}, (8,), baseline="fast")
