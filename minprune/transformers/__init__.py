"""Pruning transformers, notebook 12 (notebooks/12_transformers.ipynb): score and remove whole attention heads,
MLP neurons, embedding width and whole blocks of TinyViT and CharGPT (attention_blocks.py), each removal a smaller
copy that computes exactly what its masked equivalent computes; and, at inference, drop (tokens.py) or merge
(token_merging.py) the ViT's patch tokens.
"""

from minprune._lazy import lazy_attributes

MODULES = ("units", "heads", "head_importance", "mlp_neurons", "width", "depth", "tokens", "token_merging")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
