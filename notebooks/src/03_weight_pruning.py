# %% [markdown]
# # 03 · Weight pruning: from scores to masks
#
# Scores rank the weights (notebook 02). Now we decide **how many** to remove and **where**, apply the
# decision as a mask, and measure what it costs in accuracy, *before* any retraining.
#
# **Learning objectives.** After this notebook you can
# 1. turn scores into masks by target sparsity or by threshold, per layer (local) or across layers (global);
# 2. write local, threshold and global masks yourself, with exact counts and a fixed tie rule, and check them
#    against the library (Exercises 3.1-3.3);
# 3. explain the mask reparametrisation (`weight_orig * weight_mask`) shared with `torch.nn.utils.prune`;
# 4. draw accuracy-vs-sparsity curves against the random and shuffled-mask controls;
# 5. run a sensitivity scan and turn it into per-layer sparsities;
# 6. choose per-layer sparsities that meet a weight budget and an accuracy budget at once (the challenge,
#    Exercise 3.4).

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
GRID = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99] if FAST else [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995]
SCAN_GRID = [0.5, 0.8, 0.9, 0.95, 0.99] if FAST else [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]

# %%
import torch

import minprune as mp

mp.seed_everything(0)
splits = mp.load("mnist-small")
model = mp.pretrained("lenet300", progress=False)
test_loader, val_loader = splits.loader("test", 500), splits.loader("val", 500)
dense_acc = mp.accuracy(model, test_loader)
print(f"dense test accuracy: {dense_acc:.1f}%")

# %% [markdown]
# ## 1. Target sparsity: keep the top scores, remove exactly the rest
# `sparsity` is the fraction of weights removed. With `n` weights, a sparsity `s` removes `round(s * n)`
# weights; that one rounding rule lives in `mp.n_pruned` and everything else uses it. When scores tie, the
# lower index is removed first, so masks are reproducible.
#
# ### Exercise 3.1 (10 min): keep the top scores, remove exactly the rest
# Write `my_topk_mask(scores, sparsity)`: a bool tensor shaped like `scores`, **True = keep**, that removes
# exactly `mp.n_pruned(scores.numel(), sparsity)` of the lowest scores; among equal scores the lower (flattened)
# index goes first. The check starts with a 4x4 weight whose mask you can verify by eye, then ties at the cut-off,
# the rounding rule (`round(2.5) == 2`: Python rounds halves to even), signed scores (the most negative go first),
# a sparsity of 0, a transposed (non-contiguous) tensor and random scores; when your mask is wrong, the hint says
# what its count or its choice suggests went wrong.

# %%
# BUILD IT YOURSELF
# Exercise 3.1 (10 min): a mask that removes exactly the lowest scores
def my_topk_mask(scores, sparsity):
    """Bool mask shaped like `scores` (True = keep) removing the mp.n_pruned(numel, sparsity) lowest scores."""
    ### BEGIN SOLUTION
    n = mp.n_pruned(scores.numel(), sparsity)
    order = torch.sort(scores.flatten(), stable=True).indices  # ascending, ties keep index order
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[order[:n]] = False
    return keep.view(scores.shape)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
W = torch.tensor([[0.9, -0.1, 0.4, 0.0],
                  [0.2, 0.2, -0.7, 0.3],
                  [0.1, 0.5, -0.2, 0.6],
                  [0.8, 0.0, 0.3, -0.4]])
cases = [(W.abs(), 0.5),  # 8 of 16 go: every |w| <= 0.2, and one of the two 0.3s (the first one)
         (torch.tensor([0.3, 0.1, 0.1, 0.1, 0.5]), 0.4),  # 2 go: the first two 0.1s
         (torch.tensor([0.4, 0.3, 0.2, 0.1]), 0.625),  # 0.625 * 4 = 2.5 rounds to 2
         (torch.rand(3, 3), 0.0), (torch.rand(6, 7), 0.3), (mp.magnitude_scores(model)["layers.5.weight"], 0.9)]
mp.course.check_exercise("3.1", my_topk_mask, extra_cases=cases)

# %%
# NBVAL_CHECK_OUTPUT
print(mp.topk_mask(W.abs(), 0.5).int())

# %% [markdown]
# ## 2. Applying masks: the reparametrisation
# `mp.apply_masks` (and `mp.prune`, which makes and applies masks in one call) keep the original tensor as
# `weight_orig`, the mask as the buffer `weight_mask`, and recompute `weight = weight_orig * weight_mask` in a
# forward pre-hook, exactly as `torch.nn.utils.prune` does. So pruned weights get zero gradient, stay zero under
# any optimizer, and `torch.nn.utils.prune.remove` / `mp.make_permanent` fold the mask in for good.

# %%
# NBVAL_CHECK_OUTPUT
pruned = mp.copy_model(model)
masks = mp.prune(pruned, mp.magnitude_scores(pruned), 0.9)  # local: every layer loses 90%
print(sorted(pruned.state_dict()))
print("torch sees it as pruned:", torch.nn.utils.prune.is_pruned(pruned))
print("layer sparsity:", {n: round(s, 3) for n, s in mp.layer_sparsity(pruned).items()})

# %%
fig = mp.show_masks(masks)

# %% [markdown]
# Each column of the first layer's mask is one input pixel, and the image's rows of 28 pixels follow one another,
# so the figure (cropped to the first 300 of the 784 columns: the top rows of the image) shows stripes every 28
# columns, and a black band at the left for the top rows: pixels at the border of MNIST digits are (almost) always
# background, so their weights stayed small, and magnitude pruning removes nearly all of them.
#
# ## 3. Threshold instead of target
# Han et al. (2015) pruned every weight below a threshold. With a threshold, the sparsity is an *outcome*, and
# it differs per layer: a weight equal to the threshold is pruned, only scores strictly above it are kept.

# %% [markdown]
# ### Exercise 3.2 (5 min): threshold masks for a whole model
# Write `my_threshold_masks(scores, threshold)`: for a dict `{name: scores}`, the dict `{name: bool mask}` that keeps
# only the scores **strictly above** `threshold`. The check compares it with `mp.make_masks(scores, threshold=...)`,
# also on scores equal to the threshold, signed scores and a negative threshold.

# %%
# Exercise 3.2 (5 min): keep the scores strictly above a threshold, in every layer
def my_threshold_masks(scores, threshold):
    """{name: bool mask} keeping the entries of each scores[name] that are strictly above `threshold`."""
    ### BEGIN SOLUTION
    masks = {}
    for name, s in scores.items():
        masks[name] = s > threshold
    return masks
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
magnitude = mp.magnitude_scores(model)
hand = {"a": torch.tensor([0.5, 0.25, 0.75]), "b": torch.tensor([[0.0, 1.0], [0.25, 0.5]])}
cases = [(hand, 0.25),  # keeps a: [T, F, T], b: [[F, T], [F, T]]: a score equal to the threshold is pruned
         (hand, 1.0), (magnitude, 0.05)]
mp.course.check_exercise("3.2", my_threshold_masks, extra_cases=cases)

# %%
rows = []
for threshold in [0.01, 0.03, 0.05, 0.1]:
    masks = mp.make_masks(magnitude, threshold=threshold)
    rows.append({"threshold": threshold, "total": mp.masks_sparsity(masks),
                 **{n: 1 - float(m.float().mean()) for n, m in masks.items()}})
mp.Table(rows, title="sparsity reached by a magnitude threshold")

# %% [markdown]
# ## 4. Local vs global, and the controls
# **Local** removes the same fraction from every layer. **Global** ranks all weights together, so layers with
# small weights lose more. Two controls tell us whether the ranking helps at all:
# - **random** scores: the baseline every pruning method must beat;
# - **shuffled** global masks (`mp.shuffle_masks`): the same per-layer sparsities as global magnitude,
#   at random positions. If global magnitude beats it, the *positions* matter, not just the layer budget.
#
# ### Exercise 3.3 (15 min): one global ranking, an exact count
# Write `my_global_masks(scores, sparsity)`: rank the entries of **all** tensors together and remove exactly
# `mp.n_pruned(total, sparsity)` of the lowest, `total` being the number of entries of all tensors. Ties follow
# the rule of Exercise 3.1 on the long vector you get by flattening the tensors and concatenating them in the
# dict's order. Return `{name: bool mask shaped like scores[name]}` (True = keep). You may call `mp.topk_mask`.

# %%
# Exercise 3.3 (15 min): global masks with an exact total count
def my_global_masks(scores, sparsity):
    """{name: bool mask} removing the mp.n_pruned(total, sparsity) lowest scores across all tensors together."""
    ### BEGIN SOLUTION
    flat = torch.cat([s.flatten() for s in scores.values()])  # (total,) in dict order
    keep = mp.topk_mask(flat, sparsity)
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view(s.shape)
        start += s.numel()
    return masks
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
hand = {"a": torch.tensor([0.1, 0.5]), "b": torch.tensor([[0.2, 0.9], [0.3, 0.05]])}
cases = [(hand, 0.5),  # 3 of 6 go: 0.05, 0.1, 0.2, so a keeps [F, T] and b keeps [[F, T], [T, F]]
         ({"a": torch.ones(3), "b": torch.ones(2)}, 0.4),  # all tied: the first two entries of a go
         ({"conv": torch.rand(4, 2, 3, 3), "fc": torch.rand(10, 5)}, 0.7), (magnitude, 0.9)]
mp.course.check_exercise("3.3", my_global_masks, extra_cases=cases)

# %%
curves = {"local magnitude": [], "global magnitude": [], "shuffled global masks": [], "random": []}
for sparsity in GRID:
    masks_local = mp.make_masks(magnitude, sparsity)
    masks_global = mp.make_masks(magnitude, sparsity, scope="global")
    masks_random = mp.make_masks(mp.random_scores(model, seed=0), sparsity, scope="global")
    for label, masks in [("local magnitude", masks_local), ("global magnitude", masks_global),
                         ("shuffled global masks", mp.shuffle_masks(masks_global, seed=0)),
                         ("random", masks_random)]:
        acc = mp.accuracy(mp.apply_masks(mp.copy_model(model), masks), test_loader)
        curves[label].append((sparsity, acc))
fig = mp.plot_accuracy_vs_sparsity(curves, dense_acc=dense_acc)

# %%
mp.Table([{"method": label, **{f"{s:g}": a for s, a in points}} for label, points in curves.items()],
         title="test accuracy (%) without fine-tuning")

# %%
by_sparsity = {label: dict(points) for label, points in curves.items()}
assert by_sparsity["global magnitude"][0.9] > by_sparsity["random"][0.9] + 20
assert by_sparsity["global magnitude"][0.9] > by_sparsity["shuffled global masks"][0.9]

# %% [markdown]
# Without retraining, magnitude pruning keeps the accuracy up to a surprisingly high sparsity and then falls off
# a cliff. Random pruning collapses early, and so do shuffled masks: the per-layer budget alone is not enough,
# the choice of *which* weights matters.
#
# ### Explore it yourself
# In a running notebook, move the slider and change the score and the scope: the explorer prunes a *copy* of the
# model and shows its accuracy, the sparsity of every layer and the histogram of the surviving first-layer weights.
# (A saved notebook cannot run widgets, so the picture below it is a static snapshot at 90%.) Try: at which
# sparsity does local pruning fall behind global pruning, and which layer does global pruning hit hardest?

# %%
explorer = mp.sparsity_explorer(model, test_loader, score_loader=val_loader, sparsity=0.9)

# %% [markdown]
# ## 5. Sensitivity analysis: which layer can take it?
# Prune **one layer at a time** over a grid of sparsities and measure the accuracy (on the validation split, so
# the test set stays untouched for the final numbers). The scan runs on copies; the model is unchanged.

# %%
result = mp.sensitivity_scan(model, val_loader, SCAN_GRID)
fig = mp.plot_sensitivity(result)

# %%
result.to_table()

# %% [markdown]
# The big first layer (300 x 784 weights) tolerates very high sparsity; the small output layer is the most fragile.
# From the scan, `mp.layer_sparsities` picks per layer the largest sparsity within an accuracy budget, and
# `make_masks(..., overrides=...)` applies them:

# %%
per_layer = mp.layer_sparsities(result, max_drop=1.0)
print(per_layer)
masks = mp.make_masks(magnitude, 0.0, overrides=per_layer)
sens_model = mp.apply_masks(mp.copy_model(model), masks)
print(f"sensitivity-guided: {100 * mp.masks_sparsity(masks):.1f}% sparse, "
      f"test accuracy {mp.accuracy(sens_model, test_loader):.1f}% (dense {dense_acc:.1f}%)")

# %% [markdown]
# Layers interact, so the combined drop can exceed the per-layer budget; the scan is a starting point, and
# fine-tuning (notebook 04) recovers most of the rest.
#
# ### Exercise 3.4 (20 min): challenge: meet two budgets at once
# Choose one sparsity per layer so that **at most 15% of the weights stay** and the validation accuracy falls by
# **at most 2 points** below the dense model's, without any fine-tuning. `mp.score_sparsities` prunes a *copy* of
# the model by magnitude with your sparsities, measures the fraction of the weights kept (the weights of the three
# Linear layers; biases do not count) and the accuracy on the validation split, prints a verdict and gives points:
# all of them when both targets are met. Otherwise each target gives partial credit, down to none at twice the
# target (30% of the weights kept, or a drop of 4 points), and the two credits multiply: a model that is not pruned
# scores nothing, and neither does one pruned until it breaks. Uniform sparsity at exactly the budget fails:

# %%
MAX_KEPT, MAX_DROP, POINTS = 0.15, 2.0, 20  # at most 15% of the weights kept, at most 2 points of accuracy lost
uniform = {name: 1 - MAX_KEPT for name in mp.prunable_names(model)}
_ = mp.score_sparsities(model, uniform, val_loader, max_kept=MAX_KEPT, max_drop=MAX_DROP, max_points=POINTS)
_ = mp.score_sparsities(model, per_layer, val_loader, max_kept=MAX_KEPT, max_drop=MAX_DROP, max_points=POINTS)

# %% [markdown]
# The second line scores the scan's pick from above (`per_layer`). Now it is your turn: write `my_sparsities`, a
# dict `{weight name: sparsity}` with the names of the scan's table (`"layers.1.weight"`, ...) and sparsities in
# [0, 1); a layer you leave out is not pruned. Read the scan: where are most of the weights (`mp.count_params`, or
# the shapes in the table above), which layer takes high sparsity, and which one is small and fragile?
# Try a few dicts with `mp.score_sparsities` before you settle on one.

# %%
# Exercise 3.4 (20 min): per-layer sparsities that keep at most 15% of the weights and lose at most 2 points
### BEGIN SOLUTION
my_sparsities = {"layers.1.weight": 0.88, "layers.3.weight": 0.75, "layers.5.weight": 0.0}
### END SOLUTION

# %%
challenge = mp.score_sparsities(model, my_sparsities, val_loader, max_kept=MAX_KEPT, max_drop=MAX_DROP,
                                max_points=POINTS)
challenge.points  # your points for the challenge, out of 20

# %% [markdown]
# ## What the library gave you
# - `mp.n_pruned`, `mp.topk_mask`, `mp.make_masks(scores, sparsity | threshold=, scope=, overrides=, exclude=)`
# - `mp.apply_masks`, `mp.prune`, `mp.get_masks`, `mp.make_permanent`, `mp.copy_model`
# - `mp.shuffle_masks`, `mp.masks_sparsity`
# - `mp.sensitivity_scan`, `mp.layer_sparsities`
# - `mp.score_sparsities`: the challenge's score for per-layer sparsities against a weight and an accuracy budget
# - `mp.show_masks`, `mp.plot_accuracy_vs_sparsity`, `mp.plot_sensitivity`
