"""Head and MLP-neuron pruning of TinyViT, side by side: minprune's transformer chapter next to Torch-Pruning 1.6.

Both remove the same share of whole attention heads (head_dim unchanged) and of MLP hidden neurons in every block,
ranked by the L1 (or L2) norm of each unit's weights; the residual width stays. Torch-Pruning's MetaPruner is set
up as in its examples/transformers/prune_hf_vit.py: `num_heads` for q, k and v, `prune_num_heads=True`, and
`prune_head_dims=False`, since our SelfAttention reads its head count from q.out_features // head_dim (no attribute
to update afterwards). Its default would also shrink the embedding: ignoring `embed` (the first layer whose outputs
are the residual stream) makes that whole coupled group unprunable, and ignoring `head` keeps the classes.

Torch-Pruning's group importance of a head is the mean, over the head's channels and over q, k, v (rows) and proj
(columns), of the summed |w|^p; minprune's is (the total of |w|^p) ** (1 / p). Both rank heads, and neurons (fc1
row plus fc2 column), the same way, so the two should keep the same units: `unit_differences` counts those they do
not. Its result is checked against minprune's surgery on the units it kept (every tensor equal), so it is never a
silently different model. Run: python bench/torch_pruning_vit.py [--epochs 10] [--out path.json]
(trains TinyViT on mnist-small, then prints params, MACs, batch-64 latency and accuracy without fine-tuning).
See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

import minprune as mp
from minprune.batches import check_loader
from minprune.masked import copy_model, get_masks
from minprune.tinyvit import TinyViT
from minprune.transformers.heads import attention_layers, head_scores, prune_heads, select_heads
from minprune.transformers.mlp_neurons import mlp_layers, neuron_scores, prune_mlp, select_neurons
from minprune.transformers.units import NORMS
from minprune.unstructured.masks import check_sparsity, n_pruned
from minprune.validate import float_model, positive_int

OUT = Path(__file__).parent / "results" / "torch_pruning_vit.json"
DIM_GATE = 0.5  # Torch-Pruning prunes heads only inside a width scope whose ratio is > 0; no head dim goes (see below)


def check_vit_args(model, head_ratio, mlp_ratio, importance, what: str) -> int:
    """The p (1 or 2) of `importance`, after checking every argument; TypeError for a model that is not a TinyViT,
    ValueError for a ratio outside [0, 1), an importance other than 'l1'/'l2', a non-float or masked model."""
    if not isinstance(model, TinyViT):
        raise TypeError(f"{what} prunes a TinyViT (mp.build('tinyvit')), got {type(model).__name__}")
    float_model(model, what)
    check_sparsity(head_ratio, "head_ratio")
    check_sparsity(mlp_ratio, "mlp_ratio")
    if not isinstance(importance, str) or importance not in NORMS:
        raise ValueError(f"importance must be 'l1' or 'l2', got {importance!r:.60}")
    masked = list(get_masks(model))
    if masked:
        raise ValueError(f"{what} prunes a model without pruning masks, but {masked[0]!r} carries one; fold the "
                         f"masks in first: mp.make_permanent(mp.copy_model(model))")
    return NORMS[importance]


def removed_count(units: int, ratio: float) -> int:
    """How many of `units` a `ratio` removes: the kit's rule, round(ratio * units), capped so one unit stays."""
    return min(n_pruned(units, ratio), units - 1)


def torch_pruning_ratios(model: TinyViT, head_ratio: float, mlp_ratio: float) -> tuple[dict, dict]:
    """({attention module: head ratio}, {fc1: neuron ratio}) that make Torch-Pruning remove `removed_count` units.

    Torch-Pruning removes ceil(r * heads) heads and keeps int(n * (1 - r)) of n neurons; the ratios are set half
    a unit inside those roundings, so float error cannot move a count by one.
    """
    heads, neurons = {}, {}
    for attn in attention_layers(model).values():
        k = removed_count(attn.heads, head_ratio)
        heads[attn] = (k - 0.5) / attn.heads if k else 0.0
    for mlp in mlp_layers(model).values():
        n = mlp.fc1.out_features
        k = removed_count(n, mlp_ratio)
        neurons[mlp.fc1] = 1 - (n - k + 0.5) / n if k else 0.0
    return heads, neurons


def _run_metapruner(model: TinyViT, p: int, head_ratio: float, mlp_ratio: float) -> None:
    """Prune `model` in place with Torch-Pruning's MetaPruner (local ranking, one step), its warnings silenced."""
    import torch_pruning as tp

    w = model.embed.weight
    example = torch.zeros(1, *model.input_shape, dtype=w.dtype, device=w.device)
    num_heads = {}
    for attn in attention_layers(model).values():
        for layer in (attn.q, attn.k, attn.v):
            num_heads[layer] = attn.heads
    head_dict, neuron_dict = torch_pruning_ratios(model, head_ratio, mlp_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unwrapped parameters detected: ['cls_token', 'pos']": the stream stays
        pruner = tp.pruner.MetaPruner(
            model, example, importance=tp.importance.MagnitudeImportance(p=p), pruning_ratio=DIM_GATE,
            pruning_ratio_dict=neuron_dict, ignored_layers=[model.embed, model.head], num_heads=num_heads,
            prune_num_heads=True, prune_head_dims=False, head_pruning_ratio_dict=head_dict)
        pruner.step()


def prune_vit_with_torch_pruning(model: TinyViT, head_ratio: float = 0.5, mlp_ratio: float = 0.5,
                                 importance: str = "l1") -> TinyViT:
    """A pruned copy of `model` made by Torch-Pruning: in every block `removed_count(heads, head_ratio)` whole heads
    and `removed_count(hidden, mlp_ratio)` MLP neurons go, by L1/L2 magnitude; the residual width stays. `model`
    never changes. Refused: see `check_vit_args`; RuntimeError when Torch-Pruning's result is not exactly
    minprune's surgery (`prune_heads`, `prune_mlp`) on the units it kept."""
    p = check_vit_args(model, head_ratio, mlp_ratio, importance, "prune_vit_with_torch_pruning")
    out = copy_model(model)
    _run_metapruner(out, p, head_ratio, mlp_ratio)
    check_same_as_surgery(model, out)
    return out


def minprune_vit(model: TinyViT, head_ratio: float = 0.5, mlp_ratio: float = 0.5, importance: str = "l1") -> TinyViT:
    """A pruned copy of `model` made by minprune's chapter: head_scores / select_heads / prune_heads, then
    neuron_scores / select_neurons / prune_mlp, locally (the same share in every block). `model` never changes."""
    check_vit_args(model, head_ratio, mlp_ratio, importance, "minprune_vit")
    heads = select_heads(head_scores(model, importance), head_ratio)
    neurons = select_neurons(neuron_scores(model, importance), mlp_ratio)
    return prune_mlp(prune_heads(model, heads), neurons)


def _match(original: torch.Tensor, kept: torch.Tensor, what: str) -> torch.Tensor:
    """Indices of the rows of `original` (units, features) equal to each row of `kept`, increasing; RuntimeError
    when a kept row equals no original row, or the order is not the original one."""
    same = (kept[:, None, :] == original[None, :, :]).all(-1)  # (kept, original)
    if not same.any(1).all():
        i = int((~same.any(1)).nonzero()[0])
        raise RuntimeError(f"{what}: unit {i} of the pruned model equals no unit of the original; it was not "
                           f"removed as whole units")
    idx = same.int().argmax(1)
    if len(idx) > 1 and not bool((idx[1:] > idx[:-1]).all()):
        raise RuntimeError(f"{what}: the pruned model keeps its units out of their original order")
    return idx


def _head_rows(attn) -> torch.Tensor:
    """(heads, head_dim * (3 * dim + 3 + dim)): each head's q, k, v rows and biases and its proj columns."""
    h, d = attn.heads, attn.head_dim
    parts = [getattr(attn, key).weight.reshape(h, -1) for key in "qkv"]
    parts += [getattr(attn, key).bias.reshape(h, -1) for key in "qkv" if getattr(attn, key).bias is not None]
    parts.append(attn.proj.weight.reshape(-1, h, d).transpose(0, 1).reshape(h, -1))
    return torch.cat(parts, 1).detach()


def _neuron_rows(mlp) -> torch.Tensor:
    """(hidden, 2 * dim + 1): each neuron's fc1 row and bias and its fc2 column."""
    parts = [mlp.fc1.weight, mlp.fc2.weight.T] + ([mlp.fc1.bias[:, None]] if mlp.fc1.bias is not None else [])
    return torch.cat(parts, 1).detach()


def kept_units(original: TinyViT, pruned: TinyViT) -> dict[str, dict[str, torch.Tensor]]:
    """{"heads": {attention name: kept indices}, "neurons": {MLP name: kept indices}}, found by matching every unit
    of `pruned` to the unit of `original` with exactly the same weights; RuntimeError naming the layer when a
    unit matches none (not whole heads, a changed head_dim) or the layers differ."""
    before, after = attention_layers(original), attention_layers(pruned)
    if list(before) != list(after) or list(mlp_layers(original)) != list(mlp_layers(pruned)):
        raise RuntimeError("the pruned model's attention or MLP layers are not those of the original")
    out = {"heads": {}, "neurons": {}}
    for name, attn in before.items():
        if after[name].head_dim != attn.head_dim or after[name].q.in_features != attn.q.in_features:
            raise RuntimeError(f"{name}: the pruned model changed head_dim or the residual width")
        out["heads"][name] = _match(_head_rows(attn), _head_rows(after[name]), name)
    for name, mlp in mlp_layers(original).items():
        out["neurons"][name] = _match(_neuron_rows(mlp), _neuron_rows(mlp_layers(pruned)[name]), name)
    return out


def check_same_as_surgery(original: TinyViT, pruned: TinyViT) -> None:
    """None when `pruned` is, tensor for tensor, minprune's `prune_mlp(prune_heads(original, ...), ...)` on the
    units `kept_units` finds (so its outputs equal the masked equivalent's); else RuntimeError naming the tensor."""
    keep = kept_units(original, pruned)
    expected = prune_mlp(prune_heads(original, keep["heads"]), keep["neurons"]).state_dict()
    got = pruned.state_dict()
    if list(got) != list(expected):
        raise RuntimeError(f"the pruned model's tensors {sorted(set(got) ^ set(expected))} differ from the surgery's")
    for key, t in expected.items():
        if got[key].shape != t.shape or not torch.equal(got[key], t):
            raise RuntimeError(f"{key!r} of the pruned model differs from minprune's surgery on the same units")


def unit_differences(model: TinyViT, a: TinyViT, b: TinyViT) -> dict[str, int]:
    """{"heads": n, "neurons": n}: how many units pruned copy `a` of `model` keeps that `b` does not (summed over
    the blocks; with the same count per layer, also how many `b` keeps that `a` does not)."""
    ka, kb = kept_units(model, a), kept_units(model, b)
    out = {}
    for kind in ("heads", "neurons"):
        out[kind] = sum(len(set(ka[kind][n].tolist()) - set(kb[kind][n].tolist())) for n in ka[kind])
    return out


def compare(model: TinyViT, loader, head_ratio: float = 0.5, mlp_ratio: float = 0.5, *, importance: str = "l1",
            threads: int = 1) -> list[dict]:
    """Rows {method, params, macs, latency_ms (median, batch 64, `threads` threads, the three models timed
    interleaved), acc (`mp.evaluate` on `loader`), heads_differ, neurons_differ (units kept unlike minprune)} for
    dense, minprune and Torch-Pruning, without fine-tuning. `model` never changes; every argument is checked before
    anything is pruned."""
    check_vit_args(model, head_ratio, mlp_ratio, importance, "compare")
    check_loader(loader)
    positive_int(threads, "threads")
    ours = minprune_vit(model, head_ratio, mlp_ratio, importance)
    theirs = prune_vit_with_torch_pruning(model, head_ratio, mlp_ratio, importance)
    differ = {"dense": {}, "minprune": {"heads": 0, "neurons": 0},
              "torch_pruning": unit_differences(model, theirs, ours)}
    models = {"dense": model, "minprune": ours, "torch_pruning": theirs}
    # interleaved rounds: on a shared machine, timing the models one after another measures the load, not them
    ms = mp.interleaved_latency(models, model.input_shape, batch_size=64, threads=threads)
    rows = []
    for method, m in models.items():
        rows.append({"method": method, "params": mp.count_params(m), "macs": mp.count_macs(m),
                     "latency_ms": ms[method], "acc": mp.evaluate(m, loader)["acc"],
                     "heads_differ": differ[method].get("heads"), "neurons_differ": differ[method].get("neurons")})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = mp.load("mnist-small")
    mp.seed_everything(0)
    model = mp.build("tinyvit")
    start = time.perf_counter()
    mp.fit(model, data.loader("train", 64), mp.TrainConfig(epochs=args.epochs), progress=False)
    train_s = time.perf_counter() - start
    results = {}
    for importance in ("l1", "l2"):
        rows = compare(model.eval(), data.loader("test", 500), importance=importance)
        dense_ms = rows[0]["latency_ms"]
        for row in rows:
            row["latency_ratio"] = row["latency_ms"] / dense_ms
        results[importance] = rows
        print(mp.Table(rows, title=f"TinyViT, {args.epochs} epochs on mnist-small, 50% heads / 50% MLP, {importance}"))
    meta = {"torch": torch.__version__, "torch_pruning": _tp_version(), "epochs": args.epochs,
            "train_s": round(train_s, 1), "threads": 2, "latency_threads": 1}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": results}, indent=2))


def _tp_version() -> str:
    import torch_pruning as tp

    return getattr(tp, "__version__", "unknown")


if __name__ == "__main__":
    main()
