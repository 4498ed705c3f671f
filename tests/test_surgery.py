"""Channel surgery: smaller models, same outputs as masking, refusals that leave the model untouched."""

import copy

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune.checkpoint import load_model, save_model
from minprune.models import BasicBlock
from minprune.structured.dependency import trace_groups
from minprune.structured.surgery import channel_masks, prune_channels, remove_channels, score_groups, select_channels
from minprune.structured.unit_scores import bn_scale_scores, norm_scores


def randomise_bn(model):
    """Give BatchNorm layers non-trivial statistics so a wrong channel slice changes the output."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return model.eval()


def masked_copy(model, masks):
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in masked.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    return masked


def check_equivalent(model, sparsity, example, scores=None):
    """Prune physically and by masks; outputs must agree and the compacted model must be smaller."""
    graph = trace_groups(model, example)
    keep = select_channels(graph, score_groups(graph, scores or norm_scores(model)), sparsity)
    small = remove_channels(model, keep, graph).eval()
    x = torch.randn(3, *example.shape[1:])
    expected = masked_copy(model, channel_masks(model, keep, graph))(x)
    torch.testing.assert_close(small(x), expected, atol=1e-5, rtol=1e-4)
    removed = sum(graph.groups[gid].size - len(idx) for gid, idx in keep.items())
    assert (mp.count_params(small) < mp.count_params(model)) == (removed > 0)
    return small


@pytest.mark.parametrize("arch", ["lenet300", "lenet5", "vgg", "resnet"])
def test_minprune_models_match_masked_model(arch):
    model = randomise_bn(mp.build(arch))
    small = check_equivalent(model, 0.5, torch.zeros(1, *model.input_shape))
    assert mp.count_macs(small) < 0.6 * mp.count_macs(model)
    assert not any("mask" in name for name in small.state_dict())


def test_lenet300_neurons_removed_exactly():
    model = mp.build("lenet300")
    small = prune_channels(model, {"layers.1": 0.5, "layers.3": 0.25})
    assert [small.layers[1].out_features, small.layers[3].in_features, small.layers[3].out_features] == [150, 150, 75]
    assert small.layers[5].in_features == 75 and small.layers[1].in_features == 784


def test_flatten_into_linear_keeps_each_channels_features():
    model = mp.build("lenet5").eval()
    small = prune_channels(model, {"features.3": 0.5})
    assert small.features[3].out_channels == 8
    assert small.classifier[1].in_features == 8 * 5 * 5  # each kept channel keeps its 5x5 features


def test_torchvision_resnet18():
    model = randomise_bn(torchvision.models.resnet18(num_classes=10))
    small = check_equivalent(model, 0.5, torch.zeros(1, 3, 32, 32))
    macs = mp.count_macs(model, (3, 32, 32)), mp.count_macs(small, (3, 32, 32))
    assert macs[1] / macs[0] < 0.3  # ~4x fewer MACs at half the channels


def test_residual_groups_prune_consistently():
    model = randomise_bn(mp.build("resnet"))
    small = prune_channels(model, 0.5)
    block = small.layers[1]
    assert block.conv2.out_channels == block.shortcut[0].out_channels == small.layers[2].conv1.in_channels


def test_depthwise_and_grouped_convs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pw = nn.Conv2d(8, 8, 1)
            self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = self.pw(torch.relu(self.dw(torch.relu(self.bn(self.conv(x))))))
            return self.fc(self.grouped(x).mean((2, 3)))

    model = randomise_bn(Net())
    example = torch.zeros(1, 3, 8, 8)
    small = check_equivalent(model, 0.5, example)
    assert small.dw.groups == small.dw.out_channels == small.conv.out_channels == 4
    assert small.pw.out_channels == small.grouped.out_channels == 4 and small.grouped.groups == 2  # 2 per group


def test_concatenation_offsets():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 6, 3, padding=1), nn.Conv2d(2, 4, 1)
            self.head = nn.Conv2d(10, 5, 1)
            self.fc = nn.Linear(5 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.head(torch.cat([self.a(x), torch.relu(self.b(x))], dim=1)), 1))

    model = Net().eval()
    small = check_equivalent(model, 0.5, torch.zeros(1, 2, 4, 4))
    assert small.head.in_channels == 5


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_bad_sparsity_refused_and_model_untouched(sparsity):
    model = mp.build("vgg")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="sparsity"):
        prune_channels(model, sparsity)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_unknown_layer_name_refused():
    with pytest.raises(ValueError, match="layers.5"):
        prune_channels(mp.build("lenet300"), {"layers.5": 0.5})  # the output layer is frozen


def test_removing_every_channel_refused():
    model = mp.build("lenet300")
    graph = trace_groups(model)
    gid = graph.prunable()[0].id
    with pytest.raises(ValueError, match="every channel"):
        remove_channels(model, {gid: torch.tensor([], dtype=torch.long)}, graph)
    with pytest.raises(ValueError, match="every channel"):
        prune_channels(mp.build("lenet300", hidden=(2, 2)), 0.9)


def test_frozen_group_refused():
    model = mp.build("lenet300")
    graph = trace_groups(model)
    out = next(g for g in graph.groups.values() if g.frozen == "model output")
    with pytest.raises(ValueError, match="model output"):
        remove_channels(model, {out.id: torch.arange(5)}, graph)


def test_global_scope_keeps_one_per_layer_and_uses_bn_scores():
    model = randomise_bn(mp.build("vgg"))
    graph = trace_groups(model)
    scores = score_groups(graph, bn_scale_scores(model))
    keep = select_channels(graph, scores, 0.9, scope="global")
    assert all(len(idx) >= 1 for idx in keep.values())
    assert sum(len(idx) for idx in keep.values()) <= round(0.1 * sum(g.size for g in graph.prunable())) + 6
    check_equivalent(model, 0.3, torch.zeros(1, 1, 28, 28), scores=bn_scale_scores(model))


def test_round_to_rounds_kept_channels_down_to_a_multiple():
    model = mp.build("vgg", widths=(16, 32, 64))
    graph = trace_groups(model)
    scores = score_groups(graph, norm_scores(model))
    plain = select_channels(graph, scores, 0.5625)  # keeps 7, 14, 28
    rounded = select_channels(graph, scores, 0.5625, round_to=8)  # keeps 8 (never below 8), 8, 24
    assert sorted(len(k) for k in plain.values()) == [7, 7, 14, 14, 28, 28]
    assert sorted(len(k) for k in rounded.values()) == [8, 8, 8, 8, 24, 24]
    for gid, idx in rounded.items():  # the kept channels are still the best-scored ones
        assert set(idx.tolist()) <= set(torch.argsort(scores[gid], descending=True)[:len(idx) + 1].tolist())
    small = prune_channels(model, 0.5625, round_to=16)
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)] == [16, 16, 16, 16, 16, 16]
    glob = select_channels(graph, scores, 0.5, scope="global", round_to=4)
    assert all(len(idx) % 4 == 0 and len(idx) >= 4 for idx in glob.values())


@pytest.mark.parametrize("round_to", [0, -8, 2.5, True, "8"])
def test_bad_round_to_refused(round_to):
    model = mp.build("lenet300")
    graph = trace_groups(model)
    with pytest.raises(ValueError, match="round_to must be a positive int or None"):
        select_channels(graph, score_groups(graph, norm_scores(model)), 0.5, round_to=round_to)


@pytest.mark.parametrize("arch", ["lenet5", "resnet"])
def test_compacted_model_saves_and_reloads(tmp_path, arch):
    model = randomise_bn(mp.build(arch))
    small = prune_channels(model, 0.5).eval()
    desc = mp.models.describe(small)
    assert "shapes" in desc and "shapes" not in mp.models.describe(model)
    save_model(tmp_path / "small.pt", small)
    loaded, _ = load_model(tmp_path / "small.pt")
    x = torch.randn(2, *model.input_shape)
    torch.testing.assert_close(loaded.eval()(x), small(x))


class RandomNet(nn.Module):
    """A random CNN: conv stages (optionally BN, optionally residual), then flatten or pooling into Linear."""

    def __init__(self, widths, kernels, bn, residual, pool):
        super().__init__()
        layers, c = [], 3
        for w, k in zip(widths, kernels):
            layers += [nn.Conv2d(c, w, k, padding=k // 2)] + ([nn.BatchNorm2d(w)] if bn else []) + [nn.ReLU()]
            if residual:
                layers.append(BasicBlock(w, w))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = pool
        self.fc1 = nn.Linear(c * (1 if pool else 36), 7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        x = self.features(x)
        x = x.mean((2, 3)) if self.pool else torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


@settings(max_examples=12, deadline=None)
@given(widths=st.lists(st.integers(2, 8), min_size=1, max_size=3), kernels=st.lists(st.sampled_from([1, 3, 5]),
       min_size=3, max_size=3), bn=st.booleans(), residual=st.booleans(), pool=st.booleans(),
       sparsity=st.floats(0.0, 0.49), seed=st.integers(0, 1000))
def test_property_random_nets_match_masked(widths, kernels, bn, residual, pool, sparsity, seed):
    torch.manual_seed(seed)
    model = randomise_bn(RandomNet(widths, kernels, bn, residual, pool))
    small = check_equivalent(model, sparsity, torch.zeros(1, 3, 6, 6))
    assert small(torch.randn(2, 3, 6, 6)).shape == (2, 3)


# ---- remove_conv_bn_channels: the surgery of one conv -> BN -> conv triple (Exercise 6.4) ------------------------

def _conv_bn_triple(bias=False):
    torch.manual_seed(64)
    conv, bn, next_conv = nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.Conv2d(8, 4, (1, 3))
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return conv, bn.eval(), next_conv


@pytest.mark.parametrize("bias", [False, True])
def test_remove_conv_bn_channels_equals_zeroing_the_channels_after_bn_and_relu(bias):
    conv, bn, next_conv = _conv_bn_triple(bias)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (conv, bn, next_conv)]
    keep = torch.tensor([0, 3, 4, 7])
    small = mp.remove_conv_bn_channels(conv, bn, next_conv, keep)
    assert [small[0].out_channels, small[1].num_features, small[2].in_channels] == [4, 4, 4]
    assert small[1].running_mean.shape == (4,) and (small[0].bias is None) == (not bias)
    mask = torch.zeros(1, 8, 1, 1)
    mask[0, keep] = 1
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        masked = next_conv(torch.relu(bn(conv(x))) * mask)
        pruned = small[2](torch.relu(small[1](small[0](x))))
        zeroed_conv = next_conv(torch.relu(bn(conv(x) * mask)))  # not the same: bn shifts a zero
    assert torch.allclose(pruned, masked, atol=1e-6)
    assert not torch.allclose(pruned, zeroed_conv, atol=1e-3)
    assert [conv.out_channels, bn.num_features, next_conv.in_channels] == [8, 8, 8]
    for module, state in zip((conv, bn, next_conv), before):
        assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items()), "an input changed"


def test_remove_conv_bn_channels_keeps_bn_settings_and_mode():
    conv, _, next_conv = _conv_bn_triple()
    bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.3).train()
    _, small_bn, _ = mp.remove_conv_bn_channels(conv, bn, next_conv, torch.tensor([5]))
    assert small_bn.training and small_bn.eps == 1e-3 and small_bn.momentum == 0.3 and small_bn.num_features == 1


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda c, b, n: (c, b, n, torch.tensor([3, 1])), ValueError, "sorted"),
    (lambda c, b, n: (c, b, n, torch.tensor([1, 1])), ValueError, "sorted and hold each channel once"),
    (lambda c, b, n: (c, b, n, torch.tensor([0, 8])), ValueError, r"outside \[0, 8\)"),
    (lambda c, b, n: (c, b, n, torch.tensor([], dtype=torch.long)), ValueError, "empty"),
    (lambda c, b, n: (c, b, n, torch.tensor([0.0, 1.0])), TypeError, "LongTensor"),
    (lambda c, b, n: (c, b, n, [0, 1]), TypeError, "LongTensor"),
    (lambda c, b, n: (c, b, nn.Linear(8, 4), torch.tensor([0])), TypeError, "next_conv must be a torch.nn.Conv2d"),
    (lambda c, b, n: (c, nn.BatchNorm2d(6), n, torch.tensor([0])), ValueError, "widths do not fit"),
    (lambda c, b, n: (c, b, nn.Conv2d(8, 4, 1, groups=2), torch.tensor([0])), ValueError, "groups=2"),
])
def test_remove_conv_bn_channels_refuses_what_it_cannot_slice(change, error, match):
    with pytest.raises(error, match=match):
        mp.remove_conv_bn_channels(*change(*_conv_bn_triple()))
