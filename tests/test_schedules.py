"""Sparsity schedules: values at known steps, exact end point, monotonicity, validation."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minprune.dynamic import schedules
from minprune.dynamic.schedules import cubic, exponential, linear, make_schedule, one_shot

SHAPES = ["cubic", "linear", "exponential"]


def test_cubic_known_values():
    # Zhu & Gupta: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i=0.1, s_f=0.9, t0=100, n*dt=200
    f = dict(final=0.9, initial=0.1, start=100, end=300)
    assert cubic(0, **f) == pytest.approx(0.1)  # before start: initial
    assert cubic(100, **f) == pytest.approx(0.1)  # at start
    assert cubic(200, **f) == pytest.approx(0.9 - 0.8 * 0.125)  # middle: (1 - 1/2)^3 = 1/8
    assert cubic(300, **f) == 0.9  # exactly final at the end
    assert cubic(10_000, **f) == 0.9  # after the end: held


def test_linear_and_exponential_known_values():
    assert linear(50, 0.8, start=0, end=100) == pytest.approx(0.4)
    assert linear(-5, 0.8, start=0, end=100) == 0.0
    # density halves at the middle step between 1.0 and 0.25 (geometric mean of the densities = 0.5)
    assert exponential(50, 0.75, start=0, end=100) == pytest.approx(0.5)
    assert exponential(100, 0.75, start=0, end=100) == pytest.approx(0.75)


def test_one_shot_jumps_at_start():
    assert one_shot(9, 0.9, start=10) == 0.0
    assert one_shot(10, 0.9, start=10) == 0.9
    assert make_schedule("one-shot", 0.5, start=3).update_steps() == [3]


def test_interval_holds_value_between_updates():
    s = make_schedule("cubic", 0.9, start=0, end=100, interval=30)
    assert s(29) == s(0) == 0.0
    assert s(30) == s(59) > 0
    assert s(99) == s(90) < 0.9 and s(100) == 0.9  # end is reached exactly even when 100 % 30 != 0
    assert s.update_steps() == [0, 30, 60, 90, 100]


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from(SHAPES), initial=st.floats(0, 0.5), extra=st.floats(0, 0.49),
       start=st.integers(0, 50), length=st.integers(1, 300), interval=st.integers(1, 40))
def test_schedules_are_monotone_and_end_exactly(shape, initial, extra, start, length, interval):
    final = initial + extra
    s = make_schedule(shape, final, initial=initial, start=start, end=start + length, interval=interval)
    values = [s(t) for t in range(0, start + length + 5)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert values[start] == pytest.approx(initial)
    assert s(start + length) == pytest.approx(final, abs=1e-12)
    assert all(initial - 1e-12 <= v <= final + 1e-12 for v in values)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="cubic", final=0.9, start=100, end=50), "end must come after start"),
    (dict(shape="cubic", final=0.9, start=10, end=10), "end must come after start"),
    (dict(shape="linear", final=0.2, initial=0.5, end=10), "final sparsity must be >= initial"),
    (dict(shape="cubic", final=0.9, end=10, interval=0), "interval must be a positive"),
    (dict(shape="cubic", final=1.0, end=10), r"final must be a sparsity in \[0, 1\)"),
    (dict(shape="cubic", final=0.9), "needs an end step"),
    (dict(shape="quadratic", final=0.9, end=10), "unknown schedule shape"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(**kwargs)


def test_plain_functions_validate_too():
    with pytest.raises(ValueError, match="interval"):
        cubic(5, 0.9, end=10, interval=0)
    with pytest.raises(TypeError, match="int step"):
        linear(5, 0.9, end=10.5)


def test_progress_is_quantised_to_the_interval():
    assert schedules.progress(25, 0, 100, 10) == 0.2
    assert math.isclose(schedules.progress(99, 0, 100, 10), 0.9)
