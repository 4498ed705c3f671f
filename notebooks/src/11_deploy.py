# %% [markdown]
# # 11 · Deployment and energy: out of PyTorch, into ONNX Runtime
#
# **Learning objectives.** After this notebook you can
# 1. export a dense, a pruned (masked) and a compacted model to ONNX with `mp.export_onnx` and check that
#    ONNX Runtime computes the same function as PyTorch;
# 2. quantize an ONNX model to int8 (static, with calibration data) and measure what it costs in accuracy;
# 3. estimate the energy of one inference from MACs and bytes moved, and see why memory, not arithmetic,
#    dominates it (the point of Deep Compression);
# 4. put file size, latency (batch 1 and 64, PyTorch eager and ONNX Runtime), accuracy and energy in one table,
#    and say what a phone or a microcontroller would gain from each kind of pruning.
#
# Time: about 60 minutes.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
FINETUNE_EPOCHS = 2 if FAST else 6  # fine-tuning after pruning
ROUNDS = 5 if FAST else 20  # interleaved timing rounds
THREADS = 1  # one CPU thread for PyTorch and ONNX Runtime alike: a fair, repeatable comparison

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import display
from matplotlib.ticker import NullFormatter
from torch import nn

import minprune as mp
from minprune import (
    EnergyOptions,
    copy_model,
    energy_table,
    estimate_energy,
    int8_weights_onnx,
    magnitude_scores,
    prune,
    prune_channels,
)

mp.seed_everything(0)
device = "cpu"  # deployment targets here are CPUs
data = mp.load("mnist-small")
train_loader, test_loader = data.loader("train", 64), data.loader("test", 500)

# %% [markdown]
# ## Four versions of LeNet-5
# The capstone compressed LeNet-5 in several ways. We rebuild three of them here with the library calls from
# earlier notebooks, then quantize the last one:
# - **dense**: the trained baseline;
# - **pruned**: 90% of the weights set to zero by global magnitude pruning, then fine-tuned (notebook 03).
#   The zeros are still stored and still multiplied: the model has the same shape;
# - **compacted**: half of the channels and neurons of every layer physically removed, then fine-tuned
#   (notebook 06). A genuinely smaller network;
# - **compacted int8**: the compacted model with int8 weights and activations (notebook 08), done by ONNX Runtime;
#   and two variants of it: only the Linear layers in int8 (**int8-fc**), and int8 *weights* with float arithmetic
#   (**int8 weights**).

# %%
dense = mp.pretrained("lenet5").eval()

mp.seed_everything(0)
pruned = copy_model(dense)
prune(pruned, magnitude_scores(pruned), 0.9, scope="global")
mp.fit(pruned, train_loader, mp.TrainConfig(epochs=max(1, FINETUNE_EPOCHS // 2), lr=1e-3), progress=False)

mp.seed_everything(0)
compacted = prune_channels(dense, 0.5)
mp.fit(compacted, train_loader, mp.TrainConfig(epochs=FINETUNE_EPOCHS, lr=1e-3), progress=False)
models = {"dense": dense, "pruned": pruned.eval(), "compacted": compacted.eval()}

# %%
# NBVAL_CHECK_OUTPUT
for name, model in models.items():
    print(f"{name:10s} parameters {mp.count_params(model):6,}  nonzeros {mp.count_nonzeros(model):6,}  "
          f"MACs {mp.count_macs(model):7,}")

# %% [markdown]
# ## Export to ONNX
# ONNX is a file format for computation graphs that many runtimes read: ONNX Runtime on servers, phones and
# browsers, TensorRT, OpenVINO, and converters for microcontroller toolchains. `mp.export_onnx` calls
# `torch.onnx.export(model, ..., dynamo=True)`, which traces the model with `torch.export` into a graph of ATen
# operations and translates each into ONNX. The batch dimension is kept **dynamic**, so one file serves batch 1
# and batch 64 (our models' input-shape check only looks at the per-example shape, so it traces fine).
#
# Then it **checks** the file: ONNX Runtime and PyTorch run the same random batch and the largest difference
# between their logits must stay below `FLOAT_ATOL` = 1e-4. Float arithmetic in a different order gives
# differences around 1e-7, so anything near the tolerance means a real bug.

# %%
exported = {name: mp.export_onnx(model, threads=THREADS) for name, model in models.items()}

# %%
# NBVAL_CHECK_OUTPUT
for name, result in exported.items():
    ok = result.max_abs_diff <= mp.deploy.export.FLOAT_ATOL
    print(f"{name:10s} matches PyTorch within 1e-4: {ok}   notes: {result.notes}")

# %% [markdown]
# The pruned model carries masks: a `weight_orig` parameter, a `weight_mask` buffer and a forward pre-hook
# (notebook 03). None of that machinery belongs in a deployed file, so the export works on a **copy** whose
# masks are made permanent (the note above says so), and your `pruned` model keeps its masks.
#
# What is inside the file? A list of nodes; the dense float graph is short:

# %%
# NBVAL_CHECK_OUTPUT
print([node.op_type for node in exported["dense"].proto.graph.node])
print("initializers:", [t.name for t in exported["pruned"].proto.graph.initializer])

# %% [markdown]
# ## int8 in ONNX Runtime
# `mp.quantize_onnx` uses `onnxruntime.quantization`. Weights become int8 (one scale per output channel).
# Activations need a range too: **dynamic** quantization measures it on every batch at run time (good for MLPs,
# whose cost is the weight matrices), **static** quantization measures it once on **calibration data** and
# stores it in the file (needed for CNNs, whose cost is the activations). Static quantization without calibration
# data is an error:

# %%
try:
    mp.quantize_onnx(exported["compacted"].proto)
except ValueError as err:
    print("ValueError:", err)

# %%
calibration, _ = data.sample(256, "train")
int8 = mp.quantize_onnx(exported["compacted"].proto, calibration)
int8_fc = mp.quantize_onnx(exported["compacted"].proto, calibration, op_types=["Gemm"])  # only the Linear layers
int8_weights = int8_weights_onnx(exported["compacted"].proto)  # int8 weights, float arithmetic
for name, proto in {"int8": int8, "int8-fc": int8_fc, "int8 weights": int8_weights}.items():
    print(f"{name:>12}: {sorted({node.op_type for node in proto.graph.node})}")

# %% [markdown]
# The float input is quantized once (`QuantizeLinear`), every layer then runs an integer kernel (`QLinearConv`,
# `QGemm`: uint8 activations times int8 weights, accumulated in int32 and requantized with the stored scales), and
# the logits are dequantized at the end (`DequantizeLinear`). Max pooling works on the integers directly.
# The second model (`op_types=["Gemm"]`) quantizes only the fully connected layers, which hold almost all of the
# weights, and keeps the convolutions, which do most of the arithmetic, in float (the energy table below counts
# both per layer).
#
# The third, `int8_weights_onnx`, stores every weight as int8 with one scale per output channel and puts a
# `DequantizeLinear` in front of it; nothing else changes. ONNX Runtime dequantizes those constants once, when the
# session is created, and then runs exactly the float kernels: weights stored in a quarter of the bytes, at float
# speed. Why would you want that rather than real int8 arithmetic? Because on a CPU without dot-product
# instructions for int8 (VNNI on x86, `sdot` on ARM) ONNX Runtime's int8 convolutions can be slower than its float
# ones, and quantizing breaks the fused float conv-ReLU-pool chain: the table below measures it on this machine.
# Where int8 kernels are fast, the full int8 model is the better choice; measure on the target.
#
# ## An energy model you can read
# Latency on a laptop says little about a battery. Energy per inference can be **estimated** by counting what
# the hardware does and multiplying by the energy of each operation. Horowitz (ISSCC 2014, 45 nm) measured:
#
# | operation | energy |
# |---|---|
# | 32-bit float multiply + add | 3.7 + 0.9 pJ |
# | 8-bit int multiply + add | 0.2 + 0.03 pJ |
# | 32-bit read, 8 KB on-chip SRAM | 5 pJ |
# | 32-bit read, off-chip DRAM | 640 pJ |
#
# The library's estimate uses exactly these costs, in picojoules:

# %%
print(mp.energy.HOROWITZ_45NM)

# %% [markdown]
# Assumptions of `mp.estimate_energy` (each is a field of `mp.EnergyOptions` you can change):
# only Linear and Conv layers cost energy (BatchNorm is folded, ReLU and pooling are fused); one example
# (batch 1), so every weight is fetched once per inference from **DRAM**; activations stay in on-chip **SRAM**;
# a value takes 4 bytes (fp32) or 1 byte (int8); dense hardware fetches and multiplies the zeros too.
#
# ### Exercise 11.1 (10 min): the energy of one Linear layer
# Write `my_linear_energy(layer, input_shape)`, the estimate in microjoules for one fp32 inference of a single
# `nn.Linear` layer. `input_shape` is the shape of one example: `(in,)` for an MLP, or `(tokens, in)` for a layer
# that runs on every token of a sequence (its weights are fetched once, but every token is multiplied by them).
# Count the MACs, the weight and bias values (a layer built with `bias=False` has `layer.bias = None`), and the
# activations the layer reads and writes. By hand: `nn.Linear(2, 3)` on an example of shape `(4, 2)` does
# 4 x 2 x 3 = 24 MACs, fetches 6 + 3 = 9 weight values and moves 4 x (2 + 3) = 20 activation values.

# %%
# BUILD IT YOURSELF
# Exercise 11.1 (10 min): MACs + weights from DRAM + activations in SRAM, for one Linear layer
def my_linear_energy(layer, input_shape):
    """Energy (uJ) of one fp32 inference of a Linear layer on one example of shape `input_shape`."""
    ### BEGIN SOLUTION
    n_out, n_in = layer.weight.shape  # (out, in)
    tokens = 1
    for size in input_shape[:-1]:  # the layer runs on every token
        tokens *= size
    macs = tokens * n_in * n_out
    weight_values = layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
    activation_values = tokens * (n_in + n_out)  # read the input, write the output
    picojoules = macs * (3.7 + 0.9) + weight_values * 640 + activation_values * 5  # pJ per 32-bit value
    return picojoules / 1e6
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
cases = [(nn.Linear(784, 300), (784,)), (nn.Linear(2, 3), (4, 2))]
mp.course.check_exercise("11.1", my_linear_energy, extra_cases=cases)

# %% [markdown]
# Now per layer of the dense LeNet-5. Look at the ratio of the `weights` and `compute` columns. `bits` is the
# precision of each layer: every layer has its own, so a mixed model (int8-fc: float convolutions, int8 Linear
# layers) is counted layer by layer, and `weight_bits` counts int8 weights computed in float.

# %%
# NBVAL_CHECK_OUTPUT
print(energy_table(dense))
e = estimate_energy(dense)
print(f"total {e['total_uj']:.1f} uJ, of which fetching weights from DRAM: {e['weights_uj'] / e['total_uj']:.0%}")
print(f"{e['weight_bytes'] / 1e3:.0f} KB of weights fetched cost {e['weights_uj'] / e['compute_uj']:.0f}x "
      f"the {e['macs']:,} MACs")

# %% [markdown]
# Fetching 247 KB of weights from DRAM costs about twenty times more than all 416,520 multiply-accumulates
# (the last line above).
# This is the observation behind Deep Compression (Han et al. 2016): make the model small enough to stay
# on chip and its energy falls by an order of magnitude, more than any saving in arithmetic could give.

# %%
# NBVAL_CHECK_OUTPUT
for where in ("dram", "sram"):
    fp32 = estimate_energy(dense, options=EnergyOptions(weights=where))
    q8 = estimate_energy(dense, options=EnergyOptions(bits=8, weights=where))
    fc8 = estimate_energy(dense, options=EnergyOptions(bits={"classifier.1": 8, "classifier.3": 8, "classifier.5": 8},
                                                       weights=where))
    w8 = estimate_energy(dense, options=EnergyOptions(weight_bits=8, weights=where))
    print(f"weights in {where}: fp32 {fp32['total_uj']:6.2f} uJ, int8 {q8['total_uj']:6.2f} uJ, "
          f"int8 Linear only {fc8['total_uj']:6.2f} uJ, int8 weights + fp32 math {w8['total_uj']:6.2f} uJ")

# %% [markdown]
# ## Everything in one table
# Each model runs in PyTorch eager and in ONNX Runtime, on one thread. `mp.interleaved_latency` times the
# runners in alternating rounds so that a busy CPU slows all of them alike; compare ratios, not absolute times.
# `bytes` is the `torch.save` state_dict for PyTorch and the ONNX file for ONNX Runtime. PyTorch runs what you
# would ship, `mp.deployable_copy(model)`: for the pruned model that is the copy with its masks made permanent
# (a masked model stores `weight_orig` *and* `weight_mask`, twice the bytes).

# %%
shipped = {name: mp.deployable_copy(model)[0] for name, model in models.items()}
protos = {name: result.proto for name, result in exported.items()} | {
    "compacted int8": int8, "compacted int8-fc": int8_fc, "compacted int8 weights": int8_weights}
FC = {"classifier.1": 8, "classifier.3": 8, "classifier.5": 8}
precision = {"compacted int8": EnergyOptions(bits=8), "compacted int8-fc": EnergyOptions(bits=FC),  # for the energy model
             "compacted int8 weights": EnergyOptions(weight_bits=8)}
sessions = {name: mp.deploy.export.session(proto, threads=THREADS) for name, proto in protos.items()}
runners = {f"pytorch/{n}": m for n, m in shipped.items()} | {f"onnxruntime/{n}": s for n, s in sessions.items()}
ms = {b: mp.interleaved_latency(runners, data.input_shape, batch_size=b, threads=THREADS, rounds=ROUNDS)
      for b in (1, 64)}

rows = []
for key, runner in runners.items():
    runtime, variant = key.split("/")
    model = shipped[variant.split()[0]]
    on_ort = runtime == "onnxruntime"
    rows.append({"variant": variant, "runtime": runtime,
                 "bytes": protos[variant].ByteSize() if on_ort else mp.size_on_disk(model)["bytes"],
                 "acc": mp.deploy.export.onnx_accuracy(runner, test_loader) if on_ort else mp.evaluate(model, test_loader)["acc"],
                 "latency_b1_ms": ms[1][key], "latency_b64_ms": ms[64][key],
                 "energy_uj": estimate_energy(model, options=precision.get(variant, EnergyOptions()))["total_uj"]})
base = rows[0]
for row in rows:
    row["x smaller"] = base["bytes"] / row["bytes"]
    row["x faster b64"] = base["latency_b64_ms"] / row["latency_b64_ms"]
table = mp.Table(rows, title=f"LeNet-5 on mnist-small, {THREADS} thread; energy: Horowitz 45 nm, batch 1")
table

# %% [markdown]
# That table is a short run on a shared CPU. The full-length run is `bench/deploy.py` (25 interleaved rounds,
# longer fine-tuning); its latest results, with the goals set for the int8 variants (>= 4x faster at
# batch 64 than dense PyTorch, >= 10x smaller, <= 1 point accuracy drop), are in the kit's repository (an
# installed package, as on Colab, has no `bench/` folder: read `bench/results/deploy.md` online then):

# %%
bench_file = Path("..") / "bench" / "results" / "deploy.json"  # notebooks/ and bench/ sit side by side
if bench_file.exists():
    bench = json.loads(bench_file.read_text())
    print(bench["setup"].get("cpu_flags", ""))
    bench_rows = [{k: r[k] for k in ("variant", "runtime", "bytes", "acc", "latency_b1_ms", "latency_b64_ms",
                                     "energy_uj")} for r in bench["rows"]]
    display(mp.Table(bench_rows, title="bench/deploy.py: LeNet-5, 1 thread"))
    display(mp.Table([{"variant": k, **{n: v for n, v in t.items() if n != "met"}, **t["met"]}
                      for k, t in bench["targets"].items() if isinstance(t, dict)], title="goals"))
else:
    print(f"{bench_file} is not here: this is not a checkout of the kit's repository")

# %%
fig, ax = plt.subplots(figsize=(8, 4))
markers = iter("osD^vP*")
for row in rows:
    if row["runtime"] == "onnxruntime":  # variants close together: a legend, not labels that would overlap
        ax.scatter(row["energy_uj"], row["acc"], s=50, marker=next(markers), label=row["variant"], alpha=0.8)
sparse_hw = estimate_energy(pruned, options=EnergyOptions(sparse=True))["total_uj"]
ax.scatter(sparse_hw, rows[1]["acc"], marker="x", color="k", s=50, label="pruned on sparse hardware")
ax.set_xscale("log")
ax.set_xticks([2, 5, 10, 20, 50], labels=["2", "5", "10", "20", "50"])  # plain labels, none on the minor ticks
ax.xaxis.set_minor_formatter(NullFormatter())
ax.set_xlabel("estimated energy per inference (uJ, log scale)")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Energy against accuracy")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
on_ort = {row["variant"]: row for row in rows if row["runtime"] == "onnxruntime"}
compact, compact8 = on_ort["compacted"], on_ort["compacted int8"]
print(f"compacted int8 against compacted float (ONNX Runtime): file {compact['bytes'] / compact8['bytes']:.1f}x "
      f"smaller, energy {compact['energy_uj'] / compact8['energy_uj']:.1f}x lower")

# %% [markdown]
# ## What runs well where
# **Phones** have a few GB of DRAM, caches of a few MB, and run ONNX Runtime, TFLite or Core ML. All four models
# fit easily; what matters is battery and latency. The compacted model is a plain, smaller dense network:
# every runtime runs it faster with no special support, and its fewer bytes mean fewer DRAM fetches.
# int8 shrinks the file about 3x (the weights take a quarter of the bytes; the graph, the biases and the scales
# do not shrink) and cuts the energy estimate about 4x (a quarter of the bytes fetched and twenty times cheaper
# MACs), as printed under the plot; but whether int8 is also *faster* depends on the CPU: int8 kernels shine with dot-product instructions
# (ARM `sdot`, x86 VNNI); on a CPU without them, and for layers this small, the quantize/dequantize steps can eat
# the gain. Measure on the target, as the tables above do for this machine: here the int8 convolutions are
# slower than ONNX Runtime's float ones. Quantizing only the Linear layers (`int8-fc`) keeps most of the size
# savings, and int8 *weights* with float arithmetic keep all of them at float speed: the file is what crosses
# the network and sits in flash, the arithmetic is what the CPU is good at. The energy column counts each layer
# at its own precision: int8-fc pays fp32 for its convolutions, int8 weights pay fp32 for every MAC but fetch
# one byte per weight, which is most of the saving since fetching weights dominates.
#
# **Microcontrollers** (e.g. a Cortex-M4 with 256 KB of SRAM and 1 MB of flash) have no DRAM and no float
# unit worth using. The dense fp32 LeNet-5 (247 KB of weights) does not fit next to its activations in SRAM;
# the compacted int8 model (15,738 weights, one byte each) does, with room to spare. There, int8 and physical compaction are not
# optimisations but the condition for running at all (TinyML frameworks such as TFLite Micro are int8-only).
#
# **Unstructured sparsity** (the pruned row) changes neither the file format nor the runtime's kernels: ONNX
# Runtime multiplies the zeros like any other number, so its latency and file size match the dense model's
# (zip compression would find the zeros; the runtime does not). The gain appears only where the storage and the
# hardware exploit it: a sparse format that fetches only nonzeros plus their indices, and a processor that skips
# zero products (EIE, sparse tensor cores with 2:4 patterns, notebook 07). The cross in the plot is that
# hypothetical sparse-hardware estimate. Structured pruning gets its savings everywhere, today.

# %%
# Claims of this notebook, checked (tolerances allow for the shorter fine-tuning in FAST mode).
by = {(r["variant"], r["runtime"]): r for r in rows}
assert all(result.max_abs_diff <= 1e-4 for result in exported.values())
assert by["dense", "onnxruntime"]["acc"] == by["dense", "pytorch"]["acc"]
assert by["compacted int8", "onnxruntime"]["bytes"] * 10 < by["dense", "pytorch"]["bytes"]
assert by["compacted int8", "onnxruntime"]["acc"] > by["dense", "pytorch"]["acc"] - 2.5
assert by["compacted int8", "onnxruntime"]["energy_uj"] * 10 < by["dense", "pytorch"]["energy_uj"]
weights8 = by["compacted int8 weights", "onnxruntime"]
assert weights8["bytes"] * 10 < by["dense", "pytorch"]["bytes"]
assert weights8["acc"] > by["dense", "pytorch"]["acc"] - 2.5
assert weights8["energy_uj"] < by["compacted", "onnxruntime"]["energy_uj"] / 2
print("all checks passed")

# %% [markdown]
# ## What the library gave you
# - `mp.export_onnx(model, path)`: export (masks made permanent on a copy), check against PyTorch, atomic write;
# - `mp.quantize_onnx(proto, calibration)`: int8 with ONNX Runtime, dynamic for MLPs, static for CNNs;
# - `mp.int8_weights_onnx(proto)`: int8 weights in the file, float arithmetic at run time;
# - `mp.deploy.export.session`, `mp.deploy.export.onnx_accuracy`, `mp.interleaved_latency`: run and measure in ONNX Runtime;
# - `mp.estimate_energy(model, options=mp.EnergyOptions(bits=, weight_bits=, sparse=, weights=))` and
#   `energy_table(model)`: energy per inference, each layer at its own precision;
# - on the command line: `python -m minprune export MODEL_FILE --format onnx --int8`.
