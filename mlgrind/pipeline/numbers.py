"""Stage 3, compute (its check): every number on a sheet or card is bound to a computation.

A number typed into a fact-bearing field (a table cell, a formula, a list item, a note, a
caption; a card's answer side) could drift from the reference package that should produce it,
so `unbound` finds every digit sequence in such a field that no computation produced. What is
not a fact, by rule:

- anything inside `${ … }` (computed; its arguments are the computation's inputs), and code
  (a code block, or an inline `code` span): literals in code are the program's inputs;
- a number the question gives, marked as an input where the learner sees it:
  `[4096]{.given}` in text, `\\role{given}{4096}` in maths (drawn in the palette's `given` style);
- names: a word that starts with a letter (`H100`, `fp16`, `Llama-3-8B`, `ZeRO-3`, `x_1`,
  `arXiv:2203.15556`), a number joined to a word by a hyphen (`2-layer`, `1-D`), a word of
  digits and letters that ends in a digit (`1F1B`);
- a year in a citation: `(2024)`, `(Vaswani et al., 2017)`, `et al. 2022`;
- in maths, a superscript or subscript (`x^2`, `\\sum_{i=1}`);
- the digits 0 and 1 standing alone (axis 0, 1/√K, leading 1s): identities, not data.

Card fronts (the question), titles, headers and labels, and `source:` fields are not fact-bearing.
"""

from __future__ import annotations

import re

_NUMBER = "[0-9]+(?:[.,][0-9]+)*"
_WORD = re.compile(r"(?<![0-9A-Za-z_])[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[A-Za-z0-9_.:/\\-]+")
_YEAR = "(?:19|20)[0-9]{2}[a-z]?"
_CITED_YEAR = re.compile(rf"(?<=\()\s*{_YEAR}(?=\))|(?<=[(,;] ){_YEAR}(?=\))|(?<=et al\. ){_YEAR}"
                         rf"|(?<=et al\., ){_YEAR}|(?<=et al ){_YEAR}")
_GIVEN = re.compile(r"\[[^\[\]]*\]\{\.given\}|\\role\{given\}\{[^{}]*\}")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_MATHS = re.compile(r"\\\((.*?)\\\)", re.DOTALL)
_SCRIPT = re.compile(r"[\^_](?:\{[^{}]*\}|\\?[A-Za-z0-9])")


def unbound(text: str, *, tex: bool = False) -> list[tuple[int, str]]:
    """Each typed number no computation produced, with its offset in `text`; `tex`: the whole
    field is maths (a formula block)."""
    masked = _mask_expressions(text)
    masked = _blank(_GIVEN, masked)
    if tex:
        masked = _blank(_SCRIPT, masked)
    else:
        masked = _blank(_CODE_SPAN, masked)
        masked = _INLINE_MATHS.sub(lambda m: m[0][:2] + _blank(_SCRIPT, m[1]) + m[0][-2:], masked)
    masked = _blank(_CITED_YEAR, masked)
    found = []
    for word in _WORD.finditer(masked):
        token = word[0]
        start = word.start() + len(token) - len(token.lstrip(".:/-\\"))
        token = token.lstrip(".:/-\\").rstrip(".:/-\\")
        number = _number(token)
        if number:
            found.append((start, number))
    return found


def _number(token: str) -> str | None:
    """The number a word states, or None: a name, a compound, or 0 or 1 alone."""
    number = re.match(_NUMBER, token)
    if number is None:
        return None  # a name: it starts with a letter (or a backslash command)
    rest = token[number.end():]
    if re.match(r"-[A-Za-z]|[A-Za-z]+[0-9]", rest):
        return None  # a compound (2-layer, 1-D) or a name like 1F1B
    if number[0] in ("0", "1") and not re.match(r"[A-Za-z0-9]", rest[:1] if rest != "s" else ""):
        return None  # 0 and 1 alone (1/√K, leading 1s): identities, not data
    return number[0]


def _blank(pattern: re.Pattern[str], text: str) -> str:
    """`text` with every match of `pattern` replaced by spaces, so offsets stay put."""
    return pattern.sub(lambda m: " " * len(m[0]), text)


def _mask_expressions(text: str) -> str:
    """`text` with each `${ … }` blanked (strings and nested brackets respected); `$${` is a
    literal and stays."""
    out, i = list(text), 0
    while (i := text.find("${", i)) != -1:
        if i and text[i - 1] == "$":
            i += 2
            continue
        depth, j, quote = 0, i + 1, ""
        while j < len(text):
            c = text[j]
            if quote:
                quote = "" if c == quote and text[j - 1] != "\\" else quote
            elif c in "'\"":
                quote = c
            elif c in "{([":
                depth += 1
            elif c in "})]":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out[i:j + 1] = " " * (min(j, len(text) - 1) + 1 - i)
        i = j + 1
    return "".join(out)


def locate(file_text: str, line: int, col: int, field: str, offset: int,
           number: str) -> tuple[int, int]:
    """The line and column in the YAML file of the number at `offset` in the field's value,
    which starts at (`line`, `col`): the same occurrence of the same digits, counted from the
    field's start (escapes and folding make raw and parsed text differ, so offsets do not map
    one to one). The field's own position if it cannot be found."""
    whole = rf"(?<![0-9A-Za-z_]){re.escape(number)}(?![0-9])"
    nth = sum(1 for m in re.finditer(whole, field) if m.start() < offset)
    lines = file_text.splitlines(keepends=True)
    start = sum(len(x) for x in lines[:line - 1]) + col - 1
    for k, match in enumerate(re.finditer(whole, file_text[start:])):
        if k == nth:
            at = start + match.start()
            before = file_text[:at]
            return before.count("\n") + 1, at - (before.rfind("\n") + 1) + 1
    return line, col
