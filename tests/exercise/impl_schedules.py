"""Learner files for the pipeline and checkpointing exercises: the reference dropped in, and a
subtly wrong one each. implementations.py merges them into its REFERENCE and WRONG; a WRONG
entry is (source, failing checks → words), the fields of implementations.Wrong, so that this
module needs nothing from that one."""

from __future__ import annotations

PIPELINE_REFERENCE = (
    "from mlgrind.ref.mlp import mlp_forward, mlp_backward\n"
    "from mlgrind.ref.pipeline import (Op, gpipe_order, one_f_one_b_order, simulate, "
    "bubble_fraction, peak_in_flight, run)"
)

CHECKPOINTING_REFERENCE = (
    "from mlgrind.ref.mlp import mlp_forward, mlp_backward\n"
    "from mlgrind.ref.checkpointing import (checkpointed_forward, checkpointed_backward, "
    "stack_activation_bytes, checkpoint_bytes, recompute_flops)"
)

REFERENCE = {"pipeline": PIPELINE_REFERENCE, "checkpointing": CHECKPOINTING_REFERENCE}

WRONG = {
    "pipeline": (
        PIPELINE_REFERENCE.replace("one_f_one_b_order, ", "")
        + """

def one_f_one_b_order(p, m):
    orders = []
    for s in range(p):
        warmup = min(p - s, m)  # one forward too many before the first backward
        order = [("F", i) for i in range(warmup)]
        for i in range(m - warmup):
            order += [("F", warmup + i), ("B", i)]
        orders.append(order + [("B", i) for i in range(m - warmup, m)])
    return orders
""",
        {
            "one_f_one_b_order: at most p − s in flight, GPipe's bubble": (
                "stage 0 holds 3 micro-batches in flight once it has run forward of micro-batch 2",
                "at most p − s = 2 − 0 = 2",
            )
        },
    ),
    "checkpointing": (
        CHECKPOINTING_REFERENCE.replace("checkpointed_backward, ", "")
        + """
from mlgrind.ref.checkpointing import activations, held_bytes, segments, stack_backward, stack_forward

def checkpointed_backward(d_y_BD, checkpoints, w_in_DF_layers, w_out_FD_layers, every):
    n = len(w_in_DF_layers)
    d_w_in, d_w_out = [None] * n, [None] * n
    peak = 0
    for seg in reversed(segments(n, every)):
        ws = slice(seg.start, seg.stop)
        # every segment restarts from the stack's input, not from its own checkpoint
        _, saved = stack_forward(checkpoints[0], w_in_DF_layers[ws], w_out_FD_layers[ws])
        peak = max(peak, held_bytes(checkpoints + activations(saved)))
        d_y_BD, d_w_in[ws], d_w_out[ws] = stack_backward(d_y_BD, saved)
        checkpoints = checkpoints[:-1]
    return d_y_BD, d_w_in, d_w_out, peak
""",
        {
            "checkpointed_backward: gradients equal plain backprop's": (
                "recomputing every segment from checkpoints[0] (the stack's input)",
                "wrong for every layer",
                "the segments are [0..1] [2..3] [4]",
            )
        },
    ),
}
