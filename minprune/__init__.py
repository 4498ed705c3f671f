"""minprune: a compact PyTorch library for learning neural-network pruning. See README.md."""

from . import check, data, dynamic, gating, lottery, models, plots, plots_dynamic, schedules, sparse_training, widgets
from .check import show_source
from .checkpoint import CheckpointError, load_model, save_model
from .data import load
from .dynamic import GradualPruner
from .lottery import RewindPoint, find_ticket, random_reinit, rewind, snapshot
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
from .schedules import make_schedule
from .sparse_training import DynamicSparseTrainer, SparseConfig
from .table import Table
from .train import History, accuracy, evaluate, fit, seed_everything
from .zoo import pretrained

__version__ = "0.1.0"

# issue 3: scores, masks, pruning, fine-tuning, sensitivity, sparse storage (`mp.prune` is the prune() function)
from . import finetune, masks, scores, sensitivity, sparse_storage  # noqa: E402
from .finetune import IterativeConfig, fine_tune, iterative_prune, iterative_sparsities  # noqa: E402
from .masks import make_masks, masks_sparsity, n_pruned, prunable_names, shuffle_masks, topk_mask  # noqa: E402
from .prune import apply_masks, copy_model, get_masks, load_masked_state_dict, make_permanent, prune  # noqa: E402
from .scores import (  # noqa: E402
    gradient_scores,
    grasp_scores,
    magnitude_scores,
    random_scores,
    snip_scores,
    synflow_masks,
    synflow_scores,
    taylor_scores,
)
from .sensitivity import layer_sparsities, sensitivity_scan  # noqa: E402
from .sparse_storage import storage_table  # noqa: E402

# issue 4: structured pruning (units, channels, blocks, N:M) and why sparsity is not speed
# isort: split
from . import blocks, dependency, group_scores, nm_sparsity, speed, surgery  # noqa: E402
from .blocks import block_scores, drop_blocks, droppable, prune_blocks  # noqa: E402
from .dependency import DependencyError, groups_table, plot_groups, trace_groups  # noqa: E402
from .group_scores import (  # noqa: E402
    activation_scores,
    bn_scale_scores,
    norm_scores,
    slimming_loss,
    taylor_unit_scores,
    unit_norms,
)
from .nm_sparsity import nm_mask, nm_masks, nm_report  # noqa: E402
from .speed import latency_grid, speedups, to_csr  # noqa: E402
from .surgery import channel_masks, prune_channels, remove_channels, score_groups, select_channels  # noqa: E402

__all__ = [
    "CheckpointError", "History", "Table", "accuracy", "build", "check", "widgets", "compare", "count_macs",
    "count_nonzeros", "count_params", "data", "evaluate", "fit", "latency", "layer_sparsity", "load",
    "load_model", "models", "plots", "pretrained", "save_model", "seed_everything", "show_source",
    "size_on_disk", "sparsity", "summary",
    "DynamicSparseTrainer", "GradualPruner", "RewindPoint", "SparseConfig", "dynamic", "find_ticket", "gating",
    "lottery", "make_schedule", "plots_dynamic", "random_reinit", "rewind", "schedules", "snapshot", "sparse_training",
    "IterativeConfig", "apply_masks", "copy_model", "fine_tune", "finetune", "get_masks", "gradient_scores",
    "grasp_scores", "iterative_prune", "iterative_sparsities", "layer_sparsities", "load_masked_state_dict",
    "magnitude_scores", "make_masks", "make_permanent", "masks", "masks_sparsity", "n_pruned", "prunable_names",
    "prune", "random_scores", "scores", "sensitivity", "sensitivity_scan", "shuffle_masks", "snip_scores",
    "sparse_storage", "storage_table", "synflow_masks", "synflow_scores", "taylor_scores", "topk_mask",
    "DependencyError", "activation_scores", "block_scores", "blocks", "bn_scale_scores", "channel_masks",
    "dependency", "drop_blocks", "droppable", "group_scores", "groups_table", "latency_grid", "nm_mask", "nm_masks",
    "nm_report", "nm_sparsity", "norm_scores", "plot_groups", "prune_blocks", "prune_channels", "remove_channels",
    "score_groups", "select_channels", "slimming_loss", "speed", "speedups", "surgery", "taylor_unit_scores",
    "to_csr", "trace_groups", "unit_norms",
]

# issue 7: distillation, recipes, the pipeline (`mp.distill` is the module; the loop is `mp.distill_student`)
# isort: split
from . import distill, pipeline, recipe  # noqa: E402
from .distill import attention_map, distill_loss, distill_student, hint_loss, kd_loss, soft_targets  # noqa: E402
from .pipeline import PipelineResult, measure_stages, pareto_front, plot_pareto, run_pipeline  # noqa: E402
from .recipe import PipelineConfig, RecipeError, load_recipe  # noqa: E402

__all__ += [
    "PipelineConfig", "PipelineResult", "RecipeError", "attention_map", "distill", "distill_loss", "distill_student",
    "hint_loss", "kd_loss", "load_recipe", "measure_stages", "pareto_front", "pipeline", "plot_pareto", "recipe",
    "run_pipeline", "soft_targets",
]

# issue 10: deployment (ONNX export, ONNX Runtime, int8) and the energy model
# isort: split
from . import cli_export, energy, export  # noqa: E402
from .energy import EnergyCosts, energy_table, estimate_energy, layer_counts  # noqa: E402
from .export import ExportError, deployable_copy, export_onnx, quantize_onnx  # noqa: E402

__all__ += [
    "EnergyCosts", "ExportError", "cli_export", "deployable_copy", "energy", "energy_table", "estimate_energy",
    "export", "export_onnx", "layer_counts", "quantize_onnx",
]

# issue 6: quantization from scratch, k-means sharing, Huffman, the Deep Compression file, PyTorch int8
# isort: split
from . import compressed, huffman, int8, kmeans, quantize  # noqa: E402
from .compressed import load_compressed, save_compressed  # noqa: E402
from .int8 import convert_qat_int8, dynamic_int8, int8_weights, prepare_qat_int8, static_int8  # noqa: E402
from .kmeans import kmeans_1d, share_weights, unshare_weights  # noqa: E402
from .quantize import dequantize, fake_quantize, quant_params, quantize_weights, strip_fake_quant, swap_fake_quant  # noqa: E402

__all__ += [
    "compressed", "convert_qat_int8", "dequantize", "dynamic_int8", "fake_quantize", "huffman", "int8", "int8_weights",
    "kmeans", "kmeans_1d", "load_compressed", "prepare_qat_int8", "quant_params", "quantize", "quantize_weights",
    "save_compressed", "share_weights", "static_int8", "strip_fake_quant", "swap_fake_quant", "unshare_weights",
]
