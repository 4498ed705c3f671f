"""Deployment, notebook 11: the plain float copy you would ship (`deployable`), ONNX export and ONNX Runtime
(float and int8), int8 weights in ONNX, and the `minprune export` command. (The energy model, `minprune.energy`,
is part of the core: every chapter measures with it.)
"""

from minprune._lazy import lazy_attributes

MODULES = ("deployable", "export", "onnx_int8", "cli")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
