import numpy as np
import pytest

from mlgrind.ref import checkpointing as ck
from mlgrind.ref import mlp
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad

B, D, F = 3, 4, 6


def make(rng, n):
    w_in = [rng.standard_normal((D, F)) / np.sqrt(D) for _ in range(n)]
    w_out = [rng.standard_normal((F, D)) / np.sqrt(F) for _ in range(n)]
    return rng.standard_normal((B, D)), rng.standard_normal((B, D)), w_in, w_out


def test_stack_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, target, w_in, w_out = make(rng, 3)

    def loss(x, w_in, w_out):
        return mlp.l2_loss(ck.stack_forward(x, w_in, w_out)[0], target)[0]

    y, saved = ck.stack_forward(x, w_in, w_out)
    d_x, d_w_in, d_w_out = ck.stack_backward(mlp.l2_loss(y, target)[1], saved)
    np.testing.assert_allclose(d_x, numerical_grad(lambda v: loss(v, w_in, w_out), x), atol=1e-7)
    for layer in range(3):

        def loss_of_layer(v, layer=layer):
            return loss(x, w_in[:layer] + [v] + w_in[layer + 1 :], w_out)

        np.testing.assert_allclose(
            d_w_in[layer], numerical_grad(loss_of_layer, w_in[layer]), atol=1e-7
        )
    np.testing.assert_allclose(
        d_w_out[1],
        numerical_grad(lambda v: loss(x, w_in, [w_out[0], v, w_out[2]]), w_out[1]),
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "n, every", [(1, 1), (4, 1), (4, 2), (5, 2), (6, 3), (7, 3), (5, 5), (3, 8)]
)
def test_checkpointing_gives_the_same_gradients_for_less_memory_and_one_more_forward(n, every):
    rng = np.random.default_rng(n * 10 + every)
    x, target, w_in, w_out = make(rng, n)
    with count_flops() as plain:
        y, saved = ck.stack_forward(x, w_in, w_out)
        d_x, d_w_in, d_w_out = ck.stack_backward(mlp.l2_loss(y, target)[1], saved)
    with count_flops() as checkpointed:
        y_c, checkpoints = ck.checkpointed_forward(x, w_in, w_out, every)
        d_x_c, d_w_in_c, d_w_out_c, peak = ck.checkpointed_backward(
            mlp.l2_loss(y_c, target)[1], checkpoints, w_in, w_out, every
        )
    np.testing.assert_allclose(y_c, y, atol=1e-10)
    np.testing.assert_allclose(d_x_c, d_x, atol=1e-10)
    for a, b in zip(d_w_in_c + d_w_out_c, d_w_in + d_w_out, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)

    assert ck.held_bytes(ck.activations(saved)) == ck.stack_activation_bytes(n, B, D, F, 8)
    assert ck.held_bytes(checkpoints) == ck.checkpoint_bytes(n, every, B, D, 8)
    assert peak == ck.checkpoint_peak_bytes(n, every, B, D, F, 8)
    assert peak <= ck.stack_activation_bytes(n, B, D, F, 8)
    assert checkpointed.total - plain.total == ck.recompute_flops(n, B, D, F)
    assert checkpointed.total == 4 * n * mlp.mlp_flops(B, D, F)  # fwd + recompute + 2 × fwd


@pytest.mark.parametrize("n", [16, 36, 50, 100])
@pytest.mark.parametrize("f", [D, 3 * D])
def test_the_best_segment_length_is_about_sqrt_n(n, f):
    # Peak ≈ (n/k + k)·B·D + k·B·F, minimised at k = sqrt(n·D / (D + F)): Chen et al.'s sqrt(n).
    peaks = {k: ck.checkpoint_peak_bytes(n, k, B, D, f, 8) for k in range(1, n + 1)}
    rule = round(np.sqrt(n * D / (D + f)))
    assert peaks[rule] <= 1.1 * min(peaks.values())  # within 10% of the best k
    assert peaks[rule] < min(peaks[1], peaks[n])  # and better than either extreme


def test_every_must_be_positive():
    rng = np.random.default_rng(0)
    x, _, w_in, w_out = make(rng, 2)
    with pytest.raises(ValueError, match="every"):
        ck.checkpointed_forward(x, w_in, w_out, 0)
