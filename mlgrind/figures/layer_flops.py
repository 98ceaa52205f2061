"""Where one block's forward FLOPs go as the sequence grows, from `mlgrind.facts.layer_flops`.

One bar per sequence length, split into the block's three parts as shares of its forward: the
attention projections (q, k, v, o), the attention core (scores and weighted sum, the only part
that grows with L per token) and the MLP. Each part is drawn in the colour of the letters it
scales with (the core with L·M, the projections with H·K, the MLP with D·F) and in its own fill
(solid, horizontal lines, diagonal lines), so grayscale keeps them apart. The crossover length
L*, where the core costs as much as every weight matmul, gets its own bar: the core is drawn
first, so its edge reaches the dashed half-way line exactly there.
"""

from __future__ import annotations

from mlgrind.calc.specs import model_names
from mlgrind.facts import layer_flops as lf
from mlgrind.figures import args
from mlgrind.figures.canvas import (
    ASCENT,
    DESCENT,
    SMALL,
    Canvas,
    Drawing,
    fact,
    fact_width,
    width_of,
)
from mlgrind.figures.fmt import count, percent
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, ROLES

# part: (legend, fill), drawn left to right: the core's edge meets the half-way line at L*.
PARTS = {
    "core": ("core: scores, weighted sum", {"fill": ROLES["dim-batch"].colour}),
    "projections": ("projections q k v o", {"hatch": "activations",
                                            "stroke": ROLES["dim-heads"].colour, "line": 0.5}),
    "mlp": ("MLP", {"hatch": "grads", "stroke": ROLES["dim-model"].colour, "line": 0.5}),
}
BAR, PITCH = 9, 13  # pt
MAX_LENGTHS = 8


@figure(worst=[("flops_by_length(model='llama-3.1-405b', lengths=(1, 16, 256, 4096, 65536, "
                "1048576, 4194304, 16777216), counting='causal')")])
def flops_by_length(width: float, model: str = "llama-3-8b",
                    lengths: tuple = (1024, 4096, 16384, 65536, 131072),
                    counting: str = "dense") -> Drawing:
    """model: a bundled dense model without MLA; lengths: one to eight sequence lengths, each
    1–16,777,216, increasing; counting "dense" (every query-key pair, as an einsum computes) or
    "causal" (the masked half skipped)."""
    args.choice("model", model, [m for m in model_names()])
    counting = args.choice("counting", counting, ["dense", "causal"])
    if not (isinstance(lengths, tuple) and 1 <= len(lengths) <= MAX_LENGTHS):
        raise ValueError(f"lengths must be a tuple of one to {MAX_LENGTHS} sequence lengths")
    lengths = tuple(args.integer("a length", n, 1, lf.MAX_T) for n in lengths)
    if list(lengths) != sorted(set(lengths)):
        raise ValueError(f"lengths must increase, got {lengths}")
    try:
        spec = lf._spec(model)
    except ValueError as error:
        raise ValueError(str(error)) from None
    dims = lf._dims(spec)
    star = lf.crossover(dims, spec, counting)
    factor = 1 if counting == "dense" else lf.causal_factor(spec)
    rows = []
    bars = {n: False for n in lengths} | {round(star): True}  # a length at L* is L*'s bar
    for L, is_star in sorted(bars.items()):
        parts = lf.forward_parts(dims, 1, L)
        shares = {p: sum(n for k, n in parts.items() if lf.BY_KEY[k].part == p) for p in PARTS}
        shares["core"] = shares["core"] * factor
        total = sum(shares.values())
        rows.append((L, is_star, {p: float(v / total) for p, v in shares.items()}))
    return args.fit(lambda w: _draw(w, spec.name, counting, star, rows), width,
                    "the FLOPs-by-length figure")


def _draw(width: float, name: str, counting: str, star, rows) -> Drawing:
    c = Canvas(width)
    tags = [("L* = ", fact(count(L), bold=True)) if s else (f"L = {count(L)}",)
            for L, s, _ in rows]
    left = max(width_of(*t) for t in tags) + 4
    right = max(fact_width(percent(r[2]["core"]), SMALL) for r in rows) + 4
    bar = width - left - right
    if bar < 80:
        raise args.NoRoom
    label = 2 + ASCENT * SMALL
    y0 = label + DESCENT * SMALL + 4  # below the label's halo
    c.text(left + bar / 2, label, "core = weights", anchor="middle", halo=True)
    for i, ((L, is_star, shares), tag) in enumerate(zip(rows, tags, strict=True)):
        y = y0 + i * PITCH
        baseline = y + BAR / 2 + 0.36 * SMALL
        c.text(left - 3, baseline, *tag, anchor="end")
        x = left
        for part, (_, fill) in PARTS.items():
            w = shares[part] * bar
            c.rect(x, y, w, BAR, **fill)
            x += w
        c.text(left + bar + 3, baseline, fact(percent(shares["core"]), bold=is_star))
    bottom = y0 + len(rows) * PITCH - (PITCH - BAR)
    c.line(left + bar / 2, y0 - 1, left + bar / 2, bottom + 2, colour=INK[0], line=0.7,
           dash="2,1.5")
    y = c.flow(0, bottom + 6 + ASCENT * SMALL, width,
               [(fill, (legend,)) for legend, fill in PARTS.values()])
    y = c.paragraph(0, y + 10, width, [
        (f"{name}, one block, forward,",), (f"{counting} attention;",),
        ("right: the core's share.",),
        ("L*: core = all weight matmuls.",),
    ])
    alt = (f"Share of one {name} block's forward FLOPs by sequence length ({counting} "
           f"attention): " + ", ".join(f"L = {L:,}: core {percent(s['core'])}, MLP "
                                        f"{percent(s['mlp'])}, projections "
                                        f"{percent(s['projections'])}" for L, _, s in rows)
           + f"; the core equals the weight matmuls at L* = {float(star):,.0f}.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Forward FLOPs by sequence length, {name}",
                     alt=alt, facts={"crossover": float(star),
                                     **{f"core_{L}": s["core"] for L, _, s in rows}})
