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
from mlgrind.calc.working import Report, count_text


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


def report(spec: ModelSpec) -> Report:
    """Every count with the product it comes from, in the suffix letters and then in numbers."""
    s, c = spec, count(spec)
    D, L, V = s.D, s.n_layers, s.V
    r = Report(f"{s.name}: parameters", context={"model": s.name})
    layout = "laid out as the Hugging Face implementation allocates them"
    r.add("embedding", c.embedding, count_text(c.embedding),
          f"(V + positions) · D = ({V:,} + {s.learned_positions:,}) · {D:,} = {c.embedding:,}"
          if s.learned_positions else f"V · D = {V:,} · {D:,} = {c.embedding:,}", layout)
    r.add("unembedding", c.unembedding, count_text(c.unembedding),
          "0: the output head is the token embedding (tied)" if s.tied else
          f"V · D = {V:,} · {D:,} = {c.unembedding:,}", layout)
    if s.mla is None:
        per_layer = f"D·H·K + 2·D·G·K + H·K·D = {D}·{s.H}·{s.K} + 2·{D}·{s.G}·{s.K} + {s.H}·{s.K_v}·{D}"
    else:
        per_layer = "MLA: q down and up, kv down D·(C + R), kv up C·H·(K_nope + K_v), o H·K_v·D"
    r.add("attention", c.attention, count_text(c.attention),
          f"layers · ({per_layer}) = {L} · {attention_matrices(s):,} = {c.attention:,}", layout)
    k = 3 if s.mlp_gated else 2
    matrices = f"{k} matrices" + (" (SwiGLU: gate, up, down)" if s.mlp_gated else " (up, down)")
    if s.moe_layers:
        r.add("mlp", c.mlp, count_text(c.mlp),
              f"dense layers · {k}·D·F + MoE layers · shared · {k}·D·F_expert = {s.dense_layers} · {k}·{D}·{s.F}"
              f" + {s.moe_layers} · {s.n_shared_experts} · {k}·{D}·{s.F_expert} = {c.mlp:,}", matrices)
        r.add("experts", c.experts, count_text(c.experts),
              f"MoE layers · E · {k}·D·F_expert = {s.moe_layers} · {s.E} · {k}·{D}·{s.F_expert} = {c.experts:,}")
        r.add("active experts", c.active_experts, count_text(c.active_experts),
              f"MoE layers · top_k · {k}·D·F_expert = {s.moe_layers} · {s.top_k} · {k}·{D}·{s.F_expert}"
              f" = {c.active_experts:,}", "a token goes through top_k routed experts (and every shared one)")
        r.add("router", c.router, count_text(c.router),
              f"MoE layers · D · E = {s.moe_layers} · {D} · {s.E} = {c.router:,}")
    else:
        r.add("mlp", c.mlp, count_text(c.mlp), f"layers · {k}·D·F = {L} · {k}·{D}·{s.F} = {c.mlp:,}", matrices)
        for label in ("experts", "active experts", "router"):
            r.add(label, 0, "0", "a dense model has no routed experts")
    r.add("vectors", c.vectors, count_text(c.vectors),
          f"norm gains{' and biases' if s.norm == 'layernorm' else ''} (2 per layer + 1 final) "
          f"{'+ projection biases ' if s.qkv_bias or s.mlp_bias else ''}= {c.vectors:,}")
    r.add("total", c.total, count_text(c.total),
          "embedding + unembedding + attention + mlp + experts + router + vectors"
          f" = {c.embedding:,} + {c.unembedding:,} + {c.attention:,} + {c.mlp:,} + {c.experts:,}"
          f" + {c.router:,} + {c.vectors:,} = {c.total:,}")
    r.add("active", c.active, count_text(c.active),
          f"total − experts + active experts = {c.total:,} − {c.experts:,} + {c.active_experts:,} = {c.active:,}",
          "active: the parameters one token goes through (the idle experts cost memory, not FLOPs)")
    r.add("non embedding", c.non_embedding, count_text(c.non_embedding),
          f"total − embedding − unembedding = {c.non_embedding:,}",
          "non-embedding leaves out the embedding tables and the output head (Kaplan et al. 2020)")
    r.add("matmul per token", c.matmul_per_token, count_text(c.matmul_per_token),
          "attention + mlp + active experts + router + output head V·D"
          f" = {c.attention:,} + {c.mlp:,} + {c.active_experts:,} + {c.router:,} + {c.output_head:,}"
          f" = {c.matmul_per_token:,}",
          "the input embedding is a row lookup, not a matmul; a tied head still multiplies by V·D")
    if c.mtp:
        r.add("mtp", c.mtp, count_text(c.mtp),
              f"multi-token-prediction modules · their parameters = {s.mtp_layers} · {c.mtp // s.mtp_layers:,}",
              "DeepSeek's MTP modules sit outside the main model (DeepSeek-V3 report, section 2.2)")
    return r
