import numpy as np
import pytest

from mlgrind.ref import mlp
from mlgrind.ref.collectives import (
    Comm,
    ring_all_gather_bytes,
    ring_all_reduce_bytes,
    shard,
)
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad

B, D, F = 5, 4, 10  # F = 10 splits unevenly over 3 and 4 ranks
SHARDS = [1, 2, 3, 4]


def make(rng, B=B, D=D, F=F):
    return (
        rng.standard_normal((B, D)),
        rng.standard_normal((D, F)) / np.sqrt(D),
        rng.standard_normal((F, D)) / np.sqrt(F),
        rng.standard_normal((B, D)),
    )


def unsharded(x, w_in, w_out, target):
    y, saved = mlp.mlp_forward(x, w_in, w_out)
    _, d_y = mlp.l2_loss(y, target)
    return y, d_y, mlp.mlp_backward(d_y, saved)


def test_l2_loss_gradient():
    rng = np.random.default_rng(0)
    y, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(
        mlp.l2_loss(y, target)[1], numerical_grad(lambda v: mlp.l2_loss(v, target)[0], y), atol=1e-8
    )


def test_one_example_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x_BD, w_in, w_out, target_BD = make(rng)
    x, target = x_BD[0], target_BD[0]

    def loss(x, w_in, w_out):
        return mlp.l2_loss(mlp.mlp_forward_D(x, w_in, w_out)[0], target)[0]

    y, saved = mlp.mlp_forward_D(x, w_in, w_out)
    d_x, d_w_in, d_w_out = mlp.mlp_backward_D(mlp.l2_loss(y, target)[1], saved)
    np.testing.assert_allclose(d_x, numerical_grad(lambda v: loss(v, w_in, w_out), x), atol=1e-7)
    np.testing.assert_allclose(d_w_in, numerical_grad(lambda v: loss(x, v, w_out), w_in), atol=1e-7)
    np.testing.assert_allclose(
        d_w_out, numerical_grad(lambda v: loss(x, w_in, v), w_out), atol=1e-7
    )


def test_batched_backward_matches_finite_differences_and_per_example_sum():
    rng = np.random.default_rng(2)
    x, w_in, w_out, target = make(rng)

    def loss(x, w_in, w_out):
        return mlp.l2_loss(mlp.mlp_forward(x, w_in, w_out)[0], target)[0]

    y, d_y, (d_x, d_w_in, d_w_out) = unsharded(x, w_in, w_out, target)
    np.testing.assert_allclose(d_x, numerical_grad(lambda v: loss(v, w_in, w_out), x), atol=1e-7)
    np.testing.assert_allclose(d_w_in, numerical_grad(lambda v: loss(x, v, w_out), w_in), atol=1e-7)
    np.testing.assert_allclose(
        d_w_out, numerical_grad(lambda v: loss(x, w_in, v), w_out), atol=1e-7
    )
    # The batch dimension is a loop over examples; the weight gradient sums over them.
    per_example = [
        mlp.mlp_backward_D(d_y[b], mlp.mlp_forward_D(x[b], w_in, w_out)[1]) for b in range(B)
    ]
    np.testing.assert_allclose(
        y, [mlp.mlp_forward_D(x[b], w_in, w_out)[0] for b in range(B)], atol=1e-12
    )
    np.testing.assert_allclose(d_w_in, sum(g[1] for g in per_example), atol=1e-12)


@pytest.mark.parametrize("S", SHARDS)
def test_row_parallel_equals_unsharded(S):
    rng = np.random.default_rng(S)
    x, w_in, w_out, target = make(rng)
    y, d_y, (d_x, d_w_in, d_w_out) = unsharded(x, w_in, w_out, target)
    comm = Comm(S)
    y_s, saved = mlp.row_parallel_forward(comm, x, w_in, shard(w_out, S, axis=0))
    d_x_s, d_w_in_s, d_w_out_ranks = mlp.row_parallel_backward(comm, d_y, saved)
    np.testing.assert_allclose(y_s, y, atol=1e-10)
    np.testing.assert_allclose(d_x_s, d_x, atol=1e-10)
    np.testing.assert_allclose(d_w_in_s, d_w_in, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_out_ranks, axis=0), d_w_out, atol=1e-10)
    fwd, bwd = comm.log
    assert (fwd.collective, fwd.shapes) == ("all_reduce", [(B, D)] * S)
    assert (bwd.collective, bwd.shapes) == (
        "all_gather",
        [(B, w.shape[0]) for w in shard(w_out, S)],
    )
    assert sum(bwd.received) == pytest.approx(S * ring_all_gather_bytes(B * F * 8, S))


@pytest.mark.parametrize("S", SHARDS)
def test_column_parallel_equals_unsharded(S):
    rng = np.random.default_rng(S)
    x, w_in, w_out, target = make(rng)
    y, d_y, (d_x, d_w_in, d_w_out) = unsharded(x, w_in, w_out, target)
    comm = Comm(S)
    y_s, saved = mlp.column_parallel_forward(comm, x, shard(w_in, S, axis=1), w_out)
    d_x_s, d_w_in_ranks, d_w_out_s = mlp.column_parallel_backward(comm, d_y, saved)
    np.testing.assert_allclose(y_s, y, atol=1e-10)
    np.testing.assert_allclose(d_x_s, d_x, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_in_ranks, axis=1), d_w_in, atol=1e-10)
    np.testing.assert_allclose(d_w_out_s, d_w_out, atol=1e-10)
    fwd, bwd = comm.log
    assert (fwd.collective, fwd.shapes) == (
        "all_gather",
        [(B, w.shape[1]) for w in shard(w_in, S, axis=1)],
    )
    assert (bwd.collective, bwd.shapes) == ("all_reduce", [(B, D)] * S)


@pytest.mark.parametrize("S", SHARDS)
def test_megatron_equals_unsharded_with_one_all_reduce_each_way(S):
    rng = np.random.default_rng(S)
    x, w_in, w_out, target = make(rng)
    y, d_y, (d_x, d_w_in, d_w_out) = unsharded(x, w_in, w_out, target)
    comm = Comm(S)
    with count_flops() as fwd_flops:
        y_s, saved = mlp.megatron_forward(comm, x, shard(w_in, S, axis=1), shard(w_out, S, axis=0))
    with count_flops() as bwd_flops:
        d_x_s, d_w_in_ranks, d_w_out_ranks = mlp.megatron_backward(comm, d_y, saved)
    np.testing.assert_allclose(y_s, y, atol=1e-10)
    np.testing.assert_allclose(d_x_s, d_x, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_in_ranks, axis=1), d_w_in, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_w_out_ranks, axis=0), d_w_out, atol=1e-10)
    assert [(r.collective, r.tag, r.shapes) for r in comm.log] == [
        ("all_reduce", "y_BD", [(B, D)] * S),
        ("all_reduce", "d_x_BD", [(B, D)] * S),
    ]
    if (B * D) % S == 0:
        assert comm.sent == [2 * ring_all_reduce_bytes(B * D * 8, S)] * S
    # Tensor parallelism splits the matmuls without repeating any: the ranks' FLOPs add up exactly.
    assert fwd_flops.total == mlp.mlp_flops(B, D, F)
    assert bwd_flops.total == mlp.mlp_backward_flops(B, D, F)


@pytest.mark.parametrize("S", [1, 2, 3, 5])
def test_data_parallel_equals_unsharded(S):
    rng = np.random.default_rng(S)
    x, w_in, w_out, target = make(rng)  # B = 5 splits unevenly over 2 and 3 ranks
    y, _, (d_x, d_w_in, d_w_out) = unsharded(x, w_in, w_out, target)
    comm = Comm(S)
    y_ranks, saved_ranks = mlp.data_parallel_forward(shard(x, S), w_in, w_out, comm=comm)
    d_y_ranks = [mlp.l2_loss(y_r, t_r)[1] for y_r, t_r in zip(y_ranks, shard(target, S))]
    d_x_ranks, d_w_in_s, d_w_out_s = mlp.data_parallel_backward(comm, d_y_ranks, saved_ranks)
    np.testing.assert_allclose(np.concatenate(y_ranks), y, atol=1e-10)
    np.testing.assert_allclose(np.concatenate(d_x_ranks), d_x, atol=1e-10)
    np.testing.assert_allclose(d_w_in_s, d_w_in, atol=1e-10)
    np.testing.assert_allclose(d_w_out_s, d_w_out, atol=1e-10)
    assert [(r.tag, r.shapes) for r in comm.log] == [
        ("d_w_in_DF", [(D, F)] * S),
        ("d_w_out_FD", [(F, D)] * S),
    ]
    if (D * F) % S == 0:
        assert comm.sent == [2 * ring_all_reduce_bytes(D * F * 8, S)] * S


def test_sharded_forms_need_one_entry_per_rank():
    """Blocks cut for 2 ranks handed to a 3-rank comm: each function names the list that is off,
    forward and backward, before any einsum or collective runs."""
    rng = np.random.default_rng(0)
    x, w_in, w_out, target = make(rng)
    x_ranks, target_ranks = shard(x, 2), shard(target, 2)
    w_in_ranks, w_out_ranks = shard(w_in, 2, axis=1), shard(w_out, 2, axis=0)
    d_y = mlp.l2_loss(mlp.mlp_forward(x, w_in, w_out)[0], target)[1]
    comm = Comm(3)

    def off(name):
        return pytest.raises(ValueError, match=f"{name} needs one entry per rank: got 2 for 3")

    with off("w_out_FD_ranks"):
        mlp.row_parallel_forward(comm, x, w_in, w_out_ranks)
    with off("w_in_DF_ranks"):
        mlp.column_parallel_forward(comm, x, w_in_ranks, w_out)
    with off("w_in_DF_ranks"):
        mlp.megatron_forward(comm, x, w_in_ranks, w_out_ranks)
    with off("x_BD_ranks"):
        mlp.data_parallel_forward(x_ranks, w_in, w_out, comm=comm)

    _, row_saved = mlp.row_parallel_forward(Comm(2), x, w_in, w_out_ranks)
    _, column_saved = mlp.column_parallel_forward(Comm(2), x, w_in_ranks, w_out)
    _, megatron_saved = mlp.megatron_forward(Comm(2), x, w_in_ranks, w_out_ranks)
    y_ranks, dp_saved = mlp.data_parallel_forward(x_ranks, w_in, w_out, comm=Comm(2))
    d_y_ranks = [mlp.l2_loss(y, t)[1] for y, t in zip(y_ranks, target_ranks, strict=True)]
    assert comm.log == []  # every forward above ran on its own 2-rank comm
    with off("w_out_FD_ranks"):
        mlp.row_parallel_backward(comm, d_y, row_saved)
    with off("w_in_DF_ranks"):
        mlp.column_parallel_backward(comm, d_y, column_saved)
    with off("saved_ranks"):
        mlp.megatron_backward(comm, d_y, megatron_saved)
    with off("d_y_BD_ranks"):
        mlp.data_parallel_backward(comm, d_y_ranks, dp_saved)
    with pytest.raises(ValueError, match="saved_ranks needs one entry per rank: got 1 for 2"):
        mlp.data_parallel_backward(Comm(2), d_y_ranks, dp_saved[:1])


@pytest.mark.parametrize("seed", range(4))
def test_flop_formulas_equal_counted_einsums(seed):
    rng = np.random.default_rng(seed)
    b, d, f = (int(n) for n in rng.integers(1, 9, size=3))
    x, w_in, w_out, target = make(rng, b, d, f)
    with count_flops() as fwd:
        y, saved = mlp.mlp_forward(x, w_in, w_out)
    with count_flops() as bwd:
        mlp.mlp_backward(mlp.l2_loss(y, target)[1], saved)
    assert fwd.total == mlp.mlp_flops(b, d, f)
    assert bwd.total == mlp.mlp_backward_flops(b, d, f) == 2 * fwd.total
    with count_flops() as one:
        y_D, saved_D = mlp.mlp_forward_D(x[0], w_in, w_out)
        mlp.mlp_backward_D(y_D, saved_D)
    assert one.total == mlp.mlp_flops(1, d, f) + mlp.mlp_backward_flops(1, d, f)


def test_swiglu_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4))
    w = [rng.standard_normal((4, 5)), rng.standard_normal((4, 5)), rng.standard_normal((5, 4))]
    target = rng.standard_normal((2, 3, 4))

    def loss(x_, gate, up, down):
        h = x_ @ gate
        y = (h / (1 + np.exp(-h)) * (x_ @ up)) @ down  # silu(x·gate) ⊙ x·up, then down
        return 0.5 * np.sum((y - target) ** 2)

    y, saved = mlp.swiglu_forward(x, *w)
    grads = mlp.swiglu_backward(y - target, saved)
    args = [x, *w]
    for i, grad in enumerate(grads):
        def f(v, i=i):
            return loss(*[v if j == i else a for j, a in enumerate(args)])
        np.testing.assert_allclose(grad, numerical_grad(f, args[i]), rtol=1e-5, atol=1e-7)
