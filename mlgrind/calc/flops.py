"""FLOPs of a forward pass, a training step and a whole training run.

Forward, per layer, for B sequences of L new tokens attending to M positions (prefill: M = L):

    matmuls     2 · B·L · (that layer's matrices a token goes through)
    attention   2 · B·L·M·H·K  (scores q·k)  +  2 · B·L·M·H·K_v  (weighted sum of v)

plus the output head 2·B·L·D·V. Attention is counted dense, as an einsum computes it (the causal
mask discards half the scores but a dense kernel still pays for them; FlashAttention-style kernels
skip them, so halve that term for them). Per token at context T that is
2·N_matmul + 2·n_layers·T·H·(K + K_v), i.e. Kaplan et al. 2020's 2N + 2·n_layer·n_ctx·d_attn
(forward, both attention matmuls) written with our letters.

Training: backward = 2 × forward (each matmul needs the gradient of both operands), so a step is
3 × forward ≈ 6·N·D + attention. Full activation recomputation runs each layer's forward once
more: 4 × forward for the layers; the output head is not recomputed. With K = K_v = D/H,
n_layers = l, V, sequence s this is Narayanan et al. 2021's 96·B·s·l·h²(1 + s/6h + V/16lh)
per iteration exactly (tested).
"""

from __future__ import annotations

from mlgrind.calc.params import attention_matrices, count
from mlgrind.calc.specs import ModelSpec

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: Chinchilla, 70B parameters, 1.4T tokens


def attention_flops_per_token(spec: ModelSpec, context: int) -> int:
    """Scores and weighted sum for one new token against `context` positions, all layers."""
    return 2 * spec.n_layers * context * spec.H * (spec.K + spec.K_v)


def forward_flops(spec: ModelSpec, B: int, L: int, M: int | None = None) -> int:
    """Forward FLOPs of B sequences of L tokens against M positions (default M = L: prefill)."""
    M = L if M is None else M
    return B * L * (2 * count(spec).matmul_per_token + attention_flops_per_token(spec, M))


def forward_flops_per_token(spec: ModelSpec, seq_len: int) -> int:
    """Average over a training sequence: every token attends to all seq_len positions (dense)."""
    return 2 * count(spec).matmul_per_token + attention_flops_per_token(spec, seq_len)


def layer_forward_flops(spec: ModelSpec, B: int, L: int, moe: bool) -> dict[str, int]:
    """One transformer block's forward FLOPs by part (prefill, M = L)."""
    BL = B * L
    parts = {"attention projections": 2 * BL * attention_matrices(spec),
             "attention scores + weighted sum": BL * 2 * L * spec.H * (spec.K + spec.K_v)}
    gated = 3 if spec.mlp_gated else 2
    if moe:
        parts["router"] = 2 * BL * spec.D * spec.E
        parts["experts (top-k + shared)"] = (2 * BL * gated * spec.D * spec.F_expert
                                             * (spec.top_k + spec.n_shared_experts))
    else:
        parts["MLP"] = 2 * BL * gated * spec.D * spec.F
    return parts


def training_flops_per_token(spec: ModelSpec, seq_len: int, recompute: bool = False) -> int:
    """3 × forward; with full recomputation the layers (not the output head) run forward twice."""
    forward = forward_flops_per_token(spec, seq_len)
    return 3 * forward + (forward - 2 * count(spec).output_head if recompute else 0)


def training_flops(spec: ModelSpec, tokens: float, seq_len: int, recompute: bool = False) -> float:
    return tokens * training_flops_per_token(spec, seq_len, recompute)


def six_n_d(n_params: float, tokens: float) -> float:
    """The rule of thumb without attention: 2 FLOPs per parameter forward, 4 backward."""
    return 6 * n_params * tokens


def palm_flops_per_token(n_params: float, n_layers: int, H: int, K: int, seq_len: int) -> float:
    """PaLM (Chowdhery et al. 2022, appendix B) model FLOPs per token: 6N + 12·L·H·Q·T, the
    dense attention term of a training step (our 3 × 2·n_layers·T·H·(K + K_v), K_v = K)."""
    return 6 * n_params + 12 * n_layers * H * K * seq_len


def chinchilla_tokens(n_params: float) -> float:
    """Compute-optimal tokens ≈ 20 per parameter (Hoffmann et al. 2022).

    For an MoE pass the *active* parameters: Chinchilla trades the FLOPs spent per token (6·N
    per token, which only the parameters a token goes through cost) against the number of
    tokens at a fixed compute budget C = 6·N·D. The idle experts cost memory, not FLOPs. An
    MoE learns more per token than a dense model of its active size, so this is a lower bound
    on its useful tokens, not an exact optimum.
    """
    return CHINCHILLA_TOKENS_PER_PARAM * n_params
