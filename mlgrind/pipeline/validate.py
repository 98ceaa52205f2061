"""Stage 2, validate: YAML data → schema models, and the checks that span files.

Schema errors are rewritten for people (an unknown key lists the keys that are allowed, with the
closest match first) and placed at the YAML line of the offending key or value. Cross-file
checks: ids unique across all files, card sets point at existing sheets and panels, sheet
positions unique.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, Tag, ValidationError

from .problems import Problems
from .load import Loc, Source
from .schema import CardSet, Sheet

M = TypeVar("M", bound=BaseModel)


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated, list[…] and Optional[…] down to the type that holds keys."""
    while True:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin in (typing.Annotated, list):
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            annotation = next(a for a in args if a is not type(None))
        else:
            return annotation


def _tags(annotation: Any) -> dict[str, Any]:
    """The members of a tagged union by tag (a block kind, a note type); {} for any other type."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return {}
    members = {}
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            tag = next((m.tag for m in arg.__metadata__ if isinstance(m, Tag)), None)
            if tag is not None:
                members[tag] = typing.get_args(arg)[0]
    return members


def _resolve(model: type[BaseModel], loc: Loc) -> tuple[Loc, Any]:
    """pydantic's error location → the path through the data, and the schema type found there.

    pydantic names the member of a tagged union by its tag inside `loc`. The tag is read off the
    schema, walking `loc` alongside the model's types: a part is a tag exactly when the type at
    that point is a tagged union. (The data cannot tell: a `note` block's tag is also its key.)
    """
    path: list[str | int] = []
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            path.append(part)
            continue  # a list index: `_unwrap` already gives the item type
        holder = _unwrap(current)
        members = _tags(holder)
        if members:
            current = members.get(part)
            continue
        path.append(part)
        if isinstance(holder, type) and issubclass(holder, BaseModel) and part in holder.model_fields:
            current = holder.model_fields[part].annotation
        else:
            current = None
    return tuple(path), _unwrap(current)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The schema model holding the mapping at `loc` (pydantic's error location)."""
    holder = _resolve(model, loc)[1]
    return holder if isinstance(holder, type) and issubclass(holder, BaseModel) else None


def _data_loc(model: type[BaseModel], loc: Loc) -> Loc:
    """Drop the union tags pydantic inserts into `loc`, keeping the path through the data."""
    return _resolve(model, loc)[0]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_model(source: Source, model: type[M], problems: Problems) -> M | None:
    """The source as `model`, or None with every schema error added to `problems`."""
    try:
        return model.model_validate(source.data)
    except ValidationError as error:
        errors = error.errors()
    # A misspelt key is one mistake, not two: drop "missing 'title'" beside "unknown 'titel'".
    misspelt = {(e["loc"][:-1], match) for e in errors if e["type"] == "extra_forbidden"
                for match in _close_keys(model, e["loc"])}
    for e in errors:
        if not (e["type"] == "missing" and (e["loc"][:-1], e["loc"][-1]) in misspelt):
            problems.add(_problem(source, model, e))
    return None


def _close_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    parent = _model_at(model, loc[:-1])
    return difflib.get_close_matches(str(loc[-1]), list(parent.model_fields) if parent else [], n=1)


def _problem(source: Source, model: type[BaseModel], e: dict[str, Any]) -> Problem:
    kind = e["type"]
    if kind == "content_error":  # a schema rule that names the field to blame (schema.py)
        return source.problem(_data_loc(model, e["loc"] + e["ctx"]["at"]), e["ctx"]["message"])
    loc = _data_loc(model, e["loc"])
    key = loc[-1] if loc else None
    if kind == "extra_forbidden":
        parent = _model_at(model, e["loc"][:-1])
        allowed = list(parent.model_fields) if parent else []
        close = _close_keys(model, e["loc"])
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return source.problem(loc, f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})",
                              at_key=True)
    if kind == "missing":
        parent_loc = _data_loc(model, e["loc"][:-1])
        return source.problem(parent_loc, f"missing required key {e['loc'][-1]!r}")
    where = f"{key!r}: " if isinstance(key, str) else ""
    message = e["msg"][0].lower() + e["msg"][1:]
    if kind in ("block_kind", "note_type"):
        return source.problem(loc, e["msg"])
    return source.problem(loc, f"{where}{message} (got {_describe(e['input'])})")


def cross_check(sheets: list[tuple[Source, Sheet]], cardsets: list[tuple[Source, CardSet]],
                problems: Problems, *, sheets_complete: bool) -> None:
    seen: dict[str, str] = {}

    def unique(kind: str, ident: str, source: Source, loc: Loc) -> None:
        key = f"{kind}:{ident}"
        if key in seen:
            problems.add(source.problem(loc, f"duplicate {kind} id {ident!r} (first used at {seen[key]})"))
        else:
            where = source.problem(loc, "")
            seen[key] = f"{where.file}:{where.line}"

    positions: dict[int, str] = {}
    for source, sheet in sheets:
        unique("sheet", sheet.id, source, ("id",))
        if sheet.position in positions:
            problems.add(source.problem(
                ("position",), f"position {sheet.position} is also used by sheet {positions[sheet.position]!r}"))
        positions.setdefault(sheet.position, sheet.id)

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in cardsets:
        sheet = by_id.get(cards.sheet)
        if sheet is None and sheets_complete:
            problems.add(source.problem(
                ("sheet",), f"no one-pager has id {cards.sheet!r} (known: {', '.join(sorted(by_id))})"))
        panels = {p.title for p in sheet.panels} if sheet else set()
        named = [(("panel",), cards.panel)] + [(("notes", n, "panel"), note.panel)
                                               for n, note in enumerate(cards.notes)]
        for loc, panel in named:
            if sheet and panel is not None and panel not in panels:
                problems.add(source.problem(loc, (
                    f"sheet {sheet.id!r} has no panel titled {panel!r} "
                    f"(panels: {', '.join(sorted(panels))})")))
        for n, note in enumerate(cards.notes):
            unique("note", note.id, source, ("notes", n, "id"))
