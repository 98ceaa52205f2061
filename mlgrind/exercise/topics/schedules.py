"""Seed "how would you shard the model?": a pipeline schedule, and activation checkpointing.

References: `mlgrind.ref.pipeline` (GPipe, 1F1B, the simulated timeline, running it on a stack of
MLPs) and `mlgrind.ref.checkpointing`. A schedule is graded by its properties (every op once,
nothing before what it needs, micro-batches in flight, the bubble on the reference's timeline),
not against one list, so any order with GPipe's or 1F1B's properties passes. Checkpointing's
memory is measured from the arrays the learner keeps, its added FLOPs by counting the layer
forwards their backward runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from mlgrind.ref import checkpointing as ref_ck
from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref import pipeline as ref
from mlgrind.ref.collectives import Comm, shard
from mlgrind.ref.einsum import count_flops

from ..catalog import Check, Exercise
from ..compare import Mismatch, describe, dims, expect_array, function, parts

CARRIED_MLP = '''

def mlp_forward(x_BD, w_in_DF, w_out_FD):
    """y_BD = relu(x_BD · w_in_DF) · w_out_FD, no biases; `saved` is whatever your backward
    needs. Carried over from the mlp_batched exercise: paste yours here, or replace this
    function and the next with `from mlp_batched import mlp_forward, mlp_backward` when your
    mlp_batched.py sits in this folder. Returns (y_BD, saved)."""
    raise NotImplementedError


def mlp_backward(d_y_BD, saved):
    """Carried over from mlp_batched. Returns (d_x_BD, d_w_in_DF, d_w_out_FD)."""
    raise NotImplementedError
'''

# ---------------------------------------------------------------- pipeline

PIPELINE_CONTRACT = (
    '''"""Pipeline parallelism: the GPipe and 1F1B schedules, their timeline, and training on one.

p stages, stage s owning one MLP of a stack (the mlp_batched exercise's MLP); the batch is cut
into m micro-batches 0 .. m − 1. Each micro-batch i goes forward through stages 0 → p − 1, then
backward through p − 1 → 0. An op is a pair ("F", i) or ("B", i) (forward or backward of
micro-batch i: the op kinds, not the suffix letters), and

    ("F", i) on stage s needs ("F", i) done on stage s − 1   (its output is this input x_BD)
    ("B", i) on stage s needs ("F", i) done on stage s       (the activations it saved)
                        and ("B", i) done on stage s + 1     (its d_x_BD is this d_y_BD)

Stage 0's inputs come from the batch; on the last stage, d_y_BD comes from the loss.

A schedule gives each stage its own order: orders[s] is a list holding every ("F", i) and every
("B", i) of stage s exactly once. Between its F and its B there, micro-batch i is "in flight" on
stage s: the stage holds its saved activations. That is a schedule's memory cost.

    B batch  D model width  F hidden width  (of each stage's MLP)
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Op:
    """One op of a timeline: stage `stage` ran kind ("F" or "B") of micro-batch `micro` from
    time `start` to time `end`. The reference's timeline has these same fields."""

    stage: int
    kind: str
    micro: int
    start: float
    end: float


def gpipe_order(p, m):
    """GPipe: every stage runs all m forwards, then all m backwards. Returns orders, a list of
    p lists.

    Graded by its properties: every op once, nothing before what it needs, no deadlock, all
    forwards before any backward, and a bubble of (p − 1) / (m + p − 1) on the reference's
    timeline (see simulate; t_fwd = 1, t_bwd = 2)."""
    raise NotImplementedError


def one_f_one_b_order(p, m):
    """1F1B (PipeDream-Flush): after a few warm-up forwards each stage alternates one forward
    and one backward, then drains its last backwards. Stage s never holds more than p − s
    micro-batches in flight (m if that is fewer) where GPipe holds all m, and the bubble stays
    GPipe's. Returns orders.

    Graded by its properties, not against one list: every op once, nothing before what it needs,
    no deadlock, at most min(p − s, m) in flight on stage s at every point of its order, and a
    bubble of (p − 1) / (m + p − 1) on the reference's timeline (t_fwd = 1, t_bwd = 2)."""
    raise NotImplementedError


def simulate(orders, t_fwd=1.0, t_bwd=2.0):
    """The timeline of a schedule, from time 0. Each stage runs its ops in its order, one at a
    time; an op starts as soon as its stage is free AND the ops it needs have ended (sending
    between stages takes no time). An F takes t_fwd, a B takes t_bwd. Returns a list of Op, in
    any order. The orders you are given never deadlock."""
    raise NotImplementedError


def bubble_fraction(ops):
    """The share of stage-time spent idle: of p stages × the span from the first op's start to
    the last op's end, the part not spent running ops. Returns a float. ops come in any order
    (the checks give you the reference's timeline); p is 1 + the largest op.stage."""
    raise NotImplementedError


def peak_in_flight(ops):
    """For each stage, the most micro-batches in flight on it at once. Returns a list of p
    ints. ops come in any order (the checks give you the reference's timeline); p is 1 + the
    largest op.stage."""
    raise NotImplementedError
'''
    + CARRIED_MLP
    + '''

def run(ops, comm, x_BD, target_BD, w_in_DF_stages, w_out_FD_stages):
    """Train on a timeline: execute its ops on real arrays, in order of start time, ties in any
    order (ops come in any order; the checks give you the reference's timeline). Stage s owns
    w_in_DF_stages[s] and w_out_FD_stages[s]. With m = 1 + the largest op.micro, micro-batch
    i's input is block i of np.array_split(x_BD, m) and its target the same block of target_BD;
    the loss is 0.5 · Σ (y_BD − target_BD)², summed over the whole batch (no mean), so on the
    last stage d_y_BD = y_BD − target_BD.

    comm simulates p ranks, one per stage (mlgrind.ref.collectives.Comm). A stage hands an array
    to another only through comm.send(array, src_stage, dst_stage), which returns the copy the
    destination receives; the checks compare your sends with the reference's as counts per
    (source, destination, array shape), in any order.

    Returns (d_w_in_DF_stages, d_w_out_FD_stages, peaks): each stage's weight gradients summed
    over the m micro-batches (equal to the whole batch's gradients in one process), and for each
    stage the most micro-batches whose saved activations it held at once (a stage drops them when
    that micro-batch's B has run)."""
    raise NotImplementedError
'''
)

ORDER_SIZES = ((2, 3), (3, 5), (4, 2))  # m < p once: 1F1B's warm-up is cut short by m
T_FWD, T_BWD = 1.0, 2.0  # a backward costs two forwards, as in a real layer
SCHEDULES = {"gpipe_order": ref.gpipe_order, "one_f_one_b_order": ref.one_f_one_b_order}
RUN_P, RUN_M = 3, 4
RUN_B, RUN_D, RUN_F = 7, 3, 4  # m = 4 cuts the batch of 7 unevenly; all sizes differ
RUN_CASES = {"one_f_one_b_order": ("1F1B", 1), "gpipe_order": ("GPipe", 2)}  # label, seed


def _word(kind: str) -> str:
    return "forward" if kind == "F" else "backward"


def _needs(kind: str, s: int, i: int, p: int) -> list[tuple[str, int, int]]:
    """The (kind, stage, micro) ops that must end before op (kind, i) on stage s starts."""
    if kind == "F":
        return [("F", s - 1, i)] if s > 0 else []
    return [("F", s, i)] + ([("B", s + 1, i)] if s < p - 1 else [])


RULE = {
    "F": "F on stage s needs F on stage s − 1",
    "B": "B on stage s needs F on stage s and B on stage s + 1",
}


def _read_orders(call: str, got: object, p: int) -> list[list[tuple[str, int]]]:
    if not isinstance(got, list | tuple) or len(got) != p:
        what = (
            f"a {type(got).__name__} of length {len(got)}"
            if isinstance(got, list | tuple)
            else describe(got)
        )
        raise Mismatch(f"{call} must return a list of p = {p} lists, one per stage; got {what}")
    orders = []
    for s, order in enumerate(got):
        if not isinstance(order, list | tuple):
            raise Mismatch(f"{call}: orders[{s}] must be a list of ops; it is {describe(order)}")
        read = []
        for op in order:
            if not (
                isinstance(op, tuple | list)
                and len(op) == 2
                and op[0] in ("F", "B")
                and isinstance(op[1], int | np.integer)
            ):
                raise Mismatch(
                    f'{call}: orders[{s}] holds {op!r}; an op is a pair ("F", i) or '
                    f'("B", i) with i the micro-batch\'s number'
                )
            read.append((str(op[0]), int(op[1])))
        orders.append(read)
    return orders


def _each_op_once(call: str, orders: list[list[tuple[str, int]]], m: int) -> None:
    for s, order in enumerate(orders):
        seen: set[tuple[str, int]] = set()
        for kind, i in order:
            if not 0 <= i < m:
                raise Mismatch(
                    f"{call}: stage {s} runs {_word(kind)} of micro-batch {i}, but the "
                    f"micro-batches are 0 .. m − 1 = {m - 1}"
                )
            if (kind, i) in seen:
                raise Mismatch(f"{call}: stage {s} runs {_word(kind)} of micro-batch {i} twice")
            if kind == "B" and ("F", i) not in seen:
                raise Mismatch(
                    f"{call}: stage {s} runs backward of micro-batch {i} before its forward "
                    f"(a backward needs the activations its forward saved)"
                )
            seen.add((kind, i))
        for kind in "FB":
            for i in range(m):
                if (kind, i) not in seen:
                    raise Mismatch(
                        f"{call}: stage {s} never runs {_word(kind)} of micro-batch {i}; every "
                        f"stage runs every micro-batch's forward and backward once"
                    )


def _no_deadlock(call: str, orders: list[list[tuple[str, int]]]) -> None:
    """Run every op whose needs are met until none is left or every stage waits."""
    p = len(orders)
    done: set[tuple[str, int, int]] = set()
    position = [0] * p
    moved = True
    while moved:
        moved = False
        for s in range(p):
            while position[s] < len(orders[s]):
                kind, i = orders[s][position[s]]
                if any(need not in done for need in _needs(kind, s, i, p)):
                    break
                done.add((kind, s, i))
                position[s] += 1
                moved = True
    waits = []
    for s in range(p):
        if position[s] < len(orders[s]):
            kind, i = orders[s][position[s]]
            need_kind, t, _ = next(n for n in _needs(kind, s, i, p) if n not in done)
            waits.append(
                f"stage {s} waits to run {_word(kind)} of micro-batch {i} until stage {t} has "
                f"run its {_word(need_kind)}"
            )
    if waits:
        raise Mismatch(f"{call}: the schedule deadlocks: " + "; ".join(waits) + ".")


def _forwards_first(call: str, orders: list[list[tuple[str, int]]]) -> None:
    for s, order in enumerate(orders):
        first_b = next(n for n, (kind, _) in enumerate(order) if kind == "B")
        later_f = [i for kind, i in order[first_b:] if kind == "F"]
        if later_f:
            raise Mismatch(
                f"{call}: stage {s} runs backward of micro-batch {order[first_b][1]} before "
                f"forward of micro-batch {later_f[0]}: GPipe runs all m forwards first, then "
                f"all m backwards"
            )


def _in_flight_bound(call: str, orders: list[list[tuple[str, int]]], m: int) -> None:
    p = len(orders)
    for s, order in enumerate(orders):
        held = 0
        for kind, i in order:
            held += 1 if kind == "F" else -1
            if held > min(p - s, m):
                raise Mismatch(
                    f"{call}: 1F1B: stage {s} holds {held} micro-batches in flight once it has "
                    f"run forward of micro-batch {i}; at most p − s = {p} − {s} = {p - s}. Run "
                    f"a backward as soon as one can follow, before the next forward."
                )


def _bubble(call: str, orders: list[list[tuple[str, int]]], m: int) -> None:
    p = len(orders)
    ops = ref.simulate(orders, T_FWD, T_BWD)
    measured, formula = ref.bubble_fraction(ops), ref.bubble_fraction_formula(p, m)
    if math.isclose(measured, formula, rel_tol=1e-9, abs_tol=1e-12):
        return
    lines = [
        (
            f"{call}: on the timeline (t_fwd = {T_FWD:g}, t_bwd = {T_BWD:g}) the bubble is "
            f"{measured:.4g}, not (p − 1) / (m + p − 1) = {formula:.4g}"
        )
    ]
    for s, order in enumerate(orders):
        first_b = next(n for n, (kind, _) in enumerate(order) if kind == "B")
        if first_b < min(p - s, m):
            lines.append(
                f"stage {s} runs {first_b} forward(s) before its first backward; it can run "
                f"min(p − s, m) = {min(p - s, m)}: that backward waits for the stages after "
                f"it, and the stage idles meanwhile"
            )
            break
    else:
        idle = [
            max(op.end for op in ops) - sum(op.end - op.start for op in ops if op.stage == s)
            for s in range(p)
        ]
        s = int(np.argmax(idle))
        lines.append(
            f"stage {s} idles longest, {idle[s]:g} time units: an op that waits for "
            f"another stage keeps its own stage idle; order each stage's ops so that the next one "
            f"is ready when it can start"
        )
    raise Mismatch("\n".join(lines))


def _order_check(name: str) -> Callable[[ModuleType], None]:
    def run(learner: ModuleType) -> None:
        for p, m in ORDER_SIZES:
            call = f"{name}(p={p}, m={m})"
            orders = _read_orders(call, function(learner, name)(p, m), p)
            _each_op_once(call, orders, m)
            _no_deadlock(call, orders)
            if name == "gpipe_order":
                _forwards_first(call, orders)
            else:
                _in_flight_bound(call, orders, m)
            _bubble(call, orders, m)

    return run


def _read_ops(call: str, got: object) -> dict[tuple[str, int, int], tuple[float, float]]:
    """(kind, stage, micro) → (start, end) from a list of Op-like objects."""
    if not isinstance(got, list | tuple):
        raise Mismatch(f"{call} must return a list of Op; got {describe(got)}")
    times = {}
    for op in got:
        try:
            key = (str(op.kind), int(op.stage), int(op.micro))
            span = (float(op.start), float(op.end))
        except (AttributeError, TypeError, ValueError):
            raise Mismatch(
                f"{call}: each item must be an Op(stage, kind, micro, start, end); one is {op!r}"
            ) from None
        if key in times:
            raise Mismatch(
                f"{call}: {_word(key[0])} of micro-batch {key[2]} on stage {key[1]} is on the "
                f"timeline twice"
            )
        times[key] = span
    return times


def _why_late_or_early(
    key: tuple[str, int, int],
    times: dict[tuple[str, int, int], tuple[float, float]],
    orders: list[list[tuple[str, int]]],
    duration: float,
) -> str:
    """What the learner's own timeline says about one op that is placed wrong."""
    kind, s, i = key
    start, end = times[key]
    if not math.isclose(end - start, duration):
        return (
            f"it lasts {end - start:g}; a {_word(kind)} takes "
            f"{'t_fwd' if kind == 'F' else 't_bwd'} = {duration:g}"
        )
    n = orders[s].index((kind, i))
    ready = [(0.0, "time 0")]
    if n > 0:
        before = orders[s][n - 1]
        ready.append(
            (
                times[(before[0], s, before[1])][1],
                (
                    f"the op before it in orders[{s}], {_word(before[0])} of micro-batch "
                    f"{before[1]}, ends at {{t:g}}: a stage runs its ops in its order, one at a time"
                ),
            )
        )
    for need in _needs(kind, s, i, len(orders)):
        ready.append(
            (
                times[need][1],
                (
                    f"{_word(need[0])} of micro-batch {i} on stage {need[1]} ends at {{t:g}}: "
                    f"{RULE[kind]}"
                ),
            )
        )
    for t, reason in ready:
        if start < t - 1e-9:
            return "it starts before " + reason.format(t=t)
    earliest = max(t for t, _ in ready)
    return (
        f"it could start at {earliest:g}, when its stage is free and what it needs has ended: "
        f"an op starts as soon as both hold"
    )


def _simulate_check(learner: ModuleType) -> None:
    for name, p, m in (("gpipe_order", 3, 4), ("one_f_one_b_order", 3, 5)):
        orders = SCHEDULES[name](p, m)
        call = f"simulate({name}({p}, {m}), t_fwd={T_FWD:g}, t_bwd={T_BWD:g})"
        times = _read_ops(call, function(learner, "simulate")(orders, T_FWD, T_BWD))
        expected = ref.simulate(orders, T_FWD, T_BWD)
        missing = [op for op in expected if (op.kind, op.stage, op.micro) not in times]
        if missing:
            op = missing[0]
            raise Mismatch(
                f"{call}: {_word(op.kind)} of micro-batch {op.micro} on stage {op.stage} is "
                f"missing from the timeline ({len(times)} ops, expected {len(expected)})"
            )
        for op in sorted(expected, key=lambda op: (op.start, op.stage)):
            key = (op.kind, op.stage, op.micro)
            start, end = times[key]
            if not (math.isclose(start, op.start) and math.isclose(end, op.end)):
                duration = T_FWD if op.kind == "F" else T_BWD
                raise Mismatch(
                    f"{call}: {_word(op.kind)} of micro-batch {op.micro} on stage {op.stage} "
                    f"runs {start:g} – {end:g}, expected {op.start:g} – {op.end:g}\n"
                    + _why_late_or_early(key, times, orders, duration)
                )


def _timelines() -> list[tuple[str, list[ref.Op]]]:
    """Reference timelines, shuffled: ops come in any order. The last one has no warm-up, so
    its bubble is not the formula's."""
    p, m = 3, 4
    no_warm_up = [[op for i in range(m) for op in (("F", i), ("B", i))] for _ in range(p)]
    found = [
        ("GPipe, p=3, m=4", ref.gpipe_order(3, 4)),
        ("1F1B, p=4, m=6", ref.one_f_one_b_order(4, 6)),
        ("1F1B, p=4, m=2", ref.one_f_one_b_order(4, 2)),
        ("F, B alternating with no warm-up, p=3, m=4", no_warm_up),
    ]
    rng = np.random.default_rng(0)
    timelines = []
    for label, orders in found:
        ops = ref.simulate(orders, T_FWD, T_BWD)
        timelines.append((label, [ops[k] for k in rng.permutation(len(ops))]))
    return timelines


def _number(call: str, got: object) -> float:
    try:
        return float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Mismatch(f"{call} must return a number; it returned {describe(got)}") from None


def _bubble_check(learner: ModuleType) -> None:
    for label, ops in _timelines():
        call = f"bubble_fraction(ops of {label})"
        got = _number(call, function(learner, "bubble_fraction")(list(ops)))
        expected = ref.bubble_fraction(ops)
        if math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        p, m = 1 + max(op.stage for op in ops), 1 + max(op.micro for op in ops)
        busy = sum(op.end - op.start for op in ops)
        span = max(op.end for op in ops) - min(op.start for op in ops)
        own_spans = sum(
            max(op.end for op in ops if op.stage == s)
            - min(op.start for op in ops if op.stage == s)
            for s in range(p)
        )
        causes = [
            (1 - expected, "that is the busy share; the bubble is the idle one"),
            (
                ref.bubble_fraction_formula(p, m),
                (
                    "that is the formula (p − 1) / (m + p − 1), which holds for GPipe and 1F1B but "
                    "not for every timeline: measure the idle time on the ops you are given"
                ),
            ),
            (
                1 - busy / own_spans,
                (
                    "that counts each stage's idle time only between its own first and last op; a "
                    "stage waiting for the first micro-batch (fill) or for the others to finish "
                    "(drain) is idle too: the span is the whole pipeline's"
                ),
            ),
            (
                (p * span - busy) / span,
                (
                    "that is the idle time over the span of one stage: divide by p × the span, the "
                    "time of all p stages"
                ),
            ),
        ]
        lines = [f"{call}: expected {expected:.6g}, got {got:.6g}"]
        lines += [why for value, why in causes if math.isclose(got, value, rel_tol=1e-9)]
        raise Mismatch("\n".join(lines))


def _ints(call: str, got: object, n: int) -> list[int]:
    if not isinstance(got, list | tuple | np.ndarray) or len(got) != n:
        raise Mismatch(f"{call} must return a list of p = {n} ints, one per stage; got {got!r}")
    return [int(v) for v in got]


def _peak_check(learner: ModuleType) -> None:
    for label, ops in _timelines():
        p, m = 1 + max(op.stage for op in ops), 1 + max(op.micro for op in ops)
        call = f"peak_in_flight(ops of {label})"
        got = _ints(call, function(learner, "peak_in_flight")(list(ops)), p)
        expected = ref.peak_in_flight(ops)
        if got == expected:
            continue
        lines = [f"{call}: expected {expected}, got {got}"]
        if got == [m] * p:
            lines.append(
                "that is every stage's number of forwards: a micro-batch stops being in flight "
                "on a stage when its backward there has run"
            )
        raise Mismatch("\n".join(lines))


def _run_case(schedule: str):
    rng = np.random.default_rng(RUN_CASES[schedule][1])
    x_BD, target_BD = rng.standard_normal((RUN_B, RUN_D)), rng.standard_normal((RUN_B, RUN_D))
    w_in = [rng.standard_normal((RUN_D, RUN_F)) / np.sqrt(RUN_D) for _ in range(RUN_P)]
    w_out = [rng.standard_normal((RUN_F, RUN_D)) / np.sqrt(RUN_F) for _ in range(RUN_P)]
    ops = ref.simulate(SCHEDULES[schedule](RUN_P, RUN_M), T_FWD, T_BWD)
    ops = [ops[k] for k in rng.permutation(len(ops))]
    return ops, x_BD, target_BD, w_in, w_out


def _run(fn: Callable, case) -> tuple[tuple, Comm]:
    ops, x_BD, target_BD, w_in, w_out = case
    comm = Comm(RUN_P)
    result = fn(
        list(ops), comm, x_BD, target_BD, [w.copy() for w in w_in], [w.copy() for w in w_out]
    )
    return parts(result, ("d_w_in_DF_stages", "d_w_out_FD_stages", "peaks"), "run"), comm


def _micro_grads(case, i: int) -> tuple[list, list]:
    """The weight gradients of micro-batch i alone, stage by stage (a summing mistake's value)."""
    _, x_BD, target_BD, w_in, w_out = case
    x, target = shard(x_BD, RUN_M)[i], shard(target_BD, RUN_M)[i]
    y, saved = ref_ck.stack_forward(x, w_in, w_out)
    _, d_w_in, d_w_out = ref_ck.stack_backward(ref_mlp.l2_loss(y, target)[1], saved)
    return d_w_in, d_w_out


def _run_grads_check(learner: ModuleType) -> None:
    for schedule, (label, _) in RUN_CASES.items():
        case = _run_case(schedule)
        (expected_in, expected_out, _), _ = _run(ref.run, case)
        (got_in, got_out, _), _ = _run(function(learner, "run"), case)
        firsts, lasts = _micro_grads(case, 0), _micro_grads(case, RUN_M - 1)
        for k, (name, got, expected) in enumerate(
            (
                ("d_w_in_DF_stages", got_in, expected_in),
                ("d_w_out_FD_stages", got_out, expected_out),
            )
        ):
            if not isinstance(got, list | tuple) or len(got) != RUN_P:
                raise Mismatch(
                    f"run ({label}, p={RUN_P}, m={RUN_M}): {name} must be a list of p = {RUN_P} "
                    f"arrays, one per stage; got {describe(got)}"
                )
            for s in range(RUN_P):
                first, last = firsts[k][s], lasts[k][s]
                symptoms = [
                    (
                        lambda g, v=last: np.allclose(g, v),
                        (
                            f"it is the gradient of the last micro-batch alone: add up (+=) the "
                            f"gradients of all m = {RUN_M} micro-batches"
                        ),
                    ),
                    (
                        lambda g, v=first: np.allclose(g, v),
                        (
                            "it is the gradient of micro-batch 0 alone: add up (+=) the gradients "
                            f"of all m = {RUN_M} micro-batches"
                        ),
                    ),
                    (
                        lambda g, v=expected[s]: np.allclose(g * RUN_M, v),
                        (
                            f"it is the sum divided by m = {RUN_M}: the loss is a sum over the "
                            f"whole batch, so the micro-batches' gradients add up (no mean)"
                        ),
                    ),
                ]
                expect_array(
                    f"{name}[{s}] (run, {label}, p={RUN_P}, m={RUN_M})",
                    got[s],
                    expected[s],
                    symptoms,
                )


def _run_peaks_check(learner: ModuleType) -> None:
    for schedule, (label, _) in RUN_CASES.items():
        case = _run_case(schedule)
        (_, _, expected), _ = _run(ref.run, case)
        (_, _, got), _ = _run(function(learner, "run"), case)
        call = f"run ({label}, p={RUN_P}, m={RUN_M}): peaks"
        got = _ints(call, got, RUN_P)
        if got == expected:
            continue
        lines = [
            (
                f"{call}, the most micro-batches whose saved activations each stage held at once: "
                f"expected {expected}, got {got}"
            )
        ]
        if label == "1F1B" and got == [RUN_M] * RUN_P:
            lines.append(
                "your stages keep every micro-batch's saved activations to the end: drop them "
                "once that micro-batch's backward has run on the stage, and 1F1B holds p − s "
                "where GPipe holds m"
            )
        raise Mismatch("\n".join(lines))


def _sends(comm: Comm) -> tuple[Counter, list[str]]:
    """(src, dst, shape) of every comm.send, and the names of any other collective called."""
    sends: Counter = Counter()
    others = []
    for record in comm.log:
        if record.collective != "send":
            others.append(record.collective)
            continue
        src = next((t.src for t in record.transfers), None)
        dst = next((t.dst for t in record.transfers), None)
        if src is None:  # a stage sending to itself moves nothing
            src = dst = next((r for r, shape in enumerate(record.shapes) if shape), 0)
        sends[(src, dst, record.shapes[src])] += 1
    return sends, others


def _send_lines(sends: Counter) -> list[str]:
    lines = []
    for direction, test in (
        ("forward, stage s → s + 1", lambda src, dst: dst == src + 1),
        ("backward, stage s → s − 1", lambda src, dst: dst == src - 1),
        ("elsewhere", lambda src, dst: abs(dst - src) != 1),
    ):
        mine = {k: n for k, n in sends.items() if test(k[0], k[1])}
        if not mine:
            continue
        shapes = Counter()
        for (_, _, shape), n in mine.items():
            shapes[shape] += n
        # what crosses a boundary is an x_BD forward and a d_x_BD backward: name the shape so
        blocks = ", ".join(f"{n} × {dims('x_BD', shape)}" for shape, n in sorted(shapes.items()))
        lines.append(f"    {sum(mine.values())} {direction}: arrays {blocks}")
    return lines


def _run_sends_check(learner: ModuleType) -> None:
    for schedule, (label, _) in RUN_CASES.items():
        case = _run_case(schedule)
        _, ref_comm = _run(ref.run, case)
        _, comm = _run(function(learner, "run"), case)
        expected, _ = _sends(ref_comm)
        got, others = _sends(comm)
        if got == expected and not others:
            continue
        total = sum(expected.values())
        lines = [
            (
                f"run ({label}, p={RUN_P}, m={RUN_M}): each micro-batch crosses each of the "
                f"p − 1 = {RUN_P - 1} stage boundaries twice, its activation forward and its "
                f"gradient backward; the reference makes {total} comm.send calls:"
            ),
            *_send_lines(expected),
        ]
        if got:
            lines += [f"  you made {sum(got.values())}:", *_send_lines(got)]
        if others:
            lines.append(
                f"  and called {', '.join(sorted(set(others)))}: neighbouring stages only need "
                f"point-to-point sends"
            )
        if not got and not others:
            lines.append(
                "  you made none. Passing arrays between stages in Python is free in this "
                "simulation; on real hardware each stage is its own device, and every "
                "activation and gradient that crosses a boundary is a send: call comm.send."
            )
        raise Mismatch("\n".join(lines))


# ---------------------------------------------------------------- checkpointing

CHECKPOINT_CONTRACT = (
    '''"""Activation checkpointing: keep one input per segment, recompute the rest in backward.

A stack of n_layers MLPs (the mlp_batched exercise's MLP): layer l maps x_BD to the next x_BD
with w_in_DF_layers[l] and w_out_FD_layers[l]. Plain backprop keeps every layer's activations
from forward to backward (its input x_BD and its pre-activation h_BF): n_layers · (B·D + B·F)
numbers. With a checkpoint every `every` = k layers, the stack is cut into segments of k layers
(layers 0 .. k − 1, k .. 2k − 1, …; the last one may be shorter). Forward keeps only each
segment's input x_BD, its checkpoint, and drops everything else. Backward takes the segments
last to first: it re-runs a segment's forward from its checkpoint to get the activations back,
backprops through the segment, and drops them.

    B batch  D model width  F hidden width      float64 arrays: 8 bytes a number

How the checks measure: memory from the arrays you keep (their .nbytes; an array counts once
however often you list it, the weights not at all); FLOPs added by counting the layer forwards
your backward runs, as calls to mlp_forward: run every layer's forward, in both passes, through
mlp_forward. One layer forward costs two matmuls of 2·B·D·F FLOPs each (a multiply and an add
per term).
"""

import numpy as np
'''
    + CARRIED_MLP
    + '''

def checkpointed_forward(x_BD, w_in_DF_layers, w_out_FD_layers, every):
    """Forward through the stack keeping only the checkpoints. Returns (y_BD, checkpoints):
    checkpoints is the list of segment inputs x_BD, in order, and nothing else the backward
    needs (the checks add up its bytes; keep nothing in globals either)."""
    raise NotImplementedError


def checkpointed_backward(d_y_BD, checkpoints, w_in_DF_layers, w_out_FD_layers, every):
    """Backward from the checkpoints alone, last segment first. Returns (d_x_BD,
    d_w_in_DF_layers, d_w_out_FD_layers, peak): the same gradients as plain backprop (lists,
    one array per layer), and peak, the most bytes of activations held at once during this
    backward.

    Count peak right after each segment's recompute, as the bytes of the distinct arrays among
    the checkpoints not used up yet (this segment's included) and the recomputed layers' inputs
    x_BD and pre-activations h_BF (a segment's first input IS its checkpoint: count it once). A
    checkpoint is used up once its segment's backward is done."""
    raise NotImplementedError


def stack_activation_bytes(n_layers, B, D, F, itemsize):
    """Bytes plain backprop keeps from forward to backward (no checkpointing)."""
    raise NotImplementedError


def checkpoint_bytes(n_layers, every, B, D, itemsize):
    """Bytes checkpointing every `every` layers keeps from forward to backward."""
    raise NotImplementedError


def recompute_flops(n_layers, B, D, F):
    """FLOPs checkpointing adds to one training step (whatever every is)."""
    raise NotImplementedError
'''
)

CK_B, CK_D, CK_F = 3, 4, 6
# (n_layers, every): an uneven last segment, two even ones, one layer per segment, one segment
CK_CASES = ((5, 2), (6, 3), (4, 1), (3, 8))


def _stack(n: int, seed: int):
    rng = np.random.default_rng(seed)
    w_in = [rng.standard_normal((CK_D, CK_F)) / np.sqrt(CK_D) for _ in range(n)]
    w_out = [rng.standard_normal((CK_F, CK_D)) / np.sqrt(CK_F) for _ in range(n)]
    x_BD, d_y_BD = rng.standard_normal((CK_B, CK_D)), rng.standard_normal((CK_B, CK_D))
    return x_BD, d_y_BD, w_in, w_out


def _where(n: int, every: int) -> str:
    return f"n_layers={n}, every={every}"


def _forward(learner: ModuleType, x_BD, w_in, w_out, every: int):
    result = function(learner, "checkpointed_forward")(x_BD, list(w_in), list(w_out), every)
    return parts(result, ("y_BD", "checkpoints"), "checkpointed_forward")


def _backward(learner: ModuleType, d_y_BD, checkpoints, w_in, w_out, every: int):
    result = function(learner, "checkpointed_backward")(
        d_y_BD, checkpoints, list(w_in), list(w_out), every
    )
    return parts(
        result, ("d_x_BD", "d_w_in_DF_layers", "d_w_out_FD_layers", "peak"), "checkpointed_backward"
    )


def _arrays(value: object, weights: list[np.ndarray]) -> list[np.ndarray]:
    """Every distinct array inside lists, tuples and dicts (what a learner might keep), but
    the weights they were given: the model holds those whatever the backward keeps."""
    found: dict[int, np.ndarray] = {}
    given = {id(w) for w in weights}

    def walk(v: object) -> None:
        if isinstance(v, np.ndarray):
            if id(v) not in given:
                found.setdefault(id(v), v)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)

    walk(value)
    return list(found.values())


def _ck_forward_check(learner: ModuleType) -> None:
    for n, every in CK_CASES:
        x_BD, _, w_in, w_out = _stack(n, 10 * n + every)
        y_BD, _ = _forward(learner, x_BD, w_in, w_out, every)
        expected = ref_ck.stack_forward(x_BD, w_in, w_out)[0]
        expect_array(f"y_BD ({_where(n, every)})", y_BD, expected)


def _ck_bytes_check(learner: ModuleType) -> None:
    B, D, F = CK_B, CK_D, CK_F
    for n, every in CK_CASES:
        x_BD, _, w_in, w_out = _stack(n, 10 * n + every)
        _, checkpoints = _forward(learner, x_BD, w_in, w_out, every)
        kept = _arrays(checkpoints, w_in + w_out)
        got = ref_ck.held_bytes(kept)
        expected = ref_ck.checkpoint_bytes(n, every, B, D, 8)
        if got == expected:
            continue
        segments = math.ceil(n / every)
        plain = ref_ck.stack_activation_bytes(n, B, D, F, 8)
        shapes = Counter(a.shape for a in kept)
        named = {(B, D): f"x_BD (B={B}, D={D})", (B, F): f"h_BF (B={B}, F={F})"}
        held = ", ".join(
            f"{k} × {named.get(shape, str(shape))}" for shape, k in sorted(shapes.items())
        )
        lines = [
            (
                f"checkpointed_forward ({_where(n, every)}): checkpoints hold {got} B "
                f"({held or 'no arrays'}); one "
                f"x_BD (B={B}, D={D}) per segment is ceil(n_layers / every) · B·D · 8 = "
                f"{segments} · {B}·{D} · 8 = {expected} B"
            )
        ]
        if got >= plain:
            lines.append(
                f"no memory saved: the plain stack keeps n_layers · (B·D + B·F) · 8 = {plain} B. "
                f"Keep each segment's input only; backward recomputes the rest"
            )
        elif shapes.get((B, F)):
            lines.append(
                "they include h_BF arrays: backward recomputes a segment's activations from "
                "its input alone"
            )
        elif shapes.get((B, D), 0) > segments:
            lines.append(
                f"{shapes[(B, D)]} arrays x_BD for {segments} segments: keep only the input of "
                f"layers 0, every, 2·every, …"
            )
        elif shapes.get((B, D), 0) < segments:
            lines.append(
                f"{segments} segments need {segments} checkpoints; the last segment, even a "
                f"shorter one, needs its own"
            )
        raise Mismatch("\n".join(lines))


def _segments_from(checkpoints, w_in, w_out, every, d_y_BD, pick: Callable[[int, list], object]):
    """Gradients when segment j is recomputed from pick(j, checkpoints): a wrong-checkpoint
    mistake's value (the right one is checkpoints[j])."""
    n = len(w_in)
    d_w_in, d_w_out = [None] * n, [None] * n
    for j, seg in reversed(list(enumerate(ref_ck.segments(n, every)))):
        ws = slice(seg.start, seg.stop)
        _, saved = ref_ck.stack_forward(pick(j, checkpoints), w_in[ws], w_out[ws])
        d_y_BD, d_w_in[ws], d_w_out[ws] = ref_ck.stack_backward(d_y_BD, saved)
    return d_y_BD, d_w_in, d_w_out


WRONG_CHECKPOINT = {
    "checkpoints[0] (the stack's input)": lambda j, c: c[0],
    "checkpoints[-1] (the last one)": lambda j, c: c[-1],
}


def _ck_grads_check(learner: ModuleType) -> None:
    for n, every in CK_CASES:
        x_BD, d_y_BD, w_in, w_out = _stack(n, 10 * n + every)
        _, checkpoints = _forward(learner, x_BD, w_in, w_out, every)
        # A second forward before the backward: a backward that reads arrays left over from
        # the latest forward (a global) instead of `checkpoints` differentiates the wrong input.
        other_BD = x_BD[::-1] * 2
        _forward(learner, other_BD, w_in, w_out, every)
        got = _backward(learner, d_y_BD, checkpoints, w_in, w_out, every)[:3]
        expected = ref_ck.stack_backward(d_y_BD, ref_ck.stack_forward(x_BD, w_in, w_out)[1])
        stale = ref_ck.stack_backward(d_y_BD, ref_ck.stack_forward(other_BD, w_in, w_out)[1])
        ref_checkpoints = ref_ck.checkpointed_forward(x_BD, w_in, w_out, every)[1]
        wrong = {
            what: _segments_from(ref_checkpoints, w_in, w_out, every, d_y_BD, pick)
            for what, pick in WRONG_CHECKPOINT.items()
        }
        segs = " ".join(
            f"[{seg.start}..{seg.stop - 1}]" if len(seg) > 1 else f"[{seg.start}]"
            for seg in ref_ck.segments(n, every)
        )
        for k, name in ((1, "d_w_in_DF_layers"), (2, "d_w_out_FD_layers")):
            if not isinstance(got[k], list | tuple) or len(got[k]) != n:
                raise Mismatch(
                    f"checkpointed_backward ({_where(n, every)}): {name} must be a list of "
                    f"n_layers = {n} arrays, one per layer; got {describe(got[k])}"
                )
            bad = [
                layer
                for layer in range(n)
                if not (
                    np.shape(got[k][layer]) == expected[k][layer].shape
                    and np.allclose(got[k][layer], expected[k][layer])
                )
            ]
            if not bad:
                continue
            layer = bad[-1]  # the last wrong layer: backward meets it first
            symptoms = [
                (
                    lambda g, v=stale[k][layer]: np.allclose(g, v),
                    (
                        "it is the gradient for the input of your latest checkpointed_forward call, "
                        "not for the checkpoints given: backward must work from its arguments alone "
                        "(arrays left in a global go stale)"
                    ),
                ),
                *(
                    (
                        lambda g, v=value[k][layer]: np.allclose(g, v),
                        (
                            f"it is what recomputing every segment from {what} gives: segment j "
                            f"restarts from its own checkpoint, checkpoints[j]"
                        ),
                    )
                    for what, value in wrong.items()
                ),
            ]
            right = sorted(set(range(n)) - set(bad))
            try:
                expect_array(
                    f"{name}[{layer}] ({_where(n, every)})",
                    got[k][layer],
                    expected[k][layer],
                    symptoms,
                )
            except Mismatch as error:
                raise Mismatch(
                    f"{error}\nwrong for "
                    + (f"layers {bad}, right for {right}" if right else "every layer")
                    + f"; the segments are {segs}"
                ) from None
        expect_array(f"d_x_BD ({_where(n, every)})", got[0], expected[0])


@contextmanager
def _layer_forwards(learner: ModuleType) -> Iterator[list[int]]:
    """Count calls to mlp_forward where they are looked up: in the learner's module (their
    functions find their mlp_forward there, pasted or imported) and in mlgrind.ref.mlp (where
    the reference's functions, dropped in as a solution, find theirs)."""
    calls = [0]

    def counting(forward: Callable) -> Callable:
        def counted(*args, **kwargs):
            calls[0] += 1
            return forward(*args, **kwargs)

        return counted

    theirs, reference = function(learner, "mlp_forward"), ref_mlp.mlp_forward
    learner.mlp_forward, ref_mlp.mlp_forward = counting(theirs), counting(reference)
    try:
        yield calls
    finally:
        learner.mlp_forward, ref_mlp.mlp_forward = theirs, reference


def _ck_flops_check(learner: ModuleType) -> None:
    B, D, F = CK_B, CK_D, CK_F
    layer_flops = ref_mlp.mlp_flops(B, D, F)
    for n, every in CK_CASES:
        x_BD, d_y_BD, w_in, w_out = _stack(n, 10 * n + every)
        with _layer_forwards(learner) as calls:
            _, checkpoints = _forward(learner, x_BD, w_in, w_out, every)
            if calls[0] == 0:
                raise Mismatch(
                    "checkpointed_forward made no call to mlp_forward: run every layer through "
                    "it, so that the checks can count the layer forwards (the FLOPs) each pass runs"
                )
            calls[0] = 0
            _backward(learner, d_y_BD, checkpoints, w_in, w_out, every)
        got = calls[0] * layer_flops
        # Measured on the reference: its checkpointed backward minus plain backprop's backward.
        saved = ref_ck.stack_forward(x_BD, w_in, w_out)[1]
        ref_checkpoints = ref_ck.checkpointed_forward(x_BD, w_in, w_out, every)[1]
        with count_flops() as plain:
            ref_ck.stack_backward(d_y_BD, saved)
        with count_flops() as checkpointed:
            ref_ck.checkpointed_backward(d_y_BD, ref_checkpoints, w_in, w_out, every)
        expected = checkpointed.total - plain.total
        if got == expected:
            continue
        lines = [
            (
                f"checkpointed_backward ({_where(n, every)}) ran {calls[0]} layer forwards, "
                f"{calls[0]} × 4·B·D·F = {got} FLOPs added; recomputing each segment once adds one "
                f"forward of the stack, n_layers × 4·B·D·F = {expected}"
            )
        ]
        if calls[0] == 0:
            lines.append(
                "without a recompute, the activations it differentiated were kept from forward "
                "(or left in a global): that is the memory checkpointing exists to save"
            )
        elif calls[0] > n:
            lines.append(
                "some layers were re-run more than once: recompute each segment from its own "
                "checkpoint, not from the start of the stack"
            )
        else:
            lines.append(
                "backward needs every layer's h_BF, so every layer is re-run once, the last "
                "layer of each segment too"
            )
        raise Mismatch("\n".join(lines))


def _ck_peak_check(learner: ModuleType) -> None:
    B, D, F = CK_B, CK_D, CK_F
    for n, every in CK_CASES:
        x_BD, d_y_BD, w_in, w_out = _stack(n, 10 * n + every)
        _, checkpoints = _forward(learner, x_BD, w_in, w_out, every)
        peak = _backward(learner, d_y_BD, checkpoints, w_in, w_out, every)[3]
        got = _number("checkpointed_backward's peak", peak)
        ref_checkpoints = ref_ck.checkpointed_forward(x_BD, w_in, w_out, every)[1]
        expected = ref_ck.checkpointed_backward(d_y_BD, ref_checkpoints, w_in, w_out, every)[3]
        if got == expected:
            continue
        segs = ref_ck.segments(n, every)
        # Segment j's moment: checkpoints 0..j, its other k − 1 inputs and its k h_BF's.
        sizes = [(j + len(seg)) * B * D + len(seg) * B * F for j, seg in enumerate(segs)]
        j = int(np.argmax(sizes))
        k = len(segs[j])
        lines = [
            (
                f"checkpointed_backward ({_where(n, every)}): peak = {got:g} B, expected {expected} B."
                f" It comes right after recomputing segment {j} (layers {segs[j].start}.."
                f"{segs[j].stop - 1}): {j + 1} checkpoint(s) not used up, plus the segment's "
                f"{k - 1} other recomputed input(s) x_BD and {k} h_BF: "
                f"({j + 1} + {k - 1}) · B·D · 8 + {k} · B·F · 8 = {expected} B"
            )
        ]
        causes = [
            (
                ref_ck.stack_activation_bytes(n, B, D, F, 8),
                "yours is every layer's activations at once: that is plain backprop's memory",
            ),
            (
                8 * max((len(segs) + len(seg) - 1) * B * D + len(seg) * B * F for seg in segs),
                (
                    "it matches counting the checkpoints of segments already done: a checkpoint is "
                    "used up once its segment's backward is done"
                ),
            ),
            (
                8 * max(size + B * D for size in sizes),
                (
                    "it matches counting a segment's first recomputed input apart from its "
                    "checkpoint: recompute from checkpoints[j] itself, the same array, counted once"
                ),
            ),
        ]
        lines += [why for value, why in causes if got == value]
        raise Mismatch("\n".join(lines))


FORMULA_CASES = ((5, 2, 3, 4, 6, 8), (7, 3, 2, 16, 64, 2), (12, 4, 1, 5, 20, 4), (3, 8, 4, 2, 3, 8))


def _formula_check(name: str) -> Callable[[ModuleType], None]:
    def run(learner: ModuleType) -> None:
        for n, every, B, D, F, itemsize in FORMULA_CASES:
            args = {
                "stack_activation_bytes": {
                    "n_layers": n,
                    "B": B,
                    "D": D,
                    "F": F,
                    "itemsize": itemsize,
                },
                "checkpoint_bytes": {
                    "n_layers": n,
                    "every": every,
                    "B": B,
                    "D": D,
                    "itemsize": itemsize,
                },
                "recompute_flops": {"n_layers": n, "B": B, "D": D, "F": F},
            }[name]
            call = f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
            got = _number(call, function(learner, name)(*args.values()))
            expected = getattr(ref_ck, name)(*args.values())
            if math.isclose(got, expected):
                continue
            causes = {
                "stack_activation_bytes": [
                    (
                        n * B * D * itemsize,
                        (
                            "that is the layers' inputs x_BD alone: each layer keeps its "
                            "pre-activation h_BF too"
                        ),
                    )
                ],
                "checkpoint_bytes": [
                    (
                        n // every * B * D * itemsize,
                        (
                            "that is n_layers // every segments: a shorter last segment needs its "
                            "checkpoint too"
                        ),
                    ),
                    (
                        math.ceil(n / every) * (B * D + B * F) * itemsize,
                        "a checkpoint is the segment's input x_BD alone, no h_BF",
                    ),
                ],
                "recompute_flops": [
                    (
                        3 * expected,
                        "that counts the backward too; the added FLOPs are the recompute alone",
                    ),
                    (
                        expected / 2,
                        "a layer's forward is two matmuls of 2·B·D·F FLOPs each",
                    ),
                    (
                        expected / n * math.ceil(n / every),
                        "every layer is re-run once, not one layer per segment",
                    ),
                ],
            }[name]
            lines = [f"{call}: expected {expected:g}, got {got:g}"]
            lines += [why for value, why in causes if math.isclose(got, value)]
            raise Mismatch("\n".join(lines))

    return run


EXERCISES = [
    Exercise(
        name="pipeline",
        title="Pipeline schedules: GPipe and 1F1B",
        goal="Order each stage's forwards and backwards; measure the bubble and the memory; train.",
        contract=PIPELINE_CONTRACT,
        hints=(
            (
                "Start with gpipe_order and simulate: a timeline you can print makes every other "
                "function easy to debug."
            ),
            (
                "simulate: keep, per stage, the time it is free and its position in its order; "
                "repeatedly run any stage's next op whose needs have all ended, starting it at "
                "the latest of those ends and the stage's free time."
            ),
            (
                "1F1B: the last stage can run a micro-batch's backward right after its forward. "
                "Stage s must first push enough forwards to keep the stages after it busy: how "
                "many before its first backward can come back?"
            ),
            (
                "peak_in_flight and run both walk a stage's ops in order of start: +1 at a "
                "forward, −1 at a backward."
            ),
            (
                "run: keep an inbox keyed by (stage, micro-batch) for what each op receives, and "
                "each stage's saved activations keyed by micro-batch; a backward pops them."
            ),
        ),
        hint_for={
            "gpipe_order: every op once, forwards first, the bubble": 0,
            "simulate: start and end of every op": 1,
            "one_f_one_b_order: at most p − s in flight, GPipe's bubble": 2,
            "peak_in_flight": 3,
            "run: peaks, the activations each stage held": 3,
            "run: weight gradients equal the unpipelined ones": 4,
            "run: sends between stages": 4,
        },
        checks=(
            Check(
                "gpipe_order: every op once, forwards first, the bubble",
                _order_check("gpipe_order"),
            ),
            Check(
                "one_f_one_b_order: at most p − s in flight, GPipe's bubble",
                _order_check("one_f_one_b_order"),
            ),
            Check("simulate: start and end of every op", _simulate_check),
            Check("bubble_fraction", _bubble_check),
            Check("peak_in_flight", _peak_check),
            Check("run: weight gradients equal the unpipelined ones", _run_grads_check),
            Check("run: peaks, the activations each stage held", _run_peaks_check),
            Check("run: sends between stages", _run_sends_check),
        ),
    ),
    Exercise(
        name="checkpointing",
        title="Activation checkpointing",
        goal="Keep one input per segment, recompute in backward: less memory for one more forward.",
        contract=CHECKPOINT_CONTRACT,
        hints=(
            (
                "Forward is the plain stack's loop, with the mlp_forward results' `saved` thrown "
                "away; before the first layer of each segment, append the current x_BD."
            ),
            (
                "Backward walks the segments last to first. For segment j: run its layers' "
                "forwards from checkpoints[j] keeping their `saved`, then their backwards in "
                "reverse, carrying d_y_BD from one segment into the next."
            ),
            (
                "The peak: right after recomputing segment j, you hold checkpoints 0 .. j, and "
                "each recomputed layer's input and h_BF; the first input is checkpoint j itself."
            ),
            (
                "The formulas: how many segments does a stack of n_layers have when the last one "
                "may be shorter? And how many layer forwards does backward re-run?"
            ),
        ),
        checks=(
            Check("checkpointed_forward: y_BD", _ck_forward_check),
            Check("checkpointed_forward: bytes kept", _ck_bytes_check),
            Check("checkpointed_backward: gradients equal plain backprop's", _ck_grads_check),
            Check("checkpointed_backward: FLOPs added by the recompute", _ck_flops_check),
            Check("checkpointed_backward: peak bytes", _ck_peak_check),
            Check("stack_activation_bytes", _formula_check("stack_activation_bytes")),
            Check("checkpoint_bytes", _formula_check("checkpoint_bytes")),
            Check("recompute_flops", _formula_check("recompute_flops")),
        ),
    ),
]
