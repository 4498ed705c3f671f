# %% [markdown]
# # 08 · Quantization: from a grid of integers to int8 PyTorch and Deep Compression
#
# **Learning objectives.** After this notebook you can
# 1. say what a quantized number is (scale, zero point, bits) and why 0 must be exactly on the grid, and compute
#    it yourself (Exercises 8.1-8.3);
# 2. measure how accuracy falls with the bit width, and why per-channel scales beat one scale per tensor;
# 3. train through rounding with a straight-through estimator (quantization-aware training, QAT);
# 4. share weights with k-means and fine-tune the centroids (Han et al. 2016);
# 5. make a real int8 model with PyTorch, and check that it is really int8, smaller and faster;
# 6. run the Deep Compression pipeline (prune, share, Huffman-code) and read the real bytes of each stage.
#
# Time: about 90 minutes (30 of them for the exercises).

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"  # CI sets MINPRUNE_FAST=1; in class leave it off
QAT_EPOCHS = 1 if FAST else 3
DC_EPOCHS = 1 if FAST else 3  # fine-tuning epochs per Deep Compression step

# %%
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
# ## 6. Deep Compression on LeNet-300-100: prune, share, Huffman-code
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
# `mp.unshare_weights`, `mp.kmeans_1d`, `mp.quantization.huffman.encode` / `decode`, `mp.save_compressed` /
# `mp.load_compressed`, `mp.dynamic_int8`, `mp.static_int8` (`engine=`), `mp.prepare_qat_int8` /
# `mp.convert_qat_int8`, `mp.int8_weights`, `mp.save_int8` / `mp.load_int8`.
