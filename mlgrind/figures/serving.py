"""One GPU's HBM in each candidate replica of a serving deployment, from `calc.inference.Serving`.

A row per replica size n (GPUs per tensor-parallel replica): one GPU's memory as a bar, split
into its share of the weights (weights ÷ n), its share of the batch's KV cache (batch × cache
per user × copies ÷ n), what is left of the usable memory, and the reserve kept for
activations, the CUDA context and fragmentation. Beside it, the batch the calculator chose and
the GPUs in all that it needs. The weights' share shrinks as n grows, so more users fit per
GPU, until tensor parallelism splits the kv heads (n > G) and the cache is stored twice. Each
kind of memory has its role's colour and its own hatch, so grayscale keeps them apart.
"""

from __future__ import annotations

from mlgrind.calc.inference import ServePlan, domain
from mlgrind.facts.serving import (CONTEXT, HARDWARE, MAX_GPUS, MAX_USERS, MODEL, RATE, USERS,
                                   binds, gb_text, plan, serving)
from mlgrind.figures import args
from mlgrind.figures.canvas import (ASCENT, DESCENT, SMALL, Canvas, Drawing, fact, text_width,
                                    width_of)
from mlgrind.figures.fmt import count
from mlgrind.figures.registry import figure
from mlgrind.palette import INK, ROLES, RULE

BAR, PITCH = 9, 13  # pt: a bar's height, and a row's


def _kind(kind: str) -> dict:
    return {"hatch": kind, "stroke": ROLES[kind].colour, "line": 0.5}


FREE = {"stroke": RULE, "line": 0.5}
RESERVE = {"hatch": "idle", "stroke": RULE, "line": 0.5}


@figure(worst=[(f"serve_memory(model='deepseek-v3', hardware='mi300x', users={MAX_USERS}, "
                "tokens_per_second=0.01, context=1, sizes=(1, 2, 4, 8, 16, 32, 64))")])
def serve_memory(width: float, model: str = MODEL, hardware: str = HARDWARE, users: int = USERS,
                 tokens_per_second: float = RATE, context: int = CONTEXT,
                 sizes: tuple = (1, 2, 4, 8, 16)) -> Drawing:
    """model: a bundled model; hardware: a bundled accelerator; users 1–10^8; tokens_per_second
    0.01–10,000 per user; context 1 to the model's positions, cached per user; sizes: one to seven
    replica sizes, each 1–64 GPUs, in increasing order (a size `calc serve` does not try, past
    one scale-up domain or splitting the heads unevenly, gets a row saying so)."""
    question = serving(model, hardware, users, tokens_per_second, context)
    if not (isinstance(sizes, tuple) and 1 <= len(sizes) <= 7 and list(sizes) == sorted(set(sizes))):
        raise ValueError(f"sizes must be one to seven replica sizes in increasing order, like "
                         f"(2, 4, 8), not {sizes!r}")
    for n in sizes:
        args.integer("a replica size", n, 1, MAX_GPUS)
    rows = [(n, outcome) for n in sizes for _, outcome in _tried(question, n)]
    best = plan(question)
    return args.fit(lambda w: _draw(w, question, rows, best), width, "the serving memory figure")


def _tried(question, n: int) -> list[tuple[int, ServePlan | str]]:
    """`calc serve`'s outcome for replicas of n GPUs, or, for a size it does not try, why."""
    if n > domain(question.hw):
        return [(n, "beyond one scale-up domain")]
    if question.spec.H % n:
        return [(n, "the heads do not split evenly")]
    return question.candidates(n)


def _draw(width: float, question, rows: list[tuple[int, ServePlan | str]], best: ServePlan) -> Drawing:
    gpu, u = question.hw, question.usable_memory
    c = Canvas(width)
    left = max(text_width(f"n = {n}", SMALL) for n, _ in rows) + 4
    right_runs = {n: _result(p, n == best.gpus_per_replica) for n, p in rows if isinstance(p, ServePlan)}
    header = "users → GPUs"
    right = max([width_of(*r) for r in right_runs.values()] + [text_width(header, SMALL)]) + 4
    bar_w = width - left - right
    if bar_w < 70:  # under 70 pt the thinner segments vanish
        raise args.NoRoom
    scale = bar_w / gpu.hbm_bytes

    y = ASCENT * SMALL + 1
    label = (f"one {gpu.key}: ", fact(gb_text(gpu.hbm_bytes)), f" HBM, {u:.0%} usable")  # u: given
    if width_of(*label) <= width - right:
        c.text(width - right, y, *label, anchor="end")
    elif width_of(*label) <= width:  # a narrow panel: the label on a line of its own
        c.text(0, y, *label)
        y += PITCH
    else:
        raise args.NoRoom
    c.text(left + bar_w + 3, y, header)
    top = y + DESCENT * SMALL + 3
    any_free = False
    for i, (n, outcome) in enumerate(rows):
        row = top + i * PITCH
        baseline = row + BAR / 2 + 0.36 * SMALL
        c.text(left - 3, baseline, f"n = {n}", anchor="end")
        if not isinstance(outcome, ServePlan):
            reason = outcome.split(" (")[0]
            if text_width(reason, SMALL) > width - left:
                raise args.NoRoom
            c.text(left, baseline, reason)
            continue
        weights = outcome.weights / n
        cache = outcome.batch_per_replica * outcome.kv_per_user * outcome.kv_copies / n
        free = max(0.0, outcome.usable / n - weights - cache)
        any_free = any_free or free * scale >= 1  # at least a pt: visible
        x = left
        for w, style in ((weights, _kind("params")), (cache, _kind("kv-cache")), (free, FREE)):
            c.rect(x, row, w * scale, BAR, **style)
            x += w * scale
        x_usable = left + u * gpu.hbm_bytes * scale
        c.rect(x_usable, row, (1 - u) * gpu.hbm_bytes * scale, BAR, **RESERVE)
        c.line(x_usable, row - 2, x_usable, row + BAR + 2, colour=INK[0], line=0.7, dash="2,1.5")
        c.text(left + bar_w + 3, baseline, *right_runs[n])
    bottom = top + (len(rows) - 1) * PITCH + BAR

    legend = [(_kind("params"), ("weights ÷ n",)), (_kind("kv-cache"), ("KV cache ÷ n",)),
              (RESERVE, ("reserve",))]
    if any_free:  # only when the target, not the memory, stops some batch
        legend.insert(2, (FREE, ("free",)))
    y = c.flow(0, bottom + 6 + ASCENT * SMALL, width, legend)
    s = question.spec
    y = c.paragraph(0, y + 10, width, [
        (f"{s.name}, {count(question.users)} users",), (f"at {question.tokens_per_second:g} tokens/s,",),
        (f"{count(question.context)} tokens cached each.",),
        *([(f"Past {domain(gpu)} GPUs a replica would span",), ("the slower network.",)]
          if any(n > domain(gpu) for n, _ in rows) else []),
        *([(f"Past n = G = {s.G}, each kv head sits on n/G GPUs.",)]
          if s.mla is None and any(isinstance(p, ServePlan) and p.kv_copies > 1 for _, p in rows)
          else []),
    ])
    shown = [f"n = {n}: " + (f"batch {p.batch_per_replica:,}, {p.gpus:,} GPUs ({binds(question, p)} binds)"
                             if isinstance(p, ServePlan) else p) for n, p in rows]
    alt = (f"Memory of one {gpu.key} ({gb_text(gpu.hbm_bytes)}, {u:.0%} usable) in each replica "
           f"size serving {s.name} to {question.users:,} users at {question.tokens_per_second:g} "
           f"tokens/s with {question.context:,} cached tokens: " + "; ".join(shown)
           + f". Fewest GPUs: {best.gpus:,} in replicas of {best.gpus_per_replica}.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Serving memory per GPU, {s.name}", alt=alt,
                     facts={**{f"n{n}_gpus": p.gpus for n, p in rows if isinstance(p, ServePlan)},
                            **{f"n{n}_batch": p.batch_per_replica for n, p in rows
                               if isinstance(p, ServePlan)},
                            "best_gpus": best.gpus, "best_replica": best.gpus_per_replica})


def _result(p: ServePlan, best: bool) -> tuple:
    return fact(f"{p.batch_per_replica:,}"), " → ", fact(f"{p.gpus:,}", bold=best)
