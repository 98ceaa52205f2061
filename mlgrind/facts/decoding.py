"""Seed steps "speculative decoding" and "continuous batching pipelines" (sheet 08).

Speculative decoding runs the reference sampler (`ref.speculative`): the closed form for the
tokens one target pass emits is checked against `speculative_step` itself, and the claim that
the output is distributed as the target's is checked by exact enumeration (`emitted_distribution`).
The cost ratios that decide the speed-up (a draft pass against a target pass, a verify pass of
γ + 1 tokens against a one-token step) come from the kernel-by-kernel roofline of sheet 07
(`facts.inference.kernels`: each kernel takes max(FLOPs / peak, bytes / bandwidth)).
Continuous batching runs the reference schedulers (`ref.batching`) on one seeded Poisson
workload, and the decode batch sweep uses the same roofline.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..calc import hardware as hw_table
from ..calc.inference import kv_bytes_per_token
from ..calc.params import count
from ..calc.specs import ModelSpec
from ..ref import batching as ref_batching
from ..ref import speculative as ref_spec
from .core import calc, int_arg, shown, sig_text, table, text_arg
from .inference import dense_model_arg, hardware_arg  # sheet 07's model and hardware checks

MAX_GAMMA = 16  # drafted tokens per step: beyond this every α below 0.99 has long peaked
# Simulated draws (a step of γ drafts costs γ + 1) per computation: ~50 µs each, under a second
# in all; the sheet's table, three α at γ = 4 over 1,000 steps, takes 15,000.
MAX_DRAWS = 16_000
MAX_CONTEXT = 1 << 17
MAX_BATCH = 1024
MAX_VALUES = 8  # α or γ values in one table
BF16 = 2  # bytes per weight and per cached element


# Arguments, each checked before any work ---------------------------------------------------


def _number(name: str, value: Any, low: float, high: float, *, open_high: bool = False) -> float:
    ok = (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
          and low <= value and (value < high if open_high else value <= high))
    if not ok:
        bound = f"below {high:g}" if open_high else f"up to {high:g}"
        raise ValueError(f"{name} must be a number from {low:g} {bound}, got {shown(value)}")
    return float(value)


def _alpha(value: Any) -> float:
    """An acceptance rate: 0 ≤ α < 1 (at α = 1 the draft is the target: nothing to gain)."""
    return _number("alpha", value, 0, 1, open_high=True)


def _gamma(value: Any) -> int:
    return int_arg("gamma", value, 1, MAX_GAMMA)


def _values(name: str, value: Any, check) -> tuple:
    if not (isinstance(value, tuple | list) and 1 <= len(value) <= MAX_VALUES):
        raise ValueError(f"{name} must be a tuple of 1 to {MAX_VALUES} values, "
                         f"got {shown(value)}")
    return tuple(check(v) for v in value)


def _times(x: float) -> str:
    return f"{x:.2f}×"


# Speculative decoding: the closed form, a simulation, an enumeration -------------------------


def toy_pair(alpha: float) -> tuple[ref_spec.Model, ref_spec.Model]:
    """A target p and a draft q over three tokens that agree on exactly α of their mass:
    p = (α, 1 − α, 0), q = (α, 0, 1 − α), so Σ min(p, q) = α, the same after every context."""
    p_V, q_V = np.array([alpha, 1 - alpha, 0.0]), np.array([alpha, 0.0, 1 - alpha])
    return (lambda context: p_V), (lambda context: q_V)


@functools.lru_cache(maxsize=256)
def simulated_tokens(alpha: float, gamma: int, steps: int, seed: int = 0) -> float:
    """Mean tokens per target pass over `steps` runs of `ref.speculative.speculative_step`."""
    target, draft = toy_pair(alpha)
    rng = np.random.default_rng(seed)
    return sum(len(ref_spec.speculative_step(target, draft, (), gamma, rng))
               for _ in range(steps)) / steps


def best_gamma(alpha: float, c: float) -> int:
    """The γ (1 to MAX_GAMMA) with the largest expected speed-up E / (γ·c + 1)."""
    return max(range(1, MAX_GAMMA + 1), key=lambda g: ref_spec.expected_speedup(alpha, g, c))


@calc(worst=["spec_tokens(0.99, 16)"])
def spec_tokens(alpha: float, gamma: int) -> str:
    """Expected tokens per target pass, (1 − α^(γ+1)) / (1 − α), to two decimals."""
    alpha, gamma = _alpha(alpha), _gamma(gamma)
    return f"{ref_spec.expected_tokens_per_step(alpha, gamma):.2f}"


def _steps(steps: Any, gamma: int, cells: int = 1) -> int:
    """Simulated steps per cell, at most MAX_DRAWS draws over all `cells`."""
    return int_arg("steps", steps, 1, MAX_DRAWS // (cells * (gamma + 1)))


@calc(worst=[f"spec_simulated(0.99, 16, {MAX_DRAWS // 17}, 99)"])
def spec_simulated(alpha: float, gamma: int, steps: int = 1000, seed: int = 0) -> str:
    """Mean tokens per target pass measured on the reference sampler (toy pair with this α)."""
    alpha, gamma = _alpha(alpha), _gamma(gamma)
    return sig_text(simulated_tokens(alpha, gamma, _steps(steps, gamma),
                                 int_arg("seed", seed, 0, 2**32 - 1)))


def _random_model(vocab: int, seed: int) -> ref_spec.Model:
    """Next-token probabilities that depend on the whole context, the same on every call."""
    def model(context: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng([seed, len(context), *context]).dirichlet(np.ones(vocab))
    return model


def distribution_gap(vocab: int, gamma: int, n: int, seed: int) -> float:
    """Largest |P_speculative(s) − P_target(s)| over every string s of n tokens, both exact:
    `emitted_distribution` walks every accept/reject branch of the reference sampler."""
    target, draft = _random_model(vocab, seed), _random_model(vocab, seed + 1)
    emitted = ref_spec.emitted_distribution(target, draft, (), gamma, n)
    gap = 0.0
    for s in np.ndindex(*(vocab,) * n):
        p = math.prod(float(target(s[:i])[x]) for i, x in enumerate(s))
        gap = max(gap, abs(emitted.get(tuple(int(x) for x in s), 0.0) - p))
    return gap


@calc(worst=["spec_distribution_gap(3, 3, 3)"])
def spec_distribution_gap(vocab: int = 3, gamma: int = 2, n: int = 3, seed: int = 0) -> str:
    """The gap above, in scientific notation: rounding error, not a bias."""
    vocab, n = int_arg("vocab", vocab, 2, 3), int_arg("n", n, 1, 3)
    gamma = int_arg("gamma", gamma, 1, 3)
    return f"{distribution_gap(vocab, gamma, n, int_arg('seed', seed, 0, 2**31)):.1e}"


@calc(worst=["spec_alpha((0.25, 0.25, 0.25, 0.25), (0.97, 0.01, 0.01, 0.01))"])
def spec_alpha(p: tuple, q: tuple) -> str:
    """α = Σ min(p, q) for two distributions over the same tokens (`ref.acceptance_rate`)."""
    def dist(name: str, v: Any) -> np.ndarray:
        probs = np.array(_values(name, v, lambda x: _number(name, x, 0, 1)))
        if abs(probs.sum() - 1) > 1e-9:
            raise ValueError(f"{name} must sum to 1, got {probs.sum():g}")
        return probs
    p_V, q_V = dist("p", p), dist("q", q)
    if len(p_V) != len(q_V):
        raise ValueError("p and q must have the same number of tokens")
    return sig_text(ref_spec.acceptance_rate(p_V, q_V))


# The cost ratios, on the sheet-07 roofline --------------------------------------------------


def forward_seconds(spec: ModelSpec, gpu: hw_table.Hardware, batch: int, new: int,
                    context: int) -> float:
    """One forward of `batch` sequences, `new` tokens each after `context` cached ones, every
    kernel on its own roof (sheet 07's model: weight matmuls, then fused attention)."""
    from .inference import Dims, kernels  # sheet 07's roofline: one model for both sheets

    return sum(max(k.flops / gpu.bf16_flops, k.bytes / gpu.hbm_bw)
               for k in kernels(Dims.of(spec), batch, new, context + new, BF16))


def _context(value: Any) -> int:
    return int_arg("context", value, 1, MAX_CONTEXT)


def _batch(value: Any) -> int:
    return int_arg("batch", value, 1, MAX_BATCH)


def verify_cost(model: str, hardware: str, gamma: int, batch: int, context: int) -> float:
    """Time of the verify pass (γ + 1 tokens per sequence) over a plain one-token step."""
    spec, gpu = dense_model_arg(model), hardware_arg(hardware)
    gamma, batch, context = _gamma(gamma), _batch(batch), _context(context)
    return (forward_seconds(spec, gpu, batch, gamma + 1, context)
            / forward_seconds(spec, gpu, batch, 1, context))


def draft_cost(draft: str, target: str, hardware: str, batch: int, context: int) -> float:
    """c: a draft decode step's time over a target decode step's, same batch and context."""
    d, t, gpu = dense_model_arg(draft), dense_model_arg(target), hardware_arg(hardware)
    batch, context = _batch(batch), _context(context)
    return forward_seconds(d, gpu, batch, 1, context) / forward_seconds(t, gpu, batch, 1, context)


_PAIR_WORST = "'llama-3.1-405b', 'llama-3.1-405b', 'b200'"


@calc(worst=[f"spec_verify_cost('llama-3.1-405b', 'b200', 16, {MAX_BATCH}, {MAX_CONTEXT})"])
def spec_verify_cost(model: str, hardware: str, gamma: int, batch: int = 1,
                     context: int = 2048) -> str:
    return _times(verify_cost(model, hardware, gamma, batch, context))


@calc(worst=[f"spec_draft_cost({_PAIR_WORST}, {MAX_BATCH}, {MAX_CONTEXT})"])
def spec_draft_cost(draft: str, target: str, hardware: str, batch: int = 1,
                    context: int = 2048) -> str:
    return f"{draft_cost(draft, target, hardware, batch, context):.3f}"


def pair_speedup(draft: str, target: str, hardware: str, alpha: float, gamma: int, batch: int,
                 context: int) -> float:
    """E / (γ·c + v): the draft's γ steps and the verify pass v, both from the roofline, in
    units of one plain target step (v = 1 is Leviathan et al.'s assumption)."""
    c = draft_cost(draft, target, hardware, batch, context)
    v = verify_cost(target, hardware, gamma, batch, context)
    return ref_spec.expected_tokens_per_step(_alpha(alpha), gamma) / (gamma * c + v)


@calc(worst=[f"spec_pair_speedup({_PAIR_WORST}, 0.99, 16, {MAX_BATCH}, {MAX_CONTEXT})"])
def spec_pair_speedup(draft: str, target: str, hardware: str, alpha: float, gamma: int,
                      batch: int = 1, context: int = 2048) -> str:
    return _times(pair_speedup(draft, target, hardware, alpha, gamma, batch, context))


@calc(worst=[f"spec_best({_PAIR_WORST}, 0.99, {MAX_CONTEXT})"])
def spec_best(draft: str, target: str, hardware: str, alpha: float, context: int = 2048) -> str:
    """The best γ for this pair at batch 1 (c from the roofline), and its speed-up
    E / (γ·c + 1)."""
    alpha = _alpha(alpha)
    c = draft_cost(draft, target, hardware, 1, context)
    g = best_gamma(alpha, c)
    return f"γ = {g}, {_times(ref_spec.expected_speedup(alpha, g, c))}"


# Distinct α values for the worst case: simulations are cached, so a repeated α would be free.
_DISTINCT = tuple(round(0.9 + i / 100, 2) for i in range(MAX_VALUES))


@table(worst=[(f"spec_table({_PAIR_WORST}, alphas={_DISTINCT!r}, gammas={(16,) * MAX_VALUES!r}, "
               f"simulate=16, steps={MAX_DRAWS // (17 * MAX_VALUES)}, context={MAX_CONTEXT})")])
def spec_table(draft: str = "llama-3-8b", target: str = "llama-3-70b",
               hardware: str = "h100-sxm", alphas: tuple = (0.6, 0.8, 0.9),
               gammas: tuple = (1, 2, 4, 8), simulate: int = 4, steps: int = 1000,
               context: int = 2048) -> list[list[str]]:
    """A column per α. A row per γ: the expected tokens per target pass · the speed-up
    E / (γ·c + 1), with c from the roofline (draft over target, batch 1). Then E at γ =
    `simulate` measured on `steps` runs of the reference sampler, and the best γ."""
    alphas = _values("alphas", alphas, _alpha)
    gammas = _values("gammas", gammas, _gamma)
    simulate = int_arg("simulate", simulate, 1, MAX_GAMMA)
    steps = _steps(steps, simulate, len(alphas))
    c = draft_cost(draft, target, hardware, 1, context)

    def cell(a: float, g: int) -> str:
        return (f"{ref_spec.expected_tokens_per_step(a, g):.2f} · "
                f"{_times(ref_spec.expected_speedup(a, g, c))}")

    rows = [[f"γ = {g}", *(cell(a, g) for a in alphas)] for g in gammas]
    rows.append([f"γ = {simulate}, sim.", *(f"{simulated_tokens(a, simulate, steps):.2f}"
                                             for a in alphas)])
    best = [best_gamma(a, c) for a in alphas]
    rows.append(["**best γ**", *(f"**{g}** · {_times(ref_spec.expected_speedup(a, g, c))}"
                                 for a, g in zip(alphas, best))])
    return rows


# Continuous batching: a decode batch on the roofline -----------------------------------------


def kv_fit(spec: ModelSpec, gpu: hw_table.Hardware, context: int) -> int:
    """Sequences of `context` tokens whose bf16 KV cache fits in HBM beside the bf16 weights."""
    room = gpu.hbm_bytes - count(spec).total * BF16
    return max(0, int(room // (context * kv_bytes_per_token(spec, BF16))))


def matmul_bound_batch(spec: ModelSpec, gpu: hw_table.Hardware, limit: int = 1 << 16) -> int:
    """The smallest decode batch whose weight matmuls are compute-bound (bisected)."""
    from .inference import Dims, kernels

    def compute_bound(b: int) -> bool:
        ks = [k for k in kernels(Dims.of(spec), b, 1, 2, BF16) if k.part == "weights"]
        return sum(k.flops for k in ks) / gpu.bf16_flops >= sum(k.bytes for k in ks) / gpu.hbm_bw

    low, high = 1, limit
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if compute_bound(mid) else (mid + 1, high)
    return low


@calc(worst=["batching_kv_fit('gpt2', 'h200', 1)"])
def batching_kv_fit(model: str, hardware: str, context: int) -> str:
    return f"{kv_fit(dense_model_arg(model), hardware_arg(hardware), _context(context)):,}"


@calc(worst=["batching_compute_batch('llama-3.1-405b', 'tpu-v4')"])
def batching_compute_batch(model: str, hardware: str) -> str:
    return f"{matmul_bound_batch(dense_model_arg(model), hardware_arg(hardware)):,}"


@calc(worst=[f"batching_gain('llama-3.1-405b', 'b200', {MAX_BATCH}, {MAX_CONTEXT}, 'tokens')"])
def batching_gain(model: str, hardware: str, batch: int, context: int,
                  what: str = "tokens") -> str:
    """A decode batch against batch 1: how many times the tokens per second, or the step time."""
    spec, gpu = dense_model_arg(model), hardware_arg(hardware)
    batch, context = _batch(batch), _context(context)
    if text_arg("what", what) not in ("tokens", "step"):
        raise ValueError(f"what must be 'tokens' or 'step', got {what!r}")
    one, many = (forward_seconds(spec, gpu, b, 1, context) for b in (1, batch))
    return _times(batch * one / many if what == "tokens" else many / one)


@table(worst=[(f"batching_decode_table('llama-3.1-405b', 'b200', {MAX_CONTEXT}, "
               f"{(MAX_BATCH,) * MAX_VALUES!r})")])
def batching_decode_table(model: str = "llama-3-8b", hardware: str = "h100-sxm",
                          context: int = 2048,
                          batches: tuple = (1, 16, 64, 256)) -> list[list[str]]:
    """Per batch: one decode step's time, the tokens per second it yields, both against
    batch 1, and whether the KV cache of that many sequences fits beside the weights."""
    spec, gpu, context = dense_model_arg(model), hardware_arg(hardware), _context(context)
    batches = _values("batches", batches, _batch)
    one = forward_seconds(spec, gpu, 1, 1, context)
    fit = kv_fit(spec, gpu, context)
    rows = []
    for b in batches:
        t = forward_seconds(spec, gpu, b, 1, context)
        rows.append([f"{b:,}", f"{sig_text(t * 1e3)} ms ({_times(t / one)})",
                     f"{sig_text(b / t)} ({_times(b * one / t)})", "yes" if b <= fit else "**no**"])
    return rows


# Continuous batching: the reference schedulers on one seeded Poisson workload ---------------

PROMPTS, OUTPUTS = (16, 256), (8, 256)  # uniform token counts of a request
COST = ref_batching.CostModel()  # milliseconds: 10 per iteration + 0.02 per token
SCHEDULERS = {"static": ref_batching.static_batching,
              "continuous": ref_batching.continuous_batching}
MAX_REQUESTS = 500
MAX_RATE = 1000.0  # requests per second


def _rate(value: Any) -> float:
    return _number("rate", value, 0.01, MAX_RATE)


def workload(requests: int, rate: float, seed: int) -> list[ref_batching.Request]:
    """`requests` Poisson arrivals at `rate` per second (the cost model counts milliseconds)."""
    return ref_batching.poisson_requests(requests, rate / 1000, PROMPTS, OUTPUTS,
                                         np.random.default_rng(seed))


@functools.lru_cache(maxsize=64)
def served(scheduler: str, rate: float, requests: int, slots: int, seed: int):
    """The reference scheduler's timeline and report on the workload."""
    reqs = workload(requests, rate, seed)
    timeline = SCHEDULERS[scheduler](reqs, slots, COST)
    return timeline, ref_batching.report(reqs, timeline)


def _serving_args(requests: Any, slots: Any, seed: Any) -> tuple[int, int, int]:
    return (int_arg("requests", requests, 1, MAX_REQUESTS), int_arg("slots", slots, 1, 256),
            int_arg("seed", seed, 0, 2**32 - 1))


def slot_use(timeline: ref_batching.Timeline) -> float:
    """Share of slot-iterations that emitted a token (static keeps finished slots running)."""
    return sum(timeline.generated) / sum(timeline.batch_sizes)


_ROWS = [  # the serving table's rows: a label, and the cell from (timeline, report); ms → s
    ("tokens/s", lambda t, r: sig_text(r.throughput * 1000)),
    ("mean latency", lambda t, r: f"{r.latency_mean / 1000:.2f} s"),
    ("p99 latency", lambda t, r: f"{r.latency_p99 / 1000:.2f} s"),
    ("first token", lambda t, r: f"{r.time_to_first_token_mean / 1000:.2f} s"),
    ("slot-steps used", lambda t, r: f"{100 * slot_use(t):.0f} %"),
]
_RATIOS = {"throughput": "throughput", "latency": "latency_mean", "p99": "latency_p99",
           "ttft": "time_to_first_token_mean"}  # a ratio's metric: its Report field


@table(worst=[(f"batching_serving_table(rates=(0.01, {MAX_RATE:g}), requests={MAX_REQUESTS}, "
               "slots=1)")])
def batching_serving_table(rates: tuple = (4, 20), requests: int = 200, slots: int = 16,
                           seed: int = 0) -> list[list[str]]:
    """Rows: each metric; columns: static then continuous at each arrival rate (requests/s)."""
    rates = _values("rates", rates, _rate)
    if len(rates) > 2:
        raise ValueError(f"rates takes at most two arrival rates, got {len(rates)}")
    requests, slots, seed = _serving_args(requests, slots, seed)
    runs = [served(s, r, requests, slots, seed) for r in rates for s in SCHEDULERS]
    arrivals = ["arrivals", *(f"{r:g}/s" for r in rates for _ in SCHEDULERS)]
    return [arrivals, *([name, *(show(*run) for run in runs)] for name, show in _ROWS)]


@calc(worst=[f"batching_ratio('throughput', 0.01, {MAX_REQUESTS}, 1)"])
def batching_ratio(metric: str, rate: float, requests: int = 200, slots: int = 16,
                   seed: int = 0) -> str:
    """Static over continuous for a latency, continuous over static for the throughput."""
    if text_arg("metric", metric) not in _RATIOS:
        raise ValueError(f"metric must be one of {', '.join(_RATIOS)}; got {metric!r}")
    args = (_rate(rate), *_serving_args(requests, slots, seed))
    (_, static), (_, cont) = (served(s, *args) for s in SCHEDULERS)
    a, b = getattr(static, _RATIOS[metric]), getattr(cont, _RATIOS[metric])
    return _times(b / a if metric == "throughput" else a / b)


@calc(worst=[f"batching_workload({MAX_REQUESTS}, 256)"])
def batching_workload(requests: int = 200, slots: int = 16) -> str:
    """The workload in words, from the constants the simulations use."""
    requests, slots, _ = _serving_args(requests, slots, 0)
    return (f"{requests:,} Poisson requests on {slots} slots; prompts {PROMPTS[0]}–{PROMPTS[1]} "
            f"and outputs {OUTPUTS[0]}–{OUTPUTS[1]} tokens (uniform); an iteration costs "
            f"{COST.fixed:g} ms + {COST.per_token:g} ms per token")
