"""Seed "Continuous Batching Pipelines": iteration-level scheduling against static batching.

Static batching runs a fixed batch to completion: prompts are padded to the longest one,
every slot decodes until the longest output is done, and new requests wait for the whole
batch. Continuous batching (Orca, Yu et al., OSDI 2022) schedules per iteration: a finished
request leaves at once and a waiting one takes its slot in the very next iteration, its
prefill riding along with the others' decode steps.

Both are simulated on one cost model: an iteration costs a fixed time (reading every weight
once, whatever the batch) plus a time per token processed, padding included. Decode is
dominated by the fixed part, which is why filling slots is nearly free throughput.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Request:
    arrival: float
    prompt_length: int
    output_length: int  # at least 1: prefill itself emits the first token


@dataclass(frozen=True)
class CostModel:
    """Time of one iteration; the defaults read as milliseconds for a mid-size model."""

    fixed: float = 10.0
    per_token: float = 0.02

    def iteration_time(self, tokens: int) -> float:
        return self.fixed + self.per_token * tokens


@dataclass
class Timeline:
    """What a simulation records: per request, and per iteration the number of sequences run."""

    start: list[float]
    first_token: list[float]
    finish: list[float]
    generated: list[int]
    batch_sizes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    throughput: float  # generated tokens per unit time, first arrival to last finish
    latency_mean: float
    latency_p50: float
    latency_p99: float
    time_to_first_token_mean: float


def poisson_requests(
    n: int, rate: float, prompt_lengths: tuple[int, int], output_lengths: tuple[int, int], rng
) -> list[Request]:
    """n requests with exponential gaps (mean 1 / rate) and uniform lengths in [low, high]."""
    arrivals = np.cumsum(rng.exponential(1 / rate, size=n))
    prompts = rng.integers(prompt_lengths[0], prompt_lengths[1] + 1, size=n)
    outputs = rng.integers(output_lengths[0], output_lengths[1] + 1, size=n)
    return [
        Request(float(a), int(p), int(o))
        for a, p, o in zip(arrivals, prompts, outputs, strict=True)
    ]


def _empty_timeline(n: int) -> Timeline:
    return Timeline([np.nan] * n, [np.nan] * n, [np.nan] * n, [0] * n)


def static_batching(requests: list[Request], max_batch: int, cost: CostModel) -> Timeline:
    timeline = _empty_timeline(len(requests))
    waiting = deque(sorted(range(len(requests)), key=lambda r: requests[r].arrival))
    t = 0.0
    while waiting:
        t = max(t, requests[waiting[0]].arrival)
        batch = []
        while waiting and len(batch) < max_batch and requests[waiting[0]].arrival <= t:
            batch.append(waiting.popleft())
        # A rectangular batch: every prompt padded to the longest, every slot kept busy until
        # the longest output is done.
        prompt = max(requests[r].prompt_length for r in batch)
        steps = max(requests[r].output_length for r in batch)
        for step in range(steps):
            t_next = t + cost.iteration_time(len(batch) * (prompt if step == 0 else 1))
            timeline.batch_sizes.append(len(batch))
            for r in batch:
                if step == 0:
                    timeline.start[r], timeline.first_token[r] = t, t_next
                if step < requests[r].output_length:
                    timeline.generated[r] += 1
                    if timeline.generated[r] == requests[r].output_length:
                        timeline.finish[r] = t_next
            t = t_next
    return timeline


def continuous_batching(requests: list[Request], max_batch: int, cost: CostModel) -> Timeline:
    timeline = _empty_timeline(len(requests))
    waiting = deque(sorted(range(len(requests)), key=lambda r: requests[r].arrival))
    running: list[int] = []
    t = 0.0
    while waiting or running:
        if not running:
            t = max(t, requests[waiting[0]].arrival)
        joining = []
        free = max_batch - len(running)
        while waiting and len(joining) < free and requests[waiting[0]].arrival <= t:
            joining.append(waiting.popleft())
        # Newcomers run their whole prompt (prefill) in the same iteration as everyone
        # else's single decode token.
        tokens = sum(requests[r].prompt_length for r in joining) + len(running)
        t_next = t + cost.iteration_time(tokens)
        for r in joining:
            timeline.start[r], timeline.first_token[r] = t, t_next
        running += joining
        timeline.batch_sizes.append(len(running))
        for r in running:
            timeline.generated[r] += 1
            if timeline.generated[r] == requests[r].output_length:
                timeline.finish[r] = t_next
        running = [r for r in running if timeline.generated[r] < requests[r].output_length]
        t = t_next
    return timeline


def report(requests: list[Request], timeline: Timeline) -> Report:
    arrival = np.array([r.arrival for r in requests])
    latency = np.array(timeline.finish) - arrival
    return Report(
        throughput=sum(timeline.generated) / (max(timeline.finish) - arrival.min()),
        latency_mean=float(latency.mean()),
        latency_p50=float(np.percentile(latency, 50)),
        latency_p99=float(np.percentile(latency, 99)),
        time_to_first_token_mean=float((np.array(timeline.first_token) - arrival).mean()),
    )
