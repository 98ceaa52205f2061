"""The field types every schema model is built from (`schema.py`, `blocks.py`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

from ..palette import ROLES

RoleName = Literal[tuple(ROLES)]  # type: ignore[valid-type]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
Tag_ = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:-]+$")]
Text = Annotated[str, Field(description="markup: Markdown inline, [text]{.role}, ${ calc.x() }")]


def content_error(message: str, *at: str | int) -> PydanticCustomError:
    """A rule broken inside a model, blamed on the field at `at` below it."""
    return PydanticCustomError("content_error", "{message}", {"message": message, "at": at})


def _no_deck_separator(text: str, info: ValidationInfo) -> str:
    if "::" in text:
        raise content_error(f"{info.field_name!r} may not contain '::' (Anki reads it as a "
                            "sub-deck)")
    return text


# Sheet titles name Anki decks and panel titles are shown beside them: `::` would nest decks.
DeckName = Annotated[str, AfterValidator(_no_deck_separator),
                     Field(json_schema_extra={"not": {"pattern": "::"}})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
