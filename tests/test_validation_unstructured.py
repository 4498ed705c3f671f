"""Bad input to the unstructured-pruning functions (masked.py, unstructured/*): refused with an error that names the
argument, the model exactly as it was (state_dict, hooks, train/eval flag, dtype); half precision supported where
the operation is dtype-agnostic and refused where it trains or takes gradients; meta-device models refused where
values are read."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import masked
from minprune.unstructured import distributed, lottery, sensitivity
from minprune.unstructured import masks as M
from minprune.unstructured import sparse_storage as SS

NAN, INF = float("nan"), float("inf")


# ---- helpers ----------------------------------------------------------------------------------------------------

def lenet300():
    torch.manual_seed(0)
    return mp.build("lenet300")


def pruned(sparsity=0.5):
    model = lenet300()
    mp.prune(model, mp.magnitude_scores(model), sparsity)
    return model


def loader(n=8, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=4)


def meta_model():
    with torch.device("meta"):
        return mp.build("lenet300")


class OwnOrig(nn.Module):
    """A layer with a real parameter called weight_orig of its own (not from pruning)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 4))
        self.weight_orig = nn.Parameter(torch.full((3, 4), 2.0))

    def forward(self, x):
        return x @ (self.weight + self.weight_orig).T


def state(model: nn.Module) -> dict:
    """What a refused call must not change: tensors (by value, except on the meta device), hooks, flag, dtypes."""
    return {"tensors": {k: (v.detach().clone() if not v.is_meta else v.shape) for k, v in model.state_dict().items()},
            "dtypes": {k: v.dtype for k, v in model.state_dict().items()},
            "hooks": sum(len(m._forward_pre_hooks) for m in model.modules()), "training": model.training}


def assert_same(model: nn.Module, before: dict) -> None:
    after = state(model)
    assert after["tensors"].keys() == before["tensors"].keys(), "state_dict keys changed"
    for k, v in before["tensors"].items():
        w = after["tensors"][k]
        assert w == v if isinstance(v, torch.Size) else torch.equal(w, v), f"{k} changed"
    assert after["dtypes"] == before["dtypes"], "dtype changed"
    assert after["hooks"] == before["hooks"], "hooks added or removed"
    assert after["training"] == before["training"], "train/eval flag changed"


def refused(call, error, fragments, *models):
    """`call()` raises exactly `error` with every fragment in its message, and leaves `models` as they were."""
    before = [state(m) for m in models]
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is error, f"raised {type(info.value).__name__}: {info.value}"
    for fragment in [fragments] if isinstance(fragments, str) else fragments:
        assert fragment in str(info.value), f"message lacks {fragment!r}: {info.value}"
    for m, b in zip(models, before):
        assert_same(m, b)


# ---- data is checked before anything changes ------------------------------------------------------------------

@pytest.mark.parametrize("data, error, fragment", [
    (loader(shape=(3, 32, 32)), ValueError, "expects input of shape (batch, 1, 28, 28)"),
    ([1, 2], TypeError, "data must yield (x, y) pairs of tensors"),
    ({"x": torch.zeros(1)}, ValueError, "fine-tuning needs data"),
    (DataLoader(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))), ValueError,
     "data is an empty loader"),
    ([(torch.zeros(4, 1, 28, 28), torch.full((4,), 99))], ValueError, "the model cannot run on the loader's batches"),
])
@pytest.mark.parametrize("fn", ["iterative_prune", "fine_tune"])
def test_training_functions_check_the_data_on_a_copy_first(fn, data, error, fragment):
    model = lenet300().eval()
    call = (lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], data)) if fn == "iterative_prune" \
        else (lambda: mp.fine_tune(model, data))
    refused(call, error, fragment, model)
    assert not mp.get_masks(model)


def test_a_model_without_an_input_check_gets_a_clear_error_for_a_wrong_batch_shape():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    refused(lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(shape=(3, 8, 8))), ValueError,
            ["cannot run on the loader's batches", "(4, 3, 8, 8)"], model)
    refused(lambda: mp.taylor_scores(model, loader(shape=(3, 8, 8))), ValueError,
            "cannot run on the loader's batches", model)


def test_fine_tune_leaves_the_train_eval_flag_as_it_found_it():
    model = lenet300().eval()
    mp.fine_tune(model, loader(), mp.TrainConfig(epochs=1), device="cpu")
    assert not model.training


# ---- find_ticket checks everything before it trains -----------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"scope": "layer"}, ValueError, "scope must be 'local' or 'global', got 'layer'"),
    ({"train": "magnitude"}, TypeError, "train must be a function (callable), got str"),
    ({"rounds": True}, ValueError, "rounds must be a positive int, got True"),
    ({"final": NAN}, ValueError, "final must be a number in [0, 1), got nan"),
    ({"rewind_to": [1, 2]}, TypeError, "rewind_to must be a snapshot dict"),
])
def test_find_ticket_refuses_before_training(kwargs, error, fragment):
    model, calls = lenet300(), []
    args = {"train": lambda m: calls.append(1), "final": 0.5, **kwargs}
    refused(lambda: mp.find_ticket(model, args.pop("train"), args.pop("final"), **args), error, fragment, model)
    assert calls == [], "train ran before the arguments were checked"


# ---- no layer is emptied --------------------------------------------------------------------------------------

def test_a_threshold_that_empties_a_layer_is_refused_naming_it():
    model = lenet300()
    scores = mp.magnitude_scores(model)
    refused(lambda: mp.prune(model, scores, threshold=1e9), ValueError,
            ["threshold=1000000000.0 would remove every entry of 'layers.1.weight'", "keep at least one"], model)
    masks = mp.make_masks(scores, threshold=1e9)  # a pure function: it shows the emptied masks, prune refuses them
    assert not any(m.any() for m in masks.values())


@pytest.mark.parametrize("how", ["all-false", "with-old-mask"])
def test_an_all_false_mask_is_refused_by_apply_masks(how):
    model = lenet300() if how == "all-false" else pruned(0.5)
    mask = torch.zeros(300, 784, dtype=torch.bool)
    if how == "with-old-mask":  # keeps exactly what the old mask prunes: nothing would be left
        mask = ~mp.get_masks(model)["layers.1.weight"]
    refused(lambda: mp.apply_masks(model, {"layers.1.weight": mask}), ValueError,
            ["would remove every entry of 'layers.1.weight'", "sparsity 1.0"], model)


def test_prune_refuses_a_layer_collapse_and_a_sparsity_rounding_to_every_entry():
    torch.manual_seed(0)
    model = mp.build("lenet300", input_shape=(1, 5, 5), hidden=[2], num_classes=4)
    scores = {"layers.1.weight": torch.zeros(2, 25), "layers.3.weight": torch.ones(4, 2)}
    refused(lambda: mp.prune(model, scores, 0.9, scope="global"), ValueError,
            ["sparsity=0.9 (scope='global') would remove every entry of 'layers.1.weight'"], model)
    tiny = nn.Sequential(nn.Linear(1, 1))
    refused(lambda: mp.prune(tiny, mp.magnitude_scores(tiny), 0.75), ValueError,
            "would remove every entry of '0.weight'", tiny)


# ---- names that masking would get wrong -----------------------------------------------------------------------

def test_masks_named_after_the_stored_original_are_refused():
    model = pruned(0.5)
    mask = torch.ones(300, 784, dtype=torch.bool)
    refused(lambda: mp.apply_masks(model, {"layers.1.weight_orig": mask}), ValueError,
            ["masks['layers.1.weight_orig']", "name the parameter itself: 'layers.1.weight'"], model)
    refused(lambda: mp.prune(model, {"layers.1.weight_orig": torch.rand(300, 784)}, 0.6), ValueError,
            "name the parameter itself: 'layers.1.weight'", model)
    assert not any(n.endswith("_orig_orig") for n, _ in model.named_parameters())


def test_a_parameter_of_your_own_named_weight_orig_is_not_overwritten():
    model = nn.Sequential(OwnOrig())
    mask = torch.ones(3, 4, dtype=torch.bool)
    refused(lambda: mp.apply_masks(model, {"0.weight": mask}), ValueError,
            ["already has a tensor 'weight_orig' of its own", "rename that tensor"], model)
    refused(lambda: mp.apply_masks(model, {"0.weight_orig": mask}), ValueError,
            "a name ending in '_orig' or '_mask'", model)


# ---- masks accumulate: pruning less than the model has --------------------------------------------------------

@pytest.mark.parametrize("scope", ["local", "global"])
def test_pruning_less_than_the_model_has_keeps_it_and_returns_the_models_masks(scope):
    model = pruned(0.8)
    before = mp.get_masks(model)
    with pytest.warns(UserWarning, match=r"masks only accumulate.*'layers.1.weight' stays at 0.8"):
        returned = mp.prune(model, mp.magnitude_scores(model), 0.3, scope=scope)
    now = mp.get_masks(model)
    assert all(torch.equal(returned[n], now[n]) and torch.equal(now[n], before[n]) for n in now)
    assert M.masks_sparsity(returned) == pytest.approx(0.8, abs=1e-3)


# ---- masks must be 0/1 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.5, NAN, 2.0])
def test_load_masked_state_dict_refuses_masks_that_are_not_0_or_1(value):
    source, target = pruned(0.5), lenet300()
    sd = {k: (torch.full_like(v, value) if k == "layers.1.weight_mask" else v) for k, v in source.state_dict().items()}
    refused(lambda: mp.load_masked_state_dict(target, sd), ValueError,
            "state_dict['layers.1.weight_mask'] must be bool (or 0/1 values)", target)


def test_load_masked_state_dict_refuses_an_all_zero_mask_and_a_non_dict():
    source, target = pruned(0.5), lenet300()
    sd = {k: (torch.zeros_like(v) if k == "layers.1.weight_mask" else v) for k, v in source.state_dict().items()}
    refused(lambda: mp.load_masked_state_dict(target, sd), ValueError,
            "would remove every entry of 'layers.1.weight'", target)
    refused(lambda: mp.load_masked_state_dict(target, list(sd.values())), TypeError,
            "state_dict must be a dict {name: tensor}", target)
    refused(lambda: mp.load_masked_state_dict(target, source.state_dict(), strict="yes"), TypeError,
            "strict must be True or False", target)


@pytest.mark.parametrize("fn", [M.masks_sparsity, M.shuffle_masks])
@pytest.mark.parametrize("mask", [torch.full((4,), 5.0), torch.full((4,), 2), torch.tensor([0.0, NAN])])
def test_mask_functions_refuse_masks_that_are_not_0_or_1(fn, mask):
    refused(lambda: fn({"a": mask}), ValueError, "masks['a'] must be bool (or 0/1 values)")


def test_float_0_1_masks_are_counted_like_bool_ones():
    assert M.masks_sparsity({"a": torch.tensor([0.0, 1.0, 1.0, 0.0])}) == 0.5


# ---- counts and numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("numel", [-5, 5.5, True, "10", None])
def test_n_pruned_refuses_a_numel_that_is_not_a_count(numel):
    refused(lambda: M.n_pruned(numel, 0.5), ValueError, "numel must be a non-negative int")


def test_n_pruned_takes_numpy_counts_and_numpy_sparsities():
    assert M.n_pruned(np.int64(10), np.float32(0.5)) == 5


def _nan_calls(bad):
    """(name, call, models) of every call with a float argument that NaN or inf must not pass."""
    model = lenet300()
    scores = mp.magnitude_scores(model)
    w = scores["layers.1.weight"]
    scan = sensitivity.Sensitivity(dense_acc=90.0, sparsities=[0.5], acc={"a": [89.0]})
    return [
        ("magnitude_scores p", lambda: mp.magnitude_scores(model, p=bad), "p must be a positive number"),
        ("make_masks sparsity", lambda: mp.make_masks(scores, bad), "sparsity must be"),
        ("make_masks threshold", lambda: mp.make_masks(scores, threshold=bad), "threshold must be a number"),
        ("make_masks overrides", lambda: mp.make_masks(scores, 0.5, overrides={"layers.1.weight": bad}),
         "overrides['layers.1.weight'] must be"),
        ("topk_mask", lambda: mp.topk_mask(w, bad), "sparsity must be"),
        ("threshold_mask", lambda: M.threshold_mask(w, bad), "threshold must be a number"),
        ("prune sparsity", lambda: mp.prune(model, scores, bad), "sparsity must be"),
        ("prune threshold", lambda: mp.prune(model, scores, threshold=bad), "threshold must be a number"),
        ("n_pruned", lambda: mp.n_pruned(10, bad), "sparsity must be"),
        ("iterative_sparsities", lambda: mp.iterative_sparsities(bad, 3), "final_sparsity must be"),
        ("iterative_prune", lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.2, bad], loader()),
         "sparsity must be"),
        ("iterative_prune lr", lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(),
                                                          mp.IterativeConfig(lr=bad)), "config.lr must be"),
        ("synflow_masks", lambda: mp.synflow_masks(model, bad), "sparsity must be"),
        ("sensitivity_scan", lambda: mp.sensitivity_scan(model, loader(), [0.5, bad]), "sparsity must be"),
        ("grasp_scores", lambda: mp.grasp_scores(model, loader(), temperature=bad), "temperature must be"),
        ("layer_sparsities", lambda: mp.layer_sparsities(scan, bad), "max_drop must be >= 0"),
        ("find_ticket", lambda: mp.find_ticket(model, lambda m: None, bad), "final must be"),
    ], model


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("index", range(17))
def test_nan_and_inf_are_refused_by_every_float_argument(bad, index):
    calls, model = _nan_calls(bad)
    _, call, fragment = calls[index]
    refused(call, ValueError, fragment, model)


def test_every_nan_call_is_covered():
    assert len(_nan_calls(NAN)[0]) == 17


def _bool_calls():
    model = lenet300()
    masks = {"a": torch.ones(4, dtype=torch.bool)}
    return [
        (lambda: mp.synflow_masks(model, 0.5, rounds=True), "rounds must be a positive int, got True"),
        (lambda: mp.iterative_sparsities(0.5, True), "rounds must be a positive int, got True"),
        (lambda: mp.find_ticket(model, lambda m: None, 0.5, rounds=True), "rounds must be a positive int"),
        (lambda: mp.taylor_scores(model, loader(), batches=True), "batches must be a positive int, got True"),
        (lambda: mp.gradient_scores(model, loader(), batches=True), "batches must be a positive int"),
        (lambda: mp.snip_scores(model, loader(), batches=True), "batches must be a positive int"),
        (lambda: mp.grasp_scores(model, loader(), batches=True), "batches must be a positive int"),
        (lambda: mp.random_scores(model, seed=True), "seed must be a non-negative int, got True"),
        (lambda: mp.shuffle_masks(masks, seed=True), "seed must be a non-negative int, got True"),
        (lambda: mp.random_reinit(model, seed=True), "seed must be a non-negative int, got True"),
        (lambda: mp.storage_table(model, bits=True), "bits must be in [1, 16]"),
        (lambda: SS.encode(torch.ones(3), "relative", bits=True), "bits must be in [1, 16]"),
        (lambda: SS.encode(torch.ones(3), "relative", bits=2.5), "bits must be in [1, 16]"),
        (lambda: distributed.broadcast_masks(model, src=True), "src must be a non-negative int, got True"),
        (lambda: mp.RewindPoint(True), "k must be a step >= 0, got True"),
        (lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(), mp.IterativeConfig(epochs=True)),
         "config.epochs must be a non-negative int, got True"),
        (lambda: mp.make_masks({"a": torch.rand(4)}, True), "sparsity must be a number in [0, 1), got True"),
    ], model


@pytest.mark.parametrize("index", range(17))
def test_bools_are_not_counts(index):
    calls, model = _bool_calls()
    call, fragment = calls[index]
    refused(call, ValueError, fragment, model)


def test_every_bool_call_is_covered():
    assert len(_bool_calls()[0]) == 17


# ---- wrong types ------------------------------------------------------------------------------------------------

def _type_calls():
    model = lenet300()
    scores = mp.magnitude_scores(model)
    return [
        (lambda: mp.iterative_prune(model, "magnitude", [0.5], loader()), TypeError,
         "score_fn must be a function model -> scores"),
        (lambda: mp.sensitivity_scan(model, loader(), [0.5], score_fn="magnitude"), TypeError,
         "score_fn must be a function model -> scores"),
        (lambda: mp.find_ticket(model, "train", 0.5), TypeError, "train must be a function (callable)"),
        (lambda: mp.taylor_scores(model, {"x": 1}), TypeError, "loader must be a DataLoader or an iterable"),
        (lambda: mp.taylor_scores(model, "mnist-small"), TypeError, "loader must be a DataLoader or an iterable"),
        (lambda: mp.snip_scores(model, [1, 2]), TypeError, "loader must yield (x, y) pairs of tensors"),
        (lambda: mp.sensitivity_scan(model, {"x": 1}, [0.5]), TypeError, "loader must be a DataLoader or an iterable"),
        (lambda: mp.sensitivity_scan(model, [(torch.zeros(2, 1, 28, 28),)], [0.5]), TypeError,
         "loader must yield (x, y) pairs of tensors"),
        (lambda: mp.sensitivity_scan(model, loader(), "0.5"), TypeError, "sparsities must be a sparsity in [0, 1)"),
        (lambda: mp.iterative_prune(model, mp.magnitude_scores, "0.5", loader()), TypeError,
         "sparsities must be a sparsity in [0, 1)"),
        (lambda: mp.iterative_prune(model, mp.magnitude_scores, [], loader()), ValueError,
         "sparsities must list at least one value"),
        (lambda: mp.iterative_prune(model, lambda m: [1], [0.5], loader()), ValueError,
         "scores must be a non-empty dict"),
        (lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(), mp.IterativeConfig(exclude=5)),
         TypeError, "config.exclude must be a parameter name or a list of them"),
        (lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(),
                                    mp.IterativeConfig(exclude=("fc.weight",))), ValueError,
         "unknown parameter name(s) in exclude"),
        (lambda: mp.prune(model, [1], 0.5), ValueError, "scores must be a non-empty dict"),
        (lambda: mp.make_masks(scores, 0.5, overrides=[("layers.1.weight", 0.2)]), TypeError,
         "overrides must be a dict {parameter name: sparsity}"),
        (lambda: mp.make_masks(scores, 0.5, exclude=5), TypeError, "exclude must be a parameter name or a list"),
        (lambda: mp.topk_mask([1.0, 2.0], 0.5), TypeError, "scores must be a float tensor, got list"),
        (lambda: M.threshold_mask(torch.arange(4), 0.5), TypeError, "scores must be a float tensor, got torch.int64"),
        (lambda: mp.apply_masks(model, {1: torch.ones(3)}), TypeError, "must be keyed by parameter names (str)"),
        (lambda: mp.magnitude_scores(model, names=5), TypeError, "names must be a parameter name or a list"),
        (lambda: mp.synflow_scores(model, input_shape=(1, -28, 28)), ValueError, "input_shape[1] must be a positive"),
        (lambda: mp.synflow_scores(model, input_shape=28), TypeError, "input_shape must be a tuple of positive ints"),
        (lambda: mp.rewind(model, [1]), TypeError, "saved must be a snapshot dict"),
        (lambda: mp.rewind({}, {}), TypeError, "model must be a torch.nn.Module"),
        (lambda: masked.is_pruned("lenet300"), TypeError, "model must be a torch.nn.Module"),
        (lambda: SS.decode("MPS1"), TypeError, "data must be the bytes that encode returns"),
        (lambda: SS.decode(SS.encode(torch.ones(3))[:10]), ValueError, "truncated or corrupt"),
        (lambda: SS.decode(b"MPS1" + bytes([9, 0, 1, 0]) + b"\x03\x00\x00\x00"), ValueError, "truncated or corrupt"),
        (lambda: SS.decode(SS.encode(torch.ones(30))[:-8]), ValueError, "truncated or corrupt"),
        (lambda: SS.storage_sizes([1.0]), TypeError, "encode needs a float32/float16/bfloat16/float64 tensor"),
    ], model


@pytest.mark.parametrize("index", range(31))
def test_wrong_types_get_the_kits_message(index):
    calls, model = _type_calls()
    call, error, fragment = calls[index]
    refused(call, error, fragment, model)


def test_every_type_call_is_covered():
    assert len(_type_calls()[0]) == 31


def test_a_list_of_batches_and_a_single_sparsity_are_accepted_by_the_scan():
    model = lenet300()
    result = mp.sensitivity_scan(model, [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))], 0.5,
                                 names="layers.5.weight")
    assert result.sparsities == [0.5] and list(result.acc) == ["layers.5.weight"]


# ---- half precision -------------------------------------------------------------------------------------------

HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_is_supported_where_the_operation_is_dtype_agnostic(dtype):
    model = lenet300().to(dtype)
    assert {s.dtype for s in mp.magnitude_scores(model).values()} == {torch.float32}
    assert {s.dtype for s in mp.random_scores(model).values()} == {torch.float32}
    assert {s.dtype for s in mp.synflow_scores(model).values()} == {torch.float32}
    saved = mp.snapshot(model)
    masks = mp.synflow_masks(model, 0.5, rounds=2)
    mp.apply_masks(model, masks)
    mp.prune(model, mp.magnitude_scores(model), 0.7)
    assert model.layers[1].weight.dtype == dtype and model.layers[1].weight_orig.dtype == dtype
    assert M.masks_sparsity(mp.get_masks(model)) == pytest.approx(0.7, abs=1e-3)
    assert isinstance(distributed.masks_digest(model), str)
    mp.rewind(model, saved)
    mp.random_reinit(model, seed=1)
    table = mp.storage_table(model)
    assert table.rows[-1]["tensor"] == "total"
    fresh = mp.load_masked_state_dict(lenet300().to(dtype), model.state_dict())
    x = torch.randn(2, 1, 28, 28, dtype=dtype)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    mp.make_permanent(model)
    assert all(p.dtype == dtype for p in model.parameters())


@pytest.mark.parametrize("dtype", HALF)
def test_sparse_storage_round_trips_bfloat16_and_half(dtype):
    t = torch.tensor([[0.0, 1.5, -0.0], [2.0, 0.0, -3.25]], dtype=dtype)
    for fmt in SS.FORMATS:
        back = SS.decode(SS.encode(t, fmt, bits=2))
        assert back.dtype == dtype and torch.equal(back, t)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("fn", ["taylor_scores", "gradient_scores", "snip_scores", "grasp_scores", "fine_tune",
                                "iterative_prune", "sensitivity_scan", "find_ticket"])
def test_half_precision_is_refused_where_the_function_trains_or_takes_gradients(fn, dtype):
    model = lenet300().to(dtype)
    calls = {"taylor_scores": lambda: mp.taylor_scores(model, loader()),
             "gradient_scores": lambda: mp.gradient_scores(model, loader()),
             "snip_scores": lambda: mp.snip_scores(model, loader()),
             "grasp_scores": lambda: mp.grasp_scores(model, loader()),
             "fine_tune": lambda: mp.fine_tune(model, loader()),
             "iterative_prune": lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader()),
             "sensitivity_scan": lambda: mp.sensitivity_scan(model, loader(), [0.5]),
             "find_ticket": lambda: mp.find_ticket(model, lambda m: None, 0.5)}
    refused(calls[fn], ValueError, [f"{fn} works on float32 or float64 models", str(dtype), "model.float()"], model)


# ---- the meta device ------------------------------------------------------------------------------------------

META_CALLS = {
    "magnitude_scores": lambda m: mp.magnitude_scores(m),
    "random_scores": lambda m: mp.random_scores(m),
    "synflow_masks": lambda m: mp.synflow_masks(m, 0.5),
    "prune": lambda m: mp.prune(m, {"layers.1.weight": torch.rand(300, 784)}, 0.5),
    "apply_masks": lambda m: mp.apply_masks(m, {"layers.1.weight": torch.ones(300, 784, dtype=torch.bool)}),
    "get_masks": lambda m: mp.get_masks(m),
    "load_masked_state_dict": lambda m: mp.load_masked_state_dict(m, pruned(0.5).state_dict()),
    "snapshot": lambda m: mp.snapshot(m),
    "random_reinit": lambda m: mp.random_reinit(m),
    "storage_table": lambda m: mp.storage_table(m),
    "masks_digest": lambda m: distributed.masks_digest(m),
    "sensitivity_scan": lambda m: mp.sensitivity_scan(m, loader(), [0.5]),
    "iterative_prune": lambda m: mp.iterative_prune(m, mp.magnitude_scores, [0.5], loader()),
    "find_ticket": lambda m: lottery.find_ticket(m, lambda _: None, 0.5),
}


@pytest.mark.parametrize("fn", sorted(META_CALLS))
def test_meta_device_models_are_refused_where_values_are_read(fn):
    model = meta_model()
    refused(lambda: META_CALLS[fn](model), ValueError, ["tensors on the meta device", "'layers.1.weight'"], model)


def test_meta_device_models_are_fine_where_no_value_is_read():
    model = meta_model()
    assert mp.prunable_names(model) == ["layers.1.weight", "layers.3.weight", "layers.5.weight"]
    assert len(mp.effective_parameters(model)) == 6
    assert mp.copy_model(model).layers[1].weight.is_meta and not masked.is_pruned(model)


def test_meta_masks_and_scores_are_refused():
    model = lenet300()
    refused(lambda: mp.apply_masks(model, {"layers.1.weight": torch.ones(300, 784, device="meta")}), ValueError,
            "masks['layers.1.weight'] is on the meta device", model)
    refused(lambda: mp.prune(model, {"layers.1.weight": torch.ones(300, 784, device="meta")}, 0.5), ValueError,
            "scores['layers.1.weight'] is on the meta device", model)


# ---- odd but sound models -------------------------------------------------------------------------------------

def test_storage_table_counts_a_scalar_parameter():
    class WithScalar(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.tensor(2.0))

    table = mp.storage_table(WithScalar())
    assert [r["tensor"] for r in table.rows] == ["scale", "fc.weight", "fc.bias", "total"]


def test_no_warning_when_pruning_further():
    model = pruned(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = mp.prune(model, mp.magnitude_scores(model), 0.8)
    assert M.masks_sparsity(masks) == pytest.approx(0.8, abs=1e-3)
