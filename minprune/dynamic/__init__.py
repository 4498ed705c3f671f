"""Dynamic pruning, notebook 07: masks that change while the model trains (gradual pruning on a schedule,
SET / RigL regrowth) and masks chosen per input at inference (gated neurons).
"""

from minprune._lazy import lazy_attributes

MODULES = ("schedules", "gradual", "sparse_training", "gating")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
