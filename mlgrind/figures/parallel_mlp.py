"""Who holds what in the parallel MLPs, and where each collective runs, from simulated ranks.

One row per scheme (`mlgrind.facts.parallel_mlp` runs `ref.mlp`'s row-, column-, Megatron and
data-parallel code on a simulated communicator); one column per tensor of the MLP,
x_BD · w_in_DF → relu → a_BF · w_out_FD → y_BD. Each tensor is a box cut into S blocks along
the axis the scheme splits, rank 0's block hatched (weights and activations in their memory
kinds' hatches, so grayscale keeps them apart); a box hatched whole is replicated. A tensor whose
values (or gradients) a collective carries is outlined in the collective's colour, and the row's
label names each collective with its pass and tensor, as the communicator's log recorded them.
The schemes run on as many ranks as the figure draws blocks.
"""

from __future__ import annotations

from mlgrind.facts import parallel_mlp as pm
from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, Run, fact,
                                    text_box, width_of)
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, ROLES, RULE
from mlgrind.ref.notation import LETTERS, split_suffix

LABELS = {"row": "row-parallel", "column": "column-parallel", "megatron": "Megatron",
          "data": "data-parallel"}
KIND = {"x": "activations", "w_in": "params", "a": "activations", "w_out": "params",
        "y": "activations"}
OPS = ("·", "relu", "·", "=")  # between the columns: matmul, relu, matmul, result
BOX_H, BOX_W = 13, 52  # pt
GAP = 4  # pt between rows


def name_runs(name: str, *, as_fact: bool = False) -> tuple[Run, ...]:
    """`w_in_DF` as runs, the suffix letters bold in their family's colour."""
    stem, suffix = split_suffix(name)
    make = fact if as_fact else Run
    return (make(f"{stem}_"),
            *(make(c, colour=ROLES[LETTERS[c].family].colour, bold=True) for c in suffix))


def column_of(tensor: str) -> str:
    """The column a collective's tensor sits in: `d_w_in_DF` → "w_in"."""
    stem = split_suffix(tensor)[0].removeprefix("d_")
    return next(key for key, name in pm.TENSORS.items() if split_suffix(name)[0] == stem)


def tag_runs(c: pm.Collective) -> tuple[Run, ...]:
    role = pm.ROLE[c.collective]
    return (fact("fwd " if c.phase == "forward" else "bwd "),
            fact(role, colour=ROLES[role].colour, bold=True), fact(" "),
            *name_runs(c.tensor, as_fact=True))


@figure(worst=["parallel_mlp_flow(ranks=8, scheme='all')"])
def parallel_mlp_flow(width: float, ranks: int = 4, scheme: str = "all") -> Drawing:
    """ranks 2–8 (blocks drawn per box); scheme "all" or one of row, column, megatron, data."""
    S = args.integer("ranks", ranks, 2, 8)
    chosen = args.choice("scheme", scheme, ["all", *pm.SCHEMES])
    schemes = list(pm.SCHEMES) if chosen == "all" else [chosen]
    runs = {s: pm.symbolic(s, S) for s in schemes}
    return args.fit(lambda w: _draw_either(w, S, runs), width, "the parallel-MLP figure")


def _place(c: Canvas, x: float, y: float, *runs: Run | str, anchor: str = "start") -> None:
    """Text that must not touch any placed before it nor leave the canvas, or no room."""
    if not c.free(text_box(x, y, *runs, anchor=anchor)):
        raise args.NoRoom
    c.text(x, y, *runs, anchor=anchor)


def _draw_either(width: float, S: int, runs: dict[str, pm.Run]) -> Drawing:
    """Each scheme's name and collectives beside its row when there is room, else above it."""
    try:
        return _draw(width, S, runs, aside=True)
    except args.NoRoom:
        return _draw(width, S, runs, aside=False)


def _draw(width: float, S: int, runs: dict[str, pm.Run], aside: bool) -> Drawing:
    c = Canvas(width)
    line = 1.2 * SMALL  # pt between the lines of a scheme's label
    left = 8 + max(width_of(*tags) for r in runs.values() for tags in
                   [(Run(LABELS[r.scheme], bold=True),), *map(tag_runs, r.collectives)]) \
        if aside else 0
    col = (width - left) / len(pm.TENSORS)
    box_w = min(BOX_W, col - 12)
    if box_w < width_of("(F/S, D)") + 4:
        raise args.NoRoom
    centres = {t: left + (i + 0.5) * col for i, t in enumerate(pm.TENSORS)}

    top = ASCENT * SMALL + 1
    for i, (tensor, name) in enumerate(pm.TENSORS.items()):
        _place(c, centres[tensor], top, *name_runs(name), anchor="middle")
        if i < len(OPS):
            _place(c, left + (i + 1) * col, top, OPS[i], anchor="middle")
    y = top + DESCENT * SMALL + 4

    facts: dict[str, str] = {}
    for scheme, scheme_run in runs.items():
        base = y + ASCENT * SMALL
        for k in scheme_run.collectives:
            facts[f"{scheme}.{k.phase}.{k.tensor}"] = k.collective
        if aside:
            _place(c, 0, base, Run(LABELS[scheme], bold=True))
            for i, k in enumerate(scheme_run.collectives):
                _place(c, 0, base + (i + 1) * line, *tag_runs(k))
            lines = base + len(scheme_run.collectives) * line
            box_top = y + 1.5
        else:
            lines = c.flow(0, base, width, [(None, (Run(LABELS[scheme], bold=True),)),
                                            *[(None, tag_runs(k)) for k in scheme_run.collectives]])
            box_top = lines + DESCENT * SMALL + 3
        carried = {column_of(k.tensor): k for k in scheme_run.collectives}
        label_base = box_top + BOX_H + ASCENT * SMALL + 2.5
        for i, tensor in enumerate(pm.TENSORS):
            x0 = centres[tensor] - box_w / 2
            _box(c, x0, box_top, box_w, S, KIND[tensor], pm.blocked(scheme_run.owned[tensor], S))
            shape = pm.symbol(scheme_run.owned[tensor], S)
            facts[f"{scheme}.{tensor}"] = shape
            _place(c, centres[tensor], label_base, fact(shape), anchor="middle")
            if tensor in carried:
                colour = ROLES[pm.ROLE[carried[tensor].collective]].colour
                c.rect(x0 - 1.2, box_top - 1.2, box_w + 2.4, BOX_H + 2.4, fill=None,
                       stroke=colour, line=1.2)
            if i < len(pm.TENSORS) - 1:
                c.arrow(x0 + box_w + 2.5, box_top + BOX_H / 2,
                        centres[list(pm.TENSORS)[i + 1]] - box_w / 2 - 2.5, box_top + BOX_H / 2,
                        colour=RULE, line=0.5, head=2.5)
        y = max(label_base, lines) + DESCENT * SMALL + GAP

    split = {"stroke": RULE, "line": 0.5}
    legend = [({"hatch": "params", "stroke": ROLES["params"].colour, "line": 0.5},
               ("weights: rank 0's block",)),
              ({"hatch": "activations", "stroke": ROLES["activations"].colour, "line": 0.5},
               ("activations: rank 0's block",)),
              ({**split, "fill": None}, (f"blocks of ranks 1–{S - 1}",)),
              (None, ("outlined: a collective carries it",))]
    y = c.flow(0, y + ASCENT * SMALL, width, legend)

    alt = ("Which block of each MLP tensor rank 0 of " + f"{S} ranks holds, and where each "
           "collective runs: " + "; ".join(
               f"{LABELS[s]}: " + ", ".join(f"{pm.TENSORS[t]} {pm.symbol(r.owned[t], S)}"
                                            for t in pm.TENSORS)
               + "".join(f", {k.phase} {pm.ROLE[k.collective]} of {k.tensor}"
                         for k in r.collectives)
               for s, r in runs.items()) + ".")
    return c.drawing(y + DESCENT * SMALL + 1, title="Who holds what in the parallel MLP",
                     alt=alt, facts=facts)


def _box(c: Canvas, x: float, y: float, w: float, S: int, kind: str, split: list[int]) -> None:
    """A tensor as a box cut into S blocks along each split axis (0: rows, drawn as horizontal
    bands; 1: columns, vertical bands), rank 0's block hatched in its memory kind."""
    colour = ROLES[kind].colour
    rows = S if 0 in split else 1
    cols = S if 1 in split else 1
    bw, bh = w / cols, BOX_H / rows
    c.rect(x, y, bw, bh, hatch=kind, stroke=colour, line=0.6)
    c.rect(x, y, w, BOX_H, fill=None, stroke=INK[0], line=0.5)
    for i in range(1, cols):
        c.line(x + i * bw, y, x + i * bw, y + BOX_H, colour=RULE, line=0.4, dash="1.5,1")
    for i in range(1, rows):
        c.line(x, y + i * bh, x + w, y + i * bh, colour=RULE, line=0.4, dash="1.5,1")
