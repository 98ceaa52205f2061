"""The number lint: a typed number in a fact-bearing field is an error at its line and column,
unless a rule says it is not a fact (computed, given, a name, a citation year, maths scripts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run
from mlgrind.pipeline.numbers import locate, unbound

SHEET = "onepagers/01-suffixes-einsum.yaml"
CARDS = "cards/90-numpy-shapes.yaml"


def numbers(text: str, tex: bool = False) -> list[str]:
    return [number for _, number in unbound(text, tex=tex)]


@pytest.mark.parametrize("text, found", [
    ("a 70B model has 80 layers", ["70", "80"]),
    ("uses 90% of memory", ["90"]),
    ("shape (32, 150528)", ["32", "150528"]),
    ("about 0.5 s, 2,048 tokens, 3.14", ["0.5", "2,048", "3.14"]),
    ("the 2nd all-reduce", ["2"]),
    ("ZeRO stage 2", ["2"]),  # a stage is a name only as ZeRO-2
    ("B=8", ["8"]),
    ("published 2024", ["2024"]),  # a year outside a citation is a fact like any other
])
def test_typed_numbers_are_found(text: str, found: list[str]) -> None:
    assert numbers(text) == found


@pytest.mark.parametrize("text", [
    "${ calc.size((2, 3)) } elements",
    "${ calc.einsum_flops('x_BLD, w_in_DF -> h_BLF') }",
    "a literal $${HOME}",
    "[4096]{.given} tokens of context, [(3, 4)]{.given}",
    "H100, fp16, bf16, Llama-3-8B, ZeRO-3, GPT-4, x_1, w_in_DF, arXiv:2203.15556, c1",
    "a 2-layer MLP, a 1-D array, the 1F1B schedule",
    "Shazeer (2024); (Vaswani et al., 2017); Hoffmann et al. 2022; (Kwon et al. 2023)",
    "`x.reshape(32, -1)` and `np.zeros((2, 3))`",
    "axis 0, then axis 1; leading 1s",
    r"scaled by \(1/\sqrt{d_k}\), \(x^2\), \(\sum_{i=1}^{n} x_i\)",
    "{{c1::${ calc.size((2, 3)) }}}",
])
def test_what_is_not_a_fact_passes(text: str) -> None:
    assert numbers(text) == []


def test_maths_fields_allow_scripts_and_given_numbers_only() -> None:
    assert numbers(r"x^{2} + y_{12} + \role{given}{4096}", tex=True) == []
    assert numbers(r"\mathrm{FLOPs} = 6 N D", tex=True) == ["6"]


def test_an_expression_with_nested_brackets_and_strings_is_masked_whole() -> None:
    text = "${ calc.shape_after((2, 3), 'transpose', (1, 0)) } then 7"
    assert unbound(text) == [(len(text) - 1, "7")]


def test_a_number_is_located_in_the_file_by_its_occurrence() -> None:
    file = 'a: "x"\nb: "${ calc.size((5,)) } is 5, and 5 again"\n'
    field = "${ calc.size((5,)) } is 5, and 5 again"
    (first, _), (second, _) = unbound(field)
    assert locate(file, 2, 4, field, first, "5") == (2, 29)
    assert locate(file, 2, 4, field, second, "5") == (2, 36)


def line_col(path: Path, needle: str) -> tuple[int, int]:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(needle)


def test_a_typed_answer_on_a_card_fails_at_its_line(project: Path) -> None:
    cards = project / CARDS
    text = cards.read_text()
    computed = "${ calc.broadcast_or_error((5, 4), (5,)) }"
    assert computed in text
    cards.write_text(text.replace(computed, "error: 4 vs 5", 1))
    result = run("check", "--root", project)
    assert result.code == 1
    line, col = line_col(cards, "error: 4 vs 5")
    assert f"{CARDS}:{line}:{col + len('error: ')}: typed number 4" in result.err, result.err
    assert f"{CARDS}:{line}:{col + len('error: 4 vs ')}: typed number 5" in result.err


def test_a_typed_fact_in_a_table_fails_unless_its_column_is_an_input(project: Path) -> None:
    sheet = project / SHEET
    row = "- [\"`a_BLF`, `w_out_FD` → `y_BLD`\""
    text = sheet.read_text()
    assert row in text
    sheet.write_text(text.replace(row, "- [\"`a_BLF` (2048 wide), `w_out_FD` → `y_BLD`\"", 1))
    result = run("check", "--root", project)
    line, col = line_col(sheet, "2048 wide")
    assert result.code == 1 and f"{SHEET}:{line}:{col}: typed number 2048" in result.err, result.err


def test_input_columns_are_shown_in_the_given_style_and_may_hold_numbers(project: Path) -> None:
    from mlgrind.pipeline import compiler

    project_ = compiler.Project.at(project)
    content = compiler.load_content(project_)
    html = "".join(page.html for page in compiler.page_html(
        [e for e in content.sheets if e.sheet.id == "numpy-shapes"],
        compiler.Templates(project_.templates), {"numpy-shapes": 0}, ("a4",)))
    assert re.search(r'<span class="r-given">\(5, 4\)</span>', html)
    assert "given (an input)" in html  # and the legend says what the style means


def test_changing_a_computation_changes_every_cell_and_card_that_shows_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing shown is a copy: patch one computation and every sheet and card that calls it
    shows the new value (that the recall edition hides values is tested on its PDF text)."""
    from mlgrind.pipeline import compiler, compute

    name, sentinel = "kv_bytes_per_token", "patched-value"
    patched = lambda *args, **kwargs: sentinel  # noqa: E731
    monkeypatch.setitem(compute.CALC, name, patched)
    monkeypatch.setitem(compute._MARKED, name, compute._marking(patched))
    root = Path(__file__).resolve().parent.parent
    project = compiler.Project.at(root)
    content = compiler.load_content(project)
    calls = f"calc.{name}("
    showing = [n for n in content.notes
               if any(calls in str(v) for v in _yaml_note(root, n.id).values())]
    assert showing, "the test needs a card that shows the computation"
    for note in showing:
        assert any(sentinel in value for _, value in note.fields), note.id
    sheets = [e for e in content.sheets if calls in e.source.path.read_text()]
    assert sheets, "the test needs a sheet that shows the computation"
    for page in compiler.page_html(sheets, compiler.Templates(project.templates),
                                {e.sheet.id: 0 for e in sheets}, ("a4",)):
        assert page.edition != "key" or sentinel in page.html, page.name


def _yaml_note(root: Path, note_id: str) -> dict:
    import yaml

    for path in (root / "cards").glob("*.yaml"):
        for note in yaml.safe_load(path.read_text())["notes"]:
            if note["id"] == note_id:
                return note
    raise AssertionError(note_id)
