"""Where the channels of a tensor are after a shape operation: flatten, reshape, permute, indexing, reductions.

The tracer gives every tensor a `Space`: the axis that holds its channels and the channel groups laid out along it
(segments of (group id, features per channel): a flatten makes each channel own H*W consecutive features). A
tensor read from a parameter or buffer in `forward` gets an `Attr`, so that its channel entries can be pruned with
the channels it meets. Each function here returns the new layout, or raises `DependencyError` when the channels
would be split or mixed (a reshape that cuts the channel axis, an index that selects channels).
See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minprune.structured.channel_groups import DependencyError


@dataclass(frozen=True)
class Space:
    """The channels of one tensor: `segments` ((group id, features per channel), ...) along axis `axis`."""

    segments: tuple
    axis: int

    def moved(self, axis: int, rep: int = 1) -> Space:
        return Space(tuple((gid, r * rep) for gid, r in self.segments), axis)


@dataclass(frozen=True)
class Attr:
    """A tensor read from parameter or buffer `name`; `dims[i]` is the parameter dim at tensor dim i (None: new)."""

    name: str
    dims: tuple


def positive_axis(axis: int, ndim: int, where: str) -> int:
    if not -ndim <= axis < ndim:
        raise DependencyError(f"{where}: axis {axis} is out of range for a tensor with {ndim} dims")
    return axis % ndim


def flatten_space(space: Space, shape: tuple, start: int, end: int, where: str) -> Space:
    """Layout after flattening dims start..end of a tensor of `shape`."""
    start, end = positive_axis(start, len(shape), where), positive_axis(end, len(shape), where)
    a = space.axis
    if a < start:
        return space
    if a > end:
        return Space(space.segments, a - (end - start))
    if a != start:
        raise DependencyError(f"{where}: flattening dims {start}..{end} mixes the channel axis {a} with the dims "
                              f"before it")
    return space.moved(start, math.prod(shape[a + 1:end + 1]))


def reshape_space(space: Space, before: tuple, after: tuple, where: str) -> Space:
    """Layout after a reshape/view from `before` to `after` (row-major), if the channel axis survives whole."""
    a = space.axis
    prefix, channels, suffix = math.prod(before[:a]), before[a], math.prod(before[a + 1:])
    j, running = 0, 1
    while j < len(after) and running < prefix:
        running *= after[j]
        j += 1
    while j < len(after) - 1 and running == prefix and after[j] == 1 and channels != 1:
        j += 1  # skip unit dims before the channel axis
    if running != prefix or j >= len(after):
        raise DependencyError(f"{where}: the reshape {tuple(before)} -> {tuple(after)} mixes the channel axis "
                              f"with the dims before it")
    if after[j] == channels:
        return Space(space.segments, j)
    rep, rest = divmod(after[j], channels)
    if rest == 0 and rep > 0 and suffix % rep == 0:
        return space.moved(j, rep)
    raise DependencyError(f"{where}: the reshape {tuple(before)} -> {tuple(after)} splits the channel axis "
                          f"(size {channels}) into several dims")


def permuted_axis(axis: int, dims, where: str) -> int:
    dims = [positive_axis(d, len(dims), where) for d in dims]
    return dims.index(axis)


def swapped_axis(axis: int, ndim: int, i: int, j: int, where: str) -> int:
    i, j = positive_axis(i, ndim, where), positive_axis(j, ndim, where)
    return j if axis == i else i if axis == j else axis


def reduced_axis(axis: int, ndim: int, dims, keepdim: bool, where: str) -> int:
    """Channel axis after reducing over `dims` (None: all); refuses a reduction over the channels."""
    dims = range(ndim) if dims is None else [dims] if isinstance(dims, int) else dims
    dims = {positive_axis(d, ndim, where) for d in dims}
    if axis in dims:
        raise DependencyError(f"{where}: the reduction over dims {sorted(dims)} sums over the channel axis {axis}")
    return axis if keepdim else axis - sum(d < axis for d in dims)


def indexed_axis(axis: int, ndim: int, index, where: str) -> int:
    """Channel axis after `tensor[index]` with ints, slices, None and Ellipsis; refuses an index into channels."""
    items = index if isinstance(index, tuple) else (index,)
    if any(not isinstance(i, int | slice | type(None) | type(Ellipsis)) for i in items):
        raise DependencyError(f"{where}: indexing with {index!r} (a tensor or list index) is not followed")
    n_used = sum(1 for i in items if i is not None and i is not Ellipsis)
    src, out = 0, 0
    for item in items:
        if item is Ellipsis:
            skip = ndim - n_used
            if src <= axis < src + skip:
                return out + axis - src
            src, out = src + skip, out + skip
        elif item is None:
            out += 1
        elif src == axis:
            if isinstance(item, slice) and item == slice(None):
                return out
            raise DependencyError(f"{where}: the index {index!r} selects channels (axis {axis})")
        else:
            src, out = src + 1, out + (isinstance(item, slice))
    return out + axis - src


def attr_reshaped(attr: Attr, before: tuple, after: tuple, where: str) -> Attr:
    """A parameter view through unsqueeze/squeeze/view/expand: its non-unit dims keep their order."""
    kept_before = [(d, n) for d, n in zip(attr.dims, before) if n != 1]
    kept_after = [i for i, n in enumerate(after) if n != 1]
    if [n for _, n in kept_before] != [after[i] for i in kept_after]:
        raise DependencyError(f"{where}: parameter {attr.name!r} is reshaped {tuple(before)} -> {tuple(after)}, "
                              f"which minprune does not follow")
    dims = [None] * len(after)
    for (d, _), i in zip(kept_before, kept_after):
        dims[i] = d
    return Attr(attr.name, tuple(dims))


def attr_indexed(attr: Attr, index, where: str) -> Attr:
    """A parameter indexed with ints, slices and None (`self.scale[:, None, None]`, `self.pos[:, :n]`): a dim cut
    by a slice can no longer lose channel entries (None), an int removes its dim."""
    items = index if isinstance(index, tuple) else (index,)
    if any(not isinstance(i, int | slice | type(None) | type(Ellipsis)) for i in items):
        raise DependencyError(f"{where}: indexes parameter {attr.name!r} with {index!r}; only ints, slices, None "
                              f"and ... are followed")
    if Ellipsis in items:
        k = items.index(Ellipsis)
        n_used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items = items[:k] + (slice(None),) * (len(attr.dims) - n_used) + items[k + 1:]
    dims, src = [], 0
    for item in items:
        if item is None:
            dims.append(None)
            continue
        if isinstance(item, slice):
            dims.append(attr.dims[src] if item == slice(None) else None)
        src += 1
    return Attr(attr.name, tuple(dims) + attr.dims[src:])
