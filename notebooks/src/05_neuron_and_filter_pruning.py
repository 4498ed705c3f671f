# %% [markdown]
# # 05 · Neuron and filter pruning
#
# **Learning objectives.** After this notebook you can
# 1. score whole units (a neuron of an MLP, a filter of a CNN) instead of single weights;
# 2. remove units *physically*, so the pruned network is a genuinely smaller `nn.Module`;
# 3. explain why removing a filter also removes an input channel of the next layer;
# 4. measure what that buys: parameters, MACs and latency before and after.
#
# Time: about 45 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
SPARSITIES = [0.25, 0.5, 0.75, 0.9] if FAST else [0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.85, 0.9, 0.95]
FINETUNE_EPOCHS = 1 if FAST else 3
REPEATS = 10 if FAST else 30

# %%
import matplotlib.pyplot as plt
import torch

import minprune as mp

mp.seed_everything(0)
data = mp.load("mnist-small")
train_loader, test_loader = data.loader("train"), data.loader("test", 500)
mlp = mp.pretrained("lenet300", progress=False)
cnn = mp.pretrained("lenet5", progress=False)

# %% [markdown]
# ## Weights versus units
# Notebook 03 zeroed single weights. The matrices kept their shapes, so a dense matrix multiply still does
# every multiplication. If instead we remove a whole **neuron** (a row of `W` in one layer and the matching
# column of `W` in the next), both matrices shrink, and every remaining multiplication is useful work.
#
# Which neurons? The simplest unit score is the **L1 norm** of a unit's incoming weights
# (Li et al. 2017, "Pruning filters for efficient ConvNets"): a neuron whose weights are all small contributes little.
# `mp.norm_scores` returns one score per output unit, keyed like the weight scores of notebook 02.

# %%
# NBVAL_CHECK_OUTPUT
scores = mp.norm_scores(mlp, p=1)
for name, s in scores.items():
    print(f"{name:16s} {tuple(s.shape)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, name in zip(axes, ["layers.1.weight", "layers.3.weight"]):
    ax.hist(scores[name].numpy(), bins=40)
    ax.set_title(f"L1 norm per neuron: {name}")
    ax.set_xlabel("score")
    ax.set_ylabel("neurons")
plt.tight_layout()

# %% [markdown]
# ### Exercise 5.1 (10 min): which neurons stay
# Given one score per neuron and a `sparsity` (the fraction of neurons to remove), return the indices of the
# neurons that **stay**, sorted ascending. Remove `round(sparsity * n)` neurons (`mp.n_pruned`, the one rounding
# rule of the library), the ones with the lowest scores. Among equal scores the later neuron goes first (the
# library breaks ties this way everywhere), so the earlier one stays. Scores can be negative: lower is lower.

# %%
# Exercise 5.1 (10 min): indices of the neurons that stay
def my_kept_neurons(scores, sparsity):
    """Sorted LongTensor of the indices of the `n - round(sparsity * n)` highest `scores` (1-D tensor)."""
    ### BEGIN SOLUTION
    n_keep = len(scores) - mp.n_pruned(len(scores), sparsity)
    best = torch.argsort(scores, descending=True, stable=True)[:n_keep]  # equal scores keep index order
    return best.sort().values
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
cases = [(torch.tensor([0.3, 0.1, 0.4, 0.2]), 0.5),  # keeps neurons 0 and 2
         (torch.tensor([5.0, 1.0, 3.0]), 0.3),  # round(0.9) = 1 removed: keeps 0 and 2
         (scores["layers.1.weight"], 0.75), (torch.rand(100, generator=g), 0.37)]
mp.course.check_exercise("5.1", my_kept_neurons, extra_cases=cases)

# %% [markdown]
# ## Remove neurons of LeNet-300-100
# `mp.prune_channels(model, sparsity)` scores, selects and removes in one call and **returns a smaller copy**
# (the original is untouched). Here a dict gives one sparsity per layer; the output layer is never pruned:
# its 10 units are the classes.

# %%
# NBVAL_CHECK_OUTPUT
half = mp.prune_channels(mlp, {"layers.1": 0.5, "layers.3": 0.5})
print(half.layers)
print(f"parameters: {mp.count_params(mlp):,} -> {mp.count_params(half):,}")

# %% [markdown]
# ### Exercise 5.2 (15 min): shrink two Linear layers
# Removing hidden neuron `i` deletes row `i` of the first layer's weight `W1` (shape `(hidden, in)`), entry `i` of
# its bias `b1`, and **column** `i` of the next layer's weight `W2` (shape `(out, hidden)`): nothing reads that
# neuron any more. Return the three smaller tensors for the neurons `keep` (a sorted LongTensor).

# %%
# Exercise 5.2 (15 min): physically remove hidden neurons from two Linear layers
def my_remove_neurons(W1, b1, W2, keep):
    """(W1 rows `keep`, b1 entries `keep`, W2 columns `keep`) as a tuple of three tensors."""
    ### BEGIN SOLUTION
    return W1[keep], b1[keep], W2[:, keep]
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
W1, b1, W2 = torch.arange(6.0).reshape(3, 2), torch.tensor([10.0, 20.0, 30.0]), torch.arange(6.0).reshape(2, 3)
fc1, fc2 = mlp.layers[1], mlp.layers[3]
cases = [(W1, b1, W2, torch.tensor([0, 2])),  # rows 0 and 2 of W1, columns 0 and 2 of W2
         (fc1.weight.detach(), fc1.bias.detach(), fc2.weight.detach(), torch.arange(0, 300, 2)),
         (torch.randn(8, 5, generator=g), torch.randn(8, generator=g), torch.randn(4, 8, generator=g),
          torch.tensor([1, 4, 7]))]
mp.course.check_exercise("5.2", my_remove_neurons, extra_cases=cases)

# %% [markdown]
# How much accuracy does neuron pruning cost *before* any fine-tuning? Compare L1 scores with random scores
# (the control every pruning paper should show).

# %%
def accuracy_after(model, sparsity, scores):
    layers = {"layers.1": sparsity, "layers.3": sparsity}
    return mp.evaluate(mp.prune_channels(model, layers, scores=scores), test_loader)["acc"]


g = torch.Generator().manual_seed(0)
random = {k: torch.rand(v.shape, generator=g) for k, v in scores.items()}
curves = {"L1 norm": [accuracy_after(mlp, s, scores) for s in SPARSITIES],
          "random": [accuracy_after(mlp, s, random) for s in SPARSITIES]}
for label, accs in curves.items():
    plt.plot(SPARSITIES, accs, marker="o", label=label)
plt.xlabel("fraction of hidden neurons removed")
plt.ylabel("test accuracy (%)")
plt.legend()
_ = plt.title("LeNet-300-100, no fine-tuning")

# %% [markdown]
# ## Filters in LeNet-5
# In a convolution the unit is a **filter**: `W[i]` of shape `(in_channels, kh, kw)` produces output channel `i`.
#
# ### Exercise 5.3 (5 min): the L1 score of every filter
# The L1 score of filter `i` is the sum of `|W[i]|`. Write it for a weight tensor `W` of shape
# `(out, in, kh, kw)` (or `(out, in)` for a Linear layer, `(out, in, k)` for a Conv1d): one score per output unit.

# %%
# BUILD IT YOURSELF
# Exercise 5.3 (5 min): L1 norm of every filter
def my_filter_l1(W):
    """1-D tensor of length W.shape[0]: the sum of |W[i]| for every output unit i."""
    ### BEGIN SOLUTION
    scores = torch.zeros(W.shape[0])
    for i in range(W.shape[0]):
        scores[i] = W[i].abs().sum()
    return scores
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
W = cnn.features[3].weight.detach()  # (16, 6, 5, 5)
cases = [(torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.5]]]]),),  # two 1x1x2 filters: scores 3 and 1
         (W,), (torch.randn(8, 3, 3, 3, generator=g),), (torch.randn(5, 7, generator=g),)]
mp.course.check_exercise("5.3", my_filter_l1, extra_cases=cases)

# %% [markdown]
# Removing filter `i` of `features.3` removes output channel `i`, so the next layer loses an input. Here the next
# layer is a `Linear` after a flatten: each channel owns its **5 x 5 = 25** consecutive features, so one filter
# removes 25 input columns of `classifier.1`. `mp.trace_groups` finds such couplings by tracing the model with
# `torch.fx` (notebook 06 looks at harder cases).

# %%
# NBVAL_CHECK_OUTPUT
graph = mp.trace_groups(cnn)
for group in graph.prunable():
    print(group.size, group.producers, "->", group.consumers)
print("classifier.1 reads", graph.inputs["classifier.1"], "(group, features per channel)")

# %%
# NBVAL_CHECK_OUTPUT
small_cnn = mp.prune_channels(cnn, 0.5)
print(small_cnn.features)
print(small_cnn.classifier[1])

# %% [markdown]
# ## Which filter score? L1, Taylor, activations
# Besides weight norms, unit scores can come from data: **first-order Taylor** (Molchanov et al. 2017,
# |activation x gradient|, the loss change if the unit were removed), the **mean activation**, and
# **APoZ** (Hu et al. 2016, average percentage of zeros after ReLU; we score 1 - APoZ so higher means keep).

# %%
score_sets = {
    "L1": mp.norm_scores(cnn),
    "Taylor": mp.taylor_unit_scores(cnn, train_loader, max_batches=4),
    "mean act.": mp.activation_scores(cnn, train_loader, stat="mean"),
    "1 - APoZ": mp.activation_scores(cnn, train_loader, stat="apoz"),
}
accs = {k: mp.evaluate(mp.prune_channels(cnn, 0.5, scores=s), test_loader)["acc"] for k, s in score_sets.items()}
plt.bar(list(accs), list(accs.values()))
plt.axhline(mp.evaluate(cnn, test_loader)["acc"], color="k", ls="--", label="unpruned")
plt.xlabel("unit score")
plt.ylabel("test accuracy (%)")
plt.title("LeNet-5, 50% of units removed, no fine-tuning")
_ = plt.legend()

# %% [markdown]
# ## Fine-tune and measure
# A short fine-tune recovers most of the accuracy. Then `mp.compare` measures parameters, MACs, latency
# (batch 64) and bytes of both models. The MAC and parameter ratios are exact: the smaller layers *do* less work.
# Whether that shows up as time depends on the model and the machine: LeNet-5 is so small that per-layer overhead
# (Python, dispatch, memory allocation) is a large part of its run time, and on a busy laptop the timings are noisy.

# %%
mp.seed_everything(0)
mp.fit(small_cnn, train_loader, mp.TrainConfig(epochs=FINETUNE_EPOCHS, lr=1e-3), progress=False)
mp.fit(half, train_loader, mp.TrainConfig(epochs=FINETUNE_EPOCHS, lr=1e-3), progress=False)
table = mp.compare({"LeNet-5": cnn, "LeNet-5 50% filters": small_cnn, "LeNet-300-100": mlp,
                    "LeNet-300-100 50% neurons": half}, test_loader)
table

# %%
acc = {row["model"]: row["acc"] for row in table.rows}
assert acc["LeNet-5 50% filters"] > acc["LeNet-5"] - 3, acc
assert acc["LeNet-300-100 50% neurons"] > acc["LeNet-300-100"] - 3, acc
assert mp.count_macs(small_cnn) < 0.5 * mp.count_macs(cnn)

# %% [markdown]
# For a fair ratio, time both models *interleaved* in the same process and take medians. Expect a speedup well
# below the MAC ratio on a network this small (or none on a loaded machine); notebook 06 explains why and
# `bench/structured.py` measures larger networks.

# %%
ratio = mp.speedups({"dense": cnn, "pruned": small_cnn}, cnn.input_shape, batch_size=64, repeats=REPEATS)
print(f"LeNet-5 at batch 64: {ratio['pruned']:.1f}x faster for "
      f"{mp.count_macs(cnn) / mp.count_macs(small_cnn):.1f}x fewer MACs")

# %% [markdown]
# ## What the library gave you
# - `mp.norm_scores`, `mp.unit_norms`, `mp.taylor_unit_scores`, `mp.activation_scores`: one score per unit;
# - `mp.trace_groups`: which layers share channels;
# - `mp.prune_channels`: score, select and physically remove units, returning a smaller copy;
# - `mp.speedups`: interleaved latency ratios.
