"""The shared argument checks (validate.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minprune.validate import positive_int


@given(st.integers(min_value=1))
def test_positive_ints_pass_through(n):
    assert positive_int(n, "n") == n


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", True, None, [1]])
def test_anything_else_is_refused_with_the_argument_named(bad):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive int, got {bad!r}".replace("[", r"\[")):
        positive_int(bad, "batch_size")


def test_none_only_where_it_is_allowed():
    assert positive_int(None, "threads", none_ok=True) is None
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        positive_int(0, "threads", none_ok=True)
