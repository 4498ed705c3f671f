"""One rule for every file the kit writes (model files, baselines, int8 files, Deep Compression files).

- Written atomically: a temporary file next to the target, renamed into place, removed if the write fails; a
  temporary file left by a killed process (its name carries the process id) is removed by the next write there.
- A SHA-256 covers everything that is read back: tensors, description, meta, layout (`payload_sha256`). It
  detects damage and edits made with anything but the kit; it is not a signature (whoever can write the file
  can recompute it), so loading never trusts a file further than the checks below.
- Sizes are checked before anything is allocated: every integer of a model description is at most
  `MAX_DESCRIPTION_INT`, the described model is built on the meta device (no memory) and may hold at most
  `MAX_ELEMENTS` numbers, and no more than the file can account for (`check_model_size`).
- Every failure to read is a `CheckpointError` that names the file and what is wrong (`refusing`).

See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from minprune.models import from_description

MAX_ELEMENTS = 100_000_000  # numbers in one model file: 400 MB of float32, far above any model of the course
MAX_DESCRIPTION_INT = 65_536  # widths, depths, kernel sizes, ... in a model description
STALE_SECONDS = 3600  # a temporary file without a process id in its name is stale after an hour


class CheckpointError(ValueError):
    """A file that cannot be trusted or used: unreadable, truncated, tampered, oversized or mismatched."""


# ---- hashing -----------------------------------------------------------------------------------------------

def _feed(h, value) -> None:
    """Add `value` to the hash `h`, tagged with its type so that no two different values hash alike."""
    if isinstance(value, dict):
        h.update(f"d{len(value)}|".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"l{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        t = t.int_repr() if t.is_quantized else t
        h.update(f"t{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, bool) or value is None:
        h.update(f"b{value}|".encode())
    elif isinstance(value, int):
        h.update(f"i{value}|".encode())
    elif isinstance(value, float):
        h.update(f"f{value.hex()}|".encode())
    elif isinstance(value, str):
        data = value.encode()
        h.update(f"s{len(data)}|".encode() + data)
    elif isinstance(value, (bytes, bytearray)):
        h.update(f"y{len(value)}|".encode() + bytes(value))
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} in a minprune file")


def payload_sha256(payload: dict) -> str:
    """SHA-256 over every entry of a file's payload but 'sha256' itself: tensors, description, meta, layout."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def seal(payload: dict) -> dict:
    """`payload` with its 'sha256' entry set: what every writer of the kit does just before `torch.save`."""
    return {**payload, "sha256": payload_sha256(payload)}


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


# ---- writing -----------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def stale_temporary_files(path) -> list[Path]:
    """Temporary files of earlier writes of `path` whose process is gone (killed during the write)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)-)?[^.]*\.tmp$")
    stale = []
    for candidate in path.parent.iterdir():
        m = pattern.match(candidate.name)
        if not m:
            continue
        if m[1] is not None:
            gone = int(m[1]) != os.getpid() and not _pid_alive(int(m[1]))
        else:  # written by an older kit: no process id in the name
            gone = time.time() - candidate.stat().st_mtime > STALE_SECONDS
        if gone:
            stale.append(candidate)
    return stale


def path_arg(path, name: str = "path") -> Path:
    """`path` as a Path when it is a str or os.PathLike naming no directory; else TypeError / ValueError naming it."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or path == "":
        raise TypeError(f"{name} must be a file path (a str or pathlib.Path), got {type(path).__name__} "
                        f"{path!r:.60}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a directory; give the path of a file in it")
    return path


def atomic_write(path, write_fn) -> Path:
    """Call write_fn(file_object) on a temporary file next to `path`, then rename it into place.

    On any failure the temporary file is removed and `path` is untouched; temporary files that killed writes of
    the same `path` left behind are removed first.
    """
    path = path_arg(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporary_files(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
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


# ---- reading -----------------------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def refusing(path, what: str):
    """Turn any error raised while reading `path` into a CheckpointError naming the file (MemoryError included)."""
    try:
        yield
    except CheckpointError as exc:
        if str(path) in str(exc):
            raise
        raise CheckpointError(f"{path}: {exc}") from exc
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - a file must never end in a raw error
        raise CheckpointError(f"{path}: {what}: {_first_line(exc)}") from exc


def read_torch_file(path, file_format: str, *, kind: str) -> dict:
    """Load a file written with torch.save (weights_only=True) and check its format tag and its hash.

    `kind` names the file in the errors ("no {kind} file at ...", "... is not a readable {kind} file").
    """
    path = path_arg(path)
    if not path.exists():
        raise FileNotFoundError(f"no {kind.removeprefix('minprune ')} file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - truncated zip, pickle with code, not a torch file
        raise CheckpointError(f"{path} is not a readable {kind} file: {_first_line(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        found = payload.get("format") if isinstance(payload, dict) else None
        older = f" (it is {found!r}, written by another version of minprune: save it again)" if isinstance(
            found, str) and found.split("/")[0] == file_format.split("/")[0] else ""
        raise CheckpointError(f"{path} is not a {file_format} file{older}")
    with refusing(path, "its contents cannot be hashed"):
        digest = payload_sha256(payload)
    if digest != payload.get("sha256"):
        raise CheckpointError(f"{path} failed its integrity check: its contents were changed after saving")
    return payload


def _check_ints(path, value, where: str = "description") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_ints(path, item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_DESCRIPTION_INT:
            raise CheckpointError(f"{path}: {where} has {len(value)} entries (at most {MAX_DESCRIPTION_INT})")
        for i, item in enumerate(value):
            _check_ints(path, item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_DESCRIPTION_INT:
        raise CheckpointError(f"{path}: {where} = {value} is larger than any size a model description holds "
                              f"(at most {MAX_DESCRIPTION_INT}); the file is damaged or crafted")


def described_model(path, description) -> torch.nn.Module:
    """The model `description` builds, on the meta device (nothing allocated), its integers checked first."""
    _check_ints(path, description)
    with refusing(path, "the model description cannot be rebuilt"), torch.device("meta"):
        return from_description(description)


def check_model_size(path, description, stored_elements: int) -> torch.nn.Module:
    """Refuse a description whose model holds more than MAX_ELEMENTS numbers, or more than twice what the file
    stores (plus 1024: folded BatchNorms and scales make int8 files a little smaller than their float model).
    Returns the model on the meta device."""
    model = described_model(path, description)
    n = sum(t.numel() for t in model.state_dict().values())
    if n > MAX_ELEMENTS:
        raise CheckpointError(f"{path}: the described model holds {n:,} numbers, more than the {MAX_ELEMENTS:,} "
                              f"a minprune file may hold")
    if n > 2 * stored_elements + 1024:
        raise CheckpointError(f"{path}: the described model holds {n:,} numbers but the file stores only "
                              f"{stored_elements:,}: the description does not fit the weights")
    return model
def count_elements(shape, where: str) -> int:
    """numel of a shape read from a file: a list of non-negative ints whose product is at most MAX_ELEMENTS."""
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CheckpointError(f"{where} has a bad shape {shape!r:.80}")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise CheckpointError(f"{where} claims shape {list(shape)} ({n:,} numbers), more than the "
                              f"{MAX_ELEMENTS:,} a minprune file may hold")
    return n
