# %% [markdown]
# # 04 · Fine-tuning: recovering accuracy after pruning
#
# Pruning without retraining falls off a cliff around 90-95% sparsity (notebook 03). The remaining weights can
# **adapt** to the missing ones: a few epochs of training with the masks held fixed recovers most of the loss.
#
# **Learning objectives.** After this notebook you can
# 1. prune one-shot and fine-tune, with masks that stay applied through training, saving and loading;
# 2. prune iteratively (Han et al. 2015): prune a little, retrain, repeat, and compare it with one-shot at the same
#    training budget;
# 3. measure whether pruning changes overfitting on our small data set (train vs test accuracy);
# 4. compute the honest storage size of a sparse model, and see when sparsity saves bytes and when it does not.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
ROUNDS = 2 if FAST else 5  # iterative rounds
EPOCHS_PER_ROUND = 1 if FAST else 3
TARGETS = [0.9, 0.98] if FAST else [0.9, 0.95, 0.98, 0.99]
LR = 1e-3

# %%
import tempfile
from pathlib import Path

import torch

import minprune as mp

mp.seed_everything(0)
device = "cpu"
splits = mp.load("mnist-small")
dense = mp.pretrained("lenet300", progress=False)
test_loader = splits.loader("test", 500)
dense_acc = mp.accuracy(dense, test_loader)
print(f"dense test accuracy: {dense_acc:.1f}%")

# %% [markdown]
# ## 1. One-shot prune, then fine-tune
# Prune 98% of the weights globally by magnitude, then train for a few epochs. The learner sees the whole loop:
# `mp.fine_tune` is `mp.fit` on the pruned model; the masks persist because the forward pre-hook recomputes
# `weight = weight_orig * weight_mask` at every step.

# %%
target = TARGETS[-1]
one_shot = mp.copy_model(dense)
masks = mp.prune(one_shot, mp.magnitude_scores(one_shot), target, scope="global")
acc_pruned = mp.accuracy(one_shot, test_loader)
history = mp.fine_tune(one_shot, splits, ROUNDS * EPOCHS_PER_ROUND, lr=LR)
acc_tuned = mp.accuracy(one_shot, test_loader)
print(f"{100 * target:.0f}% sparse: {acc_pruned:.1f}% right after pruning -> {acc_tuned:.1f}% after "
      f"{ROUNDS * EPOCHS_PER_ROUND} epochs of fine-tuning (dense {dense_acc:.1f}%)")
fig = mp.plots.plot_history(history, label="one-shot")

# %%
# NBVAL_CHECK_OUTPUT
weights = mp.measure.effective_parameters(one_shot)
print("pruned weights still exactly zero after fine-tuning:",
      all(bool(torch.all(weights[n][~m] == 0)) for n, m in masks.items()))
print(f"sparsity of the prunable weights: {mp.masks_sparsity(mp.get_masks(one_shot)):.4f}")

# %%
assert acc_tuned > acc_pruned, (acc_pruned, acc_tuned)

# %% [markdown]
# ## 2. Iterative pruning
# Han et al. (2015) pruned in rounds: each round removes the same *fraction of the surviving* weights, then
# retrains. `mp.iterative_sparsities(final, rounds)` gives the targets; `mp.iterative_prune` runs the rounds
# (already pruned weights stay pruned, so each round's sparsity is the total). Same training budget as one-shot:

# %%
# NBVAL_CHECK_OUTPUT
steps = mp.iterative_sparsities(target, ROUNDS)
print([round(s, 4) for s in steps])

# %%
iterative = mp.copy_model(dense)
config = mp.IterativeConfig(epochs=EPOCHS_PER_ROUND, lr=LR, eval_split="test")
rounds = mp.iterative_prune(iterative, mp.magnitude_scores, steps, splits, config)
mp.Table(rounds, title="iterative pruning (test accuracy, %)")

# %% [markdown]
# `acc_pruned` is the accuracy right after each pruning step, `acc` after that round's fine-tuning: the saw-tooth
# of Han et al.'s figure. Now one-shot vs iterative at every target, same number of epochs:

# %%
curves = {"one-shot, no fine-tuning": [], "one-shot + fine-tune": [], "iterative": []}
for sparsity in TARGETS:
    m = mp.copy_model(dense)
    mp.prune(m, mp.magnitude_scores(m), sparsity, scope="global")
    curves["one-shot, no fine-tuning"].append((sparsity, mp.accuracy(m, test_loader)))
    mp.fine_tune(m, splits, ROUNDS * EPOCHS_PER_ROUND, lr=LR)
    curves["one-shot + fine-tune"].append((sparsity, mp.accuracy(m, test_loader)))
    m = mp.copy_model(dense)
    rows = mp.iterative_prune(m, mp.magnitude_scores, mp.iterative_sparsities(sparsity, ROUNDS), splits, config)
    curves["iterative"].append((sparsity, rows[-1]["acc"]))
fig = mp.plots.plot_accuracy_vs_sparsity(curves, dense_acc=dense_acc)
mp.Table([{"method": k, **{f"{s:g}": a for s, a in v}} for k, v in curves.items()], title="test accuracy (%)")

# %% [markdown]
# Fine-tuning recovers most of what pruning lost. With a small budget, iterative and one-shot end up close on
# this easy task; iterative pruning pays off most at the highest sparsities, where one big cut removes weights
# that retraining can no longer replace. (The benchmark `bench/unstructured.py` repeats this with 3 seeds.)
#
# ## 3. Does pruning reduce overfitting?
# Our training set is small (3,500 digits), so the dense model fits it almost perfectly. Pruning removes
# capacity: does the gap between training and test accuracy shrink? We measure it rather than assume it.

# %%
train_eval = splits.loader("train", 500, shuffle=False)
rows = []
for label, m in [("dense", dense), (f"one-shot {target:g} + fine-tune", one_shot),
                 (f"iterative {target:g}", iterative)]:
    train_acc, test_acc = mp.accuracy(m, train_eval), mp.accuracy(m, test_loader)
    rows.append({"model": label, "train acc": train_acc, "test acc": test_acc, "gap": train_acc - test_acc})
mp.Table(rows, title="train vs test accuracy (%)")

# %% [markdown]
# Read the table: if the gap of the pruned models is smaller than the dense gap, pruning acted as a regulariser
# here; if the test accuracy also dropped, the smaller gap came from fitting the training set *less*, not from
# generalising better. Both happen in the literature; on this data set the numbers above are the answer.
#
# ## 4. Saving and loading a pruned model
# A state_dict of a masked model holds `weight_orig` and `weight_mask`. A freshly built model has no place for
# them, a common complaint about `torch.nn.utils.prune`. `mp.save_model` / `mp.load_model` (through
# `mp.load_masked_state_dict`) rebuild the masks, so every pruned weight is still zero after loading:

# %%
# NBVAL_CHECK_OUTPUT
with tempfile.TemporaryDirectory() as tmp:
    path = mp.save_model(Path(tmp) / "pruned.pt", one_shot)
    loaded, _ = mp.load_model(path)
print("same masks:", all(torch.equal(mp.get_masks(loaded)[n], m) for n, m in mp.get_masks(one_shot).items()))
print("same accuracy:", mp.accuracy(loaded, test_loader) == mp.accuracy(one_shot, test_loader))

# %% [markdown]
# ## 5. The honest size of a sparse model
# Zeros still take 4 bytes each in a dense tensor. To save bytes, store only the nonzeros **and where they are**:
# - CSR: a column index per nonzero plus a pointer per row;
# - bitmask: one bit per weight plus the nonzero values;
# - relative indices (Han et al. 2015): the gap to the previous nonzero in 4 bits, with a filler entry when a
#   gap is too long.
#
# `mp.storage_table` serializes every tensor in every format (real bytes, decodable back to the same tensor):

# %%
half = mp.copy_model(dense)
mp.prune(half, mp.magnitude_scores(half), 0.5)
mp.storage_table(half)

# %%
mp.storage_table(one_shot)

# %%
total_half = mp.storage_table(half).rows[-1]
total_sparse = mp.storage_table(one_shot).rows[-1]
print(f"50% sparse: CSR is {total_half['csr'] / total_half['dense']:.2f}x the dense bytes")
print(f"{100 * target:.0f}% sparse: best format is {total_sparse['dense'] / total_sparse['best']:.1f}x smaller "
      "than dense")
assert total_half["csr"] > 0.7 * total_half["dense"]  # at 50% the index overhead eats most of the saving

# %% [markdown]
# At 50% sparsity the index overhead eats a large part of the savings: CSR with 16-bit column indices keeps
# three quarters of the dense bytes, the bitmask about half. At 98% the model shrinks by more than an order of
# magnitude. Quantizing the remaining values (a later notebook) multiplies the savings.
#
# ## What the library gave you
# - `mp.fine_tune(model, splits, epochs)`, `mp.iterative_prune(model, score_fn, sparsities, splits, config)`,
#   `mp.iterative_sparsities(final, rounds)`, `mp.IterativeConfig`
# - `mp.save_model` / `mp.load_model` and `mp.load_masked_state_dict` for masked models
# - `mp.storage_table`, `mp.sparse_storage.encode` / `decode`
