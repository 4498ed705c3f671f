"""Per-layer latency and the spread of a speedup: which layer the time goes to, hooks cleaned up, the
median/lowest/highest arithmetic. Timings are only bounded from below (a sleep never ends early)."""

import time

import pytest
import torch
from torch import nn

import minprune as mp
from minprune import timing


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
    assert table.column("layer") == names + [timing.OUTSIDE]
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
                      "classifier.3", "classifier.5", timing.OUTSIDE]


def test_layers_side_by_side_leave_blanks_where_int8_fused_a_relu():
    model = mp.build("lenet5")
    quantized = mp.static_int8(model, torch.rand(64, 1, 28, 28))
    table = mp.compare_layer_latency({"float": model, "int8": quantized}, repeats=2, warmup=1)
    rows = {row["layer"]: row for row in table.rows}
    assert table.columns == ["layer", "float ms", "float %", "int8 ms", "int8 %"]
    assert list(rows)[-1] == timing.OUTSIDE and len(rows) == 13  # 12 float layers, then the rest
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


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size must be an int >= 1"),
                                             ({"warmup": -1}, "warmup must be an int >= 0"),
                                             ({"repeats": True}, "repeats must be an int >= 1")])
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
