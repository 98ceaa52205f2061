"""Seed "Context Parallel": ring attention over sequence shards.

Liu, Zaharia & Abbeel 2023, "Ring Attention with Blockwise Transformers" (arXiv 2310.01889);
the log-sum-exp merge is the online softmax of FlashAttention (Dao et al. 2022, arXiv
2205.14135). The sequence is cut into S contiguous shards, one per rank; each rank keeps its
queries and, for S − 1 steps, attends to the key/value block it holds, then passes that block
to its right neighbour with send_recv. Partial results are merged exactly with log-sum-exp, so
the output equals full causal attention, yet no rank ever holds more than two kv blocks.

Each rank sends and receives 2·B·(L/S)·H·K per step, (S − 1)/S of the full K and V in all —
the same bytes as all-gathering them, but overlapped with the block computations. Blocks
wholly in the causal future are skipped, which saves about half the work but leaves it
unbalanced (rank 0 computes one block, rank S − 1 computes S); zigzag or striped sharding is
the usual fix.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref.attention import causal_mask_LM
from mlgrind.ref.collectives import Comm
from mlgrind.ref.einsum import einsum


def block_attention(q_BLHK, k_BMHK, v_BMHK, mask_LM):
    """Attention to one kv block: output normalised within the block, and the log-sum-exp
    of each query's scores, which is all a later merge needs. Every query must see a key."""
    K = q_BLHK.shape[-1]
    scores_BHLM = einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(K)
    scores_BHLM = np.where(mask_LM, scores_BHLM, -np.inf)
    max_BHL = scores_BHLM.max(axis=-1)
    lse_BHL = max_BHL + np.log(np.exp(scores_BHLM - max_BHL[..., None]).sum(axis=-1))
    probs_BHLM = np.exp(scores_BHLM - lse_BHL[..., None])
    return einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK), lse_BHL


def merge(out_a_BLHK, lse_a_BHL, out_b_BLHK, lse_b_BHL):
    """Two softmaxes over disjoint key sets combine into the softmax over their union: weight
    each normalised output by its share of the total exp-mass, exp(lse_part − lse_total)."""
    lse_BHL = np.logaddexp(lse_a_BHL, lse_b_BHL)
    weight_a_BLH = np.exp(lse_a_BHL - lse_BHL).transpose(0, 2, 1)
    weight_b_BLH = np.exp(lse_b_BHL - lse_BHL).transpose(0, 2, 1)
    return out_a_BLHK * weight_a_BLH[..., None] + out_b_BLHK * weight_b_BLH[..., None], lse_BHL


def ring_attention(q_shards_BLHK, k_shards_BMHK, v_shards_BMHK, comm: Comm):
    """Causal self-attention with rank s holding the s-th contiguous block of the sequence.

    Shards may differ in length (np.array_split); returns each rank's block of out_BLHK.
    """
    S = comm.size
    ends = np.cumsum([q.shape[1] for q in q_shards_BLHK])
    positions = [
        np.arange(end - q.shape[1], end) for q, end in zip(q_shards_BLHK, ends, strict=True)
    ]
    out = [np.zeros_like(q) for q in q_shards_BLHK]
    # lse = −inf: "no keys seen yet", which merge turns into a zero weight.
    lse = [np.full((q.shape[0], q.shape[2], q.shape[1]), -np.inf) for q in q_shards_BLHK]
    k_held, v_held = list(k_shards_BMHK), list(v_shards_BMHK)
    for step in range(S):
        for s in range(S):
            owner = (s - step) % S  # the rank whose kv block s holds at this step
            mask_LM = causal_mask_LM(positions[s], positions[owner])
            # Contiguous blocks are wholly past, diagonal, or wholly future (skipped).
            if mask_LM.any():
                block = block_attention(q_shards_BLHK[s], k_held[s], v_held[s], mask_LM)
                out[s], lse[s] = merge(out[s], lse[s], *block)
        if step < S - 1:
            k_held = comm.send_recv(k_held, shift=1, tag="k")
            v_held = comm.send_recv(v_held, shift=1, tag="v")
    return out


def ring_attention_bytes(B: int, L: int, H: int, K: int, S: int, bytes_per_element: int) -> int:
    """Bytes each rank sends (and receives) when S divides L: S − 1 steps, one k and one v
    block of B·(L/S)·H·K elements each."""
    return 2 * (S - 1) * B * (L // S) * H * K * bytes_per_element


def ring_attention_flops(B: int, L: int, H: int, K: int, S: int) -> int:
    """Score and weighted-sum FLOPs when S divides L: S(S + 1)/2 of the S² blocks are past or
    diagonal, each 2·2·B·H·(L/S)²·K. That is (S + 1)/(2S) of dense attention's 4·B·H·L²·K."""
    return 2 * B * H * (L // S) ** 2 * K * S * (S + 1)
