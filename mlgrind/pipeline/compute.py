"""Stage 3, compute: expand `${ … }` in text by calling registered computations, and nothing else.

An expression may only call `calc.<name>(…)` with literal arguments (numbers, strings, tuples,
lists). A table's `rows_from` and a figure name their computation the same way, without `calc.`
and outside `${ }`: `ring_collective(ranks=4)`, evaluated by `call`. Everything else — other names, attributes, arithmetic, filters, blocks — is refused
before evaluation, so YAML can never run code; evaluation itself happens in Jinja's sandbox.
Brackets nest at most `MAX_NESTING` deep, so no argument can exhaust the parser's recursion, and
an integer literal has at most `MAX_DIGITS` digits, so none costs anything to read or print; each
computation bounds its own arguments further (`mlgrind.facts`, `mlgrind.figures.args`).
`$${` is a literal `${` (for shell or template code in a code block).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..facts import CALC, TABLES, int_text, shape_text
from . import fresh


class ExpressionError(ValueError):
    """A `${ … }` that is malformed, calls something unknown, or whose computation failed."""


def _format(value: Any) -> str:
    """A computed value as sheet text. Never Python's refusal to print an integer of more than
    4,300 digits: a long integer is printed in scientific notation (`int_text`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | tuple):
        return str(value)
    if isinstance(value, tuple):
        return shape_text(tuple(int_text(n) if isinstance(n, int) and abs(n) >= 10**21 else n
                                for n in value))
    return int_text(value) if isinstance(value, int) else f"{value:.4g}"


_ENV = ImmutableSandboxedEnvironment(
    variable_start_string="${",
    variable_end_string="}",
    # Blocks and comments are not part of the content language; these delimiters keep `{%`,
    # `{#` and Anki's `{{c1::…}}` literal.
    block_start_string="${%",
    block_end_string="%}",
    comment_start_string="${#",
    comment_end_string="#}",
    undefined=StrictUndefined,
    autoescape=False,
    finalize=_format,
    keep_trailing_newline=True,
)

_LITERALS = (nodes.Const, nodes.Tuple, nodes.List, nodes.Neg, nodes.Keyword)


def _check(node: nodes.Node) -> None:
    if isinstance(node, nodes.Call):
        callee = node.node
        if not (isinstance(callee, nodes.Getattr) and isinstance(callee.node, nodes.Name)
                and callee.node.name == "calc"):
            raise ExpressionError("only calls of the form calc.<name>(…) are allowed in ${ }")
        if callee.attr not in CALC:
            raise ExpressionError(
                f"unknown computed value calc.{callee.attr}; known: {', '.join(sorted(CALC))}")
        if node.dyn_args or node.dyn_kwargs:
            raise ExpressionError("*args and **kwargs are not allowed in ${ }")
        for arg in [*node.args, *node.kwargs]:
            _check_literal(arg)
    elif isinstance(node, nodes.Output):
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData):
                _check(child)
    elif not isinstance(node, nodes.Template):
        raise ExpressionError("a ${ } must hold exactly one call calc.<name>(…)")
    else:
        for child in node.body:
            _check(child)


def _check_literal(node: nodes.Node) -> None:
    if not isinstance(node, _LITERALS):
        raise ExpressionError("arguments must be literals (numbers, strings, tuples, lists)")
    for child in node.iter_child_nodes():
        _check_literal(child)


MAX_NESTING = 8  # shapes nest two deep, ((2, 3), (4,)); Jinja's parser recurses per level
# No fact needs a literal of 10^18 or more (NumPy indexes up to 2^63 ≈ 9.2·10^18), and Jinja's
# lexer converts a literal with int(): past 4,300 digits Python refuses, below that it takes
# quadratic time.
MAX_DIGITS = 18


def _check_tokens(text: str, what: str = "a ${ }", state: str | None = None) -> None:
    """Refuse deep brackets and long integer literals in the raw token stream, before Jinja
    converts or parses anything (the lexer does not recurse). `state="variable"` reads `text` as
    the inside of a `${ }`, as `call` does; `what` names the text in messages."""
    depth = 0
    for _, kind, value in _ENV.lexer.tokeniter(text, None, state=state):
        if kind == "integer" and len(value.replace("_", "")) > MAX_DIGITS:
            digits = len(value.replace("_", ""))
            raise ExpressionError(f"{what} has an integer literal {value[:8]}… of {digits:,} "
                                  f"digits; at most {MAX_DIGITS} are allowed")
        if kind == "operator" and value in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise ExpressionError(f"{what} nests brackets more than {MAX_NESTING} deep")
        elif kind == "operator" and value in ")]}":
            depth -= 1


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> Any:
    try:
        _check_tokens(text)
        tree = _ENV.parse(text)
        _check(tree)
        return _ENV.from_string(tree)
    except TemplateSyntaxError as error:
        raise ExpressionError(f"malformed ${{ }}: {error.message}") from None
    except RecursionError:  # e.g. a long run of unary minus signs: no brackets, still deep
        raise ExpressionError("a ${ } nests too deeply") from None


# Private-use characters around each computed value when asked (`marked=True`): they survive
# markup and code rendering, so the recall edition can find every fact and blank it.
FACT_OPEN, FACT_CLOSE = "\ue000", "\ue001"


def _marking(fn: Any) -> Any:
    def marked(*args: Any, **kwargs: Any) -> str:
        return FACT_OPEN + _format(fn(*args, **kwargs)) + FACT_CLOSE
    return marked


_MARKED = {name: _marking(fn) for name, fn in CALC.items()}


# `$${` stands for a literal `${`: it is swapped for this private-use character before Jinja
# reads the text, and back after.
_LITERAL = "\ue002"


def expand(text: str, *, marked: bool = False) -> str:
    """Text with every `${ calc.name(args) }` replaced by its computed, formatted value."""
    if "${" not in text:
        return text
    text = text.replace("$${", _LITERAL)
    if "${" in text:
        template = _compile(text)
        try:
            text = template.render(calc=_MARKED if marked else CALC)
        except Exception as error:  # a registered computation rejected its arguments
            raise ExpressionError(f"computation failed: {type(error).__name__}: {error}") from None
    return text.replace(_LITERAL, "${")


# A `${` that starts a computation (`$${` is a literal `${`).
COMPUTED = re.compile(r"(?<!\$)\$\{")


def call(text: str, registry: Mapping[str, Callable[..., Any]], what: str, **extra: Any) -> Any:
    """`name(literal, key=literal)`, or a bare `name`, evaluated: `registry[name]` called with
    those literals and `extra`. `what` names the registry in messages ("table", "figure")."""
    try:
        _check_tokens(text, f"the {what}", state="variable")
        parser = Parser(_ENV, text, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            raise ExpressionError(f"expected one {what} call like name(arg=1), got {text!r}")
    except TemplateSyntaxError as error:
        raise ExpressionError(f"malformed {what}: {error.message}") from None
    except RecursionError:
        raise ExpressionError(f"the {what} nests too deeply") from None
    call_node = node if isinstance(node, nodes.Call) else nodes.Call(node, [], [], None, None)
    name = call_node.node.name if isinstance(call_node.node, nodes.Name) else None
    if name is None or call_node.dyn_args or call_node.dyn_kwargs:
        raise ExpressionError(f"a {what} is a registered name with literal arguments, like "
                              f"name(arg=1); got {text!r}")
    if name not in registry:
        raise ExpressionError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
    for arg in [*call_node.args, *(kw.value for kw in call_node.kwargs)]:
        _check_literal(arg)
    context = nodes.EvalContext(_ENV)
    try:
        args = [arg.as_const(context) for arg in call_node.args]
        kwargs = {kw.key: kw.value.as_const(context) for kw in call_node.kwargs}
    except nodes.Impossible:  # e.g. -'a'
        raise ExpressionError(f"the arguments of {text!r} are not literal values") from None
    clash = sorted(set(kwargs) & set(extra))
    if clash:
        raise ExpressionError(f"{', '.join(clash)} is set by the sheet, not in the {what}")
    try:
        return registry[name](*args, **kwargs, **extra)
    except Exception as error:  # a registered computation rejected its arguments
        raise ExpressionError(f"{what} {name} failed: {type(error).__name__}: {error}") from None


class Values:
    """Computed values kept between builds in the cache: the expanded text of each `${ }` field
    and the rows of each `rows_from` table. A value depends on nothing but its expression and
    the code that computes it (mlgrind's own, NumPy, Jinja), whose digest keys the whole file:
    a rebuild with unchanged code runs no reference computation again. Only what this run used
    is written back, so the file never outgrows the content."""

    def __init__(self, known: dict[str, Any]):
        self.known, self.used = known, {}

    @classmethod
    def load(cls, path: Path | None) -> Values:
        try:
            stored = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            stored = {}  # no cache, or a damaged one: only a slower build
        current = isinstance(stored, dict) and stored.get("code") == _code_digest()
        return cls(stored["values"] if current and isinstance(stored.get("values"), dict) else {})

    def dumps(self) -> bytes:
        return json.dumps({"code": _code_digest(), "values": self.used}, sort_keys=True,
                          ensure_ascii=False).encode()

    def expand(self, text: str, *, marked: bool = False) -> str:
        """`expand`, remembered."""
        if "${" not in text:
            return text
        return self._remember(f"{'marked' if marked else 'plain'} {text}",
                              lambda value: isinstance(value, str),
                              lambda: expand(text, marked=marked))

    def rows(self, text: str) -> list[list[str]]:
        """A `rows_from` table's rows (`call` on TABLES), remembered."""
        return self._remember(f"rows {text}", _is_rows, lambda: call(text, TABLES, "table"))

    def _remember(self, key: str, valid: Callable[[Any], bool], compute: Callable[[], Any]) -> Any:
        value = self.used.get(key, self.known.get(key))
        if not valid(value):
            value = compute()
        if valid(value):
            self.used[key] = value
        return value


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(row, list) and all(isinstance(cell, str) for cell in row) for row in value)


def _code_digest() -> str:
    """Everything a computed value can depend on besides its expression: every file of the
    mlgrind package (reference code, facts, calculator data: `fresh.code_digest`) and the
    versions of NumPy and Jinja (which evaluates and formats)."""
    versions = " ".join(f"{name} {importlib.metadata.version(name)}" for name in ("numpy", "jinja2"))
    return f"{fresh.code_digest()} {versions}"
