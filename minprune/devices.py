"""One device rule for the whole kit: `mp.device()`, and how every function uses it.

The rule: `cuda` when torch can see a GPU, else `cpu`. The environment variable MINPRUNE_DEVICE overrides it
(`cpu`, `cuda`, `cuda:1`, `mps`); a value that names no usable device is an error saying what this machine has.

Three kinds of functions, so that you can predict where anything runs:
- training and evaluating (`fit`, `evaluate`, `accuracy`, `fine_tune`, `iterative_prune`, `distill_student`,
  `run_pipeline`) take `device=None`, meaning `mp.device()`. They move the model there in place, like
  `model.to(device)`, and every batch with it; a distillation teacher goes to the same device.
- scoring (`taylor_scores`, `gradient_scores`, `snip_scores`, `grasp_scores`, `synflow_scores`, `synflow_masks`,
  `taylor_unit_scores`, `activation_scores`) takes the same `device=None` but never moves the model: it computes
  on a copy on that device and returns the scores where the model's weights are.
- measuring (`latency`, `summary`, `layer_latency`, `latency_grid`, `interleaved_latency`, ...) runs a model
  where it is, never moves it, waits for a GPU's queued work before reading the clock, and says which device
  it timed. PyTorch int8 kernels exist for the CPU only: an int8 model always runs on the CPU, whatever the
  rule says. ONNX export and the pipeline's stage table work on CPU copies (the deployment target).
Callbacks (`GradualPruner`, `DynamicSparseTrainer`, `RewindPoint`) follow the model wherever `fit` put it.
On a machine without a GPU every move is a no-op, so results are exactly those of a CPU-only kit.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn

ENV = "MINPRUNE_DEVICE"
ACCELERATORS = ("cuda", "xpu", "mps")  # device types minprune can run on besides the CPU
_INT8_MODULES = ("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def device() -> torch.device:
    """The kit's device: $MINPRUNE_DEVICE if it is set, else `cuda` when a GPU is available, else `cpu`.

    See notebooks/01_train_baseline.ipynb.
    """
    value = os.environ.get(ENV, "").strip()
    if value:
        return check_device(value, ENV)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _count(kind: str) -> int:
    """How many devices of type `kind` torch can use here (0 when none)."""
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    module = getattr(torch, kind, None)
    return module.device_count() if module is not None and module.is_available() else 0


def available() -> list[str]:
    """The devices this machine can run on, e.g. ['cpu'] or ['cpu', 'cuda:0', 'cuda:1']."""
    out = ["cpu"]
    for kind in ACCELERATORS:
        n = _count(kind)
        if kind == "mps":
            out += ["mps"] if n else []
        else:
            out += [f"{kind}:{i}" for i in range(n)]
    return out


def _choices(what: str) -> str:
    unset = f" (or unset {ENV} for the default: cuda if available, else cpu)" if what == ENV else ""
    return f"available here: {', '.join(available())}{unset}"


def _parse(value, what: str) -> torch.device:
    try:
        return torch.device(value.strip().lower() if isinstance(value, str) else value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{what}={value!r} is not a device name (try 'cpu', 'cuda', 'cuda:1' or 'mps'); "
                         f"{_choices(what)}") from None


def _why_unusable(dev: torch.device) -> str | None:
    """None if this machine can run on `dev`, else the reason it cannot."""
    if dev.type == "cpu":
        return None if dev.index in (None, 0) else "there is one CPU device, 'cpu'"
    if dev.type not in ACCELERATORS:
        return f"minprune runs models on cpu, {', '.join(ACCELERATORS)}, not {dev.type}"
    n = _count(dev.type)
    if n == 0:
        check = "torch.backends.mps" if dev.type == "mps" else f"torch.{dev.type}"
        return f"torch finds no {dev.type} device on this machine ({check}.is_available() is False)"
    if dev.index is not None and dev.index >= n:
        return f"this machine has {n} {dev.type} device(s), numbered from 0"
    return None


def check_device(value, what: str = "device") -> torch.device:
    """`value` ('cuda:1', torch.device, ...) as a torch.device if this machine can run on it, else ValueError
    naming `what`, the value and the devices that are available."""
    dev = _parse(value, what)
    reason = _why_unusable(dev)
    if reason is not None:
        raise ValueError(f"{what}={value!r} names no usable device: {reason}; {_choices(what)}")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def cpu_only(model: nn.Module) -> bool:
    """True for a model that runs PyTorch int8 kernels (`static_int8`, `dynamic_int8`): they exist for the CPU only."""
    return any(type(m).__name__ == "Int8Model" or type(m).__module__.startswith(_INT8_MODULES)
               for m in model.modules())


def resolve(model: nn.Module | None, requested=None) -> torch.device:
    """Where `model` should run: `requested` (checked) or, if None, `device()`. An int8 model runs on the CPU:
    with requested=None whatever the rule says, and a requested GPU is refused. model=None: no model yet (the
    pipeline). Changes nothing."""
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    int8 = model is not None and cpu_only(model)
    if requested is None:
        chosen = device()
        return torch.device("cpu") if chosen.type != "cpu" and int8 else chosen
    dev = _parse(requested, "device")
    if dev.type != "cpu" and int8:
        raise ValueError(f"device={requested!r}: this model runs PyTorch int8 kernels, which exist for the CPU "
                         f"only; pass device='cpu' or leave device=None")
    return check_device(requested)


def place(model: nn.Module, requested=None) -> torch.device:
    """Move `model` in place to `resolve(model, requested)` (nothing happens if it is there already); returns it."""
    dev = resolve(model, requested)
    if not all(same(t.device, dev) for t in [*model.parameters(), *model.buffers()]):
        model.to(dev)
    return dev


def synchronize(dev: torch.device) -> None:
    """Wait until `dev` has finished its queued work (GPUs run asynchronously); a no-op on the CPU.

    Timers call it before reading the clock."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "xpu":
        torch.xpu.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def where(models: Iterable) -> str:
    """The devices `models` sit on, e.g. 'cpu' or 'cpu, cuda:0'; anything not an nn.Module (an ONNX Runtime
    session) counts as 'cpu'. Measuring functions put it in their results."""
    found = [str(model_device(m)) if isinstance(m, nn.Module) else "cpu" for m in models]
    return ", ".join(dict.fromkeys(found))


def same(a: torch.device, b: torch.device) -> bool:
    """True when `a` and `b` are the same device ('cuda' and 'cuda:0' count as the same)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def example_input(model: nn.Module) -> torch.Tensor | None:
    """Zeros shaped (1, *model.input_shape) on the model's device, for tracing (`trace_groups(model, example)`);
    None when the model records no input_shape (the tracer then asks for an example)."""
    shape = getattr(model, "input_shape", None)
    return None if shape is None else torch.zeros(1, *shape, device=model_device(model))
