"""minprune: a compact PyTorch library for learning neural-network pruning. See README.md."""

from . import check, data, models, plots
from .check import show_source
from .checkpoint import CheckpointError, load_model, save_model
from .data import load
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
from .table import Table
from .train import History, accuracy, evaluate, fit, seed_everything
from .zoo import pretrained

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "History", "Table", "accuracy", "build", "check", "compare", "count_macs",
    "count_nonzeros", "count_params", "data", "evaluate", "fit", "latency", "layer_sparsity", "load",
    "load_model", "models", "plots", "pretrained", "save_model", "seed_everything", "show_source",
    "size_on_disk", "sparsity", "summary",
]
