# %% [markdown]
# # 06 · Structured pruning: channels, blocks, N:M, and why sparsity is not speed
#
# **Learning objectives.** After this notebook you can
# 1. find the **coupled groups** of a CNN: which layers must lose the same channels, including across residual
#    additions, flattens and concatenations;
# 2. prune channels of VGG- and ResNet-style networks with L1 scores and with network slimming (BatchNorm scales);
# 3. prune a torchvision model, and teach the library a layer of your own with `mp.register_rule`;
# 4. remove whole blocks and layers, and build N:M (2:4) semi-structured masks;
# 5. do the surgery of one conv-BN-conv triple by hand, and say which masked model it equals (Exercise 6.4);
# 6. answer "my pruned model is not faster" with measurements: dense, masked, CSR-sparse and compacted
#    models timed side by side over batch sizes and thread counts.
#
# Time: about 100 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
FINETUNE_EPOCHS = 3 if FAST else 6
BATCH_SIZES = (1, 64) if FAST else (1, 8, 64, 256)
THREADS = (1, 2)
REPEATS = 3 if FAST else 20

# %%
import matplotlib.pyplot as plt
import torch
import torchvision
from torch import nn

import minprune as mp

mp.seed_everything(0)
data = mp.load("mnist-small")
train_loader, test_loader = data.loader("train"), data.loader("test", 500)
vgg = mp.pretrained("vgg", progress=False)
resnet = mp.pretrained("resnet", progress=False)


def finetuned(model):
    mp.seed_everything(0)
    mp.fit(model, train_loader, mp.TrainConfig(epochs=FINETUNE_EPOCHS, lr=1e-3), progress=False)
    return model


# %% [markdown]
# ## Coupled groups
# Removing output channel `i` of a convolution is only half of the surgery. Everything that reads channel `i`
# must change too: the BatchNorm after it (entry `i` of its scale, shift and running statistics) and the next
# convolution (input channel `i` of every filter). In a residual block it gets stricter: `out + shortcut(x)` adds
# channel `i` of two tensors, so the last conv of the block, the shortcut and *whatever fed the block* must all
# drop the same channels. These sets are the **coupled groups**. `mp.trace_groups` finds them by tracing the
# model with `torch.fx` and following every tensor's channels through the graph:
# - conv / Linear: reads one group, writes a new one; BatchNorm and depthwise convs keep the group;
# - `+` ties the groups of its two inputs; `torch.cat` places its inputs' groups at channel offsets;
# - a flatten makes each channel own `H*W` consecutive features of the next Linear layer;
# - the model's input and output channels, and channels touching a grouped convolution, are **frozen**.

# %%
# NBVAL_CHECK_OUTPUT
graph = mp.trace_groups(resnet)
print(mp.groups_table(graph))

# %% [markdown]
# In the picture each layer is a row: the colour on the left is the group it reads, on the right the group it writes.
# The stem, the first block's `conv2` and the second block's `conv1` input share one colour: they are tied by the
# first residual addition.

# %%
mp.plot_groups(graph)

# %% [markdown]
# ### Exercise 6.1 (10 min): the features a channel owns after a flatten
# When `(N, C, H, W)` is flattened to `(N, C*H*W)`, channel `c` owns the `hw = H*W` consecutive features
# `c*hw, ..., c*hw + hw - 1`. When only the channels `keep` (sorted) stay, the Linear layer after the flatten
# keeps exactly their features, in order. Return those feature indices as a LongTensor.

# %%
# Exercise 6.1 (10 min): input features of the Linear layer that survive channel pruning
def my_flatten_index(keep, hw):
    """LongTensor of the feature indices owned by the channels `keep`, each owning `hw` consecutive features."""
    ### BEGIN SOLUTION
    return (keep[:, None] * hw + torch.arange(hw)).flatten()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
cases = [(torch.tensor([0, 2]), 3),  # channels 0 and 2 of 3 features each: 0 1 2 6 7 8
         (torch.tensor([1]), 4), (torch.arange(0, 16, 2), 25),
         (torch.randperm(64, generator=g)[:20].sort().values, 9)]
mp.course.check_exercise("6.1", my_flatten_index, extra_cases=cases)

# %% [markdown]
# ## Channels in the VGG-style network
# Two ways to score a channel: the **L1 norm** of its filter, and **network slimming** (Liu et al. 2017): train with
# an L1 penalty on the BatchNorm scales `gamma` so unimportant channels get `gamma` near zero, then rank
# channels by `|gamma|` across the whole network (`scope="global"`).

# %%
l1_vgg = mp.prune_channels(vgg, 0.5)

slim = mp.copy_model(vgg)
mp.seed_everything(0)
mp.fit(slim, train_loader, mp.TrainConfig(epochs=1, lr=1e-3), loss_fn=mp.slimming_loss(1e-4), progress=False)
slim_vgg = mp.prune_channels(slim, 0.5, scores=mp.bn_scale_scores(slim), scope="global")
print("widths after L1, 50% per layer:   ", [m.out_channels for m in l1_vgg.modules() if isinstance(m, torch.nn.Conv2d)])
print("widths after slimming, 50% global:", [m.out_channels for m in slim_vgg.modules()
                                             if isinstance(m, torch.nn.Conv2d)])

# %%
results = {"VGG": vgg, "VGG L1 50%": finetuned(l1_vgg), "VGG slimming 50%": finetuned(slim_vgg)}
mp.compare(results, test_loader, timing=False)

# %% [markdown]
# ### The channel explorer
# In a running notebook, move the slider and change the score and the scope: the explorer removes that fraction
# of the channels of every coupled group (or ranks all channels together with `global`), builds the physically
# smaller copy, and shows its accuracy *before* fine-tuning, its MACs and the channels each layer keeps.
# (A saved notebook cannot run widgets, so the picture below is a static snapshot at 50%.) Try: how far can you
# go with L1 scores before accuracy collapses? Does `global` keep the early or the late layers wider?

# %%
explorer = mp.channel_explorer(vgg, test_loader, sparsity=0.5)

# %%
# NBVAL_CHECK_OUTPUT
print({name: kept for name, kept in explorer.kept_channels(explorer.pruned(0.5, "l1", "global")).items()})

# %% [markdown]
# Global ranking with L1 scores nearly empties the first layers: a filter's L1 norm grows with its fan-in
# (`in_channels * kh * kw` weights), so filters of early, narrow layers always look "small". Rank globally only
# with scores that are comparable across layers, like the BatchNorm scales of network slimming above.

# %% [markdown]
# ## Channels in the residual network
# The same call works on SmallResNet: the groups make sure that a block's output, its shortcut and the next
# block's input keep the same channels.

# %%
# NBVAL_CHECK_OUTPUT
small_resnet = mp.prune_channels(resnet, 0.5)
for name in ["stem.0", "layers.0.conv2", "layers.1.conv1", "layers.1.conv2", "layers.1.shortcut.0"]:
    conv = small_resnet.get_submodule(name)
    print(f"{name:22s} {conv.in_channels:3d} -> {conv.out_channels:3d}")

# %%
results = {"ResNet": resnet, "ResNet 50% channels": finetuned(small_resnet)}
table = mp.compare(results, test_loader, timing=False)
table

# %%
acc = {row["model"]: row["acc"] for row in table.rows}
assert acc["ResNet 50% channels"] > acc["ResNet"] - 5, acc

# %% [markdown]
# ## Models you bring
# `mp.prune_channels` is not limited to the kit's models: the tracer follows what torchvision's networks are made
# of. In MobileNetV3 that means squeeze-excitation blocks (a pooled side branch of two 1x1 convs whose
# `Hardsigmoid` output multiplies the block's channels one by one, so the branch's last conv is tied to the block's
# channels), depthwise convolutions (followers, like BatchNorm), `Hardswish`, residual additions, and dropout and
# the flatten before the classifier. Here is MobileNetV3-small with untrained weights (only the shapes matter
# here) on a 64 x 64 input, with half of every group's channels removed:

# %%
# NBVAL_CHECK_OUTPUT
def widths(layer):
    """(inputs, outputs) of a convolution or a Linear layer."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


mp.seed_everything(0)
mobilenet = torchvision.models.mobilenet_v3_small(weights=None)
small_mobilenet = mp.prune_channels(mobilenet, 0.5, example=torch.zeros(1, 3, 64, 64))
for label, model in [("MobileNetV3-small", mobilenet), ("50% of its channels", small_mobilenet)]:
    print(f"{label:20s} {mp.count_params(model):>9,} parameters {mp.count_macs(model, (3, 64, 64)) / 1e6:4.1f} M MACs")
print()
for name in ["features.4.block.0.0", "features.4.block.1.0", "features.4.block.2.fc1", "features.4.block.2.fc2",
             "features.4.block.3.0", "classifier.0"]:
    before, after = widths(mobilenet.get_submodule(name)), widths(small_mobilenet.get_submodule(name))
    print(f"{name:24s} {before[0]:4d} -> {before[1]:4d}   now {after[0]:4d} -> {after[1]:4d}")

# %% [markdown]
# In block `features.4` the squeeze-excitation branch (`block.2`: `fc1` squeezes, `fc2` expands back) lost its
# channels together with the depthwise conv whose output it scales (`block.1`). A misread graph would give a copy
# that runs but computes something else, so every compacted copy is checked before you get it:
# `mp.remove_channels` (which `mp.prune_channels` calls) runs the copy and its **masked equivalent** (the original
# model with the removed channels zeroed) on a random batch and compares their outputs with `mp.check_compacted`.
# If they differ, you get a `DependencyError` instead of a model.
#
# ### A layer of your own
# The tracer looks inside every module that has no rule of its own, one operation at a time, and follows most
# code. Not all of it: the layer below scales each channel by a learned factor with `torch.einsum`, and the
# tracer does not read einsum's subscripts, so it cannot tell which axis carries the channels. (Written as
# `x * self.scale.view(-1, 1, 1)`, a broadcast multiply, it would be followed.) Rather than guess, it refuses,
# and names the module and the operation:

# %%
class ChannelScale(nn.Module):
    """y[:, c] = scale[c] * x[:, c] for an (N, C, H, W) input: a learned factor per channel."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return torch.einsum("nchw,c->nchw", x, self.scale)

    def extra_repr(self):
        return f"channels={self.channels}"


def small_cnn(channel_layer):
    """conv 16 -> channel_layer -> conv 32 -> channel_layer -> pooled Linear classifier, for 1 x 28 x 28 digits."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), channel_layer(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), channel_layer(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


digit = torch.zeros(1, 1, 28, 28)
scaled_net = small_cnn(ChannelScale)

# %%
# NBVAL_CHECK_OUTPUT
try:
    mp.prune_channels(scaled_net, 0.5, example=digit)
except mp.DependencyError as refusal:
    print(refusal)

# %% [markdown]
# A rule tells the tracer to keep the layer as one call and tells the surgery what to slice. `ChannelScale` is a
# **follower**: it reads and writes the same channels, like BatchNorm. Its channels are on axis 1 of its input,
# its tensor `scale` is indexed by them along dim 0, and its attribute `channels` holds the width. With the rule
# registered, prune it in the three steps `mp.prune_channels` takes: trace the groups, select the channels to
# keep (L1 scores, half of every group), remove the others. Doing them yourself keeps `keep` and the graph for
# the check.

# %%
# NBVAL_CHECK_OUTPUT
mp.register_rule(ChannelScale, mp.ChannelRule("follower", axis=1, channel_tensors={"scale": 0},
                                              sizes={"channels": "out"}))
scaled_graph = mp.trace_groups(scaled_net, digit)
keep = mp.select_channels(scaled_graph, mp.score_groups(scaled_graph, mp.norm_scores(scaled_net, p=1)), 0.5)
small_scaled = mp.remove_channels(scaled_net, keep, scaled_graph)
small_scaled

# %% [markdown]
# `mp.check_compacted` returns the largest difference between the compacted model's outputs and its masked
# equivalent's, relative to the largest output (rounding error only; it raises a `DependencyError` above 1e-4 in
# float32):

# %%
print(f"relative difference: {mp.check_compacted(scaled_net, small_scaled, keep, scaled_graph):.1e}")

# %% [markdown]
# `mp.registered_rules()` lists every layer type the library has a rule for (your `ChannelScale` is among them
# now) and its kind. "Depends on the module" means the rule looks at the module first: a convolution is a layer,
# or a follower when it is depthwise; a PReLU with one slope per channel is a follower, with a single slope it
# passes the channels through.

# %%
rules_by_kind = {}
for layer_type, kind in mp.registered_rules().items():
    rules_by_kind.setdefault(kind, []).append(layer_type)
for kind, layer_types in rules_by_kind.items():
    print(f"{kind}: {', '.join(layer_types)}")

# %% [markdown]
# ### Exercise 6.2 (5 min): a rule for a layer of your own
# `ChannelAffine` scales *and* shifts each channel: `weight` holds one factor per channel, `bias` is stored as
# `(1, C, 1, 1)` so that it broadcasts, and `num_features` holds the width. Return the `mp.ChannelRule` that lets
# the library prune it. The check registers your rule, removes half of the channels of `small_cnn(ChannelAffine)`
# (and then other fractions of other widths), and compares `(num_features, weight shape, bias shape)` of the
# pruned `ChannelAffine` layers and the pruned network's outputs with what they must be. Some wrong rules are
# refused earlier, by the tracer or by the compacted-model check: read the message.

# %%
class ChannelAffine(nn.Module):
    """y[:, c] = weight[c] * x[:, c] + bias[0, c, 0, 0] for an (N, C, H, W) input."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, num_features))
        self.bias = nn.Parameter(torch.linspace(-0.1, 0.1, num_features).reshape(1, -1, 1, 1))

    def forward(self, x):
        return torch.einsum("nchw,c->nchw", x, self.weight) + self.bias


# %%
# Exercise 6.2 (5 min): the ChannelRule of ChannelAffine
def my_affine_rule():
    """mp.ChannelRule for ChannelAffine: its kind, its channel axis, which dim of each tensor the channels index,
    and the attribute that holds the width."""
    ### BEGIN SOLUTION
    return mp.ChannelRule("follower", axis=1, channel_tensors={"weight": 0, "bias": 1}, sizes={"num_features": "out"})
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
mp.course.check_exercise("6.2", my_affine_rule, extra_cases=[(ChannelAffine, (16, 32), 0.5)])


# %% [markdown]
# ## Whole blocks and layers
# A residual block with an identity shortcut computes `relu(F(x) + x)`; remove it and `x` passes through
# unchanged, so the network still runs (Veit et al. 2016). In VGG, the second conv-BN-ReLU of each stage maps
# `C` channels to `C` channels at the same resolution, so it can be replaced by the identity too.
# `mp.block_scores` measures how much the loss grows when each candidate is removed.

# %%
x, y = data.sample(256, "val")
print("droppable:", mp.droppable(vgg))
scores = mp.block_scores(vgg, x, y)
for name, s in scores.items():
    print(f"{name:12s} loss increase {s:.3f}")
shallow = finetuned(mp.prune_blocks(vgg, x, y, n=1))
mp.compare({"VGG": vgg, "VGG minus one layer": shallow}, test_loader, timing=False)

# %% [markdown]
# ## N:M semi-structured sparsity
# 2:4 sparsity keeps the 2 largest of every 4 consecutive weights of a row. NVIDIA Ampere (and later) GPUs have
# sparse tensor cores that run such matrices about twice as fast (`torch.sparse.to_sparse_semi_structured`,
# fp16 on CUDA). A CPU has no such kernel: there, 2:4 only saves storage and theoretical MACs. Layers whose
# rows are not a multiple of 4 long (the first conv: 1 x 3 x 3 = 9) are skipped.

# %% [markdown]
# ### Exercise 6.3 (10 min): an N:M mask
# Split every row of a 2-D score tensor into groups of `m` consecutive entries and keep the `n` highest scores of
# each group (`True` = keep). Assume the row length is a multiple of `m`. When scores tie, keep exactly `n` all the
# same: which of two equal scores stays is up to you.

# %%
# Exercise 6.3 (10 min): N:M mask of a 2-D score tensor
def my_nm_mask(scores, n, m):
    """Bool tensor shaped like `scores` (rows, cols): True for the n highest of every m consecutive entries."""
    ### BEGIN SOLUTION
    groups = scores.reshape(scores.shape[0], -1, m)  # (rows, cols / m, m)
    top = groups.topk(n, dim=2).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True)
    return mask.reshape(scores.shape)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(torch.tensor([[1.0, 4.0, 2.0, 3.0, 8.0, 5.0, 7.0, 6.0]]), 2, 4),  # keep 4, 3 | 8, 7
         (torch.tensor([[0.1, 0.9], [0.8, 0.2]]), 1, 2),
         (torch.rand(6, 16, generator=g), 2, 4), (torch.rand(5, 24, generator=g), 1, 8)]
mp.course.check_exercise("6.3", my_nm_mask, extra_cases=cases)

# %%
nm = mp.copy_model(vgg)
masks = mp.nm_masks(mp.magnitude_scores(nm), 2, 4)
mp.apply_masks(nm, masks)
print("accuracy 2:4, no fine-tuning:", mp.evaluate(nm, test_loader)["acc"], "dense:", mp.evaluate(vgg, test_loader)["acc"])
print("GPU 2:4 kernels available here:", mp.structured.nm_sparsity.semi_structured_supported())
mp.Table([mp.nm_report(nm, masks, 2, 4)])

# %% [markdown]
# ## Surgery by hand: one conv-BN pair
# `mp.prune_channels` did every surgery of this notebook for you. Here is the smallest one written out: the output
# channels of a convolution followed by BatchNorm and ReLU, and the convolution that reads them.
#
# ### Exercise 6.4 (15 min): remove channels from a conv-BN-conv triple
# Write `my_remove_channels(conv, bn, next_conv, keep)`: return three **new** modules that keep only the output
# channels `keep` of `conv`. `keep` is a sorted LongTensor of channel indices (the library refuses an unsorted one:
# sort yours with `keep.sort().values`, the kept channels keep their order). Every tensor indexed by those channels
# loses the others:
# - `conv`: the rows of its weight (dim 0), and its bias if it has one;
# - `bn`: its `weight` and `bias`, and the buffers `running_mean` and `running_var`;
# - `next_conv`: the input channels of its weight (dim 1); its bias belongs to its own outputs and stays whole.
#
# Set `conv.out_channels`, `bn.num_features` and `next_conv.in_channels` to the new width, keep everything else
# (BatchNorm's `eps`, `momentum` and train/eval mode, the kernels, strides and paddings), and leave the inputs as
# they were. Only convolutions with `groups=1`; a Linear layer after a flatten is out of scope here (Exercise 6.1
# gave its columns). The check compares every tensor and size of your three modules, and the output of
# `next_conv(relu(bn(conv(x))))`, with the library's `mp.remove_conv_bn_channels`: first on a pair of the trained
# SmallVGG (half of the channels of `features.3`, the 16 filters of largest L1 norm), then on triples with and
# without a conv bias, a non-square kernel in `next_conv`, BatchNorm in train mode with its own `eps` and
# `momentum`, and a single kept channel.

# %%
# Exercise 6.4 (15 min): a conv-BN-conv triple without the channels that are not in `keep`
import copy


def my_remove_channels(conv, bn, next_conv, keep):
    """New (conv, bn, next_conv) keeping only the output channels `keep` (sorted LongTensor) of `conv`."""
    ### BEGIN SOLUTION
    conv, bn, next_conv = copy.deepcopy(conv), copy.deepcopy(bn), copy.deepcopy(next_conv)  # inputs untouched
    with torch.no_grad():
        conv.weight = nn.Parameter(conv.weight[keep].clone())
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias[keep].clone())
        bn.weight, bn.bias = nn.Parameter(bn.weight[keep].clone()), nn.Parameter(bn.bias[keep].clone())
        bn.running_mean, bn.running_var = bn.running_mean[keep].clone(), bn.running_var[keep].clone()
        next_conv.weight = nn.Parameter(next_conv.weight[:, keep].clone())
    conv.out_channels = bn.num_features = next_conv.in_channels = len(keep)
    return conv, bn, next_conv
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
pair_conv, pair_bn, pair_next = vgg.features[3][0], vgg.features[3][1], vgg.features[4][0]
l1 = pair_conv.weight.detach().abs().sum(dim=(1, 2, 3))  # one L1 norm per filter
half = l1.topk(pair_conv.out_channels // 2).indices.sort().values  # the 16 largest, in channel order
cases = [(pair_conv, pair_bn, pair_next, half, torch.randn(2, 16, 14, 14, generator=g))]
mp.course.check_exercise("6.4", my_remove_channels, extra_cases=cases)

# %% [markdown]
# Put the new triple into a copy of SmallVGG and count what it saved. Which model does the smaller one equal? The
# one whose removed channels are zeroed **after BatchNorm and ReLU**, where `next_conv` reads them. Zeroing the
# conv's output channels instead is a classic mistake: BatchNorm turns a zero into its shift
# `bias - weight * running_mean / sqrt(running_var + eps)`, ReLU lets it through when it is positive, and
# `next_conv` still reads something from a "removed" channel.

# %%
small_vgg = mp.copy_model(vgg).eval()
small_vgg.features[3][0], small_vgg.features[3][1], small_vgg.features[4][0] = my_remove_channels(
    pair_conv, pair_bn, pair_next, half)
for label, model in [("SmallVGG", vgg), ("half of features.3 removed", small_vgg)]:
    print(f"{label:27s} {mp.count_params(model):>7,} parameters {mp.count_macs(model) / 1e6:5.2f} M MACs")

kept_channels = torch.zeros(1, pair_conv.out_channels, 1, 1)
kept_channels[0, half] = 1.0
after_relu, after_conv = mp.copy_model(vgg).eval(), mp.copy_model(vgg).eval()
after_relu.features[3].register_forward_hook(lambda module, inputs, out: out * kept_channels)  # conv, BN, ReLU
after_conv.features[3][0].register_forward_hook(lambda module, inputs, out: out * kept_channels)  # the conv only
x_val, _ = data.sample(256, "val")
with torch.no_grad():
    pruned_out = small_vgg(x_val)
    print(f"channels zeroed after BN and ReLU: max |difference| {(pruned_out - after_relu(x_val)).abs().max():.1e}")
    print(f"channels zeroed after the conv:    max |difference| {(pruned_out - after_conv(x_val)).abs().max():.1e}")

# %% [markdown]
# ## Why sparsity is not speed
# "My pruned model is not faster" is the question every pruning library hears most. Let us measure it on
# LeNet-300-100 with four versions that have about the same number of useful weights:
# - **dense**: the trained model;
# - **masked**: 90% of the weights zeroed with masks (notebook 03): same shapes, plus a mask multiply per forward;
# - **CSR**: the same zeros stored in compressed sparse rows, run with a sparse matrix multiply;
# - **compacted**: 85% of the hidden neurons removed physically.

# %%
mlp = mp.pretrained("lenet300", progress=False)
masked = mp.copy_model(mlp)
mp.prune(masked, mp.magnitude_scores(masked), 0.9)
variants = {"dense": mlp, "masked": masked, "CSR": mp.to_csr(masked),
            "compacted": mp.prune_channels(mlp, {"layers.1": 0.85, "layers.3": 0.85})}
grid = mp.latency_grid(variants, mlp.input_shape, batch_sizes=BATCH_SIZES, threads=THREADS, repeats=REPEATS)
grid

# %%
fig, axes = plt.subplots(1, len(THREADS), figsize=(10, 3.5), sharey=True)
for ax, n_threads in zip(axes, THREADS):
    rows = [r for r in grid.rows if r["threads"] == n_threads]
    for name in variants:
        ax.plot([r["batch"] for r in rows], [r[name] / r["batch"] for r in rows], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="batch size", title=f"{n_threads} thread(s)")
axes[0].set_ylabel("ms per example")
_ = axes[0].legend()

# %% [markdown]
# What the measurements say (your numbers will differ, the pattern should not):
# - **masked is never faster than dense**: a dense kernel multiplies zeros at full price, and the mask hook adds
#   one more multiply per layer. Masks are a training tool, not a deployment format.
# - **CSR** skips the zeros, but gives up the vectorised, cache-blocked dense kernel; it needs very high sparsity
#   (and large matrices) to win, and often loses at small batch sizes.
# - **compacted** is a smaller dense model: it keeps the fast kernel *and* drops the work.
# - **per-example time falls with batch size**: at batch 1 the fixed cost of every layer call (Python, dispatch,
#   memory allocation) dominates and the cores sit mostly idle, so removing MACs barely shows.
# - **more threads help large batches only**: small matrices cannot be split usefully across cores.
#
# ## Latency against MACs
# Now compact SmallVGG at several channel fractions and plot batch-64 latency against MACs. If time were
# proportional to MACs the points would lie on a line through the origin.

# %%
fractions = [0.0, 0.25, 0.5, 0.75]
compacted = {f"{f:.0%}": mp.prune_channels(vgg, f) for f in fractions}
odd = mp.build("vgg", widths=(13, 27, 53))  # "odd" channel counts
compacted["odd widths"] = odd
row = mp.latency_grid(compacted, vgg.input_shape, batch_sizes=(64,), threads=(2,), repeats=REPEATS).rows[0]
macs = {name: mp.count_macs(m) for name, m in compacted.items()}
for name in compacted:
    plt.scatter(macs[name] / 1e6, row[name], label=name)
plt.xlabel("MACs per example (millions)")
plt.ylabel("ms at batch 64, 2 threads")
plt.legend(title="channels removed")
_ = plt.title("SmallVGG: latency vs MACs")

# %% [markdown]
# Latency falls with MACs but not proportionally: the parts of the network that do not shrink (data movement,
# pooling, BatchNorm and ReLU passes, per-layer overhead) become a larger share. Channel counts that are not a
# multiple of the CPU's vector width (8 floats for AVX2, 16 for AVX-512) leave vector lanes partly empty, so an
# odd width can cost about as much as the next multiple of 8. `mp.prune_channels(model, sparsity, round_to=8)`
# rounds every kept width down to a multiple of 8 for this reason (Torch-Pruning has the same option). The
# benchmark `bench/structured.py` measures the same trade-off at 4x fewer MACs on three networks, at 1 and 2
# threads and in channels_last layout.
#
# ## What the library gave you
# - `mp.trace_groups`, `mp.groups_table`, `mp.plot_groups`: coupled channel groups;
# - `mp.prune_channels` (`scope="global"`, per-layer dicts), `mp.bn_scale_scores`, `mp.slimming_loss`;
# - `mp.select_channels`, `mp.score_groups`, `mp.remove_channels`: the steps of `mp.prune_channels`;
#   `mp.check_compacted`: the compacted copy against its masked equivalent;
# - `mp.register_rule`, `mp.ChannelRule`, `mp.registered_rules`: layers of your own, and what is followed;
# - `mp.droppable`, `mp.block_scores`, `mp.prune_blocks`: depth pruning;
# - `mp.nm_masks`, `mp.nm_report`: N:M masks and their storage and MAC figures;
# - `mp.remove_conv_bn_channels`: the surgery of one conv-BN-conv triple (Exercise 6.4);
# - `mp.to_csr`, `mp.latency_grid`, `mp.speedups`: honest timing;
# - `mp.channel_explorer`: the channel-pruning explorer; `round_to=` in `mp.prune_channels` rounds widths.
