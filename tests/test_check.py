"""minprune.course.check: one-line verdicts, expected vs actual on failure, no solution revealed."""

import math

import pytest
import torch

from minprune.course import check
from minprune.course.check import CheckFailed, difference, same_as, same_on, same_value


def _failure(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return str(info.value)


def my_abs(W):
    return W.abs()


def test_a_match_prints_exactly_one_line(capsys):
    assert same_as(my_abs, torch.abs, torch.tensor([-1.0, 2.0]))
    assert capsys.readouterr().out == "✓ my_abs matches _VariableFunctionsClass.abs\n"
    assert same_on(my_abs, abs, [(torch.tensor(-1.0),), (torch.randn(3, 4),)])
    assert capsys.readouterr().out == "✓ my_abs matches abs on 2 cases\n"


def test_tensor_mismatch_names_count_index_values_and_hint():
    def my_wrong_abs(W):
        out = W.abs()
        out[1, 2] = 7.0
        return out

    message = _failure(same_as, my_wrong_abs, torch.abs, torch.zeros(3, 4), hint="|w|, elementwise")
    assert message.splitlines()[0] == ("✗ my_wrong_abs differs from the library in result: 1 of 12 entries differ, "
                       "the first at index (1, 2): expected 0.0, got 7.0")
    assert "\n  expected: tensor([[0., 0., 0., 0.]," in message and "\n  got:      tensor([[0., 0., 0., 0.]," in message
    assert message.endswith("\n  hint: |w|, elementwise")


def test_shape_and_type_mistakes_are_named():
    assert "shape (4,), expected (2, 2)" in _failure(same_as, lambda W: W.flatten(), lambda W: W, torch.ones(2, 2))
    assert "should be a tensor, got list" in _failure(same_as, lambda W: W.tolist(), lambda W: W, torch.ones(2))
    assert "is a `return` missing" in _failure(same_as, lambda W: None, lambda W: W, torch.ones(2))


def test_masks_must_be_bool_and_equal():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    keep = lambda s: s > 0.5  # noqa: E731
    assert same_as(lambda s: s >= 0.55, keep, scores, quiet=True)
    assert "bool mask (True = keep), got dtype torch.int64" in _failure(same_as, lambda s: (s > 0.5).long(), keep,
                                                                        scores)
    assert "first at index (0, 0): expected True, got False" in _failure(same_as, lambda s: s < 0.5, keep, scores)


def test_dicts_of_tensors_report_the_first_wrong_key():
    expected = {"a.weight": torch.ones(2), "b.weight": torch.tensor([True, False])}
    wrong_leaf = {"a.weight": torch.ones(2), "b.weight": torch.tensor([True, True])}
    message = _failure(same_as, lambda: wrong_leaf, lambda: expected)
    assert "result['b.weight']: 1 of 2 entries differ, the first at index (1,): expected False, got True" in message
    message = _failure(same_as, lambda: {"a.weight": torch.ones(2)}, lambda: expected)
    assert "missing ['b.weight'], unexpected []" in message
    assert "should be a dict, got Tensor" in _failure(same_as, lambda: torch.ones(2), lambda: expected)


def test_floats_use_tolerances_and_nan_equals_nan():
    assert difference(0.3, 0.1 + 0.2) is None
    assert difference(1e6, 1e6 + 1.0) is None  # rtol=1e-5 accepts float32-level noise on large values
    assert difference(1.0, 1.001) == ("result", 1.0, 1.001)
    assert difference(1.0, 1.001, atol=0.01) is None
    assert difference(math.nan, math.nan) is None
    assert difference(torch.tensor([math.nan, 1.0]), torch.tensor([math.nan, 1.0])) is None
    assert difference(2.5, torch.tensor(2.5)) is None  # a one-element tensor stands for a number
    assert difference(torch.tensor(2.5), 2.5) is None  # and a number for a 0-dim tensor
    assert difference(torch.tensor(2.5), 2.75)[0] == "result: 1 of 1 entries differ, the first at index (): " \
        "expected 2.5, got 2.75"
    assert difference(8, 8.0) is None and difference(8, 8.5) is not None


def test_lists_and_tuples_are_compared_item_by_item():
    assert difference([0.5, 0.75], (0.5, 0.75)) is None
    assert difference([0.5, 0.75], [0.5]) == ("result: 1 items, expected 2", [0.5, 0.75], [0.5])
    assert difference([0.5, 0.75], [0.5, 0.7])[0] == "result[1]"


def test_placeholder_fails_with_the_exercise_number():
    def my_fn(x):
        raise NotImplementedError("Exercise 3.2: write your solution here")

    message = _failure(same_on, my_fn, abs, [(1,), (-2,)])
    assert message == "✗ my_fn is not written yet (Exercise 3.2: write your solution here)"


def test_same_on_names_the_failing_case():
    message = _failure(same_on, lambda x: x, abs, [(1,), (-2,), (0,)], hint="negative numbers")
    assert message.splitlines()[0] == "✗ <lambda> differs from the library (case 2 of 3) in result"
    assert message.splitlines()[1:] == ["  expected: 2", "  got:      -2", "  hint: negative numbers"]


def test_changing_an_input_in_place_fails_even_when_the_result_matches():
    message = _failure(same_as, lambda W: W.abs_(), torch.abs, torch.tensor([-1.0, 2.0]))
    assert "changed its input" in message and "W.abs_()" in message
    model = torch.nn.Linear(2, 2)

    def zero_first_weight(m):
        with torch.no_grad():
            m.weight[0, 0] = 0.0
        return 1

    assert "changed its input" in _failure(same_as, zero_first_weight, lambda m: 1, model)


def test_the_reference_runs_before_the_learner_function():
    calls = []
    same_as(lambda: calls.append("mine") or 1, lambda: calls.append("library") or 1, quiet=True)
    assert calls == ["library", "mine"]


def test_no_solution_is_revealed():
    def library_secret(W):
        return (W * 3.0 + 0.125).sum()  # the formula must never reach the learner

    message = _failure(same_as, lambda W: W.sum(), library_secret, torch.ones(2))
    assert "3.0" not in message and "0.125" not in message and "library_secret" not in message
    assert message.splitlines()[1:] == ["  expected: tensor(6.2500)", "  got:      tensor(2.)"]


def test_same_value_checks_a_computed_number(capsys):
    assert same_value(0.25, 0.25, name="the sparsity")
    assert capsys.readouterr().out == "✓ the sparsity is right\n"
    assert _failure(same_value, 0.5, 0.25, name="the sparsity", hint="zeros / total").splitlines() == [
        "✗ the sparsity is not right", "  expected: 0.25", "  got:      0.5", "  hint: zeros / total"]
    assert _failure(same_value, ..., 0.25) == "✗ your answer is not computed yet"
    assert "not right in s[0]" in _failure(same_value, [0.5], [0.25], name="s")


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)  # pytest and nbgrader count it as a failed check
    assert callable(check.show_source)


def _loss_of(model):
    return model(torch.ones(1, 2)).sum()


def test_gradients_left_on_the_callers_model_fail():
    def with_backward(model):
        _loss_of(model).backward()
        return 1

    def with_autograd_grad(model):
        torch.autograd.grad(_loss_of(model), list(model.parameters()))
        return 1

    message = _failure(same_as, with_backward, lambda m: 1, torch.nn.Linear(2, 2))
    assert "left .grad set on the model's parameter 'weight'" in message and "torch.autograd.grad" in message
    assert same_as(with_autograd_grad, lambda m: 1, torch.nn.Linear(2, 2), quiet=True)
    x = torch.ones(2, requires_grad=True)
    assert "left .grad set on argument 't'" in _failure(same_as, lambda t: t.sum().backward() or 1, lambda t: 1, x)


def test_requires_grad_and_train_eval_mode_changes_fail():
    assert "changed requires_grad" in _failure(same_as, lambda t: t.requires_grad_() or 1, lambda t: 1, torch.ones(2))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    message = _failure(same_as, lambda m: m.eval() and 1, lambda m: 1, model.train())
    assert "left the model in eval mode (it was in train mode)" in message
    bn = torch.nn.BatchNorm1d(2).train()
    message = _failure(same_as, lambda m: m(torch.randn(4, 2)) is None or 1, lambda m: 1, bn)
    assert "changed the model's buffer 'running_mean'" in message


def test_an_exception_inside_the_learners_function_names_its_line():
    def wrong_axis(W):
        return W[:, 5]

    message = _failure(same_on, wrong_axis, lambda W: W[5], [(torch.ones(6, 2),)], hint="rows, not columns")
    assert message.startswith("✗ wrong_axis raised IndexError (case 1 of 1) at line")
    assert "`return W[:, 5]`" in message and "hint: rows, not columns" in message


def test_dtype_strict_names_the_dtypes():
    found = difference(torch.ones(2), torch.ones(2, dtype=torch.float64), dtype_strict=True)
    assert found[0] == "result: dtype torch.float64, expected torch.float32"
    assert difference(torch.ones(2), torch.ones(2, dtype=torch.float64)) is None  # not strict by default


def test_a_diagnosis_replaces_the_hint_and_a_failing_diagnosis_says_nothing():
    criterion = check._Criterion(hint="generic", diagnoses=(lambda case, e, g: 1 / 0,
                                                            lambda case, e, g: "doubled" if g == 2 * e else None))
    with pytest.raises(CheckFailed, match="hint: doubled"):
        check._check_call(lambda x: 2 * x, lambda x: x, (3.0,), {}, criterion)
    with pytest.raises(CheckFailed, match="hint: generic"):
        check._check_call(lambda x: x + 1, lambda x: x, (3.0,), {}, criterion)
