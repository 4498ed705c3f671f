"""Sensitivity scan: the model is unchanged, curves have one point per grid value, per-layer choice is right."""

import pytest
import torch

import minprune as mp
from minprune.unstructured import sensitivity as SE


def test_scan_leaves_model_untouched_and_is_monotone_at_extremes():
    splits = mp.load("mnist-small")
    model = mp.build("lenet300", input_shape=splits.input_shape, num_classes=10, hidden=[32, 16])
    mp.fit(model, splits.loader("train", 128), mp.TrainConfig(epochs=1, lr=3e-3), progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = splits.loader("val", 500)
    result = SE.sensitivity_scan(model, loader, [0.0, 0.5, 0.99])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not mp.get_masks(model)
    assert list(result.acc) == mp.unstructured.masks.prunable_names(model)
    for accs in result.acc.values():
        assert len(accs) == 3
        assert accs[0] == pytest.approx(result.dense_acc)  # sparsity 0 changes nothing
    assert result.acc["layers.1.weight"][2] < result.dense_acc - 5  # 99% of the first layer hurts
    assert len(result.to_table().rows) == 3


def test_layer_sparsities_picks_largest_within_budget():
    result = SE.Sensitivity(dense_acc=90.0, sparsities=[0.5, 0.8, 0.9],
                            acc={"a": [90.0, 89.5, 80.0], "b": [85.0, 84.0, 70.0], "c": [90, 90, 89.2]})
    assert SE.layer_sparsities(result, 1.0) == {"a": 0.8, "b": 0.0, "c": 0.9}
    assert SE.layer_sparsities(result, 0.0) == {"a": 0.5, "b": 0.0, "c": 0.8}
    with pytest.raises(ValueError):
        SE.layer_sparsities(result, -1)


def test_scan_errors():
    model = mp.build("lenet300")
    loader = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
    with pytest.raises(ValueError, match="unknown"):
        SE.sensitivity_scan(model, loader, [0.5], names=["layers.7.weight"])
    with pytest.raises(ValueError, match="sparsity"):
        SE.sensitivity_scan(model, loader, [1.0])
