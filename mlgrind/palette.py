"""The one palette: every colour on a sheet or a card has a role, defined here once.

Colours are Okabe–Ito hues darkened for print (colour-blind safe), and every role also differs by
a grayscale cue (weight, style or decoration), so a black-and-white printout keeps the meaning.
Sheets and cards both get their CSS from `css()`; YAML names roles, never colours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str
    colour: str
    label: str  # what the legend says
    cue: str  # CSS that carries the role without colour
    night: str  # the colour on Anki's dark background


ROLES: dict[str, Role] = {
    role.name: role
    for role in [
        # Dimension-letter families (see mlgrind.ref.notation.LETTERS).
        Role("dim-batch", "#0b62a4", "batch / sequence dims (B L M)", "font-weight:700", "#7cc0ff"),
        Role("dim-model", "#c2410c", "model / hidden dims (D F V)", "font-weight:700;font-style:italic", "#ffa366"),
        Role("dim-heads", "#047857", "head dims (H K G C R)", "font-weight:700;text-decoration:underline", "#5fd3a5"),
        Role("dim-parallel", "#a21caf", "shards / experts (S E)", "font-weight:700;text-decoration:underline dotted", "#f08cf5"),
        # Maths.
        Role("contract", "#b45309", "contracted (summed) index", "text-decoration:overline", "#fbbf24"),
        Role("result", "#111111", "computed by mlgrind", "font-weight:700", "#f5f5f5"),
        # Prose.
        Role("key", "#111111", "remember this", "font-weight:700;background:#fff3b0", "#111111"),
        Role("pitfall", "#b91c1c", "common mistake", "font-style:italic", "#ff8a8a"),
    ]
}


def css(*, night: bool = False) -> str:
    """One rule per role: `.r-<name>` for inline text, `.accent-<name>` for panel borders;
    with `night`, also Anki's `.nightMode` colours (the key role keeps its light highlight)."""
    rules = []
    for role in ROLES.values():
        rules.append(f".r-{role.name}{{color:{role.colour};{role.cue}}}")
        rules.append(f".accent-{role.name}{{border-color:{role.colour}}}")
        if night:
            rules.append(f".nightMode .r-{role.name}{{color:{role.night}}}")
    return "\n".join(rules)
