"""Sparse storage: every format decodes to the same tensor; sizes are the real byte counts and behave as expected."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune.unstructured import sparse_storage as SS


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), sparsity=st.floats(0, 1),
       bits=st.integers(1, 8), dtype=st.sampled_from([torch.float32, torch.float16, torch.float64]),
       seed=st.integers(0, 100))
def test_round_trip_property(shape, sparsity, bits, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) >= sparsity)).to(dtype)
    for fmt in SS.FORMATS:
        back = SS.decode(SS.encode(t, fmt, bits=bits))
        assert back.dtype == t.dtype and back.shape == t.shape and torch.equal(back, t)


def test_long_gaps_use_fillers():
    t = torch.zeros(1000)
    t[0], t[999] = 1.0, 2.0
    data = SS.encode(t, "relative", bits=4)
    assert torch.equal(SS.decode(data), t)
    assert len(data) > len(SS.encode(torch.tensor([1.0, 2.0]), "relative", bits=4)) + 60 * 4  # 62 filler values


def test_sizes_dense_vs_sparse():
    torch.manual_seed(0)
    W = torch.randn(300, 784)
    dense = SS.storage_sizes(W)
    assert dense["dense"] >= 300 * 784 * 4
    assert dense["csr"] > dense["dense"]  # no zeros: indices are pure overhead
    half = SS.storage_sizes(W * (torch.rand_like(W) > 0.5))
    assert half["csr"] > half["dense"] * 0.7  # 50% zeros: CSR with 16-bit indices barely helps
    sparse = SS.storage_sizes(W * (torch.rand_like(W) > 0.98))
    assert sparse["csr"] < sparse["dense"] / 10 and sparse["bitmask"] < sparse["dense"] / 5


def test_storage_table_totals():
    model = mp.build("lenet300", hidden=[20, 10])
    table = SS.storage_table(model)
    rows = table.rows
    assert rows[-1]["tensor"] == "total"
    assert rows[-1]["dense"] == sum(r["dense"] for r in rows[:-1])
    assert all(r["best"] == min(r[f] for f in SS.FORMATS) for r in rows)


def test_errors():
    with pytest.raises(ValueError, match="fmt"):
        SS.encode(torch.ones(3), "coo")
    with pytest.raises(TypeError):
        SS.encode(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="magic"):
        SS.decode(b"nope" + bytes(10))
