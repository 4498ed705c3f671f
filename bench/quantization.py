"""Quantization benchmark: int8 with PyTorch (dynamic, static PTQ, QAT) and Deep Compression on LeNet-300-100.

Targets (issue 6): int8 PTQ >= 3.5x smaller file at <= 0.5 point accuracy drop and faster CPU inference than
float; Deep Compression (prune + k-means sharing + Huffman) on LeNet-300-100 >= 100x smaller than the float
dense model at <= 0.5 point drop. Bytes are real files: torch.save of the float state_dict, the compact int8 file
of `save_int8` (checked to load back to identical outputs), or the Deep Compression file; latency is the median
over interleaved rounds, float vs variant in the same process, 1 thread, batch 64. The int8 engine is
`engine="auto"` (oneDNN for the CNNs, x86/fbgemm for the MLP; see minprune/quantization/int8.py for the measurements).
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


def row(model_name, method, bits, nbytes, float_bytes, acc, float_acc, speed) -> dict:
    return {"model": model_name, "method": method, "bits": bits, "bytes": nbytes,
            "compression": round(float_bytes / nbytes, 2), "acc": round(acc, 2), "acc_drop": round(float_acc - acc, 2),
            "speedup": round(speed, 2)}


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
        mp.fit(model, train, epochs=3, lr=1e-3, progress=False)
    mp.fit(model, train, epochs=3, lr=3e-4, progress=False)
    make_permanent(model)
    mp.share_weights(model, DC_BITS)
    mp.fit(model, train, epochs=3, lr=3e-4, progress=False)  # fine-tune the centroids
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
        float_acc, float_bytes = mp.accuracy(base, test), mp.size_on_disk(base)["bytes"]
        rows.append(row(arch, "float32", 32, float_bytes, float_bytes, float_acc, float_acc, 1.0))
        variants = {"static PTQ": mp.static_int8(base, calib)}
        if arch == "lenet300":
            variants = {"dynamic PTQ": mp.dynamic_int8(base), **variants}
        for method, q in variants.items():
            rows.append(row(arch, f"int8 {method} ({q.engine})", 8, int8_file_bytes(q, probe), float_bytes,
                            mp.accuracy(q, test), float_acc, speedup(base, q)))
        if arch == "lenet300":
            decoded, nbytes = deep_compression(base, splits, test)
            rows.append(row(arch, f"deep compression (prune {DC_SCHEDULE[-1]:.1%}, {DC_BITS}-bit, Huffman)", DC_BITS,
                            nbytes, float_bytes, mp.accuracy(decoded, test), float_acc, speedup(base, decoded)))
        print(f"{arch} done after {time.time() - start:.0f} s", flush=True)
    table = mp.Table(rows, title="Quantization (mnist-small test set, CPU, 1 thread, batch 64)")
    print(table)
    payload = {"rows": rows, "threads": THREADS, "rounds": ROUNDS, "torch": torch.__version__,
               "seconds": round(time.time() - start)}
    atomic_write(RESULTS / "quantization.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    atomic_write(RESULTS / "quantization.md", lambda f: f.write((table.to_markdown() + "\n").encode()))


if __name__ == "__main__":
    main()
