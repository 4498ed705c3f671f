"""Tests for minprune/quantization/huffman.py: canonical Huffman codes, encode/decode round trip, optimal lengths."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minprune.quantization import huffman


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=400))
def test_encode_decode_round_trip(symbols):
    data, lengths = huffman.encode(symbols)
    assert huffman.decode(data, lengths, len(symbols)) == symbols
    assert len(data) == math.ceil(sum(lengths[s] for s in symbols) / 8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=300))
def test_codes_are_prefix_free_and_near_entropy(symbols):
    lengths = huffman.code_lengths(symbols)
    codes = list(huffman.canonical_codes(lengths).values())
    assert not any(a != b and b.startswith(a) for a in codes for b in codes)
    assert sum(2.0 ** -n for n in lengths.values()) <= 1.0 + 1e-12  # Kraft inequality
    n = len(symbols)
    entropy = -sum(c / n * math.log2(c / n) for c in (symbols.count(s) for s in set(symbols)))
    bits = huffman.coded_bits(symbols) / n
    assert entropy - 1e-9 <= bits < entropy + 1 + 1e-9  # Huffman is within one bit of the entropy


def test_known_code_lengths():
    # frequencies 45, 13, 12, 16, 9, 5: the textbook example (CLRS), optimal lengths 1, 3, 3, 3, 4, 4
    symbols = [0] * 45 + [1] * 13 + [2] * 12 + [3] * 16 + [4] * 9 + [5] * 5
    assert huffman.code_lengths(symbols) == {0: 1, 1: 3, 2: 3, 3: 3, 4: 4, 5: 4}
    assert huffman.coded_bits(symbols) == 224


def test_single_symbol_and_empty_input():
    data, lengths = huffman.encode([7, 7, 7])
    assert lengths == {7: 1} and huffman.decode(data, lengths, 3) == [7, 7, 7]
    data, lengths = huffman.encode([])
    assert data == b"" and huffman.decode(data, lengths, 0) == []


def test_truncated_or_foreign_data_is_refused():
    data, lengths = huffman.encode([0, 1, 2, 3] * 10)
    with pytest.raises(ValueError, match="truncated"):
        huffman.decode(data[:2], lengths, 40)
    with pytest.raises(ValueError, match="no code"):
        huffman.encode([9], lengths)
