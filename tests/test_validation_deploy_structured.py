"""Bad input to export, the deployable copy, channel surgery and its masked equivalent, N:M reports, the pruning
callbacks and the Deep Compression file: refused before anything changes, or supported and tested.

Each refusal test asserts the error type, a message fragment naming the argument, and that the model (state_dict,
train/eval flag, dtype, hooks) is exactly as it was. The half-precision tests pin down, per function, whether
float16/bfloat16 is supported (and keeps the dtype) or refused with what to do:

- export_onnx: refused (ONNX Runtime runs float32; float64 too), deployable_copy: supported (a copy);
- masked_equivalent, remove_channels, nm_report: supported (masking, counting);
- GradualPruner, DynamicSparseTrainer: refused when built (they train);
- save_compressed: supported for bfloat16 (written via float32, read back as float32).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from unchanged import Unchanged

import minprune as mp
from minprune.deploy import export
from minprune.masked import get_masks, is_pruned
from minprune.quantization import compressed

NAN, INF = float("nan"), float("inf")
HALF = (torch.float16, torch.bfloat16)


def mlp():
    return mp.build("lenet300", hidden=(8, 6))


def vgg(widths=(4, 8)):
    return mp.build("vgg", widths=list(widths))


def lenet5():
    return mp.build("lenet5", channels=[2, 4], hidden=[8, 8])


def meta_mlp():
    with torch.device("meta"):
        return mlp()


def masked(model):
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    return model


def keep_half(model):
    graph = mp.trace_groups(model)
    return mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), 0.5), graph




def refused(error, fragment: str, call, *models: nn.Module):
    """Run `call`, expect exactly `error` whose message holds `fragment`, and every model in `models` untouched."""
    watches = [Unchanged(m) for m in models]
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), str(info.value)
    for watch in watches:
        watch.check()


# ---- export_onnx and deployable_copy ----------------------------------------------------------------------------

@pytest.mark.parametrize("example", ["x", 3, [1, 2]], ids=repr)
def test_export_refuses_an_example_that_is_not_a_tensor(example, tmp_path):
    model = mlp().train()
    refused(TypeError, "example must be a tensor", lambda: mp.export_onnx(model, tmp_path / "m.onnx",
                                                                          example=example), model)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("example, fragment", [
    (torch.zeros(2, 3, 32, 32), "example of shape (2, 3, 32, 32)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.float64), "example of shape (2, 1, 28, 28) (torch.float64)"),
    (torch.zeros(0, 1, 28, 28), "example must be a batch of inputs"),
    (torch.tensor(1.0), "example must be a batch of inputs"),
], ids=["wrong-shape", "wrong-dtype", "empty-batch", "0-d"])
def test_export_refuses_an_example_the_model_cannot_run_before_exporting(example, fragment, tmp_path):
    model = mlp().train()
    refused(ValueError, fragment, lambda: mp.export_onnx(model, tmp_path / "m.onnx", example=example), model)
    assert list(tmp_path.iterdir()) == []


def test_to_onnx_checks_the_example_and_puts_the_train_flag_back():
    model = mlp().train()
    refused(ValueError, "example of shape (2, 3, 32, 32)", lambda: export.to_onnx(model,
                                                                                  example=torch.zeros(2, 3, 32, 32)),
            model)
    assert model.training


@pytest.mark.parametrize("atol", [NAN, INF, True, "0.1", -1.0], ids=repr)
def test_export_refuses_a_bad_atol_before_copying(atol, tmp_path):
    model = mlp()
    refused(ValueError, "atol must be a finite number in [0, inf)", lambda: mp.export_onnx(
        model, tmp_path / "m.onnx", atol=atol), model)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"check": "no"}, TypeError, "check must be True or False"),
    ({"threads": 0}, ValueError, "threads must be a positive int"),
    ({"path": 3}, TypeError, "path must be a file path"),
], ids=["check", "threads", "path"])
def test_export_checks_its_other_arguments_first(kwargs, error, fragment):
    model = mlp()
    refused(error, fragment, lambda: mp.export_onnx(model, **kwargs), model)


@pytest.mark.parametrize("dtype", [*HALF, torch.float64], ids=str)
def test_export_refuses_models_that_are_not_float32(dtype, tmp_path):
    model = mlp().to(dtype)
    refused(ValueError, f"export_onnx exports float32 models (ONNX Runtime runs the file on float32 inputs); "
                        f"model has a {dtype} tensor", lambda: mp.export_onnx(model, tmp_path / "m.onnx"), model)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call", [mp.deployable_copy, mp.export_onnx], ids=["deployable_copy", "export_onnx"])
def test_meta_models_are_refused_by_deployment(call):
    model = meta_mlp()
    refused(ValueError, "model has tensors on the meta device", lambda: call(model), model)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_deployable_copy_keeps_a_half_model_and_its_dtype(dtype):
    model = masked(mlp()).to(dtype).train()
    watch = Unchanged(model)
    plain, notes = mp.deployable_copy(model)
    watch.check()
    assert {p.dtype for p in plain.parameters()} == {dtype} and not plain.training and not is_pruned(plain)
    assert any("masks were made permanent" in n for n in notes)


def test_export_with_a_valid_example_of_another_batch_size_works():
    model = mlp().train()
    watch = Unchanged(model)
    result = mp.export_onnx(model, example=torch.randn(3, 1, 28, 28))
    watch.check()
    assert result.max_abs_diff <= export.FLOAT_ATOL


# ---- masked_equivalent / check_compacted / remove_channels / channel_masks ----------------------------------------

def _first_group(model) -> int:
    return mp.trace_groups(model).prunable()[0].id


IN_RANGE = "must hold distinct indices in [0, 4)"
BAD_KEEPS = {
    "unknown group": (lambda gid: {99: torch.tensor([0])}, ValueError, "keep names group 99, which does not exist"),
    "no channel kept": (lambda gid: {gid: torch.tensor([], dtype=torch.long)}, ValueError, "is empty"),
    "index out of range": (lambda gid: {gid: torch.tensor([0, 99])}, ValueError, IN_RANGE),
    "negative index": (lambda gid: {gid: torch.tensor([-1, 0])}, ValueError, IN_RANGE),
    "repeated index": (lambda gid: {gid: torch.tensor([1, 1])}, ValueError, IN_RANGE),
    "float indices": (lambda gid: {gid: torch.tensor([0.0, 1.0])}, TypeError, "must be a 1-D integer tensor"),
    "not a dict": (lambda gid: [torch.tensor([0])], TypeError, "keep must be a dict {group id: kept channel indices}"),
}


def _equivalence_calls(model, keep, graph):
    """Each function that takes (model, keep, graph), the compacted copy made from a valid keep where it needs one."""
    good, own = keep_half(model)
    compacted = mp.remove_channels(model, good, own)
    return {
        "masked_equivalent": (lambda: mp.masked_equivalent(model, keep, graph), ()),
        "check_compacted": (lambda: mp.check_compacted(model, compacted, keep, graph), (compacted,)),
        "remove_channels": (lambda: mp.remove_channels(model, keep, graph), ()),
        "channel_masks": (lambda: mp.channel_masks(model, keep, graph), ()),
    }


@pytest.mark.parametrize("fn", ["masked_equivalent", "check_compacted", "remove_channels", "channel_masks"])
@pytest.mark.parametrize("bad", BAD_KEEPS)
def test_a_bad_keep_is_refused_against_the_graph(fn, bad):
    model = vgg().train()
    graph = mp.trace_groups(model)
    make, error, fragment = BAD_KEEPS[bad]
    call, others = _equivalence_calls(model, make(_first_group(model)), graph)[fn]
    refused(error, fragment, call, model, *others)


@pytest.mark.parametrize("fn", ["masked_equivalent", "check_compacted", "remove_channels", "channel_masks"])
@pytest.mark.parametrize("other", [lenet5, lambda: vgg((8, 8))], ids=["other-architecture", "other-width"])
def test_a_graph_traced_from_another_model_is_refused(fn, other):
    model = vgg().train()
    keep, _ = keep_half(model)
    foreign = mp.trace_groups(other())
    call, others = _equivalence_calls(model, keep, foreign)[fn]
    refused(ValueError, "graph was not traced from this SmallVGG", call, model, *others)


def test_check_compacted_with_a_bad_keep_says_so_not_that_the_outputs_differ():
    model = vgg()
    keep, graph = keep_half(model)
    compacted = mp.remove_channels(model, keep, graph)
    gid = next(iter(keep))
    with pytest.raises(ValueError) as info:
        mp.check_compacted(model, compacted, {gid: torch.tensor([], dtype=torch.long)}, graph)
    assert not isinstance(info.value, mp.DependencyError)
    assert f"keep[{gid}] is empty" in str(info.value)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_masked_equivalent_and_surgery_keep_a_half_model_and_its_dtype(dtype):
    model = vgg().to(dtype)
    keep, graph = keep_half(model)
    watch = Unchanged(model)
    masked_copy = mp.masked_equivalent(model, keep, graph)
    small = mp.remove_channels(model, keep, graph)
    watch.check()
    assert {p.dtype for p in masked_copy.parameters()} == {dtype} == {p.dtype for p in small.parameters()}


# ---- prune_channels / remove_channels on a masked model ----------------------------------------------------------

def test_prune_channels_takes_a_masked_model_and_folds_its_masks_into_the_copy():
    model = masked(vgg()).train()
    masks = {n: m.clone() for n, m in get_masks(model).items()}
    watch = Unchanged(model)
    small = mp.prune_channels(model, 0.5)
    watch.check()
    assert get_masks(model).keys() == masks.keys() and all(torch.equal(get_masks(model)[n], m)
                                                           for n, m in masks.items())
    assert not is_pruned(small)
    assert mp.count_params(small) < mp.count_params(vgg())


def test_remove_channels_on_a_masked_model_matches_its_masked_equivalent():
    model = masked(vgg())
    keep, graph = keep_half(model)
    small = mp.remove_channels(model, keep, graph)
    assert not is_pruned(small) and is_pruned(model)
    x = torch.randn(2, 1, 28, 28)
    expected = mp.masked_equivalent(model, keep, graph)(x)
    torch.testing.assert_close(small.eval()(x), expected, atol=1e-5, rtol=1e-4)


# ---- nm_report -----------------------------------------------------------------------------------------------------

def _nm_masks(model):
    return mp.nm_masks(mp.magnitude_scores(model))


NM_BAD_MASKS = {
    "unknown name": (lambda m: {"nonexistent.weight": torch.ones(3, dtype=torch.bool)},
                     "masks names unknown parameter name 'nonexistent.weight'"),
    "wrong shape": (lambda m: {"layers.1.weight": torch.ones(3, 3, dtype=torch.bool)},
                    "masks['layers.1.weight'] has shape (3, 3) but the parameter has (8, 784)"),
    "all-False mask": (lambda m: {"layers.1.weight": torch.zeros(8, 784, dtype=torch.bool)},
                       "masks['layers.1.weight'] keeps no weight (all False)"),
    "meta mask": (lambda m: {"layers.1.weight": torch.ones(8, 784, dtype=torch.bool, device="meta")},
                  "masks['layers.1.weight'] is on the meta device"),
}


@pytest.mark.parametrize("bad", NM_BAD_MASKS)
def test_nm_report_checks_the_masks_against_the_model(bad):
    model = mlp()
    make, fragment = NM_BAD_MASKS[bad]
    refused(ValueError, fragment, lambda: mp.nm_report(model, make(model)), model)


@pytest.mark.parametrize("variant", ["float16", "bfloat16", "meta", "masked"])
def test_nm_report_counts_on_half_meta_and_masked_models(variant):
    ref = mlp()
    masks = _nm_masks(ref)
    model = {"float16": lambda: mlp().half(), "bfloat16": lambda: mlp().bfloat16(), "meta": meta_mlp,
             "masked": lambda: masked(mlp())}[variant]()
    report = mp.nm_report(model, masks)
    assert report == mp.nm_report(ref, masks)
    assert report["density"] == pytest.approx(0.5)


# ---- the pruning callbacks -----------------------------------------------------------------------------------------

CALLBACKS = {
    "GradualPruner": lambda m: mp.GradualPruner(m, lambda step: 0.5),
    "DynamicSparseTrainer": lambda m: mp.DynamicSparseTrainer(m, mp.SparseConfig(sparsity=0.5)),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", CALLBACKS)
def test_training_callbacks_refuse_half_models_when_built(name, dtype):
    model = mlp().to(dtype)
    refused(ValueError, f"{name} works on float32 or float64 models", lambda: CALLBACKS[name](model), model)
    assert {p.dtype for p in model.parameters()} == {dtype}


@pytest.mark.parametrize("name", CALLBACKS)
def test_training_callbacks_still_take_float64_models(name):
    model = mlp().double()
    CALLBACKS[name](model)
    assert {p.dtype for p in model.parameters()} == {torch.float64}


# ---- save_compressed -----------------------------------------------------------------------------------------------

def _shared(dtype):
    return mp.share_weights(mp.make_permanent(masked(mlp())), 2, iters=2).to(dtype)


def test_save_compressed_writes_a_bfloat16_model_and_reads_it_back(tmp_path):
    model = _shared(torch.bfloat16)
    watch = Unchanged(model)
    compressed.save_compressed(tmp_path / "m.mpz", model, float_dtype="float32")
    watch.check()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    decoded = compressed.load_compressed(tmp_path / "m.mpz")
    for name, tensor in decoded.state_dict().items():
        module, _, attr = name.rpartition(".")
        original = getattr(model.get_submodule(module), attr).detach()
        assert torch.equal(tensor, original.float()), name  # bfloat16 -> float32 is exact


def test_save_compressed_bfloat16_with_float16_biases(tmp_path):
    model = _shared(torch.bfloat16)
    compressed.save_compressed(tmp_path / "m.mpz", model)
    decoded = compressed.load_compressed(tmp_path / "m.mpz")
    assert torch.equal(decoded.layers[1].weight, model.layers[1].weight.float())
    assert torch.equal(decoded.layers[1].bias, model.layers[1].bias.float().half().float())
