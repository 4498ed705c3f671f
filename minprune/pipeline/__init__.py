"""The whole compression pipeline, notebook 10: `config` (the recipe's sections as dataclasses), `recipe` (a TOML
recipe into a validated config), `registry` (the score names recipes, widgets and the pipeline look up), `stages`
(dense, prune, fine-tune or distill, quantize), `runner` (`run_pipeline`: every stage in order), `report` (the stage
table, measured on the CPU as deployed) and `pareto` (the Pareto front of size against accuracy).
"""

from minprune._lazy import lazy_attributes

MODULES = ("registry", "config", "recipe", "stages", "runner", "report", "pareto")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
