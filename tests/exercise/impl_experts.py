"""Learner files for moe_ep and ring_attention: the reference dropped in, solutions written
independently of mlgrind.ref (other data layouts, other but equally cheap collectives), and
the slips learners make, each with the checks it must fail and the words that name it.

REFERENCE has the shape of tests/exercise/implementations.py's; WRONG, MOE_BUGS and RING_BUGS
hold (source, {failing check: words its message says}) pairs, which implementations.py wraps
in its Wrong when it merges them (no import back from it, so either module loads first).
"""

from __future__ import annotations

REFERENCE = {
    "moe_ep": "from mlgrind.ref.mlp import mlp_forward, mlp_backward\n"
    "from mlgrind.ref.moe import route, expert_parallel_forward, expert_parallel_backward",
    "ring_attention": "from mlgrind.ref.context_parallel import block_attention, merge, "
    "ring_attention",
}

# Independent of mlgrind.ref: pairs kept in token order (not grouped by expert), the expert
# id of every row sent as integers (not per-expert counts), one output buffer per expert rank.
MOE_SOLUTION = """
import numpy as np


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    h_BF = np.einsum("bd,df->bf", x_BD, w_in_DF)
    a_BF = np.maximum(h_BF, 0)
    return np.einsum("bf,fd->bd", a_BF, w_out_FD), (x_BD, w_in_DF, w_out_FD, h_BF, a_BF)


def mlp_backward(d_y_BD, saved):
    x_BD, w_in_DF, w_out_FD, h_BF, a_BF = saved
    d_h_BF = np.einsum("bd,fd->bf", d_y_BD, w_out_FD) * (h_BF > 0)
    return (
        np.einsum("bf,df->bd", d_h_BF, w_in_DF),
        np.einsum("bd,bf->df", x_BD, d_h_BF),
        np.einsum("bf,bd->fd", a_BF, d_y_BD),
    )


def route(x_BD, w_router_DE, k):
    logits_BE = np.einsum("bd,de->be", x_BD, w_router_DE)
    top_BE = logits_BE >= np.sort(logits_BE, axis=1)[:, -k, None]
    z_BE = np.exp(logits_BE - logits_BE.max(axis=1, keepdims=True))
    z_BE = np.where(top_BE, z_BE, 0.0)
    return z_BE / z_BE.sum(axis=1, keepdims=True)


def expert_parallel_forward(comm, x_BD_ranks, w_router_DE, w_in_EDF_ranks, w_out_EFD_ranks, k):
    S = comm.size
    owner_E = np.repeat(np.arange(S), [len(w) for w in w_in_EDF_ranks])
    first_S = np.concatenate([[0], np.cumsum([len(w) for w in w_in_EDF_ranks])[:-1]])
    gates, pairs = [], []
    for x_BD in x_BD_ranks:
        g_BE = route(x_BD, w_router_DE, k)
        b_P, e_P = np.nonzero(g_BE)
        gates.append(g_BE)
        pairs.append([(b_P[owner_E[e_P] == d], e_P[owner_E[e_P] == d]) for d in range(S)])
    rows = comm.all_to_all([[x[b] for b, _ in p] for x, p in zip(x_BD_ranks, pairs)])
    ids = comm.all_to_all([[e for _, e in p] for p in pairs])
    experts, back = [], []
    for d in range(S):
        x_PD, e_P = np.concatenate(rows[d]), np.concatenate(ids[d]) - first_S[d]
        out_PD, kept = np.zeros_like(x_PD), []
        for j in range(len(w_in_EDF_ranks[d])):
            sel = np.flatnonzero(e_P == j)
            out_PD[sel], saved = mlp_forward(x_PD[sel], w_in_EDF_ranks[d][j], w_out_EFD_ranks[d][j])
            kept.append((sel, saved))
        cuts = np.cumsum([len(r) for r in rows[d]])[:-1]
        back.append(np.split(out_PD, cuts))
        experts.append((cuts, kept))
    returned = comm.all_to_all(back)
    y_BD_ranks = []
    for s, x_BD in enumerate(x_BD_ranks):
        y_BD = np.zeros_like(x_BD)
        for d, (b, e) in enumerate(pairs[s]):
            np.add.at(y_BD, b, gates[s][b, e, None] * returned[s][d])
        y_BD_ranks.append(y_BD)
    return y_BD_ranks, (x_BD_ranks, w_router_DE, gates, pairs, returned, experts)


def expert_parallel_backward(comm, d_y_BD_ranks, saved):
    x_BD_ranks, w_router_DE, gates, pairs, returned, experts = saved
    S = comm.size
    d_gates, d_out = [], []
    for s, d_y_BD in enumerate(d_y_BD_ranks):
        d_g_BE = np.zeros_like(gates[s])
        for d, (b, e) in enumerate(pairs[s]):
            d_g_BE[b, e] = np.einsum("pd,pd->p", d_y_BD[b], returned[s][d])
        d_gates.append(d_g_BE)
        d_out.append([gates[s][b, e, None] * d_y_BD[b] for b, e in pairs[s]])
    received = comm.all_to_all(d_out)
    d_w_in_EDF_ranks, d_w_out_EFD_ranks, d_rows = [], [], []
    for d in range(S):
        cuts, kept = experts[d]
        d_out_PD = np.concatenate(received[d])
        d_x_PD, d_w_in, d_w_out = np.zeros_like(d_out_PD), [], []
        for sel, expert_saved in kept:
            d_x_PD[sel], d_w_in_DF, d_w_out_FD = mlp_backward(d_out_PD[sel], expert_saved)
            d_w_in.append(d_w_in_DF)
            d_w_out.append(d_w_out_FD)
        d_w_in_EDF_ranks.append(np.stack(d_w_in))
        d_w_out_EFD_ranks.append(np.stack(d_w_out))
        d_rows.append(np.split(d_x_PD, cuts))
    d_x_back = comm.all_to_all(d_rows)
    d_x_BD_ranks, router_parts = [], []
    for s, x_BD in enumerate(x_BD_ranks):
        g_BE = gates[s]
        d_logits_BE = g_BE * (d_gates[s] - np.sum(g_BE * d_gates[s], axis=1, keepdims=True))
        d_x_BD = np.einsum("be,de->bd", d_logits_BE, w_router_DE)  # the router's part
        for d, (b, _) in enumerate(pairs[s]):
            np.add.at(d_x_BD, b, d_x_back[s][d])
        d_x_BD_ranks.append(d_x_BD)
        router_parts.append(np.einsum("bd,be->de", x_BD, d_logits_BE))
    d_w_router_DE = comm.all_reduce(router_parts)[0]
    return d_x_BD_ranks, d_w_router_DE, d_w_in_EDF_ranks, d_w_out_EFD_ranks
"""

# Independent of mlgrind.ref: k and v travel stacked, one send_recv per step (the same bytes in
# half the calls), masks built inline, no running state before a rank's first block.
RING_SOLUTION = """
import numpy as np


def block_attention(q_BLHK, k_BMHK, v_BMHK, mask_LM):
    scores_BHLM = np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(q_BLHK.shape[-1])
    scores_BHLM = np.where(mask_LM, scores_BHLM, -np.inf)
    top_BHL = scores_BHLM.max(axis=-1)
    e_BHLM = np.exp(scores_BHLM - top_BHL[..., None])
    total_BHL = e_BHLM.sum(axis=-1)
    out_BLHK = np.einsum("bhlm,bmhk->blhk", e_BHLM / total_BHL[..., None], v_BMHK)
    return out_BLHK, top_BHL + np.log(total_BHL)


def merge(out_a_BLHK, lse_a_BHL, out_b_BLHK, lse_b_BHL):
    top_BHL = np.maximum(lse_a_BHL, lse_b_BHL)
    w_a_BHL, w_b_BHL = np.exp(lse_a_BHL - top_BHL), np.exp(lse_b_BHL - top_BHL)
    total_BHL = w_a_BHL + w_b_BHL
    out_BLHK = (
        np.einsum("bhl,blhk->blhk", w_a_BHL / total_BHL, out_a_BLHK)
        + np.einsum("bhl,blhk->blhk", w_b_BHL / total_BHL, out_b_BLHK)
    )
    return out_BLHK, top_BHL + np.log(total_BHL)


def ring_attention(q_shards_BLHK, k_shards_BMHK, v_shards_BMHK, comm):
    S = comm.size
    lengths = [q.shape[1] for q in q_shards_BLHK]
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    kv_held = [np.stack([k, v]) for k, v in zip(k_shards_BMHK, v_shards_BMHK)]
    out, lse = [None] * S, [None] * S
    for step in range(S):
        for s, q_BLHK in enumerate(q_shards_BLHK):
            src = (s - step) % S
            if src > s:
                continue  # wholly in the future of every query of rank s
            mask_LM = (start[src] + np.arange(lengths[src]))[None, :] <= (
                start[s] + np.arange(lengths[s])
            )[:, None]
            block = block_attention(q_BLHK, kv_held[s][0], kv_held[s][1], mask_LM)
            out[s], lse[s] = block if out[s] is None else merge(out[s], lse[s], *block)
        if step < S - 1:
            kv_held = comm.send_recv(kv_held)
    return out
"""


def _slip(source: str, old: str, new: str) -> str:
    """The solution with one edit; the edit must apply, or the bug would not be there."""
    assert source.count(old) == 1, old
    return source.replace(old, new)


MOE_BUGS = {
    "softmax over all E, then top k": (
        _slip(
            MOE_SOLUTION,
            "    z_BE = np.where(top_BE, z_BE, 0.0)\n",
            "    z_BE = np.where(top_BE, z_BE / z_BE.sum(axis=1, keepdims=True), 0.0)\n"
            "    return z_BE\n",
        ),
        {
            "route: gates_BE": ("softmax over all E experts with the top k kept",),
            "forward: y_BD_ranks equals the unsharded MoE": ("cut to the top k",),
            **{
                f"backward: {g}": ("entries differ",)
                for g in (
                    "d_x_BD_ranks",
                    "d_w_router_DE",
                    "d_w_in_EDF_ranks",
                    "d_w_out_EFD_ranks",
                )
            },
        },
    ),
    "tokens sorted by expert, never unsorted": (
        _slip(
            MOE_SOLUTION,
            "        y_BD_ranks.append(y_BD)",
            "        y_BD_ranks.append(y_BD[np.argsort(gates[s].argmax(axis=1), kind='stable')])",
        ),
        {
            "forward: y_BD_ranks equals the unsharded MoE": (
                "right rows in another order",
                "the row of the token it came from",
            ),
        },
    ),
    "d_x without the router's part": (
        _slip(
            MOE_SOLUTION,
            'np.einsum("be,de->bd", d_logits_BE, w_router_DE)  # the router\'s part',
            "np.zeros_like(x_BD)",
        ),
        {"backward: d_x_BD_ranks": ("lacks the router's part",)},
    ),
    "experts sent d_y, not gate · d_y": (
        _slip(
            MOE_SOLUTION,
            "d_out.append([gates[s][b, e, None] * d_y_BD[b] for b, e in pairs[s]])",
            "d_out.append([d_y_BD[b] for b, _ in pairs[s]])",
        ),
        {
            f"backward: {g}": ("the gradient of expert e's output is gate · d_y",)
            for g in ("d_x_BD_ranks", "d_w_in_EDF_ranks", "d_w_out_EFD_ranks")
        },
    ),
    "router gradient not summed over ranks": (
        _slip(
            MOE_SOLUTION,
            "comm.all_reduce(router_parts)[0]",
            "router_parts[0]",
        ),
        {
            "backward: d_w_router_DE": ("rank 0's part alone",),
            "backward: collectives": ("all_reduce (d_w_router_DE)", "one all_reduce"),
        },
    ),
}

RING_BUGS = {
    "merge by averaging": (
        _slip(
            RING_SOLUTION,
            "    top_BHL = np.maximum(lse_a_BHL, lse_b_BHL)\n",
            "    top_BHL = np.maximum(lse_a_BHL, lse_b_BHL)\n"
            "    return (out_a_BLHK + out_b_BLHK) / 2, np.logaddexp(lse_a_BHL, lse_b_BHL)\n",
        ),
        {
            "merge: out_BLHK and lse_BHL": (
                "average of the two parts",
                "exp(lse_part − lse)",
            ),
            "ring_attention: out_shards_BLHK equals full causal attention": (
                "out_shards_BLHK[1] (S=2 ranks",
                "the blocks' results are averaged",
            ),
            "ring_attention: large scores, no overflow": ("the blocks' results are averaged",),
        },
    ),
    "S hops instead of S − 1": (
        _slip(RING_SOLUTION, "        if step < S - 1:\n    ", "        if True:\n    "),
        {
            "ring_attention: collectives": (
                "that is S = 2 passes, one too many",
                "the last hop only brings each rank its own block back",
            )
        },
    ),
    "scores scaled by 1/K": (
        _slip(RING_SOLUTION, "/ np.sqrt(q_BLHK.shape[-1])", "/ q_BLHK.shape[-1]"),
        {
            "block_attention: out_BLHK": ("divided by K, not √K",),
            "block_attention: lse_BHL": ("divided by K, not √K",),
            "ring_attention: out_shards_BLHK equals full causal attention": ("entries differ",),
            "ring_attention: large scores, no overflow": ("entries differ",),
        },
    ),
    "a softmax and merge without the max": (
        _slip(
            _slip(
                RING_SOLUTION,
                "    top_BHL = scores_BHLM.max(axis=-1)\n",
                "    top_BHL = np.zeros(scores_BHLM.shape[:-1])\n",
            ),
            "    top_BHL = np.maximum(lse_a_BHL, lse_b_BHL)\n",
            "    top_BHL = np.zeros_like(lse_a_BHL)\n",
        ),
        {
            "ring_attention: large scores, no overflow": (
                "queries × 500",
                "exp(score) overflows",
                "np.logaddexp",
            )
        },
    ),
    "a mask that hides the diagonal": (
        _slip(RING_SOLUTION, "[None, :] <= (", "[None, :] < ("),
        {
            "ring_attention: out_shards_BLHK equals full causal attention": (
                "the mask leaves out the diagonal",
            ),
            "ring_attention: large scores, no overflow": ("the mask leaves out the diagonal",),
        },
    ),
    "k and v gathered whole": (
        _slip(
            RING_SOLUTION,
            "        if step < S - 1:\n            kv_held = comm.send_recv(kv_held)\n",
            "        if step == 0:\n"
            "            everything = comm.all_gather(kv_held, axis=2)\n"
            "        kv_held = [np.array_split(a, S, axis=2)[(r - step - 1) % S] "
            "for r, a in enumerate(everything)]\n",
        ),
        {"ring_attention: collectives": ("you called all_gather", "whole of K and V")},
    ),
}

WRONG = {
    # One all-to-all only: the outputs are read off the experts' ranks instead of combined.
    "moe_ep": (
        _slip(
            MOE_SOLUTION,
            "returned = comm.all_to_all(back)",
            "returned = [[back[d][s] for d in range(S)] for s in range(S)]",
        ),
        {
            "forward: collectives": (
                "all_to_all (combine)",
                "you made 1:",
                "an all-to-all is missing",
            )
        },
    ),
    # The causal mask from positions counted within each block.
    "ring_attention": (
        _slip(
            RING_SOLUTION,
            "            mask_LM = (start[src] + np.arange(lengths[src]))[None, :] <= (\n"
            "                start[s] + np.arange(lengths[s])\n"
            "            )[:, None]",
            "            position = np.arange(max(lengths))  # counted within each block\n"
            "            mask_LM = position[None, : lengths[src]] <= position[: lengths[s], None]",
        ),
        {
            "ring_attention: out_shards_BLHK equals full causal attention": (
                "out_shards_BLHK[1] (S=2 ranks",
                "compares LOCAL positions",
            ),
            # a ring wrong at ordinary scores fails the large ones the same way
            "ring_attention: large scores, no overflow": ("compares LOCAL positions",),
        },
    ),
}
