"""Maths as vector graphics: LaTeX → SVG with ziamath (pure Python, no TeX, no browser).

Two macros colour maths by role, as the scaling book does: `\\dim{BLD}` colours each
dimension letter by its family (from the notation table), `\\role{name}{…}` colours anything by
a palette role. They expand to plain `\\color`, so MathJax on cards reads them too.
"""

from __future__ import annotations

import functools
import re

from markupsafe import Markup

from .palette import ROLES
from .ref.notation import LETTERS

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


@functools.lru_cache(maxsize=1024)
def svg(tex: str, *, inline: bool = False) -> Markup:
    """The formula as an inline <svg> element; inline maths sits on the text's baseline."""
    import ziamath  # about 0.2 s to import: only when a sheet has maths to draw

    # Plain paths rather than <symbol>/<use>: symbol ids would clash between formulas.
    ziamath.config.svg2 = False
    try:
        math = ziamath.Latex(expand_macros(tex), size=SIZE_PX)
        drawing = math.svg()
    except MathsError:
        raise
    except Exception as error:  # ziamath/latex2mathml reject malformed LaTeX in many ways
        raise MathsError(f"cannot typeset {tex!r}: {error or type(error).__name__}") from None
    if inline:
        _, height = math.getsize()
        drawing = drawing.replace(
            "<svg ", f'<svg style="vertical-align:{-(height + math.getyofst()):.2f}px" ', 1)
    return Markup(drawing)
