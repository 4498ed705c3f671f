"""Benchmark for issue 7: knowledge distillation and the capstone compression pipeline.

1. KD gap: students fine-tuned (or trained) on labels alone vs distilled from the dense LeNet-5, same seed,
   same epochs. Figure: the share of the teacher-student gap that distillation closes (target >= 50%).
2. Capstone: `recipes/lenet5-capstone.toml` and a few variants through `mp.run_pipeline`; the final stage of
   each against the dense float model in the same process (targets: >= 10x fewer bytes, >= 2x faster batch-64
   CPU latency, <= 1 point accuracy drop). Latencies: interleaved rounds, medians, 1 thread.
Writes bench/results/pipeline.json and bench/results/pipeline.md.
Usage: python bench/pipeline.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import minprune as mp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def kd_gap(splits, epochs: int, seeds: list[int]) -> list[dict]:
    """Accuracy of each student alone and distilled, averaged over seeds, and the share of the gap closed."""
    teacher = mp.pretrained("lenet5", progress=False)
    test = splits.loader("test", 500)
    teacher_acc = mp.accuracy(teacher, test)
    students = {}
    pruned = mp.copy_model(teacher)
    mp.prune(pruned, mp.magnitude_scores(pruned), 0.95, scope="global")
    students["LeNet-5 pruned 95% (weights), fine-tuned"] = lambda: mp.copy_model(pruned)
    students["narrow LeNet-5 (3, 8 channels) from scratch"] = lambda: mp.build("lenet5", channels=[3, 8])
    rows = []
    for name, make in students.items():
        alone, taught = [], []
        for seed in seeds:
            loader = splits.loader("train", 64, seed=seed)
            mp.seed_everything(seed)
            student = make()
            mp.fit(student, loader, epochs=epochs, progress=False)
            alone.append(mp.accuracy(student, test))
            mp.seed_everything(seed)
            student = make()
            mp.distill_student(student, teacher, loader, epochs=epochs, temperature=4.0, alpha=0.5, progress=False)
            taught.append(mp.accuracy(student, test))
        a, k = sum(alone) / len(alone), sum(taught) / len(taught)
        rows.append({"student": name, "teacher acc": teacher_acc, "alone acc": a, "distilled acc": k,
                     "gap closed %": 100 * (k - a) / (teacher_acc - a) if teacher_acc > a else float("nan"),
                     "epochs": epochs, "seeds": len(seeds)})
        print(rows[-1], flush=True)
    return rows


CAPSTONE_VARIANTS = {
    "recipe (structured 0.5, KD, static int8)": {},
    "structured 0.6, KD, static int8": {"prune": {"sparsity": 0.6}},
    "structured 0.5, KD, dynamic int8": {"quantize": {"method": "dynamic-int8"}},
    "structured 0.5, no KD, static int8": {"finetune": {"distill": False}},
}


def capstone(quick: bool) -> tuple[list[dict], list[dict]]:
    """Run the capstone recipe and its variants; returns (final-stage rows, every stage of the recipe run)."""
    base = mp.recipe.to_dict(mp.load_recipe(ROOT / "recipes" / "lenet5-capstone.toml"))
    finals, recipe_stages = [], []
    for label, change in CAPSTONE_VARIANTS.items():
        values = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
        for section, fields in change.items():
            values[section].update(fields)
        values["measure"]["repeats"] = 10 if quick else 30
        config = mp.recipe.from_dict(values)
        start = time.perf_counter()
        result = mp.run_pipeline(config)
        rows = result.table.rows
        if not recipe_stages:
            recipe_stages = rows
        final = {"variant": label, **{k: v for k, v in rows[-1].items() if k != "stage"},
                 "seconds": time.perf_counter() - start}
        final["meets targets"] = final["x smaller"] >= 10 and final["x faster"] >= 2 and final["drop"] <= 1
        finals.append(final)
        print(final, flush=True)
        if quick:
            break
    return finals, recipe_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one variant (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = mp.load("mnist-small")
    start = time.perf_counter()
    kd = kd_gap(splits, epochs=2 if args.quick else 4, seeds=[0] if args.quick else [0, 1])
    finals, stages = capstone(args.quick)
    best_kd = max(row["gap closed %"] for row in kd)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1},
        "kd": kd, "capstone": finals, "capstone_recipe_stages": stages,
        "targets": {"kd_gap_closed_>=50%": best_kd >= 50,
                    "capstone_>=10x_bytes_>=2x_faster_<=1pt": any(f["meets targets"] for f in finals)},
        "seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# bench/pipeline.py", "", f"torch {torch.__version__}, 1 thread, {result['seconds']:.0f} s", "",
          "## Knowledge distillation: share of the teacher-student gap closed (target >= 50%)", "",
          mp.Table(kd).to_markdown(), "", "## Capstone on LeNet-5: final stage vs dense float (targets: >= 10x "
          "smaller bytes, >= 2x faster batch-64, <= 1 point drop)", "", mp.Table(finals).to_markdown(), "",
          "## The recipe's stages", "", mp.Table(stages).to_markdown(), "",
          "Targets met: " + ", ".join(f"{k}: {v}" for k, v in result["targets"].items()), ""]
    (RESULTS / "pipeline.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
