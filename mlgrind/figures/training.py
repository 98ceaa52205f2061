"""Chinchilla's line and real training runs, log-log: parameters against training tokens.

Each run is a bundled model (its parameters counted by `calc.params.count`) and the tokens it was
trained on (an input: the papers' and model cards' counts). The line is D = 20·N
(`calc.flops.chinchilla_tokens`, Hoffmann et al. 2022): a run above it saw more tokens per
parameter than a compute-optimal one, below it fewer. An MoE is drawn at its active parameters
(filled, what Chinchilla's N counts) joined to its total (hollow): the total would put it far
below the line, which is why the rule takes the active count. Labels are placed where they
collide with nothing, so the narrowest width that works is found by trying.
"""

from __future__ import annotations

import math

from mlgrind.calc import flops as calc_flops
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model, model_names
from mlgrind.facts.training import ratio_text
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
)
from mlgrind.figures.fmt import tick
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, PAPER, ROLES, RULE

MAX_RUNS = 6
MOE = ROLES["dim-parallel"].colour  # experts: the sheet's colour for the MoE panel
PAD = 5  # pt between the axes and the data
CLEAR = HALO + 3  # pt from a label's box to a marker's centre: its halo never bites the marker
DECADE_Y = 22  # pt per decade of tokens: the plot stays short, a panel's height matters


def _runs(value: object) -> list[tuple[str, float]]:
    names = model_names()
    ok = isinstance(value, tuple | list) and 1 <= len(value) <= MAX_RUNS and all(
        isinstance(r, tuple | list) and len(r) == 2 and r[0] in names
        and isinstance(r[1], int | float) and not isinstance(r[1], bool) and 1e6 <= r[1] <= 1e15
        for r in value)
    if not ok:
        raise ValueError(f"runs must be 1 to {MAX_RUNS} (model, tokens) pairs, a bundled model "
                         f"({', '.join(names)}) and 1e6 to 1e15 tokens, like (('llama-3-70b', "
                         f"15e12),); got {value!r:.60}")
    return [(name, float(tokens)) for name, tokens in value]


@figure(worst=[("tokens_per_param(runs=(('deepseek-v3', 1e15), ('gpt2', 1e6), ('llama-3.1-405b', "
                "1e15), ('mixtral-8x7b', 1e6), ('qwen2.5-0.5b', 1e15), ('megatron-1t', 1e6)))")])
def tokens_per_param(width: float, runs: tuple = (("gpt3-175b", 300e9), ("llama-3-70b", 15e12))) -> Drawing:
    """runs: 1–6 (model, training tokens) pairs, a bundled model and 1e6–1e15 tokens."""
    points = []
    for name, tokens in _runs(runs):
        c = count(load_model(name))
        points.append((name, tokens, c.active, c.total))
    return args.fit(lambda w: _draw(w, points), width, "the runs' labels", floor=150)


def _decades(values: list[float]) -> tuple[float, int]:
    low = 10 ** math.floor(math.log10(min(values)))
    return low, max(1, math.ceil(math.log10(max(values) / low)))


def _draw(width: float, points: list[tuple[str, float, int, int]]) -> Drawing:
    ratio = calc_flops.CHINCHILLA_TOKENS_PER_PARAM
    x_lo, x_decades = _decades([n for p in points for n in p[2:]])
    y_lo, y_decades = _decades([v for p in points for v in (p[1], ratio * p[2])])
    c = Canvas(width)
    top = ASCENT * SMALL + 3
    left = max(text_width(tick(y_lo * 10 ** i), SMALL) for i in range(y_decades + 1)) + 4
    right = text_width(tick(x_lo * 10 ** x_decades), SMALL) / 2 + 1
    plot_w = width - left - right
    if plot_w < 40 * x_decades:
        raise args.NoRoom
    bottom = top + PAD + DECADE_Y * y_decades + PAD

    def at(n: float, d: float) -> tuple[float, float]:
        return (left + PAD + (plot_w - PAD) * math.log10(n / x_lo) / x_decades,
                bottom - PAD - DECADE_Y * math.log10(d / y_lo))

    c.text(0, ASCENT * SMALL, "training tokens")
    c.line(left, top, left, bottom, colour=RULE)
    c.line(left, bottom, left + plot_w, bottom, colour=RULE)
    for i in range(y_decades + 1):
        y = at(x_lo, y_lo * 10 ** i)[1]
        c.line(left - 2, y, left, y, colour=RULE)
        c.text(left - 3, y + 0.36 * SMALL, tick(y_lo * 10 ** i), anchor="end")
    for i in range(x_decades + 1):
        x = at(x_lo * 10 ** i, y_lo)[0]
        c.line(x, bottom, x, bottom + 2, colour=RULE)
        c.text(x, bottom + 2 + ASCENT * SMALL, tick(x_lo * 10 ** i), anchor="middle")
    axis = bottom + 2 + ASCENT * SMALL + 1.3 * SMALL
    c.text(left + plot_w, axis, "parameters N (an MoE: active ●, total ○)", anchor="end")

    # D = 20·N, clipped to the plot: from where it enters the token range to where it leaves.
    n_lo = max(x_lo, y_lo / ratio)
    n_hi = min(x_lo * 10 ** x_decades, y_lo * 10 ** y_decades / ratio)
    segments = []
    if n_lo < n_hi:
        start, end = at(n_lo, ratio * n_lo), at(n_hi, ratio * n_hi)
        c.line(*start, *end, line=0.8, dash="3,1.5")
        segments.append((start, end))
    occupied = [((left, top), (left, bottom)), ((left, bottom), (left + plot_w, bottom)), *segments]

    markers = []
    for name, tokens, active, total in points:
        x, y = at(active, tokens)
        if total != active:
            xt, _ = at(total, tokens)
            c.line(x + 2.4, y, xt - 2.4, y, colour=MOE, line=0.6, dash="1,1.2")
            c.circle(xt, y, 2.2, fill=PAPER, stroke=MOE, line=0.8)
            occupied.append(((x, y), (xt, y)))
            markers.append((xt, y))
        c.circle(x, y, 2.4, fill=MOE if total != active else INK[0])
        markers.append((x, y))

    def clear(box: tuple[float, float, float, float]) -> bool:
        return (left + 1 <= box[0] and box[2] <= width and top - ASCENT * SMALL <= box[1]
                and box[3] <= bottom - 1 and c.free(box) and not crosses(box, occupied)
                and not any(box[0] - CLEAR <= mx <= box[2] + CLEAR
                            and box[1] - CLEAR <= my <= box[3] + CLEAR for mx, my in markers))

    around = [(0, -7, "middle"), (6, 3, "start"), (-6, 3, "end"), (0, 11, "middle"),
              (4, -7, "start"), (-4, -7, "end"), (4, 11, "start"), (-4, 11, "end"),
              (0, -15, "middle"), (0, 19, "middle"), (4, -15, "start"), (-4, -15, "end"),
              (4, 19, "start"), (-4, 19, "end")]
    for name, tokens, active, total in points:
        x, y = at(active, tokens)
        runs = (f"{name} ", fact(ratio_text(tokens / active)))
        for dx, dy, anchor in around:
            box = text_box(x + dx, y + dy, *runs, anchor=anchor)
            if clear(box):
                c.text(x + dx, y + dy, *runs, anchor=anchor, halo=True)
                break
        else:
            raise args.NoRoom
    # The line's label along the line, above it; then which side is which, in the corners.
    line_label = ("D = ", fact(f"{ratio}"), "·N")
    along = ([(segments[0][0][0] + f * (segments[0][1][0] - segments[0][0][0]),
               segments[0][0][1] + f * (segments[0][1][1] - segments[0][0][1]))
              for f in (0.9, 0.75, 0.6, 0.45, 0.3)] if segments else [])
    sides = [(line_label, [(x + 2, y + 11, "start") for x, y in along]
              + [(x - 2, y - 6, "end") for x, y in along]),
             (("more tokens per N ↑",), [(left + PAD + 2 + step, top + SMALL + row, "start")
                                         for row in (0, SMALL) for step in range(0, int(plot_w / 2), 10)]),
             (("↓ fewer",), [(left + plot_w - 2 - step, bottom - PAD - 2 - row, "end")
                             for row in (0, SMALL) for step in range(0, int(plot_w / 2), 10)])]
    for runs, spots in sides:
        spot = next((s for s in spots if clear(text_box(s[0], s[1], *runs, anchor=s[2]))), None)
        if spot is None:
            raise args.NoRoom
        c.text(spot[0], spot[1], *runs, anchor=spot[2], halo=True)

    height = axis + DESCENT * SMALL + 1
    described = "; ".join(f"{name} {ratio_text(tokens / active)} tokens per active parameter"
                          for name, tokens, active, _ in points)
    return c.drawing(height, title="Training tokens against parameters, with Chinchilla's line",
                     alt=f"Log-log plot of training tokens against parameters with the line "
                         f"D = {ratio}·N: {described}.",
                     facts={name: tokens / active for name, tokens, active, _ in points})
