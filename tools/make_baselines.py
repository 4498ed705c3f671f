"""Train the shipped baselines with the fixed recipes and write them to minprune/assets/baselines/.

Run it as `make baselines` (or `make baselines-check`), which sets the reference kernels before Python starts:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=2

Training is deterministic for one CPU instruction set and one thread count, not across them. The reference is
an x86-64 CPU running AVX2 kernels on 2 threads (any x86-64 CPU from the last ten years can be forced down to it):
there, these files are reproduced bit for bit, and the committed notebook outputs come from the same setting.

    python tools/make_baselines.py           # write the files (refuses unless the reference kernels are active)
    python tools/make_baselines.py --check   # train again in a temporary folder and compare tensor hashes
    python tools/make_baselines.py --only tinyvit chargpt   # just these (file names starting with them)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from minprune import zoo
from minprune.assets import baselines_dir
from minprune.checkpoint import read_checkpoint, save_model, tensors_sha256
from minprune.distillation.teacher import shift_teacher_filename, train_shift_teacher

REFERENCE_CAPABILITY, REFERENCE_THREADS = "AVX2", 2
TEACHER = {"arch": "lenet5", "dataset": "mnist-small", "epochs": 15, "max_shift": 2, "seed": 0}


def reference_problem() -> str | None:
    """Why this process does not run the reference kernels, or None when it does."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != REFERENCE_CAPABILITY:
        return f"the CPU kernels are {capability}, not {REFERENCE_CAPABILITY} (set ATEN_CPU_CAPABILITY=avx2)"
    return None


def jobs():
    """(file name, train function) for every shipped file."""
    for arch, recipe in zoo.BASELINE_RECIPES.items():
        name = zoo.baseline_filename(arch, zoo.default_dataset(arch), 0, recipe)
        yield name, lambda arch=arch, recipe=recipe: zoo.train_baseline(arch, recipe=recipe, progress=False)
    kwargs = {k: v for k, v in TEACHER.items() if k not in ("arch", "dataset")}
    yield (shift_teacher_filename(TEACHER["arch"], TEACHER["dataset"], **kwargs),
           lambda: train_shift_teacher(TEACHER["arch"], TEACHER["dataset"], **kwargs))


def build(out: Path, only: list[str] | None = None) -> dict[str, str]:
    """Train every baseline (or those whose file name starts with one of `only`) into `out`; returns
    {file name: tensor hash}."""
    hashes = {}
    for name, train in jobs():
        if only and not any(name.startswith(prefix + "-") for prefix in only):
            continue
        model, meta = train()
        save_model(out / name, model, meta=meta)
        hashes[name] = tensors_sha256(model.state_dict())
        print(f"wrote {out / name}  sha256 {hashes[name][:16]}  {meta.get('test_acc', '')}")
    return hashes


def check(only: list[str] | None = None) -> int:
    """Retrain in a temporary folder; 0 when every tensor equals the shipped file's."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build(Path(tmp), only)
    differ = [name for name, digest in fresh.items()
              if tensors_sha256(read_checkpoint(baselines_dir() / name)["state_dict"]) != digest]
    for name in fresh:
        print(f"{name}: {'DIFFERS' if name in differ else 'identical'}")
    return 1 if differ else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain and compare with the shipped files")
    parser.add_argument("--only", nargs="+", metavar="ARCH", help="only these baselines (e.g. tinyvit chargpt)")
    parser.add_argument("--any-cpu", action="store_true", help="write even without the reference kernels")
    args = parser.parse_args(argv)
    torch.set_num_threads(REFERENCE_THREADS)
    problem = reference_problem()
    if problem and not args.any_cpu:
        print(f"refusing: {problem}; run `make baselines`, or pass --any-cpu", file=sys.stderr)
        return 2
    if args.check:
        return check(args.only)
    build(baselines_dir(), args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
