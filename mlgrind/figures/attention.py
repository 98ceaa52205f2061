"""Multi-head attention as a data flow of named tensors, each arrow labelled with its einsum.

The tensors, weights and einsum specs are those of `mlgrind.ref.attention.mha_forward` (a test
checks that the specs here are exactly the ones it runs). Given sizes, that forward runs under
`count_flops()` and the FLOPs of every einsum are printed as counted. Suffix letters take the
colour of their dimension family, so a shape reads at a glance; the letter itself carries the
meaning in grayscale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, NORMAL, SMALL, Canvas, Drawing, Run, fact,
                                    fact_width, text_width, width_of)
from mlgrind.figures.fmt import si
from mlgrind.figures.registry import figure
from mlgrind.palette import ROLES
from mlgrind.ref.attention import mha_flops, mha_forward
from mlgrind.ref.einsum import count_flops
from mlgrind.ref.notation import LETTERS, split_suffix


@dataclass(frozen=True)
class Op:
    key: str  # its name in the facts
    label: str  # its row in the FLOPs table
    spec: str  # the einsum of mha_forward that computes it


OPS = [
    Op("q", "q projection", "bld,dhk->blhk"),
    Op("k", "k projection", "bmd,dhk->bmhk"),
    Op("v", "v projection", "bmd,dhk->bmhk"),
    Op("scores", "scores, q · k", "blhk,bmhk->bhlm"),
    Op("out", "probs · v", "bhlm,bmhk->blhk"),
    Op("y", "out projection", "blhk,hkd->bld"),
]
SIZES = ("B", "L", "D", "H", "K")
# One counting forward stays within ~0.1 s and a few MB (float32 arrays of ≤ 1 MB each).
MAX_SIZE, MAX_ELEMENTS, MAX_FLOPS = 4096, 1 << 18, 1 << 28
PITCH = 1.2 * SMALL  # pt between the lines of an arrow's label
SPAN = 130  # pt: widest column of the flow; wider panels centre it instead of spreading it


def _colour(letter: str) -> str:
    return ROLES[LETTERS[letter.upper()].family].colour


def tensor(name: str) -> tuple[Run, ...]:
    """`q_BLHK` as runs: the stem in ink, each suffix letter bold in its family's colour."""
    stem, suffix = split_suffix(name)
    return (fact(f"{stem}_"), *(fact(c, colour=_colour(c), bold=True) for c in suffix))


def einsum_runs(text: str) -> tuple[Run, ...]:
    """An einsum spec (or part of one) with each index letter in its family's colour."""
    return tuple(fact(ch, colour=_colour(ch)) if ch.upper() in LETTERS else fact(ch)
                 for ch in text.replace("->", "→"))


def flop_formula(spec: str) -> tuple[Run, ...]:
    """2 × the product of every index the einsum names (`mlgrind.ref.einsum.flops`)."""
    letters = dict.fromkeys(c.upper() for c in spec if c.isalpha())
    return (fact("2·"), *(fact(c, colour=_colour(c), bold=True) for c in letters))


def count(sizes: dict[str, int]) -> dict[str, int]:
    """Run the reference forward on random arrays of these sizes and count each op's FLOPs.
    The counter keys by spec; k and v run the same spec on the same sizes, so each has half."""
    B, L, D, H, K = (sizes[s] for s in SIZES)
    rng = np.random.default_rng(0)
    x_BLD = rng.standard_normal((B, L, D), dtype=np.float32)
    w_q_DHK, w_k_DHK, w_v_DHK = (rng.standard_normal((D, H, K), dtype=np.float32)
                                 for _ in range(3))
    w_o_HKD = rng.standard_normal((H, K, D), dtype=np.float32)
    with count_flops() as counter:
        mha_forward(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD)
    sharing = {op.spec: sum(o.spec == op.spec for o in OPS) for op in OPS}
    return {op.key: counter.by_spec[op.spec] // sharing[op.spec] for op in OPS}


@figure
def attention_flow(width: float, B: int | None = None, L: int | None = None,
                   D: int | None = None, H: int | None = None, K: int | None = None) -> Drawing:
    """Without sizes, the flow with each op's FLOP formula; with all of B, L, D, H, K, also
    the FLOPs counted (each 1–4096; B·L·D, B·H·L², D·H·K, B·L·H·K ≤ 262,144 elements;
    ≤ 2^28 FLOPs)."""
    given = {name: value for name, value in zip(SIZES, (B, L, D, H, K)) if value is not None}
    if given and len(given) < len(SIZES):
        missing = ", ".join(s for s in SIZES if s not in given)
        raise ValueError(f"sizes B, L, D, H and K come together: {missing} missing")
    sizes = {name: args.integer(name, value, 1, MAX_SIZE) for name, value in given.items()}
    if sizes:
        b, l, d, h, k = (sizes[s] for s in SIZES)
        # Every tensor of the forward: x and y, the scores and probs, the weights, q, k, v, out.
        for shape, elements in (("B·L·D", b * l * d), ("B·H·L·L", b * h * l * l),
                                ("D·H·K", d * h * k), ("B·L·H·K", b * l * h * k)):
            if elements > MAX_ELEMENTS:
                raise ValueError(f"sizes: {shape} = {elements:,} elements; at most "
                                 f"{MAX_ELEMENTS:,} keep the counting run small")
        if mha_flops(b, l, d, h, k) > MAX_FLOPS:
            raise ValueError(f"sizes: the forward would take more than {MAX_FLOPS:,} FLOPs to "
                             f"count; make B, L, D, H or K smaller")
    flops = count(sizes) if sizes else None
    return args.fit(lambda w: _draw(w, sizes, flops), width, "the attention flow's labels")


def _draw(width: float, sizes: dict[str, int], flops: dict[str, int] | None) -> Drawing:
    c = Canvas(width)
    span = min(width, 3 * SPAN)
    col = span / 3
    x0 = (width - span) / 2
    cols = [x0 + col * (i + 0.5) for i in range(3)]
    qk = (cols[0] + cols[1]) / 2  # where q and k meet
    pv = (qk + cols[2]) / 2  # where probs and v meet

    def node(x: float, top: float, name: str) -> float:
        c.text(x, top + ASCENT * NORMAL, *tensor(name), size=NORMAL, anchor="middle")
        return top + (ASCENT + DESCENT) * NORMAL

    def label(x: float, top: float, variants: list[list[tuple]], room: float) -> float:
        """The first variant whose lines all fit `room` pt, centred on x under `top`, with
        halos that break the arrow they sit on; returns the bottom of its last line."""
        lines = _first_fit(variants, room)
        for i, runs in enumerate(lines):
            c.text(x, top + ASCENT * SMALL + i * PITCH, *runs, anchor="middle", halo=True)
        return top + (len(lines) - 1) * PITCH + (ASCENT + DESCENT) * SMALL

    def spec_lines(spec: str) -> list[list[tuple]]:
        """The spec on one line, or broken before its arrow."""
        inputs, output = spec.split("->")
        return [[einsum_runs(spec)], [einsum_runs(inputs), einsum_runs("->" + output)]]

    def arrow_with_label(x: float, top: float, variants, room: float) -> float:
        """A label under `top`, then an arrow down to the next node; returns the node's top."""
        bottom = label(x, top + 3, variants, room)
        c.arrow(x, bottom + 1, x, bottom + 8)
        return bottom + 9

    bottom = node(cols[1], 1, "x_BLD")
    bus = bottom + 5
    c.line(cols[1], bottom + 1, cols[1], bus)
    c.line(cols[0], bus, cols[2], bus)
    weights = {"q": "w_q_DHK", "k": "w_k_DHK", "v": "w_v_DHK"}
    # The three labels break their specs alike, so that the three nodes share a row.
    projections = list(zip(cols, weights, OPS[:3]))
    breaks = [i for i in range(2) if all(
        _fits([*spec_lines(op.spec)[i], tensor(weights[key])], col - 4)
        for _, key, op in projections)]
    if not breaks:
        raise args.NoRoom
    end = max(label(x, bus + 3, [[*spec_lines(op.spec)[breaks[0]], tensor(weights[key])]],
                    col - 4) for x, key, op in projections)
    top = end + 9
    for x in cols:
        c.arrow(x, end + 1, x, end + 8)
    bottoms = [node(x, top, f"{key}_{'BLHK' if key == 'q' else 'BMHK'}")
               for x, key in zip(cols, weights)]

    join = bottoms[0] + 4
    c.line(cols[0], bottoms[0] + 1, cols[0], join)
    c.line(cols[1], bottoms[1] + 1, cols[1], join)
    c.line(cols[0], join, cols[1], join)
    room = 2 * min(qk, cols[2] - qk - 4)  # clear of the v line running down on the right
    scale = [(fact("÷ √"), fact("K", colour=_colour("K"), bold=True))]
    top = arrow_with_label(qk, join, [[*v, *scale] for v in spec_lines(OPS[3].spec)], room)
    bottom = node(qk, top, "scores_BHLM")
    top = arrow_with_label(qk, bottom + 1, [
        [("softmax over ", fact("M", colour=_colour("M"), bold=True)), ("causal mask",)],
        [("softmax",), ("over ", fact("M", colour=_colour("M"), bold=True)), ("causal mask",)],
    ], room)
    bottom = node(qk, top, "probs_BHLM")

    join = bottom + 4
    c.line(qk, bottom + 1, qk, join)
    c.line(cols[2], bottoms[2] + 1, cols[2], join)
    c.line(qk, join, cols[2], join)
    room = 2 * min(pv, width - pv)
    top = arrow_with_label(pv, join, spec_lines(OPS[4].spec), room)
    bottom = node(pv, top, "out_BLHK")
    top = arrow_with_label(pv, bottom + 1, [[*v, tensor("w_o_HKD")]
                                            for v in spec_lines(OPS[5].spec)], room)
    bottom = node(pv, top, "y_BLD")

    y = c.flow(0, bottom + 8 + ASCENT * SMALL, width, [
        (None, (Run(ROLES[role].label, ROLES[role].colour, bold=True),))
        for role in ("dim-batch", "dim-model", "dim-heads")])
    y = _flop_table(c, y + 11, sizes, flops)

    alt = ("Multi-head attention as a data flow: x_BLD is projected by w_q_DHK, w_k_DHK and "
           "w_v_DHK to q_BLHK, k_BMHK and v_BMHK (bld,dhk->blhk); scores_BHLM = q·k over K "
           "(blhk,bmhk->bhlm) divided by √K; probs_BHLM = softmax over M with a causal mask; "
           "out_BLHK = probs·v (bhlm,bmhk->blhk); y_BLD = out_BLHK·w_o_HKD (blhk,hkd->bld).")
    facts: dict[str, float | int | str] = {f"spec_{op.key}": op.spec for op in OPS}
    if flops:
        total = sum(flops.values())
        alt += (f" At {', '.join(f'{s} = {v}' for s, v in sizes.items())} the forward takes "
                f"{si(total, 'FLOP')}.")
        facts |= {f"flops_{key}": n for key, n in flops.items()} | {"forward_flops": total}
    return c.drawing(y + DESCENT * SMALL + 1, title="Multi-head attention as a data flow",
                     alt=alt, facts=facts)


def _flop_table(c: Canvas, y: float, sizes: dict[str, int], flops: dict[str, int] | None) -> float:
    """One row per einsum: what it computes, its FLOP formula, and the count when sized."""
    pitch = 1.3 * SMALL
    formula_x = max(text_width(op.label, SMALL) for op in OPS) + 6
    formula_w = max(width_of(*flop_formula(op.spec)) for op in OPS)
    total = sum(flops.values()) if flops else 0
    # The counts' right edge; 1.1 leaves room for the bold total.
    number_x = formula_x + formula_w + 6 + fact_width(si(total, "FLOP"), SMALL) * 1.1
    if number_x > c.width:
        raise args.NoRoom
    c.text(0, y, "forward FLOPs per einsum")
    for i, op in enumerate(OPS, start=1):
        row = y + i * pitch
        c.text(0, row, op.label)
        c.text(formula_x, row, *flop_formula(op.spec))
        if flops:
            c.text(number_x, row, fact(si(flops[op.key], "FLOP")), anchor="end")
    if not flops:
        return y + len(OPS) * pitch
    row = y + (len(OPS) + 1) * pitch
    c.text(0, row, "forward, in all")
    c.text(number_x, row, fact(si(total, "FLOP"), bold=True), anchor="end")
    return c.paragraph(0, row + pitch, c.width, [
        ("counted by running",), ("mlgrind.ref.attention",), ("at",),
        *[(f"{s} = {v}" + ("," if i < len(sizes) - 1 else "."),)
          for i, (s, v) in enumerate(sizes.items())]])


def _fits(lines: list[tuple], room: float) -> bool:
    return all(width_of(*runs) <= room for runs in lines)


def _first_fit(variants: list[list[tuple]], room: float) -> list[tuple]:
    for lines in variants:
        if _fits(lines, room):
            return lines
    raise args.NoRoom
