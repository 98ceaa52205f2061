"""Communication: the cost of one collective on one tensor, and every collective of a training
step, with the working (bytes, steps, bandwidth, time) and the assumptions behind it.

Bytes each rank sends for a tensor of n bytes over a group of S ranks (the closed forms of
`mlgrind.ref.collectives`, checked there against simulated rings):

    all-reduce         2(S−1)/S · n     reduce-scatter, all-gather, all-to-all   (S−1)/S · n
    send / broadcast   n

These are NCCL's "bus bandwidth" factors (nccl-tests, doc/PERFORMANCE.md: busbw = algbw ×
factor), so with β the bandwidth one rank sends at, the α-β time is

    t = α · steps + factor · n / β

β and the steps depend on the fabric (`route`):
    switch (NVSwitch, PCIe)   ring (all-to-all: direct sends through the switch); β = the chip's
                              bandwidth in one direction; steps 2(S−1) or S−1
    network (across nodes)    k rings in parallel, one per NIC of the k ranks on a node (NCCL
                              channels): β = min(k · NIC, scale-up bandwidth). An all-to-all is no
                              ring: the off-node share (S − k)/S · n leaves through the rank's own
                              NIC while the on-node share (k − 1)/S · n crosses the scale-up fabric
    mesh (MI300X)             one hop to each peer over its own link: β = (S−1) · link; steps 2 or 1
    torus (TPU ICI)           every axis at once, each a bidirectional ring on its own 2 links:
                              β = 2 · axes · link (the bandwidth-optimal torus all-reduce, Google's
                              "all-reduce bandwidth per Pod" = chips · β); all-to-all by
                              dimension-ordered routing, limited by the busiest link

α, the latency of one step, defaults to 0 in `collective_report` (the bandwidth term only, or
--latency); `Route.latency(None)` is NCCL's own model (src/graph/tuning.cc, ring, Simple
protocol): 8.4 µs per call + 3.4 µs per step over NVLink, 5.7 µs over PCIe, 14 µs per step
that crosses the network (a ring of S ranks on N nodes crosses it N − 1 times per pass).

Per step, with micro-batch b, sequence s, hidden D, m micro-batches, layers per stage l:

    DP / ZeRO-0   all-reduce of every gradient over the ranks holding a replica of it: dense
                  parameters over DP·CP ranks, routed experts over the expert-data-parallel
                  group of DP·CP/EP ranks (Megatron-Core's expert data parallelism)
    ZeRO-1        reduce-scatter grads + all-gather params, per group: same bytes as DP
    ZeRO-2        the same, but a rank keeps only its gradient shard, so it reduce-scatters
                  after every micro-batch's backward: m calls
    ZeRO-3        + all-gather params again for backward: 1.5 × DP per micro-batch (ZeRO paper,
                  sec. 7), one layer at a time (FSDP's unit): per micro-batch and layer one
                  gather forward, one backward, one reduce-scatter, of one layer's parameters
    TP            per layer 2 all-reduces of b·s·D forward, 2 backward (Megatron, Shoeybi et
                  al. 2019, Fig. 4); full recomputation runs the forward again in backward:
                  2 more (Korthikanti et al. 2022). Sequence parallel turns each all-reduce into
                  a reduce-scatter + all-gather pair: same bytes
    PP            per micro-batch one send of b·s·D forward, one of its gradient backward
    EP            per MoE layer 2 all-to-alls forward (dispatch, combine), 2 backward (+2 under
                  full recomputation), of the b·s·top_k token copies (uniform routing assumed)
    CP            ring attention per layer: S−1 passes of the local K, V block forward, twice
                  that backward; recomputing the attention (selective or full) repeats the
                  forward's passes
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlgrind.calc.hardware import Hardware
from mlgrind.calc.memory import RECOMPUTE, Parallel
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, dur, gb, num, rate, size

COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send", "broadcast")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
LINKS = ("nvlink", "infinity-fabric", "ici", "pcie", "network")
NCCL = "NCCL's bus-bandwidth factor (nccl-tests doc/PERFORMANCE.md)"


def bus_factor(collective: str, S: int) -> float:
    """NCCL's busbw / algbw: the share of the tensor each rank sends."""
    if collective == "all_reduce":
        return 2 * (S - 1) / S
    if collective in ("reduce_scatter", "all_gather", "all_to_all"):
        return (S - 1) / S
    if collective in ("send", "broadcast"):
        return 1.0
    raise SpecError(f"unknown collective {collective!r}; known: {', '.join(COLLECTIVES)}")


def factor_text(collective: str, S: int | None = None) -> str:
    """The factor in symbols, or with S substituted: 2(S−1)/S, 2·7/8."""
    bus_factor(collective, 2)  # rejects an unknown collective
    if collective in ("send", "broadcast"):
        return "1"
    lead = "2" if collective == "all_reduce" else ""
    if S is None:
        return f"{lead}(S−1)/S"
    return f"{lead + '·' if lead else ''}{S - 1}/{S}"


def ring_steps(collective: str, S: int) -> int:
    if collective == "all_reduce":
        return 2 * (S - 1)
    return 1 if collective == "send" else S - 1


def bytes_per_rank(collective: str, n_bytes: float, S: int) -> float:
    return bus_factor(collective, S) * n_bytes


def collective_seconds(collective: str, n_bytes: float, S: int, bandwidth: float,
                       latency: float = 0.0) -> float:
    """α-β ring model: one latency per step plus the bytes each rank sends over the link."""
    if S == 1 and collective != "send":
        return 0.0
    return latency * ring_steps(collective, S) + bytes_per_rank(collective, n_bytes, S) / bandwidth


# ----------------------------------------------------------------------------- routes


# NCCL's α model (NCCL 2.30, src/graph/tuning.cc, ncclTunerConstantsDefaults; ring, Simple
# protocol, the one large messages use): a base latency per call and one per ring step, by link.
NCCL_BASE = 8.4e-6
STEP_LATENCY = {"NVLink": 3.4e-6, "PCIe": 5.7e-6, "network": 14e-6,
                # No published per-step figure: RCCL is a fork of NCCL, and XLA's ICI collectives
                # are assumed no slower per hop than NVLink.
                "Infinity Fabric": 3.4e-6, "ICI": 3.4e-6}
ALPHA_SOURCE = ("α from NCCL's own cost model (NCCL 2.30 src/graph/tuning.cc, ring, Simple protocol): "
                "8.4 µs per call + 3.4 µs per step over NVLink, 5.7 over PCIe, 14 per step crossing the "
                "network; Infinity Fabric and ICI assumed NVLink's (no published figure)")


@dataclass(frozen=True)
class Route:
    """How one collective crosses the fabric: the bandwidth β one rank sends its share at, the
    latency-bound steps, and the sentences that justify both."""

    fabric: str  # NVLink, Infinity Fabric, ICI, PCIe, network
    beta: float  # bytes/s
    beta_text: str  # its derivation: "900 GB/s both ways / 2 = 450 GB/s"
    steps: int
    steps_text: str  # "2(S−1) = 14"
    algorithm: str  # an assumption sentence
    link: str  # an assumption sentence naming the bandwidth's source
    hops: tuple[tuple[str, int], ...] = ()  # the steps by the link they cross: (("NVLink", 12), ("network", 2))

    def latency(self, alpha: float | None = 0.0) -> float:
        """The α term of one call: `alpha` per step, or with None NCCL's model (module docstring)."""
        if alpha is not None:
            return alpha * self.steps
        return NCCL_BASE + sum(n * STEP_LATENCY[link] for link, n in self.hops or ((self.fabric, self.steps),))

    def latency_text(self, alpha: float | None = 0.0) -> str:
        if alpha is not None:
            return f"α · steps = {num(alpha)} s · {self.steps} = {_dur(self.latency(alpha))}"
        hops = self.hops or ((self.fabric, self.steps),)
        terms = " + ".join(f"{n} · {num(STEP_LATENCY[link] * 1e6)} µs" for link, n in hops if n)
        return f"base + Σ steps · α = 8.4 µs + {terms or '0'} = {_dur(self.latency(None))}"

    def seconds(self, collective: str, n_bytes: float, S: int, latency: float | None = 0.0) -> float:
        return self.latency(latency) + bytes_per_rank(collective, n_bytes, S) / self.beta


def _gbs(x: float) -> str:
    return rate(x, "B")


def _dur(seconds: float) -> str:
    """A duration that stays readable below a microsecond."""
    return dur(seconds) if seconds >= 1e-6 or not seconds else f"{num(seconds)} s"


def _b(x: float) -> str:
    """Bytes inside a formula: exact when whole (234,881,024), else four digits."""
    return f"{x:,.0f}" if float(x).is_integer() else num(x)


def torus_axes(S: int, dims: tuple[int, ...], given: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The torus axes a group of S chips spans: `given`, or S factored greedily over the
    slice's axes (16 chips on a 16x16 pod: one axis of 16; 64: axes of 16 and 4)."""
    if given:
        if math.prod(given) != S:
            raise SpecError(f"--torus {'x'.join(map(str, given))} holds {math.prod(given)} chips, not {S}")
        if len(given) > len(dims) or any(a > max(dims) for a in given):
            raise SpecError(f"--torus {'x'.join(map(str, given))} does not fit the {'x'.join(map(str, dims))} slice")
        return given
    axes, rest = [], S
    for a in dims:
        take = max(d for d in range(1, min(a, rest) + 1) if rest % d == 0)
        axes.append(take)
        rest //= take
    if rest != 1:
        raise SpecError(f"{S} chips do not factor onto the {'x'.join(map(str, dims))} torus; give --torus")
    return tuple(a for a in axes if a > 1) or (1,)


def _ring_steps_text(collective: str, S: int) -> str:
    if collective == "send":
        return "1"
    return f"{'2' if collective == 'all_reduce' else ''}(S−1) = {ring_steps(collective, S)}"


def _switched(collective: str) -> str:
    """How a collective uses a switch: NCCL's ring, or an all-to-all's direct sends."""
    if collective == "all_to_all":
        return "direct sends to every peer (pairwise exchange, no ring)"
    return "one hop" if collective == "send" else "NCCL ring (each rank sends to the next)"


def route(h: Hardware, collective: str, S: int, link: str | None = None, inner: int = 1,
          torus: tuple[int, ...] | None = None) -> Route:
    """The fabric a group of S ranks, `inner` ranks apart in the layout, uses for `collective`:
    the scale-up fabric when the group fits in its domain, else the network (or `link`)."""
    bus_factor(collective, S)
    up = h.scale_up
    span = inner * S  # ranks of the layout block the group lies in
    if link is None:
        link = up.fabric if up and span <= up.reach else "network"
    if link not in LINKS:
        raise SpecError(f"unknown link {link!r}; known: {', '.join(LINKS)}")
    if link == "pcie":
        if h.pcie_bw is None:
            raise SpecError(f"{h.key} lists no PCIe bandwidth between chips")
        return Route("PCIe", h.pcie_bw, f"PCIe {_gbs(2 * h.pcie_bw)} both ways / 2 = {_gbs(h.pcie_bw)}",
                     ring_steps(collective, S), _ring_steps_text(collective, S),
                     f"{_switched(collective)} through the PCIe switch, every chip at its own x16 link (no NVLink)",
                     f"β = {h.key}'s PCIe link in one direction ({h.key} datasheet, hardware.yaml)")
    if link == "network":
        return _network_route(h, collective, S, inner)
    if up is None or up.fabric != link:
        raise SpecError(f"{h.key} has no {link} (its scale-up fabric: {up.name if up else 'none'})")
    if S > up.reach:
        where = (f"largest {'x'.join(map(str, up.torus))} slice" if up.torus else f"{up.name} domain")
        raise SpecError(f"{S} ranks exceed {h.key}'s {up.reach:,}-chip {where}; use --link network")
    if torus and up.topology != "torus":
        raise SpecError(f"--torus describes a TPU slice; {h.key}'s {up.name} is a {up.topology}")
    source = (f"{up.name} {_gbs(up.bandwidth)} per chip both ways, {up.links} links "
              f"({h.key} datasheet, hardware.yaml)")
    if up.topology == "switch":
        return Route(up.name, up.per_direction, f"{_gbs(up.bandwidth)} both ways / 2 = {_gbs(up.per_direction)}",
                     ring_steps(collective, S), _ring_steps_text(collective, S),
                     f"{_switched(collective)} over the {up.name} switch, each rank at its full bandwidth",
                     source)
    if up.topology == "mesh":
        return _mesh_route(up, collective, S, source)
    return _torus_route(up, collective, S, torus_axes(S, up.torus, torus), source)


def _network_route(h: Hardware, collective: str, S: int, inner: int) -> Route:
    if h.network_bw is None:
        raise SpecError(f"{h.key} lists no network bandwidth (its datasheet defines no reference system)")
    k = min(S, max(1, h.gpus_per_node // inner))  # ranks of the group on one node
    nodes = -(-S // k)
    nic = h.network_bw
    up = h.scale_up
    local = up.name if up else "PCIe"  # what a node's ranks reach each other over
    source = f"NIC {_gbs(nic)} per chip in each direction ({h.key} reference system, hardware.yaml)"
    if collective == "all_to_all":
        # Not a ring: the off-node share must leave through this rank's own NIC, the on-node
        # share crosses the scale-up fabric at the same time; the slower of the two sets t.
        near = up.per_direction if up else h.pcie_bw or math.inf
        per_byte = max((S - k) / S / nic, (k - 1) / S / near)
        beta = (S - 1) / S / per_byte
        return Route("network", beta,
                     f"(S−1)/S / max((S−k)/S / NIC, (k−1)/S / {local}) = {S - 1}/{S} / max({S - k}/{S} / "
                     f"{_gbs(nic)}, {k - 1}/{S} / {_gbs(near)}) = {_gbs(beta)}",
                     S - 1, f"(S−1) = {S - 1}",
                     f"all-to-all across nodes, k = {k} of the S = {S} ranks per node: each rank sends "
                     f"(S − k)/S of the tensor to off-node peers through its own NIC while (k − 1)/S goes "
                     f"over {local}, directly to each peer (no ring)", source,
                     ((local, k - 1), ("network", S - k)))
    if collective == "send":
        return Route("network", nic, f"NIC = {_gbs(nic)}", 1, "1",
                     "one send to a rank on another node, through the sender's own NIC", source,
                     (("network", 1),))
    cap = up.per_direction if up else math.inf
    beta = min(k * nic, cap)
    beta_text = f"min(k · NIC, scale-up) = min({k} · {_gbs(nic)}, {_gbs(cap)}) = {_gbs(beta)}" \
        if up else f"k · NIC = {k} · {_gbs(nic)} = {_gbs(beta)}"
    steps = ring_steps(collective, S)
    crossings = min(steps, max(1, nodes - 1) * (2 if collective == "all_reduce" else 1))
    return Route("network", beta, beta_text, steps, _ring_steps_text(collective, S),
                 f"rings across nodes, k = {k} rank(s) of the group per node: k rings in parallel, "
                 f"one per NIC (NCCL channels); each ring crosses every node boundary",
                 source, ((local, steps - crossings), ("network", crossings)))


def _mesh_route(up, collective: str, S: int, source: str) -> Route:
    peer = up.peer_bw
    if collective in ("send", "broadcast"):
        steps = 1 if collective == "send" else S - 1
        return Route(up.name, peer, f"one link: {_gbs(up.per_direction)} / {up.domain - 1} peers = {_gbs(peer)}",
                     steps, f"{'1' if collective == 'send' else '(S−1)'} = {steps}",
                     f"{'one hop' if collective == 'send' else 'a pipelined chain'} over the "
                     f"fully connected {up.name} mesh, one link per hop", source)
    beta = (S - 1) * peer
    steps = 2 if collective == "all_reduce" else 1
    phases = "reduce-scatter, then all-gather" if steps == 2 else "one exchange"
    return Route(up.name, beta, f"(S−1) links · {_gbs(peer)} = {S - 1} · {_gbs(peer)} = {_gbs(beta)}",
                 steps, f"{steps} ({phases}, one hop each)",
                 f"direct exchange over the fully connected {up.name} mesh: each rank sends 1/S of "
                 f"the tensor to each peer over that pair's own link, all links at once", source)


def _torus_route(up, collective: str, S: int, axes: tuple[int, ...], source: str) -> Route:
    link = up.link_bw
    shape = "x".join(map(str, axes))
    ring = f"bidirectional rings along each axis of the {shape} group (both neighbour links)"
    per_axis = [a - 1 for a in axes]
    if collective == "send":
        return Route("ICI", link, f"one link: {_gbs(up.per_direction)} / {up.links} links = {_gbs(link)}",
                     1, "1", "one hop to a torus neighbour", source)
    steps = (2 if collective == "all_reduce" else 1) * sum(per_axis)
    steps_text = f"{'2·' if collective == 'all_reduce' else ''}Σ(S_i − 1) = " \
                 f"{'2·' if collective == 'all_reduce' else ''}({' + '.join(map(str, per_axis))}) = {steps}"
    if collective == "all_to_all":
        # Dimension-ordered routing: along each axis every rank's whole share moves; on a
        # bidirectional ring of a the busiest link carries n·(a² − a mod 2)/(8a).
        load = sum((a * a - a % 2) / (8 * a) for a in axes)  # × n, bytes on the busiest link
        beta = bus_factor(collective, S) * link / load
        return Route("ICI", beta,
                     f"(S−1)/S · link / Σ (a² − a mod 2)/(8a) = {S - 1}/{S} · {_gbs(link)} / {num(load)} = {_gbs(beta)}",
                     steps, steps_text,
                     f"all-to-all by dimension-ordered routing over the {shape} torus: messages travel "
                     f"~a/4 hops per axis, so the busiest link, not the rank's share, sets the time", source)
    # Every axis at once: the tensor in one part per axis, each part reduced over the axes in
    # its own order, so each axis's bidirectional ring (2 links) is busy all the time.
    beta = 2 * len(axes) * link
    return Route("ICI", beta,
                 f"2 links · axes · link = 2 · {len(axes)} · {_gbs(up.per_direction)} / {up.links} links = {_gbs(beta)}",
                 steps, steps_text,
                 f"{ring}, all axes at once: one part of the tensor per axis, each part "
                 + ("reduce-scattered along the axes in its own order, then all-gathered back "
                    "(bandwidth-optimal torus all-reduce; Google's all-reduce bandwidth per pod is "
                    "chips · β)" if collective == "all_reduce" else "passed along the axes in its own order")
                 + ("; axes of unequal length balance only roughly (exact for equal axes)"
                    if len(set(axes)) > 1 else ""),
                 source + "; each axis closes into a ring (wraparound), as in a full-pod axis")


# ----------------------------------------------------------------------------- one collective

MAX_ELEMENTS = 2**53  # beyond it an element count is no longer exact as a float


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise SpecError(f"shape {text!r} is not dimensions joined by x, e.g. 4096x16384") from None
    if not dims or any(d < 1 for d in dims):
        raise SpecError(f"shape {text!r} needs positive dimensions")
    if math.prod(dims) > MAX_ELEMENTS:
        raise SpecError(f"shape {text!r} has more than 2^53 elements: no tensor is that large")
    return dims


def collective_report(collective: str, shape: tuple[int, ...], dtype: str, S: int, h: Hardware,
                      link: str | None = None, latency: float = 0.0,
                      torus: tuple[int, ...] | None = None) -> Report:
    """The cost of one collective on one tensor over S ranks of `h`."""
    if dtype not in DTYPE_BYTES:
        raise SpecError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    if S < 2:
        raise SpecError("a collective needs at least 2 ranks")
    r = route(h, collective, S, link, torus=torus)
    width = DTYPE_BYTES[dtype]
    n = math.prod(shape) * width
    sent = bytes_per_rank(collective, n, S)
    t = r.seconds(collective, n, S, latency)
    name = collective.replace("_", "-")
    report = Report(f"{name} of a {'x'.join(map(str, shape))} {dtype} tensor over {S} × {h.key} ({r.fabric})",
                    context={"op": collective, "hardware": h.key, "dtype": dtype, "shape": list(shape),
                             "ranks": S, "fabric": r.fabric})
    report.add("tensor", n, gb(n), f"{' × '.join(f'{d:,}' for d in shape)} elements × {width} B ({dtype}) = {n:,} B")
    report.add("sent per rank", sent, gb(sent),
               f"{factor_text(collective)} · n = {factor_text(collective, S)} · {n:,} B = {_b(sent)} B",
               f"bytes each rank sends: {NCCL}" if collective not in ("send", "broadcast")
               else f"{name}: the whole tensor leaves the sender once ({NCCL})")
    report.add("steps", r.steps, f"{r.steps:,}", r.steps_text, r.algorithm)
    report.add("bandwidth", r.beta, _gbs(r.beta), f"β = {r.beta_text}", r.link)
    report.add("time", t, _dur(t),
               f"α · steps + sent / β = {num(latency)} s · {r.steps} + {_b(sent)} B / {num(r.beta)} B/s = {_dur(t)}",
               f"α = {num(latency)} s per step (--latency)" + (": the bandwidth term only" if not latency else ""),
               r.algorithm)
    report.add("algorithm bandwidth", n / t, _gbs(n / t), f"n / t = {n:,} B / {_dur(t)} = {_gbs(n / t)}",
               "what nccl-tests prints as algbw; busbw = algbw × the bus factor = sent / t")
    return report


# ----------------------------------------------------------------------------- a training step


@dataclass(frozen=True)
class CommRow:
    parallelism: str
    collective: str
    tensor: str  # shape, in suffix letters and numbers
    group: int
    n_bytes: float  # the tensor of one call
    calls: int  # per training step
    intra_node: bool  # within one scale-up domain (gpus_per_node)
    inner: int = 1  # ranks between two members of the group in the layout
    n_formula: str = ""  # "B·L·D · 2 B = 1·2,048·4,096 · 2"
    calls_formula: str = ""  # "(2 fwd + 2 bwd) · layers/PP · m = 4 · 32 · 1"
    notes: tuple[str, ...] = ()  # assumptions of this row

    @property
    def bytes_per_rank(self) -> float:
        """Everything one rank sends for this row in one step."""
        return self.calls * bytes_per_rank(self.collective, self.n_bytes, self.group)


def step_collectives(spec: ModelSpec, par: Parallel, micro_batch: int, seq_len: int,
                     microbatches: int = 1, zero: int = 0, sp: bool = False,
                     gpus_per_node: int = 8, dtype_bytes: int = 2, recompute: str = "none") -> list[CommRow]:
    """Every collective of one training step, per parallelism (rows with a group of 1 omitted).

    Ranks are laid out tensor innermost, then context, data, pipeline (Megatron's order), so a
    group stays on one node when it and every group inside it fit in `gpus_per_node`. Expert
    parallelism reuses the data × context ranks, innermost first.
    """
    par.check(spec)
    if recompute not in RECOMPUTE:
        raise SpecError(f"recompute must be one of {', '.join(RECOMPUTE)}, not {recompute!r}")
    if seq_len % par.cp:
        raise SpecError(f"sequence {seq_len} cannot be split over {par.cp} context-parallel ranks")
    c = count(spec)
    b, s, m, D = micro_batch, seq_len // par.cp, microbatches, spec.D
    layers = spec.n_layers // par.pp
    moe_layers = spec.moe_layers // par.pp
    act = b * s * D * dtype_bytes
    full = recompute == "full"
    edp = par.dp * par.cp // par.ep
    inner = {"tp": 1, "cp": par.tp, "ep": par.tp, "dp": par.tp, "edp": par.tp * par.ep,
             "pp": par.tp * par.cp * par.dp}
    sizes = {"tp": par.tp, "cp": par.cp, "ep": par.ep, "dp": par.dp * par.cp, "edp": edp, "pp": par.pp}
    rows: list[CommRow] = []

    def add(kind: str, collective: str, tensor: str, n_bytes: float, calls: int, label: str,
            n_formula: str, calls_formula: str, *notes: str) -> None:
        if sizes[kind] > 1 and calls:
            rows.append(CommRow(label, collective, tensor, sizes[kind], n_bytes, calls,
                                inner[kind] * sizes[kind] <= gpus_per_node, inner[kind],
                                n_formula, calls_formula, notes))

    replicas = "DP·CP" if par.cp > 1 else "DP"
    once = f"{dtype_bytes}-byte gradients and parameters, reduced once per step (after the last micro-batch)"
    per_microbatch = (f"ZeRO-2 keeps only its gradient shard: it reduce-scatters after each micro-batch's "
                      f"backward, m = {m} times per step")
    per_layer = ("ZeRO-3 (FSDP) gathers one layer (its unit) at a time, forward and again backward (freed "
                 "in between), and reduce-scatters that layer's gradients as soon as backward makes them, "
                 "in every micro-batch; the embeddings are counted spread over the layers")
    groups = [("dp", "DP", "P_dense", c.total - c.experts, par.tp * par.pp, "TP·PP", layers, "layers/PP",
               f"dense parameters (all but the routed experts) are replicated over {replicas} = {sizes['dp']} ranks")]
    if c.experts:
        groups.append(("edp", "EDP", "P_experts", c.experts, par.ep * par.pp, "EP·PP", max(1, moe_layers),
                       "MoE layers/PP", (f"routed experts are replicated over the expert-data-parallel group, "
                                         f"{replicas}/EP = {sizes['dp']}/{par.ep} = {edp} ranks (Megatron-Core)")))
    for kind, label, symbol, params, split, split_text, units, units_text, replica_note in groups:
        n = params / split * dtype_bytes
        n_formula = f"{symbol}/({split_text}) · {dtype_bytes} B = {num(params)}/{split} · {dtype_bytes} = {num(n)} B"
        grads, gathered = f"grads {symbol}/({split_text})", f"params {symbol}/({split_text})"
        zero_label = f"{label} ZeRO-{zero}" if zero else label
        if zero == 0:
            add(kind, "all_reduce", grads, n, 1, zero_label, n_formula, "1", replica_note, once)
        elif zero < 3:
            add(kind, "reduce_scatter", grads, n, m if zero == 2 else 1, zero_label, n_formula,
                f"m = {m}" if zero == 2 else "1", replica_note, per_microbatch if zero == 2 else once)
            add(kind, "all_gather", gathered, n, 1, zero_label, n_formula, "1", replica_note,
                "ZeRO: the updated parameter shards are gathered back")
        else:
            unit = n / units
            unit_formula = (f"{symbol}/({split_text}) / ({units_text}) · {dtype_bytes} B = "
                            f"{num(params)}/{split}/{units} · {dtype_bytes} = {num(unit)} B")
            add(kind, "reduce_scatter", f"{grads} / ({units_text})", unit, units * m, zero_label, unit_formula,
                f"{units_text} · m = {units} · {m} = {units * m:,}", replica_note, per_layer)
            add(kind, "all_gather", f"{gathered} / ({units_text})", unit, 2 * units * m, zero_label, unit_formula,
                f"2 (forward, backward) · {units_text} · m = 2 · {units} · {m} = {2 * units * m:,}",
                replica_note, per_layer)
    tp_tensor = f"B·L·D = {b}·{s}·{D}"
    act_formula = f"B·L·D · {dtype_bytes} B = {b}·{s}·{D} · {dtype_bytes} = {act:,} B"
    tp_calls = (6 if full else 4) * layers * m
    tp_calls_formula = (f"({'2 fwd + 2 bwd + 2 recomputed fwd' if full else '2 fwd + 2 bwd'}) · layers/PP · m"
                        f" = {6 if full else 4} · {layers} · {m} = {tp_calls:,}")
    tp_note = ("full recomputation runs each layer's forward again in backward, with its 2 "
               "tensor-parallel collectives (Korthikanti et al. 2022)" if full else
               f"2 collectives per layer forward, 2 backward (Megatron, Shoeybi et al. 2019, Fig. 4); "
               f"recompute {recompute}: {'the recomputed attention core needs none' if recompute == 'selective' else 'nothing re-run'}")
    if sp:
        for collective in ("all_gather", "reduce_scatter"):
            add("tp", collective, tp_tensor, act, tp_calls, "TP+SP", act_formula, tp_calls_formula, tp_note,
                "sequence parallel: each all-reduce becomes a reduce-scatter + all-gather pair (same bytes)")
    else:
        add("tp", "all_reduce", tp_tensor, act, tp_calls, "TP", act_formula, tp_calls_formula, tp_note)
    pp_n = act / (par.tp if sp else 1)
    add("pp", "send", tp_tensor + (" / TP" if sp else ""), pp_n, 2 * m, "PP",
        f"B·L·D · {dtype_bytes} B{' / TP' if sp else ''} = {num(pp_n)} B", f"2 · m = 2 · {m} = {2 * m}",
        "one activation forward and its gradient backward per micro-batch and stage boundary")
    if spec.E:
        ep_calls = (6 if full else 4) * moe_layers * m
        add("ep", "all_to_all", f"B·L·top_k·D = {b}·{s}·{spec.top_k}·{D}", act * spec.top_k, ep_calls, "EP",
            f"B·L·top_k·D · {dtype_bytes} B = {num(act * spec.top_k)} B",
            f"({'6' if full else '4'} per MoE layer) · MoE layers/PP · m = {6 if full else 4} · {moe_layers} · {m}"
            f" = {ep_calls:,}",
            "dispatch and combine forward, their gradients backward" + (", and again in the recomputed forward" if full else ""),
            "tokens routed uniformly over the experts")
    # A TP rank holds ⌈G/TP⌉ kv heads (a head is replicated when TP > G): it passes only those.
    g_rank = -(-spec.G // par.tp)
    kv = b * s * g_rank * (spec.K + spec.K_v) * dtype_bytes
    g_text, g_num = ("⌈G/TP⌉", f"⌈{spec.G}/{par.tp}⌉") if par.tp > 1 else ("G", f"{spec.G}")
    cp_rounds = 4 if recompute != "none" else 3
    add("cp", "send", f"K,V blocks B·(L/CP)·{g_text}·K = {b}·{s}·{g_rank}·{spec.K}", kv,
        cp_rounds * (par.cp - 1) * layers * m, "CP",
        f"B·(L/CP)·{g_text}·(K + K_v) · {dtype_bytes} B = {b}·{s}·{g_num}·({spec.K} + {spec.K_v}) · {dtype_bytes}"
        f" = {kv:,} B",
        f"{cp_rounds}(CP−1) · layers/PP · m = {cp_rounds}·{par.cp - 1} · {layers} · {m} = {cp_rounds * (par.cp - 1) * layers * m:,}",
        "ring attention: CP−1 passes of K, V forward, 2(CP−1) backward"
        + (", CP−1 more to recompute the attention" if recompute != "none" else ""))
    return rows


def row_route(row: CommRow, h: Hardware) -> Route:
    return route(h, row.collective, row.group, inner=row.inner)


@dataclass
class StepReport(Report):
    """A step's collectives: as text one line per collective with its working; as JSON the
    list of collectives (each with `formula` and `assumptions`) and their `total`."""

    collectives: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        total = {line.key: line for line in self.lines if line.key.startswith("total")}
        sent, time = total["total_sent_per_rank"], total["total_time"]
        return {**self.context, "collectives": self.collectives, "total": {
            "bytes_per_rank": sent.value, "seconds": time.value,
            "formula": {"bytes_per_rank": sent.formula, "seconds": time.formula},
            "assumptions": sorted(set(sent.assumptions + time.assumptions))}}


def step_report(spec: ModelSpec, par: Parallel, h: Hardware, micro_batch: int = 1, seq_len: int = 2048,
                microbatches: int = 1, zero: int = 0, sp: bool = False, recompute: str = "none",
                latency: float = 0.0) -> StepReport:
    """Every collective of one training step on `h`, each with its bytes, time and working."""
    domain = h.scale_up.reach if h.scale_up else h.gpus_per_node
    rows = step_collectives(spec, par, micro_batch, seq_len, microbatches, zero, sp, domain,
                            recompute=recompute)
    report = StepReport(f"{spec.name}: collectives of one training step on {par.gpus} × {h.key}",
                        context={"model": spec.name, "hardware": h.key})
    layout = (f"ranks laid out TP innermost, then CP, DP, PP (Megatron's order); a group spanning at "
              f"most {domain} chips stays in one {h.scale_up.name if h.scale_up else 'node'} domain")
    alpha = f"α = {num(latency)} s per step (--latency)" + (": the bandwidth term only" if not latency else "")
    total_sent = total_time = 0.0
    for row in rows:
        r = row_route(row, h)
        S, n = row.group, row.n_bytes
        t = row.calls * r.seconds(row.collective, n, S, latency)
        f, f_num = factor_text(row.collective), factor_text(row.collective, S)
        formula = (f"n = {row.n_formula}; calls = {row.calls_formula}; sent = calls · {f} · n = "
                   f"{row.calls:,} · {f_num} · {num(n)} = {num(row.bytes_per_rank)} B; t = calls · (α · steps + "
                   f"{f} · n / β) = {row.calls:,} · ({num(latency)} · {r.steps} + {f_num} · {num(n)} / "
                   f"{num(r.beta)}) = {_dur(t)}, β = {r.beta_text}")
        notes = (*row.notes, r.algorithm, r.link, layout, alpha)
        name = row.collective.replace("_", "-")
        report.add(f"{row.parallelism} {name}", row.bytes_per_rank,
                   f"{size(row.bytes_per_rank)} sent per rank, {_dur(t)} ({row.calls:,} × {size(n)} over "
                   f"{S} ranks, {r.fabric})", formula, *notes)
        report.collectives.append({
            "parallelism": row.parallelism, "collective": row.collective, "tensor": row.tensor,
            "group": S, "n_bytes": n, "calls": row.calls, "intra_node": row.intra_node,
            "bytes_per_rank": row.bytes_per_rank, "seconds": t, "fabric": r.fabric, "beta": r.beta,
            "formula": formula, "assumptions": list(notes)})
        total_sent += row.bytes_per_rank
        total_time += t
    terms = [c["bytes_per_rank"] for c in report.collectives]
    report.add("total sent per rank", total_sent, gb(total_sent),
               "Σ sent = " + (" + ".join(num(x) for x in terms) + f" = {num(total_sent)} B" if terms
                              else "0: every group has one rank"),
               "every rank is in one group of each kind, so it sends every row's bytes")
    times = [c["seconds"] for c in report.collectives]
    report.add("total time", total_time, _dur(total_time),
               "Σ t = " + (" + ".join(_dur(x) for x in times) + f" = {_dur(total_time)}" if times else "0 s"),
               "collectives run one after another, none overlapped with compute or each other (an upper bound)")
    return report
