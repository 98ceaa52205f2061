"""RoPE drawn from the reference code (`ref.rope`): one channel pair of a query and a key, rotated
at two placements with the same offset (the angle between them, hence q·k, is the same), and the
wavelength of every pair of a head for one or more bases, log scale, against a context length.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mlgrind.facts.positions import BASES, MAX_HEAD, MAX_POSITION, wavelengths
from mlgrind.figures import args
from mlgrind.figures.canvas import (
    ASCENT,
    DESCENT,
    HALO,
    SMALL,
    Canvas,
    Drawing,
    crosses,
    fact,
    text_box,
    text_width,
    width_of,
)
from mlgrind.figures.fmt import count, tick
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, RULE
from mlgrind.ref import rope as ref_rope

PITCH = 1.3 * SMALL  # pt between lines of text
K_LENGTH = 0.6  # the key's length, as a fraction of the query's: the two arrows stay apart
MAX_PLACEMENTS = 3  # circles side by side


def _rotated(vector: tuple[float, float], position: int, pair: int, K: int,
             base: float) -> np.ndarray:
    """One channel pair of a head of size K, at `position`, rotated by ref.rope itself."""
    x_BLHK = np.zeros((1, 1, 1, K))
    x_BLHK[0, 0, 0, 2 * pair: 2 * pair + 2] = vector
    return ref_rope.rope(x_BLHK, np.array([position]), base)[0, 0, 0, 2 * pair: 2 * pair + 2]


def _placements(value: object) -> list[tuple[int, int]]:
    ok = isinstance(value, tuple | list) and 1 <= len(value) <= MAX_PLACEMENTS and all(
        isinstance(p, tuple | list) and len(p) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_POSITION
                for v in p) for p in value)
    if not ok:
        raise ValueError(f"placements must be 1 to {MAX_PLACEMENTS} (m, n) pairs of positions "
                         f"from 0 to {MAX_POSITION:,}, like ((3, 1), (9, 7)); got {value!r:.60}")
    return [tuple(p) for p in value]


@figure(worst=[(f"rope_rotation(placements=(({MAX_POSITION}, 0), ({MAX_POSITION}, 0), "
                f"({MAX_POSITION}, 0)), pair={MAX_HEAD // 2 - 1}, K={MAX_HEAD}, "
                f"base={BASES[1]:g})")])
def rope_rotation(width: float, placements: tuple = ((3, 1), (9, 7)), pair: int = 0,
                  K: int = 8, base: float = 10000) -> Drawing:
    """placements: 1–3 (m, n) position pairs, 0–16,777,216; pair: the channel pair drawn,
    0 to K/2 − 1; K: an even head size 2–1024; base 2–1e9."""
    placements = _placements(placements)
    K = args.integer("K", K, 2, MAX_HEAD)
    if K % 2:
        raise ValueError(f"K must be even (RoPE rotates channel pairs), not {K}")
    pair = args.integer("pair", pair, 0, K // 2 - 1)
    base = args.number("base", base, *BASES)
    return args.fit(lambda w: _draw_rotation(w, placements, pair, K, base), width,
                    "the rotated pairs", floor=60 * len(placements))


def _draw_rotation(width: float, placements: list[tuple[int, int]], pair: int, K: int,
                   base: float) -> Drawing:
    c = Canvas(width)
    cell = width / len(placements)
    label = text_width("q", SMALL) + 4  # room for a tip's label around the circle
    radius = min(24.0, cell / 2 - label - 4)
    if radius < 16:
        raise args.NoRoom
    top = label + 2
    centre_y = top + radius
    facts: dict[str, float | int | str] = {}
    lines_y = centre_y + radius + label + ASCENT * SMALL
    scores = []
    for j, (m, n) in enumerate(placements):
        cx = cell * (j + 0.5)
        q = _rotated((1.0, 0.0), m, pair, K, base)
        k = _rotated((K_LENGTH, 0.0), n, pair, K, base)
        score = float(q @ k)
        scores.append(score)
        c.circle(cx, centre_y, radius, fill=None, stroke=RULE, line=0.5)
        c.line(cx - radius, centre_y, cx + radius, centre_y, colour=RULE, line=0.3, dash="1,1.5")
        c.line(cx, centre_y - radius, cx, centre_y + radius, colour=RULE, line=0.3, dash="1,1.5")

        def at(vector: np.ndarray, scale: float = 1.0, cx: float = cx) -> tuple[float, float]:
            return cx + radius * scale * vector[0], centre_y - radius * scale * vector[1]

        # The arc from k's angle to q's, counterclockwise: the way positions turn a pair.
        a_k, a_q = math.atan2(k[1], k[0]), math.atan2(q[1], q[0])
        sweep = (a_q - a_k) % (2 * math.pi)
        steps = max(2, int(sweep * 12))
        arc = [(cx + 0.3 * radius * math.cos(a_k + sweep * s / steps),
                centre_y - 0.3 * radius * math.sin(a_k + sweep * s / steps))
               for s in range(steps + 1)]
        if sweep > 0.05:  # m = n: no angle between them, no arc
            c.polyline(arc[:-1], colour=INK[0], line=0.5)
            c.arrow(*arc[-2], *arc[-1], line=0.5, head=2.5)
        c.arrow(cx, centre_y, *at(q), line=1.1)
        c.arrow(cx, centre_y, *at(k / K_LENGTH, K_LENGTH), line=0.7)
        for name, vector, scale in (("q", q, 1.0), ("k", k / K_LENGTH, K_LENGTH)):
            x, y = at(vector, scale)
            ux, uy = vector / np.hypot(*vector)
            c.text(x + ux * 5, y - uy * 5 + 0.36 * SMALL, name, anchor="middle")
        angle = (m - n) * float(ref_rope.rope_angles(np.array([1.0]), K, base)[0, pair])
        rows = [(f"m = {count(m)}, n = {count(n)}",),  # the placement is given, not a fact
                ("angle ", fact(f"{angle:.3g}"), " rad"),
                ("q·k = ", fact(f"{score:.3f}".replace("-", "−")))]
        for r, runs in enumerate(rows):
            if width_of(*runs) > cell - 2:
                raise args.NoRoom
            c.text(cx, lines_y + r * PITCH, *runs, anchor="middle")
        facts[f"score_{m}_{n}"] = score
        facts[f"angle_{m}_{n}"] = angle
    height = lines_y + (len(rows) - 1) * PITCH + DESCENT * SMALL + 1
    where = "; ".join(f"q at {m}, k at {n}: q·k = {s:.3f}"
                      for (m, n), s in zip(placements, scores))
    return c.drawing(height, title=f"One channel pair of q and k rotated by RoPE (pair {pair})",
                     alt=f"Channel pair {pair} of a query and a key rotated by RoPE, head size {K}, "
                         f"base {base:g}, counterclockwise as the position grows: {where}.",
                     facts=facts)


MAX_BASES = 3
DASHES = (None, "4,2", "1,1.5")  # one line style per base, so grayscale tells them apart



@figure(worst=[(f"rope_wavelengths(K={MAX_HEAD}, bases=({BASES[0]:g}, {BASES[1]:g}, 1e+06), "
                f"context={MAX_POSITION})")])
def rope_wavelengths(width: float, K: int = 128, bases: tuple = (10000, 500000),
                     context: int | None = 8192) -> Drawing:
    """K: an even head size 2–1024; bases: 1–3 RoPE bases, 2–1e9; context: a context length
    drawn as a dotted line (1–16,777,216), or None."""
    K = args.integer("K", K, 2, MAX_HEAD)
    if K % 2:
        raise ValueError(f"K must be even (RoPE rotates channel pairs), not {K}")
    if not isinstance(bases, tuple | list) or not 1 <= len(bases) <= MAX_BASES:
        raise ValueError(f"bases must be 1 to {MAX_BASES} numbers, not {bases!r:.60}")
    bases = [args.number("a base", b, *BASES) for b in bases]
    if context is not None:
        context = args.integer("context", context, 1, MAX_POSITION)
    curves = [wavelengths(K, b) for b in bases]
    return args.fit(lambda w: _draw_wavelengths(w, K, bases, curves, context), width,
                    "the wavelength plot")



def _draw_wavelengths(width: float, K: int, bases: list[float], curves: list[np.ndarray],
                      context: int | None) -> Drawing:
    pairs = K // 2
    top_value = max([float(c.max()) for c in curves] + [context or 1])
    decades = max(1, math.ceil(math.log10(top_value)))
    ticks = [10 ** d for d in range(decades + 1)]
    c = Canvas(width)
    left = max(text_width(tick(t), SMALL) for t in ticks) + 4
    ends = [("", fact(tick(float(curve[-1])))) for curve in curves]
    right = max(width_of(*e) for e in ends) + 5
    plot_w = width - left - right
    if plot_w < 80:
        raise args.NoRoom
    top = (ASCENT + DESCENT) * SMALL + 3 + 0.5 * SMALL  # the y title, then half a tick label
    per_decade = max(1.3 * SMALL, min(12.0, 70 / decades))
    bottom = top + per_decade * decades

    def at(i: float, value: float) -> tuple[float, float]:
        x = left + plot_w * (i / (pairs - 1) if pairs > 1 else 0.5)
        return x, bottom - per_decade * math.log10(value)

    c.text(0, ASCENT * SMALL, "tokens per turn")
    c.line(left, top, left, bottom, colour=RULE)
    c.line(left, bottom, left + plot_w, bottom, colour=RULE)
    for t in ticks:
        y = at(0, t)[1]
        c.line(left - 2, y, left, y, colour=RULE)
        c.text(left - 3, y + 0.36 * SMALL, tick(t), anchor="end")
    x_ticks = sorted({0, (pairs - 1) // 2, pairs - 1})
    for i in x_ticks:
        x = at(i, 1)[0]
        c.line(x, bottom, x, bottom + 2, colour=RULE)
        c.text(x, bottom + 2 + ASCENT * SMALL, str(i), anchor="middle")
    # The axis title goes on the tick labels' line, between the first two ticks, when it fits.
    title, labels = f"pair i, K = {K}", bottom + 2 + ASCENT * SMALL
    between = (at(x_ticks[0], 1)[0] + at(x_ticks[1], 1)[0]) / 2 if len(x_ticks) > 1 else None
    if between is not None and c.free(box := text_box(between, labels, title, anchor="middle")) \
            and box[2] + 4 < at(x_ticks[1], 1)[0] - text_width(str(x_ticks[1]), SMALL) / 2 \
            and box[0] - 4 > at(x_ticks[0], 1)[0] + text_width(str(x_ticks[0]), SMALL) / 2:
        axis_title = labels
        c.text(between, labels, title, anchor="middle")
    else:
        axis_title = labels + PITCH
        c.text(left + plot_w, axis_title, title, anchor="end")

    lines = []
    for curve, dash in zip(curves, DASHES):
        points = [at(i, float(v)) for i, v in enumerate(curve)]
        c.polyline(points, line=1, dash=dash)
        lines.append(points)
    if context is not None:
        y = at(0, context)[1]
        c.line(left, y, left + plot_w, y, colour=RULE, line=0.8, dash="1,1.5")
        lines.append([(left, y), (left + plot_w, y)])
    for (_, value), points in zip(ends, lines):
        c.text(points[-1][0] + 3, points[-1][1] + 0.36 * SMALL, value)

    # Beside a rising line: above and to the left of a point on it, or below and to the right.
    gap = HALO + 1.5
    above, below = (-gap - DESCENT * SMALL, "end"), (gap + ASCENT * SMALL, "start")

    def place(runs: tuple, anchors: list[tuple[float, float]], sides: tuple) -> None:
        """The first spot beside an anchor, on the first side that works, that is in the plot
        and clear of every line and text; NoRoom if there is none."""
        for (dy, anchor), (x, y) in [(o, p) for o in sides for p in anchors]:
            box = text_box(x, y + dy, *runs, anchor=anchor)
            if (left + 1 <= box[0] and box[2] <= left + plot_w and top <= box[1]
                    and box[3] <= bottom - 1 and c.free(box) and not crosses(box, [s for line in lines for s in itertools.pairwise(line)])):
                c.text(x, y + dy, *runs, anchor=anchor, halo=True)
                return
        raise args.NoRoom

    # The context's label first: a flat line has the fewest spots beside it.
    if context is not None:
        place((f"context {count(context)}",),
              [at(f * (pairs - 1), context) for f in (0.02, 0.3, 0.6, 0.9)],
              ((above[0], "start"), below))
    fractions = (0.6, 0.7, 0.5, 0.8, 0.4, 0.9, 0.3)
    # The steepest line (the largest base) is labelled above, the others below: each label
    # then sits on its own side of its line, away from its neighbours.
    steepest = max(range(len(bases)), key=lambda b: bases[b])
    for b, (base, curve) in enumerate(zip(bases, curves)):
        anchors = [at(f * (pairs - 1), float(curve[round(f * (pairs - 1))])) for f in fractions]
        # The bases and the context are what the figure is drawn for (given); the wavelengths
        # they lead to are the facts.
        place((f"b = {count(round(base)) if float(base).is_integer() else f'{base:g}'}",),
              anchors, (above, below) if b == steepest else (below, above))

    facts: dict[str, float | int | str] = {}
    for base, curve in zip(bases, curves):
        facts[f"fastest_{base:g}"] = float(curve[0])
        facts[f"slowest_{base:g}"] = float(curve[-1])
    alt = (f"Wavelength in tokens of each of the {pairs} channel pairs of a head of size {K}, "
           "log scale: " + "; ".join(f"base {b:g} from {curve[0]:.3g} to {curve[-1]:.3g}"
                                      for b, curve in zip(bases, curves))
           + (f"; context {context:,} tokens dotted." if context else "."))
    return c.drawing(axis_title + DESCENT * SMALL + 1,
                     title=f"RoPE wavelengths per channel pair, head size {K}", alt=alt,
                     facts=facts)
