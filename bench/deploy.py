"""Deployment benchmark: LeNet-5 dense / pruned / compacted / int8, in PyTorch eager and in ONNX Runtime.

Targets (issue 10): the compacted int8 LeNet-5 in ONNX Runtime is >= 4x faster at batch 64 than the dense float
model in PyTorch eager (same process, interleaved timing, 1 thread each), its file is >= 10x smaller, its test
accuracy drops by <= 1 point, and every float ONNX export matches PyTorch within 1e-4.
Writes bench/results/deploy.json and deploy.md. Run: `.venv/bin/python bench/deploy.py`.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import onnxruntime as ort
import torch

import minprune as mp
from minprune.checkpoint import atomic_write
from minprune.deploy import export as ex
from minprune.deploy.onnx_int8 import int8_weights_onnx
from minprune.energy import EnergyOptions, estimate_energy
from minprune.masked import copy_model
from minprune.measure import size_on_disk
from minprune.structured.surgery import prune_channels
from minprune.table import Table
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores

RESULTS = Path(__file__).parent / "results"
THREADS, ROUNDS, SEED = 1, 25, 0
FC = {"classifier.1": 8, "classifier.3": 8, "classifier.5": 8}
PRECISION = {  # (bits of the arithmetic and activations, bits of the stored weights) for the energy model
    "compacted int8": EnergyOptions(bits=8), "compacted int8-fc": EnergyOptions(bits=FC),
    "compacted int8 weights": EnergyOptions(weight_bits=8)}


def build_variants(splits) -> dict:
    """dense (cached baseline), pruned (90% of weights, global magnitude, fine-tuned), compacted (half the channels
    of every layer removed, fine-tuned)."""
    dense = mp.pretrained("lenet5").eval()
    train = splits.loader("train", 64, seed=SEED)
    mp.seed_everything(SEED)
    pruned = copy_model(dense)
    prune(pruned, magnitude_scores(pruned), 0.9, scope="global")
    mp.fit(pruned, train, mp.TrainConfig(epochs=2, lr=1e-3), progress=False)
    mp.seed_everything(SEED)
    compacted = prune_channels(dense, 0.5)
    mp.fit(compacted, train, mp.TrainConfig(epochs=8, lr=1e-3), progress=False)
    return {"dense": dense, "pruned": pruned.eval(), "compacted": compacted.eval()}


def build_sessions(models: dict, splits) -> tuple[dict, dict, dict]:
    """ONNX files for every variant plus two int8 versions of the compacted model; returns (protos, sessions, diffs)."""
    protos, diffs = {}, {}
    for name, model in models.items():
        exported = ex.export_onnx(model, threads=THREADS)
        protos[name], diffs[name] = exported.proto, exported.max_abs_diff
    calibration = splits.sample(256, "train")[0]
    protos["compacted int8"] = ex.quantize_onnx(protos["compacted"], calibration)  # static, every op
    protos["compacted int8-fc"] = ex.quantize_onnx(protos["compacted"], calibration, op_types=["Gemm", "MatMul"])
    protos["compacted int8 weights"] = int8_weights_onnx(protos["compacted"])  # int8 file, float arithmetic
    sessions = {name: ex.session(p, threads=THREADS) for name, p in protos.items()}
    return protos, sessions, diffs


def main() -> dict:
    start = time.perf_counter()
    mp.seed_everything(SEED)
    splits = mp.load("mnist-small")
    test = splits.loader("test", 500)
    models = build_variants(splits)
    print(f"variants trained after {time.perf_counter() - start:.0f} s", flush=True)
    protos, sessions, diffs = build_sessions(models, splits)
    print(f"exported and quantized after {time.perf_counter() - start:.0f} s", flush=True)
    shipped = {n: mp.deployable_copy(m)[0] for n, m in models.items()}  # masks made permanent: what you would ship
    runners = {("pytorch", n): m for n, m in shipped.items()} | {("onnxruntime", n): s for n, s in sessions.items()}
    keyed = {f"{rt}/{n}": r for (rt, n), r in runners.items()}
    ms = {b: mp.timing.interleaved_latency(keyed, splits.input_shape, batch_size=b, threads=THREADS, rounds=ROUNDS)
          for b in (1, 64)}
    rows = []
    for (runtime, name), r in runners.items():
        model = shipped[name.split()[0]]
        precision = PRECISION.get(name, EnergyOptions())
        onnx_run = isinstance(r, ort.InferenceSession)
        rows.append({"model": "lenet5", "variant": name, "runtime": runtime,
                     "bytes": protos[name].ByteSize() if onnx_run else size_on_disk(model)["bytes"],
                     "acc": ex.onnx_accuracy(r, test) if onnx_run else mp.evaluate(model, test)["acc"],
                     "latency_b1_ms": ms[1][f"{runtime}/{name}"], "latency_b64_ms": ms[64][f"{runtime}/{name}"],
                     "energy_uj": estimate_energy(model, options=precision)["total_uj"],
                     "energy_sparse_hw_uj": estimate_energy(model, options=replace(precision, sparse=True))["total_uj"],
                     "max_abs_diff": diffs.get(name) if onnx_run else None})
    return {"rows": rows, "targets": targets(rows), "seconds": time.perf_counter() - start,
            "setup": {"threads": THREADS, "rounds": ROUNDS, "torch": torch.__version__, "onnxruntime": ort.__version__,
                      "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags()}}


def cpu_flags() -> str:
    """The SIMD features that decide which int8 kernels are fast (VNNI: int8 dot products in one instruction)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


def targets(rows: list[dict]) -> dict:
    """The issue's targets for each int8 variant against dense float PyTorch eager."""
    base = next(r for r in rows if r["runtime"] == "pytorch" and r["variant"] == "dense")
    out = {"float_onnx_max_abs_diff": max(r["max_abs_diff"] for r in rows if r["max_abs_diff"] is not None)}
    out["float_onnx_matches"] = out["float_onnx_max_abs_diff"] <= ex.FLOAT_ATOL
    for r in rows:
        if "int8" in r["variant"]:
            speedup, smaller = base["latency_b64_ms"] / r["latency_b64_ms"], base["bytes"] / r["bytes"]
            drop = base["acc"] - r["acc"]
            met = {"speedup>=4": speedup >= 4, "smaller>=10": smaller >= 10, "drop<=1": drop <= 1}
            out[r["variant"]] = {"speedup_b64": speedup, "x_smaller": smaller, "acc_drop": drop, "met": met}
    return out


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(RESULTS / "deploy.json", lambda f: f.write(text.encode()))
    table = Table([{k: v for k, v in r.items() if k != "model"} for r in result["rows"]])
    lines = ["# Deployment benchmark: LeNet-5 on mnist-small", "",
             f"{THREADS} thread, medians of {ROUNDS} interleaved rounds; bytes = torch.save state_dict (PyTorch) or "
             "ONNX file; energy = Horowitz 45 nm model, batch 1, weights from DRAM, each layer at its own precision "
             "(dense hardware; `energy_sparse_hw_uj`: hardware that stores and multiplies only nonzeros).", "",
             "Variants: `int8` = ONNX Runtime static int8, every Conv/Gemm (QOperator QLinearConv/QGemm, u8 "
             "activations, s8 per-channel weights); `int8-fc` = only the Gemm layers int8; `int8 weights` = weights "
             "stored int8 (per-channel, symmetric), dequantized once when the session is created, float arithmetic. "
             f"CPU: {result['setup']['cpu_flags']}.", "", table.to_markdown(), "",
             "## Targets", "", "```json", json.dumps(result["targets"], indent=2), "```", ""]
    atomic_write(RESULTS / "deploy.md", lambda f: f.write("\n".join(lines).encode()))


if __name__ == "__main__":
    result = main()
    write(result)
    print(Table(result["rows"]))
    print(json.dumps(result["targets"], indent=2))
