"""Plots with one consistent style: training curves and weight histograms (matplotlib).

See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from .measure import effective_parameters

STYLE = {"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 10}


def _axes(ax, ncols: int = 1, width: float = 4.0, height: float = 3.0):
    if ax is not None:
        return ax.figure, ax
    with plt.rc_context(STYLE):
        return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True)


def plot_history(history, *, label: str = "", axes=None):
    """Loss and accuracy per epoch, training and validation, on two axes."""
    h = history.as_dict() if hasattr(history, "as_dict") else history
    with plt.rc_context(STYLE):
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
    with plt.rc_context(STYLE):
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
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, ncols, figsize=(1.1 * ncols, 1.25 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                ax.imshow(images[i, 0].cpu().numpy(), cmap="gray")
                if labels is not None:
                    ax.set_title(str(int(labels[i])), fontsize=9)
        fig.tight_layout()
    return fig
