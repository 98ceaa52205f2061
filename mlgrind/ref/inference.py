"""Seed "Inference / KV cache": a tiny decoder and its KV-cache decode loop.

Prefill runs the prompt in one pass and keeps every layer's keys and values; each decode step
then runs one new token against that cache and appends its own k and v. The logits are the
same as re-running the whole sequence (tested), but a step costs O(M) attention instead of
O(M²) — and the cache it reads, 2·G·K bytes per token per layer, is what bounds batch size and
makes decode memory-bound.

The model is the smallest that still has every piece that matters to the cache: embedding,
blocks of GQA attention with RoPE plus a ReLU MLP on a residual stream, and an unembedding.
Norms are left out; they act per token and do not touch the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlgrind.ref.attention import causal_mask_LM, gqa_attend
from mlgrind.ref.einsum import einsum
from mlgrind.ref.mlp import relu
from mlgrind.ref.rope import rope


@dataclass(frozen=True)
class Config:
    V: int = 13
    D: int = 8
    H: int = 4
    G: int = 2
    K: int = 2
    F: int = 16
    n_layers: int = 2


@dataclass
class Block:
    w_q_DHK: np.ndarray
    w_k_DGK: np.ndarray
    w_v_DGK: np.ndarray
    w_o_HKD: np.ndarray
    w_in_DF: np.ndarray
    w_out_FD: np.ndarray


@dataclass
class Model:
    config: Config
    embed_VD: np.ndarray
    blocks: list[Block]
    unembed_DV: np.ndarray


def init_model(config: Config, rng: np.random.Generator) -> Model:
    V, D, H, G, K, F = config.V, config.D, config.H, config.G, config.K, config.F

    def normal(fan_in, *shape):
        return rng.normal(size=shape) / np.sqrt(fan_in)

    blocks = [
        Block(
            w_q_DHK=normal(D, D, H, K),
            w_k_DGK=normal(D, D, G, K),
            w_v_DGK=normal(D, D, G, K),
            w_o_HKD=normal(H * K, H, K, D),
            w_in_DF=normal(D, D, F),
            w_out_FD=normal(F, F, D),
        )
        for _ in range(config.n_layers)
    ]
    return Model(config, normal(1, V, D), blocks, normal(D, D, V))


@dataclass
class KVCache:
    """Per layer, the keys and values of every position seen so far: k_BMGK, v_BMGK."""

    k: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def empty(cls, config: Config, B: int) -> KVCache:
        def nothing():
            return [np.zeros((B, 0, config.G, config.K)) for _ in range(config.n_layers)]

        return cls(nothing(), nothing())

    @property
    def length(self) -> int:
        return self.k[0].shape[1]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k + self.v)


def forward(model: Model, tokens_BL: np.ndarray, cache: KVCache | None = None) -> np.ndarray:
    """Logits for tokens_BL placed right after what the cache holds; their k, v are appended.

    Without a cache this is the plain full-sequence causal forward.
    """
    B, L = tokens_BL.shape
    cache = cache if cache is not None else KVCache.empty(model.config, B)
    positions_L = np.arange(cache.length, cache.length + L)
    x_BLD = model.embed_VD[tokens_BL]
    for i, block in enumerate(model.blocks):
        q_BLHK = rope(einsum("bld,dhk->blhk", x_BLD, block.w_q_DHK), positions_L)
        k_BLGK = rope(einsum("bld,dgk->blgk", x_BLD, block.w_k_DGK), positions_L)
        v_BLGK = einsum("bld,dgk->blgk", x_BLD, block.w_v_DGK)
        # Keys are cached after RoPE: a position's rotation never changes once it is written.
        cache.k[i] = k_BMGK = np.concatenate([cache.k[i], k_BLGK], axis=1)
        cache.v[i] = v_BMGK = np.concatenate([cache.v[i], v_BLGK], axis=1)
        positions_M = np.arange(cache.length)
        out_BLHK, _ = gqa_attend(q_BLHK, k_BMGK, v_BMGK, causal_mask_LM(positions_L, positions_M))
        x_BLD = x_BLD + einsum("blhk,hkd->bld", out_BLHK, block.w_o_HKD)
        h_BLF = relu(einsum("bld,df->blf", x_BLD, block.w_in_DF))
        x_BLD = x_BLD + einsum("blf,fd->bld", h_BLF, block.w_out_FD)
    return einsum("bld,dv->blv", x_BLD, model.unembed_DV)


def generate(model: Model, prompt_BL: np.ndarray, n_new: int) -> np.ndarray:
    """Greedy decoding: one prefill, then one cached step per new token."""
    cache = KVCache.empty(model.config, prompt_BL.shape[0])
    logits_BLV = forward(model, prompt_BL, cache)
    tokens = [prompt_BL]
    for _ in range(n_new):
        next_BL = logits_BLV[:, -1:].argmax(-1)  # L = 1
        tokens.append(next_BL)
        logits_BLV = forward(model, next_BL, cache)
    return np.concatenate(tokens, axis=1)


def forward_flops(config: Config, B: int, L: int, M: int) -> int:
    """FLOPs of running L new tokens against M cached-plus-new positions (prefill: L = M,
    one decode step: L = 1).

    Per layer: q and o projections 2·B·L·D·H·K each, k and v 2·B·L·D·G·K each, scores and
    weighted sum 2·B·L·M·H·K each, MLP 2·2·B·L·D·F; then the unembedding 2·B·L·D·V.
    Everything but the attention term scales with L alone, so a decode step costs about 1/P
    of a P-token prefill while still reading every weight and the whole cache: memory-bound.
    """
    D, H, G, K, F, V = config.D, config.H, config.G, config.K, config.F, config.V
    projections = 2 * B * L * D * K * (2 * H + 2 * G)
    attention = 2 * 2 * B * L * M * H * K
    mlp = 2 * 2 * B * L * D * F
    return config.n_layers * (projections + attention + mlp) + 2 * B * L * D * V
