"""The teaching messages: each names a fact about the learner's array that must be true."""

from __future__ import annotations

import numpy as np
import pytest

from mlgrind.exercise.compare import (
    Mismatch,
    dims,
    expect_array,
    expect_collectives,
    expect_ranks,
)
from mlgrind.ref.collectives import Comm


def message(got, expected, name="y_BLD"):
    with pytest.raises(Mismatch) as caught:
        expect_array(name, got, expected)
    return str(caught.value)


def test_shapes_are_read_off_the_suffix():
    assert dims("d_w_out_FD_ranks[2]", (3, 4)) == "(F=3, D=4)"
    assert dims("scores_BHLM (S=2 ranks)", (1, 2, 3, 4)) == "(B=1, H=2, L=3, M=4)"
    assert dims("saved", (3, 4)) == "(3, 4)"


def test_the_first_mismatch_is_located_with_both_values():
    expected = np.zeros((2, 3, 4))
    got = expected.copy()
    got[1, 2, 3] = 0.5
    text = message(got, expected)
    assert "1 of 24 entries differ; the first at [b=1, l=2, d=3]: expected 0, got 0.5" in text
    assert "wrong only where b ∈ {1}; right for b ∈ {0}" in text
    assert "wrong only where l ∈ {2}; right for l ∈ {0, 1}" in text


def test_a_letter_summed_away_is_named():
    expected = np.random.default_rng(0).standard_normal((2, 3, 4))
    text = message(expected.sum(axis=1), expected)
    assert "expected shape (B=2, L=3, D=4), got (2, 4)" in text
    assert "summed over 'l'" in text


def test_constant_factors_are_named_exactly():
    expected = np.random.default_rng(1).standard_normal((2, 3, 4))
    assert "× √(1/3)" in message(expected / np.sqrt(3), expected)
    assert "minus the expected one" in message(-expected, expected)
    assert "off by the same amount, +1" in message(expected + 1, expected)


def test_nan_is_reported_where_it_first_appears():
    expected = np.ones((2, 3, 4))
    got = expected.copy()
    got[0, 1, 2] = np.nan
    assert "y_BLD holds nan or inf, first at [b=0, l=1, d=2]" in message(got, expected)


def test_a_missing_return_is_named():
    assert "got None (a missing `return`?)" in message(None, np.ones(3), "y_D")


def collectives_message(comm, reference, **options):
    with pytest.raises(Mismatch) as caught:
        expect_collectives("forward", comm, reference, **options)
    return str(caught.value)


def test_any_sequence_of_collectives_that_sends_the_reference_bytes_passes():
    x_ranks = [np.ones((5, 4)) for _ in range(3)]  # 160 B per rank, 5 rows over 3 ranks: uneven
    reference, same, split = Comm(3), Comm(3), Comm(3)
    reference.all_reduce(x_ranks, tag="y_BD")
    same.all_reduce(x_ranks, tag="anything")
    expect_collectives("forward", same, reference)
    # a ring all-reduce is a reduce-scatter then an all-gather: the same bytes in total
    split.all_gather(split.reduce_scatter(x_ranks, axis=0), axis=0)
    expect_collectives("forward", split, reference)


def test_more_bytes_than_the_reference_fail_naming_both_per_rank():
    x_ranks = [np.ones((5, 4)) for _ in range(3)]
    reference, gathered = Comm(3), Comm(3)
    reference.all_reduce(x_ranks, tag="y_BD")
    gathered.all_gather(x_ranks, axis=0)
    text = collectives_message(gathered, reference)
    # ring all-gather: each rank passes on the S − 1 = 2 blocks of 160 B it does not own;
    # ring all-reduce: 2·(S − 1) chunk hops of 160/S B each, 640 B over the 3 ranks
    assert f"you send {2 * 160} B per rank, the reference sends {640 / 3:.1f} B per rank" in text
    assert "on average" in text  # uneven chunks: the ranks send different amounts
    assert "yours sends more" in text
    assert "all_reduce: y_BD (B=5, D=4) on every rank" in text
    assert "all_gather: (5, 4) on every rank" in text


def test_fewer_bytes_or_none_mean_a_combination_outside_comm():
    x_ranks = [np.ones((2, 3)) for _ in range(2)]
    reference, half, none = Comm(2), Comm(2), Comm(2)
    reference.all_reduce(x_ranks)
    half.all_reduce([x[:1] for x in x_ranks])  # the other row added up in Python
    text = collectives_message(half, reference)
    assert "you send 24 B per rank, the reference sends 48 B per rank" in text
    assert "combined outside comm" in text
    assert "you made no collective call" in collectives_message(none, reference)
    expect_collectives("forward", half, reference, fewer_ok=True)
    assert "you made no collective call" in collectives_message(none, reference, fewer_ok=True)


def test_the_same_calls_in_another_dtype_name_the_dtype():
    x_ranks = [np.ones((2, 3)) for _ in range(2)]
    reference, narrow = Comm(2), Comm(2)
    reference.all_reduce(x_ranks)
    narrow.all_reduce([x.astype(np.float32) for x in x_ranks])
    text = collectives_message(narrow, reference)
    assert "your arrays are float32, the reference's float64" in text
    assert "keep the inputs' dtype" in text


def test_a_per_rank_list_where_one_array_is_expected_says_take_one_rank():
    y_BD = np.arange(6.0).reshape(2, 3)
    text = message([y_BD, y_BD.copy()], y_BD, "y_BD")
    assert "returned a list of 2 arrays (one per rank) where one array of shape (B=2, D=3)" in text
    assert "take any rank's, e.g. [0]" in text
    partial = message([y_BD, 2 * y_BD], y_BD, "y_BD")
    assert "the ranks' arrays differ" in partial


def test_one_array_where_a_per_rank_list_is_expected_says_how_to_cut_it():
    y_BD = np.arange(10.0).reshape(5, 2)
    blocks = np.array_split(y_BD, 3, axis=0)
    with pytest.raises(Mismatch) as caught:
        expect_ranks("y_BD_ranks", y_BD, blocks)
    text = str(caught.value)
    assert "returned one array of shape (5, 2) where a list of 3 arrays (one per rank)" in text
    assert "joined along axis 0" in text and "np.array_split(…, 3, axis=0)" in text


def test_a_scaffold_may_require_the_reference_sequence_exactly():
    x_ranks = [np.ones((4, 2)) for _ in range(2)]
    reference, split = Comm(2), Comm(2)
    reference.all_reduce(x_ranks, tag="y_BD")
    split.all_gather(split.reduce_scatter(x_ranks), axis=0)
    expect_collectives("forward", split, reference)  # the same bytes: fine by default
    text = collectives_message(split, reference, same_sequence=True)
    assert "asks for the reference's sequence of collectives" in text
    assert "reduce_scatter: (4, 2) on every rank" in text
