"""Safe model files: a state_dict plus a plain model description, never a pickled module.

Files are written atomically (temp file + rename), loaded with `torch.load(weights_only=True)`
(no code runs while loading), and carry a SHA-256 of their tensors so tampering is detected.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from minprune.masked import load_masked_state_dict
from minprune.models import ARCHS, describe, from_description

FORMAT = "minprune-checkpoint/1"


class CheckpointError(ValueError):
    """A model file that cannot be trusted or used: unreadable, truncated, tampered or mismatched."""


def tensors_sha256(state_dict: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state_dict's tensors (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.is_quantized:
            t = t.int_repr()
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def atomic_write(path, write_fn) -> Path:
    """Call write_fn(file_object) on a temporary file next to `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def save_model(path, model: nn.Module, *, description: dict | None = None, meta: dict | None = None) -> Path:
    """Write `model` to `path` atomically; `description` defaults to `models.describe(model)`.

    Before anything is written, the description is rebuilt and the weights loaded into it (`check_description`),
    so every file `save_model` writes, `load_model` reads back. See notebooks/01_train_baseline.ipynb.
    """
    _check_plain("meta", meta or {})
    description = description if description is not None else describe(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_description(description, model, state)
    payload = {"format": FORMAT, "description": description, "meta": dict(meta or {}),
               "state_dict": state, "sha256": tensors_sha256(state)}
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path) -> dict:
    """Load and verify a model file (weights_only=True, format and hash checked); returns its payload."""
    return read_verified(path, FORMAT, "state_dict", missing="model", unreadable="minprune model")


def read_verified(path, file_format: str, tensors: str, *, missing: str, unreadable: str) -> dict:
    """Load a file saved by torch.save (weights_only=True) and check it with `verify_payload`; returns the payload.

    missing / unreadable name the kind of file in the two errors ("no {missing} file at ...", "... is not a
    readable {unreadable} file").
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {missing} file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code in it, not a torch file at all
        raise CheckpointError(f"{path} is not a readable {unreadable} file: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    return verify_payload(path, payload, file_format, tensors)


def verify_payload(path, payload, file_format: str, tensors: str) -> dict:
    """Refuse a loaded file whose format tag is not `file_format` or whose `payload[tensors]` fail the stored hash."""
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CheckpointError(f"{path} is not a {file_format} file")
    if tensors_sha256(payload[tensors]) != payload.get("sha256"):
        raise CheckpointError(f"{path} failed its integrity check: its tensors were changed after saving")
    return payload


def load_model(path, *, device=None) -> tuple[nn.Module, dict]:
    """Rebuild the model stored in `path` and load its weights strictly; returns (model, meta)."""
    payload = read_checkpoint(path)
    try:
        model = from_description(payload["description"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the model description cannot be rebuilt: {exc}") from exc
    try:  # masked models (weight_orig + weight_mask) load too, their pruned weights staying zero
        load_masked_state_dict(model, payload["state_dict"], strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the described model: {exc}") from exc
    return model.to(device or "cpu"), payload["meta"]
