"""Interactive sparsity explorer (ipywidgets) with a static fallback figure.

Move the sparsity slider, pick a score and a scope, and see the pruned copy's accuracy, its per-layer
sparsity and the histogram of the surviving weights. The model itself is never changed. Where no live
kernel runs (a committed notebook, a static HTML export) the same figure is shown as a picture.
See notebooks/03_weight_pruning.ipynb.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from torch import nn

from .measure import effective_parameters, layer_sparsity
from .plots import style
from .prune import copy_model, prune
from .scores import magnitude_scores, random_scores, taylor_scores
from .train import evaluate

SCORES = ("magnitude", "random", "taylor")
SCOPES = ("global", "local")


class SparsityExplorer:
    """Prune a copy of `model` at any sparsity / score / scope and show what happens (scores cached)."""

    def __init__(self, model: nn.Module, loader, *, score_loader=None, layer: str | None = None):
        self.model, self.loader = model, loader
        self.score_loader = score_loader if score_loader is not None else loader
        names = [n for n, p in effective_parameters(model).items() if n.endswith("weight") and p.dim() > 1]
        if not names:
            raise ValueError("the model has no weight matrices or filters to prune")
        if layer is not None and layer not in names:
            raise ValueError(f"unknown layer {layer!r}; choose one of {names}")
        self.layer = layer or names[0]
        self._scores, self.dense_acc = {}, evaluate(model, loader)["acc"]

    def scores(self, score: str) -> dict:
        """The chosen importance scores of the original model, computed once."""
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if score not in self._scores:
            fn = {"magnitude": lambda: magnitude_scores(self.model), "random": lambda: random_scores(self.model),
                  "taylor": lambda: taylor_scores(self.model, self.score_loader)}[score]
            self._scores[score] = fn()
        return self._scores[score]

    def pruned(self, sparsity: float, score: str = "magnitude", scope: str = "global") -> nn.Module:
        """A pruned copy of the model (the original is untouched)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        twin = copy_model(self.model)
        prune(twin, self.scores(score), sparsity, scope=scope)
        return twin

    def figure(self, sparsity: float = 0.9, score: str = "magnitude", scope: str = "global"):
        """Per-layer sparsity bars and the histogram of surviving weights of one layer, titled with accuracy."""
        twin = self.pruned(sparsity, score, scope)
        acc = evaluate(twin, self.loader)["acc"]
        per_layer = {n: s for n, s in layer_sparsity(twin).items() if n in self.scores(score)}
        w = effective_parameters(twin)[self.layer].detach().flatten()
        with style():
            fig, (ax_bar, ax_hist) = plt.subplots(1, 2, figsize=(9, 3))
            ax_bar.barh(list(per_layer), [100 * s for s in per_layer.values()], color="tab:orange")
            ax_bar.set_xlim(0, 100)
            ax_bar.set_xlabel("sparsity (%)")
            ax_bar.invert_yaxis()
            ax_hist.hist(w[w != 0].numpy(), bins=80, color="tab:blue")
            ax_hist.set_title(f"{self.layer}: surviving weights", fontsize=9)
            fig.suptitle(f"{score} / {scope} at {100 * sparsity:.0f}% sparsity: accuracy {acc:.2f}% "
                         f"(dense {self.dense_acc:.2f}%)", fontsize=10)
            fig.tight_layout()
        return fig

    def widget(self, sparsity: float = 0.9, score: str = "magnitude", scope: str = "global"):
        """The live ipywidgets control panel (slider + dropdowns) with its output area."""
        import ipywidgets as w
        from IPython.display import display

        controls = {"sparsity": w.FloatSlider(value=sparsity, min=0.0, max=0.99, step=0.01, description="sparsity",
                                              continuous_update=False),
                    "score": w.Dropdown(options=SCORES, value=score, description="score"),
                    "scope": w.Dropdown(options=SCOPES, value=scope, description="scope")}

        def draw(sparsity, score, scope):
            fig = self.figure(sparsity, score, scope)
            display(fig)
            plt.close(fig)

        out = w.interactive_output(draw, controls)
        return w.VBox([w.HBox(list(controls.values())), out])


def sparsity_explorer(model: nn.Module, loader, *, sparsity: float = 0.9, **kwargs) -> SparsityExplorer:
    """Show the live widget (in a running notebook) and a static snapshot figure at `sparsity`.

    The snapshot is what a committed notebook or an HTML export shows, where widgets cannot run.
    """
    from IPython import get_ipython
    from IPython.display import display

    explorer = SparsityExplorer(model, loader, **kwargs)
    if getattr(get_ipython(), "kernel", None) is not None:
        display(explorer.widget(sparsity))
    fig = explorer.figure(sparsity)
    fig.text(0.01, 0.01, "static snapshot", fontsize=7, color="gray")
    return explorer
