"""Safe model files: a state_dict plus a plain model description, never a pickled module.

Files follow the kit's one file rule (`files.py`): written atomically, loaded with `torch.load(weights_only=True)`
(no code runs while loading), a SHA-256 over everything read back (tensors, description, meta), the described
model's size checked on the meta device before it is built, every failure a `CheckpointError` naming the file.
A float16 or bfloat16 model comes back in its own dtype. See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from minprune.devices import check_device
from minprune.files import (
    CheckpointError,
    atomic_write,
    described_model,
    path_arg,
    read_torch_file,
    refusing,
    seal,
    tensors_sha256,
)
from minprune.masked import load_masked_state_dict
from minprune.models import ARCHS, describe, from_description
from minprune.validate import model_arg

__all__ = ["CheckpointError", "FORMAT", "atomic_write", "check_description", "load_model", "read_checkpoint",
           "save_model", "tensors_sha256"]

FORMAT = "minprune-checkpoint/2"


def _check_plain(what: str, value) -> None:
    """Refuse values that `torch.load(weights_only=True)` would not read back (objects, functions, ...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{what} keys must be str or int, got {key!r}")
            _check_plain(f"{what}[{key!r}]", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(f"{what}[{i}]", item)
    elif not isinstance(value, (str, int, float, bool, type(None), torch.Tensor)):
        raise TypeError(f"{what} must hold only str, int, float, bool, None, tensors, lists and dicts "
                        f"(what weights_only loading accepts), got {type(value).__name__}")


def check_description(description, model: nn.Module, state: dict) -> None:
    """Refuse a description that would not give `model` back: not plain data (TypeError), not rebuildable by
    `models.from_description`, a model the weights do not fit, or another minprune model than `model` (ValueError).

    See notebooks/01_train_baseline.ipynb.
    """
    _check_plain("description", description)
    try:
        rebuilt = from_description(description)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"description cannot be rebuilt into a model (notes belong in meta=): {exc}") from exc
    try:
        load_masked_state_dict(rebuilt, state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"description builds a {description['arch']!r} model that the weights do not fit: "
                         f"{str(exc)[:500]}") from exc
    if type(model) in ARCHS.values() and describe(rebuilt) != describe(model):
        raise ValueError(f"description builds {describe(rebuilt)}, but the model is {describe(model)}; "
                         f"leave description=None to save the model's own")


def _float_dtype(state: dict) -> torch.dtype | None:
    """The one floating dtype of a state_dict's tensors (None without any); a mix is refused."""
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) > 1:
        raise ValueError(f"save_model keeps one floating dtype per model; this one mixes {sorted(map(str, dtypes))}: "
                         f"call model.float() (or .half(), .double()) first")
    return dtypes.pop() if dtypes else None


def save_model(path, model: nn.Module, *, description: dict | None = None, meta: dict | None = None) -> Path:
    """Write `model` to `path` atomically; `description` defaults to `models.describe(model)`.

    Before anything is written, the description is rebuilt and the weights loaded into it (`check_description`),
    so every file `save_model` writes, `load_model` reads back. See notebooks/01_train_baseline.ipynb.
    """
    path = path_arg(path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_model expects a torch.nn.Module, got {type(model).__name__}")
    model_arg(model)  # a model on the meta device holds no values to save
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict of plain values (or None), got {type(meta).__name__} {meta!r:.60}")
    _check_plain("meta", meta or {})
    description = description if description is not None else describe(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _float_dtype(state)
    check_description(description, model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    payload = seal({"format": FORMAT, "description": description, "meta": dict(meta or {}), "state_dict": state})
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path) -> dict:
    """Load and verify a model file (weights_only=True, format and hash over everything checked); its payload."""
    payload = read_torch_file(path, FORMAT, kind="minprune model")
    for key, kind in (("description", dict), ("meta", dict), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: its {key!r} entry is missing or not a {kind.__name__}")
    if not all(isinstance(t, torch.Tensor) for t in payload["state_dict"].values()):
        raise CheckpointError(f"{path}: its state_dict holds something other than tensors")
    return payload


def _check_shapes(path, expected: dict, state: dict) -> None:
    """Refuse stored tensors whose names or shapes differ from the described model's (`x_orig` and `x_mask` of a
    masked model stand for `x`), before the model is built for real."""
    found = {}
    for key, t in state.items():
        for suffix in ("_orig", "_mask"):
            base = key.removesuffix(suffix)
            if key.endswith(suffix) and {base + "_orig", base + "_mask"} <= state.keys():
                key = base
        found.setdefault(key, tuple(t.shape))
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = [f"size mismatch for {k}: the file has {list(found[k])}, the description {list(expected[k].shape)}"
             for k in expected.keys() & found.keys() if found[k] != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        problems = wrong + ([f"missing {missing[:5]}"] if missing else []) + (
            [f"unexpected {unexpected[:5]}"] if unexpected else [])
        raise CheckpointError(f"{path}: weights do not fit the described model: {'; '.join(sorted(problems))[:500]}")


def load_model(path, *, device=None) -> tuple[nn.Module, dict]:
    """Rebuild the model stored in `path` and load its weights strictly; returns (model, meta).

    The description's model is built on the meta device first and its tensor shapes compared with the file's: a
    file cannot make the loader allocate more than its own tensors. See notebooks/01_train_baseline.ipynb.
    """
    target = check_device(device) if device is not None else torch.device("cpu")
    payload = read_checkpoint(path)
    state = payload["state_dict"]
    _check_shapes(path, described_model(path, payload["description"]).state_dict(), state)
    with refusing(path, "the model description cannot be rebuilt"):
        model = from_description(payload["description"])
    with refusing(path, "the model's dtype cannot be restored"):
        dtype = _float_dtype(state)
        if dtype is not None:
            model = model.to(dtype)
    with refusing(path, "weights do not fit the described model"):
        # masked models (weight_orig + weight_mask) load too, their pruned weights staying zero
        load_masked_state_dict(model, state, strict=True)
    return model.to(target), payload["meta"]
