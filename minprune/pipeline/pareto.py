"""Which variants are worth shipping: the Pareto front of (size, accuracy) points, and its plot.

A point is on the front when no other point is at least as good in both (as small or smaller, as accurate or more)
and strictly better in one. Identical points do not beat each other: they are all on the front or all off it.
See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from minprune.course.plots import style
from minprune.table import Table


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (size, accuracy) points that no other point beats: none is as small or smaller and as
    accurate or more, and strictly better in one of the two. Identical points are all kept or all left out.

    Sorted by size (identical points in the order given). See notebooks/10_capstone.ipynb.
    """
    if not isinstance(points, (tuple, list)):
        raise TypeError(f"points must be a list of (size, accuracy) pairs, got {type(points).__name__}")
    for i, point in enumerate(points):
        if not (isinstance(point, (tuple, list)) and len(point) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)):
            raise ValueError(f"points must be (size, accuracy) pairs of numbers (finite: NaN and inf are refused); "
                             f"points[{i}] is {point!r}")
    # smallest first, the more accurate first among equal sizes: a point is beaten exactly when a point walked
    # before it is at least as accurate, unless that point is identical to it
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        size, acc = points[i]
        if acc > best or (front and tuple(points[front[-1]]) == (size, acc)):
            front.append(i)
            best = acc
    return front


def plot_pareto(rows: list[dict], *, size: str = "KB", acc: str = "acc", label: str = "stage", ax=None):
    """Size (log scale) against accuracy for every row (dicts, or a Table), with the Pareto front as a step line.

    See notebooks/10_capstone.ipynb.
    """
    rows = rows.rows if isinstance(rows, Table) else rows
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError(f"rows must be a non-empty list of table rows (dicts), got {rows!r:.60}")
    for i, row in enumerate(rows):
        missing = [key for key in (size, acc, label) if not isinstance(row, dict) or key not in row]
        if missing:
            has = list(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"rows[{i}] lacks the column(s) {missing}; it has {has}")
    points = [(row[size], row[acc]) for row in rows]
    with style():
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:gray", zorder=2)
        for row, (x, y) in zip(rows, points):
            ax.annotate(str(row[label]), (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
        front = [points[i] for i in pareto_front(points)]
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(f"size ({size}, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="lower right")
        fig.tight_layout()
    return fig
