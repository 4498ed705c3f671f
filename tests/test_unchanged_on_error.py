"""Bad input is refused by the kit itself, and the model is exactly as it was: a property test over the table of
tests/bad_inputs.py (every public function that takes a model, its arguments, certainly invalid values for each,
and model variants: float16, bfloat16, meta device, eval mode, masked, not a Module).

`tools/bad_input_sweep.py` runs every case once and lists the ones that fail; this test draws 200 of them.
"""

from __future__ import annotations

import bad_inputs as table
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minprune as mp

CASES = table.all_cases()


def raised_by_kit(exc: BaseException) -> bool:
    """The innermost traceback frame of `exc` is a `raise` in a file under minprune/ (not torch or Python)."""
    return table.raised_by_kit(exc)


# ---- the table itself --------------------------------------------------------------------------------------

def test_the_table_covers_the_kit():
    assert len(table.ENTRIES) >= 30
    assert len(CASES) >= 500
    assert all(table.KINDS[kind] for e in table.ENTRIES for kind in e.args.values())
    assert all(v in table.VARIANTS for e in table.ENTRIES for v in e.variants)
    exported = set(mp.__all__)
    assert {e.target.__name__ for e in table.ENTRIES} <= exported


@pytest.mark.parametrize("name", sorted(table.ENTRIES_BY_NAME))
def test_every_valid_call_succeeds(name):
    """The defaults of each entry are valid, so a bad call fails because of the one value it changes."""
    table.valid_call(table.ENTRIES_BY_NAME[name])


# ---- the harness tells kit errors from raw ones, and sees every change --------------------------------------

def test_raised_by_kit_tells_a_kit_refusal_from_a_torch_error():
    with pytest.raises(ValueError) as kit:
        mp.prune(table.mlp(), mp.magnitude_scores(table.mlp()), float("nan"))
    assert raised_by_kit(kit.value)
    with pytest.raises(RuntimeError) as raw:
        torch.nn.Linear(3, 4)(torch.zeros(2, 5))
    assert not raised_by_kit(raw.value)
    with pytest.raises(TypeError) as builtin:
        len(3)
    assert not raised_by_kit(builtin.value)


def test_model_changes_sees_masks_flags_hooks_and_dtypes():
    model = table.mlp()
    before = table.snapshot_model(model)
    assert table.model_changes(before, model) == []
    table.masked(model)
    assert any("weight_orig" in c or "parametrized" in c or "keys" in c for c in table.model_changes(before, model))
    for change in (lambda m: m.eval(), lambda m: m.register_forward_hook(lambda *a: None),
                   lambda m: m.half(), lambda m: m.layers[1].weight.data.mul_(2)):
        model = table.mlp()
        before = table.snapshot_model(model)
        change(model)
        assert table.model_changes(before, model), "a change went unnoticed"


# ---- the property ---------------------------------------------------------------------------------------------

def _explain(outcome: table.Outcome) -> str:
    return f"{outcome.case} -> {outcome.klass}: {outcome.error} {outcome.message[:200]} [{outcome.detail[:300]}]"


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(CASES))
def test_bad_input_is_refused_by_the_kit_and_changes_nothing(case):
    """A certainly invalid value (or an unsupported model variant) raises, from a `raise` in minprune/, as a
    ValueError/TypeError/FileNotFoundError/RuntimeError (or subclass), and the model is exactly as it was:
    state_dict tensors, dtypes and devices, train/eval flags, hooks, parametrizations, attributes, gradients.
    A supported variant may work, but must keep its dtype and flags."""
    outcome = table.run_case(case)
    assert outcome.klass != "silent", "invalid input accepted silently: " + _explain(outcome)
    assert outcome.klass != "raw", "not a clear kit error: " + _explain(outcome)
    assert outcome.klass != "mutated", "the model changed: " + _explain(outcome)
    assert outcome.klass != "refused", "a supported model variant was refused: " + _explain(outcome)
    assert outcome.klass in table.GOOD_CLASSES, _explain(outcome)
