"""Computed values: right against independent sources, and YAML cannot run code through them."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from conftest import run
from mlgrind.pipeline.compute import ExpressionError, Values, call, expand
from mlgrind.facts import CALC, TABLES
from mlgrind.ref import einsum as ref_einsum
from mlgrind.ref.einsum import count_flops, einsum


# The seed's appendix, as published there (not our output): matmul shapes and examples.
SEED_MATMUL = [
    ("... M K", "... K N", "... M N"),
    ("K", "K", "scalar"),
    ("M K", "K", "M"),
    ("K", "K N", "N"),
    ("... M K", "K", "... M"),
    ("K", "... K N", "... N"),
]


@pytest.mark.parametrize("a,b,result", SEED_MATMUL)
def test_matmul_shapes_match_the_seed_table(a: str, b: str, result: str) -> None:
    assert expand(f"${{ calc.matmul('{a}', '{b}') }}") == result


def test_seed_examples() -> None:
    assert expand("${ calc.broadcast((9, 1, 3), (4, 1)) }") == "(9, 4, 3)"
    assert expand("${ calc.right_aligned((4, 1), (9, 1, 3)) }") == "1 × 4 × 1"
    assert expand("${ calc.reshape((3, 4, 5), -1) }") == "(60,)"
    assert expand("${ calc.reshape((32, 3, 224, 224), (32, -1)) }") == "(32, 150528)"


def test_broadcast_errors_name_the_clashing_sizes() -> None:
    assert expand("${ calc.broadcast_or_error((5, 4), (5,)) }") == "error: 4 vs 5"
    assert expand("${ calc.broadcast_or_error((5, 4), (5, 1)) }") == "(5, 4)"


@pytest.mark.parametrize("names", [
    "x_BLD, w_in_DF -> h_BLF",
    "q_BLHK, k_BMHK -> scores_BHLM",
    "probs_BHLM, v_BMHK -> out_BLHK",
    "out_BLHK, w_o_HKD -> y_BLD",
])
def test_einsum_flop_formula_equals_the_count_from_running_it(names: str) -> None:
    rng = np.random.default_rng(1)
    spec = expand(f"${{ calc.einsum_spec('{names}') }}")
    formula = expand(f"${{ calc.einsum_flops('{names}') }}")
    letters = formula.removeprefix("2·").split("·")
    for _ in range(3):
        sizes = {c: int(rng.integers(1, 6)) for c in letters}
        inputs = spec.split("->")[0].split(",")
        arrays = [np.ones([sizes[c.upper()] for c in term]) for term in inputs]
        with count_flops() as counter:
            einsum(spec, *arrays)
        assert counter.total == 2 * np.prod([sizes[c] for c in letters])


def test_einsum_spec_is_read_off_the_names() -> None:
    # Shazeer's own example spells the query projection 'BLD,DHK->BLHK'.
    assert expand("${ calc.einsum_spec('x_BLD, w_q_DHK -> q_BLHK') }") == "bld,dhk->blhk"
    assert expand("${ calc.einsum_contracted('q_BLHK, k_BMHK -> scores_BHLM') }") == "[K]{.contract}"


def test_every_registered_table_builds() -> None:
    for name, table in TABLES.items():
        rows = table()
        assert rows and all(isinstance(c, str) for row in rows for c in row), name


@pytest.mark.parametrize("text", [
    "${ 6 * 7 }",
    "${ calc }",
    "${ calc.letter }",
    "${ calc.letter.__globals__ }",
    "${ calc['letter']('B') }",
    "${ lipsum.__globals__ }",
    "${ calc.letter(calc.letter('B')) }",
    "${ calc.letter('B') | upper }",
    "${% for x in [1] %}x${% endfor %}",
    "${ calc.size(*[(1, 2)]) }",
])
def test_expressions_can_only_call_registered_functions_with_literals(text: str) -> None:
    with pytest.raises(ExpressionError):
        expand(text)


def test_anki_cloze_and_braces_stay_literal() -> None:
    text = "{{c1::answer}} {% raw %} {# x #} \\frac{a}{b}"
    assert expand(text) == text
    assert expand("x ${ calc.size((2, 3)) } {{c1::y}}") == "x 6 {{c1::y}}"


def test_dollar_dollar_brace_is_a_literal_dollar_brace() -> None:
    assert expand("echo $${HOME}") == "echo ${HOME}"
    assert expand("$${ calc.size((2, 3)) } is ${ calc.size((2, 3)) }") == "${ calc.size((2, 3)) } is 6"
    assert expand("cost: $$${ x }") == "cost: $${ x }"  # `$` then the literal


@pytest.mark.parametrize("text", [
    "${ calc.size(('a', 3)) }",
    "${ calc.size((-1,)) }",
    "${ calc.size((1e3,)) }",
    "${ calc.size((True, 2)) }",
    "${ calc.size(((1,),)) }",
    "${ calc.broadcast((9, 1, 3), (4, -1)) }",
    "${ calc.broadcast_or_error((5, 4), (5.0,)) }",
    "${ calc.right_aligned((4, 1), ('9', 1, 3)) }",
    "${ calc.reshape((3, 4.0), -1) }",
    "${ calc.shape_after((10, -20), 'sum', 0) }",
])
def test_shapes_must_be_tuples_of_non_negative_integers(text: str) -> None:
    with pytest.raises(ExpressionError, match="ValueError: a shape is a tuple of non-negative"):
        expand(text)


@pytest.mark.parametrize("text, message", [
    ("${ calc.reshape((32, 3, 224, 224, 224), -1) }", "at most 16,777,216"),
    ("${ calc.shape_after((1000, 1000), 'stack', 1000) }", "at most 16,777,216"),
    ("${ calc.shape_after((10,), 'stack', True) }", "positive integer"),
    ("${ calc.reshape((10,), 2.5) }", "a new shape is an integer"),
    ("${ calc.matmul('M M M M M', 'K') }", "one to three of M, K, N"),
    ("${ calc.matmul('M X', 'K') }", "one to three of M, K, N"),
    ("${ calc.letter('Z') }", "unknown suffix letter 'Z'"),
    ("${ calc.einsum_spec('x_BL, w_DF -> y_BLK') }", "did not appear in the input"),
    ("${ calc.einsum_spec('x_BBBBBBBBB, w_B -> y_B') }", "at most 8"),
])
def test_arguments_are_refused_with_a_reason_before_any_array_is_built(text: str, message: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ExpressionError, match=message):
            expand(text)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


def test_checking_a_wide_einsum_allocates_nothing_and_drops_no_letter() -> None:
    # All 13 suffix letters: by letter sizes 2, 3, …, 14 the inputs alone would take 140 MB, and
    # the old check built them; the old FLOP check also had primes for only 9 letters.
    names = "a_BLMDVF, b_HKGCRES -> c_BLMDVFHK"
    tracemalloc.start()
    try:
        formula = expand(f"${{ calc.einsum_flops('{names}') }}")
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    letters = formula.removeprefix("2·").split("·")
    assert sorted(letters) == sorted("BLMDVFHKGCRES")
    # The count from running it, every letter of size 2: a dropped letter would halve it.
    spec = expand(f"${{ calc.einsum_spec('{names}') }}")
    arrays = [np.ones([2] * len(term)) for term in spec.split("->")[0].split(",")]
    with count_flops() as counter:
        einsum(spec, *arrays)
    assert counter.total == 2 * 2 ** len(letters)


def test_flop_formula_is_checked_without_assert(monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -O` strips asserts: the check against the counter must be a real one.
    monkeypatch.setattr(ref_einsum, "flops", lambda spec, sizes: 0)
    with pytest.raises(ExpressionError, match="ValueError: the FLOP counter disagrees"):
        expand("${ calc.einsum_flops('x_BLD, w_in_DF -> h_BLF') }")


@pytest.mark.parametrize("text, message", [
    ("${ calc.size(" + "(" * 100 + "1," + ")" * 100 + ") }", "nests brackets more than 8 deep"),
    ("${ calc.size([" + "[" * 20 + "]" * 20 + "]) }", "nests brackets more than 8 deep"),
    ("${ calc.size(" + "-" * 3000 + "1) }", "nests too deeply"),
])
def test_deep_expressions_are_refused_not_recursed_into(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        expand(text)


@pytest.mark.parametrize("text, message", [
    ("size(" + "(" * 100 + "1," + ")" * 100 + ")", "the table nests brackets more than 8 deep"),
    ("size((" + "9" * 19 + ",))", "the table has an integer literal 99999999… of 19 digits"),
    ("size((0x" + "F" * 17 + ",))", "at most 18 are allowed"),
])
def test_a_call_outside_dollar_braces_is_checked_token_by_token_too(text: str, message: str) -> None:
    # `rows_from:` and `figure:` are read as the inside of a `${ }`: the raw text is not.
    with pytest.raises(ExpressionError, match=message):
        call(text, CALC, "table")


def test_integer_literals_of_up_to_18_digits_are_read() -> None:
    assert expand("${ calc.size((999_999_999_999_999_999,)) }") == "999,999,999,999,999,999"
    with pytest.raises(ExpressionError, match="of 19 digits; at most 18 are allowed"):
        expand("${ calc.size((1_000_000_000_000_000_000,)) }")


def test_registry_holds_only_plain_functions() -> None:
    assert all(callable(fn) and not name.startswith("_") for name, fn in CALC.items())


def test_schema_command_prints_a_schema_that_accepts_the_bundled_sources() -> None:
    import jsonschema
    import yaml
    from pathlib import Path

    result = run("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    validator = jsonschema.Draft202012Validator(schema)
    root = Path(__file__).parent.parent
    sources = [*root.glob("onepagers/*.yaml"), *root.glob("cards/*.yaml")]
    assert sources
    for path in sources:
        validator.validate(yaml.safe_load(path.read_text()))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"id": "x", "title": "t", "position": 1, "seed": "s", "panels": [],
                            "colour": "red"})


def test_remembered_values_are_used_only_under_the_code_that_computed_them(tmp_path) -> None:
    text, rows = "${ calc.broadcast((9, 1, 3), (4, 1)) }", "suffix_letters"
    path = tmp_path / "values.json"
    fresh = Values.load(None)
    assert fresh.expand(text) == expand(text) and fresh.rows(rows) == call(rows, TABLES, "table")
    path.write_bytes(fresh.dumps())
    assert set(Values.load(path).known) == {f"plain {text}", f"rows {rows}"}
    stored = json.loads(path.read_text())
    # What the cache says is what a build prints: it is the cache's job to be right ...
    stored["values"] = {f"plain {text}": "remembered", f"rows {rows}": [["a", "b"]]}
    path.write_text(json.dumps(stored))
    assert Values.load(path).expand(text) == "remembered"
    assert Values.load(path).rows(rows) == [["a", "b"]]
    # ... so after any change to the code, or in a value's type, nothing of it is trusted.
    path.write_text(json.dumps(stored | {"code": "0" * 64}))
    assert Values.load(path).expand(text) == expand(text)
    stored["values"] = {f"plain {text}": ["remembered"], f"rows {rows}": [["a", 1]]}
    path.write_text(json.dumps(stored))
    assert Values.load(path).expand(text) == expand(text)
    assert Values.load(path).rows(rows) == call(rows, TABLES, "table")
