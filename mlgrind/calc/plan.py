"""The sharding planner: how to lay a model out over N GPUs to train on a global batch of B
sequences of L tokens, and why that layout.

Search: every TP × PP × CP × DP = N, with EP (MoE only) carved out of DP × CP as in Megatron, with
    TP | GPUs per node, TP | heads       a TP group is part of one node: its collectives need NVLink
    PP | layers                          equal stages
    CP | L, EP | experts, EP | DP · CP
    m = B / (DP · b) whole, ≥ 1           micro-batches per step, b sequences each
and every ZeRO stage 0–3 over the data-parallel ranks. Each gets the cheapest recomputation that
fits in usable · HBM (none, then selective, then full: recomputing costs compute), with memory
from `memory.memory_per_rank`, sequence parallelism on whenever TP > 1. Attention is
FlashAttention by default: it keeps no s×s scores, so selective recomputation, which frees only
those, is not tried (`kernel="eager"` keeps them, as Korthikanti et al.'s tables).

Step time of one GPU (every GPU does 1/N of the work), 1F1B or GPipe schedule:

    compute   (B·L·(3·FWD + recomputed) + (p − 1)·head) / (N · peak · efficiency)
    slot      (compute + TP, CP, EP collectives) / m       one micro-batch through one stage
    step      (m + p − 1) · slot + PP sends + exposed DP   (Narayanan et al. 2021, eq. 1)

The bubble is (p − 1) · slot, (p − 1)/m of the pipeline's work; `head` is the output head's
FLOPs, which only the last stage runs, so the pipeline moves at that stage's pace (Dubey et al.
2024, sec. 3.3.2, trim a layer from it for this reason). Collectives are the rows of
`comms.step_collectives` (recomputation, ZeRO-2's per-micro-batch reductions and ZeRO-3's
per-layer gathers included), each timed over its fabric by `comms.row_route`: α + bytes / β,
with α from NCCL's own cost model (per call and per ring step, by link) or --latency.

Overlap: TP, CP and EP collectives and PP sends are exposed; each sits between two computations
that need its result (no overlapping kernels assumed; pessimistic for ring attention). DP traffic
blocks nothing until the optimizer step, but only a fraction o (--overlap) of it hides under
compute: NCCL's kernels take SMs and HBM bandwidth from the matmuls they run beside, and a
step's first gather and last reduction have nothing to hide under. (1 − o) of it is exposed;
the rest runs under the backward pass (gradient reductions, 2/3 of a micro-batch's compute) or
the forward (parameter gathers, 1/3), of the last (first) micro-batch when it runs once per step,
of each micro-batch when it runs on every one, and what exceeds that window is exposed too.

Memory: `memory.memory_per_rank`, plus under ZeRO-3 the full parameters it gathers, of the layer
being computed and the next one prefetched, and the full gradients of a layer before their
reduce-scatter: (2 · params + grads) bytes of one layer's parameters (/ TP, as each rank holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlgrind.calc import comms, flops, memory
from mlgrind.calc.hardware import Hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, dur, gb, num, rate, size, table_text

OVERLAP = 0.7  # the fraction of DP traffic that can hide under compute (module docstring)
MAX_LAYOUTS = 5_000  # keeps a plan well under a second; pins narrow a larger search
STAGE_KINDS = ("TP", "EP", "CP")  # per layer and micro-batch: on every pipeline slot


@dataclass(frozen=True)
class Request:
    spec: ModelSpec
    hw: Hardware
    gpus: int
    batch: int  # global, in sequences
    seq_len: int
    micro_batch: int = 1
    efficiency: float = 0.5  # fraction of the bf16 dense peak the matmuls reach
    usable: float = 0.9  # fraction of HBM a GPU may fill
    precision: str = "mixed"
    latency: float | None = None  # α per collective step; None: NCCL's model (comms.ALPHA_SOURCE)
    overlap: float = OVERLAP  # of DP traffic, 0 … 1
    kernel: str = "flash"  # attention kernel: flash keeps no s×s scores (memory.KERNELS)

    @property
    def limit(self) -> float:
        return self.usable * self.hw.hbm_bytes

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    cp: int = 1
    ep: int = 1

    @property
    def parallel(self) -> memory.Parallel:
        return memory.Parallel(self.dp, self.tp, self.pp, self.ep, self.cp)

    @property
    def name(self) -> str:
        extra = [f"CP{self.cp}"] * (self.cp > 1) + [f"EP{self.ep}"] * (self.ep > 1)
        return " ".join([f"TP{self.tp}", f"PP{self.pp}", f"DP{self.dp}", *extra])


def kind(row: comms.CommRow) -> str:
    """TP, PP, DP, EP or CP: the parallelism of a `comms` row ("TP+SP", "DP ZeRO-1", ...)."""
    return row.parallelism.split()[0].split("+")[0]


def syncs_replicas(row: comms.CommRow) -> bool:
    """A DP row: every row but the per-layer TP, EP, CP collectives and PP's sends."""
    return kind(row) not in (*STAGE_KINDS, "PP")


@dataclass(frozen=True)
class Plan:
    layout: Layout
    zero: int
    recompute: str
    microbatches: int
    memory: memory.RankMemory
    gathered: float  # ZeRO-3's gathered layers and their full gradients (`gathered_bytes`)
    refused: dict[str, float]  # cheaper recomputation → the bytes it would need
    flops: float  # executed per step on all GPUs, recomputation included
    compute: float  # seconds per GPU, at the last pipeline stage's pace
    comms: tuple[tuple[comms.CommRow, float], ...]  # each row and its seconds per step
    dp_exposed: float
    bubble: float
    step: float

    @property
    def fits(self) -> bool:
        return self.recompute not in self.refused

    @property
    def memory_total(self) -> float:
        return self.memory.total + self.gathered

    def seconds(self, *kinds: str) -> float:
        return sum(t for row, t in self.comms if kind(row) in kinds)

    @property
    def exposed(self) -> float:
        return self.seconds(*STAGE_KINDS, "PP") + self.dp_exposed

    @property
    def rank(self) -> tuple[float, float, float]:
        """Fastest first; at equal speed the one that sends less, then the one that holds less."""
        return self.step, sum(row.bytes_per_rank for row, _ in self.comms), self.memory_total


# ----------------------------------------------------------------------------- the search


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def layouts(req: Request, pins: dict[str, int | None]) -> list[Layout]:
    """Every layout of `req.gpus` that the model's shape and the batch allow (module docstring)."""
    s, n = req.spec, req.gpus
    found = []
    for tp in _divisors(n):
        if req.hw.gpus_per_node % tp or s.H % tp or pins.get("tp") not in (None, tp):
            continue
        for pp in _divisors(n // tp):
            if s.n_layers % pp or pins.get("pp") not in (None, pp):
                continue
            for cp in _divisors(n // (tp * pp)):
                dp = n // (tp * pp * cp)
                if req.seq_len % cp or req.batch % (dp * req.micro_batch) or pins.get("cp") not in (None, cp):
                    continue
                for ep in _divisors(math.gcd(s.E, dp * cp)) if s.E else [1]:
                    if pins.get("ep") in (None, ep):
                        found.append(Layout(tp, pp, dp, cp, ep))
                if len(found) > MAX_LAYOUTS:
                    raise SpecError(f"more than {MAX_LAYOUTS:,} layouts of {n:,} GPUs; pin --tp, --pp, "
                                    "--cp or --ep to narrow the search")
    if not found:
        raise SpecError(
            f"no layout of {n:,} GPUs suits {s.name} and the batch: TP must divide {s.H} heads and the "
            f"{req.hw.gpus_per_node} GPUs of a node, PP the {s.n_layers} layers, CP the sequence "
            f"{req.seq_len:,}, DP · micro-batch {req.micro_batch} the batch {req.batch:,}"
            + (", with the sizes pinned" if any(v is not None for v in pins.values()) else ""))
    return found


def recompute_flops_per_token(spec: ModelSpec, seq_len: int, recompute: str) -> int:
    """Forward FLOPs run again per token: full recomputes every layer (not the output head),
    selective only the attention scores and weighted sum (Korthikanti et al. 2022, sec. 5)."""
    if recompute == "full":
        return (flops.training_flops_per_token(spec, seq_len, recompute=True)
                - flops.training_flops_per_token(spec, seq_len))
    return flops.attention_flops_per_token(spec, seq_len) if recompute == "selective" else 0


def head_flops(req: Request) -> float:
    """The output head's FLOPs per step: 3 · 2 · V · D per token (never recomputed)."""
    return req.tokens * 3 * 2 * count(req.spec).output_head


def gathered_bytes(req: Request, lay: Layout, zero: int, mem: memory.RankMemory) -> float:
    """ZeRO-3's transient full layers: the one computed and the next prefetched (parameters),
    and one layer's full gradients before their reduce-scatter; one layer is this rank's
    parameters (already / TP) over its stage's layers."""
    if zero != 3:
        return 0.0
    recipe = memory.RECIPES[req.precision]
    layer = mem.params_per_rank / (req.spec.n_layers // lay.pp)
    return layer * (2 * recipe.params + recipe.grads)


def dp_overlap(zero: int, m: int, compute: float, seconds: dict[str, float],
               overlap: float = 1.0) -> tuple[float, str]:
    """Exposed DP seconds and their working: (1 − overlap) of them, and of the rest what exceeds
    its window, reductions under a backward pass, gathers under a forward pass, of one
    micro-batch when once per step, of each when on every micro-batch."""
    window = {"bwd": 2 * compute / m / 3, "fwd": compute / m / 3}
    ar, rs, ag = (seconds.get(c, 0.0) for c in ("all_reduce", "reduce_scatter", "all_gather"))
    terms = {0: [("all-reduce", ar, "bwd", 1)],  # (what, seconds per step, under, times per step)
             1: [("reduce-scatter", rs, "bwd", 1), ("all-gather", ag, "fwd", 1)],
             2: [("reduce-scatter", rs, "bwd", m), ("all-gather", ag, "fwd", 1)],
             3: [("reduce-scatter + all-gather/2", rs + ag / 2, "bwd", m), ("all-gather/2", ag / 2, "fwd", m)]}[zero]
    total = ar + rs + ag
    exposed = (1 - overlap) * total + sum(n * max(0.0, overlap * t / n - window[phase]) for _, t, phase, n in terms)
    o = num(overlap)
    symbols = " + ".join(f"max(0, o · {what} − {phase})" if n == 1 else f"m · max(0, o · ({what}) / m − {phase})"
                         for what, _, phase, n in terms)
    numbers = " + ".join(f"max(0, {o} · {dur(t)} − {dur(window[phase])})" if n == 1 else
                         f"{n:,} · max(0, {o} · {dur(t)} / {n:,} − {dur(window[phase])})" for _, t, phase, n in terms)
    return exposed, (f"(1 − o) · DP + {symbols} = (1 − {o}) · {dur(total)} + {numbers} = {dur(exposed)}; "
                     f"bwd, fwd = ⅔, ⅓ · compute / m = {dur(window['bwd'])}, {dur(window['fwd'])}")


def _dp_seconds(timed) -> dict[str, float]:
    """Seconds of the DP rows, per collective."""
    seconds: dict[str, float] = {}
    for row, t in timed:
        if syncs_replicas(row):
            seconds[row.collective] = seconds.get(row.collective, 0.0) + t
    return seconds


def evaluate(req: Request, lay: Layout, zero: int) -> Plan:
    """One layout and ZeRO stage with the cheapest recomputation that fits, timed; when none
    fits, the full-recomputation plan (its memory says by how much)."""
    spec, hw = req.spec, req.hw
    m = req.batch // (lay.dp * req.micro_batch)
    refused = {}
    # With FlashAttention selective recomputation frees nothing more: the scores are never kept.
    policies = [p for p in memory.RECOMPUTE if not (p == "selective" and req.kernel == "flash")]
    for recompute in policies:
        mem = memory.memory_per_rank(spec, lay.parallel, zero, req.micro_batch, req.seq_len, recompute,
                                     lay.tp > 1, req.precision, m, kernel=req.kernel)
        gathered = gathered_bytes(req, lay, zero, mem)
        if mem.total + gathered <= req.limit:
            break
        refused[recompute] = mem.total + gathered
    executed = req.tokens * (flops.training_flops_per_token(spec, req.seq_len)
                             + recompute_flops_per_token(spec, req.seq_len, recompute))
    compute = (executed + (lay.pp - 1) * head_flops(req)) / (req.gpus * hw.bf16_flops * req.efficiency)
    rows = comms.step_collectives(spec, lay.parallel, req.micro_batch, req.seq_len, m, zero, sp=lay.tp > 1,
                                  gpus_per_node=hw.gpus_per_node, recompute=recompute)
    timed = tuple((row, row.calls * comms.row_route(row, hw).seconds(row.collective, row.n_bytes, row.group,
                                                                    req.latency))
                  for row in rows)
    dp = _dp_seconds(timed)
    dp_exposed = dp_overlap(zero, m, compute, dp, req.overlap)[0] if dp else 0.0
    stage = sum(t for row, t in timed if kind(row) in STAGE_KINDS)
    bubble = (lay.pp - 1) * (compute + stage) / m
    step = compute + stage + sum(t for row, t in timed if kind(row) == "PP") + dp_exposed + bubble
    return Plan(lay, zero, recompute, m, mem, gathered, refused, executed, compute, timed, dp_exposed, bubble, step)


def search(req: Request, pins: dict[str, int | None]) -> tuple[list[Plan], list[Plan]]:
    """The fastest fitting plan of each layout, fastest first; and the layouts that fit with no
    ZeRO stage, each at its smallest memory."""
    hw = req.hw
    domain = hw.scale_up.reach if hw.scale_up else hw.gpus_per_node
    if req.gpus > domain and hw.network_bw is None:
        raise SpecError(f"{req.gpus:,} × {hw.key} span more than its {domain:,}-chip domain, and it lists no "
                        "network bandwidth to time the collectives across (see `mlgrind calc hardware`)")
    fitting, rejected = [], []
    for lay in layouts(req, pins):
        if pins.get("zero") is not None:
            stages = [pins["zero"]]
        else:
            stages = [0, 1, 2, 3] if lay.dp * lay.cp > 1 else [0]  # nothing to shard over
        plans = [evaluate(req, lay, zero) for zero in stages]
        fits = [p for p in plans if p.fits]
        if fits:
            fitting.append(min(fits, key=lambda p: p.rank))
        else:
            rejected.append(min(plans, key=lambda p: p.memory_total))
    if not fitting:
        least = min(rejected, key=lambda p: p.memory_total)
        raise SpecError(
            f"{req.spec.name} does not fit on {req.gpus:,} × {hw.key}: the smallest layout, "
            f"{least.layout.name} ZeRO-{least.zero} with full recomputation, needs {size(least.memory_total)} "
            f"per GPU, more than the {size(req.limit)} usable ({req.usable:.0%} of {size(hw.hbm_bytes)})")
    return sorted(fitting, key=lambda p: p.rank), rejected


# ----------------------------------------------------------------------------- the report


def _mfu(req: Request, p: Plan) -> float:
    return req.tokens * flops.training_flops_per_token(req.spec, req.seq_len) / (p.step * req.gpus * req.hw.bf16_flops)


def summary(req: Request, p: Plan) -> dict:
    """One ranked layout in base units (the `plans` list of the JSON)."""
    lay = p.layout
    return {"layout": lay.name, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "cp": lay.cp, "ep": lay.ep,
            "zero": p.zero, "recompute": p.recompute, "microbatches": p.microbatches,
            "memory_bytes": p.memory_total, "step_seconds": p.step, "compute_seconds": p.compute,
            "bubble_seconds": p.bubble, "exposed_comm_seconds": p.exposed,
            "tokens_per_second": req.tokens / p.step, "mfu": _mfu(req, p)}


def ranking_text(report: Report, width: int | None = None) -> str:
    """The ranked layouts of a `report`, one row each, every column with its unit."""
    rows = [[str(i), p["layout"], str(p["zero"]), p["recompute"], f"{p['memory_bytes'] / 1e9:.1f}",
             f"{p['step_seconds']:.3g}", f"{p['bubble_seconds']:.3g}", f"{p['exposed_comm_seconds']:.3g}",
             f"{p['mfu']:.0%}"] for i, p in enumerate(report.context["plans"], 1)]
    return table_text(f"{report.title}: the fastest layouts that fit (memory in GB per GPU; step, "
                      "bubble and exposed communication in seconds per step)",
                      ["#", "layout", "ZeRO", "recompute", "GB", "step", "bubble", "comm", "MFU"], rows, width)


def report(req: Request, pins: dict[str, int | None] | None = None, top: int = 5) -> Report:
    """The ranked layouts (`context["plans"]`) and the fastest one's full working."""
    ranked, rejected = search(req, pins or {})
    spec, hw, best = req.spec, req.hw, ranked[0]
    lay, n, B, L, m = best.layout, req.gpus, req.batch, req.seq_len, best.microbatches
    r = Report(f"{spec.name} on {n:,} × {hw.key}, batch {B:,} × {L:,} tokens",
               context={"model": spec.name, "hardware": hw.key, "plans": [summary(req, p) for p in ranked[:top]]})
    searched = len(ranked) + len(rejected)
    r.add("layout", lay.name, f"{lay.name}, ZeRO-{best.zero}, {best.recompute} recomputation",
          f"TP · PP · CP · DP = {lay.tp} · {lay.pp} · {lay.cp} · {lay.dp} = {n:,} GPU{'s' * (n > 1)}"
          + (f", EP {lay.ep} of the DP · CP ranks" if lay.ep > 1 else ""),
          f"the fastest of {searched:,} layouts by estimated step time; {len(rejected):,} do not fit",
          "ranks ordered TP innermost, then CP, DP, PP (Megatron's): a TP group is part of one node")
    r.add("microbatches", m, f"{m:,} of {req.micro_batch} sequence{'s' * (req.micro_batch > 1)}",
          f"B / (DP · b) = {B:,} / ({lay.dp} · {req.micro_batch}) = {m:,}",
          "b sequences per micro-batch (--micro-batch)")
    r.add("memory limit", req.limit, gb(req.limit),
          f"usable · HBM = {num(req.usable)} · {size(hw.hbm_bytes)} = {size(req.limit)}",
          f"{req.usable:.0%} of HBM usable: the rest is the CUDA context, NCCL buffers and fragmentation "
          "(--usable-memory)")
    mem = best.memory
    refused = "; ".join(f"{k} needs {size(v)}" for k, v in best.refused.items())
    shards = ["optimizer states", "gradients", "parameters"][:best.zero]
    zero3 = (f" + ZeRO-3 gathered = {size(mem.params)} + {size(mem.grads)} + {size(mem.optimizer)} + "
             f"{size(mem.activations)} + {size(best.gathered)}" if best.zero == 3 else
             f" = {size(mem.params)} + {size(mem.grads)} + {size(mem.optimizer)} + {size(mem.activations)}")
    r.add("memory per gpu", best.memory_total, gb(best.memory_total),
          f"params + grads + optimizer + activations{zero3} = {size(best.memory_total)} ≤ {size(req.limit)}",
          f"{memory.RECIPES[req.precision].text} (--precision {req.precision})",
          f"ZeRO-{best.zero}: " + (", ".join(shards) + " sharded over the DP · CP ranks" if shards else
                                   "model states not sharded"),
          "activations: Korthikanti et al. 2022, Table 2, sequence-parallel with TP; the first 1F1B "
          "stage holds min(p, m) micro-batches",
          "attention kernel flash (--attention-kernel): FlashAttention keeps no s×s scores, so selective "
          "recomputation frees nothing more and is not tried" if req.kernel == "flash" else
          "attention kernel eager (--attention-kernel): the s×s scores, softmax and dropout mask are kept",
          f"{best.recompute} recomputation: the cheapest that fits" + (f" ({refused})" if refused else ""),
          "ZeRO-3 gathered: one layer's parameters, gathered for the layer computed and prefetched for the "
          "next, and its full gradients before their reduce-scatter, (2 · params + grads) bytes each"
          if best.zero == 3 else "")
    fwd, again = flops.forward_flops_per_token(spec, L), recompute_flops_per_token(spec, L, best.recompute)
    r.add("flops per step", best.flops, f"{num(best.flops)} FLOPs",
          f"B · L · (3 · FWD + recomputed) = {B:,} · {L:,} · (3 · {num(fwd)} + {num(again)}) = {num(best.flops)}",
          "FWD per token: 2 FLOPs per weight a token meets + dense attention (PaLM convention); "
          "backward = 2 × forward")
    peak = f"{n:,} · {num(hw.bf16_flops)} · {num(req.efficiency)}"
    efficiency = (f"matmuls at {req.efficiency:.0%} of the bf16 dense peak (--efficiency); "
                  "TP, PP, CP, EP and DP split the work evenly")
    if lay.pp > 1:
        r.add("compute", best.compute, dur(best.compute),
              f"(FLOPs + (p − 1) · head) / (N · peak · efficiency) = ({num(best.flops)} + {lay.pp - 1} · "
              f"{num(head_flops(req))}) / ({peak}) = {dur(best.compute)}", efficiency,
              "the last stage also runs the output head, 3 · 2 · V · D FLOPs per token: the pipeline "
              "moves at its pace (Dubey et al. 2024, sec. 3.3.2)")
    else:
        r.add("compute", best.compute, dur(best.compute),
              f"FLOPs / (N · peak · efficiency) = {num(best.flops)} / ({peak}) = {dur(best.compute)}", efficiency)
    alpha = (f"α = {num(req.latency)} s per collective step (--latency)" if req.latency is not None
             else comms.ALPHA_SOURCE)
    for row, t in best.comms:
        route = comms.row_route(row, hw)
        factor = comms.bus_factor(row.collective, row.group)
        r.add(f"{row.parallelism} {row.collective.replace('_', '-')}", t,
              f"{dur(t)}, " + ("partly overlapped (dp exposed)" if syncs_replicas(row) else "exposed"),
              f"calls · (α + factor · n / β) = {row.calls:,} · ({dur(route.latency(req.latency))} + {num(factor)}"
              f" · {size(row.n_bytes)} / {rate(route.beta, 'B')}) = {dur(t)}; α: {route.latency_text(req.latency)}",
              f"{row.tensor} over {row.group} ranks on {route.fabric}: {route.algorithm}", route.link, alpha,
              f"DP traffic waits for nothing but the optimizer step: {req.overlap:.0%} of it can overlap compute "
              "(--overlap)" if syncs_replicas(row)
              else "exposed: the next computation needs its result (no overlapping kernels assumed)",
              *(row.notes if syncs_replicas(row) and best.zero >= 2 else ()))
    dp = _dp_seconds(best.comms)
    if dp:
        r.add("dp exposed", best.dp_exposed, dur(best.dp_exposed), dp_overlap(best.zero, m, best.compute, dp, req.overlap)[1],
              f"o = {num(req.overlap)} (--overlap): NCCL's kernels take SMs and HBM bandwidth from the matmuls "
              "they run beside, and a step's first gather and last reduction have nothing to hide under; "
              "1.0 is perfect overlap",
              "the overlapped part runs under a backward pass (gradient reductions, ⅔ of a micro-batch's "
              "compute) or a forward pass (parameter gathers, ⅓): one micro-batch's when once per step, "
              "each one's when on every micro-batch")
    stage = best.seconds(*STAGE_KINDS)
    r.add("bubble", best.bubble, dur(best.bubble),
          f"(p − 1) · (compute + TP, CP, EP) / m = {lay.pp - 1} · ({dur(best.compute)} + {dur(stage)})"
          f" / {m:,} = {dur(best.bubble)}",
          "1F1B (PipeDream-Flush) or GPipe schedule: idle (p − 1)/m of the pipeline's work "
          "(Narayanan et al. 2021, sec. 2.2.1); no interleaving")
    r.add("step time", best.step, dur(best.step),
          f"compute + exposed communication + bubble = {dur(best.compute)} + {dur(best.exposed)} + "
          f"{dur(best.bubble)} = {dur(best.step)}")
    tps = req.tokens / best.step
    r.add("tokens per second", tps, f"{tps:,.0f} tokens/s",
          f"B · L / step = {B:,} · {L:,} / {num(best.step)} s = {num(tps)}")
    achieved = best.flops / (best.step * n)
    r.add("achieved per gpu", achieved, rate(achieved, "FLOP"),
          f"FLOPs / (step · N) = {num(best.flops)} / ({num(best.step)} s · {n:,}) = {num(achieved)}",
          "recomputed FLOPs counted, as Narayanan et al. 2021 count them")
    mfu = _mfu(req, best)
    r.add("mfu", mfu, f"{mfu:.1%}",
          f"B · L · 3 · FWD / (step · N · peak) = {B:,} · {L:,} · 3 · {num(fwd)} / ({num(best.step)} s · {n:,}"
          f" · {num(hw.bf16_flops)}) = {num(mfu)}",
          "MFU counts the model's FLOPs only, not recomputation (Chowdhery et al. 2022)")
    if rejected:
        # The least model-parallel layout refused answers "why not plain data parallelism?".
        why = min(rejected, key=lambda p: (p.layout.tp * p.layout.pp * p.layout.cp, p.memory_total))
        r.add("rejected", len(rejected), f"{len(rejected):,} of {searched:,} layouts do not fit",
              f"e.g. {why.layout.name}: {size(why.memory_total)} per GPU at least (ZeRO-{why.zero}, full "
              f"recomputation) > {size(req.limit)}")
    return r
