"""Chapter 2 (importance scores): the exercises' designed cases and hints.

2.1 magnitude scores |w| ** p, 2.2 the Taylor score |w * dL/dw| of one batch, without side effects.
See notebooks/02_importance_scores.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.course.exercises import exercise
from minprune.unstructured.scores import magnitude_scores, taylor_scores


def _conv_bn_model(training: bool = False) -> nn.Module:
    """A conv with a non-square kernel, BatchNorm, Dropout, a Linear with and one without bias (2-channel 4x3 input).

    Its weights are signed and some are exactly zero; BatchNorm has a weight too, but it is not prunable.
    """
    torch.manual_seed(21)
    model = nn.Sequential(nn.Conv2d(2, 3, (3, 2)), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                          nn.Linear(3 * 2 * 2, 4), nn.ReLU(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.train(training)


def _mlp() -> nn.Module:
    torch.manual_seed(22)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).eval()


# ---- 2.1: magnitude scores -----------------------------------------------------------------------------------


def _magnitude_cases() -> list[tuple]:
    model = _conv_bn_model()
    return [(model, 1), (model, 2), (model, 3), (model, 0.5)]


def _score_keys(case, expected, got):
    """A hint when the learner's dict has other keys than the prunable weights."""
    if not isinstance(got, dict) or set(got) == set(expected):
        return None
    model, extra = case[0], [k for k in got if k not in expected]
    params = dict(model.named_parameters())
    if any(k.endswith("bias") for k in extra):
        return "score only the prunable weights (mp.prunable_names(model)): biases are not pruned"
    if any(k in params for k in extra):
        return ("BatchNorm has a weight too, but only Linear and Conv2d weights are prunable: loop over "
                "mp.prunable_names(model)")
    modules = dict(model.named_modules())
    if any(k in modules for k in got):
        return "the keys are parameter names ('0.weight'), as named_parameters() gives them, not module names"
    return "one entry per name in mp.prunable_names(model), keyed by that name"


def _magnitude_values(case, expected, got):
    model, p = case
    if not isinstance(got, dict) or set(got) != set(expected):
        return None
    params = dict(model.named_parameters())
    for name, s in got.items():
        W = params[name].detach()
        if not isinstance(s, torch.Tensor) or s.shape != W.shape or torch.allclose(s, expected[name]):
            continue
        if torch.allclose(s, W ** p, equal_nan=True):
            return "the score of a negative weight is |w| ** p: take the absolute value first"
        if torch.allclose(s, W.abs()):
            return "use p: the score is |w| ** p (p=2 gives w squared)"
        if torch.allclose(s, W.abs() * p):
            return "p is an exponent: |w| ** p, not |w| * p"
    return None


exercise("2.1", "magnitude scores |w| ** p", magnitude_scores, _magnitude_cases,
         hint="one float tensor |w| ** p per name in mp.prunable_names(model), shaped like that weight",
         diagnoses=(_score_keys, _magnitude_values), atol=0, rtol=1e-6)


# ---- 2.2: the Taylor score of one batch ----------------------------------------------------------------------


def taylor_one_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The library's Taylor scores |w * dL/dw| of one batch (x, y), L the mean cross entropy, model in eval mode.

    The reference of exercise 2.2: `taylor_scores(model, [(x, y)], batches=1)`, which runs on a private copy.
    See notebooks/02_importance_scores.ipynb.
    """
    return taylor_scores(model, [(x, y)], batches=1)


def _with_grads(model: nn.Module) -> nn.Module:
    """`model` with a .grad already set on every parameter (a caller in the middle of a training step)."""
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    return model


def _taylor_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(23)
    x_img, y_img = torch.randn(5, 2, 4, 3, generator=g), torch.tensor([0, 2, 1, 2, 0])
    x_vec, y_vec = torch.randn(7, 5, generator=g), torch.randint(0, 3, (7,), generator=g)
    return [
        (_mlp(), x_vec, y_vec),                                    # eval mode, no .grad set
        (_with_grads(_mlp()), x_vec, y_vec),                       # .grad already set: it must stay as it was
        (_conv_bn_model(training=False), x_img, y_img),
        (_with_grads(_conv_bn_model(training=True)), x_img, y_img),  # train mode: Dropout and BatchNorm statistics
    ]


def _taylor_values(case, expected, got):
    model, x, y = case
    if not isinstance(got, dict) or set(got) != set(expected):
        return None
    params = dict(model.named_parameters())
    n = len(y)
    for name, s in got.items():
        e = expected[name]
        if not isinstance(s, torch.Tensor) or s.shape != e.shape or torch.allclose(s, e, rtol=1e-4, atol=1e-9):
            continue
        if torch.allclose(s, e * n, rtol=1e-4, atol=1e-9):
            return (f"the loss is the mean over the batch, not the sum: your scores are {n} (the batch size) times "
                    "too big")
        if (s < 0).any() and torch.allclose(s.abs(), e, rtol=1e-4, atol=1e-9):
            return "the score is the absolute value |w * dL/dw|: yours has negative entries"
        if torch.allclose(s * params[name].detach().abs(), e, rtol=1e-4, atol=1e-9):
            return "multiply each gradient by its weight: the score is |w * dL/dw|, not |dL/dw|"
        if any(m.training for m in model.modules()):
            return ("the model came in train mode: score it as it predicts, in eval mode (Dropout off, BatchNorm's "
                    "running statistics), then put it back in the mode it was in")
    return None


exercise("2.2", "Taylor scores |w * dL/dw| of one batch", taylor_one_batch, _taylor_cases,
         hint="the loss is the batch mean of the cross entropy, in eval mode; multiply each gradient by its weight",
         diagnoses=(_score_keys, _taylor_values), atol=1e-9, rtol=1e-4)
