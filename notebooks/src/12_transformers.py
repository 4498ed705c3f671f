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
GPT_STEPS = 40 if FAST else 600  # training steps of each pruned CharGPT (fine-tuned alone, or distilled)
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
# (weights and biases) and the same **columns** of `proj` (its bias stays whole). By hand: with `head_dim = 16`,
# head 2 owns rows 32 to 47.

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
    new = SelfAttention(dim, attn.heads, causal=attn.causal)
    with torch.no_grad():
        for key in ("q", "k", "v"):
            old = getattr(attn, key)
            layer = torch.nn.Linear(dim, len(kept))
            layer.weight.copy_(old.weight[kept])
            layer.bias.copy_(old.bias[kept])
            setattr(new, key, layer)
        new.proj = torch.nn.Linear(len(kept), dim)
        new.proj.weight.copy_(attn.proj.weight[:, kept])
        new.proj.bias.copy_(attn.proj.bias)
    return new
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
hd = vit.blocks[0].attn.head_dim
mp.course.check.same_value(my_head_rows(2, hd).tolist(), list(range(32, 48)), name="my_head_rows(2, 16)")
x, _ = splits.sample(16, "test")
for block, head in ((0, 0), (1, 3), (3, 2)):
    mine = mp.copy_model(vit)
    mine.blocks[block].attn = my_remove_head(vit.blocks[block].attn, head)
    name = f"blocks.{block}.attn"
    library = mp.prune_heads(vit, {name: [h for h in range(4) if h != head]})
    mp.course.check.same_as(mine, library, x, atol=1e-5,
                            hint="keep the other heads' rows of q, k, v and the same columns of proj")

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
# Half of the heads and half of the MLP neurons went, and with them about half of the parameters and MACs. The
# latency fell less than the MACs: at this size the softmax, the LayerNorms and the reshapes between the small
# matrix products cost as much as the products themselves, and they do not shrink with the heads.
#
# ### Question 12.2 (5 min)
# The rank correlation above says how well the L1 norm of a head's weights predicts what removing it costs.
# Would you trust it to pick which half of the heads to remove? What does the ablation cost on a model with 12
# blocks of 12 heads, and on one with 32 blocks of 32 heads?

# %%
# Claims of this notebook, checked.
rows = {r["model"]: r for r in vit_table.rows}
assert rows["50% heads + 50% neurons"]["params"] < 0.55 * rows["TinyViT"]["params"]
assert rows["50% heads + 50% neurons"]["MACs"] < 0.55 * rows["TinyViT"]["MACs"]
assert rows["... fine-tuned"]["acc"] > rows["TinyViT"]["acc"] - 2
assert torch.allclose(small_vit(x), masked(x), atol=1e-5)
assert mp.perplexity(dense_gpt["loss"]) < 4
print("all checks passed")

# %% [markdown]
# ## What the library gave you
# - `mp.pretrained("tinyvit")`, `mp.pretrained("chargpt")`: the shipped transformer baselines;
#   `mp.load("pydoc-text")`: the text, split by position, with next-character loaders; `mp.perplexity`,
#   `mp.bits_per_char`; `CharGPT.generate(idx, n, temperature=, seed=)`;
# - `mp.head_ablation`: the loss rise of removing each head alone; `mp.head_scores`: weight norms per head;
# - `mp.select_heads`, `mp.prune_heads`, `mp.mask_heads`: whole heads out of q, k, v and proj, checked equal to
#   the masked model; `mp.neuron_scores`, `mp.select_neurons`, `mp.prune_mlp`, `mp.mask_neurons`: the same for
#   MLP neurons.
