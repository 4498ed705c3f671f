"""Pruning transformers, notebook 12 (notebooks/12_transformers.ipynb): score and remove whole attention heads and
MLP neurons of TinyViT and CharGPT (attention_blocks.py), each removal a smaller copy that computes exactly what
its masked equivalent computes.
"""

from minprune._lazy import lazy_attributes

MODULES = ("units", "heads", "mlp_neurons")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
