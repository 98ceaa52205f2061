"""The one palette: every colour on a sheet or a card has a role, defined here once.

Five hues for the roles that come in sets (plus ink and red for maths and prose), chosen so
that every pair of a set stays apart (ΔE ≥ 15 in CAM02-UCS) for normal vision and
simulated deuteranopia, protanopia and tritanopia (tests/test_palette.py), each dark enough for
7-pt text on white. A hue means nothing by itself: the role gives it meaning within its kind
(a dimension family, a collective, a memory kind), and the legend on each sheet says which.
Every role within a kind also has its own grayscale cue (weight, style, decoration) and legend
glyph, so a black-and-white printout keeps the meaning. Sheets and cards both get their CSS
from `css()`; YAML names roles, never colours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (print colour, night-mode colour). Night colours are the same hues, lightened for Anki's
# dark background.
NAVY = ("#1e3a8a", "#93c5fd")
ORANGE = ("#ea580c", "#fdba74")
TEAL = ("#0d9488", "#5eead4")
MAGENTA = ("#c026d3", "#f0abfc")
BROWN = ("#713f12", "#e0b98a")
INK = ("#111111", "#f5f5f5")
RED = ("#b91c1c", "#ff8a8a")

# Neutrals for figures, print only (figures are drawn for paper): rules, axes and the hatch of
# idle time in mid gray, quieter than any role's hue; paper white for text on a solid fill, for
# the halo that clears a line behind a label, and behind a card's figure.
RULE = "#8c8c8c"
PAPER = "#ffffff"

KINDS = {
    "dimension": "Dimension letters",
    "collective": "Collectives",
    "memory": "Memory",
    "maths": "Maths",
    "prose": "Notes",
}


@dataclass(frozen=True)
class Role:
    name: str
    kind: str
    hue: tuple[str, str]
    label: str  # what the legend says
    cue: str  # CSS that carries the role without colour
    glyph: str  # the legend's marker, different for each role of a kind

    @property
    def colour(self) -> str:
        return self.hue[0]

    @property
    def night(self) -> str:
        return self.hue[1]


_BOLD, _ITALIC = "font-weight:700", "font-style:italic"
_UNDER, _DOTTED, _DASHED = ("text-decoration:underline", "text-decoration:underline dotted",
                            "text-decoration:underline dashed")

ROLES: dict[str, Role] = {
    role.name: role
    for role in [
        # Dimension-letter families (each letter's family is in mlgrind.ref.notation.LETTERS).
        Role("dim-batch", "dimension", NAVY, "batch / sequence (B L M)", _BOLD, "■"),
        Role("dim-model", "dimension", ORANGE, "model / hidden (D F V)", f"{_BOLD};{_ITALIC}", "●"),
        Role("dim-heads", "dimension", TEAL, "heads (H K G C R)", f"{_BOLD};{_UNDER}", "▲"),
        Role("dim-parallel", "dimension", MAGENTA, "shards / experts (S E)", f"{_BOLD};{_DOTTED}", "◆"),
        # Collectives.
        Role("all-reduce", "collective", NAVY, "all-reduce", _BOLD, "■"),
        Role("all-gather", "collective", TEAL, "all-gather", f"{_BOLD};{_UNDER}", "▲"),
        Role("reduce-scatter", "collective", ORANGE, "reduce-scatter", f"{_BOLD};{_ITALIC}", "●"),
        Role("all-to-all", "collective", MAGENTA, "all-to-all", f"{_BOLD};{_DOTTED}", "◆"),
        Role("p2p", "collective", BROWN, "send / recv", f"{_ITALIC};{_DASHED}", "★"),
        # Memory kinds.
        Role("params", "memory", NAVY, "parameters", _BOLD, "■"),
        Role("grads", "memory", ORANGE, "gradients", f"{_BOLD};{_ITALIC}", "●"),
        Role("optimizer", "memory", MAGENTA, "optimizer states", f"{_BOLD};{_DOTTED}", "◆"),
        Role("activations", "memory", TEAL, "activations", f"{_BOLD};{_UNDER}", "▲"),
        Role("kv-cache", "memory", BROWN, "KV cache", f"{_ITALIC};{_DASHED}", "★"),
        # Maths.
        Role("contract", "maths", BROWN, "contracted (summed) index", "text-decoration:overline", "★"),
        Role("result", "maths", INK, "computed by mlgrind", _BOLD, "■"),
        # A number the question gives (an input, not a fact to remember): the only kind of
        # typed number the number lint lets through.
        Role("given", "maths", TEAL, "given (an input)", _ITALIC, "○"),
        # Prose.
        Role("key", "prose", INK, "remember this", f"{_BOLD};background:#fff3b0", "■"),
        Role("pitfall", "prose", RED, "common mistake", _ITALIC, "●"),
    ]
}


# The recall edition is printed in ink: a role's colour or cue would tell what the learner is to
# recall (on sheet 01 the letters' colours, read against the legend, give away their families).
# Only an input keeps its cue: that the question gives a number is no answer.
RECALL_ROLES = {"given"}


def css(*, night: bool = False) -> str:
    """One rule per role, `.r-<name>`, for text (and a note's marker); with `night`, also
    Anki's `.nightMode` colours (the key role keeps its light highlight)."""
    rules = []
    for role in ROLES.values():
        rules.append(f".r-{role.name}{{color:{role.colour};{role.cue}}}")
        if night and role.name != "key":
            rules.append(f".nightMode .r-{role.name}{{color:{role.night}}}")
    return "\n".join(rules)


def colours() -> set[str]:
    """Every print colour the palette defines: the roles' hues, ink and the neutrals. A figure
    may paint with these and nothing else."""
    return {role.colour for role in ROLES.values()} | {INK[0], RULE, PAPER}


def grey(svg: str) -> str:
    """A drawing as a black-and-white printer prints it: each palette hue becomes the grey of
    its own lightness (Rec. 709 luma), so hatching and line styles still tell its parts apart
    but no hue points to a legend entry. For the recall edition's figures."""
    def luma(colour: str) -> str:
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        level = round(0.2126 * r + 0.7152 * g + 0.0722 * b)
        return f"#{level:02x}{level:02x}{level:02x}"

    hues = {role.colour for role in ROLES.values()}
    return re.sub("|".join(map(re.escape, sorted(hues))), lambda m: luma(m.group().lower()), svg,
                  flags=re.IGNORECASE)
