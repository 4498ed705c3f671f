"""Plots with one consistent style: training curves and weight histograms (matplotlib).

See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib.pyplot as plt
import torch
from torch import nn

from minprune.masked import effective_parameters

STYLE = {"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 10}


@contextmanager
def style(**overrides):
    """Apply the house style, then restore exactly those keys.

    (`plt.rc_context` restores *every* rcParam, backend and interactive mode included, which can stop Jupyter's
    inline backend from showing figures made later in the session.)
    """
    keys = {**STYLE, **overrides}
    old = {key: plt.rcParams[key] for key in keys}
    plt.rcParams.update(keys)
    try:
        yield
    finally:
        plt.rcParams.update(old)


def _axes(ax, ncols: int = 1, width: float = 4.0, height: float = 3.0):
    if ax is not None:
        return ax.figure, ax
    with style():
        return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True)


def plot_history(history, *, label: str = "", axes=None):
    """Loss and accuracy per epoch, training and validation, on two axes."""
    h = history.as_dict() if hasattr(history, "as_dict") else history
    with style():
        fig, (ax_loss, ax_acc) = (axes[0].figure, axes) if axes is not None else _axes(None, 2)
        for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
            ax.plot(h["epoch"], h[f"train_{key}"], "-", label=f"{label} train".strip())
            if h.get(f"val_{key}"):
                ax.plot(h["epoch"], h[f"val_{key}"], "--", label=f"{label} val".strip())
            ax.set_xlabel("epoch")
            ax.set_ylabel("cross-entropy loss" if key == "loss" else "accuracy (%)")
            ax.legend()
        fig.tight_layout()
    return fig


def plot_weight_histograms(model: nn.Module, *, bins: int = 80, include_zeros: bool = True, max_cols: int = 4):
    """One histogram per weight tensor (biases skipped); pruned zeros can be hidden with include_zeros=False."""
    weights = {n: p.detach().flatten().cpu() for n, p in effective_parameters(model).items() if n.endswith("weight")
               and p.dim() > 1}
    if not weights:
        raise ValueError("the model has no weight matrices or filters to plot")
    cols = min(max_cols, len(weights))
    rows = -(-len(weights) // cols)
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
        for ax, (name, w) in zip(axes.flat, weights.items()):
            shown = w if include_zeros else w[w != 0]
            ax.hist(shown.numpy(), bins=bins, color="tab:blue", alpha=0.8)
            zero_share = 100 * float((w == 0).float().mean())
            ax.set_title(f"{name}\n{w.numel():,} weights, {zero_share:.0f}% zero", fontsize=9)
        for ax in axes.flat[len(weights):]:
            ax.axis("off")
        fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, labels=None, *, ncols: int = 10):
    """A grid of single-channel images (N, 1, H, W) with optional labels as titles."""
    n = len(images)
    rows = -(-n // ncols)
    with style():
        fig, axes = plt.subplots(rows, ncols, figsize=(1.1 * ncols, 1.25 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                ax.imshow(images[i, 0].cpu().numpy(), cmap="gray")
                if labels is not None:
                    ax.set_title(str(int(labels[i])), fontsize=9)
        fig.tight_layout()
    return fig


# ---- issue 3: scores, masks, sensitivity, accuracy vs sparsity (notebooks 02-04) ----

def plot_score_histograms(scores: dict, *, bins: int = 80, log: bool = True, max_cols: int = 4):
    """One histogram per score tensor (log10 of the score by default: scores span many decades).

    See notebooks/02_importance_scores.ipynb.
    """
    if not scores:
        raise ValueError("scores is empty")
    cols = min(max_cols, len(scores))
    rows = -(-len(scores) // cols)
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
        for ax, (name, s) in zip(axes.flat, scores.items()):
            values = s.detach().flatten().float().cpu()
            if log:
                values = torch.log10(values[values > 0])
            ax.hist(values.numpy(), bins=bins, color="tab:orange", alpha=0.8)
            ax.set_title(f"{name}\n{s.numel():,} scores", fontsize=9)
            ax.set_xlabel("log10 score" if log else "score")
        for ax in axes.flat[len(scores):]:
            ax.axis("off")
        fig.tight_layout()
    return fig


def plot_accuracy_vs_sparsity(curves: dict, *, dense_acc: float | None = None, ax=None, logit: bool = True):
    """Accuracy against sparsity, one line per method: curves = {label: [(sparsity, acc), ...]}.

    logit=True spreads out the interesting high-sparsity end (0.9, 0.99, ...).
    See notebooks/03_weight_pruning.ipynb.
    """
    with style():
        fig, ax = _axes(ax, width=5.5, height=3.5)
        for label, points in curves.items():
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, "o-", label=label, markersize=4)
        if dense_acc is not None:
            ax.axhline(dense_acc, color="gray", linestyle=":", label="dense")
        if logit:
            ax.set_xscale("logit")
        ax.set_xlabel("sparsity (fraction of weights removed)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=8)
        fig.tight_layout()
    return fig


def plot_sensitivity(result, *, ax=None):
    """Accuracy after pruning each tensor alone, per sparsity of the grid (a `sensitivity_scan` result).

    See notebooks/03_weight_pruning.ipynb.
    """
    curves = {name: list(zip(result.sparsities, accs)) for name, accs in result.acc.items()}
    fig = plot_accuracy_vs_sparsity(curves, dense_acc=result.dense_acc, ax=ax, logit=False)
    fig.axes[0].set_title("sensitivity: one tensor pruned at a time", fontsize=10)
    return fig


def show_masks(masks: dict, *, max_cols: int = 3, max_side: int = 300):
    """Masks as black (pruned) and white (kept) images; conv masks are shown as (out, in*kh*kw).

    A mask larger than `max_side` in either direction is cropped to its top-left max_side x max_side corner, and
    its title says so (the sparsity in the title is the whole mask's). See notebooks/03_weight_pruning.ipynb.
    """
    if not masks:
        raise ValueError("masks is empty")
    cols = min(max_cols, len(masks))
    rows = -(-len(masks) // cols)
    with style(**{"axes.grid": False}):
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        for ax, (name, m) in zip(axes.flat, masks.items()):
            full = m.detach().reshape(m.shape[0], -1).float().cpu()  # (out, in * kh * kw)
            image = full[:max_side, :max_side]
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            title = f"{name}: {100 * (1 - float(m.float().mean())):.1f}% pruned"
            cropped = [f"first {shown} of {size} {what}" for shown, size, what
                       in zip(image.shape, full.shape, ("rows", "columns")) if shown < size]
            if cropped:
                title += f"\n(cropped: {', '.join(cropped)})"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("input" if m.dim() == 2 else "input channel x kernel position", fontsize=8)
            ax.set_ylabel("output", fontsize=8)
        for ax in axes.flat[len(masks):]:
            ax.axis("off")
        fig.tight_layout()
    return fig
