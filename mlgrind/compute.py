"""Stage 3, compute: expand `${ … }` in text by calling registered computations, and nothing else.

An expression may only call `calc.<name>(…)` with literal arguments (numbers, strings, tuples,
lists). Everything else — other names, attributes, arithmetic, filters, blocks — is refused
before evaluation, so YAML can never run code; evaluation itself happens in Jinja's sandbox.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .facts import CALC, TABLES, shape_text


class ExpressionError(ValueError):
    """A `${ … }` that is malformed, calls something unknown, or whose computation failed."""


def _format(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | tuple):
        return value
    if isinstance(value, tuple):
        return shape_text(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


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
        raise ExpressionError("arguments in ${ } must be literals (numbers, strings, tuples)")
    for child in node.iter_child_nodes():
        _check_literal(child)


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> Any:
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as error:
        raise ExpressionError(f"malformed ${{ }}: {error.message}") from None
    _check(tree)
    return _ENV.from_string(tree)


# Private-use characters around each computed value when asked (`marked=True`): they survive
# markup and code rendering, so the recall edition can find every fact and blank it.
FACT_OPEN, FACT_CLOSE = "\ue000", "\ue001"


def _marking(fn: Any) -> Any:
    def marked(*args: Any, **kwargs: Any) -> str:
        return FACT_OPEN + str(_format(fn(*args, **kwargs))) + FACT_CLOSE
    return marked


_MARKED = {name: _marking(fn) for name, fn in CALC.items()}


def expand(text: str, *, marked: bool = False) -> str:
    """Text with every `${ calc.name(args) }` replaced by its computed, formatted value."""
    if "${" not in text:
        return text
    template = _compile(text)
    try:
        return template.render(calc=_MARKED if marked else CALC)
    except Exception as error:  # a registered computation rejected its arguments
        raise ExpressionError(f"computation failed: {type(error).__name__}: {error}") from None


def table_rows(name: str) -> list[list[str]]:
    if name not in TABLES:
        raise ExpressionError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name]()
