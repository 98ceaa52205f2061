"""Serving and RL calculators: the roofline's turning points and the RL throughput identities."""

from __future__ import annotations

import pytest

from mlgrind.calc import hardware, inference, rl
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model

H100 = hardware.load("h100-sxm")


def test_decode_turns_compute_bound_exactly_at_the_critical_batch():
    spec = load_model("llama-3-8b")
    for context in (1, 64, 128):
        b = inference.critical_batch(spec, H100, context)
        assert inference.decode_step(spec, H100, b - 1, context).bound == "memory"
        assert inference.decode_step(spec, H100, b, context).bound == "compute"
    # With almost no KV the turning point is the ridge point (bf16: 2 bytes and 2 FLOPs per
    # weight), raised by the weights read but not multiplied (the input embedding table).
    b = inference.critical_batch(spec, H100, 1)
    assert H100.ops_per_byte < b < 1.1 * H100.ops_per_byte


def test_long_contexts_never_turn_decode_compute_bound():
    # Llama-2-70B at 4096 tokens reads 1.34 GB of KV per sequence per step (GQA, bf16) but
    # computes only 2 × 69B FLOPs for it: the KV term alone is above the ridge point.
    assert inference.critical_batch(load_model("llama-2-70b"), H100, context=4096) is None


def test_an_moe_decode_step_reads_only_the_routed_experts():
    spec = load_model("mixtral-8x7b")
    c = count(spec)
    assert inference.weight_bytes_read(spec, 1, 2) == pytest.approx(2 * c.active)
    assert inference.weight_bytes_read(spec, 4096, 2) == pytest.approx(2 * c.total)


def test_a_serving_plan_meets_its_target_and_fits():
    spec = load_model("llama-3-70b")
    plan = inference.serve(spec, H100, users=10_000, tokens_per_second=20, context=4096)
    assert plan.tokens_per_second_per_user >= 20
    assert plan.replicas * plan.batch_per_replica >= 10_000
    used = count(spec).total * 2 + plan.batch_per_replica * plan.kv_per_user
    assert used <= 0.9 * plan.gpus_per_replica * H100.hbm_bytes


def test_deepseek_v3_mtp_speedup_is_below_its_tokens_per_step():
    # DeepSeek-V3 report, section 5.4.3: the second token is accepted 85–90 % of the time and
    # decoding runs 1.8× faster (TPS): one draft token (γ = 1) gives 1 + α tokens per step, an
    # upper bound that the draft module's own cost brings down to the measured 1.8.
    for alpha in (0.85, 0.90):
        tokens, free = inference.speculative_speedup(alpha, 1, 0.0)
        assert tokens == free == pytest.approx(1 + alpha)
        assert 1.8 <= tokens


def test_balanced_async_matches_colocated_sync_and_beats_split_sync():
    t = rl.throughput(64, gen_rate=3000, train_rate=1000)
    assert t.gen_gpus == 16 and t.train_gpus == 48  # the pools balance at g·n_g = r·n_t
    assert t.split_async == pytest.approx(t.colocated_sync)
    assert t.split_async == pytest.approx(2 * t.split_sync)  # balanced pools idle half the time


def test_a_long_rollout_tail_slows_only_synchronous_rl():
    even, tail = rl.throughput(64, 3000, 1000), rl.throughput(64, 3000, 1000, tail=3)
    assert tail.split_async == even.split_async
    assert tail.colocated_sync < even.colocated_sync
