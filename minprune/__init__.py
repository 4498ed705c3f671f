"""minprune: a compact PyTorch library for learning neural-network pruning. See README.md.

The functional API is re-exported here (`mp.prune` is the prune() function; the module is `minprune.prune`).
"""

from . import (
    blocks,
    channel_groups,
    check,
    cli_export,
    compressed,
    data,
    dependency,
    distill,
    dynamic,
    energy,
    export,
    finetune,
    gating,
    group_scores,
    huffman,
    int8,
    int8_file,
    kmeans,
    lottery,
    masks,
    models,
    nm_sparsity,
    onnx_int8,
    pipeline,
    plots,
    plots_dynamic,
    quantize,
    recipe,
    schedules,
    scores,
    sensitivity,
    sparse_storage,
    sparse_training,
    speed,
    surgery,
    timing,
    widgets,
)
from .assets import shipped_recipes
from .blocks import block_scores, drop_blocks, droppable, prune_blocks
from .check import show_source
from .checkpoint import CheckpointError, load_model, save_model
from .compressed import load_compressed, save_compressed
from .data import load
from .dependency import DependencyError, groups_table, plot_groups, trace_groups
from .devices import device
from .distill import (
    attention_map,
    distill_loss,
    distill_student,
    gap_closed,
    hint_loss,
    kd_loss,
    random_shift,
    shift_trained_teacher,
    soft_targets,
    with_shifts,
)
from .dynamic import GradualPruner
from .energy import EnergyCosts, energy_table, estimate_energy, layer_counts
from .export import ExportError, deployable_copy, export_onnx, quantize_onnx
from .finetune import IterativeConfig, fine_tune, iterative_prune, iterative_sparsities
from .group_scores import (
    activation_scores,
    bn_scale_scores,
    norm_scores,
    slimming_loss,
    taylor_unit_scores,
    unit_norms,
)
from .int8 import convert_qat_int8, dynamic_int8, int8_weights, prepare_qat_int8, static_int8
from .int8_file import load_int8, save_int8
from .kmeans import kmeans_1d, share_weights, unshare_weights
from .lottery import RewindPoint, find_ticket, random_reinit, rewind, snapshot
from .masks import make_masks, masks_sparsity, n_pruned, prunable_names, shuffle_masks, topk_mask
from .measure import (
    compare,
    count_macs,
    count_nonzeros,
    count_params,
    latency,
    layer_sparsity,
    size_on_disk,
    sparsity,
    summary,
)
from .models import build
from .nm_sparsity import nm_mask, nm_masks, nm_report
from .onnx_int8 import int8_weights_onnx
from .pipeline import PipelineResult, measure_stages, pareto_front, plot_pareto, run_pipeline
from .prune import apply_masks, copy_model, get_masks, load_masked_state_dict, make_permanent, prune
from .quantize import dequantize, fake_quantize, quant_params, quantize_weights, strip_fake_quant, swap_fake_quant
from .recipe import PipelineConfig, RecipeError, load_recipe
from .schedules import make_schedule
from .scores import (
    gradient_scores,
    grasp_scores,
    magnitude_scores,
    random_scores,
    snip_scores,
    synflow_masks,
    synflow_scores,
    taylor_scores,
)
from .sensitivity import layer_sparsities, sensitivity_scan
from .sparse_storage import storage_table
from .sparse_training import DynamicSparseTrainer, SparseConfig
from .speed import latency_grid, speedups, to_csr
from .surgery import channel_masks, prune_channels, remove_channels, score_groups, select_channels
from .table import Table
from .timing import compare_layer_latency, layer_latency, speedup_spread
from .train import History, accuracy, evaluate, fit, seed_everything
from .zoo import pretrained

__version__ = "0.2.0"

__all__ = [
    "shipped_recipes",
    "accuracy", "activation_scores", "apply_masks", "attention_map", "block_scores", "blocks", "bn_scale_scores",
    "build", "channel_groups", "channel_masks", "check", "CheckpointError", "cli_export", "compare",
    "compare_layer_latency", "compressed", "convert_qat_int8", "copy_model", "count_macs", "count_nonzeros",
    "count_params", "data", "dependency", "DependencyError", "deployable_copy", "dequantize", "device", "distill",
    "distill_loss",
    "distill_student", "drop_blocks", "droppable", "dynamic", "dynamic_int8", "DynamicSparseTrainer", "energy",
    "energy_table", "EnergyCosts", "estimate_energy", "evaluate", "export", "export_onnx", "ExportError",
    "fake_quantize", "find_ticket", "fine_tune", "finetune", "fit", "gap_closed", "gating", "get_masks",
    "gradient_scores", "GradualPruner", "grasp_scores", "group_scores", "groups_table", "hint_loss", "History",
    "huffman", "int8", "int8_file", "int8_weights", "int8_weights_onnx", "iterative_prune", "iterative_sparsities",
    "IterativeConfig", "kd_loss", "kmeans", "kmeans_1d", "latency", "latency_grid", "layer_counts", "layer_latency",
    "layer_sparsities", "layer_sparsity", "load", "load_compressed", "load_int8", "load_masked_state_dict",
    "load_model", "load_recipe", "lottery", "magnitude_scores", "make_masks", "make_permanent", "make_schedule",
    "masks", "masks_sparsity", "measure_stages", "models", "n_pruned", "nm_mask", "nm_masks", "nm_report",
    "nm_sparsity", "norm_scores", "onnx_int8", "pareto_front", "pipeline", "PipelineConfig", "PipelineResult",
    "plot_groups", "plot_pareto", "plots", "plots_dynamic", "prepare_qat_int8", "pretrained", "prunable_names", "prune",
    "prune_blocks", "prune_channels", "quant_params", "quantize", "quantize_onnx", "quantize_weights", "random_reinit",
    "random_scores", "random_shift", "recipe", "RecipeError", "remove_channels", "rewind", "RewindPoint",
    "run_pipeline", "save_compressed", "save_int8", "save_model", "schedules", "score_groups", "scores",
    "seed_everything", "select_channels", "sensitivity", "sensitivity_scan", "share_weights", "shift_trained_teacher",
    "show_source", "shuffle_masks", "size_on_disk", "slimming_loss", "snapshot", "snip_scores", "soft_targets",
    "sparse_storage", "sparse_training", "SparseConfig", "sparsity", "speed", "speedup_spread", "speedups",
    "static_int8", "storage_table", "strip_fake_quant", "summary", "surgery", "swap_fake_quant", "synflow_masks",
    "synflow_scores", "Table", "taylor_scores", "taylor_unit_scores", "timing", "to_csr", "topk_mask", "trace_groups",
    "unit_norms", "unshare_weights", "widgets", "with_shifts",
]
