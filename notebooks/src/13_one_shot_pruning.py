# %% [markdown]
# # 13 · One-shot pruning: from Optimal Brain Damage to SparseGPT and Wanda
#
# Every pruning method so far was followed by fine-tuning. For a model of billions of weights nobody retrains
# after pruning: the methods of the large-model era prune **once**, layer by layer, from a few hundred
# calibration examples, and ship the result. They grew from two ideas of 1990 and 1993:
#
# - **Optimal Brain Damage** (LeCun et al.): the cost of removing a weight is about `w^2 * H_qq / 2`, where `H` is
#   the Hessian of the loss (its diagonal only);
# - **Optimal Brain Surgeon** (Hassibi and Stork): remove a weight *and move the others* to compensate, with the
#   inverse Hessian.
#
# SparseGPT (Frantar and Alistarh, 2023) makes OBS fast enough for GPT-sized layers; Wanda (Sun et al., 2023)
# shows that `|w| * ||x_j||`, compared within each output row, comes close without any update at all.
#
# **Learning objectives.** After this notebook you can
# 1. write a layer's pruning problem as a least-squares problem and compute its Hessian `H = X^T X / n` from
#    calibration data;
# 2. compute OBD's saliency and OBS's optimal update by hand, and check OBS against brute-force least squares;
# 3. prune CharGPT in one shot with magnitude, Wanda and SparseGPT, unstructured and 2:4, and read perplexity
#    against sparsity;
# 4. say when the update of SparseGPT matters, and what a short fine-tune adds.
#
# Time: about 60 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
CALIBRATION = 32 if FAST else 128  # calibration sequences of 64 characters (and images)
SPARSITIES = (0.5, 0.7) if FAST else (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FINETUNE_STEPS = 20 if FAST else 200  # a short fine-tune after one-shot pruning

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import display

import minprune as mp

mp.seed_everything(0)
text = mp.load("pydoc-text")
gpt = mp.pretrained("chargpt", progress=False).eval()
calibration = list(text.loader("train", 64, CALIBRATION // 4, max_batches=4))  # 4 batches
test = text.loader("test", 64, 64)
dense_ppl = mp.perplexity(mp.evaluate(gpt, test)["loss"])
print(f"CharGPT: {mp.count_params(gpt):,} parameters, test perplexity {dense_ppl:.3f}; "
      f"{sum(len(x) for x, _ in calibration)} calibration sequences of 64 characters")

# %% [markdown]
# ## 1. One layer, one least-squares problem
# One-shot methods prune each Linear layer so that its output on the calibration inputs changes as little as
# possible. For a layer `y = W x` and calibration inputs stacked as the rows of `X` (one row per token), row `w`
# of `W` pruned to `w'` costs
#
# $$ L(w') = \tfrac12 (w' - w)^\top H (w' - w), \qquad H = X^\top X / n, $$
#
# half the mean squared change of that output. The rows do not interact, and `H` is the same for every row of the
# layer: it depends only on the layer's inputs. `mp.input_hessians` collects it for every layer with hooks.

# %%
hessians = mp.input_hessians(gpt, calibration)
H = hessians["blocks.0.mlp.fc1.weight"]
print(f"{len(hessians)} layers; H of blocks.0.mlp.fc1 is {tuple(H.shape)}; its diagonal ranges over "
      f"[{H.diagonal().min():.3f}, {H.diagonal().max():.3f}]")

# %% [markdown]
# ## 2. Optimal Brain Damage
# If `H` were diagonal, setting weight `q` to zero would cost exactly `w_q^2 H_qq / 2`: OBD's saliency. It is
# magnitude pruning weighted by how large the weight's input is. (OBD also has a loss version: the diagonal of the
# empirical Fisher, the mean squared gradient of the loss, in place of `H`: `mp.obd_scores(..., kind="fisher")`.)
#
# ### Exercise 13.1 (5 min): OBD's saliency
# Write `my_obd_saliency(W, H)`: for a weight matrix `W` (out, in) and the layer's `H` (in, in), the saliency of
# every weight, `W_ij^2 * H_jj / 2`, shaped like `W`. By hand: `W = [[2, 1]]`, `H = diag(1, 4)` gives `[[2, 2]]`.

# %%
# BUILD IT YOURSELF
# Exercise 13.1 (5 min): w^2 * H_jj / 2 for every weight of a layer
def my_obd_saliency(W, H):
    """OBD saliency of every weight of W (out, in), given the layer's input Hessian H (in, in)."""
    ### BEGIN SOLUTION
    return W**2 * H.diagonal()[None, :] / 2
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
W = gpt.blocks[0].mlp.fc1.weight.detach().double()  # (128, 64), and H above is its input Hessian
cases = [(torch.tensor([[2.0, 1.0]]), torch.diag(torch.tensor([1.0, 4.0]))), (W, H)]  # the hand example first
mp.course.check_exercise("13.1", my_obd_saliency, extra_cases=cases)
library_obd = mp.hessian_saliency(gpt, calibration)["blocks.0.mlp.fc1.weight"]  # every layer at once
print("mp.hessian_saliency agrees on blocks.0.mlp.fc1:",
      torch.allclose(library_obd.double(), my_obd_saliency(W, H), rtol=1e-6, atol=0))

# %% [markdown]
# ## 3. Optimal Brain Surgeon: remove one weight, move the others
# `H` is not diagonal: inputs are correlated, so when weight `q` goes, the other weights of its row can take over
# part of its work. Minimising `L` with the constraint `w'_q = 0` gives (a Lagrange multiplier, one line):
#
# $$ \delta w = -\frac{w_q}{[H^{-1}]_{qq}} H^{-1} e_q, \qquad L_q = \frac{w_q^2}{2 [H^{-1}]_{qq}}. $$
#
# OBS removes the weight with the smallest `L_q`, applies `delta w`, and repeats with the inverse Hessian of the
# weights that are left. A little damping (`H + 0.01 * mean(diag H) * I`) keeps `H` invertible.
#
# ### Exercise 13.2 (10 min): one OBS step
# Write `my_obs_remove(w, H_inv, q)` returning `(delta_w, L_q)` for the row `w`, the inverse Hessian `H_inv` and
# the weight `q` to remove; `w + delta_w` must have a zero at `q`. By hand: `H_inv = I` reduces OBS to magnitude
# pruning: `delta_w` only zeroes `w_q`, and `L_q = w_q^2 / 2`.

# %%
# BUILD IT YOURSELF
# Exercise 13.2 (10 min): the OBS update and its cost
def my_obs_remove(w, H_inv, q):
    """(delta_w, L_q): the update of row w that removes weight q, and the loss it costs."""
    ### BEGIN SOLUTION
    delta = -w[q] / H_inv[q, q] * H_inv[:, q]
    return delta, float(w[q] ** 2 / (2 * H_inv[q, q]))
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
w = gpt.blocks[0].mlp.fc1.weight.detach()[0].double()
H_inv = mp.damped_inverse(H, 0.01)
identity = torch.eye(3, dtype=torch.float64)  # the hand case: H_inv = I
cases = [(torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64), identity, 1), (w, H_inv, 5)]
mp.course.check_exercise("13.2", my_obs_remove, extra_cases=cases)
# the same answer from brute force: least squares with weight 5 fixed at zero
H_damped = torch.linalg.inv(H_inv)
X = torch.linalg.cholesky(H_damped).T  # any X with X^T X = H (damped) gives the same problem
others = [j for j in range(len(w)) if j != 5]
best = torch.linalg.lstsq(X[:, others], X @ w).solution
delta, _ = my_obs_remove(w, H_inv, 5)
gap = float(((w + delta)[others] - best).abs().max())
print(f"OBS update equals brute-force least squares (largest difference below 1e-10): {gap < 1e-10}")

# %% [markdown]
# ## 4. SparseGPT and Wanda
# OBS is exact but costs a new inverse per removed weight: far too slow for a layer of 4096 inputs. **SparseGPT**
# prunes the columns of `W` from left to right: it chooses the mask of a block of columns at once (by
# `w^2 / [H^-1]_qq^2`), and after each column spreads the error of the removed weights over the columns still to
# its right, using a Cholesky factor of `H^-1` computed once. It runs layer by layer, each layer calibrated on the
# outputs of the layers before it *already pruned*. **Wanda** keeps only the selection: the score
# `|W_ij| * ||X_j||_2` (`||X_j||` is the root of `n * H_jj`), compared within each output row, and no update.
#
# Here all three on CharGPT at 50% of every Linear weight in the blocks (the embeddings and the output layer stay),
# no retraining:

# %%
def magnitude(model, sparsity):
    """Per-layer magnitude pruning of the same layers, on a copy."""
    pruned = mp.copy_model(model)
    mp.prune(pruned, mp.magnitude_scores(pruned, names=list(hessians)), sparsity)
    return pruned


def wanda_pruned(model, sparsity=0.5, nm=None):
    return mp.apply_masks(mp.copy_model(model), mp.wanda(model, calibration, sparsity, nm=nm))


def ppl(model):
    return mp.perplexity(mp.evaluate(model, test)["loss"])


half = {"magnitude": magnitude(gpt, 0.5), "Wanda": wanda_pruned(gpt, 0.5),
        "SparseGPT": mp.sparsegpt(gpt, calibration, 0.5)}
for name, model in half.items():
    print(f"{name:>9}: sparsity of the pruned layers {mp.masks_sparsity(mp.get_masks(model)):.0%}, "
          f"test perplexity {ppl(model):.3f} (dense {dense_ppl:.3f})")

# %% [markdown]
# ## 5. Perplexity against sparsity, and 2:4
# The same three methods from light to heavy sparsity, and in the **2:4** pattern (two of every four consecutive
# weights of a row kept: the pattern sparse tensor cores of recent GPUs multiply at up to twice the speed).

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for sparsity in SPARSITIES:
    rows.append({"pattern": f"{sparsity:.0%}", "magnitude": ppl(magnitude(gpt, sparsity)),
                 "Wanda": ppl(wanda_pruned(gpt, sparsity)), "SparseGPT": ppl(mp.sparsegpt(gpt, calibration, sparsity))})
two_four = {"magnitude": mp.apply_masks(mp.copy_model(gpt),
                                       mp.nm_masks(mp.magnitude_scores(gpt, names=list(hessians)), 2, 4)),
            "Wanda": wanda_pruned(gpt, nm=(2, 4)), "SparseGPT": mp.sparsegpt(gpt, calibration, nm=(2, 4))}
rows.append({"pattern": "2:4", **{name: ppl(model) for name, model in two_four.items()}})
one_shot_table = mp.Table(rows, title=f"CharGPT test perplexity, no retraining (dense {dense_ppl:.3f})")
display(one_shot_table)

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4))
for method in ("magnitude", "Wanda", "SparseGPT"):
    ax.plot([100 * s for s in SPARSITIES], [r[method] for r in rows[:-1]], marker="o", label=method)
ax.axhline(dense_ppl, color="k", linestyle=":", label="dense")
ax.set_yscale("log")
ax.set_xlabel("sparsity of the pruned layers (%)")
ax.set_ylabel("test perplexity")
ax.legend()
fig.tight_layout()

# %% [markdown]
# SparseGPT, the only one of the three that updates the weights it keeps, has the lowest perplexity in every row.
# Wanda beats magnitude at high sparsity and in 2:4, but not at 50%: the Wanda paper explains its advantage on
# large language models by a few input features with huge activations, whose weights magnitude alone would
# remove; a character model 64 channels wide has little of that, so `||X_j||` adds less to `|W_ij|`. The 2:4 row
# is harder than 50% unstructured for every method: the pattern forbids keeping three weights of a group of four
# even where they all matter. On a CPU a 2:4 matrix is still multiplied densely; `mp.nm_report` gives the honest
# size of the compressed format (values plus 2-bit indices) and the multiplications a sparse kernel skips:

# %%
print(mp.nm_report(two_four["SparseGPT"], mp.get_masks(two_four["SparseGPT"])))

# %% [markdown]
# ## 6. What a short fine-tune adds
# One-shot pruning is where production stops for the largest models; for a small one, a few steps of training
# afterwards are cheap. The masks stay fixed (`mp.fit` trains the kept weights of a masked model).

# %%
fine_tune = mp.TrainConfig(epochs=1, lr=5e-4)
steps = text.loader("train", 64, 32, max_batches=FINETUNE_STEPS)
tuned = {}
for name in ("magnitude", "SparseGPT"):
    tuned[name] = mp.copy_model(half[name])
    mp.seed_everything(0)
    mp.fit(tuned[name], steps, fine_tune, progress=False)
for name in tuned:
    print(f"{name:>9} at 50%: one-shot {ppl(half[name]):.3f} -> fine-tuned {FINETUNE_STEPS} steps "
          f"{ppl(tuned[name]):.3f}")

# %% [markdown]
# ### Question 13.3 (5 min)
# Here a short fine-tune all but erases the difference between magnitude and SparseGPT. Why does that not make
# SparseGPT pointless for a model of 70 billion weights? And why does SparseGPT calibrate each layer on the outputs
# of the layers before it *after* they were pruned, rather than on the dense model's?

# %% [markdown]
# ## 7. And on the CNNs?
# The same methods apply to any Linear or Conv layer (a convolution's inputs are its unfolded patches). On
# LeNet-5, at 70% of every layer but the classifier, no retraining:

# %%
# NBVAL_CHECK_OUTPUT
digits = mp.load("mnist-small")
lenet = mp.pretrained("lenet5", progress=False).eval()
images = [digits.sample(CALIBRATION, "train")]  # one batch of calibration images
lenet_names = list(mp.input_hessians(lenet, images))
cnn = {"dense": lenet}
cnn["magnitude"] = mp.copy_model(lenet)
mp.prune(cnn["magnitude"], mp.magnitude_scores(lenet, names=lenet_names), 0.7)
cnn["OBD"] = mp.copy_model(lenet)
mp.prune(cnn["OBD"], mp.obd_scores(lenet, images), 0.7)
cnn["Wanda"] = mp.apply_masks(mp.copy_model(lenet), mp.wanda(lenet, images, 0.7))
cnn["OBS"] = mp.obs_prune(lenet, images, 0.7)
cnn["SparseGPT"] = mp.sparsegpt(lenet, images, 0.7)
test_digits = digits.loader("test", 500)
display(mp.Table([{"method": name, "acc": mp.accuracy(m, test_digits)} for name, m in cnn.items()],
                 title="LeNet-5 at 70%, no retraining"))

# %% [markdown]
# The split is the same as on CharGPT, only sharper: the two methods that move the kept weights to make up for
# the removed ones (OBS exactly, SparseGPT approximately) stay far above the three that only choose which weights
# go (magnitude, OBD, Wanda). LeNet-5's layers are small enough for exact OBS; SparseGPT is what remains possible
# when a layer has thousands of inputs.

# %%
# Claims of this notebook, checked.
by_pattern = {r["pattern"]: r for r in rows}
assert all(r["SparseGPT"] < min(r["magnitude"], r["Wanda"]) for r in rows)
assert by_pattern["70%"]["Wanda"] < by_pattern["70%"]["magnitude"]
assert by_pattern["2:4"]["Wanda"] < by_pattern["2:4"]["magnitude"]
assert all(by_pattern["2:4"][m] > by_pattern["50%"][m] for m in ("magnitude", "Wanda", "SparseGPT"))
cnn_acc = {name: mp.accuracy(m, test_digits) for name, m in cnn.items()}
assert min(cnn_acc["OBS"], cnn_acc["SparseGPT"]) > max(cnn_acc["magnitude"], cnn_acc["OBD"], cnn_acc["Wanda"])
assert all(abs(mp.masks_sparsity(mp.get_masks(m)) - 0.5) < 0.01 for m in half.values())
assert gap < 1e-10
print("all checks passed")

# %% [markdown]
# ## What the library gave you
# - `mp.input_hessians`, `mp.input_norms`: each layer's `H = X^T X / n` and input norms from calibration batches;
# - `mp.hessian_saliency`, `mp.obd_scores` (kind "hessian" or "fisher"): OBD's saliency, ordinary scores for
#   `mp.make_masks` and `mp.prune`;
# - `mp.obs_remove`, `mp.obs_step`, `mp.obs_prune_layer`, `mp.obs_prune`, `mp.damped_inverse`: Optimal Brain Surgeon;
# - `mp.wanda` (masks) and `mp.sparsegpt` (a pruned copy with updated weights), unstructured or `nm=(2, 4)`; the
#   results are ordinary masked models: `mp.make_permanent`, `mp.nm_report`, saving and export work on them.
