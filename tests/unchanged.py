"""What a refused call must leave as it was, shared by the validation tests: `Unchanged(model).check()`."""

from __future__ import annotations

import torch
from torch import nn


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_meta or b.is_meta:
        return a.is_meta and b.is_meta and a.dtype == b.dtype and a.shape == b.shape
    return a.dtype == b.dtype and a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


class Unchanged:
    """What a refused call must leave as it was: state_dict (NaN equal to NaN), dtypes, train/eval flag, hooks."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.training = [m.training for m in model.modules()]
        self.hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
        self.types = [type(m) for m in model.modules()]

    def check(self) -> None:
        after = self.model.state_dict()
        assert after.keys() == self.state.keys()
        for k, v in self.state.items():
            assert _same(after[k].detach(), v), f"{k} changed"
        assert [m.training for m in self.model.modules()] == self.training
        assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in self.model.modules()) == self.hooks
        assert [type(m) for m in self.model.modules()] == self.types
