"""Exact parameter counts, module by module, as the Hugging Face implementations allocate them.

Per layer (matrices; every 1-D tensor, norm gains and biases, is counted apart as `vectors`):

    attention   q D·H·K + k, v D·G·K each + o H·K·D
      MLA       q: D·q_rank + q_rank·H·K (or D·H·K) ; kv down D·(C + R) ; kv up C·H·(K_nope + K_v)
                ; o H·K_v·D                         (DeepSeek-V2, arXiv 2405.04434, eqs. 9–19)
    MLP         D·F·2, or D·F·3 when gated (SwiGLU: gate, up, down)
    MoE layer   router D·E ; E routed experts and the shared ones, D·F_expert·3 each
    model       token embedding V·D (+ learned positions ·D) ; output head V·D unless tied

Active parameters are those one token touches: everything but the routed experts it is not sent
to, (E − top_k) per MoE layer. Non-embedding parameters leave out the embedding tables and the
output head (the convention of Kaplan et al. 2020 and of the Qwen model cards).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.specs import ModelSpec


@dataclass(frozen=True)
class ParamCounts:
    embedding: int  # token (and learned position) tables: a lookup, no matmul
    unembedding: int  # output head; 0 when tied to the token embedding
    attention: int  # all layers' attention matrices
    mlp: int  # dense MLPs and shared experts: every token goes through them
    experts: int  # every routed expert
    active_experts: int  # the routed experts one token goes through
    router: int
    vectors: int  # norm gains and biases
    output_head: int  # V·D: the logits multiply by it whether or not it is tied
    mtp: int = 0  # DeepSeek's multi-token-prediction module, not part of the main model

    @property
    def total(self) -> int:
        return (self.embedding + self.unembedding + self.attention + self.mlp + self.experts
                + self.router + self.vectors)

    @property
    def active(self) -> int:
        return self.total - self.experts + self.active_experts

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding - self.unembedding

    @property
    def matmul_per_token(self) -> int:
        """Weights one token is multiplied by in a forward pass: 2 FLOPs each."""
        return self.attention + self.mlp + self.active_experts + self.router + self.output_head


def _mlp(spec: ModelSpec, F: int) -> int:
    return spec.D * F * (3 if spec.mlp_gated else 2)


def attention_matrices(spec: ModelSpec) -> int:
    """One layer's attention matrices."""
    D, H, G, K, K_v = spec.D, spec.H, spec.G, spec.K, spec.K_v
    if spec.mla is None:
        return D * H * K + 2 * D * G * K + H * K_v * D
    m = spec.mla
    q = D * m.q_rank + m.q_rank * H * K if m.q_rank else D * H * K
    return q + D * (m.C + m.R) + m.C * H * (m.K_nope + K_v) + H * K_v * D


def attention_vectors(spec: ModelSpec) -> int:
    D, H, G, K = spec.D, spec.H, spec.G, spec.K
    vectors = (H * K + 2 * G * K) * spec.qkv_bias + D * spec.o_bias
    if spec.mla is not None:  # RMSNorms on the compressed query and kv latents
        vectors += spec.mla.q_rank + spec.mla.C
    return vectors


def _norm(spec: ModelSpec) -> int:
    return spec.D * (2 if spec.norm == "layernorm" else 1)


def count(spec: ModelSpec) -> ParamCounts:
    D, L = spec.D, spec.n_layers
    mlp_vectors = (spec.F + D) * spec.mlp_bias if not spec.mlp_gated else (2 * spec.F + D) * spec.mlp_bias
    shared = spec.n_shared_experts * _mlp(spec, spec.F_expert)
    expert = _mlp(spec, spec.F_expert)
    moe, dense = spec.moe_layers, spec.dense_layers
    # Per layer: two norms (before attention, before the MLP); one more after the last layer.
    vectors = L * (attention_vectors(spec) + 2 * _norm(spec)) + dense * mlp_vectors + _norm(spec)
    vectors += moe * spec.E * spec.router_bias
    counts = ParamCounts(
        embedding=(spec.V + spec.learned_positions) * D,
        unembedding=0 if spec.tied else spec.V * D,
        attention=L * attention_matrices(spec),
        mlp=dense * _mlp(spec, spec.F) + moe * shared,
        experts=moe * spec.E * expert,
        active_experts=moe * spec.top_k * expert,
        router=moe * D * spec.E,
        vectors=vectors,
        output_head=spec.V * D,
    )
    if not spec.mtp_layers:
        return counts
    return ParamCounts(**{**counts.__dict__, "mtp": spec.mtp_layers * _mtp_module(spec)})


def _mtp_module(spec: ModelSpec) -> int:
    """One multi-token-prediction module as stored in the DeepSeek-V3 checkpoint: its own copy
    of the embedding and output head, norms of the hidden state and of the embedding, the
    projection of their concatenation 2D → D, one MoE layer, and a final norm
    (DeepSeek-V3 report, arXiv 2412.19437, section 2.2)."""
    D = spec.D
    layer = (attention_matrices(spec) + attention_vectors(spec) + 2 * _norm(spec)
             + spec.E * _mlp(spec, spec.F_expert) + spec.n_shared_experts * _mlp(spec, spec.F_expert)
             + D * spec.E + spec.E * spec.router_bias)
    return 2 * spec.V * D + 2 * _norm(spec) + 2 * D * D + layer + _norm(spec)
