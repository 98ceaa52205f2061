import dataclasses
import math

import numpy as np
import pytest

from mlgrind.ref.attention import gqa_forward
from mlgrind.ref.einsum import count_flops
from mlgrind.ref.mla import (
    MLAWeights,
    absorb,
    init_mla,
    mla_absorbed,
    mla_absorbed_flops,
    mla_cache_bytes_per_token,
    mla_latent_cache,
    mla_naive,
)

SIZES = [(2, 5, 8, 3, 4, 6, 2), (1, 7, 6, 2, 8, 3, 4), (3, 1, 4, 1, 2, 2, 2)]


def rope_complex(v_n, position, theta=10000.0):
    """RoPE as complex multiplication (RoFormer section 3.2): channels 2i, 2i+1 are the complex
    number v[2i] + j·v[2i+1], turned by the angle position · θ^(−2i/n)."""
    n = len(v_n)
    z = (v_n[0::2] + 1j * v_n[1::2]) * np.exp(1j * position * theta ** (-np.arange(0, n, 2) / n))
    out = np.empty(n)
    out[0::2], out[1::2] = z.real, z.imag
    return out


def mla_oracle(x_BLD, w, positions):
    """DeepSeek-V2 (arXiv 2405.04434) eqs 9–19 with uncompressed queries, one token and one head
    at a time, plain `@` and loops: shares nothing with mla.py but the weights.

    c_kv_j = h_j W_DKV (9); k_j,i = [c_kv_j W_UK,i ; RoPE(h_j W_KR)] (10, 15, 17);
    v_j,i = c_kv_j W_UV,i (11); q_t,i = [h_t W_Q,i ; RoPE(h_t W_QR,i)] (12–14, 16, with c_Q = h);
    o_t,i = Σ_{j ≤ t} softmax_j(q_t,i · k_j,i / sqrt(K + R)) v_j,i (18); u_t = Σ_i o_t,i W_O,i (19).
    """
    B, L, _ = x_BLD.shape
    H, K = w.w_q_DHK.shape[1:]
    R = w.w_kr_DR.shape[1]
    y = np.zeros(x_BLD.shape)
    for b in range(B):
        h = x_BLD[b]
        c_kv = [h[j] @ w.w_dkv_DC for j in range(L)]
        k_rope = [rope_complex(h[j] @ w.w_kr_DR, positions[j]) for j in range(L)]
        for t in range(L):
            for i in range(H):
                q = np.concatenate(
                    [h[t] @ w.w_q_DHK[:, i], rope_complex(h[t] @ w.w_qr_DHR[:, i], positions[t])]
                )
                scores = [
                    float(q @ np.concatenate([c_kv[j] @ w.w_uk_CHK[:, i], k_rope[j]]))
                    / math.sqrt(K + R)
                    for j in range(t + 1)
                ]
                e = [math.exp(s - max(scores)) for s in scores]
                o = sum(e[j] / sum(e) * (c_kv[j] @ w.w_uv_CHK[:, i]) for j in range(t + 1))
                y[b, t] += o @ w.w_o_HKD[i]
    return y


def test_the_oracle_rope_is_the_textbook_rotation():
    """One pair, by hand: (1, 0) at position 2 with θ^0 = 1 turns by 2 radians."""
    np.testing.assert_allclose(rope_complex(np.array([1.0, 0.0]), 2), [math.cos(2), math.sin(2)])


@pytest.mark.parametrize("B, L, D, H, K, C, R", SIZES)
def test_naive_form_equals_the_paper_equations(B, L, D, H, K, C, R):
    rng = np.random.default_rng(10 + L)
    w = init_mla(rng, D, H, K, C, R)
    x = rng.normal(size=(B, L, D))
    np.testing.assert_allclose(mla_naive(x, w), mla_oracle(x, w, np.arange(L)), atol=1e-12)


@pytest.mark.parametrize("B, L, D, H, K, C, R", SIZES)
def test_absorbed_form_equals_naive_form(B, L, D, H, K, C, R):
    rng = np.random.default_rng(L)
    w = init_mla(rng, D, H, K, C, R)
    x = rng.normal(size=(B, L, D))
    positions = np.arange(L)
    c_kv, k_rope = mla_latent_cache(x, positions, w)
    absorbed = mla_absorbed(x, positions, c_kv, k_rope, positions, w)
    np.testing.assert_allclose(absorbed, mla_naive(x, w), atol=1e-12)


def test_decoding_the_last_token_from_the_latent_cache_equals_the_full_forward():
    rng = np.random.default_rng(0)
    L = 6
    w = init_mla(rng, D=8, H=2, K=4, C=3, R=4)
    x = rng.normal(size=(2, L, 8))
    c_kv, k_rope = mla_latent_cache(x, np.arange(L), w)
    last = mla_absorbed(x[:, -1:], np.array([L - 1]), c_kv, k_rope, np.arange(L), w)
    np.testing.assert_allclose(last[:, 0], mla_naive(x, w)[:, -1], atol=1e-12)


def test_decoupled_rope_makes_scores_position_aware():
    """Without the R-dim rotated parts MLA would be blind to order: permuting earlier tokens
    would not change the last output. With them it does."""
    rng = np.random.default_rng(1)
    w = init_mla(rng, D=6, H=2, K=4, C=3, R=4)
    x = rng.normal(size=(1, 5, 6))
    swapped = x[:, [1, 0, 2, 3, 4]]
    assert not np.allclose(mla_naive(x, w)[:, -1], mla_naive(swapped, w)[:, -1])
    w.w_kr_DR[:] = 0
    np.testing.assert_allclose(mla_naive(x, w)[:, -1], mla_naive(swapped, w)[:, -1], atol=1e-12)


@pytest.mark.parametrize(
    "C, R, dtype, bytes_per_element",
    [(6, 2, np.float32, 4), (16, 4, np.float16, 2), (3, 8, np.float64, 8)],
)
def test_cache_bytes_per_token_measured_from_the_cached_arrays(C, R, dtype, bytes_per_element):
    """Inputs and weights in the serving dtype; the cache must come back in it, untouched."""
    B, M = 2, 5
    w = init_mla(np.random.default_rng(2), D=8, H=4, K=4, C=C, R=R)
    w = MLAWeights(**{f.name: getattr(w, f.name).astype(dtype) for f in dataclasses.fields(w)})
    x = np.random.default_rng(3).normal(size=(B, M, 8)).astype(dtype)
    c_kv, k_rope = mla_latent_cache(x, np.arange(M), w)
    assert c_kv.dtype == k_rope.dtype == dtype
    assert (c_kv.shape, k_rope.shape) == ((B, M, C), (B, M, R))
    per_token = mla_cache_bytes_per_token(C, R, n_layers=1, bytes_per_element=bytes_per_element)
    assert c_kv.nbytes + k_rope.nbytes == B * M * per_token


def test_deepseek_v2_shape_caches_as_much_as_gqa_with_2_25_groups():
    """The paper's claim (section 2.1.4): with C = 4K and R = K / 2, MLA's cache per token
    equals GQA's with 2.25 kv heads, measured here from the arrays of both."""
    K, D, H, B, M = 8, 16, 8, 1, 3
    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, M, D))
    c_kv, k_rope = mla_latent_cache(x, np.arange(M), init_mla(rng, D, H, K, C=4 * K, R=K // 2))
    G = 4
    args = [rng.normal(size=s) for s in [(D, H, K), (D, G, K), (D, G, K), (H, K, D)]]
    _, saved = gqa_forward(x, *args)
    k_BMGK, v_BMGK = saved[6], saved[7]
    gqa_bytes_per_kv_head = (k_BMGK.nbytes + v_BMGK.nbytes) / G
    assert (c_kv.nbytes + k_rope.nbytes) / gqa_bytes_per_kv_head == 2.25


@pytest.mark.parametrize("shift", [3, 1000])
def test_shifting_every_position_leaves_the_absorbed_output_unchanged(shift):
    """RoPE makes scores depend on position differences only: moving the whole sequence (its
    queries and its cache) by a constant rotates every key yet changes no output."""
    rng = np.random.default_rng(shift)
    L = 6
    w = init_mla(rng, D=8, H=2, K=4, C=3, R=4)
    x = rng.normal(size=(2, L, 8))
    positions, shifted = np.arange(L), np.arange(L) + shift
    c_kv, k_rope = mla_latent_cache(x, positions, w)
    c_kv_s, k_rope_s = mla_latent_cache(x, shifted, w)
    assert not np.allclose(k_rope, k_rope_s)
    np.testing.assert_allclose(
        mla_absorbed(x, shifted, c_kv_s, k_rope_s, shifted, w),
        mla_absorbed(x, positions, c_kv, k_rope, positions, w),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        mla_absorbed(x, shifted, c_kv_s, k_rope_s, shifted, w, absorb(w)),
        mla_oracle(x, w, shifted),
        atol=1e-10,
    )


@pytest.mark.parametrize("seed", range(4))
def test_an_absorbed_decode_step_does_not_pay_for_the_fold(seed):
    """absorb(w) runs once per model; a step given its result counts only its own einsums."""
    rng = np.random.default_rng(seed)
    B, M, D, H, K, C, R = (int(n) for n in rng.integers(1, 7, size=7))
    R *= 2  # RoPE rotates pairs
    w = init_mla(rng, D, H, K, C, R)
    x = rng.normal(size=(B, M, D))
    c_kv, k_rope = mla_latent_cache(x, np.arange(M), w)
    with count_flops() as fold:
        absorbed = absorb(w)
    assert fold.total == 2 * D * H * K * C + 2 * C * H * K * D
    step_args = (x[:, -1:], np.array([M - 1]), c_kv, k_rope, np.arange(M), w)
    with count_flops() as step:
        last = mla_absorbed(*step_args, absorbed)
    assert step.total == mla_absorbed_flops(B, 1, M, D, H, C, R)
    with count_flops() as refolding:
        unfolded = mla_absorbed(*step_args)
    assert refolding.total == step.total + fold.total
    np.testing.assert_allclose(last, unfolded, atol=1e-12)
    np.testing.assert_allclose(last[:, 0], mla_naive(x, w)[:, -1], atol=1e-12)
