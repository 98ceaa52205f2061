import math

import numpy as np
import pytest

from mlgrind.ref import collectives as co

RANKS = [1, 2, 3, 4, 5]


def ranks_of(S, shape, rng, dtype=np.float64):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(S)]


@pytest.mark.parametrize("S", RANKS)
@pytest.mark.parametrize("shape", [(6, 4), (7,), (2, 3, 5)])
def test_all_reduce_sums_and_moves_ring_bytes(S, shape):
    rng = np.random.default_rng(S)
    xs = ranks_of(S, shape, rng)
    comm = co.Comm(S)
    out = comm.all_reduce(xs)
    for y in out:
        np.testing.assert_allclose(y, sum(xs), atol=1e-12)
    n_bytes = xs[0].nbytes
    record = comm.log[0]
    assert record.steps == 2 * (S - 1)
    # Every chunk makes S-1 hops in each half, so the total is exact even for uneven chunks.
    assert (
        sum(record.sent)
        == sum(record.received)
        == pytest.approx(S * co.ring_all_reduce_bytes(n_bytes, S))
    )
    if math.prod(shape) % S == 0:
        assert record.sent == record.received == [co.ring_all_reduce_bytes(n_bytes, S)] * S


@pytest.mark.parametrize("S", RANKS)
@pytest.mark.parametrize("rows", [10, 7])
def test_reduce_scatter_gives_each_rank_its_block_of_the_sum(S, rows):
    rng = np.random.default_rng(rows + S)
    xs = ranks_of(S, (3, rows), rng)
    comm = co.Comm(S)
    out = comm.reduce_scatter(xs, axis=1)
    expected = np.array_split(sum(xs), S, axis=1)
    for y, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(y, e, atol=1e-12)
    record = comm.log[0]
    assert record.steps == S - 1
    assert sum(record.sent) == pytest.approx(S * co.ring_reduce_scatter_bytes(xs[0].nbytes, S))
    if rows % S == 0:
        assert record.sent == [co.ring_reduce_scatter_bytes(xs[0].nbytes, S)] * S


@pytest.mark.parametrize("S", RANKS)
def test_all_gather_concatenates_and_each_rank_receives_what_it_lacks(S):
    rng = np.random.default_rng(S)
    xs = [rng.standard_normal((r + 1, 3)) for r in range(S)]  # uneven blocks
    comm = co.Comm(S)
    out = comm.all_gather(xs, axis=0)
    full = np.concatenate(xs)
    for y in out:
        np.testing.assert_array_equal(y, full)
    record = comm.log[0]
    assert record.received == [full.nbytes - x.nbytes for x in xs]
    assert record.steps == S - 1

    even = ranks_of(S, (2, 3), rng)
    comm.all_gather(even, axis=0)
    n_bytes = S * even[0].nbytes
    assert comm.log[1].sent == comm.log[1].received == [co.ring_all_gather_bytes(n_bytes, S)] * S


@pytest.mark.parametrize("S", RANKS)
def test_all_reduce_costs_a_reduce_scatter_plus_an_all_gather(S):
    rng = np.random.default_rng(S)
    xs = ranks_of(S, (4 * S, 3), rng)
    one, two = co.Comm(S), co.Comm(S)
    summed = one.all_reduce(xs)
    gathered = two.all_gather(two.reduce_scatter(xs, axis=0), axis=0)
    for a, b in zip(summed, gathered):
        np.testing.assert_allclose(a, b, atol=1e-12)
    assert one.sent == two.sent and one.received == two.received


@pytest.mark.parametrize("S", RANKS)
def test_all_to_all_transposes_chunks(S):
    rng = np.random.default_rng(S)
    chunks = [[rng.standard_normal((src + dst + 1, 2)) for dst in range(S)] for src in range(S)]
    comm = co.Comm(S)
    out = comm.all_to_all(chunks)
    for src in range(S):
        for dst in range(S):
            np.testing.assert_array_equal(out[dst][src], chunks[src][dst])
    record = comm.log[0]
    for r in range(S):
        assert record.sent[r] == sum(chunks[r][d].nbytes for d in range(S) if d != r)
        assert record.received[r] == sum(chunks[s][r].nbytes for s in range(S) if s != r)

    even = [[rng.standard_normal((2, 3)) for _ in range(S)] for _ in range(S)]
    comm.all_to_all(even)
    n_bytes = S * even[0][0].nbytes
    assert comm.log[1].sent == [co.all_to_all_bytes(n_bytes, S)] * S
    assert comm.log[1].steps == S - 1


@pytest.mark.parametrize("S", [1, 2, 3, 5, 8, 9])
@pytest.mark.parametrize("algorithm", ["ring", "tree"])
@pytest.mark.parametrize("root", [0, 1])
def test_broadcast(S, algorithm, root):
    root = root % S
    x = np.arange(12.0).reshape(3, 4)
    comm = co.Comm(S)
    out = comm.broadcast(x, root=root, algorithm=algorithm)
    for y in out:
        np.testing.assert_array_equal(y, x)
    record = comm.log[0]
    assert record.received == [0 if r == root else x.nbytes for r in range(S)]
    assert max(record.sent) == co.broadcast_bytes(x.nbytes, S, algorithm)
    rounds = S - 1 if algorithm == "ring" else math.ceil(math.log2(S))
    assert record.steps == rounds


@pytest.mark.parametrize("S", RANKS)
@pytest.mark.parametrize("shift", [1, -1, 2])
def test_send_recv_shifts_around_the_ring(S, shift):
    xs = [np.full((2,), float(r)) for r in range(S)]
    comm = co.Comm(S)
    out = comm.send_recv(xs, shift=shift)
    for r in range(S):
        np.testing.assert_array_equal(out[r], xs[(r - shift) % S])
    moves = shift % S != 0
    assert comm.sent == comm.received == [xs[0].nbytes * moves] * S


def test_ledger_totals_tags_and_dtype_bytes():
    S = 4
    rng = np.random.default_rng(0)
    comm = co.Comm(S)
    comm.all_reduce(ranks_of(S, (8,), rng, np.float32), tag="grads")
    comm.all_reduce(ranks_of(S, (8,), rng, np.float64), tag="grads")
    y = comm.send(np.ones(5), src=1, dst=3, tag="acts")
    np.testing.assert_array_equal(y, np.ones(5))
    f32, f64, p2p = comm.log
    assert f32.dtype == "float32" and f32.shapes == [(8,)] * S
    assert f64.sent == [2 * b for b in f32.sent]  # same shape, twice the bytes per element
    assert p2p.sent == [0, 40, 0, 0] and p2p.received == [0, 0, 0, 40]
    assert comm.sent == [a + b + c for a, b, c in zip(f32.sent, f64.sent, p2p.sent)]
    assert [r.tag for r in comm.records("all_reduce")] == ["grads", "grads"]
    assert comm.records(tag="acts") == [p2p]


def every_collective(S, rng):
    """One call of each collective on S ranks, the chunky ones with uneven blocks."""
    comm = co.Comm(S)
    comm.all_reduce(ranks_of(S, (7,), rng))
    comm.reduce_scatter(ranks_of(S, (3, 5), rng, np.float32), axis=1)
    comm.all_gather([rng.standard_normal(r + 1) for r in range(S)])
    comm.all_to_all([[rng.standard_normal(s + d + 1) for d in range(S)] for s in range(S)])
    comm.broadcast(np.ones(3), root=S - 1, algorithm="ring")
    comm.broadcast(np.ones(3), algorithm="tree")
    comm.send_recv(ranks_of(S, (2,), rng), shift=1)
    comm.send(np.ones(4), src=0, dst=S - 1)
    return comm


@pytest.mark.parametrize("S", RANKS)
def test_per_step_ledger_adds_up_to_the_totals_and_has_one_message_per_rank_per_step(S):
    for record in every_collective(S, np.random.default_rng(S)).log:
        ledger = record.transfers
        assert [sum(t.nbytes for t in ledger if t.src == r) for r in range(S)] == record.sent
        assert [sum(t.nbytes for t in ledger if t.dst == r) for r in range(S)] == record.received
        assert sorted({t.step for t in ledger}) == list(range(record.steps)), record.collective
        senders = [(t.step, t.src) for t in ledger]
        assert len(senders) == len(set(senders)), record.collective  # a step is one round
        assert all(t.src != t.dst for t in ledger)


@pytest.mark.parametrize("S", [2, 3, 5])
def test_ring_all_gather_ledger_forwards_what_arrived_the_step_before(S):
    comm = co.Comm(S)
    comm.all_gather(ranks_of(S, (2,), np.random.default_rng(S)))
    sent = {(t.step, t.src): (t.dst, t.chunk) for t in comm.log[0].transfers}
    for r in range(S):
        assert sent[(0, r)] == ((r + 1) % S, r)  # first it passes on the block it owns
        for step in range(1, S - 1):
            arrived = sent[(step - 1, (r - 1) % S)][1]
            assert sent[(step, r)] == ((r + 1) % S, arrived)


def test_results_do_not_alias_inputs_or_each_other():
    xs = [np.ones(4), np.ones(4)]
    out = co.Comm(2).all_reduce(xs)
    out[0][0] = 99.0
    assert out[1][0] == 2.0 and xs[0][0] == 1.0


def test_errors():
    with pytest.raises(ValueError, match="one array per rank"):
        co.Comm(3).all_reduce([np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="same shape"):
        co.Comm(2).all_reduce([np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="cannot shard"):
        co.shard(np.ones((3, 2)), 4)


def test_all_gather_rejects_mixed_dtypes_instead_of_upcasting():
    comm = co.Comm(2)
    with pytest.raises(ValueError, match="same dtype on every rank"):
        comm.all_gather([np.ones(2, np.float32), np.ones(3, np.float64)])
    assert comm.log == []  # nothing was recorded for the refused call
    (out, _) = comm.all_gather([np.ones(2, np.float32), np.ones(3, np.float32)])
    assert out.dtype == np.float32 and comm.log[0].dtype == "float32"
    with pytest.raises(ValueError, match="at least one rank"):
        co.Comm(0)
    with pytest.raises(ValueError, match="algorithm"):
        co.Comm(2).broadcast(np.ones(2), algorithm="star")


@pytest.mark.parametrize("S", [1, 3, 4])
def test_shard_blocks_concatenate_back(S):
    x = np.arange(30.0).reshape(10, 3)
    blocks = co.shard(x, S, axis=0)
    assert len(blocks) == S and max(len(b) for b in blocks) - min(len(b) for b in blocks) <= 1
    np.testing.assert_array_equal(np.concatenate(blocks), x)
