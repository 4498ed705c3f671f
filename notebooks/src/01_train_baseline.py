# %% [markdown]
# # 01 · Train and measure the baselines
#
# **Learning objectives.** After this notebook you can
# 1. train LeNet-300-100 (an MLP) and LeNet-5 (a CNN) with `mp.fit` and read their training curves;
# 2. count parameters and multiply-accumulates (MACs) by hand and check your counts against the library;
# 3. measure a model the way every later notebook will: accuracy, parameters, nonzeros, MACs, latency, bytes;
# 4. look at a trained network's weight histograms and see why pruning is possible.
#
# Time: about 45 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
EXPLORE_EPOCHS = 2 if FAST else 8  # the optimizer comparison below; the baselines use a fixed recipe

# %%
import torch

import minprune as mp

mp.seed_everything(0)
data = mp.load("mnist-small")
train_loader, val_loader, test_loader = data.loader("train"), data.loader("val", 500), data.loader("test", 500)

# %% [markdown]
# ## The two networks
# **LeNet-300-100** flattens the 28x28 image into 784 numbers and applies three fully connected layers
# (784 → 300 → 100 → 10). **LeNet-5** first applies two convolution + pooling stages, then three small
# fully connected layers. Both come from LeCun et al. (1998) and are the classic pruning benchmarks.

# %%
# NBVAL_CHECK_OUTPUT
mlp = mp.build("lenet300")
cnn = mp.build("lenet5")
print(mlp)
print(cnn)

# %% [markdown]
# ### Exercise 1.1 (5 min): count the parameters yourself
# A `Linear(n_in, n_out)` layer has a weight matrix `W` of shape `(n_out, n_in)` and a bias of `n_out`; a
# `Conv2d` has a weight of shape `(out_channels, in_channels, kh, kw)` and a bias of `out_channels`.
# Write a function that counts all parameters of a model. The check cell below compares it with `mp.count_params`,
# first on the models above, then on models with BatchNorm, a layer without bias, a weight shared by two layers
# (stored once, so counted once) and weights that are exactly zero (still stored, so still counted).

# %%
# BUILD IT YOURSELF
# Exercise 1.1 (5 min): count every parameter of a model
def my_count_params(model):
    """Total number of parameters of `model` (an int)."""
    ### BEGIN SOLUTION
    total = 0
    for _, p in model.named_parameters():
        total += p.numel()
    return total
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
tiny = torch.nn.Linear(3, 2)  # 3*2 weights + 2 biases = 8, checkable by eye
mp.course.check_exercise("1.1", my_count_params, extra_cases=[(tiny,), (mlp,), (cnn,)])
print(f"LeNet-300-100: {mp.count_params(mlp):,} parameters, LeNet-5: {mp.count_params(cnn):,}")

# %% [markdown]
# ### MACs: the work of one forward pass
# A fully connected layer does one multiply-accumulate per weight: 784·300 + 300·100 + 100·10 = 266,200 MACs.
# A convolution reuses each filter weight at every output position, so LeNet-5 has **fewer parameters but more
# MACs** than the MLP. `mp.count_macs` measures it with `torch.utils.flop_counter` (1 MAC = 2 FLOPs).

# %%
# NBVAL_CHECK_OUTPUT
print("MLP MACs by hand:", 784 * 300 + 300 * 100 + 100 * 10, " measured:", mp.count_macs(mlp))
print("LeNet-5 MACs per module:", mp.count_macs(cnn, by_module=True))
print("LeNet-5 MACs in all:", mp.count_macs(cnn))

# %% [markdown]
# ### Exercise 1.2 (10 min): the MACs of a convolution
# A `Conv2d` with `C_in` input channels, `C_out` filters of size `kh x kw`, stride `s` and padding `p`, applied to
# an `H x W` input, produces an output of size `H_out = (H + 2p - kh) // s + 1` (the same for the width). Every
# output value costs `C_in * kh * kw` multiply-accumulates (assume `groups=1`; the bias is an addition, not a MAC).
# Kernels, strides and paddings are pairs `(height, width)` that need not be equal: `conv.kernel_size == (kh, kw)`.
# Write `my_conv_macs(conv, H, W)`. The check compares it with `mp.count_macs` on the layer alone, on non-square
# kernels and inputs, strides and paddings that differ per axis, and sizes the stride does not divide.

# %%
# Exercise 1.2 (10 min): multiply-accumulates of one Conv2d on an H x W input
def my_conv_macs(conv, H, W):
    """MACs of `conv` (an nn.Conv2d with groups=1) applied to one (conv.in_channels, H, W) input."""
    ### BEGIN SOLUTION
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    h_out = (H + 2 * ph - kh) // sh + 1
    w_out = (W + 2 * pw - kw) // sw + 1
    return conv.out_channels * h_out * w_out * conv.in_channels * kh * kw
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(torch.nn.Conv2d(1, 1, 3), 4, 4),  # 2x2 outputs, 9 MACs each: 36
         (cnn.features[0], 28, 28), (cnn.features[3], 14, 14),
         (torch.nn.Conv2d(3, 8, 5, stride=2, padding=1), 32, 32)]
mp.course.check_exercise("1.2", my_conv_macs, extra_cases=cases)

# %% [markdown]
# **Question 1.3 (5 min).** LeNet-5 has 4x fewer parameters than LeNet-300-100 but more MACs. Which of the two
# would you expect to shrink more on disk when you prune 90% of its weights, and which to speed up more when you
# remove 90% of its *computation*? Write two sentences.
#
# *Your answer:* ...

# %% [markdown]
# ## Training with `mp.fit`
# `mp.fit` is an ordinary PyTorch training loop (read it with `mp.show_source(mp.fit)`). It shows a progress
# bar and returns a `History` of losses and accuracies per epoch. How long and how fast it trains is one small
# value, `mp.TrainConfig(epochs=, lr=, optimizer=)`: the recipe of a run, which you can print, compare and reuse.
# It trains on `mp.device()`, the kit's one
# device rule: a CUDA GPU when there is one, else the CPU (set the environment variable `MINPRUNE_DEVICE=cpu`
# to choose; every function that trains, evaluates or scores follows it). First a quick experiment: which
# optimizer trains the MLP faster on our small data set?

# %%
print("training on", mp.device())
histories = {}
for name, lr in (("sgd", 0.05), ("adam", 1e-3)):
    mp.seed_everything(0)
    model = mp.build("lenet300")
    histories[name] = mp.fit(model, train_loader, mp.TrainConfig(epochs=EXPLORE_EPOCHS, lr=lr, optimizer=name),
                             val_loader=val_loader)
    print(f"{name:5s} lr={lr}: validation accuracy per epoch {[round(a, 1) for a in histories[name].val_acc]}")

# %%
fig = mp.plot_history(histories["sgd"], label="sgd")
fig = mp.plot_history(histories["adam"], label="adam", axes=fig.axes)

# %% [markdown]
# ## The baselines every later notebook starts from
# `mp.pretrained(arch)` returns a baseline trained with a fixed recipe (Adam, 12 epochs, seed 0). The kit ships
# these trained models as small, hash-checked safe model files, so notebooks 02-11 start from *the same*
# weights on every learner's machine, in a second. Why ship them rather than train them here? Training is
# deterministic on one machine, but not across machines: an AVX-512 CPU, an AVX2 CPU, an Apple M-series chip
# or a different number of threads add the same numbers in a different order, the last bits of every step
# differ, and after 12 epochs the weights (and every result downstream) differ a little. The models you train
# yourself in this notebook are yours; the shipped baselines are everyone's. A recipe with no shipped file
# (another seed, another data set) is trained on first use, with a message, and cached.

# %%
baselines = {arch: mp.pretrained(arch) for arch in ("lenet300", "lenet5")}
for arch, model in baselines.items():
    print(f"{arch}: recipe {model.baseline_meta['recipe']}")

# %%
fig = mp.plot_history(mp.History(**baselines["lenet300"].baseline_meta["history"]), label="LeNet-300-100")
fig = mp.plot_history(mp.History(**baselines["lenet5"].baseline_meta["history"]), label="LeNet-5",
                            axes=fig.axes)

# %% [markdown]
# ## Measure everything
# `mp.compare` measures each model the same way: test accuracy (%), parameters, nonzero parameters, MACs per
# image, median CPU latency for a batch of 64 images, and the size of the saved weights, raw and zip-compressed.
# Latency depends on your machine, so your numbers will differ from the committed ones.

# %%
table = mp.compare(baselines, test_loader)
table

# %% [markdown]
# The accuracies are deterministic, so we can check them with a tolerance:

# %%
acc = dict(zip(table.column("model"), table.column("acc")))
assert 93.0 <= acc["lenet300"] <= 97.5, acc
assert 96.0 <= acc["lenet5"] <= 99.5, acc
print("baseline accuracies in the expected range:", {k: round(v, 1) for k, v in acc.items()})

# %% [markdown]
# Notice: compression barely shrinks a dense model (random-looking float32 bytes do not compress). Once half of
# the weights are exactly zero, it will. And the MLP has 4x more parameters than LeNet-5 but fewer MACs.
#
# ## Weight histograms: why pruning is possible
# The trained weights pile up around zero (the histograms below), and the cell after them counts how many of the
# first layer's weights are tiny. If the small ones matter little, we can remove them: that is the intuition
# behind magnitude pruning, which notebook 02 turns into *importance scores*.

# %%
fig = mp.plot_weight_histograms(baselines["lenet300"])

# %%
# NBVAL_CHECK_OUTPUT
W = baselines["lenet300"].layers[1].weight.detach()  # (300, 784)
small = (W.abs() < 0.01).float().mean().item()
print(f"first layer: {W.numel():,} weights, {100 * small:.0f}% of them have |w| < 0.01")

# %% [markdown]
# ## Saving a model safely
# `mp.save_model` writes the weights plus a plain description of the architecture (never a pickled module),
# atomically; `mp.load_model` reads it back with `torch.load(weights_only=True)`, so loading a file can never
# run code, and a hash detects files that were changed.

# %%
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    path = mp.save_model(Path(tmp) / "lenet5.pt", baselines["lenet5"], meta={"note": "baseline"})
    reloaded, meta = mp.load_model(path)
same = all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), baselines["lenet5"].state_dict().values()))
print("reloaded model identical:", same, meta)

# %% [markdown]
# ## What the library gave you
# * `mp.build(arch)`, `mp.count_params`, `mp.count_macs`, `mp.course.check_exercise`
# * `mp.fit(model, loader, mp.TrainConfig(epochs=, lr=, optimizer=), val_loader=)` → `History`; `mp.evaluate`; `mp.device()`
# * `mp.pretrained(arch)`: the shipped baselines; `mp.compare(models, loader)`: the measurement table
# * `mp.plot_history`, `mp.plot_weight_histograms`; `mp.save_model` / `mp.load_model`
#
# Next: **02_importance_scores**: which of these weights matter?
