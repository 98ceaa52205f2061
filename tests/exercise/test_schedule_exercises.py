"""The pipeline and checkpointing exercises against solutions written here, independently of
mlgrind.ref, and against the mistakes learners make. (The untouched scaffold and the reference
dropped in are graded for every exercise in test_exercises.py.)"""

from __future__ import annotations

import pytest

from mlgrind.ref import mlp
from tests.exercise.grading import graded

PIPELINE = '''
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Op:
    stage: int
    kind: str
    micro: int
    start: float
    end: float


def gpipe_order(p, m):
    # backwards last-in first-out: another valid GPipe order than the reference's
    return [[("F", i) for i in range(m)] + [("B", i) for i in reversed(range(m))] for _ in range(p)]


def one_f_one_b_order(p, m):
    """Greedy: forward while fewer than CAP micro-batches are in flight, else backward."""
    orders = []
    for s in range(p):
        f = b = 0
        order = []
        while b < m:
            if f < m and f - b < CAP(p, s, m):
                order.append(("F", f))
                f += 1
            else:
                order.append(("B", b))
                b += 1
        orders.append(order)
    return orders


def simulate(orders, t_fwd=1.0, t_bwd=2.0):
    """Each op's end, by recursion on what it waits for."""
    p = len(orders)
    position = {(k, s, i): n for s, order in enumerate(orders) for n, (k, i) in enumerate(order)}
    end = {}

    def finish(k, s, i):
        if (k, s, i) not in end:
            n = position[(k, s, i)]
            waits = [0.0]
            if PREVIOUS and n:
                waits.append(finish(orders[s][n - 1][0], s, orders[s][n - 1][1]))
            if k == "F" and s > 0:
                waits.append(finish("F", s - 1, i))
            if k == "B":
                waits.append(finish("F", s, i))
                if s < p - 1:
                    waits.append(finish("B", s + 1, i))
            end[(k, s, i)] = max(waits) + (t_fwd if k == "F" else T_B(t_fwd, t_bwd))
        return end[(k, s, i)]

    return [
        Op(s, k, i, finish(k, s, i) - (t_fwd if k == "F" else T_B(t_fwd, t_bwd)), finish(k, s, i))
        for (k, s, i) in position
    ]


def bubble_fraction(ops):
    p = 1 + max(op.stage for op in ops)
    span = max(op.end for op in ops) - min(op.start for op in ops)
    idle = p * span - sum(op.end - op.start for op in ops)
    return IDLE(idle, p * span)


def peak_in_flight(ops):
    p = 1 + max(op.stage for op in ops)
    peaks = [0] * p
    for s in range(p):
        held = 0
        for op in sorted((op for op in ops if op.stage == s), key=lambda op: op.start):
            held += 1 if op.kind == "F" else COUNT_B
            peaks[s] = max(peaks[s], held)
    return peaks


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    h_BF = x_BD @ w_in_DF
    return np.maximum(h_BF, 0) @ w_out_FD, (x_BD, h_BF, w_in_DF, w_out_FD)


def mlp_backward(d_y_BD, saved):
    x_BD, h_BF, w_in_DF, w_out_FD = saved
    d_w_out_FD = np.maximum(h_BF, 0).T @ d_y_BD
    d_h_BF = (d_y_BD @ w_out_FD.T) * (h_BF > 0)
    return d_h_BF @ w_in_DF.T, x_BD.T @ d_h_BF, d_w_out_FD


def run(ops, comm, x_BD, target_BD, w_in_DF_stages, w_out_FD_stages):
    p, m = len(w_in_DF_stages), 1 + max(op.micro for op in ops)
    x_micro, target_micro = np.array_split(x_BD, m), np.array_split(target_BD, m)
    arriving = {}
    held = [{} for _ in range(p)]
    d_w_in = [np.zeros_like(w) for w in w_in_DF_stages]
    d_w_out = [np.zeros_like(w) for w in w_out_FD_stages]
    peaks = [0] * p
    for op in sorted(ops, key=lambda op: op.start):
        s, i = op.stage, op.micro
        if op.kind == "F":
            x = x_micro[i] if s == 0 else arriving.pop(("x", s, i))
            y, held[s][i] = mlp_forward(x, w_in_DF_stages[s], w_out_FD_stages[s])
            peaks[s] = max(peaks[s], len(held[s]))
            if s + 1 < p:
                arriving[("x", s + 1, i)] = SEND(comm, y, s, s + 1)
            else:
                arriving[("d", s, i)] = y - target_micro[i]
        else:
            saved = held[s].pop(i) if DROP else held[s][i]
            d_x, g_in, g_out = mlp_backward(arriving.pop(("d", s, i)), saved)
            d_w_in[s] = ACCUMULATE(d_w_in[s], g_in)
            d_w_out[s] = ACCUMULATE(d_w_out[s], g_out)
            if s > 0:
                arriving[("d", s - 1, i)] = SEND(comm, d_x, s, s - 1)
    return d_w_in, d_w_out, peaks
'''

PIPELINE_RIGHT = {
    "CAP": "lambda p, s, m: min(p - s, m)",
    "PREVIOUS": "True",
    "T_B": "lambda t_fwd, t_bwd: t_bwd",
    "IDLE": "lambda idle, whole: idle / whole",
    "COUNT_B": "-1",
    "SEND": "lambda comm, a, src, dst: comm.send(a, src, dst)",
    "DROP": "True",
    "ACCUMULATE": "lambda total, g: total + g",
}

CHECKPOINTING = """
import numpy as np

KEPT = []


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    h_BF = x_BD @ w_in_DF
    return np.maximum(h_BF, 0) @ w_out_FD, (x_BD, h_BF, w_in_DF, w_out_FD)


def mlp_backward(d_y_BD, saved):
    x_BD, h_BF, w_in_DF, w_out_FD = saved
    d_w_out_FD = np.maximum(h_BF, 0).T @ d_y_BD
    d_h_BF = (d_y_BD @ w_out_FD.T) * (h_BF > 0)
    return d_h_BF @ w_in_DF.T, x_BD.T @ d_h_BF, d_w_out_FD


def checkpointed_forward(x_BD, w_in_DF_layers, w_out_FD_layers, every):
    checkpoints, KEPT[:] = [], []
    for layer, (w_in_DF, w_out_FD) in enumerate(zip(w_in_DF_layers, w_out_FD_layers)):
        if layer % every == 0:
            checkpoints.append(x_BD)
        x_BD, saved = mlp_forward(x_BD, w_in_DF, w_out_FD)
        KEPT.append(saved)
    return x_BD, KEEP(checkpoints)


def checkpointed_backward(d_y_BD, checkpoints, w_in_DF_layers, w_out_FD_layers, every):
    n = len(w_in_DF_layers)
    d_w_in, d_w_out = [None] * n, [None] * n
    starts = list(range(0, n, every))
    peak = 0
    for j in reversed(range(len(starts))):
        layers = range(starts[j], min(starts[j] + every, n))
        x_BD, saved = FROM(checkpoints, j), []
        for layer in RERUN(layers, starts):
            x_BD, s = mlp_forward(x_BD, w_in_DF_layers[layer], w_out_FD_layers[layer])
            if layer in layers:
                saved.append(s)
        saved = SAVED(saved, layers, checkpoints)
        held = {id(a): a.nbytes for a in HELD(checkpoints, j, saved)}
        peak = max(peak, sum(held.values()))
        for layer, s in zip(reversed(layers), reversed(saved)):
            d_y_BD, d_w_in[layer], d_w_out[layer] = mlp_backward(d_y_BD, s)
    return d_y_BD, d_w_in, d_w_out, peak


def stack_activation_bytes(n_layers, B, D, F, itemsize):
    return n_layers * B * (D + F) * itemsize


def checkpoint_bytes(n_layers, every, B, D, itemsize):
    return SEGMENTS(n_layers, every) * B * D * itemsize


def recompute_flops(n_layers, B, D, F):
    return FLOPS(n_layers * 2 * (2 * B * D * F))
"""

CHECKPOINTING_RIGHT = {
    "KEEP": "lambda checkpoints: checkpoints",
    "FROM": "lambda checkpoints, j: checkpoints[j]",
    "RERUN": "lambda layers, starts: layers",
    "SAVED": "lambda saved, layers, c: saved",
    # the checkpoints not used up, and the recomputed inputs and pre-activations
    "HELD": "lambda c, j, saved: c[: j + 1] + [a for s in saved for a in s[:2]]",
    "SEGMENTS": "lambda n, k: -(-n // k)",
    "FLOPS": "lambda flops: flops",
}


def source(template: str, choices: dict[str, str], **mistake: str) -> str:
    """The template with its blanks filled: the right choices, but for the named mistakes."""
    unknown = set(mistake) - set(choices)
    assert not unknown, unknown
    return template + "\n" + "\n".join(f"{k} = {v}" for k, v in (choices | mistake).items())


def failures(tmp_path, name: str, text: str) -> dict[str, str]:
    return {c: r.message for c, r in graded(tmp_path, name, text).items() if not r.passed}


def test_a_pipeline_written_without_the_reference_passes_every_check(tmp_path):
    # its GPipe runs the backwards in the other order: the checks accept any valid schedule
    results = graded(tmp_path, "pipeline", source(PIPELINE, PIPELINE_RIGHT))
    assert len(results) == 8
    assert {c: r.message for c, r in results.items() if not r.passed} == {}


def test_checkpointing_written_without_the_reference_passes_every_check(tmp_path):
    results = graded(tmp_path, "checkpointing", source(CHECKPOINTING, CHECKPOINTING_RIGHT))
    assert len(results) == 8
    assert {c: r.message for c, r in results.items() if not r.passed} == {}


ORDERS_1F1B = "one_f_one_b_order: at most p − s in flight, GPipe's bubble"
ORDERS_GPIPE = "gpipe_order: every op once, forwards first, the bubble"

PIPELINE_MISTAKES = {
    "1F1B warm-up one short: the last stage starts with a backward": (
        {"CAP": "lambda p, s, m: min(p - s, m) - 1"},
        {ORDERS_1F1B: ("stage 1 runs backward of micro-batch 0 before its forward",)},
    ),
    "1F1B without warm-up": (
        {"CAP": "lambda p, s, m: 1"},
        {
            ORDERS_1F1B: (
                "the bubble is 0.5, not (p − 1) / (m + p − 1) = 0.25",
                "stage 0 runs 1 forward(s) before its first backward; it can run min(p − s, m) = 2",
            )
        },
    ),
    "1F1B's cap counted from the wrong end": (
        {"CAP": "lambda p, s, m: min(s + 1, m)"},
        {
            ORDERS_1F1B: (
                "the schedule deadlocks",
                "stage 0 waits to run backward of micro-batch 0 until stage 1 has run its backward",
                "stage 1 waits to run forward of micro-batch 1 until stage 0 has run its forward",
            )
        },
    ),
    "simulate overlaps a stage's ops": (
        {"PREVIOUS": "False"},
        {
            "simulate: start and end of every op": (
                "forward of micro-batch 1 on stage 0 runs 0 – 1, expected 1 – 2",
                "it starts before the op before it in orders[0], forward of micro-batch 0",
                "one at a time",
            )
        },
    ),
    "simulate times a backward like a forward": (
        {"T_B": "lambda t_fwd, t_bwd: t_fwd"},
        {"simulate: start and end of every op": ("it lasts 1; a backward takes t_bwd = 2",)},
    ),
    "bubble_fraction returns the busy share": (
        {"IDLE": "lambda idle, whole: 1 - idle / whole"},
        {"bubble_fraction": ("that is the busy share",)},
    ),
    "peak_in_flight never lets a micro-batch go": (
        {"COUNT_B": "0"},
        {"peak_in_flight": ("expected [4, 3, 2, 1], got [6, 6, 6, 6]", "number of forwards")},
    ),
    "run overwrites the weight gradients": (
        {"ACCUMULATE": "lambda total, g: g"},
        {
            "run: weight gradients equal the unpipelined ones": (
                "d_w_in_DF_stages[0] (run, 1F1B, p=3, m=4)",
                "the gradient of the last micro-batch alone: add up (+=)",
            )
        },
    ),
    "run keeps every micro-batch's activations": (
        {"DROP": "False"},
        {
            "run: peaks, the activations each stage held": (
                "expected [3, 2, 1], got [4, 4, 4]",
                "drop them once that micro-batch's backward has run",
            )
        },
    ),
    "run hands arrays over in Python": (
        {"SEND": "lambda comm, a, src, dst: a"},
        {
            "run: sends between stages": (
                "the reference makes 16 comm.send calls",
                "8 forward, stage s → s + 1: arrays 2 × (B=1, D=3), 6 × (B=2, D=3)",
                "you made none",
            )
        },
    ),
}


@pytest.mark.parametrize("mistake", PIPELINE_MISTAKES)
def test_a_pipeline_mistake_fails_its_check_naming_the_cause(tmp_path, mistake):
    blanks, failing = PIPELINE_MISTAKES[mistake]
    found = failures(tmp_path, "pipeline", source(PIPELINE, PIPELINE_RIGHT, **blanks))
    assert set(found) == set(failing), found
    for check, words in failing.items():
        for word in words:
            assert word in found[check], (word, found[check])


def test_gpipe_that_interleaves_is_told_it_runs_a_backward_before_the_last_forward(tmp_path):
    interleaved = source(PIPELINE, PIPELINE_RIGHT).replace(
        "def gpipe_order(p, m):",
        "def gpipe_order(p, m):\n    return one_f_one_b_order(p, m)\n\n\ndef unused(p, m):",
    )
    found = failures(tmp_path, "pipeline", interleaved)
    assert set(found) == {ORDERS_GPIPE}
    assert (
        "gpipe_order(p=2, m=3): stage 0 runs backward of micro-batch 0 before forward of "
        in (found[ORDERS_GPIPE])
    )
    assert "GPipe runs all m forwards first" in found[ORDERS_GPIPE]


BYTES = "checkpointed_forward: bytes kept"
GRADIENTS = "checkpointed_backward: gradients equal plain backprop's"
FLOPS = "checkpointed_backward: FLOPs added by the recompute"
PEAK = "checkpointed_backward: peak bytes"

CHECKPOINTING_MISTAKES = {
    "every activation kept, nothing recomputed": (
        {
            "KEEP": "lambda checkpoints: list(KEPT)",
            "FROM": "lambda checkpoints, j: None",
            "RERUN": "lambda layers, starts: []",
            "SAVED": "lambda saved, layers, c: [c[layer] for layer in layers]",
            "HELD": "lambda c, j, saved: [a for s in c for a in s[:2]]",
        },
        {
            BYTES: ("no memory saved: the plain stack keeps n_layers · (B·D + B·F) · 8 = 1200 B",),
            FLOPS: (
                "ran 0 layer forwards",
                "without a recompute, the activations it differentiated were kept from forward",
            ),
            PEAK: ("yours is every layer's activations at once",),
        },
    ),
    "stale arrays from the latest forward, no recompute": (
        {
            "RERUN": "lambda layers, starts: []",
            "SAVED": "lambda saved, layers, c: [KEPT[layer] for layer in layers]",
        },
        {
            GRADIENTS: ("the gradient for the input of your latest checkpointed_forward call",),
            FLOPS: ("ran 0 layer forwards",),
        },
    ),
    "each segment recomputed from the stack's input": (
        {
            "FROM": "lambda checkpoints, j: checkpoints[0]",
            "RERUN": "lambda layers, s: range(layers.stop)",
        },
        {
            FLOPS: ("ran 11 layer forwards", "some layers were re-run more than once"),
            # its first recomputed input is a new array, not the checkpoint: one x_BD more
            PEAK: ("peak = 672 B, expected 576 B",),
        },
    ),
    "every segment recomputed from the last checkpoint": (
        {"FROM": "lambda checkpoints, j: checkpoints[-1]"},
        {
            GRADIENTS: (
                "recomputing every segment from checkpoints[-1] (the last one)",
                "wrong for layers [0, 1, 2, 3], right for [4]",
            ),
            PEAK: ("expected 576 B",),  # the last checkpoint is held on top of segment j's
        },
    ),
    "peak counts checkpoints already used up": (
        {"HELD": "lambda c, j, saved: c + [a for s in saved for a in s[:2]]"},
        {
            PEAK: (
                "peak = 672 B, expected 576 B",
                "right after recomputing segment 1 (layers 2..3)",
                "counting the checkpoints of segments already done",
            )
        },
    ),
    "segments counted with a floor": (
        {"SEGMENTS": "lambda n, k: n // k"},
        {"checkpoint_bytes": ("n_layers // every segments",)},
    ),
    "recompute counted with the backward": (
        {"FLOPS": "lambda flops: 3 * flops"},
        {"recompute_flops": ("that counts the backward too",)},
    ),
}


@pytest.mark.parametrize("mistake", CHECKPOINTING_MISTAKES)
def test_a_checkpointing_mistake_fails_its_check_naming_the_cause(tmp_path, mistake):
    blanks, failing = CHECKPOINTING_MISTAKES[mistake]
    found = failures(
        tmp_path, "checkpointing", source(CHECKPOINTING, CHECKPOINTING_RIGHT, **blanks)
    )
    assert set(found) == set(failing), found
    for check, words in failing.items():
        for word in words:
            assert word in found[check], (word, found[check])


def test_counting_layer_forwards_leaves_the_reference_untouched_even_when_the_learner_crashes(
    tmp_path,
):
    # The FLOPs check wraps mlp_forward in mlgrind.ref.mlp too (so that the reference, dropped
    # in, is counted): it must put the original back whatever the learner's code does.
    original = mlp.mlp_forward
    crashing = source(CHECKPOINTING, CHECKPOINTING_RIGHT, RERUN="lambda layers, starts: 1 / 0")
    assert "ZeroDivisionError" in failures(tmp_path, "checkpointing", crashing)[FLOPS]
    assert mlp.mlp_forward is original
