import numpy as np
import pytest

from mlgrind.ref.attention import causal_mask_LM, gqa_attend
from mlgrind.ref.collectives import Comm, shard
from mlgrind.ref.context_parallel import (
    ring_attention,
    ring_attention_bytes,
    ring_attention_flops,
)
from mlgrind.ref.einsum import count_flops


def qkv(rng, B, L, H, K):
    return (rng.normal(size=(B, L, H, K)) for _ in range(3))


def full_attention(q, k, v):
    """The unsharded twin: one causal softmax over the whole sequence (G = H: plain MHA)."""
    positions = np.arange(q.shape[1])
    return gqa_attend(q, k, v, causal_mask_LM(positions, positions))[0]


def run_ring(q, k, v, S):
    comm = Comm(S)
    shards = [shard(a, S, axis=1) for a in (q, k, v)]
    return np.concatenate(ring_attention(*shards, comm), axis=1), comm


@pytest.mark.parametrize("L, S", [(8, 1), (8, 2), (8, 4), (8, 8), (9, 3), (7, 3), (10, 4), (5, 2)])
def test_ring_attention_equals_full_causal_attention(L, S):
    """Includes shard counts that do not divide L: np.array_split blocks of unequal length."""
    q, k, v = qkv(np.random.default_rng(L * 10 + S), B=2, L=L, H=3, K=4)
    out, _ = run_ring(q, k, v, S)
    np.testing.assert_allclose(out, full_attention(q, k, v), atol=1e-10)


def test_more_ranks_than_positions_is_refused():
    q, k, v = qkv(np.random.default_rng(0), B=1, L=3, H=1, K=2)
    with pytest.raises(ValueError, match="cannot shard"):
        run_ring(q, k, v, S=4)


@pytest.mark.parametrize("seed", range(4))
def test_bytes_per_rank_from_the_ledger_equal_the_closed_form(seed):
    rng = np.random.default_rng(seed)
    S = int(rng.integers(1, 6))
    B, H, K, L = int(rng.integers(1, 3)), int(rng.integers(1, 4)), 2, S * int(rng.integers(1, 4))
    _, comm = run_ring(*qkv(rng, B, L, H, K), S)
    expected = ring_attention_bytes(B, L, H, K, S, bytes_per_element=8)
    assert comm.sent == [expected] * S
    assert comm.received == [expected] * S
    assert {r.collective for r in comm.log} <= {"send_recv"}


@pytest.mark.parametrize("L, S", [(7, 3), (10, 4)])
def test_with_uneven_shards_every_block_visits_the_other_s_minus_1_ranks(L, S):
    B, H, K = 1, 2, 2
    q, k, v = qkv(np.random.default_rng(1), B, L, H, K)
    _, comm = run_ring(q, k, v, S)
    kv_bytes = k.nbytes + v.nbytes
    assert sum(comm.sent) == sum(comm.received) == (S - 1) * kv_bytes


@pytest.mark.parametrize("seed", range(4))
def test_flops_from_the_einsums_equal_the_closed_form(seed):
    rng = np.random.default_rng(seed)
    S = int(rng.integers(1, 6))
    B, H, K, L = int(rng.integers(1, 3)), int(rng.integers(1, 4)), 3, S * int(rng.integers(1, 4))
    q, k, v = qkv(rng, B, L, H, K)
    with count_flops() as counted:
        run_ring(q, k, v, S)
    assert counted.total == ring_attention_flops(B, L, H, K, S)
    with count_flops() as dense:
        full_attention(q, k, v)
    assert ring_attention_flops(B, L, H, K, S) == dense.total * (S + 1) / (2 * S)
