import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import minprune as mp
from minprune import masked


def test_lenet300_known_answers():
    model = mp.build("lenet300")
    assert mp.count_params(model) == 266_610
    assert mp.count_macs(model) == 266_200  # 784*300 + 300*100 + 100*10


def test_lenet5_known_macs():
    # conv1: 6*28*28*25, conv2: 16*10*10*150, fc: 400*120 + 120*84 + 84*10
    assert mp.count_macs(mp.build("lenet5")) == 6 * 784 * 25 + 16 * 100 * 150 + 48_000 + 10_080 + 840


def test_macs_by_module_sum_to_total():
    model = mp.build("lenet300")
    per = mp.count_macs(model, by_module=True)
    assert per["total"] == 266_200
    assert per["layers.1"] == 784 * 300 and per["layers.5"] == 1000


def test_nonzeros_and_sparsity_see_torch_prune_masks():
    model = mp.build("lenet300")
    torch_prune.l1_unstructured(model.layers[1], "weight", amount=0.5)
    assert mp.count_params(model) == 266_610  # the reparametrisation does not double-count
    assert mp.count_nonzeros(model) == 266_610 - 784 * 300 // 2
    assert mp.layer_sparsity(model)["layers.1.weight"] == pytest.approx(0.5)
    assert mp.layer_sparsity(model)["layers.3.weight"] == 0.0
    assert mp.model_sparsity(model) == pytest.approx(784 * 150 / 266_610)


def test_latency_reports_and_restores_threads():
    before = torch.get_num_threads()
    out = mp.latency(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2), batch_size=8, threads=1,
                     warmup=1, repeats=5)
    assert out["median_ms"] > 0 and out["p10_ms"] <= out["median_ms"] <= out["p90_ms"]
    assert out["batch_size"] == 8 and out["threads"] == 1 and torch.get_num_threads() == before


def test_latency_runs_on_one_thread_unless_told_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).train()
    out = mp.latency(model, (1, 2, 2), batch_size=2, warmup=0, repeats=2)
    assert out["threads"] == 1 and out["device"] == "cpu" and model.training
    assert mp.latency(model, (1, 2, 2), threads=None, repeats=1)["threads"] == torch.get_num_threads()


def test_latency_bad_arguments():
    model = mp.build("lenet300")
    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        mp.latency(model, threads=0)
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        mp.latency(model, repeats=0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        mp.latency(model, warmup=-1)
    with pytest.raises(ValueError, match="input_shape"):
        mp.latency(nn.Linear(2, 2))


def test_summary_times_with_latency_options_or_not_at_all():
    model = mp.build("lenet300")
    row = mp.summary(model, timing=mp.LatencyOptions(batch_size=2, warmup=0, repeats=1))
    assert row["ms@b2"] > 0 and row["device"] == "cpu" and "ms@b64" not in row
    assert "ms@b64" in mp.summary(model, timing=mp.LatencyOptions(repeats=1)) and "device" in mp.summary(model)
    assert "device" not in mp.summary(model, timing=False)
    with pytest.raises(TypeError, match="timing must be True, False or a LatencyOptions, got dict"):
        mp.summary(model, timing={"threads": 2})


def test_size_on_disk_tracks_parameters_and_compresses_zeros():
    dense = mp.build("lenet300")
    size = mp.size_on_disk(dense)
    assert 266_610 * 4 < size["bytes"] < 266_610 * 4 + 20_000
    with torch.no_grad():
        for p in dense.parameters():
            p.zero_()
    assert mp.size_on_disk(dense)["zip_bytes"] < size["zip_bytes"] / 20


def test_compare_table():
    table = mp.compare({"a": mp.build("lenet300"), "b": mp.build("lenet5")}, timing=False)
    assert table.column("model") == ["a", "b"]
    assert table.column("params") == [266_610, 61_706]
    assert table.column("x smaller")[0] == 1.0 and table.column("x smaller")[1] > 3
    text, html = str(table), table._repr_html_()
    assert "266,610" in text and "<table>" in html and "| model |" in table.to_markdown()
    with pytest.raises(ValueError, match="models must be a non-empty dict"):
        mp.compare({})
    timed = mp.compare({"a": mp.build("lenet300")}, timing=mp.LatencyOptions(batch_size=4, repeats=1))
    assert timed.column("ms@b4")[0] > 0


def test_effective_parameters_names():
    model = mp.build("lenet300")
    torch_prune.random_unstructured(model.layers[3], "weight", amount=0.3)
    names = list(masked.effective_parameters(model))
    assert sorted(names) == sorted(n for n, _ in mp.build("lenet300").named_parameters())
