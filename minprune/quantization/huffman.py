"""Huffman coding (Huffman 1952), the last stage of Deep Compression: frequent symbols get short codes.

Codes are canonical: they follow from the code length of each symbol alone, so a file only has to
store {symbol: length}, and the decoder rebuilds the same codes. Bits are packed most significant first.
See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import heapq
import numbers
from collections import Counter
from collections.abc import Iterable

import torch

from minprune.validate import non_negative_int


def _symbol(s) -> int:
    """One symbol as an int: an int, a numpy integer or a 0-d integer tensor (not a bool, not 2.5)."""
    if isinstance(s, torch.Tensor) and s.numel() == 1 and not s.is_floating_point() and s.dtype != torch.bool:
        return int(s)
    if isinstance(s, bool) or not isinstance(s, numbers.Integral):
        raise TypeError(f"symbols must be ints (e.g. cluster indices), got {type(s).__name__} {s!r:.40}")
    return int(s)


def _symbols(symbols) -> list[int]:
    """`symbols` as a list of ints; a string, bytes or a non-iterable is refused with TypeError."""
    if isinstance(symbols, (str, bytes)) or not isinstance(symbols, Iterable):
        raise TypeError(f"symbols must be an iterable of ints (a list or an integer tensor), got "
                        f"{type(symbols).__name__}")
    return [_symbol(s) for s in symbols]


def check_lengths(lengths) -> dict[int, int]:
    """`lengths` when it is a dict {int symbol: code length >= 1}; else TypeError / ValueError naming it."""
    if not isinstance(lengths, dict):
        raise TypeError(f"lengths must be a dict {{symbol: code length}} (from code_lengths or encode), got "
                        f"{type(lengths).__name__}")
    bad = {s: n for s, n in lengths.items()
           if isinstance(s, bool) or not isinstance(s, numbers.Integral)
           or isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1}
    if bad:
        raise ValueError(f"lengths must map int symbols to code lengths >= 1, got {dict(list(bad.items())[:3])}")
    return lengths


def code_lengths(symbols: Iterable[int]) -> dict[int, int]:
    """Huffman code length of every distinct symbol, from the symbol frequencies.

    Repeatedly merge the two least frequent groups; each merge adds one bit to all symbols in both.
    A lone symbol gets a 1-bit code. Ties are broken by symbol value, so the result is deterministic.
    """
    counts = Counter(_symbols(symbols))
    if not counts:
        return {}
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    lengths = dict.fromkeys(counts, 0)
    heap = [(n, s, [s]) for s, n in sorted(counts.items())]  # (frequency, tie-break, members)
    heapq.heapify(heap)
    while len(heap) > 1:
        n1, t1, members1 = heapq.heappop(heap)
        n2, t2, members2 = heapq.heappop(heap)
        for s in members1 + members2:
            lengths[s] += 1
        heapq.heappush(heap, (n1 + n2, min(t1, t2), members1 + members2))
    return lengths


def canonical_codes(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical code words (bit strings) from code lengths: sort by (length, symbol), count upwards."""
    check_lengths(lengths)
    codes, code, previous = {}, 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = format(code, f"0{length}b")
        code, previous = code + 1, length
    return codes


def encode(symbols: Iterable[int], lengths: dict[int, int] | None = None) -> tuple[bytes, dict[int, int]]:
    """Huffman-code a sequence of ints; returns (packed bytes, code lengths needed to decode)."""
    symbols = _symbols(symbols)
    lengths = code_lengths(symbols) if lengths is None else check_lengths(lengths)
    codes = canonical_codes(lengths)
    missing = set(symbols) - codes.keys()
    if missing:
        raise ValueError(f"symbols {sorted(missing)[:5]} have no code in the given lengths")
    bits = "".join(codes[s] for s in symbols)
    bits += "0" * (-len(bits) % 8)  # pad to whole bytes; the decoder stops after `count` symbols
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"", lengths


def decode(data: bytes, lengths: dict[int, int], count: int) -> list[int]:
    """Inverse of `encode`: read `count` symbols from `data` with the code given by `lengths`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes (what encode returned), got {type(data).__name__}")
    check_lengths(lengths)
    non_negative_int(count, "count")
    if count == 0:
        return []
    if not lengths:
        raise ValueError(f"lengths is empty: no code to read {count} symbols with")
    decoding = {code: symbol for symbol, code in canonical_codes(lengths).items()}
    bits = format(int.from_bytes(data, "big"), f"0{8 * len(data)}b") if data else ""
    out, start, longest = [], 0, max(lengths.values())
    for end in range(1, len(bits) + 1):
        word = bits[start:end]
        if word in decoding:
            out.append(decoding[word])
            start = end
            if len(out) == count:
                return out
        elif end - start >= longest:
            raise ValueError(f"corrupt Huffman data: no code word at bit {start}")
    raise ValueError(f"truncated Huffman data: decoded {len(out)} of {count} symbols")


def coded_bits(symbols: Iterable[int]) -> int:
    """Number of bits the Huffman code of `symbols` takes (before padding)."""
    symbols = _symbols(symbols)
    lengths = code_lengths(symbols)
    return sum(lengths[s] for s in symbols)
