"""Seed "Understand speculative decoding and the perf improvement you can get out of it".

Leviathan, Kalman & Matias 2023 (arXiv 2211.17192) and Chen et al. 2023 (arXiv 2302.01318).
A cheap draft model q proposes γ tokens one by one; the target p scores all γ + 1 prefixes in
one parallel pass; draft token x is kept with probability min(1, p(x) / q(x)), and the first
rejected one is replaced by a sample from the residual norm(max(0, p − q)). If all γ survive,
the target's own next-token distribution gives a bonus token, so a step emits 1 to γ + 1 tokens.
The emitted text is distributed exactly as sampling from p alone (checked here by enumeration);
only the speed changes.

A model here is a function: context (tuple of token ids) → probabilities over the vocabulary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

Model = Callable[[tuple[int, ...]], np.ndarray]


def residual(p_V: np.ndarray, q_V: np.ndarray) -> np.ndarray:
    """norm(max(0, p − q)): where the target wants more mass than the draft gave.

    When there is no excess (p ≤ q everywhere, i.e. p == q for two distributions) every draft
    token is accepted and the residual is never sampled; norm(0) is undefined, so p itself is
    returned. That keeps the function total (no 0 / 0 NaN when rounding lets a "rejection"
    through) and still emits tokens from the target.
    """
    excess_V = np.maximum(p_V - q_V, 0)
    total = excess_V.sum()
    if total <= 0:
        return np.array(p_V)  # a copy, like the normal path's fresh array
    return excess_V / total


def speculative_step(
    target: Model, draft: Model, context: tuple[int, ...], gamma: int, rng: np.random.Generator
) -> tuple[int, ...]:
    """One step of speculative sampling: the 1 to γ + 1 tokens it emits after context."""
    drafted: tuple[int, ...] = ()
    q = []
    for _ in range(gamma):
        q_V = draft(context + drafted)
        drafted += (int(rng.choice(len(q_V), p=q_V)),)
        q.append(q_V)
    # On hardware this is one forward pass of the target over the γ + 1 prefixes.
    p = [target(context + drafted[:i]) for i in range(gamma + 1)]
    for i, x in enumerate(drafted):
        if rng.random() >= p[i][x] / q[i][x]:
            return drafted[:i] + (int(rng.choice(len(p[i]), p=residual(p[i], q[i]))),)
    return drafted + (int(rng.choice(len(p[gamma]), p=p[gamma])),)


def step_distribution(
    target: Model, draft: Model, context: tuple[int, ...], gamma: int
) -> dict[tuple[int, ...], float]:
    """Exact probability of every block one speculative step can emit, by walking its tree."""
    blocks: dict[tuple[int, ...], float] = defaultdict(float)

    def walk(drafted: tuple[int, ...], probability: float) -> None:
        p_V = target(context + drafted)
        if len(drafted) == gamma:
            for x, p_x in enumerate(p_V):
                blocks[drafted + (x,)] += probability * p_x
            return
        q_V = draft(context + drafted)
        rejected = 0.0
        for x, q_x in enumerate(q_V):
            if q_x > 0:
                accept = min(1.0, p_V[x] / q_x)
                walk(drafted + (x,), probability * q_x * accept)
                rejected += q_x * (1 - accept)
        if rejected > 0:
            for x, r_x in enumerate(residual(p_V, q_V)):
                blocks[drafted + (x,)] += probability * rejected * r_x

    walk((), 1.0)
    return dict(blocks)


def emitted_distribution(
    target: Model, draft: Model, context: tuple[int, ...], gamma: int, n: int
) -> dict[tuple[int, ...], float]:
    """Exact distribution of the first n tokens emitted by repeated speculative steps."""
    tokens: dict[tuple[int, ...], float] = defaultdict(float)
    for block, probability in step_distribution(target, draft, context, gamma).items():
        if len(block) >= n:
            tokens[block[:n]] += probability
            continue
        rest = emitted_distribution(target, draft, context + block, gamma, n - len(block))
        for tail, tail_probability in rest.items():
            tokens[block + tail] += probability * tail_probability
    return dict(tokens)


def acceptance_rate(p_V: np.ndarray, q_V: np.ndarray) -> float:
    """α = Σ min(p, q) = 1 − total-variation distance: the chance one draft token survives."""
    return float(np.minimum(p_V, q_V).sum())


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """1 + α + … + α^γ = (1 − α^(γ+1)) / (1 − α), when every draft token survives with α."""
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """Walltime gain over plain target decoding when a draft call costs c target calls.

    A step costs γ·c + 1 target-call times and emits (1 − α^(γ+1)) / (1 − α) tokens; plain
    decoding emits one token per target call (Leviathan et al., Theorem 3.8).
    """
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1)
