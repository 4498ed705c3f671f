"""minprune: a compact PyTorch library for learning neural-network pruning. See README.md.

The package is the map of the course: a small core (data, models, layers, masked, train, files, checkpoint, zoo,
measure, timing, profile, energy) and one subpackage per chapter: `unstructured` (notebooks 02-04), `structured`
(05-06), `dynamic` (07), `quantization` (08), `distillation` (09), `pipeline` (10), `deploy` (11), `transformers`
(12, heads, neurons, width, blocks and tokens of TinyViT and CharGPT), `one_shot` (13, OBD, OBS, Wanda, SparseGPT)
and `course` (checks, widgets, plots).

The functional API is flat: `mp.prune`, `mp.quantize`, `mp.fit`, ... (`__all__`: functions and classes only).
Nothing is imported until it is used (PEP 562): `import minprune` is quick, and `mp.fit` loads only what training
needs, not ONNX, ONNX Runtime or matplotlib. A chapter is reachable as `mp.<chapter>` and its modules as
`mp.<chapter>.<module>` (e.g. `mp.distillation.augment.mix_images`), each loaded on first use.
"""

from __future__ import annotations

from minprune._lazy import lazy_attributes

__version__ = "0.3.0"

# {module: the names it gives the flat API}; `__all__` is their union (functions and classes, no modules)
_EXPORTS = {
    "assets": ("shipped_recipes",),
    "structured.blocks": ("block_scores", "drop_blocks", "droppable", "prune_blocks"),
    "course.challenge": ("score_sparsities",),
    "course.check": ("show_source",),
    "course.plots": (
        "plot_accuracy_vs_sparsity", "plot_history", "plot_score_histograms", "plot_sensitivity",
        "plot_weight_histograms", "show_images", "show_masks",
    ),
    "course.plots_dynamic": (
        "plot_accuracy_curves", "plot_layer_sparsity", "plot_mask_snapshots", "plot_regrowth", "plot_schedules"
    ),
    "course.widgets": ("channel_explorer", "sparsity_explorer"),
    "checkpoint": ("CheckpointError", "load_model", "save_model"),
    "quantization.compressed": ("load_compressed", "save_compressed"),
    "data": ("load",),
    "structured.dependency": ("DependencyError", "groups_table", "plot_groups", "trace_groups"),
    "devices": ("device",),
    "distillation.augment": ("random_shift", "with_shifts"),
    "distillation.losses": ("attention_map", "hidden_state_loss", "hint_loss", "kd_loss", "soft_targets"),
    "distillation.student": ("distill_loss", "distill_student", "gap_closed", "KDConfig"),
    "distillation.teacher": ("shift_trained_teacher",),
    "dynamic.gradual": ("GradualPruner",),
    "energy": ("energy_table", "EnergyCosts", "EnergyOptions", "estimate_energy", "layer_counts"),
    "deploy.deployable": ("deployable_copy",),
    "deploy.export": ("export_onnx", "ExportError", "quantize_onnx"),
    "unstructured.finetune": ("fine_tune", "iterative_prune", "IterativeConfig"),
    "structured.unit_scores": (
        "activation_scores", "bn_scale_scores", "norm_scores", "slimming_loss", "taylor_unit_scores", "unit_norms"
    ),
    "quantization.folding": ("fold_batchnorm",),
    "quantization.integer": ("fixed_point_multiplier", "integer_conv2d", "integer_linear"),
    "quantization.ranges": ("activation_ranges",),
    "quantization.int8": ("convert_qat_int8", "dynamic_int8", "prepare_qat_int8", "static_int8"),
    "quantization.int8_modules": ("int8_weights",),
    "quantization.int8_file": ("load_int8", "save_int8"),
    "quantization.kmeans": ("centroid_gradients", "centroid_step", "kmeans_1d", "share_weights", "unshare_weights"),
    "unstructured.lottery": ("find_ticket", "random_reinit", "rewind", "RewindPoint", "snapshot"),
    "unstructured.masks": (
        "iterative_sparsities", "make_masks", "masks_sparsity", "n_pruned", "prunable_names", "shuffle_masks",
        "topk_mask",
    ),
    "masked": (
        "apply_masks", "copy_model", "effective_parameters", "get_masks", "load_masked_state_dict", "make_permanent"
    ),
    "measure": (
        "compare", "count_macs", "count_nonzeros", "count_params", "latency", "LatencyOptions", "layer_sparsity",
        "model_sparsity", "size_on_disk", "summary"
    ),
    "models": ("build",),
    "structured.nm_sparsity": ("nm_mask", "nm_masks", "nm_report"),
    "deploy.onnx_int8": ("int8_weights_onnx",),
    "pipeline.pareto": ("pareto_front", "plot_pareto"),
    "pipeline.report": ("measure_stages",),
    "pipeline.runner": ("PipelineResult", "run_pipeline"),
    "unstructured.prune": ("prune",),
    "quantization.uniform": (
        "dequantize", "fake_quantize", "quant_params", "quantize", "quantize_weights", "strip_fake_quant",
        "swap_fake_quant"
    ),
    "pipeline.recipe": ("load_recipe", "PipelineConfig", "RecipeError"),
    "dynamic.schedules": ("make_schedule",),
    "unstructured.scores": (
        "gradient_scores", "grasp_scores", "magnitude_scores", "random_scores", "snip_scores", "synflow_masks",
        "synflow_scores", "taylor_scores"
    ),
    "unstructured.sensitivity": ("layer_sparsities", "sensitivity_scan"),
    "unstructured.sparse_storage": ("storage_table",),
    "dynamic.sparse_training": ("DynamicSparseTrainer", "SparseConfig"),
    "structured.speed": ("latency_grid", "speedups", "to_csr"),
    "structured.surgery": ("channel_masks", "prune_channels", "remove_channels", "remove_conv_bn_channels"),
    "structured.selection": ("score_groups", "select_channels"),
    "structured.channel_rules": ("ChannelRule", "register_pass_through", "register_rule", "registered_rules"),
    "structured.equivalence": ("check_compacted", "masked_equivalent"),
    "table": ("Table",),
    "profile": ("compare_layer_latency", "layer_latency"),
    "timing": ("interleaved_latency", "speedup_spread", "SpeedupSampler", "time_models", "Timings"),
    "train": ("accuracy", "evaluate", "fit", "History", "seed_everything", "TrainConfig"),
    "zoo": ("pretrained",),
    "tinyvit": ("TinyViT",),
    "transformers.head_importance": ("head_entropy", "head_taylor_scores"),
    "transformers.heads": ("head_ablation", "head_scores", "mask_heads", "prune_heads", "select_heads"),
    "transformers.mlp_neurons": ("mask_neurons", "neuron_scores", "prune_mlp", "select_neurons"),
    "transformers.width": ("mask_width", "MaskedLayerNorm", "prune_width", "select_width", "width_scores",
                           "zero_width"),
    "transformers.depth": ("block_ablation", "block_importance", "mask_blocks", "select_blocks"),
    "transformers.tokens": ("TokenPruned",),
    "transformers.token_merging": ("TokenMerged",),
    "one_shot.calibration": ("input_hessians", "input_norms"),
    "one_shot.obd": ("fisher_diagonal", "hessian_saliency", "obd_scores"),
    "one_shot.obs": ("damped_inverse", "obs_prune", "obs_prune_layer", "obs_remove", "obs_step"),
    "one_shot.wanda": ("wanda", "wanda_scores"),
    "one_shot.sparsegpt": ("sparsegpt",),
    "chargpt": ("CharGPT",),
    "text": ("bits_per_char", "load_text", "perplexity", "TextSplits"),
}

CORE = (
    "assets", "attention_blocks", "batches", "chargpt", "checkpoint", "classifier", "data", "devices", "energy",
    "files", "layers", "masked", "measure", "models", "optimizers", "profile", "table", "text", "timing", "tinyvit",
    "train", "validate", "zoo",
)
CHAPTERS = ("unstructured", "structured", "dynamic", "quantization", "distillation", "pipeline", "deploy", "course",
            "transformers", "one_shot")

__all__ = sorted({name for names in _EXPORTS.values() for name in names}, key=str.lower)
__getattr__, __dir__ = lazy_attributes(__name__, modules=CORE + CHAPTERS, exports=_EXPORTS)
