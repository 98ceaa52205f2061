"""Seed "Inference": KV-cache decoding and speculative decoding.

References: `mlgrind.ref.inference` (forward, generate) and `mlgrind.ref.speculative`.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref import inference as ref
from mlgrind.ref import speculative as ref_spec

from ..catalog import Check, Exercise
from ..compare import Mismatch, expect_array, function
from .attention import CARRIED_ROPE, attend_check, rope_check

PROMPT, TOTAL, BATCH = 3, 7, 2  # a 3-token prompt, then 4 decode steps

KV_CONTRACT = (
    '''"""KV-cache decoding: prefill the prompt once, then run one new token per step against the cache.

    B batch  L new positions  M positions in the cache (old + new)  D model width  V vocab
    H query heads  G kv heads  K head size  F MLP width

The model (no norms, to keep it short): model.config has V, D, H, G, K, F, n_layers;
model.embed_VD, model.unembed_DV; model.blocks[i] has w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD,
w_in_DF, w_out_FD.

    x_BLD = embed_VD[tokens_BL]
    per block:   q_BLHK = rope(x · w_q)    k_BLGK = rope(x · w_k)    v_BLGK = x · w_v
                 x = x + gqa_attend(q, k_BMGK, v_BMGK, causal mask by position)[0] · w_o
                 x = x + relu(x · w_in) · w_out
    logits_BLV = x_BLD · unembed_DV

A cache is any object with lists .k and .v: cache.k[i] is layer i's k_BMGK (after RoPE),
cache.v[i] its v_BMGK; an empty one has M = 0. The tokens you run sit at positions
M_cached .. M_cached + L − 1, where M_cached is what the cache held before the call.
"""

from types import SimpleNamespace

import numpy as np
'''
    + CARRIED_ROPE
    + '''

def gqa_attend(q_BLHK, k_BMGK, v_BMGK, mask_LM):
    """Carried over from the gqa exercise: paste yours, or `from gqa import gqa_attend`.
    Returns (out_BLHK, probs_BGHLM)."""
    raise NotImplementedError


def forward(model, tokens_BL, cache=None):
    """Logits for tokens_BL placed right after what the cache holds; appends their k and v to
    the cache. Without a cache: the plain causal forward of tokens_BL from position 0.
    Returns logits_BLV."""
    raise NotImplementedError


def generate(model, prompt_BL, n_new):
    """Greedy decoding: one prefill, then n_new cached steps of one token each (the argmax of
    the last position's logits). Returns tokens_BL: the prompt, then the n_new tokens.
    An empty cache: SimpleNamespace(k=[...], v=[...]) with arrays of shape (B, 0, G, K)."""
    raise NotImplementedError
'''
)


def _model(seed: int):
    rng = np.random.default_rng(seed)
    model = ref.init_model(ref.Config(), rng)
    return model, rng.integers(0, model.config.V, size=(BATCH, TOTAL))


def _no_cache_check(learner) -> None:
    model, tokens_BL = _model(1)
    expected = ref.forward(model, tokens_BL)
    expect_array("logits_BLV", function(learner, "forward")(model, tokens_BL), expected)


def _stepwise(forward, model, tokens_BL):
    """Prefill the prompt, then decode the rest one token at a time, on a reference cache."""
    cache = ref.KVCache.empty(model.config, BATCH)
    logits = [forward(model, tokens_BL[:, :PROMPT], cache)]
    logits += [forward(model, tokens_BL[:, t : t + 1], cache) for t in range(PROMPT, TOTAL)]
    return logits, cache


def _decode_check(learner) -> None:
    model, tokens_BL = _model(2)
    full_BLV = ref.forward(model, tokens_BL)
    logits, _ = _stepwise(function(learner, "forward"), model, tokens_BL)
    expect_array(f"logits_BLV (prefill of {PROMPT} tokens)", logits[0], full_BLV[:, :PROMPT])
    for t, got in zip(range(PROMPT, TOTAL), logits[1:]):
        expect_array(
            f"logits_BLV (decode step at position {t}; it must equal the full "
            f"forward's logits there)",
            got,
            full_BLV[:, t : t + 1],
        )


def _cache_check(learner) -> None:
    model, tokens_BL = _model(3)
    _, expected = _stepwise(ref.forward, model, tokens_BL)
    _, cache = _stepwise(function(learner, "forward"), model, tokens_BL)
    for i in range(model.config.n_layers):
        for kind in ("k", "v"):
            got, e = getattr(cache, kind)[i], getattr(expected, kind)[i]
            prompt_right = (
                lambda g, e=e: np.allclose(g[:, :PROMPT], e[:, :PROMPT]),
                (
                    f"the prompt's entries (m < {PROMPT}) are right, those written by "
                    f"decode steps are not: a new token's position is the cache's "
                    f"length, not 0"
                ),
            )
            expect_array(
                f"{kind}_BMGK (cache.{kind}[{i}] after {TOTAL} positions)",
                got,
                e,
                [prompt_right] if kind == "k" else (),
            )  # only keys are rotated


def _generate_check(learner) -> None:
    model, tokens_BL = _model(4)
    expected = ref.generate(model, tokens_BL[:, :PROMPT], n_new=5)
    got = function(learner, "generate")(model, tokens_BL[:, :PROMPT], 5)
    expect_array("tokens_BL (prompt then 5 greedy tokens)", got, expected)


# ---------------------------------------------------------------- speculative decoding

SPEC_CONTRACT = '''"""Speculative sampling: a cheap draft proposes, the target verifies, the output is exactly p's.

A model is a function: context (a tuple of token ids) → p_V, probabilities over the vocabulary.
One step: the draft q proposes gamma tokens one at a time; the target p scores all gamma + 1
prefixes (on hardware in ONE parallel pass); draft token x is kept with probability
min(1, p(x) / q(x)); the first rejected one is replaced by a sample from norm(max(0, p − q)),
and the step ends. If all gamma survive, a bonus token is sampled from the target's
distribution after them. A step emits 1 to gamma + 1 tokens.
"""

import numpy as np


def residual(p_V, q_V):
    """norm(max(0, p − q)): where the target wants more mass than the draft gave. Returns r_V."""
    raise NotImplementedError


def acceptance_rate(p_V, q_V):
    """α, the probability that one draft token x ~ q survives the test. Returns a float."""
    raise NotImplementedError


def expected_tokens_per_step(alpha, gamma):
    """Mean tokens one step emits when each draft token survives with probability alpha."""
    raise NotImplementedError


def step_distribution(target, draft, context, gamma):
    """The exact probability of every block of tokens one step can emit, found by walking the
    tree of draft choices (no sampling). Returns {tuple of token ids: probability}."""
    raise NotImplementedError


def speculative_step(target, draft, context, gamma, rng):
    """One step sampled with rng (a np.random.Generator). Returns the tuple of emitted tokens."""
    raise NotImplementedError
'''

V, GAMMA, SAMPLES = 3, 2, 2000
CONTEXT = (2, 0)


def _toy_model(seed: int, sharpness: float):
    """Next-token probabilities that depend on the last two tokens and the context's parity."""
    z = sharpness * np.random.default_rng(seed).normal(size=(V + 1, V + 1, 2, V))
    table = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)

    def model(context):
        last, before = (context + (V, V))[-1], (context[-2] if len(context) > 1 else V)
        return table[last, before, len(context) % 2]

    return model


TARGET, DRAFT = _toy_model(0, 1.0), _toy_model(1, 2.0)


def _pq(seed: int):
    rng = np.random.default_rng(seed)
    p_V, q_V = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    return p_V, q_V


def _residual_check(learner) -> None:
    p_V, q_V = _pq(1)
    expect_array("r_V", function(learner, "residual")(p_V, q_V), ref_spec.residual(p_V, q_V))


def _acceptance_check(learner) -> None:
    p_V, q_V = _pq(2)
    expected = ref_spec.acceptance_rate(p_V, q_V)
    got = function(learner, "acceptance_rate")(p_V, q_V)
    expect_array(
        "alpha",
        got,
        expected,
        [
            (
                lambda g: np.isclose(g, np.sum(p_V * q_V)),
                (
                    "that is Σ p·q, the chance two independent samples agree; a draft token "
                    "survives with probability Σ_x q(x) · min(1, p(x)/q(x))"
                ),
            )
        ],
    )


def _tokens_per_step_check(learner) -> None:
    for alpha, gamma in ((0.6, 3), (0.9, 5), (1.0, 4)):
        expected = ref_spec.expected_tokens_per_step(alpha, gamma)
        got = function(learner, "expected_tokens_per_step")(alpha, gamma)
        expect_array(f"tokens per step (alpha={alpha}, gamma={gamma})", got, expected)


def _step_distribution_check(learner) -> None:
    expected = ref_spec.step_distribution(TARGET, DRAFT, CONTEXT, GAMMA)
    got = function(learner, "step_distribution")(TARGET, DRAFT, CONTEXT, GAMMA)
    if not isinstance(got, dict):
        raise Mismatch(
            f"step_distribution must return a dict {{tokens tuple: probability}}, "
            f"got a {type(got).__name__}"
        )
    got = {tuple(int(t) for t in block): float(p) for block, p in got.items()}
    total = sum(got.values())
    lines = []
    for block, p in sorted(expected.items(), key=lambda item: -item[1]):
        mine = got.get(block, 0.0)
        if not np.isclose(mine, p, atol=1e-9):
            kind = (
                "all drafts kept, then the bonus token"
                if len(block) == GAMMA + 1
                else f"{len(block) - 1} draft(s) kept, then a replacement"
            )
            lines.append(f"block {block} ({kind}): expected probability {p:.6g}, got {mine:.6g}")
    extra = sorted(set(got) - set(expected))
    if extra:
        lines.append(f"blocks that one step can never emit: {extra[:3]}")
    if lines:
        n = len(lines)
        raise Mismatch(
            "\n".join(
                [
                    (
                        f"step_distribution (gamma={GAMMA}, V={V}): {n} block"
                        f"{'s' * (n != 1)} wrong; your probabilities sum to "
                        f"{total:.6g}"
                    ),
                    *lines[:4],
                ]
            )
        )


def _share(counts: np.ndarray, probabilities: np.ndarray) -> int | None:
    """The first category whose measured share is off by more than 4.5 standard errors."""
    measured = counts / SAMPLES
    slack = 4.5 * np.sqrt(probabilities * (1 - probabilities) / SAMPLES) + 1e-3
    off = np.flatnonzero(np.abs(measured - probabilities) > slack)
    return int(off[0]) if off.size else None


def _sampling_check(learner) -> None:
    step = function(learner, "speculative_step")
    rng = np.random.default_rng(0)
    blocks = [step(TARGET, DRAFT, CONTEXT, GAMMA, rng) for _ in range(SAMPLES)]
    for block in blocks:
        if not isinstance(block, tuple | list) or not 1 <= len(block) <= GAMMA + 1:
            raise Mismatch(
                f"speculative_step must return a tuple of 1 to gamma + 1 = "
                f"{GAMMA + 1} tokens; it returned {block!r}"
            )
    p_V = TARGET(CONTEXT)
    first = np.bincount([int(b[0]) for b in blocks], minlength=V)[:V]
    x = _share(first, p_V)
    if x is not None:
        raise Mismatch(
            f"the first emitted token must follow the target exactly: target(context) "
            f"gives token {x} probability {p_V[x]:.3f}, your steps emitted it first "
            f"in {first[x] / SAMPLES:.3f} of {SAMPLES}. A rejected draft token is "
            f"replaced by a sample from residual(p, q), never from p or q."
        )
    exact = ref_spec.step_distribution(TARGET, DRAFT, CONTEXT, GAMMA)
    by_length = np.zeros(GAMMA + 2)
    for block, probability in exact.items():
        by_length[len(block)] += probability
    lengths = np.bincount([len(b) for b in blocks], minlength=GAMMA + 2)
    n = _share(lengths[1:], by_length[1:])
    if n is not None:
        raise Mismatch(
            f"steps that emit {n + 1} token(s): expected a share of "
            f"{by_length[n + 1]:.3f}, you emitted {lengths[n + 1] / SAMPLES:.3f} of "
            f"{SAMPLES}. Keep x with probability min(1, p(x)/q(x)); stop at the first "
            f"rejection; add the bonus token only when every draft survived."
        )


EXERCISES = [
    Exercise(
        name="kv_cache",
        title="KV-cache decoding",
        goal="Prefill once, then decode token by token against cached k, v; equal to full forward.",
        contract=KV_CONTRACT,
        hints=(
            (
                "Get forward right without a cache first: it is your GQA attention with RoPE "
                "and an MLP, in a loop over blocks, on a residual stream."
            ),
            (
                "With a cache: concatenate this call's k and v onto cache.k[i] and cache.v[i] "
                "along M, store them back, and attend over the whole of them."
            ),
            (
                "Positions: the new tokens start where the cache ends, cache.k[0].shape[1]. The "
                "queries and the new keys are rotated at those positions."
            ),
            (
                "The causal mask compares query positions with key positions 0 .. M − 1; during "
                "a decode step the single query sees the whole cache."
            ),
            (
                "generate: prefill with the prompt, then feed back the argmax of the last logits "
                "as a (B, 1) array, n_new times."
            ),
        ),
        checks=(
            Check("rope (carried over): y_BLHK", rope_check),
            attend_check(0, "out_BLHK", lambda args: ()),
            Check("forward without a cache: logits_BLV", _no_cache_check),
            Check("prefill + decode: logits_BLV per step", _decode_check),
            Check("cache: k_BMGK and v_BMGK per layer", _cache_check),
            Check("generate: tokens_BL", _generate_check),
        ),
    ),
    Exercise(
        name="speculative",
        title="Speculative decoding",
        goal="Draft γ tokens, verify with min(1, p/q), resample from the residual; output is p's.",
        contract=SPEC_CONTRACT,
        hints=(
            (
                "residual and acceptance_rate are one line each: think of where min(p, q) and "
                "max(0, p − q) come from."
            ),
            (
                "expected_tokens_per_step: the step emits its first token for sure, the second "
                "if one draft survived, … a geometric series. Mind alpha = 1."
            ),
            (
                "step_distribution: a recursive walk. At each depth, every draft token x with "
                "q(x) > 0 is kept with probability q(x)·min(1, p(x)/q(x)) (go deeper); what is "
                "rejected in total is spread over the residual (the step ends there)."
            ),
            (
                "speculative_step: sample the gamma drafts first (each from the draft given the "
                "context plus the drafts so far), then the target's distributions, then test "
                "them in order."
            ),
        ),
        checks=(
            Check("residual: r_V", _residual_check),
            Check("acceptance_rate: alpha", _acceptance_check),
            Check("expected_tokens_per_step", _tokens_per_step_check),
            Check("step_distribution: exact", _step_distribution_check),
            Check("speculative_step: samples follow the target", _sampling_check),
        ),
    ),
]
