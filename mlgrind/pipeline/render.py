"""Stage 4, render: validated sources → HTML for sheets (cards: `deck.card_notes`).

Text fields go through compute (`${ … }`) then markup; every failure is reported against the
YAML position of the field it came from. Page HTML comes from the project's Jinja templates in a
sandboxed, autoescaping environment with `StrictUndefined`: a template that names something the
view does not hold is an error naming the template and line, not a blank on the page.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from .. import palette
from . import maths
from .compute import FACT_CLOSE, FACT_OPEN, ExpressionError, expand, table_rows
from .problems import Problem
from .load import Loc, Source
from .markup import MarkupError, Target, colour_suffixes, inline
from .schema import CodeBlock, FormulaBlock, ListBlock, NoteBlock, Sheet, TableBlock


class Texts:
    """Renders text fields of one source, collecting problems instead of stopping at the first.

    With `recall`, facts are blanked for the recall edition. A computed value, or a table cell
    (`hide="cell"`), becomes a blank of one fixed width, so its length gives nothing away.
    Prose (`hide="prose"`) keeps its text, invisible, inside ruled lines: the same room to
    write in as the answer key (hidden text is not drawn, so it is not in the PDF either).
    """

    def __init__(self, source: Source, problems: list[Problem], target: Target,
                 drawings: maths.Drawings | None = None, recall: bool = False):
        self.source, self.problems, self.target, self.recall = source, problems, target, recall
        self.drawings = drawings if drawings is not None else maths.Drawings({})

    def __call__(self, text: str | None, loc: Loc, *, code: bool = False, tex: bool = False,
                 hide: Literal["", "cell", "prose"] = "") -> Markup | None:
        """The field as HTML: markup by default, code (suffixes coloured) or display maths."""
        if text is None:
            return None
        try:
            expanded = expand(text, marked=self.recall and not hide)
            if tex:
                html = maths.svg(expanded, self.drawings)
            else:
                html = colour_suffixes(expanded) if code else inline(expanded, self.target,
                                                                      self.drawings)
                html = _FACT.sub(_BLANK, html)
        except (ExpressionError, MarkupError, maths.MathsError) as error:
            self.problems.append(self.source.problem(loc, str(error)))
            return Markup("")
        if self.recall and hide == "cell":
            return Markup('<span class="blank cell"></span>')
        if self.recall and hide == "prose":
            block = " block" if tex else ""
            return Markup(f'<span class="ruled{block}"><span class="hide">{html}</span></span>')
        return Markup(html)


_FACT = re.compile(f"{FACT_OPEN}.*?{FACT_CLOSE}", re.DOTALL)
_COMPUTED = re.compile(r"(?<!\$)\$\{")  # `$${` is a literal `${`, not a computation
_BLANK = '<span class="blank"></span>'


# Sheets ---------------------------------------------------------------------------------------


def sheet_view(sheet: Sheet, source: Source, problems: list[Problem],
               drawings: maths.Drawings, *, recall: bool = False) -> dict[str, Any]:
    """The sheet with every text field rendered: what the page template sees. The recall
    edition keeps titles, labels, table headers and inputs, and blanks the facts."""
    text = Texts(source, problems, "sheet", drawings, recall)
    panels = []
    for p, panel in enumerate(sheet.panels):
        at: Loc = ("panels", p)
        blocks = []
        for b, block in enumerate(panel.blocks):
            here = at + ("blocks", b)
            if isinstance(block, TableBlock):
                blocks.append(_table(block, here + ("table",), text, source, problems))
            elif isinstance(block, FormulaBlock):
                blocks.append({"kind": "formula",
                               "formula": text(block.formula, here + ("formula",), tex=True,
                                               hide="prose"),
                               "label": text(block.label, here + ("label",))})
            elif isinstance(block, CodeBlock):
                blocks.append({"kind": "code", "code": text(block.code, here + ("code",), code=True),
                               "caption": text(block.caption, here + ("caption",))})
            elif isinstance(block, ListBlock):
                blocks.append({"kind": "list", "ordered": block.ordered,
                               "entries": [text(i, here + ("list", n), hide="prose")
                                           for n, i in enumerate(block.list)]})
            elif isinstance(block, NoteBlock):
                blocks.append({"kind": "note", "role": block.role,
                               "note": text(block.note, here + ("note",), hide="prose")})
        panels.append({"title": text(panel.title, at + ("title",)), "role": panel.role,
                       "span": panel.span, "blocks": blocks})
    used = set(_ROLE_CLASS.findall(repr(panels))) | {p.role for p in sheet.panels if p.role}
    return {"id": sheet.id, "title": sheet.title, "number": f"{sheet.position:02d}",
            "seed": sheet.seed, "orientation": sheet.orientation, "columns": sheet.columns,
            "panels": panels, "legend": _legend(used), "recall": recall}


def _legend(used: set[str]) -> list[tuple[str, list[palette.Role]]]:
    """The roles the sheet uses, grouped by kind, in the palette's order."""
    return [(label, [r for r in palette.ROLES.values() if r.kind == kind and r.name in used])
            for kind, label in palette.KINDS.items()
            if any(r.kind == kind and r.name in used for r in palette.ROLES.values())]


_ROLE_CLASS = re.compile(r'class="r-([a-z-]+)"')


def _table(block: TableBlock, at: Loc, text: Texts, source: Source,
           problems: list[Problem]) -> dict[str, Any]:
    table = block.table  # the schema made sure it has rows or rows_from, as wide as its header
    rows: list[list[str]] = table.rows or []
    if table.rows_from is not None:
        try:
            rows = table_rows(table.rows_from)
        except ExpressionError as error:
            problems.append(source.problem(at + ("rows_from",), str(error)))
        width = len(table.header) if table.header else None
        if width is not None and any(len(row) != width for row in rows):
            problems.append(source.problem(
                at + ("rows_from",), f"{table.rows_from} gives rows not {width} cells wide"))
    # Computed rows have no YAML position of their own: their problems point at `rows_from`.
    cell_at = (lambda r, c: at + ("rows", r, c)) if table.rows is not None else (
        lambda r, c: at + ("rows_from",))
    # The recall edition blanks every cell holding a computed value, all but the first column
    # of a computed table, and the columns named in `hide`.
    def hidden(c: int, cell: str) -> Literal["", "cell"]:
        computed = _COMPUTED.search(cell) is not None or (table.rows_from is not None and c > 0)
        return "cell" if computed or c + 1 in (table.hide or []) else ""

    return {
        "kind": "table",
        "header": [text(h, at + ("header", c)) for c, h in enumerate(table.header or [])],
        "rows": [[text(cell, cell_at(r, c), hide=hidden(c, cell)) for c, cell in enumerate(row)]
                 for r, row in enumerate(rows)],
        "caption": text(table.caption, at + ("caption",)),
    }


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

    def render(self, name: str, **context: Any) -> tuple[str | None, list[Problem]]:
        try:
            return self.env.get_template(name).render(**context), []
        except TemplateSyntaxError as error:
            return None, [Problem(f"templates/{error.name or name}", error.lineno or 0, 1,
                                  f"template syntax error: {error.message}")]
        except Exception as error:  # a template is user content: any failure is theirs to fix
            frame = next((f for f in reversed(traceback.extract_tb(error.__traceback__))
                          if f.filename.startswith(str(self.root))), None)
            where = (f"templates/{Path(frame.filename).relative_to(self.root)}", frame.lineno or 0) \
                if frame else (f"templates/{name}", 0)
            return None, [Problem(*where, 1, f"template error: {error}")]

    def read(self, name: str) -> str:
        return (self.root / name).read_text(encoding="utf-8")
