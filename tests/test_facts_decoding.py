"""Sheet 08's computations against independent oracles: the geometric series summed term by
term and the sampler's own exact distribution, FLOPs counted on the reference decoder's einsums,
KV bytes read off its cache arrays, the serving reports recomputed from the reference
schedulers, and the figure's slot lanes against the schedulers' per-iteration batch sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlgrind.calc import hardware as hw_table
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import decoding as dec
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import overlaps
from mlgrind.figures.decoding import lanes
from mlgrind.ref import batching as ref_batching
from mlgrind.ref import inference as ref_inference
from mlgrind.ref import speculative as ref_spec
from mlgrind.ref.einsum import count_flops

H100 = hw_table.load("h100-sxm")


# -- speculative decoding ------------------------------------------------------------------------


def series(alpha: float, gamma: int) -> float:
    """1 + α + … + α^γ, term by term: the expected count without the closed form."""
    return sum(alpha**k for k in range(gamma + 1))


@pytest.mark.parametrize(("alpha", "gamma"), [(0.6, 1), (0.8, 4), (0.9, 8), (0.0, 3)])
def test_expected_tokens_is_the_geometric_series(alpha: float, gamma: int) -> None:
    assert float(dec.spec_tokens(alpha, gamma)) == pytest.approx(series(alpha, gamma), abs=0.005)


@pytest.mark.parametrize(("alpha", "gamma"), [(0.6, 2), (0.8, 4), (0.9, 6)])
def test_the_reference_sampler_emits_the_closed_form_on_average(alpha: float, gamma: int) -> None:
    """Tokens per step = 1 + min(accepted run, γ); its variance from the exact distribution of
    that run bounds the sampling error: the simulated mean lies within 4 standard errors."""
    steps = 2000
    run = [alpha**k * (1 - alpha) for k in range(gamma)] + [alpha**gamma]  # P(run = k)
    mean = sum((k + 1) * p for k, p in enumerate(run))
    var = sum((k + 1 - mean) ** 2 * p for k, p in enumerate(run))
    measured = dec.simulated_tokens(alpha, gamma, steps)
    assert abs(measured - mean) < 4 * math.sqrt(var / steps)
    assert mean == pytest.approx(series(alpha, gamma))


def test_the_toy_pair_has_the_acceptance_rate_it_is_built_for() -> None:
    for alpha in (0.3, 0.6, 0.95):
        target, draft = dec.toy_pair(alpha)
        p_V, q_V = target(()), draft(())
        assert 1 - 0.5 * np.abs(p_V - q_V).sum() == pytest.approx(alpha)  # 1 − TV


def test_the_output_is_distributed_as_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gap is rounding error, and it is measured: a sampler that forgets the residual
    (resampling from p instead) is caught by the same comparison."""
    assert float(dec.spec_distribution_gap()) < 1e-12
    target, draft = dec._random_model(3, 0), dec._random_model(3, 1)
    emitted = ref_spec.emitted_distribution(target, draft, (), 2, 3)
    assert sum(emitted.values()) == pytest.approx(1)
    monkeypatch.setattr(ref_spec, "residual", lambda p_V, q_V: p_V)
    assert dec.distribution_gap(3, 2, 3, 0) > 1e-3


def test_alpha_is_one_minus_total_variation() -> None:
    p, q = (0.5, 0.3, 0.2), (0.3, 0.3, 0.4)
    tv = 0.5 * sum(abs(a - b) for a, b in zip(p, q))
    assert float(dec.spec_alpha(p, q)) == pytest.approx(1 - tv)
    with pytest.raises(ValueError, match="sum to 1"):
        dec.spec_alpha((0.5, 0.6), (0.5, 0.5))


def test_the_speedup_table_matches_its_formula_and_brute_force_best_gamma() -> None:
    alphas, gammas = (0.6, 0.8, 0.9), (1, 2, 4, 8)
    rows = dec.spec_table(alphas=alphas, gammas=gammas, simulate=4, steps=200)
    c = dec.draft_cost("llama-3-8b", "llama-3-70b", "h100-sxm", 1, 2048)
    for row, g in zip(rows, gammas):
        for cell, a in zip(row[1:], alphas):
            e, s = cell.split(" · ")
            assert float(e) == pytest.approx(series(a, g), abs=0.005)
            assert float(s.rstrip("×")) == pytest.approx(series(a, g) / (g * c + 1), abs=0.005)
    for cell, a in zip(rows[-1][1:], alphas):
        best = max(range(1, dec.MAX_GAMMA + 1), key=lambda g: series(a, g) / (g * c + 1))
        assert cell.startswith(f"**{best}**")
    assert dec.spec_best("llama-3-8b", "llama-3-70b", "h100-sxm", 0.8).startswith(
        f"γ = {max(range(1, 17), key=lambda g: series(0.8, g) / (g * c + 1))},")


# -- the roofline's cost ratios, on the reference decoder ---------------------------------------


def tiny_spec(config: ref_inference.Config):
    """A bundled spec's shape with the tiny decoder's sizes (ReLU MLP, untied head)."""
    from dataclasses import replace

    return replace(load_model("llama-3-8b"), V=config.V, D=config.D, H=config.H, G=config.G,
                   K=config.K, K_v=config.K, F=config.F, n_layers=config.n_layers,
                   mlp_gated=False)


@pytest.mark.parametrize(("batch", "new", "context"), [(1, 1, 6), (2, 5, 6), (3, 4, 9)])
def test_kernel_flops_and_kv_bytes_are_the_reference_decoders(batch: int, new: int,
                                                                context: int) -> None:
    """A verify pass (`new` tokens after `context` cached ones) as the roofline prices it,
    against the reference decoder run on real arrays: FLOPs counted on its einsums, and the
    attention kernel's cache traffic equal to the bytes of its KVCache arrays."""
    from mlgrind.facts.inference import Dims, kernels

    config = ref_inference.Config()
    rng = np.random.default_rng(0)
    model = ref_inference.init_model(config, rng)
    cache = ref_inference.KVCache.empty(config, batch)
    ref_inference.forward(model, rng.integers(0, config.V, (batch, context)), cache)
    with count_flops() as counted:
        ref_inference.forward(model, rng.integers(0, config.V, (batch, new)), cache)
    found = kernels(Dims.of(tiny_spec(config)), batch, new, context + new, 8)
    assert sum(k.flops for k in found) == counted.total
    (attention,) = [k for k in found if k.part == "attention"]
    q_and_out = 2 * batch * new * config.H * config.K * 8 * config.n_layers
    assert attention.bytes - q_and_out == cache.nbytes


def test_verifying_is_free_at_batch_one_and_not_at_large_batch() -> None:
    spec = load_model("llama-3-70b")
    one = dec.verify_cost("llama-3-70b", "h100-sxm", 4, 1, 2048)
    # Memory-bound: the step is the weights' bytes over the bandwidth, whatever the tokens.
    weights = 2 * count(spec).matmul_per_token / H100.hbm_bw
    assert dec.forward_seconds(spec, H100, 1, 5, 2048) == pytest.approx(weights, rel=0.02)
    assert one == pytest.approx(1, abs=0.01)
    assert dec.verify_cost("llama-3-70b", "h100-sxm", 4, 256, 2048) > 2
    assert float(dec.spec_pair_speedup("llama-3-8b", "llama-3-70b", "h100-sxm", 0.8, 4, 256)
                 .rstrip("×")) < 1


def test_draft_cost_is_about_the_weight_bytes_ratio() -> None:
    ratio = (count(load_model("llama-3-8b")).matmul_per_token
             / count(load_model("llama-3-70b")).matmul_per_token)
    assert dec.draft_cost("llama-3-8b", "llama-3-70b", "h100-sxm", 1, 2048) == pytest.approx(
        ratio, rel=0.03)


def test_kv_fit_from_the_reference_cache_bytes() -> None:
    """Bytes per token read off a filled reference KVCache (float64, scaled to bf16)."""
    spec = load_model("llama-3-8b")
    config = ref_inference.Config(V=2, D=2, H=spec.G, G=spec.G, K=spec.K, F=1,
                                  n_layers=spec.n_layers)
    cache = ref_inference.KVCache.empty(config, 1)
    ref_inference.forward(ref_inference.init_model(config, np.random.default_rng(0)),
                          np.zeros((1, 1), dtype=int), cache)
    per_token = cache.nbytes // 8 * 2
    room = H100.hbm_bytes - 2 * count(spec).total
    fit = int(room // (2048 * per_token))
    assert dec.batching_kv_fit("llama-3-8b", "h100-sxm", 2048) == f"{fit:,}"


def test_the_compute_bound_batch_sits_just_above_the_ridge() -> None:
    """Two FLOPs and two bytes per bf16 weight: the matmuls turn compute-bound near batch
    peak / bandwidth; activations add bytes, so a little above it."""
    b = int(dec.batching_compute_batch("llama-3-8b", "h100-sxm").replace(",", ""))
    ridge = H100.bf16_flops / H100.hbm_bw
    assert ridge <= b <= 1.2 * ridge


def test_the_decode_table_grows_tokens_faster_than_step_time() -> None:
    rows = dec.batching_decode_table(batches=(1, 16, 64, 256))
    steps = [float(r[1].split()[0]) for r in rows]
    tokens = [float(r[2].split()[0].replace(",", "")) for r in rows]
    assert steps == sorted(steps) and tokens == sorted(tokens)
    assert tokens[2] / tokens[0] > 10 * steps[2] / steps[0]
    assert [r[3] for r in rows] == ["yes", "yes", "yes", "**no**"]  # 238 sequences fit


# -- continuous batching ------------------------------------------------------------------------


def reference_run(scheduler, rate: float, requests: int = 200, slots: int = 16, seed: int = 0):
    reqs = ref_batching.poisson_requests(requests, rate / 1000, dec.PROMPTS, dec.OUTPUTS,
                                         np.random.default_rng(seed))
    timeline = scheduler(reqs, slots, ref_batching.CostModel())
    return reqs, timeline, ref_batching.report(reqs, timeline)


def test_the_serving_table_is_the_reference_schedulers_report() -> None:
    rows = {r[0]: r[1:] for r in dec.batching_serving_table(rates=(4, 20))}
    runs = [reference_run(s, r) for r in (4, 20)
            for s in (ref_batching.static_batching, ref_batching.continuous_batching)]
    assert rows["arrivals"] == ["4/s", "4/s", "20/s", "20/s"]
    for cell, (_, _, rep) in zip(rows["mean latency"], runs):
        assert float(cell.rstrip(" s")) == pytest.approx(rep.latency_mean / 1000, abs=0.005)
    for cell, (_, _, rep) in zip(rows["tokens/s"], runs):
        assert float(cell.replace(",", "")) == pytest.approx(rep.throughput * 1000, rel=0.005)
    # Slot use, independently: static keeps every member of a batch for its longest output.
    reqs, timeline, _ = runs[0]
    batches: dict[float, list[int]] = {}
    for r, start in enumerate(timeline.start):
        batches.setdefault(start, []).append(r)
    held = sum(len(m) * max(reqs[r].output_length for r in m) for m in batches.values())
    used = sum(q.output_length for q in reqs) / held
    assert rows["slot-steps used"][0] == f"{100 * used:.0f} %"
    assert rows["slot-steps used"][1] == "100 %"


def test_continuous_batching_wins_latency_when_light_and_throughput_when_overloaded() -> None:
    (_, _, s4), (_, _, c4) = (reference_run(s, 4) for s in (ref_batching.static_batching,
                                                            ref_batching.continuous_batching))
    assert c4.throughput == pytest.approx(s4.throughput, rel=0.05)  # arrival-bound both
    assert float(dec.batching_ratio("latency", 4).rstrip("×")) == pytest.approx(
        s4.latency_mean / c4.latency_mean, abs=0.005)
    assert float(dec.batching_ratio("throughput", 20).rstrip("×")) > 1.5


@pytest.mark.parametrize("scheduler", ["static", "continuous"])
def test_the_figures_slot_lanes_match_the_simulated_batches(scheduler: str) -> None:
    """No slot holds two requests at once, every request has one lane, the most slots in use
    at once is the scheduler's largest batch, and a static batch is released together."""
    timeline, _ = dec.served(scheduler, 6, 10, 4, 0)
    found = lanes(scheduler, timeline, 4)
    assert sorted(lane.request for lane in found) == list(range(10))
    for a in found:
        for b in found:
            if a is not b and a.slot == b.slot:
                assert a.release <= b.start or b.release <= a.start
    in_use = [sum(1 for lane in found if lane.start <= t < lane.release)
              for t in set(timeline.start)]
    assert max(in_use) == max(timeline.batch_sizes) <= 4
    if scheduler == "static":
        for a in found:
            together = [b for b in found if b.start == a.start]
            assert a.release == max(timeline.finish[b.request] for b in together)


def test_the_figure_prints_the_simulated_makespans_and_latencies() -> None:
    d = FIGURES["batching_timeline"](width=520, requests=10, slots=4, rate=6, seed=0)
    for name in ("static", "continuous"):
        timeline, rep = dec.served(name, 6, 10, 4, 0)
        assert d.facts[f"{name}_makespan_ms"] == max(timeline.finish)
        assert f"{rep.latency_mean / 1000:.1f} s" in d.alt
    for width in (520, 260):  # a span-2 panel, and about the narrowest that fits
        d = FIGURES["batching_timeline"](width=width, requests=10, slots=4, rate=6, seed=0)
        boxes = [box for _, box in d.text_boxes()]
        assert all(0 <= b[0] and b[2] <= width for b in boxes)
        assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    with pytest.raises(ValueError, match="too narrow"):
        FIGURES["batching_timeline"](width=150)


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: dec.spec_tokens(1, 4), lambda: dec.spec_tokens(0.8, 0),
    lambda: dec.spec_tokens(True, 4), lambda: dec.spec_best("llama-3-8b", "gpt2", "b200", 1.5),
    lambda: dec.spec_simulated(0.9, 16, 5000),
    lambda: dec.spec_verify_cost("mixtral-8x7b", "h100-sxm", 4),
    lambda: dec.spec_draft_cost("llama-3-8b", "deepseek-v3", "h100-sxm"),
    lambda: dec.spec_verify_cost("llama-3-70b", "h100", 4),
    lambda: dec.batching_serving_table(rates=(1, 2, 3)),
    lambda: dec.batching_ratio("speed", 4),
    lambda: dec.spec_table(alphas=(0.5,) * 9),
])
def test_bad_arguments_are_refused_with_a_reason(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_every_computation_names_its_worst_calls() -> None:
    mine = [n for n, f in {**CALC, **TABLES}.items() if f.__module__ == dec.__name__]
    assert mine and all(n in WORST for n in mine)
    assert FIGURES["batching_timeline"].worst
