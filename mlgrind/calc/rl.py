"""RL training throughput: synchronous vs asynchronous (off-policy) generation and training.

Each RL step generates T tokens of rollouts, then trains on them. With g generation tokens/s
and r training tokens/s per GPU, and n GPUs:

    colocated sync     all n GPUs generate, then all train:      n / (1/g + 1/r)
    split sync         n_g GPUs generate, n_t train, in turn:     1 / (1/(n_g·g) + 1/(n_t·r))
                       (each pool idles while the other works)
    split async        the pools run at once, training on rollouts one step old:
                                                                  min(n_g·g, n_t·r)

A synchronous step also waits for its longest rollout: with `tail` = longest / mean rollout
length, generation slots idle for part of the step, so sync generation runs at g / tail. An
asynchronous generator refills a finished slot at once (continuous batching) and loses nothing.
The best split for async balances the pools: n_g / n = r / (g + r); there async matches the
colocated sync rate n·g·r / (g + r) while paying no tail and no switching between the two jobs.
The price is staleness: the policy that generated a rollout is one step behind the one trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.calc.specs import SpecError


@dataclass(frozen=True)
class RLThroughput:
    colocated_sync: float  # tokens/s
    split_sync: float
    split_async: float
    gen_gpus: int
    train_gpus: int


def best_split(n_gpus: int, gen_rate: float, train_rate: float) -> int:
    """Generation GPUs that balance the two pools (at least one GPU each)."""
    if n_gpus < 2:
        raise SpecError("a split needs at least 2 GPUs")
    return min(n_gpus - 1, max(1, round(n_gpus * train_rate / (gen_rate + train_rate))))


def throughput(n_gpus: int, gen_rate: float, train_rate: float, tail: float = 1.0,
               gen_gpus: int | None = None) -> RLThroughput:
    """Tokens/s trained, for per-GPU generation and training rates (tokens/s)."""
    if tail < 1:
        raise SpecError(f"tail is longest / mean rollout length, at least 1, not {tail}")
    n_g = best_split(n_gpus, gen_rate, train_rate) if gen_gpus is None else gen_gpus
    n_t = n_gpus - n_g
    if not 0 < n_g < n_gpus:
        raise SpecError(f"generation GPUs must be between 1 and {n_gpus - 1}, not {n_g}")
    sync_gen = gen_rate / tail
    return RLThroughput(
        colocated_sync=n_gpus / (1 / sync_gen + 1 / train_rate),
        split_sync=1 / (1 / (n_g * sync_gen) + 1 / (n_t * train_rate)),
        split_async=min(n_g * gen_rate, n_t * train_rate),
        gen_gpus=n_g,
        train_gpus=n_t,
    )


def train_rate(flops_per_token: float, peak: float, mfu: float) -> float:
    """Training tokens/s per GPU from the FLOPs of a step per token."""
    return peak * mfu / flops_per_token
