"""Structured pruning, notebooks 05-06: score whole units (neurons, channels), find the channels that must go
together, remove them for a genuinely smaller model, drop whole blocks; N:M sparsity; why sparsity is not speed.
"""

from minprune._lazy import lazy_attributes

MODULES = ("unit_scores", "channel_rules", "channel_axes", "channel_ops", "fx_nodes", "channel_groups", "attention",
           "shared", "dependency", "selection", "surgery", "equivalence", "blocks", "nm_sparsity", "speed")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
