"""The stage table: every stage measured the same way (accuracy, parameters, nonzeros, MACs, batch latency,
bytes) and compared with the dense model.

Everything is measured on the CPU, the deployment target, on what you would ship (`as_deployed`: masks folded
in, a copy of any stage that sits elsewhere), and the `device` column says so. Latencies are measured in
interleaved rounds so that a noisy, shared CPU slows every stage alike. See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

from torch import nn

from minprune.batches import peek_batches
from minprune.deploy.deployable import deployable_copy
from minprune.devices import cpu_only
from minprune.measure import count_macs, count_nonzeros, count_params, size_on_disk
from minprune.pipeline.recipe import MeasureStep
from minprune.quantization.int8_modules import Int8Model
from minprune.table import Table
from minprune.timing import interleaved_latency
from minprune.train import evaluate
from minprune.validate import check_flag, model_arg


def as_deployed(model: nn.Module) -> nn.Module:
    """A stage as you would ship it, on the CPU: an int8 model as it is (its kernels are CPU kernels), any other
    model as `deploy.deployable.deployable_copy` makes it (a copy with the masks folded in, in eval mode).

    See notebooks/10_capstone.ipynb.
    """
    model_arg(model)
    if cpu_only(model):
        return model
    return deployable_copy(model)[0]


def stage_counts(model: nn.Module, input_shape, previous: dict | None = None) -> dict:
    """Parameters, nonzeros and MACs. An int8 model has the same weights as the float model it came from,
    packed where torch's counters cannot see them, so its counts carry over from the `previous` stage's row.

    See notebooks/10_capstone.ipynb.
    """
    if isinstance(model, Int8Model) and previous is not None:
        return {k: previous[k] for k in ("params", "nonzeros", "MACs")}
    return {"params": count_params(model), "nonzeros": count_nonzeros(model), "MACs": count_macs(model, input_shape)}


def measure_stages(models: dict[str, nn.Module], loader, *, input_shape=None, measure: MeasureStep | None = None,
                   timing: bool = True) -> Table:
    """One row per stage: test accuracy, counts, latency, bytes, and ratios against the first (dense) stage.

    measure: batch size, threads and latency rounds (default `MeasureStep()`: 64, 1, 20). Latency:
    `timing.interleaved_latency`, `repeats` rounds in which every stage runs one warm-up batch and 3 timed
    batches in turn. The models are measured `as_deployed`, on the CPU. See notebooks/10_capstone.ipynb.
    """
    measure = MeasureStep() if measure is None else measure
    if not isinstance(measure, MeasureStep):
        raise TypeError(f"measure must be a MeasureStep(batch_size=, threads=, repeats=), got {type(measure).__name__}")
    check_flag(timing, "timing")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty {{stage name: model}} dict, got {models!r:.60}")
    for name, model in models.items():
        model_arg(model, f"models[{name!r}]")
    peek_batches(loader, "loader")
    models = {name: as_deployed(model) for name, model in models.items()}
    input_shape = input_shape or next(iter(models.values())).input_shape
    rows, previous = [], None
    for name, model in models.items():
        row = {"stage": name, "acc": evaluate(model, loader, device="cpu")["acc"],
               **stage_counts(model, input_shape, previous)}
        size = size_on_disk(model)
        row["KB"], row["zip KB"] = size["bytes"] / 1024, size["zip_bytes"] / 1024
        rows.append(row)
        previous = row
    latency_key = f"ms@b{measure.batch_size}" if timing else None
    if timing:
        ms = interleaved_latency(models, input_shape, batch_size=measure.batch_size, threads=measure.threads,
                                 rounds=measure.repeats)
        for row in rows:
            row[latency_key], row["device"] = ms[row["stage"]], "cpu"
    return Table([{**row, **ratios(rows[0], row, latency_key)} for row in rows])


def ratios(base: dict, row: dict, latency_key: str | None = "ms@b64") -> dict:
    """How a stage compares with the `base` (dense) stage: accuracy `drop` in points, `x smaller` (bytes),
    `x smaller zip` (zip-compressed bytes) and, with a `latency_key`, `x faster`. Bigger ratios are better.

    See notebooks/10_capstone.ipynb.
    """
    for name, r in (("base", base), ("row", row)):
        needed = ["acc", "KB", "zip KB"] + ([latency_key] if latency_key is not None else [])
        missing = [key for key in needed if not isinstance(r, dict) or key not in r]
        if missing:
            raise ValueError(f"{name} must be a row of measure_stages with {', '.join(needed)}; it lacks "
                             f"{', '.join(missing)}")
    out = {"drop": base["acc"] - row["acc"], "x smaller": base["KB"] / row["KB"],
           "x smaller zip": base["zip KB"] / row["zip KB"]}
    if latency_key is not None:
        out["x faster"] = base[latency_key] / row[latency_key]
    return out
