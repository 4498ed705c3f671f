"""Interactive sparsity explorers (ipywidgets) with a static fallback figure.

Move the sparsity slider, pick a score and a scope, and see the pruned copy's accuracy, its per-layer
sparsity and the histogram of the surviving weights (`SparsityExplorer`, weights, notebook 03), or its
MACs and the channels each layer keeps (`ChannelExplorer`, whole channels, notebook 06). The model itself
is never changed. Where no live kernel runs (a committed notebook, a static HTML export) the same figure
is shown as a picture.
See notebooks/03_weight_pruning.ipynb and notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from torch import nn

from minprune.course.plots import style
from minprune.masked import copy_model, effective_parameters
from minprune.measure import count_macs, layer_sparsity
from minprune.pipeline.registry import get_score, score_names
from minprune.structured.dependency import trace_groups
from minprune.structured.surgery import prune_channels
from minprune.train import evaluate
from minprune.unstructured.prune import prune

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
        scorer = get_score("weight", score)  # an unknown name lists the registered ones
        if score not in self._scores:
            self._scores[score] = scorer.compute(self.model, self.score_loader, None)
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
        return _panel(self.figure, {"sparsity": sparsity, "score": score, "scope": scope}, score_options("weight"),
                      sparsity_range=(0.99, 0.01))


class ChannelExplorer:
    """Remove a fraction of the channels of every coupled group and show accuracy, MACs and kept channels.

    The structured twin of `SparsityExplorer`: each setting builds a physically smaller copy with
    `prune_channels` (the model is untouched), so the MAC count in the title is real work saved.
    See notebooks/06_structured_pruning.ipynb.
    """

    def __init__(self, model: nn.Module, loader, *, example=None):
        self.model, self.loader, self.example = model, loader, example
        self.graph = trace_groups(model, example)  # raises DependencyError on graphs it cannot follow
        self.layers = [name for g in self.graph.prunable() for name in g.producers]
        self._scores, self.dense_acc = {}, evaluate(model, loader)["acc"]
        self.dense_macs = self._macs(model)

    def scores(self, score: str) -> dict:
        """One score per output unit of every layer ({'<module>.weight': 1-D}), computed once."""
        scorer = get_score("unit", score)  # an unknown name lists the registered ones
        if score not in self._scores:
            self._scores[score] = scorer.compute(self.model, self.loader, None)
        return self._scores[score]

    def pruned(self, sparsity: float, score: str = "l1", scope: str = "local") -> nn.Module:
        """A smaller copy without `sparsity` of the channels (per group, or ranked across groups if global)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        return prune_channels(self.model, sparsity, scores=self.scores(score), scope=scope, example=self.example)

    def kept_channels(self, small: nn.Module) -> dict[str, tuple[int, int]]:
        """{layer: (channels kept, channels before)} for every prunable layer of `small`."""
        return {name: (_width(small.get_submodule(name)), _width(self.model.get_submodule(name)))
                for name in self.layers}

    def figure(self, sparsity: float = 0.5, score: str = "l1", scope: str = "local"):
        """Kept channels per layer (bars over the original widths), titled with accuracy and MACs."""
        small = self.pruned(sparsity, score, scope)
        acc, macs = evaluate(small, self.loader)["acc"], self._macs(small)
        kept = self.kept_channels(small)
        with style():
            fig, ax = plt.subplots(figsize=(7, 0.35 * len(kept) + 1.2))
            ax.barh(list(kept), [b for _, b in kept.values()], color="lightgray", label="before")
            ax.barh(list(kept), [k for k, _ in kept.values()], color="tab:green", label="kept")
            ax.set_xlabel("channels")
            ax.invert_yaxis()
            ax.legend(loc="lower right", fontsize=8)
            fig.suptitle(f"{score} / {scope}, {100 * sparsity:.0f}% of channels removed: accuracy {acc:.2f}% "
                         f"(dense {self.dense_acc:.2f}%), {self.dense_macs / macs:.1f}x fewer MACs", fontsize=10)
            fig.tight_layout()
        return fig

    def widget(self, sparsity: float = 0.5, score: str = "l1", scope: str = "local"):
        """The live ipywidgets control panel (slider + dropdowns) with its output area."""
        return _panel(self.figure, {"sparsity": sparsity, "score": score, "scope": scope}, score_options("unit"),
                      sparsity_range=(0.95, 0.05))

    def _macs(self, model: nn.Module) -> int:
        shape = tuple(self.example.shape[1:]) if self.example is not None else None
        return count_macs(model, shape) if shape is not None else count_macs(model)


def _width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def score_options(kind: str) -> list[tuple[str, str]]:
    """(label, name) of every registered score of `kind`, for a dropdown."""
    return [(get_score(kind, name).label, name) for name in score_names(kind)]


def _panel(figure_fn, start: dict, scores, *, sparsity_range: tuple[float, float]):
    """A sparsity slider (0 to max, in steps: `sparsity_range`) and score / scope dropdowns, set to `start`, above
    an output area that redraws `figure_fn(sparsity=, score=, scope=)` whenever a control changes."""
    import ipywidgets as w
    from IPython.display import display

    max_sparsity, step = sparsity_range
    controls = {"sparsity": w.FloatSlider(value=start["sparsity"], min=0.0, max=max_sparsity, step=step,
                                          description="sparsity", continuous_update=False),
                "score": w.Dropdown(options=scores, value=start["score"], description="score"),
                "scope": w.Dropdown(options=SCOPES, value=start["scope"], description="scope")}

    def draw(**values):
        fig = figure_fn(**values)
        display(fig)
        plt.close(fig)

    out = w.interactive_output(draw, controls)
    return w.VBox([w.HBox(list(controls.values())), out])


def _show(explorer, sparsity: float):
    """The live widget where a kernel runs, and always a static snapshot figure (for saved notebooks)."""
    from IPython import get_ipython
    from IPython.display import display

    if getattr(get_ipython(), "kernel", None) is not None:
        display(explorer.widget(sparsity))
    fig = explorer.figure(sparsity)
    fig.text(0.01, 0.01, "static snapshot", fontsize=7, color="gray")
    return explorer


def sparsity_explorer(model: nn.Module, loader, *, sparsity: float = 0.9, **kwargs) -> SparsityExplorer:
    """Show the live widget (in a running notebook) and a static snapshot figure at `sparsity`.

    The snapshot is what a committed notebook or an HTML export shows, where widgets cannot run.
    """
    return _show(SparsityExplorer(model, loader, **kwargs), sparsity)


def channel_explorer(model: nn.Module, loader, *, sparsity: float = 0.5, **kwargs) -> ChannelExplorer:
    """The channel-pruning explorer: live widget (in a running notebook) and a static snapshot at `sparsity`.

    See notebooks/06_structured_pruning.ipynb.
    """
    return _show(ChannelExplorer(model, loader, **kwargs), sparsity)
