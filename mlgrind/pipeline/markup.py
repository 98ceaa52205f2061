"""Inline markup of text fields → safe HTML, the same for sheets and cards.

CommonMark inline syntax with raw HTML switched off (so `<` in a shape stays text), plus
`[text]{.role}` spans limited to palette roles and `\\( … \\)` / `\\[ … \\]` maths, checked by
`maths.check`. Inside code, every suffixed name (`x_BLD`) gets its dimension letters coloured by
their family, so the notation reads the same wherever it appears.
"""

from __future__ import annotations

import html
import re
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.attrs import attrs_plugin
from mdit_py_plugins.texmath import texmath_plugin

from . import maths
from ..palette import ROLES
from ..ref.notation import LETTERS, split_suffix

Target = Literal["sheet", "card"]

_SUFFIXED = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*_[A-Z]+\b")
# An einsum spec whose letters are all notation letters ("bld,df->blf"), not "ij,jk->ik".
_SPEC = re.compile(r"\b[a-z]+(?:,[a-z]+)*->[a-z]*")


def _letter(c: str) -> str:
    return f'<span class="r-{LETTERS[c.upper()].family}">{c}</span>'


class MarkupError(ValueError):
    pass


def colour_suffixes(code: str) -> str:
    """Escaped code with the letters of suffixes (`x_BLD`) and einsum specs in their roles."""
    out, last = [], 0
    for match in re.finditer(f"{_SUFFIXED.pattern}|{_SPEC.pattern}", code):
        text = match.group()
        if "->" in text:
            if not all(c.upper() in LETTERS for c in text if c.isalpha()):
                continue
            coloured = "".join(_letter(c) if c.isalpha() else html.escape(c) for c in text)
        else:
            parts = split_suffix(text)
            if parts is None:
                continue
            coloured = html.escape(parts[0]) + "_" + "".join(map(_letter, parts[1]))
        out.append(html.escape(code[last:match.start()]) + coloured)
        last = match.end()
    out.append(html.escape(code[last:]))
    return "".join(out)


def _parser(target: Target) -> MarkdownIt:
    md = (MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
          .disable(["link", "image", "autolink"])
          .use(attrs_plugin, spans=True)
          .use(texmath_plugin, delimiters="brackets"))

    def span_open(self, tokens, idx, options, env):  # type: ignore[no-untyped-def]
        attrs = dict(tokens[idx].attrs)
        roles = str(attrs.pop("class", "")).split()
        if attrs or len(roles) != 1 or roles[0] not in ROLES:
            raise MarkupError(
                f"a span takes exactly one role, like [text]{{.key}}; got {tokens[idx].attrs!r}; "
                f"roles: {', '.join(ROLES)}")
        return f'<span class="r-{roles[0]}">'

    def code_inline(self, tokens, idx, options, env):  # type: ignore[no-untyped-def]
        return f"<code>{colour_suffixes(tokens[idx].content)}</code>"

    def math(open_: str, close: str, inline: bool):  # type: ignore[no-untyped-def]
        if target == "card":  # Anki's MathJax reads these delimiters (and \color)
            return lambda self, tokens, idx, *_: html.escape(
                open_ + maths.expand_macros(tokens[idx].content) + close)
        return lambda self, tokens, idx, options, env: str(
            maths.svg(tokens[idx].content, env["typeset"], inline=inline))

    md.add_render_rule("span_open", span_open)
    md.add_render_rule("code_inline", code_inline)
    md.add_render_rule("math_inline", math(r"\(", r"\)", inline=True))
    md.add_render_rule("math_block", math(r"\[", r"\]", inline=False))
    return md


_PARSERS = {target: _parser(target) for target in ("sheet", "card")}


def inline(text: str, target: Target = "sheet", typeset: maths.Typeset | None = None) -> str:
    """One line (or paragraph) of markup as HTML, without a wrapping <p>. Sheets draw their
    maths (`typeset` keeps what was already typeset); cards leave it to Anki's MathJax."""
    env = {"typeset": typeset if typeset is not None else maths.Typeset({})}
    md = _PARSERS[target]
    tokens = md.parseInline(text, env)
    _maths_only_in_maths(tokens[0].children or [])
    return md.renderer.render(tokens, md.options, env).strip()


_NOT_TEXT = ("math_inline", "math_block", "code_inline")
# Anki fills in cloze deletions before MathJax runs (older versions an inactive one as bare text),
# so a delimiter may straddle their marks: they are read as absent.
_CLOZE_MARKS = re.compile(r"\{\{c\d+::|::|\}\}")


def _maths_only_in_maths(tokens: list[Token]) -> None:
    """No maths delimiter in the text around the maths. An escaped `\\\\(` or `&#92;(` is text
    to markdown, but Anki's MathJax reads `\\(` anywhere in a card's text but code (which it
    skips), and would typeset what follows without `maths.check`."""
    text = "".join("\n" if token.type in _NOT_TEXT else token.content for token in tokens)
    text = _CLOZE_MARKS.sub("", text)
    for delimiter in (r"\(", r"\["):
        if delimiter in text:
            raise MarkupError(f"{delimiter} in text, not maths, would start unchecked maths in "
                              f"Anki; write maths as \\( … \\), or the characters in `code`")

