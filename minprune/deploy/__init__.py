"""Deployment, notebook 11: ONNX export and ONNX Runtime (float and int8), int8 weights in ONNX, and the
`minprune export` command (the energy model, `minprune.energy`, is part of the core: every chapter measures).
"""

from minprune._lazy import lazy_attributes

MODULES = ("export", "onnx_int8", "cli")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
