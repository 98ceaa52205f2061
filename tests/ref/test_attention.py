import numpy as np
import pytest

from mlgrind.ref.attention import (
    gqa_backward,
    gqa_forward,
    kv_cache_bytes_per_token,
    mha_backward,
    mha_backward_flops,
    mha_flops,
    mha_forward,
)
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad


def weights(rng, B, L, D, H, K, G):
    return (
        rng.normal(size=(B, L, D)),
        rng.normal(size=(D, H, K)) / np.sqrt(D),
        rng.normal(size=(D, G, K)) / np.sqrt(D),
        rng.normal(size=(D, G, K)) / np.sqrt(D),
        rng.normal(size=(H, K, D)) / np.sqrt(H * K),
    )


def naive_attention(x, w_q, w_k, w_v, w_o):
    """Independent oracle: loops over batch, head and query, plain matmuls, no einsum."""
    B, L, D = x.shape
    H, K = w_q.shape[1:]
    y = np.zeros((B, L, D))
    for b in range(B):
        for h in range(H):
            q, k, v = x[b] @ w_q[:, h], x[b] @ w_k[:, h], x[b] @ w_v[:, h]
            for t in range(L):
                s = k[: t + 1] @ q[t] / np.sqrt(K)
                p = np.exp(s - s.max())
                p /= p.sum()
                y[b, t] += (p @ v[: t + 1]) @ w_o[h]
    return y


def test_mha_matches_naive_loops():
    args = weights(np.random.default_rng(0), B=2, L=5, D=6, H=3, K=4, G=3)
    y, _ = mha_forward(*args)
    np.testing.assert_allclose(y, naive_attention(*args), atol=1e-12)


def test_mha_is_causal():
    rng = np.random.default_rng(1)
    x, *w = weights(rng, B=1, L=6, D=4, H=2, K=3, G=2)
    y, _ = mha_forward(x, *w)
    x2 = x.copy()
    x2[:, 3:] = rng.normal(size=x2[:, 3:].shape)
    y2, _ = mha_forward(x2, *w)
    np.testing.assert_array_equal(y[:, :3], y2[:, :3])
    assert not np.allclose(y[:, 3:], y2[:, 3:])


def assert_backward_matches_finite_differences(forward, backward, args, seed):
    r = np.random.default_rng(seed).normal(size=args[0].shape)  # loss = sum(r * y), so d_y = r
    _, saved = forward(*args)
    for i, analytic in enumerate(backward(r, saved)):

        def loss(a, i=i):
            return np.sum(r * forward(*args[:i], a, *args[i + 1 :])[0])

        np.testing.assert_allclose(analytic, numerical_grad(loss, args[i]), atol=1e-8)


def test_mha_backward_matches_finite_differences():
    args = weights(np.random.default_rng(2), B=2, L=4, D=5, H=3, K=2, G=3)
    assert_backward_matches_finite_differences(mha_forward, mha_backward, args, seed=2)


@pytest.mark.parametrize("H, G", [(4, 2), (3, 1), (2, 2)])
def test_gqa_backward_matches_finite_differences(H, G):
    args = weights(np.random.default_rng(3), B=2, L=4, D=4, H=H, K=2, G=G)
    assert_backward_matches_finite_differences(gqa_forward, gqa_backward, args, seed=3)


@pytest.mark.parametrize("seed", range(4))
def test_flop_formulas_match_counted_einsums(seed):
    rng = np.random.default_rng(seed)
    B, L, D, H, K = (int(n) for n in rng.integers(1, 6, size=5))
    args = weights(rng, B, L, D, H, K, G=H)
    with count_flops() as forward:
        y, saved = mha_forward(*args)
    assert forward.total == mha_flops(B, L, D, H, K)
    with count_flops() as backward:
        mha_backward(np.ones_like(y), saved)
    assert backward.total == mha_backward_flops(B, L, D, H, K)


@pytest.mark.parametrize("H, G", [(4, 4), (4, 2), (4, 1), (6, 3)])
def test_gqa_equals_mha_with_each_kv_head_repeated_for_its_group(H, G):
    """GQA is MHA whose kv weights are copied H / G times; G = H is MHA, G = 1 is MQA."""
    x, w_q, w_k, w_v, w_o = weights(np.random.default_rng(4), B=2, L=5, D=6, H=H, K=3, G=G)
    y_gqa, _ = gqa_forward(x, w_q, w_k, w_v, w_o)
    repeat = H // G
    w_k_DHK, w_v_DHK = np.repeat(w_k, repeat, axis=1), np.repeat(w_v, repeat, axis=1)
    y_mha, _ = mha_forward(x, w_q, w_k_DHK, w_v_DHK, w_o)
    np.testing.assert_allclose(y_gqa, y_mha, atol=1e-12)


def test_gqa_rejects_heads_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="cannot be split"):
        gqa_forward(*weights(np.random.default_rng(5), B=1, L=2, D=3, H=3, K=2, G=2))


@pytest.mark.parametrize("H, G, dtype", [(8, 8, np.float32), (8, 2, np.float16), (8, 1, float)])
def test_kv_cache_bytes_per_token_measured_from_the_arrays(H, G, dtype):
    B, L, K = 2, 5, 4
    args = [a.astype(dtype) for a in weights(np.random.default_rng(6), B, L, 6, H, K, G)]
    _, saved = gqa_forward(*args)
    k_BMGK, v_BMGK = saved[6], saved[7]
    measured = (k_BMGK.nbytes + v_BMGK.nbytes) / (B * L)
    itemsize = np.dtype(dtype).itemsize
    assert measured == kv_cache_bytes_per_token(G, K, n_layers=1, bytes_per_element=itemsize)
