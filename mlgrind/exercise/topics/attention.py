"""Seed "Implement full multi-head attention with suffix notation + einsum", GQA, RoPE, MLA.

References: `mlgrind.ref.attention`, `mlgrind.ref.rope`, `mlgrind.ref.mla`, under the same names.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np

from mlgrind.ref import attention as ref
from mlgrind.ref import mla as ref_mla
from mlgrind.ref import rope as ref_rope

from ..catalog import Check, Exercise
from ..compare import Mismatch, Symptom, expect_array, function, letters, parts
from .common import Pair

B, L, D, H, G, K = 2, 5, 6, 4, 2, 3  # GQA: H / G = 2 query heads per kv head

NOTATION = """\
    B batch  L query positions  M key/value positions (= L here: self-attention)
    D model width  H query heads  K size of one head"""

MASK_MISSING = (
    "only the last query position is right, and it is the one position allowed to "
    "see every key: is the causal mask missing?"
)


def _mask_symptom(name, args, d_out, expected):
    if not name.startswith("y_"):
        return []
    return [
        (
            lambda got: (
                np.allclose(got[:, -1], expected[:, -1])
                and not np.allclose(got[:, 0], expected[:, 0])
            ),
            MASK_MISSING,
        )
    ]


def scaled_by(wrong: str, right: str, why: str) -> str:
    return f"scores scaled by {wrong}; attention scales by {right}: {why}"


OVER_K = scaled_by(
    "1/K (K = {K})",
    "1/√K",
    "q·k adds K products of unit variance, so its variance is K, and dividing by √K (the "
    "standard deviation) brings it back to 1",
)


def fully_masked_rows(name: str) -> list[Symptom]:
    """NaN in some query rows only: those rows' softmax saw nothing but −inf."""
    axis = letters(name).find("L")
    if axis < 0:
        return []

    def rows(got):
        others = tuple(i for i in range(got.ndim) if i != axis)
        return np.flatnonzero(np.isnan(got).any(axis=others))

    return [
        (
            lambda got: 0 < len(rows(got)) < got.shape[axis],
            lambda got: (
                f"row l={', '.join(map(str, rows(got)))} is fully masked: exp(−inf − (−inf)) is "
                f"NaN. Every query here may read at least one key (under a causal mask, itself), "
                f"so no row should be empty: is your mask inverted, keeping the keys it should "
                f"hide?"
            ),
        )
    ]


BACKWARD_UNSCALED = (
    "your backward leaves out the 1/√K that scaled the scores: d_scores carries it too, so "
    "every gradient that flows through q or k is √K times too large"
)


def _attention_symptoms(forward, backward, grads: tuple[str, ...]):
    """Pair symptoms for MHA and GQA: a missing mask, an empty mask row, scores scaled by 1/K,
    and a backward without the 1/√K.

    Scores · 1/K are scores · 1/√K with the queries already divided by √K: the reference run
    on w_q_DHK / √K gives that bug's output and gradients (d_w_q picks up the 1/√K too). A
    backward without the 1/√K makes the q and k paths √K too large; the v path alone is the
    reference's d_x with w_q and w_k zeroed in `saved`, where only d_x reads them."""

    def symptoms(name, args, d_out, expected):
        found = [*_mask_symptom(name, args, d_out, expected), *fully_masked_rows(name)]
        x_BLD, w_q_DHK, *rest = args
        K = w_q_DHK.shape[-1]
        y_BLD, saved_over_k = forward(x_BLD, w_q_DHK / np.sqrt(K), *rest)
        if name.startswith("y_"):
            found.append((lambda got: np.allclose(got, y_BLD), OVER_K.format(K=K)))
            return found
        over_k = dict(zip(grads, backward(d_out, saved_over_k)))[name]
        if name.startswith("d_w_q"):
            over_k = over_k / np.sqrt(K)
        found.append((lambda got: np.allclose(got, over_k), OVER_K.format(K=K)))
        unscaled = None
        if name.startswith(("d_w_q", "d_w_k")):
            unscaled = np.sqrt(K) * expected
        elif name.startswith("d_x"):
            _, saved = forward(*args)
            no_qk = (saved[0], np.zeros_like(saved[1]), np.zeros_like(saved[2]), *saved[3:])
            v_path = backward(d_out, no_qk)[0]
            unscaled = v_path + np.sqrt(K) * (expected - v_path)
        if unscaled is not None:
            found.append((lambda got: np.allclose(got, unscaled), BACKWARD_UNSCALED))
        return found

    return symptoms


def _causal_check(forward: str, make):
    """A property, not a comparison: editing a token must not change any earlier output."""

    def run(learner) -> None:
        (x_BLD, *weights), _ = make(np.random.default_rng(7), 1)
        fn = function(learner, forward)
        y_BLD, _ = parts(fn(x_BLD, *weights), ("y_BLD", "saved"), forward)
        edited_BLD = x_BLD.copy()
        edited_BLD[:, 3] += 1.0
        y_edited_BLD, _ = parts(fn(edited_BLD, *weights), ("y_BLD", "saved"), forward)
        changed = np.flatnonzero(~np.isclose(np.asarray(y_BLD), y_edited_BLD).all(axis=(0, 2)))
        if changed.size and changed[0] < 3:
            raise Mismatch(
                f"changing the token at l=3 changed y_BLD at l="
                f"{', '.join(map(str, changed[changed < 3]))}: a query may read only "
                f"keys at or before its own position (mask scores where m > l with "
                f"−inf before the softmax)"
            )

    return Check("causal: no position reads a later one", run)


MHA_GRADS = ("d_x_BLD", "d_w_q_DHK", "d_w_k_DHK", "d_w_v_DHK", "d_w_o_HKD")
GQA_GRADS = ("d_x_BLD", "d_w_q_DHK", "d_w_k_DGK", "d_w_v_DGK", "d_w_o_HKD")


def _mha_inputs(rng, S):
    def w(*shape, fan_in):
        return rng.standard_normal(shape) / np.sqrt(fan_in)

    x_BLD = rng.standard_normal((B, L, D))
    weights = (
        w(D, H, K, fan_in=D),
        w(D, H, K, fan_in=D),
        w(D, H, K, fan_in=D),
        w(H, K, D, fan_in=H * K),
    )
    return (x_BLD, *weights), rng.standard_normal((B, L, D))


def _gqa_inputs(rng, S):
    def w(*shape, fan_in):
        return rng.standard_normal(shape) / np.sqrt(fan_in)

    x_BLD = rng.standard_normal((B, L, D))
    weights = (
        w(D, H, K, fan_in=D),
        w(D, G, K, fan_in=D),
        w(D, G, K, fan_in=D),
        w(H, K, D, fan_in=H * K),
    )
    return (x_BLD, *weights), rng.standard_normal((B, L, D))


MHA_CONTRACT = f'''"""Multi-head causal self-attention, forward and backward, with suffixes and einsum.

{NOTATION}

    q_BLHK = x_BLD · w_q_DHK     k_BMHK = x_BMD · w_k_DHK     v_BMHK = x_BMD · w_v_DHK
    scores_BHLM = q · k / sqrt(K),  masked where m > l       probs_BHLM = softmax over M
    out_BLHK = probs · v                                      y_BLD = out_BLHK · w_o_HKD

Self-attention: the keys and values come from the same x, so x_BMD is x_BLD under another name.
"""

import numpy as np


def mha_forward(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD):
    """Returns (y_BLD, saved)."""
    raise NotImplementedError


def mha_backward(d_y_BLD, saved):
    """Returns (d_x_BLD, d_w_q_DHK, d_w_k_DHK, d_w_v_DHK, d_w_o_HKD)."""
    raise NotImplementedError
'''

GQA_CONTRACT = f'''"""Grouped-query attention: H query heads share G kv heads (H / G query heads per group).

{NOTATION}
    G kv heads. G = H is plain multi-head attention, G = 1 is multi-query attention.

Query head h reads kv head h // (H / G): heads 0 .. H/G − 1 form group 0, and so on. Inside,
split q's H axis into (G, H / G): q_BLGHK, where that H counts the query heads of one group.
"""

import numpy as np


def gqa_attend(q_BLHK, k_BMGK, v_BMGK, mask_LM):
    """The attention core. mask_LM is True where query l may read key m. Every row holds at
    least one True: a query with no key to read has no softmax (exp(−inf − (−inf)) is NaN),
    so callers never pass such a row.

    Scores are scaled by 1 / sqrt(K); masked keys get probability 0.
    Returns (out_BLHK, probs_BGHLM).
    """
    raise NotImplementedError


def gqa_forward(x_BLD, w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD):
    """Causal self-attention with G kv heads. Returns (y_BLD, saved)."""
    raise NotImplementedError


def gqa_backward(d_y_BLD, saved):
    """Returns (d_x_BLD, d_w_q_DHK, d_w_k_DGK, d_w_v_DGK, d_w_o_HKD). A kv head's gradient
    collects from every query head of its group."""
    raise NotImplementedError
'''


def _attend_inputs(seed: int):
    rng = np.random.default_rng(seed)
    M = L + 2  # a query block against a longer cache: positions, not indices, decide the mask
    q_BLHK = rng.standard_normal((B, L, H, K))
    k_BMGK, v_BMGK = rng.standard_normal((B, M, G, K)), rng.standard_normal((B, M, G, K))
    mask_LM = ref.causal_mask_LM(np.arange(2, 2 + L), np.arange(M))
    return q_BLHK, k_BMGK, v_BMGK, mask_LM


def attend_check(i: int, name: str, symptoms):
    """Output i of gqa_attend; symptoms(args) adds causes for the output (i = 0) only."""

    def run(learner) -> None:
        args = _attend_inputs(11)
        q_BLHK, *kv_mask = args
        expected = ref.gqa_attend(*args)[i]
        got = parts(
            function(learner, "gqa_attend")(*args), ("out_BLHK", "probs_BGHLM"), "gqa_attend"
        )[i]
        over_k = ref.gqa_attend(q_BLHK / np.sqrt(K), *kv_mask)[i]  # scores · 1/K, not 1/√K
        expect_array(
            name,
            got,
            expected,
            [
                *(symptoms(args) if i == 0 else ()),
                *fully_masked_rows(name),
                (lambda g: np.allclose(g, over_k), OVER_K.format(K=K)),
            ],
        )

    return Check(f"gqa_attend: {name}", run)


def _tiled_heads(args):
    """The classic GQA slip: query head h reading kv head h % G (np.tile) instead of
    h // (H/G) (np.repeat). Expanding kv that way and running G = H gives its output."""
    q_BLHK, k_BMGK, v_BMGK, mask_LM = args
    tile = (1, 1, H // G, 1)
    wrong = ref.gqa_attend(q_BLHK, np.tile(k_BMGK, tile), np.tile(v_BMGK, tile), mask_LM)[0]
    return [
        (
            lambda got: np.allclose(got, wrong),
            (
                "query head h reads kv head h % G here (np.tile order); in this contract head h "
                "reads kv head h // (H/G): consecutive query heads share a kv head"
            ),
        )
    ]


ROPE_CONTRACT = '''"""Rotary position embeddings (RoFormer): rotate each channel pair by an angle ∝ position.

    B batch  L positions  H heads  K size of one head (even)

Channels 2i and 2i+1 of each head form a pair (x_2i, x_2i+1), read as a 2-D vector and rotated
counter-clockwise (a positive angle turns the first axis towards the second) by the angle
a = position · theta^(−2i/K):

    y_2i   = x_2i · cos a − x_2i+1 · sin a
    y_2i+1 = x_2i · sin a + x_2i+1 · cos a

The same function is applied to q and to k; then the score q·k depends only on the offset
between their positions. `positions_L` are positions, not indices:
a decode step at position 17 passes positions_L = [17].
"""

import numpy as np


def rope(x_BLHK, positions_L, theta=10000.0):
    """Returns y_BLHK, x_BLHK with each channel pair rotated."""
    raise NotImplementedError


def rope_backward(d_y_BLHK, positions_L, theta=10000.0):
    """Returns d_x_BLHK, the gradient with respect to x_BLHK given d_y_BLHK."""
    raise NotImplementedError
'''

RK = 6  # RoPE head size: 3 channel pairs


def _rope_inputs(seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, L, 3, RK)), np.array([0, 1, 2, 7, 40])


NEOX = (
    "you pair channel i with i + K/2 (the GPT-NeoX 'rotate half' layout); this contract pairs "
    "channels 2i and 2i + 1, as RoFormer does"
)
CLOCKWISE = (
    "each pair is rotated the other way (clockwise, by −a): the sin terms have the wrong sign; "
    "y_2i = x_2i · cos a − x_2i+1 · sin a and y_2i+1 = x_2i · sin a + x_2i+1 · cos a"
)


def _neox(x_BLHK, positions_L, theta):
    """RoPE as the other common layout does it: channel i paired with i + K/2."""
    half = x_BLHK.shape[-1] // 2
    order = np.ravel(np.column_stack([np.arange(half), np.arange(half) + half]))
    wrong = np.empty_like(x_BLHK)
    wrong[..., order] = ref_rope.rope(x_BLHK[..., order], positions_L, theta)
    return wrong


def _rope_symptoms(x_BLHK, positions_L, theta) -> list[Symptom]:
    """Rotating by −a is the reference at −position; θ^(−i/K) is the reference at √θ."""
    causes = (
        (_neox(x_BLHK, positions_L, theta), NEOX),
        (ref_rope.rope(x_BLHK, -positions_L, theta), CLOCKWISE),
        (_neox(x_BLHK, -positions_L, theta), f"{NEOX}; and {CLOCKWISE}"),
        (
            ref_rope.rope(x_BLHK, positions_L, np.sqrt(theta)),
            (
                "pair i turns by position · θ^(−i/K): the exponent is −2i/K (i counts pairs, "
                "2i is the pair's first channel)"
            ),
        ),
    )
    return [(lambda got, wrong=wrong: np.allclose(got, wrong), why) for wrong, why in causes]


def rope_check(learner) -> None:
    x_BLHK, positions_L = _rope_inputs(3)
    for theta in (10000.0, 500.0):
        expected = ref_rope.rope(x_BLHK, positions_L, theta)
        got = function(learner, "rope")(x_BLHK, positions_L, theta)
        symptoms = _rope_symptoms(x_BLHK, positions_L, theta)
        expect_array(f"y_BLHK (theta={theta:g})", got, expected, symptoms)


def _rope_relative_check(learner) -> None:
    """RoPE's point, checked on the learner's function alone: shift both positions, same score."""
    rng = np.random.default_rng(4)
    q_BLHK, k_BLHK = rng.standard_normal((2, 1, 1, 1, RK))
    fn = function(learner, "rope")

    def score(l, m):
        rotated_q, rotated_k = fn(q_BLHK, np.array([l])), fn(k_BLHK, np.array([m]))
        return float(np.sum(np.asarray(rotated_q) * np.asarray(rotated_k)))

    near, far = score(3, 1), score(13, 11)
    if not np.isclose(near, far):
        raise Mismatch(
            f"q·k after RoPE with q at 3, k at 1 is {near:.6g}, with q at 13, k at 11 "
            f"it is {far:.6g}: the same offset must give the same score. Rotate each "
            f"pair by an angle proportional to the position, nothing else."
        )


def _rope_backward_check(learner) -> None:
    d_y_BLHK, positions_L = _rope_inputs(5)
    expected = ref_rope.rope_backward(d_y_BLHK, positions_L)
    got = function(learner, "rope_backward")(d_y_BLHK, positions_L)
    forward = ref_rope.rope(d_y_BLHK, positions_L)
    expect_array(
        "d_x_BLHK",
        got,
        expected,
        [
            (
                lambda g: np.allclose(g, forward),
                (
                    "it is d_y rotated forward, by +a, like rope itself; the gradient of a "
                    "rotation is its transpose, the rotation back by −a"
                ),
            )
        ],
    )


# ---------------------------------------------------------------- MLA

MB, ML, MD, MH, MK, MC, MR = 2, 6, 8, 3, 4, 5, 2

CARRIED_ROPE = '''

def rope(x_BLHK, positions_L, theta=10000.0):
    """Carried over from the rope exercise: paste yours here, or replace this function with
    `from rope import rope` when your rope.py sits in this folder."""
    raise NotImplementedError
'''

MLA_CONTRACT = (
    '''"""DeepSeek's Multi-head Latent Attention: cache a C-dim latent, not per-head keys and values.

    B batch  L query positions  M cached positions  D model width  H heads  K head size
    C latent size  R size of the decoupled RoPE key (shared by all heads)

Per token the cache holds c_kv_C = x_D · w_dkv_DC and one rotated key
k_rope_R = rope(x_D · w_kr_DR): C + R numbers per layer instead of 2·H·K. Per head,

    k_MHK = c_kv_MC · w_uk_CHK    v_MHK = c_kv_MC · w_uv_CHK    q_LHK = x_LD · w_q_DHK
    q_rope_LHR = rope(x_LD · w_qr_DHR)
    scores_HLM = (q · k + q_rope · k_rope) / sqrt(K + R), causal, softmax over M
    y_LD = (probs · v) · w_o_HKD

`w` has the fields w_dkv_DC, w_uk_CHK, w_uv_CHK, w_kr_DR, w_q_DHK, w_qr_DHR, w_o_HKD.
rope rotates a heads axis: give the shared key one, x[:, :, None, :], and drop it after.
"""

import numpy as np
'''
    + CARRIED_ROPE
    + '''

def mla_latent_cache(x_BMD, positions_M, w):
    """What MLA caches per token. Returns (c_kv_BMC, k_rope_BMR), k_rope already rotated."""
    raise NotImplementedError


def mla_rope_query(x_BLD, positions_L, w):
    """Each head's rotated R-dim query part. Returns q_rope_BLHR."""
    raise NotImplementedError


def mla_naive(x_BLD, w):
    """Causal self-attention with k and v up-projected per head (the training form).
    Returns y_BLD."""
    raise NotImplementedError


def mla_absorbed(x_BLD, positions_L, c_kv_BMC, k_rope_BMR, positions_M, w):
    """The decode form: queries read the latent cache directly. Fold w_uk_CHK into the query
    and w_uv_CHK into the output projection; never build per-head k or v (a check traces this
    function's memory on a long cache: a B×M×H×K array fails it). Returns y_BLD."""
    raise NotImplementedError
'''
)


def _mla_inputs(seed: int):
    rng = np.random.default_rng(seed)
    w = ref_mla.init_mla(rng, MD, MH, MK, MC, MR)
    return w, rng.standard_normal((MB, ML, MD)), np.arange(ML)


def _latent_check(i: int, name: str):
    def run(learner) -> None:
        w, x_BMD, positions_M = _mla_inputs(1)
        expected = ref_mla.mla_latent_cache(x_BMD, positions_M, w)[i]
        got = parts(
            function(learner, "mla_latent_cache")(x_BMD, positions_M, w),
            ("c_kv_BMC", "k_rope_BMR"),
            "mla_latent_cache",
        )[i]
        unrotated = x_BMD @ w.w_kr_DR
        expect_array(
            name,
            got,
            expected,
            [
                (
                    lambda g: np.allclose(g, unrotated),
                    "k_rope_BMR is not rotated: apply rope to it, as one head",
                )
            ]
            if i
            else (),
        )

    return Check(f"mla_latent_cache: {name}", run)


def _rope_query_check(learner) -> None:
    w, x_BLD, positions_L = _mla_inputs(2)
    expected = ref_mla.mla_rope_query(x_BLD, positions_L, w)
    expect_array(
        "q_rope_BLHR", function(learner, "mla_rope_query")(x_BLD, positions_L, w), expected
    )


def _mla_scales(attention, w, absorbed: bool) -> list[Symptom]:
    """Scores scaled by 1/d instead of 1/√(K + R) are the reference's with both query parts
    multiplied by √(K + R)/d: attention(w) → y, run on those weights, gives that bug's y."""
    n = MK + MR
    sizes = f"K = {MK}, R = {MR}, C = {MC}"
    causes = [
        (
            n,
            scaled_by(
                f"1/(K + R) ({sizes})",
                "1/√(K + R)",
                "the score adds K + R products of unit variance, and dividing by their standard "
                "deviation, √(K + R), brings its variance back to 1",
            ),
        ),
        (
            np.sqrt(MK),
            scaled_by(
                f"1/√K ({sizes})",
                "1/√(K + R)",
                "the score adds the content and the RoPE dot products, K + R terms in all",
            ),
        ),
    ]
    if absorbed:
        causes.append(
            (
                np.sqrt(MC),
                scaled_by(
                    f"1/√C ({sizes})",
                    "1/√(K + R)",
                    "absorbing w_uk changes where the product is taken, not the dot product",
                ),
            )
        )
    symptoms = []
    for divisor, why in causes:
        factor = np.sqrt(n) / divisor
        scaled = dataclasses.replace(w, w_q_DHK=w.w_q_DHK * factor, w_qr_DHR=w.w_qr_DHR * factor)
        wrong = attention(scaled)
        symptoms.append((lambda got, wrong=wrong: np.allclose(got, wrong), why))
    return symptoms


def _naive_check(learner) -> None:
    w, x_BLD, _ = _mla_inputs(3)
    expected = ref_mla.mla_naive(x_BLD, w)
    expect_array(
        "y_BLD",
        function(learner, "mla_naive")(x_BLD, w),
        expected,
        [
            *_mask_symptom("y_BLD", None, None, expected),
            *fully_masked_rows("y_BLD"),
            *_mla_scales(lambda v: ref_mla.mla_naive(x_BLD, v), w, absorbed=False),
        ],
    )


def _absorbed_check(decode: bool):
    def run(learner) -> None:
        w, x_BLD, positions = _mla_inputs(4)
        c_kv_BMC, k_rope_BMR = ref_mla.mla_latent_cache(x_BLD, positions, w)
        queries = (x_BLD[:, -1:], positions[-1:]) if decode else (x_BLD, positions)
        args = (*queries, c_kv_BMC, k_rope_BMR, positions)
        expected = ref_mla.mla_absorbed(*args, w)
        where = "one decode step, L=1" if decode else "prefill, L=M"
        expect_array(
            f"y_BLD ({where})",
            function(learner, "mla_absorbed")(*args, w),
            expected,
            [
                *fully_masked_rows("y_BLD"),
                *_mla_scales(lambda v: ref_mla.mla_absorbed(*args, v), w, absorbed=True),
            ],
        )

    return Check(f"mla_absorbed: y_BLD, {'decode' if decode else 'prefill'}", run)


# Many wide heads over a longish cache, so that one per-head key tensor (B×M×H×K, 2 MiB)
# outweighs what a latent-space step allocates even when written clumsily: an M×M float mask
# (512 KiB), a fold by broadcasting through D×H×C×K (256 KiB), copies of the weights.
LB, LM, LD, LH, LK, LC, LR = 1, 256, 8, 8, 128, 4, 2


def _latent_space_check(learner) -> None:
    """mla_absorbed's peak allocation, traced while it runs one decode step: a B×M×H×K array
    (keys or values up-projected per head) shows up, a latent-space one cannot. NumPy reports
    its buffers to tracemalloc, so this sees einsum, matmul and broadcasting alike."""
    rng = np.random.default_rng(6)
    w = ref_mla.init_mla(rng, LD, LH, LK, LC, LR)
    x_BMD, positions_M = rng.standard_normal((LB, LM, LD)), np.arange(LM)
    c_kv_BMC, k_rope_BMR = ref_mla.mla_latent_cache(x_BMD, positions_M, w)
    args = (x_BMD[:, -1:], positions_M[-1:], c_kv_BMC, k_rope_BMR, positions_M, w)
    absorbed = function(learner, "mla_absorbed")
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        absorbed(*args)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    per_head = LB * LM * LH * LK * 8
    if peak >= per_head * 3 // 4:
        raise Mismatch(
            f"mla_absorbed built a B×M×H×K tensor (per-head keys or values) or something as "
            f"large: one decode step with B={LB}, M={LM}, H={LH}, K={LK} allocated "
            f"{peak / 2**20:.1f} MiB at its peak; one such tensor is {per_head / 2**20:.1f} MiB, "
            f"the whole latent cache {c_kv_BMC.nbytes / 2**10:.0f} KiB. The absorbed path "
            f"attends in the latent C space: fold w_uk_CHK into the query and w_uv_CHK into the "
            f"output projection, and take scores and the weighted sum against c_kv_BMC itself."
        )


EXERCISES = [
    Exercise(
        name="attention",
        title="Multi-head attention, forward and backward",
        goal="Causal MHA with suffixes + einsum: QKV, scores, mask, softmax, output; all grads.",
        contract=MHA_CONTRACT,
        hints=(
            (
                "Write the forward as the docstring's six lines, one einsum each, the spec read "
                "off the names. Keep q, k, v, probs and out for the backward."
            ),
            (
                "The mask: scores where m > l become −inf before the softmax; exp(−inf) = 0. "
                "Subtract each row's max before exp so it cannot overflow."
            ),
            (
                "Backward in reverse order. Every matmul gives two gradients, one per operand, "
                "each an einsum whose output letters are that operand's suffix."
            ),
            (
                "Softmax backward per row: d_scores = probs · (d_probs − Σ_m probs · d_probs). Do "
                "not forget the 1/sqrt(K) that scaled the scores."
            ),
            "x feeds q, k and v: d_x_BLD is the sum of three terms.",
        ),
        hint_for={
            "forward: y_BLD": 0,
            "causal: no position reads a later one": 1,
            "backward: d_w_o_HKD": 2,
            "backward: d_w_v_DHK": 2,
            "backward: d_w_q_DHK": 3,
            "backward: d_w_k_DHK": 3,
            "backward: d_x_BLD": 4,
        },
        checks=(
            *Pair(
                ref,
                "mha_forward",
                "mha_backward",
                "y_BLD",
                MHA_GRADS,
                _mha_inputs,
                symptoms=_attention_symptoms(ref.mha_forward, ref.mha_backward, MHA_GRADS),
            ).checks(),
            _causal_check("mha_forward", _mha_inputs),
        ),
    ),
    Exercise(
        name="gqa",
        title="Grouped-query attention",
        goal="H query heads over G kv heads: grouped einsums, and kv gradients summed per group.",
        contract=GQA_CONTRACT,
        hints=(
            (
                "Reshape q_BLHK to q_BLGHK (B, L, G, H/G, K); then the scores are one einsum with "
                "g on both sides and the group's heads riding along."
            ),
            "The mask comes in as mask_LM; mask the scores before the softmax.",
            (
                "The output goes back to out_BLHK with the inverse reshape; probs keep the "
                "BGHLM layout."
            ),
            (
                "Backward: d_k_BMGK and d_v_BMGK have no per-query-head letter, so the einsum sums "
                "over the query heads of each group for you."
            ),
        ),
        checks=(
            attend_check(0, "out_BLHK", _tiled_heads),
            attend_check(1, "probs_BGHLM", lambda args: ()),
            *Pair(
                ref,
                "gqa_forward",
                "gqa_backward",
                "y_BLD",
                GQA_GRADS,
                _gqa_inputs,
                symptoms=_attention_symptoms(ref.gqa_forward, ref.gqa_backward, GQA_GRADS),
            ).checks(),
            _causal_check("gqa_forward", _gqa_inputs),
        ),
    ),
    Exercise(
        name="rope",
        title="RoPE",
        goal="Rotate channel pairs by position·θ^(−2i/K); scores then see only relative offset.",
        contract=ROPE_CONTRACT,
        hints=(
            (
                "First the angles: one per (position, pair), an outer product of positions_L "
                "and K/2 frequencies."
            ),
            (
                "The even channels x[..., 0::2] and the odd ones x[..., 1::2] are the two "
                "coordinates of each pair; rotate them like a 2-D vector (cos, −sin; sin, cos)."
            ),
            "Broadcast the (L, K/2) angles against (B, L, H, K/2): add axes for B and H.",
            "A rotation's transpose is the rotation by the opposite angle.",
        ),
        checks=(
            Check("rope: y_BLHK", rope_check),
            Check("relative: q·k depends only on the offset", _rope_relative_check),
            Check("rope_backward: d_x_BLHK", _rope_backward_check),
        ),
    ),
    Exercise(
        name="mla",
        title="Multi-head latent attention (DeepSeek)",
        goal="Cache a C-dim latent + shared RoPE key; absorb w_uk/w_uv so decode reads the latent.",
        contract=MLA_CONTRACT,
        hints=(
            (
                "Start with mla_latent_cache and mla_rope_query: two projections and two rope "
                "calls. The shared key is one head: add a heads axis for rope, then drop it."
            ),
            (
                "mla_naive is your attention with two score terms added before the 1/sqrt(K + R) "
                "scale; k_rope has no H, so every head reads the same one."
            ),
            (
                "Absorption: q·k = (x·w_q)·(c_kv·w_uk) can be regrouped as (x·w_q·w_ukᵀ)·c_kv. "
                "Fold w_uk into a dhc query weight first, contracting k."
            ),
            (
                "The same on the way out: probs · c_kv gives a per-head latent output; fold w_uv "
                "and w_o into one hcd weight."
            ),
            (
                "The causal mask compares positions_L with positions_M: a decode step at the "
                "last position sees the whole cache."
            ),
        ),
        checks=(
            Check("rope (carried over): y_BLHK", rope_check),
            _latent_check(0, "c_kv_BMC"),
            _latent_check(1, "k_rope_BMR"),
            Check("mla_rope_query: q_rope_BLHR", _rope_query_check),
            Check("mla_naive: y_BLD", _naive_check),
            _absorbed_check(decode=False),
            _absorbed_check(decode=True),
            Check("mla_absorbed: never builds per-head k or v", _latent_space_check),
        ),
    ),
]
