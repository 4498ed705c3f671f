# %% [markdown]
# # 12 · Pruning transformers: heads, neurons, width, depth and tokens
#
# Every network so far was a CNN or an MLP. The models people prune most today are **transformers**: a stack of
# blocks, each an attention layer that mixes information between tokens and an MLP that transforms each token on
# its own, joined by a residual stream. A transformer has its own units to remove: **attention heads**, **MLP
# neurons**, the **width** of the residual stream, whole **blocks** (depth), and, at inference, the **tokens**
# themselves. This notebook prunes each of them, on two models small enough for a laptop:
#
# - `TinyViT`, a Vision Transformer on the 28x28 digits: each digit is cut into 16 patches of 7x7 pixels, plus a
#   class token whose final state is classified;
# - `CharGPT`, a character-level GPT trained on the documentation topics that ship with Python
#   (`pydoc_data.topics`, about 465,000 characters of English); its metric is **perplexity**.
#
# **Learning objectives.** After this notebook you can
# 1. say which rows and columns of q, k, v and the output projection belong to one attention head, and remove a
#    head by hand, checked against `mp.prune_heads`;
# 2. find which heads matter by ablating them one at a time, and compare that with cheap weight-norm scores;
# 3. remove MLP neurons, residual width and whole blocks, and measure parameters, MACs and CPU latency;
# 4. drop or merge tokens at inference (EViT, ToMe) and read the accuracy-MACs trade-off;
# 5. recover a width- and depth-pruned language model by distilling it from the dense one, and compare the text
#    the dense and the pruned models write.
#
# Time: about 75 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
VIT_EPOCHS = 1 if FAST else 5  # fine-tuning epochs of the pruned ViT
GPT_EPOCHS = 1 if FAST else 5  # epochs of 205 steps for each pruned CharGPT (trained alone, or distilled)
THREADS = 1  # CPU threads for latency

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import display

import minprune as mp
from minprune.attention_blocks import SelfAttention

mp.seed_everything(0)
splits = mp.load("mnist-small")
train_loader, test_loader = splits.loader("train", 64), splits.loader("test", 500)
text = mp.load("pydoc-text")
vit = mp.pretrained("tinyvit", progress=False)
gpt = mp.pretrained("chargpt", progress=False)
print(text)
print(vit.baseline_meta["recipe"], gpt.baseline_meta["recipe"])

# %% [markdown]
# ## 1. The two baselines
# Both ship with the kit, so every learner starts from the same weights. TinyViT classifies digits; CharGPT
# predicts the next character. Its **loss** is the mean negative log-likelihood per character in nats;
# **perplexity** `exp(loss)` is the number of characters it hesitates between, as if it picked uniformly
# among them (1 is certain, 103 is guessing over the whole alphabet), and **bits per character** is `loss / ln 2`.

# %%
# NBVAL_CHECK_OUTPUT
gpt_test = text.loader("test", 64, 64)
dense_gpt = mp.evaluate(gpt, gpt_test)
print(f"TinyViT: {mp.count_params(vit):,} parameters, {mp.count_macs(vit):,} MACs per digit, "
      f"test accuracy {mp.accuracy(vit, test_loader):.1f}%")
print(f"CharGPT: {mp.count_params(gpt):,} parameters, {mp.count_macs(gpt):,} MACs per window of "
      f"{gpt.block_size} characters, test perplexity {mp.perplexity(dense_gpt['loss']):.3f}, "
      f"{mp.bits_per_char(dense_gpt['loss']):.3f} bits per character")
print(vit.blocks[0])  # one of its four blocks

# %% [markdown]
# What the language model writes, started from "The " and sampled at temperature 0.8 (a seeded generator,
# so the same weights write the same text):

# %%
def sample(model, prompt="The ", n=240, seed=0):
    return text.decode(model.generate(text.encode(prompt)[None], n, temperature=0.8, seed=seed)[0])


print(sample(gpt))

# %% [markdown]
# ## 2. Attention from the pruning point of view
# A block's attention computes, for each of its `heads`, queries, keys and values of `head_dim = dim / heads`
# numbers per token, mixes the values of all tokens with the softmax of query-key scores, and writes the heads'
# outputs side by side into one vector that the output projection `proj` maps back to the residual stream.
# So **head h owns rows `h*head_dim ... (h+1)*head_dim - 1` of `q`, `k` and `v`, and the same columns of `proj`**.
# Zero those columns of `proj` and the head's output never reaches the model: that is the masked equivalent of
# removing it.
#
# Which heads matter? The direct answer is to remove each one alone and measure how much the loss rises
# (`mp.head_ablation`: one evaluation per head). The cheap answer is a norm of the head's weights
# (`mp.head_scores`, no data at all). Do they agree?

# %%
val_loader = splits.loader("val", 500)
rise = mp.head_ablation(vit, val_loader, max_batches=1)
norms = mp.head_scores(vit, "l1")
rise_map = torch.stack(list(rise.values()))
norm_map = torch.stack(list(norms.values()))


def rank_correlation(a, b):
    """Spearman's rho: the correlation of the ranks of a and b."""
    ra, rb = a.flatten().argsort().argsort().double(), b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, grid, title in ((axes[0], rise_map, "loss rise when the head is removed"),
                        (axes[1], norm_map, "L1 norm of the head's weights")):
    im = ax.imshow(grid.numpy(), cmap="viridis")
    ax.set_xlabel("head")
    ax.set_ylabel("block")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
fig.tight_layout()
print(f"rank correlation between ablation and L1 norm over the {rise_map.numel()} heads: "
      f"{rank_correlation(rise_map, norm_map):.2f}")
print("most important head per block (by ablation):", rise_map.argmax(1).tolist())

# %% [markdown]
# ## 3. Removing heads and MLP neurons
# ### Exercise 12.1 (10 min): the rows a head owns, and one head removed by hand
# Write `my_head_rows(head, head_dim)`, the row indices of `q`, `k` and `v` that belong to head `head`, and
# `my_remove_head(attn, head)`, a new `SelfAttention` without that head: the other heads' rows of `q`, `k`, `v`
# (weights and biases) and the same **columns** of `proj` (its bias stays whole). `q`, `k` and `v` are three
# separate Linear layers, each with `heads * head_dim` rows, and a head keeps its size: `head_dim` need not be
# `dim / heads` (build the new layer with `SelfAttention(dim, heads, head_dim=..., causal=...)`). The attention you
# are given must not change. By hand: with `head_dim = 16`, head 2 owns rows 32 to 47.

# %%
# BUILD IT YOURSELF
# Exercise 12.1 (10 min): the head-coupled index set, then a SelfAttention without one head
def my_head_rows(head, head_dim):
    """LongTensor of the rows of q, k and v that head `head` owns."""
    ### BEGIN SOLUTION
    return torch.arange(head * head_dim, (head + 1) * head_dim)
    ### END SOLUTION


def my_remove_head(attn, head):
    """A new SelfAttention with head `head` removed from q, k, v (rows) and proj (columns)."""
    ### BEGIN SOLUTION
    dim, hd = attn.q.in_features, attn.head_dim
    kept = torch.cat([my_head_rows(h, hd) for h in range(attn.heads) if h != head])
    new = SelfAttention(dim, attn.heads - 1, head_dim=hd, causal=attn.causal)
    with torch.no_grad():
        for key in ("q", "k", "v"):
            getattr(new, key).weight.copy_(getattr(attn, key).weight[kept])
            getattr(new, key).bias.copy_(getattr(attn, key).bias[kept])
        new.proj.weight.copy_(attn.proj.weight[:, kept])
        new.proj.bias.copy_(attn.proj.bias)
    return new
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
hd = vit.blocks[0].attn.head_dim
mp.course.check.same_value(my_head_rows(2, hd).tolist(), list(range(32, 48)), name="my_head_rows(2, 16)")
x, _ = splits.sample(16, "test")
attn_inputs = {}  # what each block's attention reads for these 16 digits, caught with forward hooks
hooks = [vit.blocks[b].attn.register_forward_hook(lambda module, args, out, b=b: attn_inputs.update({b: args[0]}))
         for b in (0, 1, 3)]
with torch.no_grad():
    vit(x)
for hook in hooks:
    hook.remove()
cases = [(vit.blocks[block].attn, head, attn_inputs[block]) for block, head in ((0, 0), (1, 3), (3, 2))]
mp.course.check_exercise("12.1", my_remove_head, extra_cases=cases)

# %% [markdown]
# The library does this for every block at once: `mp.select_heads(scores, fraction)` keeps the best heads of
# each block, `mp.prune_heads(model, keep)` returns the smaller copy, and it computes exactly what
# `mp.mask_heads(model, keep)` computes with the heads' `proj` columns set to zero. MLP neurons work the same
# way (neuron j is row j of `fc1` and column j of `fc2`; GELU(0) = 0): `mp.neuron_scores`, `mp.select_neurons`,
# `mp.prune_mlp`, `mp.mask_neurons`. We remove half of the heads and half of the MLP neurons of every block, then
# fine-tune.

# %%
keep_heads = mp.select_heads(mp.head_scores(vit, "l1"), 0.5)
keep_neurons = mp.select_neurons(mp.neuron_scores(vit, "l1"), 0.5)
small_vit = mp.prune_mlp(mp.prune_heads(vit, keep_heads), keep_neurons)
masked = mp.mask_neurons(mp.mask_heads(vit, keep_heads), keep_neurons)
with torch.no_grad():
    print(f"pruned vs masked, largest output difference: {(small_vit(x) - masked(x)).abs().max():.1e}")
print({name: idx.tolist() for name, idx in keep_heads.items()})
tuned_vit = mp.copy_model(small_vit)
mp.fit(tuned_vit, train_loader, mp.TrainConfig(epochs=VIT_EPOCHS, lr=5e-4), progress=False)
vit_table = mp.compare({"TinyViT": vit, "50% heads + 50% neurons": small_vit, "... fine-tuned": tuned_vit},
                       test_loader, timing=mp.LatencyOptions(threads=THREADS))
display(vit_table)

# %% [markdown]
# Half of the heads and half of the MLP neurons went, and with them about half of the parameters and MACs (the
# `x smaller` and `x fewer MACs` columns). Compare the `ms@b64` column: on a model this small the latency usually
# falls less than the MACs, because the softmax, the LayerNorms and the reshapes between the small matrix
# products take a share of the time that does not shrink with the heads (and a shared CPU adds noise).
#
# ### Question 12.2 (5 min)
# The rank correlation above says how well the L1 norm of a head's weights predicts what removing it costs.
# Would you trust it to pick which half of the heads to remove? What does the ablation cost on a model with 12
# blocks of 12 heads, and on one with 32 blocks of 32 heads?

# %% [markdown]
# ## 4. Residual width and whole blocks
# ### The width of the residual stream
# Every block reads the residual stream through a LayerNorm and writes back into it, so channel `c` of the stream
# is one unit shared by the patch embedding, the class token, the position embeddings, every `q`, `k`, `v` and
# `fc1` (their column `c`), every `proj` and `fc2` (their row `c`), every LayerNorm and the classifier. Removing it
# means slicing all of them together. The one subtlety is the LayerNorm: it normalises with the mean and the
# variance over *all* channels, so a zeroed channel still changes the others. The masked equivalent
# (`mp.mask_width`) therefore uses a LayerNorm that takes its statistics over the kept channels only, and
# `mp.prune_width` computes exactly that, smaller. `mp.width_scores` scores each channel by the norm of all its
# weights, or, given a loader, by the size of its activations after every LayerNorm (Minitron's score).

# %%
keep_channels = mp.select_width(mp.width_scores(vit, "l2", loader=val_loader, max_batches=1), 0.25)
narrow_vit = mp.prune_width(vit, keep_channels)
with torch.no_grad():
    print(f"width 64 -> {narrow_vit.embed.out_features}: pruned vs masked, largest output difference "
          f"{(narrow_vit(x) - mp.mask_width(vit, keep_channels)(x)).abs().max():.1e}")

# %% [markdown]
# ### Whole blocks (depth)
# A pre-norm block computes `h + attn(...)` and then `h + mlp(...)`: if a block barely changes the stream, the
# model barely notices when it goes. ShortGPT measures this as the **Block Influence**, one minus the mean cosine
# similarity between a token's hidden state entering the block and leaving it. Like the head norms, it is cheap
# (one forward pass, no labels); the direct measure is again ablation: skip one block at a time
# (`mp.block_ablation`).
#
# ### Exercise 12.3 (5 min): the Block Influence by hand
# Write `my_block_influence(h_in, h_out)`: both are (batch, tokens, dim) hidden states; return one minus the mean,
# over every token of every example, of the cosine similarity between `h_in` and `h_out` (a float). By hand: a block
# that leaves every token unchanged scores 0; one that turns every token by 90 degrees scores 1.

# %%
# BUILD IT YOURSELF
# Exercise 12.3 (5 min): 1 - mean cosine similarity of the hidden states entering and leaving a block
def my_block_influence(h_in, h_out):
    """1 - mean over tokens of cos(h_in, h_out), as a float."""
    ### BEGIN SOLUTION
    return float(1 - torch.nn.functional.cosine_similarity(h_in, h_out, dim=-1).mean())
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
captured = {}
hook = vit.blocks[2].register_forward_hook(lambda module, args, out: captured.update(h_in=args[0], h_out=out))
with torch.no_grad():
    vit(x)
hook.remove()
unchanged, turned = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]]), torch.tensor([[[-2.0, 1.0], [1.0, 3.0]]])
cases = [(unchanged, unchanged), (unchanged, turned), (captured["h_in"], captured["h_out"])]
mp.course.check_exercise("12.3", my_block_influence, extra_cases=cases)

# %%
influence = mp.block_importance(vit, val_loader, max_batches=1)
block_rise = mp.block_ablation(vit, val_loader, max_batches=1)
print("Block Influence per block:        ", [round(v, 3) for v in influence.tolist()])
print("loss rise when the block is skipped:", [round(v, 3) for v in block_rise.tolist()])
drop = mp.select_blocks(influence, 1)
shallow_vit = mp.transformers.depth.drop_blocks(vit, drop)
print(f"dropped block {drop}; skipping it computes what mp.mask_blocks computes:",
      torch.allclose(shallow_vit(x), mp.mask_blocks(vit, drop)(x), atol=1e-5))
depth_table = mp.compare({"TinyViT": vit, "width 64 -> 48": narrow_vit, f"block {drop[0]} dropped": shallow_vit},
                         test_loader, timing=mp.LatencyOptions(threads=THREADS))
display(depth_table)

# %% [markdown]
# Read the two rows without fine-tuning: a quarter of the width costs more accuracy than a whole block here,
# because every layer loses those channels, while the block with the smallest influence turned its input least.
# By both measures the first block is the one to keep: it turns the raw patch embeddings into features, so its
# influence is the largest and its ablation cost by far the largest (the two lists printed above).

# %% [markdown]
# ## 5. Fewer tokens at inference: EViT and ToMe
# Everything above makes the model smaller for every input. A ViT can also save work per input: most patches of
# a digit are black background. Two ways, both without changing a weight:
#
# - **token pruning** (EViT, `mp.TokenPruned(model, keep_rate, after)`): in the chosen blocks, between attention and
#   MLP, keep the patch tokens that the class token attends to most and fuse the rest into one token;
# - **token merging** (ToMe, `mp.TokenMerged(model, r)`): in every block, average away the `r` pairs of tokens
#   whose keys are most alike, and let attention count a merged token as many.
#
# Which patches survive depends on the image. Here are the patches EViT keeps after block 2 for eight test digits
# (dimmed: dropped, fused into one token):

# %%
evit = mp.TokenPruned(vit, keep_rate=0.5, after=(1, 2))
kept = evit.kept_patches(x[:8])[2]  # (8, kept patches), indices into the 4x4 grid
grid = vit.input_shape[-1] // vit.patch_size
fig, axes = plt.subplots(1, 8, figsize=(12, 1.8))
for i, ax in enumerate(axes):
    keep_map = torch.zeros(grid * grid)
    keep_map[kept[i]] = 1
    shade = keep_map.view(grid, grid).repeat_interleave(vit.patch_size, 0).repeat_interleave(vit.patch_size, 1)
    ax.imshow(x[i, 0] * (0.25 + 0.75 * shade), cmap="gray")
    ax.set_title(f"digit {int(splits.sample(8, 'test')[1][i])}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
print(f"{kept.shape[1]} of {grid * grid} patches kept per image; tokens per block:", evit.token_counts())

# %% [markdown]
# The kept patches follow the strokes: the class token has learned to look where the ink is. Now the trade-off:
# accuracy against MACs, for several keep rates and merge counts (no fine-tuning).

# %%
# NBVAL_CHECK_OUTPUT
token_models = {"dense": vit, **{f"EViT keep {k}": mp.TokenPruned(vit, keep_rate=k, after=(1, 2))
                                 for k in (0.7, 0.5, 0.3)},
                **{f"ToMe r={r}": mp.TokenMerged(vit, r=r) for r in (1, 2, 3, 4)}}
dense_macs = mp.count_macs(vit)
token_rows = [{"model": name, "MACs": mp.count_macs(m), "MACs removed %": 100 * (1 - mp.count_macs(m) / dense_macs),
               "acc": mp.accuracy(m, test_loader)} for name, m in token_models.items()]
token_table = mp.Table(token_rows)
display(token_table)

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
for prefix, marker in (("EViT", "o"), ("ToMe", "s")):
    pts = [(r["MACs"], r["acc"]) for r in token_rows if r["model"].startswith(prefix)]
    ax.plot(*zip(*pts), marker=marker, label=prefix)
ax.scatter([dense_macs], [token_rows[0]["acc"]], color="k", label="dense", zorder=3)
ax.set_xlabel("MACs per digit")
ax.set_ylabel("test accuracy (%)")
ax.legend()
fig.tight_layout()

# %% [markdown]
# Without training, merging holds up better than dropping down to about a third of the MACs removed (compare
# ToMe r=3 with EViT keep 0.5 in the table: fewer MACs, higher accuracy): a merged token keeps an average of what
# it replaced, a dropped one only its share of the fused token. At the most aggressive settings (ToMe r=4, EViT
# keep 0.3) both lose a lot. A little fine-tuning of the wrapped model
# (its weights are the ViT's, and gradients flow through the kept tokens) teaches the model to live with fewer
# tokens. And the clock? At this tiny width, the gathers and sorts that choose the tokens cost about as much as
# the matrix products they save, so the measured latency can even rise: token reduction pays off on ViTs with
# hundreds of tokens and wide layers, where the products dominate.

# %%
tuned_evit = mp.copy_model(evit)
mp.fit(tuned_evit, train_loader, mp.TrainConfig(epochs=VIT_EPOCHS, lr=5e-4), progress=False)
tome = token_models["ToMe r=3"]
display(mp.compare({"TinyViT": vit, "EViT keep 0.5": evit, "EViT keep 0.5, fine-tuned": tuned_evit,
                    "ToMe r=3": tome}, test_loader, timing=mp.LatencyOptions(threads=THREADS)))

# %% [markdown]
# ### Question 12.4 (5 min)
# EViT decides which tokens to keep from the class token's attention in the *current* block, ToMe from the
# similarity of the keys. For a digit drawn small in one corner, which of the two would you expect to keep more
# useful patches, and why? Which of the two could you use in a language model such as CharGPT, where every token
# must still produce a prediction?

# %% [markdown]
# ## 6. A smaller language model, recovered by distillation
# Now the same tools on CharGPT, the way NVIDIA's Minitron shrinks large language models: drop the block with the
# smallest influence, halve the MLP width of the others (the residual width stays), and recover with training.
# Two ways to train the pruned model for the same number of steps: on the text alone (cross-entropy on the next
# character), or **distilled** from the dense model (`mp.distill_student`: the KL divergence to the teacher's
# distribution over the next character at every position, which says far more per character than the one right
# answer does).

# %%
calibration = text.loader("val", 64, 32)
gpt_drop = mp.select_blocks(mp.block_importance(gpt, calibration), 1)
shallow_gpt = mp.transformers.depth.drop_blocks(gpt, gpt_drop)
student = mp.prune_mlp(shallow_gpt, mp.select_neurons(mp.neuron_scores(shallow_gpt, "l1"), 0.5))
print(f"dropped block {gpt_drop}, half of the MLP neurons: {mp.count_params(student):,} of "
      f"{mp.count_params(gpt):,} parameters ({mp.count_params(student) / mp.count_params(gpt):.0%})")
gpt_train = text.loader("train", 64, 32)
steps = mp.TrainConfig(epochs=GPT_EPOCHS, lr=1e-3)
alone = mp.copy_model(student)
mp.seed_everything(0)
mp.fit(alone, gpt_train, steps, progress=False)
taught = mp.copy_model(student)
mp.seed_everything(0)
mp.distill_student(taught, gpt, gpt_train, mp.KDConfig(temperature=1.0, alpha=0.5), steps, progress=False)
gpt_ppl = {name: mp.perplexity(mp.evaluate(m, gpt_test)["loss"])
           for name, m in (("dense", gpt), ("pruned", student), ("trained alone", alone), ("distilled", taught))}
print({name: round(p, 3) for name, p in gpt_ppl.items()})
closed = (gpt_ppl["trained alone"] - gpt_ppl["distilled"]) / (gpt_ppl["trained alone"] - gpt_ppl["dense"])
print(f"distillation closed {closed:.0%} of the perplexity gap between the student trained alone and the dense model")

# %% [markdown]
# Pruning alone wrecks the language model (the perplexity of the pruned row), and a few hundred steps of training
# bring most of it back. Distilled, the same steps go further. With longer training the distilled student even
# passes its teacher: the benchmark (`bench/results/transformers.md`, five epochs each, three seeds) measures a
# test perplexity of 3.29 distilled against 3.37 trained alone and 3.33 for the dense model, with 54% of its
# parameters. What do they write?

# %%
for name, model in (("dense", gpt), ("pruned, trained alone", alone), ("pruned, distilled", taught)):
    print(f"--- {name} ---\n{sample(model, n=160)}\n")

# %% [markdown]
# ### Question 12.5 (5 min)
# The student kept the residual width, so its hidden states could also be matched to the teacher's, block for
# block (`KDConfig(hints={"blocks.0": "blocks.0", ...})`). Which teacher block should the student's block 1 be
# matched with, now that one block is gone? Why does Minitron prefer pruning width over depth at the same size?

# %%
# Claims of this notebook, checked.
rows = {r["model"]: r for r in vit_table.rows}
assert rows["50% heads + 50% neurons"]["params"] < 0.55 * rows["TinyViT"]["params"]
assert rows["50% heads + 50% neurons"]["MACs"] < 0.55 * rows["TinyViT"]["MACs"]
assert rows["... fine-tuned"]["acc"] > rows["TinyViT"]["acc"] - 2
assert torch.allclose(small_vit(x), masked(x), atol=1e-5)
assert mp.perplexity(dense_gpt["loss"]) < 4
assert torch.allclose(shallow_vit(x), mp.mask_blocks(vit, drop)(x), atol=1e-5)
assert int(influence.argmax()) == 0 and int(block_rise.argmax()) == 0  # the first block matters most
assert all(r["MACs"] < dense_macs for r in token_rows[1:])
assert mp.count_params(student) < 0.6 * mp.count_params(gpt)
assert gpt_ppl["distilled"] < gpt_ppl["trained alone"] < gpt_ppl["pruned"]
print("all checks passed")

# %% [markdown]
# ## What the library gave you
# - `mp.pretrained("tinyvit")`, `mp.pretrained("chargpt")`: the shipped transformer baselines;
#   `mp.load("pydoc-text")`: the text, split by position, with next-character loaders; `mp.perplexity`,
#   `mp.bits_per_char`; `CharGPT.generate(idx, n, temperature=, seed=)`;
# - `mp.head_ablation`: the loss rise of removing each head alone; `mp.head_scores`: weight norms per head;
# - `mp.select_heads`, `mp.prune_heads`, `mp.mask_heads`: whole heads out of q, k, v and proj, checked equal to
#   the masked model; `mp.neuron_scores`, `mp.select_neurons`, `mp.prune_mlp`, `mp.mask_neurons`: the same for
#   MLP neurons;
# - `mp.width_scores`, `mp.select_width`, `mp.prune_width`, `mp.mask_width`: residual channels out of every layer
#   that reads or writes the stream, LayerNorms included; `mp.block_importance` (Block Influence),
#   `mp.block_ablation`, `mp.select_blocks`, `mp.mask_blocks`, `mp.transformers.depth.drop_blocks`: whole blocks;
# - `mp.TokenPruned` (EViT) and `mp.TokenMerged` (ToMe): fewer tokens per image at inference, `kept_patches` and
#   `token_sizes` to see which; `mp.head_taylor_scores`, `mp.head_entropy`: data-driven head scores;
# - `mp.distill_student` on a language model: per-position distillation from the dense teacher.
