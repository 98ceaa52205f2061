"""The roofline with each part of a step on it: weight matmuls and KV-cache attention, prefill
and decode, from `mlgrind.facts.inference.step` (each kernel on its own roof).

One point per part, at its FLOPs per HBM byte: circles for prefill, squares for decode, filled
in the parameters' colour for the weight matmuls, hollow in the KV cache's colour for attention
(shape and fill keep them apart in grayscale). Decode's weight matmuls are drawn at batch 1 and
at the batch asked for, joined by an arrow: batching moves them right, towards the ridge, while
decode attention stays at H/G FLOP/B whatever the batch, since every sequence reads its own
cache. Labels go where they collide with nothing, so the narrowest width is found by trying.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from mlgrind.calc import hardware as hw_table
from mlgrind.calc.specs import model_names
from mlgrind.facts.inference import MAX_BATCH, MAX_TOKENS, step
from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, Run, Segment,
                                    crosses, fact, text_box, text_width)
from mlgrind.figures.fmt import count, si, sig, tick
from mlgrind.figures.registry import figure
from mlgrind.palette import PAPER, ROLES, RULE

WEIGHTS, CACHE = ROLES["params"].colour, ROLES["kv-cache"].colour
PITCH = 1.25 * SMALL  # pt between the lines of a label
PAD = 5  # pt between the axes and the lowest data
HEADROOM = 2 * PITCH + 6  # pt of plot above the peak: a two-line label fits


@dataclass(frozen=True)
class Point:
    label: str  # beside the point: short, the caption says the rest
    intensity: float  # FLOP/B
    prefill: bool  # circle, else square
    weights: bool  # filled in the parameters' colour, else hollow in the KV cache's
    name: str = ""  # in full, for the alt text and the facts (default: the label)

    @property
    def full(self) -> str:
        return self.name or self.label


@dataclass(frozen=True)
class Roof:
    gpu: hw_table.Hardware
    model: str
    batch: int
    prompt: int
    context: int
    points: list[Point]

    @property
    def ridge(self) -> float:
        return self.gpu.ops_per_byte

    def bound(self, intensity: float) -> str:
        return "compute" if intensity >= self.ridge else "memory"


def _parts(model: str, hardware: str, phase: str, batch: int, tokens: int) -> dict[str, float]:
    return {p.name: p.intensity for p in step(model, hardware, phase, batch, tokens).parts}


@figure(worst=[f"roofline_parts(hardware='{h}', model='llama-3.1-405b', batch={MAX_BATCH}, "
               f"prompt={MAX_TOKENS}, context={MAX_TOKENS})" for h in ("tpu-v4", "b200")])
def roofline_parts(width: float, hardware: str = "h100-sxm", model: str = "llama-3-8b",
                   batch: int = 64, prompt: int = 2048, context: int = 2048) -> Drawing:
    """hardware: a bundled GPU; model: a bundled dense model with a k/v cache; batch 1–4,096
    sequences at the decode step; prompt 1–1,048,576 tokens (prefill of one sequence); context
    1–1,048,576 cached tokens at the decode step."""
    gpu = hw_table.load(args.choice("hardware", hardware, hw_table.load_all()))
    args.choice("model", model, model_names())
    batch = args.integer("batch", batch, 1, MAX_BATCH)
    prompt = args.integer("prompt", prompt, 1, MAX_TOKENS)
    context = args.integer("context", context, 1, MAX_TOKENS)
    prefill = _parts(model, hardware, "prefill", 1, prompt)
    one = _parts(model, hardware, "decode", 1, context)
    many = _parts(model, hardware, "decode", batch, context)
    points = [Point("prefill weights", prefill["weights"], True, True),
              Point("prefill attention", prefill["attention"], True, False),
              Point("decode attention", many["attention"], False, False),
              Point("decode weights, batch 1", one["weights"], False, True)]
    if batch > 1:  # labelled before the crowded low end of the slope
        points.insert(2, Point(f"batch {count(batch)}", many["weights"], False, True,
                               f"decode weights, batch {count(batch)}"))
    roof = Roof(gpu, model, batch, prompt, context, points)
    return args.fit(lambda w: _draw(w, roof), width, "the roofline's labels")





def _draw(width: float, roof: Roof) -> Drawing:
    peak, bw, ridge = roof.gpu.bf16_flops, roof.gpu.hbm_bw, roof.ridge
    values = [p.intensity for p in roof.points] + [ridge]
    x_lo = 10 ** math.floor(math.log10(min(values) / 2))
    x_hi = 10 ** math.ceil(math.log10(max(values) * 2))
    y_lo = 10 ** math.floor(math.log10(bw * x_lo))
    x_decades, y_decades = round(math.log10(x_hi / x_lo)), math.log10(peak / y_lo)
    y_ticks = [y_lo * 10 ** i for i in range(math.ceil(y_decades) + 1)]

    c = Canvas(width)
    left = max(text_width(tick(y), SMALL) for y in y_ticks) + 4
    right = text_width(tick(x_hi), SMALL) / 2 + 1
    decade = max(text_width(tick(x_lo * 10 ** i), SMALL) for i in range(x_decades + 1)) + 6
    if width < left + PAD + x_decades * decade + right:
        raise args.NoRoom
    top = (ASCENT + DESCENT) * SMALL + 3
    plot_w = width - left - right
    per_decade = max(min(0.36 * plot_w, 140) / y_decades, 2 * SMALL)  # short: a sheet's row
    bottom = top + per_decade * y_decades + HEADROOM + PAD

    def at(intensity: float, flops: float) -> tuple[float, float]:
        return (left + PAD + (plot_w - PAD) * math.log10(intensity / x_lo) / x_decades,
                bottom - PAD - per_decade * math.log10(flops / y_lo))

    c.text(0, ASCENT * SMALL, "FLOP/s per GPU")
    c.line(left, top, left, bottom, colour=RULE)
    c.line(left, bottom, left + plot_w, bottom, colour=RULE)
    for value in [v for v in y_ticks if at(x_lo, v)[1] >= top]:
        y = at(x_lo, value)[1]
        c.line(left - 2, y, left, y, colour=RULE)
        c.text(left - 3, y + 0.36 * SMALL, tick(value), anchor="end")
    for i in range(x_decades + 1):
        x = at(x_lo * 10 ** i, y_lo)[0]
        c.line(x, bottom, x, bottom + 2, colour=RULE)
        c.text(x, bottom + 2 + ASCENT * SMALL, tick(x_lo * 10 ** i), anchor="middle")
    axis_title = bottom + 2 + ASCENT * SMALL + SMALL * 1.3
    c.text(left + plot_w, axis_title, "arithmetic intensity, FLOP/B", anchor="end")

    knee, start, end = at(ridge, peak), at(x_lo, bw * x_lo), at(x_hi, peak)
    c.polyline([start, knee, end], line=1)
    c.line(knee[0], knee[1], knee[0], bottom, colour=RULE, dash="1,1.5")
    avoid: list[Segment] = [(start, knee), (knee, end)]

    def place(points, variants, offsets) -> bool:
        """The first of the offsets (dx, dy, anchor; nearest first), points and the label's
        variants (fewest lines first) that keeps it inside the plot, off the roofs and arrows,
        and clear of every text placed before; False if there is none."""
        for (dx, dy, anchor), point, lines in itertools.product(offsets, points, variants):
            first = point[1] + dy - (0 if dy > 0 else len(lines) - 1) * PITCH
            ys = [first + i * PITCH for i in range(len(lines))]
            boxes = [text_box(point[0] + dx, y, *runs, anchor=anchor) for y, runs in zip(ys, lines)]
            if all(left + 1 <= b[0] and b[2] <= width and top <= b[1] and b[3] <= bottom - 1
                   and c.free(b) and not crosses(b, avoid) for b in boxes):
                for y, runs in zip(ys, lines):
                    c.text(point[0] + dx, y, *runs, anchor=anchor, halo=True)
                return True
        return False

    where = {p.label: at(p.intensity, min(peak, bw * p.intensity)) for p in roof.points}
    weights = sorted((p for p in roof.points if p.weights and not p.prefill),
                     key=lambda p: p.intensity)
    if len(weights) == 2:  # batching moves the decode matmuls right along the slope
        (x1, y1), (x2, y2) = where[weights[0].label], where[weights[1].label]
        length = math.hypot(x2 - x1, y2 - y1)
        if length > 16:  # beside the slope, above it, from one square to the other
            ux, uy = (x2 - x1) / length, (y2 - y1) / length
            nx, ny = uy * 5, -ux * 5
            tail, head = (x1 + 5 * ux + nx, y1 + 5 * uy + ny), (x2 - 5 * ux + nx, y2 - 5 * uy + ny)
            c.arrow(*tail, *head, colour=WEIGHTS)
            avoid.append((tail, head))
    for p in roof.points:
        x, y = where[p.label]
        colour = WEIGHTS if p.weights else CACHE
        fill = colour if p.weights else PAPER
        if p.prefill:
            c.circle(x, y, 2.6, fill=fill, stroke=colour, line=1)
        else:
            c.rect(x - 2.3, y - 2.3, 4.6, 4.6, fill=fill, stroke=colour, line=1)
    around = [(5, 10, "start"), (5, -5, "start"), (-5, 10, "end"), (-5, -5, "end"),
              (5, 20, "start"), (-5, 20, "end"), (-5, -15, "end"), (5, -15, "start"),
              (0, -6, "middle"), (0, 13, "middle"), (7, 3, "start"), (-7, 3, "end"),
              (5, 30, "start"), (-5, -25, "end")]
    for p in roof.points:
        name = Run(p.label + ":", colour=WEIGHTS if p.weights else CACHE)
        value = (fact(sig(p.intensity)), " FLOP/B")
        lines = [[(name, " ", *value)], [(name,), value]]
        if not place([where[p.label]], lines, around):
            raise args.NoRoom
    ridge_label = ("ridge ", fact(sig(ridge)), " FLOP/B")
    peak_label = ("bf16 peak ", fact(si(peak, "FLOP/s")))
    bw_label = ("HBM ", fact(si(bw, "B/s")))
    slope = [at(x_lo * (ridge / x_lo) ** f, bw * x_lo * (ridge / x_lo) ** f)
             for f in (0.5, 0.35, 0.65, 0.2, 0.8)]
    elsewhere = [label for label, placed in [
        (ridge_label, place([knee], [[ridge_label], [ridge_label[:1], ridge_label[1:]]],
                            [(-4, -5, "end"), (4, 11, "start"), (4, -5, "start"),
                             (-4, 11, "end"), (4, 24, "start"), (-4, 30, "end")])),
        (peak_label, place([end], [[peak_label], [peak_label[:1], peak_label[1:]]],
                           [(0, -5, "end"), (0, 10, "end"), (0, 21, "end")])),
        (bw_label, place(slope, [[bw_label], [bw_label[:1], bw_label[1:]]], [(-5, -5, "end")])),
    ] if not placed]

    tokens = f"{count(roof.prompt)} token" + ("s" if roof.prompt > 1 else "")
    y = c.paragraph(0, axis_title + 11, width, [
        (f"{roof.model} on {roof.gpu.key}" + (":" if elsewhere else "."),),
        *[(*label, ";" if i < len(elsewhere) - 1 else ".") for i, label in enumerate(elsewhere)],
        (f"● prefill of {tokens},",), (f"■ decode after {count(roof.context)} cached.",),
    ])
    alt = (f"Roofline of the {roof.gpu.name} (bf16 peak {si(peak, 'FLOP/s')}, HBM "
           f"{si(bw, 'B/s')}, ridge at {sig(ridge)} FLOP/B) with the parts of a {roof.model} "
           "step: " + "; ".join(f"{p.full} at {sig(p.intensity)} FLOP/B, "
                                f"{roof.bound(p.intensity)}-bound" for p in roof.points) + ".")
    facts: dict[str, float | int | str] = {"ridge": ridge, "peak_flops": peak, "bandwidth": bw}
    facts.update({p.full: p.intensity for p in roof.points})
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Roofline of {roof.gpu.key} by part",
                     alt=alt, facts=facts)
