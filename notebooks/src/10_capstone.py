# %% [markdown]
# # 10 · Capstone: prune, distill, quantize
#
# Production compression chains the techniques of this course: remove what matters least, let the dense
# model teach the survivor back to accuracy, then store and run it in fewer bits (Deep Compression,
# Han et al. 2016, is the classic chain). This notebook runs that chain on LeNet-5 and on the small ResNet,
# measures every stage the same way, and ends with one size-accuracy plot of every variant.
#
# **Learning objectives.** After this notebook you can
# 1. describe a compression pipeline as a small TOML recipe and read its validation errors;
# 2. run it with one call, `mp.run_pipeline`, and read the per-stage table (accuracy, parameters,
#    nonzeros, MACs, latency, bytes, compression ratio);
# 3. explain why structured pruning and int8 shrink *bytes and latency* while weight sparsity alone does not;
# 4. profile a model's latency layer by layer, explain with Amdahl's law why a speedup stops growing, and
#    report a speedup with its spread;
# 5. compare variants on a size-accuracy Pareto front and pick one for a budget.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINPRUNE_FAST", "0") == "1"
# Choose the methods here (or with papermill -p): prune "weight" | "structured" | "none";
# quantize "int8" | "dynamic-int8" | "fake" | "none".
PRUNE_METHOD = "structured"
SPARSITY = 0.5  # every layer; the recipe's [prune.layers] still sets the first fully connected layer's own value
DISTILL = False  # True: the dense model teaches (notebook 09); see section 2 for why the recipe says no
MAX_SHIFT = 2  # augmentation while fine-tuning: random shifts of up to 2 pixels
QUANTIZE = "int8"
EPOCHS = 2 if FAST else 10  # fine-tuning epochs
RESNET_EPOCHS = 1 if FAST else 3
REPEATS = 5 if FAST else 20  # latency rounds

# %%
import dataclasses
import warnings

import torch

import minprune as mp

# PyTorch's int8 API (torch.ao.quantization) announces its own deprecation in favour of torchao; notebook 08
# explains why the kit still uses it. We hide exactly those notices so the tables stay readable.
warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
mp.seed_everything(0)
splits = mp.load("mnist-small")

# %% [markdown]
# ## 1. A recipe
# A recipe names one choice per stage. The kit ships a few (`mp.shipped_recipes()`); `lenet5-capstone` removes
# half of the channels of every layer (L1 norm) and two thirds of the neurons of the first fully connected layer
# (`[prune.layers]` gives a layer its own value), fine-tunes the smaller model on randomly shifted images, and
# converts it to int8.

# %%
print(mp.shipped_recipes()["lenet5-capstone"].read_text())

# %% [markdown]
# Recipes are validated before anything runs, and every error names the key at fault:

# %%
# NBVAL_CHECK_OUTPUT
for bad in ({"prune": {"sparsty": 0.5}}, {"prune": {"sparsity": 1.0}},
            {"prune": {"method": "structured", "score": "l1", "sparsity": 0.95}}, {"finetune": {"epochs": "3"}},
            {"prune": {"method": "structured", "score": "l1", "scope": "local", "layers": {"classifier.5": 0.5}}}):
    try:
        mp.pipeline.recipe.from_dict(bad)
    except mp.RecipeError as exc:
        print(f"RecipeError: {exc}"[:150])

# %% [markdown]
# ## 2. The pipeline on LeNet-5
# We start from the recipe and apply this notebook's parameters. `mp.run_pipeline` returns every stage's
# model and one table; each row is compared with the dense float model (`x smaller` counts serialized bytes,
# `x faster` the batch-64 latency on one thread, measured in interleaved rounds).

# %%
config = mp.load_recipe("lenet5-capstone")  # a shipped recipe's name, or the path of your own
config.prune = dataclasses.replace(config.prune, method=PRUNE_METHOD, sparsity=SPARSITY,
                                   score="l1" if PRUNE_METHOD == "structured" else "magnitude",
                                   layers=config.prune.layers if PRUNE_METHOD == "structured" else {})
config.finetune = dataclasses.replace(config.finetune, epochs=EPOCHS, distill=DISTILL, max_shift=MAX_SHIFT)
config.quantize = dataclasses.replace(config.quantize, method=QUANTIZE)
config.measure = dataclasses.replace(config.measure, repeats=REPEATS)
config = mp.pipeline.recipe.validate(config)
lenet = mp.run_pipeline(config, splits)
lenet.table

# %% [markdown]
# Read the table top to bottom:
# - **pruned**: removing channels makes a genuinely smaller dense model; parameters, MACs, bytes and latency
#   all drop at once, but accuracy collapses until the network is retrained;
# - **fine-tuned**: ten epochs on shifted images bring the accuracy back (two in a FAST run); nothing else
#   changes. Why not distillation? Notebook 09 showed that a teacher must label the augmented images well,
#   and this dense LeNet-5 never saw a shifted digit: distilled without shifts, the student ends about half a
#   point lower (`bench/results/pipeline.md` has both variants; set `DISTILL = True` to try);
# - **int8**: the same weights in one byte each, with int8 kernels for the convolutions. The recipe says
#   `per_channel = false` (one weight scale per layer instead of one per output channel: as accurate here,
#   and a little faster) and `linear_weights_only = true`: the three small Linear layers keep their weights in
#   int8 but compute in float (`mp.quantization.int8_modules.Int8WeightLinear`), because at this size their int8 kernel calls cost
#   more than the float ones. The next section shows how to find that out.
#
# The course's targets for this pipeline are 10x fewer bytes, 2x lower batch-64 latency and at most 1 point of
# accuracy lost. The three pull in different directions, and each is set by a different layer:
# - **latency** by the first convolution and the pooling after it, the two layers that run on the full 28x28
#   image. The convolution costs about the same at any width (see "Where the time goes" below); the pooling
#   shrinks with the number of filters, but below 3 of 6 the accuracy goes;
# - **bytes** by the first fully connected layer, which holds most of the weights (200 x 40 of about 10,900
#   here): it is cut the hardest;
# - **accuracy** by the rest, kept at half width.
# Removing 60% of every layer instead is about as fast but loses more accuracy. The benchmark `bench/pipeline.py`
# measures each variant with 10 epochs of fine-tuning (its results are in `bench/results/pipeline.md`): the recipe
# loses 0.6 point and is 2.33x faster (median of 30 passes), 60% of every layer loses 1.0 point and is 2.54x faster.
# Over four fine-tuning seeds the recipe loses 0.45 point on average (worst 0.90).

# %% [markdown]
# ### Exercise 10.1 (10 min): compare a stage with the dense model
# Every row of the table carries `acc` (%), `KB` (serialized bytes / 1024), `zip KB` and `ms@b64`. Write
# `my_ratios(base, row)` that returns the four comparisons with the dense `base` row:
# `{"drop": ..., "x smaller": ..., "x smaller zip": ..., "x faster": ...}`, where the accuracy `drop` is in points
# (a stage more accurate than the dense model has a negative drop) and each `x` is a ratio that is bigger than 1
# when the stage is better than the dense model.

# %%
# Exercise 10.1 (10 min): accuracy drop and the size and speed ratios against the dense model
def my_ratios(base, row):
    """{'drop', 'x smaller', 'x smaller zip', 'x faster'} of the stage `row` against the dense `base` row."""
    ### BEGIN SOLUTION
    return {"drop": base["acc"] - row["acc"], "x smaller": base["KB"] / row["KB"],
            "x smaller zip": base["zip KB"] / row["zip KB"], "x faster": base["ms@b64"] / row["ms@b64"]}
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
dense_row = {"acc": 97.0, "KB": 240.0, "zip KB": 220.0, "ms@b64": 2.0}
half_row = {"acc": 96.5, "KB": 24.0, "zip KB": 11.0, "ms@b64": 1.0}  # drop 0.5, 10x, 20x, 2x faster
cases = [(dense_row, dense_row), (dense_row, half_row),
         *[(lenet.table.rows[0], row) for row in lenet.table.rows]]
mp.course.check_exercise("10.1", my_ratios, extra_cases=cases)

# %%
final = lenet.table.rows[-1]
print(f"LeNet-5: {final['x smaller']:.1f}x smaller, {final['x faster']:.1f}x faster (batch 64), "
      f"{final['drop']:+.1f} points accuracy drop")
assert final["x smaller"] > 3 and final["drop"] < (5 if FAST else 2)

# %% [markdown]
# ### Where the time goes
# MACs count arithmetic, not time. `mp.compare_layer_latency` times every layer of the dense and of the int8
# model with forward hooks. The int8 layers keep their float names: each convolution carries its ReLU (hence
# the blanks), and each Linear layer computed in float comes as `.0` with its ReLU as `.1`. The row
# `(outside layers)` is what runs between layers: quantizing the input, flattening, Python.

# %%
deployed = {"dense": lenet.models["dense"], "int8": mp.pipeline.report.as_deployed(list(lenet.models.values())[-1])}
layers = mp.compare_layer_latency(deployed, repeats=4 * REPEATS)
layers

# %% [markdown]
# Read it with Amdahl's law in mind: the speedup of the whole model is bounded by the layers that keep their
# time. Here that is the **first convolution** (`features.0`). Its input has a single channel, which leaves
# the kernels little to vectorise over, and its cost hardly depends on its width: timed alone at batch 64,
# the int8 `features.0` above has half the filters of the dense one and takes about as long. Pruning does not
# make it cheaper, and it is the largest share of the int8 model's time. Its neighbour, the first pooling (`features.2`),
# was the dense model's most expensive layer, and it does shrink: half the channels, one byte per value
# instead of four. The `(outside layers)` row (quantizing the input, Python) takes a larger share too. The
# Linear layers (`classifier.*`) cost a tenth of a millisecond or less. As full int8 layers they cost more than
# their float versions at this size, which is why the recipe computes them in float from int8 weights
# (`linear_weights_only = true`; rerun with `mp.static_int8(model, calibration, linear_weights_only=False)` and
# `mp.compare_layer_latency` to see it on your machine).
#
# A speedup measured once on a shared CPU is one draw: the machine's speed drifts over minutes, and the small
# int8 model feels it more. `mp.speedup_spread` repeats the interleaved measurement in passes and reports the
# median with the lowest and highest pass. Passes taken back to back share the machine's mood, so the
# benchmark (`bench/pipeline.py`) takes its passes with `mp.SpeedupSampler` between its training runs,
# spread over about fifteen minutes, and checks the 2x target against their median.

# %%
spread = mp.speedup_spread(deployed, splits.input_shape, passes=3 if FAST else 5, rounds=REPEATS)
spread

# %% [markdown]
# **Question 10.3 (5 min).** Take the `int8 ms` column above. Suppose every layer except `features.0` became
# free. How much faster than the dense model could the int8 model then be? Compare that ceiling with the
# median of the spread table. Which change to the *network* (not to the kernels) would raise the ceiling, and
# what would it cost? The next cell computes the ceiling.
#
# *Your answer:* ...

# %%
dense_ms = sum(row["dense ms"] for row in layers.rows if row["dense ms"] != "")  # blank: not a dense layer
first_conv_ms = next(row["int8 ms"] for row in layers.rows if row["layer"] == "features.0")
print(f"dense {dense_ms:.2f} ms per batch; the int8 features.0 alone {first_conv_ms:.2f} ms: at most "
      f"{dense_ms / first_conv_ms:.1f}x faster; measured (median of passes) {spread.rows[-1]['x faster']:.2f}x")

# %% [markdown]
# ## 3. Weight pruning instead, for comparison
# Pruning 90% of the individual weights keeps every layer's shape. The zeros compress in a zip file, but
# the state_dict still stores them, and dense kernels multiply them anyway: bytes and latency barely move.

# %%
weight_config = mp.pipeline.recipe.from_dict({
    "name": "lenet5-weight", "base": {"arch": "lenet5"},
    "prune": {"method": "weight", "score": "magnitude", "sparsity": 0.9, "scope": "global"},
    "finetune": {"epochs": EPOCHS, "distill": DISTILL, "alpha": 0.5}, "quantize": {"method": "dynamic-int8"},
    "measure": {"repeats": REPEATS}})
lenet_weight = mp.run_pipeline(weight_config, splits)
lenet_weight.table

# %% [markdown]
# ## 4. The small ResNet
# In a residual network the channels on both sides of an addition are tied, so structured pruning removes
# them together (notebook 06); static int8 handles the additions too.

# %%
resnet_config = mp.load_recipe("resnet-structured")
resnet_config.finetune = dataclasses.replace(resnet_config.finetune, epochs=RESNET_EPOCHS)
resnet_config.quantize = dataclasses.replace(resnet_config.quantize, method="int8")
resnet_config.measure = dataclasses.replace(resnet_config.measure, repeats=REPEATS)
resnet = mp.run_pipeline(mp.pipeline.recipe.validate(resnet_config), splits)
resnet.table

# %%
assert resnet.table.rows[-1]["x smaller"] > 2 and resnet.table.rows[-1]["MACs"] < resnet.table.rows[0]["MACs"]

# %% [markdown]
# ## 5. Every variant on one size-accuracy plot
# A variant is on the **Pareto front** when no other variant beats it: none is at least as good in both size and
# accuracy (as small or smaller, as accurate or more) and strictly better in one. Identical variants do not beat
# each other, so they are on the front together or off it together: here the dense LeNet-5 appears twice, once
# for each pipeline. Everything off the front is a bad deal. The LeNet-300-100 baseline of notebook 01 joins as
# well.

# %%
rows = []
for label, result in (("LeNet-5 structured", lenet), ("LeNet-5 weights", lenet_weight), ("ResNet", resnet)):
    for row in result.table.rows:
        if row["stage"].startswith("pruned"):
            continue  # before retraining: not a model anyone would ship
        rows.append({"variant": f"{label}: {row['stage']}", "KB": row["KB"], "acc": row["acc"]})
for arch in ("lenet300",):
    model = mp.pretrained(arch, progress=False)
    rows.append({"variant": f"{arch} dense", "KB": mp.size_on_disk(model)["bytes"] / 1024,
                 "acc": mp.accuracy(model, splits.loader("test", 500))})
front = mp.pareto_front([(r["KB"], r["acc"]) for r in rows])
# the plot labels each point with its row number in the table (the names would overlap); identical points share
# one marker and one label
numbers = {}
for i, r in enumerate(rows):
    numbers.setdefault((r["KB"], r["acc"]), []).append(str(i))
fig = mp.plot_pareto([{"KB": kb, "acc": acc, "#": ", ".join(ks)} for (kb, acc), ks in numbers.items()], label="#")
fig.axes[0].set_title("every variant, by its row in the table below")
fig.axes[0].legend(loc="upper left")  # the lower right corner holds a point
mp.Table([{"#": i, **rows[i], "on the front": i in front} for i in range(len(rows))])

# %% [markdown]
# ### Exercise 10.2 (15 min): the Pareto front
# A point `(size, accuracy)` is on the front when no other point beats it: none is as small or smaller **and**
# as accurate or more, and strictly better in one of the two. So a point of the same size and higher accuracy
# beats it, and so does a point of the same accuracy and smaller size; an identical point does not (a copy of a
# point on the front is on the front too). Write `my_pareto_front(points)` that returns the indices of the points
# on the front, sorted by size (copies of one point in the order given). One way: walk the points from the
# smallest to the biggest (same size: the more accurate first) and keep a point when it is more accurate than
# every point kept before it, or identical to the last one kept. By hand: `[(10, 90), (5, 95), (20, 96)]` gives
# `[1, 2]` (the 10-KB point is both bigger and less accurate than the 5-KB one), and `[(5, 90), (8, 90), (5, 90)]`
# gives `[0, 2]`.

# %%
# Exercise 10.2 (15 min): indices of the undominated (size, accuracy) points, sorted by size
def my_pareto_front(points):
    """Indices of the (size, accuracy) points that no other point beats, sorted by size."""
    ### BEGIN SOLUTION
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best or (front and tuple(points[i]) == tuple(points[front[-1]])):
            front.append(i)
            best = points[i][1]
    return front
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
sizes, accs = torch.rand(12, generator=g) * 100, torch.rand(12, generator=g) * 10 + 90
random_points = [(float(s), float(a)) for s, a in zip(sizes, accs)]
cases = [([(10, 90), (5, 95), (20, 96)],), ([(5, 90), (8, 90), (5, 90)],), ([(5, 90), (5, 92), (8, 92)],),
         ([(r["KB"], r["acc"]) for r in rows],), (random_points,)]
mp.course.check_exercise("10.2", my_pareto_front, extra_cases=cases)

# %% [markdown]
# ## 6. The same pipeline from the command line
# `python -m minprune run lenet5-capstone --out runs/lenet5` runs the shipped recipe (or your own TOML file) and
# writes `report.md`, `results.json`, `pareto.png` and `history.png`. `python -m minprune demo` runs the baselines
# and a LeNet-5 pipeline in a few minutes; `python -m minprune --help` lists the commands.

# %%
from minprune.__main__ import build_parser

build_parser().print_help()

# %% [markdown]
# ## What the library gave you
# - `mp.load_recipe(path or name)`, `mp.shipped_recipes()`, `mp.pipeline.recipe.from_dict(values)`, `mp.PipelineConfig`, `mp.RecipeError`: recipes;
# - `mp.run_pipeline(config, splits)` -> `PipelineResult` (`.models`, `.table`, `.history`);
# - `mp.measure_stages(models, loader)`: the per-stage table for any models you built yourself;
# - `mp.compare_layer_latency(models)` / `mp.layer_latency(model)`: where the time goes, layer by layer;
# - `mp.speedup_spread(models, input_shape)`: a speedup with its spread over passes (`mp.SpeedupSampler`
#   spreads them over time);
# - `mp.static_int8(model, calibration, linear_weights_only=True)` (recipe: `quantize.linear_weights_only`):
#   int8 convolutions, and Linear layers that compute in float from int8 weights;
# - `mp.pareto_front(points)`, `mp.plot_pareto(rows)`: pick the variants worth shipping;
# - `python -m minprune demo | run RECIPE | --help`.
