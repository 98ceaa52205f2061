"""Bad input: every mistake names file:line:col and what was expected, exits 1, no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run

SHEET = "onepagers/01-suffixes-einsum.yaml"
CARDS = "cards/01-suffixes-einsum.yaml"


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(project: Path) -> None:
        file = project / path
        text = file.read_text()
        assert old in text, f"test setup: {old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))
    return apply


def write(path: str, text: str) -> Callable[[Path], None]:
    return lambda project: (project / path).write_text(text)


def line_of(path: str, needle: str) -> int:
    """The 1-based line of `needle` in the bundled file, so the expected line is not hard-coded."""
    lines = (Path(__file__).parent.parent / path).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))

CASES = {
    "malformed YAML": (
        write("cards/broken.yaml", "sheet: suffixes-einsum\nnotes: [\n  - id: x\n"),
        r"cards/broken\.yaml:\d+:\d+: invalid YAML"),
    "unknown key": (
        edit(SHEET, "title: Shape suffixes & einsum", "titel: Shape suffixes & einsum"),
        rf"{SHEET}:{line_of(SHEET, 'title: Shape suffixes')}:1: unknown key 'titel'; did you mean 'title'\?"),
    "wrong type": (
        edit(SHEET, "position: 1", "position: first"),
        rf"{SHEET}:{line_of(SHEET, 'position: 1')}:11: 'position': input should be a valid integer"),
    "missing id": (
        edit(CARDS, "  - id: naming-rule\n    type: cloze", "  - type: cloze"),
        rf"{CARDS}:{line_of(CARDS, 'id: naming-rule')}:\d+: missing required key 'id'"),
    "duplicate id across files": (
        edit("cards/90-numpy-shapes.yaml", "id: broadcast-rules", "id: naming-rule"),
        rf"cards/90-numpy-shapes\.yaml:\d+:\d+: duplicate note id 'naming-rule' \(first used at {CARDS}:\d+\)"),
    "unknown colour role": (
        edit(SHEET, "role: dim-batch", "role: blue"),
        rf"{SHEET}:{line_of(SHEET, 'role: dim-batch')}:11: 'role': input should be 'dim-batch'"),
    "unknown role in a span": (
        edit(SHEET, "[summed over]{.contract}", "[summed over]{.red}"),
        rf"{SHEET}:\d+:\d+: a span takes exactly one role"),
    "unknown computed value": (
        edit(CARDS, "calc.letter('B')", "calc.lettre('B')"),
        rf"{CARDS}:{line_of(CARDS, 'calc.letter(' + chr(39) + 'B')}:11: unknown computed value calc.lettre"),
    "code in an expression": (
        edit(CARDS, "${ calc.letter('B') }", "${ calc.letter.__globals__ }"),
        rf"{CARDS}:\d+:11: .*calc.<name>"),
    "computation rejects its arguments": (
        edit("onepagers/90-numpy-shapes.yaml", "calc.broadcast((9, 1, 3), (4, 1))", "calc.broadcast((9, 2, 3), (4, 1))"),
        r"onepagers/90-numpy-shapes\.yaml:\d+:\d+: computation failed: ValueError"),
    "python tag": (
        write("cards/evil.yaml", "sheet: !!python/object/apply:os.system ['touch /tmp/mlgrind-pwned']\n"),
        r"cards/evil\.yaml:1:8: invalid YAML: could not determine a constructor"),
    "billion laughs": (
        write("cards/bomb.yaml", BOMB),
        r"cards/bomb\.yaml:2:\d+: invalid YAML: aliases \(\*a\) are not allowed"),
    "duplicate key": (
        edit(SHEET, "position: 1\n", "position: 1\nposition: 2\n"),
        rf"{SHEET}:{line_of(SHEET, 'position: 1') + 1}:1: duplicate key 'position'"),
    "card set names no sheet": (
        edit(CARDS, "sheet: suffixes-einsum", "sheet: suffix-einsum"),
        rf"{CARDS}:\d+:8: no one-pager has id 'suffix-einsum'"),
    "back link to a missing panel": (
        edit(CARDS, "panel: The naming rule", "panel: Naming rules"),
        rf"{CARDS}:\d+:12: sheet 'suffixes-einsum' has no panel titled 'Naming rules'"),
    "table without rows": (
        edit(SHEET, "rows_from: suffix_letters", "rows_from: suffix_letter"),
        rf"{SHEET}:\d+:\d+: unknown table 'suffix_letter'"),
    "unknown letter in maths": (
        edit(SHEET, "\\role{contract}{D}", "\\dim{DX}"),
        rf"{SHEET}:\d+:\d+: \\dim{{DX}}: not notation letters"),
    "unknown role in maths": (
        edit(SHEET, "\\role{contract}{D}", "\\role{red}{D}"),
        rf"{SHEET}:\d+:\d+: \\role{{red}}: unknown role"),
    "unknown block kind": (
        edit(SHEET, "      - note: \"The letters", "      - nota: \"The letters"),
        rf"{SHEET}:\d+:\d+: a block needs one of the keys: table, formula, code, list, note"),
    "nesting deeper than Python recurses": (
        write("cards/deep.yaml", "sheet: suffixes-einsum\nnotes: " + "[" * 400 + "]" * 400 + "\n"),
        r"cards/deep\.yaml:2:\d+: invalid YAML: nested more than 32 levels deep"),
    "brackets nested deeper than the parser recurses": (
        edit(CARDS, "calc.letter('B')", "calc.size(" + "(" * 100 + "1," + ")" * 100 + ")"),
        (rf"{CARDS}:{line_of(CARDS, 'calc.letter(' + chr(39) + 'B')}:11: "
         r"a \$\{ \} nests brackets more than 8 deep")),
    "a run of minus signs": (
        edit(CARDS, "calc.letter('B')", "calc.size(" + "-" * 3000 + "1)"),
        rf"{CARDS}:{line_of(CARDS, 'calc.letter(' + chr(39) + 'B')}:11: a \$\{{ \}} nests too deeply"),
    "a shape that is not one": (
        edit(CARDS, "calc.letter('B')", "calc.size(('a', 3))"),
        (rf"{CARDS}:{line_of(CARDS, 'calc.letter(' + chr(39) + 'B')}:11: computation failed: "
         r"ValueError: a shape is a tuple of non-negative integers")),
    # Anki separates fields with U+001F: one in a text would make the whole deck unimportable.
    "a control character in a card, pointed at": (
        edit(CARDS, "front: \"Suffix letter `B`\"", "front: \"Suffix \\x1f letter `B`\""),
        rf"{CARDS}:{line_of(CARDS, 'front: ' + chr(34) + 'Suffix letter `B`')}:20: control "
        r"character U\+001F in text"),
    "a control character in a sheet title": (
        edit(SHEET, "title: Shape suffixes & einsum", "title: \"Shape \\u0007suffixes\""),
        rf"{SHEET}:{line_of(SHEET, 'title: Shape suffixes')}:15: control character U\+0007"),
    "a control byte typed raw into a card": (
        edit(CARDS, "front: \"Suffix letter `B`\"", "front: \"Suffix \x1f letter `B`\""),
        rf"{CARDS}:{line_of(CARDS, 'front: ' + chr(34) + 'Suffix letter `B`')}:20: control "
        r"character U\+001F typed into the file"),
    "a NUL byte typed raw into a sheet": (
        edit(SHEET, "title: Shape suffixes & einsum", "title: Shape \x00suffixes"),
        rf"{SHEET}:{line_of(SHEET, 'title: Shape suffixes')}:14: control character U\+0000"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_reported_with_its_location(project: Path, case: str) -> None:
    mutate, expected = CASES[case]
    mutate(project)
    start = time.perf_counter()
    result = run("check", "--root", project)
    assert result.code == 1, result.err
    assert re.search(expected, result.err), result.err
    assert "Traceback" not in result.err + result.out
    assert time.perf_counter() - start < 10  # the alias bomb fails at once, without expanding
    assert not Path("/tmp/mlgrind-pwned").exists()


def test_all_problems_of_a_run_are_reported_together(project: Path) -> None:
    for case in ("unknown key", "unknown computed value", "python tag"):
        CASES[case][0](project)
    result = run("check", "--root", project)
    assert result.code == 1
    for case in ("unknown key", "unknown computed value", "python tag"):
        assert re.search(CASES[case][1], result.err), (case, result.err)
    assert "3 problems" in result.err


def test_overflowing_sheet_names_sheet_and_paper(small_project: Path) -> None:
    sheet = small_project / SHEET
    text = sheet.read_text()
    block = "      - note: \"The letters are defined once (left); code, sheets and cards all read that one table.\"\n"
    sheet.write_text(text.replace(block, block * 60))
    result = run("check", "--root", small_project)
    assert result.code == 1
    # At the panel that grew, the second one, not at the sheet's id.
    at = f"{SHEET}:{line_of(SHEET, 'title: The naming rule')}:12"
    assert re.search(rf"{at}: sheet 'suffixes-einsum' overflows on a4: \d+ pages, must be 1.*"
                     r"the longest is panel 2, this one \(\d+ mm", result.err), result.err
    assert f"{at}: sheet 'suffixes-einsum' overflows on letter" in result.err


def test_a_panel_of_many_list_items_is_an_overflow_at_that_panel(small_project: Path) -> None:
    items = '          - "an item long enough to wrap once in a narrow column of the sheet"\n' * 40
    edit(SHEET, "  - id: einsum-in-four-rules\n",
         f"  - title: Many items\n    blocks:\n      - list:\n{items}  - id: einsum-in-four-rules\n")(small_project)
    result = run("check", "--root", small_project)
    assert result.code == 1 and "Traceback" not in result.err, result.err
    line = (small_project / SHEET).read_text().splitlines().index("  - title: Many items") + 1
    assert re.search(rf"{SHEET}:{line}:12: sheet 'suffixes-einsum' overflows on a4: .*"
                     r"the longest is panel 3, this one", result.err), result.err


def test_a_crash_inside_weasyprint_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlgrind.pipeline import pdf

    def crash(self: object) -> None:
        raise AssertionError  # what WeasyPrint's `assert not page_is_empty` raises
    monkeypatch.setattr(pdf.weasyprint.HTML, "render", crash)
    rendered = pdf.render_job("<p>x</p>", str(Path(__file__).parent.parent / "templates"), 0)
    assert rendered.data == b"" and rendered.error.startswith(
        "could not be laid out (WeasyPrint failed with AssertionError)"), rendered.error


def test_template_with_undefined_variable_names_template_line(project: Path) -> None:
    template = project / "templates/sheet.html.j2"
    lines = template.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "<head>" in line) + 1  # inside the page, not a comment
    lines.insert(at, "<meta name=x content=\"{{ sheet.subtitle }}\">\n")
    template.write_text("".join(lines))
    result = run("check", "--root", project)
    assert result.code == 1
    assert re.search(rf"templates/sheet\.html\.j2:{at + 1}:1: template error: .*subtitle",
                     result.err), result.err


def test_asset_outside_the_project_is_refused(project: Path) -> None:
    (project / "secret.png").write_bytes(b"not for the sheet")
    template = project / "templates/sheet.html.j2"
    template.write_text(template.read_text().replace(
        "<main", '<img src="../secret.png"><main', 1))
    result = run("check", "--root", project)
    assert result.code == 1
    assert re.search(r"refused to fetch 'file://.*/secret\.png'", result.err), result.err


def test_usage_errors_exit_2(project: Path) -> None:
    assert run("build", "--paper", "a5", "--root", project).code == 2
    result = run("build", "--only", "nope", "--root", project)
    assert result.code == 2 and "01-suffixes-einsum" in result.err
    assert run("check", "--root", project / "cards").code == 2


def test_no_traceback_from_the_real_command(project: Path) -> None:
    CASES["python tag"][0](project)
    proc = subprocess.run([sys.executable, "-m", "mlgrind", "check", "--root", str(project)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "cards/evil.yaml:1:8" in proc.stderr and "Traceback" not in proc.stderr


def test_a_panel_wider_than_its_column_is_an_error_at_that_panel(small_project: Path) -> None:
    edit(SHEET, "    title: einsum in four rules\n    blocks:\n",
         "    title: einsum in four rules\n    blocks:\n      - code: \"y_BLD = "
         + "some_function_name_" * 8 + "(x_BLD)\"\n")(small_project)
    result = run("check", "--root", small_project)
    assert result.code == 1 and "Traceback" not in result.err, result.err
    at = f"{SHEET}:{line_of(SHEET, 'title: einsum in four rules')}:12"
    assert re.search(rf"{at}: sheet 'suffixes-einsum' on a4: panel 3, this one, runs [\d.]+ mm "
                     "past its right edge", result.err), result.err
