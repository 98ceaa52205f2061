"""Seed "Implement full multi-head attention with suffix notation + einsum", then GQA.

Multi-head attention with a causal mask, forward and backward side by side, and the closed-form
FLOP count the sheet prints (checked against the FLOPs counted from the einsums below).

GQA (Ainslie et al. 2023, arXiv 2305.13245): H query heads share G kv heads, H / G query heads
per group. G = H is MHA, G = 1 is MQA (Shazeer 2019, arXiv 1911.02150); the KV cache shrinks
by H / G while the query side is unchanged.

A caveat on suffixes in the GQA code: once the query heads are split into groups
(q_BLGHK, scores_BGHLM, probs_BGHLM, out_BLGHK and their d_ gradients), G is the kv-head group
and H there is the position of a query head inside its group, so that axis has length H / G,
not H. The sheet defines no letter of its own for it; G × (H / G) is reshaped back to the full
H as soon as the grouped step is over (out_BLHK, d_q_BLHK).
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref.einsum import einsum


def causal_mask_LM(positions_L: np.ndarray, positions_M: np.ndarray) -> np.ndarray:
    """True where query l may read key m: the key sits at or before the query's position.

    Positions rather than indices, so the same mask serves prefill (L = M), one decode step
    (L = 1 against the whole cache) and one block of ring attention.
    """
    return positions_M[None, :] <= positions_L[:, None]


def masked_softmax(scores: np.ndarray, mask_LM: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (M), keys outside the mask get probability 0."""
    scores = np.where(mask_LM, scores, -np.inf)
    # Subtracting the row max changes nothing mathematically and keeps exp from overflowing.
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- multi-head attention (MHA)


def mha_forward(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD):
    """Causal self-attention. Returns y_BLD and what the backward pass needs."""
    L, K = x_BLD.shape[1], w_q_DHK.shape[-1]
    x_BMD = x_BLD  # self-attention: keys and values are read from the same sequence, M = L
    q_BLHK = einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
    k_BMHK = einsum("bmd,dhk->bmhk", x_BMD, w_k_DHK)
    v_BMHK = einsum("bmd,dhk->bmhk", x_BMD, w_v_DHK)
    # 1/sqrt(K) keeps the scores' variance O(1) whatever the head size, so softmax stays soft.
    scores_BHLM = einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(K)
    positions = np.arange(L)
    probs_BHLM = masked_softmax(scores_BHLM, causal_mask_LM(positions, positions))
    out_BLHK = einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    y_BLD = einsum("blhk,hkd->bld", out_BLHK, w_o_HKD)
    weights = (w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD)
    saved = (x_BLD, *weights, q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK)
    return y_BLD, saved


def mha_backward(d_y_BLD, saved):
    """Gradients of (x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD), each named like its tensor."""
    x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD, q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK = saved
    K = w_q_DHK.shape[-1]
    x_BMD = x_BLD
    d_out_BLHK = einsum("bld,hkd->blhk", d_y_BLD, w_o_HKD)
    d_w_o_HKD = einsum("blhk,bld->hkd", out_BLHK, d_y_BLD)
    d_probs_BHLM = einsum("blhk,bmhk->bhlm", d_out_BLHK, v_BMHK)
    d_v_BMHK = einsum("bhlm,blhk->bmhk", probs_BHLM, d_out_BLHK)
    # Softmax Jacobian: d_s = p * (d_p - sum_m p * d_p). Masked keys have p = 0, so no gradient.
    dot_BHL = einsum("bhlm,bhlm->bhl", probs_BHLM, d_probs_BHLM)
    d_scores_BHLM = probs_BHLM * (d_probs_BHLM - dot_BHL[..., None]) / np.sqrt(K)
    d_q_BLHK = einsum("bhlm,bmhk->blhk", d_scores_BHLM, k_BMHK)
    d_k_BMHK = einsum("bhlm,blhk->bmhk", d_scores_BHLM, q_BLHK)
    d_w_q_DHK = einsum("bld,blhk->dhk", x_BLD, d_q_BLHK)
    d_w_k_DHK = einsum("bmd,bmhk->dhk", x_BMD, d_k_BMHK)
    d_w_v_DHK = einsum("bmd,bmhk->dhk", x_BMD, d_v_BMHK)
    # x feeds q, k and v, so its gradient is the sum of the three paths.
    d_x_BLD = (
        einsum("blhk,dhk->bld", d_q_BLHK, w_q_DHK)
        + einsum("bmhk,dhk->bmd", d_k_BMHK, w_k_DHK)
        + einsum("bmhk,dhk->bmd", d_v_BMHK, w_v_DHK)
    )
    return d_x_BLD, d_w_q_DHK, d_w_k_DHK, d_w_v_DHK, d_w_o_HKD


def mha_flops(B: int, L: int, D: int, H: int, K: int) -> int:
    """Forward FLOPs of causal self-attention as the einsums compute it (M = L).

    q, k, v and output projections: 2·B·L·D·H·K each. Scores q·k and the weighted sum of v:
    2·B·H·L·M·K each. The mask makes half the scores useless, but the dense einsum still pays
    for them; softmax and scaling are O(B·H·L·M) and left out.
    """
    M = L
    return 4 * 2 * B * L * D * H * K + 2 * 2 * B * H * L * M * K


def mha_backward_flops(B: int, L: int, D: int, H: int, K: int) -> int:
    """Backward = 2 × forward (each matmul needs a gradient for both operands) plus the
    softmax row sum sum_m p·d_p, 2·B·H·L·M."""
    M = L
    return 2 * mha_flops(B, L, D, H, K) + 2 * B * H * L * M


# ------------------------------------------------------------ grouped-query attention (GQA)


def gqa_attend(q_BLHK, k_BMGK, v_BMGK, mask_LM):
    """Attention core with H query heads over G kv heads; returns out_BLHK and probs_BGHLM.

    In q_BLGHK, scores_BGHLM, probs_BGHLM and out_BLGHK the H axis has length H / G: it counts
    the query heads within one group g, not all H heads. Query head g·(H/G) + h of q_BLHK is
    entry (g, h) of q_BLGHK and reads kv head g.
    """
    B, L, H, K = q_BLHK.shape
    G = k_BMGK.shape[2]
    if H % G:
        raise ValueError(f"{H} query heads cannot be split evenly over {G} kv heads")
    q_BLGHK = q_BLHK.reshape(B, L, G, H // G, K)
    scores_BGHLM = einsum("blghk,bmgk->bghlm", q_BLGHK, k_BMGK) / np.sqrt(K)
    probs_BGHLM = masked_softmax(scores_BGHLM, mask_LM)
    out_BLGHK = einsum("bghlm,bmgk->blghk", probs_BGHLM, v_BMGK)
    return out_BLGHK.reshape(B, L, H, K), probs_BGHLM


def gqa_forward(x_BLD, w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD):
    """Causal self-attention with G kv heads. Returns y_BLD and what the backward pass needs."""
    L = x_BLD.shape[1]
    x_BMD = x_BLD
    q_BLHK = einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
    k_BMGK = einsum("bmd,dgk->bmgk", x_BMD, w_k_DGK)
    v_BMGK = einsum("bmd,dgk->bmgk", x_BMD, w_v_DGK)
    positions = np.arange(L)
    out_BLHK, probs_BGHLM = gqa_attend(q_BLHK, k_BMGK, v_BMGK, causal_mask_LM(positions, positions))
    y_BLD = einsum("blhk,hkd->bld", out_BLHK, w_o_HKD)
    weights = (w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD)
    saved = (x_BLD, *weights, q_BLHK, k_BMGK, v_BMGK, probs_BGHLM, out_BLHK)
    return y_BLD, saved


def gqa_backward(d_y_BLD, saved):
    """Gradients of (x_BLD, w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD).

    As in gqa_attend, the H axis of every *_BLGHK and *_BGHLM tensor has length H / G (query
    heads within one group).
    """
    x_BLD, w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD, q_BLHK, k_BMGK, v_BMGK, probs_BGHLM, out_BLHK = saved
    B, L, H, K = q_BLHK.shape
    G = k_BMGK.shape[2]
    x_BMD = x_BLD
    q_BLGHK = q_BLHK.reshape(B, L, G, H // G, K)
    d_out_BLHK = einsum("bld,hkd->blhk", d_y_BLD, w_o_HKD)
    d_w_o_HKD = einsum("blhk,bld->hkd", out_BLHK, d_y_BLD)
    d_out_BLGHK = d_out_BLHK.reshape(B, L, G, H // G, K)
    d_probs_BGHLM = einsum("blghk,bmgk->bghlm", d_out_BLGHK, v_BMGK)
    # A kv head collects gradient from every query head of its group: h is summed here.
    d_v_BMGK = einsum("bghlm,blghk->bmgk", probs_BGHLM, d_out_BLGHK)
    dot_BGHL = einsum("bghlm,bghlm->bghl", probs_BGHLM, d_probs_BGHLM)
    d_scores_BGHLM = probs_BGHLM * (d_probs_BGHLM - dot_BGHL[..., None]) / np.sqrt(K)
    d_q_BLGHK = einsum("bghlm,bmgk->blghk", d_scores_BGHLM, k_BMGK)
    d_k_BMGK = einsum("bghlm,blghk->bmgk", d_scores_BGHLM, q_BLGHK)
    d_q_BLHK = d_q_BLGHK.reshape(B, L, H, K)
    d_w_q_DHK = einsum("bld,blhk->dhk", x_BLD, d_q_BLHK)
    d_w_k_DGK = einsum("bmd,bmgk->dgk", x_BMD, d_k_BMGK)
    d_w_v_DGK = einsum("bmd,bmgk->dgk", x_BMD, d_v_BMGK)
    d_x_BLD = (
        einsum("blhk,dhk->bld", d_q_BLHK, w_q_DHK)
        + einsum("bmgk,dgk->bmd", d_k_BMGK, w_k_DGK)
        + einsum("bmgk,dgk->bmd", d_v_BMGK, w_v_DGK)
    )
    return d_x_BLD, d_w_q_DHK, d_w_k_DGK, d_w_v_DGK, d_w_o_HKD


def kv_cache_bytes_per_token(G: int, K: int, n_layers: int, bytes_per_element: int) -> int:
    """One key and one value vector per kv head per layer: 2·G·K·n_layers elements.

    MHA caches 2·H·K per layer; GQA divides that by H / G, MQA by H.
    """
    return 2 * G * K * n_layers * bytes_per_element
