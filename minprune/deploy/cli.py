"""`python -m minprune export MODEL_FILE --format onnx [--int8 | --int8-weights]`: a saved model out of PyTorch,
checked and measured.

Reads a `minprune.save_model` file, exports it to ONNX (masks made permanent on a copy), checks ONNX Runtime
against PyTorch, optionally quantizes the ONNX model to int8 (`--int8`: int8 arithmetic; `--int8-weights`: int8
weights in the file, float arithmetic, see onnx_int8.py), writes the file atomically and prints bytes,
test accuracy, batch-1 and batch-64 latency (PyTorch eager and ONNX Runtime) and the estimated energy.
See notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minprune import data as data_lib
from minprune.checkpoint import load_model
from minprune.deploy.export import (
    FLOAT_ATOL,
    FORMATS,
    check_format,
    export_onnx,
    max_abs_diff,
    onnx_accuracy,
    quantize_onnx,
    session,
    write_onnx,
)
from minprune.deploy.onnx_int8 import int8_weights_onnx
from minprune.energy import EnergyOptions, estimate_energy
from minprune.measure import size_on_disk
from minprune.table import Table
from minprune.timing import interleaved_latency
from minprune.train import evaluate


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `export` subcommand on an argparse subparsers object; sets `func=export_command`.

    See notebooks/11_deploy.ipynb.
    """
    p = subparsers.add_parser(
        "export", help="export a saved model to ONNX, check it and measure it",
        description="Export a minprune model file to ONNX, check ONNX Runtime against PyTorch, and print bytes, "
                    "accuracy, latency and estimated energy.",
        epilog="examples:\n  python -m minprune export runs/lenet5/final.pt\n"
               "  python -m minprune export pruned.pt --int8 --threads 2\n"
               "  python -m minprune export pruned.pt --int8-weights --out pruned.int8w.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_file", help="a file written by minprune.save_model (mp.save_model)")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="export format (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="quantize the ONNX model to int8 (static for CNNs)")
    p.add_argument("--int8-weights", action="store_true",
                   help="store the weights as int8 but compute in float (4x smaller file at float speed)")
    p.add_argument("--out", default=None, help="output file (default: MODEL_FILE with .onnx or .int8.onnx)")
    p.add_argument("--data", default="mnist-small", choices=data_lib.NAMES,
                   help="data set for accuracy and int8 calibration (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for PyTorch and ONNX Runtime (default: %(default)s)")
    p.set_defaults(func=export_command)
    return p


def _out_path(args) -> Path:
    if args.out:
        return Path(args.out)
    suffix = ".int8.onnx" if args.int8 else ".int8w.onnx" if getattr(args, "int8_weights", False) else ".onnx"
    return Path(args.model_file).with_suffix(suffix)


def export_command(args) -> int:
    """Run `export` for parsed arguments (model_file, format, int8, out, data, threads); returns exit code 0.

    Bad input (unknown format, unreadable file, data that does not fit the model) raises ValueError / OSError
    before anything is written. See notebooks/11_deploy.ipynb.
    """
    check_format(args.format)
    int8_weights = getattr(args, "int8_weights", False)
    if args.int8 and int8_weights:
        raise ValueError("choose one of --int8 (int8 arithmetic) and --int8-weights (int8 file, float arithmetic)")
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    model, _ = load_model(args.model_file)
    splits = data_lib.load(args.data)
    if tuple(splits.input_shape) != tuple(model.input_shape):
        raise ValueError(f"--data {args.data} has inputs {tuple(splits.input_shape)} but the model expects "
                         f"{tuple(model.input_shape)}")
    out = _out_path(args)
    exported = export_onnx(model, None if args.int8 or int8_weights else out, threads=args.threads)
    for note in exported.notes:
        print(f"note: {note}")
    print(f"check: ONNX Runtime vs PyTorch, max |diff| {exported.max_abs_diff:.2e} <= {FLOAT_ATOL:.0e}: ok")
    proto = exported.proto
    if args.int8:
        proto = quantize_onnx(proto, splits.sample(256, "train")[0], path=out)
        x, _ = splits.sample(256, "test")
        diff = max_abs_diff(model, session(proto), x)
        print(f"int8: max |diff| to PyTorch float logits {diff:.3f} (int8 is approximate: compare accuracy)")
    if int8_weights:
        proto = int8_weights_onnx(proto)
        write_onnx(proto, out)
        diff = max_abs_diff(model, session(proto), splits.sample(256, "test")[0])
        print(f"int8 weights: max |diff| to PyTorch float logits {diff:.3f} (rounded weights: compare accuracy)")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    precision = EnergyOptions(bits=8 if args.int8 else 32, weight_bits=8 if int8_weights else None)
    print(measurements(model, proto, splits, threads=args.threads, precision=precision))
    return 0


FP32 = EnergyOptions(bits=32)  # every layer in float: the PyTorch row, and a float ONNX file


def measurements(model, proto, splits, *, threads: int = 1, precision: EnergyOptions = FP32, rounds: int = 5
                 ) -> Table:
    """Two rows (PyTorch eager, ONNX Runtime): bytes, test accuracy, batch-1/64 latency (ms), energy (uJ).

    precision: the ONNX model's `bits` / `weight_bits` for its energy estimate (an `energy.EnergyOptions`).
    See notebooks/11_deploy.ipynb.
    """
    sess = session(proto, threads=threads)
    test = splits.loader("test", 500)
    ms = {b: interleaved_latency({"torch": model, "onnx": sess}, splits.input_shape, batch_size=b,
                                 threads=threads, rounds=rounds) for b in (1, 64)}
    rows = [{"runtime": "pytorch eager (fp32)", "bytes": size_on_disk(model)["bytes"],
             "acc": evaluate(model, test)["acc"], "latency_b1_ms": ms[1]["torch"], "latency_b64_ms": ms[64]["torch"],
             "energy_uj": estimate_energy(model, options=FP32)["total_uj"]},
            {"runtime": f"onnxruntime ({_label(precision)})", "bytes": proto.ByteSize(),
             "acc": onnx_accuracy(sess, test), "latency_b1_ms": ms[1]["onnx"], "latency_b64_ms": ms[64]["onnx"],
             "energy_uj": estimate_energy(model, options=precision)["total_uj"]}]
    return Table(rows, title=f"{threads} thread(s); energy: Horowitz 45 nm model, weights from DRAM")


def _label(precision: EnergyOptions) -> str:
    if precision.bits == 8:
        return "int8"
    return "int8 weights, fp32 math" if precision.weight_bits == 8 else "fp32"
