"""Coupled channel groups found by tracing."""

import pytest
import torch
from torch import nn

import minprune as mp
from minprune.structured.channel_groups import ChannelSpaces
from minprune.structured.dependency import DependencyError, trace_groups


def producers(graph):
    return [sorted(g.producers) for g in graph.prunable()]


def test_lenet300_one_group_per_hidden_layer():
    graph = trace_groups(mp.build("lenet300"))
    assert producers(graph) == [["layers.1"], ["layers.3"]]
    assert [g.size for g in graph.prunable()] == [300, 100]
    assert graph.inputs["layers.3"] == [(graph.outputs["layers.1"], 1)]


def test_vgg_conv_bn_next_layer_coupled():
    graph = trace_groups(mp.build("vgg"))
    first = graph.prunable()[0]
    assert first.producers == ["features.0.0"] and first.followers == ["features.0.1"]
    assert first.consumers == ["features.1.0"]
    assert graph.after["features.0.0"] == "features.0.1"


def test_lenet5_flatten_gives_each_channel_its_features():
    graph = trace_groups(mp.build("lenet5"))
    assert graph.inputs["classifier.1"] == [(graph.outputs["features.3"], 25)]


def test_residual_addition_ties_block_channels():
    graph = trace_groups(mp.build("resnet"))
    tied = sorted(next(g for g in graph.prunable() if "stem.0" in g.producers).producers)
    assert tied == ["layers.0.conv2", "stem.0"]
    assert sorted(graph.groups[graph.outputs["layers.1.conv2"]].producers) == ["layers.1.conv2",
                                                                                "layers.1.shortcut.0"]


def test_input_and_output_frozen():
    graph = trace_groups(mp.build("lenet300"))
    frozen = {g.frozen for g in graph.groups.values() if g.frozen}
    assert frozen == {"model input", "model output"}


def test_concatenation_offsets_recorded():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 5, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(torch.cat([self.a(x), self.b(x)], 1))

    graph = trace_groups(Net(), torch.zeros(1, 1, 4, 4))
    assert graph.inputs["head"] == [(graph.outputs["a"], 1), (graph.outputs["b"], 1)]


def test_unsupported_module_named_in_error():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(1, 4, 3), nn.ChannelShuffle(2), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.norm(self.conv(x)).mean((2, 3)))

    with pytest.raises(DependencyError, match="'norm'.*ChannelShuffle.*register"):
        trace_groups(Net(), torch.zeros(1, 1, 6, 6))


def test_group_norm_across_channels_freezes_its_channels():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 3))
    (group,) = [g for g in trace_groups(net, torch.zeros(1, 1, 6, 6)).groups.values() if "0" in g.producers]
    assert "GroupNorm" in group.frozen and "'1'" in group.frozen


def test_untraceable_model_clear_error():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)  # data-dependent control flow

    with pytest.raises(DependencyError, match="torch.fx could not trace Net"):
        trace_groups(Net(), torch.zeros(1, 4))


def test_mismatched_addition_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1) + torch.cat([self.b(x), self.a(x), self.a(x)], 1)[:, :6]

    with pytest.raises(DependencyError):
        trace_groups(Net(), torch.zeros(2, 4))


def test_model_left_in_its_mode():
    model = mp.build("vgg").train()
    trace_groups(model)
    assert model.training


def test_channel_spaces_union_merges_members_and_refuses_size_mismatch():
    spaces = ChannelSpaces()
    a, b, c = spaces.new(4), spaces.new(4, frozen="model input"), spaces.new(3)
    spaces.groups[a].producers.append("conv1")
    spaces.groups[b].producers.append("conv2")
    spaces.union(a, b, "add")
    root = spaces.find(b)
    assert spaces.find(a) == root and spaces.groups[root].producers == ["conv1", "conv2"]
    assert spaces.groups[root].frozen == "model input"
    with pytest.raises(DependencyError, match="node x: cannot tie channel groups of sizes 4 and 3"):
        spaces.union(a, c, "node x")
