#!/usr/bin/env bash
# GPU check for minprune: run it on a machine with a CUDA GPU (a few minutes).
#   1. prints the GPU (nvidia-smi, and what torch sees);
#   2. runs the tests marked `cuda` (pytest -m cuda: fit, evaluate, scores, fine-tuning, distillation, the
#      pipeline, timing and callbacks on the GPU, compared with the CPU);
#   3. a ~2-minute smoke run of the whole pipeline with MINPRUNE_DEVICE=cuda (train, Taylor-prune, distil,
#      int8 on the CPU, measure), checking where every stage landed and that the accuracies are sane.
#
# Exit status: 0 every step passed on a GPU; 1 a step failed (each failure is named at the end);
#   77 no CUDA GPU here, nothing was checked (safe on CPU-only machines and CI; 77 is the usual "skipped" code).
# Usage: tools/gpu_check.sh            (from anywhere; PYTHON=... picks the interpreter, default .venv/bin/python)
#        GPU_CHECK_DEVICE=cpu tools/gpu_check.sh   dry run of steps 2-3 on the CPU, to check this script itself
#        GPU_CHECK_EPOCHS=N                        training epochs of the smoke run (default 4)
#        GPU_CHECK_TESTS="tests/test_device.py"    where to look for the cuda tests (default: tests)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-.venv/bin/python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
EPOCHS=${GPU_CHECK_EPOCHS:-4}
TESTS=${GPU_CHECK_TESTS:-tests}
failed=()

echo "== 1. the GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "nvidia-smi: not found"
fi
"$PY" - <<'EOF' || { echo "cannot import torch with $PY"; exit 1; }
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}, capability {torch.cuda.get_device_capability(i)}")
EOF
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU on this machine: nothing to check (exit 77)"
  exit 77
fi

echo "== 2. tests marked cuda"
# shellcheck disable=SC2086  # TESTS may name several paths
"$PY" -m pytest $TESTS -m cuda -p no:randomly -q -rs || failed+=("cuda tests")

echo "== 3. pipeline smoke run on $DEVICE"
MINPRUNE_DEVICE=$DEVICE GPU_CHECK_EPOCHS=$EPOCHS timeout 600 "$PY" - <<'EOF' || failed+=("pipeline smoke run")
import os
import time

import minprune as mp

device, epochs = mp.device(), int(os.environ["GPU_CHECK_EPOCHS"])
print(f"mp.device() = {device}")
config = mp.pipeline.recipe.from_dict({
    "name": "gpu-smoke",
    "base": {"arch": "lenet5", "source": "train", "epochs": epochs},
    "prune": {"method": "weight", "sparsity": 0.8, "score": "taylor"},
    "finetune": {"epochs": epochs, "distill": True},
    "quantize": {"method": "dynamic-int8"},
    "measure": {"repeats": 3},
})
start = time.perf_counter()
result = mp.run_pipeline(config, progress=False)
print(result.table)
print("seconds per stage:", {name: round(s, 1) for name, s in result.seconds.items()},
      f"total {time.perf_counter() - start:.0f} s")
for name, model in result.models.items():
    where = mp.devices.model_device(model)
    expected = "cpu" if mp.devices.cpu_only(model) else device.type
    assert where.type == expected, f"stage {name!r} is on {where}, expected {expected}"
accs = result.table.column("acc")
assert accs[0] > 90 and min(accs) > 80, f"accuracies too low: {accs}"
assert set(result.table.column("device")) == {"cpu"}, "the stage table measures on the CPU"
timed = mp.latency(result.models["dense"], batch_size=64, repeats=10)
print(f"dense latency on {timed['device']}: {timed['median_ms']:.3f} ms per batch of 64")
assert timed["device"].startswith(device.type)
print("smoke run OK")
EOF

if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "GPU check passed"
