"""Quantization benchmark: int8 with PyTorch (dynamic, static PTQ, QAT) and Deep Compression on LeNet-300-100.

Targets (issue 6): int8 PTQ >= 3.5x smaller file at <= 0.5 point accuracy drop and faster CPU inference than
float; Deep Compression (prune + k-means sharing + Huffman) on LeNet-300-100 >= 100x smaller than the float
dense model at <= 0.5 point drop. Bytes are real files: torch.save of the float state_dict, the compact int8 file
of `save_int8` (checked to load back to identical outputs), or the Deep Compression file; latency is the median
over interleaved rounds, float vs variant in the same process, 1 thread, batch 64. The int8 engine is
`engine="auto"` (oneDNN for the CNNs, x86/fbgemm for the MLP; measured in minprune/quantization/engines.py).
Writes bench/results/quantization.json and quantization.md. Run: `.venv/bin/python bench/quantization.py`.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import minprune as mp
from minprune.checkpoint import atomic_write
from minprune.masked import copy_model, make_permanent
from minprune.quantization.int8_file import load_int8, save_int8
from minprune.unstructured.prune import prune
from minprune.unstructured.scores import magnitude_scores

RESULTS = Path(__file__).parent / "results"
THREADS, ROUNDS, SEED = 1, 15, 0
DC_SCHEDULE, DC_BITS = (0.8, 0.9, 0.95, 0.975), 4


def speedup(float_model, variant) -> float:
    """Median float latency / median variant latency, interleaved rounds in this process."""
    base, new = [], []
    for _ in range(ROUNDS):
        base.append(mp.latency(float_model, (1, 28, 28), batch_size=64, threads=THREADS, repeats=5)["median_ms"])
        new.append(mp.latency(variant, (1, 28, 28), batch_size=64, threads=THREADS, repeats=5)["median_ms"])
    return statistics.median(base) / statistics.median(new)


def row(model_name, method, bits, measured: dict, base: dict) -> dict:
    """One result row: measured = {"bytes", "acc", "speedup"} of the variant, base = {"bytes", "acc"} of float."""
    nbytes, acc = measured["bytes"], measured["acc"]
    return {"model": model_name, "method": method, "bits": bits, "bytes": nbytes,
            "compression": round(base["bytes"] / nbytes, 2), "acc": round(acc, 2),
            "acc_drop": round(base["acc"] - acc, 2), "speedup": round(measured["speedup"], 2)}


def int8_file_bytes(q, probe) -> int:
    """Bytes of the compact int8 file; the file must load back to exactly the same outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        nbytes = save_int8(Path(tmp) / "model.mpq", q)["bytes"]
        if not torch.equal(load_int8(Path(tmp) / "model.mpq")(probe), q(probe)):
            raise AssertionError(f"{q.method} int8 file does not reproduce the model's outputs")
    return nbytes


def deep_compression(base, splits, test) -> tuple[torch.nn.Module, int]:
    """Iterative global magnitude pruning with fine-tuning, 4-bit k-means sharing, centroid fine-tuning, Huffman."""
    train = splits.loader("train", 64, seed=SEED)
    mp.seed_everything(SEED)
    model = copy_model(base)
    for sparsity in DC_SCHEDULE:
        prune(model, magnitude_scores(model), sparsity, scope="global")
        mp.fit(model, train, mp.TrainConfig(epochs=3, lr=1e-3), progress=False)
    mp.fit(model, train, mp.TrainConfig(epochs=3, lr=3e-4), progress=False)
    make_permanent(model)
    mp.share_weights(model, DC_BITS)
    mp.fit(model, train, mp.TrainConfig(epochs=3, lr=3e-4), progress=False)  # fine-tune the centroids
    with tempfile.TemporaryDirectory() as tmp:
        info = mp.save_compressed(Path(tmp) / "lenet300.mpdc", model)
        decoded = mp.load_compressed(Path(tmp) / "lenet300.mpdc").eval()  # accuracy is measured on the decoded file
    return decoded, info["bytes"]


def main() -> None:
    torch.set_num_threads(THREADS)
    start = time.time()
    splits = mp.load("mnist-small")
    test, calib = splits.loader("test", 500), [splits.sample(256, "train")[0]]
    probe = splits.sample(64, "test")[0]
    rows = []
    for arch in ("lenet300", "lenet5", "vgg", "resnet"):
        base = mp.pretrained(arch, progress=False).eval()
        floats = {"acc": mp.accuracy(base, test), "bytes": mp.size_on_disk(base)["bytes"]}
        rows.append(row(arch, "float32", 32, {**floats, "speedup": 1.0}, floats))
        variants = {"static PTQ": mp.static_int8(base, calib)}
        if arch == "lenet300":
            variants = {"dynamic PTQ": mp.dynamic_int8(base), **variants}
        for method, q in variants.items():
            measured = {"bytes": int8_file_bytes(q, probe), "acc": mp.accuracy(q, test), "speedup": speedup(base, q)}
            rows.append(row(arch, f"int8 {method} ({q.engine})", 8, measured, floats))
        if arch == "lenet300":
            decoded, nbytes = deep_compression(base, splits, test)
            measured = {"bytes": nbytes, "acc": mp.accuracy(decoded, test), "speedup": speedup(base, decoded)}
            rows.append(row(arch, f"deep compression (prune {DC_SCHEDULE[-1]:.1%}, {DC_BITS}-bit, Huffman)", DC_BITS,
                            measured, floats))
        print(f"{arch} done after {time.time() - start:.0f} s", flush=True)
    table = mp.Table(rows, title="Quantization (mnist-small test set, CPU, 1 thread, batch 64)")
    print(table)
    payload = {"rows": rows, "threads": THREADS, "rounds": ROUNDS, "torch": torch.__version__,
               "seconds": round(time.time() - start)}
    atomic_write(RESULTS / "quantization.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    atomic_write(RESULTS / "quantization.md", lambda f: f.write((table.to_markdown() + "\n").encode()))


if __name__ == "__main__":
    main()
