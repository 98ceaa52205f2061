"""Maths as vector graphics: LaTeX → SVG with ziamath (pure Python, no TeX, no browser).

Two macros colour maths by role, as the scaling book does: `\\dim{BLD}` colours each
dimension letter by its family (from the notation table), `\\role{name}{…}` colours anything by
a palette role. They expand to plain `\\color`, so MathJax on cards reads them too.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
from pathlib import Path

from markupsafe import Markup

from ..palette import ROLES
from ..ref.notation import LETTERS

# Display maths at 10 pt keeps sub- and superscripts (70 %) at the 7-pt floor of the sheets.
SIZE_PX = 10 * 4 / 3

_DIM = re.compile(r"\\dim\{([^{}]*)\}")
_ROLE = re.compile(r"\\role\{([^{}]*)\}\{")


class MathsError(ValueError):
    pass


def expand_macros(tex: str) -> str:
    """`\\dim{…}` and `\\role{…}{` → `\\color`; unknown letters or roles are errors."""
    def dim(match: re.Match[str]) -> str:
        letters = match.group(1)
        unknown = [c for c in letters if c not in LETTERS]
        if unknown or not letters:
            raise MathsError(f"\\dim{{{letters}}}: not notation letters ({', '.join(LETTERS)})")
        return "".join(rf"{{\color{{{ROLES[LETTERS[c].family].colour}}}\mathbf{{{c}}}}}" for c in letters)

    def role(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ROLES:
            raise MathsError(f"\\role{{{name}}}: unknown role (roles: {', '.join(ROLES)})")
        return rf"{{\color{{{ROLES[name].colour}}}"  # `\role{r}{x}` → `{\color{…}x}`

    return _ROLE.sub(role, _DIM.sub(dim, tex))


class Typeset:
    """Formulas already typeset, kept between builds in the cache (ziamath takes most of a
    second to load its font: a no-op rebuild should not pay it). Keyed by the LaTeX after
    macro expansion, so a palette or notation change is a new key, and by ziamath's version."""

    def __init__(self, svgs: dict[str, str]):
        self.svgs = svgs

    @classmethod
    def load(cls, path: Path | None) -> Typeset:
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")) if path else {})
        except (OSError, ValueError):
            return cls({})  # no cache, or a damaged one: only a slower build

    def dumps(self) -> bytes:
        return json.dumps(self.svgs, sort_keys=True).encode()


@functools.cache
def _ziamath_version() -> str:
    return importlib.metadata.version("ziamath")


def svg(tex: str, typeset: Typeset, *, inline: bool = False) -> Markup:
    """The formula as an inline <svg> element; inline maths sits on the text's baseline."""
    expanded = expand_macros(tex)  # validates \dim and \role every time, cached or not
    key = f"{_ziamath_version()} {SIZE_PX} {inline} {expanded}"
    if key not in typeset.svgs:
        try:
            typeset.svgs[key] = _typeset(expanded, inline)
        except MathsError as error:
            raise MathsError(f"cannot typeset {tex!r}: {error}") from None
    return Markup(typeset.svgs[key])


@functools.lru_cache(maxsize=1024)
def _typeset(expanded: str, inline: bool) -> str:
    import ziamath  # slow to import and to load its font: only when a formula is new

    # Plain paths rather than <symbol>/<use>: symbol ids would clash between formulas.
    ziamath.config.svg2 = False
    try:
        math = ziamath.Latex(expanded, size=SIZE_PX)
        drawing = math.svg()
    except Exception as error:  # ziamath/latex2mathml reject malformed LaTeX in many ways
        raise MathsError(str(error) or type(error).__name__) from None
    if inline:
        _, height = math.getsize()
        drawing = drawing.replace(
            "<svg ", f'<svg style="vertical-align:{-(height + math.getyofst()):.2f}px" ', 1)
    return drawing
