"""Pipeline schedules, GPipe and 1F1B, drawn from the timeline `mlgrind.ref.pipeline` simulates.

One row per stage, time to the right. A forward is a solid box in the activations' colour (it
stores activations until its backward runs), a backward an outlined box in the gradients'
colour, idle time is hatched: solid, outlined and hatched stay apart in grayscale.
"""

from __future__ import annotations

from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, Run, fact,
                                    fact_width, text_width)
from mlgrind.figures.fmt import percent
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, PAPER, ROLES, RULE
from mlgrind.ref.pipeline import (Op, bubble_fraction, gpipe_order, one_f_one_b_order,
                                  peak_in_flight, simulate)

SCHEDULES = {"1f1b": (one_f_one_b_order, "1F1B"), "gpipe": (gpipe_order, "GPipe")}
T_FWD, T_BWD = 1, 2  # time units: a backward computes two gradients per matmul, a forward one
FORWARD = {"fill": ROLES["activations"].colour}
BACKWARD = {"fill": PAPER, "stroke": ROLES["grads"].colour, "line": 0.8}
IDLE = {"hatch": "idle"}
ROW, PITCH = 10, 12  # pt: a stage's box height, and the distance between rows


@figure
def pipeline_schedule(width: float, stages: int = 4, microbatches: int = 8,
                      schedule: str = "1f1b") -> Drawing:
    """stages 1–16, microbatches 1–64, schedule "1f1b" or "gpipe"."""
    p = args.integer("stages", stages, 1, 16)
    m = args.integer("microbatches", microbatches, 1, 64)
    order, name = SCHEDULES[args.choice("schedule", schedule, SCHEDULES)]
    ops = simulate(order(p, m), T_FWD, T_BWD)
    return args.fit(lambda w: _draw(w, name, ops), width, f"{p} stages × {m} microbatches",
                    floor=_needed(ops))


def _columns(ops: list[Op]) -> tuple[float, float, float]:
    """pt for the stage names on the left, the held counts on the right, and at least per
    time unit: a forward box must hold its microbatch number."""
    p, m = 1 + max(op.stage for op in ops), 1 + max(op.micro for op in ops)
    held = fact_width(str(max(peak_in_flight(ops))), SMALL)
    return (text_width(f"stage {p - 1}", SMALL) + 3,
            max(text_width("held", SMALL), held) + 3, text_width(str(m), SMALL) + 2.5)


def _makespan(ops: list[Op]) -> float:
    return max(op.end for op in ops) - min(op.start for op in ops)


def _needed(ops: list[Op]) -> float:
    left, right, unit = _columns(ops)
    return left + _makespan(ops) * unit + right


def _draw(width: float, name: str, ops: list[Op]) -> Drawing:
    if width < _needed(ops):
        raise args.NoRoom
    p, m = 1 + max(op.stage for op in ops), 1 + max(op.micro for op in ops)
    bubble, held, makespan = bubble_fraction(ops), peak_in_flight(ops), _makespan(ops)
    left, right, _ = _columns(ops)
    c = Canvas(width)
    unit = (width - left - right) / makespan

    top = ASCENT * SMALL + 1
    c.text(width, top, "held", anchor="end")
    y0 = top + DESCENT * SMALL + 3
    for s in range(p):
        y = y0 + s * PITCH
        baseline = y + ROW / 2 + 0.36 * SMALL  # digits centred in the box
        c.text(left - 3, baseline, f"stage {s}", anchor="end")
        c.rect(left, y, makespan * unit, ROW, **IDLE)
        c.text(width, baseline, fact(str(held[s])), anchor="end")
    for op in ops:
        # 0.4 pt of paper between neighbours, so back-to-back forwards stay countable
        x, w = left + op.start * unit + 0.4, (op.end - op.start) * unit - 0.8
        y = y0 + op.stage * PITCH
        box, ink = (FORWARD, PAPER) if op.kind == "F" else (BACKWARD, INK[0])
        c.rect(x, y, w, ROW, **box)
        # Microbatch numbers name the boxes, like stage names: the recall edition keeps them.
        c.text(x + w / 2, y + ROW / 2 + 0.36 * SMALL, Run(str(op.micro + 1), ink, bold=True),
               anchor="middle")

    axis = y0 + p * PITCH + 1
    c.line(left, axis, width - right, axis, colour=RULE)
    tick = axis + 2 + ASCENT * SMALL
    c.text(left, tick, "0")
    c.text((left + width - right) / 2, tick, "time →", anchor="middle")
    c.text(width - right, tick, fact(f"{makespan:g}"), anchor="end")

    y = c.paragraph(0, tick + 11, width, [
        (f"{name}: bubble ", fact(percent(bubble), bold=True)), ("of stage-time;",),
        ("held: most microbatches",), ("whose activations",), ("a stage stores",),
    ])
    y = c.flow(0, y + 10, width, [
        (FORWARD, (f"forward, {T_FWD} unit",)), (BACKWARD, (f"backward, {T_BWD} units",)),
        (IDLE, ("idle (bubble)",)), (None, ("numbers: microbatch",)),
    ])

    held_text = ", ".join(map(str, held))
    alt = (f"{name} pipeline schedule on {p} stages with {m} microbatches: the bubble is "
           f"{percent(bubble)} of stage-time and the makespan {makespan:g} time units "
           f"(forward {T_FWD}, backward {T_BWD}); stages hold at most {held_text} microbatches "
           f"of activations.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"{name} pipeline schedule, {p} stages, "
                     f"{m} microbatches", alt=alt,
                     facts={"bubble_fraction": bubble, "peak_in_flight": held_text,
                            "makespan": makespan})
