"""Inference: KV cache, prefill and decode latency on a roofline, serving capacity, speculation.

    KV bytes per token   MHA/GQA 2·G·K·n_layers·bytes ; MLA (C + R)·n_layers·bytes
    prefill              compute-bound: forward FLOPs of the prompt / (GPUs × peak × efficiency)
    decode step          max(compute, memory): every weight the batch touches and every cached
                         token are read once per step, while FLOPs grow with the batch
    critical batch       the smallest batch whose step is compute-bound. Without KV reads it is
                         b* = peak/bandwidth × bytes per weight / 2 (the ridge point for bf16);
                         long contexts push it up, and past some context decode never turns
                         compute-bound because KV reads grow with the batch as fast as FLOPs.

An MoE step reads only the experts its tokens were routed to: with uniform routing a batch of b
tokens touches E·(1 − (1 − k/E)^b) of the E experts of a layer, in expectation.
Tensor-parallel communication and kernel efficiency are left out: these are lower bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlgrind.calc.flops import attention_flops_per_token, forward_flops
from mlgrind.calc.hardware import Hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError


def kv_bytes_per_token(spec: ModelSpec, bytes_per_element: int = 2) -> int:
    if spec.mla is not None:
        return (spec.mla.C + spec.mla.R) * spec.n_layers * bytes_per_element
    return 2 * spec.G * spec.K * spec.n_layers * bytes_per_element


def kv_bytes(spec: ModelSpec, tokens: int, batch: int = 1, bytes_per_element: int = 2) -> int:
    return batch * tokens * kv_bytes_per_token(spec, bytes_per_element)


def weight_bytes_read(spec: ModelSpec, batch: int, bytes_per_weight: float) -> float:
    """Weights one decode step reads: all but the experts nobody in the batch was sent to."""
    c = count(spec)
    if not spec.E:
        return c.total * bytes_per_weight
    per_expert = c.experts / (spec.moe_layers * spec.E)
    touched = spec.E * (1 - (1 - spec.top_k / spec.E) ** batch)
    return (c.total - c.experts + spec.moe_layers * touched * per_expert) * bytes_per_weight


@dataclass(frozen=True)
class Step:
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def decode_step(spec: ModelSpec, hw: Hardware, batch: int, context: int, gpus: int = 1,
                bytes_per_weight: float = 2, kv_bytes_per_element: int = 2) -> Step:
    """One decode step: `batch` sequences each add one token after `context` cached ones."""
    flops = batch * (2 * count(spec).matmul_per_token + attention_flops_per_token(spec, context))
    read = weight_bytes_read(spec, batch, bytes_per_weight) + kv_bytes(spec, context, batch, kv_bytes_per_element)
    return Step(flops / (gpus * hw.bf16_flops), read / (gpus * hw.hbm_bw))


def prefill_seconds(spec: ModelSpec, hw: Hardware, prompt: int, batch: int = 1, gpus: int = 1,
                    efficiency: float = 1.0) -> float:
    return forward_flops(spec, batch, prompt) / (gpus * hw.bf16_flops * efficiency)


def critical_batch(spec: ModelSpec, hw: Hardware, context: int, bytes_per_weight: float = 2,
                   limit: int = 1 << 20) -> int | None:
    """Smallest batch whose decode step is compute-bound (None: not below `limit`)."""
    def compute_bound(b: int) -> bool:
        return decode_step(spec, hw, b, context, 1, bytes_per_weight).bound == "compute"

    if not compute_bound(limit):
        return None
    low, high = 1, limit  # compute-bound is monotone in the batch: bisect for the first one
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if compute_bound(mid) else (mid + 1, high)
    return low


@dataclass(frozen=True)
class ServePlan:
    gpus_per_replica: int
    batch_per_replica: int  # concurrent users one replica decodes
    replicas: int
    step: Step  # one decode step at that batch
    kv_per_user: int

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def tokens_per_second_per_user(self) -> float:
        return 1 / self.step.seconds


def serve(spec: ModelSpec, hw: Hardware, users: int, tokens_per_second: float, context: int,
          bytes_per_weight: float = 2, usable_memory: float = 0.9, max_gpus_per_replica: int = 64) -> ServePlan:
    """GPUs to decode for `users` concurrent users, each at ≥ `tokens_per_second`, with
    `context` tokens cached per user.

    For each replica size n = 1, 2, 4, … GPUs, its batch is the largest one that both fits its
    memory (`usable_memory` of HBM, the rest for activations and fragmentation) and still
    decodes each user at the target speed; the plan is the replica size needing the fewest GPUs
    in all (ties: the smaller replica).
    """
    kv_user = kv_bytes(spec, context)
    weights = count(spec).total * bytes_per_weight
    plans = []
    n = 1
    while n <= max_gpus_per_replica:
        room = n * hw.hbm_bytes * usable_memory - weights
        fit = int(room // kv_user) if room > 0 else 0
        batch = _fastest_batch(spec, hw, fit, context, n, bytes_per_weight, tokens_per_second)
        if batch:
            step = decode_step(spec, hw, batch, context, n, bytes_per_weight)
            plans.append(ServePlan(n, batch, math.ceil(users / batch), step, kv_user))
        n *= 2
    if not plans:
        raise SpecError(f"{spec.name} cannot decode at {tokens_per_second:g} tokens/s per user with "
                        f"{context} cached tokens on up to {max_gpus_per_replica} {hw.key} per replica")
    return min(plans, key=lambda plan: (plan.gpus, plan.gpus_per_replica))


def _fastest_batch(spec, hw, fit, context, n, bytes_per_weight, target) -> int:
    """Largest batch ≤ fit whose step is at most 1/target seconds (0 if none)."""
    def fast(b):
        return decode_step(spec, hw, b, context, n, bytes_per_weight).seconds <= 1 / target

    if fit < 1 or not fast(1):
        return 0
    low, high = 1, fit  # step time grows with the batch: bisect for the last fast one
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fast(mid) else (low, mid - 1)
    return low


def speculative_speedup(alpha: float, gamma: int, draft_cost: float) -> tuple[float, float]:
    """(tokens per target pass, wall-time speed-up) of speculative decoding with acceptance
    rate α, γ drafted tokens and a draft call costing `draft_cost` target calls (Leviathan et
    al. 2023, Theorem 3.8): (1 − α^(γ+1)) / (1 − α) tokens for γ·c + 1 target-call times."""
    from mlgrind.ref.speculative import expected_speedup, expected_tokens_per_step

    return expected_tokens_per_step(alpha, gamma), expected_speedup(alpha, gamma, draft_cost)
