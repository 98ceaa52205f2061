"""FLOPs of a forward pass, a training step and a whole training run.

Forward, per layer, for B sequences of L new tokens attending to M positions (prefill: M = L):

    matmuls     2 · B·L · (that layer's matrices a token goes through)
    attention   2 · B·L·M·H·K  (scores q·k)  +  2 · B·L·M·H·K_v  (weighted sum of v)

plus the output head 2·B·L·D·V. Per token of a training sequence of T tokens the attention
term is counted by one of four conventions (`ATTENTION`), and every output names the one used:

    palm     dense, both matmuls: 2·n_layers·T·H·(K + K_v); a training step (3 × forward) is
             PaLM's 6N + 12·L·H·Q·T (Chowdhery et al. 2022, appendix B). What an einsum, or a
             kernel that computes the masked half and throws it away, executes. The default.
    causal   dense halved: token t attends to t positions, T/2 on average; what FlashAttention-
             style kernels execute, skipping the masked blocks.
    kaplan   Kaplan et al. 2020 (arXiv 2001.08361), Table 1, row "Attention: Mask":
             2·n_layer·n_ctx·d_attn with d_attn = H·K, half of palm when K_v = K (one matmul's
             worth; their C_forward = 2N + 2·n_layer·n_ctx·d_attn).
    none     6N only (Kaplan's C ≈ 6N, the GPT-3 paper's Table D.1, Chinchilla's C = 6·N·D).

Training: backward = 2 × forward (each matmul needs the gradient of both operands), so a step is
3 × forward: the model FLOPs, what MFU counts. Recomputation adds FLOPs that are executed but
not counted by MFU (`RECOMPUTE`): full runs each layer's forward once more (4 × forward for the
layers; the output head is not recomputed), selective runs the attention core (scores, softmax,
weighted sum) again (Korthikanti et al. 2022, arXiv 2205.05198, section 5). With K = K_v = D/H,
n_layers = l, V, sequence s, full recomputation is Narayanan et al. 2021's
96·B·s·l·h²(1 + s/6h + V/16lh) per iteration exactly (tested).
"""

from __future__ import annotations

import math

from mlgrind.calc.params import attention_matrices, count
from mlgrind.calc.specs import ModelSpec
from mlgrind.calc.working import Report, count_text, flops_text, num

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: Chinchilla, 70B parameters, 1.4T tokens

ATTENTION = {
    "palm": "attention counted dense, both matmuls: 2·T·H·(K + K_v) per token and layer "
            "(PaLM convention, Chowdhery et al. 2022, app. B: 6N + 12·L·H·Q·T per training token)",
    "causal": "attention counted causal: half the dense count, the masked half skipped as "
              "FlashAttention-style kernels do",
    "kaplan": "attention counted as Kaplan et al. 2020, Table 1: 2·n_layer·n_ctx·d_attn forward, "
              "d_attn = H·K (half the dense count)",
    "none": "attention not counted: 6N only (Kaplan et al. 2020's C ≈ 6N; GPT-3's Table D.1)",
}
RECOMPUTE = {
    "none": "no recomputation: a step executes the model FLOPs, 3 × forward",
    "selective": "selective recomputation: the attention core (scores, softmax, weighted sum) "
                 "runs forward again in backward (Korthikanti et al. 2022)",
    "full": "full recomputation: every layer's forward runs again in backward, 4 × forward for "
            "the layers (Narayanan et al. 2021); the output head is not recomputed",
}


def _attention_per_layer(spec: ModelSpec, context: int, attention: str) -> int:
    """One token's attention FLOPs in one layer against `context` positions."""
    dense = 2 * context * spec.H * (spec.K + spec.K_v)
    return {"palm": dense, "causal": dense // 2, "kaplan": 2 * context * spec.H * spec.K,
            "none": 0}[attention]


def attention_flops_per_token(spec: ModelSpec, context: int, attention: str = "palm") -> int:
    """Scores and weighted sum of one token against `context` positions, all layers, forward.

    For one decoded token against M cached positions the dense count (the default) is exact;
    the other conventions are ways of averaging over a training sequence of `context` tokens."""
    return spec.n_layers * _attention_per_layer(spec, context, attention)


def forward_flops(spec: ModelSpec, B: int, L: int, M: int | None = None, attention: str = "palm") -> int:
    """Forward FLOPs of B sequences of L tokens against M positions (default M = L: prefill)."""
    M = L if M is None else M
    return B * L * (2 * count(spec).matmul_per_token + attention_flops_per_token(spec, M, attention))


def forward_flops_per_token(spec: ModelSpec, seq_len: int, attention: str = "palm") -> int:
    """Average over a training sequence of seq_len tokens."""
    return 2 * count(spec).matmul_per_token + attention_flops_per_token(spec, seq_len, attention)


def layer_forward_flops(spec: ModelSpec, B: int, L: int, moe: bool, attention: str = "palm") -> dict[str, int]:
    """One transformer block's forward FLOPs by part (prefill, M = L)."""
    BL = B * L
    parts = {"attention projections": 2 * BL * attention_matrices(spec),
             "attention scores + weighted sum": BL * _attention_per_layer(spec, L, attention)}
    gated = 3 if spec.mlp_gated else 2
    if moe:
        parts["router"] = 2 * BL * spec.D * spec.E
        parts["experts (top-k + shared)"] = (2 * BL * gated * spec.D * spec.F_expert
                                             * (spec.top_k + spec.n_shared_experts))
    else:
        parts["MLP"] = 2 * BL * gated * spec.D * spec.F
    return parts


def _policy(recompute: bool | str) -> str:
    """`recompute` was a flag (True = full) before it named a policy; both are accepted."""
    if isinstance(recompute, bool):
        return "full" if recompute else "none"
    return recompute


def recompute_flops_per_token(spec: ModelSpec, seq_len: int, recompute: bool | str,
                              attention: str = "palm") -> int:
    """FLOPs executed again in backward, per token: none, the attention core, or the layers."""
    policy = _policy(recompute)
    if policy == "full":
        return forward_flops_per_token(spec, seq_len, attention) - 2 * count(spec).output_head
    if policy == "selective":
        return attention_flops_per_token(spec, seq_len, attention)
    return 0


def training_flops_per_token(spec: ModelSpec, seq_len: int, recompute: bool | str = False,
                             attention: str = "palm") -> int:
    """Executed per token: 3 × forward (the model FLOPs), plus what recomputation runs again."""
    return (3 * forward_flops_per_token(spec, seq_len, attention)
            + recompute_flops_per_token(spec, seq_len, recompute, attention))


def training_flops(spec: ModelSpec, tokens: float, seq_len: int, recompute: bool | str = False,
                   attention: str = "palm") -> float:
    return tokens * training_flops_per_token(spec, seq_len, recompute, attention)


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


def chinchilla_params(compute: float) -> float:
    """The model a compute budget trains compute-optimally: C = 6·N·D with D = 20·N gives
    N = sqrt(C / 120)."""
    return math.sqrt(compute / (6 * CHINCHILLA_TOKENS_PER_PARAM))


# ----------------------------------------------------------------------------- the working

CHINCHILLA_ACTIVE = ("Chinchilla: ≈20 tokens per parameter at a fixed compute C = 6·N·D "
                     "(Hoffmann et al. 2022, Table 3), N = the parameters a token goes through")
CHINCHILLA_MOE = ("for an MoE N = active parameters: C = 6·N·D is spent only on the weights a "
                  "token goes through; the idle experts cost memory, not FLOPs. An MoE learns "
                  "more per token than a dense model of its active size, so this is a floor")
CHINCHILLA_TOTAL = ("N = total parameters, for comparison only: it treats the idle experts as "
                    "if every token paid their FLOPs, which no token does")


def attention_text(spec: ModelSpec, T: int, attention: str, layer: bool = False) -> str:
    """A convention's attention term with its numbers: forward, per token over all layers, or
    (`layer`) one layer's for a whole sequence of T tokens."""
    L, H, K, K_v = spec.n_layers, spec.H, spec.K, spec.K_v
    value = T * _attention_per_layer(spec, T, attention) if layer else attention_flops_per_token(spec, T, attention)
    each, n = ("T²", f"{T:,}²") if layer else ("layers·T", f"{L}·{T:,}")
    return {
        "palm": f"2·{each}·H·(K + K_v) = 2·{n}·{H}·({K} + {K_v}) = {num(value)}",
        "causal": f"{each}·H·(K + K_v) = {n}·{H}·({K} + {K_v}) = {num(value)}",
        "kaplan": f"2·{each}·d_attn = 2·{n}·({H}·{K}) = {num(value)}",
        "none": "0 (6N only)",
    }[attention]


def report(spec: ModelSpec, seq_len: int = 2048, tokens: float | None = None,
           recompute: str = "none", attention: str = "palm") -> Report:
    """Tokens for the model (Chinchilla), then FLOPs per layer, per token and for the run."""
    s, c = spec, count(spec)
    moe = bool(s.moe_layers)
    r = Report(f"{s.name}: training FLOPs at sequence {seq_len:,}, attention {attention}",
               context={"model": s.name, "attention": attention, "recompute": recompute})
    convention = ATTENTION[attention]
    r.add("active params", c.active, count_text(c.active),
          f"total − idle experts = {c.total:,} − {c.experts - c.active_experts:,} = {c.active:,}"
          if moe else f"total = {c.total:,}: a dense model's parameters are all active",
          "see `mlgrind calc params`")
    chinchilla_active = chinchilla_tokens(c.active)
    r.add("chinchilla tokens active", chinchilla_active, count_text(chinchilla_active),
          f"20 · N_active = 20 · {c.active:,} = {num(chinchilla_active)}",
          CHINCHILLA_ACTIVE, CHINCHILLA_MOE if moe else "")
    chinchilla_total = chinchilla_tokens(c.total)
    r.add("chinchilla tokens total", chinchilla_total, count_text(chinchilla_total),
          f"20 · N_total = 20 · {c.total:,} = {num(chinchilla_total)}",
          CHINCHILLA_TOTAL if moe else "a dense model: total = active")
    kinds = [("dense layer", False)] * bool(s.dense_layers) + [("MoE layer", True)] * moe
    for kind, is_moe in kinds:
        for part, v in layer_forward_flops(s, 1, seq_len, is_moe, attention).items():
            r.add(f"{kind} fwd {part}", v, flops_text(v), _part_formula(s, part, seq_len, attention, v),
                  f"one layer, one sequence of T = {seq_len:,} tokens (--seq-len)",
                  convention if part.startswith("attention scores") else "")
    forward = forward_flops_per_token(s, seq_len, attention)
    r.add("attention per token", attention_flops_per_token(s, seq_len, attention),
          flops_text(attention_flops_per_token(s, seq_len, attention)),
          attention_text(s, seq_len, attention), convention)
    r.add("forward per token", forward, flops_text(forward),
          f"2 · N_matmul + attention = 2 · {c.matmul_per_token:,} + "
          f"{num(attention_flops_per_token(s, seq_len, attention))} = {num(forward)}",
          "N_matmul: the weights a token is multiplied by, output head included "
          "(the input embedding is a lookup)", convention)
    model = 3 * forward
    r.add("model flops per token", model, flops_text(model),
          f"3 × forward = 3 × {num(forward)} = {num(model)}",
          "backward = 2 × forward: each matmul needs the gradients of both operands")
    executed = training_flops_per_token(s, seq_len, recompute, attention)
    r.add("training per token", executed, flops_text(executed),
          f"model + recomputed = {num(model)} + {num(executed - model)} = {num(executed)}",
          RECOMPUTE[recompute])
    six_n = 6 * c.matmul_per_token
    r.add("6N per token", six_n, flops_text(six_n),
          f"6 · N_matmul = 6 · {c.matmul_per_token:,} = {num(six_n)}", ATTENTION["none"],
          f"the attention term adds {model / six_n - 1:.1%} to it here")
    default = tokens is None
    tokens = chinchilla_active if default else tokens
    r.add("tokens", tokens, count_text(tokens),
          f"Chinchilla tokens for the active parameters = {num(tokens)}" if default else "",
          "no --tokens: the compute-optimal count above" if default else "")
    r.add("model flops total", tokens * model, flops_text(tokens * model),
          f"tokens × model per token = {num(tokens)} × {num(model)} = {num(tokens * model)}",
          "what MFU counts")
    r.add("training total", tokens * executed, flops_text(tokens * executed),
          f"tokens × training per token = {num(tokens)} × {num(executed)} = {num(tokens * executed)}",
          "executed, recomputation included")
    return r


def _part_formula(spec: ModelSpec, part: str, T: int, attention: str, value: int) -> str:
    s, gated = spec, 3 if spec.mlp_gated else 2
    if part == "attention projections":
        return f"2·T·(attention matrices) = 2·{T:,}·{attention_matrices(s):,} = {num(value)}"
    if part.startswith("attention scores"):
        return attention_text(s, T, attention, layer=True)
    if part == "router":
        return f"2·T·D·E = 2·{T:,}·{s.D}·{s.E} = {num(value)}"
    if part == "MLP":
        return f"2·T·{gated}·D·F = 2·{T:,}·{gated}·{s.D}·{s.F} = {num(value)}"
    return (f"2·T·{gated}·D·F_expert·(top_k + shared) = 2·{T:,}·{gated}·{s.D}·{s.F_expert}"
            f"·({s.top_k} + {s.n_shared_experts}) = {num(value)}")
