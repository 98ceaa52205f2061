"""Stage 2, validate (shape): the one truth for what a YAML source may hold.

Two kinds of file: a one-pager (`onepagers/*.yaml`) and a card set (`cards/*.yaml`). The JSON
Schema for editors (`mlgrind schema`) and the error messages both come from these models.

Text fields are *markup*: inline Markdown (`code`, **bold**, *italic*), role spans
`[text]{.role}`, maths `\\( … \\)`, and computed values `${ calc.name(args) }`. A formula
block is LaTeX, drawn as vector graphics.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .palette import ROLES

RoleName = Literal[tuple(ROLES)]  # type: ignore[valid-type]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
Tag_ = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:-]+$")]
Text = Annotated[str, Field(description="markup: Markdown inline, [text]{.role}, ${ calc.x() }")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# One-pagers ------------------------------------------------------------------------------------


class Table(Strict):
    header: list[Text] | None = None
    rows: list[list[Text]] | None = None
    rows_from: str | None = Field(None, description="a registered table computation")
    caption: Text | None = None
    hide: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="columns (1-based) blanked in the recall edition; default: cells "
        "with computed values, and all but the first column of a rows_from table")


class TableBlock(Strict):
    table: Table


class FormulaBlock(Strict):
    formula: str = Field(description="LaTeX maths (aligned, \\frac, …); \\dim{BLD} colours "
                         "dimension letters, \\role{name}{…} any role; ${ } is computed")
    label: Text | None = None


class CodeBlock(Strict):
    code: Text = Field(description="code; suffixed names are coloured, ${ } is computed")
    caption: Text | None = None


class ListBlock(Strict):
    list: list[Text]
    ordered: bool = False


class NoteBlock(Strict):
    note: Text
    role: RoleName | None = None


BLOCK_KINDS = {"table": TableBlock, "formula": FormulaBlock, "code": CodeBlock,
               "list": ListBlock, "note": NoteBlock}


def _block_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in value if key in BLOCK_KINDS), None)
    return next((kind for kind, model in BLOCK_KINDS.items() if isinstance(value, model)), None)


Block = Annotated[
    Union[tuple(Annotated[model, Tag(kind)] for kind, model in BLOCK_KINDS.items())],  # type: ignore[misc]
    Discriminator(
        _block_kind,
        custom_error_type="block_kind",
        custom_error_message=f"a block needs one of the keys: {', '.join(BLOCK_KINDS)}",
    ),
]


class Panel(Strict):
    title: Text
    role: RoleName | None = Field(None, description="accent colour of the panel's border")
    span: int = Field(1, ge=1, le=4, description="grid columns the panel spans")
    blocks: list[Block] = Field(min_length=1)


class Sheet(Strict):
    """A one-pager: panels of typed blocks laid on a grid."""

    id: Slug
    title: str
    position: int = Field(ge=1, le=99, description="place in the seed's sequence (appendix: 90+)")
    seed: str = Field(description="the seed step this sheet covers, in its words")
    orientation: Literal["portrait", "landscape"] = "landscape"
    columns: int = Field(3, ge=1, le=4)
    panels: list[Panel] = Field(min_length=1)


# Card sets -------------------------------------------------------------------------------------


class NoteBase(Strict):
    id: Slug = Field(description="stable forever: the Anki GUID is derived from it")
    tags: list[Tag_] = []
    source: Text | None = Field(None, description="citation for the fact")
    panel: str | None = Field(None, description="title of the panel on the sheet it drills")


class BasicNote(NoteBase):
    type: Literal["basic"] = "basic"
    front: Text
    back: Text
    extra: Text | None = None


class ReverseNote(NoteBase):
    type: Literal["reverse"]
    front: Text
    back: Text
    extra: Text | None = None


class TypeInNote(NoteBase):
    type: Literal["type-in"]
    front: Text
    back: Text = Field(description="the exact answer the learner types")
    extra: Text | None = None


class ClozeNote(NoteBase):
    type: Literal["cloze"]
    text: Text = Field(description="with Anki cloze deletions {{c1::…}}")
    extra: Text | None = None


NOTE_TYPES = {"basic": BasicNote, "reverse": ReverseNote, "type-in": TypeInNote, "cloze": ClozeNote}

Note = Annotated[
    Union[tuple(Annotated[model, Tag(kind)] for kind, model in NOTE_TYPES.items())],  # type: ignore[misc]
    Discriminator(
        lambda v: (v.get("type", "basic") if isinstance(v, dict) else v.type),
        custom_error_type="note_type",
        custom_error_message=f"'type' must be one of: {', '.join(NOTE_TYPES)}",
    ),
]


class CardSet(Strict):
    """Notes drilling the facts of one sheet; they land in its deck, in file order."""

    sheet: Slug = Field(description="id of the one-pager these cards drill")
    tags: list[Tag_] = []
    notes: list[Note] = Field(min_length=1)


def json_schema() -> dict[str, Any]:
    """One schema for editors: a file is either a sheet or a card set."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(Union[Sheet, CardSet]).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlgrind source (onepagers/*.yaml or cards/*.yaml)"
    return schema
