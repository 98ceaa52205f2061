import numpy as np
import pytest

from mlgrind.ref import mlp, zero
from mlgrind.ref.collectives import Comm

B, D, F, STEPS = 6, 3, 5, 3  # each parameter has 15 elements: even over 1 and 3 ranks, not 2 or 4


def setup(seed):
    rng = np.random.default_rng(seed)
    params = {
        "w_in_DF": rng.standard_normal((D, F)) / np.sqrt(D),
        "w_out_FD": rng.standard_normal((F, D)) / np.sqrt(F),
    }
    batches = [(rng.standard_normal((B, D)), rng.standard_normal((B, D))) for _ in range(STEPS)]
    return params, batches


def single_process_adam(params, batches, adam):
    """The oracle: one process, whole batch, whole tensors."""
    w = {n: p.copy() for n, p in params.items()}
    m = {n: np.zeros_like(p) for n, p in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    for t, (x, target) in enumerate(batches, start=1):
        y, saved = mlp.mlp_forward(x, w["w_in_DF"], w["w_out_FD"])
        _, d_w_in, d_w_out = mlp.mlp_backward(mlp.l2_loss(y, target)[1], saved)
        for n, g in (("w_in_DF", d_w_in), ("w_out_FD", d_w_out)):
            w[n], m[n], v[n] = adam.update(w[n], g, m[n], v[n], t)
    return w


def test_first_adam_step_moves_every_weight_by_lr_against_the_gradient_sign():
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(10), rng.standard_normal(10)
    adam = zero.Adam(lr=0.1, eps=0.0)
    new, _, _ = adam.update(w, g, np.zeros(10), np.zeros(10), 1)
    np.testing.assert_allclose(new, w - 0.1 * np.sign(g), atol=1e-12)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("S", [1, 2, 3, 4])
def test_every_stage_trains_exactly_like_one_process(stage, S):
    params, batches = setup(S)
    expected = single_process_adam(params, batches, zero.Adam())
    final, _, ranks = zero.train(stage, S, params, batches)
    for n in params:
        np.testing.assert_allclose(final[n], expected[n], atol=1e-10)
    if stage < 3:  # every replica holds the same full parameters
        for rank in ranks:
            for n in params:
                np.testing.assert_array_equal(rank.params[n], final[n])


EXPECTED_COLLECTIVES = {
    0: ["all_reduce d_w_in_DF", "all_reduce d_w_out_FD"],
    1: [
        "reduce_scatter d_w_in_DF",
        "all_gather w_in_DF",
        "reduce_scatter d_w_out_FD",
        "all_gather w_out_FD",
    ],
    3: [
        "all_gather w_in_DF forward",
        "all_gather w_out_FD forward",
        "all_gather w_in_DF backward",
        "all_gather w_out_FD backward",
        "reduce_scatter d_w_in_DF",
        "reduce_scatter d_w_out_FD",
    ],
}
EXPECTED_COLLECTIVES[2] = EXPECTED_COLLECTIVES[1]


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("S", [2, 3, 4])
def test_collectives_and_bytes_per_rank(stage, S):
    params, batches = setup(S)
    _, comm, _ = zero.train(stage, S, params, batches)
    assert [f"{r.collective} {r.tag}" for r in comm.log] == EXPECTED_COLLECTIVES[stage] * STEPS
    param_bytes = sum(p.nbytes for p in params.values())
    per_rank = STEPS * zero.zero_bytes_per_rank(stage, param_bytes, S)
    # Uneven blocks make ranks differ by a few elements, but every block travels S-1 hops.
    assert sum(comm.sent) == pytest.approx(S * per_rank)
    if (D * F) % S == 0:
        assert comm.sent == comm.received == [pytest.approx(per_rank)] * S


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("S", [1, 2, 3])
def test_state_held_per_rank_measured_from_the_arrays(stage, S):
    params, batches = setup(S)
    _, _, ranks = zero.train(stage, S, params, batches)
    param_bytes = sum(p.nbytes for p in params.values())
    expected = zero.zero_state_bytes(stage, param_bytes, S)
    held = [rank.nbytes() for rank in ranks]
    for kind, per_rank in expected.items():
        assert sum(h[kind] for h in held) == pytest.approx(S * per_rank)
        if (D * F) % S == 0:
            assert [h[kind] for h in held] == [pytest.approx(per_rank)] * S


def test_errors():
    params, batches = setup(0)
    with pytest.raises(ValueError, match="stage"):
        zero.train(4, 2, params, batches)
    with pytest.raises(ValueError, match="cannot shard"):  # 15 elements cannot go to 16 ranks
        zero.train(1, 16, params, [(np.ones((16, D)), np.ones((16, D)))])


@pytest.mark.parametrize("stage", [0, 3])
def test_a_step_needs_one_rank_state_per_rank(stage):
    params, batches = setup(0)
    shapes = {n: w.shape for n, w in params.items()}
    ranks = zero.init_ranks(stage, 2, params)
    x_BD, target_BD = batches[0]
    with pytest.raises(ValueError, match="ranks needs one entry per rank: got 2 for 3"):
        zero.step(stage, Comm(3), ranks, shapes, x_BD, target_BD, zero.Adam(), 1)
    with pytest.raises(ValueError, match="ranks needs one entry per rank: got 2 for 3"):
        zero.gather_params(Comm(3), ranks, shapes, "forward")
