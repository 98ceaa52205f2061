"""Maths is filtered by one allow-list of commands, on sheets (ziamath) and cards (Anki's MathJax).

On a card, maths runs in the learner's Anki, whose MathJax follows `\\href`, applies `\\style`,
loads extensions with `\\require`; on a sheet, `\\color` would bypass the palette. Each refusal
names the command, and `mlgrind check` places it at the field's file:line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from ziamath.tex import tex2mml

from conftest import ROOT, run
from mlgrind.pipeline import maths
from mlgrind.pipeline.markup import MarkupError, inline
from mlgrind.palette import ROLES

# What MathJax 3 (with Anki's packages) or latex2mathml would accept that links, scripts,
# styles, colours, defines macros, loads extensions or fetches.
REFUSED = {
    "href": r"\href{javascript:alert(1)}{x}",
    "style": r"\style{background:url(http://example.com/t)}{x}",
    "class": r"\class{x}{y}",
    "cssId": r"\cssId{x}{y}",
    "data": r"\data{x=1}{y}",
    "htmlStyle": r"\htmlStyle{color:red}{x}",
    "unicode": r"\unicode{x41}",
    "require": r"\require{html}",
    "def": r"\def\h{x}",
    "newcommand": r"\newcommand{\h}{x}",
    "renewcommand": r"\renewcommand{\frac}{x}",
    "let": r"\let\h\relax",
    "url": r"\url{http://example.com}",
    "mmlToken": r"\mmlToken{mi}[href=javascript:x]{x}",
    "bbox": r"\bbox[background:url(http://example.com/t)]{x}",
    "enclose": r"\enclose{box}[style=x]{y}",
    "includegraphics": r"\includegraphics{http://example.com/x.png}",
    "texttip": r"\texttip{x}{y}",
    "verb": r"\verb|x|",
    "color": r"\color{#ff00ff}x",
    "textcolor": r"\textcolor{red}{x}",
    "colorbox": r"\colorbox{red}{x}",
    "fcolorbox": r"\fcolorbox{red}{blue}{x}",
    "definecolor": r"\definecolor{c}{HTML}{FF00FF}",
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_command_off_the_list_is_refused_by_name(name: str) -> None:
    with pytest.raises(maths.MathsError, match=rf"^\\{name} is not an allowed maths command"):
        maths.check(f"a + {REFUSED[name]}")


def test_colour_is_refused_with_the_palette_macros_as_the_way() -> None:
    with pytest.raises(maths.MathsError, match=r"colour comes only from \\role\{name\}"):
        maths.check(r"{\color{#ff00ff} x}")


def test_a_misspelt_command_gets_a_suggestion() -> None:
    with pytest.raises(maths.MathsError, match=r"^\\fracc .*; did you mean \\frac\?"):
        maths.check(r"\fracc{a}{b}")


@pytest.mark.parametrize("tex, refused", [
    (r"\text{see \href{javascript:alert(1)}{here}}", r"\href"),  # text mode is still TeX
    (r"x\)", r"\)"),   # would end a card's maths early
    (r"x \(", r"\("),  # would start maths within maths
    ("x\\", r"a lone \ at the end"),  # would swallow the closing delimiter
])
def test_tokens_are_read_as_tex_reads_them(tex: str, refused: str) -> None:
    with pytest.raises(maths.MathsError, match=f"^{re.escape(refused)} is not"):
        maths.check(tex)


@pytest.mark.parametrize("tex", [
    r"a \\ b", r"a \\href",  # a new row, then letters: no \href
    r"\{ x \} \, \; \! \ \quad", r"\left\{ x \right.",
    r"\begin{array}{l} a \\ \hline b \end{array}",
    r"\mathrm{out}_{\dim{BLHK}} = \mathrm{softmax}_{\dim{M}}\!\left(\frac{q \cdot k}{\sqrt{\dim{K}}}\right)",
])
def test_standard_maths_passes(tex: str) -> None:
    maths.check(tex)


@pytest.mark.parametrize("tex", ["x{", "x}{", "{x}}", r"\{x}"])
def test_unbalanced_braces_are_refused(tex: str) -> None:
    """MathJax ends maths at its closing delimiter only outside braces: an open one would take
    the card's text after the maths into it."""
    with pytest.raises(maths.MathsError, match="unbalanced braces"):
        maths.check(tex)


def test_palette_colour_is_added_after_the_check() -> None:
    expanded = maths.expand_macros(r"\role{contract}{D}")
    assert rf"\color{{{ROLES['contract'].colour}}}" in expanded
    with pytest.raises(maths.MathsError, match=r"\\color"):
        maths.check(expanded)  # the same colour written in a source is refused


# Commands that draw nothing alone, in a usage.
USAGES = {
    "left": r"\left( a \middle| b \right)", "middle": r"\left( a \middle| b \right)",
    "right": r"\left( a \middle| b \right)", "nolimits": r"\sum\nolimits_a b",
    "begin": r"\begin{array}{l} a \\ \hline b \end{array}",
    "end": r"\begin{array}{l} a \\ \hline b \end{array}",
    "hline": r"\begin{array}{l} a \\ \hline b \end{array}",
}


def test_every_allowed_command_is_one_ziamath_draws() -> None:
    """latex2mathml leaves a command it does not know as text (`<mi>\\foo</mi>`)."""
    def drawn(tex: str) -> bool:
        try:
            return "\\" not in tex2mml(tex)
        except Exception:  # latex2mathml rejects a usage it does not expect in many ways
            return False

    undrawn = [name for name in sorted(maths.ALLOWED - {"dim", "role"})
               if not any(map(drawn, [USAGES[name]] if name in USAGES else
                              [rf"\{name}", rf"\{name}{{a}}", rf"\{name}{{a}}{{b}}"]))]
    assert undrawn == []


# Cards: the same check before Anki's MathJax sees the maths, and no maths it would find outside.

def test_card_maths_is_checked_before_mathjax() -> None:
    with pytest.raises(maths.MathsError, match=r"^\\href is not"):
        inline(r"see \(\href{javascript:alert(1)}{x}\)", "card")
    assert inline(r"\(\role{contract}{D}\)", "card") == (
        rf"\({{\color{{{ROLES['contract'].colour}}}D}}\)")


@pytest.mark.parametrize("text", [
    r"\\(\href{javascript:alert(1)}{x}\\)",  # an escaped backslash, then (
    r"&#92;(\href{javascript:alert(1)}{x}&#92;)",  # an entity
    r"&#x5C;[\href{javascript:alert(1)}{x}&#x5C;]",
    r"\\{{c1::(}} \href{javascript:alert(1)}{x} \\{{c2::)}}",  # once Anki fills in the clozes
])
def test_a_delimiter_outside_maths_is_refused(text: str) -> None:
    """Markdown reads these as text; Anki's MathJax would read them as maths, unchecked."""
    with pytest.raises(MarkupError, match=r"would start unchecked maths in Anki"):
        inline(text, "card")


def test_code_may_show_a_delimiter() -> None:
    """MathJax skips <code>."""
    assert inline(r"write `\(x\)` for maths", "card") == r"write <code>\(x\)</code> for maths"


# End to end: `mlgrind check` places the refusal at the field's line. A maths error stops the
# run before any page is rendered, so these need no build.

@pytest.fixture
def sources(tmp_path: Path) -> Path:
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "notes.lock.json", tmp_path)
    return tmp_path


SHEET = r"""id: test-sheet
title: Test sheet
position: 99
seed: "a sheet for tests"
columns: 2
panels:
  - title: Maths
    blocks:
      - note: "fine: \\( x \\cdot y \\)"
      - formula: |
          x \cdot y
          + \style{background:url(http://example.com/t)}{z}
        label: "a styled formula"
"""

CARDS = r"""sheet: suffixes-einsum
notes:
  - id: test-fine
    front: "fine: \\( x \\cdot y \\)"
    back: "b"
  - id: test-link
    front: "f"
    back: "see \\(\\href{javascript:alert(1)}{here}\\)"
"""


@pytest.mark.parametrize("file, text, command, needle", [
    ("onepagers/99-test-sheet.yaml", SHEET, r"\style", "- formula:"),
    ("cards/zz-test.yaml", CARDS, r"\href", "see "),
])
def test_check_places_the_refused_command(sources: Path, file: str, text: str, command: str,
                                          needle: str) -> None:
    (sources / file).write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)
    result = run("check", "--root", sources)
    assert result.code == 1
    assert re.search(rf"^{re.escape(file)}:{line}:\d+: {re.escape(command)} is not an allowed "
                     "maths command", result.err, re.MULTILINE), result.err
    assert "1 problem" in result.err, result.err  # the fine maths beside it passed


@pytest.mark.parametrize("stored", ['{"1.0 a": 0, "1.0 b": "<svg/>"}', "[1, 2]", '"svg"', "{"])
def test_a_damaged_formula_cache_keeps_only_typeset_svgs(tmp_path: Path, stored: str) -> None:
    path = tmp_path / "maths.json"
    path.write_text(stored)
    expected = {"1.0 b": "<svg/>"} if stored.startswith('{"') else {}
    assert maths.Typeset.load(path).svgs == expected
