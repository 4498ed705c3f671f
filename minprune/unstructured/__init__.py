"""Unstructured (weight) pruning, notebooks 02-04: score every weight, turn scores into masks, prune, then recover
accuracy (fine-tuning, iterative rounds, lottery tickets); per-layer sensitivity, the bytes a sparse tensor really
takes, and masks that stay identical under DistributedDataParallel.
"""

from minprune._lazy import lazy_attributes

MODULES = ("scores", "masks", "prune", "finetune", "lottery", "sensitivity", "sparse_storage", "distributed")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
