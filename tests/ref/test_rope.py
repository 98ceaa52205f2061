import numpy as np
import pytest

from mlgrind.ref.rope import rope, rope_backward
from tests.ref.helpers import numerical_grad


def score(q_K, k_K, position_q, position_k):
    """q·k after RoPE, one query and one key of one head."""
    q = rope(q_K[None, None, None], np.array([position_q]))
    k = rope(k_K[None, None, None], np.array([position_k]))
    return float(np.sum(q * k))


def test_matches_complex_multiplication():
    """Independent oracle: a channel pair is a complex number multiplied by e^(i·angle)."""
    rng = np.random.default_rng(0)
    B, L, H, K = 2, 5, 3, 8
    x = rng.normal(size=(B, L, H, K))
    positions = rng.integers(0, 1000, size=L)
    z = x[..., 0::2] + 1j * x[..., 1::2]
    frequencies = 10000.0 ** (-np.arange(K // 2) * 2 / K)
    z = z * np.exp(1j * positions[None, :, None, None] * frequencies)
    y = rope(x, positions)
    np.testing.assert_allclose(y[..., 0::2], z.real, atol=1e-12)
    np.testing.assert_allclose(y[..., 1::2], z.imag, atol=1e-12)


@pytest.mark.parametrize("shift", [1, 7, 123, -40])
def test_score_depends_only_on_relative_position(shift):
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(2, 16))
    for m, n in [(50, 45), (50, 50), (60, 3)]:
        assert score(q, k, m, n) == pytest.approx(score(q, k, m + shift, n + shift), abs=1e-9)


def test_score_does_change_with_relative_position():
    q, k = np.random.default_rng(2).normal(size=(2, 16))
    assert score(q, k, 5, 3) != pytest.approx(score(q, k, 5, 4), abs=1e-3)


def test_rotation_preserves_norms_and_position_zero_is_identity():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 3, 10))
    y = rope(x, rng.integers(0, 10**6, size=6))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    np.testing.assert_array_equal(rope(x, np.zeros(6)), x)


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 3, 2, 4))
    r = rng.normal(size=x.shape)
    positions = np.array([0, 5, 11])
    numeric = numerical_grad(lambda a: np.sum(r * rope(a, positions)), x)
    np.testing.assert_allclose(rope_backward(r, positions), numeric, atol=1e-8)


def test_odd_head_size_is_rejected():
    with pytest.raises(ValueError, match="even"):
        rope(np.zeros((1, 1, 1, 3)), np.zeros(1))
