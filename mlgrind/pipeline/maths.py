"""Maths as vector graphics: LaTeX → SVG with ziamath (pure Python, no TeX, no browser).

Two macros colour maths by role, as the scaling book does: `\\dim{BLD}` colours each
dimension letter by its family (from the notation table), `\\role{name}{…}` colours anything by
a palette role. They expand to plain `\\color`, so MathJax on cards reads them too.

Maths is checked against an allow-list of commands before anything else, on sheets and cards
alike: on a card it runs in the learner's Anki, whose MathJax follows `\\href`, `\\style`,
`\\require` and the like, and colour must come from the palette, through the two macros alone.
"""

from __future__ import annotations

import difflib
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


# The commands maths may use, without their backslash: the standard vocabulary of the sheets,
# each drawn by ziamath and by MathJax. Nothing that links, scripts, styles, colours, defines
# macros or loads extensions (\href, \style, \class, \color, \def, \require, \unicode, …).
_FAMILIES: dict[str, list[str]] = {
    "Greek letters": (
        "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu "
        "xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
        "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega").split(),
    "fractions and roots": "frac dfrac tfrac binom sqrt".split(),
    "accents and braces": (
        "hat widehat bar overline underline tilde widetilde vec dot ddot "
        "overbrace underbrace overset underset stackrel").split(),
    "big operators": "sum prod coprod int iint oint bigcup bigcap limits nolimits substack".split(),
    "operator names": (
        "operatorname lim limsup liminf log ln lg exp max min sup inf arg det ker Pr gcd deg "
        "sin cos tan sinh cosh tanh bmod pmod").split(),
    "binary operators": (
        "cdot times div pm mp ast star circ bullet odot oplus otimes cup cap setminus "
        "wedge vee").split(),
    "relations": (
        "le leq ge geq ne neq approx sim simeq cong equiv propto ll gg in notin ni "
        "subset subseteq supset supseteq mid parallel perp not colon").split(),
    "arrows": (
        "to gets rightarrow leftarrow leftrightarrow Rightarrow Leftarrow Leftrightarrow "
        "longrightarrow longleftarrow Longrightarrow implies iff mapsto uparrow downarrow").split(),
    "delimiters": (
        "left right middle big Big bigg Bigg bigl bigr Bigl Bigr langle rangle lfloor rfloor "
        "lceil rceil vert Vert lvert rvert lVert rVert lbrace rbrace { } |").split(),
    "symbols": (
        "ldots cdots vdots ddots dots infty partial nabla ell hbar emptyset varnothing forall "
        "exists neg lnot top bot intercal dagger prime angle # % & $ _").split(),
    "fonts and text": (
        "text textbf textit mathrm mathbf mathit mathsf mathtt mathcal mathbb boldsymbol").split(),
    # \, \: \; \! and \  (spaces), \\ (a new row), then the words
    "spacing and rows": [",", ":", ";", "!", " ", "\\", "quad", "qquad", "begin", "end", "hline"],
    "palette": ["dim", "role"],
}
ALLOWED = frozenset(name for names in _FAMILIES.values() for name in names)

# A command is a backslash and its letters, or a backslash and one other character (\,). Braces
# are counted too: MathJax ends maths at its closing delimiter only outside braces, so an unclosed
# `{` would carry the text after the maths into it, unchecked.
_TOKEN = re.compile(r"\\([A-Za-z]+|.?)|[{}]", re.DOTALL)


def check(tex: str) -> None:
    """Refuse a command off the allow-list (naming it), or unbalanced braces."""
    depth = 0
    for token in _TOKEN.finditer(tex):
        name = token.group(1)
        if name is None:
            depth += 1 if token.group() == "{" else -1
            if depth < 0:
                break
        elif name not in ALLOWED:
            close = difflib.get_close_matches(name, ALLOWED, n=1, cutoff=0.75)
            hint = (": colour comes only from \\role{name}{…} and \\dim{…}" if "color" in name.lower()
                    else f"; did you mean \\{close[0]}?" if close else "")
            command = f"\\{name}" if name else "a lone \\ at the end"
            raise MathsError(f"{command} is not an allowed maths command{hint} "
                             f"(allowed: {', '.join(_FAMILIES)})")
    if depth:
        raise MathsError(f"unbalanced braces in {tex!r}")


def expand_macros(tex: str) -> str:
    """The maths of a source, checked (`check`), with `\\dim{…}` and `\\role{…}{` → `\\color`;
    unknown letters or roles are errors."""
    check(tex)

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


def monochrome(tex: str) -> str:
    """`tex` without its colours, for the recall edition: `\\dim{BL}` → `\\mathbf{BL}` (the
    letters stay bold, as every family is), `\\role{r}{x}` → `{x}`."""
    return _ROLE.sub("{", _DIM.sub(r"\\mathbf{\1}", tex))


def roles_in(tex: str) -> set[str]:
    """The palette roles a formula's macros colour with, for the sheet's legend: the maths is
    drawn as paths, so its colours cannot be read back from the HTML."""
    families = {LETTERS[c].family for m in _DIM.finditer(tex) for c in m.group(1) if c in LETTERS}
    return families | {m.group(1) for m in _ROLE.finditer(tex) if m.group(1) in ROLES}


class Typeset:
    """Formulas already typeset, kept between builds in the cache (ziamath takes most of a
    second to load its font: a no-op rebuild should not pay it). Keyed by the LaTeX after
    macro expansion, so a palette or notation change is a new key, and by ziamath's version."""

    def __init__(self, svgs: dict[str, str]):
        self.svgs = svgs

    @classmethod
    def load(cls, path: Path | None) -> Typeset:
        try:
            stored = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            stored = {}  # no cache, or a damaged one: only a slower build
        return cls({key: svg for key, svg in stored.items() if isinstance(svg, str)}
                   if isinstance(stored, dict) else {})

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
