"""Seed "how would you shard the model? Expert Parallel": a top-k mixture-of-experts MLP layer.

A router scores each token against E experts; the token goes to its k best, and its output is
their MLP outputs weighted by the softmax of the k chosen scores (Mixtral's renormalised top-k).
Only the chosen experts run, so FLOPs grow with k while parameters grow with E.

Expert parallel puts each rank in charge of a block of experts and of a block of the tokens. A
rank routes its own tokens, sends each (token, expert) pair to the rank owning that expert with
an all-to-all (dispatch), the experts run, and a second all-to-all brings the outputs back
(combine), where the owner of the token applies the gates. Gates never travel. Backward runs the
two all-to-alls in reverse and all-reduces the gradient of the replicated router.

Gates are kept dense as gates_BE, zero outside each token's top k, so no new letter is needed.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref import mlp
from mlgrind.ref.collectives import Comm
from mlgrind.ref.einsum import einsum


def route(x_BD, w_router_DE, k: int):
    """gates_BE: softmax over each token's k highest router logits, zero for the other experts."""
    E = w_router_DE.shape[1]
    if not 1 <= k <= E:
        raise ValueError(f"top-k needs 1 <= k <= E = {E}, not k = {k}")
    logits_BE = einsum("bd,de->be", x_BD, w_router_DE)
    top = np.argsort(-logits_BE, axis=1)[:, :k]  # each token's k best experts, B × k
    chosen_BE = np.zeros(logits_BE.shape, dtype=bool)
    np.put_along_axis(chosen_BE, top, True, axis=1)
    # Subtracting the row max keeps exp finite; unchosen experts get exactly zero weight.
    e_BE = np.where(chosen_BE, np.exp(logits_BE - logits_BE.max(axis=1, keepdims=True)), 0.0)
    return e_BE / e_BE.sum(axis=1, keepdims=True)


def route_backward(d_gates_BE, gates_BE, x_BD, w_router_DE):
    """Softmax over the chosen logits: d_logit = g (d_g - sum g d_g); unchosen have g = 0."""
    dot_B = einsum("be,be->b", gates_BE, d_gates_BE)
    d_logits_BE = gates_BE * (d_gates_BE - dot_B[:, None])
    d_x_BD = einsum("be,de->bd", d_logits_BE, w_router_DE)
    d_w_router_DE = einsum("bd,be->de", x_BD, d_logits_BE)
    return d_x_BD, d_w_router_DE


def moe_forward(x_BD, w_router_DE, w_in_EDF, w_out_EFD, k: int):
    gates_BE = route(x_BD, w_router_DE, k)
    y_BD = np.zeros_like(x_BD)
    experts = []
    for e in range(w_in_EDF.shape[0]):
        tokens = np.flatnonzero(gates_BE[:, e])  # the batch of tokens that chose expert e
        out_BD, saved = mlp.mlp_forward(x_BD[tokens], w_in_EDF[e], w_out_EFD[e])
        y_BD[tokens] += gates_BE[tokens, e, None] * out_BD
        experts.append((tokens, out_BD, saved))
    return y_BD, (x_BD, w_router_DE, gates_BE, experts)


def moe_backward(d_y_BD, saved):
    x_BD, w_router_DE, gates_BE, experts = saved
    d_x_BD = np.zeros_like(x_BD)
    d_gates_BE = np.zeros_like(gates_BE)
    d_w_in, d_w_out = [], []
    for e, (tokens, out_BD, expert_saved) in enumerate(experts):
        d_gates_BE[tokens, e] = einsum("bd,bd->b", d_y_BD[tokens], out_BD)
        d_out_BD = gates_BE[tokens, e, None] * d_y_BD[tokens]
        d_x_part_BD, d_w_in_DF, d_w_out_FD = mlp.mlp_backward(d_out_BD, expert_saved)
        d_x_BD[tokens] += d_x_part_BD  # a token visits each expert at most once
        d_w_in.append(d_w_in_DF)
        d_w_out.append(d_w_out_FD)
    d_x_router_BD, d_w_router_DE = route_backward(d_gates_BE, gates_BE, x_BD, w_router_DE)
    return d_x_BD + d_x_router_BD, d_w_router_DE, np.stack(d_w_in), np.stack(d_w_out)


def moe_flops(B: int, D: int, F: int, E: int, k: int) -> int:
    """Router 2·B·D·E, then each token through k expert MLPs of 4·D·F each."""
    return 2 * B * D * E + k * mlp.mlp_flops(B, D, F)


def per_expert(blocks, counts, fn):
    """On an expert rank: blocks[src] holds the rows src sent, grouped by local expert, counts[src]
    rows per expert. Applies fn(j, rows_BD) once per local expert j to the rows every source sent
    it (one matmul per expert, not per source) and lays the results out like blocks."""
    pieces = [np.split(x, np.cumsum(c)[:-1]) for x, c in zip(blocks, counts, strict=True)]
    outs = [[] for _ in blocks]
    for j in range(len(counts[0])):
        rows = [p[j] for p in pieces]
        out = fn(j, np.concatenate(rows))
        for src, o in enumerate(np.split(out, np.cumsum([len(r) for r in rows])[:-1])):
            outs[src].append(o)
    return [np.concatenate(o) for o in outs]


def expert_parallel_forward(
    comm: Comm, x_BD_ranks, w_router_DE, w_in_EDF_ranks, w_out_EFD_ranks, k
):
    """Rank s holds tokens x_BD_ranks[s], the router (replicated) and a block of the experts,
    w_in_EDF_ranks[s] and w_out_EFD_ranks[s]. Returns each rank's y_BD and what backward needs."""
    comm.check_ranks(
        x_BD_ranks=x_BD_ranks, w_in_EDF_ranks=w_in_EDF_ranks, w_out_EFD_ranks=w_out_EFD_ranks
    )
    S = comm.size
    n_local = [w.shape[0] for w in w_in_EDF_ranks]
    owner_E = np.repeat(np.arange(S), n_local)
    first = np.cumsum([0] + n_local[:-1])  # global index of each rank's first expert

    # Dispatch: to each rank, the tokens of the (token b, expert e) pairs whose expert it owns,
    # grouped by expert, and how many each of its experts gets.
    gates_BE_ranks, pairs, tokens, counts = [], [], [], []
    for x_BD in x_BD_ranks:
        gates_BE = route(x_BD, w_router_DE, k)
        e, b = np.nonzero(gates_BE.T)  # ordered by expert
        to = [owner_E[e] == d for d in range(S)]
        gates_BE_ranks.append(gates_BE)
        pairs.append([(b[t], e[t]) for t in to])
        tokens.append([x_BD[b[t]] for t in to])
        counts.append(
            [np.bincount(e[t] - first[d], minlength=n_local[d]) for d, t in enumerate(to)]
        )
    received = comm.all_to_all(tokens, tag="dispatch")  # received[d][src]
    received_counts = comm.all_to_all(counts, tag="counts")

    expert_saved = [[None] * n for n in n_local]
    outputs = []
    for d in range(S):

        def expert_forward(j, x_BD, d=d):
            out_BD, expert_saved[d][j] = mlp.mlp_forward(
                x_BD, w_in_EDF_ranks[d][j], w_out_EFD_ranks[d][j]
            )
            return out_BD

        outputs.append(per_expert(received[d], received_counts[d], expert_forward))

    # Combine: outputs go back to their tokens' ranks, which apply the gates.
    returned = comm.all_to_all(outputs, tag="combine")  # returned[s][d]
    y_BD_ranks = []
    for s, (x_BD, gates_BE) in enumerate(zip(x_BD_ranks, gates_BE_ranks, strict=True)):
        y_BD = np.zeros_like(x_BD)
        for d, (b, e) in enumerate(pairs[s]):
            np.add.at(y_BD, b, gates_BE[b, e, None] * returned[s][d])
        y_BD_ranks.append(y_BD)
    saved = (
        x_BD_ranks,
        w_router_DE,
        gates_BE_ranks,
        pairs,
        returned,
        received_counts,
        expert_saved,
    )
    return y_BD_ranks, saved


def expert_parallel_backward(comm: Comm, d_y_BD_ranks, saved):
    """The forward's all-to-alls in reverse (gradients of outputs to the experts, gradients of
    inputs back), plus one all-reduce of the replicated router's gradient."""
    x_BD_ranks, w_router_DE, gates_BE_ranks, pairs, returned, received_counts, expert_saved = saved
    comm.check_ranks(d_y_BD_ranks=d_y_BD_ranks, x_BD_ranks=x_BD_ranks)
    S = comm.size
    d_out_blocks, d_gates_BE_ranks = [], []
    for s, (d_y_BD, gates_BE) in enumerate(zip(d_y_BD_ranks, gates_BE_ranks, strict=True)):
        d_gates_BE = np.zeros_like(gates_BE)
        blocks = []
        for d, (b, e) in enumerate(pairs[s]):
            d_gates_BE[b, e] = einsum("bd,bd->b", d_y_BD[b], returned[s][d])
            blocks.append(gates_BE[b, e, None] * d_y_BD[b])
        d_out_blocks.append(blocks)
        d_gates_BE_ranks.append(d_gates_BE)
    d_out_received = comm.all_to_all(d_out_blocks, tag="combine backward")

    d_w_in = [[None] * len(e) for e in expert_saved]
    d_w_out = [[None] * len(e) for e in expert_saved]
    d_x_blocks = []
    for d in range(S):

        def expert_backward(j, d_out_BD, d=d):
            d_x_BD, d_w_in[d][j], d_w_out[d][j] = mlp.mlp_backward(d_out_BD, expert_saved[d][j])
            return d_x_BD

        d_x_blocks.append(per_expert(d_out_received[d], received_counts[d], expert_backward))
    d_x_returned = comm.all_to_all(d_x_blocks, tag="dispatch backward")

    d_x_BD_ranks, d_w_router_parts = [], []
    for s, x_BD in enumerate(x_BD_ranks):
        d_x_BD, d_w_router_DE = route_backward(
            d_gates_BE_ranks[s], gates_BE_ranks[s], x_BD, w_router_DE
        )
        for d, (b, _) in enumerate(pairs[s]):
            np.add.at(d_x_BD, b, d_x_returned[s][d])
        d_x_BD_ranks.append(d_x_BD)
        d_w_router_parts.append(d_w_router_DE)
    # The router is replicated and sees every rank's tokens: data parallel for its gradient.
    d_w_router_DE = comm.all_reduce(d_w_router_parts, tag="d_w_router_DE")[0]
    return (
        d_x_BD_ranks,
        d_w_router_DE,
        [np.stack(w) for w in d_w_in],
        [np.stack(w) for w in d_w_out],
    )
