"""Course tools used by every notebook (00-13): checks of a learner's code against the library
(and each exercise's designed cases), student notebooks, the nbgrader course, the HTML pages,
widgets, plots, and the Colab header.
"""

from minprune._lazy import lazy_attributes

MODULES = ("check", "side_effects", "exercises", "student", "nbgrader", "site", "widgets", "plots", "plots_dynamic",
           "colab", "challenge")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES, exports={"exercises": ["check_exercise"]})
