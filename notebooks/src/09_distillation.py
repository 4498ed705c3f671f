# %% [markdown]
# # 09 · Knowledge distillation: a dense teacher for a pruned student
#
# Pruning leaves a smaller network that has to relearn what it lost. Fine-tuning (notebook 04) retrains it
# on the labels alone. **Knowledge distillation** (Hinton, Vinyals and Dean 2015) also lets it copy the
# dense model's *soft targets*: the whole probability vector, which says not only "this is a 7" but
# "it looks a bit like a 1 and not at all like a 4".
#
# **Learning objectives.** After this notebook you can
# 1. explain soft targets and what the temperature `T` does to them (and why the loss is scaled by `T²`);
# 2. write the Hinton loss yourself and check it against `mp.kd_loss`;
# 3. fine-tune a pruned student with and without a teacher, and judge the difference honestly;
# 4. add feature (hint) distillation for CNNs with attention maps, which works even when the student has
#    fewer channels than the teacher.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
EPOCHS = 1 if FAST else 4  # fine-tuning epochs for each student
SPARSITY = 0.95  # weight sparsity of the pruned student
TEMPERATURES = [1, 2, 4, 10]

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import minprune as mp

mp.seed_everything(0)
device = "cpu"
splits = mp.load("mnist-small")
train_loader, test_loader = splits.loader("train", 64), splits.loader("test", 500)
teacher = mp.pretrained("lenet5", progress=False)
teacher_acc = mp.accuracy(teacher, test_loader)
print(f"teacher (dense LeNet-5) test accuracy: {teacher_acc:.1f}%")

# %% [markdown]
# ## 1. Soft targets and the temperature
# A softmax at temperature `T` divides the logits by `T` first: `p = softmax(z / T)`. At `T = 1` a trained
# network is very sure of itself and almost all the probability sits on one class. Raising `T` spreads it
# over the other classes, and *how* it spreads is the teacher's knowledge of which digits resemble which.

# %%
# NBVAL_CHECK_OUTPUT
x, y = splits.sample(8, "test")
with torch.no_grad():
    logits = teacher(x)  # (8, 10)
i = 0
for T in TEMPERATURES:
    p = mp.soft_targets(logits[i], T)
    top = torch.topk(p, 3)
    pairs = ", ".join(f"{int(c)}: {float(v):.3f}" for v, c in zip(top.values, top.indices))
    print(f"T={T:>2}: label {int(y[i])}, top-3 {pairs}")

# %%
fig, axes = plt.subplots(1, len(TEMPERATURES), figsize=(3 * len(TEMPERATURES), 2.6), sharey=True)
for ax, T in zip(axes, TEMPERATURES):
    ax.bar(range(10), mp.soft_targets(logits[i], T).numpy(), color="tab:blue")
    ax.set_title(f"T = {T}")
    ax.set_xticks(range(10))
    ax.set_xlabel("class")
axes[0].set_ylabel("probability")
fig.suptitle(f"the teacher's soft targets for one test image (label {int(y[i])})")
fig.tight_layout()

# %% [markdown]
# ## 2. The distillation loss
# The student is trained on a mix of two terms:
#
# $$ L = \alpha \, T^2 \, \mathrm{KL}\big(\mathrm{softmax}(z_t/T) \,\|\, \mathrm{softmax}(z_s/T)\big)
#       + (1 - \alpha)\, \mathrm{CE}(z_s, y) $$
#
# The gradient of the soft term shrinks like `1/T²` when `T` grows, so it is multiplied by `T²` to keep the
# two terms in balance. With `T = 1` and `α = 0` the loss is plain cross entropy.
#
# ### Build it yourself
# Write `my_kd_loss(student_logits, teacher_logits, y, temperature, alpha)`. Use `F.log_softmax` for both
# distributions (stable) and `F.kl_div(..., reduction="batchmean", log_target=True)`; the teacher gets no
# gradient (`.detach()`).

# %%
# BUILD IT YOURSELF
def my_kd_loss(student_logits, teacher_logits, y, temperature=4.0, alpha=0.9):
    T = temperature
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, y)
    return alpha * T * T * soft + (1 - alpha) * hard


# %%
# NBVAL_CHECK_OUTPUT
student_logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
teacher_logits = torch.tensor([[3.0, 1.0, -2.0], [0.0, 1.0, 2.0]])
labels = torch.tensor([0, 2])
mp.check.same_as(my_kd_loss, mp.kd_loss, student_logits, teacher_logits, labels, temperature=2.0, alpha=0.7,
                 hint="alpha * T^2 * KL(teacher || student) + (1 - alpha) * cross entropy")
print("T=1, alpha=0 is cross entropy:",
      torch.allclose(mp.kd_loss(student_logits, teacher_logits, labels, temperature=1.0, alpha=0.0),
                     F.cross_entropy(student_logits, labels)))

# %% [markdown]
# `mp.distill_loss(teacher, temperature=, alpha=)` wraps this loss into the `loss_fn(model, x, y)` that
# `mp.fit` accepts: it runs the teacher (in eval mode, without gradients) on the same batch.

# %%
mp.show_source(mp.distill_loss)

# %% [markdown]
# ## 3. A pruned student, with and without its teacher
# We prune a copy of the teacher to 95% weight sparsity (global magnitude), then fine-tune two copies of
# that student for the same number of epochs: one on the labels only, one with `mp.distill_student`.

# %%
pruned = mp.copy_model(teacher)
mp.prune(pruned, mp.magnitude_scores(pruned), SPARSITY, scope="global")
pruned_acc = mp.accuracy(pruned, test_loader)

mp.seed_everything(0)
alone = mp.copy_model(pruned)
mp.fit(alone, train_loader, epochs=EPOCHS, progress=False)

mp.seed_everything(0)
taught = mp.copy_model(pruned)
history = mp.distill_student(taught, teacher, train_loader, epochs=EPOCHS, temperature=4.0, alpha=0.5,
                             val_loader=splits.loader("val", 500), progress=False)

results = mp.Table([
    {"model": "teacher (dense)", "acc": teacher_acc, "nonzeros": mp.count_nonzeros(teacher)},
    {"model": f"pruned {SPARSITY:.0%}, no retraining", "acc": pruned_acc, "nonzeros": mp.count_nonzeros(pruned)},
    {"model": "fine-tuned on labels", "acc": mp.accuracy(alone, test_loader), "nonzeros": mp.count_nonzeros(alone)},
    {"model": "distilled (T=4, alpha=0.5)", "acc": mp.accuracy(taught, test_loader),
     "nonzeros": mp.count_nonzeros(taught)},
])
results

# %%
gain = results.rows[3]["acc"] - results.rows[2]["acc"]
print(f"distilled minus fine-tuned on labels: {gain:+.1f} points ({'helped' if gain > 0 else 'did not help'} here)")

# %% [markdown]
# Both students keep exactly the same nonzeros: the masks stay applied while they train. How much did the
# teacher help? On this small data set **little or nothing**, and in a short (FAST) run distillation can even
# come out behind training on the labels, as the line above shows for this run. It is worth seeing why. The teacher was
# trained on the very same 3,500 images, so on them it is nearly always right and very confident: its soft
# targets there are close to the one-hot labels, and carry little extra knowledge. Distillation pays off when
# the teacher's soft targets say something the labels do not: a teacher trained on more data or with
# augmentation, a transfer set of unlabelled images, or a long schedule (`bench/pipeline.py` measures the gap
# it closes; see its results table).

# %%
assert results.rows[3]["acc"] > results.rows[1]["acc"], "distillation should recover accuracy lost to pruning"
assert results.rows[3]["nonzeros"] == results.rows[1]["nonzeros"]

# %% [markdown]
# ## 4. Feature (hint) distillation for CNNs
# The teacher's *intermediate* feature maps are knowledge too (FitNets, Romero et al. 2015). A student whose
# channels were pruned cannot copy them one to one, but it can copy **where** the teacher looks. The
# attention map of a feature tensor (batch, C, H, W) is the mean over channels of its squares, flattened and
# normalised (Zagoruyko and Komodakis 2017); it does not depend on the number of channels.

# %%
with torch.no_grad():
    features = teacher.features[:3](x)  # (8, 6, 14, 14) after the first conv, ReLU and pool
attention = mp.attention_map(features).reshape(-1, 14, 14)
fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
for k, ax in enumerate(axes.flat):
    ax.imshow((x[k, 0] if k < 4 else attention[k - 4]).numpy(), cmap="gray" if k < 4 else "magma")
    ax.set_title("input" if k < 4 else "teacher attention", fontsize=9)
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# A narrow LeNet-5 (3 and 8 channels instead of 6 and 16) is trained twice from the same start: with soft
# targets only, and with soft targets plus the teacher's attention maps after both pooling layers
# (`hints=["features.2", "features.5"]`, weighted by `beta`).

# %%
HINTS = ["features.2", "features.5"]
hint_fn = mp.distill_loss(teacher, temperature=4.0, alpha=0.5, hints=HINTS, beta=10.0)
xb, yb = next(iter(train_loader))
narrow_rows = []
for hints in ([], HINTS):
    mp.seed_everything(0)
    narrow = mp.build("lenet5", channels=[3, 8])
    with torch.no_grad():
        before = hint_fn(narrow, xb, yb)[0].item()
    mp.distill_student(narrow, teacher, train_loader, epochs=EPOCHS, temperature=4.0, alpha=0.5, hints=hints,
                       beta=10.0, progress=False)
    with torch.no_grad():
        after = hint_fn(narrow, xb, yb)[0].item()
    narrow_rows.append({"student": "narrow LeNet-5, " + ("soft targets + hints" if hints else "soft targets"),
                        "params": mp.count_params(narrow), "KD+hint loss before": before,
                        "KD+hint loss after": after, "acc": mp.accuracy(narrow, test_loader)})
mp.Table(narrow_rows)

# %% [markdown]
# The hint term pulls the student's feature maps towards the teacher's. Whether that buys *accuracy*
# depends on the schedule: over a short run the
# extra constraint mostly competes with fitting the labels, and hints pay off in deeper networks trained for
# longer (FitNets used them to train students deeper than their teachers). Measure before you believe.

# %%
assert narrow_rows[1]["KD+hint loss after"] < narrow_rows[1]["KD+hint loss before"]
assert min(row["acc"] for row in narrow_rows) > 50

# %% [markdown]
# ## What the library gave you
# - `mp.soft_targets(logits, T)`: the softened probabilities;
# - `mp.kd_loss(student_logits, teacher_logits, y, temperature=, alpha=)`: the Hinton loss;
# - `mp.distill_loss(teacher, temperature=, alpha=, hints=, beta=)`: a `loss_fn` for `mp.fit`;
# - `mp.distill_student(student, teacher, loader, epochs=, ...)`: the teacher-to-student training loop;
# - `mp.attention_map(features)`, `mp.hint_loss(student_features, teacher_features)`: feature distillation.
#
# Next, notebook 10 chains everything of this course into one pipeline: prune, distill, quantize.
