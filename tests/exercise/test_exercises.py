"""Every exercise, three ways: the untouched scaffold, the reference dropped in, a subtle bug."""

from __future__ import annotations

import re

import pytest

from mlgrind.exercise.catalog import exercises, get
from mlgrind.exercise.scaffold import module_source
from tests.exercise.grading import assert_fails_exactly, graded
from tests.exercise.implementations import CAUSES, REFERENCE, WRONG

NAMES = [e.name for e in exercises()]


def test_the_exercises_follow_the_seed_and_each_has_a_reference_and_a_bug():
    assert NAMES == [
        "einsum_drills",
        "mlp",
        "mlp_batched",
        "row_parallel",
        "column_parallel",
        "data_parallel",
        "attention",
        "gqa",
        "rope",
        "mla",
        "kv_cache",
        "speculative",
        "megatron_mlp",
        "zero",
        "pipeline",
        "checkpointing",
        "moe_ep",
        "ring_attention",
    ]
    assert set(REFERENCE) == set(WRONG) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_untouched_scaffold_fails_every_check_naming_the_function_to_write(tmp_path, name):
    results = graded(tmp_path, name, module_source(get(name)))
    assert results and not any(r.passed for r in results.values())
    for r in results.values():
        match = re.fullmatch(
            rf"(\w+)\(\) is not implemented yet \({name}\.py line (\d+)\): "
            rf"replace its `raise NotImplementedError` with your code",
            r.message,
        )
        assert match, r.message
        function, line = match.group(1), int(match.group(2))
        # the line named is the `raise` inside that very function of the written file
        lines = module_source(get(name)).splitlines()
        assert lines[line - 1].strip() == "raise NotImplementedError"
        assert any(f"def {function}(" in text for text in lines[:line])


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_dropped_in_passes_every_check(tmp_path, name):
    results = graded(tmp_path, name, REFERENCE[name])
    assert {c: r.message for c, r in results.items() if not r.passed} == {}
    assert len(results) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_a_subtle_bug_fails_exactly_its_checks_with_a_message_that_points_at_it(tmp_path, name):
    wrong = WRONG[name]
    results = graded(tmp_path, name, wrong.source)
    assert_fails_exactly(results, wrong.failing)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the NaN slips
@pytest.mark.parametrize("case", CAUSES)
def test_a_known_slip_fails_naming_its_cause_and_its_fix_passes(tmp_path, case):
    name, wrong = CAUSES[case]
    results = graded(tmp_path, name, wrong.source)
    failed = {c: r.message for c, r in results.items() if not r.passed}
    assert set(failed) == set(wrong.failing), failed
    for check, words in wrong.failing.items():
        for word in words:
            assert word in failed[check], (check, failed[check])


@pytest.mark.parametrize("name", NAMES)
def test_hints_tied_to_checks_name_real_checks_and_hints(name):
    e = get(name)
    assert set(e.hint_for) <= {c.name for c in e.checks}
    assert all(0 <= i < len(e.hints) for i in e.hint_for.values())
