"""K-means weight sharing, the second stage of Deep Compression (Han et al. 2016).

The nonzero weights of a layer are clustered into k = 2^bits centroids; each weight then stores only a
`bits`-bit cluster index, and the layer stores its k centroids. Pruned weights (exact zeros) are not
clustered and stay exactly zero. While shared, the centroids are trainable parameters: the gradient of a
centroid is the sum of the gradients of the weights in its cluster, which autograd computes through the
indexing `centroids[index]` for free (`centroid_gradients` and `centroid_step` compute it by hand, Exercise 8.7).
Sharing uses torch.nn.utils.parametrize.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from minprune.quantization.uniform import check_bits, check_tensor
from minprune.validate import finite_number, model_arg, positive_int


def kmeans_1d(x: torch.Tensor, k: int, *, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the values of x with linear initialisation; returns (centroids (k,), index like x).

    Linear initialisation (centroids evenly spaced between min and max) keeps the rare large weights
    represented, which Han et al. found works best. Empty clusters keep their previous centroid.
    Any float dtype: the clustering runs in float32 and the centroids are float32.
    """
    check_tensor(x)
    positive_int(k, "k")
    positive_int(iters, "iters")
    if x.numel() == 0:
        raise ValueError("cannot cluster an empty tensor")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite, but it contains NaN or Inf; k-means needs finite values")
    values = x.detach().flatten().float()
    centroids = torch.linspace(float(values.min()), float(values.max()), k)
    for _ in range(iters):
        index = _nearest(values, centroids)
        sums = torch.zeros(k).index_add_(0, index, values)
        counts = torch.bincount(index, minlength=k).float()
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids, _nearest(values, centroids).reshape(x.shape)


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for every value: a binary search between sorted midpoints, O(n log k)."""
    order = torch.argsort(centroids)
    ordered = centroids[order]
    boundaries = (ordered[1:] + ordered[:-1]) / 2
    return order[torch.bucketize(values, boundaries)]


def _index_arg(index, k: int, shape: torch.Size) -> torch.Tensor:
    """`index` as int64 when it is an integer tensor of `shape` with values in [0, k); else TypeError/ValueError."""
    if not isinstance(index, torch.Tensor) or index.dtype == torch.bool or index.is_floating_point() \
            or index.is_complex():
        kind = f"a {index.dtype} tensor" if isinstance(index, torch.Tensor) else type(index).__name__
        raise TypeError(f"index must be an integer tensor of cluster numbers, got {kind}")
    if index.shape != shape:
        raise ValueError(f"index must have the shape of weight_grad {tuple(shape)}, got {tuple(index.shape)}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= k):
        raise ValueError(f"index must hold cluster numbers in [0, {k}), got values from {int(index.min())} "
                         f"to {int(index.max())}")
    return index.to(torch.int64)


def centroid_gradients(weight_grad: torch.Tensor, index: torch.Tensor, k: int, mask=None) -> torch.Tensor:
    """The gradient of each of k shared centroids: the sum of `weight_grad` over the weights in its cluster.

    `index` (like the weight) gives each weight's cluster; `mask` (bool, like the weight, True = kept) leaves the
    pruned weights out: they belong to no cluster. A centroid without weights gets 0. This is what autograd
    computes for `SharedWeight.centroids` through `centroids[index]`. Float32, shape (k,), accumulated in float32.
    """
    check_tensor(weight_grad, "weight_grad")
    if not weight_grad.is_floating_point():
        raise TypeError(f"weight_grad must be a float tensor (the gradient of the weight), got {weight_grad.dtype}")
    positive_int(k, "k")
    index = _index_arg(index, k, weight_grad.shape)
    grads, index = weight_grad.detach().float().flatten(), index.flatten()
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            kind = f"a {mask.dtype} tensor" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be None or a bool tensor (True = kept), got {kind}")
        if mask.shape != weight_grad.shape:
            raise ValueError(f"mask must have the shape of weight_grad {tuple(weight_grad.shape)}, "
                             f"got {tuple(mask.shape)}")
        kept = mask.flatten().to(grads.device)
        grads, index = grads[kept], index.to(grads.device)[kept]
    return torch.zeros(k, device=grads.device).index_add_(0, index.to(grads.device), grads)


def centroid_step(centroids: torch.Tensor, index: torch.Tensor, weight_grad: torch.Tensor, lr: float,
                  mask=None) -> torch.Tensor:
    """One SGD step of the shared centroids, `centroids - lr * centroid_gradients(...)`, as a new tensor.

    A centroid without (kept) weights keeps its value; the inputs are not changed. Returns the centroids' dtype.
    """
    check_tensor(centroids, "centroids")
    if centroids.dim() != 1 or not centroids.is_floating_point():
        raise ValueError(f"centroids must be a 1-D float tensor (k,), got shape {tuple(centroids.shape)} "
                         f"and dtype {centroids.dtype}")
    lr = finite_number(lr, "lr")
    grad = centroid_gradients(weight_grad, index, len(centroids), mask).to(centroids.device)
    return (centroids.detach().float() - lr * grad).to(centroids.dtype)


class SharedWeight(nn.Module):
    """Parametrization: weight = centroids[index] where the mask keeps a weight, exactly 0 elsewhere."""

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.centroids = nn.Parameter(centroids.clone())  # (k,) trainable
        self.register_buffer("index", index.to(torch.int64))  # like the weight, in [0, k)
        self.register_buffer("mask", mask.bool())  # like the weight, True = keep

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        W = self.centroids[self.index]  # the weight as the cluster centres, shaped like the original
        return torch.where(self.mask, W, torch.zeros((), dtype=W.dtype, device=W.device))


def _names_arg(names) -> list[str] | None:
    """`names` as a list of parameter names: None, one name, or an iterable of names; else TypeError."""
    if names is None:
        return None
    listed = [names] if isinstance(names, str) else list(names) if isinstance(names, (list, tuple, set)) else None
    if listed is None or not all(isinstance(n, str) for n in listed):
        raise TypeError(f"names must be None, a parameter name or a list of names such as ['layers.1.weight'], "
                        f"got {names!r:.60}")
    return listed


def _weights_to_share(model: nn.Module, names=None) -> dict[str, nn.Module]:
    """Modules whose `weight` is a matrix or a filter bank (Linear, Conv); biases and norms are left alone."""
    names = _names_arg(names)
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "weight_orig"):
            raise ValueError(f"{name or 'model'} carries a pruning mask (weight_orig); call make_permanent first")
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() > 1 and not parametrize.is_parametrized(module):
            out[f"{name}.weight" if name else "weight"] = module
    if names is not None:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise ValueError(f"cannot share {unknown}: not an unshared Linear/Conv weight; choose from {list(out)}")
        out = {n: out[n] for n in names}
    return out


def share_weights(model: nn.Module, bits: int = 4, *, names=None, iters: int = 30) -> nn.Module:
    """Cluster the nonzero weights of every Linear/Conv layer (or of `names`) into 2^bits shared values, in place.

    Pruned weights stay exactly zero; call it again with other `names` and `bits` for per-layer bit widths.
    The centroids become parameters, so `mp.fit(model, ...)` fine-tunes
    them; `unshare_weights` writes the shared values back into plain weights.
    Float16 and bfloat16 weights are clustered in float32 and their centroids cast back: the layer keeps its dtype.
    """
    model_arg(model)
    check_bits(bits)
    positive_int(iters, "iters")
    modules = _weights_to_share(model, names)
    if not modules:
        raise ValueError("the model has no unshared Linear/Conv weights to share")
    bad = [name for name, module in modules.items() if not bool(torch.isfinite(module.weight).all())]
    if bad:  # checked for every layer before any is shared, so a refused model is left as it was
        raise ValueError(f"weights {bad} contain NaN or Inf; share_weights needs finite weights "
                         f"(reload or re-initialise the model)")
    for module in modules.values():
        W = module.weight.detach()
        mask = W != 0
        values = W[mask] if bool(mask.any()) else torch.zeros(1)
        centroids, cluster = kmeans_1d(values, 2**bits, iters=iters)  # float32, whatever W's dtype
        index = torch.zeros_like(W, dtype=torch.int64)
        index[mask] = cluster
        shared = SharedWeight(centroids.to(W.dtype, copy=True).to(W.device), index, mask)
        parametrize.register_parametrization(module, "weight", shared, unsafe=True)
        module.parametrizations.weight.original.requires_grad_(False)  # only the centroids are trained
    return model


def shared_layers(model: nn.Module) -> dict[str, SharedWeight]:
    """The SharedWeight parametrization of every shared layer, keyed by module name."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, SharedWeight):
                    out[name] = p
    return out


def unshare_weights(model: nn.Module) -> nn.Module:
    """Bake the shared values into plain `weight` parameters and remove the parametrizations, in place."""
    model_arg(model)
    shared = shared_layers(model)
    for name, module in list(model.named_modules()):
        if name in shared:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.weight.requires_grad_(True)
    return model
