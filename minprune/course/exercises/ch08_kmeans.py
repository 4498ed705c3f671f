"""Chapter 8, k-means weight sharing: the designed cases and hints of Exercise 8.4, one fine-tuning step of the
shared centroids (registered when ch08 is imported).

The gradient of a centroid is the sum of the gradients of the kept weights in its cluster (pruned weights belong
to no cluster), then one SGD step; the check fails a function that changes the centroids in place.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import torch

from minprune.course.check import CheckFailed
from minprune.course.exercises import exercise
from minprune.course.exercises.ch08_integer import _match
from minprune.quantization.kmeans import centroid_step


def _step_call(fn, centroids, index, weight_grad, lr, mask):
    """fn(...), failing a function that changes the centroids in place or returns the very same tensor."""
    before = centroids.detach().clone()
    got = fn(centroids, index, weight_grad, lr, mask)
    changed = not torch.equal(before, centroids.detach())
    if changed or got is centroids or (isinstance(got, torch.Tensor) and got.data_ptr() == centroids.data_ptr()):
        with torch.no_grad():
            centroids.copy_(before)  # the next cases and the caller see the centroids as they were
        raise CheckFailed(f"✗ {getattr(fn, '__name__', 'your function')} changed the centroids in place or returned "
                          "them: compute `centroids - lr * grad`, a new tensor, and leave `centroids` as it was")
    return got


def _cases() -> list[tuple]:
    g = torch.Generator().manual_seed(87)
    conv_index = torch.randint(0, 7, (4, 2, 3, 3), generator=g)
    conv_index[conv_index == 5] = 6  # cluster 5 has no weight at all
    conv_mask = torch.rand(4, 2, 3, 3, generator=g) < 0.6
    conv_index[~conv_mask & (torch.rand(4, 2, 3, 3, generator=g) < 0.5)] = 7  # cluster 7 holds only pruned weights
    linear_mask = torch.rand(30, 40, generator=g) < 0.3  # 70% pruned
    return [
        (torch.tensor([-1.0, 0.0, 0.5, 2.0]),  # clusters 1 and 3 have no kept weight: they keep their value
         torch.tensor([[0, 0, 2], [2, 0, 3]]), torch.tensor([[0.5, -1.0, 0.25], [3.0, 2.0, -0.5]]), 0.1,
         torch.tensor([[True, True, True], [False, True, False]])),  # the pruned ones point at clusters 2 and 3
        (torch.linspace(-0.4, 0.4, 8), conv_index, torch.randn(4, 2, 3, 3, generator=g), 0.05,
         conv_mask),  # a Conv2d weight (out, in, kh, kw)
        (torch.tensor([0.3, 0.3, -0.2]),  # two equal centroids: the index, not the value, says the cluster
         torch.tensor([0, 1, 1, 2, 0]), torch.tensor([1.0, 2.0, -4.0, 0.5, 1.0]), 1.0, torch.ones(5, dtype=torch.bool)),
        (torch.tensor([0.1, -0.3]), torch.tensor([[0, 1], [1, 1]]), torch.tensor([[2.0, 1.0], [-3.0, 4.0]]), 0.0,
         torch.tensor([[True, False], [True, True]])),  # lr 0: the same values, in a new tensor
        (torch.tensor([0.2, -0.1, 0.05]), torch.tensor([0, 0, 1, 1, 1, 2]),  # negative gradients move centroids up
         -torch.tensor([0.5, 1.5, 1.0, 2.0, 0.25, 3.0]), 0.5, torch.tensor([True, True, True, True, True, False])),
        (torch.linspace(-0.2, 0.2, 16), torch.randint(0, 16, (30, 40), generator=g),
         0.01 * torch.randn(30, 40, generator=g), 0.3, linear_mask),  # a Linear weight, 70% pruned
    ]


def _mistake(case, expected, got):
    centroids, index, weight_grad, lr, mask = case
    if isinstance(got, BaseException) or not isinstance(got, torch.Tensor):
        return None
    k, kept = len(centroids), mask.flatten()

    def sums(keep=kept):
        return torch.zeros(k).index_add_(0, index.flatten()[keep], weight_grad.flatten()[keep])

    def mean():
        counts = torch.bincount(index.flatten()[kept], minlength=k).clamp(min=1)
        return centroids - lr * sums() / counts

    def nearest():  # the cluster of each weight taken as the first centroid with the weight's centroid value
        first = torch.tensor([int(torch.nonzero(centroids == centroids[i])[0]) for i in range(k)])
        return centroid_step(centroids, first[index], weight_grad, lr, mask)

    mistakes = {
        "sum the gradients of a cluster's weights, do not average them: each weight moves with its centroid, so "
        "every one of them adds its gradient": mean,
        "leave the pruned weights out (mask False): they are zero and belong to no cluster, however their index "
        "reads": lambda: centroid_step(centroids, index, weight_grad, lr),
        "multiply the gradient by the learning rate: centroids - lr * grad": lambda: centroids - sums(),
        "step against the gradient: centroids - lr * grad, not + (a negative gradient moves a centroid up)":
            lambda: centroids + lr * sums(),
        "take a weight's cluster from `index`, not from its value: two centroids can be equal": nearest,
        "a centroid with no kept weight has gradient 0 and keeps its value": lambda: torch.where(
            torch.bincount(index.flatten()[kept], minlength=k) > 0, expected, torch.zeros(k)),
    }
    return _match(mistakes, expected, got, 1e-6, 1e-5)


exercise("8.4", "one fine-tuning step of shared centroids", centroid_step, _cases, call=_step_call,
         hint="grad[c] = the sum of weight_grad over the kept weights (mask True) whose index is c, 0 for a centroid "
              "without weights; return centroids - lr * grad, a new float32 tensor", diagnoses=(_mistake,))
