"""Seed "Core - Pure NumPy, Implement FWD + BWD": the 2-layer ReLU MLP and its parallel forms.

    h = x @ w_in,  a = relu(h),  y = a @ w_out,  loss = 0.5 * sum((y - target)^2)

In the seed's order: one example, a batch dimension, row-parallel, column-parallel, the Megatron
pairing of the two, and data-parallel; then the gated MLP real models use (SwiGLU, Llama's), whose
einsums the per-layer FLOPs sheet lists. Every forward returns `(y, saved)`; its backward takes the
upstream gradient `d_y` and `saved` and returns gradients named `d_<tensor>`.

Sharded forms take a `Comm` and lists of per-rank arrays named `<tensor>_ranks`; rank s's array
keeps the full tensor's suffix, with the sharded letter standing for rank s's block. Blocks are
always cut by `collectives.shard` (np.array_split), so F does not have to divide by S. A value
every rank holds identically (replicated weights, an all-reduced sum) is one array here: the
simulation computes it once. Every sharded function first checks that each per-rank list
has `comm.size` entries (`Comm.check_ranks`), so a list cut for the wrong S fails by name.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref.collectives import Comm, shard
from mlgrind.ref.einsum import einsum


def relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0)


def l2_loss(y: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """0.5 * sum of squared errors and its gradient d_y = y - target.

    A sum, not a mean, over the batch: then per-shard gradients simply add up under data
    parallelism (a mean would divide by the global batch, not the local one).
    """
    diff = y - target
    return 0.5 * float(np.sum(diff * diff)), diff


# ---------------------------------------------------------------- one example


def mlp_forward_D(x_D, w_in_DF, w_out_FD):
    h_F = einsum("d,df->f", x_D, w_in_DF)
    a_F = relu(h_F)
    y_D = einsum("f,fd->d", a_F, w_out_FD)
    return y_D, (x_D, w_in_DF, w_out_FD, h_F)


def mlp_backward_D(d_y_D, saved):
    x_D, w_in_DF, w_out_FD, h_F = saved
    d_w_out_FD = einsum("f,d->fd", relu(h_F), d_y_D)
    d_a_F = einsum("d,fd->f", d_y_D, w_out_FD)
    d_h_F = d_a_F * (h_F > 0)  # relu lets the gradient through only where it let h through
    d_w_in_DF = einsum("d,f->df", x_D, d_h_F)
    d_x_D = einsum("f,df->d", d_h_F, w_in_DF)
    return d_x_D, d_w_in_DF, d_w_out_FD


# ---------------------------------------------------------------- with a batch dimension


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    h_BF = einsum("bd,df->bf", x_BD, w_in_DF)
    a_BF = relu(h_BF)
    y_BD = einsum("bf,fd->bd", a_BF, w_out_FD)
    return y_BD, (x_BD, w_in_DF, w_out_FD, h_BF)


def mlp_backward(d_y_BD, saved):
    x_BD, w_in_DF, w_out_FD, h_BF = saved
    # Weight gradients sum over the batch: the contraction over b does it.
    d_w_out_FD = einsum("bf,bd->fd", relu(h_BF), d_y_BD)
    d_a_BF = einsum("bd,fd->bf", d_y_BD, w_out_FD)
    d_h_BF = d_a_BF * (h_BF > 0)
    d_w_in_DF = einsum("bd,bf->df", x_BD, d_h_BF)
    d_x_BD = einsum("bf,df->bd", d_h_BF, w_in_DF)
    return d_x_BD, d_w_in_DF, d_w_out_FD


def mlp_flops(B: int, D: int, F: int) -> int:
    """Forward: two matmuls of 2·B·D·F each."""
    return 2 * (2 * B * D * F)


def mlp_backward_flops(B: int, D: int, F: int) -> int:
    """Backward = 2 × forward: each matmul needs a gradient for its input and for its weight."""
    return 2 * mlp_flops(B, D, F)


# ------------------------------------------------------------- row-parallel (w_out split along F)


def row_parallel_forward(comm: Comm, x_BD, w_in_DF, w_out_FD_ranks):
    """w_in replicated, w_out split along F: each rank's y is a partial sum over its F block."""
    comm.check_ranks(w_out_FD_ranks=w_out_FD_ranks)
    h_BF = einsum("bd,df->bf", x_BD, w_in_DF)
    a_BF_ranks = shard(relu(h_BF), comm.size, axis=1)  # each rank keeps the block its w_out needs
    y_part_BD_ranks = [
        einsum("bf,fd->bd", a_BF, w_out_FD)
        for a_BF, w_out_FD in zip(a_BF_ranks, w_out_FD_ranks, strict=True)
    ]
    y_BD = comm.all_reduce(y_part_BD_ranks, tag="y_BD")[0]
    return y_BD, (x_BD, w_in_DF, w_out_FD_ranks, h_BF)


def row_parallel_backward(comm: Comm, d_y_BD, saved):
    x_BD, w_in_DF, w_out_FD_ranks, h_BF = saved
    comm.check_ranks(w_out_FD_ranks=w_out_FD_ranks)
    a_BF_ranks = shard(relu(h_BF), comm.size, axis=1)
    d_w_out_FD_ranks = [einsum("bf,bd->fd", a_BF, d_y_BD) for a_BF in a_BF_ranks]
    d_a_BF_ranks = [einsum("bd,fd->bf", d_y_BD, w_out_FD) for w_out_FD in w_out_FD_ranks]
    # The replicated first layer needs d_a for every F, but each rank made only its block.
    d_a_BF = comm.all_gather(d_a_BF_ranks, axis=1, tag="d_a_BF")[0]
    d_h_BF = d_a_BF * (h_BF > 0)
    d_w_in_DF = einsum("bd,bf->df", x_BD, d_h_BF)
    d_x_BD = einsum("bf,df->bd", d_h_BF, w_in_DF)
    return d_x_BD, d_w_in_DF, d_w_out_FD_ranks


# ---------------------------------------------------------- column-parallel (w_in split along F)


def column_parallel_forward(comm: Comm, x_BD, w_in_DF_ranks, w_out_FD):
    """w_in split along F, w_out replicated: each rank makes an F block of a, gathered whole."""
    comm.check_ranks(w_in_DF_ranks=w_in_DF_ranks)
    h_BF_ranks = [einsum("bd,df->bf", x_BD, w_in_DF) for w_in_DF in w_in_DF_ranks]
    a_BF = comm.all_gather([relu(h_BF) for h_BF in h_BF_ranks], axis=1, tag="a_BF")[0]
    y_BD = einsum("bf,fd->bd", a_BF, w_out_FD)
    return y_BD, (x_BD, w_in_DF_ranks, w_out_FD, h_BF_ranks, a_BF)


def column_parallel_backward(comm: Comm, d_y_BD, saved):
    x_BD, w_in_DF_ranks, w_out_FD, h_BF_ranks, a_BF = saved
    comm.check_ranks(w_in_DF_ranks=w_in_DF_ranks, h_BF_ranks=h_BF_ranks)
    d_w_out_FD = einsum("bf,bd->fd", a_BF, d_y_BD)
    d_a_BF = einsum("bd,fd->bf", d_y_BD, w_out_FD)
    d_a_BF_ranks = shard(d_a_BF, comm.size, axis=1)  # a rank only needs its own block: no comm
    d_h_BF_ranks = [
        d_a_BF * (h_BF > 0) for d_a_BF, h_BF in zip(d_a_BF_ranks, h_BF_ranks, strict=True)
    ]
    d_w_in_DF_ranks = [einsum("bd,bf->df", x_BD, d_h_BF) for d_h_BF in d_h_BF_ranks]
    # x fed every F block, so its gradient is the sum of every rank's partial.
    d_x_part_BD_ranks = [
        einsum("bf,df->bd", d_h_BF, w_in_DF)
        for d_h_BF, w_in_DF in zip(d_h_BF_ranks, w_in_DF_ranks, strict=True)
    ]
    d_x_BD = comm.all_reduce(d_x_part_BD_ranks, tag="d_x_BD")[0]
    return d_x_BD, d_w_in_DF_ranks, d_w_out_FD


# ---------------------------------------------------------------- Megatron: column then row


def megatron_forward(comm: Comm, x_BD, w_in_DF_ranks, w_out_FD_ranks):
    """Both matmuls split along F: each rank runs a narrower MLP on its F block; the relu is
    per F so it needs no communication, and one all-reduce sums the partial y's."""
    comm.check_ranks(w_in_DF_ranks=w_in_DF_ranks, w_out_FD_ranks=w_out_FD_ranks)
    outs = [
        mlp_forward(x_BD, w_in_DF, w_out_FD)
        for w_in_DF, w_out_FD in zip(w_in_DF_ranks, w_out_FD_ranks, strict=True)
    ]
    y_BD = comm.all_reduce([y_part_BD for y_part_BD, _ in outs], tag="y_BD")[0]
    return y_BD, [saved for _, saved in outs]


def megatron_backward(comm: Comm, d_y_BD, saved_ranks):
    """Mirror image of the forward: local backward on each F block, one all-reduce of d_x."""
    comm.check_ranks(saved_ranks=saved_ranks)
    grads = [mlp_backward(d_y_BD, saved) for saved in saved_ranks]
    d_x_BD = comm.all_reduce([d_x_part_BD for d_x_part_BD, _, _ in grads], tag="d_x_BD")[0]
    d_w_in_DF_ranks = [d_w_in_DF for _, d_w_in_DF, _ in grads]
    d_w_out_FD_ranks = [d_w_out_FD for _, _, d_w_out_FD in grads]
    return d_x_BD, d_w_in_DF_ranks, d_w_out_FD_ranks


# ------------------------------------------------------------ data-parallel (batch split along B)


def data_parallel_forward(x_BD_ranks, w_in_DF, w_out_FD, comm: Comm | None = None):
    """Every rank runs the whole MLP on its block of the batch: no communication forward.

    Nothing is communicated, so comm is optional; given, it checks one block per rank.
    """
    if comm is not None:
        comm.check_ranks(x_BD_ranks=x_BD_ranks)
    outs = [mlp_forward(x_BD, w_in_DF, w_out_FD) for x_BD in x_BD_ranks]
    return [y_BD for y_BD, _ in outs], [saved for _, saved in outs]


def data_parallel_backward(comm: Comm, d_y_BD_ranks, saved_ranks):
    """Local backward, then one all-reduce per weight gradient so every replica steps alike."""
    comm.check_ranks(d_y_BD_ranks=d_y_BD_ranks, saved_ranks=saved_ranks)
    grads = [
        mlp_backward(d_y_BD, saved)
        for d_y_BD, saved in zip(d_y_BD_ranks, saved_ranks, strict=True)
    ]
    d_x_BD_ranks = [d_x_BD for d_x_BD, _, _ in grads]
    d_w_in_DF_ranks = [d_w_in_DF for _, d_w_in_DF, _ in grads]
    d_w_out_FD_ranks = [d_w_out_FD for _, _, d_w_out_FD in grads]
    d_w_in_DF = comm.all_reduce(d_w_in_DF_ranks, tag="d_w_in_DF")[0]
    d_w_out_FD = comm.all_reduce(d_w_out_FD_ranks, tag="d_w_out_FD")[0]
    return d_x_BD_ranks, d_w_in_DF, d_w_out_FD


# ---------------------------------------------------------------- gated: SwiGLU (Shazeer 2020)


def silu(z: np.ndarray) -> np.ndarray:
    return z / (1 + np.exp(-z))


def swiglu_forward(x_BLD, w_gate_DF, w_up_DF, w_down_FD):
    """y = (silu(x·w_gate) ⊙ x·w_up)·w_down: three matrices, so 6·D·F FLOPs a token, not 4."""
    gate_BLF = einsum("bld,df->blf", x_BLD, w_gate_DF)
    up_BLF = einsum("bld,df->blf", x_BLD, w_up_DF)
    a_BLF = silu(gate_BLF) * up_BLF
    y_BLD = einsum("blf,fd->bld", a_BLF, w_down_FD)
    return y_BLD, (x_BLD, w_gate_DF, w_up_DF, w_down_FD, gate_BLF, up_BLF, a_BLF)


def swiglu_backward(d_y_BLD, saved):
    x_BLD, w_gate_DF, w_up_DF, w_down_FD, gate_BLF, up_BLF, a_BLF = saved
    d_a_BLF = einsum("bld,fd->blf", d_y_BLD, w_down_FD)
    d_w_down_FD = einsum("blf,bld->fd", a_BLF, d_y_BLD)
    s_BLF = 1 / (1 + np.exp(-gate_BLF))
    d_up_BLF = d_a_BLF * gate_BLF * s_BLF
    d_gate_BLF = d_a_BLF * up_BLF * s_BLF * (1 + gate_BLF * (1 - s_BLF))  # silu' = s·(1 + z·(1 − s))
    d_w_gate_DF = einsum("bld,blf->df", x_BLD, d_gate_BLF)
    d_w_up_DF = einsum("bld,blf->df", x_BLD, d_up_BLF)
    # x feeds both the gate and the up projection: its gradient sums the two paths.
    d_x_BLD = (einsum("blf,df->bld", d_gate_BLF, w_gate_DF)
               + einsum("blf,df->bld", d_up_BLF, w_up_DF))
    return d_x_BLD, d_w_gate_DF, d_w_up_DF, d_w_down_FD
