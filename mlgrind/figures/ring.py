"""Ring collectives drawn from the per-step ledger of `mlgrind.ref.collectives.Comm`.

The collective runs on real arrays; every cell, byte count and total is read back from the
messages it recorded, never from the closed forms (the tests compare the two). One row per rank,
one column per step; a cell names the chunk that rank sends to its right neighbour. Reduce-scatter
cells are outlined (the receiver adds the chunk to its partial sum), all-gather cells solid (it
keeps a finished chunk), so the phases stay apart in grayscale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, fact, fact_width,
                                    text_width)
from mlgrind.figures.fmt import si
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, PAPER, ROLES
from mlgrind.ref.collectives import Comm

COLLECTIVES = {"all_reduce": "all-reduce", "reduce_scatter": "reduce-scatter",
               "all_gather": "all-gather"}
# NumPy has no bfloat16; float16 is as wide, and the width is all the ledger counts.
DTYPES = {"fp32": np.float32, "bf16": np.float16, "fp16": np.float16}
# Over all ranks: the simulation holds every rank's array and a copy or two of it, so this
# keeps one call within a few MB (2 MB of fp32 input).
MAX_ELEMENTS = 1 << 19
REDUCE = {"fill": PAPER, "stroke": ROLES["reduce-scatter"].colour, "line": 0.8}
GATHER = {"fill": ROLES["all-gather"].colour}
ROW, PITCH = 9, 10  # pt


def _run(collective: str, S: int, elements: int, dtype) -> Comm:
    """Run the collective on S ranks of a tensor of `elements` (the all-gather's result, the
    others' input) and return the communicator with its ledger."""
    comm = Comm(S)
    if collective == "all_gather":  # each rank brings one chunk
        comm.all_gather([np.full(elements // S, r + 1, dtype) for r in range(S)])
    else:
        getattr(comm, collective)([np.full(elements, r + 1, dtype) for r in range(S)])
    return comm


@dataclass(frozen=True)
class Ring:
    """What the ledger of one ring collective says, as the drawing needs it."""

    label: str  # "all-reduce"
    dtype: str
    S: int
    tensor_bytes: int  # the full tensor: the all-gather's result, the others' input
    steps: int
    reducing: int  # the first steps, which reduce-scatter; the rest all-gather
    chunk: dict[tuple[int, int], int]  # by (step, sending rank): the chunk it sends
    step_bytes: int  # what every rank sends in every step
    rank_bytes: int  # what every rank sends in all

    def columns(self, across: str) -> tuple[float, float]:
        """pt for the row names, and at least per column: a cell holds its chunk's name (bold)
        or, in the recall edition, a blank. Steps go `across` the page, or ranks do."""
        last = f"rank {self.S - 1}" if across == "steps" else f"step {self.steps}"
        return (text_width(last, SMALL) + 3,
                max(text_width(f"c{self.S - 1}", SMALL) * 1.1, fact_width("", SMALL)) + 3)

    def needed(self, across: str) -> float:
        left, cell = self.columns(across)
        return left + (self.steps if across == "steps" else self.S) * cell


@figure
def ring_collective(width: float, collective: str = "all_reduce", ranks: int = 4,
                    elements: int | None = None, dtype: str = "bf16") -> Drawing:
    """collective "all_reduce", "reduce_scatter" or "all_gather"; ranks 2–16; elements of the
    full tensor, a multiple of ranks with ranks × elements ≤ 524,288 (default: the largest
    power-of-two chunks within that); dtype "bf16", "fp16" or "fp32"."""
    label = COLLECTIVES[args.choice("collective", collective, COLLECTIVES)]
    S = args.integer("ranks", ranks, 2, 16)
    default = S << (MAX_ELEMENTS // (S * S)).bit_length() - 1  # power-of-two chunks read roundly
    n = args.integer("elements", default if elements is None else elements, S, MAX_ELEMENTS // S)
    if n % S:
        raise ValueError(f"elements must be a multiple of ranks ({S}), so that the {S} chunks "
                         f"are the same size, not {n}")
    kind = DTYPES[args.choice("dtype", dtype, DTYPES)]
    record = _run(collective, S, n, kind).log[0]

    steps = record.steps
    chunk, sent = {}, Counter()  # by (step, sending rank)
    for t in record.transfers:
        chunk[t.step, t.src] = t.chunk
        sent[t.step, t.src] += t.nbytes
    per_step = {sent[step, r] for step in range(steps) for r in range(S)}
    per_rank = {sum(sent[step, r] for step in range(steps)) for r in range(S)}
    # Equal chunks (checked above) make every rank send the same bytes in every step.
    assert len(per_step) == len(per_rank) == 1, (per_step, per_rank)
    reducing = {"all_reduce": S - 1, "reduce_scatter": steps, "all_gather": 0}[collective]
    ring = Ring(label, dtype, S, n * np.dtype(kind).itemsize, steps, reducing, chunk,
                per_step.pop(), per_rank.pop())
    return args.fit(lambda w: _draw(w, ring), width, f"{label} on {S} ranks ({steps} steps)",
                    floor=min(ring.needed("steps"), ring.needed("ranks")))


def _draw(width: float, ring: Ring) -> Drawing:
    # Steps across, ranks down, as the ring is usually drawn; in a narrow panel, where the
    # steps' blanks would not fit side by side, the table turns: ranks across, steps down.
    across = next((a for a in ("steps", "ranks") if ring.needed(a) <= width), None)
    if across is None:
        raise args.NoRoom
    S, steps = ring.S, ring.steps
    left, cell = ring.columns(across)
    columns, rows = (steps, S) if across == "steps" else (S, steps)
    cell = min((width - left) / columns, 3 * cell)  # wide panels: roomier cells, not giant ones
    c = Canvas(width)

    top = ASCENT * SMALL + 1
    column_name, row_name = ("step", "rank") if across == "steps" else ("rank", "step")
    first = 1 if across == "steps" else 0  # steps count from 1, ranks from 0
    c.text(left - 3, top, column_name, anchor="end")
    for j in range(columns):
        c.text(left + (j + 0.5) * cell, top, str(j + first), anchor="middle")
    y0 = top + DESCENT * SMALL + 3
    for i in range(rows):
        y = y0 + i * PITCH
        baseline = y + ROW / 2 + 0.36 * SMALL
        c.text(left - 3, baseline, f"{row_name} {i + 1 - first}", anchor="end")
        for j in range(columns):
            step, r = (j, i) if across == "steps" else (i, j)
            x = left + j * cell + 0.5
            box, ink = (REDUCE, INK[0]) if step < ring.reducing else (GATHER, PAPER)
            c.rect(x, y, cell - 1, ROW, **box)
            c.text(x + (cell - 1) / 2, baseline,
                   fact(f"c{ring.chunk[step, r]}", colour=ink, bold=True), anchor="middle")

    step_bytes, rank_bytes = si(ring.step_bytes, "B"), si(ring.rank_bytes, "B")
    y = c.paragraph(0, y0 + rows * PITCH + 6, width, [
        (f"{si(ring.tensor_bytes, 'B')} {ring.dtype} tensor,",), (f"{S} chunks;",),
        ("each step,",), ("every rank",), ("sends one",), ("to rank r + 1",),
        (f"(rank {S - 1} to 0):",),
        (fact(step_bytes, bold=True), " per step,"),
        (fact(str(steps), bold=True), " steps:"),
        (fact(rank_bytes, bold=True), " per rank."),
    ])
    legend = [(REDUCE, ("reduce-scatter: receiver adds it",)),
              (GATHER, ("all-gather: receiver keeps it",))]
    phases = (ring.reducing > 0, ring.reducing < steps)
    y = c.flow(0, y + 9, width, [*[item for item, shown in zip(legend, phases) if shown],
                                  (None, ("cN: chunk N",))])

    alt = (f"Ring {ring.label} on {S} ranks of a {si(ring.tensor_bytes, 'B')} {ring.dtype} "
           f"tensor: {steps} steps, in each every rank sends one {step_bytes} chunk to its "
           f"neighbour, {rank_bytes} per rank in all.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Ring {ring.label} on {S} ranks", alt=alt,
                     facts={"steps": steps, "bytes_per_rank_per_step": ring.step_bytes,
                            "bytes_per_rank": ring.rank_bytes})
