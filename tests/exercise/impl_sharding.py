"""Learner files for the sharding exercises (megatron_mlp, zero): the reference dropped in, and a
subtly wrong one each. implementations.py merges these into its REFERENCE and WRONG; a wrong one
is (source, {check: words its message must contain}), exactly the checks that fail."""

from __future__ import annotations

REFERENCE = {
    "megatron_mlp": "from mlgrind.ref.mlp import megatron_forward, megatron_backward",
    "zero": "from mlgrind.ref.zero import (block, init_ranks, gather_params, step, "
    "zero_bytes_per_rank, zero_state_bytes)",
}

WRONG = {
    # Column-parallel's habit: gather a_BF whole, then cut it again for the row-parallel half.
    # The values are right; the extra all-gather moves bytes Megatron never moves.
    "megatron_mlp": (
        """
import numpy as np
from mlgrind.ref.mlp import megatron_backward

def megatron_forward(comm, x_BD, w_in_DF_ranks, w_out_FD_ranks):
    h_BF_ranks = [x_BD @ w_in_DF for w_in_DF in w_in_DF_ranks]
    a_BF = comm.all_gather([np.maximum(h_BF, 0) for h_BF in h_BF_ranks], axis=1)[0]
    a_BF_ranks = np.array_split(a_BF, comm.size, axis=1)
    y_BD = comm.all_reduce([a @ w for a, w in zip(a_BF_ranks, w_out_FD_ranks)])[0]
    saved = [(x_BD, w_in, w_out, h) for w_in, w_out, h in
             zip(w_in_DF_ranks, w_out_FD_ranks, h_BF_ranks)]
    return y_BD, saved
""",
        {
            "forward: collectives": (
                "all_reduce: y_BD (B=5, D=4) on every rank",
                "you made 2:",
                "column-parallel's habit",
            )
        },
    ),
    # ZeRO-3 reusing the weights gathered for the forward in the backward: right numbers, but
    # the full weights stay alive through the step, which is what stage 3 exists to avoid.
    "zero": (
        """
import numpy as np
from mlgrind.ref.mlp import mlp_forward, mlp_backward
from mlgrind.ref.zero import (block, init_ranks, gather_params, zero_bytes_per_rank,
                              zero_state_bytes, step as reference_step)

def step(stage, comm, ranks, shapes, x_BD, target_BD, adam, t):
    if stage != 3:
        return reference_step(stage, comm, ranks, shapes, x_BD, target_BD, adam, t)
    S = comm.size
    weights = gather_params(comm, ranks, shapes, "forward")  # kept for the backward as well
    grads = []
    for x, target, w in zip(np.array_split(x_BD, S), np.array_split(target_BD, S), weights):
        y, saved = mlp_forward(x, w["w_in_DF"], w["w_out_FD"])
        _, d_w_in_DF, d_w_out_FD = mlp_backward(y - target, saved)
        grads.append({"w_in_DF": d_w_in_DF, "w_out_FD": d_w_out_FD})
    for n in shapes:
        summed = comm.reduce_scatter([g[n].reshape(-1) for g in grads])
        for rank, d_w in zip(ranks, summed):
            rank.grads[n] = d_w
            rank.params[n], rank.m[n], rank.v[n] = adam.update(
                rank.params[n], d_w, rank.m[n], rank.v[n], t)
""",
        {
            "zero-3: collectives and bytes per rank": (
                "the reference makes 6 collective calls",
                "you made 4",
                "all-gathers them again for the backward",
                "1.5 × DP",
            )
        },
    ),
}
