"""Stage 1, load: read YAML sources safely and remember where every value came from.

Only YAML's safe subset is accepted (no `!!python/...` tags), aliases are refused outright (a
"billion laughs" document fails at its first `*alias`, before anything is expanded), nesting is
capped (`[[[[…]]]]` fails at the level too deep, before Python's recursion limit) and duplicate
keys are errors rather than silently overwritten. Every value's line and column is kept in a
`Positions` map so later stages can point at it. Where PyYAML has libyaml, its C parser reads the
text (several times faster on a large card set) under the same composer, which does the refusing.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .problems import Problem, Problems

MAX_BYTES = 1_000_000  # a study sheet is a few kB; anything this big is a mistake
MAX_DEPTH = 32  # a sheet nests ~10 levels (panels, blocks, table, rows, cells)

Loc = tuple[str | int, ...]


@dataclass
class Source:
    """One YAML file: its data, and the position of every value and key in it."""

    path: Path
    name: str  # as shown in messages, relative to the project
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> Problem:
        """A problem at `loc`, or at its nearest enclosing value that has a position."""
        table = self.keys if at_key else self.values
        for end in range(len(loc), -1, -1):
            where = table.get(loc[:end]) or self.values.get(loc[:end])
            if where:
                return Problem(self.name, *where, message)
        return Problem(self.name, 1, 1, message)


class _Composer(Composer):
    """PyYAML's composer, refusing aliases and deep nesting as it goes."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"aliases (*{event.anchor}) are not allowed in mlgrind sources; "
                "write the value out",
                problem_mark=event.start_mark,
            )
        # PyYAML composes (and we walk) nested values recursively: refuse deep nesting here,
        # with its position, rather than meet Python's recursion limit later.
        if self.depth >= MAX_DEPTH:
            raise yaml.MarkedYAMLError(
                problem=f"nested more than {MAX_DEPTH} levels deep",
                problem_mark=self.peek_event().start_mark,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Loader(Reader, Scanner, Parser, _Composer, SafeConstructor, Resolver):
    """PyYAML in pure Python: yaml.SafeLoader with our composer."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """The same loader, with libyaml's C scanner and parser under our composer (about 6
        times faster on a large card set): the composer is ours, so aliases and depth are
        refused exactly as in pure Python, with the same positions (libyaml counts lines,
        columns and character offsets alike). A document it refuses is read again in pure
        Python, whose messages are the ones we show (libyaml words syntax errors its own way)."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    LOADERS: tuple[type, ...] = (_CLoader, _Loader)
else:  # PyYAML built without libyaml: pure Python only
    LOADERS = (_Loader,)


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


# Control characters (but tab and newline) have no place in a study text, and one breaks a deck
# outright: Anki separates a note's fields with U+001F. YAML lets them in only as escapes in
# double quotes ("\x1f", "\u001f", "\e", …): this finds the escape, to point at it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What PyYAML's reader refuses in a file (it allows tab, newline, carriage return, NEL).
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0abtvfreN_LP\x20/\\\"])")


def _control_character(node: ScalarNode, text: str, source: Source, problems: Problems) -> None:
    found = _CONTROL.search(node.value)
    if found is None:
        return
    line, col = _mark(node)
    raw = text[node.start_mark.index:node.end_mark.index]
    for escape in _ESCAPE.finditer(raw):
        decoded = escape.group().encode("latin-1", "backslashreplace").decode("unicode_escape")
        if _CONTROL.fullmatch(decoded):
            before = raw[:escape.start()]
            line += before.count("\n")
            col = col + len(before) if "\n" not in before else len(before) - before.rindex("\n")
            break
    problems.add(Problem(source.name, line, col, (
        f"control character U+{ord(found.group()):04X} in text: sheets and Anki fields cannot "
        "hold it (only tab and newline are allowed); delete it")))


def _walk(node: Node, loc: Loc, source: Source, problems: Problems, text: str) -> None:
    source.values[loc] = _mark(node)
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        _control_character(node, text, source, problems)
    if isinstance(node, MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.add(Problem(source.name, *_mark(key_node), f"duplicate key {key!r}"))
            seen.add(key)
            source.keys[loc + (key,)] = _mark(key_node)
            _control_character(key_node, text, source, problems)
            _walk(value_node, loc + (key,), source, problems, text)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, loc + (index,), source, problems, text)


def load_yaml(path: Path, name: str, problems: Problems) -> Source | None:
    """Parse one file; on any problem add it to `problems` and return None, never raise."""
    def fail(line: int, col: int, message: str) -> None:
        problems.add(Problem(name, line, col, message))

    try:
        raw = path.read_bytes()
    except OSError as error:
        return fail(0, 0, f"cannot read: {error.strerror}")
    if len(raw) > MAX_BYTES:
        return fail(0, 0, f"file is {len(raw):,} bytes; the limit is {MAX_BYTES:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return fail(0, 0, f"not UTF-8 text (byte {error.start})")

    # PyYAML refuses these characters typed raw, with no line; find the first one here.
    if found := _UNPRINTABLE.search(text):
        line = text.count("\n", 0, found.start()) + 1
        col = found.start() - text.rfind("\n", 0, found.start())
        return fail(line, col, f"control character U+{ord(found.group()):04X} typed into the "
                    "file: sheets and Anki fields cannot hold it (only tab and newline are "
                    "allowed); delete it")
    text = text.removeprefix("\ufeff")  # offsets count from after it, whichever parser reads
    try:
        node, data = _parse(text)
    except _Refused as refused:
        return fail(*refused.args)

    source = Source(path=path, name=name, data=data)
    before = len(problems)
    _walk(node, (), source, problems, text)
    return source if len(problems) == before else None


class _Refused(Exception):
    """A document that does not parse: (line, column, message)."""


def _parse(text: str) -> tuple[Node, Any]:
    """The document's root node and its data, with libyaml when PyYAML has it; a document it
    refuses is read again in pure Python, so that the message is always pure Python's."""
    if len(LOADERS) > 1:
        with contextlib.suppress(_Refused):
            return _compose(text, LOADERS[0])
    return _compose(text, LOADERS[-1])


def _compose(text: str, loader_class: type) -> tuple[Node, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _Refused(1, 1, "file is empty; expected a mapping")
        return node, loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise _Refused(line, col, f"invalid YAML: {message}") from None
    except yaml.YAMLError as error:
        raise _Refused(1, 1, f"invalid YAML: {error}") from None
    except RecursionError:  # MAX_DEPTH keeps well clear of it; never a traceback regardless
        raise _Refused(1, 1, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
