"""The base class of every minprune model: it remembers its constructor arguments and checks its inputs.

`Classifier.config` is the plain data `models.describe` records, so a model is saved as a description plus a
state_dict and rebuilt by `models.build`; a forward pre-hook refuses inputs of the wrong shape with a ValueError
that names the shape expected. The models live in models.py, tinyvit.py and chargpt.py, and register in
`models.ARCHS`. See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn


def check_input_shape(module, args):
    """Forward pre-hook: refuse inputs whose per-example shape is not the model's `input_shape`."""
    x = args[0]
    expected = tuple(module.input_shape)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__} expects a tensor, got {type(x).__name__}")
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"{type(module).__name__} expects input of shape (batch, {', '.join(map(str, expected))}), "
                         f"got {tuple(x.shape)}")


class Classifier(nn.Module):
    """Base class: remembers its constructor arguments and checks input shapes.

    Subclasses may set `input_check` (a forward pre-hook `f(module, args)`, default `check_input_shape`) and
    `input_shape_in_config = False` when their constructor takes no `input_shape` (a language model's
    `input_shape` is derived from its other arguments).
    """

    input_check = staticmethod(check_input_shape)
    input_shape_in_config = True

    def __init__(self, input_shape, **kwargs):
        super().__init__()
        self.input_shape = tuple(input_shape)
        shape = {"input_shape": list(input_shape)} if self.input_shape_in_config else {}
        self.config = {**shape, **kwargs}
        self.register_forward_pre_hook(type(self).input_check)
