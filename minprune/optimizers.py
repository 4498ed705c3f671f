"""The optimizers `fit` builds by name ('sgd' with momentum 0.9, 'adam', 'adamw'), and the check of one a user
builds: finite settings, over the parameters of the model it trains. See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from minprune.validate import finite_number, model_arg

OPTIMIZERS = ("sgd", "adam", "adamw")


def check_optimizer_name(name) -> str:
    """`name` when it is 'sgd', 'adam' or 'adamw'; else ValueError listing them."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose 'sgd', 'adam' or 'adamw'")
    return name


def check_lr(lr, name: str = "lr") -> float:
    """`lr` as a float when it is a finite number >= 0; else ValueError (NaN and inf are refused)."""
    return finite_number(lr, f"{name} (the learning rate)", low=0)


def make_optimizer(model: nn.Module, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0):
    """'sgd' (momentum 0.9), 'adam' or 'adamw' over the model's trainable parameters."""
    model_arg(model)
    check_optimizer_name(name)
    lr = check_lr(lr)
    weight_decay = finite_number(weight_decay, "weight_decay", low=0)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


NONNEGATIVE_HYPERPARAMETERS = ("lr", "momentum", "weight_decay", "dampening", "eps", "alpha", "lr_decay")


def _scalars(value) -> list:
    """The numbers of one optimizer setting: a number, a one-element tensor, or each non-None entry of a tuple."""
    values = value if isinstance(value, (tuple, list)) else [value]
    return [float(v) if isinstance(v, torch.Tensor) and v.numel() == 1 else v for v in values if v is not None]


def check_optimizer(opt, model: nn.Module | None = None) -> None:
    """Raise unless `opt` is a torch optimizer whose numeric settings are finite (lr, momentum, weight_decay, eps
    >= 0; betas in [0, 1)) and, given `model`, every parameter it updates is one of the model's."""
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be 'sgd', 'adam', 'adamw' or a torch.optim.Optimizer, "
                        f"got {type(opt).__name__}")
    for i, group in enumerate(opt.param_groups):
        for key in NONNEGATIVE_HYPERPARAMETERS:
            for value in _scalars(group.get(key)):
                finite_number(value, f"optimizer.param_groups[{i}]['{key}']", low=0)
        for j, beta in enumerate(_scalars(group.get("betas") or ())):
            finite_number(beta, f"optimizer.param_groups[{i}]['betas'][{j}]", low=0, high=1, high_open=True)
    if model is not None:
        own = {id(p) for p in model.parameters()}
        if any(id(p) not in own for group in opt.param_groups for p in group["params"]):
            raise ValueError("optimizer updates parameters that are not the model's: build it over "
                             "model.parameters() of the model you train (moving a model keeps its parameters)")
