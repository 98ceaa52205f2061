import itertools

import numpy as np
import pytest

from mlgrind.ref.speculative import (
    acceptance_rate,
    emitted_distribution,
    expected_speedup,
    expected_tokens_per_step,
    residual,
    speculative_step,
    step_distribution,
)

V = 3


def random_model(seed: int, sharpness: float = 1.0):
    """Next-token probabilities depending on the last two tokens and the context length."""
    logits = sharpness * np.random.default_rng(seed).normal(size=(V + 1, V + 1, 2, V))

    def model(context):
        last, before = (context + (V, V))[-1], (context[-2] if len(context) > 1 else V)
        z = logits[last, before, len(context) % 2]
        return np.exp(z) / np.exp(z).sum()

    return model


def fixed_model(p_V):
    """The same distribution whatever the context, so the acceptance rate is one constant α."""
    return lambda context: p_V


def sampled_from_target(target, context, n):
    """Independent oracle: the probability of every n-token continuation under p alone."""
    probabilities = {}
    for tokens in itertools.product(range(V), repeat=n):
        probability = 1.0
        for i, x in enumerate(tokens):
            probability *= target(context + tokens[:i])[x]
        probabilities[tokens] = probability
    return probabilities


@pytest.mark.parametrize("gamma", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_emitted_tokens_are_distributed_exactly_as_the_target(gamma, n):
    target, draft = random_model(0), random_model(1, sharpness=2.0)
    context = (2, 0)
    exact = emitted_distribution(target, draft, context, gamma, n)
    oracle = sampled_from_target(target, context, n)
    assert exact.keys() == oracle.keys()
    for tokens, probability in oracle.items():
        assert exact[tokens] == pytest.approx(probability, abs=1e-12)


def test_a_draft_that_misses_tokens_entirely_still_gives_the_target():
    """q(x) = 0 for some x the target wants: only the residual can emit them."""
    target = random_model(2)
    draft = fixed_model(np.array([0.5, 0.5, 0.0]))
    exact = emitted_distribution(target, draft, (1,), gamma=2, n=2)
    for tokens, probability in sampled_from_target(target, (1,), 2).items():
        assert exact[tokens] == pytest.approx(probability, abs=1e-12)


def test_sampled_steps_follow_the_enumerated_step_distribution():
    """The sampler and the enumeration are two codings of one rule; 5σ bounds per block."""
    target, draft = random_model(3), random_model(4)
    gamma, N = 2, 20_000
    rng = np.random.default_rng(5)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(N):
        block = speculative_step(target, draft, (0,), gamma, rng)
        counts[block] = counts.get(block, 0) + 1
    exact = step_distribution(target, draft, (0,), gamma)
    assert set(counts) <= set(exact)
    for block, probability in exact.items():
        sigma = np.sqrt(probability * (1 - probability) / N)
        assert abs(counts.get(block, 0) / N - probability) <= 5 * sigma + 1e-12


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_expected_tokens_per_step_matches_enumeration_and_simulation(gamma):
    rng = np.random.default_rng(gamma)
    p_V, q_V = rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))
    target, draft = fixed_model(p_V), fixed_model(q_V)
    alpha = acceptance_rate(p_V, q_V)
    expected = expected_tokens_per_step(alpha, gamma)

    exact = step_distribution(target, draft, (), gamma)
    assert sum(len(block) * probability for block, probability in exact.items()) == pytest.approx(
        expected, abs=1e-12
    )

    N = 5_000
    lengths = np.array([len(speculative_step(target, draft, (), gamma, rng)) for _ in range(N)])
    # Lengths lie in [1, γ + 1]; 4 standard errors leave a false-failure chance near 6e-5.
    standard_error = lengths.std(ddof=1) / np.sqrt(N)
    assert abs(lengths.mean() - expected) <= 4 * standard_error


def test_expected_speedup_matches_simulated_cost():
    """Draft calls cost c each and a target pass costs 1; plain decoding pays 1 per token."""
    rng = np.random.default_rng(7)
    p_V, q_V = np.array([0.6, 0.3, 0.1]), np.array([0.5, 0.4, 0.1])
    draft_calls = 0

    def draft(context):
        nonlocal draft_calls
        draft_calls += 1
        return q_V

    gamma, c, steps = 4, 0.05, 5_000
    target = fixed_model(p_V)
    tokens = sum(len(speculative_step(target, draft, (), gamma, rng)) for _ in range(steps))
    speedup = tokens / (draft_calls * c + steps)
    expected = expected_speedup(acceptance_rate(p_V, q_V), gamma, c)
    # tokens per step has standard deviation at most γ / 2; the speedup scales it by 1 / (γc + 1).
    standard_error = (gamma / 2) / np.sqrt(steps) / (gamma * c + 1)
    assert abs(speedup - expected) <= 4 * standard_error


def test_a_perfect_draft_emits_gamma_plus_one_tokens_every_step():
    p_V = np.array([0.2, 0.3, 0.5])
    exact = step_distribution(fixed_model(p_V), fixed_model(p_V), (), gamma=3)
    assert {len(block) for block in exact} == {4}
    assert expected_tokens_per_step(acceptance_rate(p_V, p_V), 3) == pytest.approx(4)


def test_residual_keeps_the_excess_and_is_p_when_there_is_none():
    p_V, q_V = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3])
    # By hand: max(0, p - q) = (0.3, 0, 0), normalised.
    np.testing.assert_allclose(residual(p_V, q_V), [1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(residual(q_V, p_V), [0.0, 0.2 / 0.3, 0.1 / 0.3], atol=1e-15)
    # No excess: a rejection cannot happen, and the residual is defined as p (not 0 / 0).
    same = residual(p_V, p_V.copy())
    assert np.isfinite(same).all()
    np.testing.assert_array_equal(same, p_V)
    # p below q everywhere (sums that rounding left short of 1): no excess either, so p.
    np.testing.assert_array_equal(residual(0.999 * p_V, p_V), 0.999 * p_V)
