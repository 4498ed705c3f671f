"""Coupled channel groups: the channels that must be removed together, and two ways to look at them.

A `Group` collects the producers whose output units are its channels, the followers indexed by the same
channels (BatchNorm, depthwise conv) and the consumers that read them. `ChannelSpaces` is the union-find that
merges groups when an operation ties their channels (a residual addition). `dependency.trace_groups` fills
these structures by tracing a model; `groups_table` and `plot_groups` show the result.
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DependencyError(ValueError):
    """The model contains an operation whose effect on channels minprune cannot follow."""


@dataclass
class Group:
    """Channels that must be removed together: producers' outputs, followers, and the layers that read them."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)  # modules whose output units are these channels
    followers: list[str] = field(default_factory=list)  # BatchNorm / depthwise conv indexed by the channel
    consumers: list[str] = field(default_factory=list)  # modules whose input features include these channels
    params: list[str] = field(default_factory=list)  # parameters read in forward with one entry per channel
    frozen: str | None = None  # why this group may not be pruned, or None

    def __repr__(self):
        state = f", frozen: {self.frozen}" if self.frozen else ""
        return f"Group({self.id}, size={self.size}, producers={self.producers}, consumers={self.consumers}{state})"


@dataclass
class DependencyGraph:
    """The result of `trace_groups`: groups, and for each layer the channel space it reads and writes."""

    groups: dict[int, Group]
    inputs: dict[str, list[tuple[int, int]]]  # module -> [(group id, features per channel)], in feature order
    outputs: dict[str, int]  # producer or follower module -> group id of its output channels
    after: dict[str, str]  # producer -> the BatchNorm that directly normalises its output
    params: dict = field(default_factory=dict)  # parameter read in forward -> (dim, [(group id, rep)])
    statistics: dict = field(default_factory=dict)  # module or node normalising over its channels -> group id
    blocks: dict = field(default_factory=dict)  # group id -> number of equal blocks (attention heads)
    follows: dict = field(default_factory=dict)  # follower reading a concatenation -> [(group id, 1)]
    widths: dict = field(default_factory=dict)  # int attribute a reshape reads ('hidden_dim') -> [(group id, rep)]
    example: object = None  # the input the model was traced with

    def prunable(self) -> list[Group]:
        """Groups that may lose channels, in model order."""
        return [g for g in self.groups.values() if g.frozen is None and g.producers]


class ChannelSpaces:
    """Union-find over channel groups; a tensor's channel space is a list of (group id, repeat) segments."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.groups: dict[int, Group] = {}

    def new(self, size: int, frozen: str | None = None) -> int:
        gid = len(self.parent)
        self.parent[gid] = gid
        self.groups[gid] = Group(gid, size, frozen=frozen)
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int, where: str) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        ga, gb = self.groups[a], self.groups[b]
        if ga.size != gb.size:
            raise DependencyError(f"{where}: cannot tie channel groups of sizes {ga.size} and {gb.size}")
        self.parent[b] = a
        ga.producers += gb.producers
        ga.followers += gb.followers
        ga.consumers += gb.consumers
        ga.params += gb.params
        ga.frozen = ga.frozen or gb.frozen

    def freeze(self, space, reason: str) -> None:
        for gid, _ in space:
            group = self.groups[self.find(gid)]
            group.frozen = group.frozen or reason


def check_graph(graph) -> None:
    """Raise TypeError unless `graph` is a DependencyGraph (what `trace_groups(model)` returns)."""
    if not isinstance(graph, DependencyGraph):
        raise TypeError(f"graph must be the DependencyGraph returned by trace_groups(model), "
                        f"got {type(graph).__name__}")


def groups_table(graph: DependencyGraph):
    """A Table with one row per group: size, producers, followers, consumers, and why it is frozen."""
    from minprune.table import Table

    check_graph(graph)
    rows = [{"group": g.id, "size": g.size, "producers": ", ".join(g.producers), "followers": ", ".join(g.followers),
             "consumers": ", ".join(g.consumers), "frozen": g.frozen or ""} for g in graph.groups.values()]
    return Table(rows)


def plot_groups(graph: DependencyGraph, ax=None):
    """Each layer as a row: its input channels (left) and output channels (right), coloured by group.

    Two cells with the same colour must lose the same channels. See notebooks/06_structured_pruning.ipynb.
    """
    import matplotlib.pyplot as plt

    check_graph(graph)
    layers = list(dict.fromkeys([*graph.inputs, *graph.outputs]))
    colours = {gid: plt.cm.tab20(i % 20) for i, gid in enumerate(graph.groups)}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(layers) + 1))
    for row, name in enumerate(layers):
        segments = graph.inputs.get(name, [])
        for k, (gid, _) in enumerate(segments):  # a concatenation reads several groups side by side
            ax.barh(row, 1 / len(segments), left=k / len(segments), color=colours[gid], edgecolor="white")
        if name in graph.outputs:
            gid = graph.outputs[name]
            ax.barh(row, 1, left=1.2, color=colours[gid], edgecolor="white")
            ax.text(2.3, row, f"{graph.groups[gid].size} ch{' (frozen)' if graph.groups[gid].frozen else ''}",
                    va="center", fontsize=8)
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.set_xticks([0.5, 1.7], ["reads", "writes"])
    ax.set_xlim(0, 3.5)
    ax.invert_yaxis()
    ax.set_title("coupled channel groups (same colour = pruned together)")
    return ax
