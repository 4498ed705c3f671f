"""Wrong and right answers to chapter 10's exercises."""


# ---- 10.1 ratios
def ratios_inverted(base, row):
    return {"drop": base["acc"] - row["acc"], "x smaller": row["KB"] / base["KB"],
            "x smaller zip": row["zip KB"] / base["zip KB"], "x faster": row["ms@b64"] / base["ms@b64"]}


def ratios_drop_stage_minus_dense(base, row):
    return {"drop": row["acc"] - base["acc"], "x smaller": base["KB"] / row["KB"],
            "x smaller zip": base["zip KB"] / row["zip KB"], "x faster": base["ms@b64"] / row["ms@b64"]}


def ratios_drop_in_percent(base, row):
    return {"drop": 100 * (base["acc"] - row["acc"]) / base["acc"], "x smaller": base["KB"] / row["KB"],
            "x smaller zip": base["zip KB"] / row["zip KB"], "x faster": base["ms@b64"] / row["ms@b64"]}


def ratios_drop_without_sign(base, row):
    return {"drop": abs(base["acc"] - row["acc"]), "x smaller": base["KB"] / row["KB"],
            "x smaller zip": base["zip KB"] / row["zip KB"], "x faster": base["ms@b64"] / row["ms@b64"]}


def ratios_zip_from_kb(base, row):
    return {"drop": base["acc"] - row["acc"], "x smaller": base["KB"] / row["KB"],
            "x smaller zip": base["KB"] / row["zip KB"], "x faster": base["ms@b64"] / row["ms@b64"]}


def ratios_percent_saved(base, row):
    return {"drop": base["acc"] - row["acc"], "x smaller": 100 * (1 - row["KB"] / base["KB"]),
            "x smaller zip": 100 * (1 - row["zip KB"] / base["zip KB"]),
            "x faster": 100 * (1 - row["ms@b64"] / base["ms@b64"])}


def ratios_in_a_loop(base, row):
    out = {"drop": float(base["acc"]) - float(row["acc"])}
    for key, column in (("x smaller", "KB"), ("x smaller zip", "zip KB"), ("x faster", "ms@b64")):
        out[key] = 1 / (row[column] / base[column])
    return out


# ---- 10.2 the Pareto front
def pareto_strictly_better_in_both(points):
    """The textbook 'smaller and more accurate' taken literally: ties beat nothing."""
    front = [i for i, p in enumerate(points) if not any(q[0] < p[0] and q[1] > p[1] for q in points)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_as_small_and_more_accurate(points):
    """'No other point is as small or smaller and more accurate': a bigger point of the same accuracy stays."""
    front = [i for i, p in enumerate(points) if not any(q[0] <= p[0] and q[1] > p[1] for q in points)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_dominance_by_index(points):
    """Weak dominance with 'another point' meaning another index: identical points knock each other out."""
    front = [i for i, p in enumerate(points)
             if not any(j != i and q[0] <= p[0] and q[1] >= p[1] for j, q in enumerate(points))]
    return sorted(front, key=lambda i: points[i][0])


def pareto_walk_keeps_first_copy(points):
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_walk_ties_on_size(points):
    """Sorted by size only: among equal sizes the less accurate may come first and be kept."""
    front, best = [], float("-inf")
    for i in sorted(range(len(points)), key=lambda i: points[i][0]):
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_walk_at_least_as_accurate(points):
    """'>=' for '>': copies are kept, but so is a bigger point that is only as accurate."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] >= best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_in_input_order(points):
    return [i for i, p in enumerate(points)
            if not any(q[0] <= p[0] and q[1] >= p[1] and tuple(q) != tuple(p) for q in points)]


def pareto_by_definition(points):
    def beaten(p):
        return any(q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1]) for q in points)

    return sorted((i for i, p in enumerate(points) if not beaten(p)), key=lambda i: (points[i][0], i))


WRONG = {
    "10.1": [ratios_inverted, ratios_drop_stage_minus_dense, ratios_drop_in_percent, ratios_drop_without_sign,
             ratios_zip_from_kb, ratios_percent_saved],
    "10.2": [pareto_strictly_better_in_both, pareto_as_small_and_more_accurate, pareto_dominance_by_index,
             pareto_walk_keeps_first_copy, pareto_walk_ties_on_size, pareto_walk_at_least_as_accurate,
             pareto_in_input_order],
}
RIGHT = {"10.1": [ratios_in_a_loop], "10.2": [pareto_by_definition]}
