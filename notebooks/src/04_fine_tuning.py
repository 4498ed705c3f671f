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
# 4. compute the honest storage size of a sparse model, and see when sparsity saves bytes and when it does not;
# 5. write the iterative sparsity schedule, accuracy and the bitmask size yourself (Exercises 4.1-4.3).

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

import matplotlib.ticker
import torch

import minprune as mp

mp.seed_everything(0)
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
history = mp.fine_tune(one_shot, splits, mp.TrainConfig(epochs=ROUNDS * EPOCHS_PER_ROUND, lr=LR))
acc_tuned = mp.accuracy(one_shot, test_loader)
print(f"{100 * target:.0f}% sparse: {acc_pruned:.1f}% right after pruning -> {acc_tuned:.1f}% after "
      f"{ROUNDS * EPOCHS_PER_ROUND} epochs of fine-tuning (dense {dense_acc:.1f}%)")
fig = mp.plot_history(history, label="one-shot")

# %%
# NBVAL_CHECK_OUTPUT
weights = mp.effective_parameters(one_shot)
print("pruned weights still exactly zero after fine-tuning:",
      all(bool(torch.all(weights[n][~m] == 0)) for n, m in masks.items()))
print(f"sparsity of the prunable weights: {mp.masks_sparsity(mp.get_masks(one_shot)):.4f}")

# %%
assert acc_tuned > acc_pruned, (acc_pruned, acc_tuned)

# %% [markdown]
# ## 2. Iterative pruning
# Han et al. (2015) pruned in rounds: each round removes the same *fraction of the surviving* weights, then
# retrains. `mp.iterative_sparsities(final, rounds)` gives the targets; `mp.iterative_prune` runs the rounds
# (already pruned weights stay pruned, so each round's sparsity is the total).
#
# ### Exercise 4.1 (5 min): the sparsity after each round
# Every round removes the same fraction of the weights that survived the previous rounds, and after the last of
# `rounds` rounds the sparsity is `final`. Write `my_iterative_sparsities(final, rounds)`: the list of total
# sparsities after rounds 1, 2, ..., `rounds`. (Which fraction of the weights survives one round, if `1 - final`
# survive all of them?) The check compares it with `mp.iterative_sparsities`.

# %%
# Exercise 4.1 (5 min): the total sparsity after each of `rounds` equal rounds
def my_iterative_sparsities(final, rounds):
    """[sparsity after round 1, ..., after round `rounds` (== final)]: each round removes the same fraction."""
    ### BEGIN SOLUTION
    keep_per_round = (1 - final) ** (1 / rounds)
    return [1 - keep_per_round**k for k in range(1, rounds + 1)]
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(0.75, 2),  # keep 1/2 per round: [0.5, 0.75]
         (0.875, 3),  # keep 1/2 per round: [0.5, 0.75, 0.875]
         (0.9, 1), (0.98, 5), (0.99, 3)]
mp.course.check_exercise("4.1", my_iterative_sparsities, extra_cases=cases)

# %% [markdown]
# From here on the library's schedule: the rounds for our target, with the same training budget as one-shot.

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
    mp.fine_tune(m, splits, mp.TrainConfig(epochs=ROUNDS * EPOCHS_PER_ROUND, lr=LR))
    curves["one-shot + fine-tune"].append((sparsity, mp.accuracy(m, test_loader)))
    m = mp.copy_model(dense)
    rows = mp.iterative_prune(m, mp.magnitude_scores, mp.iterative_sparsities(sparsity, ROUNDS), splits, config)
    curves["iterative"].append((sparsity, rows[-1]["acc"]))
fig = mp.plot_accuracy_vs_sparsity(curves, dense_acc=dense_acc)
ax = fig.axes[0]  # label only the sparsities we measured (the logit axis would label its minor ticks too)
ax.set_xticks(TARGETS, labels=[f"{s:g}" for s in TARGETS])
ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
mp.Table([{"method": k, **{f"{s:g}": a for s, a in v}} for k, v in curves.items()], title="test accuracy (%)")

# %% [markdown]
# Fine-tuning recovers most of what pruning lost. With a small budget, iterative and one-shot end up close on
# this easy task: compare the last two rows of the table. The benchmark `bench/unstructured.py` repeats this with
# 3 seeds and 15 epochs (iterative: 3 rounds of 5), and its results in `bench/results/unstructured.md` do not show
# iterative pruning winning at the highest sparsities. Global magnitude pruning, one-shot against iterative:
#
# | sparsity | one-shot + fine-tune | iterative |
# |---|---|---|
# | 0.9 | 94.73 ± 0.58 | 94.90 ± 0.40 |
# | 0.95 | 94.23 ± 0.42 | 94.60 ± 0.61 |
# | 0.98 | 93.87 ± 0.49 | 92.77 ± 0.06 |
# | 0.99 | 91.90 ± 0.80 | 89.93 ± 0.47 |
#
# Iterative is a little ahead at 0.9 and 0.95 (within one standard deviation), and one-shot is ahead at 0.98 and
# 0.99. A likely reason: with the same total number of epochs, the iterative model trains only its last 5 epochs
# at the final sparsity, where one-shot trains all 15 there.
#
# ## 3. Does pruning reduce overfitting?
# Our training set is small (3,500 digits), so the dense model fits it almost perfectly. Pruning removes
# capacity: does the gap between training and test accuracy shrink? We measure it rather than assume it.

# %% [markdown]
# ### Exercise 4.2 (10 min): accuracy, the measure behind the gap
# Write `my_accuracy(model, loader)`: the percentage of the examples in `loader` (any iterable of `(x, y)` batches)
# whose largest logit is at the true label. Measure in eval mode without gradients, and leave the model in the
# mode you found it (as `mp.accuracy` does). The check starts with a 2-input, 3-class layer and three examples
# whose predictions you can work out by hand.

# %%
# Exercise 4.2 (10 min): accuracy in percent over all batches of a loader
def my_accuracy(model, loader):
    """Percentage (0-100) of examples in `loader` whose argmax logit equals the label."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    correct, seen = 0, 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            seen += len(y)
    model.train(was_training)
    return 100.0 * correct / seen
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
three = torch.nn.Linear(2, 3)
with torch.no_grad():
    three.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    three.bias.zero_()
x_hand = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.2]])  # logits [2, 0, 1], [0, 2, 1], [1, 1.2, 1.1]
y_hand = torch.tensor([0, 1, 2])  # right, right, wrong: 66.67%
train_eval = splits.loader("train", 500, shuffle=False)
cases = [(three, [(x_hand, y_hand)]), (dense, test_loader), (one_shot, test_loader), (dense, train_eval)]
mp.course.check_exercise("4.2", my_accuracy, extra_cases=cases)

# %%
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

# %% [markdown]
# ### Exercise 4.3 (10 min): the bytes of the bitmask format
# The bitmask format stores one bit per entry (1 = nonzero), packed 8 to a byte (the last byte padded), then the
# nonzero values, `W.element_size()` bytes each (4 for float32). Write `my_bitmask_bytes(W)`: the bytes of the
# bits and the values (leave out the small header that `mp.unstructured.sparse_storage.encode` writes before every format).

# %%
# Exercise 4.3 (10 min): bytes of the bitmask encoding of a tensor, header excluded
def my_bitmask_bytes(W):
    """Bytes of one bit per entry (packed 8 per byte) plus the nonzero values of W (an int)."""
    ### BEGIN SOLUTION
    bits_bytes = (W.numel() + 7) // 8
    return bits_bytes + int(torch.count_nonzero(W)) * W.element_size()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(torch.tensor([[0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0]]),),  # 8 bits = 1 byte, 2 values = 8 bytes
         (torch.eye(3),),  # 9 bits = 2 bytes, 3 values = 12 bytes
         (torch.randn(5, 7).half(),), (mp.effective_parameters(one_shot)["layers.1.weight"].detach(),)]
mp.course.check_exercise("4.3", my_bitmask_bytes, extra_cases=cases)

# %% [markdown]
# **Question 4.4 (5 min).** From your formula: above which sparsity does the bitmask format take fewer bytes than
# the dense float32 tensor? And CSR with 16-bit column indices (ignore the row pointers)? Compare with the tables
# below.
#
# *Your answer:* ...

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
# - `mp.fine_tune(model, splits, mp.TrainConfig(epochs=))`, `mp.iterative_prune(model, score_fn, sparsities, splits, config)`,
#   `mp.iterative_sparsities(final, rounds)`, `mp.IterativeConfig`
# - `mp.save_model` / `mp.load_model` and `mp.load_masked_state_dict` for masked models
# - `mp.storage_table`, `mp.unstructured.sparse_storage.encode` / `decode`
