"""Benchmark for issue 7: knowledge distillation and the capstone compression pipeline.

1. KD gap: students trained on labels alone vs distilled from a LeNet-5 teacher, same seed, epochs, optimizer
   and augmentation. Figure: the share of the teacher-student gap that distillation closes (target >= 50%).
2. Capstone: the shipped recipe `lenet5-capstone` and a few variants through `mp.run_pipeline`; the final stage of
   each against the dense float model in the same process (targets: >= 10x fewer bytes, >= 2x faster batch-64
   CPU latency, <= 1 point accuracy drop). Latencies: interleaved rounds, medians, 1 thread; the latency target
   uses the median speedup over 20+ passes that time every final model against the dense one, spread over the
   KD runs (a shared machine's speed drifts over minutes), and a per-layer profile shows where the time goes.
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


# Each student is trained twice per seed from the same start, with the same epochs, optimizer, learning rate,
# batch size and augmentation: once on the labels alone, once distilled from the teacher (T, alpha below). The
# distilled run continues the seeded loader's shuffle, so it sees the same images in another order.
# Augmentation: `max_shift` moves images by random whole pixels; `mixup` blends them in pairs. Alone, the student
# learns the blended labels (`labels_loss`); distilled, the teacher labels the blends (function matching).
KD = {"temperature": 10.0, "alpha": 0.9}
SHIFTED_TEACHER = "LeNet-5 trained on shifts"
KD_RUNS = [
    # Function matching (Beyer et al. 2022): with 3,500 training images the teacher's soft targets on those images
    # say little that the labels do not; on blends of two images they say a lot, and every epoch brings new blends.
    {"student": "LeNet-300-100 from scratch", "teacher": "LeNet-5 baseline", "epochs": 100, "max_shift": 0,
     "mixup": 1.0},
    # Hinton et al.'s MNIST setting: an MLP student that overfits the labels, taught by a stronger CNN.
    {"student": "LeNet-300-100 from scratch", "teacher": "LeNet-5 baseline", "epochs": 20, "max_shift": 0,
     "mixup": 0.0},
    # The same with shifts, taught by a CNN trained on shifts (so it labels shifted images well).
    {"student": "LeNet-300-100 from scratch", "teacher": SHIFTED_TEACHER, "epochs": 20, "max_shift": 1,
     "mixup": 0.0},
    # Shifts and blends together: how far the student gets on augmentation alone.
    {"student": "LeNet-300-100 from scratch", "teacher": SHIFTED_TEACHER, "epochs": 100, "max_shift": 1,
     "mixup": 1.0},
    # A pruned copy of the teacher: it starts close to the teacher, so soft targets add little.
    {"student": "LeNet-5 pruned 95% (weights), fine-tuned", "teacher": "LeNet-5 baseline", "epochs": 6,
     "max_shift": 0, "mixup": 0.0},
]


MIN_GAP = 0.5  # points: on 1,000 test images a smaller teacher-student gap is within noise, no share to close


def _closed(teacher_acc: float, alone_acc: float, distilled_acc: float) -> float:
    """`mp.gap_closed`, or NaN when the teacher is less than MIN_GAP points ahead."""
    if teacher_acc - alone_acc < MIN_GAP:
        return float("nan")
    return mp.gap_closed(teacher_acc, alone_acc, distilled_acc)


def _train(make, teacher, loader, run: dict, seed: int, distill: bool) -> torch.nn.Module:
    mp.seed_everything(seed)
    student = make()
    train = mp.TrainConfig(epochs=run["epochs"])
    if distill:
        kd = mp.KDConfig(max_shift=run["max_shift"], mixup=run["mixup"], **KD)
        mp.distill_student(student, teacher, loader, kd, train, progress=False)
    else:
        mp.fit(student, loader, train, loss_fn=mp.distillation.augment.labels_loss(run["max_shift"], run["mixup"]),
               progress=False)
    return student


def kd_gap(splits, seeds: list[int], quick: bool, between=lambda: None) -> list[dict]:
    """Accuracy of each student alone and distilled, averaged over seeds; share of the teacher-student gap
    closed (`mp.gap_closed`). Both teachers are cached: trained once, then loaded. `between()` is
    called after every training run (the capstone's latency passes)."""
    test = splits.loader("test", 500)
    teachers = {"LeNet-5 baseline": mp.pretrained("lenet5", progress=False),
                SHIFTED_TEACHER: mp.shift_trained_teacher("lenet5", epochs=15, max_shift=2)}
    pruned = mp.copy_model(teachers["LeNet-5 baseline"])
    mp.prune(pruned, mp.magnitude_scores(pruned), 0.95, scope="global")
    students = {"LeNet-300-100 from scratch": lambda: mp.build("lenet300"),
                "LeNet-5 pruned 95% (weights), fine-tuned": lambda: mp.copy_model(pruned)}
    rows = []
    for run in KD_RUNS:
        run = dict(run, epochs=2) if quick else run
        teacher, make = teachers[run["teacher"]], students[run["student"]]
        teacher_acc = mp.accuracy(teacher, test)
        alone, taught = [], []
        for seed in seeds:
            loader = splits.loader("train", 64, seed=seed)
            alone.append(mp.accuracy(_train(make, teacher, loader, run, seed, False), test))
            between()
            taught.append(mp.accuracy(_train(make, teacher, loader, run, seed, True), test))
            between()
        a, k = sum(alone) / len(alone), sum(taught) / len(taught)
        rows.append({**run, "teacher acc": teacher_acc, "alone acc": a, "distilled acc": k,
                     "gap closed %": _closed(teacher_acc, a, k), "alone per seed": alone,
                     "distilled per seed": taught, "seeds": len(seeds), "T": KD["temperature"], "alpha": KD["alpha"]})
        print(rows[-1], flush=True)
        if quick:
            break
    return against_best_alone(rows)


def against_best_alone(rows: list[dict]) -> list[dict]:
    """Add "gap closed vs best alone %": the gap measured from the best student trained on labels alone with the
    same student, teacher and shifts (with or without blends), so that augmentation earns the teacher no credit."""
    for row in rows:
        same = [r["alone acc"] for r in rows
                if (r["student"], r["teacher"], r["max_shift"]) == (row["student"], row["teacher"], row["max_shift"])]
        row["best alone acc"] = max(same)
        row["gap closed vs best alone %"] = _closed(row["teacher acc"], max(same), row["distilled acc"])
    return rows


CAPSTONE_VARIANTS = {
    "recipe (structured 0.5, fc1 2/3, shifts, static int8)": {},
    "recipe + KD from the dense model, no shifts": {"finetune": {"distill": True, "max_shift": 0}},
    "structured 0.6 every layer, shifts, static int8": {"prune": {"sparsity": 0.6, "layers": {}}},
    "structured 0.5 every layer, shifts, static int8": {"prune": {"sparsity": 0.5, "layers": {}}},
}
SEED_CHECK = [1, 2, 3]  # fine-tuning seeds for the recipe's pruned model, besides the recipe's own (0)
LATENCY_PASSES = 20  # at least this many interleaved passes of every final model against the dense one, taken
# between the KD benchmark's training runs: spread over ~15 minutes, they see the shared machine fast and slow


def _variant_config(base: dict, change: dict, quick: bool):
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, fields in change.items():
        values[section].update(fields)
    values["measure"]["repeats"] = 10 if quick else 30
    return mp.pipeline.recipe.from_dict(values)


def capstone(quick: bool) -> tuple[list[dict], list[dict], dict, mp.Table, mp.timing.SpeedupSampler]:
    """Run the capstone recipe and its variants; returns (final-stage rows, every stage of the recipe run,
    the recipe's final accuracy when its pruned model is fine-tuned with other seeds, the per-layer latency of
    the recipe's dense and final models, a latency sampler of the dense model and every final model)."""
    base = mp.pipeline.recipe.to_dict(mp.load_recipe("lenet5-capstone"))
    finals, recipe_stages, seeds, timed = [], [], {}, {}
    for label, change in CAPSTONE_VARIANTS.items():
        config = _variant_config(base, change, quick)
        start = time.perf_counter()
        result = mp.run_pipeline(config)
        rows = result.table.rows
        final = {"variant": label, **{k: v for k, v in rows[-1].items() if k != "stage"},
                 "seconds": time.perf_counter() - start}
        pair = _dense_and_final(result)
        timed.update({"dense" if name == "dense" else label: model for name, model in pair.items()})
        if not recipe_stages:
            recipe_stages = rows
            seeds = seed_check(result, config, [] if quick else SEED_CHECK)
            layers = mp.compare_layer_latency(pair, repeats=5 if quick else 50, threads=1)
        finals.append(final)
        print(final, flush=True)
        if quick:
            break
    measure = base["measure"]
    sampler = mp.timing.SpeedupSampler(timed, timed["dense"].input_shape, rounds=10 if quick else 15,
                                       batch_size=measure["batch_size"], threads=measure["threads"])
    return finals, recipe_stages, seeds, layers, sampler


def _dense_and_final(result) -> dict:
    models = [mp.pipeline.report.as_deployed(m) for m in result.models.values()]
    return {"dense": models[0], result.table.rows[-1]["stage"]: models[-1]}


def add_speed_spread(finals: list[dict], sampler: mp.timing.SpeedupSampler) -> None:
    """Each final row gets its speedup over the dense model across the sampler's passes (median, lowest,
    highest), and whether it meets all three targets (latency: the median)."""
    spread = {row["model"]: row for row in sampler.table().rows}
    for final in finals:
        row = spread[final["variant"]]
        final.update({"x faster median": row["x faster"], "x faster lowest": row["lowest"],
                      "x faster highest": row["highest"], "passes": row["passes"]})
        final["meets targets"] = final["x smaller"] >= 10 and final["x faster median"] >= 2 and final["drop"] <= 1


def seed_check(result, config, seeds: list[int]) -> dict:
    """Fine-tune and quantize the recipe's pruned model again with other seeds (same data, epochs, shifts):
    how much of the final accuracy is the luck of one run. Returns {seed: int8 test accuracy}, the recipe's
    own run included."""
    splits = mp.load(config.base.data, seed=config.base.seed)
    test, pruned = splits.loader("test", 500), result.models[f"pruned ({config.prune.method})"]
    out = {config.base.seed: mp.accuracy(list(result.models.values())[-1], test)}
    for seed in seeds:
        model, _ = mp.pipeline.stages.finetune_step(pruned, result.models["dense"], config, splits, seed=seed)
        out[seed] = mp.accuracy(mp.pipeline.stages.quantize_step(model, config, splits), test)
    return out


def _seed_lines(seeds: dict, stages: list[dict]) -> str:
    if not seeds:
        return "(not run)"
    accs = list(seeds.values())
    mean = sum(accs) / len(accs)
    return (f"int8 accuracy per fine-tuning seed {seeds}: mean {mean:.2f}, drop {stages[0]['acc'] - mean:.2f} "
            f"(worst {stages[0]['acc'] - min(accs):.2f}) against the dense {stages[0]['acc']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one variant (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = mp.load("mnist-small")
    start = time.perf_counter()
    finals, stages, seeds, layers, sampler = capstone(args.quick)
    kd = kd_gap(splits, seeds=[0] if args.quick else [0, 1, 2], quick=args.quick, between=sampler.sample)
    while sampler.passes < (2 if args.quick else LATENCY_PASSES):
        sampler.sample()
    add_speed_spread(finals, sampler)
    strict = [row["gap closed vs best alone %"] for row in kd]
    best_kd = max((gap for gap in strict if gap == gap), default=0.0)  # NaN: no gap to close
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1},
        "kd": kd, "capstone": finals, "capstone_recipe_stages": stages,
        "capstone_recipe_seeds": seeds, "capstone_recipe_layers": layers.rows,
        "targets": {"kd_gap_closed_>=50%": best_kd >= 50,
                    "capstone_>=10x_bytes_>=2x_faster_<=1pt": any(f["meets targets"] for f in finals)},
        "seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# bench/pipeline.py", "", f"torch {torch.__version__}, 1 thread, {result['seconds']:.0f} s", "",
          "## Knowledge distillation: share of the teacher-student gap closed (target >= 50%, measured from the "
          "best student alone with the same shifts)", "",
          f"nan: the teacher is less than {MIN_GAP} points ahead of the student alone, within the test split's "
          "noise, so there is no gap to close.", "",
          mp.Table(kd).to_markdown(), "", "## Capstone on LeNet-5: final stage vs dense float (targets: >= 10x "
          "smaller bytes, >= 2x faster batch-64, <= 1 point drop)", "",
          "`x faster`: one interleaved measurement, as in the stage table. `x faster median` (the target's figure), "
          f"`lowest` and `highest`: over {sampler.passes} more passes that time the dense model and every final "
          "model together, taken between the KD runs above (spread over their ~15 minutes).", "",
          mp.Table(finals).to_markdown(), "",
          "## The recipe's stages", "", mp.Table(stages).to_markdown(), "",
          f"## Where the time goes: {layers.title}", "", layers.to_markdown(), "",
          "## The recipe's final accuracy with other fine-tuning seeds", "", _seed_lines(seeds, stages), "",
          "Targets met: " + ", ".join(f"{k}: {v}" for k, v in result["targets"].items()), ""]
    (RESULTS / "pipeline.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
