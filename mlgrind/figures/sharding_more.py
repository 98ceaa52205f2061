"""Sheet 12's drawings: activation memory through one training step with and without
checkpointing, and which key/value blocks each rank of a causal ring attention computes.

`checkpoint_memory` plots `facts.sharding_more.trace`: the reference MLP stack
(`ref.checkpointing`) run one layer at a time, the bytes of the arrays held after each event
against the FLOPs counted on its einsums. `ring_attention_blocks` draws the loop of
`ref.context_parallel.ring_attention` (`facts.sharding_more.ring_schedule`, whose FLOPs the
tests check against the reference's).
"""

from __future__ import annotations

from mlgrind.facts.sharding_more import (
    MAX_CK_LAYERS,
    MAX_CP_RANKS,
    ring_schedule,
    trace,
)
from mlgrind.figures import args
from mlgrind.figures.canvas import (
    ASCENT,
    DESCENT,
    SMALL,
    Canvas,
    Drawing,
    fact,
    fact_width,
    text_width,
)
from mlgrind.figures.registry import figure
from mlgrind.palette import PAPER, ROLES, RULE

KEEP = {"colour": ROLES["activations"].colour, "line": 1.1}
CHECKPOINTED = {"colour": ROLES["grads"].colour, "line": 1.1, "dash": "3,1.5"}
PLOT = 50  # pt: the plot's height


@figure(worst=[f"checkpoint_memory(layers={MAX_CK_LAYERS}, every=1)"])
def checkpoint_memory(width: float, layers: int = 16, every: int = 2) -> Drawing:
    """layers 2–64 MLP layers of the reference stack (F = 4·D); every: a checkpoint every
    `every` layers, 1 to layers − 1."""
    n = args.integer("layers", layers, 2, MAX_CK_LAYERS)
    k = args.integer("every", every, 1, n - 1)
    keep, unit, _ = trace(n, None)
    ckpt, _, _ = trace(n, k)
    return args.fit(lambda w: _draw_memory(w, n, k, keep, ckpt, unit), width,
                    "the checkpointing figure")


def _curve(events, unit: int, layer_forward: int) -> list[tuple[float, float]]:
    """(FLOPs in forwards of one layer, activations in x_BD's) after each event."""
    points, done = [], 0
    for _, flops_run, held in events:
        done += flops_run
        points.append((done / layer_forward, held / unit))
    return points


def _draw_memory(width: float, n: int, k: int, keep, ckpt, unit: int) -> Drawing:
    layer_forward = keep[1][1]  # the first forward event's FLOPs
    keep_pts, ckpt_pts = _curve(keep, unit, layer_forward), _curve(ckpt, unit, layer_forward)
    x_max = max(p[0] for p in ckpt_pts)
    y_max = max(p[1] for p in keep_pts)
    keep_peak, ckpt_peak = y_max, max(p[1] for p in ckpt_pts)
    keep_end, ckpt_end = keep_pts[-1][0], x_max

    c = Canvas(width)
    left = text_width(f"{y_max:g}", SMALL) + 4
    right = 2
    if width - left - right < 150:
        raise args.NoRoom
    top = ASCENT * SMALL + 2  # room for the keep-all label above its apex

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + x / x_max * (width - left - right), top + PLOT - y / y_max * PLOT

    base = top + PLOT
    c.line(left, base, width - right, base, colour=RULE)
    c.line(left, top, left, base, colour=RULE)
    c.text(left - 2, top + 0.36 * SMALL, fact(f"{y_max:g}"), anchor="end")
    c.text(left - 2, base + 0.36 * SMALL, "0", anchor="end")
    c.polyline([xy(*p) for p in keep_pts], **KEEP)
    c.polyline([xy(*p) for p in ckpt_pts], **CHECKPOINTED)

    apex_x, apex_y = xy(*max(keep_pts, key=lambda p: p[1]))
    c.text(apex_x + 4, apex_y + ASCENT * SMALL, "keep all: peak ", fact(f"{keep_peak:g}", bold=True),
           halo=True)
    low = max(ckpt_pts, key=lambda p: p[1])
    cx, cy = xy(*low)
    c.text(cx, cy - 3, f"every {k}: peak ", fact(f"{ckpt_peak:g}", bold=True), anchor="end",
           halo=True)

    tick = base + 2 + ASCENT * SMALL
    for x_end in (keep_end, ckpt_end):
        x, _ = xy(x_end, 0)
        c.line(x, base, x, base + 2, colour=RULE)
    kx, _ = xy(keep_end, 0)
    c.text(kx, tick, fact(f"{keep_end:g}"), anchor="middle")
    c.text(width - right, tick, fact(f"{ckpt_end:g}"), anchor="end")
    c.text(left + 2, tick, "FLOPs, in forwards of one layer →")

    y = c.paragraph(0, tick + 10, width, [
        (f"{n} MLP layers, F = 4·D;",), ("memory in x_BD's",), ("(a layer keeps x_BD and h_BF).",)])
    alt = (f"Activation memory through one training step of {n} MLP layers: keeping every layer's "
           f"activations peaks at {keep_peak:g} times x_BD and the step costs {keep_end:g} layer "
           f"forwards of FLOPs; a checkpoint every {k} layers peaks at {ckpt_peak:g} and costs "
           f"{ckpt_end:g}, one forward pass more.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Checkpointing every {k} of {n} layers",
                     alt=alt, facts={"keep_peak": keep_peak, "checkpoint_peak": ckpt_peak,
                                     "keep_flops": keep_end, "checkpoint_flops": ckpt_end})


COMPUTED = {"fill": PAPER, "stroke": ROLES["p2p"].colour, "line": 0.8}
SKIPPED = {"hatch": "idle", "stroke": RULE, "line": 0.5}


@figure(worst=[f"ring_attention_blocks(ranks={MAX_CP_RANKS})"])
def ring_attention_blocks(width: float, ranks: int = 4) -> Drawing:
    """ranks 2–16: rank s holds the s-th contiguous block of the sequence."""
    S = args.integer("ranks", ranks, 2, MAX_CP_RANKS)
    return args.fit(lambda w: _draw_ring(w, S, ring_schedule(S)), width, f"{S} ranks")


def _draw_ring(width: float, S: int, schedule) -> Drawing:
    label = text_width(f"rank {S - 1}", SMALL) + 4
    count = max(text_width("blocks", SMALL), fact_width(str(S), SMALL)) + 4
    # A cell holds its step number, or in the recall edition a blank to write it on.
    cell, row_h = fact_width(str(S - 1), SMALL) + 2, 14.0
    if label + S * cell + count > width:
        raise args.NoRoom
    c = Canvas(width)
    top = ASCENT * SMALL + 1
    c.text(label, top, "kv block →")
    c.text(label + S * cell + 4, top, "blocks")
    y0 = top + DESCENT * SMALL + 3
    for s, row in enumerate(schedule):
        y = y0 + s * row_h
        mid = y + row_h / 2 + 0.36 * SMALL
        c.text(label - 3, mid, f"rank {s}", anchor="end")
        for j, step in enumerate(row):
            x = label + j * cell
            c.rect(x + 0.4, y + 0.4, cell - 0.8, row_h - 0.8, **(SKIPPED if step is None else COMPUTED))
            if step is not None:
                c.text(x + cell / 2, mid, fact(str(step), bold=step == 0), anchor="middle")
        c.text(label + S * cell + 4, mid, fact(str(sum(v is not None for v in row))))
    bottom = y0 + S * row_h
    y = c.flow(0, bottom + 3 + ASCENT * SMALL, width, [
        (COMPUTED, ("computed at ring step n",)),
        (SKIPPED, ("causal future, skipped",)),
    ])
    counts = [sum(v is not None for v in row) for row in schedule]
    alt = (f"Causal ring attention on {S} ranks with contiguous blocks: rank s computes "
           + ", ".join(f"rank {s} {n}" for s, n in enumerate(counts))
           + " blocks; the blocks in each rank's causal future are skipped.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Ring attention blocks, {S} ranks", alt=alt,
                     facts={"blocks": ", ".join(map(str, counts))})
