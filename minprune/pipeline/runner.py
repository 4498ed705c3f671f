"""The whole compression pipeline in one call: dense -> prune -> fine-tune (or distill) -> quantize, measured.

`stage_plan` lists the stages a recipe asks for (`pipeline.stages` builds each one), `run_stages` runs them in
order, each a separate model, and `run_pipeline` adds the stage table of `pipeline.report`: every stage measured
the same way and compared with the dense model. Deep Compression (Han et al. 2016) is the classic prune + quantize
chain. See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn
from tqdm.auto import tqdm

from minprune import data as data_lib
from minprune import devices
from minprune.pipeline.recipe import PipelineConfig, validate
from minprune.pipeline.report import measure_stages
from minprune.pipeline.stages import RunOptions, base_model, finetune_step, prune_step, quantize_step
from minprune.table import Table
from minprune.train import History
from minprune.validate import check_flag

# A stage function: (the previous stage's model, the dense model) -> its model, or (model, fine-tuning History)
Stage = Callable[[nn.Module | None, nn.Module | None], nn.Module | tuple[nn.Module, History]]


@dataclass
class PipelineResult:
    """What `run_pipeline` gives back: the stage models (in order), their table, and the fine-tuning history.

    See notebooks/10_capstone.ipynb.
    """

    config: PipelineConfig
    models: dict[str, nn.Module]
    table: Table
    history: History | None = None
    seconds: dict = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def __str__(self) -> str:
        return str(self.table)


def stage_plan(config: PipelineConfig, splits, run: RunOptions) -> list[tuple[str, Stage]]:
    """The stages `config` asks for, in order: [(stage name, stage function)]. See notebooks/10_capstone.ipynb."""
    validate(config)
    _check_splits(splits)
    if not isinstance(run, RunOptions):
        raise TypeError(f"run must be a RunOptions(progress=, device=), got {type(run).__name__}")
    plan = [("dense", lambda model, dense: base_model(config, splits, run=run))]
    method = config.prune.method
    if method == "none":
        return plan + _quantize_stage(config, splits)
    loader = splits.loader("train", 64, seed=config.base.seed)
    plan.append((f"pruned ({method})", lambda model, dense: prune_step(model, config, loader, device=run.device)))
    if config.finetune.epochs > 0:
        label = "distilled" if config.finetune.distill else "fine-tuned"
        plan.append((label, lambda model, dense: finetune_step(model, dense, config, splits, run=run)))
    return plan + _quantize_stage(config, splits)


def _check_splits(splits, none_ok: bool = False) -> None:
    """Raise TypeError unless `splits` is a DataSplits (`minprune.data.load(...)`), or None with none_ok=True."""
    if not (isinstance(splits, data_lib.DataSplits) or (splits is None and none_ok)):
        raise TypeError(f"splits must be a DataSplits (minprune.data.load(name)){' or None' if none_ok else ''}, "
                        f"got {type(splits).__name__}")


def _quantize_stage(config: PipelineConfig, splits) -> list[tuple[str, Stage]]:
    """The quantize stage, if `config` has one: [('int8' | 'dynamic-int8' | 'fake-int<bits>', its function)]."""
    method = config.quantize.method
    if method == "none":
        return []
    label = f"fake-int{config.quantize.bits}" if method == "fake" else method
    return [(label, lambda model, dense: quantize_step(model, config, splits))]


def run_stages(config: PipelineConfig, splits=None, *, progress: bool = False, device=None):
    """Run every stage of `config` on `device` (default `mp.device()`); returns ({stage name: model}, fine-tuning
    History or None, seconds per stage). See notebooks/10_capstone.ipynb.
    """
    validate(config)
    _check_splits(splits, none_ok=True)
    check_flag(progress, "progress")
    run = RunOptions(progress, devices.resolve(None, device))
    splits = splits or data_lib.load(config.base.data, seed=config.base.seed)
    stages, history, seconds, model = {}, None, {}, None
    bar = tqdm(stage_plan(config, splits, run), desc="pipeline", disable=not progress, leave=False)
    for name, stage in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        model = stage(model, stages.get("dense"))
        if isinstance(model, tuple):
            model, history = model
        stages[name] = model
        seconds[name] = time.perf_counter() - start
    return stages, history, seconds


def run_pipeline(config: PipelineConfig, splits=None, *, progress: bool = False, timing: bool = True,
                 device=None) -> PipelineResult:
    """Train or load, prune, fine-tune (with or without distillation), quantize, and measure every stage.

    device: where the stages train (default `mp.device()`); the table measures them on the CPU.
    Returns a PipelineResult whose `.table` has one row per stage. Every argument is checked before any data
    is read or any model trained. See notebooks/10_capstone.ipynb.
    """
    validate(config)
    _check_splits(splits, none_ok=True)
    check_flag(progress, "progress")
    check_flag(timing, "timing")
    devices.resolve(None, device)
    splits = splits or data_lib.load(config.base.data, seed=config.base.seed)
    models, history, seconds = run_stages(config, splits, progress=progress, device=device)
    table = measure_stages(models, splits.loader("test", 500), input_shape=splits.input_shape,
                           measure=config.measure, timing=timing)
    table.title = f"{config.name}: {config.base.arch} on {config.base.data}"
    return PipelineResult(config, models, table, history, seconds)
