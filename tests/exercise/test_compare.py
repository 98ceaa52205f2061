"""The teaching messages: each names a fact about the learner's array that must be true."""

from __future__ import annotations

import numpy as np
import pytest

from mlgrind.exercise.compare import Mismatch, dims, expect_array, expect_collectives
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


def test_collectives_must_match_in_kind_shape_and_order():
    x_ranks = [np.ones((2, 3)) for _ in range(2)]
    reference, same, other = Comm(2), Comm(2), Comm(2)
    reference.all_reduce(x_ranks, tag="y_BD")
    same.all_reduce(x_ranks, tag="anything")
    expect_collectives("forward", same, reference)
    other.all_gather(x_ranks, axis=1)
    with pytest.raises(Mismatch) as caught:
        expect_collectives("forward", other, reference)
    # a ring all-reduce of 48 bytes over 2 ranks: each sends 2·(S−1)/S·48 = 48
    assert "all_reduce: y_BD (B=2, D=3) on every rank; each rank sends 48 B" in str(caught.value)
    assert "all_gather: (2, 3) on every rank" in str(caught.value)
