"""Plots of pruning during training: schedules, per-layer sparsity over time, regrowth counts, mask images.

The records they read are the lists of rows kept by `GradualPruner.history` and `DynamicSparseTrainer.updates`
({"step", "layer", "sparsity", "pruned", "regrown"}) and their `snapshots` ({step: {name: mask}}).
See notebooks/07_dynamic_pruning.ipynb.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from minprune.course.plots import style


def plot_schedules(schedules: dict, steps: int, *, ax=None):
    """One curve per schedule: target sparsity against the training step."""
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
        for label, schedule in schedules.items():
            ax.step(range(steps + 1), [schedule(t) for t in range(steps + 1)], where="post", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("target sparsity")
        ax.legend()
        fig.tight_layout()
    return fig


def _by_layer(rows: list[dict], key: str) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for row in rows:
        steps, values = out.setdefault(row["layer"], ([], []))
        steps.append(row["step"])
        values.append(row[key])
    return out


def plot_layer_sparsity(rows: list[dict], *, ax=None, title: str = ""):
    """Sparsity of every layer at every update (from a pruner's history)."""
    if not rows:
        raise ValueError("no updates recorded yet: train with the pruner as a callback first")
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
        for layer, (steps, values) in _by_layer(rows, "sparsity").items():
            ax.plot(steps, values, "o-", markersize=3, label=layer)
        ax.set_xlabel("step")
        ax.set_ylabel("layer sparsity")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
    return fig


def plot_regrowth(rows: list[dict], *, ax=None, title: str = ""):
    """Weights pruned (down) and regrown (up) at each update, summed over layers."""
    if not rows:
        raise ValueError("no updates recorded yet: train with the pruner as a callback first")
    totals: dict[int, list[int]] = {}
    for row in rows:
        pruned_regrown = totals.setdefault(row["step"], [0, 0])
        pruned_regrown[0] += row["pruned"]
        pruned_regrown[1] += row["regrown"]
    steps = sorted(totals)
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
        width = 0.8 * (steps[1] - steps[0]) if len(steps) > 1 else 1.0
        ax.bar(steps, [totals[s][1] for s in steps], width=width, color="tab:green", label="regrown")
        ax.bar(steps, [-totals[s][0] for s in steps], width=width, color="tab:red", label="pruned")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("weights per update")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
    return fig


def plot_mask_snapshots(snapshots: dict, layer: str, *, max_images: int = 5, rows: int | None = None):
    """Images of one layer's mask (white = kept) at several recorded steps; `rows` crops to the first rows."""
    steps = sorted(snapshots)
    if not steps or layer not in snapshots[steps[0]]:
        raise ValueError(f"no snapshots of {layer!r}; construct the pruner with keep_masks=True")
    chosen = [steps[round(i * (len(steps) - 1) / max(1, max_images - 1))] for i in range(min(max_images, len(steps)))]
    with style():
        fig, axes = plt.subplots(1, len(chosen), figsize=(2.6 * len(chosen), 2.6), squeeze=False)
        for ax, step in zip(axes[0], chosen):
            mask = snapshots[step][layer].flatten(1).float()[:rows]
            ax.imshow(mask.numpy(), cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_title(f"step {step}: {100 * (1 - float(mask.mean())):.0f}% pruned", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(layer, fontsize=10)
        fig.tight_layout()
    return fig


def plot_accuracy_curves(curves: dict[str, list[float]], *, dense: float | None = None, ax=None,
                         title: str = ""):
    """Test (or validation) accuracy against epoch, one line per method; `dense` as a dashed reference."""
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.5))
        for label, accs in curves.items():
            ax.plot(range(1, len(accs) + 1), accs, "o-", markersize=3, label=label)
        if dense is not None:
            ax.axhline(dense, color="gray", linestyle="--", label=f"dense ({dense:.1f}%)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
    return fig
