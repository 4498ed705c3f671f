"""minprune: a compact PyTorch library for learning neural-network pruning. See README.md.

The functional API is re-exported here (`mp.prune` is the prune() function; the module is `minprune.prune`).
Nothing is imported until it is used (PEP 562): `import minprune` is quick, and `mp.fit` loads only what training
needs, not ONNX, ONNX Runtime or matplotlib. `mp.<module>` (e.g. `mp.distill.mix_images`) loads that module.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# {module: the names it gives the flat API}; `__all__` is their union (functions and classes, no modules)
_EXPORTS = {
    "assets": ("shipped_recipes",),
    "blocks": ("block_scores", "drop_blocks", "droppable", "prune_blocks"),
    "check": ("show_source",),
    "checkpoint": ("CheckpointError", "load_model", "save_model"),
    "compressed": ("load_compressed", "save_compressed"),
    "data": ("load",),
    "dependency": ("DependencyError", "groups_table", "plot_groups", "trace_groups"),
    "devices": ("device",),
    "distill": (
        "attention_map", "distill_loss", "distill_student", "gap_closed", "hint_loss", "kd_loss", "random_shift",
        "shift_trained_teacher", "soft_targets", "with_shifts"
    ),
    "dynamic": ("GradualPruner",),
    "energy": ("energy_table", "EnergyCosts", "estimate_energy", "layer_counts"),
    "export": ("deployable_copy", "export_onnx", "ExportError", "quantize_onnx"),
    "finetune": ("fine_tune", "iterative_prune", "IterativeConfig"),
    "group_scores": (
        "activation_scores", "bn_scale_scores", "norm_scores", "slimming_loss", "taylor_unit_scores", "unit_norms"
    ),
    "int8": ("convert_qat_int8", "dynamic_int8", "int8_weights", "prepare_qat_int8", "static_int8"),
    "int8_file": ("load_int8", "save_int8"),
    "kmeans": ("kmeans_1d", "share_weights", "unshare_weights"),
    "lottery": ("find_ticket", "random_reinit", "rewind", "RewindPoint", "snapshot"),
    "masks": (
        "iterative_sparsities", "make_masks", "masks_sparsity", "n_pruned", "prunable_names", "shuffle_masks",
        "topk_mask",
    ),
    "measure": (
        "compare", "count_macs", "count_nonzeros", "count_params", "latency", "layer_sparsity", "size_on_disk",
        "sparsity", "summary"
    ),
    "models": ("build",),
    "nm_sparsity": ("nm_mask", "nm_masks", "nm_report"),
    "onnx_int8": ("int8_weights_onnx",),
    "pipeline": ("measure_stages", "pareto_front", "PipelineResult", "plot_pareto", "run_pipeline"),
    "prune": ("apply_masks", "copy_model", "get_masks", "load_masked_state_dict", "make_permanent", "prune"),
    "quantize": (
        "dequantize", "fake_quantize", "quant_params", "quantize_weights", "strip_fake_quant", "swap_fake_quant"
    ),
    "recipe": ("load_recipe", "PipelineConfig", "RecipeError"),
    "schedules": ("make_schedule",),
    "scores": (
        "gradient_scores", "grasp_scores", "magnitude_scores", "random_scores", "snip_scores", "synflow_masks",
        "synflow_scores", "taylor_scores"
    ),
    "sensitivity": ("layer_sparsities", "sensitivity_scan"),
    "sparse_storage": ("storage_table",),
    "sparse_training": ("DynamicSparseTrainer", "SparseConfig"),
    "speed": ("latency_grid", "speedups", "to_csr"),
    "surgery": ("channel_masks", "prune_channels", "remove_channels", "score_groups", "select_channels"),
    "table": ("Table",),
    "timing": ("compare_layer_latency", "layer_latency", "speedup_spread"),
    "train": ("accuracy", "evaluate", "fit", "History", "seed_everything"),
    "zoo": ("pretrained",),
}
# modules reachable as `mp.<name>` (loaded on first use); `mp.prune` is the function, `minprune.prune` the module
_MODULES = (
    "assets", "blocks", "channel_groups", "check", "checkpoint", "cli_export", "colab", "compressed", "course",
    "data", "dependency", "devices", "distill", "distributed", "dynamic", "energy", "export", "finetune", "gating",
    "group_scores", "huffman", "importance", "int8", "int8_engines", "int8_file", "kmeans", "lottery", "masks",
    "measure", "models", "nm_sparsity", "onnx_int8", "pipeline", "plots", "plots_dynamic", "prune", "quantize",
    "recipe", "schedules", "scores", "sensitivity", "sparse_storage", "sparse_training", "speed", "surgery",
    "table", "timing", "train", "validate", "widgets", "zoo",
)
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

# Importing a submodule sets it as an attribute of the package, which would hide the function of the same name:
# bind that function now, after its module.
from .prune import prune as prune  # noqa: E402  (the function, not the module)

__all__ = sorted(_WHERE, key=str.lower)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'minprune' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_MODULES})
