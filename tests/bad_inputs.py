"""The shared table of bad inputs: every public function of minprune that takes a model, its arguments, and for
each kind of argument a pool of values that are certainly invalid for it.

`ENTRIES` holds one `Entry` per function: `call(model, **kwargs)` calls the kit with small valid defaults
(`defaults(ref)` builds them from a fresh reference model), `model` builds the tiny model it needs, `args` gives
the KIND of each argument worth attacking, and `supports` the model variants it legitimately accepts (a float16
model for a function that only counts or masks, an eval-mode or masked model everywhere). `KINDS` maps a kind to
its pool of `Bad` values; `VARIANTS` maps a variant name to a function factory -> model.

`run_case(case)` makes one call and classifies it as

- clear: the kit raised ValueError/TypeError/FileNotFoundError/RuntimeError (or a subclass) itself, and the
  model is exactly as it was;
- raw: the error came from inside torch or Python (`raised_by_kit` is False) or has another type;
- silent: no error for a value that is certainly invalid;
- mutated: the kit raised, but the model changed (tensors, dtype, device, train/eval flags, hooks,
  parametrizations, attributes, gradients);
- supported: a supported model variant worked and kept its dtype and flags;
- refused: a supported model variant raised.

Used by tests/test_unchanged_on_error.py (hypothesis) and tools/bad_input_sweep.py (every case once).
"""

from __future__ import annotations

import copy
import inspect
import io
import linecache
import re
import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune.transformers.depth import drop_blocks as drop_transformer_blocks

KIT = Path(mp.__file__).resolve().parent
NAN, INF = float("nan"), float("inf")
KIT_ERRORS = (ValueError, TypeError, FileNotFoundError, RuntimeError)
GOOD_CLASSES = ("clear", "supported")


# ---- tiny models and data ------------------------------------------------------------------------------------

def mlp() -> nn.Module:
    return mp.build("lenet300", hidden=[8, 8])


def cnn() -> nn.Module:
    return mp.build("lenet5", channels=[2, 4], hidden=[8, 8])


def vgg() -> nn.Module:
    return mp.build("vgg", widths=[4, 8])


def resnet() -> nn.Module:
    return mp.build("resnet", widths=[4, 4], blocks=[2, 1])


def masked(model: nn.Module) -> nn.Module:
    """`model` with half of every prunable weight masked (magnitude, local)."""
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    return model


def masked_mlp() -> nn.Module:
    return masked(mlp())


def shared_mlp() -> nn.Module:
    return mp.share_weights(mlp(), 2, iters=2)


def fake_quant_mlp() -> nn.Module:
    return mp.swap_fake_quant(mlp())


def int8_mlp() -> nn.Module:
    return mp.dynamic_int8(mlp())


def vit() -> nn.Module:
    """A tiny TinyViT: 16 channels, 2 blocks of 2 heads (head_dim 8), 16 patch tokens."""
    return mp.build("tinyvit", dim=16, depth=2, heads=2)


def gpt() -> nn.Module:
    """A tiny CharGPT: 16 channels, 2 blocks of 2 heads, block_size 8, the default 103-token vocabulary."""
    return mp.build("chargpt", n_layer=2, n_embd=16, n_head=2, block_size=8)


def token_loader(n: int = 8, t: int = 8, vocab: int = 103) -> DataLoader:
    """`n` random (token ids, next ids) pairs of length `t` in batches of 4, the same every call."""
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randint(0, vocab, (n, t), generator=g),
                                    torch.randint(0, vocab, (n, t), generator=g)), batch_size=4)


def loader(n: int = 8, shape=(1, 28, 28), labels: int = 10) -> DataLoader:
    """`n` random (x, y) examples in batches of 4, the same every call."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, labels, (n,), generator=g))
    return DataLoader(data, batch_size=4)


def empty_loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), batch_size=4)


def example(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def labels(n: int = 2) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))


def train_one_epoch(model: nn.Module) -> None:
    mp.fit(model, loader(), mp.TrainConfig(epochs=1), progress=False)


_TMP: list[Path] = []
AUTO = "<a fresh file in scratch_dir()>"  # the default path of the save entries (None is a bad value for them)


def scratch_dir() -> Path:
    """A private temporary folder for the files the save functions write (one per process)."""
    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="minprune-bad-inputs-")))
    return _TMP[0]


def scratch_file(suffix: str) -> Path:
    return scratch_dir() / f"{uuid.uuid4().hex}{suffix}"


def _path(path, suffix: str):
    return scratch_file(suffix) if isinstance(path, str) and path == AUTO else path


def _like(model, x: torch.Tensor) -> torch.Tensor:
    """`x` in the dtype of `model`'s first parameter (a float16 model gets float16 inputs), else unchanged."""
    p = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return x if p is None or p.is_meta else x.to(p.dtype)


def first_weight(ref: nn.Module) -> str:
    return mp.prunable_names(ref)[0]


def keep_half(ref: nn.Module) -> dict:
    """A valid `keep` for `remove_channels`: the first half of the channels of every prunable group."""
    graph = mp.trace_groups(ref)
    return mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(ref)), 0.5)


# ---- bad values, by kind ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bad:
    """A certainly invalid value; `make(ref)` builds it (from a fresh reference model where it needs names)."""

    label: str
    make: Callable[[nn.Module], object]


def const(label: str, value) -> Bad:
    return Bad(label, lambda ref: copy.deepcopy(value))


def _meta_mlp() -> nn.Module:
    with torch.device("meta"):
        return mlp()


def _wrong_shape(ref: nn.Module) -> dict:
    return {first_weight(ref): torch.ones(3, 3)}


def _nan_scores(ref: nn.Module) -> dict:
    scores = mp.magnitude_scores(ref)
    scores[first_weight(ref)] = torch.full_like(scores[first_weight(ref)], NAN)
    return scores


def _empty_mask(ref: nn.Module) -> dict:
    return {n: torch.zeros_like(p, dtype=torch.bool) for n, p in mp.effective_parameters(ref).items()
            if n == first_weight(ref)}


def _half_mask(ref: nn.Module) -> dict:
    return {n: torch.full_like(p, 0.5) for n, p in mp.effective_parameters(ref).items() if n == first_weight(ref)}


def _first_group(ref: nn.Module) -> int:
    return next(iter(keep_half(ref)))


INTS = [const("0", 0), const("-1", -1), const("True", True), const("2.5", 2.5), const("'3'", "3"),
        const("nan", NAN)]
LOADERS = [const("'data'", "data"), const("{}", {}), const("3", 3), const("[1, 2]", [1, 2]),
           Bad("empty loader", lambda ref: empty_loader()),
           Bad("batches of shape (3, 32, 32)", lambda ref: loader(shape=(3, 32, 32))),
           Bad("labels out of range (99)", lambda ref: loader(labels=100))]
CONFIGS = [const("'fast'", "fast"), const("{'epochs': 1}", {"epochs": 1}), const("3", 3)]

KINDS: dict[str, list[Bad]] = {
    "fraction": [const("nan", NAN), const("inf", INF), const("-0.1", -0.1), const("1.0", 1.0), const("1.5", 1.5),
                 const("True", True), const("'half'", "half"), const("None", None)],
    "positive_int": [*INTS, const("None", None)],
    "positive_int_or_none": INTS,
    "non_negative_int": [const("-1", -1), const("True", True), const("2.5", 2.5), const("'3'", "3"),
                         const("nan", NAN)],
    "quant_bits": [*INTS, const("100", 100)],
    "positive_float": [const("0.0", 0.0), const("-1.0", -1.0), const("nan", NAN), const("inf", INF),
                       const("True", True), const("'1e-3'", "1e-3"), const("None", None)],
    "non_negative_float": [const("-1.0", -1.0), const("nan", NAN), const("inf", INF), const("True", True),
                           const("'0.1'", "0.1")],
    "loader": [*LOADERS, const("None", None)],
    "loader_or_none": LOADERS,
    "calibration": [*LOADERS[:-1], const("None", None)],
    "callable": [const("'magnitude'", "magnitude"), const("3", 3)],
    "choice": [const("'nonsense'", "nonsense"), const("3", 3), const("None", None)],
    "choice_or_none": [const("'nonsense'", "nonsense"), const("3", 3)],
    "scores": [const("'scores'", "scores"), const("[1, 2]", [1, 2]),
               const("unknown name", {"nonexistent.weight": torch.ones(3)}),
               Bad("wrong shape", _wrong_shape), Bad("NaN scores", _nan_scores)],
    "free_scores": [const("'scores'", "scores"), const("[1, 2]", [1, 2]), const("{'a': 'text'}", {"a": "text"}),
                    Bad("NaN scores", _nan_scores)],
    "masks": [const("'masks'", "masks"), const("[1, 2]", [1, 2]),
              const("unknown name", {"nonexistent.weight": torch.ones(3, dtype=torch.bool)}),
              Bad("wrong shape", lambda ref: {first_weight(ref): torch.ones(3, 3, dtype=torch.bool)}),
              Bad("all-False mask", _empty_mask), Bad("0.5 entries", _half_mask)],
    "names": [const("'nonexistent.weight'", "nonexistent.weight"), const("['nope']", ["nope"]), const("3", 3),
              const("[3]", [3])],
    "input_shape": [const("'shape'", "shape"), const("(-1, 28, 28)", (-1, 28, 28)), const("(1, 0, 28)", (1, 0, 28)),
                    const("(1, 2.5, 28)", (1, 2.5, 28)), const("(3, 32, 32)", (3, 32, 32)), const("3.5", 3.5)],
    "tensor_input": [const("'x'", "x"), const("3", 3), const("[1, 2]", [1, 2]),
                     const("shape (2, 3, 32, 32)", torch.zeros(2, 3, 32, 32))],
    "labels": [const("'y'", "y"), const("3 labels for 2 inputs", torch.zeros(3, dtype=torch.long)),
               const("labels out of range (99)", torch.full((2,), 99))],
    "device": [const("'nonsense'", "nonsense"), const("3", 3), const("'cuda:99'", "cuda:99"),
               const("'meta'", "meta")],
    "train_config": [*CONFIGS, const("IterativeConfig()", mp.IterativeConfig())],
    "iterative_config": CONFIGS,
    "kd_config": [const("'kd'", "kd"), const("{'temperature': 4}", {"temperature": 4}), const("3", 3)],
    "sparse_config": [const("'rigl'", "rigl"), const("{'sparsity': 0.5}", {"sparsity": 0.5}), const("3", 3)],
    "sparsities": [const("'0.5'", "0.5"), const("[0.5, 1.5]", [0.5, 1.5]), const("[nan]", [NAN]),
                   const("[0.5, 'a']", [0.5, "a"]), const("[-0.1]", [-0.1]), const("3", 3)],
    "tensor_dict": [const("'saved'", "saved"), const("[1, 2]", [1, 2]),
                    const("unknown name", {"nonexistent.weight": torch.ones(3)}), Bad("wrong shape", _wrong_shape)],
    "module": [const("'teacher'", "teacher"), const("3", 3), const("None", None),
               Bad("meta-device model", lambda ref: _meta_mlp())],
    "path": [const("3", 3), const("None", None), const("[1, 2]", [1, 2]),
             Bad("an existing directory", lambda ref: scratch_dir())],
    "path_or_none": [const("3", 3), const("[1, 2]", [1, 2]), Bad("an existing directory", lambda ref: scratch_dir())],
    "keep": [const("'keep'", "keep"), const("[1, 2]", [1, 2]), const("unknown group 99", {99: torch.tensor([0])}),
             Bad("channel index 99", lambda ref: {_first_group(ref): torch.tensor([99])}),
             Bad("no channel kept", lambda ref: {_first_group(ref): torch.tensor([], dtype=torch.long)})],
    "group_scores": [const("'scores'", "scores"), const("[1, 2]", [1, 2]),
                     const("unknown group 99", {99: torch.ones(4)}),
                     Bad("wrong length", lambda ref: {_first_group(ref): torch.ones(99)})],
    "graph": [const("'graph'", "graph"), const("3", 3),
              Bad("graph of another architecture (lenet5)", lambda ref: mp.trace_groups(cnn()))],
    "block_names": [const("'nonexistent'", "nonexistent"), const("['layers.9']", ["layers.9"]), const("3", 3),
                    const("[3]", [3])],
    "schedule": [const("'cubic'", "cubic"), const("3", 3), const("returns nan", lambda step: NAN),
                 const("returns 1.5", lambda step: 1.5)],
    "config_object": [const("'options'", "options"), const("{}", {}), const("3", 3)],
    "timing": [const("'fast'", "fast"), const("3", 3)],
    "dict_or_none": [const("'desc'", "desc"), const("3", 3), const("[1, 2]", [1, 2])],
    "nm_n": [*INTS, const("5 (> m=4)", 5)],
    "block_count": [const("-1", -1), const("True", True), const("2.5", 2.5), const("'3'", "3"), const("nan", NAN),
                    const("99 (more than there are)", 99)],
    # transformers: indices of residual channels that stay, blocks that go, blocks that prune tokens
    "channel_keep": [const("'keep'", "keep"), const("3", 3), const("None", None), const("[]", []), const("[99]", [99]),
                     const("[-1]", [-1]), const("[0, 0]", [0, 0]), const("[0.5]", [0.5]), const("[True]", [True]),
                     const("float tensor", torch.tensor([0.0, 1.0])), const("bool mask", torch.ones(16).bool()),
                     const("{'blocks.0': [0]}", {"blocks.0": [0]})],
    "block_drop": [const("'blocks.0'", "blocks.0"), const("1", 1), const("None", None), const("[99]", [99]),
                   const("[-1]", [-1]), const("[0, 0]", [0, 0]), const("[0.5]", [0.5]), const("[True]", [True]),
                   Bad("every block", lambda ref: list(range(len(ref.blocks))))],
    "block_after": [const("()", ()), const("(99,)", (99,)), const("(-1,)", (-1,)), const("(0, 0)", (0, 0)),
                    const("1", 1), const("(0.5,)", (0.5,)), const("(True,)", (True,)), const("'0'", "0"),
                    const("None", None)],
    "rate": [const("0.0", 0.0), const("-0.1", -0.1), const("1.5", 1.5), const("nan", NAN), const("inf", INF),
             const("True", True), const("'half'", "half"), const("None", None)],
    "flag": [const("'yes'", "yes"), const("1", 1), const("None", None)],
    "merge_r": [const("-1", -1), const("True", True), const("2.5", 2.5), const("'3'", "3"), const("nan", NAN),
                const("None", None), const("9 (more than half of 16 patches)", 9)],
    "unit_scores": [const("'scores'", "scores"), const("[1, 2]", [1, 2]), const("shape (2, 2)", torch.ones(2, 2)),
                    const("empty", torch.ones(0)), const("NaN", torch.tensor([1.0, NAN])),
                    const("inf", torch.tensor([INF, 1.0]))],
    "head_keep": [const("'keep'", "keep"), const("[0, 1]", [0, 1]), const("unknown layer", {"blocks.9.attn": [0]}),
                  const("head 7 of 2", {"blocks.0.attn": [7]}), const("no head", {"blocks.0.attn": []}),
                  const("[1, 1]", {"blocks.0.attn": [1, 1]}), const("[0.5]", {"blocks.0.attn": [0.5]})],
    # one-shot pruning: an N:M pair (keep n of every m weights)
    "nm_pair": [const("'2:4'", "2:4"), const("3", 3), const("(2,)", (2,)), const("(0, 4)", (0, 4)),
                const("(5, 4)", (5, 4)), const("(2.0, 4)", (2.0, 4)), const("(True, 4)", (True, 4)),
                const("(2, 3) (rows of 16 or 8 weights)", (2, 3))],
    "neuron_keep": [const("'keep'", "keep"), const("[0, 1]", [0, 1]), const("unknown layer", {"blocks.9.mlp": [0]}),
                    const("neuron 99 of 32", {"blocks.0.mlp": [99]}), const("no neuron", {"blocks.0.mlp": []}),
                    const("[1, 1]", {"blocks.0.mlp": [1, 1]}), const("[0.5]", {"blocks.0.mlp": [0.5]})],
}


# ---- model variants ---------------------------------------------------------------------------------------------

def _meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """The model built on the meta device; a model whose factory reads values (a masked one) is moved there."""
    if factory in (mlp, cnn, vgg, resnet):
        with torch.device("meta"):
            return factory()
    return factory().to("meta")


VARIANTS: dict[str, Callable[[Callable[[], nn.Module]], object]] = {
    "float16": lambda factory: factory().half(),
    "bfloat16": lambda factory: factory().bfloat16(),
    "meta": _meta,
    "eval": lambda factory: factory().eval(),
    "masked": lambda factory: masked(factory()),
    "not_module": lambda factory: "model",
    "float_not_int8": lambda factory: mlp(),
}
ALL = ("float16", "bfloat16", "meta", "eval", "masked", "not_module")
HALF = frozenset({"float16", "bfloat16"})
NORMAL = frozenset({"eval", "masked"})


# ---- the table --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One public function: how to call it validly, which arguments to attack, which model variants it takes."""

    name: str
    target: Callable  # the kit function or class (its file groups the report)
    call: Callable  # call(model, **kwargs)
    model: Callable[[], nn.Module] = mlp
    args: dict = field(default_factory=dict)  # argument -> kind
    defaults: Callable[[nn.Module], dict] = lambda ref: {}
    supports: frozenset = NORMAL
    variants: tuple = ALL
    setup: Callable | None = None  # setup(model) -> more kwargs, run before the snapshot (a callback to attach)

    def kwargs(self, ref: nn.Module, **overrides) -> dict:
        return {**self.defaults(ref), **overrides}

    @property
    def file(self) -> str:
        """The library file that defines `target` (decorators such as torch.no_grad unwrapped)."""
        source = inspect.getsourcefile(inspect.unwrap(self.target))
        return str(Path(source).resolve().relative_to(KIT.parent)) if source else "?"


def _scores(ref):
    return {"scores": mp.magnitude_scores(ref)}


def _loader_only(ref):
    return {"loader": loader()}


def _batches_only(ref):
    return {"batches": loader()}


def _token_batches(ref):
    return {"batches": token_loader()}


def _graph_keep(ref):
    return {"keep": keep_half(ref), "graph": mp.trace_groups(ref)}


def _compacted(ref):
    keep, graph = keep_half(ref), mp.trace_groups(ref)
    return {"compacted": mp.remove_channels(ref, keep, graph), "keep": keep, "graph": graph}


def _group_scores(ref):
    graph = mp.trace_groups(ref)
    return {"graph": graph, "group_scores": mp.score_groups(graph, mp.norm_scores(ref))}


def _fit_defaults(ref):
    return {"loader": loader(), "config": mp.TrainConfig(epochs=1)}


def _select(model, graph, group_scores, sparsity=0.5, scope="local", round_to=None):
    return mp.select_channels(graph, group_scores, sparsity, scope=scope, round_to=round_to)


def _nm_masks(model, scores, n=2, m=4):
    return mp.nm_masks(scores, n, m)


def _gradual(model, schedule=lambda step: 0.5, score_fn=None, scope="local"):
    return mp.GradualPruner(model, schedule, score_fn=score_fn, scope=scope)


def _fit_with(model, callbacks, data=None):
    return mp.fit(model, loader() if data is None else data, mp.TrainConfig(epochs=1), callbacks=callbacks,
                  progress=False)


def _gradual_setup(model) -> dict:
    return {"callbacks": [mp.GradualPruner(model, lambda step: 0.5)]}


def _sparse_setup(model) -> dict:
    return {"callbacks": [mp.DynamicSparseTrainer(model, mp.SparseConfig(sparsity=0.5))]}


HEAD_KEEP = {"blocks.0.attn": [1]}  # a valid keep for the tiny vit(): head 1 of block 0's two stays
NEURON_KEEP = {"blocks.0.mlp": [1, 5]}  # two of block 0's 64 MLP neurons stay


def _with_keep(prune: Callable, default: dict) -> Callable:
    """call(model, keep=None) for a heads / MLP-neuron function that takes keep={layer: indices}."""
    return lambda m, keep=None: prune(m, copy.deepcopy(default) if keep is None else keep)


FRACTION = {"sparsity": "fraction"}
TRAINING = frozenset({"eval", "masked"})
COUNTING = NORMAL | HALF
EVAL_ONLY = frozenset({"eval"})  # masked models refused on purpose ("call make_permanent(model) first")
UNMASKED_ANY_DTYPE = EVAL_ONLY | HALF

ENTRIES: list[Entry] = [
    # unstructured scores
    Entry("magnitude_scores", mp.magnitude_scores, lambda m, p=1, names=None: mp.magnitude_scores(m, p, names),
          args={"p": "positive_float", "names": "names"}, supports=COUNTING),
    Entry("random_scores", mp.random_scores, lambda m, seed=0, names=None: mp.random_scores(m, seed, names),
          args={"seed": "non_negative_int", "names": "names"}, supports=COUNTING),
    Entry("gradient_scores", mp.gradient_scores,
          lambda m, loader, batches=1, names=None, device=None: mp.gradient_scores(m, loader, batches, names,
                                                                                   device=device),
          args={"loader": "loader", "batches": "positive_int", "names": "names", "device": "device"},
          defaults=_loader_only),
    Entry("taylor_scores", mp.taylor_scores,
          lambda m, loader, batches=1, device=None: mp.taylor_scores(m, loader, batches, device=device),
          args={"loader": "loader", "batches": "positive_int", "device": "device"}, defaults=_loader_only),
    Entry("snip_scores", mp.snip_scores, lambda m, loader, batches=1: mp.snip_scores(m, loader, batches),
          args={"loader": "loader", "batches": "positive_int"}, defaults=_loader_only),
    Entry("grasp_scores", mp.grasp_scores,
          lambda m, loader, temperature=200.0: mp.grasp_scores(m, loader, temperature=temperature),
          args={"loader": "loader", "temperature": "positive_float"}, defaults=_loader_only),
    Entry("synflow_scores", mp.synflow_scores,
          lambda m, names=None, input_shape=None, device=None: mp.synflow_scores(m, names, input_shape,
                                                                                 device=device),
          args={"names": "names", "input_shape": "input_shape", "device": "device"}, supports=COUNTING),
    Entry("synflow_masks", mp.synflow_masks,
          lambda m, sparsity=0.5, rounds=2: mp.synflow_masks(m, sparsity, rounds),
          args={"sparsity": "fraction", "rounds": "positive_int"}, supports=COUNTING),
    # pruning and masks
    Entry("prune", mp.prune, lambda m, scores, sparsity=0.5, scope="local": mp.prune(m, scores, sparsity,
                                                                                      scope=scope),
          args={"scores": "scores", "sparsity": "fraction", "scope": "choice"}, defaults=_scores, supports=COUNTING),
    Entry("apply_masks", mp.apply_masks, lambda m, masks: mp.apply_masks(m, masks),
          args={"masks": "masks"}, defaults=lambda ref: {"masks": mp.make_masks(mp.magnitude_scores(ref), 0.5)},
          supports=COUNTING),
    Entry("make_permanent", mp.make_permanent, lambda m: mp.make_permanent(m), model=masked_mlp,
          supports=COUNTING, variants=("float16", "bfloat16", "eval", "not_module")),
    Entry("get_masks", mp.get_masks, lambda m: mp.get_masks(m), model=masked_mlp, supports=COUNTING,
          variants=("float16", "bfloat16", "meta", "eval", "not_module")),
    Entry("copy_model", mp.copy_model, lambda m: mp.copy_model(m), supports=COUNTING | {"meta"}),
    Entry("effective_parameters", mp.effective_parameters, lambda m: mp.effective_parameters(m),
          supports=COUNTING | {"meta"}),
    Entry("load_masked_state_dict", mp.load_masked_state_dict,
          lambda m, state_dict: mp.load_masked_state_dict(m, state_dict), args={"state_dict": "tensor_dict"},
          defaults=lambda ref: {"state_dict": masked(ref).state_dict()}, supports=COUNTING,
          variants=("float16", "bfloat16", "meta", "eval", "not_module")),
    Entry("fine_tune", mp.fine_tune,
          lambda m, data, config=None, device=None: mp.fine_tune(m, data, config or mp.TrainConfig(epochs=1),
                                                                  device=device),
          args={"data": "loader", "config": "train_config", "device": "device"},
          defaults=lambda ref: {"data": loader()}, supports=TRAINING),
    Entry("iterative_prune", mp.iterative_prune,
          lambda m, data, score_fn=mp.magnitude_scores, sparsities=(0.5,), config=None: mp.iterative_prune(
              m, score_fn, sparsities, data, config or mp.IterativeConfig(epochs=1)),
          args={"score_fn": "callable", "sparsities": "sparsities", "data": "loader", "config": "iterative_config"},
          defaults=lambda ref: {"data": loader()}, supports=TRAINING),
    Entry("find_ticket", mp.find_ticket,
          lambda m, train=train_one_epoch, final=0.5, rounds=1, scope="global", rewind_to=None: mp.find_ticket(
              m, train, final, rounds=rounds, scope=scope, rewind_to=rewind_to),
          args={"train": "callable", "final": "fraction", "rounds": "positive_int", "scope": "choice",
                "rewind_to": "tensor_dict"}, supports=TRAINING),
    Entry("sensitivity_scan", mp.sensitivity_scan,
          lambda m, loader, sparsities=(0.5,), names=None, score_fn=mp.magnitude_scores: mp.sensitivity_scan(
              m, loader, sparsities, names=names, score_fn=score_fn),
          args={"loader": "loader", "sparsities": "sparsities", "names": "names", "score_fn": "callable"},
          defaults=_loader_only),
    Entry("snapshot", mp.snapshot, lambda m: mp.snapshot(m), supports=COUNTING),
    Entry("rewind", mp.rewind, lambda m, saved: mp.rewind(m, saved), args={"saved": "tensor_dict"},
          defaults=lambda ref: {"saved": mp.snapshot(ref)}, supports=COUNTING),
    Entry("random_reinit", mp.random_reinit, lambda m, seed=0: mp.random_reinit(m, seed),
          args={"seed": "non_negative_int"}, supports=COUNTING),
    Entry("storage_table", mp.storage_table, lambda m, bits=4: mp.storage_table(m, bits=bits),
          args={"bits": "positive_int"}, supports=COUNTING),
    # dynamic pruning
    Entry("GradualPruner", mp.GradualPruner, _gradual,
          args={"schedule": "schedule", "score_fn": "callable", "scope": "choice"}),
    Entry("GradualPruner+fit", mp.fit, _fit_with, args={"data": "loader_or_none"}, setup=_gradual_setup,
          supports=TRAINING),
    Entry("DynamicSparseTrainer", mp.DynamicSparseTrainer,
          lambda m, config=None: mp.DynamicSparseTrainer(m, config), args={"config": "sparse_config"},
          supports=EVAL_ONLY),
    Entry("DynamicSparseTrainer+fit", mp.fit, _fit_with, args={"data": "loader_or_none"}, setup=_sparse_setup,
          supports=EVAL_ONLY),
    # training and evaluation
    Entry("fit", mp.fit,
          lambda m, loader, config, val_loader=None, loss_fn=None, device=None: mp.fit(
              m, loader, config, val_loader=val_loader, loss_fn=loss_fn, device=device, progress=False),
          args={"loader": "loader", "config": "train_config", "val_loader": "loader_or_none",
                "loss_fn": "callable", "device": "device"}, defaults=_fit_defaults, supports=TRAINING),
    Entry("evaluate", mp.evaluate, lambda m, loader, device=None: mp.evaluate(m, loader, device=device),
          args={"loader": "loader", "device": "device"}, defaults=_loader_only, supports=COUNTING),
    Entry("accuracy", mp.accuracy, lambda m, loader, device=None: mp.accuracy(m, loader, device=device),
          args={"loader": "loader", "device": "device"}, defaults=_loader_only, supports=COUNTING),
    Entry("distill_student", mp.distill_student,
          lambda m, teacher, loader, kd=None, train=None: mp.distill_student(
              m, teacher, loader, kd, train or mp.TrainConfig(epochs=1), progress=False),
          args={"teacher": "module", "loader": "loader", "kd": "kd_config", "train": "train_config"},
          defaults=lambda ref: {"teacher": mlp(), "loader": loader()}, supports=TRAINING),
    # structured pruning
    Entry("prune_channels", mp.prune_channels,
          lambda m, sparsity=0.5, scope="local", round_to=None, example=None, scores=None: mp.prune_channels(
              m, sparsity, scope=scope, round_to=round_to, example=example, scores=scores),
          model=vgg, args={"sparsity": "fraction", "scope": "choice", "round_to": "positive_int_or_none",
                           "example": "tensor_input", "scores": "scores"}, supports=COUNTING),
    Entry("select_channels", mp.select_channels, _select, model=vgg,
          args={"sparsity": "fraction", "scope": "choice", "round_to": "positive_int_or_none",
                "group_scores": "group_scores"}, defaults=_group_scores, variants=()),
    Entry("remove_channels", mp.remove_channels,
          lambda m, keep, graph=None, example=None: mp.remove_channels(m, keep, graph, example=example),
          model=vgg, args={"keep": "keep", "graph": "graph", "example": "tensor_input"},
          defaults=lambda ref: {"keep": keep_half(ref)},
          supports=COUNTING, variants=("float16", "bfloat16", "meta", "eval", "not_module")),
    Entry("channel_masks", mp.channel_masks, lambda m, keep, graph: mp.channel_masks(m, keep, graph), model=vgg,
          args={"keep": "keep", "graph": "graph"}, defaults=_graph_keep, supports=COUNTING,
          variants=("float16", "bfloat16", "meta", "eval", "not_module")),
    Entry("masked_equivalent", mp.masked_equivalent, lambda m, keep, graph: mp.masked_equivalent(m, keep, graph),
          model=vgg, args={"keep": "keep", "graph": "graph"}, defaults=_graph_keep, supports=COUNTING,
          variants=("float16", "bfloat16", "meta", "eval", "not_module")),
    Entry("check_compacted", mp.check_compacted,
          lambda m, compacted, keep, graph, tolerance=None: mp.check_compacted(m, compacted, keep, graph,
                                                                              tolerance),
          model=vgg, args={"compacted": "module", "keep": "keep", "tolerance": "non_negative_float"},
          defaults=_compacted, variants=("meta", "eval", "not_module")),
    Entry("trace_groups", mp.trace_groups, lambda m, example=None: mp.trace_groups(m, example), model=vgg,
          args={"example": "tensor_input"}, supports=COUNTING | {"meta"}),
    Entry("norm_scores", mp.norm_scores, lambda m, p=1: mp.norm_scores(m, p), model=vgg,
          args={"p": "positive_int"}, supports=COUNTING),
    Entry("activation_scores", mp.activation_scores,
          lambda m, loader, stat="mean", max_batches=1: mp.activation_scores(m, loader, stat=stat,
                                                                             max_batches=max_batches),
          model=vgg, args={"loader": "loader", "stat": "choice", "max_batches": "positive_int"},
          defaults=_loader_only, supports=COUNTING),
    Entry("taylor_unit_scores", mp.taylor_unit_scores,
          lambda m, loader, max_batches=1: mp.taylor_unit_scores(m, loader, max_batches=max_batches), model=vgg,
          args={"loader": "loader", "max_batches": "positive_int"}, defaults=_loader_only),
    Entry("drop_blocks", mp.drop_blocks, lambda m, names=("layers.0",), example=None: mp.drop_blocks(
        m, list(names) if isinstance(names, tuple) else names, example=example), model=resnet,
          args={"names": "block_names", "example": "tensor_input"}, supports=COUNTING),
    Entry("droppable", mp.droppable, lambda m, example=None: mp.droppable(m, example), model=resnet,
          args={"example": "tensor_input"}, supports=COUNTING),
    Entry("block_scores", mp.block_scores, lambda m, x=None, y=None: mp.block_scores(
        m, _like(m, example()) if x is None else x, y), model=resnet, args={"x": "tensor_input", "y": "labels"},
          supports=COUNTING),
    Entry("prune_blocks", mp.prune_blocks, lambda m, n=1: mp.prune_blocks(m, _like(m, example()), labels(), n=n),
          model=resnet, args={"n": "block_count"}, supports=COUNTING),
    Entry("nm_masks", mp.nm_masks, _nm_masks, args={"scores": "free_scores", "n": "nm_n", "m": "positive_int"},
          defaults=_scores, variants=()),
    Entry("nm_report", mp.nm_report, lambda m, masks, n=2, m_=4, value_bits=16: mp.nm_report(
        m, masks, n, m_, value_bits=value_bits), args={"masks": "masks", "value_bits": "positive_int"},
          defaults=lambda ref: {"masks": mp.nm_masks(mp.magnitude_scores(ref))}, supports=COUNTING | {"meta"}),
    Entry("to_csr", mp.to_csr, lambda m: mp.to_csr(m), supports=NORMAL),
    # quantization
    Entry("share_weights", mp.share_weights,
          lambda m, bits=2, names=None, iters=2: mp.share_weights(m, bits, names=names, iters=iters),
          args={"bits": "quant_bits", "names": "names", "iters": "positive_int"}, supports=UNMASKED_ANY_DTYPE),
    Entry("unshare_weights", mp.unshare_weights, lambda m: mp.unshare_weights(m), model=shared_mlp,
          supports=COUNTING, variants=("float16", "bfloat16", "eval", "not_module")),
    Entry("swap_fake_quant", mp.swap_fake_quant, lambda m, bits=8: mp.swap_fake_quant(m, bits),
          args={"bits": "quant_bits"}, supports=UNMASKED_ANY_DTYPE),
    Entry("strip_fake_quant", mp.strip_fake_quant, lambda m: mp.strip_fake_quant(m), model=fake_quant_mlp,
          supports=COUNTING, variants=("float16", "bfloat16", "eval", "not_module")),
    Entry("quantize_weights", mp.quantize_weights, lambda m, bits=8: mp.quantize_weights(m, bits),
          args={"bits": "quant_bits"}, supports=UNMASKED_ANY_DTYPE),
    Entry("dynamic_int8", mp.dynamic_int8, lambda m, engine="auto": mp.dynamic_int8(m, engine=engine),
          args={"engine": "choice"}, supports=UNMASKED_ANY_DTYPE),
    Entry("static_int8", mp.static_int8,
          lambda m, calibration, engine="auto": mp.static_int8(m, calibration, engine=engine),
          model=cnn, args={"calibration": "calibration", "engine": "choice"},
          defaults=lambda ref: {"calibration": loader()}, supports=UNMASKED_ANY_DTYPE),
    Entry("activation_ranges", mp.activation_ranges,
          lambda m, batches, types=(nn.Conv2d, nn.Linear): mp.activation_ranges(m, batches, types),
          model=cnn, args={"batches": "calibration", "types": "choice"}, defaults=_batches_only, supports=COUNTING),
    Entry("prepare_qat_int8", mp.prepare_qat_int8, lambda m, engine="auto": mp.prepare_qat_int8(m, engine=engine),
          model=cnn, args={"engine": "choice"}, supports=EVAL_ONLY),
    Entry("int8_weights", mp.int8_weights, lambda m: mp.int8_weights(m), model=int8_mlp,
          supports=NORMAL | {"float_not_int8"}, variants=("eval", "not_module", "float_not_int8")),
    Entry("save_int8", mp.save_int8, lambda m, path=AUTO: mp.save_int8(_path(path, ".int8"), m),
          model=int8_mlp, args={"path": "path"}, variants=("eval", "not_module", "float_not_int8")),
    Entry("save_compressed", mp.save_compressed,
          lambda m, path=AUTO, max_gap=256, float_dtype="float16": mp.save_compressed(
              _path(path, ".mpz"), m, max_gap=max_gap, float_dtype=float_dtype),
          model=shared_mlp, args={"path": "path", "max_gap": "positive_int", "float_dtype": "choice"},
          supports=COUNTING, variants=("float16", "bfloat16", "eval", "not_module")),
    Entry("save_model", mp.save_model,
          lambda m, path=AUTO, description=None, meta=None: mp.save_model(
              _path(path, ".pt"), m, description=description, meta=meta),
          args={"path": "path", "description": "dict_or_none", "meta": "dict_or_none"}, supports=COUNTING),
    # measurement
    Entry("count_params", mp.count_params, lambda m: mp.count_params(m), supports=COUNTING | {"meta"}),
    Entry("count_nonzeros", mp.count_nonzeros, lambda m: mp.count_nonzeros(m), supports=COUNTING),
    Entry("model_sparsity", mp.model_sparsity, lambda m: mp.model_sparsity(m), supports=COUNTING),
    Entry("layer_sparsity", mp.layer_sparsity, lambda m: mp.layer_sparsity(m), supports=COUNTING),
    Entry("size_on_disk", mp.size_on_disk, lambda m: mp.size_on_disk(m), supports=COUNTING),
    Entry("count_macs", mp.count_macs, lambda m, input_shape=None: mp.count_macs(m, input_shape),
          args={"input_shape": "input_shape"}, supports=COUNTING | {"meta"}),
    Entry("latency", mp.latency,
          lambda m, input_shape=None, batch_size=2, threads=1, warmup=0, repeats=2: mp.latency(
              m, input_shape, batch_size=batch_size, threads=threads, warmup=warmup, repeats=repeats),
          args={"input_shape": "input_shape", "batch_size": "positive_int", "threads": "positive_int_or_none",
                "warmup": "non_negative_int", "repeats": "positive_int"}, supports=COUNTING),
    Entry("layer_latency", mp.layer_latency,
          lambda m, batch_size=2, threads=1, repeats=2: mp.layer_latency(m, batch_size=batch_size, threads=threads,
                                                                         warmup=0, repeats=repeats),
          args={"batch_size": "positive_int", "threads": "positive_int_or_none", "repeats": "positive_int"},
          supports=COUNTING),
    Entry("summary", mp.summary,
          lambda m, loader=None, input_shape=None, timing=False: mp.summary(m, loader, input_shape=input_shape,
                                                                            timing=timing),
          args={"loader": "loader_or_none", "input_shape": "input_shape", "timing": "timing"}, supports=COUNTING),
    Entry("compare", mp.compare,
          lambda m, loader=None, baseline=None: mp.compare({"a": m, "b": mlp()}, loader, baseline=baseline,
                                                           timing=False),
          args={"loader": "loader_or_none", "baseline": "choice_or_none"}, supports=COUNTING),
    Entry("estimate_energy", mp.estimate_energy,
          lambda m, input_shape=None, options=None: mp.estimate_energy(
              m, input_shape, **({} if options is None else {"options": options})),
          args={"input_shape": "input_shape", "options": "config_object"}, supports=COUNTING),
    Entry("layer_counts", mp.layer_counts, lambda m, input_shape=None: mp.layer_counts(m, input_shape),
          args={"input_shape": "input_shape"}, supports=COUNTING),
    # transformers (notebook 12): heads, MLP neurons, residual width, depth, tokens
    Entry("head_scores", mp.head_scores, lambda m, norm="l1": mp.head_scores(m, norm), model=vit,
          args={"norm": "choice"}, supports=COUNTING),
    Entry("mask_heads", mp.mask_heads, _with_keep(mp.mask_heads, HEAD_KEEP), model=vit,
          args={"keep": "head_keep"}, supports=COUNTING),
    Entry("prune_heads", mp.prune_heads, _with_keep(mp.prune_heads, HEAD_KEEP), model=vit,
          args={"keep": "head_keep"}, supports=UNMASKED_ANY_DTYPE),
    Entry("head_ablation", mp.head_ablation,
          lambda m, loader, max_batches=1, device=None: mp.head_ablation(m, loader, max_batches=max_batches,
                                                                         device=device),
          model=vit, args={"loader": "loader", "max_batches": "positive_int", "device": "device"},
          defaults=_loader_only, supports=COUNTING),
    Entry("head_taylor_scores", mp.head_taylor_scores,
          lambda m, loader, max_batches=1, device=None: mp.head_taylor_scores(m, loader, max_batches=max_batches,
                                                                              device=device),
          model=vit, args={"loader": "loader", "max_batches": "positive_int", "device": "device"},
          defaults=_loader_only),
    Entry("head_entropy", mp.head_entropy,
          lambda m, loader, max_batches=1, device=None: mp.head_entropy(m, loader, max_batches=max_batches,
                                                                        device=device),
          model=vit, args={"loader": "loader", "max_batches": "positive_int", "device": "device"},
          defaults=_loader_only, supports=COUNTING),
    Entry("neuron_scores", mp.neuron_scores, lambda m, norm="l1": mp.neuron_scores(m, norm), model=vit,
          args={"norm": "choice"}, supports=COUNTING),
    Entry("mask_neurons", mp.mask_neurons, _with_keep(mp.mask_neurons, NEURON_KEEP), model=vit,
          args={"keep": "neuron_keep"}, supports=COUNTING),
    Entry("prune_mlp", mp.prune_mlp, _with_keep(mp.prune_mlp, NEURON_KEEP), model=vit,
          args={"keep": "neuron_keep"}, supports=UNMASKED_ANY_DTYPE),
    Entry("prune_width", mp.prune_width, lambda m, keep=(0, 2, 5): mp.prune_width(m, keep), model=vit,
          args={"keep": "channel_keep"}, supports=UNMASKED_ANY_DTYPE),
    Entry("prune_width+chargpt", mp.prune_width, lambda m, keep=(0, 2, 5): mp.prune_width(m, keep), model=gpt,
          args={"keep": "channel_keep"}, supports=UNMASKED_ANY_DTYPE),
    Entry("mask_width", mp.mask_width, lambda m, keep=(0, 2, 5): mp.mask_width(m, keep), model=vit,
          args={"keep": "channel_keep"}, supports=COUNTING),
    Entry("zero_width", mp.zero_width, lambda m, keep=(0, 2, 5): mp.zero_width(m, keep), model=gpt,
          args={"keep": "channel_keep"}, supports=COUNTING),
    Entry("width_scores", mp.width_scores,
          lambda m, norm="l2", max_batches=1: mp.width_scores(m, norm, max_batches=max_batches), model=vit,
          args={"norm": "choice", "max_batches": "positive_int"}, supports=COUNTING),
    Entry("width_scores+loader", mp.width_scores,
          lambda m, loader, max_batches=1: mp.width_scores(m, loader=loader, max_batches=max_batches), model=vit,
          args={"loader": "loader_or_none", "max_batches": "positive_int"}, defaults=_loader_only),
    Entry("select_width", mp.select_width, lambda m, scores=None, fraction=0.5: mp.select_width(
        mp.width_scores(m) if scores is None else scores, fraction), model=vit,
          args={"scores": "unit_scores", "fraction": "fraction"}, variants=()),
    Entry("mask_blocks", mp.mask_blocks, lambda m, drop=(0,): mp.mask_blocks(m, drop), model=vit,
          args={"drop": "block_drop"}, supports=COUNTING),
    Entry("transformers.drop_blocks", drop_transformer_blocks, lambda m, drop=(0,): drop_transformer_blocks(m, drop),
          model=gpt, args={"drop": "block_drop"}, supports=COUNTING),
    Entry("select_blocks", mp.select_blocks, lambda m, scores, n_drop=1: mp.select_blocks(scores, n_drop), model=vit,
          args={"scores": "unit_scores", "n_drop": "block_count"},
          defaults=lambda ref: {"scores": torch.tensor([0.2, 0.1])}, variants=()),
    Entry("block_importance", mp.block_importance,
          lambda m, loader, max_batches=1: mp.block_importance(m, loader, max_batches), model=vit,
          args={"loader": "loader", "max_batches": "positive_int"}, defaults=_loader_only),
    Entry("block_ablation", mp.block_ablation,
          lambda m, loader, max_batches=1, device=None: mp.block_ablation(m, loader, max_batches=max_batches,
                                                                          device=device),
          model=vit, args={"loader": "loader", "max_batches": "positive_int", "device": "device"},
          defaults=_loader_only, supports=COUNTING),
    Entry("block_ablation+chargpt", mp.block_ablation,
          lambda m, loader, max_batches=1: mp.block_ablation(m, loader, max_batches=max_batches), model=gpt,
          args={"loader": "loader", "max_batches": "positive_int"}, defaults=lambda ref: {"loader": token_loader()},
          supports=COUNTING),
    Entry("TokenPruned", mp.TokenPruned, lambda m, keep_rate=0.5, after=(0, 1), fuse=True: mp.TokenPruned(
        m, keep_rate, after, fuse)(_like(m, example())), model=vit,
          args={"keep_rate": "rate", "after": "block_after", "fuse": "flag"}, supports=COUNTING),
    Entry("TokenPruned.kept_patches", mp.TokenPruned, lambda m, x=None: mp.TokenPruned(m, after=(0,)).kept_patches(
        _like(m, example()) if x is None else x), model=vit, args={"x": "tensor_input"}, supports=COUNTING),
    Entry("TokenMerged", mp.TokenMerged, lambda m, r=2: mp.TokenMerged(m, r)(_like(m, example())), model=vit,
          args={"r": "merge_r"}, supports=COUNTING),
    Entry("TokenMerged.token_sizes", mp.TokenMerged, lambda m, x=None: mp.TokenMerged(m, 2).token_sizes(
        _like(m, example()) if x is None else x), model=vit, args={"x": "tensor_input"}, supports=COUNTING),
    Entry("distill_student+chargpt", mp.distill_student,
          lambda m, teacher, loader, kd=None: mp.distill_student(m, teacher, loader, kd, mp.TrainConfig(epochs=1),
                                                                 progress=False),
          model=gpt, args={"teacher": "module", "loader": "loader", "kd": "kd_config"},
          defaults=lambda ref: {"teacher": gpt(), "loader": token_loader()}, supports=TRAINING),
    Entry("estimate_energy+chargpt", mp.estimate_energy,
          lambda m, input_shape=None: mp.estimate_energy(m, input_shape), model=gpt,
          args={"input_shape": "input_shape"}, supports=COUNTING),
    # one-shot pruning (notebook 13): calibration statistics, OBD, OBS, Wanda, SparseGPT
    Entry("input_hessians", mp.input_hessians,
          lambda m, batches, names=None, max_batches=1: mp.input_hessians(m, batches, names, max_batches=max_batches),
          args={"batches": "calibration", "names": "names", "max_batches": "positive_int_or_none"},
          defaults=_batches_only, supports=COUNTING),
    Entry("input_norms", mp.input_norms,
          lambda m, batches, names=None, max_batches=1: mp.input_norms(m, batches, names, max_batches=max_batches),
          model=gpt, args={"batches": "calibration", "names": "names", "max_batches": "positive_int_or_none"},
          defaults=_token_batches, supports=COUNTING),
    Entry("obd_scores", mp.obd_scores,
          lambda m, batches, kind="hessian", max_batches=1: mp.obd_scores(m, batches, kind=kind,
                                                                          max_batches=max_batches),
          args={"batches": "calibration", "kind": "choice", "max_batches": "positive_int_or_none"},
          defaults=_batches_only),
    Entry("obd_scores+fisher", mp.obd_scores,
          lambda m, batches, names=None, loss_fn=None: mp.obd_scores(m, batches, kind="fisher", names=names,
                                                                      max_batches=1, loss_fn=loss_fn),
          args={"batches": "loader", "names": "names", "loss_fn": "callable"}, defaults=_batches_only),
    Entry("obs_prune", mp.obs_prune,
          lambda m, batches, sparsity=0.5, damp=0.01, names=None: mp.obs_prune(m, batches, sparsity, damp=damp,
                                                                                names=names, max_batches=1),
          model=cnn, args={"batches": "calibration", "sparsity": "fraction", "damp": "non_negative_float",
                           "names": "names"}, defaults=_batches_only),
    Entry("wanda_scores", mp.wanda_scores,
          lambda m, batches, names=None, max_batches=1: mp.wanda_scores(m, batches, names, max_batches=max_batches),
          model=cnn, args={"batches": "calibration", "names": "names", "max_batches": "positive_int_or_none"},
          defaults=_batches_only, supports=COUNTING),
    Entry("wanda", mp.wanda,
          lambda m, batches, sparsity=0.5, nm=None, names=None: mp.wanda(m, batches, sparsity, nm=nm, names=names,
                                                                         max_batches=1),
          model=gpt, args={"batches": "calibration", "sparsity": "fraction", "names": "names"},
          defaults=_token_batches, supports=COUNTING),
    Entry("wanda+nm", mp.wanda,
          lambda m, batches, nm=(2, 4): mp.wanda(m, batches, nm=nm, max_batches=1),
          model=gpt, args={"nm": "nm_pair"}, defaults=_token_batches, supports=COUNTING),
    Entry("sparsegpt", mp.sparsegpt,
          lambda m, batches, sparsity=0.5, blocksize=8, damp=0.01, names=None, max_batches=1: mp.sparsegpt(
              m, batches, sparsity, blocksize=blocksize, damp=damp, names=names, max_batches=max_batches),
          model=gpt, args={"batches": "calibration", "sparsity": "fraction", "blocksize": "positive_int",
                           "damp": "non_negative_float", "names": "names", "max_batches": "positive_int_or_none"},
          defaults=_token_batches, supports=COUNTING),  # float16 is pruned in float64 and written back
    Entry("sparsegpt+nm", mp.sparsegpt,
          lambda m, batches, nm=(2, 4): mp.sparsegpt(m, batches, nm=nm, blocksize=8, max_batches=1),
          model=gpt, args={"nm": "nm_pair"}, defaults=_token_batches, supports=COUNTING),
    # deployment
    Entry("deployable_copy", mp.deployable_copy, lambda m: mp.deployable_copy(m), supports=COUNTING),
    Entry("export_onnx", mp.export_onnx,
          lambda m, path=None, example=None, atol=1e-4, threads=1: mp.export_onnx(m, path, example=example,
                                                                                  atol=atol, threads=threads),
          args={"path": "path_or_none", "example": "tensor_input", "atol": "non_negative_float",
                "threads": "positive_int"}),
]
ENTRIES_BY_NAME = {e.name: e for e in ENTRIES}
assert len(ENTRIES_BY_NAME) == len(ENTRIES), "duplicate entry names"


# ---- cases ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad call: `entry` with `arg` set to the bad value labelled `value`, or (arg 'model') a model variant."""

    entry: str
    arg: str
    value: str

    def __str__(self) -> str:
        return f"{self.entry}({self.arg}={self.value})"


def bad_value(case: Case) -> Bad:
    kind = ENTRIES_BY_NAME[case.entry].args[case.arg]
    return next(b for b in KINDS[kind] if b.label == case.value)


def argument_cases() -> list[Case]:
    return [Case(e.name, arg, bad.label) for e in ENTRIES for arg, kind in e.args.items() for bad in KINDS[kind]]


def variant_cases() -> list[Case]:
    return [Case(e.name, "model", v) for e in ENTRIES for v in e.variants]


def all_cases() -> list[Case]:
    return argument_cases() + variant_cases()


# ---- what a failed call must not change -------------------------------------------------------------------------

def _hook_counts(module: nn.Module) -> tuple:
    return tuple(len(getattr(module, a)) for a in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                                    "_backward_pre_hooks", "_state_dict_hooks",
                                                    "_load_state_dict_pre_hooks"))


def _global_hooks() -> tuple:
    from torch.nn.modules import module as m
    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
             "_global_backward_pre_hooks")
    return tuple(len(getattr(m, n, {})) for n in names)


def _copy(t):
    """A copy to compare later: a plain tensor cloned (a meta one kept), anything else (int8 packed parameters,
    quantized tensors, dtypes in an int8 state_dict) as the bytes torch.save writes for it."""
    if t is None:
        return None
    if isinstance(t, torch.Tensor) and not t.is_quantized:
        return t if t.is_meta else t.detach().clone()
    buffer = io.BytesIO()
    torch.save(t, buffer)
    return buffer.getvalue()


def snapshot_model(model) -> dict | None:
    """Everything a failed call must leave as it was, deep-copied; None for a non-Module."""
    if not isinstance(model, nn.Module):
        return None
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return {
        "state": {k: _copy(v) for k, v in model.state_dict(keep_vars=False).items()},
        "tensors": {k: (t.dtype, t.device, tuple(t.shape)) for k, t in tensors},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters(remove_duplicate=False)},
        "grads": {k: _copy(p.grad) for k, p in model.named_parameters(remove_duplicate=False)},
        "training": {k: m.training for k, m in model.named_modules(remove_duplicate=False)},
        "hooks": {k: _hook_counts(m) for k, m in model.named_modules(remove_duplicate=False)},
        "parametrized": {k: sorted(m.parametrizations) if parametrize.is_parametrized(m) else None
                         for k, m in model.named_modules(remove_duplicate=False)},
        "attributes": {k: sorted({*vars(m), *m._parameters, *m._buffers, *m._modules})
                       for k, m in model.named_modules(remove_duplicate=False)},
        "global_hooks": _global_hooks(),
    }


def same_tensor(a, b) -> bool:
    """torch.equal, except that NaN equals NaN; meta tensors compare by shape and dtype."""
    if a is None or b is None:
        return a is b
    if isinstance(a, bytes) or isinstance(b, bytes):
        return a == b
    if a.is_meta or b.is_meta:
        return a.is_meta and b.is_meta and a.shape == b.shape and a.dtype == b.dtype
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _dict_changes(what: str, before: dict, after: dict, same=lambda a, b: a == b) -> list[str]:
    if before.keys() != after.keys():
        added, gone = sorted(set(after) - set(before)), sorted(set(before) - set(after))
        return [f"{what} keys changed (added {added[:3]}, removed {gone[:3]})"]
    return [f"{what} {k!r} changed" for k in before if not same(before[k], after[k])][:3]


def model_changes(before: dict | None, model) -> list[str]:
    """What differs between `before` (a `snapshot_model`) and `model` now; [] when nothing does."""
    if before is None:
        return []
    now = snapshot_model(model)
    out = _dict_changes("state_dict", before["state"], now["state"], same_tensor)
    for key in ("tensors", "requires_grad", "training", "hooks", "parametrized", "attributes"):
        out += _dict_changes(key, before[key], now[key])
    out += _dict_changes("grad of", before["grads"], now["grads"], same_tensor)
    if before["global_hooks"] != now["global_hooks"]:
        out.append("global module hooks changed")
    return out


def success_changes(before: dict | None, model) -> list[str]:
    """For a supported variant that worked: the dtypes, devices and train/eval flags it must keep."""
    if before is None:
        return []
    now = snapshot_model(model)
    dtypes = lambda snap: {t[0] for t in snap["tensors"].values() if t[0].is_floating_point}  # noqa: E731
    out = [] if dtypes(before) == dtypes(now) else [f"float dtypes changed from {dtypes(before)} to {dtypes(now)}"]
    flipped = sorted(k for k, flag in before["training"].items() if now["training"].get(k, flag) != flag)
    if flipped:
        out.append(f"train/eval flag changed on {flipped[:3]}")
    return out


# ---- who raised ---------------------------------------------------------------------------------------------------

_RAISE = re.compile(r"\braise\b")


def innermost_frame(exc: BaseException):
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def raised_by_kit(exc: BaseException) -> bool:
    """True when `exc` was raised by a `raise` statement in a file under minprune/: its innermost traceback frame
    is in the kit, on a line that raises (not a torch op or a Python builtin failing inside kit code)."""
    tb = innermost_frame(exc)
    if tb is None:
        return False
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    if KIT not in path.parents:
        return False
    return bool(_RAISE.search(linecache.getline(str(path), tb.tb_lineno)))


def where(exc: BaseException) -> str:
    tb = innermost_frame(exc)
    if tb is None:
        return "?"
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    if KIT in path.parents:
        path = path.relative_to(KIT.parent)
    elif "site-packages" in path.parts:
        path = Path(*path.parts[path.parts.index("site-packages") + 1:])
    else:
        path = Path(path.name)  # the standard library: its file name only
    return f"{path}:{tb.tb_lineno}"


# ---- running one case -------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    case: Case
    klass: str  # clear, raw, silent, mutated, supported, refused
    error: str = ""  # the exception type, '' when none
    message: str = ""  # its first line
    detail: str = ""  # what went wrong, for the non-clear classes
    file: str = ""  # the library file of the entry

    @property
    def ok(self) -> bool:
        return self.klass in GOOD_CLASSES

    def as_dict(self) -> dict:
        return {"entry": self.case.entry, "arg": self.case.arg, "value": self.case.value, "class": self.klass,
                "error": self.error, "message": self.message, "detail": self.detail, "file": self.file}


def seeded(factory: Callable):
    """factory() after torch.manual_seed(0): the model and its reference model get the same weights."""
    torch.manual_seed(0)
    return factory()


def prepare(case: Case) -> tuple[Entry, object, dict, bool]:
    """(entry, model, kwargs, supported): the call `case` makes, built fresh."""
    entry = ENTRIES_BY_NAME[case.entry]
    ref = seeded(entry.model)
    if case.arg == "model":
        model = seeded(lambda: VARIANTS[case.value](entry.model))
        return entry, model, entry.kwargs(ref), case.value in entry.supports
    model = seeded(entry.model)
    return entry, model, entry.kwargs(ref, **{case.arg: bad_value(case).make(ref)}), False


def run_case(case: Case) -> Outcome:
    """Make the call of `case` and classify what happened (see the module docstring)."""
    entry, model, kwargs, supported = prepare(case)
    before = snapshot_model(model)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if entry.setup is not None:  # a bad model variant may already be refused here
                kwargs = {**entry.setup(model), **kwargs}
                before = snapshot_model(model)
            entry.call(model, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error is classified
            return _failed(case, entry, exc, model_changes(before, model), supported)
    if supported:
        changed = success_changes(before, model)
        if changed:
            return Outcome(case, "mutated", detail="succeeded but " + "; ".join(changed), file=entry.file)
        return Outcome(case, "supported", file=entry.file)
    return Outcome(case, "silent", detail="no error", file=entry.file)


_SCRATCH = re.compile(r"\S*minprune-bad-inputs\S*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    """The message's first line, without terminal colours or the (random) names of scratch files."""
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return _SCRATCH.sub("<scratch file>", text[0])[:200] if text else ""


def _failed(case: Case, entry: Entry, exc: Exception, changed: list[str], supported: bool) -> Outcome:
    error, message = type(exc).__name__, _first_line(exc)
    out = Outcome(case, "clear", error, message, file=entry.file)
    problems = []
    if not raised_by_kit(exc):
        problems.append(f"raised at {where(exc)}")
    elif not isinstance(exc, KIT_ERRORS):
        problems.append(f"type {error} at {where(exc)}")
    if problems:
        out.klass = "raw"
    elif changed:
        out.klass = "mutated"
    elif supported:
        out.klass = "refused"
        problems.append("a supported variant was refused")
    if changed:
        problems.append("model changed: " + "; ".join(changed))
    out.detail = "; ".join(problems)
    return out


def valid_call(entry: Entry):
    """The entry's call with its defaults on a fresh model (must succeed)."""
    ref, model = seeded(entry.model), seeded(entry.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = entry.kwargs(ref) if entry.setup is None else {**entry.setup(model), **entry.kwargs(ref)}
        return entry.call(model, **kwargs)
