"""Who reads which key and value: MHA, GQA, MQA and MLA side by side, with what each caches.

One row per variant: the H query heads on top, below them what a token leaves in the cache (one
box per kv head; for MLA one latent shared by every head, and the small shared RoPE key), a
line from each query head to what it reads. At the right, a bar as long as the numbers one layer
caches per token, measured on the arrays the reference code builds
(`mlgrind.facts.kv_heads.cache_arrays`), with the formula read off them (`kv_terms`).
Query heads are outlined in the heads colour, cached boxes hatched in the KV-cache colour, so
grayscale keeps them apart.
"""

from __future__ import annotations

from mlgrind.facts.kv_heads import cache_arrays, kv_terms
from mlgrind.figures import args
from mlgrind.figures.canvas import (
    ASCENT,
    DESCENT,
    NORMAL,
    SMALL,
    Canvas,
    Drawing,
    fact,
    fact_width,
    text_width,
)
from mlgrind.figures.fmt import count
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, PAPER, ROLES

QUERY = {"fill": PAPER, "stroke": ROLES["dim-heads"].colour, "line": 0.7}
CACHED = {"hatch": "kv-cache", "stroke": ROLES["kv-cache"].colour, "line": 0.6}
BOX = 5  # pt: a head's square
GAP = 9  # pt between the query row and the cached row, where the lines run
ROW = 2 * BOX + GAP  # pt: one variant's diagram
SPACE = 5  # pt between variants
BAR = 6  # pt: the bar's height
ROWS = [("mha", "MHA", "G = H"), ("gqa", "GQA", "G kv heads"), ("mqa", "MQA", "G = 1"),
        ("mla", "MLA", "any H")]


@figure(worst=["kv_sharing(H=16, G=8, K=256, C=1024, R=128)"])
def kv_sharing(width: float, H: int = 8, G: int = 2, K: int = 128, C: int = 512,
               R: int = 64) -> Drawing:
    """H query heads 2–16; G kv heads of GQA, 1 < G < H dividing H; head size K 1–256; MLA's
    latent C 1–1024 and RoPE key R, even, 2–128."""
    H = args.integer("H", H, 2, 16)
    G = args.integer("G", G, 2, H - 1) if H > 2 else args.integer("G", G, 2, 2)
    if H % G or G >= H:
        raise ValueError(f"G must divide H and be less than it: {H} query heads over {G} kv "
                         f"heads")
    K = args.integer("K", K, 1, 256)
    C = args.integer("C", C, 1, 1024)
    R = args.integer("R", R, 2, 128)
    if R % 2:
        raise ValueError(f"R must be even (RoPE rotates pairs of channels), not {R}")
    sizes = {"D": 2, "H": H, "G": G, "K": K, "C": C, "R": R}
    numbers = {v: sum(a.size for a in cache_arrays(v, sizes)) for v, _, _ in ROWS}
    terms = {v: kv_terms(v) for v, _, _ in ROWS}
    return args.fit(lambda w: _draw(w, sizes, numbers, terms), width, "the head-sharing figure")


def _kv_heads(variant: str, H: int, G: int) -> int:
    return {"mha": H, "gqa": G, "mqa": 1}[variant]


def _draw(width: float, sizes: dict[str, int], numbers: dict[str, int],
          terms: dict[str, str]) -> Drawing:
    H, G, C, R = sizes["H"], sizes["G"], sizes["C"], sizes["R"]
    c = Canvas(width)
    label_w = max(max(text_width(name, NORMAL), text_width(sub, SMALL)) for _, name, sub in ROWS)
    heads_x = label_w + 6
    pitch = BOX + 3
    heads_w = H * pitch - 3
    bar_x = heads_x + heads_w + 10
    texts = {v: f"{terms[v]} = {count(numbers[v])}" for v in numbers}
    room = width - bar_x
    if room < max(fact_width(t, SMALL) for t in texts.values()) or room < 40:
        raise args.NoRoom
    most = max(numbers.values())

    for i, (variant, name, sub) in enumerate(ROWS):
        top = 1 + i * (ROW + SPACE)
        c.text(0, top + ASCENT * NORMAL, name, size=NORMAL)
        c.text(0, top + ROW - DESCENT * SMALL, sub)
        bottom = top + BOX + GAP
        queries = [heads_x + h * pitch for h in range(H)]
        for x in queries:
            c.rect(x, top, BOX, BOX, **QUERY)
        if variant == "mla":
            latent_w = heads_w * C / (C + R)
            c.rect(heads_x, bottom, latent_w - 1.5, BOX, **CACHED)
            c.rect(heads_x + latent_w, bottom, heads_w - latent_w, BOX, **CACHED)
            # Every head reads the whole latent (its keys and values) and the shared RoPE key.
            for x in queries:
                c.line(x + BOX / 2, top + BOX, heads_x + latent_w / 2, bottom, colour=INK[0],
                       line=0.35)
        else:
            n = _kv_heads(variant, H, G)
            group = H // n
            for g in range(n):
                first, last = queries[g * group], queries[(g + 1) * group - 1]
                centre = (first + last + BOX) / 2
                c.rect(centre - BOX / 2, bottom, BOX, BOX, **CACHED)
                for x in queries[g * group:(g + 1) * group]:
                    c.line(x + BOX / 2, top + BOX, centre, bottom, colour=INK[0], line=0.35)
        c.text(bar_x, top + ASCENT * SMALL, fact(texts[variant]))
        bar_w = (width - bar_x) * numbers[variant] / most
        c.rect(bar_x, top + ROW - BAR, bar_w, BAR, **CACHED)

    y = 1 + len(ROWS) * (ROW + SPACE) + ASCENT * SMALL
    y = c.flow(0, y, width, [(QUERY, ("query head",)),
                             (CACHED, ("cached per token, per layer",))])
    y = c.paragraph(0, y + 1.3 * SMALL, width, [
        ("Bars: numbers cached per token, one layer,",),
        (f"at H = {H}, G = {G}, K = {sizes['K']},",), (f"C = {C}, R = {R}.",)])

    alt = ("Query heads and the keys and values they read. MHA: each of the "
           f"{H} query heads has its own kv head; GQA: groups of {H // G} share one of {G}; "
           "MQA: all share one; MLA: all read one cached latent plus a shared RoPE key. "
           "Numbers cached per token per layer: "
           + "; ".join(f"{name} {texts[v]}" for v, name, _ in ROWS) + ".")
    return c.drawing(y + DESCENT * SMALL + 1, title="KV heads shared by query heads",
                     alt=alt, facts={f"numbers_{v}": n for v, n in numbers.items()})
