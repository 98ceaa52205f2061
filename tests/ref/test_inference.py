import numpy as np
import pytest

from mlgrind.ref.attention import kv_cache_bytes_per_token
from mlgrind.ref.einsum import count_flops
from mlgrind.ref.inference import (
    Config,
    KVCache,
    forward,
    forward_flops,
    generate,
    init_model,
)

CONFIGS = [Config(), Config(H=4, G=4, n_layers=1), Config(V=7, D=6, H=3, G=1, K=4, F=5, n_layers=3)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("prompt_length", [1, 4])
def test_cached_decode_logits_equal_the_full_forward(config, prompt_length):
    rng = np.random.default_rng(prompt_length)
    model = init_model(config, rng)
    B, L = 3, 9
    tokens = rng.integers(0, config.V, size=(B, L))
    full = forward(model, tokens)
    cache = KVCache.empty(config, B)
    stepwise = [forward(model, tokens[:, :prompt_length], cache)]
    for t in range(prompt_length, L):
        stepwise.append(forward(model, tokens[:, t : t + 1], cache))
    np.testing.assert_allclose(np.concatenate(stepwise, axis=1), full, atol=1e-12)


def test_greedy_generation_with_cache_equals_recomputing_the_whole_sequence():
    rng = np.random.default_rng(0)
    model = init_model(Config(), rng)
    tokens = rng.integers(0, model.config.V, size=(2, 3))
    cached = generate(model, tokens, n_new=6)
    for _ in range(6):
        tokens = np.concatenate([tokens, forward(model, tokens)[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(cached, tokens)


@pytest.mark.parametrize("config", CONFIGS)
def test_cache_bytes_measured_from_the_arrays_equal_the_formula(config):
    rng = np.random.default_rng(1)
    model = init_model(config, rng)
    B = 2
    cache = KVCache.empty(config, B)
    forward(model, rng.integers(0, config.V, size=(B, 5)), cache)
    for _ in range(3):
        forward(model, rng.integers(0, config.V, size=(B, 1)), cache)
    per_token = kv_cache_bytes_per_token(config.G, config.K, config.n_layers, bytes_per_element=8)
    assert cache.length == 8
    assert cache.nbytes == B * cache.length * per_token


@pytest.mark.parametrize("seed", range(3))
def test_prefill_and_decode_flops_match_counted_einsums(seed):
    rng = np.random.default_rng(seed)
    D, K, F, V, G, n_layers = (int(n) for n in rng.integers(1, 6, size=6))
    config = Config(V=V, D=D, H=G * int(rng.integers(1, 4)), G=G, K=2 * K, F=F, n_layers=n_layers)
    model = init_model(config, rng)
    B, P = 2, int(rng.integers(1, 6))
    cache = KVCache.empty(config, B)
    with count_flops() as prefill:
        forward(model, rng.integers(0, V, size=(B, P)), cache)
    assert prefill.total == forward_flops(config, B, L=P, M=P)
    with count_flops() as decode:
        forward(model, rng.integers(0, V, size=(B, 1)), cache)
    assert decode.total == forward_flops(config, B, L=1, M=P + 1)
