"""Knowledge distillation, notebook 09: a dense teacher teaches a pruned or smaller student.
"""

from minprune._lazy import lazy_attributes

MODULES = ("distill",)
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
