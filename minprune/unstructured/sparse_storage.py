"""The honest size of a sparse tensor: real serialized bytes in three sparse formats, next to dense bytes.

- 'csr': values + column index per nonzero (uint8/16/32, the smallest that fits) + one row pointer per row;
- 'bitmask': one bit per entry saying "nonzero" + the nonzero values;
- 'relative': Han et al. 2015 (Deep Compression): per nonzero, the gap to the previous one in `bits` bits,
  with a filler zero whenever a gap does not fit.
Unstructured sparsity only saves bytes once the index overhead is paid back: CSR with 16-bit indices needs
more than 50% zeros just to break even on float32 weights. Every format decodes back to the same tensor.
float32, float16, bfloat16 and float64 tensors are stored (bfloat16 by its 16-bit patterns, as NumPy has no
bfloat16); -0.0 is stored as a zero. See notebooks/04_fine_tuning.ipynb.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from torch import nn

from minprune.masked import effective_parameters
from minprune.table import Table
from minprune.validate import model_arg

FORMATS = ("dense", "csr", "bitmask", "relative")
_MAGIC = b"MPS1"
_DTYPES = {torch.float32: (0, np.float32), torch.float16: (1, np.float16), torch.float64: (2, np.float64),
           torch.bfloat16: (3, np.int16)}  # bfloat16: the bit patterns, viewed as int16
_NP = {code: np_type for code, np_type in _DTYPES.values()}
_TORCH = {code: t for t, (code, _) in _DTYPES.items()}


def _header(fmt: str, t: torch.Tensor, extra: int = 0) -> bytes:
    code = _DTYPES[t.dtype][0]
    return _MAGIC + struct.pack(f"<BBBB{t.dim()}I", FORMATS.index(fmt), code, t.dim(), extra, *t.shape)


def _index_dtype(n: int):
    return np.uint8 if n <= 2**8 else np.uint16 if n <= 2**16 else np.uint32


def _csr(flat: np.ndarray, shape) -> bytes:
    rows = shape[0] if len(shape) > 1 else 1
    W = flat.reshape(rows, -1)  # (rows, cols): a conv filter bank becomes (out, in*kh*kw)
    r, c = np.nonzero(W)
    row_ptr = np.zeros(rows + 1, dtype=np.uint32)
    np.cumsum(np.bincount(r, minlength=rows), out=row_ptr[1:])
    return row_ptr.tobytes() + c.astype(_index_dtype(W.shape[1])).tobytes() + W[r, c].tobytes()


def _relative(flat: np.ndarray, bits: int) -> bytes:
    M = 2**bits - 1  # largest gap one index can hold
    idx = np.flatnonzero(flat)
    d = np.diff(np.concatenate([[-1], idx]))  # distance to the previous nonzero, >= 1
    fillers = (d - 1) // (M + 1)
    last = np.cumsum(fillers + 1) - 1  # where each real entry lands among all entries
    gaps = np.full(int(fillers.sum()) + len(idx), M, dtype=np.int64)
    values = np.zeros(len(gaps), dtype=flat.dtype)
    gaps[last] = d - fillers * (M + 1) - 1
    values[last] = flat[idx]
    bit_rows = (gaps[:, None] >> np.arange(bits - 1, -1, -1)) & 1  # (entries, bits), most significant first
    return struct.pack("<I", len(gaps)) + np.packbits(bit_rows.astype(np.uint8)).tobytes() + values.tobytes()


def _check_bits(bits) -> int:
    """`bits` (the gap width of the 'relative' format) when it is an int in [1, 16]; else ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16] (an int), got {bits!r}")
    return bits


def _check_tensor(t) -> None:
    """TypeError/ValueError unless `t` is a float32/float16/bfloat16/float64 tensor of >= 1 dimension with values."""
    if not isinstance(t, torch.Tensor) or t.dtype not in _DTYPES or t.dim() == 0:
        got = f"{t.dtype} tensor of {t.dim()} dimensions" if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"encode needs a float32/float16/bfloat16/float64 tensor with at least one dimension, "
                        f"got {got}")
    if t.is_meta:
        raise ValueError("encode needs a tensor with values; this one is on the meta device")


def _numpy(t: torch.Tensor) -> np.ndarray:
    """The flat values of `t` as NumPy (bfloat16 as int16 bit patterns), with -0.0 made +0.0."""
    t = t.detach().cpu().contiguous().flatten()
    t = t.masked_fill(t == 0, 0)
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def encode(t: torch.Tensor, fmt: str = "csr", *, bits: int = 4) -> bytes:
    """Serialize a float tensor in one of FORMATS; `decode` gives the same tensor back.

    See notebooks/04_fine_tuning.ipynb.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    _check_tensor(t)
    _check_bits(bits)
    flat = _numpy(t)
    if fmt == "dense":
        body = flat.tobytes()
    elif fmt == "csr":
        body = _csr(flat, tuple(t.shape))
    elif fmt == "bitmask":
        body = np.packbits(flat != 0).tobytes() + flat[flat != 0].tobytes()
    else:
        body = _relative(flat, bits)
    return _header(fmt, t, bits if fmt == "relative" else 0) + body


def decode(data: bytes) -> torch.Tensor:
    """The tensor stored by `encode`; ValueError for bytes that are not one, or a truncated or corrupt one.

    See notebooks/04_fine_tuning.ipynb.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be the bytes that encode returns, got {type(data).__name__}")
    data = bytes(data)
    if data[:4] != _MAGIC:
        raise ValueError("not a minprune sparse tensor (bad magic bytes)")
    try:
        return _decode(data)
    except (struct.error, ValueError, IndexError, KeyError, RuntimeError) as exc:
        raise ValueError(f"data is a truncated or corrupt minprune sparse tensor ({exc})") from None


def _decode(data: bytes) -> torch.Tensor:
    fmt_code, dtype_code, ndim, extra = struct.unpack_from("<BBBB", data, 4)
    shape = struct.unpack_from(f"<{ndim}I", data, 8)
    body, np_type = memoryview(data)[8 + 4 * ndim:], _NP[dtype_code]
    numel, fmt = int(np.prod(shape)), FORMATS[fmt_code]
    if fmt == "relative" and not 1 <= extra <= 16:
        raise ValueError(f"bits {extra} out of range")
    flat = np.zeros(numel, dtype=np_type)
    if fmt == "dense":
        flat = np.frombuffer(body, dtype=np_type).copy()
    elif fmt == "bitmask":
        nonzero = np.unpackbits(np.frombuffer(body, np.uint8), count=numel).astype(bool)
        flat[nonzero] = np.frombuffer(body, np_type, offset=(numel + 7) // 8)
    elif fmt == "csr":
        rows = shape[0] if ndim > 1 else 1
        cols = numel // rows
        row_ptr = np.frombuffer(body, np.uint32, count=rows + 1)
        nnz, idx_type = int(row_ptr[-1]), _index_dtype(cols)
        c = np.frombuffer(body, idx_type, count=nnz, offset=4 * (rows + 1)).astype(np.int64)
        v = np.frombuffer(body, np_type, offset=4 * (rows + 1) + nnz * np.dtype(idx_type).itemsize)
        r = np.repeat(np.arange(rows), np.diff(row_ptr))
        flat[r * cols + c] = v
    else:
        n = struct.unpack_from("<I", body)[0]
        bit_rows = np.unpackbits(np.frombuffer(body, np.uint8, offset=4), count=n * extra).reshape(n, extra)
        gaps = bit_rows.astype(np.int64) @ (1 << np.arange(extra - 1, -1, -1))
        values = np.frombuffer(body, np_type, offset=4 + (n * extra + 7) // 8)
        flat[np.cumsum(gaps + 1) - 1] = values
    if flat.size != numel:
        raise ValueError(f"{flat.size} values for a shape of {numel}")
    out = torch.from_numpy(flat).view(shape)
    return out.view(torch.bfloat16) if _TORCH[dtype_code] == torch.bfloat16 else out.to(_TORCH[dtype_code])


def storage_sizes(t: torch.Tensor, *, bits: int = 4) -> dict[str, int]:
    """Serialized bytes of `t` in every format, e.g. {'dense': 940848, 'csr': ..., 'bitmask': ..., 'relative': ...}.

    See notebooks/04_fine_tuning.ipynb.
    """
    _check_tensor(t)
    _check_bits(bits)
    return {fmt: len(encode(t, fmt, bits=bits)) for fmt in FORMATS}


def storage_table(model: nn.Module, *, bits: int = 4) -> Table:
    """Per parameter tensor (as the forward pass sees it) and in total: sparsity and bytes in every format.

    Any float dtype (float16 and bfloat16 too); a model on the meta device is refused (no values to count).
    See notebooks/04_fine_tuning.ipynb.
    """
    model_arg(model)
    _check_bits(bits)
    rows, total = [], {"tensor": "total", "sparsity": 0.0, **{f: 0 for f in FORMATS}, "best": 0}
    numel, zeros = 0, 0
    for name, p in effective_parameters(model).items():
        p = p.reshape(1) if p.dim() == 0 else p  # a scalar parameter is stored as one value
        if p.dtype not in _DTYPES:
            raise TypeError(f"storage_table stores float32/float16/bfloat16/float64 tensors; {name!r} is {p.dtype}")
        sizes = storage_sizes(p, bits=bits)
        row = {"tensor": name, "sparsity": 1 - int(torch.count_nonzero(p)) / p.numel() if p.numel() else 0.0,
               **sizes, "best": min(sizes.values())}
        rows.append(row)
        for key in (*FORMATS, "best"):
            total[key] += row[key]
        numel, zeros = numel + p.numel(), zeros + p.numel() - int(torch.count_nonzero(p))
    total["sparsity"] = zeros / numel if numel else 0.0
    return Table(rows + [total])
