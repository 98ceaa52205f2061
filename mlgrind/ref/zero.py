"""Seed "how would you shard the model?": FSDP / ZeRO stages 1, 2, 3 on top of data parallel.

The MLP of `mlp.py` trains with Adam on S data-parallel ranks. Stage 0 is plain DP. What each rank
holds between steps (Rajbhandari et al. 2020, arXiv 1910.02054):

    stage      params  grads  optimizer (Adam m and v)
    0  DP      full    full   full
    1  P_os    full    full   1/S
    2  P_os+g  full    1/S    1/S
    3  P_os+g+p 1/S    1/S    1/S   (= FSDP's full sharding)

In mixed precision the fp32 master weights are optimizer state too (the paper's K = 12 bytes per
parameter: master, m, v); here everything is float64 and the optimizer state is m and v.

Collectives per step, on each parameter flattened and cut into S blocks:
    0     all-reduce grads                                        2(S-1)/S · Ψ bytes per rank
    1, 2  reduce-scatter grads, all-gather updated params        2(S-1)/S · Ψ  (same as DP)
    3     all-gather params for forward, again for backward
          (they were freed in between), reduce-scatter grads     3(S-1)/S · Ψ  (1.5 × DP)
with Ψ the bytes of all parameters. Stage 3's extra all-gather on every step, on the critical path
of every layer, is why it is used only when the model does not fit otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlgrind.ref import mlp
from mlgrind.ref.collectives import Comm, shard

NAMES = ("w_in_DF", "w_out_FD")


@dataclass(frozen=True)
class Adam:
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def update(self, w, d_w, m, v, t: int):
        """One Adam step; elementwise, so it runs the same on a whole tensor or on any block."""
        m = self.beta1 * m + (1 - self.beta1) * d_w
        v = self.beta2 * v + (1 - self.beta2) * d_w * d_w
        m_hat, v_hat = m / (1 - self.beta1**t), v / (1 - self.beta2**t)
        return w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), m, v


@dataclass
class Rank:
    """What one rank keeps between steps; each dict maps a parameter name to a full tensor or
    to this rank's flat block of it, depending on the stage."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    m: dict[str, np.ndarray] = field(default_factory=dict)
    v: dict[str, np.ndarray] = field(default_factory=dict)

    def nbytes(self) -> dict[str, int]:
        def total(d):
            return sum(a.nbytes for a in d.values())

        return {
            "params": total(self.params),
            "grads": total(self.grads),
            "optimizer": total(self.m) + total(self.v),
        }


def block(w: np.ndarray, S: int, r: int) -> np.ndarray:
    """Rank r's block of w: the cut ZeRO makes, and the one reduce_scatter hands back."""
    return shard(w.reshape(-1), S)[r]


def init_ranks(stage: int, S: int, params: dict[str, np.ndarray]) -> list[Rank]:
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0 (plain DP), 1, 2 or 3, not {stage}")
    ranks = []
    for r in range(S):
        held = {n: block(w, S, r) if stage == 3 else w.copy() for n, w in params.items()}
        opt = {n: block(w, S, r) if stage >= 1 else w for n, w in params.items()}
        ranks.append(
            Rank(
                held,
                m={n: np.zeros_like(o) for n, o in opt.items()},
                v={n: np.zeros_like(o) for n, o in opt.items()},
            )
        )
    return ranks


def gather_params(
    comm: Comm, ranks: list[Rank], shapes: dict[str, tuple[int, ...]], tag: str
) -> list[dict[str, np.ndarray]]:
    """ZeRO-3: every rank all-gathers each parameter's blocks into the whole tensor."""
    comm.check_ranks(ranks=ranks)
    full = [{} for _ in ranks]
    for n, shape in shapes.items():
        for r, w in enumerate(
            comm.all_gather([rank.params[n] for rank in ranks], tag=f"{n} {tag}")
        ):
            full[r][n] = w.reshape(shape)
    return full


def step(
    stage: int, comm: Comm, ranks: list[Rank], shapes, x_BD, target_BD, adam: Adam, t: int
) -> None:
    """One training step on the global batch (x_BD, target_BD), sharded along B over the ranks."""
    comm.check_ranks(ranks=ranks)
    S = comm.size
    x_BD_ranks, target_BD_ranks = shard(x_BD, S), shard(target_BD, S)

    weights = (
        gather_params(comm, ranks, shapes, "forward") if stage == 3 else [r.params for r in ranks]
    )
    outs = [
        mlp.mlp_forward(x_local_BD, w["w_in_DF"], w["w_out_FD"])
        for x_local_BD, w in zip(x_BD_ranks, weights, strict=True)
    ]
    d_y_BD_ranks = [
        mlp.l2_loss(y_local_BD, target_local_BD)[1]
        for (y_local_BD, _), target_local_BD in zip(outs, target_BD_ranks, strict=True)
    ]

    if stage == 3:  # the gathered weights were dropped after forward; gather them again
        weights = gather_params(comm, ranks, shapes, "backward")
    grads = []
    for (_, (x_local_BD, _, _, h_BF)), d_y_BD, w in zip(
        outs, d_y_BD_ranks, weights, strict=True
    ):
        saved = (x_local_BD, w["w_in_DF"], w["w_out_FD"], h_BF)
        _, d_w_in_DF, d_w_out_FD = mlp.mlp_backward(d_y_BD, saved)
        grads.append({"w_in_DF": d_w_in_DF, "w_out_FD": d_w_out_FD})

    for n in NAMES:
        local = [g[n] for g in grads]
        if stage == 0:
            for rank, d_w in zip(ranks, comm.all_reduce(local, tag=f"d_{n}"), strict=True):
                rank.grads[n] = d_w
                rank.params[n], rank.m[n], rank.v[n] = adam.update(
                    rank.params[n], d_w, rank.m[n], rank.v[n], t
                )
            continue
        # Each rank receives only the summed block of the gradient whose optimizer state it owns.
        d_w_blocks = comm.reduce_scatter([d_w.reshape(-1) for d_w in local], tag=f"d_{n}")
        new_blocks = []
        for r, (rank, d_w_block) in enumerate(zip(ranks, d_w_blocks, strict=True)):
            rank.grads[n] = local[r] if stage == 1 else d_w_block  # stage 1 keeps its full buffer
            w_block = rank.params[n] if stage == 3 else block(rank.params[n], S, r)
            w_block, rank.m[n], rank.v[n] = adam.update(w_block, d_w_block, rank.m[n], rank.v[n], t)
            new_blocks.append(w_block)
        if stage == 3:
            for rank, w_block in zip(ranks, new_blocks, strict=True):
                rank.params[n] = w_block
        else:
            for rank, w in zip(ranks, comm.all_gather(new_blocks, tag=n), strict=True):
                rank.params[n] = w.reshape(shapes[n])


def train(stage: int, S: int, params: dict[str, np.ndarray], batches, adam: Adam = Adam()):
    """Run the steps; return the final full parameters, the ledger and the ranks' held state."""
    shapes = {n: w.shape for n, w in params.items()}
    comm, ranks = Comm(S), init_ranks(stage, S, params)
    for t, (x_BD, target_BD) in enumerate(batches, start=1):
        step(stage, comm, ranks, shapes, x_BD, target_BD, adam, t)
    if stage == 3:  # read the blocks off the ranks for inspection (not a collective in training)
        final = {n: np.concatenate([r.params[n] for r in ranks]).reshape(shapes[n]) for n in shapes}
    else:
        final = dict(ranks[0].params)
    return final, comm, ranks


def zero_bytes_per_rank(stage: int, n_param_bytes: int, S: int) -> float:
    """Bytes each rank sends (= receives) per step: multiples of a ring reduce-scatter's share."""
    passes = 3 if stage == 3 else 2
    return passes * (S - 1) * n_param_bytes / S


def zero_state_bytes(stage: int, n_param_bytes: int, S: int) -> dict[str, float]:
    """Bytes one rank holds between steps: params, grads and Adam's m + v (2 × params)."""
    return {
        "params": n_param_bytes / S if stage == 3 else n_param_bytes,
        "grads": n_param_bytes / S if stage >= 2 else n_param_bytes,
        "optimizer": 2 * n_param_bytes / S if stage >= 1 else 2 * n_param_bytes,
    }
