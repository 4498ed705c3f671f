"""The whole compression pipeline, notebook 10: a TOML recipe, the score registry it names scores from, and
the runner: dense -> prune -> fine-tune or distill -> quantize, measured at every stage.
"""

from minprune._lazy import lazy_attributes

MODULES = ("registry", "recipe", "runner")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
