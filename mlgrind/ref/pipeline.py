"""Seed "how would you shard the model? Pipeline Parallel": GPipe and 1F1B as simulated timelines.

p stages each own a slice of the layers; the batch is cut into m microbatches. A schedule is each
stage's order of forward (F) and backward (B) ops; `simulate` starts every op as soon as its stage
is free and its inputs exist (F on stage s needs F on s-1; B on s needs F on s and B on s+1),
with free communication. On the resulting timeline we measure

- the bubble: the fraction of stage-time spent idle, (p - 1) / (m + p - 1) for both schedules;
- activations in flight: microbatches a stage has run forward but not yet backward. GPipe holds
  all m; 1F1B (PipeDream-Flush, Narayanan et al. 2021) starts backward as early as possible and
  holds at most p - s on stage s. Same bubble, far less memory.

`run` then pushes a real stack of MLPs through the timeline, one MLP per stage, with
activations and gradients sent between stages, and returns the same gradients as one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlgrind.ref import mlp
from mlgrind.ref.collectives import Comm, shard


@dataclass(frozen=True)
class Op:
    stage: int
    kind: str  # "F" or "B"
    micro: int
    start: float
    end: float


def gpipe_order(p: int, m: int) -> list[list[tuple[str, int]]]:
    """Every stage: all m forwards, then all m backwards."""
    return [[("F", i) for i in range(m)] + [("B", i) for i in range(m)] for _ in range(p)]


def one_f_one_b_order(p: int, m: int) -> list[list[tuple[str, int]]]:
    """Stage s warms up with p - s - 1 forwards, then alternates F and B, then drains the Bs."""
    orders = []
    for s in range(p):
        warmup = min(p - s - 1, m)
        order = [("F", i) for i in range(warmup)]
        for i in range(m - warmup):
            order += [("F", warmup + i), ("B", i)]
        order += [("B", i) for i in range(m - warmup, m)]
        orders.append(order)
    return orders


def simulate(orders, t_fwd: float = 1.0, t_bwd: float = 2.0) -> list[Op]:
    """Run each stage's order as early as its dependencies allow; returns every op's times."""
    p = len(orders)
    done: dict[tuple[str, int, int], float] = {}
    free, pos, ops = [0.0] * p, [0] * p, []
    while any(pos[s] < len(orders[s]) for s in range(p)):
        progressed = False
        for s in range(p):
            while pos[s] < len(orders[s]):
                kind, i = orders[s][pos[s]]
                if kind == "F":
                    deps = [("F", s - 1, i)] if s > 0 else []
                else:
                    deps = [("F", s, i)] + ([("B", s + 1, i)] if s < p - 1 else [])
                if any(d not in done for d in deps):
                    break  # this stage waits; another stage must move first
                start = max([free[s]] + [done[d] for d in deps])
                end = start + (t_fwd if kind == "F" else t_bwd)
                ops.append(Op(s, kind, i, start, end))
                done[(kind, s, i)] = free[s] = end
                pos[s] += 1
                progressed = True
        if not progressed:
            raise ValueError("schedule deadlocks: some op waits on one that can never run")
    return ops


def bubble_fraction(ops: list[Op]) -> float:
    """Idle share of all stages' time between the first op and the last."""
    p = 1 + max(op.stage for op in ops)
    makespan = max(op.end for op in ops) - min(op.start for op in ops)
    busy = sum(op.end - op.start for op in ops)
    return 1 - busy / (p * makespan)


def bubble_fraction_formula(p: int, m: int) -> float:
    """Fill and drain cost p - 1 op-slots out of the m + p - 1 each stage's timeline spans."""
    return (p - 1) / (m + p - 1)


def peak_in_flight(ops: list[Op]) -> list[int]:
    """Per stage, the most microbatches whose activations are held (F done, B not yet)."""
    p = 1 + max(op.stage for op in ops)
    peaks = []
    for s in range(p):
        held = peak = 0
        for op in sorted((op for op in ops if op.stage == s), key=lambda op: op.start):
            held += 1 if op.kind == "F" else -1
            peak = max(peak, held)
        peaks.append(peak)
    return peaks


def run(ops: list[Op], comm: Comm, x_BD, target_BD, w_in_DF_stages, w_out_FD_stages):
    """Execute the timeline on a stack of MLPs (stage s owns one). Returns each stage's summed
    weight gradients and the most microbatches it ever held saved activations for."""
    p = len(w_in_DF_stages)
    m = 1 + max(op.micro for op in ops)
    x_BD_micro, target_BD_micro = shard(x_BD, m), shard(target_BD, m)
    inbox: dict[tuple[str, int, int], np.ndarray] = {}  # what each (kind, stage, micro) receives
    saved: list[dict[int, tuple]] = [{} for _ in range(p)]
    d_w_in_DF_stages = [np.zeros_like(w) for w in w_in_DF_stages]
    d_w_out_FD_stages = [np.zeros_like(w) for w in w_out_FD_stages]
    peaks = [0] * p
    # Sorting by start is a valid execution order: every input ended before its consumer began.
    for op in sorted(ops, key=lambda op: (op.start, op.stage)):
        s, i = op.stage, op.micro
        if op.kind == "F":
            x = x_BD_micro[i] if s == 0 else inbox.pop(("F", s, i))
            y, saved[s][i] = mlp.mlp_forward(x, w_in_DF_stages[s], w_out_FD_stages[s])
            peaks[s] = max(peaks[s], len(saved[s]))
            if s < p - 1:
                inbox[("F", s + 1, i)] = comm.send(y, s, s + 1, tag="activation")
            else:
                inbox[("B", s, i)] = mlp.l2_loss(y, target_BD_micro[i])[1]
        else:
            d_x, d_w_in, d_w_out = mlp.mlp_backward(inbox.pop(("B", s, i)), saved[s].pop(i))
            d_w_in_DF_stages[s] += d_w_in
            d_w_out_FD_stages[s] += d_w_out
            if s > 0:
                inbox[("B", s - 1, i)] = comm.send(d_x, s, s - 1, tag="gradient")
    return d_w_in_DF_stages, d_w_out_FD_stages, peaks
