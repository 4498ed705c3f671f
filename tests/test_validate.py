"""The shared argument checks (validate.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minprune.validate import non_negative_int, positive_int


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


@given(st.integers(min_value=0))
def test_non_negative_ints_pass_through_zero_included(n):
    assert non_negative_int(n, "epochs") == n


@pytest.mark.parametrize("bad", [-1, 2.0, "4", True, False, None])
def test_non_negative_int_refuses_the_rest_with_the_argument_named(bad):
    with pytest.raises(ValueError, match=rf"epochs must be a non-negative int, got {bad!r}"):
        non_negative_int(bad, "epochs")
