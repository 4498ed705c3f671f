"""The bad-input table of docs/errors.md, row by row.

Every row of the table in docs/errors.md has an id; `CASES` below holds, for each id, the bad call and what it
must leave untouched (a model, a dict of tensors, a file, or a tuple of those). The test reads the expected
error type and the message fragments from the doc itself, so the doc and the library cannot drift apart:
a row without a case, or a case without a row, fails `test_every_row_has_a_case`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import checkpoint
from minprune.attention_blocks import SelfAttention
from minprune.files import seal
from minprune.quantization import huffman
from minprune.quantization import uniform as quantize
from minprune.structured import channel_rules
from minprune.transformers import depth, width
from minprune.unstructured import sparse_storage

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
CELL = r"(?:\\\||[^|])*"  # a table cell: anything but an unescaped |
ROW = re.compile(r"^\|\s*`(?P<id>[a-z0-9-]+)`\s*\|(?P<fn>[^|]*)\|(?P<bad>[^|]*)\|\s*`?(?P<error>\w+)`?\s*\|"
                 rf"(?P<message>{CELL})\|(?:(?P<todo>{CELL})\|)?\s*$")
ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError,
          "RuntimeError": RuntimeError, "FloatingPointError": FloatingPointError,
          "CheckpointError": mp.CheckpointError, "DependencyError": mp.DependencyError,
          "RecipeError": mp.RecipeError, "ExportError": mp.ExportError}


def doc_rows() -> dict[str, dict]:
    """{id: {"error": name, "fragments": [...], "todo": text or None}} from the table rows of docs/errors.md
    (the structured-pruning tables have a sixth column, what to do)."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            fragments = re.findall(r"`([^`]+)`", m["message"].replace("\\|", "|"))
            assert m["id"] not in rows, f"duplicate row id {m['id']} in {DOC.name}"
            todo = m["todo"].strip() if m["todo"] is not None else None
            rows[m["id"]] = {"error": m["error"], "fragments": fragments, "todo": todo}
    return rows


# ---- small inputs ----------------------------------------------------------------------------------------

def lenet300():
    return mp.build("lenet300")


def lenet5():
    return mp.build("lenet5")


def vgg():
    return mp.build("vgg", widths=[4, 8])


def resnet():
    return mp.build("resnet", widths=[4, 8], blocks=[1, 1])


def loader(n: int = 8, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=4)


def empty_loader():
    return DataLoader(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), batch_size=4)


class NoLayers(nn.Module):
    """A model with no Linear or Conv2d layer at all (and so nothing to prune)."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return (x.flatten(1)[:, :10] * self.scale).relu()


class Shuffler(nn.Module):
    """A CNN whose channels pass through a layer type with no channel rule (nn.PixelShuffle mixes them)."""

    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.conv2 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv2(self.shuffle(self.conv1(x))).mean((2, 3)))


def with_nan(model, name="layers.1.weight", value=float("nan")):
    with torch.no_grad():
        model.get_submodule(name.rpartition(".")[0]).weight[0, 0] = value
    return model


def scores_of(model):
    return mp.magnitude_scores(model)


def saved(tmp_path, model=None) -> Path:
    return mp.save_model(tmp_path / "model.pt", model if model is not None else lenet300())


# ---- the cases: id -> (bad call, what must stay unchanged) -----------------------------------------------

CASES = {}


def case(row_id):
    def register(fn):
        assert row_id not in CASES, row_id
        CASES[row_id] = fn
        return fn
    return register


# data, models, train
@case("data-name")
def _(tmp):
    return lambda: mp.load("imagenet"), None


@case("data-val-size")
def _(tmp):
    return lambda: mp.load("mnist-small", val_size=-5), None


@case("data-val-too-big")
def _(tmp):
    return lambda: mp.load("mnist-small", val_size=4500), None


@case("data-split")
def _(tmp):
    splits = mp.load("mnist-small")
    return lambda: splits.loader("validation"), None


@case("data-batch-size")
def _(tmp):
    splits = mp.load("mnist-small")
    return lambda: splits.loader("train", batch_size=0), None


@case("data-offline")
def _(tmp):
    return lambda: mp.load("cifar10", root=tmp / "nothing-here"), tmp


@case("data-corrupt-file")
def _(tmp):
    bad = tmp / "mnist_small.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    return lambda: mp.data.read_mnist_small(bad), bad


@case("build-arch")
def _(tmp):
    return lambda: mp.build("alexnet"), None


@case("build-kwargs")
def _(tmp):
    return lambda: mp.build("lenet5", depth=3), None


@case("build-sizes")
def _(tmp):
    return lambda: mp.build("lenet5", hidden=[8]), None


@case("forward-shape")
def _(tmp):
    model = lenet5()
    return lambda: model(torch.zeros(2, 3, 32, 32)), model


@case("forward-type")
def _(tmp):
    model = lenet5()
    return lambda: model([[0.0] * 784]), model


@case("seed")
def _(tmp):
    return lambda: mp.seed_everything(-1), None


@case("fit-epochs")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs="2"), progress=False), model


@case("fit-optimizer")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1, optimizer="rmsprop"), progress=False), model


@case("fit-nan-weights")
def _(tmp):
    model = with_nan(lenet300())
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1), progress=False), model


@case("fit-shape")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(shape=(3, 32, 32)), mp.TrainConfig(epochs=1), progress=False), model


@case("fit-lr")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1, lr=-1.0), progress=False), model


@case("evaluate-loader-none")
def _(tmp):
    model = lenet300()
    model.eval()
    return lambda: mp.evaluate(model, None), model


@case("evaluate-empty")
def _(tmp):
    model = lenet300()
    return lambda: mp.evaluate(model, empty_loader()), model


@case("accuracy-shape")
def _(tmp):
    model = lenet5()
    return lambda: mp.accuracy(model, loader(shape=(1, 32, 32))), model


# devices: each call runs as on a machine without CUDA, with MINPRUNE_DEVICE set for the call only
def _without_cuda(call, env: str | None = None):
    import os
    from unittest import mock

    def run():
        values = {} if env is None else {mp.devices.ENV: env}
        with mock.patch.dict(os.environ, values), mock.patch.object(torch.cuda, "is_available", lambda: False):
            return call()
    return run


@case("device-env-unknown")
def _(tmp):
    return _without_cuda(mp.device, env="banana"), None


@case("device-env-no-cuda")
def _(tmp):
    model = lenet300()
    return _without_cuda(lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1), progress=False), env="cuda"), model


@case("device-arg-unknown")
def _(tmp):
    model = lenet300()
    return _without_cuda(lambda: mp.evaluate(model, loader(), device="banana")), model


@case("device-arg-no-cuda")
def _(tmp):
    model = lenet300()
    return _without_cuda(lambda: mp.taylor_scores(model, loader(), device="cuda")), model


@case("device-int8-gpu")
def _(tmp):
    model = lenet300()
    int8 = mp.dynamic_int8(model)
    return lambda: mp.evaluate(int8, loader(), device="cuda"), model  # an int8 state_dict holds dtypes: not watched


# checkpoint, zoo
@case("save-not-minprune")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 2))
    return lambda: mp.save_model(tmp / "m.pt", model), (model, tmp)


@case("load-missing")
def _(tmp):
    return lambda: mp.load_model(tmp / "nope.pt"), tmp


@case("load-truncated")
def _(tmp):
    path = saved(tmp)
    path.write_bytes(path.read_bytes()[:1000])
    return lambda: mp.load_model(path), path


@case("load-not-torch")
def _(tmp):
    path = tmp / "model.pt"
    path.write_bytes(b"hello, I am not a model file" * 10)
    return lambda: mp.load_model(path), path


@case("load-foreign")
def _(tmp):
    path = tmp / "model.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return lambda: mp.load_model(path), path


@case("load-tampered")
def _(tmp):
    path = saved(tmp)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["layers.1.weight"][0, 0] += 1.0
    torch.save(payload, path)
    return lambda: mp.load_model(path), path


class Evil:
    def __reduce__(self):  # unpickling this would run a shell command
        return (exec, ("open('PWNED', 'w').write('x')",))


@case("load-malicious-pickle")
def _(tmp):
    path = tmp / "model.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "payload": Evil()}, f)
    return lambda: mp.load_model(path), path


@case("load-shape-mismatch")
def _(tmp):
    path = tmp / "model.pt"
    model = lenet300()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    state["layers.1.weight"] = torch.zeros(5, 784)
    payload = {"format": checkpoint.FORMAT, "description": mp.models.describe(model), "meta": {},
               "state_dict": state}
    torch.save(seal(payload), path)
    return lambda: mp.load_model(path), path


@case("load-bad-description")
def _(tmp):
    path = tmp / "model.pt"
    state = {k: v.detach() for k, v in lenet300().state_dict().items()}
    payload = {"format": checkpoint.FORMAT, "description": {"arch": "os.system"}, "meta": {},
               "state_dict": state}
    torch.save(seal(payload), path)
    return lambda: mp.load_model(path), path


@case("load-bad-layer-spec")
def _(tmp):
    path = tmp / "model.pt"
    model = lenet300()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    description = {**mp.models.describe(model), "shapes": {"layers.1": ["Evil", {}]}}
    payload = {"format": checkpoint.FORMAT, "description": description, "meta": {},
               "state_dict": state}
    torch.save(seal(payload), path)
    return lambda: mp.load_model(path), path


@case("save-meta-object")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_model(tmp / "m.pt", model, meta={"history": [1, 2], "splits": mp.load("mnist-small")}), \
        (model, tmp)


@case("save-meta-function")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_model(tmp / "m.pt", model, meta={"score_fn": mp.magnitude_scores}), (model, tmp)


@case("load-device")
def _(tmp):
    path = saved(tmp)
    return lambda: mp.load_model(path, device="tpu"), path


@case("pretrained-arch")
def _(tmp):
    return lambda: mp.pretrained("alexnet"), None


@case("pretrained-data")
def _(tmp):
    return lambda: mp.pretrained("lenet300", "imagenet", progress=False), None


# measure
@case("measure-not-a-model")
def _(tmp):
    return lambda: mp.count_params("lenet5"), None


@case("sparsity-type")
def _(tmp):
    return lambda: mp.model_sparsity([torch.zeros(3)]), None


@case("nonzeros-type")
def _(tmp):
    return lambda: mp.count_nonzeros("lenet5"), None


@case("layer-sparsity-type")
def _(tmp):
    return lambda: mp.layer_sparsity(lenet300().state_dict()), None


@case("size-on-disk-type")
def _(tmp):
    return lambda: mp.size_on_disk(None), None


@case("compare-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.compare([model], timing=False), model


@case("latency-batch-size")
def _(tmp):
    model = lenet300()
    return lambda: mp.latency(model, batch_size=0, repeats=1), model


@case("macs-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 2))
    return lambda: mp.count_macs(model), model


@case("macs-wrong-shape")
def _(tmp):
    model = lenet5()
    return lambda: mp.count_macs(model, (3, 32, 32)), model


@case("latency-repeats")
def _(tmp):
    model = lenet300()
    return lambda: mp.latency(model, repeats=0), model


@case("latency-threads")
def _(tmp):
    model = lenet300()
    return lambda: mp.latency(model, threads=0, repeats=1), model


@case("compare-empty")
def _(tmp):
    return lambda: mp.compare({}), None


@case("compare-baseline")
def _(tmp):
    model = lenet300()
    return lambda: mp.compare({"dense": model}, baseline="pruned", timing=False), model


@case("summary-empty-loader")
def _(tmp):
    model = lenet300()
    return lambda: mp.summary(model, empty_loader(), timing=False), model


@case("summary-timing-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.summary(model, timing={"threads": 2}), model


# scores
@case("scores-unknown-name")
def _(tmp):
    model = lenet300()
    return lambda: mp.magnitude_scores(model, names=["layers.9.weight"]), model


@case("scores-no-prunable")
def _(tmp):
    model = NoLayers()
    return lambda: mp.magnitude_scores(model), model


@case("scores-p")
def _(tmp):
    model = lenet300()
    return lambda: mp.magnitude_scores(model, p=0), model


@case("scores-nan-weights")
def _(tmp):
    model = with_nan(lenet300())
    return lambda: mp.magnitude_scores(model), model


@case("scores-inf-weights")
def _(tmp):
    model = with_nan(lenet300(), value=float("inf"))
    return lambda: mp.magnitude_scores(model), model


@case("taylor-no-data")
def _(tmp):
    model = lenet300()
    return lambda: mp.taylor_scores(model), model


@case("taylor-empty")
def _(tmp):
    model = lenet300()
    return lambda: mp.taylor_scores(model, empty_loader()), model


@case("taylor-batches")
def _(tmp):
    model = lenet300()
    return lambda: mp.taylor_scores(model, loader(), batches=0), model


@case("taylor-shape")
def _(tmp):
    model = vgg()
    return lambda: mp.taylor_scores(model, loader(shape=(3, 32, 32))), model


@case("gradient-no-data")
def _(tmp):
    model = lenet300()
    return lambda: mp.gradient_scores(model), model


@case("snip-empty")
def _(tmp):
    model = lenet300()
    return lambda: mp.snip_scores(model, []), model


@case("grasp-no-data")
def _(tmp):
    model = lenet300()
    return lambda: mp.grasp_scores(model), model


@case("synflow-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 2))
    return lambda: mp.synflow_scores(model), model


@case("synflow-sparsity")
def _(tmp):
    model = lenet300()
    return lambda: mp.synflow_masks(model, 1.0), model


@case("synflow-rounds")
def _(tmp):
    model = lenet300()
    return lambda: mp.synflow_masks(model, 0.5, rounds=0), model


@case("random-scores-unknown")
def _(tmp):
    model = lenet300()
    return lambda: mp.random_scores(model, names="fc.weight"), model


# masks
@case("masks-sparsity-range")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 1.5), s


@case("masks-sparsity-one")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 1.0), s


@case("masks-sparsity-type")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, "0.5"), s


@case("masks-sparsity-nan")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, float("nan")), s


@case("masks-both")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, threshold=0.1), s


@case("masks-scope")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, scope="layer"), s


@case("masks-threshold-type")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, threshold="small"), s


@case("masks-override-name")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, overrides={"fc.weight": 0.2}), s


@case("masks-override-range")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, overrides={"layers.1.weight": 2}), s


@case("masks-exclude-name")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, exclude=["fc.weight"]), s


@case("masks-empty-scores")
def _(tmp):
    return lambda: mp.make_masks({}, 0.5), None


@case("masks-scores-type")
def _(tmp):
    return lambda: mp.make_masks({"w": [0.1, 0.2]}, 0.5), None


@case("masks-nan-scores")
def _(tmp):
    s = {"w": torch.tensor([0.1, float("nan"), 0.3])}
    return lambda: mp.make_masks(s, 0.5), s


@case("masks-int-scores")
def _(tmp):
    s = {"w": torch.tensor([1, 2, 3])}
    return lambda: mp.make_masks(s, 0.5), s


@case("topk-sparsity")
def _(tmp):
    s = torch.rand(10)
    return lambda: mp.topk_mask(s, -0.1), {"s": s}


@case("n-pruned-sparsity")
def _(tmp):
    return lambda: mp.n_pruned(100, 1.2), None


@case("prunable-names-type")
def _(tmp):
    return lambda: mp.prunable_names({"layers.1.weight": torch.zeros(3)}), None


@case("masks-sparsity-fn-type")
def _(tmp):
    return lambda: mp.masks_sparsity("masks"), None


@case("shuffle-masks-type")
def _(tmp):
    return lambda: mp.shuffle_masks([torch.ones(3, dtype=torch.bool)]), None


# prune
@case("prune-sparsity")
def _(tmp):
    model = lenet300()
    return lambda: mp.prune(model, scores_of(model), 1.2), model


@case("prune-unknown-name")
def _(tmp):
    model, other = lenet300(), lenet5()
    return lambda: mp.prune(model, scores_of(other), 0.5), model


@case("prune-score-shape")
def _(tmp):
    model = lenet300()
    return lambda: mp.prune(model, {"layers.1.weight": torch.rand(3, 3)}, 0.5), model


@case("prune-nan-scores")
def _(tmp):
    model = lenet300()
    s = scores_of(model)
    s["layers.3.weight"][0, 0] = float("nan")
    return lambda: mp.prune(model, s, 0.5), model


@case("prune-nan-weights")
def _(tmp):
    model = with_nan(lenet300())
    return lambda: mp.prune(model, mp.magnitude_scores(model), 0.5), model


@case("prune-no-prunable")
def _(tmp):
    model = NoLayers()
    return lambda: mp.prune(model, mp.magnitude_scores(model), 0.5), model


@case("prune-scores-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.prune(model, [0.1, 0.2], 0.5), model


@case("prune-scope")
def _(tmp):
    model = lenet300()
    return lambda: mp.prune(model, scores_of(model), 0.5, scope="everything"), model


@case("apply-masks-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.apply_masks(model, [torch.ones(300, 784)]), model


@case("apply-masks-shape")
def _(tmp):
    model = lenet300()
    return lambda: mp.apply_masks(model, {"layers.1.weight": torch.ones(300, 783, dtype=torch.bool)}), model


@case("apply-masks-values")
def _(tmp):
    model = lenet300()
    good = torch.ones(100, 300, dtype=torch.bool)
    bad = torch.full((300, 784), 0.5)
    return lambda: mp.apply_masks(model, {"layers.3.weight": good, "layers.1.weight": bad}), model


@case("apply-masks-unknown")
def _(tmp):
    model = lenet300()
    return lambda: mp.apply_masks(model, {"layers.1.weight": torch.ones(300, 784), "conv.weight": torch.ones(3)}), \
        model


@case("load-masked-mismatch")
def _(tmp):
    model, other = lenet300(), lenet5()
    mp.prune(other, scores_of(other), 0.5)
    return lambda: mp.load_masked_state_dict(model, other.state_dict()), model


@case("copy-model-type")
def _(tmp):
    return lambda: mp.copy_model({"layers.1.weight": torch.zeros(2)}), None


@case("get-masks-type")
def _(tmp):
    return lambda: mp.get_masks(None), None


@case("make-permanent-type")
def _(tmp):
    return lambda: mp.make_permanent("model.pt"), None


# sensitivity, finetune
@case("sensitivity-grid")
def _(tmp):
    model = lenet300()
    return lambda: mp.sensitivity_scan(model, loader(), [0.5, 1.0]), model


@case("sensitivity-empty-grid")
def _(tmp):
    model = lenet300()
    return lambda: mp.sensitivity_scan(model, loader(), []), model


@case("sensitivity-name")
def _(tmp):
    model = lenet300()
    return lambda: mp.sensitivity_scan(model, loader(), [0.5], names=["fc.weight"]), model


@case("sensitivity-empty-loader")
def _(tmp):
    model = lenet300()
    return lambda: mp.sensitivity_scan(model, empty_loader(), [0.5]), model


@case("sensitivity-score-fn")
def _(tmp):
    model = lenet300()
    return lambda: mp.sensitivity_scan(model, loader(), [0.5], score_fn="magnitude"), model


@case("layer-sparsities-type")
def _(tmp):
    return lambda: mp.layer_sparsities({"layers.1.weight": [90.0]}), None


@case("layer-sparsities-drop")
def _(tmp):
    result = mp.unstructured.sensitivity.Sensitivity(90.0, [0.5], {"layers.1.weight": [89.0]})
    return lambda: mp.layer_sparsities(result, max_drop=-1), None


@case("fine-tune-no-data")
def _(tmp):
    model = lenet300()
    return lambda: mp.fine_tune(model, None), model


@case("fine-tune-epochs")
def _(tmp):
    model = lenet300()
    return lambda: mp.fine_tune(model, loader(), mp.TrainConfig(epochs=-1)), model


@case("iterative-sparsities")
def _(tmp):
    return lambda: mp.iterative_sparsities(0.9, 0), None


@case("iterative-final")
def _(tmp):
    return lambda: mp.iterative_sparsities(1.0, 3), None


@case("iterative-order")
def _(tmp):
    model = lenet300()
    return lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.8, 0.5], loader()), model


@case("iterative-range")
def _(tmp):
    model = lenet300()
    return lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5, 1.5], loader()), model


@case("iterative-config-epochs")
def _(tmp):
    model = lenet300()
    config = mp.IterativeConfig(epochs=-1)
    return lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(), config), model


@case("iterative-config-scope")
def _(tmp):
    model = lenet300()
    config = mp.IterativeConfig(scope="layer")
    return lambda: mp.iterative_prune(model, mp.magnitude_scores, [0.5], loader(), config), model


@case("iterative-score-fn")
def _(tmp):
    model = lenet300()
    return lambda: mp.iterative_prune(model, "magnitude", [0.5], loader()), model


@case("fine-tune-data-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.fine_tune(model, "mnist-small"), model


@case("storage-bits")
def _(tmp):
    model = lenet300()
    return lambda: mp.storage_table(model, bits=0), model


@case("sparse-encode-format")
def _(tmp):
    t = torch.zeros(3, 3)
    return lambda: sparse_storage.encode(t, "coo"), {"t": t}


@case("sparse-decode-garbage")
def _(tmp):
    return lambda: sparse_storage.decode(b"XXXX0000"), None


# unit scores, dependency, surgery, blocks
@case("unit-norms-p")
def _(tmp):
    W = torch.rand(4, 3)
    return lambda: mp.unit_norms(W, p=3), {"W": W}


@case("norm-scores-p")
def _(tmp):
    model = lenet5()
    return lambda: mp.norm_scores(model, p=0), model


@case("bn-scores-no-bn")
def _(tmp):
    model = lenet5()
    return lambda: mp.bn_scale_scores(model), model


@case("slimming-strength")
def _(tmp):
    return lambda: mp.slimming_loss(-1e-4), None


@case("activation-stat")
def _(tmp):
    model = lenet5()
    return lambda: mp.activation_scores(model, loader(), stat="median"), model


@case("activation-empty")
def _(tmp):
    model = lenet5()
    return lambda: mp.activation_scores(model, empty_loader()), model


@case("taylor-unit-empty")
def _(tmp):
    model = lenet5()
    return lambda: mp.taylor_unit_scores(model, empty_loader()), model


@case("trace-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    return lambda: mp.trace_groups(model), model


@case("prune-channels-sparsity")
def _(tmp):
    model = vgg()
    return lambda: mp.prune_channels(model, 1.0), model


@case("prune-channels-scope")
def _(tmp):
    model = vgg()
    return lambda: mp.prune_channels(model, 0.5, scope="layer"), model


@case("prune-channels-name")
def _(tmp):
    model = vgg()
    return lambda: mp.prune_channels(model, {"features.9.0": 0.5}), model


@case("prune-channels-all")
def _(tmp):
    model = lenet300()
    return lambda: mp.prune_channels(model, {"layers.3": 0.999}), model


@case("prune-channels-score-shape")
def _(tmp):
    model = vgg()
    return lambda: mp.prune_channels(model, 0.5, scores={"features.0.0.weight": torch.ones(3)}), model


@case("prune-channels-no-scores")
def _(tmp):
    model = vgg()
    return lambda: mp.prune_channels(model, 0.5, scores={"nothing.weight": torch.ones(3)}), model


@case("prune-channels-coupled")
def _(tmp):
    model = resnet()
    return lambda: mp.prune_channels(model, {"layers.1.conv2": 0.5, "layers.1.shortcut.0": 0.25}), model


@case("prune-channels-no-groups")
def _(tmp):
    model = mp.build("lenet300", hidden=[])
    return lambda: mp.prune_channels(model, 0.5), model


@case("select-channels-round-to")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    scores = mp.score_groups(graph, mp.norm_scores(model))
    return lambda: mp.select_channels(graph, scores, 0.5, round_to=0), model


@case("score-groups-type")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    return lambda: mp.score_groups(graph, [torch.ones(4)]), model


@case("score-groups-graph")
def _(tmp):
    model = vgg()
    return lambda: mp.score_groups({}, mp.norm_scores(model)), model


@case("groups-table-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.groups_table(model), model


@case("plot-groups-type")
def _(tmp):
    return lambda: mp.plot_groups("vgg"), None


@case("remove-channels-group")
def _(tmp):
    model = vgg()
    return lambda: mp.remove_channels(model, {99: torch.arange(2)}), model


@case("remove-channels-empty")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    gid = graph.prunable()[0].id
    return lambda: mp.remove_channels(model, {gid: torch.zeros(0, dtype=torch.long)}, graph), model


@case("remove-channels-index")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    gid = graph.prunable()[0].id
    return lambda: mp.remove_channels(model, {gid: torch.tensor([0, 99])}, graph), model


@case("remove-channels-float")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    gid = graph.prunable()[0].id
    return lambda: mp.remove_channels(model, {gid: torch.tensor([0.0, 1.0])}, graph), model


@case("remove-channels-frozen")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    frozen = next(g for g in graph.groups.values() if g.frozen and g.producers)
    return lambda: mp.remove_channels(model, {frozen.id: torch.arange(1)}, graph), model


@case("channel-masks-group")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    return lambda: mp.channel_masks(model, {123: torch.arange(1)}, graph), model


@case("select-global-dict")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    group_scores = mp.score_groups(graph, mp.norm_scores(model))
    return lambda: mp.select_channels(graph, group_scores, {"features.0.0": 0.5}, scope="global"), model


@case("drop-blocks-name")
def _(tmp):
    model = resnet()
    return lambda: mp.drop_blocks(model, ["layers.1"]), model


@case("drop-blocks-unknown")
def _(tmp):
    model = resnet()
    return lambda: mp.drop_blocks(model, "layers.7"), model


@case("prune-blocks-n")
def _(tmp):
    model = resnet()
    x = torch.randn(2, 1, 28, 28)
    return lambda: mp.prune_blocks(model, x, n=5), model


@case("block-scores-shape")
def _(tmp):
    model = resnet()
    return lambda: mp.block_scores(model, torch.zeros(2, 3, 32, 32)), model


@case("droppable-shape")
def _(tmp):
    model = resnet()
    return lambda: mp.droppable(model, torch.zeros(1, 3, 32, 32)), model


# ---- structured pruning: one smallest model per refusal class of the tracer, the selection and the surgery ----

IMAGE = (1, 1, 6, 6)  # one 1-channel 6x6 image
TOKENS = (1, 4, 4)  # one sequence of 4 tokens of width 4
IDS = torch.tensor([[1, 2, 0, 3]])  # one sequence of 4 token ids (0: padding)


class Net(nn.Module):
    """A model whose forward is `fwd(self, x)`: each refusal below is one line of forward code."""

    def __init__(self, fwd, **layers):
        super().__init__()
        self.fwd = fwd
        for name, layer in layers.items():
            setattr(self, name, layer)

    def forward(self, x):
        return self.fwd(self, x)


def conv(c_in: int = 1, c_out: int = 4, **options) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, **options)


def traced(model: nn.Module, example=IMAGE):
    """The call that traces `model` on `example` (a shape: a random batch), and what it must leave unchanged."""
    x = torch.randn(example) if isinstance(example, tuple) else example
    return lambda: mp.trace_groups(model, x), (model, {"x": x})


def keep_one(model: nn.Module, producer: str, example=IMAGE):
    """The call that keeps one channel of `producer`'s group, and the model."""
    x = torch.randn(example)
    graph = mp.trace_groups(model, x)
    return lambda: mp.remove_channels(model, {graph.outputs[producer]: torch.arange(1)}, graph), model


class ChannelScale(nn.Module):
    """A layer of your own: one scale per channel, y[:, c] = x[:, c] * w[c]."""

    def __init__(self, channels: int):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return x * self.w.view(1, -1, 1, 1)


class RMSNorm2d(nn.Module):
    """A layer of your own that normalises over the channels (root mean square), with one scale per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return x * x.pow(2).mean(1, keepdim=True).add(1e-6).rsqrt() * self.weight.view(1, -1, 1, 1)


class LinearWithSkip(nn.Module):
    """A layer of your own whose output is [x W^T, x]: its width depends on the width it reads."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x):
        return torch.cat([x @ self.weight.T, x], -1)


def isolated_rules(call):
    """`call`, run so that whatever it registers is gone afterwards (the rule registry is global)."""
    def run():
        with mock.patch.dict(channel_rules._RULES):
            return call()
    return run


def with_rule(layer_type: type, rule, call):
    """`call`, run with `rule` registered for `layer_type`; the registry is as before afterwards."""
    return isolated_rules(lambda: (mp.register_rule(layer_type, rule), call())[1])


def branching(s, x):
    y = s.c(x)
    return s.f(y if y.sum() > 0 else -y)


def two_attentions_one_input(s, x):
    h = s.a(x)
    return s.f(s.att(h, h, h)[0] + s.att2(h, h, h)[0])


def spatial_gate(s, x):
    y = s.c(x)
    return s.f(y * torch.sigmoid(s.gate(y.mean(1, keepdim=True))))


def attention(s, x):
    h = s.a(x)
    return s.f(s.att(h, h, h)[0])


# tracing the model
@case("trace-untraceable")
def _(tmp):
    return traced(Net(branching, c=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-example-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.trace_groups(model, [[0.0] * 784]), model


@case("trace-example-shape")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x)), c=conv(), f=nn.Conv2d(4, 2, 1)), (1, 3, 6, 6))


@case("trace-rule-function")
def _(tmp):
    call, watched = traced(Net(lambda s, x: s.f(s.s(s.c(x))), c=conv(), s=ChannelScale(4), f=nn.Conv2d(4, 2, 1)))
    return with_rule(ChannelScale, lambda module: {"kind": "follower"}, call), watched


# operations the tracer does not follow
@case("trace-unsupported")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.act(s.c(x))), c=conv(), act=nn.Softsign(), f=nn.Conv2d(4, 2, 1)))


@case("prune-channels-unsupported")
def _(tmp):
    model = Shuffler()
    return lambda: mp.prune_channels(model, 0.5), model


@case("trace-op-unknown")
def _(tmp):
    return traced(Net(lambda s, x: s.f(torch.roll(s.c(x), 1, 2)), c=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-op-attribute")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x).mT), c=nn.Conv1d(4, 4, 1), f=nn.Linear(4, 2)), TOKENS)


@case("trace-op-second-tensor")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.a(x).type_as(s.b(x)) + s.b(x)), a=conv(), b=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-untracked-operand")
def _(tmp):
    model = Net(lambda s, x: s.f(s.e(x) * (x != 0).unsqueeze(-1).expand_as(s.e(x))), e=nn.Embedding(5, 4),
                f=nn.Linear(4, 2))
    return traced(model, IDS.clone())


@case("trace-untracked-per-channel")
def _(tmp):
    model = Net(lambda s, x: s.f(s.e(x) * (x != 0).float().unsqueeze(-1).expand(-1, -1, 4)), e=nn.Embedding(5, 4),
                f=nn.Linear(4, 2))
    return traced(model, IDS.clone())


@case("trace-concat-untracked")
def _(tmp):
    model = Net(lambda s, x: s.f(torch.cat([s.e(x), x.float().unsqueeze(-1)], -1)), e=nn.Embedding(5, 4),
                f=nn.Linear(5, 2))
    return traced(model, IDS.clone())


# reshapes that split or mix the channel axis
@case("trace-reshape-split")
def _(tmp):
    def shuffle(s, x):
        y = s.c(x).view(x.shape[0], 2, 2, 6, 6).transpose(1, 2)
        return s.f(y.reshape(x.shape[0], 4, 6, 6))
    return traced(Net(shuffle, c=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-reshape-mix")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x).reshape(-1, 1, 6, 6)).reshape(x.shape[0], -1, 6, 6), c=conv(),
                f=nn.Conv2d(1, 1, 3, padding=1))
    return traced(model)


@case("trace-flatten-all")
def _(tmp):
    return traced(Net(lambda s, x: s.f(torch.flatten(s.c(x)).view(x.shape[0], -1)), c=conv(), f=nn.Linear(144, 2)))


# indexing, reductions, softmax, padding and normalisation over the channels
@case("trace-index-channels")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x)[:, :2]), c=conv(), f=nn.Conv2d(2, 2, 1)))


@case("trace-index-list")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x)[:, [0, 2]]), c=conv(), f=nn.Conv2d(2, 2, 1)))


@case("trace-index-input")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x[:, :1])), c=conv(), f=nn.Conv2d(4, 2, 1)), (1, 2, 6, 6))


@case("trace-reduce-channels")
def _(tmp):
    return traced(Net(spatial_gate, c=conv(), gate=nn.Conv2d(1, 1, 3, padding=1), f=nn.Conv2d(4, 2, 1)))


@case("trace-softmax-channels")
def _(tmp):
    return traced(Net(lambda s, x: s.f(F.softmax(s.c(x), dim=1)), c=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-softmax-output")
def _(tmp):
    return traced(Net(lambda s, x: F.softmax(s.f(s.c(x).mean((2, 3))), dim=1), c=conv(), f=nn.Linear(4, 3)))


@case("trace-pad-channels")
def _(tmp):
    return traced(Net(lambda s, x: s.f(F.pad(s.c(x), (0, 0, 0, 0, 1, 1))), c=conv(), f=nn.Conv2d(6, 2, 1)))


@case("trace-layer-norm-axis")
def _(tmp):
    return traced(Net(lambda s, x: s.f(F.layer_norm(s.c(x), (6,))), c=conv(), f=nn.Conv2d(4, 2, 1)))


@case("trace-batch-norm-axis")
def _(tmp):
    model = Net(lambda s, x: s.f(F.batch_norm(s.e(x), None, None, training=True)), e=nn.Linear(4, 4),
                f=nn.Linear(4, 2))
    return traced(model, TOKENS)


@case("trace-norm-concat")
def _(tmp):
    model = Net(lambda s, x: s.f(s.norm(torch.cat([s.a(x), s.b(x)], -1))), a=nn.Linear(4, 4), b=nn.Linear(4, 4),
                norm=nn.LayerNorm(8), f=nn.Linear(8, 2))
    return traced(model, TOKENS)


@case("trace-follower-flattened")
def _(tmp):
    model = Net(lambda s, x: s.f(s.bn(s.c(x).flatten(1))), c=conv(), bn=nn.BatchNorm1d(144), f=nn.Linear(144, 2))
    return traced(model)


# parameters read in forward
@case("trace-param-index")
def _(tmp):
    model = Net(lambda s, x: s.f(s.e(x) + s.pos[..., :4]), e=nn.Linear(4, 4), f=nn.Linear(4, 2),
                pos=nn.Parameter(torch.zeros(1, 4, 8)))
    return traced(model, TOKENS)


@case("trace-param-reduce")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x) * s.g.view(1, -1, 1, 1) / s.g.sum()), c=conv(), f=nn.Conv2d(4, 2, 1),
                g=nn.Parameter(torch.ones(4)))
    return traced(model)


@case("trace-param-reshape")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x) * s.g.view(2, 2)[0].sum()), c=conv(), f=nn.Conv2d(4, 2, 1),
                g=nn.Parameter(torch.ones(4)))
    return traced(model)


@case("trace-param-combine")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x) * (s.g + s.h)), c=conv(), f=nn.Conv2d(4, 2, 1),
                g=nn.Parameter(torch.ones(4, 1, 1)), h=nn.Parameter(torch.zeros(4, 1, 1)))
    return traced(model)


@case("trace-param-new-dim")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x) * s.g.expand(4, 4)), c=nn.Conv1d(4, 4, 1), f=nn.Conv1d(4, 2, 1),
                g=nn.Parameter(torch.ones(4)))
    return traced(model, TOKENS)


@case("trace-param-two-dims")
def _(tmp):
    model = Net(lambda s, x: s.f(s.c(x) * s.g + s.c(x) * s.g.transpose(0, 1)), c=nn.Conv1d(4, 4, 1),
                f=nn.Conv1d(4, 2, 1), g=nn.Parameter(torch.ones(4, 4)))
    return traced(model, TOKENS)


@case("trace-param-into-layer")
def _(tmp):
    model = Net(lambda s, x: s.f(s.e(x) + s.proj(s.query)), e=nn.Linear(4, 4), proj=nn.Linear(4, 4),
                f=nn.Linear(4, 2), query=nn.Parameter(torch.zeros(1, 4)))
    return traced(model, TOKENS)


@case("trace-param-concat")
def _(tmp):
    model = Net(lambda s, x: s.f(torch.cat([s.c(x), s.g.expand(x.shape[0], -1, -1, -1)], 1)), c=conv(),
                f=nn.Conv2d(5, 2, 1), g=nn.Parameter(torch.zeros(1, 1, 6, 6)))
    return traced(model)


# operands that hold channels on different axes or in different layouts
@case("trace-layer-axis")
def _(tmp):
    return traced(Net(lambda s, x: s.f(s.c(x)), c=conv(), f=nn.Linear(6, 2)))


@case("trace-rule-axis")
def _(tmp):
    call, watched = traced(Net(lambda s, x: s.f(s.s(s.c(x))), c=conv(), s=ChannelScale(4), f=nn.Conv2d(4, 2, 1)))
    return with_rule(ChannelScale, mp.ChannelRule("follower", axis=5, channel_tensors={"w": 0}), call), watched


@case("trace-axes-differ")
def _(tmp):
    model = Net(lambda s, x: s.f(s.a(x) + s.b(x).transpose(1, 2)), a=nn.Conv1d(4, 4, 1), b=nn.Conv1d(4, 4, 1),
                f=nn.Conv1d(4, 2, 1))
    return traced(model, (1, 4, 4))


@case("trace-concat-axes")
def _(tmp):
    model = Net(lambda s, x: s.f(torch.cat([s.c(x), s.c(x).transpose(1, 2)], 1)), c=nn.Conv1d(4, 4, 1),
                f=nn.Conv1d(8, 2, 1))
    return traced(model, TOKENS)


@case("trace-layout-differs")
def _(tmp):
    model = Net(lambda s, x: s.f(torch.cat([s.a(x), s.b(x)], 1) + s.c(x)), a=conv(), b=conv(), c=conv(1, 8),
                f=nn.Conv2d(8, 2, 1))
    return traced(model)


@case("trace-group-sizes")
def _(tmp):
    model = Net(lambda s, x: s.f(torch.cat([s.a(x), s.b(x)], 1) + torch.cat([s.c(x), s.d(x)], 1)), a=conv(),
                b=conv(), c=conv(1, 2), d=conv(1, 6), f=nn.Conv2d(8, 2, 1))
    return traced(model)


# attention
@case("trace-attention-inputs")
def _(tmp):
    model = Net(lambda s, x: s.f(s.att(s.a(x), s.b(x), s.b(x))[0]), a=nn.Linear(4, 4), b=nn.Linear(4, 4),
                att=nn.MultiheadAttention(4, 2, batch_first=True), f=nn.Linear(4, 2))
    return traced(model, TOKENS)


@case("remove-channels-frozen-heads")
def _(tmp):
    model = Net(two_attentions_one_input, a=nn.Linear(4, 8), att=nn.MultiheadAttention(8, 2, batch_first=True),
                att2=nn.MultiheadAttention(8, 4, batch_first=True), f=nn.Linear(8, 2))
    return keep_one(model, "a", TOKENS)


@case("remove-channels-heads")
def _(tmp):
    model = Net(attention, a=nn.Linear(4, 8), att=nn.MultiheadAttention(8, 2, batch_first=True), f=nn.Linear(8, 2))
    graph = mp.trace_groups(model, torch.randn(TOKENS))
    return lambda: mp.remove_channels(model, {graph.outputs["a"]: torch.tensor([0, 1, 2, 4])}, graph), model


# frozen groups: traced, but their channels stay
@case("remove-channels-frozen-grouped")
def _(tmp):
    return keep_one(Net(lambda s, x: s.f(s.g(s.a(x))), a=conv(), g=conv(4, 2, groups=2), f=nn.Conv2d(2, 2, 1)), "a")


@case("remove-channels-frozen-groupnorm")
def _(tmp):
    return keep_one(Net(lambda s, x: s.f(s.n(s.a(x))), a=conv(), n=nn.GroupNorm(2, 4), f=nn.Conv2d(4, 2, 1)), "a")


@case("remove-channels-frozen-reshape")
def _(tmp):
    return keep_one(Net(lambda s, x: s.f(s.a(x).view(x.shape[0], 4, 36).mean(2)), a=conv(), f=nn.Linear(4, 2)), "a")


@case("remove-channels-frozen-layernorm")
def _(tmp):
    model = Net(lambda s, x: s.f(s.n(s.a(x))), a=nn.Linear(4, 4), n=nn.LayerNorm((4, 4)), f=nn.Linear(4, 2))
    return keep_one(model, "a", TOKENS)


# the compacted model checked against its masked equivalent (layers of your own with a wrong rule)
@case("remove-channels-not-run")
def _(tmp):
    model = Net(lambda s, x: s.f(s.s(s.c(x))), c=conv(), s=ChannelScale(4), f=nn.Conv2d(4, 2, 1))
    prune = lambda: mp.prune_channels(model, 0.5, example=torch.randn(IMAGE))  # noqa: E731
    return with_rule(ChannelScale, mp.ChannelRule("pass"), prune), model


@case("remove-channels-differs")
def _(tmp):
    model = Net(lambda s, x: s.f(s.n(s.c(x))), c=conv(), n=RMSNorm2d(4), f=nn.Conv2d(4, 2, 1))
    rule = mp.ChannelRule("follower", channel_tensors={"weight": 0})  # statistics=True forgotten
    return with_rule(RMSNorm2d, rule, lambda: mp.prune_channels(model, 0.5, example=torch.randn(IMAGE))), model


@case("remove-channels-output-shape")
def _(tmp):
    model = Net(lambda s, x: s.f(s.a(x)), a=nn.Linear(4, 4), f=LinearWithSkip(4, 2))
    rule = mp.ChannelRule("layer", axis=-1, channel_tensors={"weight": 0}, input_tensors={"weight": 1})
    return with_rule(LinearWithSkip, rule, lambda: mp.prune_channels(model, 0.5, example=torch.zeros(TOKENS))), model


# selection and keep
@case("select-global-empty")
def _(tmp):
    model = mp.build("lenet300", hidden=[2, 2])
    graph = mp.trace_groups(model)
    scores = mp.score_groups(graph, mp.norm_scores(model))
    return lambda: mp.select_channels(graph, scores, 0.75, scope="global"), model


@case("select-scores-missing")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    return lambda: mp.select_channels(graph, {}, 0.5), model


@case("remove-channels-keep-type")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    return lambda: mp.remove_channels(model, [torch.arange(2)], graph), model


@case("remove-channels-graph-type")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), 0.5)
    return lambda: mp.remove_channels(model, graph, keep), model  # keep and graph swapped


# channel rules for layers of your own
@case("rule-kind")
def _(tmp):
    return lambda: mp.ChannelRule("conv"), None


@case("rule-pass-tensors")
def _(tmp):
    return lambda: mp.ChannelRule("pass", channel_tensors={"w": 0}), None


@case("rule-input-tensors")
def _(tmp):
    return lambda: mp.ChannelRule("follower", channel_tensors={"w": 0}, input_tensors={"w": 1}), None


@case("rule-sizes")
def _(tmp):
    return lambda: mp.ChannelRule("follower", channel_tensors={"w": 0}, sizes={"channels": "out_features"}), None


@case("register-rule-type")
def _(tmp):
    return isolated_rules(lambda: mp.register_rule("ChannelScale", mp.ChannelRule("pass"))), None


@case("register-rule-rule")
def _(tmp):
    return isolated_rules(lambda: mp.register_rule(RMSNorm2d, {"kind": "pass"})), None


# N:M, speed
@case("nm-n-m")
def _(tmp):
    W = torch.rand(4, 8)
    return lambda: mp.nm_mask(W, 3, 2), {"W": W}


@case("nm-rows")
def _(tmp):
    W = torch.rand(4, 6)
    return lambda: mp.nm_mask(W, 2, 4), {"W": W}


@case("nm-1d")
def _(tmp):
    W = torch.rand(8)
    return lambda: mp.nm_mask(W, 2, 4), {"W": W}


@case("nm-masks-strict")
def _(tmp):
    model = lenet5()
    return lambda: mp.nm_masks(scores_of(model), 2, 4, strict=True), model


@case("nm-nan-scores")
def _(tmp):
    W = torch.rand(2, 4)
    W[0, 1] = float("nan")
    return lambda: mp.nm_mask(W, 2, 4), {"W": W}


@case("nm-report-type")
def _(tmp):
    model = lenet300()
    masks = list(mp.nm_masks(scores_of(model)).values())
    return lambda: mp.nm_report(model, masks), model


@case("latency-grid-repeats")
def _(tmp):
    model = lenet300()
    return lambda: mp.latency_grid({"dense": model}, (1, 28, 28), repeats=0), model


@case("layer-latency-repeats")
def _(tmp):
    model = mp.build("lenet5")
    return lambda: mp.layer_latency(model, repeats=0), model


@case("layer-latency-shape")
def _(tmp):
    model = mp.build("lenet5")
    return lambda: mp.layer_latency(model, (3, 32, 32), repeats=1, warmup=0), model


@case("speedup-spread-baseline")
def _(tmp):
    model = mp.build("lenet5")
    return lambda: mp.speedup_spread({"dense": model}, (1, 28, 28), baseline="fast"), model


@case("speedup-spread-passes")
def _(tmp):
    model = mp.build("lenet5")
    return lambda: mp.speedup_spread({"dense": model}, (1, 28, 28), passes=0), model


@case("speedup-sampler-empty")
def _(tmp):
    model = mp.build("lenet5")
    return mp.timing.SpeedupSampler({"dense": model}, (1, 28, 28)).table, model


@case("speedups-empty")
def _(tmp):
    return lambda: mp.speedups({}, (1, 28, 28)), None


@case("speedups-baseline")
def _(tmp):
    model = lenet300()
    return lambda: mp.speedups({"dense": model}, (1, 28, 28), baseline="fast"), model


@case("speedup-sampler-rounds")
def _(tmp):
    model = lenet300()
    return lambda: mp.SpeedupSampler({"dense": model}, (1, 28, 28), rounds=0), model


@case("time-models-empty")
def _(tmp):
    return lambda: mp.time_models({}, torch.zeros(2, 1, 28, 28)), None


@case("time-models-type")
def _(tmp):
    x = torch.zeros(2, 1, 28, 28)
    return lambda: mp.time_models({"dense": "lenet300"}, x), {"x": x}


@case("time-models-per-round")
def _(tmp):
    model, x = lenet300().train(), torch.zeros(2, 1, 28, 28)
    return lambda: mp.time_models({"dense": model}, x, per_round=0), (model, {"x": x})


@case("time-models-warmup")
def _(tmp):
    model, x = lenet300().train(), torch.zeros(2, 1, 28, 28)
    return lambda: mp.time_models({"dense": model}, x, warmup=-1), (model, {"x": x})


@case("to-csr-type")
def _(tmp):
    return lambda: mp.to_csr("lenet300"), None

# schedules, dynamic, lottery, sparse training
@case("schedule-shape")
def _(tmp):
    return lambda: mp.make_schedule("quadratic", 0.9, end=100), None


@case("schedule-final")
def _(tmp):
    return lambda: mp.make_schedule("cubic", 1.0, end=100), None


@case("schedule-order")
def _(tmp):
    return lambda: mp.make_schedule("cubic", 0.5, initial=0.8, end=100), None


@case("schedule-end")
def _(tmp):
    return lambda: mp.make_schedule("linear", 0.9, start=50, end=10), None


@case("schedule-no-end")
def _(tmp):
    return lambda: mp.make_schedule("cubic", 0.9), None


@case("schedule-interval-type")
def _(tmp):
    return lambda: mp.make_schedule("cubic", 0.9, end=100, interval=2.5), None


@case("gradual-no-prunable")
def _(tmp):
    model = NoLayers()
    return lambda: mp.GradualPruner(model, mp.make_schedule("cubic", 0.5, end=10)), model


@case("gradual-schedule-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.GradualPruner(model, 0.9), model


@case("gradual-scope")
def _(tmp):
    model = lenet300()
    return lambda: mp.GradualPruner(model, mp.make_schedule("cubic", 0.5, end=10), scope="layer"), model


@case("rewind-mismatch")
def _(tmp):
    model = lenet300()
    return lambda: mp.rewind(model, mp.snapshot(lenet5())), model


@case("rewind-shape")
def _(tmp):
    model = lenet300()
    state = mp.snapshot(model)
    state["layers.5.bias"] = torch.zeros(11)
    return lambda: mp.rewind(model, state), model


@case("rewind-point-k")
def _(tmp):
    return lambda: mp.RewindPoint(-1), None


@case("snapshot-type")
def _(tmp):
    return lambda: mp.snapshot("lenet300"), None


@case("find-ticket-final")
def _(tmp):
    model = lenet300()
    return lambda: mp.find_ticket(model, lambda m: None, 1.0), model


@case("find-ticket-rounds")
def _(tmp):
    model = lenet300()
    return lambda: mp.find_ticket(model, lambda m: None, 0.5, rounds=0), model


@case("find-ticket-snapshot")
def _(tmp):
    model = lenet300()
    return lambda: mp.find_ticket(model, lambda m: None, 0.5, rewind_to=mp.snapshot(lenet5())), model


@case("sparse-config-sparsity")
def _(tmp):
    model = lenet300()
    return lambda: mp.DynamicSparseTrainer(model, mp.SparseConfig(sparsity=1.0)), model


@case("sparse-config-method")
def _(tmp):
    model = lenet300()
    return lambda: mp.DynamicSparseTrainer(model, mp.SparseConfig(method="snip")), model


@case("sparse-config-distribution")
def _(tmp):
    model = lenet300()
    return lambda: mp.DynamicSparseTrainer(model, mp.SparseConfig(distribution="normal")), model


@case("sparse-config-drop")
def _(tmp):
    model = lenet300()
    return lambda: mp.DynamicSparseTrainer(model, mp.SparseConfig(drop_fraction=1.5)), model


@case("sparse-no-prunable")
def _(tmp):
    model = NoLayers()
    return lambda: mp.DynamicSparseTrainer(model), model


@case("sparse-already-masked")
def _(tmp):
    model = lenet300()
    mp.prune(model, scores_of(model), 0.5)
    return lambda: mp.DynamicSparseTrainer(model), model


# quantization, k-means, Huffman, Deep Compression files, int8
@case("quant-bits-high")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.quant_params(x, 16), {"x": x}


@case("quant-bits-low")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.fake_quantize(x, 1), {"x": x}


@case("quant-bits-type")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.quant_params(x, 8.0), {"x": x}


@case("quant-axis")
def _(tmp):
    x = torch.randn(4, 3)
    return lambda: mp.quant_params(x, 8, axis=2), {"x": x}


@case("quantize-axis")
def _(tmp):
    x = torch.randn(3)
    return lambda: quantize.quantize(x, 0.1, 0, axis=5), {"x": x}


@case("dequantize-axis")
def _(tmp):
    q = torch.zeros(2, 3, dtype=torch.int32)
    return lambda: mp.dequantize(q, torch.ones(3), torch.zeros(3), axis=-3), {"q": q}


@case("quant-nan")
def _(tmp):
    x = torch.tensor([0.5, float("nan"), -1.0])
    return lambda: mp.quant_params(x, 8), {"x": x}


@case("fake-quant-inf")
def _(tmp):
    x = torch.tensor([0.5, float("inf"), -1.0])
    return lambda: mp.fake_quantize(x, 8), {"x": x}


@case("quantize-bits")
def _(tmp):
    x = torch.randn(10)
    return lambda: quantize.quantize(x, 0.1, 0, bits=9), {"x": x}


@case("quantize-weights-bits")
def _(tmp):
    model = lenet300()
    return lambda: mp.quantize_weights(model, 32), model


@case("swap-fake-quant-masked")
def _(tmp):
    model = lenet300()
    mp.prune(model, scores_of(model), 0.5)
    return lambda: mp.swap_fake_quant(model, 8), model


@case("swap-fake-quant-no-layers")
def _(tmp):
    model = NoLayers()
    return lambda: mp.swap_fake_quant(model, 8), model


@case("swap-fake-quant-type")
def _(tmp):
    return lambda: mp.swap_fake_quant("lenet300", 8), None


@case("strip-fake-quant-type")
def _(tmp):
    state = lenet300().state_dict()
    return lambda: mp.strip_fake_quant(state), state


@case("kmeans-k")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.kmeans_1d(x, 0), {"x": x}


@case("kmeans-empty")
def _(tmp):
    return lambda: mp.kmeans_1d(torch.zeros(0), 4), None


@case("kmeans-nan")
def _(tmp):
    x = torch.tensor([0.5, float("nan"), -1.0, 2.0])
    return lambda: mp.kmeans_1d(x, 2), {"x": x}


@case("share-bits")
def _(tmp):
    model = lenet300()
    return lambda: mp.share_weights(model, 9), model


@case("share-masked")
def _(tmp):
    model = lenet300()
    mp.prune(model, scores_of(model), 0.5)
    return lambda: mp.share_weights(model, 4), model


@case("share-names")
def _(tmp):
    model = lenet300()
    return lambda: mp.share_weights(model, 4, names=["layers.9.weight"]), model


@case("share-no-layers")
def _(tmp):
    model = NoLayers()
    return lambda: mp.share_weights(model, 4), model


@case("share-nan")
def _(tmp):
    model = with_nan(lenet300(), "layers.3.weight")
    return lambda: mp.share_weights(model, 4), model


@case("unshare-type")
def _(tmp):
    return lambda: mp.unshare_weights(None), None


@case("huffman-truncated")
def _(tmp):
    data, lengths = huffman.encode([0, 1, 2, 3, 0, 0, 1] * 10)
    return lambda: huffman.decode(data[:2], lengths, 70), None


@case("huffman-missing-code")
def _(tmp):
    return lambda: huffman.encode([0, 1, 5], {0: 1, 1: 1}), None


@case("compressed-unshared")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_compressed(tmp / "m.mpdc", model), (model, tmp)


@case("compressed-max-gap")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_compressed(tmp / "m.mpdc", model, max_gap=0), (model, tmp)


@case("compressed-dtype")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_compressed(tmp / "m.mpdc", model, float_dtype="bfloat16"), (model, tmp)


def _compressed_file(tmp):
    model = mp.build("lenet300", hidden=[8, 8])
    mp.prune(model, scores_of(model), 0.8)
    mp.make_permanent(model)
    mp.share_weights(model, 2)
    path = tmp / "m.mpdc"
    mp.save_compressed(path, model)
    return path


@case("compressed-crc")
def _(tmp):
    path = _compressed_file(tmp)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    return lambda: mp.load_compressed(path), path


@case("compressed-truncated")
def _(tmp):
    path = _compressed_file(tmp)
    path.write_bytes(path.read_bytes()[:-20])
    return lambda: mp.load_compressed(path), path


@case("compressed-foreign")
def _(tmp):
    path = tmp / "m.mpdc"
    path.write_bytes(b"\x89PNG not a model")
    return lambda: mp.load_compressed(path), path


@case("compressed-missing")
def _(tmp):
    return lambda: mp.load_compressed(tmp / "none.mpdc"), tmp


def _mlp_file(tmp, **kwargs):
    torch.manual_seed(0)
    model = mp.build("lenet300", hidden=[12, 8])
    return mp.save_model(tmp / "model.pt", model, **kwargs), model


def _resave(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@case("load-edited-description")
def _(tmp):
    path, _ = _mlp_file(tmp)
    _resave(path, lambda p: p["description"].update(shapes={"layers.2": ["Identity", {}]}))
    return lambda: mp.load_model(path), path


def _crafted_description(tmp, hidden):
    path = tmp / "model.pt"
    state = mp.build("lenet300", hidden=[4, 4]).state_dict()
    torch.save(seal({"format": checkpoint.FORMAT, "description": {"arch": "lenet300", "hidden": hidden}, "meta": {},
                     "state_dict": state}), path)
    return path


@case("load-huge-description")
def _(tmp):
    path = _crafted_description(tmp, [10**9, 8])
    return lambda: mp.load_model(path), path


@case("load-description-too-big")
def _(tmp):
    path = _crafted_description(tmp, [50_000, 8])
    return lambda: mp.load_model(path), path


@case("load-old-format")
def _(tmp):
    path = tmp / "model.pt"
    model = mp.build("lenet300", hidden=[4, 4])
    state = model.state_dict()
    torch.save({"format": "minprune-checkpoint/1", "description": mp.models.describe(model), "meta": {},
                "state_dict": state, "sha256": checkpoint.tensors_sha256(state)}, path)
    return lambda: mp.load_model(path), path


@case("save-mixed-dtypes")
def _(tmp):
    model = lenet300()
    model.layers[1].half()
    return lambda: mp.save_model(tmp / "m.pt", model), (model, tmp)


def _compressed_file(tmp):
    torch.manual_seed(0)
    model = mp.build("lenet300", hidden=[12, 8])
    mp.prune(model, scores_of(model), 0.5)
    mp.make_permanent(model)
    mp.share_weights(model, 2)
    path = tmp / "m.mpdc"
    mp.save_compressed(path, model)
    return path


@case("file-path")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_model(3, model), (model, tmp)


@case("save-meta-not-dict")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_model(tmp / "m.pt", model, meta="notes"), (model, tmp)


@case("compressed-crafted-header")
def _(tmp):
    import hashlib
    import json
    import struct
    import zlib
    path = _compressed_file(tmp)
    data = path.read_bytes()[:-32]
    (size,) = struct.unpack("<I", data[5:9])
    header = json.loads(zlib.decompress(data[9:9 + size]))
    header["tensors"][0]["shape"] = [10**7, 10**6]
    packed = zlib.compress(json.dumps(header).encode())
    body = data[:5] + struct.pack("<I", len(packed)) + packed + data[9 + size:]
    path.write_bytes(body + hashlib.sha256(body).digest())
    return lambda: mp.load_compressed(path), path


@case("compressed-old-format")
def _(tmp):
    path = tmp / "m.mpdc"
    path.write_bytes(b"MPDC1" + bytes(100))
    return lambda: mp.load_compressed(path), path


@case("int8-masked")
def _(tmp):
    model = lenet300()
    mp.prune(model, scores_of(model), 0.5)
    return lambda: mp.dynamic_int8(model), model


@case("int8-linear-weights-only")
def _(tmp):
    model = mp.build("lenet5")
    return lambda: mp.static_int8(model, torch.zeros(2, 1, 28, 28), linear_weights_only="yes"), model


@case("int8-dynamic-no-linear")
def _(tmp):
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    model.input_shape = (1, 8, 8)
    return lambda: mp.dynamic_int8(model), model


@case("int8-static-empty")
def _(tmp):
    model = lenet5()
    return lambda: mp.static_int8(model, []), model


@case("int8-convert-type")
def _(tmp):
    model = lenet5()
    return lambda: mp.convert_qat_int8(model), model


@case("int8-weights-type")
def _(tmp):
    return lambda: mp.int8_weights("model.pt"), None


@case("save-int8-float")
def _(tmp):
    model = lenet300()
    return lambda: mp.save_int8(tmp / "m.pt", model), (model, tmp)


@case("load-int8-missing")
def _(tmp):
    return lambda: mp.load_int8(tmp / "missing.pt"), tmp


@case("load-int8-garbage")
def _(tmp):
    path = tmp / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return lambda: mp.load_int8(path), tmp


def _int8_file(tmp):
    torch.manual_seed(0)
    path = tmp / "m.mpq"
    mp.save_int8(path, mp.dynamic_int8(mp.build("lenet300", hidden=[12, 8])))
    return path


@case("load-int8-edited")
def _(tmp):
    path = _resave(_int8_file(tmp), lambda p: p["recipe"]["description"].update(hidden=[12, 9]))
    return lambda: mp.load_int8(path), path


@case("load-int8-crafted-size")
def _(tmp):
    def change(p):
        p["recipe"]["description"]["hidden"] = [12, 9]
        p.update(seal(p))
    path = _resave(_int8_file(tmp), change)
    return lambda: mp.load_int8(path), path


@case("load-int8-huge")
def _(tmp):
    def change(p):
        p["recipe"]["description"]["hidden"] = [500, 8]
        p.update(seal(p))
    path = _resave(_int8_file(tmp), change)
    return lambda: mp.load_int8(path), path


@case("int8-weights-onnx-ops")
def _(tmp):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    proto = helper.make_model(graph)
    before = proto.SerializeToString()

    def call():
        try:
            mp.int8_weights_onnx(proto, op_types=("Softmax",))
        finally:
            assert proto.SerializeToString() == before, "the ONNX model changed although the call failed"
    assert onnx.checker.check_model(proto) is None
    return call, None


@case("qat-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return lambda: mp.prepare_qat_int8(model), model


def on_engines(engines: list[str], call):
    """`call`, run as if this PyTorch build had only these quantized engines (e.g. an ARM Mac's)."""
    def run():
        with mock.patch("minprune.quantization.engines.supported_engines", lambda: list(engines)):
            return call()
    return run


@case("int8-engine-name")
def _(tmp):
    model = lenet5()
    return lambda: mp.static_int8(model, torch.zeros(2, 1, 28, 28), engine="tpu"), model


@case("int8-engine-missing")
def _(tmp):
    model = lenet300()
    return on_engines(["qnnpack", "none"], lambda: mp.dynamic_int8(model, engine="x86")), model


@case("int8-engine-none")
def _(tmp):
    model = lenet5()
    return on_engines(["none"], lambda: mp.static_int8(model, torch.zeros(2, 1, 28, 28))), model


@case("load-int8-engine-none")
def _(tmp):
    q = mp.static_int8(lenet5(), torch.zeros(2, 1, 28, 28), engine="qnnpack")
    mp.save_int8(tmp / "m.mpq", q)
    return on_engines(["none"], lambda: mp.load_int8(tmp / "m.mpq")), tmp

# distillation
@case("kd-temperature")
def _(tmp):
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    return lambda: mp.kd_loss(s, t, torch.zeros(4, dtype=torch.long), temperature=0), {"s": s, "t": t}


@case("kd-alpha")
def _(tmp):
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    return lambda: mp.kd_loss(s, t, torch.zeros(4, dtype=torch.long), alpha=1.5), {"s": s, "t": t}


@case("kd-shapes")
def _(tmp):
    s, t = torch.randn(4, 10), torch.randn(4, 5)
    return lambda: mp.kd_loss(s, t, torch.zeros(4, dtype=torch.long)), {"s": s, "t": t}


@case("soft-targets-temperature")
def _(tmp):
    s = torch.randn(4, 10)
    return lambda: mp.soft_targets(s, -1.0), {"s": s}


@case("kd-labels")
def _(tmp):
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    return lambda: mp.kd_loss(s, t, torch.zeros(3, dtype=torch.long)), {"s": s, "t": t}


@case("attention-map-shape")
def _(tmp):
    f = torch.randn(4, 10)
    return lambda: mp.attention_map(f), {"f": f}


@case("hint-loss-shapes")
def _(tmp):
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)
    return lambda: mp.hint_loss(a, b), {"a": a, "b": b}


@case("distill-beta")
def _(tmp):
    teacher = lenet5()
    return lambda: mp.distill_loss(teacher, mp.KDConfig(beta=-1)), teacher


@case("distill-same-model")
def _(tmp):
    model = lenet5()
    return lambda: mp.distill_student(model, model, loader(), train=mp.TrainConfig(epochs=1), progress=False), model


@case("distill-hint-name")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), mp.KDConfig(hints=["features.9"]),
                                      progress=False), (student, teacher)


@case("random-shift-negative")
def _(tmp):
    x = torch.randn(4, 1, 28, 28)
    return lambda: mp.distillation.augment.random_shift(x, -1), {"x": x}


@case("random-shift-shape")
def _(tmp):
    x = torch.randn(4, 28)
    return lambda: mp.distillation.augment.random_shift(x, 1), {"x": x}


@case("mixup-strength")
def _(tmp):
    x = torch.randn(4, 1, 28, 28)
    return lambda: mp.distillation.augment.mix_images(x, 0), {"x": x}


@case("distill-mixup")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), mp.KDConfig(mixup=-1.0), progress=False), student


@case("kd-config-temperature")
def _(tmp):
    return lambda: mp.KDConfig(temperature=0), None


@case("kd-config-max-shift")
def _(tmp):
    return lambda: mp.KDConfig(max_shift=-1), None


@case("distill-kd-type")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), {"alpha": 0.5}, progress=False), (student, teacher)


@case("distill-train-type")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), train=3, progress=False), (student, teacher)


@case("distill-loss-fn")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), loss_fn=mp.train.cross_entropy_loss,
                                      progress=False), (student, teacher)


@case("distill-fit-option")
def _(tmp):
    student, teacher = lenet5(), lenet5()
    return lambda: mp.distill_student(student, teacher, loader(), epochs=2, progress=False), (student, teacher)


@case("mixup-shape")
def _(tmp):
    x = torch.randn(4)
    return lambda: mp.distillation.augment.mix_images(x, 1.0), {"x": x}


# energy, export, pipeline, recipes
@case("energy-bits")
def _(tmp):
    model = lenet5()
    return lambda: mp.estimate_energy(model, options=mp.EnergyOptions(bits=16)), model


@case("energy-memory")
def _(tmp):
    model = lenet5()
    return lambda: mp.estimate_energy(model, options=mp.EnergyOptions(weights="flash")), model


@case("energy-sparse-type")
def _(tmp):
    model = lenet5()
    return lambda: mp.energy_table(model, options=mp.EnergyOptions(sparse="yes")), model


@case("energy-options-type")
def _(tmp):
    model = lenet5()
    return lambda: mp.estimate_energy(model, options={"bits": 8}), model


@case("energy-no-layers")
def _(tmp):
    model = NoLayers()
    return lambda: mp.layer_counts(model), model


@case("energy-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 2))
    return lambda: mp.estimate_energy(model), model


@case("energy-costs-negative")
def _(tmp):
    return lambda: mp.EnergyCosts(fp32_mult=-1.0), None


@case("export-int8")
def _(tmp):
    model = lenet300()
    int8 = mp.dynamic_int8(model)
    return lambda: mp.deployable_copy(int8), model


@case("export-type")
def _(tmp):
    return lambda: mp.deployable_copy({"layers.1.weight": torch.zeros(1)}), None


@case("export-no-shape")
def _(tmp):
    model = nn.Sequential(nn.Linear(4, 2))
    return lambda: mp.export_onnx(model, tmp / "m.onnx"), (model, tmp)


@case("export-format")
def _(tmp):
    return lambda: mp.deploy.export.check_format("tflite"), None


@case("quantize-onnx-method")
def _(tmp):
    import onnx

    return lambda: mp.quantize_onnx(onnx.ModelProto(), method="int4"), None


@case("quantize-onnx-calibration")
def _(tmp):
    import onnx

    return lambda: mp.quantize_onnx(onnx.ModelProto(), None, method="static"), None


def _recipe(tmp, text: str):
    """A recipe file with `text`, and the call that loads it."""
    path = tmp / "r.toml"
    path.write_text(text)
    return lambda: mp.load_recipe(path), path


@case("recipe-missing")
def _(tmp):
    return lambda: mp.load_recipe(tmp / "nope.toml"), tmp


@case("recipe-bad-toml")
def _(tmp):
    return _recipe(tmp, "[prune\nsparsity = ")


@case("recipe-unknown-key")
def _(tmp):
    return _recipe(tmp, "[prune]\nsparsty = 0.5\n")


@case("recipe-sparsity")
def _(tmp):
    return _recipe(tmp, "[prune]\nsparsity = 1.2\n")


@case("recipe-bits")
def _(tmp):
    return _recipe(tmp, "[quantize]\nmethod = 'fake'\nbits = 16\n")


@case("recipe-type")
def _(tmp):
    return _recipe(tmp, "[finetune]\nepochs = 'two'\n")


@case("recipe-score")
def _(tmp):
    return _recipe(tmp, "[prune]\nmethod = 'structured'\nscore = 'magnitude'\n")


def _layers_recipe(tmp, prune: str, layers: str = '"features.0" = 0.5'):
    return _recipe(tmp, f"[prune]\n{prune}\n[prune.layers]\n{layers}\n")


STRUCTURED = "method = 'structured'\nscore = 'l1'\nscope = 'local'"


@case("recipe-layers-name")
def _(tmp):
    return _layers_recipe(tmp, STRUCTURED, '"classifier.5" = 0.5')


@case("recipe-layers-value")
def _(tmp):
    return _layers_recipe(tmp, STRUCTURED, '"features.0" = 0.95')


@case("recipe-layers-type")
def _(tmp):
    return _recipe(tmp, "[prune]\nlayers = [0.5]\n")


@case("recipe-layers-scope")
def _(tmp):
    return _layers_recipe(tmp, "method = 'structured'\nscore = 'l1'\nscope = 'global'")


@case("recipe-layers-none")
def _(tmp):
    return _layers_recipe(tmp, "method = 'none'\nscore = 'l1'")


@case("pipeline-config")
def _(tmp):
    config = mp.PipelineConfig()
    config.prune.sparsity = 1.5
    return lambda: mp.run_pipeline(config), None


@case("pareto-points")
def _(tmp):
    return lambda: mp.pareto_front([(1.0, 90.0), (2.0,)]), None


@case("measure-stages-empty-loader")
def _(tmp):
    model = lenet300()
    return lambda: mp.measure_stages({"dense": model}, empty_loader(), timing=False), model


@case("table-rows")
def _(tmp):
    return lambda: mp.Table([{"model": "dense"}, ["pruned", 0.9]]), None


@case("show-source-type")
def _(tmp):
    return lambda: mp.show_source(42), None


# plots and widgets
@case("plot-weights-no-layers")
def _(tmp):
    model = NoLayers()
    return lambda: mp.course.plots.plot_weight_histograms(model), model


@case("plot-scores-empty")
def _(tmp):
    return lambda: mp.course.plots.plot_score_histograms({}), None


@case("show-masks-empty")
def _(tmp):
    return lambda: mp.course.plots.show_masks({}), None


@case("plot-layer-sparsity-empty")
def _(tmp):
    return lambda: mp.course.plots_dynamic.plot_layer_sparsity([]), None


@case("plot-snapshots-layer")
def _(tmp):
    return lambda: mp.course.plots_dynamic.plot_mask_snapshots({0: {"a.weight": torch.ones(2, 2)}}, "b.weight"), None


@case("explorer-layer")
def _(tmp):
    model = lenet300()
    return lambda: mp.course.widgets.SparsityExplorer(model, loader(), layer="fc.weight"), model


@case("explorer-score")
def _(tmp):
    model = lenet300()
    explorer = mp.course.widgets.SparsityExplorer(model, loader())
    return lambda: explorer.pruned(0.5, score="synflow"), model


@case("gating-model")
def _(tmp):
    model = lenet5()
    return lambda: mp.dynamic.gating.GatedMLP(model), model


@case("gating-rank")
def _(tmp):
    model = lenet300()
    return lambda: mp.dynamic.gating.GatedMLP(model, rank=0), model


@case("distributed-no-group")
def _(tmp):
    from minprune.unstructured import distributed

    model = lenet300()
    mp.prune(model, scores_of(model), 0.5)
    return lambda: distributed.broadcast_masks(model), model


# measuring (helper C: validation of measure.py, timing.py, profile.py, energy.py)
@case("measure-flag-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.count_macs(m, by_module="yes"), m


@case("measure-input-shape")
def _(tmp):
    m = lenet300()
    return lambda: mp.count_macs(m, input_shape=(-1, 28)), m


@case("measure-meta")
def _(tmp):
    m = lenet300().to("meta")
    return lambda: mp.count_nonzeros(m), None  # meta tensors hold no values to compare


@case("latency-options-repeats")
def _(tmp):
    return lambda: mp.LatencyOptions(repeats=0), None


@case("summary-loader-dict")
def _(tmp):
    m = lenet300().train()
    return lambda: mp.summary(m, {"x": 1}, timing=False), m


@case("summary-name-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.summary(m, name=5, timing=False), m


@case("compare-model-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.compare({"a": "lenet300", "b": m}, timing=False), m


# unit scores, surgery, blocks (helper C)
@case("prune-channels-nan-weights")
def _(tmp):
    m = with_nan(vgg(), "features.0.0.weight").train()
    return lambda: mp.prune_channels(m, 0.5), m


@case("score-groups-nan")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    scores = mp.norm_scores(m)
    scores["features.0.0.weight"][1] = float("nan")
    return lambda: mp.score_groups(graph, scores), (m, scores)


@case("select-channels-nan")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    group_scores = mp.score_groups(graph, mp.norm_scores(m))
    group_scores[graph.prunable()[0].id][0] = float("nan")
    return lambda: mp.select_channels(graph, group_scores, 0.5), (m, group_scores)


@case("score-groups-value-type")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    return lambda: mp.score_groups(graph, {"features.0.0.weight": [1.0, 2.0, 3.0, 4.0]}), m


@case("select-channels-scores-type")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    return lambda: mp.select_channels(graph, [torch.ones(4)], 0.5), m


@case("remove-channels-bool")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    gid = graph.prunable()[0].id
    return lambda: mp.remove_channels(m, {gid: torch.tensor([True, False, True, True])}, graph), m


@case("remove-channels-check-type")
def _(tmp):
    m = vgg()
    graph = mp.trace_groups(m)
    gid = graph.prunable()[0].id
    return lambda: mp.remove_channels(m, {gid: torch.tensor([0, 1])}, graph, check="no"), m


@case("unit-scores-loader-type")
def _(tmp):
    m = lenet300().train()
    return lambda: mp.taylor_unit_scores(m, {"x": 1}), m


@case("unit-scores-max-batches")
def _(tmp):
    m = lenet300().train()
    return lambda: mp.activation_scores(m, loader(), max_batches=True), m


@case("taylor-unit-half")
def _(tmp):
    m = lenet300().half()
    return lambda: mp.taylor_unit_scores(m, loader()), m


@case("slimming-strength-nan")
def _(tmp):
    return lambda: mp.slimming_loss(float("nan")), None


@case("unit-norms-rows")
def _(tmp):
    w = torch.randn(3)
    return lambda: mp.unit_norms(w), {"w": w}


@case("unit-scores-meta")
def _(tmp):
    m = vgg().to("meta")
    return lambda: mp.norm_scores(m), None  # meta tensors hold no values to compare


@case("block-scores-labels")
def _(tmp):
    m = resnet().train()
    x, y = torch.randn(4, 1, 28, 28), torch.zeros(3, dtype=torch.long)
    return lambda: mp.block_scores(m, x, y), m


@case("prune-blocks-n-type")
def _(tmp):
    m = resnet()
    return lambda: mp.prune_blocks(m, torch.randn(2, 1, 28, 28), n=True), m


@case("drop-blocks-names-type")
def _(tmp):
    m = resnet()
    return lambda: mp.drop_blocks(m, 5), m


# N:M sparsity, speed, timing (helper C)
@case("nm-scores-type")
def _(tmp):
    scores = torch.ones(2, 4, dtype=torch.bool)
    return lambda: mp.nm_mask(scores), {"scores": scores}


@case("nm-report-value-bits")
def _(tmp):
    m = lenet300()
    return lambda: mp.nm_report(m, {}, value_bits=True), m


@case("nm-masks-strict-type")
def _(tmp):
    m = lenet300()
    scores = scores_of(m)
    return lambda: mp.nm_masks(scores, strict="no"), (m, scores)


@case("semi-structured-type")
def _(tmp):
    from minprune.structured import nm_sparsity

    return lambda: nm_sparsity.to_semi_structured("layers.1"), None


@case("latency-grid-threads-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.latency_grid({"dense": m}, (1, 28, 28), threads=2), m


@case("to-csr-half")
def _(tmp):
    m = lenet300().half()
    return lambda: mp.to_csr(m), m


@case("time-models-x-type")
def _(tmp):
    m = lenet300().train()
    return lambda: mp.time_models({"dense": m}, [[0.0] * 784]), m


@case("timing-input-shape")
def _(tmp):
    m = lenet300()
    return lambda: mp.interleaved_latency({"dense": m}, None), m


@case("layer-latency-warmup")
def _(tmp):
    m = lenet5().train()
    return lambda: mp.layer_latency(m, warmup=-1), m


# quantization (helper C)
@case("quant-scale-not-positive")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.fake_quantize(x, 8, scale=0.0, zero_point=0), {"x": x}


@case("quant-scale-nan")
def _(tmp):
    x = torch.randn(10)
    return lambda: quantize.quantize(x, float("nan"), 0), {"x": x}


@case("quant-zero-point")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.fake_quantize(x, 8, scale=0.1, zero_point=1.5), {"x": x}


@case("quant-scale-type")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.fake_quantize(x, 8, scale="0.1", zero_point=0), {"x": x}


@case("quant-x-type")
def _(tmp):
    return lambda: mp.quant_params([0.5, -1.0]), None


@case("quant-flag-type")
def _(tmp):
    x = torch.randn(10)
    return lambda: mp.quant_params(x, 8, symmetric="yes"), {"x": x}


@case("quant-meta")
def _(tmp):
    m = lenet300().to("meta")
    return lambda: mp.quantize_weights(m), None  # meta tensors hold no values to compare


@case("share-iters")
def _(tmp):
    m = lenet300()
    return lambda: mp.share_weights(m, 4, iters=-1), m


@case("share-names-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.share_weights(m, 4, names=5), m


@case("huffman-symbols-type")
def _(tmp):
    return lambda: huffman.code_lengths([1.5, 2.0]), None


@case("huffman-count")
def _(tmp):
    data, lengths = huffman.encode([1, 2, 2])
    return lambda: huffman.decode(data, lengths, -1), None


@case("huffman-lengths")
def _(tmp):
    return lambda: huffman.decode(b"\x00", {0: 0}, 1), None


@case("int8-not-a-model")
def _(tmp):
    return lambda: mp.dynamic_int8("lenet300"), None


@case("int8-calibration-type")
def _(tmp):
    m = lenet5().train()
    return lambda: mp.static_int8(m, {"x": 1}), m


@case("int8-calibration-shape")
def _(tmp):
    m = lenet5().train()
    return lambda: mp.static_int8(m, loader(shape=(3, 32, 32))), m


@case("qat-half")
def _(tmp):
    m = lenet5().half()
    return lambda: mp.prepare_qat_int8(m), m


@case("int8-weight-linear-type")
def _(tmp):
    from minprune.quantization import int8_modules

    conv = nn.Conv2d(1, 2, 3)
    return lambda: int8_modules.Int8WeightLinear(conv), conv


@case("qconfig-engine")
def _(tmp):
    from minprune.quantization import engines

    return lambda: engines.qconfig_mapping(True, "tpu"), None


# energy (helper C)
@case("energy-costs-type")
def _(tmp):
    m = lenet300().train()
    return lambda: mp.estimate_energy(m, costs={"dram_32bit": 1.0}), m


@case("energy-counts")
def _(tmp):
    from minprune import energy

    return lambda: energy.layer_energy({"layer": "a"}), None


@case("energy-bits-float")
def _(tmp):
    return lambda: mp.EnergyOptions(bits=8.0), None


@case("energy-index-bits-bool")
def _(tmp):
    return lambda: mp.EnergyOptions(index_bits=True), None


@case("energy-meta")
def _(tmp):
    m = lenet300().to("meta")
    return lambda: mp.estimate_energy(m), None  # meta tensors hold no values to compare


# training, data: argument checks before anything changes (helper B)
@case("fit-eval-flag")
def _(tmp):
    model = lenet300().eval()
    return lambda: mp.fit(model, loader(shape=(3, 32, 32)), mp.TrainConfig(epochs=1), progress=False), model


@case("fit-lr-non-finite")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1, lr=float("nan")), progress=False), model


@case("fit-optimizer-non-finite")
def _(tmp):
    model = lenet300()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=float("nan"))
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1, optimizer=opt), progress=False), model


@case("fit-optimizer-foreign")
def _(tmp):
    model = lenet300()
    opt = torch.optim.SGD(lenet300().parameters(), lr=0.1)
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1, optimizer=opt), progress=False), model


@case("train-bool-as-int")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=True), progress=False), model


@case("loader-not-batches")
def _(tmp):
    model = lenet300().eval()
    return lambda: mp.evaluate(model, [1, 2]), model


@case("fit-empty-loader")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, empty_loader(), mp.TrainConfig(epochs=1), progress=False), model


@case("fit-callable-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1), loss_fn="ce", progress=False), model


@case("fit-callbacks")
def _(tmp):
    model = lenet300()
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1), callbacks=[3], progress=False), model


@case("train-half-precision")
def _(tmp):
    model = lenet300().to(torch.bfloat16)
    return lambda: mp.fit(model, loader(), mp.TrainConfig(epochs=1), progress=False), model


@case("train-meta-model")
def _(tmp):
    with torch.device("meta"):
        model = lenet300()
    return lambda: mp.evaluate(model, loader()), None


@case("data-path-type")
def _(tmp):
    return lambda: mp.load("cifar10", root=3), None


# pruning during training (helper B)
@case("gradual-schedule-value")
def _(tmp):
    model = lenet300()
    return lambda: mp.GradualPruner(model, lambda step: float("nan")), model


@case("schedule-step-type")
def _(tmp):
    return lambda: mp.make_schedule("cubic", 0.5, end=10)(float("nan")), None


@case("sparse-config-non-finite")
def _(tmp):
    from minprune.dynamic.sparse_training import DynamicSparseTrainer, SparseConfig

    model = lenet300()
    return lambda: DynamicSparseTrainer(model, SparseConfig(sparsity=float("nan"))), model


@case("sparse-config-int")
def _(tmp):
    from minprune.dynamic.sparse_training import DynamicSparseTrainer, SparseConfig

    model = lenet300()
    return lambda: DynamicSparseTrainer(model, SparseConfig(interval=True)), model


@case("sparse-config-type")
def _(tmp):
    from minprune.dynamic.sparse_training import DynamicSparseTrainer

    model = lenet300()
    return lambda: DynamicSparseTrainer(model, {"sparsity": 0.5}), model


# distillation (helper B)
@case("kd-non-finite")
def _(tmp):
    logits = {"s": torch.randn(4, 10), "t": torch.randn(4, 10)}
    return lambda: mp.kd_loss(logits["s"], logits["t"], torch.zeros(4, dtype=torch.long),
                              temperature=float("inf")), logits


@case("distill-eval-flag")
def _(tmp):
    student, teacher = lenet300().eval(), lenet300()
    return lambda: mp.distill_student(student, teacher, loader(shape=(3, 32, 32)), train=mp.TrainConfig(epochs=1),
                                      progress=False), (student, teacher)


@case("distill-model-type")
def _(tmp):
    student = lenet300()
    return lambda: mp.distill_student(student, "lenet5", loader(), progress=False), student


@case("kd-hints-type")
def _(tmp):
    return lambda: mp.KDConfig(hints="layers.1"), None


@case("kd-tensor-type")
def _(tmp):
    return lambda: mp.kd_loss([[0.0] * 10], torch.zeros(1, 10), torch.zeros(1, dtype=torch.long)), None


# pipeline, recipes (helper B)
@case("recipe-non-finite")
def _(tmp):
    return _recipe(tmp, "[prune]\nsparsity = nan\n")


@case("recipe-data")
def _(tmp):
    return _recipe(tmp, "[base]\ndata = 'imagenet'\n")


@case("recipe-config-type")
def _(tmp):
    return lambda: mp.run_pipeline({"prune": {"sparsity": 0.5}}), None


@case("recipe-field-type")
def _(tmp):
    from minprune.pipeline import recipe

    config = recipe.PipelineConfig()
    config.prune.sparsity = "0.5"
    return lambda: recipe.validate(config), None


@case("pareto-non-finite")
def _(tmp):
    return lambda: mp.pareto_front([(float("nan"), 1.0), (2.0, 90.0)]), None


@case("measure-stages-models")
def _(tmp):
    from minprune.pipeline.report import measure_stages

    return lambda: measure_stages({}, loader()), None


# gating (helper B)
@case("gating-penalty")
def _(tmp):
    from minprune.dynamic import gating

    return lambda: gating.gating_loss(float("nan")), None


@case("gating-gated-type")
def _(tmp):
    from minprune.dynamic import gating

    model = lenet300()
    return lambda: gating.sparse_forward(model, torch.zeros(1, 1, 28, 28)), model


# unstructured validation (masked.py, unstructured/*)
@case("scores-p-nan")
def _(tmp):
    m = lenet300()
    return lambda: mp.magnitude_scores(m, p=float("nan")), m


@case("scores-batches-bool")
def _(tmp):
    m = lenet300()
    return lambda: mp.taylor_scores(m, loader(), batches=True), m


@case("scores-loader-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.taylor_scores(m, {"x": torch.zeros(4, 1, 28, 28)}), m


@case("scores-loader-batch")
def _(tmp):
    m = lenet300()
    return lambda: mp.snip_scores(m, [1, 2]), m


@case("scores-half")
def _(tmp):
    m = lenet300().half()
    return lambda: mp.taylor_scores(m, loader()), m


@case("synflow-input-shape")
def _(tmp):
    m = lenet300()
    return lambda: mp.synflow_scores(m, input_shape=(1, -28, 28)), m


@case("prune-empties-layer")
def _(tmp):
    m = lenet300()
    s = scores_of(m)
    return lambda: mp.prune(m, s, threshold=1e9), (m, s)


@case("apply-masks-orig-name")
def _(tmp):
    m = lenet300()
    mp.prune(m, scores_of(m), 0.5)
    return lambda: mp.apply_masks(m, {"layers.1.weight_orig": torch.ones(300, 784, dtype=torch.bool)}), m


class _OwnOrig(nn.Module):
    """A layer with a real parameter called weight_orig of its own (not from pruning)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 4))
        self.weight_orig = nn.Parameter(torch.full((3, 4), 2.0))

    def forward(self, x):
        return x @ (self.weight + self.weight_orig).T


@case("apply-masks-own-orig")
def _(tmp):
    m = nn.Sequential(_OwnOrig())
    return lambda: mp.apply_masks(m, {"0.weight": torch.ones(3, 4, dtype=torch.bool)}), m


@case("load-masked-mask-values")
def _(tmp):
    source, m = lenet300(), lenet300()
    mp.prune(source, scores_of(source), 0.5)
    state = {k: (torch.full_like(v, 0.5) if k == "layers.1.weight_mask" else v) for k, v in source.state_dict().items()}
    return lambda: mp.load_masked_state_dict(m, state), m


@case("masks-sparsity-values")
def _(tmp):
    masks = {"a": torch.full((4,), 5.0)}
    return lambda: mp.masks_sparsity(masks), masks


@case("n-pruned-numel")
def _(tmp):
    return lambda: mp.n_pruned(-5, 0.5), None


@case("masks-overrides-type")
def _(tmp):
    s = scores_of(lenet300())
    return lambda: mp.make_masks(s, 0.5, overrides=[("layers.1.weight", 0.2)]), s


@case("prune-meta")
def _(tmp):
    with torch.device("meta"):
        m = lenet300()
    s = {"layers.1.weight": torch.rand(300, 784)}
    return lambda: mp.prune(m, s, 0.5), s  # a meta model holds no values to compare; its scores must stay


@case("iterative-data-shape")
def _(tmp):
    m = lenet300()
    return lambda: mp.iterative_prune(m, mp.magnitude_scores, [0.5], loader(shape=(3, 32, 32))), m


@case("iterative-empty")
def _(tmp):
    m = lenet300()
    return lambda: mp.iterative_prune(m, mp.magnitude_scores, [], loader()), m


@case("sparse-decode-truncated")
def _(tmp):
    data = sparse_storage.encode(torch.ones(3))[:10]
    return lambda: sparse_storage.decode(data), None


@case("find-ticket-scope")
def _(tmp):
    m = lenet300()

    def train(model):  # would change the model: the refusal must come first
        with torch.no_grad():
            model.layers[1].weight.add_(1.0)

    return lambda: mp.find_ticket(m, train, 0.5, scope="layer"), m


@case("find-ticket-train")
def _(tmp):
    m = lenet300()
    return lambda: mp.find_ticket(m, "magnitude", 0.5), m


@case("rewind-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.rewind(m, [1, 2]), m


@case("loader-labels-out-of-range")
def _(tmp):
    m = lenet300()
    labels = DataLoader(TensorDataset(torch.randn(8, 1, 28, 28), torch.full((8,), 99)), batch_size=4)
    return lambda: mp.fit(m, labels, mp.TrainConfig(epochs=1), progress=False), m


# export, deployable copy, equivalence, N:M reports, pruning callbacks (helper G)
@case("equivalence-keep")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), 0.5)
    compacted = mp.remove_channels(model, keep, graph)
    gid = graph.prunable()[0].id
    return lambda: mp.check_compacted(model, compacted, {gid: torch.tensor([0, 99])}, graph), (model, compacted)


@case("graph-other-model")
def _(tmp):
    model = vgg()
    graph = mp.trace_groups(model)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model)), 0.5)
    return lambda: mp.masked_equivalent(model, keep, mp.trace_groups(lenet5())), model


@case("nm-report-masks-model")
def _(tmp):
    model = lenet300()
    return lambda: mp.nm_report(model, {"nonexistent.weight": torch.ones(3, dtype=torch.bool)}), model


@case("nm-report-empty-mask")
def _(tmp):
    model = lenet300()
    masks = mp.nm_masks(scores_of(model))
    masks["layers.1.weight"] = torch.zeros_like(masks["layers.1.weight"])
    return lambda: mp.nm_report(model, masks), model


@case("callback-half")
def _(tmp):
    model = lenet300().half()
    return lambda: mp.GradualPruner(model, lambda step: 0.5), model


@case("export-example-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.export_onnx(model, tmp / "m.onnx", example="x"), (model, tmp)


@case("export-example-shape")
def _(tmp):
    model = lenet300()
    return lambda: mp.export_onnx(model, tmp / "m.onnx", example=torch.zeros(2, 3, 32, 32)), (model, tmp)


@case("export-atol")
def _(tmp):
    model = lenet300()
    return lambda: mp.export_onnx(model, tmp / "m.onnx", atol=float("nan")), (model, tmp)


@case("export-dtype")
def _(tmp):
    model = lenet300().half()
    return lambda: mp.export_onnx(model, tmp / "m.onnx"), (model, tmp)


@case("export-meta")
def _(tmp):
    with torch.device("meta"):
        model = lenet300()
    return lambda: mp.deployable_copy(model), None


@case("export-check-type")
def _(tmp):
    model = lenet300()
    return lambda: mp.export_onnx(model, tmp / "m.onnx", check="no"), (model, tmp)


# transformers, TinyViT, CharGPT, text
def small_vit():
    torch.manual_seed(0)
    return mp.build("tinyvit", dim=32, depth=2, heads=4)


def small_gpt():
    torch.manual_seed(0)
    return mp.build("chargpt", n_layer=2, n_embd=32, n_head=4, block_size=16)


@case("heads-no-attention")
def _(tmp):
    m = lenet5()
    return lambda: mp.head_scores(m), m


@case("heads-norm")
def _(tmp):
    m = small_vit()
    return lambda: mp.neuron_scores(m, norm="l3"), m


@case("heads-keep-type")
def _(tmp):
    m = small_vit()
    return lambda: mp.prune_heads(m, [0, 1]), m


@case("heads-keep-name")
def _(tmp):
    m = small_vit()
    return lambda: mp.mask_heads(m, {"blocks.9.attn": [0]}), m


@case("heads-keep-range")
def _(tmp):
    m = small_vit()
    return lambda: mp.prune_heads(m, {"blocks.0.attn": [0, 7]}), m


@case("heads-keep-empty")
def _(tmp):
    m = small_vit()
    return lambda: mp.prune_mlp(m, {"blocks.0.mlp": []}), m


@case("heads-keep-repeated")
def _(tmp):
    m = small_vit()
    return lambda: mp.prune_heads(m, {"blocks.0.attn": [1, 1]}), m


@case("heads-keep-float")
def _(tmp):
    m = small_vit()
    return lambda: mp.mask_neurons(m, {"blocks.0.mlp": [0.5]}), m


@case("heads-masked")
def _(tmp):
    m = small_vit()
    torch.nn.utils.prune.l1_unstructured(m.blocks[0].attn.q, "weight", 0.5)
    return lambda: mp.prune_heads(m, {"blocks.0.attn": [0]}), m


@case("heads-select-fraction")
def _(tmp):
    m = small_vit()
    return lambda: mp.select_heads(mp.head_scores(m), 1.0), m


@case("heads-select-scope")
def _(tmp):
    m = small_vit()
    return lambda: mp.select_neurons(mp.neuron_scores(m), 0.5, scope="all"), m


@case("heads-select-nan")
def _(tmp):
    scores = {"blocks.0.attn": torch.tensor([1.0, float("nan"), 0.0, 1.0])}
    return lambda: mp.select_heads(scores, 0.5), scores


@case("heads-ablation-batches")
def _(tmp):
    m = small_vit()
    return lambda: mp.head_ablation(m, loader(), max_batches=0), m


@case("heads-ablation-loader")
def _(tmp):
    m = small_vit()
    return lambda: mp.head_ablation(m, None), m


@case("vit-sizes")
def _(tmp):
    return lambda: mp.build("tinyvit", dim=30, heads=4), ()


@case("gpt-sizes")
def _(tmp):
    return lambda: mp.build("chargpt", n_embd=30, n_head=4), ()


@case("gpt-float-tokens")
def _(tmp):
    m, x = small_gpt(), {"x": torch.zeros(2, 8)}
    return lambda: m(x["x"]), (m, x)


@case("gpt-token-range")
def _(tmp):
    m = small_gpt()
    return lambda: m.generate(torch.full((1, 4), 200), 3), m


@case("gpt-too-long")
def _(tmp):
    m = small_gpt()
    return lambda: m(torch.zeros(2, 17, dtype=torch.long)), m


@case("gpt-temperature")
def _(tmp):
    m = small_gpt()
    return lambda: m.generate(torch.zeros(1, 1, dtype=torch.long), 5, temperature=-1), m


@case("text-seq-len")
def _(tmp):
    text = mp.load("pydoc-text")
    return lambda: text.loader("val", 30000), ()


@case("text-nll")
def _(tmp):
    from minprune import text
    return lambda: text.bits_per_char(float("nan")), ()


@case("baseline-data")
def _(tmp):
    return lambda: mp.pretrained("chargpt", "mnist-small"), ()


# transformers: residual width, depth, tokens (transformers/width.py, depth.py, tokens.py, token_merging.py)
def vit_batches(n: int = 8):
    """(x, y) image batches for small_vit (1x28x28, 10 classes)."""
    return loader(n)


def token_batches(high: int = 103, n: int = 8, t: int = 16):
    """(x, y) batches of token ids in [0, high) for small_gpt, the largest id (high - 1) among them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, high, (n, t), generator=g)
    x[0, 0] = high - 1
    return DataLoader(TensorDataset(x, torch.randint(0, high, (n, t), generator=g)), batch_size=4)


@case("heads-entropy-unused")
def _(tmp):
    m = small_vit()
    m.spare = SelfAttention(32, 4)  # registered, never called by forward
    return lambda: mp.head_entropy(m, vit_batches()), m

@case("heads-taylor-batches")
def _(tmp):
    m = small_vit()
    return lambda: mp.head_taylor_scores(m, loader(), max_batches=0), m


@case("heads-entropy-loader")
def _(tmp):
    m = small_vit()
    return lambda: mp.head_entropy(m, None), m


@case("heads-taylor-half")
def _(tmp):
    m = small_vit().half()
    return lambda: mp.head_taylor_scores(m, loader()), m


@case("heads-entropy-no-attention")
def _(tmp):
    m = lenet5()
    return lambda: mp.head_entropy(m, loader()), m


@case("blocks-transformer")
def _(tmp):
    m = small_vit()
    return lambda: mp.drop_blocks(m, ["blocks.1"]), m


@case("width-model")
def _(tmp):
    model = lenet5()
    return lambda: width.prune_width(model, [0]), model


@case("width-keep-type")
def _(tmp):
    m = small_vit()
    return lambda: width.prune_width(m, {"blocks.0": [1]}), m


@case("width-keep-mask")
def _(tmp):
    m, keep = small_vit(), {"keep": torch.ones(32, dtype=torch.bool)}
    return lambda: width.mask_width(m, keep["keep"]), (m, keep)


@case("width-masked-copy")
def _(tmp):
    m = width.mask_width(small_vit(), list(range(16)))
    return lambda: width.prune_width(m, [0, 1]), m


@case("width-swapped-norm")
def _(tmp):
    m = small_vit()
    m.blocks[0].ln1 = nn.RMSNorm(32)
    return lambda: width.zero_width(m, [0, 1]), m


@case("width-resized")
def _(tmp):
    m = small_vit()
    m.head = nn.Linear(16, 10)
    return lambda: width.prune_width(m, [0, 1]), m


@case("width-max-norm")
def _(tmp):
    m = small_gpt()
    m.tok_emb.max_norm = 1.0
    return lambda: width.mask_width(m, [0, 1]), m


@case("width-head-dims")
def _(tmp):
    m = small_vit()
    m.blocks[1].attn = SelfAttention(32, 2)
    return lambda: width.prune_width(m, [0, 1]), m


@case("width-masked-layers")
def _(tmp):
    m = small_vit()
    mp.apply_masks(m, {"blocks.1.attn.k.weight": torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) > 0.5})
    return lambda: width.prune_width(m, list(range(16))), m


@case("width-scores-batches")
def _(tmp):
    m = small_vit()
    return lambda: width.width_scores(m, max_batches=0), m


@case("width-select-shape")
def _(tmp):
    scores = {"scores": torch.ones(2, 2)}
    return lambda: width.select_width(scores["scores"], 0.5), scores


@case("width-layernorm-type")
def _(tmp):
    layer, kept = nn.Linear(6, 6), {"kept": torch.ones(6, dtype=torch.bool)}
    return lambda: width.MaskedLayerNorm(layer, kept["kept"]), (layer, kept)


@case("width-layernorm-kept-type")
def _(tmp):
    norm, kept = nn.LayerNorm(6), {"kept": torch.ones(6)}
    return lambda: width.MaskedLayerNorm(norm, kept["kept"]), (norm, kept)


@case("width-layernorm-kept")
def _(tmp):
    norm, kept = nn.LayerNorm(6), {"kept": torch.ones(5, dtype=torch.bool)}
    return lambda: width.MaskedLayerNorm(norm, kept["kept"]), (norm, kept)


@case("depth-model")
def _(tmp):
    model = lenet300()
    return lambda: depth.drop_blocks(model, [0]), model


@case("depth-blocks-type")
def _(tmp):
    m = small_vit()
    m.blocks = nn.ModuleList(list(m.blocks))
    return lambda: depth.mask_blocks(m, [0]), m


@case("depth-block-type")
def _(tmp):
    m = small_vit()
    m.blocks[0] = nn.Linear(32, 32)
    return lambda: depth.block_importance(m, vit_batches()), m


@case("depth-drop-all")
def _(tmp):
    m = small_gpt()
    return lambda: depth.drop_blocks(m, [0, 1]), m


@case("depth-drop-type")
def _(tmp):
    m = small_vit()
    return lambda: depth.drop_blocks(m, 1), m


@case("depth-select-count")
def _(tmp):
    scores = {"scores": torch.tensor([0.3, 0.1, 0.2])}
    return lambda: depth.select_blocks(scores["scores"], 3), scores


@case("depth-importance-half")
def _(tmp):
    m = small_vit().half()
    return lambda: depth.block_importance(m, vit_batches()), m


@case("tokens-gpt")
def _(tmp):
    m = small_gpt()
    return lambda: mp.TokenPruned(m), m


@case("tokens-model")
def _(tmp):
    model = lenet5()
    return lambda: mp.TokenMerged(model), model


@case("tokens-block")
def _(tmp):
    m = mp.mask_blocks(small_vit(), [0])
    return lambda: mp.TokenPruned(m, after=(1,)), m


@case("tokens-hooks")
def _(tmp):
    m = small_vit()
    m.blocks[1].attn.register_forward_hook(lambda *args: None)
    return lambda: mp.TokenMerged(m), m


@case("tokens-keep-rate")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, keep_rate=0, after=(0, 1)), m


@case("tokens-after-type")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, after=1), m


@case("tokens-after-float")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, after=(0.5,)), m


@case("tokens-after-empty")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, after=()), m


@case("tokens-after-range")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m), m  # the default after=(1, 2) needs 3 blocks


@case("tokens-after-repeated")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, after=(1, 1)), m


@case("tokens-fuse")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenPruned(m, after=(0, 1), fuse="yes"), m


@case("tokens-input")
def _(tmp):
    m = small_vit()
    wrapper = mp.TokenPruned(m, after=(0,))
    return lambda: wrapper.kept_patches(torch.randn(2, 3, 32, 32)), (m, wrapper)


@case("tome-r")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenMerged(m, r=-1), m


@case("tome-r-large")
def _(tmp):
    m = small_vit()
    return lambda: mp.TokenMerged(m, r=9), m


# distillation of sequence models and hidden states (distillation/losses.py, student.py)
def logits_and(y, shape=(2, 3, 5)):
    g = torch.Generator().manual_seed(0)
    return {"s": torch.randn(*shape, generator=g), "t": torch.randn(*shape, generator=g), "y": y}


@case("kd-seq-targets")
def _(tmp):
    d = logits_and(torch.zeros(2, dtype=torch.long))
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


@case("kd-target-range")
def _(tmp):
    d = logits_and(torch.full((2, 3), 9))
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


@case("kd-target-float")
def _(tmp):
    d = logits_and(torch.zeros(4), (4, 5))
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


@case("kd-target-bool")
def _(tmp):
    d = logits_and(torch.zeros(4, dtype=torch.bool), (4, 5))
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


@case("kd-logits-dtype")
def _(tmp):
    d = {"s": torch.zeros(4, 5, dtype=torch.long), "t": torch.zeros(4, 5, dtype=torch.long),
         "y": torch.zeros(4, dtype=torch.long)}
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


@case("kd-logits-rank")
def _(tmp):
    d = logits_and(torch.tensor(1), (5,))
    return lambda: mp.kd_loss(d["s"], d["t"], d["y"]), d


def states(s_shape, t_shape, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return {"s": torch.randn(*s_shape, generator=g).to(dtype), "t": torch.randn(*t_shape, generator=g).to(dtype)}


@case("hidden-width")
def _(tmp):
    d = states((2, 5, 16), (2, 5, 32))
    return lambda: mp.hidden_state_loss(d["s"], d["t"]), d


@case("hidden-shape")
def _(tmp):
    d = states((2, 5, 16), (2, 4, 16))
    return lambda: mp.hint_loss(d["s"], d["t"]), d


@case("hidden-dtype")
def _(tmp):
    d = states((2, 5, 16), (2, 5, 16), torch.long)
    return lambda: mp.hidden_state_loss(d["s"], d["t"]), d


@case("hidden-empty")
def _(tmp):
    d = states((2, 0, 4), (2, 0, 4))
    return lambda: mp.hidden_state_loss(d["s"], d["t"]), d


@case("hint-rank")
def _(tmp):
    d = states((2, 5, 16), (2, 4, 4, 4))
    return lambda: mp.hint_loss(d["s"], d["t"]), d


@case("hint-dtype")
def _(tmp):
    d = states((2, 3, 4, 4), (2, 3, 4, 4), torch.long)
    return lambda: mp.hint_loss(d["s"], d["t"]), d


def gpt_pair(student: dict, teacher: dict):
    """(student, teacher): two CharGPTs with block_size 16, the teacher in train mode and the student in eval mode
    (a failed call must keep both flags)."""
    torch.manual_seed(0)
    base = {"n_layer": 2, "n_embd": 32, "n_head": 4, "block_size": 16}
    s, t = mp.build("chargpt", **{**base, **student}), mp.build("chargpt", **{**base, **teacher})
    return s.eval(), t.train()


def distill(student, teacher, data, kd=None):
    return lambda: mp.distill_student(student, teacher, data, kd, mp.TrainConfig(epochs=1), progress=False,
                                      device="cpu")


@case("distill-vocab")
def _(tmp):
    s, t = gpt_pair({}, {"vocab_size": 120})
    return distill(s, t, token_batches()), (s, t)


@case("distill-teacher-tokens")
def _(tmp):
    s, t = gpt_pair({}, {"vocab_size": 50})
    return distill(s, t, token_batches()), (s, t)


@case("distill-hint-width")
def _(tmp):
    s, t = gpt_pair({"n_embd": 16, "n_head": 2}, {"n_layer": 4})
    return distill(s, t, token_batches(), mp.KDConfig(hints={"blocks.1": "blocks.3"})), (s, t)


@case("distill-hint-unused")
def _(tmp):
    s, t = gpt_pair({"n_layer": 1}, {})
    s.spare, t.spare = nn.Linear(32, 32), nn.Linear(32, 32)  # registered, never called by forward
    return distill(s, t, token_batches(), mp.KDConfig(hints=["spare"])), (s, t)


@case("distill-shift-tokens")
def _(tmp):
    s, t = gpt_pair({"n_layer": 1}, {})
    return distill(s, t, token_batches(), mp.KDConfig(max_shift=1)), (s, t)


@case("distill-mixup-tokens")
def _(tmp):
    s, t = gpt_pair({"n_layer": 1}, {})
    return distill(s, t, token_batches(), mp.KDConfig(mixup=1.0)), (s, t)


@case("energy-gpt-shape")
def _(tmp):
    m = small_gpt()
    return lambda: mp.estimate_energy(m, (99,)), m


# one-shot pruning (one_shot/: calibration, obd, obs, wanda, sparsegpt)
def pixel_batches(n: int = 4):
    """[(x, y)]: one batch of `n` random MNIST-shaped images with labels, for lenet300."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))]


def obs_problem(d: int = 8):
    """(w, H^-1): a row of d weights and the inverse of a positive-definite Hessian H = X^T X / n + I / 10."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, d, generator=g, dtype=torch.float64)
    return torch.randn(d, generator=g, dtype=torch.float64), torch.linalg.inv(X.T @ X / 32 + 0.1 * torch.eye(d,
                                                                                            dtype=torch.float64))


class UnusedLayer(nn.Module):
    """Three Linear layers, of which forward never calls `b`."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1)

    def forward(self, x):
        return self.head(self.a(x))


@case("calib-output-only")
def _(tmp):
    m = nn.Sequential(nn.Linear(3, 2))
    return lambda: mp.input_hessians(m, [torch.randn(2, 3)]), m


@case("calib-names-unknown")
def _(tmp):
    m = lenet300()
    return lambda: mp.wanda(m, pixel_batches(), names=["nope.weight"]), m


@case("calib-names-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.input_norms(m, pixel_batches(), names=[3]), m


@case("calib-grouped-conv")
def _(tmp):
    m = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1))
    return lambda: mp.sparsegpt(m, [torch.randn(2, 4, 6, 6)]), m


@case("calib-shared")
def _(tmp):
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1))
    m[1].weight = m[0].weight
    return lambda: mp.sparsegpt(m, [torch.randn(2, 3)]), m


@case("calib-nan-weight")
def _(tmp):
    m = with_nan(lenet300())
    return lambda: mp.obd_scores(m, pixel_batches()), m


@case("calib-batches-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.input_hessians(m, "data"), m


@case("calib-batches-empty")
def _(tmp):
    m = lenet300()
    return lambda: mp.sparsegpt(m, []), m


@case("calib-batch-item")
def _(tmp):
    m = lenet300()
    return lambda: mp.wanda_scores(m, [3]), m


@case("calib-cannot-run")
def _(tmp):
    m = lenet300()
    return lambda: mp.obs_prune(m, [torch.randn(2, 7)], 0.5), m


@case("calib-gpt-floats")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, [torch.randn(2, 16)]), m


@case("calib-unused-layer")
def _(tmp):
    m = UnusedLayer()
    return lambda: mp.input_hessians(m, [torch.randn(2, 3)]), m


@case("calib-max-batches")
def _(tmp):
    m = lenet300()
    return lambda: mp.input_norms(m, pixel_batches(), max_batches=0), m


@case("obd-kind")
def _(tmp):
    m = lenet300()
    return lambda: mp.obd_scores(m, pixel_batches(), kind="newton"), m


@case("obd-half")
def _(tmp):
    m = lenet300().half()
    return lambda: mp.obd_scores(m, pixel_batches(), kind="fisher"), m


@case("obd-loss-fn-hessian")
def _(tmp):
    m = lenet300()
    return lambda: mp.obd_scores(m, pixel_batches(), loss_fn=lambda model, x, y: model(x).sum()), m


@case("obd-loss-fn-output")
def _(tmp):
    m = lenet300()
    return lambda: mp.fisher_diagonal(m, pixel_batches(), loss_fn=lambda model, x, y: model(x)), m


@case("obd-fisher-labels")
def _(tmp):
    m = lenet300()
    x, _ = pixel_batches()[0]
    return lambda: mp.obd_scores(m, [(x, torch.full((4,), 99))], kind="fisher"), m


@case("obs-wide")
def _(tmp):
    m = nn.Sequential(nn.Linear(1100, 4), nn.Linear(4, 2))
    return lambda: mp.obs_prune(m, [torch.randn(2, 1100)], 0.5), m


@case("obs-half")
def _(tmp):
    m = lenet300().half()
    return lambda: mp.obs_prune(m, pixel_batches(), 0.5), m


@case("oneshot-sparsity")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, token_batches(), sparsity=1.0), m


@case("obs-empties-rows")
def _(tmp):
    m = nn.Sequential(nn.Linear(1, 4), nn.Linear(4, 2))
    return lambda: mp.obs_prune(m, [torch.randn(2, 1)], 0.9), m


@case("oneshot-damp")
def _(tmp):
    m = lenet300()
    return lambda: mp.obs_prune(m, pixel_batches(), 0.5, damp=-0.01), m


@case("obs-singular")
def _(tmp):
    H = torch.zeros(8, 8, dtype=torch.float64)
    return lambda: mp.damped_inverse(H, damp=0.0), {"H": H}


@case("obs-q-range")
def _(tmp):
    w, H_inv = obs_problem()
    return lambda: mp.obs_remove(w, H_inv, 8), {"w": w, "H_inv": H_inv}


@case("obs-inverse-shape")
def _(tmp):
    w, H_inv = obs_problem()
    return lambda: mp.obs_step(w, H_inv[:4, :4]), {"w": w, "H_inv": H_inv}


@case("obs-row-type")
def _(tmp):
    _, H_inv = obs_problem()
    return lambda: mp.obs_step([1.0, 2.0], H_inv), {"H_inv": H_inv}


@case("obs-not-finite")
def _(tmp):
    w, H_inv = obs_problem()
    w[0] = float("nan")
    return lambda: mp.obs_step(w, H_inv), {"w": w, "H_inv": H_inv}


@case("obs-all-removed")
def _(tmp):
    w, H_inv = obs_problem()
    return lambda: mp.obs_step(w, H_inv, removed=torch.ones(8, dtype=torch.bool)), {"w": w, "H_inv": H_inv}


@case("obs-layer-hessian")
def _(tmp):
    W, H = torch.randn(3, 8), torch.eye(8)
    return lambda: mp.obs_prune_layer(W, H[:5, :5], 0.5), {"W": W, "H": H}


@case("oneshot-nm-type")
def _(tmp):
    m = lenet300()
    return lambda: mp.wanda(m, pixel_batches(), nm="2:4"), m


@case("oneshot-nm-values")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, token_batches(), nm=(3, 2)), m


@case("oneshot-nm-and-sparsity")
def _(tmp):
    m = lenet300()
    return lambda: mp.wanda(m, pixel_batches(), 0.7, nm=(2, 4)), m


@case("oneshot-nm-rows")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, token_batches(), nm=(3, 64)), m


@case("sgpt-blocksize")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, token_batches(), blocksize=0), m


@case("sgpt-blocksize-nm")
def _(tmp):
    m = small_gpt()
    return lambda: mp.sparsegpt(m, token_batches(), nm=(2, 4), blocksize=6), m


@case("sgpt-not-definite")
def _(tmp):
    from minprune.one_shot.sparsegpt import sparsegpt_weight
    W, H = torch.randn(3, 4), -torch.eye(4, dtype=torch.float64)
    return lambda: sparsegpt_weight(W, H, damp=0.0), {"W": W, "H": H}


@case("sgpt-hessian")
def _(tmp):
    from minprune.one_shot.sparsegpt import inverse_hessian_factor
    return lambda: inverse_hessian_factor([[1.0]]), None


# ---- the machinery -------------------------------------------------------------------------------------------

def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """torch.equal, except that NaN equals NaN (a model with NaN weights must keep exactly those NaNs)."""
    if torch.equal(a, b):
        return True
    return (a.shape == b.shape and a.dtype == b.dtype and a.is_floating_point()
            and bool(((a == b) | (a.isnan() & b.isnan())).all()))


def _tensors(watched, row_id: str = "") -> list:
    """A deep copy of everything a failed call must not change: state_dicts, tensors, file bytes, training flags."""
    if watched is None:
        return []
    if isinstance(watched, tuple):
        return [x for w in watched for x in _tensors(w, row_id)]
    if isinstance(watched, nn.Module):
        state = {k: v.detach().clone() for k, v in watched.state_dict().items()}
        hooks = sum(len(m._forward_pre_hooks) for m in watched.modules())
        return [("module", watched, state, watched.training, hooks, row_id)]
    if isinstance(watched, dict):
        return [("tensors", watched, {k: v.clone() for k, v in watched.items()})]
    if isinstance(watched, Path):
        files = {p: p.read_bytes() for p in ([watched] if watched.is_file() else watched.rglob("*")) if p.is_file()}
        return [("files", watched, files)]
    raise TypeError(f"cannot watch {type(watched).__name__}")


def _assert_unchanged(snapshots) -> None:
    for kind, obj, before, *rest in snapshots:
        if kind == "module":
            after = obj.state_dict()
            assert after.keys() == before.keys(), f"state_dict keys changed: {set(after) ^ set(before)}"
            for k in before:
                assert _same(after[k], before[k]), f"{k} changed although the call failed"
            training, hooks, _ = rest
            assert obj.training == training, "train/eval mode changed although the call failed"
            assert sum(len(m._forward_pre_hooks) for m in obj.modules()) == hooks, "hooks were added or removed"
        elif kind == "tensors":
            assert obj.keys() == before.keys()
            for k in before:
                assert _same(obj[k], before[k]), f"input tensor {k!r} changed although the call failed"
        else:
            files = {p: p.read_bytes() for p in ([obj] if obj.is_file() else obj.rglob("*")) if p.is_file()}
            assert files == before, f"files under {obj} changed although the call failed"


ROWS = doc_rows()


def test_every_row_has_a_case_and_every_case_a_row():
    assert len(ROWS) >= 100
    assert sorted(set(ROWS) - set(CASES)) == [], "rows of docs/errors.md without a test case"
    assert sorted(set(CASES) - set(ROWS)) == [], "test cases without a row in docs/errors.md"


def test_every_structured_refusal_says_what_to_do():
    """Each DependencyError row, and every row of the structured-pruning tables, tells the user what to do."""
    refusals = {i: r for i, r in ROWS.items() if r["error"] == "DependencyError" or r["todo"] is not None}
    assert len(refusals) >= 60
    silent = sorted(i for i, r in refusals.items() if not r["todo"] or len(r["todo"].split()) < 3)
    assert silent == [], "rows without a 'what to do' cell"


@pytest.mark.parametrize("row_id", sorted(ROWS))
def test_bad_input_row(row_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a malicious pickle that got through would write PWNED here
    expected = ROWS[row_id]
    call, watched = CASES[row_id](tmp_path)
    snapshots = _tensors(watched, row_id)
    with pytest.raises(Exception) as info:
        call()
    error = ERRORS[expected["error"]]
    assert type(info.value) is error, f"raised {type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for fragment in expected["fragments"]:
        assert fragment in message, f"message lacks {fragment!r}: {message}"
    assert not (tmp_path / "PWNED").exists()
    _assert_unchanged(snapshots)


if __name__ == "__main__":  # probe: print what every case raises now (used to write docs/errors.md)
    import sys
    import tempfile
    import traceback

    for row_id, make in CASES.items():
        if len(sys.argv) > 1 and not any(row_id.startswith(a) for a in sys.argv[1:]):
            continue
        with tempfile.TemporaryDirectory() as d:
            torch.manual_seed(0)
            call, watched = make(Path(d))
            snaps = _tensors(watched, row_id)
            try:
                call()
                outcome = "NO ERROR"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:230]}"
            try:
                _assert_unchanged(snaps)
                touched = ""
            except AssertionError as exc:
                touched = f"  !! CHANGED: {exc}"
            print(f"{row_id} | {outcome}{touched}".replace("\n", " "))
            if "-v" in sys.argv:
                traceback.print_exc()
