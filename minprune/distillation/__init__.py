"""Knowledge distillation, notebook 09: a dense teacher teaches a pruned or smaller student.
`losses` (soft targets, the Hinton loss, attention hints), `augment` (random shifts, mixup), `teacher` (a cached
shift-trained teacher), `student` (`KDConfig`, `distill_loss`, `distill_student`, `gap_closed`).
"""

from minprune._lazy import lazy_attributes

MODULES = ("losses", "augment", "teacher", "student")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
