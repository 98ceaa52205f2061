"""Seed "Be able to reason clearly about MLA": DeepSeek's Multi-head Latent Attention.

Source: DeepSeek-V2 (arXiv 2405.04434), section 2.1, equations 9–19; DeepSeek-V3 (arXiv
2412.19437) keeps the same attention. Each token is cached as one latent c_kv (C numbers) plus
one RoPE key shared by all heads (R numbers): C + R per layer instead of 2·H·K for MHA.

- Low-rank joint KV compression: c_kv = x · W_DKV; per-head keys and values are
  up-projected from it, k = c_kv · W_UK and v = c_kv · W_UV.
- Decoupled RoPE: RoPE on k = c_kv · W_UK would put a position-dependent rotation between
  W_UK and the query, and W_UK could no longer be folded away. So the no-RoPE part carries
  the content and a separate R-dim key x · W_KR, rotated and shared across heads, carries the
  position; each head's query has a matching R-dim rotated part, and the score is
  [q; q_rope] · [k; k_rope] = q·k + q_rope·k_rope, scaled by 1/sqrt(K + R).
- Absorption (inference): q·k = (x W_Q)·(c_kv W_UK) = (x W_Q W_UKᵀ)·c_kv, so W_UK folds into
  the query and scores are taken against the cached latent directly; likewise W_UV folds into
  W_O. Per-head keys and values are never materialised during decode. `absorb` does the
  folding once per model; `mla_absorbed` takes its result so a decode step does not redo it.

The query side is not compressed here (DeepSeek-V2 compresses it to save training activations,
DeepSeek-V2-Lite does not); it changes neither the cache nor the absorption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlgrind.ref.attention import causal_mask_LM, masked_softmax
from mlgrind.ref.einsum import einsum
from mlgrind.ref.rope import rope


@dataclass
class MLAWeights:
    w_dkv_DC: np.ndarray  # down-projection to the cached latent
    w_uk_CHK: np.ndarray  # latent → per-head keys (no RoPE)
    w_uv_CHK: np.ndarray  # latent → per-head values
    w_kr_DR: np.ndarray  # decoupled RoPE key, one for all heads
    w_q_DHK: np.ndarray  # queries, no-RoPE part
    w_qr_DHR: np.ndarray  # queries, RoPE part, per head
    w_o_HKD: np.ndarray


def init_mla(rng: np.random.Generator, D: int, H: int, K: int, C: int, R: int) -> MLAWeights:
    def normal(fan_in, *shape):
        return rng.normal(size=shape) / np.sqrt(fan_in)

    return MLAWeights(
        w_dkv_DC=normal(D, D, C),
        w_uk_CHK=normal(C, C, H, K),
        w_uv_CHK=normal(C, C, H, K),
        w_kr_DR=normal(D, D, R),
        w_q_DHK=normal(D, D, H, K),
        w_qr_DHR=normal(D, D, H, R),
        w_o_HKD=normal(H * K, H, K, D),
    )


def mla_latent_cache(x_BMD, positions_M, w: MLAWeights):
    """What MLA caches per token: the latent c_kv_BMC and the rotated shared key k_rope_BMR."""
    c_kv_BMC = einsum("bmd,dc->bmc", x_BMD, w.w_dkv_DC)
    k_rope_BMR = einsum("bmd,dr->bmr", x_BMD, w.w_kr_DR)
    # rope rotates a heads axis; the shared key is a single head.
    k_rope_BMR = rope(k_rope_BMR[:, :, None, :], positions_M)[:, :, 0, :]
    return c_kv_BMC, k_rope_BMR


def mla_rope_query(x_BLD, positions_L, w: MLAWeights):
    """Each head's rotated R-dim query part, matched against the shared k_rope_BMR."""
    return rope(einsum("bld,dhr->blhr", x_BLD, w.w_qr_DHR), positions_L)


def mla_naive(x_BLD, w: MLAWeights):
    """Causal self-attention with keys and values up-projected per head (training form)."""
    L, K, R = x_BLD.shape[1], w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1]
    positions = np.arange(L)
    c_kv_BMC, k_rope_BMR = mla_latent_cache(x_BLD, positions, w)
    k_BMHK = einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uk_CHK)
    v_BMHK = einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uv_CHK)
    q_BLHK = einsum("bld,dhk->blhk", x_BLD, w.w_q_DHK)
    q_rope_BLHR = mla_rope_query(x_BLD, positions, w)
    scores_BHLM = einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK)
    scores_BHLM += einsum("blhr,bmr->bhlm", q_rope_BLHR, k_rope_BMR)
    scores_BHLM /= np.sqrt(K + R)
    probs_BHLM = masked_softmax(scores_BHLM, causal_mask_LM(positions, positions))
    out_BLHK = einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    return einsum("blhk,hkd->bld", out_BLHK, w.w_o_HKD)


@dataclass
class MLAAbsorbed:
    """The decode-time weights: W_UK folded into the query, W_UV into the output projection."""

    w_q_absorbed_DHC: np.ndarray  # x → each head's query in latent space: W_Q · W_UKᵀ
    w_o_absorbed_HCD: np.ndarray  # each head's latent output → model: W_UV · W_O


def absorb(w: MLAWeights) -> MLAAbsorbed:
    """Fold W_UK and W_UV away, once per model; every decode step then reuses the result."""
    return MLAAbsorbed(
        w_q_absorbed_DHC=einsum("dhk,chk->dhc", w.w_q_DHK, w.w_uk_CHK),
        w_o_absorbed_HCD=einsum("chk,hkd->hcd", w.w_uv_CHK, w.w_o_HKD),
    )


def mla_absorbed(
    x_BLD,
    positions_L,
    c_kv_BMC,
    k_rope_BMR,
    positions_M,
    w: MLAWeights,
    absorbed: MLAAbsorbed | None = None,
):
    """Queries x_BLD read only the latent cache; W_UK and W_UV are folded away (decode form).

    Pass `absorbed = absorb(w)`, made once per model, so a step pays only for its own work;
    without it the fold is redone on this call (same result, extra FLOPs).
    """
    K, R = w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1]
    if absorbed is None:
        absorbed = absorb(w)
    q_latent_BLHC = einsum("bld,dhc->blhc", x_BLD, absorbed.w_q_absorbed_DHC)
    q_rope_BLHR = mla_rope_query(x_BLD, positions_L, w)
    scores_BHLM = einsum("blhc,bmc->bhlm", q_latent_BLHC, c_kv_BMC)
    scores_BHLM += einsum("blhr,bmr->bhlm", q_rope_BLHR, k_rope_BMR)
    # K + R, not C: the fold changes where the product is taken, not the dot product itself.
    scores_BHLM /= np.sqrt(K + R)
    probs_BHLM = masked_softmax(scores_BHLM, causal_mask_LM(positions_L, positions_M))
    out_latent_BLHC = einsum("bhlm,bmc->blhc", probs_BHLM, c_kv_BMC)
    return einsum("blhc,hcd->bld", out_latent_BLHC, absorbed.w_o_absorbed_HCD)


def mla_absorbed_flops(B: int, L: int, M: int, D: int, H: int, C: int, R: int) -> int:
    """FLOPs of mla_absorbed with pre-absorbed weights: L new queries against M cached tokens.

    Queries 2·B·L·D·H·(C + R) (latent and RoPE parts), scores 2·B·H·L·M·(C + R), weighted sum
    of latents 2·B·H·L·M·C, output 2·B·L·H·C·D. K is gone: each head works in the latent
    space, which is why absorption pays off only while C is small next to H·K. RoPE and
    softmax are elementwise and left out.
    """
    queries = 2 * B * L * D * H * (C + R)
    attention = 2 * B * H * L * M * (C + R) + 2 * B * H * L * M * C
    return queries + attention + 2 * B * L * H * C * D


def mla_cache_bytes_per_token(C: int, R: int, n_layers: int, bytes_per_element: int) -> int:
    """C latent numbers plus R shared RoPE-key numbers per layer (MHA: 2·H·K per layer)."""
    return (C + R) * n_layers * bytes_per_element
