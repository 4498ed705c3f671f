"""Three survey bugs: float64 scores kept at float64, descriptions that save_model writes load back, and weight
tying counted once (scores: notebooks/02, checkpoints and counts: notebooks/01)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import minprune as mp
from minprune.models import describe

# --- 1. scores keep the weight's dtype -------------------------------------------------------------------------


def _float64_mlp(seed: int = 0) -> nn.Module:
    """A float64 MLP whose weights are +-(0.5 + k * 1e-12): distinct in float64, all +-0.5 in float32."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            w = layer.weight
            steps = torch.randperm(w.numel(), dtype=torch.float64).view(w.shape)
            signs = torch.where(torch.rand(w.shape) < 0.5, -1.0, 1.0).double()
            w.copy_(signs * (0.5 + steps * 1e-12))
    return model


def _batches(dtype=torch.float64, n: int = 2):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 16, generator=generator, dtype=dtype), torch.randint(0, 4, (8,), generator=generator))
            for _ in range(n)]


def test_the_weights_differ_only_below_float32_resolution():
    model = _float64_mlp()
    w = model[0].weight.detach()
    assert w.abs().unique().numel() == w.numel()  # all distinct in float64 ...
    assert torch.all(w.float().abs() == 0.5)  # ... all equal in float32


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_magnitude_masks_equal_torch_l1_unstructured_on_float64(sparsity):
    model = _float64_mlp()
    scores = mp.magnitude_scores(model)
    masks = mp.make_masks(scores, sparsity)
    for name in ("0.weight", "2.weight"):
        assert scores[name].dtype == torch.float64
        layer = _float64_mlp()[int(name[0])]
        torch_prune.l1_unstructured(layer, "weight", amount=sparsity)
        assert torch.equal(masks[name], layer.weight_mask.bool()), name


def test_magnitude_squared_is_exact_in_float64():
    model = _float64_mlp()
    assert torch.equal(mp.magnitude_scores(model, p=2)["0.weight"], model[0].weight.detach().abs().pow(2))


def test_float32_and_float16_weights_keep_float32_scores():
    model = nn.Sequential(nn.Linear(4, 3))
    assert mp.magnitude_scores(model)["0.weight"].dtype == torch.float32
    assert mp.magnitude_scores(model.half())["0.weight"].dtype == torch.float32  # as before: never below float32


def test_prune_on_float64_matches_torch_l1_unstructured():
    model = _float64_mlp()
    masks = mp.prune(model, mp.magnitude_scores(model), 0.5)
    layer = _float64_mlp()[0]
    torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    assert torch.equal(masks["0.weight"], layer.weight_mask.bool())


def test_global_masks_on_float64_match_torch_global_unstructured():
    model = _float64_mlp()
    masks = mp.make_masks(mp.magnitude_scores(model), 0.5, scope="global")
    reference = _float64_mlp()
    torch_prune.global_unstructured([(reference[0], "weight"), (reference[2], "weight")],
                                    pruning_method=torch_prune.L1Unstructured, amount=0.5)
    assert torch.equal(masks["0.weight"], reference[0].weight_mask.bool())


def test_gradient_scores_are_float64_and_exact_on_a_float64_model():
    model = _float64_mlp()
    data = _batches(n=1)
    x, y = data[0]
    loss = nn.functional.cross_entropy(model(x), y)
    expected = torch.autograd.grad(loss, [model[0].weight])[0].abs()
    got = mp.gradient_scores(model, data, batches=1)["0.weight"]
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("score", ["taylor", "snip", "grasp"])
def test_data_driven_scores_keep_the_weight_dtype(score):
    fn = {"taylor": mp.taylor_scores, "snip": mp.snip_scores, "grasp": mp.grasp_scores}[score]
    for model, dtype in ((_float64_mlp(), torch.float64), (_float64_mlp().float(), torch.float32)):
        scores = fn(model, _batches(dtype), batches=2)
        assert {s.dtype for s in scores.values()} == {dtype}


def test_synflow_scores_keep_the_weight_dtype():
    assert mp.synflow_scores(_float64_mlp(), input_shape=(16,))["0.weight"].dtype == torch.float64
    assert mp.synflow_scores(_float64_mlp().float(), input_shape=(16,))["0.weight"].dtype == torch.float32


def test_unit_scores_keep_the_weight_dtype_and_stay_on_cpu():
    model = _float64_mlp()
    for scores in (mp.norm_scores(model), mp.activation_scores(model, _batches(), stat="apoz"),
                   mp.activation_scores(model, _batches(), stat="mean")):
        assert {(s.dtype, s.device.type) for s in scores.values()} == {(torch.float64, "cpu")}
    apoz = mp.activation_scores(model.float(), _batches(torch.float32), stat="apoz")
    assert {s.dtype for s in apoz.values()} == {torch.float32}


# --- 2. every description save_model accepts loads back --------------------------------------------------------


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_model_built_from_numpy_numbers_saves_and_loads(tmp_path):
    model = mp.build("vgg", widths=np.array([8, 16]), num_classes=np.int64(10))
    assert describe(model) == {"arch": "vgg", "input_shape": [1, 28, 28], "num_classes": 10, "widths": [8, 16]}
    for description in (None, describe(model)):
        loaded, _ = mp.load_model(mp.save_model(tmp_path / "m.pt", model, description=description))
        assert _same_weights(model, loaded) and describe(loaded) == describe(model)


@pytest.mark.parametrize("model, description", [
    (mp.build("lenet300", hidden=[64, 32]), {"arch": "lenet300", "hidden": (64, 32)}),
    (mp.build("lenet5", input_shape=(3, 32, 32)), {"arch": "lenet5", "input_shape": torch.Size([3, 32, 32])}),
    (mp.build("resnet"), {"arch": "resnet"}),
])
def test_user_descriptions_that_save_load_back(tmp_path, model, description):
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "m.pt", model, description=description))
    assert _same_weights(model, loaded) and describe(loaded) == describe(model)


def test_a_masked_model_with_its_description_loads_back(tmp_path):
    model = mp.build("lenet300", hidden=[32, 16])
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "m.pt", model, description=describe(model)))
    assert _same_weights(model, loaded) and mp.count_nonzeros(loaded) == mp.count_nonzeros(model)


@pytest.mark.parametrize("description, error, match", [
    ({"arch": "lenet300", "hidden": [np.int64(64), 32]}, TypeError, r"description\['hidden'\]\[0\].*int64"),
    ({"arch": "lenet300", "hidden": [64, 32], "note": object()}, TypeError, r"description\['note'\]"),
    ({"arch": "lenet300", "hidden": [64, 32], "note": "10 epochs"}, ValueError, "cannot be rebuilt.*note"),
    ({"arch": "lenet300", "hidden": [64, 32], 3: 4}, ValueError, "cannot be rebuilt"),
    ("lenet300", ValueError, "cannot be rebuilt"),
    ({"arch": "lenet300", "hidden": [64.0, 32.0]}, ValueError, "cannot be rebuilt"),
    ({"arch": "lenet300"}, ValueError, "weights do not fit"),
    ({"arch": "lenet5"}, ValueError, "weights do not fit"),
    ({"arch": "lenet300", "hidden": [64, 32], "input_shape": [4, 14, 14]}, ValueError, "but the model is"),
])
def test_bad_descriptions_are_refused_before_writing(tmp_path, description, error, match):
    model, path = mp.build("lenet300", hidden=[64, 32]), tmp_path / "m.pt"
    mp.save_model(path, model)
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        mp.save_model(path, model, description=description)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    with pytest.raises(error, match=match):
        mp.save_model(tmp_path / "new.pt", model, description=description)
    assert not (tmp_path / "new.pt").exists()


def test_weights_that_fit_another_geometry_are_refused(tmp_path):
    # LeNet-5 on 32x32 (no padding) has the same weight shapes as on 28x28 (padding 2): only describe() tells
    with pytest.raises(ValueError, match="but the model is"):
        mp.save_model(tmp_path / "m.pt", mp.build("lenet5"), description={"arch": "lenet5", "input_shape": [1, 32, 32]})
    assert not (tmp_path / "m.pt").exists()


# --- 3. a shared tensor is counted once ------------------------------------------------------------------------


class Tied(nn.Module):
    """Three 6x6 layers; the third reuses the first one's weight (weight tying)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.c.weight = self.a.weight

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _dedup_numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once


def test_tied_weights_count_once():
    model = Tied()
    assert _dedup_numel(model) == 3 * 6 + 2 * 36
    assert mp.count_params(model) == _dedup_numel(model) == mp.count_nonzeros(model)
    with torch.no_grad():
        model.a.weight[0] = 0.0
    assert mp.count_nonzeros(model) == _dedup_numel(model) - 6
    assert mp.model_sparsity(model) == pytest.approx(6 / _dedup_numel(model))


def test_a_module_reachable_under_two_names_counts_once():
    model = Tied()
    model.d = model.b
    assert mp.count_params(model) == _dedup_numel(model) == 90


def test_a_tied_weight_pruned_in_one_layer_is_still_used_by_the_other():
    model = Tied()
    torch_prune.l1_unstructured(model.a, "weight", amount=0.5)
    assert model.a.weight_orig is model.c.weight
    assert mp.count_params(model) == _dedup_numel(model) == 90
    assert mp.count_nonzeros(model) == 90  # c still multiplies by every entry
    assert mp.model_sparsity(model) == 0.0


def test_a_tied_weight_pruned_in_both_layers_counts_its_zeros_once():
    model = Tied()
    torch_prune.l1_unstructured(model.a, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.c, "weight", amount=0.5)
    assert model.a.weight_orig is model.c.weight_orig
    assert mp.count_params(model) == _dedup_numel(model) == 90
    assert mp.count_nonzeros(model) == 90 - 18
    assert mp.model_sparsity(model) == pytest.approx(18 / 90)
    mp.make_permanent(model)
    assert model.a.weight is model.c.weight
    assert (mp.count_params(model), mp.count_nonzeros(model)) == (90, 72)


def test_minprune_masks_on_a_tied_model_count_once():
    model = Tied()
    mp.prune(model, mp.magnitude_scores(model), 0.5)  # the same scores for a.weight and c.weight: the same masks
    assert mp.count_params(model) == _dedup_numel(model) == 90
    assert mp.count_nonzeros(model) == 90 - 18 - 18  # half of a/c's 36 shared entries and half of b's 36
