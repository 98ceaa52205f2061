"""Memory per GPU under ZeRO stages 0–3, from `mlgrind.calc.memory.memory_per_rank`.

One stacked bar per stage, a segment per kind of memory, each kind in its role's colour and its
own hatch (so grayscale keeps them apart), the total printed at the bar's end, and optionally a
GPU's HBM capacity as a dashed line. The activations drawn are those the layers keep for
backward (Korthikanti et al. 2022, Table 2): what differs between recomputation policies. The
other terms `calc memory` adds (the segment being recomputed, the embedding and output layers)
are left out of the figure, and its text says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc import hardware as hw_table
from mlgrind.calc.memory import PRECISIONS, RECOMPUTE, Parallel, memory_per_rank
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError, load_model, model_names
from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, fact, fact_width,
                                    text_width, width_of)
from mlgrind.figures.fmt import count as thousands
from mlgrind.figures.fmt import si, words
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, ROLES

KINDS = ["params", "grads", "optimizer", "activations"]
LEGEND = {"params": "parameters", "grads": "gradients", "optimizer": "optimizer states",
          "activations": "activations"}
BAR, PITCH = 10, 14  # pt


@dataclass(frozen=True)
class Setup:
    """The arguments, checked and loaded."""

    spec: ModelSpec
    dp: int
    precision: str
    micro_batch: int
    seq_len: int
    recompute: str
    gpu: hw_table.Hardware | None


def _kind(kind: str) -> dict:
    return {"hatch": kind, "stroke": ROLES[kind].colour, "line": 0.5}


@figure
def zero_memory(width: float, model: str = "llama-3-8b", dp: int = 8, precision: str = "mixed",
                micro_batch: int = 1, seq_len: int = 4096, recompute: str = "full",
                hardware: str | None = "h100-sxm") -> Drawing:
    """model: a bundled model; dp 1–4096; precision one of memory.RECIPES ("mixed", "fp32",
    "bf16", ...); micro_batch
    1–256; seq_len 1–1,048,576; recompute "none", "selective" or "full"; hardware: a bundled GPU
    (its HBM drawn as a line) or None."""
    spec = load_model(args.choice("model", model, model_names()))
    dp = args.integer("dp", dp, 1, 4096)
    args.choice("precision", precision, PRECISIONS)
    micro_batch = args.integer("micro_batch", micro_batch, 1, 256)
    seq_len = args.integer("seq_len", seq_len, 1, 1 << 20)
    args.choice("recompute", recompute, RECOMPUTE)
    gpu = None if hardware is None else hw_table.load(args.choice("hardware", hardware,
                                                                  hw_table.load_all()))
    try:
        ranks = [memory_per_rank(spec, Parallel(dp=dp), zero, micro_batch, seq_len, recompute,
                                 precision=precision) for zero in range(4)]
    except SpecError as error:
        raise ValueError(str(error)) from None
    stages = [{"params": m.params, "grads": m.grads, "optimizer": m.optimizer,
               "activations": m.activation_parts.layers} for m in ranks]
    setup = Setup(spec, dp, precision, micro_batch, seq_len, recompute, gpu)
    return args.fit(lambda w: _draw(w, setup, stages), width, "the ZeRO figure")


def _draw(width: float, setup: Setup, stages: list[dict[str, float]]) -> Drawing:
    spec, gpu, precision = setup.spec, setup.gpu, setup.precision
    totals = [sum(m.values()) for m in stages]
    c = Canvas(width)
    left = text_width("ZeRO-3", SMALL) + 3
    right = fact_width(si(max(totals), "B"), SMALL) + 3
    if width < left + 60 + right:  # 60 pt of bar still shows the smaller kinds
        raise args.NoRoom
    scale = (width - left - right) / max(totals + ([gpu.hbm_bytes] if gpu else []))

    y0 = 1
    if gpu:  # the capacity line's label rides above the bars, on the side with room
        x = left + gpu.hbm_bytes * scale
        label = (f"{gpu.key}: ", fact(si(gpu.hbm_bytes, "B")), " HBM")
        if x < width_of(*label) and x + width_of(*label) > width:
            raise args.NoRoom
        c.text(x, y0 + ASCENT * SMALL, *label, anchor="end" if x >= width_of(*label) else "start")
        y0 += SMALL + 3
    for zero, m in enumerate(stages):
        y = y0 + zero * PITCH
        baseline = y + BAR / 2 + 0.36 * SMALL
        c.text(left - 3, baseline, f"ZeRO-{zero}", anchor="end")
        x = left
        for kind in KINDS:
            w = m[kind] * scale
            c.rect(x, y, w, BAR, **_kind(kind))
            x += w
        c.text(x + 2, baseline, fact(si(totals[zero], "B"), bold=True), halo=True)
    bottom = y0 + 3 * PITCH + BAR
    if gpu:
        x = left + gpu.hbm_bytes * scale
        c.line(x, y0 - 2, x, bottom + 2, colour=INK[0], line=0.7, dash="2,1.5")

    p, g, o = PRECISIONS[precision]
    n_params = count(spec).total
    activations = stages[0]["activations"]
    y = c.flow(0, bottom + 6 + ASCENT * SMALL, width,
               [(_kind(kind), (LEGEND[kind],)) for kind in KINDS])
    y = c.paragraph(0, y + 10, width, [
        (f"{spec.name}: Ψ = ", fact(words(n_params), bold=True), " parameters;"),
        (f"{precision} precision,",), (fact(f"{p} + {g} + {o} = {p + g + o}"), " B each;"),
        ("ZeRO-1 shards optimizer states",), (f"over the {setup.dp} data-parallel ranks,",),
        ("ZeRO-2 also gradients,",), ("ZeRO-3 also parameters.",),
        ("Activations the layers keep",),
        (f"for {setup.micro_batch} × {thousands(setup.seq_len)} tokens,",),
        (f"{setup.recompute} recompute: ", fact(si(activations, "B")), ";"),
        ("embedding, output layer",), ("and the recomputed segment not drawn.",),
    ])

    alt = (f"Memory per GPU to train {spec.name} ({words(n_params)} parameters, {precision} "
           f"precision) on {setup.dp} data-parallel GPUs: "
           + ", ".join(f"ZeRO-{z} {si(t, 'B')}" for z, t in enumerate(totals))
           + (f", against {si(gpu.hbm_bytes, 'B')} of HBM on a {gpu.key}." if gpu else "."))
    return c.drawing(y + DESCENT * SMALL + 1, title=f"ZeRO memory per GPU, {spec.name}", alt=alt,
                     facts={**{f"zero{z}_gb": total / 1e9 for z, total in enumerate(totals)},
                            "activations_gb": activations / 1e9, "bytes_per_param": p + g + o})
