"""Communication per training step: which collectives each parallelism runs, on which tensors,
how many bytes each rank sends, and how long that takes on a link.

Bytes each rank sends for a tensor of n bytes over a group of S ranks, ring algorithms (the
closed forms of `mlgrind.ref.collectives`, checked there against simulated rings):

    all-reduce         2(S−1)/S · n     reduce-scatter, all-gather, all-to-all   (S−1)/S · n
    send / broadcast   n

These factors are NCCL's "bus bandwidth" factors (nccl-tests, doc/PERFORMANCE.md: busbw =
algbw × factor), so a link's bandwidth B gives the α-β ring time

    t = α · steps + factor · n / B,     steps: all-reduce 2(S−1), the others S−1, send 1.

Per step, with micro-batch b, sequence s, hidden D, m micro-batches, layers per stage l:

    DP / ZeRO-0   all-reduce grads                               P bf16 gradients, once
    ZeRO-1, 2     reduce-scatter grads + all-gather params       same bytes as DP
    ZeRO-3        + all-gather params again for backward         1.5 × DP (ZeRO paper, sec. 7)
    TP            per layer 2 all-reduces forward, 2 backward of b·s·D activations (Megatron,
                  Shoeybi et al. 2019); with sequence parallel each becomes reduce-scatter +
                  all-gather: same bytes
    PP            per micro-batch one send of b·s·D forward, one of its gradient backward
    EP            per MoE layer 2 all-to-alls forward (dispatch, combine), 2 backward, of the
                  b·s·top_k token copies (uniform routing assumed)
    CP            ring attention per layer: S−1 passes of the local K and V block forward,
                  twice that backward (K, V again, then their gradients)
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.memory import Parallel
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError

COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send", "broadcast")


def bus_factor(collective: str, S: int) -> float:
    """NCCL's busbw / algbw: the share of the tensor each rank sends."""
    if collective == "all_reduce":
        return 2 * (S - 1) / S
    if collective in ("reduce_scatter", "all_gather", "all_to_all"):
        return (S - 1) / S
    if collective in ("send", "broadcast"):
        return 1.0
    raise SpecError(f"unknown collective {collective!r}; known: {', '.join(COLLECTIVES)}")


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


@dataclass(frozen=True)
class CommRow:
    parallelism: str
    collective: str
    tensor: str  # shape, in suffix letters and numbers
    group: int
    n_bytes: float  # the tensor of one call
    calls: int  # per training step
    intra_node: bool

    @property
    def bytes_per_rank(self) -> float:
        """Everything one rank sends for this row in one step."""
        return self.calls * bytes_per_rank(self.collective, self.n_bytes, self.group)


def step_collectives(spec: ModelSpec, par: Parallel, micro_batch: int, seq_len: int,
                     microbatches: int = 1, zero: int = 0, sp: bool = False,
                     gpus_per_node: int = 8, dtype_bytes: int = 2) -> list[CommRow]:
    """Every collective of one training step, per parallelism (rows with a group of 1 omitted).

    Ranks are laid out tensor innermost, then context, data, pipeline (Megatron's order), so a
    group stays on one node when it and every group inside it fit in `gpus_per_node`.
    """
    par.check(spec)
    c = count(spec)
    b, s, m, D = micro_batch, seq_len // par.cp, microbatches, spec.D
    layers = spec.n_layers // par.pp
    moe_layers = spec.moe_layers // par.pp
    act = b * s * D * dtype_bytes
    inner = {"tp": 1, "cp": par.tp, "ep": par.tp, "dp": par.tp * par.cp, "pp": par.tp * par.cp * par.dp}
    sizes = {"tp": par.tp, "cp": par.cp, "ep": par.ep, "dp": par.dp * par.cp, "pp": par.pp}
    rows: list[CommRow] = []

    def add(kind: str, collective: str, tensor: str, n_bytes: float, calls: int, label: str = "") -> None:
        if sizes[kind] > 1 and calls:
            rows.append(CommRow(label or kind.upper(), collective, tensor, sizes[kind], n_bytes,
                                calls, inner[kind] * sizes[kind] <= gpus_per_node))

    dense = (c.total - c.experts) / (par.tp * par.pp) * dtype_bytes
    grads = "grads P/(TP·PP)"
    zero_label = f"DP ZeRO-{zero}" if zero else "DP"
    if zero == 0:
        add("dp", "all_reduce", grads, dense, 1, zero_label)
    else:
        add("dp", "reduce_scatter", grads, dense, 1, zero_label)
        add("dp", "all_gather", "params P/(TP·PP)", dense, 2 if zero == 3 else 1, zero_label)
    tp_tensor = f"B·L·D = {b}·{s}·{D}"
    if sp:
        add("tp", "all_gather", tp_tensor, act, 2 * layers * m * 2, "TP+SP")
        add("tp", "reduce_scatter", tp_tensor, act, 2 * layers * m * 2, "TP+SP")
    else:
        add("tp", "all_reduce", tp_tensor, act, 4 * layers * m)
    add("pp", "send", tp_tensor, act / (par.tp if sp else 1), 2 * m)
    if spec.E:
        tokens = f"B·L·top_k·D = {b}·{s}·{spec.top_k}·{D}"
        add("ep", "all_to_all", tokens, act * spec.top_k, 4 * moe_layers * m)
    kv = b * s * spec.G * (spec.K + spec.K_v) * dtype_bytes
    add("cp", "send", f"K,V blocks B·(L/CP)·G·K = {b}·{s}·{spec.G}·{spec.K}", kv,
        3 * (par.cp - 1) * layers * m)
    return rows


def row_seconds(row: CommRow, intra_bw: float | None, inter_bw: float | None,
                latency: float = 0.0) -> float:
    bandwidth = intra_bw if row.intra_node else inter_bw
    if bandwidth is None:
        link = "NVLink" if row.intra_node else "network"
        raise SpecError(f"this hardware lists no {link} bandwidth for the {row.parallelism} group")
    return row.calls * collective_seconds(row.collective, row.n_bytes, row.group, bandwidth, latency)
