"""Chapter 10 (the capstone pipeline): the exercises' designed cases and hints.

10.1 a stage's accuracy drop and size and speed ratios against the dense model, 10.2 the Pareto front.
See notebooks/10_capstone.ipynb.
"""

from __future__ import annotations

import math

from minprune.course.exercises import exercise
from minprune.pipeline.pareto import pareto_front
from minprune.pipeline.report import ratios

# ---- 10.1 ratios -----------------------------------------------------------------------------------------------

_DENSE = {"stage": "dense", "acc": 97.4, "params": 61706, "KB": 244.94, "zip KB": 225.05, "ms@b64": 3.68}


def _ratios_cases() -> list[tuple]:
    return [
        (_DENSE, {"stage": "int8", "acc": 95.3, "params": 10878, "KB": 18.17, "zip KB": 13.21, "ms@b64": 1.37}),
        # more accurate than the dense model (a negative drop), and slower (x faster below 1)
        (_DENSE, {"stage": "fine-tuned", "acc": 97.9, "params": 61706, "KB": 244.94, "zip KB": 44.45,
                  "ms@b64": 4.6}),
        # far from 100%: percent of the dense accuracy and percentage points differ by a tenth
        ({"acc": 80.0, "KB": 100.0, "zip KB": 50.0, "ms@b64": 10.0},
         {"acc": 72.0, "KB": 40.0, "zip KB": 10.0, "ms@b64": 8.0}),
    ]


def _near(a, b) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _ratios_diagnoses(case, expected, got):
    base, row = case
    if not isinstance(got, dict):
        return None
    drop, base_acc, acc = got.get("drop"), base["acc"], row["acc"]
    if drop is not None and drop != expected["drop"]:
        if _near(drop, abs(base_acc - acc)):
            return "keep the sign of the drop: a stage more accurate than the dense model has a negative drop"
        if _near(drop, acc - base_acc):
            return "the drop is dense minus stage: positive when the stage lost accuracy"
        if _near(drop, 100 * (base_acc - acc) / base_acc):
            return ("the drop is in percentage points (the difference of two accuracies in %), not in percent of "
                    "the dense accuracy")
    columns = {"x smaller": "KB", "x smaller zip": "zip KB", "x faster": "ms@b64"}
    for key, column in columns.items():
        value = got.get(key)
        if value is None or _near(value, expected[key]):
            continue
        if _near(value, row[column] / base[column]):
            return (f"'{key}' is the wrong way round: a ratio is bigger than 1 when the stage is better, so divide "
                    f"the dense model's {column} by the stage's")
        if _near(value, 100 * (1 - row[column] / base[column])):
            return f"'{key}' is a ratio (how many times), not a percentage saved"
        others = [c for c in columns.values() if c != column]
        if any(_near(value, base[a] / row[b]) for a in [column, *others] for b in [column, *others]):
            return f"'{key}' compares the {column!r} column of both rows"
    return None


exercise("10.1", "a stage's accuracy drop and ratios against the dense model", ratios, _ratios_cases,
         hint="drop: dense accuracy minus the stage's, in points; each 'x' ratio: the dense value divided by the "
              "stage's, so that it is bigger than 1 when the stage is better",
         diagnoses=(_ratios_diagnoses,), atol=1e-9, rtol=1e-9)


# ---- 10.2 the Pareto front -------------------------------------------------------------------------------------

def _pareto_cases() -> list[tuple]:
    return [
        ([(5, 90), (10, 95), (5, 90)],),  # identical points on the front: both kept
        ([(8, 90), (5, 92), (8, 90)],),  # identical points beaten by a third: both left out
        ([(5, 90), (5, 92), (8, 95)],),  # the same size: the more accurate beats it
        ([(5, 90), (8, 90), (3, 80)],),  # the same accuracy: the smaller beats it
        ([(30, 99), (20, 98), (10, 97), (10, 97.5)],),  # given from the biggest: the answer is sorted by size
        ([(2.0, 70.0), (2, 70), (2, 70)],),  # one point three times
        ([(1, 50)],),
    ]


def _beats(q, p) -> bool:
    return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])


def _pareto_diagnoses(case, expected, got):
    (points,) = case
    if not isinstance(got, (list, tuple)) or not all(isinstance(i, int) for i in got):
        return None
    kept, should = set(got), set(expected)
    if kept == should:
        return "the right points, in another order: sort them by size, smallest first"
    for i in should - kept:
        if any(j != i and tuple(points[j]) == tuple(points[i]) for j in range(len(points))):
            return ("identical points do not beat each other (neither is better in anything): a copy of a point on "
                    "the front is on it too")
    for i in kept - should:
        p = points[i]
        if any(tuple(q) == tuple(p) for j, q in enumerate(points) if j != i and j in should):
            continue
        if any(q[0] == p[0] and q[1] > p[1] for q in points):
            return "a point of the same size and higher accuracy beats it: being as small is not enough"
        if any(q[1] == p[1] and q[0] < p[0] for q in points):
            return "a point of the same accuracy and a smaller size beats it: being as accurate is not enough"
        if any(_beats(q, p) for q in points):
            return "a point that another one beats (as small or smaller, as accurate or more) is not on the front"
    if should - kept:
        return "a point that no other beats is on the front, however big it is"
    return None


exercise("10.2", "the Pareto front of (size, accuracy) points", pareto_front, _pareto_cases,
         hint="a point is on the front when no other point is at least as good in both (as small or smaller, as "
              "accurate or more) and strictly better in one; identical points are all kept or all left out; "
              "return the indices sorted by size",
         diagnoses=(_pareto_diagnoses,), dtype_strict=False)
