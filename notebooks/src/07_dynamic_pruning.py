# %% [markdown]
# # 07 · Pruning during training: schedules, lottery tickets, dynamic sparse training, gating
#
# **Learning objectives.** After this notebook you can
# 1. write the cubic sparsity schedule of Zhu & Gupta (2017) and compare it with linear, exponential and one-shot;
# 2. prune *while* training with `mp.GradualPruner` and watch every layer's sparsity follow the schedule;
# 3. find a lottery ticket (Frankle & Carbin 2019): prune a trained network once, rewind the surviving weights
#    to their initial values, and test it against its random re-initialisation (`mp.find_ticket` repeats such
#    rounds, iterative magnitude pruning, which this notebook does not run);
# 4. train a network that is sparse from the first step with RigL / SET, and watch connections move;
# 5. compare one-shot + fine-tune, gradual, ticket and RigL at the same sparsity and the same epoch budget;
# 6. measure input-dependent (runtime) pruning: neuron gating, the compute it really skips, next to a static
#    network of the same average cost.
#
# Time: about 75 minutes, plus 40 for Exercises 7.1-7.3.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
EPOCHS = 4 if FAST else 10  # the epoch budget every method of the comparison gets
SPARSITY = 0.9  # sparsity of the Linear weights in the comparison
LR = 3e-3  # Adam learning rate of every method in the comparison
GATE_EPOCHS = 2 if FAST else 6

# %%
import math

import torch

import minprune as mp
from minprune import copy_model, get_masks, magnitude_scores, masks_sparsity, prune

torch.set_num_threads(1)  # small models: one thread is fastest and keeps runs repeatable
mp.seed_everything(0)
data = mp.load("mnist-small")
train_loader, val_loader, test_loader = data.loader("train"), data.loader("val", 500), data.loader("test", 1000)
steps_per_epoch = len(train_loader)
print(f"{steps_per_epoch} steps per epoch, budget {EPOCHS} epochs = {EPOCHS * steps_per_epoch} steps")

# %% [markdown]
# ## 1. When to prune: sparsity schedules
# Notebooks 03 to 06 pruned a *trained* network once and then fine-tuned it. Zhu & Gupta (2017) instead raise
# the sparsity step by step during training, starting at step $t_0$ and updating every $\Delta t$ steps for $n$
# updates:
#
# $$s_t = s_f + (s_i - s_f)\left(1 - \frac{t - t_0}{n\,\Delta t}\right)^3 .$$
#
# The cube prunes fast while the network still has many redundant weights and slowly near the end, when
# every removed weight hurts. A schedule in minprune is a plain function of the step:

# %%
# NBVAL_CHECK_OUTPUT
shapes = ["cubic", "linear", "exponential", "one-shot"]
schedules = {s: mp.make_schedule(s, 0.9, start=100, end=None if s == "one-shot" else 500, interval=50)
             for s in shapes}
for step in [0, 100, 150, 300, 500, 900]:
    print(f"step {step:3d}: " + "  ".join(f"{s} {schedules[s](step):.3f}" for s in shapes))

# %%
fig = mp.plot_schedules(schedules, 600)

# %% [markdown]
# ### Exercise 7.1 (10 min): build the cubic schedule yourself
# Write `my_cubic(step, final, initial, start, end, interval)`: hold `initial` up to `start`, `final` from
# `end` on, and in between use the formula with $t$ rounded *down* to the last update step
# $t_0 + k\,\Delta t$ (the sparsity only changes when the pruner acts), so that $n\,\Delta t$ = `end - start`.
# The check cell compares it with `mp.dynamic.schedules.cubic`, also on spans `end - start` that are not a
# multiple of the interval (the last update is then at `end` itself).

# %%
# BUILD IT YOURSELF
# Exercise 7.1 (10 min): the cubic sparsity schedule of Zhu & Gupta
def my_cubic(step, final, initial=0.0, start=0, end=1000, interval=1):
    """Target sparsity at `step`: `initial` until `start`, `final` from `end` on, cubic in between."""
    ### BEGIN SOLUTION
    if step <= start:
        return initial
    if step >= end:
        return final
    last_update = start + (step - start) // interval * interval
    fraction_done = (last_update - start) / (end - start)
    return final + (initial - final) * (1 - fraction_done) ** 3
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(0, 0.9, 0.0, 0, 100, 1), (50, 0.9, 0.0, 0, 100, 1),  # half-way: 0.9 - 0.9 * 0.5**3 = 0.7875
         (100, 0.9, 0.0, 0, 100, 1), (37, 0.9, 0.1, 100, 500, 50), (249, 0.9, 0.1, 100, 500, 50)]
mp.course.check_exercise("7.1", my_cubic, extra_cases=cases)

# %% [markdown]
# ## 2. Gradual pruning as a training callback
# `mp.fit` calls `on_step_end(model, step)` after every optimizer step. `GradualPruner` uses that hook: when
# the schedule's target rises it scores the weights (magnitude by default; any score function of notebook 02
# works), and masks the lowest ones with `prune` (notebook 03). Weights pruned earlier stay pruned, and the masks
# stay applied while training goes on. The pruner is short; read it:

# %%
mp.show_source(mp.GradualPruner.on_step_end)
mp.show_source(mp.GradualPruner.update)

# %%
total_steps = EPOCHS * steps_per_epoch
gradual_schedule = mp.make_schedule("cubic", SPARSITY, start=steps_per_epoch, end=3 * total_steps // 4,
                                    interval=steps_per_epoch // 2)
mp.seed_everything(0)
gradual = mp.build("lenet300")
pruner = mp.GradualPruner(gradual, gradual_schedule, scope="global", keep_masks=True)
gradual_history = mp.fit(gradual, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), val_loader=val_loader,
                         callbacks=[pruner],
                         progress=False)
print(f"gradual: {mp.accuracy(gradual, test_loader):.1f}% test accuracy, "
      f"{masks_sparsity(get_masks(gradual)):.3f} sparsity of the weights")

# %% [markdown]
# The pruner recorded every update: the sparsity of each layer and how many weights it removed. With a
# *global* ranking the big first layer ends far sparser than the small output layer.

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
mp.plot_layer_sparsity(pruner.history, ax=axes[0], title="gradual: sparsity per layer")
mp.plot_regrowth(pruner.history, ax=axes[1], title="gradual: weights pruned per update")
fig.tight_layout()

# %%
fig = mp.plot_mask_snapshots(pruner.snapshots, "layers.1.weight", max_images=4, rows=60)

# %% [markdown]
# Each image shows the first 60 neurons (rows) of the first layer over its 784 input pixels (columns, the 28x28
# image read row by row). Look for a pattern that repeats every 28 columns: weights from pixels that never carry
# ink (the image border) get no gradient, so they never grow and are among the first to go.
#
# ### Structured gradual pruning
# With `structured=True` the pruner scores whole neurons (L1 norm of their weights by default, any unit score of
# notebook 05 works), masks them during training, and `finish()` removes them physically (notebook 06's
# surgery), so the result is a smaller dense network that runs faster on any hardware.

# %%
mp.seed_everything(0)
narrow = mp.build("lenet300")
channel_pruner = mp.GradualPruner(narrow, mp.make_schedule("cubic", 0.7, start=steps_per_epoch,
                                                            end=3 * total_steps // 4, interval=steps_per_epoch // 2),
                                  structured=True)
mp.fit(narrow, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), callbacks=[channel_pruner], progress=False)
small = channel_pruner.finish(narrow)
print(f"masked: {mp.accuracy(narrow, test_loader):.1f}%  compacted: {mp.accuracy(small, test_loader):.1f}%  "
      f"hidden widths {small.layers[1].out_features}, {small.layers[3].out_features}; "
      f"{mp.count_macs(small) / mp.count_macs(narrow):.0%} of the dense MACs")

# %% [markdown]
# ## 3. One-shot + fine-tune, gradual, lottery ticket and RigL at the same budget
# Every method below trains LeNet-300-100 for `EPOCHS` epochs (Adam, learning rate `LR`) from the same
# initialisation and ends at `SPARSITY`:
# - **one-shot + fine-tune**: `EPOCHS/2` dense epochs, global magnitude pruning, `EPOCHS/2` fine-tuning epochs;
# - **gradual**: the run above;
# - **lottery ticket**: the masks of a trained dense network, with the surviving weights *rewound* to their
#   initial values, then trained (the search costs extra training; we reuse the dense run);
# - **RigL**: sparse from the first step, with connections moved during training.

# %%
mp.seed_everything(0)
dense = mp.build("lenet300")
init = mp.snapshot(dense)  # the weights at initialisation, for rewinding
halfway = mp.RewindPoint(total_steps // 2)  # the weights after EPOCHS/2 epochs, for one-shot
dense_history = mp.fit(dense, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), val_loader=val_loader,
                       callbacks=[halfway],
                       progress=False)

oneshot = mp.rewind(mp.build("lenet300"), halfway.state)
oneshot_history = mp.History(epoch=list(dense_history.epoch[:EPOCHS // 2]),
                             val_acc=list(dense_history.val_acc[:EPOCHS // 2]))
prune(oneshot, magnitude_scores(oneshot), SPARSITY, scope="global")
oneshot_history.extend(mp.fit(oneshot, train_loader, mp.TrainConfig(epochs=EPOCHS - EPOCHS // 2, lr=LR),
                              val_loader=val_loader, progress=False))
print(f"dense {mp.accuracy(dense, test_loader):.1f}%, one-shot + fine-tune {mp.accuracy(oneshot, test_loader):.1f}%")

# %% [markdown]
# **The lottery ticket.** Prune the trained dense network, then rewind the survivors to `init`: same masks,
# weights as they were before any training. `mp.rewind` writes the saved values into `weight_orig`, so the
# masks stay. The control keeps the masks but draws new random weights (`mp.random_reinit`). If the ticket
# wins, the *initial values* of the surviving weights mattered, not only the mask.

# %%
ticket = copy_model(dense)
prune(ticket, magnitude_scores(ticket), SPARSITY, scope="global")
mp.rewind(ticket, init)
control = mp.random_reinit(copy_model(ticket), seed=1)
assert torch.equal(ticket.layers[1].weight_orig, init["layers.1.weight"])  # rewound exactly
ticket_history = mp.fit(ticket, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), val_loader=val_loader,
                        progress=False)
control_history = mp.fit(control, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), val_loader=val_loader,
                         progress=False)
print(f"ticket {mp.accuracy(ticket, test_loader):.1f}%, same masks with random weights "
      f"{mp.accuracy(control, test_loader):.1f}%")

# %% [markdown]
# **RigL** (Evci et al. 2020) starts sparse with ERK layer densities (big layers sparser), and every 25 steps
# drops the smallest active weights of each layer and regrows as many where the gradient is largest; the drop
# fraction decays with a cosine. Masked weights are zeroed after each step, so `.grad` at a pruned position
# is the dense gradient RigL needs. SET is the same with random regrowth. Two options matter on a short budget
# (`bench/dynamic.py` measures them): `rescale_init=True` divides the kept initial weights by
# $\sqrt{\text{density}}$, so a unit with 10% of its inputs starts with the activation scale of a dense one;
# `accumulate=True` regrows by the gradient summed over the 25 steps since the last update, not one noisy batch.

# %%
mp.seed_everything(0)
rigl = mp.build("lenet300")
config = mp.SparseConfig(sparsity=SPARSITY, method="rigl", distribution="erk", interval=25,
                         end=3 * total_steps // 4, rescale_init=True, accumulate=True)
rigl_trainer = mp.DynamicSparseTrainer(rigl, config, keep_masks=True)
rigl_history = mp.fit(rigl, train_loader, mp.TrainConfig(epochs=EPOCHS, lr=LR), val_loader=val_loader,
                      callbacks=[rigl_trainer], progress=False)
print(f"RigL {mp.accuracy(rigl, test_loader):.1f}%, layer sparsities "
      f"{ {n: round(s, 3) for n, s in mp.layer_sparsity(rigl).items()} }")

# %%
results = {"one-shot + fine-tune": oneshot, "gradual (cubic)": gradual, "lottery ticket": ticket,
           "ticket, random reinit": control, "RigL": rigl}
curves = {"one-shot + fine-tune": oneshot_history.val_acc, "gradual (cubic)": gradual_history.val_acc,
          "lottery ticket": ticket_history.val_acc, "ticket, random reinit": control_history.val_acc,
          "RigL": rigl_history.val_acc}
dense_acc = mp.accuracy(dense, val_loader)
fig = mp.plot_accuracy_curves(curves, dense=dense_acc, title=f"LeNet-300-100 at {SPARSITY:.0%} sparsity")
fig.axes[0].set_ylabel("validation accuracy (%)")
fig.axes[0].set_xticks(range(1, EPOCHS + 1))
print("validation accuracy (%) after each epoch:")
for name, curve in curves.items():
    print(f"  {name:22s} " + "  ".join(f"{a:5.1f}" for a in curve))
above = all(t > c for t, c in zip(ticket_history.val_acc, control_history.val_acc))
print(f"the ticket above its random re-initialisation after every epoch: {above}")
mp.Table([{"method": name, "test acc": mp.accuracy(m, test_loader), "sparsity": mp.model_sparsity(m)}
          for name, m in {"dense": dense, **results}.items()])

# %% [markdown]
# Two kinds of accuracy are on show. The plot and the printed lines are *validation* accuracy after each epoch
# (the dashed line is the dense network's after its last epoch); the table is *test* accuracy, measured once at
# the end. Choose between methods on validation data and report the test figure once.
#
# Read the plot with the schedule of each method in mind. Every validation accuracy is measured at the end of an
# epoch, so the plot cannot show a fall at the moment of pruning if the next epoch has recovered it. The one-shot
# curve's first `EPOCHS/2` points are the dense run's (it is pruned after them, then fine-tuned). Gradual pruning
# acts from the end of the first epoch to three quarters of training (the sparsity plot of section 2). The ticket
# and its random re-initialisation share their masks: the line above the table says whether the ticket led after
# every epoch of this run; where it does, the initial values of the surviving weights mattered, not only the mask.
#
# One short run on one seed does not rank the methods. `bench/dynamic.py` repeats the comparison on three seeds
# and on LeNet-5 with a longer budget (8 epochs for LeNet-300-100, 12 for LeNet-5; results in
# `bench/results/dynamic.md`). There RigL at 90% sparsity comes within a point of dense on LeNet-5 (96.13% against
# 97.00%), the ticket beats its random re-initialisation on both models, and several differences between methods
# are within the spread over seeds: look at the standard deviations before declaring a winner. A network that is
# sparse from the first step needs more steps than a dense one, so a budget cut short measures how fast a method
# trains, not what the sparse network can reach.
#
# ## 4. Mask dynamics of RigL
# RigL keeps every layer's sparsity constant and moves connections. Fewer move as the drop fraction decays:

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
mp.plot_regrowth(rigl_trainer.updates, ax=axes[0], title="RigL: pruned and regrown per update")
mp.plot_layer_sparsity(rigl_trainer.updates, ax=axes[1], title="RigL: sparsity per layer (constant)")
fig.tight_layout()

# %%
fig = mp.plot_mask_snapshots(rigl_trainer.snapshots, "layers.1.weight", max_images=4, rows=60)

# %% [markdown]
# The initial mask (step 0) is random. RigL regrows where the gradient is large, that is on pixels that carry
# ink; a connection to a pixel that is always empty gets no gradient, so once dropped it has no score to come
# back with. Compare the later snapshots with the first one for columns that empty out, every 28 columns.

# %%
first, last = rigl_trainer.snapshots[0], rigl_trainer.snapshots[max(rigl_trainer.snapshots)]
for name in first:
    moved = int((first[name] & ~last[name]).sum())
    print(f"{name}: {moved:,} of {int(first[name].sum()):,} initial connections moved during training")

# %% [markdown]
# ### Exercise 7.2 (15 min): one drop-and-grow update
# Write the heart of RigL for one layer. With `n_active` active weights and `n_inactive` inactive ones, let
# `k = min(int(fraction * n_active), n_inactive)`. Drop the `k` *active* weights with the smallest `|W|`, and
# grow the `k` positions with the largest `grow_scores` among those that were inactive **before** this update
# (so a weight dropped now cannot come straight back). Return the new bool mask (True = keep), same shape.
# Hint: `torch.topk` on a flattened tensor in which the positions you must not pick are set to `inf` / `-inf`.
# When several weights tie at the cut, any `k` of them will do: the check compares how many weights you dropped
# and grew, and their `|W|` and scores.

# %%
# Exercise 7.2 (15 min): one RigL update of one layer
def my_drop_and_grow(W, mask, grow_scores, fraction):
    """New mask after dropping the k smallest active |W| and growing the k inactive positions of largest score."""
    ### BEGIN SOLUTION
    active = mask.flatten()
    k = min(int(fraction * int(active.sum())), int((~active).sum()))
    new = active.clone()
    if k > 0:
        magnitude = W.abs().flatten().masked_fill(~active, float("inf"))
        new[torch.topk(magnitude, k, largest=False).indices] = False
        growable = grow_scores.flatten().masked_fill(active, -float("inf"))
        new[torch.topk(growable, k).indices] = True
    return new.view_as(mask)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
W = torch.tensor([[0.5, -0.1, 0.0, 0.0], [0.3, 0.2, 0.0, 0.0]])
scores = torch.tensor([[9.0, 9.0, 1.0, 5.0], [9.0, 9.0, 4.0, 2.0]])
cases = [(W, W != 0, scores, 0.5),  # drop -0.1 and 0.2 (k = 2), grow the 5 and the 4; the 9s are active
         (W, W != 0, scores, 0.0)]  # k = 0: nothing moves
mp.course.check_exercise("7.2", my_drop_and_grow, extra_cases=cases)

# %% [markdown]
# ### Exercise 7.3 (15 min): ERK layer densities
# Erdos-Renyi-Kernel gives layer $l$ the density $\varepsilon\,\frac{\sum_i d_i}{\prod_i d_i}$ for a weight of
# shape $(d_1, d_2, \dots)$, with one $\varepsilon$ for the whole network chosen so that the kept weights add up
# to `(1 - sparsity)` times all weights. A layer whose density would exceed 1 is kept dense (sparsity 0):
# remove it from the pool, subtract its weights from the budget, recompute $\varepsilon$ for the others, and
# repeat until no layer exceeds 1. Return `{name: sparsity}`.

# %%
# Exercise 7.3 (15 min): ERK per-layer sparsities
def my_erk(shapes, sparsity):
    """{name: layer sparsity} whose weighted total is `sparsity`; shapes is {name: tuple of dims}."""
    ### BEGIN SOLUTION
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    dense = set()
    while True:
        budget = (1 - sparsity) * sum(numel.values()) - sum(numel[n] for n in dense)
        eps = budget / sum(raw[n] * numel[n] for n in shapes if n not in dense)
        too_dense = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not too_dense:
            return {n: 0.0 if n in dense else 1 - eps * raw[n] for n in shapes}
        dense |= too_dense
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
from minprune.dynamic.sparse_training import erk_sparsities

lenet5_shapes = {n: tuple(p.shape) for n, p in mp.build("lenet5").named_parameters() if n.endswith("weight")}
cases = [({"a": (10, 10), "b": (10, 10)}, 0.5),  # two equal layers: 0.5 each
         ({"big": (1000, 1000), "tiny": (10, 2)}, 0.5),  # tiny would need density > 1: kept dense
         (lenet5_shapes, 0.9)]
mp.course.check_exercise("7.3", my_erk, extra_cases=cases)
print({n: round(s, 3) for n, s in erk_sparsities(lenet5_shapes, 0.9).items()})

# %% [markdown]
# ## 5. Input-dependent pruning: neuron gating
# Static pruning removes the same weights for every input. A *gate* can instead decide per input which neurons
# to compute. `mp.dynamic.gating.GatedMLP` puts a small gate (784 → 16 → 300, and 300 → 16 → 100) in front of each
# hidden layer of a trained LeNet-300-100; the gate outputs 0 or 1 per neuron (straight-through gradients),
# and the loss adds `penalty` times the fraction of open gates. At inference `sparse_forward` really skips the
# closed neurons; `gated_macs` counts the multiply-accumulates spent per example, the gates' own cost included.

# %%
base = mp.pretrained("lenet300", progress=False)
x_test, y_test = data.sample(1000, "test")
mp.seed_everything(0)
gated = mp.dynamic.gating.GatedMLP(base, rank=16)
mp.fit(gated, train_loader, mp.TrainConfig(epochs=GATE_EPOCHS), loss_fn=mp.dynamic.gating.gating_loss(1.0),
       progress=False)
gated.eval()
macs = mp.dynamic.gating.gated_macs(gated, x_test).float()
gated_acc = mp.accuracy(gated, test_loader)
assert torch.allclose(mp.dynamic.gating.sparse_forward(gated, x_test[:20]), gated(x_test[:20]), atol=1e-4)
print(f"gated: {gated_acc:.1f}% with {macs.mean():,.0f} MACs on average "
      f"({macs.mean() / mp.dynamic.gating.dense_macs(base):.0%} of dense; from {macs.min():,.0f} to {macs.max():,.0f})")

# %% [markdown]
# The fair comparison is a *static* network with the same average cost: a narrower MLP keeping the neurons with
# the largest weights, fine-tuned for the same number of epochs.

# %%
widths = mp.dynamic.gating.matching_widths(base, float(macs.mean()))
static = mp.dynamic.gating.narrow_mlp(base, widths)
mp.fit(static, train_loader, mp.TrainConfig(epochs=GATE_EPOCHS), progress=False)
mp.Table([
    {"model": "dense LeNet-300-100", "MACs": mp.dynamic.gating.dense_macs(base), "test acc": mp.accuracy(base, test_loader)},
    {"model": "neuron gating (avg)", "MACs": float(macs.mean()), "test acc": gated_acc},
    {"model": f"static, widths {widths}", "MACs": mp.count_macs(static), "test acc": mp.accuracy(static, test_loader)},
])

# %% [markdown]
# On MNIST a static narrow network is hard to beat: LeNet-300-100 is heavily over-parameterised for it, so the
# gate's flexibility buys little and its cost (and the noisier training of hard gates) is not repaid. Gating
# pays off when inputs differ in difficulty and the skipped blocks are large (whole convolution channels or
# residual blocks of a big CNN), and only if the hardware can exploit a per-input sparsity pattern, which
# batched dense kernels usually cannot.
#
# ## Questions
# **Question 7.4** (5 min). The cubic schedule reaches half of its final sparsity after what fraction of the
# pruning window? (Solve $1 - (1 - p)^3 = 1/2$.)
#
# **Question 7.5** (15 min). Rerun section 3 with `SPARSITY = 0.98`. Which method degrades most, and why does the
# ERK distribution of RigL help at extreme sparsity?
#
# ## What the library gave you
# - `mp.make_schedule(shape, final, start=, end=, interval=)` and `mp.dynamic.schedules.cubic / linear / exponential /
#   one_shot`;
# - `mp.GradualPruner(model, schedule, score_fn=, scope=, structured=)`: a callback; `.history`, `.snapshots`,
#   `.finish(model)` (physical compaction when structured);
# - `mp.snapshot`, `mp.rewind`, `mp.RewindPoint(k)`, `mp.random_reinit`, `mp.find_ticket` (lottery tickets);
# - `mp.SparseConfig` (RigL / SET; uniform, ERK or ER; `rescale_init`, `accumulate`), `mp.DynamicSparseTrainer`,
#   `.updates`, `.snapshots`; `minprune.dynamic.sparse_training.drop_and_grow` and `erk_sparsities` (Exercises 7.2, 7.3);
# - `mp.dynamic.gating.GatedMLP`, `gating_loss`, `sparse_forward`, `gated_macs`, `narrow_mlp`, `matching_widths`;
# - `mp.plot_schedules / plot_layer_sparsity / plot_regrowth / plot_mask_snapshots /
#   plot_accuracy_curves`.
