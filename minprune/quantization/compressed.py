"""The Deep Compression file format (Han et al. 2016): pruned + shared + Huffman-coded weights, real bytes.

Every weight matrix or filter bank is stored sparse. Its nonzero weights are listed in order as
(gap, cluster index) pairs: the gap is the distance from the previous nonzero weight (the relative
index of the paper) and the cluster index picks one of the layer's float32 centroids. A gap longer
than `max_gap` is split with filler entries (cluster index k, meaning "no weight here"), which keeps
the gap alphabet small. Both sequences are Huffman-coded per layer. Biases and other tensors are
stored as float16 (or float32). Layout: MAGIC, u32 header size, zlib(JSON header), payload, and a SHA-256 of all
that (the kit's file rule, `files.py`). Decoding gives back exactly the weights that were encoded; before it
allocates anything, the loader checks every size in the header against the model the description builds (on the
meta device) and against the bytes the file holds.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import torch
from torch import nn

from minprune.files import CheckpointError, atomic_write, count_elements, described_model, path_arg, refusing
from minprune.models import describe, from_description
from minprune.quantization import huffman
from minprune.validate import positive_int

MAGIC = b"MPDC2"
OLD_MAGICS = (b"MPDC1",)
MAX_CLUSTERS = 256
MAX_HEADER_BYTES = 16 * 2**20  # the decompressed JSON header (a zip bomb stops here)
MAX_CODE_LENGTH = 4096  # bits of one Huffman code word
DIGEST = 32  # bytes of the SHA-256 at the end


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    """A state_dict entry as the forward pass sees it (resolves pruning masks and parametrizations)."""
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attr).detach().cpu()


def encode_sparse(W: torch.Tensor, max_gap: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse, shared form of W: (centroids float32 (k,), gaps, cluster indices), fillers marked with index k."""
    flat = W.detach().flatten().float()
    positions = torch.nonzero(flat).flatten().tolist()
    centroids = torch.unique(flat[flat != 0])  # sorted distinct nonzero values
    if len(centroids) > MAX_CLUSTERS:
        raise ValueError(f"{len(centroids)} distinct nonzero weights; share them first "
                         f"(mp.share_weights(model, bits)) to at most {MAX_CLUSTERS}")
    cluster = torch.searchsorted(centroids, flat[positions]).tolist() if positions else []
    gaps, indices, previous = [], [], -1
    for position, c in zip(positions, cluster):
        gap = position - previous
        while gap > max_gap:  # filler entry: jump max_gap positions without placing a weight
            gaps.append(max_gap)
            indices.append(len(centroids))
            gap -= max_gap
        gaps.append(gap)
        indices.append(c)
        previous = position
    return centroids.numpy().astype(np.float32), np.array(gaps, np.int64), np.array(indices, np.int64)


def decode_sparse(centroids: np.ndarray, gaps, indices, shape) -> torch.Tensor:
    """Inverse of `encode_sparse`: a dense float32 tensor of `shape`."""
    flat = np.zeros(int(np.prod(shape)), np.float32)
    position = -1
    for gap, c in zip(gaps, indices):
        position += int(gap)
        if gap < 1 or c > len(centroids) or (c < len(centroids) and position >= len(flat)):
            raise CheckpointError(f"a sparse weight of shape {list(shape)} places cluster {c} at position "
                                  f"{position} (gap {gap}): outside the tensor or its {len(centroids)} clusters")
        if c < len(centroids):
            flat[position] = centroids[c]
    return torch.from_numpy(flat).reshape(tuple(shape))


def _dense(lengths: dict[int, int]) -> list[int]:
    """Code lengths as a list indexed by symbol (0 = symbol absent): compact in the zlib-compressed header."""
    out = [0] * (max(lengths, default=-1) + 1)
    for symbol, length in lengths.items():
        out[symbol] = length
    return out


def _sparse(dense) -> dict[int, int]:
    if not (isinstance(dense, list) and all(isinstance(n, int) and 0 <= n <= MAX_CODE_LENGTH for n in dense)):
        raise CheckpointError(f"a Huffman code is not a list of code lengths up to {MAX_CODE_LENGTH}")
    return {symbol: length for symbol, length in enumerate(dense) if length}


def _encode_entry(name: str, t: torch.Tensor, max_gap: int, float_dtype: str) -> tuple[dict, bytes]:
    entry = {"name": name, "shape": list(t.shape)}
    if t.is_floating_point() and t.dim() > 1:
        centroids, gaps, indices = encode_sparse(t, max_gap)
        gap_bytes, gap_lengths = huffman.encode(gaps)
        index_bytes, index_lengths = huffman.encode(indices)
        entry.update(kind="shared", k=len(centroids), count=len(gaps), gap_bytes=len(gap_bytes),
                     gap_code=_dense(gap_lengths), index_code=_dense(index_lengths))
        return entry, centroids.tobytes() + gap_bytes + index_bytes
    dtype = float_dtype if t.is_floating_point() else str(t.dtype).removeprefix("torch.")
    entry.update(kind="dense", dtype=dtype)
    values = t.float() if t.is_floating_point() else t  # numpy has no bfloat16: every float goes via float32
    return entry, values.numpy().astype(dtype).tobytes()


_DENSE_DTYPES = ("float16", "float32", "int64", "int32", "uint8", "int8", "bool")


def _check_entry(entry: dict, name: str, expected: torch.Tensor, nbytes: int) -> None:
    """Refuse an entry whose name, shape or sizes do not fit the described tensor and the bytes it claims."""
    if entry.get("name") != name or entry.get("shape") != list(expected.shape):
        raise CheckpointError(f"the header lists {entry.get('name')!r:.60} with shape {entry.get('shape')!r:.60} "
                              f"where the description has {name!r} of shape {list(expected.shape)}")
    numel = count_elements(entry["shape"], f"tensor {name!r}")
    if entry.get("kind") == "dense":
        if entry.get("dtype") not in _DENSE_DTYPES or nbytes != numel * np.dtype(entry["dtype"]).itemsize:
            raise CheckpointError(f"dense tensor {name!r} claims dtype {entry.get('dtype')!r} in {nbytes} bytes")
        return
    k, count, gap_bytes = entry.get("k"), entry.get("count"), entry.get("gap_bytes")
    if entry.get("kind") != "shared" or not all(isinstance(v, int) and v >= 0 for v in (k, count, gap_bytes)):
        raise CheckpointError(f"tensor {name!r} has a bad entry")
    coded = nbytes - 4 * k
    if k > MAX_CLUSTERS or gap_bytes > coded or count > 8 * min(gap_bytes, coded - gap_bytes):
        raise CheckpointError(f"shared tensor {name!r} claims {k} clusters and {count} entries in {nbytes} bytes")


def _decode_entry(entry: dict, blob: bytes) -> torch.Tensor:
    if entry["kind"] == "dense":
        array = np.frombuffer(blob, dtype=entry["dtype"]).reshape(entry["shape"])
        return torch.from_numpy(array.astype(np.float32 if entry["dtype"].startswith("float") else array.dtype))
    k, n_gap = entry["k"], entry["gap_bytes"]
    centroids = np.frombuffer(blob[: 4 * k], np.float32)
    gaps = huffman.decode(blob[4 * k: 4 * k + n_gap], _sparse(entry["gap_code"]), entry["count"])
    indices = huffman.decode(blob[4 * k + n_gap:], _sparse(entry["index_code"]), entry["count"])
    return decode_sparse(centroids, gaps, indices, entry["shape"])


def save_compressed(path, model: nn.Module, *, max_gap: int = 256, float_dtype: str = "float16") -> dict:
    """Write `model` in the Deep Compression format with `atomic_write`; returns {"bytes", "by_tensor"}.

    Weight tensors must hold at most 256 distinct nonzero values (prune, then `share_weights`).
    Validates everything before writing anything.
    """
    path = path_arg(path)
    positive_int(max_gap, "max_gap")
    if float_dtype not in ("float16", "float32"):
        raise ValueError(f"float_dtype must be 'float16' or 'float32', got {float_dtype!r}")
    description = describe(model)
    entries, blobs = [], []
    for name in from_description(description).state_dict():
        entry, blob = _encode_entry(name, _tensor(model, name), max_gap, float_dtype)
        entry["nbytes"] = len(blob)
        entries.append(entry)
        blobs.append(blob)
    header = zlib.compress(json.dumps({"description": description, "tensors": entries}).encode(), 9)
    body = MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)
    data = body + hashlib.sha256(body).digest()
    atomic_write(path, lambda f: f.write(data))
    return {"bytes": len(data), "by_tensor": {e["name"]: e["nbytes"] for e in entries}}


def _header(path, body: bytes) -> tuple[dict, int]:
    """The JSON header (decompressed to at most MAX_HEADER_BYTES) and the offset where the tensors start."""
    (header_size,) = struct.unpack("<I", body[len(MAGIC): len(MAGIC) + 4])
    offset = len(MAGIC) + 4 + header_size
    if offset > len(body):
        raise CheckpointError(f"its header claims {header_size} bytes, more than the file holds")
    inflate = zlib.decompressobj()
    text = inflate.decompress(body[len(MAGIC) + 4: offset], MAX_HEADER_BYTES)
    if inflate.unconsumed_tail:
        raise CheckpointError(f"its header inflates to more than {MAX_HEADER_BYTES} bytes")
    header = json.loads(text)
    if not (isinstance(header, dict) and isinstance(header.get("tensors"), list)):
        raise CheckpointError("its header is not what save_compressed writes")
    return header, offset


def load_compressed(path) -> nn.Module:
    """Read a file written by `save_compressed` and rebuild the model (SHA-256 and every size checked first)."""
    path = path_arg(path)
    if not path.exists():
        raise FileNotFoundError(f"no Deep Compression file at {path}")
    data = path.read_bytes()
    if data[:len(MAGIC)] in OLD_MAGICS:
        raise CheckpointError(f"{path} was written by an older minprune ({data[:len(MAGIC)].decode()}): "
                              f"save the model again with save_compressed")
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4 + DIGEST:
        raise CheckpointError(f"{path} is not a minprune Deep Compression file")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path} failed its integrity check: the file is damaged or was changed")
    with refusing(path, "not a usable Deep Compression file"):
        header, offset = _header(path, body)
        expected = described_model(path, header.get("description")).state_dict()
        entries = header["tensors"]
        sizes = [e.get("nbytes") if isinstance(e, dict) else None for e in entries]
        if len(entries) != len(expected) or not all(isinstance(n, int) and n >= 0 for n in sizes) \
                or offset + sum(sizes) != len(body):
            raise CheckpointError(f"its header lists {len(entries)} tensors and their sizes, which do not add up "
                                  f"to the description's {len(expected)} tensors in the file's {len(body) - offset} "
                                  f"bytes")
        state = {}
        for entry, (name, tensor), nbytes in zip(entries, expected.items(), sizes):
            _check_entry(entry, name, tensor, nbytes)
            state[name] = _decode_entry(entry, body[offset: offset + nbytes])
            offset += nbytes
        model = from_description(header["description"])
        model.load_state_dict(state, strict=True)
    return model
