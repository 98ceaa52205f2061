"""moe_ep and ring_attention beyond what test_exercises.py asks of every exercise (the untouched
scaffold, the reference dropped in, one subtle bug): solutions written without mlgrind.ref pass,
with other layouts and other but equally cheap collectives, and the typical slips fail exactly
their checks with words that name the cause."""

from __future__ import annotations

import pytest

from mlgrind.exercise import grade
from tests.exercise.grading import assert_fails_exactly, graded
from tests.exercise.impl_experts import MOE_BUGS, MOE_SOLUTION, RING_BUGS, RING_SOLUTION


@pytest.mark.parametrize(
    ("name", "source"),
    [("moe_ep", MOE_SOLUTION), ("ring_attention", RING_SOLUTION)],
    ids=["moe_ep", "ring_attention"],
)
def test_a_solution_written_without_the_reference_passes(tmp_path, name, source):
    assert "mlgrind" not in source
    results = graded(tmp_path, name, source)
    assert {c: r.message for c, r in results.items() if not r.passed} == {}
    assert len(results) == len(grade.checks(name))


BUGS = [("moe_ep", slip, *bug) for slip, bug in MOE_BUGS.items()] + [
    ("ring_attention", slip, *bug) for slip, bug in RING_BUGS.items()
]


@pytest.mark.parametrize(("name", "slip", "source", "failing"), BUGS, ids=[b[1] for b in BUGS])
def test_a_typical_slip_fails_exactly_its_checks_naming_the_cause(
    tmp_path, name, slip, source, failing
):
    results = graded(tmp_path, name, source)
    assert_fails_exactly(results, failing)


def test_moe_collectives_count_float_data_only_and_bytes_per_rank(tmp_path):
    """Expert ids sent as floats are data: a third float all-to-all, named as such."""
    source = MOE_SOLUTION.replace(
        "ids = comm.all_to_all([[e for _, e in p] for p in pairs])",
        "ids = comm.all_to_all([[e.astype(float) for _, e in p] for p in pairs])\n"
        "    ids = [[i.astype(int) for i in got] for got in ids]",
    )
    assert source != MOE_SOLUTION
    results = graded(tmp_path, "moe_ep", source)
    assert {c for c, r in results.items() if not r.passed} == {"forward: collectives"}
    message = results["forward: collectives"].message
    assert "the reference makes 2:" in message and "you made 3:" in message
    assert "send counts or expert ids as integers" in message


def test_ring_k_and_v_in_separate_calls_and_leftwards_pass_like_stacked_rightwards(tmp_path):
    """The scaffold allows both: the bytes per rank are what is compared."""
    source = RING_SOLUTION.replace(
        "            kv_held = comm.send_recv(kv_held)\n",
        "            k_held = comm.send_recv([kv[0] for kv in kv_held], shift=-1)\n"
        "            v_held = comm.send_recv([kv[1] for kv in kv_held], shift=-1)\n"
        "            kv_held = [np.stack(pair) for pair in zip(k_held, v_held)]\n",
    ).replace("src = (s - step) % S", "src = (s + step) % S")
    assert source.count("shift=-1") == 2 and "(s + step)" in source
    results = graded(tmp_path, "ring_attention", source)
    assert all(r.passed for r in results.values()), results
