"""Memory per GPU under ZeRO stages 0–3, everything `calc memory` counts, against the GPU's
usable memory (sheet 14).

Like `zero_memory` (figures/zero.py), one stacked bar per stage, a segment per kind of memory in
its role's colour and hatch; unlike it, the activations drawn are all of `calc memory`'s (what
the layers keep, the segment being recomputed, the embedding and output layers), so a bar is the
calculator's total and the dashed line its usable memory: a bar that crosses the line does not
fit. The layout (model, GPUs, tensor parallelism) is in the panel's title; the figure carries
no paragraph, only its legend.
"""

from __future__ import annotations

from mlgrind.calc import hardware as hw_table
from mlgrind.calc.memory import PRECISIONS, RECOMPUTE, Parallel, memory_per_rank
from mlgrind.calc.specs import SpecError, load_model, model_names
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
    width_of,
)
from mlgrind.figures.fmt import si
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, ROLES

KINDS = ("params", "grads", "optimizer", "activations")
LEGEND = {"params": "parameters", "grads": "gradients", "optimizer": "optimizer states",
          "activations": "activations"}
BAR, PITCH = 9, 12  # pt


def _kind(kind: str) -> dict:
    return {"hatch": kind, "stroke": ROLES[kind].colour, "line": 0.5}


@figure(worst=[("memory_per_gpu(model='deepseek-v3', gpus=1048576, tp=64, seq_len=1048576, "
                "micro_batch=256, recompute='none')")])
def memory_per_gpu(width: float, model: str = "llama-3-8b", gpus: int = 8, tp: int = 1,
                   seq_len: int = 4096, micro_batch: int = 1, recompute: str = "full",
                   precision: str = "mixed", hardware: str = "h100-sxm",
                   usable: float = 0.9) -> Drawing:
    """model: a bundled model; gpus 1–2^20, tp 1–64 dividing them (data parallel takes the
    rest); seq_len 1–2^20; micro_batch 1–256; recompute "none", "selective" or "full";
    precision one of memory.RECIPES; hardware a bundled GPU; usable: the fraction of its HBM
    the calculator counts as usable (0.5–1)."""
    spec = load_model(args.choice("model", model, model_names()))
    gpus = args.integer("gpus", gpus, 1, 1 << 20)
    tp = args.integer("tp", tp, 1, 64)
    seq_len = args.integer("seq_len", seq_len, 1, 1 << 20)
    micro_batch = args.integer("micro_batch", micro_batch, 1, 256)
    args.choice("recompute", recompute, RECOMPUTE)
    args.choice("precision", precision, PRECISIONS)
    gpu = hw_table.load(args.choice("hardware", hardware, hw_table.load_all()))
    usable = args.number("usable", usable, 0.5, 1)
    if gpus % tp:
        raise ValueError(f"tp {tp} must divide gpus {gpus}")
    try:
        ranks = [memory_per_rank(spec, Parallel(dp=gpus // tp, tp=tp), zero, micro_batch, seq_len,
                                 recompute, precision=precision) for zero in range(4)]
    except SpecError as error:
        raise ValueError(str(error)) from None
    stages = [{kind: getattr(m, kind) for kind in KINDS} for m in ranks]
    room = gpu.hbm_bytes * usable
    alt = (f"Memory per GPU to train {spec.name} on {gpus:,} {gpu.key} GPUs (tp {tp}), {precision} "
           f"precision, {recompute} recomputation: "
           + ", ".join(f"ZeRO-{z} {si(m.total, 'B')}" for z, m in enumerate(ranks))
           + f", against {si(room, 'B')} usable.")
    return args.fit(lambda w: _draw(w, stages, room, alt, spec.name), width, "the memory figure")


def _draw(width: float, stages: list[dict[str, float]], room: float, alt: str, name: str) -> Drawing:
    totals = [sum(m.values()) for m in stages]
    c = Canvas(width)
    left = text_width("ZeRO-3", SMALL) + 3
    right = fact_width(si(max(totals), "B"), SMALL) + 3
    if width < left + 60 + right:  # 60 pt of bar still shows the smaller kinds
        raise args.NoRoom
    scale = (width - left - right) / max(totals + [room])

    x_room = left + room * scale
    label = ("usable ", fact(si(room, "B")))
    y0 = 1 + SMALL + 3  # the line's label rides above the bars, on the side with room
    if x_room < width_of(*label) and x_room + width_of(*label) > width:
        raise args.NoRoom
    c.text(x_room, 1 + ASCENT * SMALL, *label, anchor="end" if x_room >= width_of(*label) else "start")
    for zero, m in enumerate(stages):
        y = y0 + zero * PITCH
        baseline = y + BAR / 2 + 0.36 * SMALL
        c.text(left - 3, baseline, f"ZeRO-{zero}", anchor="end")
        x = left
        for kind in KINDS:
            c.rect(x, y, m[kind] * scale, BAR, **_kind(kind))
            x += m[kind] * scale
        c.text(x + 2, baseline, fact(si(totals[zero], "B"), bold=totals[zero] <= room), halo=True)
    bottom = y0 + 3 * PITCH + BAR
    c.line(x_room, y0 - 2, x_room, bottom + 2, colour=INK[0], line=0.7, dash="2,1.5")
    y = c.flow(0, bottom + 5 + ASCENT * SMALL, width, [(_kind(k), (LEGEND[k],)) for k in KINDS])
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Memory per GPU by ZeRO stage, {name}",
                     alt=alt, facts={**{f"zero{z}_bytes": t for z, t in enumerate(totals)},
                                     "usable_bytes": room})
