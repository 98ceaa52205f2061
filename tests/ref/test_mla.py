import numpy as np
import pytest

from mlgrind.ref.attention import gqa_forward
from mlgrind.ref.mla import (
    init_mla,
    mla_absorbed,
    mla_cache_bytes_per_token,
    mla_latent_cache,
    mla_naive,
)


@pytest.mark.parametrize(
    "B, L, D, H, K, C, R", [(2, 5, 8, 3, 4, 6, 2), (1, 7, 6, 2, 8, 3, 4), (3, 1, 4, 1, 2, 2, 2)]
)
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


@pytest.mark.parametrize("C, R, dtype", [(6, 2, np.float32), (16, 4, np.float16), (3, 8, float)])
def test_cache_bytes_per_token_measured_from_the_cached_arrays(C, R, dtype):
    B, M = 2, 5
    w = init_mla(np.random.default_rng(2), D=8, H=4, K=4, C=C, R=R)
    x = np.random.default_rng(3).normal(size=(B, M, 8)).astype(dtype)
    c_kv, k_rope = mla_latent_cache(x, np.arange(M), w)
    c_kv, k_rope = c_kv.astype(dtype), k_rope.astype(dtype)
    measured = (c_kv.nbytes + k_rope.nbytes) / (B * M)
    itemsize = np.dtype(dtype).itemsize
    assert measured == mla_cache_bytes_per_token(C, R, n_layers=1, bytes_per_element=itemsize)


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
