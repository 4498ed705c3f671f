"""Energy model: hand-computed values on one layer, invariants on real models, clear errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune.energy import (
    HOROWITZ_45NM,
    EnergyCosts,
    EnergyOptions,
    energy_table,
    estimate_energy,
    layer_counts,
    layer_energy,
)
from minprune.masked import apply_masks


def _linear_4_3():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 3, 0], [4, 5, 0, 0]]))  # 5 nonzeros of 12
        layer.bias.copy_(torch.tensor([1.0, 0, 1]))  # 2 nonzeros of 3
    return layer


def test_one_linear_layer_by_hand_fp32():
    # 12 MACs x (3.7 + 0.9) pJ; 15 values x 4 B x 160 pJ/B from DRAM; (4 in + 3 out) x 4 B x 1.25 pJ/B in SRAM
    e = estimate_energy(_linear_4_3(), input_shape=(4,))
    assert e["macs"] == 12 and e["weight_bytes"] == 60
    assert e["compute_uj"] == pytest.approx(12 * 4.6e-6)
    assert e["weights_uj"] == pytest.approx(15 * 4 * 160e-6)
    assert e["activations_uj"] == pytest.approx(7 * 4 * 1.25e-6)
    assert e["total_uj"] == pytest.approx(55.2e-6 + 9600e-6 + 35e-6)


def test_one_linear_layer_by_hand_int8_sparse_sram():
    # sparse: 5 nonzero MACs x 0.23 pJ; 7 nonzero values x (1 B + 4-bit index) x 1.25 pJ/B; activations 7 x 1 B
    e = estimate_energy(_linear_4_3(), input_shape=(4,), options=EnergyOptions(bits=8, sparse=True, weights="sram"))
    assert e["macs"] == 5 and e["weight_bytes"] == pytest.approx(10.5)
    assert e["compute_uj"] == pytest.approx(5 * 0.23e-6)
    assert e["weights_uj"] == pytest.approx(7 * 1.5 * 1.25e-6)
    assert e["activations_uj"] == pytest.approx(7 * 1.25e-6)


def test_conv_counts_by_hand():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)  # each of 3*2*3*3 = 54 weights used at 5*5 positions
    rows = layer_counts(nn.Sequential(conv), input_shape=(2, 5, 5))
    assert rows == [{"layer": "0", "macs": 54 * 25, "nonzero_macs": int(torch.count_nonzero(conv.weight)) * 25,
                     "weights": 54, "nonzero_weights": int(torch.count_nonzero(conv.weight)),
                     "activations": 2 * 25 + 3 * 25, "bits": 32}]


def test_macs_agree_with_flop_counter_on_every_model():
    for model in (mp.build("lenet300"), mp.build("lenet5"), mp.build("resnet", widths=(4, 8), blocks=(1, 1))):
        assert estimate_energy(model)["macs"] == mp.count_macs(model)  # BN adds no MACs to the counter


def test_masked_model_counts_only_nonzeros_when_sparse_and_model_untouched():
    model = mp.build("lenet300")
    apply_masks(model, {"layers.1.weight": torch.rand(300, 784) > 0.9})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense, sparse = estimate_energy(model), estimate_energy(model, options=EnergyOptions(sparse=True))
    assert sparse["macs"] < 0.2 * dense["macs"] + 40_000
    assert sparse["total_uj"] < dense["total_uj"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_memory_dominates_and_int8_is_cheaper():
    model = mp.build("lenet5")
    fp32, int8 = estimate_energy(model), estimate_energy(model, options=EnergyOptions(bits=8))
    assert fp32["weights_uj"] > 10 * fp32["compute_uj"]  # Deep Compression's point, in numbers
    assert int8["total_uj"] == pytest.approx(fp32["total_uj"] / 4, rel=0.05)  # 4x fewer bytes moved
    on_chip = estimate_energy(model, options=EnergyOptions(weights="sram"))
    assert on_chip["total_uj"] < fp32["total_uj"] / 10
    assert on_chip["compute_uj"] > on_chip["weights_uj"]  # with weights on chip, arithmetic dominates


def test_energy_table_sums_to_estimate():
    model = mp.build("lenet5")
    table = energy_table(model)
    total_nj = sum(sum(row[c] for c in ("compute nJ", "weights nJ", "activations nJ")) for row in table.rows)
    assert total_nj / 1e3 == pytest.approx(estimate_energy(model)["total_uj"])
    assert table.column("layer") == ["features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"]


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 20), n_out=st.integers(1, 20), bits=st.sampled_from([8, 32]),
       mult=st.floats(0.1, 10), dram=st.floats(1, 1000))
def test_energy_is_linear_in_the_costs(n_in, n_out, bits, mult, dram):
    layer = nn.Linear(n_in, n_out)
    costs = EnergyCosts(fp32_mult=mult, int8_mult=mult, dram_32bit=dram)
    e = estimate_energy(layer, input_shape=(n_in,), options=EnergyOptions(bits=bits), costs=costs)
    mac = costs.mac(bits)
    assert e["compute_uj"] == pytest.approx(n_in * n_out * mac / 1e6)
    assert e["weights_uj"] == pytest.approx((n_in + 1) * n_out * bits / 8 * dram / 4 / 1e6)
    assert HOROWITZ_45NM.mac(32) == pytest.approx(4.6) and HOROWITZ_45NM.mac(8) == pytest.approx(0.23)


def _two_layers():
    """Linear(4, 3) -> ReLU -> Linear(3, 2), all weights and biases nonzero."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.5)
    return model


# layer "0": 12 MACs, 15 weight values, 4 + 3 activations; layer "2": 6 MACs, 8 weight values, 3 + 2 activations
MIXED_FP32_INT8_UJ = {  # "0" in fp32, "2" in int8, weights from DRAM (160 pJ/B), activations in SRAM (1.25 pJ/B)
    "compute_uj": (12 * 4.6 + 6 * 0.23) / 1e6,
    "weights_uj": (15 * 4 * 160 + 8 * 1 * 160) / 1e6,
    "activations_uj": (7 * 4 * 1.25 + 5 * 1 * 1.25) / 1e6}


def test_two_layer_mixed_precision_by_hand():
    e = estimate_energy(_two_layers(), input_shape=(4,), options=EnergyOptions(bits={"2": 8}))
    for key, value in MIXED_FP32_INT8_UJ.items():
        assert e[key] == pytest.approx(value)
    assert e["total_uj"] == pytest.approx(sum(MIXED_FP32_INT8_UJ.values()))
    assert e["macs"] == 18 and e["weight_bytes"] == 15 * 4 + 8


def test_pytorch_int8_layers_count_at_their_own_precision():
    # layer "2" really int8 (dynamic quantization of that layer only): detected without any bits argument
    quantized = torch.ao.quantization.quantize_dynamic(_two_layers(), {"2"}, dtype=torch.qint8)
    assert [r["bits"] for r in layer_counts(quantized, input_shape=(4,))] == [32, 8]
    e = estimate_energy(quantized, input_shape=(4,))
    for key, value in MIXED_FP32_INT8_UJ.items():
        assert e[key] == pytest.approx(value)
    assert estimate_energy(quantized, input_shape=(4,), options=EnergyOptions(bits=32))["total_uj"] == pytest.approx(
        estimate_energy(_two_layers(), input_shape=(4,))["total_uj"])  # an explicit bits overrides every layer


def test_int8_weights_computed_in_float_by_hand():
    # weight_bits=8, bits=32: fp32 MACs and activations, one byte per stored weight
    e = estimate_energy(_two_layers(), input_shape=(4,), options=EnergyOptions(weight_bits=8))
    assert e["compute_uj"] == pytest.approx(18 * 4.6e-6)
    assert e["weights_uj"] == pytest.approx(23 * 160e-6)
    assert e["activations_uj"] == pytest.approx(12 * 4 * 1.25e-6)
    table = energy_table(_two_layers(), input_shape=(4,), options=EnergyOptions(weight_bits={"0": 8}))
    assert table.column("bits") == ["32/w8", 32]


def test_static_int8_model_is_counted_like_the_float_one_at_8_bits():
    model = mp.build("lenet5").eval()
    q = mp.static_int8(model, [torch.randn(8, 1, 28, 28)])
    assert {r["bits"] for r in layer_counts(q)} == {8}
    as_int8 = estimate_energy(model, options=EnergyOptions(bits=8))
    assert estimate_energy(q)["total_uj"] == pytest.approx(as_int8["total_uj"])


def test_bits_naming_unknown_layers_is_refused():
    with pytest.raises(ValueError, match="does not have"):
        estimate_energy(_two_layers(), input_shape=(4,), options=EnergyOptions(bits={"1": 8}))
    with pytest.raises(ValueError, match="weight_bits must be"):
        EnergyOptions(weight_bits={"0": 4})


@pytest.mark.parametrize("kwargs, error", [
    ({"bits": 16}, ValueError), ({"weights": "flash"}, ValueError), ({"activations": "l2"}, ValueError),
    ({"sparse": "yes"}, TypeError), ({"index_bits": -1}, ValueError)])
def test_bad_options_raise_clear_errors(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        EnergyOptions(**kwargs)


def test_missing_input_shape_and_no_layers():
    with pytest.raises(ValueError, match="input_shape"):
        estimate_energy(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="no Linear or Conv"):
        estimate_energy(nn.ReLU(), input_shape=(3,))


def test_summary_has_an_optional_energy_column():
    model = mp.build("lenet5")
    row = mp.summary(model, timing=False, energy=True)
    assert row["energy uJ"] == pytest.approx(estimate_energy(model)["total_uj"])
    assert "energy uJ" not in mp.summary(model, timing=False)
    assert mp.measure.estimate_energy is estimate_energy


def test_options_are_checked_copied_and_the_positional_call_still_works():
    bits = {"0": 8}
    options = EnergyOptions(bits=bits)
    bits["0"] = 16  # a later edit of the caller's dict does not reach the frozen options
    assert options.bits == {"0": 8}
    with pytest.raises(TypeError, match="options must be an EnergyOptions"):
        estimate_energy(_two_layers(), (4,), options={"bits": 8})
    with pytest.raises(TypeError, match="options must be an EnergyOptions"):
        energy_table(_two_layers(), (4,), options={"bits": 8})
    assert estimate_energy(_two_layers(), (4,)) == estimate_energy(_two_layers(), input_shape=(4,))
    assert mp.EnergyOptions is EnergyOptions


def test_layer_energy_of_one_row_by_hand():
    row = layer_counts(_linear_4_3(), input_shape=(4,))[0]
    e = layer_energy(row, options=EnergyOptions(bits=8))  # 12 MACs x 0.23 pJ; 15 bytes x 160 pJ; 7 bytes x 1.25 pJ
    assert e == pytest.approx({"compute_pj": 12 * 0.23, "weights_pj": 15 * 160, "activations_pj": 7 * 1.25,
                               "weight_bytes": 15})


def test_estimate_draws_no_random_numbers():
    torch.manual_seed(0)
    estimate_energy(mp.build("lenet5"))  # (building draws; the estimate must not)
    after_estimate = torch.rand(1)
    torch.manual_seed(0)
    mp.build("lenet5")
    assert torch.equal(torch.rand(1), after_estimate)


# ---- transformers: integer inputs, attention products -------------------------------------------------------

def _gpt(**kwargs):
    torch.manual_seed(0)
    return mp.build("chargpt", n_layer=2, n_embd=32, n_head=4, block_size=16, **kwargs)


@pytest.mark.parametrize("build", [_gpt, lambda: _gpt(tie_weights=True),
                                   lambda: mp.build("tinyvit", dim=32, depth=2, heads=4)])
def test_transformer_macs_agree_with_flop_counter(build):
    model = build()
    assert estimate_energy(model)["macs"] == mp.count_macs(model)
    table = energy_table(model)
    assert sum(table.column("MACs")) == mp.count_macs(model)
    total_nj = sum(sum(row[c] for c in ("compute nJ", "weights nJ", "activations nJ")) for row in table.rows)
    assert total_nj / 1e3 == pytest.approx(estimate_energy(model)["total_uj"])


def test_chargpt_counts_by_hand_on_its_own_token_ids():
    model = _gpt()  # t = block_size = 16 token ids (CharGPT's example_input), dim 32, 4 heads, MLP 128, vocab 103
    rows = {r["layer"]: r for r in layer_counts(model)}
    assert rows["blocks.0.attn.q"]["macs"] == 16 * 32 * 32 and rows["blocks.1.mlp.fc1"]["macs"] == 16 * 32 * 128
    assert rows["head"]["macs"] == 16 * 32 * 103 and rows["head"]["weights"] == 32 * 103
    # q k^T and probs v: 2 * 16 * 16 * 32 MACs; reads q, k, v and writes out (4 * 16 * 32), scores 2 * 4 * 16 * 16
    assert rows["blocks.0.attn.products"] == {"layer": "blocks.0.attn.products", "macs": 16384, "nonzero_macs": 16384,
                                              "weights": 0, "nonzero_weights": 0, "activations": 4096, "bits": 32}
    assert estimate_energy(model, (8,))["macs"] == mp.count_macs(model, (8,))  # 8 tokens: shorter sequences


def test_head_pruned_transformer_still_matches_the_flop_counter():
    model = mp.build("tinyvit", dim=32, depth=2, heads=4)
    pruned = mp.prune_heads(model, {"blocks.0.attn": [0, 2], "blocks.1.attn": [3]})
    rows = {r["layer"]: r for r in layer_counts(pruned)}
    assert rows["blocks.1.attn.products"]["macs"] == 2 * 17 * 17 * 8  # 17 tokens, one head of 8 dims
    assert estimate_energy(pruned)["macs"] == mp.count_macs(pruned) < mp.count_macs(model)


def test_integer_input_estimate_leaves_the_model_and_random_state_alone():
    model = _gpt().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    estimate_energy(model)
    after_estimate = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_estimate) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
