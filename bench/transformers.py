"""Transformer pruning benchmark: TinyViT heads, neurons and tokens; CharGPT width and depth, recovered by distillation.

Starts from the shipped baselines (`mp.pretrained`), so every seed prunes the same weights; the seed sets the
fine-tuning (batch order, dropout-free training noise). For each seed:

- TinyViT (mnist-small): 50% of the heads and 50% of the MLP neurons of every block removed (L1 scores), then
  fine-tuned `VIT_EPOCHS` epochs; token pruning (EViT-style `TokenPruned`, keep 50% after blocks 1 and 2) and
  token merging (`TokenMerged`, r=3), each without and with the same fine-tuning. The dense model is fine-tuned as
  long, as the control: a drop measured against it is the cost of pruning, not of training more or less.
- CharGPT (pydoc-text): one block dropped (lowest Block Influence) and half of the MLP neurons of the others
  removed (L1; the residual width stays), then trained `gpt_epochs` epochs either on the text alone or distilled
  from the dense model (per-position KL to the teacher at temperature 1, mixed half and half with the
  cross-entropy). Reported: test perplexity and the share of the student-teacher perplexity gap that
  distillation closes.

Latency (seed 0): the models timed interleaved in this process, batch 64, 1 and 2 threads; the speedups are put
next to the MAC ratios. Side by side with Torch-Pruning (bench/torch_pruning_vit.py) at the same head/neuron ratio.
Writes bench/results/transformers.json and .md. Run: python bench/transformers.py  (--quick: one seed, short runs,
not saved). See notebooks/12_transformers.ipynb.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import minprune as mp
from minprune.transformers import depth
from minprune.transformers.token_merging import TokenMerged
from minprune.transformers.tokens import TokenPruned

RESULTS = Path(__file__).parent / "results"
CONFIG = {"seeds": [0, 1, 2], "vit_epochs": 3, "vit_lr": 5e-4, "head_fraction": 0.5, "neuron_fraction": 0.5,
          "evit": {"keep_rate": 0.5, "after": [1, 2]}, "tome_r": 3, "gpt_epochs": 5, "gpt_steps": None,
          "gpt_lr": 1e-3, "gpt_batch": 32, "gpt_seq_len": 64, "gpt_drop_blocks": 1, "gpt_neuron_fraction": 0.5,
          "kd": {"temperature": 1.0, "alpha": 0.5}}


def fine_tuned(model, loader, seed: int):
    """A copy of `model` trained CONFIG['vit_epochs'] epochs (Adam, CONFIG['vit_lr']) from `seed`."""
    mp.seed_everything(seed)
    model = mp.copy_model(model)
    mp.fit(model, loader, mp.TrainConfig(epochs=CONFIG["vit_epochs"], lr=CONFIG["vit_lr"]), progress=False)
    return model.eval()


def half_vit(vit):
    """TinyViT without half of its heads and half of its MLP neurons per block (L1 scores)."""
    keep_heads = mp.select_heads(mp.head_scores(vit, "l1"), CONFIG["head_fraction"])
    keep_neurons = mp.select_neurons(mp.neuron_scores(vit, "l1"), CONFIG["neuron_fraction"])
    return mp.prune_mlp(mp.prune_heads(vit, keep_heads), keep_neurons)


def vit_variants(vit) -> dict:
    """{name: untrained model} of the ViT section: the dense model and its three reductions."""
    evit = CONFIG["evit"]
    return {"dense": mp.copy_model(vit), "50% heads + 50% neurons": half_vit(vit),
            f"EViT keep {evit['keep_rate']} after {evit['after']}":
                TokenPruned(mp.copy_model(vit), keep_rate=evit["keep_rate"], after=tuple(evit["after"])),
            f"ToMe r={CONFIG['tome_r']}": TokenMerged(mp.copy_model(vit), r=CONFIG["tome_r"])}


def vit_rows(vit, data, seed: int) -> tuple[list[dict], dict]:
    """One row per ViT variant (params, MACs, accuracy before and after fine-tuning) and the fine-tuned models."""
    train, test = data.loader("train", 64, seed=seed), data.loader("test", 500)
    rows, tuned = [], {}
    for name, model in vit_variants(vit).items():
        before = mp.accuracy(model, test) if name != "dense" else mp.accuracy(vit, test)
        tuned[name] = fine_tuned(model, train, seed)
        rows.append({"seed": seed, "model": name, "params": mp.count_params(model), "macs": mp.count_macs(model),
                     "acc_before_ft": before, "acc_ft": mp.accuracy(tuned[name], test)})
    return rows, tuned


def speedups(models: dict, input_shape, threads: int) -> dict:
    """{name: dense latency / its latency}, batch 64, the models timed interleaved."""
    ms = mp.interleaved_latency(models, input_shape, batch_size=64, threads=threads)
    return {name: ms["dense"] / t for name, t in ms.items()}


def prune_gpt(gpt, calibration):
    """CharGPT with its least influential block(s) dropped, then MLP neurons removed from the others (L1)."""
    drop = depth.select_blocks(depth.block_importance(gpt, calibration), CONFIG["gpt_drop_blocks"])
    shallow = depth.drop_blocks(gpt, drop)
    keep = mp.select_neurons(mp.neuron_scores(shallow, "l1"), CONFIG["gpt_neuron_fraction"])
    return mp.prune_mlp(shallow, keep), drop


def gpt_rows(gpt, text, seed: int, student) -> list[dict]:
    """Test perplexity of the teacher, the pruned student, and the student trained alone or distilled."""
    test = text.loader("test", CONFIG["gpt_seq_len"], 64)
    train = text.loader("train", CONFIG["gpt_seq_len"], CONFIG["gpt_batch"], seed=seed,
                        max_batches=CONFIG["gpt_steps"])
    cfg = mp.TrainConfig(epochs=CONFIG["gpt_epochs"], lr=CONFIG["gpt_lr"])
    alone, taught = mp.copy_model(student), mp.copy_model(student)
    mp.seed_everything(seed)
    mp.fit(alone, train, cfg, progress=False)
    mp.seed_everything(seed)
    mp.distill_student(taught, gpt, train, mp.KDConfig(**CONFIG["kd"]), cfg, progress=False)
    ppl = {name: mp.perplexity(mp.evaluate(m, test)["loss"])
           for name, m in (("teacher", gpt), ("pruned", student), ("alone", alone), ("distilled", taught))}
    closed = (ppl["alone"] - ppl["distilled"]) / (ppl["alone"] - ppl["teacher"])
    return [{"seed": seed, "params_teacher": mp.count_params(gpt), "params_student": mp.count_params(student),
             **{f"ppl_{k}": v for k, v in ppl.items()}, "gap_closed": closed}]


def torch_pruning_rows(vit, data) -> list[dict]:
    """bench/torch_pruning_vit.py's comparison (no fine-tuning): minprune and Torch-Pruning at the same ratios."""
    import torch_pruning_vit  # this directory's module: needs torch-pruning (pip install -e ".[bench]")

    rows = torch_pruning_vit.compare(vit, data.loader("test", 500), CONFIG["head_fraction"],
                                     CONFIG["neuron_fraction"])
    dense = rows[0]["latency_ms"]
    return [{**row, "speedup": dense / row["latency_ms"]} for row in rows]


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def vit_summary(rows: list[dict], speed: dict) -> list[dict]:
    """Per ViT variant: MAC ratio, speedups, accuracy (mean, std over seeds) and the drops against the shipped
    dense model and against the dense model fine-tuned as long."""
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    dense_macs = by_model["dense"][0]["macs"]
    dense_ft = mean_std(r["acc_ft"] for r in by_model["dense"])[0]
    shipped = by_model["dense"][0]["acc_before_ft"]
    out = []
    for name, group in by_model.items():
        acc, std = mean_std(r["acc_ft"] for r in group)
        before = mean_std(r["acc_before_ft"] for r in group)[0]
        out.append({"model": name, "params": group[0]["params"], "macs": group[0]["macs"],
                    "macs_removed": 1 - group[0]["macs"] / dense_macs, "macs_ratio": dense_macs / group[0]["macs"],
                    "speedup_b64_1thread": speed[1][name], "speedup_b64_2threads": speed[2][name],
                    "acc_before_ft": before, "acc_ft_mean": acc, "acc_ft_std": std,
                    "drop_vs_shipped": shipped - acc, "drop_vs_dense_ft": dense_ft - acc})
    return out


def targets(vit: list[dict], gpt: list[dict]) -> list[dict]:
    rows = {r["model"]: r for r in vit}
    out = [{"target": "ViT 50% heads + 50% neurons, fine-tuned: drop <= 1 point",
            "values": {"vs shipped": rows["50% heads + 50% neurons"]["drop_vs_shipped"],
                       "vs dense fine-tuned as long": rows["50% heads + 50% neurons"]["drop_vs_dense_ft"]}}]
    for name, r in rows.items():
        if name.startswith(("EViT", "ToMe")):
            out.append({"target": f"{name}: >= 30% fewer MACs at <= 0.5 point drop",
                        "values": {"MACs removed": r["macs_removed"], "drop vs shipped": r["drop_vs_shipped"],
                                   "drop vs dense fine-tuned as long": r["drop_vs_dense_ft"]}})
    closed, std = mean_std(r["gap_closed"] for r in gpt)
    out.append({"target": "CharGPT at about half the parameters: distillation closes >= 50% of the perplexity gap",
                "values": {"gap closed (mean)": closed, "std": std,
                           "params ratio": gpt[0]["params_student"] / gpt[0]["params_teacher"]}})
    return out


def table(rows: list[dict], columns: list[str]) -> list[str]:
    def cell(v):
        return f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float) else str(v)
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows])


def gpt_summary(rows: list[dict]) -> list[dict]:
    keys = ("ppl_teacher", "ppl_pruned", "ppl_alone", "ppl_distilled", "gap_closed")
    return [{"statistic": stat, **{k: f(r[k] for r in rows) for k in keys}}
            for stat, f in (("mean", lambda v: mean_std(v)[0]), ("std", lambda v: mean_std(v)[1]))]


def to_markdown(report: dict) -> str:
    meta, drop = report["meta"], report["gpt_dropped_blocks"]
    lines = ["# Transformer pruning benchmark", "", f"`{json.dumps(meta)}`", "",
             f"Shipped baselines, seeds {CONFIG['seeds']}. Speedups: dense latency over the model's, batch 64, "
             "medians of interleaved runs in one process (dense = 1); compare them with `macs_ratio`.", "",
             f"## TinyViT (mnist-small test, fine-tuned {CONFIG['vit_epochs']} epochs, lr {CONFIG['vit_lr']})", ""]
    lines += table(report["vit"], ["model", "params", "macs", "macs_removed", "macs_ratio", "speedup_b64_1thread",
                                   "speedup_b64_2threads", "acc_before_ft", "acc_ft_mean", "acc_ft_std",
                                   "drop_vs_shipped", "drop_vs_dense_ft"])
    lines += ["", f"## CharGPT (pydoc-text test perplexity; block(s) {drop} dropped, "
              f"{CONFIG['gpt_neuron_fraction']:.0%} of the MLP neurons removed, {CONFIG['gpt_epochs']} epochs of "
              f"{CONFIG['gpt_batch']}x{CONFIG['gpt_seq_len']} characters, Adam lr {CONFIG['gpt_lr']}, distillation "
              f"{CONFIG['kd']})", ""]
    lines += table(report["gpt_seeds"], ["seed", "params_teacher", "params_student", "ppl_teacher", "ppl_pruned",
                                         "ppl_alone", "ppl_distilled", "gap_closed"])
    lines += [""] + table(report["gpt"], ["statistic", "ppl_teacher", "ppl_pruned", "ppl_alone", "ppl_distilled",
                                          "gap_closed"])
    lines += ["", "## Side by side with Torch-Pruning (TinyViT, no fine-tuning, batch 64, 1 thread)", ""]
    lines += table(report["torch_pruning"], ["method", "params", "macs", "latency_ms", "speedup", "acc",
                                             "heads_differ", "neurons_differ"])
    lines += ["", "## Targets", ""]
    for t in report["targets"]:
        values = ", ".join(f"{k} {v:.3f}" for k, v in t["values"].items())
        lines.append(f"- {t['target']}: {values}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short runs (a smoke run, not saved)")
    args = parser.parse_args(argv)
    if args.quick:
        CONFIG.update(seeds=[0], vit_epochs=1, gpt_epochs=1, gpt_steps=20)
    torch.set_num_threads(2)
    start = time.perf_counter()
    data, text = mp.load("mnist-small"), mp.load("pydoc-text")
    vit = mp.pretrained("tinyvit", progress=False).eval()
    gpt = mp.pretrained("chargpt", progress=False).eval()
    student, dropped = prune_gpt(gpt, text.loader("val", CONFIG["gpt_seq_len"], 32))
    vit_raw, gpt_raw, speed = [], [], {}
    for seed in CONFIG["seeds"]:
        rows, tuned = vit_rows(vit, data, seed)
        vit_raw += rows
        if not speed:
            speed = {threads: speedups(tuned, vit.input_shape, threads) for threads in (1, 2)}
        gpt_raw += gpt_rows(gpt, text, seed, student)
        print(f"seed {seed} done after {time.perf_counter() - start:.0f} s", flush=True)
    vit_table = vit_summary(vit_raw, speed)
    report = {"config": CONFIG, "vit": vit_table, "vit_seeds": vit_raw, "gpt_seeds": gpt_raw,
              "gpt": gpt_summary(gpt_raw), "gpt_dropped_blocks": dropped,
              "torch_pruning": torch_pruning_rows(vit, data), "targets": targets(vit_table, gpt_raw)}
    report["meta"] = {"torch": torch.__version__, "cpu": platform.machine(), "threads": 2,
                      "seconds": round(time.perf_counter() - start)}
    text_md = to_markdown(report)
    print(text_md)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "transformers.json").write_text(json.dumps(report, indent=1))
        (RESULTS / "transformers.md").write_text(text_md)


if __name__ == "__main__":
    main()
