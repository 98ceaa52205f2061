import numpy as np
import pytest

from mlgrind.ref.batching import (
    CostModel,
    Request,
    continuous_batching,
    poisson_requests,
    report,
    static_batching,
)

SCHEDULERS = [static_batching, continuous_batching]


def mixed(seed, n=60):
    rng = np.random.default_rng(seed)
    return poisson_requests(n, rate=0.05, prompt_lengths=(4, 200), output_lengths=(1, 120), rng=rng)


@pytest.mark.parametrize("schedule", SCHEDULERS)
@pytest.mark.parametrize("seed", range(3))
def test_every_request_gets_exactly_its_tokens_never_before_arrival(schedule, seed):
    requests = mixed(seed)
    timeline = schedule(requests, max_batch=8, cost=CostModel())
    assert timeline.generated == [r.output_length for r in requests]
    for r, request in enumerate(requests):
        assert request.arrival <= timeline.start[r] < timeline.first_token[r] <= timeline.finish[r]
    assert max(timeline.batch_sizes) <= 8


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_batch", [4, 16])
def test_continuous_beats_static_on_mixed_lengths(seed, max_batch):
    requests = mixed(seed)
    static = report(requests, static_batching(requests, max_batch, CostModel()))
    continuous = report(requests, continuous_batching(requests, max_batch, CostModel()))
    assert continuous.throughput >= static.throughput
    assert continuous.latency_mean <= static.latency_mean


@pytest.mark.parametrize("n, max_batch", [(12, 4), (10, 4), (3, 8)])
def test_equal_lengths_arriving_together_schedule_identically(n, max_batch):
    """Nothing to pad and nobody leaves early, so iteration-level scheduling changes nothing."""
    requests = [Request(0.0, prompt_length=7, output_length=5)] * n
    static = static_batching(requests, max_batch, CostModel())
    continuous = continuous_batching(requests, max_batch, CostModel())
    assert static == continuous
    assert report(requests, static) == report(requests, continuous)


def test_two_requests_by_hand():
    """Fixed cost 1, 0.5 per token. Static: prefill pads 2×3 tokens (t = 4), then three decode
    iterations of 2 slots (2 each): the first finishes at 4 + 2 = 6, the second at 10.
    Continuous: prefill of 3 + 1 tokens (t = 3), then 2 slots (t = 5, the first leaves), then
    1 slot twice (t = 6.5, 8)."""
    requests = [Request(0.0, prompt_length=3, output_length=2), Request(0.0, 1, output_length=4)]
    cost = CostModel(fixed=1.0, per_token=0.5)
    static = static_batching(requests, max_batch=2, cost=cost)
    assert static.first_token == [4.0, 4.0] and static.finish == [6.0, 10.0]
    continuous = continuous_batching(requests, max_batch=2, cost=cost)
    assert continuous.first_token == [3.0, 3.0] and continuous.finish == [5.0, 8.0]
    assert continuous.batch_sizes == [2, 2, 1, 1]


def test_a_late_arrival_joins_a_running_continuous_batch_but_waits_for_a_static_one():
    requests = [Request(0.0, 2, 10), Request(5.0, 2, 1)]
    cost = CostModel(fixed=1.0, per_token=0.0)
    assert continuous_batching(requests, 2, cost).start[1] == 5.0
    assert static_batching(requests, 2, cost).start[1] == 10.0
