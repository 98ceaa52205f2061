"""Stage 4, render: validated sources → HTML for sheets (cards: `deck.card_notes`).

Text fields go through compute (`${ … }`) then markup; every failure is reported against the
YAML position of the field it came from. Page HTML comes from the project's Jinja templates in a
sandboxed, autoescaping environment with `StrictUndefined`: a template that names something the
view does not hold is an error naming the template and line, not a blank on the page.
"""

from __future__ import annotations

import math
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from .. import palette
from . import maths, numbers
from .blocks import kind_of
from .compute import FACT_CLOSE, FACT_OPEN, ExpressionError, Values, call
from .load import Loc, Source
from .markup import MarkupError, Target, colour_suffixes, inline
from .pages import EDITIONS
from .problems import Problem, Problems
from .schema import Sheet


class Texts:
    """Renders text fields of one source, reporting problems to the run's `Problems` and going on.

    With `recall`, facts are blanked for the recall edition. A computed value, or a table cell
    (`hide="cell"`), becomes a blank of one fixed width, so its length gives nothing away.
    Prose (`hide="prose"`) becomes ruled lines, as many as the answer needs written by hand in
    `width` pt, rounded up to a band (`writing_lines`): room by size, never the answer's own
    line lengths. Maths keeps no colour on the recall edition (`maths.monochrome`).
    `roles` collects the palette roles of everything rendered, for the sheet's legend.
    """

    def __init__(self, source: Source, problems: Problems, target: Target,
                 typeset: maths.Typeset | None = None, recall: bool = False,
                 calls: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] | None = None,
                 values: Values | None = None):
        self.source, self.problems, self.target, self.recall = source, problems, target, recall
        self.typeset = typeset if typeset is not None else maths.Typeset({})
        self.values = values if values is not None else Values({})
        self.roles: set[str] = set()
        self.calls = calls if calls is not None else {}
        self.file_text: str | None = None  # read for the position of a typed number

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.add(self.source.problem(loc, message))

    def computed(self, text: str, registry: Mapping[str, Callable[..., Any]], what: str,
                 **extra: Any) -> Any:
        """A figure (`compute.call`), computed once for both editions."""
        key = (text, tuple(sorted(extra.items())))
        if key not in self.calls:
            self.calls[key] = call(text, registry, what, **extra)
        return self.calls[key]

    def __call__(self, text: str | None, loc: Loc, *, code: bool = False, tex: bool = False,
                 hide: Literal["", "cell", "prose"] = "", facts: bool = False,
                 width: float = 0.0) -> Markup | None:
        """The field as HTML: markup by default, code (suffixes coloured) or display maths.
        A field that bears `facts` may hold no typed number (`numbers.unbound`). `width` (pt)
        is the room a hidden prose answer is written in."""
        if text is None:
            return None
        if facts and not self.recall:  # the recall edition's text is the key's: checked once
            self.check_numbers(text, loc, tex=tex)
        try:
            expanded = self.values.expand(text, marked=self.recall and not hide)
            if self.recall:
                expanded = maths.monochrome(expanded)
            if tex:
                html = maths.svg(expanded, self.typeset)
            else:
                html = colour_suffixes(expanded) if code else inline(expanded, self.target,
                                                                      self.typeset)
                html = _FACT.sub(_BLANK, html)
        except (ExpressionError, MarkupError, maths.MathsError) as error:
            self.problem(loc, str(error))
            return Markup("")
        if self.recall and hide == "cell":
            return Markup('<span class="blank cell"></span>')
        if self.recall and hide == "prose":
            lines = writing_lines(html if tex else expanded, width, tex=tex)
            return Markup('<span class="lines">' + '<span class="line"></span>' * lines + '</span>')
        self.roles.update(_ROLE_CLASS.findall(html), maths.roles_in(expanded))
        return Markup(html)


    def check_numbers(self, text: str, loc: Loc, *, tex: bool) -> None:
        found = numbers.unbound(text, tex=tex)
        where = self.source.values.get(loc)
        if found and where and self.file_text is None:
            self.file_text = self.source.path.read_text(encoding="utf-8")
        for offset, number in found:
            line, col = (numbers.locate(self.file_text or "", *where, text, offset, number)
                         if where else (1, 1))
            given = fr"\role{{given}}{{{number}}}" if tex else f"[{number}]{{.given}}"
            self.problems.add(Problem(self.source.name, line, col,
                                      f"typed number {number}: every number is computed "
                                      "(write ${ calc.… }), or, if the question gives it, "
                                      f"marked as an input: {given}"))


_HAND_MM = 1.4  # a handwritten character on 7-mm ruling (templates/sheet.css): the print's
# width, for notes in the learner's words
_MATHS_LINE_PT = 14  # a line of display maths at its 10-pt size


def writing_lines(answer: str, width: float, *, tex: bool = False) -> int:
    """Ruled lines for a hidden answer `width` pt wide: the lines its handwriting needs,
    rounded up to a band (1, 2, 3, 4, then even counts), so the room tells only roughly how
    much to write. `answer` is its source text, or of maths the typeset <svg>, measured by its height."""
    if tex:
        height = re.search(r'height="([0-9.]+)', answer)
        need = math.ceil(float(height.group(1)) * 0.75 / _MATHS_LINE_PT) if height else 1
    else:
        need = math.ceil(len(answer) * _HAND_MM * PT_PER_MM / max(width, 1.0))
    return need if need <= 4 else need + need % 2


_FACT = re.compile(f"{FACT_OPEN}.*?{FACT_CLOSE}", re.DOTALL)
_BLANK = '<span class="blank"></span>'
_ROLE_CLASS = re.compile(r'class="r-([a-z0-9-]+)"')


# Sheets ---------------------------------------------------------------------------------------

# The page geometry of templates/sheet.css, in mm: a figure is drawn at its panel's content
# width on the narrower paper (it is never scaled down, so its text keeps its size).
_PAGE_WIDTH = {"landscape": min(297, 279.4), "portrait": min(210, 215.9)}  # A4, Letter
_MARGINS, _GAP, _PADDING = 9 + 9, 2, 2 * 1.8
_BORDERS_PT = 2.2 + 0.6
PT_PER_MM = 72 / 25.4


def panel_width(sheet: Sheet, span: int) -> float:
    """The content width in pt of a panel spanning `span` of the sheet's columns."""
    column = (_PAGE_WIDTH[sheet.orientation] - _MARGINS - (sheet.columns - 1) * _GAP) / sheet.columns
    return (span * column + (span - 1) * _GAP - _PADDING) * PT_PER_MM - _BORDERS_PT


def sheet_views(sheet: Sheet, source: Source, problems: Problems,
                typeset: maths.Typeset, values: Values | None = None) -> dict[str, dict[str, Any]]:
    """What the page template sees, per edition. The recall edition keeps titles, labels,
    table headers and inputs, and blanks the facts. It is rendered only when the answer key
    rendered cleanly: its problems would be the key's again."""
    calls: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    views = {}
    for edition in EDITIONS:
        before = len(problems)
        text = Texts(source, problems, "sheet", typeset, edition == "recall", calls, values)
        views[edition] = _sheet_view(sheet, text)
        if len(problems) > before:
            break
    return views


def _sheet_view(sheet: Sheet, text: Texts) -> dict[str, Any]:
    panels = []
    sources: dict[str, int] = {}  # citation → its number, in order of first use
    for p, panel in enumerate(sheet.panels):
        at: Loc = ("panels", p)
        width = panel_width(sheet, panel.span)
        blocks = []
        for b, block in enumerate(panel.blocks):
            kind = kind_of(block)
            blocks.append({"kind": kind.name, "template": kind.template,
                           **kind.view(block, at + ("blocks", b), text, width)})
        cited = [panel.source] if isinstance(panel.source, str) else panel.source or []
        refs = [sources.setdefault(c, len(sources) + 1) for c in cited]
        panels.append({"title": text(panel.title, at + ("title",)), "role": panel.role,
                       "span": panel.span, "blocks": blocks, "refs": refs})
    used = text.roles | {p.role for p in sheet.panels if p.role}
    if text.recall:  # drawn in ink: a legend of what is not shown would only give answers away
        used &= palette.RECALL_ROLES
    return {"id": sheet.id, "title": sheet.title, "number": f"{sheet.position:02d}",
            "seed": sheet.seed, "orientation": sheet.orientation, "columns": sheet.columns,
            "panels": panels, "legend": _legend(used), "recall": text.recall,
            "sources": [(n, text(c, ("panels", _first_citing(sheet, c), "source")))
                        for c, n in sources.items()]}


def _first_citing(sheet: Sheet, citation: str) -> int:
    return next(p for p, panel in enumerate(sheet.panels)
                if citation == panel.source or citation in (panel.source or []))


def _legend(used: set[str]) -> list[dict[str, Any]]:
    """The roles the sheet uses, grouped by kind, in the palette's order."""
    return [{"kind": label, "roles": [{"name": r.name, "glyph": r.glyph, "label": r.label}
                                      for r in palette.ROLES.values()
                                      if r.kind == kind and r.name in used]}
            for kind, label in palette.KINDS.items()
            if any(r.kind == kind and r.name in used for r in palette.ROLES.values())]


# Templates ------------------------------------------------------------------------------------


@dataclass
class Templates:
    """The project's `templates/` folder as a sandboxed, autoescaping Jinja environment."""

    root: Path

    def __post_init__(self) -> None:
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(self.root), autoescape=True, undefined=StrictUndefined,
            trim_blocks=True, lstrip_blocks=True)
        self.env.globals["palette_css"] = Markup(palette.css())

    def render(self, name: str, problems: Problems, **context: Any) -> str | None:
        """The template rendered, or None with the reason added to `problems`."""
        try:
            return self.env.get_template(name).render(**context)
        except TemplateSyntaxError as error:
            problems.add(Problem(f"templates/{error.name or name}", error.lineno or 0, 1,
                                 f"template syntax error: {error.message}"))
            return None
        except Exception as error:  # a template is user content: any failure is theirs to fix
            frame = next((f for f in reversed(traceback.extract_tb(error.__traceback__))
                          if f.filename.startswith(str(self.root))), None)
            where = (f"templates/{Path(frame.filename).relative_to(self.root)}", frame.lineno or 0) \
                if frame else (f"templates/{name}", 0)
            problems.add(Problem(*where, 1, f"template error: {error}"))
            return None

    def read(self, name: str) -> str:
        return (self.root / name).read_text(encoding="utf-8")
