"""Sparsity schedules: the target sparsity as a plain function of the training step.

The cubic schedule is Zhu & Gupta 2017, "To prune, or not to prune":
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3   for t = t0, t0 + dt, ..., t0 + n * dt.
Every schedule holds `initial` before `start`, reaches `final` exactly at `end` and holds it afterwards,
and only changes value every `interval` steps (the pruning frequency dt).
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("cubic", "linear", "exponential", "one-shot")


def _check_sparsity(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a number in [0, 1) (bools, strings, NaN and inf refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a sparsity in [0, 1), got {value!r}")


def check_step(step, name: str = "step") -> int:
    """`step` when it is an int (a bool, a float or NaN is not a training step); else TypeError naming `name`."""
    if not isinstance(step, int) or isinstance(step, bool):
        raise TypeError(f"{name} must be an int step, got {step!r}")
    return step


def _check_steps(start: int, end: int, interval: int) -> None:
    for name, value in (("start", start), ("end", end), ("interval", interval)):
        check_step(value, name)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end <= start:
        raise ValueError(f"end must come after start, got start={start}, end={end}")
    if interval < 1:
        raise ValueError(f"interval must be a positive number of steps, got {interval}")


def progress(step: int, start: int, end: int, interval: int = 1) -> float:
    """Fraction of the schedule done at `step`, in [0, 1], advancing only every `interval` steps."""
    _check_steps(start, end, interval)
    check_step(step)
    if step <= start:
        return 0.0
    if step >= end:
        return 1.0
    done = (step - start) // interval * interval  # last update step at or before `step`
    return done / (end - start)


def cubic(step: int, final: float, *, initial: float = 0.0, start: int = 0, end: int, interval: int = 1) -> float:
    """Zhu & Gupta's cubic schedule: prunes fast at first, slowly near the end."""
    _check_pair(initial, final)
    return final + (initial - final) * (1.0 - progress(step, start, end, interval)) ** 3


def linear(step: int, final: float, *, initial: float = 0.0, start: int = 0, end: int, interval: int = 1) -> float:
    """Sparsity grows by the same amount at every update."""
    _check_pair(initial, final)
    return initial + (final - initial) * progress(step, start, end, interval)


def exponential(step: int, final: float, *, initial: float = 0.0, start: int = 0, end: int,
                interval: int = 1) -> float:
    """The density (1 - sparsity) shrinks by the same factor at every update."""
    _check_pair(initial, final)
    ratio = (1.0 - final) / (1.0 - initial)
    return 1.0 - (1.0 - initial) * ratio ** progress(step, start, end, interval)


def one_shot(step: int, final: float, *, initial: float = 0.0, start: int = 0, end: int | None = None,
             interval: int = 1) -> float:
    """All pruning at once at `start` (end and interval are accepted for a common signature)."""
    _check_pair(initial, final)
    check_step(step)
    check_step(start, "start")
    return final if step >= start else initial


def _check_pair(initial: float, final: float) -> None:
    _check_sparsity("initial", initial)
    _check_sparsity("final", final)
    if final < initial:
        raise ValueError(f"final sparsity must be >= initial sparsity, got initial={initial}, final={final}")


FUNCTIONS = {"cubic": cubic, "linear": linear, "exponential": exponential, "one-shot": one_shot}


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: `schedule(step)` -> target sparsity. Build one with `make_schedule`; built directly,
    it is checked the same way."""

    shape: str
    final: float
    initial: float = 0.0
    start: int = 0
    end: int = 1
    interval: int = 1

    def __post_init__(self):
        check_shape(self.shape)
        _check_pair(self.initial, self.final)
        _check_steps(self.start, self.end, self.interval)
        object.__setattr__(self, "final", float(self.final))
        object.__setattr__(self, "initial", float(self.initial))

    def __call__(self, step: int) -> float:
        return FUNCTIONS[self.shape](step, self.final, initial=self.initial, start=self.start, end=self.end,
                                     interval=self.interval)

    def update_steps(self) -> list[int]:
        """The steps at which the target sparsity changes (where a pruner recomputes masks)."""
        if self.shape == "one-shot":
            return [self.start]
        steps = list(range(self.start, self.end, self.interval))
        return steps + [self.end] if steps[-1] != self.end else steps


def make_schedule(shape: str, final: float, *, initial: float = 0.0, start: int = 0, end: int | None = None,
                  interval: int = 1) -> Schedule:
    """Check every argument once and return a `Schedule` callable of the step.

    shape: 'cubic', 'linear', 'exponential' or 'one-shot' (which needs no `end`).
    See notebooks/07_dynamic_pruning.ipynb.
    """
    check_shape(shape)
    _check_pair(initial, final)
    check_step(start, "start")
    if end is None:
        if shape != "one-shot":
            raise ValueError(f"a {shape} schedule needs an end step")
        end = start + 1
    _check_steps(start, end, interval)
    return Schedule(shape, final, initial, start, end, interval)


def check_shape(shape) -> str:
    """`shape` when it names a schedule; else ValueError listing them."""
    if not isinstance(shape, str) or shape not in FUNCTIONS:
        raise ValueError(f"unknown schedule shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return shape
