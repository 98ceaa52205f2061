"""Seed step 2: the 2-layer ReLU MLP, forward and backward, counted on the reference code."""

from __future__ import annotations

import numpy as np

from ..ref import einsum as ref_einsum
from .core import MAX_TABLE_ELEMENTS, check_elements, int_arg, table


@table
def mlp_flops_table(B: int = 8, D: int = 16, F: int = 64) -> list[list[str]]:
    """Each matmul of the 2-layer MLP, forward then backward, with the FLOPs counted while the
    reference code (`ref.mlp`) ran it on arrays of these sizes; then each pass's total.
    B·D, D·F and B·F are each at most `MAX_TABLE_ELEMENTS`, so B·D·F ≤ 2^30: ~0.5 s."""
    from ..ref import mlp

    for name, n in (("B", B), ("D", D), ("F", F)):
        int_arg(name, n, 1, MAX_TABLE_ELEMENTS)
    check_elements(max(B * D, D * F, B * F), f"B·D, D·F or B·F with B={B}, D={D}, F={F}",
                    MAX_TABLE_ELEMENTS, "a table runs the reference code on arrays of")
    rng = np.random.default_rng(0)
    x_BD, w_in_DF, w_out_FD = (rng.standard_normal(s) for s in ((B, D), (D, F), (F, D)))
    with ref_einsum.count_flops() as forward:
        y_BD, saved = mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with ref_einsum.count_flops() as backward:
        mlp.mlp_backward(mlp.l2_loss(y_BD, np.zeros_like(y_BD))[1], saved)
    rows = [[name, f"`{spec}`", f"{count:,}"] for name, counter in
            (("forward", forward), ("backward", backward)) for spec, count in counter.by_spec.items()]
    ratio = backward.total / forward.total
    return rows + [["**forward total**", "", f"**{forward.total:,}**"],
                   ["**backward total**", "", f"**{backward.total:,}** (= {ratio:g} × forward)"]]
