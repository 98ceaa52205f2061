"""The roofline of a GPU with a model's prefill and decode placed on it, log-log.

Attainable FLOP/s = min(peak, bandwidth × intensity); the two roofs meet at the ridge point,
peak / bandwidth FLOPs per byte. A phase whose intensity is left of the ridge waits on memory.
The points come from the calculators: each phase is one step of `calc.inference` (`decode_step`,
`prefill_step`), placed at its FLOPs over its HBM bytes, both parts together (weight matmuls and
attention; `calc serve` times each part on its own roof). Labels are placed where they collide
with nothing, so the narrowest width that works is found by trying, not by a formula.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from mlgrind.calc import hardware as hw_table
from mlgrind.calc.inference import decode_step, prefill_step
from mlgrind.calc.specs import load_model, model_names
from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, crosses, fact,
                                    text_box, text_width)
from mlgrind.figures.fmt import count, si, sig, tick
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, RULE

PITCH = 1.25 * SMALL  # pt between the lines of a label
HEADROOM = 3 * PITCH + 5  # pt of plot above the peak: a three-line label fits
PAD = 5  # pt between the axes and the lowest data


@dataclass(frozen=True)
class Roof:
    gpu: hw_table.Hardware
    model: str
    prompt: int
    batch: int
    context: int
    prefill: float  # FLOP/B
    decode: float  # FLOP/B

    @property
    def ridge(self) -> float:
        return self.gpu.ops_per_byte

    def bound(self, intensity: float) -> str:
        return "compute" if intensity >= self.ridge else "memory"


@figure
def roofline(width: float, hardware: str = "h100-sxm", model: str = "llama-3-8b",
             prompt: int = 2048, batch: int = 1, context: int = 2048) -> Drawing:
    """hardware: a bundled GPU; model: a bundled model; prompt 1–1,048,576 tokens; batch
    1–4096 sequences; context 0–1,048,576 cached tokens at the decode step."""
    gpu = hw_table.load(args.choice("hardware", hardware, hw_table.load_all()))
    spec = load_model(args.choice("model", model, model_names()))
    prompt = args.integer("prompt", prompt, 1, 1 << 20)
    batch = args.integer("batch", batch, 1, 4096)
    context = args.integer("context", context, 0, 1 << 20)
    decode, prefill = decode_step(spec, gpu, batch, context), prefill_step(spec, gpu, prompt, batch)
    roof = Roof(gpu, spec.name, prompt, batch, context, prefill=prefill.flops / prefill.bytes,
                decode=decode.flops / decode.bytes)
    return args.fit(lambda w: _draw(w, roof), width, "the roofline's labels")





def _draw(width: float, roof: Roof) -> Drawing:
    peak, bw, ridge = roof.gpu.bf16_flops, roof.gpu.hbm_bw, roof.ridge
    x_lo = 10 ** math.floor(math.log10(min(roof.decode, roof.prefill, ridge) / 2))
    x_hi = 10 ** math.ceil(math.log10(max(roof.decode, roof.prefill, ridge) * 2))
    y_lo = 10 ** math.floor(math.log10(bw * x_lo))
    x_decades, y_decades = round(math.log10(x_hi / x_lo)), math.log10(peak / y_lo)
    # Ticks up to the first decade above the peak, which the headroom usually reaches.
    y_ticks = [y_lo * 10 ** i for i in range(math.ceil(y_decades) + 1)]

    c = Canvas(width)
    left = max(text_width(tick(y), SMALL) for y in y_ticks) + 4
    right = text_width(tick(x_hi), SMALL) / 2 + 1  # the last x label is centred on its tick
    decade = max(text_width(tick(x_lo * 10 ** i), SMALL) for i in range(x_decades + 1)) + 6
    if width < left + PAD + x_decades * decade + right:
        raise args.NoRoom
    top = (ASCENT + DESCENT) * SMALL + 3
    plot_w = width - left - right
    per_decade = max(min(0.5 * plot_w, 180) / y_decades, 2 * SMALL)
    bottom = top + per_decade * y_decades + HEADROOM + PAD

    def at(intensity: float, flops: float) -> tuple[float, float]:
        """The data start PAD in from the axes, so the corner's two tick labels stay apart."""
        return (left + PAD + (plot_w - PAD) * math.log10(intensity / x_lo) / x_decades,
                bottom - PAD - per_decade * math.log10(flops / y_lo))

    c.text(0, ASCENT * SMALL, "FLOP/s")
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
    roofs = [(start, knee), (knee, end)]

    def place(points: list[tuple[float, float]], variants: list[list[tuple]], offsets) -> bool:
        """Put a label, in the first of its variants (fewest lines first), at the first of its
        points and offsets (dx, dy, text-anchor) that keeps it inside the plot and clear of the
        roofs and of every text placed before; its paper halo may hide a stretch of the dotted
        ridge line. False if there is no such place."""
        for lines, point, (dx, dy, anchor) in itertools.product(variants, points, offsets):
            first = point[1] + dy - (0 if dy > 0 else len(lines) - 1) * PITCH  # above: upward
            ys = [first + i * PITCH for i in range(len(lines))]
            boxes = [text_box(point[0] + dx, y, *runs, anchor=anchor) for y, runs in zip(ys, lines)]
            if all(left + 1 <= b[0] and b[2] <= width and top <= b[1] and b[3] <= bottom - 1
                   and c.free(b) and not crosses(b, roofs) for b in boxes):
                for y, runs in zip(ys, lines):
                    c.text(point[0] + dx, y, *runs, anchor=anchor, halo=True)
                return True
        return False

    around = [(5, 10, "start"), (5, -5, "start"), (-5, 10, "end"), (-5, -5, "end"),
              (5, 22, "start"), (-5, 22, "end"), (-5, -16, "end"), (5, -16, "start")]
    tokens = f"{count(roof.prompt)} token" + ("s" if roof.prompt > 1 else "")
    if roof.batch > 1:
        tokens = f"{count(roof.batch)} × {tokens}"
    for name, intensity, marker in [(f"prefill, {tokens}", roof.prefill, "o"),
                                    (f"decode, batch {count(roof.batch)}", roof.decode, "■")]:
        x, y = at(intensity, min(peak, bw * intensity))
        if marker == "o":  # shapes, not colours, tell the two phases apart
            c.circle(x, y, 2.4)
        else:
            c.rect(x - 2.1, y - 2.1, 4.2, 4.2, fill=INK[0])
        bound = fact(f"{roof.bound(intensity)}-bound", bold=True)
        value = (fact(sig(intensity)), " FLOP/B,")
        if not place([(x, y)], [[(name,), (*value, " ", bound)], [(name,), value, (bound,)]],
                     around):
            raise args.NoRoom
    # The roofs' own labels go on the plot where there is room, else into the caption.
    ridge_label = ("ridge ", fact(sig(ridge)), " FLOP/B")
    peak_label = ("bf16 peak ", fact(si(peak, "FLOP/s")))
    bw_label = ("HBM ", fact(si(bw, "B/s")))
    # Points along the slope, middle first: above-left of one is outside the roof, clear of it.
    slope = [at(x_lo * (ridge / x_lo) ** f, bw * x_lo * (ridge / x_lo) ** f)
             for f in (0.5, 0.35, 0.65, 0.2, 0.8)]
    elsewhere = [label for label, placed in [
        (ridge_label, place([knee], [[ridge_label], [ridge_label[:1], ridge_label[1:]]],
                            [(-4, -5, "end"), (4, -5, "start"), (4, 11, "start"),
                             (-4, 11, "end"), (4, 24, "start"), (-4, 30, "end")])),
        (peak_label, place([end], [[peak_label], [peak_label[:1], peak_label[1:]]],
                           [(0, -5, "end"), (0, 10, "end"), (0, 21, "end")])),
        (bw_label, place(slope, [[bw_label], [bw_label[:1], bw_label[1:]]], [(-5, -5, "end")])),
    ] if not placed]

    y = c.paragraph(0, axis_title + 11, width, [
        (f"{roof.model} on {roof.gpu.key}" + (":" if elsewhere else "."),),
        *[(*label, ";" if i < len(elsewhere) - 1 else ".") for i, label in enumerate(elsewhere)],
        ("Decode: one step's FLOPs",),
        ("over the bytes it reads",), (f"(weights, {count(roof.context)} cached tokens);",),
        ("prefill: the prompt's FLOPs",), ("over the weights read once,",),
        ("its activations, keys and values.",),
    ])

    alt = (f"Roofline of the {roof.gpu.name} (bf16 peak {si(peak, 'FLOP/s')}, HBM "
           f"{si(bw, 'B/s')}, ridge at {sig(ridge)} FLOP/B) with {roof.model}: prefill of "
           f"{count(roof.prompt)} tokens at {sig(roof.prefill)} FLOP/B is "
           f"{roof.bound(roof.prefill)}-bound, decode at batch {roof.batch} at "
           f"{sig(roof.decode)} FLOP/B is {roof.bound(roof.decode)}-bound.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Roofline of {roof.gpu.key} with {roof.model}",
                     alt=alt, facts={"ridge": ridge, "prefill_intensity": roof.prefill,
                                     "decode_intensity": roof.decode,
                                     "prefill_bound": roof.bound(roof.prefill),
                                     "decode_bound": roof.bound(roof.decode),
                                     "peak_flops": peak, "bandwidth": bw})
