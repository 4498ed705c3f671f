"""TinyViT and CharGPT: build, shapes, causality, descriptions and files, input checks, training, generation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import models
from minprune.attention_blocks import SelfAttention
from minprune.chargpt import CharGPT
from minprune.classifier import Classifier, check_input_shape
from minprune.measure import count_params
from minprune.tinyvit import TinyViT

SMALL_VIT = {"dim": 16, "depth": 2, "heads": 2}
SMALL_GPT = {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16}


def tokens(batch, t, vocab=103, seed=0):
    return torch.randint(0, vocab, (batch, t), generator=torch.Generator().manual_seed(seed))


def test_registered_and_base_class_moved():
    assert models.ARCHS["tinyvit"] is TinyViT and models.ARCHS["chargpt"] is CharGPT
    assert models.Classifier is Classifier and models.check_input_shape is check_input_shape
    assert issubclass(TinyViT, Classifier) and issubclass(CharGPT, Classifier)


def test_parameter_counts():
    assert count_params(mp.build("tinyvit")) == 139_018
    assert count_params(mp.build("chargpt")) == 217_344
    tied = mp.build("chargpt", tie_weights=True)
    assert tied.head.weight is tied.tok_emb.weight and count_params(tied) == 217_344 - 103 * 64


def test_forward_shapes():
    assert mp.build("tinyvit")(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert mp.build("tinyvit", input_shape=(3, 32, 32), patch_size=8, num_classes=5)(
        torch.randn(2, 3, 32, 32)).shape == (2, 5)
    gpt = mp.build("chargpt")
    for t in (1, 17, 64):
        assert gpt(tokens(2, t)).shape == (2, t, 103)


def test_attention_is_explicit_linear_layers():
    vit = mp.build("tinyvit")
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in vit.modules())
    attn = vit.blocks[0].attn
    assert isinstance(attn, SelfAttention)
    assert all(isinstance(getattr(attn, n), torch.nn.Linear) for n in ("q", "k", "v", "proj"))
    assert mp.build("chargpt").blocks[0].attn.causal and not attn.causal


def test_causal_changing_a_later_token_never_changes_earlier_logits():
    gpt = mp.build("chargpt").eval()
    x = tokens(2, 20)
    base = gpt(x)
    for i in (0, 7, 19):
        y = x.clone()
        y[:, i] = (y[:, i] + 1) % 103
        out = gpt(y)
        assert torch.equal(out[:, :i], base[:, :i])
        assert not torch.allclose(out[:, i:], base[:, i:])


def test_attention_heads_mix_positions_in_vit():
    vit = mp.build("tinyvit").eval()
    x = torch.randn(1, 1, 28, 28)
    y = x.clone()
    y[..., 21:, 21:] += 1.0  # the last patch only: the class token sees it through attention
    assert not torch.allclose(vit(x), vit(y))


@pytest.mark.parametrize("arch,kwargs", [("tinyvit", {}), ("tinyvit", SMALL_VIT), ("chargpt", {}),
                                         ("chargpt", {**SMALL_GPT, "tie_weights": True})])
def test_describe_save_load_round_trip(tmp_path, arch, kwargs):
    model = mp.build(arch, **kwargs).eval()
    description = models.describe(model)
    assert description == {"arch": arch, **model.config} and "shapes" not in description
    rebuilt = models.from_description(description)
    assert type(rebuilt) is type(model)
    loaded, meta = mp.load_model(mp.save_model(tmp_path / "m.pt", model, meta={"n": 1}))
    assert meta == {"n": 1} and models.describe(loaded) == description
    loaded.eval()
    x = torch.randn(2, 1, 28, 28) if arch == "tinyvit" else tokens(2, 5, model.config["vocab_size"])
    assert torch.equal(model(x), loaded(x))
    if kwargs.get("tie_weights"):
        assert loaded.head.weight is loaded.tok_emb.weight


def test_numpy_sizes_are_described_as_plain_data():
    model = mp.build("tinyvit", dim=np.int64(16), heads=np.int64(2), depth=1)
    assert models.describe(model)["dim"] == 16 and type(models.describe(model)["dim"]) is int


@pytest.mark.parametrize("arch,kwargs,match", [
    ("tinyvit", {"dim": 0}, "dim must be a positive int"),
    ("tinyvit", {"depth": True}, "depth must be a positive int"),
    ("tinyvit", {"heads": 3}, "divisible by heads"),
    ("tinyvit", {"patch_size": 5}, "patch_size .* must divide"),
    ("tinyvit", {"input_shape": (1, 28, 30), "patch_size": 7}, "must divide"),
    ("tinyvit", {"mlp_ratio": 1.5}, "mlp_ratio must be a positive int"),
    ("tinyvit", {"input_shape": (28, 28)}, "channels, height, width"),
    ("chargpt", {"vocab_size": -1}, "vocab_size must be a positive int"),
    ("chargpt", {"block_size": 0}, "block_size"),
    ("chargpt", {"n_embd": 30}, "divisible by n_head"),
    ("chargpt", {"n_layer": "4"}, "n_layer must be a positive int"),
])
def test_bad_sizes_are_refused(arch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mp.build(arch, **kwargs)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="tie_weights must be True or False"):
        mp.build("chargpt", tie_weights="no")
    with pytest.raises(TypeError, match="unknown argument"):
        mp.build("chargpt", input_shape=(64,))
    with pytest.raises(TypeError, match="unknown argument"):
        mp.build("tinyvit", n_head=4)


def test_tinyvit_input_checks():
    vit = mp.build("tinyvit")
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1, 28, 28\)"):
        vit(torch.randn(2, 1, 32, 32))
    with pytest.raises(TypeError, match="expects a tensor"):
        vit([[0.0]])


@pytest.mark.parametrize("bad,error,match", [
    (torch.zeros(2, 5), TypeError, r"float32 tensor of shape \(2, 5\)"),
    (torch.zeros(2, 5, dtype=torch.bool), TypeError, "torch.bool"),
    ([[1, 2]], TypeError, "got list"),
    (torch.zeros(5, dtype=torch.long), ValueError, r"got shape \(5,\)"),
    (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"got shape \(2, 3, 4\)"),
    (torch.zeros(2, 0, dtype=torch.long), ValueError, r"got shape \(2, 0\)"),
    (torch.zeros(2, 65, dtype=torch.long), ValueError, r"1 <= t <= 64, got shape \(2, 65\)"),
    (torch.full((2, 4), 103), ValueError, r"token id 103, outside \[0, 103\)"),
    (torch.full((2, 4), -1), ValueError, r"shape \(2, 4\) holds token id -1"),
])
def test_chargpt_input_checks(bad, error, match):
    with pytest.raises(error, match=match):
        mp.build("chargpt")(bad)


def test_int32_tokens_are_read_like_int64():
    gpt = mp.build("chargpt").eval()
    x = tokens(2, 6)
    assert torch.equal(gpt(x), gpt(x.int()))


def test_examples_and_macs():
    gpt = mp.build("chargpt")
    assert gpt.input_shape == (64,)
    example = gpt.example_input(3)
    assert example.shape == (3, 64) and example.dtype == torch.long
    assert gpt.example_input(1, (10,)).shape == (1, 10)
    with pytest.raises(ValueError, match="t <= 64"):
        gpt.example_input(1, (65,))
    macs = mp.count_macs(gpt)
    assert macs > 64 * count_params(gpt) // 2  # every position goes through the layers
    assert mp.count_macs(gpt, (8,)) < macs
    assert mp.count_macs(gpt, by_module=True)["blocks.0.attn.q"] == 64 * 64 * 64
    assert mp.count_macs(mp.build("tinyvit"), by_module=True)["blocks.0.attn.q"] == 17 * 64 * 64


def _train(model, make_batch, loss_of, steps=30, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        x, y = make_batch(step)
        loss = loss_of(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_chargpt_training_lowers_the_loss():
    torch.manual_seed(0)
    gpt = mp.build("chargpt", **SMALL_GPT)
    text = torch.arange(200) % 7  # a repeating sequence: next token = previous + 1 (mod 7)

    def batch(step):
        starts = torch.randint(0, len(text) - 9, (16,), generator=torch.Generator().manual_seed(step))
        chunks = torch.stack([text[s:s + 9] for s in starts])
        return chunks[:, :-1], chunks[:, 1:]

    losses = _train(gpt, batch, lambda logits, y: torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                                                     y.flatten()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_tinyvit_training_lowers_the_loss():
    torch.manual_seed(0)
    vit = mp.build("tinyvit", **SMALL_VIT)
    x = torch.randn(64, 1, 28, 28)
    y = (x[:, 0, :14].mean((1, 2)) > 0).long()  # learnable from the pixels
    losses = _train(vit, lambda step: (x, y), torch.nn.functional.cross_entropy)
    assert losses[-1] < 0.7 * losses[0]


def test_tinyvit_trains_with_fit():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    model = mp.build("tinyvit", **SMALL_VIT)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = mp.fit(model, loader, mp.TrainConfig(epochs=1, lr=1e-3), progress=False)
    assert len(history.train_loss) == 1
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_generate_is_deterministic_for_a_seed():
    gpt = mp.build("chargpt").train()
    start = tokens(2, 3)
    a = gpt.generate(start, 10, seed=1)
    assert a.shape == (2, 13) and torch.equal(a[:, :3], start) and gpt.training
    assert torch.equal(a, gpt.generate(start, 10, seed=1))
    assert not torch.equal(a, gpt.generate(start, 10, seed=2))
    greedy = gpt.generate(start, 10, temperature=0)
    assert torch.equal(greedy, gpt.generate(start, 10, temperature=0, seed=5))
    logits = gpt.eval()(greedy[:, :3])[:, -1]
    assert torch.equal(greedy[:, 3], logits.argmax(-1))
    assert gpt.generate(start, 0).shape == (2, 3)
    long = gpt.generate(tokens(1, 64), 3, temperature=0)  # past block_size: reads the last 64 tokens
    assert long.shape == (1, 67)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"max_new_tokens": 2, "temperature": -1.0}, ValueError, "temperature"),
    ({"max_new_tokens": 2, "temperature": float("nan")}, ValueError, "temperature"),
    ({"max_new_tokens": 2, "seed": 1.5}, TypeError, "seed must be an int"),
])
def test_generate_argument_checks(kwargs, error, match):
    with pytest.raises(error, match=match):
        mp.build("chargpt").generate(tokens(1, 3), **kwargs)
    with pytest.raises(TypeError, match="float32"):
        mp.build("chargpt").generate(torch.zeros(1, 3), 2)


def test_copy_keeps_the_input_checks():
    gpt = mp.copy_model(mp.build("chargpt"))
    with pytest.raises(TypeError, match="token ids"):
        gpt(torch.zeros(1, 3))


@pytest.mark.parametrize("arch,kwargs", [("tinyvit", {"dim": 40, "heads": 4, "head_dim": 16, "depth": 1}),
                                         ("chargpt", {**SMALL_GPT, "n_embd": 10, "n_head": 2, "head_dim": 8})])
def test_head_dim_sets_the_attention_width_apart_from_the_residual_width(tmp_path, arch, kwargs):
    model = mp.build(arch, **kwargs).eval()
    dim, heads = (40, 4) if arch == "tinyvit" else (10, 2)
    attn = model.blocks[0].attn
    width = heads * kwargs["head_dim"]  # 64 and 16: wider than the residual stream
    assert attn.q.weight.shape == (width, dim) and attn.proj.weight.shape == (dim, width)
    assert attn.heads == heads and attn.head_dim == kwargs["head_dim"]
    description = models.describe(model)
    assert description["head_dim"] == kwargs["head_dim"] and "shapes" not in description
    x = torch.randn(2, 1, 28, 28) if arch == "tinyvit" else tokens(2, 5, 11)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "m.pt", model))
    assert torch.equal(loaded.eval()(x), model(x))
    assert "head_dim" not in models.describe(mp.build(arch))  # recorded only when given: old files stay valid


@pytest.mark.parametrize("arch,kwargs", [("tinyvit", {"head_dim": 0}), ("tinyvit", {"head_dim": 2.5}),
                                         ("chargpt", {"head_dim": True}), ("chargpt", {"head_dim": "8"})])
def test_bad_head_dim_is_refused(arch, kwargs):
    with pytest.raises(ValueError, match="head_dim must be a positive int or None"):
        mp.build(arch, **kwargs)
