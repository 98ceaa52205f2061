"""Stage 2, validate: YAML data → schema models, and the checks that span files.

Schema errors are rewritten for people (an unknown key lists the keys that are allowed, with the
closest match first) and placed at the YAML line of the offending key or value. Cross-file
checks: ids unique across all files, card sets point at existing sheets and panels, sheet
positions unique.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import Problem
from .load import Loc, Source
from .schema import BLOCK_KINDS, NOTE_TYPES, CardSet, Sheet

M = TypeVar("M", bound=BaseModel)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The schema model that holds the value at `loc` (to list its allowed keys)."""
    current: Any = model
    for part in loc:
        while True:  # unwrap Optional / Annotated / list until we reach a model or dead end
            origin, args = typing.get_origin(current), typing.get_args(current)
            if origin is typing.Annotated:
                current = args[0]
            elif origin in (list,) and isinstance(part, int):
                current = args[0]
                break
            elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
                members = [a for a in args if a is not type(None)]
                tagged = {**BLOCK_KINDS, **NOTE_TYPES}
                if isinstance(part, str) and part in tagged and tagged[part] in _flat(members):
                    current = tagged[part]
                    part = None  # the tag itself consumed this loc element
                    break
                current = members[0]
            else:
                break
        if part is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif not isinstance(part, int):
            return None
    while typing.get_origin(current) is typing.Annotated:
        current = typing.get_args(current)[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _flat(types: list[Any]) -> list[Any]:
    out = []
    for t in types:
        out.append(typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t)
    return out


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Drop the union tags pydantic inserts into `loc`, keeping the path through the data."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
            path.append(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
            path.append(part)
    return tuple(path)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_model(source: Source, model: type[M]) -> tuple[M | None, list[Problem]]:
    try:
        return model.model_validate(source.data), []
    except ValidationError as error:
        errors = error.errors()
    # A misspelt key is one mistake, not two: drop "missing 'title'" beside "unknown 'titel'".
    misspelt = {(e["loc"][:-1], match) for e in errors if e["type"] == "extra_forbidden"
                for match in _close_keys(model, e["loc"])}
    return None, [_problem(source, model, e, _data_loc(source.data, e["loc"])) for e in errors
                  if not (e["type"] == "missing" and (e["loc"][:-1], e["loc"][-1]) in misspelt)]


def _close_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    parent = _model_at(model, loc[:-1])
    return difflib.get_close_matches(str(loc[-1]), list(parent.model_fields) if parent else [], n=1)


def _problem(source: Source, model: type[BaseModel], e: dict[str, Any], loc: Loc) -> Problem:
    kind, key = e["type"], (loc[-1] if loc else None)
    if kind == "extra_forbidden":
        parent = _model_at(model, e["loc"][:-1])
        allowed = list(parent.model_fields) if parent else []
        close = _close_keys(model, e["loc"])
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return source.problem(loc, f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})",
                              at_key=True)
    if kind == "missing":
        parent_loc = _data_loc(source.data, e["loc"][:-1])
        return source.problem(parent_loc, f"missing required key {e['loc'][-1]!r}")
    where = f"{key!r}: " if isinstance(key, str) else ""
    message = e["msg"][0].lower() + e["msg"][1:]
    if kind in ("block_kind", "note_type"):
        return source.problem(loc, e["msg"])
    return source.problem(loc, f"{where}{message} (got {_describe(e['input'])})")


def cross_check(sheets: list[tuple[Source, Sheet]], cardsets: list[tuple[Source, CardSet]], *,
                sheets_complete: bool) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}

    def unique(kind: str, ident: str, source: Source, loc: Loc) -> None:
        key = f"{kind}:{ident}"
        if key in seen:
            problems.append(source.problem(loc, f"duplicate {kind} id {ident!r} (first used at {seen[key]})"))
        else:
            where = source.problem(loc, "")
            seen[key] = f"{where.file}:{where.line}"

    positions: dict[int, str] = {}
    for source, sheet in sheets:
        unique("sheet", sheet.id, source, ("id",))
        if sheet.position in positions:
            problems.append(source.problem(
                ("position",), f"position {sheet.position} is also used by sheet {positions[sheet.position]!r}"))
        positions.setdefault(sheet.position, sheet.id)

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in cardsets:
        sheet = by_id.get(cards.sheet)
        if sheet is None and sheets_complete:
            problems.append(source.problem(
                ("sheet",), f"no one-pager has id {cards.sheet!r} (known: {', '.join(sorted(by_id))})"))
        panels = {p.title for p in sheet.panels} if sheet else set()
        for n, note in enumerate(cards.notes):
            unique("note", note.id, source, ("notes", n, "id"))
            if sheet and note.panel is not None and note.panel not in panels:
                problems.append(source.problem(
                    ("notes", n, "panel"),
                    f"sheet {sheet.id!r} has no panel titled {note.panel!r} "
                    f"(panels: {', '.join(sorted(panels))})"))
    return problems
