"""Structured pruning over the torchvision classification zoo: minprune next to Torch-Pruning 1.6.1.

Every `torchvision.models.list_models(module=torchvision.models)` model (weights=None, eval, seed 0) loses 50% of
the channels of every prunable group (L1 scores, output layer kept) with minprune's `prune_channels` ("pruned" or
"refused: <first line>"; when pruned, the max relative error of `remove_channels` against the same channels
masked) and with Torch-Pruning's MagnitudePruner as in its examples/torchvision_models ("pruned" or "failed:
<first line>"). Then params and MACs (one counter for both), the wall time of each pruning step and the batch-16
latency of both pruned models, interleaved on one thread (`mp.time_models`, medians). Each model runs in a fresh
process, with time limits, at the smallest of 64, 75 and 224 px that its forward takes. Run: python
bench/structured_zoo.py [--models a,b] [--out name] [--quick] [--survey path.json]; a full run writes
bench/results/structured_zoo.json and .md after every model. See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import torch
import torch_pruning as tp
import torchvision
from torch import nn

import minprune as mp

SPARSITY = 0.5
SIZES = (64, 75, 224)  # the first at which a model's dense forward works (inception_v3: 75, ViT/MaxViT: 224)
BATCH = 16
THREADS = int(os.environ.get("MINPRUNE_BENCH_THREADS", "2"))  # for pruning; latency is timed on one thread
MEMORY_GB = float(os.environ.get("MINPRUNE_BENCH_MEMORY_GB", "16"))  # address space of each model's process
QUICK = ("resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5", "efficientnet_b0", "vit_b_32")
LIMITS = {"full": {"stage": 150, "model": 900, "latency": 8}, "quick": {"stage": 120, "model": 300, "latency": 3},
          "survey": {"stage": 120, "model": 600, "latency": 0}}  # s: per pruning stage, per model; latency's aim


def timed(limit: float, fn, *args, **kwargs):
    """(fn(*args, **kwargs), its wall time in s); a TimeoutError interrupts it after `limit` s (a tracer that loops)."""
    def expire(*_):
        raise TimeoutError(f"over {limit:.0f} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        start = time.perf_counter()
        return fn(*args, **kwargs), time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build(name: str) -> nn.Module:
    """Untrained, seed 0, eval; GoogLeNet/Inception without aux heads; a zero classifier (ViT's) gets N(0, 0.01)."""
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    if not (head := output_layer(model)).weight.any():  # else every output, pruned or not, is 0
        nn.init.normal_(head.weight, std=0.01)
    return model


def example_for(model: nn.Module) -> torch.Tensor:
    """A fixed random 1x3xSxS input at the smallest size of SIZES that the dense model's forward takes."""
    for size in SIZES:
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                model(x)
            return x
        except Exception as error:  # noqa: BLE001 - any failure means: try the next size
            last = error
    raise ValueError(f"no input size of {SIZES} works: {describe(last)}")


def output_layer(model: nn.Module) -> nn.Module:
    """The classifier: the last registered Linear / Conv2d with 1000 outputs."""
    layers = [m for m in model.modules() if getattr(m, "out_features", getattr(m, "out_channels", 0)) == 1000]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv2d layer with 1000 outputs")
    return layers[-1]


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:240]}"


def checked_forward(model: nn.Module, x: torch.Tensor, shape) -> None:
    with torch.no_grad():
        if (got := tuple(model(x).shape)) != tuple(shape):
            raise ValueError(f"output shape {got}, expected {tuple(shape)}")


def mp_prune(model, x, shape, limit):
    """({'mp': 'pruned' | 'refused: ..' | 'error: ..', 'prune_s_mp': s, ...}, the pruned model or None)."""
    try:
        small, seconds = timed(limit, mp.prune_channels, model, SPARSITY, example=x)
        in_training = sum(m.training for m in small.modules())
        checked_forward(small.eval(), x, shape)  # eval: rebuilt layers may come back in training mode
    except Exception as error:  # noqa: BLE001 - every failure is recorded and the benchmark goes on
        refused = isinstance(error, ValueError) or type(error).__name__ == "DependencyError"
        return {"mp": f"{'refused' if refused else 'error'}: {describe(error)}"}, None
    _, unchecked = timed(limit, mp.prune_channels, model, SPARSITY, example=x, check=False)
    return {"mp": "pruned", "prune_s_mp": seconds, "prune_s_mp_unchecked": unchecked,
            "mp_modules_in_training_mode": in_training}, small


def mp_masked_error(model, x) -> float:
    """max |compacted - masked| / max |masked| on `x`, in eval mode; masked: `masked_equivalent`, else masks."""
    graph = mp.trace_groups(model, x)
    keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model, p=1)), SPARSITY)
    compacted = mp.remove_channels(model, keep, graph).eval()  # before any forward: BN statistics
    masked = (mp.masked_equivalent(model, keep, graph) if hasattr(mp, "masked_equivalent")  # LayerNorm-aware
              else mp.apply_masks(mp.copy_model(model), mp.channel_masks(model, keep, graph)))
    with torch.no_grad():
        want, got = masked(x), compacted(x)
    return float((got - want).abs().max() / want.abs().max())


def tp_prune(model, x, shape, limit):
    """({'tp': 'pruned' | 'failed: ..', 'prune_s_tp': pruner construction + step}, the pruned copy or None)."""
    model = copy.deepcopy(model)  # the layer to ignore must be the copy's own
    # heads as channel groups, as TP's example (num_heads= keeps ViT's width); new dicts: TP mutates its defaults
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    options = {"importance": tp.importance.MagnitudeImportance(p=1), "pruning_ratio": SPARSITY,
               "in_channel_groups": {}, "out_channel_groups": heads}
    try:
        _, seconds = timed(limit, lambda: tp.pruner.MagnitudePruner(
            model, x, ignored_layers=[output_layer(model)], **options).step())
        if isinstance(model, torchvision.models.VisionTransformer):
            model.hidden_dim = model.conv_proj.out_channels  # its forward reads it (as in TP's example)
        checked_forward(model, x, shape)
    except Exception as error:  # noqa: BLE001
        return {"tp": f"failed: {describe(error)}"}, None
    return {"tp": "pruned", "prune_s_tp": seconds}, model


def latencies(models: dict, x: torch.Tensor, budget: float) -> dict:
    """Interleaved medians (ms) on one thread, the number of rounds (3 to 15) fitted to `budget` seconds."""
    probe = max(mp.time_models({k: m}, x, threads=1, rounds=1, per_round=1).medians()[k] for k, m in models.items())
    per_round = 3 if probe < 20 else 1
    rounds = int(min(15, max(3, budget * 1000 / (len(models) * (1 + per_round) * probe))))
    ms = mp.time_models(models, x, threads=1, rounds=rounds, per_round=per_round).medians()
    return {**{f"latency_ms_{k}": v for k, v in ms.items()}, "latency_rounds": rounds}


def measure(name: str, limits: dict, survey: bool) -> dict:
    """One model's row (run in a fresh process); an exception outside the pruning stages ends it as 'error'."""
    resource.setrlimit(resource.RLIMIT_AS, (int(MEMORY_GB * 2**30),) * 2)  # a MemoryError, not an OOM kill
    warnings.filterwarnings("ignore")
    torch.set_num_threads(THREADS)
    row = {"model": name}
    try:
        _measure(row, limits, survey)
    except Exception as error:  # noqa: BLE001 - recorded, the benchmark goes on
        row["error"] = describe(error)
    return row


def _measure(row: dict, limits: dict, survey: bool) -> None:
    dense, row["build_s"] = timed(limits["stage"], build, row["model"])
    x = example_for(dense)
    with torch.no_grad():
        shape = dense(x).shape
    row["input"] = f"{x.shape[-1]}x{x.shape[-1]}"
    fields, ours = mp_prune(dense, x, shape, limits["stage"])
    row.update(fields)
    if ours is not None:
        try:
            row["mp_max_rel_err"] = timed(limits["stage"], mp_masked_error, dense, x)[0]
        except Exception as error:  # noqa: BLE001
            row.update(mp_max_rel_err=None, mp_check=f"error: {describe(error)}")
    fields, theirs = tp_prune(dense, x, shape, limits["stage"])
    row.update(fields)
    pruned = {k: m for k, m in (("mp", ours), ("tp", theirs)) if m is not None}
    if survey:
        return
    for key, model in {"dense": dense, **pruned}.items():
        row.update({f"params_{key}": mp.count_params(model), f"macs_{key}": mp.count_macs(model, x.shape[1:])})
    if pruned:
        del dense
        batch = torch.randn(BATCH, *x.shape[1:], generator=torch.Generator().manual_seed(1))
        row.update(latencies(pruned, batch, limits["latency"]))


def run_isolated(name: str, limits: dict, survey: bool) -> dict:
    """`measure` in a fresh process (memory freed, state reset), stopped after limits['model'] seconds."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        row = pool.apply_async(measure, (name, limits, survey)).get(limits["model"])
        pool.close()
    except Exception as error:  # noqa: BLE001 - the time limit, or a process that died
        row = {"model": name, "error": f"{describe(error)} (model limit {limits['model']} s)"}
        pool.terminate()
    pool.join()
    return {**row, **{tool: row.get(tool, f"not run: {row.get('error')}") for tool in ("mp", "tp")}}


def ratio(row: dict, top: str, bottom: str):
    return row[top] / row[bottom] if row.get(top) is not None and row.get(bottom) else None


def coverage(rows: list[dict]) -> str:
    ours, theirs = ([r["model"] for r in rows if r[tool] == "pruned"] for tool in ("mp", "tp"))
    return (f"minprune prunes {len(ours)} of {len(rows)}, Torch-Pruning {len(theirs)} of {len(rows)}; models TP "
            f"prunes that minprune refuses: {', '.join(m for m in theirs if m not in ours) or 'none'}; models "
            f"minprune prunes that TP fails on: {', '.join(m for m in ours if m not in theirs) or 'none'}.")


KEPT = {"params kept mp": ("params_mp", "params_dense"), "params kept tp": ("params_tp", "params_dense"),
        "MACs kept mp": ("macs_mp", "macs_dense"), "MACs kept tp": ("macs_tp", "macs_dense")}
PARITY = {"params mp/tp": ("params_mp", "params_tp"), "MACs mp/tp": ("macs_mp", "macs_tp"),
          "latency mp/tp": ("latency_ms_mp", "latency_ms_tp"), "prune time mp/tp": ("prune_s_mp", "prune_s_tp"),
          "prune time mp unchecked/tp": ("prune_s_mp_unchecked", "prune_s_tp")}
SURVEY = ("tp", "mp", "input", "mp_max_rel_err", "mp_modules_in_training_mode", "mp_check", "error")


def parity(rows: list[dict]) -> list[dict]:
    """Median, lowest and highest of each mp/tp ratio over the models both tools prune."""
    both = [r for r in rows if r["mp"] == "pruned" and r["tp"] == "pruned"]
    values = {label: [v for r in both if (v := ratio(r, *keys)) is not None] for label, keys in PARITY.items()}
    return [{"ratio": label, "models": len(v), "median": statistics.median(v), "lowest": min(v), "highest": max(v)}
            for label, v in values.items() if v]


def md_row(r: dict) -> dict:
    status = {k: (r[k] if len(r[k]) <= 90 else r[k][:87] + "...").replace("|", "/") for k in ("mp", "tp")}
    row = {"model": r["model"], "input": r.get("input"), "minprune": status["mp"], "torch_pruning": status["tp"],
           "mp max rel err": r.get("mp_max_rel_err"),
           **{label: ratio(r, *keys) for label, keys in (KEPT | PARITY).items() if label != "params mp/tp"}}
    return {k: "" if v is None else v for k, v in row.items()}  # an empty cell: not measured


def to_markdown(rows: list[dict], meta: dict) -> str:
    table = parity(rows)
    return "\n".join([
        "# Structured pruning over the torchvision zoo: minprune and Torch-Pruning", "", coverage(rows), "",
        "50% of the channels of every prunable group, L1 scores, untrained models (weights=None, seed 0), input "
        "64x64 unless a model needs more. 'kept': pruned / dense; 'mp max rel err': max |compacted - masked| / max "
        f"|masked| (`mp.masked_equivalent`). Latency: batch {BATCH}, one thread, the pruned models interleaved, "
        "medians. Prune time: `prune_channels` (it copies the model and checks the copy against its masked "
        "equivalent; 'unchecked': check=False) / TP's pruner construction + step (in place, unchecked).", "",
        f"`{json.dumps(meta)}`", "", mp.Table([md_row(r) for r in rows]).to_markdown(), "",
        "## Parity where both prune (mp / tp over models)", "", mp.Table(table).to_markdown() if table else "-", ""])


def write_atomically(path: Path, text: str) -> None:
    (tmp := path.with_name(path.name + ".tmp")).write_text(text)
    tmp.replace(path)


def metadata(start: float, load: list, limits: dict) -> dict:
    package = Path(mp.__file__).parent  # the minprune measured (PYTHONPATH may name a snapshot of a commit)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=package)
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_pruning": version("torch-pruning"), "minprune": f"{package} (git {git.stdout.strip() or 'none'})",
            "cores": os.cpu_count(), "prune_threads": THREADS, "latency_threads": 1, "memory_cap_gb": MEMORY_GB,
            "limits_s": limits, "load_1min": [round(v, 1) for v in load], "seconds": round(time.perf_counter() - start)}


def chosen_models(models: str | None, quick: bool) -> list[str]:
    zoo = torchvision.models.list_models(module=torchvision.models)
    names = (list(QUICK) if quick else zoo) if models is None else [n.strip() for n in models.split(",") if n.strip()]
    if not names or any(n not in zoo for n in names):
        raise ValueError(f"--models must name torchvision classification models, got {models!r}")
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset (default: the whole zoo)")
    parser.add_argument("--out", help="name in bench/results/ or path, no suffix (default: a full run only)")
    parser.add_argument("--quick", action="store_true", help="6 models, shorter limits and latency (smoke run)")
    parser.add_argument("--survey", help="only prune and check (no counts, no latency); write this JSON file")
    args = parser.parse_args()
    names = chosen_models(args.models, args.quick)
    limits = LIMITS["survey" if args.survey else "quick" if args.quick else "full"]
    out = args.out or (None if args.models or args.quick or args.survey else "structured_zoo")
    out = None if out is None else (Path(out) if os.sep in out else Path(__file__).parent / "results" / out)
    start, load, rows = time.perf_counter(), [os.getloadavg()[0]], []
    for name in names:
        rows.append(run_isolated(name, limits, bool(args.survey)))
        load.append(os.getloadavg()[0])
        print(json.dumps(rows[-1]), flush=True)
        if out is not None:
            meta = metadata(start, load, limits)
            write_atomically(out.parent / f"{out.name}.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
            write_atomically(out.parent / f"{out.name}.md", to_markdown(rows, meta))
    if args.survey:
        survey = [{"name": r["model"], **{k: r[k] for k in SURVEY if k in r}} for r in rows]
        write_atomically(Path(args.survey), json.dumps(survey, indent=1))
    print(to_markdown(rows, metadata(start, load, limits)))


if __name__ == "__main__":
    main()
