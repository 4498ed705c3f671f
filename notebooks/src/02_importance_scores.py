# %% [markdown]
# # 02 · Importance scores: which weights matter?
#
# Pruning starts with a question: *if I had to remove a weight, which one would hurt least?*
# An **importance score** answers it with one number per weight; the lowest scores go first.
#
# **Learning objectives.** After this notebook you can
# 1. compute magnitude (L1, L2), random, gradient, Taylor, SNIP, GraSP and SynFlow scores with one API;
# 2. write the magnitude and the Taylor score yourself and check them against the library (Exercises 2.1, 2.2);
# 3. read score histograms and per-layer views, and explain why scores span many orders of magnitude;
# 4. compare rankings: how much do magnitude and gradient-based scores agree on what to keep?
#
# Every score function returns `dict[name -> tensor shaped like the weight]` and **never changes the model**.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
BATCHES = 2 if FAST else 8  # batches of data for gradient-based scores
SYNFLOW_ROUNDS = 10 if FAST else 50

# %%
import matplotlib.pyplot as plt
import torch

import minprune as mp

mp.seed_everything(0)
splits = mp.load("mnist-small")
model = mp.pretrained("lenet300", progress=False)  # trained once, then cached
test_loader = splits.loader("test", 500)
print(f"dense test accuracy: {mp.accuracy(model, test_loader):.1f}%")

# %% [markdown]
# ## 1. What can be pruned?
# By default we prune the weights of every `nn.Linear` and `nn.Conv2d` (biases are few and cheap).

# %%
# NBVAL_CHECK_OUTPUT
names = mp.prunable_names(model)
for name in names:
    print(name, tuple(mp.effective_parameters(model)[name].shape))

# %% [markdown]
# ## 2. Magnitude: the simplest score
# Han et al. (2015) pruned the weights with the smallest absolute value: `score = |w|` (L1) or `w²` (L2).
# Small weights contribute little to the layer's output, so removing them should change little.
#
# ### Exercise 2.1 (5 min): magnitude scores, L1 and L2
# Write `my_magnitude_scores(model, p=1)` returning `{name: |w| ** p}` for every prunable weight
# (`mp.prunable_names(model)`), as float tensors shaped like the weights: `p=1` is the L1 score `|w|`, `p=2` the
# L2 score `w²`. Scores never change the model: detach the weights and do not modify them in place.
# The check cell compares your function with `mp.magnitude_scores` on a 2x3 layer you can check by eye, on
# LeNet-300-100, then on a small model with a non-square convolution, BatchNorm (whose weight is not prunable),
# negative and zero weights, and other powers `p`.

# %%
# BUILD IT YOURSELF
# Exercise 2.1 (5 min): magnitude scores |w| ** p
def my_magnitude_scores(model, p=1):
    """{name: |w| ** p} for every prunable weight of `model` (float tensors shaped like the weights)."""
    ### BEGIN SOLUTION
    scores = {}
    params = dict(model.named_parameters())
    for name in mp.prunable_names(model):
        W = params[name].detach()  # (out, in)
        scores[name] = W.abs() ** p
    return scores
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
tiny = torch.nn.Sequential(torch.nn.Linear(3, 2))
with torch.no_grad():
    tiny[0].weight.copy_(torch.tensor([[0.5, -2.0, 0.0], [-1.0, 0.25, 3.0]]))  # L1: [[0.5, 2, 0], [1, 0.25, 3]]
cases = [(tiny, 1), (tiny, 2), (model, 1), (model, 2)]
mp.course.check_exercise("2.1", my_magnitude_scores, extra_cases=cases)

# %% [markdown]
# From here on we use the library version. Its weight histograms show a peak around zero: many weights are
# tiny, which is why magnitude pruning can remove so many of them.

# %%
fig = mp.plot_weight_histograms(model)

# %%
magnitude = mp.magnitude_scores(model)
fig = mp.plot_score_histograms(magnitude)

# %% [markdown]
# ## 3. Scores that use data
# Magnitude ignores what the network does with a weight. Gradient-based scores ask how the **loss** would
# react. The first-order Taylor expansion of the loss around `w` says that setting `w` to zero changes the loss
# by about `-w · dL/dw`, so **Taylor** importance is `|w · dL/dw|` (Molchanov et al. 2019), averaged over a few
# batches. **Gradient** magnitude `|dL/dw|` drops the weight factor. **SNIP** (Lee et al. 2019) is the same
# product normalised to sum to 1, designed to prune *at initialisation*. **GraSP** (Wang et al. 2020) uses a
# Hessian-gradient product to keep gradient flow. **SynFlow** (Tanaka et al. 2020) uses no data at all: it
# scores `|w · dR/dw|` where R is the output of the network with all weights made positive on an all-ones input.
#
# Without data, the data-based scores refuse to run with a clear message:

# %%
# NBVAL_CHECK_OUTPUT
try:
    mp.taylor_scores(model)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ### Exercise 2.2 (10 min): the Taylor score of one batch
# For one batch `(x, y)`, compute the mean cross-entropy loss of the model, the gradient `dL/dw` of every
# prunable weight, and return `{name: |w · dL/dw|}`. Score the model as it predicts, in eval mode (Dropout off,
# BatchNorm's running statistics), and put it back in the mode it came in. Take the gradients with
# `torch.autograd.grad(loss, weights)`: it returns them without storing anything in `.grad`, so the model is left
# as it was (`loss.backward()` would write into the caller's `.grad`).
# The check compares your function with `mp.taylor_scores(model, [(x, y)], batches=1)`: first on a 2x2 layer
# whose two rows are equal, so both logits are equal, the softmax gives 0.5 each and you can work the scores out
# by hand; then on LeNet-300-100 and a real batch; then on small models in train mode, with Dropout and BatchNorm,
# and with gradients already stored in `.grad`, which must stay as they were.

# %%
# Exercise 2.2 (10 min): first-order Taylor scores |w * dL/dw| for one batch
def my_taylor_scores(model, x, y):
    """{name: |w * dL/dw|} for every prunable weight, L the mean cross-entropy of model(x) against labels y."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    names = mp.prunable_names(model)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [params[name] for name in names])
    model.train(was_training)
    return {name: (params[name].detach() * g).abs() for name, g in zip(names, grads)}
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
train_loader = splits.loader("train", 128, shuffle=False)
x, y = next(iter(train_loader))
pair = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
with torch.no_grad():
    pair[0].weight.copy_(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
x_hand, y_hand = torch.tensor([[1.0, 0.0]]), torch.tensor([0])  # dL/dW = [[-0.5, 0], [0.5, 0]]
mp.course.check_exercise("2.2", my_taylor_scores, extra_cases=[(pair, x_hand, y_hand), (model, x, y)])

# %%
all_scores = {
    "L1": magnitude,
    "L2": mp.magnitude_scores(model, p=2),
    "random": mp.random_scores(model, seed=0),
    "gradient": mp.gradient_scores(model, train_loader, batches=BATCHES),
    "Taylor": mp.taylor_scores(model, train_loader, batches=BATCHES),
    "SNIP": mp.snip_scores(model, train_loader, batches=BATCHES),
    "GraSP": mp.grasp_scores(model, train_loader, batches=BATCHES),
    "SynFlow": mp.synflow_scores(model),
}
fig = mp.plot_score_histograms(all_scores["Taylor"])

# %% [markdown]
# The axis is log10 of the score: Taylor scores are far smaller than the magnitudes above and spread over more
# decades, because each is a weight times a gradient, and most gradients of a trained model are tiny.
#
# **Scores never change the model.** Gradient scores run on a private copy in eval mode, so no `.grad`,
# BatchNorm statistic or training flag of our model moves:

# %%
# NBVAL_CHECK_OUTPUT
before = {k: v.clone() for k, v in model.state_dict().items()}
_ = mp.taylor_scores(model, train_loader, batches=1)
print("unchanged:", all(torch.equal(before[k], v) for k, v in model.state_dict().items()),
      "| any .grad set:", any(p.grad is not None for p in model.parameters()))

# %% [markdown]
# ## 4. Do the scores agree?
# Two scores agree on *what to keep* if their top-ranked sets overlap. For each score we keep the top 10% of
# each layer (`mp.topk_mask(scores, 0.9)`) and measure the overlap with magnitude's top 10%
# (1.0 = same weights, about 0.1 = no better than chance).

# %%
rows = []
for label, scores in all_scores.items():
    row = {"score": label}
    for name in names:
        mine = mp.topk_mask(scores[name], 0.9)
        ref = mp.topk_mask(magnitude[name], 0.9)
        row[name] = float((mine & ref).sum() / ref.sum())
    rows.append(row)
mp.Table(rows, title="overlap of the top 10% with magnitude's top 10%")

# %% [markdown]
# L2 ranks exactly like L1 (squaring keeps the order). Random overlaps at chance. Taylor and SNIP agree more
# with magnitude than pure gradient does, because they multiply by `w`.
#
# **Question 2.3 (5 min).** L2 keeps exactly the weights L1 keeps, within every layer. Would it still prune the
# same weights under a *global* ranking across layers? And why can a weight with a large `|w|` still get a tiny
# Taylor score? Write two sentences.
#
# *Your answer:* ...
#
# A scatter plot of one layer shows the same thing at the level of single weights:

# %%
name = "layers.3.weight"
x = magnitude[name].flatten()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for ax, label in zip(axes, ["gradient", "Taylor"]):
    y = all_scores[label][name].flatten()
    keep = (x > 0) & (y > 0)
    ax.loglog(x[keep].numpy(), y[keep].numpy(), ".", markersize=1, alpha=0.3)
    ax.set_xlabel("|w|")
    ax.set_ylabel(f"{label} score")
    ax.set_title(f"{name}: {label} vs magnitude", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## 5. Per-layer view: what a global ranking does
# Ranking all layers together ("global" scope) lets layers end up with different sparsities. How the scores
# are scaled across layers decides which layers get pruned hardest:

# %%
rows = []
for label, scores in all_scores.items():
    masks = mp.make_masks(scores, 0.9, scope="global")
    rows.append({"score": label, **{n: 1 - float(m.float().mean()) for n, m in masks.items()}})
mp.Table(rows, title="per-layer sparsity under a global 90% ranking")

# %% [markdown]
# Magnitude prunes the big first layer hardest (its weights are smallest). Gradient-based scores are larger in
# the last layers (closer to the loss), so they spare them. SynFlow's one-shot scores are very uneven; that is
# why SynFlow is meant to be applied **iteratively** (`mp.synflow_masks`), re-scoring after each small step:

# %%
synflow_masks = mp.synflow_masks(model, 0.9, rounds=SYNFLOW_ROUNDS)
mp.Table([{"score": f"SynFlow, {SYNFLOW_ROUNDS} rounds",
           **{n: 1 - float(m.float().mean()) for n, m in synflow_masks.items()}}])

# %% [markdown]
# ## 6. A first taste of pruning
# Which score keeps most accuracy when we remove 90% of the weights (globally) and do nothing else?
# (Notebook 03 studies this properly; fine-tuning comes in 04.)

# %%
results = {}
for label, scores in all_scores.items():
    pruned = mp.copy_model(model)
    mp.prune(pruned, scores, 0.9, scope="global")
    results[label] = mp.accuracy(pruned, test_loader)
pruned = mp.apply_masks(mp.copy_model(model), synflow_masks)
results["SynFlow iterative"] = mp.accuracy(pruned, test_loader)
mp.Table([{"score": k, "test acc at 90% sparsity": v} for k, v in results.items()])

# %%
# the ranking matters: magnitude beats the random control by a wide margin
assert results["L1"] > results["random"] + 20, results
print("from most to least accuracy kept:", ", ".join(sorted(results, key=results.get, reverse=True)))

# %% [markdown]
# Without any retraining, plain magnitude (L1, and L2 with the same ranking) keeps the most accuracy here: the
# gradient-based scores are not better at this. Among them, Taylor and SNIP, which multiply by the weight, do far
# better than the gradient alone, and iterative SynFlow beats one-shot SynFlow. SNIP, GraSP and SynFlow were
# designed to prune at initialisation, before training, which this comparison on a trained model does not test.
#
# ## What the library gave you
# - `mp.prunable_names(model)`: which weights are pruned by default
# - `mp.magnitude_scores`, `mp.random_scores`, `mp.gradient_scores`, `mp.taylor_scores`, `mp.snip_scores`,
#   `mp.grasp_scores`, `mp.synflow_scores`: `{name: scores}` without changing the model
# - `mp.synflow_masks(model, sparsity, rounds)`: iterative SynFlow
# - `mp.topk_mask`, `mp.make_masks`, `mp.prune`, `mp.copy_model` (used here, explained in 03)
# - `mp.plot_score_histograms`; `mp.course.check_exercise` for your own versions
