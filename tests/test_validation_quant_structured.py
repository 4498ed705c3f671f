"""Bad input to quantization, structured pruning, measuring, timing and energy: refused before anything changes.

Each test asserts the error type, a message fragment naming the argument, and that the model (state_dict,
train/eval flag, dtype, hooks) is exactly as it was. The half-precision tests pin down, per function, whether
float16/bfloat16 is supported (and keeps the dtype) or refused with what to do.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from unchanged import Unchanged

import minprune as mp
from minprune import energy
from minprune.quantization import engines, huffman, int8_modules, kmeans
from minprune.quantization import uniform as Q
from minprune.structured import nm_sparsity
from minprune.structured.unit_scores import SlimmingCallback

NAN, INF = float("nan"), float("inf")
HALF = (torch.float16, torch.bfloat16)


def mlp():
    return mp.build("lenet300", hidden=(8, 6))


def vgg():
    return mp.build("vgg", widths=[4, 8])


def resnet():
    return mp.build("resnet", widths=[4, 8], blocks=[1, 1])


def loader(n: int = 8, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=4)


def with_nan(model, module: str):
    with torch.no_grad():
        model.get_submodule(module).weight.view(-1)[0] = NAN
    return model




def refused(error, fragment: str, call, model: nn.Module | None = None):
    """Run `call`, expect `error` whose message holds `fragment`, and `model` untouched."""
    watch = Unchanged(model) if model is not None else None
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), str(info.value)
    if watch is not None:
        watch.check()


def trained_mode(model):
    return model.train()


# ---- uniform quantization: scales and zero points -------------------------------------------------------------

SCALE_CALLS = {
    "fake_quantize": lambda x, scale, zp: Q.fake_quantize(x, 8, scale=scale, zero_point=zp),
    "quantize": lambda x, scale, zp: Q.quantize(x, scale, zp),
    "dequantize": lambda x, scale, zp: Q.dequantize(torch.zeros(4, 3, dtype=torch.int32), scale, zp),
}


@pytest.mark.parametrize("fn", SCALE_CALLS)
@pytest.mark.parametrize("scale, error, fragment", [
    (0.0, ValueError, "scale must be > 0"), (-0.5, ValueError, "scale must be > 0"),
    (NAN, ValueError, "scale must be finite"), (INF, ValueError, "scale must be finite"),
    ("0.1", TypeError, "scale must be a number or a tensor"), (True, TypeError, "scale must be a number"),
    (torch.tensor([0.1, 0.2]), ValueError, "scale must hold one value"),
])
def test_bad_scales_are_refused(fn, scale, error, fragment):
    x = torch.randn(4, 3)
    before = x.clone()
    refused(error, fragment, lambda: SCALE_CALLS[fn](x, scale, 0))
    assert torch.equal(x, before)


@pytest.mark.parametrize("fn", ["fake_quantize", "quantize"])
@pytest.mark.parametrize("zero_point", [NAN, 1.5, -1, 256])
def test_bad_zero_points_are_refused(fn, zero_point):
    refused(ValueError, "zero_point must be", lambda: SCALE_CALLS[fn](torch.randn(4, 3), 0.1, zero_point))


def test_dequantize_refuses_a_fractional_zero_point():
    refused(ValueError, "zero_point must be a whole number", lambda: SCALE_CALLS["dequantize"](None, 0.1, 0.5))


def test_given_scales_and_zero_points_still_work_per_channel():
    x = torch.randn(4, 3)
    scale, zp = Q.quant_params(x, 8, axis=0)
    assert torch.allclose(Q.fake_quantize(x, 8, axis=0, scale=scale, zero_point=zp), x, atol=float(scale.max()))


@pytest.mark.parametrize("call", [lambda: Q.quant_params([1.0, 2.0]), lambda: Q.fake_quantize("x"),
                                  lambda: Q.quantize(torch.ones(2, dtype=torch.bool), 0.1, 0),
                                  lambda: kmeans.kmeans_1d([1.0, 2.0], 2)])
def test_quantization_needs_a_tensor(call):
    refused(TypeError, "must be a real-valued torch.Tensor", call)


# ---- True or False: a string is not a flag ----------------------------------------------------------------------

FLAG_CALLS = {
    "quant_params symmetric": (lambda m: Q.quant_params(torch.randn(3), symmetric="yes"), "symmetric", mlp),
    "swap_fake_quant per_channel": (lambda m: Q.swap_fake_quant(m, 8, per_channel="no"), "per_channel", mlp),
    "quantize_weights symmetric": (lambda m: Q.quantize_weights(m, symmetric=1), "symmetric", mlp),
    "static_int8 per_channel": (lambda m: mp.static_int8(m, loader(), per_channel="x"), "per_channel",
                                lambda: mp.build("lenet5")),
    "prepare_qat_int8 per_channel": (lambda m: mp.prepare_qat_int8(m, per_channel=1), "per_channel",
                                     lambda: mp.build("lenet5")),
    "qconfig_mapping per_channel": (lambda m: engines.qconfig_mapping("x"), "per_channel", mlp),
    "count_macs by_module": (lambda m: mp.count_macs(m, by_module="yes"), "by_module", mlp),
    "layer_sparsity weights_only": (lambda m: mp.layer_sparsity(m, weights_only="no"), "weights_only", mlp),
    "summary energy": (lambda m: mp.summary(m, timing=False, energy="no"), "energy", mlp),
    "nm_masks strict": (lambda m: mp.nm_masks(mp.magnitude_scores(m), strict="no"), "strict", mlp),
    "remove_channels check": (lambda m: mp.remove_channels(m, {}, mp.trace_groups(m), check="no"), "check", vgg),
    "prune_channels check": (lambda m: mp.prune_channels(m, 0.5, check="no"), "check", vgg),
}


@pytest.mark.parametrize("case", FLAG_CALLS)
def test_flags_must_be_true_or_false(case):
    call, name, build = FLAG_CALLS[case]
    model = trained_mode(build())
    refused(TypeError, f"{name} must be True or False", lambda: call(model), model)


# ---- counts: positive ints, no bools ------------------------------------------------------------------------------

COUNT_CALLS = {
    "share_weights iters=-1": (lambda m: kmeans.share_weights(m, 4, iters=-1), "iters must be a positive int"),
    "share_weights iters=True": (lambda m: kmeans.share_weights(m, 4, iters=True), "iters must be a positive int"),
    "share_weights iters=0": (lambda m: kmeans.share_weights(m, 4, iters=0), "iters must be a positive int"),
    "kmeans_1d iters": (lambda m: kmeans.kmeans_1d(torch.randn(9), 2, iters=-1), "iters must be a positive int"),
    "taylor max_batches": (lambda m: mp.taylor_unit_scores(m, loader(), max_batches=True),
                           "max_batches must be a positive int"),
    "activation max_batches": (lambda m: mp.activation_scores(m, loader(), max_batches=0),
                               "max_batches must be a positive int"),
    "nm_report value_bits": (lambda m: mp.nm_report(m, {}, value_bits=True), "value_bits must be a positive int"),
    "nm_report m=0": (lambda m: mp.nm_report(m, {}, m=0), "need integers 0 < n <= m"),
    "nm_mask n=True": (lambda m: mp.nm_mask(torch.randn(4, 4), True, 4), "need integers 0 < n <= m"),
    "latency warmup=True": (lambda m: mp.latency(m, warmup=True), "warmup must be an int >= 0"),
    "layer_latency warmup": (lambda m: mp.layer_latency(m, warmup=-1), "warmup must be an int >= 0"),
    "LatencyOptions repeats": (lambda m: mp.LatencyOptions(repeats=0), "repeats must be a positive int"),
    "latency_grid batch_sizes": (lambda m: mp.latency_grid({"m": m}, (1, 28, 28), batch_sizes=(0,)),
                                 "batch_sizes must be a positive int"),
    "EnergyOptions index_bits": (lambda m: mp.EnergyOptions(index_bits=True), "index_bits must be a non-negative"),
}


@pytest.mark.parametrize("case", COUNT_CALLS)
def test_counts_refuse_bools_and_non_positive_values(case):
    call, fragment = COUNT_CALLS[case]
    model = trained_mode(mlp())
    refused(ValueError, fragment, lambda: call(model), model)


def test_prune_blocks_checks_n_before_scoring():
    model = trained_mode(resnet())
    refused(ValueError, "n must be a non-negative int", lambda: mp.prune_blocks(model, torch.randn(2, 1, 28, 28),
                                                                                n=True), model)


def test_latency_grid_wants_lists_of_counts():
    model = mlp()
    refused(TypeError, "threads must be a non-empty list or tuple", lambda: mp.latency_grid({"m": model}, (1, 28, 28),
                                                                                          threads=2), model)


# ---- NaN and inf in numbers -----------------------------------------------------------------------------------

NUMBER_CALLS = {
    "slimming_loss strength": (lambda: mp.slimming_loss(NAN), "strength must be >= 0"),
    "slimming_loss inf": (lambda: mp.slimming_loss(INF), "strength must be >= 0"),
    "slimming_loss bool": (lambda: mp.slimming_loss(True), "strength must be >= 0"),
    "SlimmingCallback lr": (lambda: SlimmingCallback(1e-4, NAN), "lr must be a finite number"),
    "SlimmingCallback strength": (lambda: SlimmingCallback(INF), "strength must be >= 0"),
    "EnergyOptions bits float": (lambda: mp.EnergyOptions(bits=8.0), "bits must be 32 (float) or 8 (int8)"),
    "EnergyOptions bits bool": (lambda: mp.EnergyOptions(weight_bits={"layers.1": True}), "weight_bits must be 32"),
}


@pytest.mark.parametrize("case", NUMBER_CALLS)
def test_nan_inf_and_bools_do_not_pass_number_checks(case):
    call, fragment = NUMBER_CALLS[case]
    refused(ValueError, fragment, call)


@pytest.mark.parametrize("tolerance", [NAN, -1.0, "1e-4"])
def test_check_compacted_refuses_a_bad_tolerance(tolerance):
    model = vgg()
    graph = mp.trace_groups(model)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), 0.5)
    compacted = mp.remove_channels(model, keep, graph)
    refused(ValueError, "tolerance must be a finite number",
            lambda: mp.check_compacted(model, compacted, keep, graph, tolerance=tolerance), model)


# ---- NaN weights and NaN scores in structured pruning ---------------------------------------------------------

def test_prune_channels_refuses_nan_weights_naming_the_tensor():
    model = trained_mode(with_nan(vgg(), "features.0.0"))
    refused(ValueError, "'features.0.0.weight' contains NaN or Inf", lambda: mp.prune_channels(model, 0.5), model)


def test_remove_channels_refuses_nan_weights():
    model = vgg()
    graph = mp.trace_groups(model)
    gid = graph.prunable()[0].id
    with_nan(model, "features.0.0")
    refused(ValueError, "'features.0.0.weight' contains NaN or Inf",
            lambda: mp.remove_channels(model, {gid: torch.tensor([0, 1])}, graph), model)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_nan_or_inf_unit_scores_are_refused_naming_the_layer(bad):
    model = vgg()
    scores = mp.norm_scores(model)
    scores["features.0.0.weight"][1] = bad
    refused(ValueError, "scores['features.0.0.weight'] contains NaN or Inf",
            lambda: mp.prune_channels(model, 0.5, scores=scores), model)
    graph = mp.trace_groups(model)
    refused(ValueError, "scores['features.0.0.weight'] contains NaN", lambda: mp.score_groups(graph, scores), model)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_select_channels_refuses_nan_group_scores(scope):
    model = vgg()
    graph = mp.trace_groups(model)
    group_scores = mp.score_groups(graph, mp.norm_scores(model))
    gid = graph.prunable()[0].id
    group_scores[gid][0] = NAN
    refused(ValueError, f"group_scores[{gid}] contains NaN or Inf",
            lambda: mp.select_channels(graph, group_scores, 0.5, scope=scope), model)


@pytest.mark.parametrize("group_scores, error, fragment", [
    ([1.0], TypeError, "group_scores must be a dict"),
    ("wrong shape", ValueError, "must have shape (4,)"),
    ("list values", TypeError, "must be a 1-D tensor of unit scores"),
])
def test_select_channels_checks_group_scores(group_scores, error, fragment):
    model = vgg()
    graph = mp.trace_groups(model)
    good = mp.score_groups(graph, mp.norm_scores(model))
    if group_scores == "wrong shape":
        group_scores = {gid: torch.ones(2) for gid in good}
    elif group_scores == "list values":
        group_scores = {gid: s.tolist() for gid, s in good.items()}
    refused(error, fragment, lambda: mp.select_channels(graph, group_scores, 0.5), model)


@pytest.mark.parametrize("value", [[1.0, 2.0, 3.0, 4.0], torch.ones(4, dtype=torch.bool)])
def test_unit_scores_must_be_number_tensors(value):
    model = vgg()
    graph = mp.trace_groups(model)
    refused(TypeError, "scores['features.0.0.weight'] must be a 1-D tensor of unit scores",
            lambda: mp.score_groups(graph, {"features.0.0.weight": value}), model)


@pytest.mark.parametrize("fn", [mp.taylor_unit_scores, mp.activation_scores])
def test_data_driven_unit_scores_refuse_nan_weights(fn):
    model = trained_mode(with_nan(mlp(), "layers.1"))
    refused(ValueError, "'layers.1.weight' contains NaN or Inf", lambda: fn(model, loader()), model)


# ---- wrong types: keep, loaders, models, names, labels --------------------------------------------------------

@pytest.mark.parametrize("fn", ["remove_channels", "channel_masks"])
def test_bool_keep_is_refused_with_how_to_get_indices(fn):
    model = vgg()
    graph = mp.trace_groups(model)
    gid = graph.prunable()[0].id
    keep = {gid: torch.tensor([True, False, True, True])}
    refused(TypeError, "must be a 1-D integer tensor of channel indices",
            lambda: getattr(mp, fn)(model, keep, graph), model)
    with pytest.raises(TypeError, match=r"m.nonzero\(\).flatten\(\)"):
        getattr(mp, fn)(model, keep, graph)


LOADER_CALLS = {
    "taylor_unit_scores": (lambda m, data: mp.taylor_unit_scores(m, data), "loader must be", mlp),
    "activation_scores": (lambda m, data: mp.activation_scores(m, data), "loader must be", mlp),
    "summary": (lambda m, data: mp.summary(m, data, timing=False), "loader must be", mlp),
    "static_int8": (lambda m, data: mp.static_int8(m, data), "calibration must be", lambda: mp.build("lenet5")),
}


@pytest.mark.parametrize("case, data", [(case, data) for case in LOADER_CALLS for data in ({"x": 1}, "batches", None)
                                        if not (case == "summary" and data is None)])  # summary: None = no accuracy
def test_a_dict_a_string_or_none_is_not_a_loader(case, data):
    call, fragment, build = LOADER_CALLS[case]
    model = trained_mode(build())
    refused(TypeError, fragment, lambda: call(model, data), model)


@pytest.mark.parametrize("fn", [mp.taylor_unit_scores, mp.activation_scores])
def test_a_loader_of_bare_tensors_is_refused_before_hooks_are_added(fn):
    model = trained_mode(mlp())
    refused(TypeError, "loader must yield (x, y) batches", lambda: fn(model, [torch.randn(4, 1, 28, 28)]), model)


def test_static_int8_checks_the_calibration_shape_before_quantizing():
    model = mp.build("lenet5")
    refused(ValueError, "expects input of shape (batch, 1, 28, 28)",
            lambda: mp.static_int8(model, loader(shape=(3, 32, 32))), model)
    refused(TypeError, "calibration batch 0 must hold an input tensor", lambda: mp.static_int8(model, [[1, 2]]), model)


NOT_A_MODEL = {
    "dynamic_int8": lambda: mp.dynamic_int8("lenet300"),
    "static_int8": lambda: mp.static_int8("lenet5", loader()),
    "prepare_qat_int8": lambda: mp.prepare_qat_int8("lenet5"),
    "quantize_weights": lambda: mp.quantize_weights("lenet300"),
    "share_weights": lambda: mp.share_weights("lenet300"),
    "pick_engine": lambda: engines.pick_engine("lenet300"),
    "count_nonzeros": lambda: mp.count_nonzeros("lenet300"),
    "latency": lambda: mp.latency("lenet300"),
    "estimate_energy": lambda: mp.estimate_energy("lenet300"),
    "layer_counts": lambda: mp.layer_counts("lenet300"),
    "layer_latency": lambda: mp.layer_latency("lenet300"),
    "trace_groups": lambda: mp.trace_groups("lenet300"),
    "prune_channels": lambda: mp.prune_channels("lenet300", 0.5),
    "norm_scores": lambda: mp.norm_scores("lenet300"),
    "bn_scale_scores": lambda: mp.bn_scale_scores("vgg"),
    "droppable": lambda: mp.droppable("resnet"),
    "Int8Model": lambda: int8_modules.Int8Model("x", (1, 28, 28), "dynamic"),
}


@pytest.mark.parametrize("case", NOT_A_MODEL)
def test_a_string_is_not_a_model(case):
    refused(TypeError, "must be a torch.nn.Module, got str", NOT_A_MODEL[case])


def test_models_dicts_name_the_bad_model():
    refused(TypeError, "models['a'] must be a torch.nn.Module", lambda: mp.compare({"a": "m"}, timing=False))
    refused(TypeError, "models['a'] must be a torch.nn.Module", lambda: mp.compare_layer_latency({"a": "m"}))


def test_int8_weight_linear_takes_a_linear_with_finite_weights():
    refused(TypeError, "linear must be an nn.Linear", lambda: int8_modules.Int8WeightLinear(nn.Conv2d(1, 1, 1)))
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight[0, 0] = NAN
    refused(ValueError, "linear.weight contains NaN or Inf", lambda: int8_modules.Int8WeightLinear(layer), layer)


@pytest.mark.parametrize("names", [5, [1, 2], {"layers.1.weight": 1}])
def test_share_weights_names_must_be_parameter_names(names):
    model = mlp()
    refused(TypeError, "names must be None, a parameter name or a list",
            lambda: mp.share_weights(model, 4, names=names), model)


def test_drop_blocks_names_must_be_block_names():
    model = resnet()
    refused(TypeError, "names must be a block name or a list", lambda: mp.drop_blocks(model, 5), model)


@pytest.mark.parametrize("y, error, fragment", [
    (torch.randn(4), TypeError, "y must be None or an integer tensor"),
    (torch.zeros(3, dtype=torch.long), ValueError, "y must hold one class index per example of x"),
    (torch.full((4,), 99), ValueError, "y must hold class indices in [0, 10)"),
])
def test_block_scores_checks_labels(y, error, fragment):
    model = trained_mode(resnet())
    refused(error, fragment, lambda: mp.block_scores(model, torch.randn(4, 1, 28, 28), y), model)


@pytest.mark.parametrize("shape", ["abc", (-1, 28), (1, 28.0, 28), ()])
@pytest.mark.parametrize("fn", ["count_macs", "latency", "estimate_energy", "layer_latency"])
def test_input_shape_must_be_positive_ints(fn, shape):
    model = trained_mode(mlp())
    refused(ValueError, "input_shape must be a tuple of positive ints", lambda: getattr(mp, fn)(model, shape), model)


@pytest.mark.parametrize("call", [lambda m: mp.interleaved_latency({"m": m}, None),
                                  lambda m: mp.SpeedupSampler({"m": m}, "abc"),
                                  lambda m: mp.speedups({"m": m}, (0, 28))])
def test_timers_check_input_shape(call):
    model = mlp()
    refused(ValueError, "input_shape must be a tuple of positive ints", lambda: call(model), model)


def test_time_models_wants_a_tensor_batch():
    model = trained_mode(mlp())
    refused(TypeError, "x must be a tensor", lambda: mp.time_models({"m": model}, [[0.0]]), model)


def test_summary_name_must_be_a_string():
    model = mlp()
    refused(TypeError, "name must be a string", lambda: mp.summary(model, name=5, timing=False), model)


@pytest.mark.parametrize("call, error, fragment", [
    (lambda m: mp.estimate_energy(m, costs={"dram_32bit": 1.0}), TypeError, "costs must be an EnergyCosts"),
    (lambda m: mp.energy_table(m, costs=None), TypeError, "costs must be an EnergyCosts"),
    (lambda m: energy.layer_energy({"layer": "a"}), ValueError, "counts must be one row of layer_counts"),
    (lambda m: energy.layer_energy("a"), TypeError, "counts must be one row of layer_counts"),
])
def test_energy_checks_costs_and_counts(call, error, fragment):
    model = trained_mode(mlp())
    refused(error, fragment, lambda: call(model), model)


def test_engines_refuse_unknown_names_and_keep_the_engine():
    before = torch.backends.quantized.engine
    refused(ValueError, "engine must be one of", lambda: engines.using_engine("tpu").__enter__())
    refused(ValueError, "engine must be one of x86", lambda: engines.qconfig_mapping(True, "tpu"))
    assert torch.backends.quantized.engine == before


def test_nm_checks_scores_masks_and_layers():
    refused(TypeError, "scores must be a real-valued tensor", lambda: mp.nm_mask(torch.ones(2, 4, dtype=torch.bool)))
    refused(TypeError, "scores must be a dict", lambda: mp.nm_masks([torch.randn(2, 4)]))
    refused(TypeError, "masks must be a dict {parameter name: bool tensor}", lambda: mp.nm_report(mlp(), {"a": [1]}))
    refused(TypeError, "layer must be an nn.Linear", lambda: nm_sparsity.to_semi_structured("layer"))


def test_unit_norms_and_p_checks():
    refused(ValueError, "p must be 1 or 2", lambda: mp.norm_scores(mlp(), p=True))
    refused(ValueError, "W must have one row per unit", lambda: mp.unit_norms(torch.randn(3)))
    refused(TypeError, "W must be a floating-point weight tensor", lambda: mp.unit_norms([[1.0]]))


# ---- Huffman coding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, fragment", [
    (lambda: huffman.code_lengths([1.5, 2.0]), TypeError, "symbols must be ints"),
    (lambda: huffman.code_lengths([True, False]), TypeError, "symbols must be ints"),
    (lambda: huffman.code_lengths("abc"), TypeError, "symbols must be an iterable of ints"),
    (lambda: huffman.coded_bits(None), TypeError, "symbols must be an iterable of ints"),
    (lambda: huffman.encode([1, 2], [1, 2]), TypeError, "lengths must be a dict"),
    (lambda: huffman.canonical_codes({0: -1}), ValueError, "code lengths >= 1"),
    (lambda: huffman.decode(b"\x00", {0: 1}, -1), ValueError, "count must be a non-negative int"),
    (lambda: huffman.decode(b"\x00", {0: 1}, True), ValueError, "count must be a non-negative int"),
    (lambda: huffman.decode("ab", {0: 1}, 1), TypeError, "data must be bytes"),
    (lambda: huffman.decode(b"\x00", {}, 1), ValueError, "lengths is empty"),
])
def test_huffman_refuses_bad_symbols_lengths_and_counts(call, error, fragment):
    refused(error, fragment, call)


def test_huffman_takes_integer_tensors():
    symbols = torch.tensor([3, 1, 3, 3, 2])
    data, lengths = huffman.encode(symbols)
    assert huffman.decode(data, lengths, 5) == [3, 1, 3, 3, 2]


# ---- the meta device: refused where values are read, fine where only shapes are ----------------------------------

META_REFUSED = {
    "count_nonzeros": mp.count_nonzeros, "model_sparsity": mp.model_sparsity, "layer_sparsity": mp.layer_sparsity,
    "size_on_disk": mp.size_on_disk, "latency": mp.latency, "layer_latency": mp.layer_latency,
    "estimate_energy": mp.estimate_energy, "summary": lambda m: mp.summary(m, timing=False),
    "quantize_weights": mp.quantize_weights, "swap_fake_quant": mp.swap_fake_quant, "share_weights": mp.share_weights,
    "unshare_weights": mp.unshare_weights, "dynamic_int8": mp.dynamic_int8, "norm_scores": mp.norm_scores,
    "taylor_unit_scores": lambda m: mp.taylor_unit_scores(m, loader()), "prune_channels": lambda m: mp.prune_channels(
        m, 0.5), "to_csr": mp.to_csr, "droppable": mp.droppable,
}


@pytest.mark.parametrize("case", META_REFUSED)
def test_meta_models_are_refused_where_values_are_read(case):
    model = mlp().to("meta")
    refused(ValueError, "has tensors on the meta device", lambda: META_REFUSED[case](model))


def test_shapes_of_meta_models_can_be_counted_and_traced():
    model = mlp().to("meta")
    assert mp.count_params(model) == mp.count_params(mlp())
    assert mp.count_macs(model) == mp.count_macs(mlp())
    assert mp.trace_groups(model).prunable()


# ---- half precision: supported (and the dtype kept), or refused with what to do ------------------------------------

@pytest.mark.parametrize("dtype", HALF)
def test_counting_works_on_half_models(dtype):
    model = mlp()
    half = mlp().to(dtype)
    half.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()})
    assert mp.count_params(half) == mp.count_params(model)
    assert mp.count_nonzeros(half) == mp.count_nonzeros(model)
    assert mp.model_sparsity(half) == mp.model_sparsity(model)
    assert mp.layer_sparsity(half) == mp.layer_sparsity(model)
    assert mp.count_macs(half) == mp.count_macs(model)
    assert mp.layer_counts(half)[0]["macs"] == mp.layer_counts(model)[0]["macs"]
    assert mp.estimate_energy(half)["macs"] == mp.estimate_energy(model)["macs"]
    assert next(half.parameters()).dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_timing_works_on_half_models(dtype):
    model = mlp().to(dtype)
    assert mp.latency(model, batch_size=2, warmup=0, repeats=2)["median_ms"] > 0
    assert mp.layer_latency(model, batch_size=2, warmup=0, repeats=2).rows
    assert mp.interleaved_latency({"m": model}, (1, 28, 28), batch_size=2, rounds=1, per_round=1)["m"] > 0
    assert next(model.parameters()).dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_fake_quantization_keeps_the_dtype(dtype):
    x = torch.randn(6, 5).to(dtype)
    for axis in (None, 0):
        y = Q.fake_quantize(x, 8, axis=axis)
        assert y.dtype == dtype
        assert torch.allclose(y.float(), x.float(), atol=0.05)
    model = mlp().to(dtype)
    quantized = mp.quantize_weights(model, 4)
    assert all(p.dtype == dtype for p in quantized.parameters())
    assert quantized(torch.randn(2, 1, 28, 28).to(dtype)).dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_share_weights_clusters_half_weights_in_float32_and_keeps_the_dtype(dtype):
    model = mlp().to(dtype)
    mp.share_weights(model, 2)
    for name in ("layers.1", "layers.3", "layers.5"):
        weight = model.get_submodule(name).weight
        assert weight.dtype == dtype
        assert len(torch.unique(weight[weight != 0].float())) <= 4
    assert model(torch.randn(2, 1, 28, 28).to(dtype)).dtype == dtype
    mp.unshare_weights(model)
    assert model.layers[1].weight.dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_int8_flows_quantize_half_models_from_a_float32_copy(dtype):
    model = mp.build("lenet5").to(dtype)
    watch = Unchanged(model)
    dynamic = mp.dynamic_int8(model)
    static = mp.static_int8(model, loader())
    watch.check()
    for int8 in (dynamic, static):
        assert mp.int8_weights(int8)
        assert int8(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("build", [vgg, resnet, mlp])
def test_structured_pruning_works_in_half_precision(build, dtype):
    model = build().to(dtype)
    watch = Unchanged(model)
    small = mp.prune_channels(model, 0.5)  # checked against its masked equivalent at the dtype's tolerance
    watch.check()
    assert all(p.dtype == dtype for p in small.parameters())
    assert mp.count_params(small) < mp.count_params(model)
    assert small(torch.randn(2, 1, 28, 28).to(dtype)).dtype == dtype


@pytest.mark.parametrize("dtype", HALF)
def test_half_scores_and_blocks(dtype):
    model = trained_mode(resnet().to(dtype))
    watch = Unchanged(model)
    assert all(s.dtype == dtype for s in mp.norm_scores(model).values())
    assert mp.activation_scores(model, loader())
    assert set(mp.block_scores(model, torch.randn(4, 1, 28, 28).to(dtype))) == set(mp.droppable(model))
    watch.check()
    assert mp.nm_mask(torch.randn(4, 8).to(dtype)).sum() == 16


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case, call", [
    ("taylor_unit_scores", lambda m: mp.taylor_unit_scores(m, loader())),
    ("prepare_qat_int8", mp.prepare_qat_int8),
    ("to_csr", mp.to_csr),
])
def test_half_models_are_refused_where_gradients_or_kernels_need_float32(case, call, dtype):
    model = trained_mode(mp.build("lenet5").to(dtype))
    refused(ValueError, f"{case} works on float32 or float64 models", lambda: call(model), model)
    with pytest.raises(ValueError, match=r"call model.float\(\) first"):
        call(model)
