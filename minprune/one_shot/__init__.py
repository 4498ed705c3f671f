"""One-shot pruning without retraining, notebook 13 (notebooks/13_one_shot_pruning.ipynb): a layer's inputs on a
few calibration batches (`calibration`), the second-order scores that grew into the modern methods (`obd`: Optimal
Brain Damage, `obs`: Optimal Brain Surgeon), and the post-training pruners of the LLM era (`wanda`, `sparsegpt`),
unstructured and N:M, all giving the kit's ordinary masks.
"""

from minprune._lazy import lazy_attributes

MODULES = ("calibration", "obd", "obs", "wanda", "sparsegpt")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
