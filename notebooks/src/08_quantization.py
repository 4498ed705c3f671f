# %% [markdown]
# # 08 · Quantization: from a grid of integers to int8 PyTorch and Deep Compression
#
# **Learning objectives.** After this notebook you can
# 1. say what a quantized number is (scale, zero point, bits) and why 0 must be exactly on the grid, and compute
#    it yourself (Exercises 8.1-8.3);
# 2. measure how accuracy falls with the bit width, and why per-channel scales beat one scale per tensor;
# 3. train through rounding with a straight-through estimator (quantization-aware training, QAT);
# 4. share weights with k-means and fine-tune the centroids, whose update you write yourself (Han et al. 2016;
#    Exercise 8.4);
# 5. make a real int8 model with PyTorch, and check that it is really int8, smaller and faster;
# 6. look under the hood of int8: fold a BatchNorm into the convolution before it, calibrate activation ranges
#    with forward hooks, and compute a quantized Linear layer with integers only, as PyTorch's kernels do
#    (Exercises 8.5-8.7);
# 7. run the Deep Compression pipeline (prune, share, Huffman-code) and read the real bytes of each stage.
#
# Time: about 140 minutes (80 of them for the exercises).

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"  # CI sets MINPRUNE_FAST=1; in class leave it off
QAT_EPOCHS = 1 if FAST else 3
DC_EPOCHS = 1 if FAST else 3  # fine-tuning epochs per Deep Compression step

# %%
import copy
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import minprune as mp
from minprune import copy_model, load_int8, magnitude_scores, make_permanent, prune, save_int8

mp.seed_everything(0)
torch.set_num_threads(1)  # timings below: one thread for the float and the int8 model alike
splits = mp.load("mnist-small")
train, test = splits.loader("train", 64), splits.loader("test", 500)
base = mp.pretrained("lenet300", progress=False)
float_acc = mp.accuracy(base, test)

# %% [markdown]
# ## 1. What is a quantized number?
#
# A b-bit number is an integer q on a grid [qmin, qmax] that stands for the real value `scale * (q - zero_point)`.
# *Asymmetric* quantization maps [min(x, 0), max(x, 0)] onto [0, 2^b - 1]; *symmetric* quantization fixes
# zero_point = 0. Either way **0 is exactly on the grid**: a pruned weight stays exactly zero, and zero padding
# stays exact. Rounding to the nearest grid point costs at most half a step, `scale / 2`.

# %%
x = torch.linspace(-1.0, 2.0, 601)
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for bits in (2, 3, 4):
    axes[0].plot(x, mp.fake_quantize(x, bits), label=f"{bits} bits")
    axes[1].plot(x, mp.fake_quantize(x, bits) - x, label=f"{bits} bits")
axes[0].set_title("quantized value (asymmetric)")
axes[1].set_title("rounding error")
axes[0].legend()
fig.tight_layout()

# %%
# NBVAL_CHECK_OUTPUT
scale, zero_point = mp.quant_params(x, 4)
print(f"4 bits: scale={float(scale):.4f}, zero point={int(zero_point)}, "
      f"max error={float((mp.fake_quantize(x, 4) - x).abs().max()):.4f} <= half a step={float(scale) / 2:.4f}")

# %% [markdown]
# ### Exercise 8.1 (10 min): scale and zero point
# Asymmetric b-bit quantization maps the range [lo, hi] = [min(x, 0), max(x, 0)] onto the integers
# [0, 2^b - 1]: `scale = (hi - lo) / (2^b - 1)` and `zero_point = round(-lo / scale)` (clamped to the grid), so
# that the real value 0 is exactly the integer `zero_point`. Guard against an all-zero `x` by keeping
# `scale >= torch.finfo(torch.float32).eps`. Return both as tensors, like `mp.quant_params(x, bits)`.

# %%
# BUILD IT YOURSELF
# Exercise 8.1 (10 min): asymmetric scale and zero point of a tensor
def my_quant_params(x, bits):
    """(scale, zero_point) of asymmetric `bits`-bit quantization of the tensor x: 0-d float32 and int64 tensors."""
    ### BEGIN SOLUTION
    qmax = 2**bits - 1
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=torch.finfo(torch.float32).eps)
    zero_point = torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int64)
    return scale, zero_point
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(torch.tensor([-1.0, 0.0, 2.0]), 2),  # range 3 on 4 levels: scale 1, zero point 1
         (torch.tensor([0.5, 1.0, 3.0]), 8),  # all positive: lo = 0, zero point 0, scale 3/255
         (torch.zeros(4), 4)]  # all zero: the smallest positive scale
mp.course.check_exercise("8.1", my_quant_params, extra_cases=cases)

# %% [markdown]
# ### Exercise 8.2 (10 min): quantize, then dequantize
# Given a grid (a scale and a zero point, from `mp.quant_params` of some calibration data), quantize
# `q = clamp(round(x / scale) + zero_point, 0, 2^b - 1)` and map back, `scale * (q - zero_point)`. That round trip
# is **fake quantization**: a float tensor whose values lie on the b-bit grid. The clamp matters: new inputs can
# lie beyond the range the grid was calibrated on, and they land on its first or last point. Compare with
# `mp.fake_quantize(x, bits, scale=scale, zero_point=zero_point)`.

# %%
# Exercise 8.2 (10 min): fake quantization, a quantize-dequantize round trip
def my_fake_quantize(x, scale, zero_point, bits=8):
    """x rounded to the nearest point of the asymmetric `bits`-bit grid (scale, zero_point), a float tensor."""
    ### BEGIN SOLUTION
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1)
    return scale * (q - zero_point)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
scale, zero_point = mp.quant_params(torch.tensor([-1.0, 2.0]), 2)  # scale 1, zero point 1: the grid -1, 0, 1, 2
cases = [(torch.tensor([-1.0, 0.0, 0.4, 2.0]), scale, zero_point, 2),  # 0.4 rounds to 0
         (torch.tensor([-3.0, -1.2, 2.6, 5.0]), scale, zero_point, 2)]  # beyond the grid: -1, -1, 2, 2
mp.course.check_exercise("8.2", my_fake_quantize, extra_cases=cases)

# %% [markdown]
# ### Exercise 8.3 (10 min): one scale per output channel
# Symmetric quantization fixes the zero point at 0 and uses the grid [-(2^(b-1) - 1), 2^(b-1) - 1]. A weight
# matrix `W` of shape (out, in) gets one scale per row (output channel): `max |W[i, :]| / (2^(b-1) - 1)`, again
# at least `torch.finfo(torch.float32).eps`. Compare with `mp.quant_params(W, bits, symmetric=True, axis=0)[0]`.

# %%
# Exercise 8.3 (10 min): per-channel symmetric scales of a weight matrix
def my_channel_scales(W, bits):
    """One symmetric scale per row of W (a float32 tensor of shape (W.shape[0],))."""
    ### BEGIN SOLUTION
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(W.abs().amax(dim=1) / qmax, min=torch.finfo(torch.float32).eps)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(torch.tensor([[1.0, -2.0], [0.5, 0.25]]), 2),  # qmax 1: scales 2 and 0.5
         (torch.tensor([[127.0, 0.0], [0.0, 0.0]]), 8),  # 1.0, and eps for the all-zero (pruned) row
         (base.layers[1].weight.detach(), 4)]
mp.course.check_exercise("8.3", my_channel_scales, extra_cases=cases)

# %% [markdown]
# ## 2. Bits against accuracy, per tensor against per channel
# Post-training quantization (PTQ) of the weights only: round every weight of a copy, measure test accuracy.
# One scale per tensor must cover the largest weight of every row; one scale per output channel adapts.

# %%
rows = []
for bits in (8, 6, 4, 3, 2):
    for per_channel in (False, True):
        q = mp.quantize_weights(base, bits, per_channel=per_channel)
        rows.append({"bits": bits, "scales": "per channel" if per_channel else "per tensor", "acc": mp.accuracy(q, test)})
ptq = mp.Table(rows, title=f"weight-only PTQ of LeNet-300-100 (float: {float_acc:.1f}%)")
ptq

# %%
for scales in ("per tensor", "per channel"):
    picked = [r for r in rows if r["scales"] == scales]
    plt.plot([r["bits"] for r in picked], [r["acc"] for r in picked], "o-", label=scales)
plt.axhline(float_acc, color="gray", ls="--", label="float")
plt.xlabel("bits")
plt.ylabel("test accuracy (%)")
_ = plt.legend()

# %%
eight_bit = [r["acc"] for r in rows if r["bits"] == 8]
assert all(abs(a - float_acc) <= 0.5 for a in eight_bit), eight_bit  # 8 bits costs (almost) nothing

# %% [markdown]
# ## 3. Quantization-aware training with a straight-through estimator
# Rounding has zero gradient almost everywhere. The **straight-through estimator** pretends the rounding was
# the identity in the backward pass (`x + (round(x) - x).detach()`), so the float weights keep learning while
# the forward pass sees quantized ones. `swap_fake_quant` swaps every Linear/Conv for a fake-quant twin that
# keeps the same parameters, so `mp.fit` trains it as usual. Here: 2-bit weights, where PTQ hurts most.

# %%
mp.show_source(mp.quantization.uniform.round_ste)

# %%
qat = copy_model(base)
mp.swap_fake_quant(qat, 2, per_channel=True)
ptq_acc = mp.accuracy(qat, test)
mp.fit(qat, train, mp.TrainConfig(epochs=QAT_EPOCHS, lr=5e-4), progress=False)
mp.strip_fake_quant(qat)
print(f"2-bit weights: PTQ {ptq_acc:.1f}%  ->  after QAT {mp.accuracy(qat, test):.1f}%  (float {float_acc:.1f}%)")

# %% [markdown]
# ## 4. K-means weight sharing (Han et al. 2016)
# Instead of an even grid, cluster the nonzero weights of a layer into 2^b centroids: each weight stores a b-bit
# index, the layer stores its centroids. The centroids are trainable: the gradient of a centroid is the sum of
# the gradients of its weights. Pruned zeros are not clustered and stay zero.

# %%
shared = copy_model(base)
mp.share_weights(shared, 3)
W = shared.layers[1].weight.detach()
print(f"distinct values in layer 1 after 3-bit sharing: {len(torch.unique(W))}, "
      f"test accuracy {mp.accuracy(shared, test):.1f}%")
plt.hist(base.layers[1].weight.detach().flatten(), bins=100, alpha=0.6, label="float weights")
for c in mp.quantization.kmeans.shared_layers(shared)["layers.1"].centroids.detach():
    plt.axvline(float(c), color="tab:red", lw=0.8)
plt.title("layer 1 weights and the 8 centroids")
_ = plt.legend()

# %% [markdown]
# ### Exercise 8.4 (15 min): one fine-tuning step of the shared centroids
# While a layer is shared, its weight is `centroids[index]` where the mask keeps a weight, and exactly 0 where it
# was pruned. One centroid is the value of every weight in its cluster: nudging it moves all of them, so by the chain
# rule its gradient is the **sum** of their gradients. Write the centroid update of one fine-tuning step with SGD:
# 1. the gradient of centroid c is the sum of `weight_grad` over the weights whose `index` is c and whose `mask` is
#    True (pruned weights belong to no cluster, whatever their index says); a centroid without weights gets 0;
# 2. one SGD step, `centroids - lr * grad`, returned as a new float32 tensor shaped like `centroids`; leave the
#    inputs as they were (the optimizer, not your function, changes the real centroids).
#
# `index`, `weight_grad` and `mask` are shaped like the weight: 2-D for a Linear layer, 4-D for a convolution.
# `Tensor.index_add_` or `torch.bincount(..., weights=...)` sums values by cluster. Compare with
# `mp.centroid_step(centroids, index, weight_grad, lr, mask)`.

# %%
# Exercise 8.4 (15 min): one SGD step of the shared centroids
def my_centroid_step(centroids, index, weight_grad, lr, mask):
    """The centroids after one SGD step: each one's gradient is the sum of its kept weights' gradients."""
    ### BEGIN SOLUTION
    kept = mask.flatten()
    grad = torch.zeros(len(centroids)).index_add_(0, index.flatten()[kept], weight_grad.flatten()[kept])
    return centroids - lr * grad
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
# cluster 0: 1 + 3 = 4, so -0.5 - 0.1 * 4 = -0.9; cluster 2: -2 + 0.5 + 1 = -0.5, so 0.5 + 0.1 * 0.5 = 0.55;
# cluster 1 holds only a pruned weight (its gradient 4 does not count) and keeps 0
cases = [(torch.tensor([-0.5, 0.0, 0.5]), torch.tensor([[0, 2, 2], [0, 2, 1]]),
          torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, 4.0]]), 0.1,
          torch.tensor([[True, True, True], [True, True, False]])),
         (torch.tensor([1.0, 1.0]), torch.tensor([0, 1, 1]), torch.tensor([2.0, -1.0, -1.0]), 0.5,
          torch.ones(3, dtype=torch.bool))]  # two equal centroids, told apart by the index: [1 - 1, 1 + 1]
mp.course.check_exercise("8.4", my_centroid_step, extra_cases=cases)

# %% [markdown]
# **Against autograd.** Prune a copy of LeNet-300-100 (80% of its weights), share them with 4 bits and run one
# backward pass. Autograd computes `centroids.grad` through `centroids[index]`; `mp.centroid_gradients` computes it
# from the gradient of the weight, as your function does. Inside `parametrize.cached()` the shared weight is computed
# once, so it is one tensor that can keep its gradient (`retain_grad`). The pruned weights have gradients too, but
# they reach no centroid: the second number shows how far off counting them would be.

# %%
from torch.nn.utils import parametrize

sparse = copy_model(base)
prune(sparse, magnitude_scores(sparse), 0.8, scope="global")
make_permanent(sparse)
mp.share_weights(sparse, 4)
centers = mp.quantization.kmeans.shared_layers(sparse)["layers.1"]
xb, yb = next(iter(train))
with parametrize.cached():
    weight = sparse.layers[1].weight
    weight.retain_grad()
    torch.nn.functional.cross_entropy(sparse(xb), yb).backward()
autograd = centers.centroids.grad
ours = mp.centroid_gradients(weight.grad, centers.index, 16, centers.mask)
with_pruned = mp.centroid_gradients(weight.grad, centers.index, 16)  # the mistake: pruned weights counted
print(f"largest difference from autograd: {float((ours - autograd).abs().max()):.1e} "
      f"(the largest centroid gradient is {float(autograd.abs().max()):.1e}); "
      f"counting the pruned weights: {float((with_pruned - autograd).abs().max()):.1e}")
step = mp.centroid_step(centers.centroids, centers.index, weight.grad, 0.01, centers.mask)
torch.optim.SGD([centers.centroids], lr=0.01).step()
print("torch.optim.SGD gives the same centroids:", torch.allclose(step, centers.centroids.detach()))
assert torch.allclose(ours, autograd, atol=1e-6, rtol=1e-5)

# %% [markdown]
# ## 5. Int8 with PyTorch: which path, and is it really faster?
# In the torch release this course uses, two APIs exist. **torchao** (`quantize_` with int8 configs, and the pt2e flow with
# `X86InductorQuantizer`) is the maintained one, but on a CPU it only gets fast after `torch.compile`:
# while writing this library we measured torchao's dynamic int8 LeNet-300-100 at about 200x *slower* than float
# in eager mode, and an uncompiled pt2e model keeps float weights (its file was larger than the float one).
# Compiling took about two minutes on 2 cores. So `minprune.quantization.int8` uses the older `torch.ao.quantization`
# eager/FX API, which runs real int8 kernels without compiling. That API emits two deprecation notices: a
# **DeprecationWarning** that `torch.ao.quantization` will be removed, and a UserWarning that the quantized tensor
# types it creates (`torch.qint8`, `torch.quint8`) are deprecated. Nothing in this notebook can act on them, so
# the next cell filters exactly those two (by message) to keep the output readable; the library itself does not
# filter them.
#
# **Which int8 kernels.** PyTorch has several quantized engines. The default on x86, `"x86"`, uses fbgemm; on this
# course's CPU (AMD EPYC, AVX2, no AVX-512 or VNNI) fbgemm's int8 convolution of LeNet-5's 1-channel input took
# about 80% of the whole forward pass and made the int8 LeNet-5 *slower* than float, while oneDNN's ran it faster
# than float (`bench/results/quantization.md`: LeNet-5 1.95x, VGG 3.59x and ResNet 2.42x the float speed with
# oneDNN). For Linear layers fbgemm is the faster one. So
# `engine="auto"` picks `"onednn"` for CNNs and `"x86"` for MLPs; pass `engine=` to compare on your machine.
# Without VNNI, int8 kernels add pairs of 8-bit products in 16 bits, which can overflow; so activations use 7 bits
# (`reduce_range`), as PyTorch's x86 defaults do. On an ARM machine (an Apple M-series Mac) the only int8 engine
# is `"qnnpack"`, and `engine="auto"` uses it (with all 8 bits of the activations: its kernels sum in 32 bits);
# the speed figures above are from x86.
#
# **Real bytes.** `torch.save(model.state_dict())` of an int8 model wastes bytes (float64 scales and int64 zero
# points per channel, one zip record per tensor). `mp.save_int8` writes the int8 values, the scales
# and the model's description, packed into one flat tensor per dtype; `load_int8` (weights_only=True) rebuilds
# the same int8 model, with exactly the same outputs. The sizes below are those files.

# %%
warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")  # explained in the text above
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")  # the qint8 types

dynamic = mp.dynamic_int8(base)  # LeNet-300-100: int8 Linear weights, activations quantized per batch
cnn = mp.pretrained("vgg", progress=False).eval()
static = mp.static_int8(cnn, [splits.sample(256, "train")[0]])  # calibration: 256 training images
print("int8 weights of the static VGG:", list(mp.int8_weights(static).values())[:3], "...")
print("engines:", dynamic.engine, "(LeNet-300-100),", static.engine, "(VGG)")

# %%
def int8_file_bytes(variant):
    """Bytes of the compact int8 file, after checking that it loads back to the very same outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        nbytes = save_int8(Path(tmp) / "model.mpq", variant)["bytes"]
        x = splits.sample(16, "test")[0]
        assert torch.equal(load_int8(Path(tmp) / "model.mpq")(x), variant(x))
    return nbytes


def measure(name, float_model, variant):
    """Accuracy, real bytes and latency, float and int8 timed in alternating rounds (shared CPU: noisy)."""
    t_float, t_int8 = [], []
    for _ in range(3 if FAST else 10):
        t_float.append(mp.latency(float_model, batch_size=64, threads=1, repeats=5)["median_ms"])
        t_int8.append(mp.latency(variant, batch_size=64, threads=1, repeats=5)["median_ms"])
    size_f, size_q = mp.size_on_disk(float_model)["bytes"], int8_file_bytes(variant)
    return {"model": name, "float acc": mp.accuracy(float_model, test), "int8 acc": mp.accuracy(variant, test),
            "x smaller": size_f / size_q, "x faster": sorted(t_float)[len(t_float) // 2] / sorted(t_int8)[len(t_int8) // 2]}


lenet5 = mp.pretrained("lenet5", progress=False).eval()
static5 = mp.static_int8(lenet5, [splits.sample(256, "train")[0]])
int8_table = mp.Table([measure("LeNet-300-100 dynamic", base, dynamic), measure("VGG static PTQ", cnn, static),
                       measure("LeNet-5 static PTQ", lenet5, static5)])
int8_table

# %%
assert all(abs(r["float acc"] - r["int8 acc"]) <= 1.0 for r in int8_table.rows), int8_table.rows
smaller = [r["x smaller"] for r in int8_table.rows]
print(f"the int8 files are {min(smaller):.2f}x to {max(smaller):.2f}x smaller than the float ones")

# %% [markdown]
# The int8 files are a little less than 4x smaller (the line above gives the range): biases and scales stay in
# float and the file carries the model's description. Speed depends on the layer shapes and on the engine: with
# fbgemm, LeNet-5's 1-channel convolution was slower in int8 than in float on this course's CPU, which is why
# LeNet-5 runs on oneDNN here. The "x faster" column comes from a few short timings on a shared CPU and moves from
# run to run; `bench/results/quantization.md` has the full-length measurement (bench/quantization.py).
#
# **QAT with PyTorch**: `mp.prepare_qat_int8(model)` returns a copy with fake-quant observers; train it with
# `mp.fit`, then `mp.convert_qat_int8(prepared)` gives the int8 model. (Shown in the tests; it is slow in class.)

# %% [markdown]
# ## 6. Under the hood of int8: folding, calibration, integer arithmetic
# The int8 models of section 5 came out of PyTorch's flow in one call. Three steps happen inside it, and each is
# a short function you can write: BatchNorm is **folded** into the convolution before it; the range of every
# activation is **calibrated** by running some batches with forward hooks; and each layer then runs in
# **integer arithmetic**, with one float left, the multiplier that puts the result on the output's grid.

# %% [markdown]
# ### Exercise 8.5 (10 min): fold a BatchNorm into the convolution before it
# In eval mode `nn.BatchNorm2d` computes, for each channel, `gamma * (z - running_mean) / sqrt(running_var + eps)
# + beta`: an affine map, so a convolution followed by it is one convolution with other weights and a bias. With
# `s = gamma / sqrt(running_var + eps)` (one value per output channel), scale each output channel's filter by `s`
# (the first axis of `conv.weight`) and take the bias `(b - running_mean) * s + beta`, where `b` is the
# convolution's bias, 0 when it has none. A BatchNorm made with `affine=False` has no gamma and beta (they are
# `None`): use 1 and 0. Return a **new** Conv2d (`copy.deepcopy(conv)` with a new `nn.Parameter` weight and bias)
# and leave `conv` and `bn` as they are. The check also runs your folded convolution on an input. Compare with
# `mp.fold_batchnorm(conv, bn)`; PyTorch's own is `torch.nn.utils.fusion.fuse_conv_bn_eval`.

# %%
# Exercise 8.5 (10 min): BatchNorm folding
def my_fold_batchnorm(conv, bn):
    """A new nn.Conv2d, with a bias, whose output equals bn(conv(x)) for bn in eval mode; conv and bn unchanged."""
    ### BEGIN SOLUTION
    mean, var = bn.running_mean, bn.running_var
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    folded = copy.deepcopy(conv)
    folded.weight = torch.nn.Parameter(conv.weight.detach() * s.view(-1, 1, 1, 1))
    folded.bias = torch.nn.Parameter((b - mean) * s + beta)
    return folded
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
conv = torch.nn.Conv2d(1, 1, 1)  # one 1x1 filter: z = 2x + 1
bn = torch.nn.BatchNorm2d(1, eps=0.0).eval()
with torch.no_grad():
    conv.weight.fill_(2.0), conv.bias.fill_(1.0)
    bn.running_mean.fill_(3.0), bn.running_var.fill_(4.0), bn.weight.fill_(0.5), bn.bias.fill_(1.0)
# s = 0.5 / sqrt(4) = 0.25: the folded weight is 2 * 0.25 = 0.5, the folded bias (1 - 3) * 0.25 + 1 = 0.5
cases = [(conv, bn, torch.arange(4.0).view(1, 1, 2, 2))]
mp.course.check_exercise("8.5", my_fold_batchnorm, extra_cases=cases)

# %% [markdown]
# Folding the six BatchNorms of the VGG of section 5 changes its outputs only by float rounding (the largest
# difference is printed below), and not its accuracy:

# %%
folded_vgg = copy_model(cnn)
for block in folded_vgg.features:
    if isinstance(block, torch.nn.Sequential) and isinstance(block[1], torch.nn.BatchNorm2d):
        block[0], block[1] = mp.fold_batchnorm(block[0], block[1]), torch.nn.Identity()
images = splits.sample(256, "test")[0]
with torch.no_grad():
    gap = float((folded_vgg(images) - cnn(images)).abs().max())
print(f"VGG with its BatchNorms folded: largest |difference| of the logits {gap:.1e}; test accuracy "
      f"{mp.accuracy(cnn, test):.2f}% before, {mp.accuracy(folded_vgg, test):.2f}% after")

# %% [markdown]
# ### Exercise 8.6 (10 min): activation ranges with forward hooks
# Static quantization needs the grid of every activation before the int8 model runs: **calibration** runs some
# batches and records the smallest and largest output of each layer (what PyTorch's `MinMaxObserver` does).
# `module.register_forward_hook(hook)` makes PyTorch call `hook(module, inputs, output)` after each forward pass
# of that module, and returns a handle whose `.remove()` takes the hook off again. Write
# `my_activation_ranges(model, batches, types)`: hook every module of the given types (`model.named_modules()`
# also names nested ones, such as `"features.0"`), run all the batches (tensors, or `(x, y)` pairs from a
# DataLoader: use `x`), and return `{name: (min, max)}` of each module's **output** over all the batches, as
# Python floats. Leave the model as you found it: calibrate in eval mode (BatchNorm with its running statistics,
# Dropout off, as the int8 model will run) and put back every module's train/eval flag, run under
# `torch.no_grad()`, and remove the hooks, in a `finally:` block so that an error removes them too. Compare with
# `mp.activation_ranges(model, batches)`.

# %%
# Exercise 8.6 (10 min): activation ranges with forward hooks
def my_activation_ranges(model, batches, types=(torch.nn.Conv2d, torch.nn.Linear)):
    """{module name: (min, max) of its output over all batches} for each module of `types`; the model unchanged."""
    ### BEGIN SOLUTION
    ranges, handles = {}, []

    def recorder(name):
        def hook(module, inputs, output):
            lo, hi = float(output.min()), float(output.max())
            if name in ranges:
                lo, hi = min(lo, ranges[name][0]), max(hi, ranges[name][1])
            ranges[name] = (lo, hi)
        return hook

    modes = {m: m.training for m in model.modules()}
    for name, module in model.named_modules():
        if isinstance(module, types):
            handles.append(module.register_forward_hook(recorder(name)))
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return ranges
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
tiny = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
with torch.no_grad():
    tiny[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]])), tiny[0].bias.zero_()
    tiny[2].weight.fill_(1.0), tiny[2].bias.fill_(0.5)
batches = [torch.tensor([[1.0, 2.0]]), torch.tensor([[-3.0, 0.0]])]
# layer "0" gives (1, -2), then (-3, 0): range (-3, 1); layer "2" gives 1 + 0.5, then 0 + 0.5: range (0.5, 1.5)
mp.course.check_exercise("8.6", my_activation_ranges, extra_cases=[(tiny, batches)])

# %% [markdown]
# The ranges of LeNet-5 on the calibration images, and the 8-bit grid each would get (`mp.quant_params` of the
# range):

# %%
rows = []
for name, (lo, hi) in mp.activation_ranges(lenet5, [splits.sample(256, "train")[0]]).items():
    scale, zero_point = mp.quant_params(torch.tensor([lo, hi]), 8)
    rows.append({"layer": name, "min": lo, "max": hi, "scale": float(scale), "zero point": int(zero_point)})
mp.Table(rows, title="LeNet-5's output ranges on 256 training images, and their 8-bit grids")

# %% [markdown]
# ### Exercise 8.7 (15 min): a Linear layer in integers only
# This is what an int8 kernel computes. The input is quantized asymmetrically, `x = x_scale * (q_x - zx)` with
# `q_x` uint8 (or int8) and `zx = x_zero_point`; the weights symmetrically, `W = w_scale * q_w` with `q_w` int8 of
# shape (out, in) and `w_scale` one number or a float64 tensor of one scale per output channel. So
# `y = x_scale * w_scale * sum((q_x - zx) * q_w) + bias`, and you compute it in three steps:
# 1. the **int32 accumulator** `acc = q_x @ q_w.T - zx * q_w.sum(dim=1)`, with both converted `.to(torch.int32)`:
#    the zero-point correction expanded, as real kernels do (they compute `sum(q_w)` once, when they pack the
#    weights; `sum` of an integer tensor gives int64 unless you pass `dtype=torch.int32`). Not in float32: it
#    holds integers exactly only up to 2^24.
# 2. the bias (a float tensor, or `None`) on the accumulator's grid, whose scale is `x_scale * w_scale`:
#    `round(bias / (x_scale * w_scale))` as int32, added to `acc`;
# 3. **requantization** to the output's grid (y_scale, y_zero_point): `M = x_scale * w_scale / y_scale` is the only
#    float (use float64: `acc.double() * M`), `torch.round` (halves go to the even integer, as in PyTorch's
#    kernels), add `y_zero_point`, clamp to the range of `q_x`'s dtype (uint8 [0, 255], int8 [-128, 127]) and
#    return it in that dtype.
#
# Compare with `mp.integer_linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point)`.

# %%
# Exercise 8.7 (15 min): an integer-only Linear layer
def my_integer_linear(q_x, x_scale, x_zero_point, q_w, w_scale, bias, y_scale, y_zero_point):
    """The integers q_y of a quantized Linear layer's output, computed with an int32 accumulator."""
    ### BEGIN SOLUTION
    w = q_w.to(torch.int32)
    acc = q_x.to(torch.int32) @ w.T - x_zero_point * w.sum(dim=1, dtype=torch.int32)
    acc_scale = x_scale * torch.as_tensor(w_scale, dtype=torch.float64)
    if bias is not None:
        acc = acc + torch.round(bias.double() / acc_scale).to(torch.int32)
    q_y = torch.round(acc.double() * (acc_scale / y_scale)) + y_zero_point
    info = torch.iinfo(q_x.dtype)
    return torch.clamp(q_y, info.min, info.max).to(q_x.dtype)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
q_x, q_w = torch.tensor([[3, 1]], dtype=torch.uint8), torch.tensor([[2, -1], [1, 1]], dtype=torch.int8)
bias = torch.tensor([0.25, -10.0])
# acc: (3 - 1) * 2 + (1 - 1) * (-1) = 4 and 2; the bias on the grid 0.5 * 0.25 = 0.125: 2 and -80; M = 0.25:
# round(0.25 * 6) = round(1.5) = 2 (to even), + 10 = 12; round(0.25 * -78) = -20, + 10 = -10, clamped to 0
cases = [(q_x, 0.5, 1, q_w, 0.25, bias, 0.5, 10)]
mp.course.check_exercise("8.7", my_integer_linear, extra_cases=cases)

# %% [markdown]
# **Against PyTorch's kernels.** The first Linear layer of LeNet-300-100 (784 inputs, 300 outputs), with int8
# weights and one scale per output channel, on 500 test images: PyTorch's quantized tensors hold the integers
# (`int_repr()`), so `mp.integer_linear` gets exactly the integers that `torch.ao.nn.quantized.Linear` gets. The
# output grid comes from calibration (`mp.activation_ranges`). `fixed_point=True` replaces the float M by an int32
# multiplier and a right shift (`mp.fixed_point_multiplier`), as integer-only hardware stores it.

# %%
layer = base.layers[1]  # Linear(784, 300)
images = splits.sample(500, "test")[0]
x = images.flatten(1)
y_scale, y_zero = mp.quant_params(torch.tensor(mp.activation_ranges(base, [images])["layers.1"]), 8)
w_scales = mp.quant_params(layer.weight, 8, symmetric=True, axis=0)[0].double()
q_weight = torch.quantize_per_channel(layer.weight.detach(), w_scales, torch.zeros(300, dtype=torch.long), 0,
                                      torch.qint8)


def against_pytorch(engine, bits):
    """Our integers and those of PyTorch's quantized Linear on `engine`, activations on a `bits`-bit grid."""
    x_scale, x_zero = mp.quant_params(x, bits)
    q_input = torch.quantize_per_tensor(x, float(x_scale), int(x_zero), torch.quint8)
    was = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        qlinear = torch.ao.nn.quantized.Linear(784, 300)
        qlinear.set_weight_bias(q_weight, layer.bias.detach())
        qlinear.scale, qlinear.zero_point = float(y_scale), int(y_zero)
        theirs = qlinear(q_input).int_repr()
    finally:
        torch.backends.quantized.engine = was
    args = (q_input.int_repr(), float(x_scale), int(x_zero), q_weight.int_repr(), w_scales, layer.bias.detach(),
            float(y_scale), int(y_zero))
    ours, fixed = mp.integer_linear(*args), mp.integer_linear(*args, fixed_point=True)
    steps = (ours.int() - theirs.int()).abs()
    return {"engine": engine, "activation bits": bits, "% equal": 100 * float((steps == 0).double().mean()),
            "most steps apart": int(steps.max()), "% equal, fixed point": 100 * float((fixed == theirs).double().mean())}


supported = torch.backends.quantized.supported_engines
runs = [(engine, bits) for engine, bits in (("onednn", 7), ("qnnpack", 8), ("onednn", 8)) if engine in supported]
kernels = [against_pytorch(engine, bits) for engine, bits in runs]
for r in kernels:
    print(f"{r['engine']:8} {r['activation bits']}-bit activations: {r['% equal']:.3f}% of the outputs equal "
          f"PyTorch's ({r['% equal, fixed point']:.3f}% with the fixed-point multiplier), at most "
          f"{r['most steps apart']} step(s) apart")

# %%
exact = [r for r in kernels if r["engine"] == "qnnpack" or r["activation bits"] == 7]
assert exact and all(r["most steps apart"] <= 1 for r in exact), kernels  # the same integers, up to a rounding step

# %% [markdown]
# With 7-bit activations on oneDNN (the engine of section 5's CNNs) and with qnnpack, your integers are PyTorch's,
# up to a rounding step. If the last line shows far fewer equal outputs, that is PyTorch's kernel going wrong, not
# yours: on a CPU without VNNI instructions (the CPU these outputs were made on has none), the x86 int8 kernels,
# oneDNN's and fbgemm's, add pairs of uint8 x int8 products in 16 bits, and with all 8 bits of the activations those
# sums overflow and saturate. That is the reason for `reduce_range` (7-bit activations) in PyTorch's x86 defaults
# and in section 5; qnnpack, like your function, adds in 32 bits. `mp.integer_conv2d` does the same arithmetic for a
# convolution, on the image's windows, padded with `x_zero_point` (the integer that stands for 0).
#
# ## 7. Deep Compression on LeNet-300-100: prune, share, Huffman-code
# Han et al. (2016) chain three steps. Pruned weights are stored sparse as (gap, index) pairs; the gaps and the
# cluster indices are Huffman-coded, so frequent values get short codes. `mp.save_compressed` writes the real file
# and `mp.load_compressed` decodes it back to exactly the same weights: the accuracy below is that of the file.
# %%
stages = [{"stage": "float dense", "bytes": mp.size_on_disk(base)["bytes"], "acc": float_acc}]
dc = copy_model(base)
for sparsity in (0.8, 0.9, 0.95, 0.975):  # iterative pruning with fine-tuning
    prune(dc, magnitude_scores(dc), sparsity, scope="global")
    mp.fit(dc, train, mp.TrainConfig(epochs=DC_EPOCHS, lr=1e-3), progress=False)
make_permanent(dc)
stages.append({"stage": "pruned 97.5% (dense file)", "bytes": mp.size_on_disk(dc)["bytes"], "acc": mp.accuracy(dc, test)})
mp.share_weights(dc, 4)
mp.fit(dc, train, mp.TrainConfig(epochs=DC_EPOCHS, lr=3e-4), progress=False)  # fine-tune the centroids
with tempfile.TemporaryDirectory() as tmp:
    info = mp.save_compressed(Path(tmp) / "lenet300.mpdc", dc)
    decoded = mp.load_compressed(Path(tmp) / "lenet300.mpdc")
stages.append({"stage": "pruned + 4-bit shared + Huffman", "bytes": info["bytes"], "acc": mp.accuracy(decoded, test)})
for s in stages:
    s["x smaller"] = stages[0]["bytes"] / s["bytes"]
mp.Table(stages, title="Deep Compression, real bytes")

# %%
assert torch.equal(decoded.layers[1].weight, dc.layers[1].weight)  # the file decodes to the same weights
assert stages[-1]["x smaller"] >= 50, stages[-1]
mp.Table([{"tensor": k, "bytes": v} for k, v in info["by_tensor"].items()])

# %% [markdown]
# Pruning alone does not shrink a dense file at all: zeros take 4 bytes too. Sparse storage, sharing and entropy
# coding together make the file more than 100x smaller (`bench/results/quantization.md` reports the full-length
# run).
#
# ## What the library gave you
# `mp.quant_params`, `mp.quantize` / `mp.dequantize`, `mp.fake_quantize`, `mp.quantization.uniform.round_ste`,
# `mp.quantize_weights`, `mp.swap_fake_quant` / `mp.strip_fake_quant`, `mp.share_weights` /
# `mp.unshare_weights`, `mp.kmeans_1d`, `mp.centroid_gradients` / `mp.centroid_step`,
# `mp.quantization.huffman.encode` / `decode`, `mp.save_compressed` / `mp.load_compressed`, `mp.dynamic_int8`,
# `mp.static_int8` (`engine=`), `mp.prepare_qat_int8` / `mp.convert_qat_int8`, `mp.int8_weights`, `mp.save_int8` /
# `mp.load_int8`; under the hood of int8, `mp.fold_batchnorm`, `mp.activation_ranges`, `mp.integer_linear` /
# `mp.integer_conv2d` and `mp.fixed_point_multiplier`.
