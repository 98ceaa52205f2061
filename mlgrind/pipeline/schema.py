"""Stage 2, validate (shape): the one truth for what a YAML source may hold.

Two kinds of file: a one-pager (`onepagers/*.yaml`) and a card set (`cards/*.yaml`). The JSON
Schema for editors (`mlgrind schema`) and the error messages both come from these models.

Text fields are *markup*: inline Markdown (`code`, **bold**, *italic*), role spans
`[text]{.role}`, maths `\\( … \\)`, and computed values `${ calc.name(args) }`. Write `$${`
for a literal `${` (shell or template code in a code block: `echo $${HOME}` shows `echo ${HOME}`).
A formula block is LaTeX, drawn as vector graphics.

Checks that span several fields (a panel fits the sheet's columns; a table has rows or
rows_from, in blocks.py beside its kind) are model validators too, so every rule on the shape of a
file lives in a model. They raise `content_error`, whose context names the field to blame (`at`, relative to the
model), so the message points at the offending line rather than at the whole block.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from .blocks import Block
from .fields import DeckName, RoleName, Slug, Strict, Tag_, Text, content_error

# One-pagers (their block kinds are registered in blocks.py) ----------------------------------


class Panel(Strict):
    id: Slug | None = Field(None, description="stable forever: the morning log keeps the panel's "
                                              "recall history under it; without one, the title's "
                                              "slug (renaming the title would start afresh)")
    title: Text = Field(description="unique within the sheet: cards link back to it by title")
    role: RoleName | None = Field(None, description="the role the panel is about: its title "
                                   "is drawn in that role's colour and cue, as the legend shows")
    span: int = Field(1, ge=1, le=4, description="grid columns the panel spans")
    source: Text | list[Text] | None = Field(
        None, description="citation(s) for the panel's facts: numbered at its title, listed at "
                          "the sheet's foot")
    blocks: list[Block] = Field(min_length=1)

    @property
    def key(self) -> str:
        """The panel's stable id: its own, or its title's slug."""
        return self.id or slugify(self.title)


def slugify(text: str) -> str:
    """`Worked: GPUs × days` → `worked-gpus-days`: a Slug of whole words, at most 40 characters."""
    slug = ""
    for word in re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", text).lower()):
        if slug and len(slug) + 1 + len(word) > 40:
            break
        slug = f"{slug}-{word}" if slug else word[:40]
    return slug or "panel"


class Sheet(Strict):
    """A one-pager: panels of typed blocks laid on a grid."""

    id: Slug
    title: DeckName = Field(description="also the name of the sheet's Anki sub-deck")
    position: int = Field(ge=1, le=99, description="place in the seed's sequence (appendix: 90+)")
    seed: str = Field(description="the seed step this sheet covers, in its words")
    orientation: Literal["portrait", "landscape"] = "landscape"
    columns: int = Field(3, ge=1, le=4)
    panels: list[Panel] = Field(min_length=1)

    @model_validator(mode="after")
    def _grid(self) -> Sheet:
        titles: dict[str, int] = {}
        keys: dict[str, int] = {}
        for p, panel in enumerate(self.panels):
            if panel.span > self.columns:
                raise content_error(f"span {panel.span} is wider than the sheet's "
                                    f"{self.columns} columns", "panels", p, "span")
            if panel.title in titles:
                raise content_error(f"panel title {panel.title!r} is also used by panel "
                                    f"{titles[panel.title] + 1} (cards link to panels by title)",
                                    "panels", p, "title")
            titles[panel.title] = p
            if panel.key in keys:
                raise content_error(f"panel id {panel.key!r} is also panel {keys[panel.key] + 1}'s"
                                    " (give one an `id:` of its own)", "panels", p,
                                    "id" if panel.id else "title")
            keys[panel.key] = p
        return self


# Card sets -------------------------------------------------------------------------------------


class NoteBase(Strict):
    id: Slug = Field(description="stable forever: the Anki GUID is derived from it")
    tags: list[Tag_] = []
    source: Text | None = Field(None, description="citation for the fact")
    panel: DeckName | None = Field(None, description="title of the panel on the sheet it drills")
    figure: str | None = Field(None, description="a registered drawing (mlgrind/figures/) with "
                               "literal arguments, shown with the answer")


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


# An Anki cloze deletion, {{c1::answer}} or {{c1::answer::hint}}; the markers are literal text.
_CLOZE = re.compile(r"\{\{c(\d+)::(.*?)\}\}", re.DOTALL)


def _has_cloze(text: str) -> str:
    deletions = _CLOZE.findall(text)
    if not deletions:
        raise content_error("a cloze note needs at least one deletion {{c1::…}}")
    for number, content in deletions:
        if int(number) < 1:
            raise content_error(f"cloze deletion c{number}: numbers start at c1")
        if not content.split("::")[0].strip():
            raise content_error(f"cloze deletion c{number} is empty")
        if content.count("\\(") != content.count("\\)"):  # Anki ends it at the first }}
            raise content_error(f"cloze deletion c{number} ends at a '}}}}' inside its maths; "
                                "write '} }' there")
    return text


class ClozeNote(NoteBase):
    type: Literal["cloze"]
    text: Annotated[Text, AfterValidator(_has_cloze)] = Field(
        description="with Anki cloze deletions {{c1::…}}",
        json_schema_extra={"pattern": r"\{\{c[0-9]+::"})
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
    source: Text | None = Field(None, description="citation for every note that gives none")
    panel: DeckName | None = Field(None, description="the panel every note drills unless it "
                                   "names its own")
    notes: list[Note] = Field(min_length=1)


def json_schema() -> dict[str, Any]:
    """One schema for editors: a file is either a sheet or a card set."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(Union[Sheet, CardSet]).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlgrind source (onepagers/*.yaml or cards/*.yaml)"
    return schema
