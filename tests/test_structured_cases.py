"""Hand-made cases for structured pruning of the models people bring: each once returned a silently wrong model.

Every case checks "compacted == masked equivalent" with an oracle of its own where one exists (the masked copy
of `channel_masks`, the same model called by hand), or a clear refusal; the model passed in stays untouched.
"""

import copy

import pytest
import torch
from torch import nn

import minprune as mp


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model, before):
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def assert_refused(model, example, match):
    """prune_channels refuses `model` with a DependencyError matching `match`, and leaves it untouched."""
    before = state(model)
    with pytest.raises(mp.DependencyError, match=match):
        mp.prune_channels(model, 0.5, example=example)
    assert_untouched(model, before)


def masked_by_channel_masks(model, keep, graph):
    """The independent oracle: producers' rows and followers' entries zeroed (valid when zero stays zero)."""
    masked = copy.deepcopy(model)
    masks = mp.channel_masks(masked, keep, graph)
    with torch.no_grad():
        for name, p in masked.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    return masked.eval()


def prune_half(model, example, scores=None):
    graph = mp.trace_groups(model, example)
    scores = scores if scores is not None else mp.norm_scores(model, p=1)
    keep = mp.select_channels(graph, mp.score_groups(graph, scores), 0.5)
    return graph, keep, mp.remove_channels(model, keep, graph).eval()


def close(a, b, tol=1e-5):
    return float((a - b).abs().max().detach() / b.abs().max().detach()) < tol


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.shared, self.head = nn.Conv2d(2, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), \
            nn.Conv2d(8, 3, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))


def test_a_module_called_twice_gets_one_group_for_all_its_calls():
    torch.manual_seed(0)
    model = CalledTwice().eval()
    before = state(model)
    graph, keep, small = prune_half(model, torch.zeros(1, 2, 6, 6))
    (group,) = [g for g in graph.prunable() if "shared" in g.producers]
    assert sorted(group.producers) == ["shared", "stem"]  # both calls read and write the same channels
    x = torch.randn(2, 2, 6, 6)
    assert close(small(x), masked_by_channel_masks(model, keep, graph)(x))
    assert small.shared.out_channels == 4 and small.shared.in_channels == 4
    assert_untouched(model, before)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.c.weight = self.b.weight

    def forward(self, x):
        x = torch.relu(self.a(x))
        return self.out(torch.relu(self.c(torch.relu(self.b(x)))))


def test_shared_weights_are_pruned_together_and_stay_shared():
    torch.manual_seed(0)
    model = Tied().eval()
    graph, keep, small = prune_half(model, torch.zeros(1, 6))
    assert small.c.weight is small.b.weight  # still one tensor
    assert small.b.weight.shape == (4, 4)
    x = torch.randn(2, 6)
    assert close(small(x), masked_by_channel_masks(model, keep, graph)(x))
    assert mp.count_params(small) == sum(p.numel() for p in small.parameters())


class TinyGPT(nn.Module):
    """Token embedding tied to the output head (as GPT-2 and nanoGPT do)."""

    def __init__(self, vocab=11, d=8):
        super().__init__()
        self.embed, self.fc1, self.fc2 = nn.Embedding(vocab, d), nn.Linear(d, 16), nn.Linear(16, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, idx):
        x = self.embed(idx)
        x = x + self.fc2(torch.relu(self.fc1(x)))
        return self.head(x)


def test_tied_embedding_and_head_lose_the_same_columns():
    torch.manual_seed(0)
    model = TinyGPT().eval()
    idx = torch.randint(0, 11, (2, 5))
    graph = mp.trace_groups(model, idx)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model, p=1)), 0.5)
    small = mp.remove_channels(model, keep, graph)
    assert small.head.weight is small.embed.weight and small.embed.weight.shape == (11, 4)
    assert close(small(idx), mp.masked_equivalent(model, keep, graph)(idx))


def test_every_conv_option_dtype_and_device_survive_the_rebuild():
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding="same", padding_mode="reflect", dilation=1),
                          nn.BatchNorm2d(8, eps=1e-3, momentum=0.2), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, padding=2, padding_mode="circular", dilation=2),
                          nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1)).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2), m.bias.normal_()
    graph, keep, small = prune_half(model, torch.zeros(1, 2, 7, 7, dtype=torch.float64))
    conv, bn = small[0], small[1]
    assert (conv.padding, conv.padding_mode, conv.out_channels) == ("same", "reflect", 4)
    assert (small[3].padding_mode, small[3].dilation) == ("circular", (2, 2))
    assert (bn.eps, bn.momentum, bn.num_features) == (1e-3, 0.2, 4)
    assert all(p.dtype == torch.float64 for p in small.state_dict().values() if p.is_floating_point())
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    assert close(small(x), masked_by_channel_masks(model, keep, graph)(x), tol=1e-12)


class Scaled(nn.Module):
    """A per-channel nn.Parameter read in forward (a layer scale, as in ConvNeXt)."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(2, 6, 3), nn.Conv2d(6, 2, 1)
        self.scale = nn.Parameter(torch.rand(6, 1, 1) + 0.5)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x) * self.scale))


def test_a_parameter_read_in_forward_loses_the_same_entries():
    torch.manual_seed(0)
    model = Scaled().eval()
    graph, keep, small = prune_half(model, torch.zeros(1, 2, 6, 6))
    assert graph.params == {"scale": (0, [(graph.outputs["conv"], 1)])}
    assert small.scale.shape == (3, 1, 1)
    x = torch.randn(2, 2, 6, 6)
    assert close(small(x), masked_by_channel_masks(model, keep, graph)(x))


def test_a_parameter_used_in_an_unfollowed_way_is_refused():
    class Net(Scaled):
        def forward(self, x):
            return self.head(self.conv(x) * self.scale.flip(0))

    assert_refused(Net(), torch.zeros(1, 2, 6, 6), "flip")


def vgg_like():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
                         nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 3)).eval()


def removed(graph, keep):
    return {gid: graph.groups[gid].size - len(idx) for gid, idx in keep.items()}


def test_global_selection_removes_exactly_the_fraction_asked_when_scores_tie():
    model = vgg_like()  # fresh BatchNorms: every scale is 1, so every channel ties
    graph = mp.trace_groups(model, torch.zeros(1, 1, 10, 10))
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.bn_scale_scores(model)), 0.5, scope="global")
    assert sum(removed(graph, keep).values()) == 12  # half of 24, not all but one per layer
    assert all(len(idx) >= 1 for idx in keep.values())
    again = mp.select_channels(graph, mp.score_groups(graph, mp.bn_scale_scores(model)), 0.5, scope="global")
    assert all(torch.equal(keep[gid], again[gid]) for gid in keep)  # deterministic


def test_global_selection_with_dead_filters_removes_only_what_is_asked():
    model = vgg_like()
    with torch.no_grad():
        for bn in (model[1], model[4], model[7]):
            bn.weight[:3] = 0  # 9 of 24 channels dead (37.5%)
    graph = mp.trace_groups(model, torch.zeros(1, 1, 10, 10))
    scores = mp.score_groups(graph, mp.bn_scale_scores(model))
    keep = mp.select_channels(graph, scores, 0.125, scope="global")
    assert sum(removed(graph, keep).values()) == 3  # 12.5% of 24
    assert all(set(range(3)) - set(idx.tolist()) for idx in keep.values() if len(idx) < 8)  # dead ones go first


def test_global_selection_never_empties_a_layer():
    model = vgg_like()
    graph = mp.trace_groups(model, torch.zeros(1, 1, 10, 10))
    scores = {gid: torch.zeros(g.size) if i == 0 else torch.ones(g.size)
              for i, (gid, g) in enumerate((g.id, g) for g in graph.prunable())}
    keep = mp.select_channels(graph, scores, 0.4, scope="global")
    assert min(len(idx) for idx in keep.values()) == 1 and sum(removed(graph, keep).values()) == 10  # 40% of 24
    with pytest.raises(ValueError, match="empty a layer"):
        mp.select_channels(graph, scores, 0.95, scope="global")


def test_a_module_registered_under_two_names_is_rebuilt_under_both():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 6, 3), nn.Conv2d(6, 2, 1)
            self.alias = self.conv

        def forward(self, x):
            return self.head(torch.relu(self.alias(x)))

    small = mp.prune_channels(Net().eval(), 0.5, example=torch.zeros(1, 2, 6, 6))
    assert small.alias is small.conv and small.conv.out_channels == 3


def test_a_wrong_rule_is_caught_by_the_equivalence_check():
    class Shift(nn.Module):  # adds a per-channel offset, but its rule below forgets the offset
        def __init__(self, c):
            super().__init__()
            self.offset, self.channels = nn.Parameter(torch.randn(c)), c

        def forward(self, x):
            return x + torch.einsum("nchw,c->nchw", torch.ones_like(x), self.offset)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.shift, self.head = nn.Conv2d(2, 6, 3), Shift(6), nn.Conv2d(6, 2, 1)

        def forward(self, x):
            return self.head(self.shift(self.conv(x)))

    model = Net().eval()
    example = torch.zeros(1, 2, 6, 6)
    with pytest.raises(mp.DependencyError, match="in module 'shift' \\(Shift\\)"):  # not followed
        mp.prune_channels(model, 0.5, example=example)
    try:
        mp.register_rule(Shift, mp.ChannelRule("follower", axis=1, sizes={"channels": "out"}))  # wrong: no tensors
        with pytest.raises(mp.DependencyError, match="does not run|differs from its masked equivalent"):
            mp.prune_channels(model, 0.5, example=example)
        mp.register_rule(Shift, mp.ChannelRule("follower", axis=1, channel_tensors={"offset": 0},
                                               sizes={"channels": "out"}))
        small = mp.prune_channels(model, 0.5, example=example)
        assert small.shift.offset.shape == (3,) and small.shift.channels == 3
    finally:
        from minprune.structured import channel_rules

        channel_rules._RULES.pop(Shift, None)


class Attention(nn.Module):
    def __init__(self, d=16, heads=4):
        super().__init__()
        self.embed, self.ln = nn.Linear(5, d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.pos = nn.Parameter(torch.randn(1, 6, d))
        self.fc1, self.fc2, self.head = nn.Linear(d, 24), nn.Linear(24, d), nn.Linear(d, 3)

    def forward(self, x):
        x = self.embed(x) + self.pos
        y = self.ln(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))
        return self.head(x[:, 0])


def test_attention_heads_keep_equal_widths_and_the_output_of_the_masked_model():
    torch.manual_seed(0)
    model = Attention().eval()
    x = torch.randn(2, 6, 5)
    graph = mp.trace_groups(model, x)
    (residual,) = [g for g in graph.prunable() if "embed" in g.producers]
    assert graph.blocks == {residual.id: 4} and "attn" in residual.followers and "ln" in residual.followers
    scores = {"embed.weight": torch.arange(16.0).flip(0), "fc1.weight": torch.rand(24)}  # drops head 3 first
    keep = mp.select_channels(graph, mp.score_groups(graph, scores), 0.5)
    assert torch.bincount(keep[residual.id] // 4).tolist() == [2, 2, 2, 2]
    small = mp.remove_channels(model, keep, graph)
    assert (small.attn.embed_dim, small.attn.head_dim, small.pos.shape[-1]) == (8, 2, 8)
    assert close(small(x), mp.masked_equivalent(model, keep, graph)(x))
    unbalanced = {**keep, residual.id: torch.arange(8)}
    with pytest.raises(ValueError, match="same number of channels in each of the 4 heads"):
        mp.remove_channels(model, unbalanced, graph)


def test_concatenation_into_batchnorm_is_followed():
    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1)
            self.bn, self.head = nn.BatchNorm2d(7), nn.Conv2d(7, 2, 1)

        def forward(self, x):
            a = self.a(x)
            return self.head(torch.relu(self.bn(torch.cat([a, self.b(torch.relu(a))], 1))))

    model = Dense().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_(), model.bn.bias.normal_()
    graph, keep, small = prune_half(model, torch.zeros(1, 2, 5, 5))
    assert small.bn.num_features == small.a.out_channels + small.b.out_channels < 7
    assert graph.follows == {"bn": [(graph.outputs["a"], 1), (graph.outputs["b"], 1)]}
    x = torch.randn(2, 2, 5, 5)
    assert close(small(x), mp.masked_equivalent(model, keep, graph)(x))


def test_an_operation_that_is_not_followed_is_refused_naming_it():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 6, 3), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            a, _ = self.conv(x).chunk(2, dim=1)
            return self.head(a)

    assert_refused(Net(), torch.zeros(1, 2, 6, 6), "node 'chunk'.*chunk")


def test_a_vision_transformer_loses_embedding_width_heads_stay_equal_and_hidden_dim_follows():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=24, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=16, mlp_dim=32, num_classes=3).eval()
    with torch.no_grad():
        model.heads.head.weight.normal_()  # torchvision starts the head at zero
    x = torch.randn(2, 3, 24, 24)
    graph = mp.trace_groups(model, x)
    assert graph.widths and list(graph.widths) == ["hidden_dim"]  # x.reshape(n, self.hidden_dim, n_h * n_w)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model, p=1)), 0.5)
    small = mp.remove_channels(model, keep, graph)
    attention = small.encoder.layers[0].self_attention
    assert small.hidden_dim == small.conv_proj.out_channels == attention.embed_dim == 8 and attention.head_dim == 2
    assert small.class_token.shape[-1] == small.encoder.pos_embedding.shape[-1] == 8
    assert close(small(x), mp.masked_equivalent(model, keep, graph)(x))


def test_a_width_that_no_single_attribute_holds_freezes_the_channels():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 6, 3), nn.Linear(6 * 16, 2)
            self.width, self.also_six = 6, 6

        def forward(self, x):
            return self.head(self.conv(x).reshape(x.shape[0], 6, 16).flatten(1))

    graph = mp.trace_groups(Net(), torch.zeros(1, 2, 6, 6))
    assert "fixed width 6" in graph.groups[graph.outputs["conv"]].frozen


def test_embeddings_are_scored_by_their_columns():
    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 3)).eval()
    scores = mp.norm_scores(model, p=1)
    torch.testing.assert_close(scores["0.weight"], model[0].weight.detach().abs().sum(0))
    small = mp.prune_channels(model, 0.5, example=torch.tensor([[1, 2, 3]]))
    assert small[0].embedding_dim == 2 and small[1].in_features == 2


def test_a_grouped_convolution_keeps_as_many_channels_in_every_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                          nn.BatchNorm2d(8), nn.Sigmoid(), nn.Conv2d(8, 3, 1)).eval()
    graph = mp.trace_groups(model, torch.zeros(1, 2, 5, 5))
    gid = graph.outputs["0"]
    assert graph.blocks[gid] == 4 and "3" in graph.groups[gid].followers
    scores = {"0.weight": torch.tensor([8.0, 7, 6, 5, 1, 2, 3, 4])}  # unbalanced on purpose: lowest all in groups 2-3
    keep = mp.select_channels(graph, mp.score_groups(graph, scores), 0.5)
    assert torch.bincount(keep[gid] // 2).tolist() == [1, 1, 1, 1]
    small = mp.remove_channels(model, keep, graph)
    assert (small[3].in_channels, small[3].out_channels, small[3].groups) == (4, 4, 4)
    x = torch.randn(2, 2, 5, 5)
    assert close(small(x), mp.masked_equivalent(model, keep, graph)(x))


def test_a_grouped_convolution_that_changes_width_freezes_its_channels():
    model = nn.Sequential(nn.Conv2d(2, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, groups=4), nn.ReLU(), nn.Conv2d(4, 3, 1))
    graph = mp.trace_groups(model, torch.zeros(1, 2, 5, 5))
    assert "grouped convolution (groups=4)" in graph.groups[graph.outputs["0"]].frozen
