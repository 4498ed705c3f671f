"""The kit's one latency timer, and the speedups built on it.

A shared CPU changes speed from second to second, so models timed one after the other are timed on different
machines. `time_models` times a dict of models in alternating rounds, so that a slow phase slows all alike, and
returns every model's samples with the thread count and device(s) it used. Every latency in the kit comes from
it: `latency` and `summary` (one model), `latency_grid` and `speedups` (batch sizes x thread counts),
`interleaved_latency`, `SpeedupSampler` and `speedup_spread` (here), and `layer_latency` (`profile.py`).

The thread rule, everywhere: **one thread unless told** (`threads=1`). Small models compare most faithfully on
one thread, the least disturbed by other processes; `threads=None` keeps torch's current count. ONNX Runtime
sessions carry their own count (`deploy.export.session`). Even interleaved, one measurement is one draw:
`speedup_spread` repeats it in passes and reports the median speedup with its lowest and highest, and
`SpeedupSampler` takes its passes whenever you ask, so that they can be spread over minutes of other work.
Every model is timed where it sits (ONNX Runtime sessions on the CPU); on a GPU the clock is read only after
the queued work is done (`devices.synchronize`), and results name the device(s) they timed.
See notebooks/06_structured_pruning.ipynb, notebooks/10_capstone.ipynb and notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from minprune import devices
from minprune.table import Table
from minprune.train import eval_mode
from minprune.validate import float_dtype, input_shape_arg, model_arg, positive_int


def check_warmup(warmup) -> int:
    """`warmup` when it is an int >= 0 (not a bool); else ValueError."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    return warmup


@contextmanager
def num_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it as it is)."""
    before = torch.get_num_threads()
    if n is not None:
        positive_int(n, "threads")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Timings:
    """What `time_models` measured: per model, one sample (ms per call) per timed round, and how.

    `threads` is torch's intra-op thread count during the timing (ONNX Runtime sessions carry their own);
    `device` names where the models ran ('cpu', or e.g. 'cpu, cuda:0'). See notebooks/06_structured_pruning.ipynb.
    """

    samples: dict[str, list[float]]
    batch_size: int
    threads: int
    device: str

    def medians(self) -> dict[str, float]:
        """The median sample of every model (ms per call)."""
        return {name: statistics.median(samples) for name, samples in self.samples.items()}

    def describe(self) -> str:
        """The settings in words, for a table title: 'batch 64, 1 thread(s), on cpu'."""
        return f"batch {self.batch_size}, {self.threads} thread(s), on {self.device}"


def is_session(model) -> bool:
    """True for an ONNX Runtime InferenceSession, recognised by what it does (`run` and `get_inputs`), so
    that timing needs no import of onnxruntime."""
    return not isinstance(model, nn.Module) and all(callable(getattr(model, a, None)) for a in ("run", "get_inputs"))


def check_models(models) -> None:
    """ValueError unless `models` is a non-empty dict {name: model}."""
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict {{name: model}}, got {type(models).__name__} "
                         f"{models!r:.60}")


def check_baseline(models: dict, baseline: str | None) -> str:
    """The name of the baseline model: `baseline`, or the first model's name when it is None."""
    if baseline is None:
        return next(iter(models))
    if baseline not in models:
        raise ValueError(f"baseline must be one of the model names {list(models)}, got {baseline!r}")
    return baseline


def speedups_over(ms: dict[str, float], baseline: str) -> dict[str, float]:
    """{name: how many times faster than `baseline`} from {name: ms}."""
    return {name: ms[baseline] / t for name, t in ms.items()}


def _check_timed(models: dict) -> None:
    for name, model in models.items():
        if not isinstance(model, nn.Module) and not is_session(model):
            raise TypeError(f"models must hold torch.nn.Modules or ONNX Runtime sessions, got "
                            f"{type(model).__name__} for {name!r}")
        if isinstance(model, nn.Module):
            model_arg(model, f"models[{name!r}]")  # a model on the meta device holds no values to run


def runner(model) -> Callable:
    """A function x -> output for a PyTorch model (inference mode; x on the model's device, which is waited for
    before returning) or an ONNX Runtime session (x on the CPU)."""
    if is_session(model):
        name = model.get_inputs()[0].name
        return lambda x: model.run(None, {name: x.numpy()})

    def run(x):
        with torch.inference_mode():
            out = model(x)
        devices.synchronize(x.device)
        return out
    return run


def is_channels_last(model: nn.Module) -> bool:
    """True when the model's 4-D weights are stored NHWC (`model.to(memory_format=torch.channels_last)`)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


def _input_for(model, x: torch.Tensor) -> torch.Tensor:
    """`x` as `model` takes it: on its device and in its float dtype (float16 / bfloat16 models get inputs of their
    own dtype), in NHWC layout for a channels_last model; on the CPU for a session."""
    if is_session(model):
        return x.cpu()
    dtype = float_dtype(model) if x.is_floating_point() else x.dtype
    x = x.to(devices.model_device(model), dtype)
    if x.dim() == 4 and is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _turn(run: Callable, x: torch.Tensor, calls: int, warm: bool) -> float:
    """One model's turn in a round: an untimed call first if `warm`, then `calls` timed ones; ms per call."""
    if warm:
        run(x)
    start = time.perf_counter()
    for _ in range(calls):
        run(x)
    return 1000 * (time.perf_counter() - start) / calls


def time_models(models: dict, x: torch.Tensor, *, threads: int | None = 1, rounds: int = 15, per_round: int = 3,
                warmup: int = 0) -> Timings:
    """Time every model on the batch `x`, interleaved: `warmup` untimed rounds, then `rounds` timed ones.

    In each round every model takes its turn: `per_round` calls whose mean (ms per call) is that round's sample.
    With two or more models a turn starts with one untimed call (after another model ran, the caches are cold:
    +0.6 ms for a 2.3 ms int8 LeNet-5 here, which a model serving requests does not pay). Models are PyTorch
    modules (in eval mode, each one's mode restored; on their own device, x copied there, in NHWC layout if
    they are channels_last) or ONNX Runtime sessions (on the CPU). PyTorch runs on `threads` threads: 1 unless
    told (None: torch's current count); the result says how many. See notebooks/06_structured_pruning.ipynb.
    """
    check_models(models)
    _check_timed(models)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (one input batch), got {type(x).__name__}")
    positive_int(threads, "threads", none_ok=True)
    positive_int(rounds, "rounds")
    positive_int(per_round, "per_round")
    check_warmup(warmup)
    runs = {name: runner(m) for name, m in models.items()}
    inputs = {name: _input_for(m, x) for name, m in models.items()}
    samples = {name: [] for name in models}
    with ExitStack() as stack:
        for model in models.values():
            if isinstance(model, nn.Module):
                stack.enter_context(eval_mode(model))
        stack.enter_context(num_threads(threads))
        used = torch.get_num_threads()
        for i in range(warmup + rounds):
            for name, run in runs.items():
                ms = _turn(run, inputs[name], per_round, warm=len(models) > 1)
                if i >= warmup:
                    samples[name].append(ms)
    return Timings(samples, batch_size=x.shape[0], threads=used, device=devices.where(models.values()))


def interleaved_latency(models: dict, input_shape, *, batch_size: int = 64, threads: int | None = 1,
                        rounds: int = 15, per_round: int = 3) -> dict[str, float]:
    """Median latency (ms) of PyTorch models and ONNX Runtime sessions: `time_models` on a fixed random batch.

    `rounds` rounds of `per_round` calls per model, on `threads` PyTorch threads (1 unless told); the global
    random stream is untouched. See notebooks/11_deploy.ipynb.
    """
    positive_int(batch_size, "batch_size")
    input_shape = input_shape_arg(input_shape)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    return time_models(models, x, threads=threads, rounds=rounds, per_round=per_round).medians()


class SpeedupSampler:
    """Speedups of every model over `baseline` (default: the first), one interleaved pass (`rounds` rounds of
    `interleaved_latency`) each time `sample()` is called, on `threads` threads (1 unless told). Passes taken
    minutes apart, between other work, see more of a shared machine's states than passes taken back to back.
    `table()` summarises them. See notebooks/10_capstone.ipynb.
    """

    def __init__(self, models: dict, input_shape, *, baseline: str | None = None, rounds: int = 15,
                 batch_size: int = 64, threads: int | None = 1):
        check_models(models)
        self.baseline = check_baseline(models, baseline)
        positive_int(rounds, "rounds")
        positive_int(batch_size, "batch_size")
        positive_int(threads, "threads", none_ok=True)
        self.models, self.input_shape = models, input_shape_arg(input_shape)
        threads = torch.get_num_threads() if threads is None else threads  # stated, and kept for every pass
        self.options = {"rounds": rounds, "batch_size": batch_size, "threads": threads}
        self.ratios = {name: [] for name in models}

    def sample(self) -> None:
        """Time one interleaved pass and record every model's speedup in it."""
        ms = interleaved_latency(self.models, self.input_shape, **self.options)
        for name, ratio in speedups_over(ms, self.baseline).items():
            self.ratios[name].append(ratio)

    @property
    def passes(self) -> int:
        return len(self.ratios[self.baseline])

    def table(self) -> Table:
        """Per model: the median speedup over the passes so far, the lowest and the highest."""
        if not self.passes:
            raise ValueError("no passes yet: call sample() first")
        return Table([{"model": name, "x faster": statistics.median(r), "lowest": min(r), "highest": max(r),
                       "passes": len(r)} for name, r in self.ratios.items()],
                     title=f"speedup over {self.baseline!r} on {devices.where(self.models.values())}, batch "
                           f"{self.options['batch_size']}, {self.options['threads']} thread(s), {self.passes} passes")


def speedup_spread(models: dict, input_shape, *, baseline: str | None = None, passes: int = 5, rounds: int = 15,
                   batch_size: int = 64) -> Table:
    """Speedup of every model over `baseline` (default: the first) in `passes` interleaved measurements taken
    back to back (`SpeedupSampler`, `rounds` rounds each, one thread): median, lowest and highest, per model.

    Models may be PyTorch modules or ONNX Runtime sessions; for another thread count use `SpeedupSampler`.
    See notebooks/10_capstone.ipynb.
    """
    positive_int(passes, "passes")
    sampler = SpeedupSampler(models, input_shape, baseline=baseline, rounds=rounds, batch_size=batch_size)
    for _ in range(passes):
        sampler.sample()
    return sampler.table()
