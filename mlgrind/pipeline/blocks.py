"""Block kinds: what a sheet's panel may hold, each kind declared once, here.

A kind is four things: its schema model (what the YAML may say), its view (model → the data its
template part shows; every text field goes through `Texts`, which computes and marks it up),
its template part (`templates/blocks/<name>.html.j2`), and what the recall edition does with
it. The schema's `Block` union, the renderer and the page template all read `KINDS`: a kind
that is not registered cannot validate, and a registered one cannot be left off the page.

A new kind touches two places: a model and a view registered here, and its template part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from markupsafe import Markup
from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from ..figures import FIGURES
from ..palette import ROLES, grey
from .compute import COMPUTED, ExpressionError, call
from .fields import RoleName, Strict, Text, content_error
from .load import Loc

if TYPE_CHECKING:
    from .render import Texts

View = Callable[[Any, Loc, "Texts", float], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    name: str  # the YAML key that marks a block of this kind
    model: type[Strict]
    view: View  # (block, its YAML location, the texts renderer, panel width in pt) → view data
    recall: str  # what the recall edition shows of it, in words (JSON Schema, README)
    example: dict[str, Any]  # a valid block of this kind: tests render every kind from it

    @property
    def template(self) -> str:
        return f"blocks/{self.name}.html.j2"


KINDS: dict[str, Kind] = {}


def kind(name: str, model: type[Strict], *, recall: str,
         example: dict[str, Any]) -> Callable[[View], View]:
    """Register `model` and the decorated view as the block kind `name`."""
    def register(view: View) -> View:
        model.model_config["json_schema_extra"] = {
            **model.model_config.get("json_schema_extra", {}),  # type: ignore[dict-item]
            "description": f"Recall edition: {recall}"}
        model.model_rebuild(force=True)
        KINDS[name] = Kind(name, model, view, recall, example)
        return view
    return register


# Tables ----------------------------------------------------------------------------------------


class Table(Strict):
    header: list[Text] | None = None
    rows: list[list[Text]] | None = None
    rows_from: str | None = Field(None, description="a registered table computation, with "
                                  "literal arguments: collective_table(ranks=4)")
    caption: Text | None = None
    hide: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="columns (1-based) blanked in the recall edition; default: cells "
        "with computed values, and all but the first column of a rows_from table")
    inputs: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="columns (1-based) holding what the question gives (typed inputs, "
        "drawn in the 'given' style); every other typed cell holds no typed number")

    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["rows"]}, {"required": ["rows_from"]}]})

    @model_validator(mode="after")
    def _shape(self) -> Table:
        if (self.rows is None) == (self.rows_from is None):
            raise content_error("a table needs exactly one of 'rows' or 'rows_from'")
        width, of = ((len(self.header), "the header") if self.header
                     else (len(self.rows[0]), "the first row") if self.rows else (None, ""))
        for r, row in enumerate(self.rows or []):
            if len(row) != width:
                raise content_error(f"row has {len(row)} cells; {of} has {width}", "rows", r)
        for key in ("hide", "inputs"):
            for n, column in enumerate(getattr(self, key) or []):
                if width is not None and column > width:
                    raise content_error(f"{key}: column {column} is past the table's {width} "
                                        "columns", key, n)
                if key == "inputs" and column in (self.hide or []):
                    raise content_error(f"inputs: column {column} is also hidden: an input is "
                                        "what the recall edition shows", key, n)
        return self


class TableBlock(Strict):
    table: Table


@kind("table", TableBlock,
      recall="every computed cell, all but the first column of a rows_from table, and the "
      "columns in `hide` become blanks of one width; headers and `inputs` columns stay",
      example={"table": {"header": ["a", "b"], "rows": [["x", "${ calc.size((2, 3)) }"]]}})
def table_view(block: TableBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    table, at = block.table, at + ("table",)
    rows: list[list[str]] = table.rows or []
    if table.rows_from is not None:
        try:
            rows = text.values.rows(table.rows_from)
        except ExpressionError as error:
            text.problem(at + ("rows_from",), str(error))
        columns = len(table.header) if table.header else None
        if columns is not None and any(len(row) != columns for row in rows):
            text.problem(at + ("rows_from",), f"{table.rows_from} gives rows not {columns} "
                         "cells wide")
    # Computed rows have no YAML position of their own: their problems point at `rows_from`.
    def cell_at(r: int, c: int) -> Loc:
        return at + (("rows", r, c) if table.rows is not None else ("rows_from",))

    inputs = table.inputs or []

    def hidden(c: int, cell: str) -> Literal["", "cell"]:
        if c + 1 in inputs:  # what the question gives stays on the recall edition
            return ""
        computed = COMPUTED.search(cell) is not None or (table.rows_from is not None and c > 0)
        return "cell" if computed or c + 1 in (table.hide or []) else ""

    return {
        "header": [text(h, at + ("header", c)) for c, h in enumerate(table.header or [])],
        "rows": [[given(text(cell, cell_at(r, c), hide=hidden(c, cell)), text) if c + 1 in inputs
                  else text(cell, cell_at(r, c), hide=hidden(c, cell), facts=table.rows is not None)
                  for c, cell in enumerate(row)]
                 for r, row in enumerate(rows)],
        "caption": text(table.caption, at + ("caption",), facts=True),
    }


def given(html: Markup | None, text: Texts) -> Markup:
    """An input cell, in the palette's `given` style on both editions."""
    text.roles.add("given")
    return Markup(f'<span class="r-given">{html}</span>')


# Formulas, code, lists, notes -------------------------------------------------------------------


class FormulaBlock(Strict):
    formula: str = Field(description="LaTeX maths (aligned, \\frac, …); \\dim{BLD} colours "
                         "dimension letters, \\role{name}{…} any role; ${ } is computed")
    label: Text | None = None


@kind("formula", FormulaBlock, recall="ruled lines, as many as the formula's height needs "
      "(in bands); the label stays",
      example={"formula": "x^2", "label": "a square"})
def formula_view(block: FormulaBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    return {"formula": text(block.formula, at + ("formula",), tex=True, hide="prose", facts=True,
                            width=width),
            "label": text(block.label, at + ("label",))}


class CodeBlock(Strict):
    code: Text = Field(description="code; suffixed names are coloured, ${ } is computed")
    caption: Text | None = None


@kind("code", CodeBlock, recall="the code stays; its computed values become blanks",
      example={"code": "x_BLD = np.zeros(${ calc.shape_after((2, 3), 'reshape', -1) })",
               "caption": "a tensor"})
def code_view(block: CodeBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    return {"code": text(block.code, at + ("code",), code=True),
            "caption": text(block.caption, at + ("caption",), facts=True)}


class ListBlock(Strict):
    list: list[Text]
    ordered: bool = False


@kind("list", ListBlock, recall="each item becomes ruled lines, as many as its answer needs "
      "by hand, in bands (1, 2, 4, 6, …)",
      example={"list": ["one", "two"], "ordered": True})
def list_view(block: ListBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    return {"ordered": block.ordered,
            "entries": [text(item, at + ("list", n), hide="prose", facts=True, width=width)
                        for n, item in enumerate(block.list)]}


class NoteBlock(Strict):
    note: Text
    role: RoleName | None = None


@kind("note", NoteBlock, recall="ruled lines, as many as the note needs by hand, in bands; "
      "its role's marker stays in ink",
      example={"note": "a note", "role": "key"})
def note_view(block: NoteBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    if block.role:  # its marker is the role's legend glyph: the legend says what it means
        text.roles.add(block.role)
    return {"role": block.role, "glyph": ROLES[block.role].glyph if block.role else "",
            "note": text(block.note, at + ("note",), hide="prose", facts=True, width=width)}


# Figures ---------------------------------------------------------------------------------------


class FigureBlock(Strict):
    figure: str = Field(description="a registered drawing (mlgrind/figures/) with literal "
                        "arguments: pipeline_schedule(stages=4, microbatches=8)")
    caption: Text | None = None
    recall: Literal["blank", "frame"] = Field(
        "blank", description="recall edition: blank its labels and numbers, or leave an empty "
        "frame of the same size")


@kind("figure", FigureBlock,
      recall="labels and numbers become blanks of one width, hues become greys (or, with "
      "`recall: frame`, an empty frame of the same size); the caption stays",
      example={"figure": "pipeline_schedule(stages=2, microbatches=3, schedule='gpipe')",
               "caption": "a schedule"})
def figure_view(block: FigureBlock, at: Loc, text: Texts, width: float) -> dict[str, Any]:
    try:
        drawing = text.computed(block.figure, FIGURES, "figure", width=width)
    except ExpressionError as error:
        text.problem(at + ("figure",), str(error))
        return {"svg": Markup(""), "width": width, "caption": None}
    svg = grey(drawing.svg(block.recall)) if text.recall else drawing.svg("key")
    return {"svg": Markup(svg), "width": drawing.width,
            "caption": text(block.caption, at + ("caption",), facts=True)}


# The union the schema validates: one member per kind, told apart by the kind's key.


def _block_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in value if key in KINDS), None)
    return next((k.name for k in KINDS.values() if isinstance(value, k.model)), None)


Block = Annotated[
    Union[tuple(Annotated[k.model, Tag(k.name)] for k in KINDS.values())],  # type: ignore[misc]
    Discriminator(
        _block_kind,
        custom_error_type="block_kind",
        custom_error_message=f"a block needs one of the keys: {', '.join(KINDS)}",
    ),
]


def kind_of(block: Strict) -> Kind:
    """The registered kind of a validated block (the schema admits no other)."""
    return KINDS[_block_kind(block)]  # type: ignore[index]
