"""Unstructured (weight) pruning, notebooks 02-04: score every weight, turn scores into masks, apply the
masks so they stay applied, then recover accuracy (fine-tuning, iterative rounds, lottery tickets).
"""

from minprune._lazy import lazy_attributes

MODULES = ("scores", "masks", "prune", "finetune", "lottery", "sensitivity", "distributed")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
