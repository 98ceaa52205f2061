import numpy as np
import pytest

from mlgrind.ref import moe
from mlgrind.ref.collectives import Comm, all_to_all_bytes, shard
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad

B, D, F, E = 9, 3, 4, 5


def make(rng, B=B, D=D, F=F, E=E):
    return (
        rng.standard_normal((B, D)),
        rng.standard_normal((D, E)),
        rng.standard_normal((E, D, F)) / np.sqrt(D),
        rng.standard_normal((E, F, D)) / np.sqrt(F),
    )


def dense_moe(x, w_router, w_in, w_out, k):
    """Oracle: every expert on every token, then a top-k softmax mask; no routing at all."""
    logits = x @ w_router
    kth = np.sort(logits, axis=1)[:, -k][:, None]
    weights = np.where(logits >= kth, np.exp(logits), 0.0)
    gates = weights / weights.sum(axis=1, keepdims=True)
    h = np.maximum(np.einsum("bd,edf->bef", x, w_in), 0)
    return np.einsum("be,bef,efd->bd", gates, h, w_out)


@pytest.mark.parametrize("k", [1, 2, E])
def test_routed_forward_equals_dense_oracle(k):
    rng = np.random.default_rng(k)
    x, w_router, w_in, w_out = make(rng)
    y, _ = moe.moe_forward(x, w_router, w_in, w_out, k)
    np.testing.assert_allclose(y, dense_moe(x, w_router, w_in, w_out, k), atol=1e-12)
    gates = moe.route(x, w_router, k)
    assert ((gates > 0).sum(axis=1) == k).all()
    np.testing.assert_allclose(gates.sum(axis=1), 1.0)


@pytest.mark.parametrize("k", [1, 2])
def test_backward_matches_finite_differences(k):
    rng = np.random.default_rng(10 + k)
    x, w_router, w_in, w_out = make(rng)
    target = rng.standard_normal((B, D))

    def loss(x, w_router, w_in, w_out):
        y, _ = moe.moe_forward(x, w_router, w_in, w_out, k)
        return 0.5 * np.sum((y - target) ** 2)

    y, saved = moe.moe_forward(x, w_router, w_in, w_out, k)
    d_x, d_w_router, d_w_in, d_w_out = moe.moe_backward(y - target, saved)
    args = [x, w_router, w_in, w_out]
    for i, grad in enumerate([d_x, d_w_router, d_w_in, d_w_out]):

        def f(v, i=i):
            return loss(*args[:i], v, *args[i + 1 :])

        np.testing.assert_allclose(grad, numerical_grad(f, args[i]), atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_flops_grow_with_k_not_e(seed):
    rng = np.random.default_rng(seed)
    b, d, f, e = (int(n) for n in rng.integers(2, 7, size=4))
    k = int(rng.integers(1, e + 1))
    x, w_router, w_in, w_out = make(rng, b, d, f, e)
    with count_flops() as counted:
        moe.moe_forward(x, w_router, w_in, w_out, k)
    assert counted.total == moe.moe_flops(b, d, f, e, k)


@pytest.mark.parametrize("S", [1, 2, 3, 5])
@pytest.mark.parametrize("k", [1, 2])
def test_expert_parallel_equals_unsharded(S, k):
    rng = np.random.default_rng(S * 10 + k)
    x, w_router, w_in, w_out = make(rng)  # 5 experts and 9 tokens: uneven over 2 and 3 ranks
    with count_flops() as unsharded:
        y, _ = moe.moe_forward(x, w_router, w_in, w_out, k)
    comm = Comm(S)
    x_ranks = shard(x, S)
    with count_flops() as sharded:
        y_ranks, _ = moe.expert_parallel_forward(
            comm, x_ranks, w_router, shard(w_in, S), shard(w_out, S), k
        )
    assert sharded.total == unsharded.total  # same tokens through the same experts, moved
    np.testing.assert_allclose(np.concatenate(y_ranks), y, atol=1e-10)

    # Bytes: every (token, expert) pair whose expert lives on another rank crosses once each way.
    owner = np.repeat(np.arange(S), [len(w) for w in shard(w_in, S)])
    remote = []
    for s, x_s in enumerate(x_ranks):
        _, e = np.nonzero(moe.route(x_s, w_router, k))
        remote.append(int((owner[e] != s).sum()) * D * 8)
    (dispatch,) = comm.records(tag="dispatch")
    (combine,) = comm.records(tag="combine")
    assert dispatch.sent == remote
    assert combine.received == remote
    assert combine.sent == dispatch.received


@pytest.mark.parametrize("S", [1, 2, 3, 5])
def test_expert_parallel_backward_equals_unsharded(S):
    rng = np.random.default_rng(S)
    x, w_router, w_in, w_out = make(rng)
    d_y = rng.standard_normal((B, D))
    _, saved = moe.moe_forward(x, w_router, w_in, w_out, 2)
    d_x, d_w_router, d_w_in, d_w_out = moe.moe_backward(d_y, saved)
    comm = Comm(S)
    _, saved_ranks = moe.expert_parallel_forward(
        comm, shard(x, S), w_router, shard(w_in, S), shard(w_out, S), 2
    )
    forward_log = list(comm.log)
    d_x_ranks, d_w_router_s, d_w_in_ranks, d_w_out_ranks = moe.expert_parallel_backward(
        comm, shard(d_y, S), saved_ranks
    )
    np.testing.assert_allclose(np.concatenate(d_x_ranks), d_x, atol=1e-10)
    np.testing.assert_allclose(d_w_router_s, d_w_router, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_in_ranks), d_w_in, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_out_ranks), d_w_out, atol=1e-10)
    # Backward retraces the forward's all-to-alls with the roles of sender and receiver swapped.
    dispatch, _, combine = forward_log
    combine_back, dispatch_back, router = comm.log[len(forward_log) :]
    assert (combine_back.sent, combine_back.received) == (combine.received, combine.sent)
    assert (dispatch_back.sent, dispatch_back.received) == (dispatch.received, dispatch.sent)
    assert (router.collective, router.shapes) == ("all_reduce", [(D, E)] * S)


@pytest.mark.parametrize("S", [2, 4])
@pytest.mark.parametrize("k", [1, 2])
def test_balanced_routing_dispatch_moves_s_minus_1_over_s_of_the_pairs(S, k):
    # Router = identity and token i scores k, k-1, ..., 1 on experts i, i+1, ... (mod E): every
    # rank's tokens spread evenly over the experts, so (S-1)/S of its pairs leave the rank.
    E_, D_, b_local = 4, 4, 8
    x = np.stack(
        [
            sum(np.roll(np.eye(E_)[i % E_], j) * (k - j) for j in range(k))
            for i in range(S * b_local)
        ]
    )
    rng = np.random.default_rng(0)
    _, _, w_in, w_out = make(rng, 1, D_, F, E_)
    comm = Comm(S)
    x_ranks = shard(x, S)
    moe.expert_parallel_forward(comm, x_ranks, np.eye(D_), shard(w_in, S), shard(w_out, S), k)
    (dispatch,) = comm.records(tag="dispatch")
    assert dispatch.sent == [all_to_all_bytes(b_local * k * D_ * 8, S)] * S


def test_k_outside_1_to_e_is_an_error():
    rng = np.random.default_rng(0)
    x, w_router, _, _ = make(rng)
    with pytest.raises(ValueError, match="top-k"):
        moe.route(x, w_router, E + 1)
    with pytest.raises(ValueError, match="top-k"):
        moe.route(x, w_router, 0)


def test_expert_parallel_needs_one_entry_per_rank():
    rng = np.random.default_rng(0)
    x, w_router, w_in, w_out = make(rng)
    x_ranks, w_in_ranks, w_out_ranks = shard(x, 2), shard(w_in, 2), shard(w_out, 2)
    with pytest.raises(ValueError, match="x_BD_ranks needs one entry per rank: got 2 for 3"):
        moe.expert_parallel_forward(Comm(3), x_ranks, w_router, w_in_ranks, w_out_ranks, 2)
    with pytest.raises(ValueError, match="w_out_EFD_ranks needs one entry per rank: got 2 for 3"):
        moe.expert_parallel_forward(
            Comm(3), shard(x, 3), w_router, shard(w_in, 3), w_out_ranks, 2
        )
    y_ranks, saved = moe.expert_parallel_forward(
        Comm(2), x_ranks, w_router, w_in_ranks, w_out_ranks, 2
    )
    with pytest.raises(ValueError, match="d_y_BD_ranks needs one entry per rank: got 2 for 3"):
        moe.expert_parallel_backward(Comm(3), y_ranks, saved)
