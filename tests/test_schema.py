"""The schema: every block kind and note type places its errors, and the rules that span fields.

Each case writes a small source of its own beside the bundled ones and runs `mlgrind check`:
the message must name the line and column of the mistake. Schema errors stop the run before
any page is rendered, so these need no build.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, run
from mlgrind.pipeline.blocks import KINDS


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """The bundled sources and templates, copied where a test may add to them."""
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "notes.lock.json", tmp_path)
    return tmp_path


SHEET = """\
id: test-sheet
title: Test sheet
position: 99
seed: "a sheet for tests"
columns: 2
panels:
  - title: Blocks
    blocks:
{blocks}
"""

BLOCKS = """\
      - table:
          header: [a, b]
          rows:
            - [x, y]
      - formula: "x^2"
        label: "a square"
      - code: "x_BLD = 1"
        caption: "a tensor"
      - list: ["one", "two"]
        ordered: true
      - note: "a note"
        role: key
"""

CARDS = """\
sheet: suffixes-einsum
notes:
  - id: test-basic
    front: "f"
    back: "b"
    extra: "e"
  - id: test-reverse
    type: reverse
    front: "f"
    back: "b"
    extra: "e"
  - id: test-type-in
    type: type-in
    front: "f"
    back: "b"
    extra: "e"
  - id: test-cloze
    type: cloze
    text: "a {{c1::deletion}}"
    extra: "e"
"""


def check(project: Path, file: str, text: str, expected: str, needle: str, *,
          at_key: bool = False, occurrence: int = 1) -> None:
    """Write `text` to `file`, run check, and expect `expected` at the line holding `needle`
    (its n-th `occurrence`)."""
    (project / file).write_text(text)
    lines = text.splitlines()
    line = [i for i, row in enumerate(lines, 1) if needle in row][occurrence - 1]
    result = run("check", "--root", project)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err + result.out
    col = r"\d+"
    if at_key:  # an unknown key is reported at the key itself
        col = str(lines[line - 1].index(needle.split(":")[0].strip().lstrip("- ")) + 1)
    assert re.search(rf"{re.escape(file)}:{line}:{col}: {expected}", result.err), result.err


# Unknown keys in every registered block kind, beside the kind's own key: pydantic names the block
# by a tag equal to that key, which once sent the message to the block's value ("unknown key
# 'note'"). A misspelt field gets "did you mean"; a key like no field lists what is allowed.
def _block_typos() -> dict[str, tuple[str, str, str | None]]:
    cases = {}
    for name, kind in KINDS.items():
        fields = [f for f in kind.model.model_fields if f != name]
        meant = fields[0] if fields else None
        typo = meant[:-1] + ("z" if meant[-1] != "z" else "y") if meant else "zzz"
        block = yaml.safe_dump([{**kind.example, typo: "x"}], sort_keys=False, width=10**6)
        cases[name] = (textwrap.indent(block, "      "), typo, meant)
    # A field of the table inside a table block.
    block = yaml.safe_dump([{"table": {"heade": ["a"], "rows": [["x"]]}}], sort_keys=False)
    cases["table field"] = (textwrap.indent(block, "      "), "heade", "header")
    return cases


BLOCK_TYPOS = _block_typos()


@pytest.mark.parametrize("kind", BLOCK_TYPOS)
def test_unknown_key_in_a_block_is_named_at_its_line(sources: Path, kind: str) -> None:
    block, typo, meant = BLOCK_TYPOS[kind]
    text = SHEET.format(blocks=block.rstrip("\n"))
    allowed = ", ".join(KINDS[kind].model.model_fields) if kind in KINDS else ""
    hint = rf"; did you mean '{meant}'\?" if meant else rf" \(allowed: {re.escape(allowed)}\)"
    check(sources, "onepagers/99-test-sheet.yaml", text, rf"unknown key '{typo}'{hint}",
          f"{typo}:", at_key=True)


@pytest.mark.parametrize("note", ["test-basic", "test-reverse", "test-type-in", "test-cloze"])
def test_unknown_key_in_a_note_is_named_at_its_line(sources: Path, note: str) -> None:
    head, tail = CARDS.split(f"id: {note}\n")
    text = head + f"id: {note}\n" + tail.replace('    extra: "e"', '    extar: "e"', 1)
    lines = text.splitlines()
    start = next(i for i, row in enumerate(lines) if f"id: {note}" in row)
    line = next(i for i, row in enumerate(lines[start:], start + 1) if "extar:" in row)
    (sources / "cards/zz-test.yaml").write_text(text)
    result = run("check", "--root", sources)
    assert result.code == 1
    assert re.search(rf"cards/zz-test\.yaml:{line}:5: unknown key 'extar'; did you mean 'extra'\?",
                     result.err), result.err


def sheet_with(blocks: str = BLOCKS, **replace: str) -> str:
    text = SHEET.format(blocks=blocks.rstrip("\n"))
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new, 1)
    return text


TABLE_RULES = {
    "both rows and rows_from": (
        BLOCKS.replace("          rows:\n", "          rows_from: suffix_letters\n          rows:\n"),
        r"a table needs exactly one of 'rows' or 'rows_from'", "header: [a, b]"),
    "neither rows nor rows_from": (
        BLOCKS.replace("          rows:\n            - [x, y]\n", ""),
        r"a table needs exactly one of 'rows' or 'rows_from'", "header: [a, b]"),
    "row narrower than the header": (
        BLOCKS.replace("            - [x, y]\n", "            - [x, y]\n            - [z]\n"),
        r"row has 1 cells; the header has 2", "- [z]"),
    "hide past the last column": (
        BLOCKS.replace("          rows:\n", "          hide: [2, 3]\n          rows:\n"),
        r"hide: column 3 is past the table's 2 columns", "hide:"),
    "headerless rows of different widths": (
        BLOCKS.replace("          header: [a, b]\n", "").replace(
            "            - [x, y]\n", "            - [x, y]\n            - [x, y, z]\n"),
        r"row has 3 cells; the first row has 2", "- [x, y, z]"),
}


@pytest.mark.parametrize("case", TABLE_RULES)
def test_table_rules(sources: Path, case: str) -> None:
    blocks, expected, needle = TABLE_RULES[case]
    check(sources, "onepagers/99-test-sheet.yaml", sheet_with(blocks), expected, needle)


def test_hide_column_is_placed_at_the_number(sources: Path) -> None:
    text = sheet_with(BLOCKS.replace("          rows:\n", "          hide: [2, 3]\n          rows:\n"))
    (sources / "onepagers/99-test-sheet.yaml").write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "hide:" in row)
    result = run("check", "--root", sources)
    assert f"onepagers/99-test-sheet.yaml:{line}:21: hide: column 3" in result.err, result.err


SHEET_RULES = {
    "span wider than the sheet": (
        {"  - title: Blocks\n": "  - title: Blocks\n    span: 3\n"},
        r"span 3 is wider than the sheet's 2 columns", "span: 3"),
    "two panels with one title": (
        {"  - title: Blocks\n": "  - title: Blocks\n    blocks: [{note: x}]\n  - title: Blocks\n"},
        r"panel title 'Blocks' is also used by panel 1", "title: Blocks"),
    "two panels with one id": (
        {"  - title: Blocks\n": "  - id: same\n    title: Blocks\n    blocks: [{note: x}]\n"
                                "  - id: same\n    title: Other\n"},
        r"panel id 'same' is also panel 1's", "id: same"),
    "a panel id that is no slug": (
        {"  - title: Blocks\n": "  - id: Not A Slug\n    title: Blocks\n"},
        r"'id': string should match pattern", "id: Not A Slug"),
    "sheet title with a deck separator": (
        {"title: Test sheet": "title: Test::sheet"},
        r"'title' may not contain '::'", "title: Test::sheet"),
}


@pytest.mark.parametrize("case", SHEET_RULES)
def test_sheet_rules(sources: Path, case: str) -> None:
    replace, expected, needle = SHEET_RULES[case]
    # A repeated title is blamed on its second use.
    check(sources, "onepagers/99-test-sheet.yaml", sheet_with(**replace), expected, needle,
          occurrence=2 if case.startswith("two panels") else 1)


CARD_RULES = {
    "panel with a deck separator": (
        CARDS.replace('    extra: "e"\n', '    panel: "The::rule"\n', 1),
        r"'panel' may not contain '::'", "The::rule"),
    "cloze without a deletion": (
        CARDS.replace("a {{c1::deletion}}", "a deletion"),
        r"a cloze note needs at least one deletion \{\{c1::…\}\}", "text: \"a deletion"),
    "cloze numbered c0": (
        CARDS.replace("a {{c1::deletion}}", "a {{c0::deletion}}"),
        r"cloze deletion c0: numbers start at c1", "{{c0::"),
    "empty cloze": (
        CARDS.replace("a {{c1::deletion}}", "a {{c1::deletion}} {{c2:: ::hint}}"),
        r"cloze deletion c2 is empty", "{{c2::"),
    "cloze cut short by braces in its maths": (
        CARDS.replace("a {{c1::deletion}}", r"a {{c1::\\(x^{a_{b}}\\)}}"),
        r"cloze deletion c1 ends at a '\}\}' inside its maths; write '\} \}' there", "{{c1::"),
}


@pytest.mark.parametrize("case", CARD_RULES)
def test_card_rules(sources: Path, case: str) -> None:
    text, expected, needle = CARD_RULES[case]
    check(sources, "cards/zz-test.yaml", text, expected, needle)


def test_the_bundled_sources_keep_every_rule(sources: Path) -> None:
    result = run("check", "--root", sources)
    assert result.code == 0, result.err


def test_json_schema_knows_the_rules_editors_can_check() -> None:
    result = run("schema")
    validator = jsonschema.Draft202012Validator(json.loads(result.out))
    sheet = yaml.safe_load(sheet_with())
    validator.validate(sheet)
    table = sheet["panels"][0]["blocks"][0]["table"]
    for broken in ({**table, "rows_from": "suffix_letters"},
                   {k: v for k, v in table.items() if k != "rows"}):
        sheet["panels"][0]["blocks"][0]["table"] = broken
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(sheet)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**yaml.safe_load(sheet_with()), "title": "A::B"})
    cards = yaml.safe_load(CARDS)
    validator.validate(cards)
    cards["notes"][3]["text"] = "no deletion"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(cards)


def test_a_panel_without_an_id_is_known_by_its_titles_slug() -> None:
    from mlgrind.pipeline.schema import Panel, slugify

    assert slugify("Worked: model + tokens + GPUs + MFU → days") == "worked-model-tokens-gpus-mfu-days"
    assert slugify("Llama-3-70B on 64 H100s, TP 8 · PP 2 · DP 4: every collective") == \
        "llama-3-70b-on-64-h100s-tp-8-pp-2-dp-4"  # whole words, at most 40 characters
    assert slugify("→ ×") == "panel"
    panel = Panel.model_validate({"title": "Ring all-reduce, step by step", "blocks": [{"note": "x"}]})
    assert panel.key == "ring-all-reduce-step-by-step"
    assert Panel.model_validate({"id": "ring", "title": "Renamed", "blocks": [{"note": "x"}]}).key == "ring"


def test_every_bundled_panel_has_an_id_of_its_own() -> None:
    """The morning log keys a learner's history by panel id: the bundled sheets name theirs, so
    that rewording a title keeps it."""
    for path in sorted((ROOT / "onepagers").glob("*.yaml")):
        panels = yaml.safe_load(path.read_text(encoding="utf-8"))["panels"]
        assert all("id" in panel for panel in panels), path.name
