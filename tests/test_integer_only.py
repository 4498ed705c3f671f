"""Under the hood of int8 (notebook 08, section 6), each against PyTorch as the oracle: BatchNorm folding against
torch.nn.utils.fusion, activation ranges against torch.ao.quantization.MinMaxObserver, and the integer-only Linear
and Conv2d against PyTorch's quantized kernels (fbgemm / x86 and qnnpack).

The x86 kernels (fbgemm) on a CPU without VNNI add pairs of uint8 x int8 products in 16 bits, which saturate when
the activations use all 8 bits; PyTorch's x86 defaults quantize activations to 7 bits (reduce_range) for that
reason, and so do the fbgemm comparisons here. qnnpack adds in 32 bits and is compared on full 8-bit activations.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import fusion, parametrize

import minprune as mp
from minprune.quantization import integer

ENGINES = [e for e in ("fbgemm", "x86", "qnnpack") if e in torch.backends.quantized.supported_engines]
TOP = {"fbgemm": 128, "x86": 128, "qnnpack": 256}  # activations on 7 bits for the x86 kernels (see above)


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    """torch.ao.quantization and the quantized dtypes announce their deprecation; the oracle uses them anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


@pytest.fixture
def engine_kept():
    was = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = was


# ---- BatchNorm folding ---------------------------------------------------------------------------------------


def _bn(cls, channels: int, g: torch.Generator, **options):
    bn = cls(channels, **options)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(0.1 + torch.rand(channels, generator=g))
        if bn.affine:
            bn.weight.copy_(torch.randn(channels, generator=g))
            bn.bias.copy_(torch.randn(channels, generator=g))
    return bn.eval()


CONVS = [dict(bias=True), dict(bias=False, stride=2, padding=1), dict(kernel_size=(3, 5), padding=(1, 2)),
         dict(groups=2, dilation=2, padding=2)]


@pytest.mark.parametrize("options", CONVS, ids=str)
@pytest.mark.parametrize("bn_options", [{}, {"affine": False}, {"eps": 0.1}], ids=str)
def test_fold_batchnorm_matches_torch_fuse_conv_bn_eval(options, bn_options):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, **{"kernel_size": 3, **options})
    bn = _bn(nn.BatchNorm2d, 6, g, **bn_options)
    conv.eval()
    before = {k: v.clone() for k, v in [*conv.state_dict().items(), *bn.state_dict().items()]}
    folded, oracle = mp.fold_batchnorm(conv, bn), fusion.fuse_conv_bn_eval(conv, bn)
    torch.testing.assert_close(folded.weight, oracle.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(folded.bias, oracle.bias, atol=1e-6, rtol=1e-5)
    x = torch.randn(2, 4, 9, 10, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    after = {k: v for k, v in [*conv.state_dict().items(), *bn.state_dict().items()]}
    assert all(torch.equal(before[k], after[k]) for k in before), "fold_batchnorm changed its inputs"
    assert folded.weight is not conv.weight and folded.stride == conv.stride and folded.groups == conv.groups


def test_fold_batchnorm_of_a_linear_layer_matches_fuse_linear_bn_eval():
    g = torch.Generator().manual_seed(1)
    for bias in (True, False):
        linear, bn = nn.Linear(5, 3, bias=bias).eval(), _bn(nn.BatchNorm1d, 3, g)
        folded, oracle = mp.fold_batchnorm(linear, bn), fusion.fuse_linear_bn_eval(linear, bn)
        torch.testing.assert_close(folded.weight, oracle.weight)
        torch.testing.assert_close(folded.bias, oracle.bias)
        x = torch.randn(4, 5, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), bn(linear(x)))


@settings(max_examples=25, deadline=None)
@given(out=st.integers(1, 6), kernel=st.integers(1, 3), stride=st.integers(1, 2), eps=st.floats(1e-6, 1.0),
       seed=st.integers(0, 1000))
def test_folding_equals_the_eval_mode_pair(out, kernel, stride, eps, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv, bn = nn.Conv2d(2, out, kernel, stride=stride), _bn(nn.BatchNorm2d, out, g, eps=eps)
    x = torch.randn(1, 2, 6, 6, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(mp.fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-4)


def test_fold_batchnorm_refuses_what_it_cannot_fold():
    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"training mode.*eval"):
        mp.fold_batchnorm(conv, _bn(nn.BatchNorm2d, 4, g).train())
    with pytest.raises(ValueError, match="4 output channels"):
        mp.fold_batchnorm(conv, _bn(nn.BatchNorm2d, 5, g))
    with pytest.raises(ValueError, match="running statistics"):
        mp.fold_batchnorm(conv, nn.BatchNorm2d(4, track_running_stats=False).eval())
    with pytest.raises(TypeError, match="nn.BatchNorm2d"):
        mp.fold_batchnorm(conv, _bn(nn.BatchNorm1d, 4, g))
    with pytest.raises(TypeError, match="nn.Conv2d or nn.Linear"):
        mp.fold_batchnorm(nn.Conv1d(3, 4, 3), _bn(nn.BatchNorm2d, 4, g))
    masked = nn.Conv2d(3, 4, 3)
    parametrize.register_parametrization(masked, "weight", nn.Identity())
    with pytest.raises(ValueError, match="make_permanent"):
        mp.fold_batchnorm(masked, _bn(nn.BatchNorm2d, 4, g))
    bad = _bn(nn.BatchNorm2d, 4, g)
    bad.running_var[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        mp.fold_batchnorm(conv, bad)


# ---- activation ranges -----------------------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_activation_ranges_match_min_max_observers_fed_the_same_outputs():
    torch.manual_seed(3)
    model = Net().eval()
    batches = [torch.randn(4, 1, 6, 6) * s for s in (2.0, 0.5, 1.0)]
    observers = {name: torch.ao.quantization.MinMaxObserver() for name in ("features.0", "head")}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: observers[n](o.detach()))
               for n in observers]
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in handles:
        h.remove()
    ranges = mp.activation_ranges(model, batches)
    assert set(ranges) == set(observers)
    for name, obs in observers.items():
        assert ranges[name] == (float(obs.min_val), float(obs.max_val))


def test_activation_ranges_leave_the_model_as_found():
    torch.manual_seed(4)
    model = Net().train()
    model.features[3].eval()  # one module in another mode than its parent: put back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes, hooks = {k: m.training for k, m in model.named_modules()}, _hooks(model)
    ranges = mp.activation_ranges(model, [torch.randn(2, 1, 6, 6), torch.randn(3, 1, 6, 6)])
    assert ranges["features.0"][0] < 0 < ranges["features.0"][1]
    assert {k: m.training for k, m in model.named_modules()} == modes and _hooks(model) == hooks
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError):  # a batch the model cannot run: the hooks still come off
        mp.activation_ranges(model, [torch.randn(2, 1, 6, 6), torch.randn(2, 2, 6, 6)])
    assert _hooks(model) == hooks and {k: m.training for k, m in model.named_modules()} == modes


def test_activation_ranges_take_loader_pairs_and_module_types():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(7, 4), torch.zeros(7)), 3)
    ranges = mp.activation_ranges(model, data, types=(nn.ReLU,))
    with torch.no_grad():
        out = model[1](model[0](torch.cat([x for x, _ in data])))
    assert ranges == {"1": (float(out.min()), float(out.max()))}


@pytest.mark.parametrize("call, error, match", [
    (lambda m: mp.activation_ranges(m, []), ValueError, "empty"),
    (lambda m: mp.activation_ranges(m, torch.randn(2, 4)), TypeError, "batches must be"),
    (lambda m: mp.activation_ranges(m, [torch.randn(2, 4)], types=("Linear",)), TypeError, "types must be"),
    (lambda m: mp.activation_ranges(m, [torch.randn(2, 4)], types=(nn.Conv2d,)), ValueError, "no module"),
    (lambda m: mp.activation_ranges(m, ["not a tensor"]), TypeError, "batch 0"),
    (lambda m: mp.activation_ranges("model", [torch.randn(2, 4)]), TypeError, "nn.Module"),
])
def test_activation_ranges_refuse_bad_input_and_leave_no_hooks(call, error, match):
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(error, match=match):
        call(model)
    assert _hooks(model) == 0


# ---- integer-only layers against PyTorch's quantized kernels ---------------------------------------------------


def _weights(q_w, w_scale):
    if isinstance(w_scale, torch.Tensor):
        zeros = torch.zeros(len(w_scale), dtype=torch.long)
        return torch._make_per_channel_quantized_tensor(q_w, w_scale.double(), zeros, 0)
    return torch._make_per_tensor_quantized_tensor(q_w, w_scale, 0)


def _pytorch_linear(q_x, x_scale, zx, q_w, w_scale, bias, y_scale, zy):
    layer = torch.ao.nn.quantized.Linear(q_w.shape[1], q_w.shape[0])
    layer.set_weight_bias(_weights(q_w, w_scale), bias)
    layer.scale, layer.zero_point = y_scale, zy
    return layer(torch._make_per_tensor_quantized_tensor(q_x, x_scale, zx)).int_repr()


def _pytorch_conv(q_x, x_scale, zx, q_w, w_scale, bias, y_scale, zy, **options):
    groups = options.get("groups", 1)
    layer = torch.ao.nn.quantized.Conv2d(q_w.shape[1] * groups, q_w.shape[0], tuple(q_w.shape[2:]), **options)
    layer.set_weight_bias(_weights(q_w, w_scale), bias)
    layer.scale, layer.zero_point = y_scale, zy
    return layer(torch._make_per_tensor_quantized_tensor(q_x, x_scale, zx)).int_repr()


def _agreement(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    steps = (ours.int() - theirs.int()).abs()
    assert int(steps.max()) <= 1, f"{int(steps.max())} steps apart"
    return float((steps == 0).double().mean())


def _layer_case(g, engine, out, per_channel, shape):
    q_x = torch.randint(0, TOP[engine], shape, generator=g, dtype=torch.uint8)
    zx = int(torch.randint(0, TOP[engine], (1,), generator=g))
    w_scale = (0.001 + 0.01 * torch.rand(out, generator=g, dtype=torch.float64)) if per_channel else 0.004
    return q_x, 0.02, zx, w_scale, torch.randn(out, generator=g)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_integer_linear_matches_pytorch_quantized_linear(engine, per_channel, engine_kept, capsys):
    torch.backends.quantized.engine = engine
    g = torch.Generator().manual_seed(6)
    q_x, x_scale, zx, w_scale, bias = _layer_case(g, engine, 120, per_channel, (64, 400))
    q_w = torch.randint(-127, 128, (120, 400), generator=g, dtype=torch.int8)
    args = (q_x, x_scale, zx, q_w, w_scale, bias, 0.8, 118)
    theirs = _pytorch_linear(*args)
    equal = {fp: _agreement(mp.integer_linear(*args, fixed_point=fp), theirs) for fp in (False, True)}
    with capsys.disabled():
        print(f"\n  integer_linear vs {engine} ({'per channel' if per_channel else 'per tensor'}): "
              f"{100 * equal[False]:.3f}% equal, {100 * equal[True]:.3f}% with the fixed-point multiplier")
    assert min(equal.values()) >= 0.99


CONV_OPTIONS = [dict(padding=1), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)), dict(groups=2, padding=1)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("options", CONV_OPTIONS, ids=str)
def test_integer_conv2d_matches_pytorch_quantized_conv2d(engine, options, engine_kept):
    torch.backends.quantized.engine = engine
    g = torch.Generator().manual_seed(7)
    groups = options.get("groups", 1)
    q_x, x_scale, zx, w_scale, bias = _layer_case(g, engine, 6, True, (2, 4, 9, 8))
    q_w = torch.randint(-127, 128, (6, 4 // groups, 3, 3), generator=g, dtype=torch.int8)
    args = (q_x, x_scale, zx, q_w, w_scale, bias, 0.5, 120)
    theirs = _pytorch_conv(*args, **options)
    assert _agreement(mp.integer_conv2d(*args, **options), theirs) >= 0.99
    assert _agreement(mp.integer_conv2d(*args, **options, fixed_point=True), theirs) >= 0.99


def _exact(q_x, x_scale, zx, q_w, w_scale, bias, y_scale, zy):
    """The same layer in exact rational arithmetic (Python ints and fractions): the reference for int8 inputs."""
    from fractions import Fraction

    lo, hi = integer.QRANGE[q_x.dtype]
    scales = [w_scale] * q_w.shape[0] if not isinstance(w_scale, torch.Tensor) else w_scale.tolist()
    rows = []
    for xs in q_x.tolist():
        row = []
        for j, ws in enumerate(q_w.tolist()):
            acc = sum((a - zx) * b for a, b in zip(xs, ws))
            acc_scale = Fraction(x_scale) * Fraction(scales[j])
            if bias is not None:
                acc += round(Fraction(float(bias[j])) / acc_scale)  # Python's round: halves to even
            row.append(min(hi, max(lo, round(acc * acc_scale / Fraction(y_scale)) + zy)))
        rows.append(row)
    return torch.tensor(rows, dtype=q_x.dtype)


@settings(max_examples=30, deadline=None)
@given(signed=st.booleans(), per_channel=st.booleans(), n=st.integers(1, 4), k=st.integers(1, 12),
       out=st.integers(1, 5), zx=st.integers(-128, 255), zy=st.integers(-128, 255),
       y_exponent=st.integers(-9, 0), seed=st.integers(0, 10_000))
def test_integer_linear_is_the_exact_arithmetic(signed, per_channel, n, k, out, zx, zy, y_exponent, seed):
    """Power-of-two scales make M exact, so the float64 path must equal exact arithmetic, halves included."""
    dtype = torch.int8 if signed else torch.uint8
    lo, hi = integer.QRANGE[dtype]
    zx, zy = min(hi, max(lo, zx)), min(hi, max(lo, zy))
    g = torch.Generator().manual_seed(seed)
    q_x = torch.randint(lo, hi + 1, (n, k), generator=g, dtype=dtype)
    q_w = torch.randint(-127, 128, (out, k), generator=g, dtype=torch.int8)
    w_scale = 2.0 ** -torch.randint(6, 10, (out,), generator=g).double() if per_channel else 2.0**-8
    bias = torch.randn(out, generator=g)
    args = (q_x, 2.0**-5, zx, q_w, w_scale, bias, 2.0**y_exponent, zy)
    assert torch.equal(mp.integer_linear(*args), _exact(*args))
    assert torch.equal(mp.integer_linear(*args, fixed_point=True), _exact(*args))  # exact for powers of two


def test_the_accumulator_is_int32_and_the_bias_may_need_all_of_it():
    q_x, q_w = torch.full((1, 4), 255, dtype=torch.uint8), torch.full((2, 4), 127, dtype=torch.int8)
    acc = integer.accumulate(q_x, 3, q_w)
    assert acc.dtype == torch.int32 and acc.tolist() == [[(255 - 3) * 127 * 4] * 2]
    q_bias = integer.quantize_bias(torch.tensor([0.62, -0.55], dtype=torch.float64), torch.tensor([2.0**-7]),
                                   torch.tensor([2.0**-9]), 2)
    assert q_bias.dtype == torch.int32 and q_bias.tolist() == [40632, -36045]  # beyond int16


# ---- the fixed-point multiplier ---------------------------------------------------------------------------------


@pytest.mark.parametrize("M, expected", [(0.5, (2**30, 31)), (0.25, (2**30, 32)), (0.75, (3 * 2**29, 31)),
                                         (1.0, (2**30, 30)), (1 / 3, (1431655765, 32)),
                                         (1 - 2**-40, (2**30, 30))])  # the mantissa rounds up to 1
def test_fixed_point_multiplier_closed_forms(M, expected):
    assert mp.fixed_point_multiplier(M) == expected


@settings(max_examples=200, deadline=None)
@given(M=st.floats(2**-32, 2**30, exclude_max=True))
def test_fixed_point_multiplier_has_31_significant_bits(M):
    multiplier, shift = mp.fixed_point_multiplier(M)
    assert 2**30 <= multiplier < 2**31 and 0 <= shift <= 63
    assert math.isclose(multiplier * 2.0**-shift, M, rel_tol=2**-30)


def test_rounding_shift_rounds_halves_to_even():
    products = torch.tensor([3, 5, -3, -5, 7, 6, -7], dtype=torch.int64)
    assert integer.rounding_shift(products, torch.tensor(1)).tolist() == [2, 2, -2, -2, 4, 3, -4]
    assert integer.rounding_shift(torch.tensor([5, 6, 10, -6]), torch.tensor(2)).tolist() == [1, 2, 2, -2]


@pytest.mark.parametrize("M", [0.0, -0.5, float("nan"), float("inf"), 2.0**30, 2.0**-40, "0.5", True])
def test_fixed_point_multiplier_refuses_what_it_cannot_hold(M):
    with pytest.raises(ValueError, match="M must be"):
        mp.fixed_point_multiplier(M)


# ---- bad inputs to the integer layers ------------------------------------------------------------------------


def _good():
    g = torch.Generator().manual_seed(8)
    return dict(q_x=torch.randint(0, 256, (2, 5), generator=g, dtype=torch.uint8), x_scale=0.1, x_zero_point=3,
                q_w=torch.randint(-127, 128, (3, 5), generator=g, dtype=torch.int8), w_scale=0.01,
                bias=torch.randn(3, generator=g), y_scale=0.2, y_zero_point=7)


@pytest.mark.parametrize("change, error, match", [
    ({"q_x": torch.rand(2, 5)}, TypeError, "q_x must be"),
    ({"q_w": torch.zeros(3, 5, dtype=torch.uint8)}, TypeError, "q_w must be"),
    ({"q_w": torch.zeros(3, 4, dtype=torch.int8)}, ValueError, "5 features"),
    ({"x_scale": 0.0}, ValueError, "x_scale must be positive"),
    ({"y_scale": float("nan")}, ValueError, "y_scale must be positive"),
    ({"w_scale": torch.tensor([0.1, 0.2])}, ValueError, "w_scale must hold"),
    ({"w_scale": "0.1"}, TypeError, "w_scale must be"),
    ({"x_zero_point": 256}, ValueError, "x_zero_point must be an int in \\[0, 255\\]"),
    ({"y_zero_point": 1.5}, ValueError, "y_zero_point must be an int"),
    ({"bias": torch.zeros(4)}, ValueError, "bias must hold 3"),
    ({"bias": [0.0, 0.0, 0.0]}, TypeError, "bias must be None or a float tensor"),
    ({"bias": torch.full((3,), 1e7)}, ValueError, "too large for int32"),
])
def test_integer_linear_refuses_bad_input_and_changes_nothing(change, error, match):
    kwargs = {**_good(), **change}
    before = {k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(error, match=match):
        mp.integer_linear(**kwargs)
    assert all(torch.equal(before[k], kwargs[k]) for k in before)


def test_integer_conv2d_refuses_bad_shapes_and_options():
    good = _good()
    q_x, q_w = torch.zeros(1, 4, 5, 5, dtype=torch.uint8), torch.zeros(6, 2, 3, 3, dtype=torch.int8)
    args = (q_x, 0.1, 0, q_w, 0.01, None, 0.1, 0)
    with pytest.raises(ValueError, match="expects 2"):
        mp.integer_conv2d(*args)
    with pytest.raises(ValueError, match="groups must be"):
        mp.integer_conv2d(*args, groups=4)
    with pytest.raises(ValueError, match="stride must be"):
        mp.integer_conv2d(*args, groups=2, stride=0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        mp.integer_conv2d(q_x, 0.1, 0, torch.zeros(6, 2, 7, 7, dtype=torch.int8), 0.01, None, 0.1, 0, groups=2)
    with pytest.raises(ValueError, match="dimensions"):
        mp.integer_conv2d(good["q_x"], 0.1, 0, q_w, 0.01, None, 0.1, 0)
    out = mp.integer_conv2d(*args, groups=2, padding=1, out_dtype=torch.int8)
    assert out.shape == (1, 6, 5, 5) and out.dtype == torch.int8
