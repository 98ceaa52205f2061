"""Computed values: right against independent sources, and YAML cannot run code through them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run
from mlgrind.compute import ExpressionError, expand
from mlgrind.facts import CALC, TABLES
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
