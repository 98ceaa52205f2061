"""Sheet 16's computations (mlgrind/facts/rl.py, mlgrind/figures/rl.py): every worked answer on a
card against `mlgrind calc rl --json`, so cards and calculator cannot drift apart; the rates
against the reference MLP's counted FLOPs, a closed-form decode step and the PaLM formula; the
tail against the reference static and continuous batching; the three layouts' throughputs and
idle shares against a step-by-step simulation of the loops that shares no code with the
calculator; the best split against a search over every split."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from conftest import calc_json, card_field

from mlgrind.calc import hardware
from mlgrind.calc.inference import kv_bytes_per_token
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES, rl
from mlgrind.figures import FIGURES
from mlgrind.figures.rl import timeline_boxes
from mlgrind.ref import batching
from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref.einsum import count_flops

CARDS = "16-rl.yaml"
QUESTION = ("rl", "--model", "llama-3-8b", "--gpus", 64, "--gen-batch", 64, "--context", 4096,
            "--mfu", 0.4)
TAIL2 = (*QUESTION, "--tail", 2)
SPEC, H100 = load_model("llama-3-8b"), hardware.load("h100-sxm")


# Formatted as the cards print them.

def whole(x: float) -> str:
    return f"{x:,.0f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.01 else f"{100 * x:.1g} %"


def ratio(x: float) -> str:
    return f"{x:.3g}×"


def pools(d: dict) -> dict[str, float]:
    """Each pool's idle share, from the JSON's values alone: 1 − throughput ÷ the pool's rate."""
    (n_g, n_t), g, r = d["split"], d["generation_rate_per_gpu"], d["training_rate_per_gpu"]
    return {"sync_gen": 1 - d["split_sync"] / (n_g * g), "sync_train": 1 - d["split_sync"] / (n_t * r),
            "async_train": 1 - d["split_async"] / (n_t * r)}


WORKED = [  # (note, field, CLI arguments, the card's text from the CLI's JSON)
    ("rl-gen-rate-llama-3-8b", "back", TAIL2, lambda d: [whole(d["generation_rate_per_gpu"])]),
    ("rl-train-rate-llama-3-8b", "back", TAIL2, lambda d: [whole(d["training_rate_per_gpu"])]),
    ("rl-why-generation-slower", "back", TAIL2,
     lambda d: [f"{d['training_rate_per_gpu'] / d['generation_rate_per_gpu']:.3g}"]),
    ("rl-worked-colocated", "back", TAIL2,
     lambda d: [whole(d["colocated_sync"]), pct(d["colocated_sync_idle"])]),
    ("rl-worked-colocated", "extra", TAIL2,
     lambda d: [whole(d["generation_rate_per_gpu"]), whole(d["training_rate_per_gpu"])]),
    ("rl-worked-split-sync", "back", TAIL2,
     lambda d: [whole(d["split_sync"]), pct(d["split_sync_idle"]), pct(pools(d)["sync_gen"]),
                pct(pools(d)["sync_train"])]),
    ("rl-worked-async", "back", TAIL2,
     lambda d: [whole(d["split_async"]), pct(pools(d)["async_train"])]),
    ("rl-async-speedup-baseline", "back", TAIL2,
     lambda d: [ratio(d["async_speedup_over_split_sync"]),
                ratio(d["split_async"] / d["colocated_sync"])]),
    ("rl-best-split-llama-3-8b", "back", TAIL2, lambda d: ["{} + {}".format(*d["split"])]),
    ("rl-even-split", "back", (*TAIL2, "--gen-gpus", 32),
     lambda d: [whole(d["split_async"]), pct(pools(d)["async_train"])]),
    ("rl-even-split", "extra", TAIL2,
     lambda d: ["{} + {}".format(*d["split"]), whole(d["split_async"])]),
    ("rl-balanced-vs-colocated", "extra", (*QUESTION, "--tail", 1),
     lambda d: [whole(d["colocated_sync"]), whole(d["split_async"])]),
    ("rl-tail-3", "back", (*QUESTION, "--tail", 3),
     lambda d: [whole(d["colocated_sync"]), whole(d["split_async"]),
                ratio(d["split_async"] / d["colocated_sync"])]),
]


def stated(value: str, text: str) -> bool:
    """`value` appears in `text` as a whole number, not inside a longer one (248 in 1,248)."""
    after = r"(?![\d]|,\d|\.\d)" if value[-1].isdigit() else ""
    return re.search(rf"(?<![\d,.]){re.escape(value)}{after}", text) is not None


@pytest.mark.parametrize(("note", "field", "cli", "expected"), WORKED,
                         ids=[f"{w[0]}:{w[1]}" for w in WORKED])
def test_each_worked_answer_is_what_the_calculator_prints(note, field, cli, expected) -> None:
    text = card_field(CARDS, note, field)
    for value in expected(calc_json(*cli)):
        assert stated(value, text), f"{value!r} not in {note}'s {field}: {text!r}"


def test_the_sheets_tables_are_the_calculators_rows() -> None:
    d = calc_json(*TAIL2)
    layouts = TABLES["rl_layouts_table"]()
    assert [row[2] for row in layouts] == [f"**{whole(d[k])}**" for k in
                                           ("colocated_sync", "split_sync", "split_async")]
    assert [row[3] for row in layouts] == [pct(d[k]) for k in
                                           ("colocated_sync_idle", "split_sync_idle", "split_async_idle")]
    for tail, row in zip((1, 1.5, 2, 3), TABLES["rl_tail_table"](), strict=True):
        t = calc_json(*QUESTION, "--tail", tail)
        assert row == [f"{tail:g}", whole(t["colocated_sync"]), whole(t["split_sync"]),
                       whole(t["split_async"]), ratio(t["split_async"] / t["colocated_sync"])]
    for n_g, row in zip((32, 52), TABLES["rl_split_table"](gen_gpus=(32, 52)), strict=True):
        t = calc_json(*TAIL2, "--gen-gpus", n_g)
        assert row[1] == f"{64 - n_g}" and row[4].strip("*") == whole(t["split_async"])


# -- the rates, each against a computation the calculator does not make ----------------------


def test_a_training_step_is_three_forwards_counted_on_the_reference_mlp() -> None:
    rng = np.random.default_rng(0)
    x_BD, w_in_DF, w_out_FD = rng.normal(size=(4, 8)), rng.normal(size=(8, 16)), rng.normal(size=(16, 8))
    with count_flops() as forward:
        y_BD, saved = ref_mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with count_flops() as backward:
        ref_mlp.mlp_backward(np.ones_like(y_BD), saved)
    assert CALC["rl_value"]("step_over_forward") == f"{(forward.total + backward.total) / forward.total:g}"


def test_the_training_rate_is_the_palm_formula_at_the_peak() -> None:
    """PaLM, appendix B: 6·N + 12·layers·H·K·L FLOPs a token, N the weights a token multiplies."""
    d = calc_json(*TAIL2)
    n = count(SPEC).matmul_per_token
    per_token = 6 * n + 12 * SPEC.n_layers * SPEC.H * SPEC.K * 4096
    assert d["training_rate_per_gpu"] == pytest.approx(H100.bf16_flops * 0.4 / per_token, rel=1e-12)


def test_the_generation_rate_is_a_decode_step_reading_weights_and_cache() -> None:
    """One step reads the weights once and every rollout's cache (M + 1 positions each) at 40 %
    of the bandwidth; the calculator adds the activations' traffic, a percent or so."""
    d = calc_json(*TAIL2)
    weights = 2 * count(SPEC).matmul_per_token
    cache = 64 * 4097 * kv_bytes_per_token(SPEC)
    step = (weights + cache) / (H100.hbm_bw * 0.4)
    assert d["generation_rate_per_gpu"] == pytest.approx(64 / step, rel=0.02)
    assert rl.answer().step.seconds == pytest.approx(64 / d["generation_rate_per_gpu"], rel=1e-12)


def test_sync_generation_runs_at_g_over_the_tail_as_static_batching_does() -> None:
    """Four slots, outputs of 10, 10, 10 and 30 tokens: longest ÷ mean = 2. Statically batched,
    a slot makes a token in only half the iterations; continuously batched, nearly all."""
    lengths = [10, 10, 10, 30] * 50
    tail = max(lengths) / np.mean(lengths)
    requests = [batching.Request(0.0, 1, n) for n in lengths]
    cost = batching.CostModel(fixed=1.0, per_token=0.0)  # decode: a step costs the same, full or not
    for schedule, share in ((batching.static_batching, 1 / tail), (batching.continuous_batching, 0.98)):
        timeline = schedule(requests, 4, cost)
        busy = sum(timeline.generated) / (4 * len(timeline.batch_sizes))
        assert busy == pytest.approx(share, abs=0.02)
    d = calc_json(*QUESTION, "--tail", tail)
    g, r = d["generation_rate_per_gpu"], d["training_rate_per_gpu"]
    assert d["colocated_sync"] == pytest.approx(64 / (1 / (g / tail) + 1 / r), rel=1e-12)


# -- the three loops, simulated step by step --------------------------------------------------


def simulate(layout: str, g: float, r: float, n: int, n_g: int, tail: float, steps: int = 400):
    """Tokens a second and the idle share of all GPU-seconds over `steps` steps of T tokens,
    from the event times alone: no formula of the calculator's."""
    T, n_t = 1.0, n - n_g
    if layout == "colocated":
        gen, train = T / (n * g), T / (n * r)
        elapsed, busy = steps * (gen * tail + train), steps * (gen + train) * n
    elif layout == "split sync":
        gen, train = T / (n_g * g), T / (n_t * r)
        elapsed, busy = steps * (gen * tail + train), steps * (gen * n_g + train * n_t)
    else:  # async: batch k trains after it is generated and after k − 1 trained; a generator
        gen, train = T / (n_g * g), T / (n_t * r)  # starts k + 2 only once k has trained
        gen_end, train_end = [], []
        for k in range(steps):
            start = max(gen_end[-1] if gen_end else 0.0, train_end[k - 2] if k >= 2 else 0.0)
            gen_end.append(start + gen)
            train_end.append(max(gen_end[-1], train_end[-1] if train_end else 0.0) + train)
        # steady state: measure between the 100th and the last trained batch
        elapsed, busy = train_end[-1] - train_end[99], (steps - 100) * (gen * n_g + train * n_t)
        steps -= 100
    return steps * T / elapsed, 1 - busy / (n * elapsed)


@pytest.mark.parametrize("tail", [1, 2, 3])
@pytest.mark.parametrize("n_g", [None, 20, 58])
def test_each_layout_matches_its_simulated_loop(tail: float, n_g: int | None) -> None:
    d = calc_json(*QUESTION, "--tail", tail, *(("--gen-gpus", n_g) if n_g else ()))
    g, r, (gen_gpus, _) = d["generation_rate_per_gpu"], d["training_rate_per_gpu"], d["split"]
    for layout, key in (("colocated", "colocated_sync"), ("split sync", "split_sync"),
                        ("async", "split_async")):
        x, idle = simulate(layout, g, r, 64, gen_gpus, tail)
        assert d[key] == pytest.approx(x, rel=1e-9), layout
        assert d[f"{key}_idle"] == pytest.approx(idle, abs=1e-9), layout


def test_the_balanced_split_is_the_best_of_every_split() -> None:
    d = calc_json(*TAIL2)
    g, r = d["generation_rate_per_gpu"], d["training_rate_per_gpu"]
    best = max(range(1, 64), key=lambda n_g: min(n_g * g, (64 - n_g) * r))
    assert d["split"] == [best, 64 - best]
    assert CALC["rl_value"]("gen_share") == pct(r / (g + r))


# -- the timeline ----------------------------------------------------------------------------


def test_the_timeline_steps_are_tokens_over_the_calculators_throughputs() -> None:
    d = calc_json(*TAIL2)
    facts = FIGURES["rl_timeline"](width=520, rollouts=256).facts
    tokens = 256 * 4096
    for name, key in (("colocated", "colocated_sync"), ("split_sync", "split_sync"),
                      ("split_async", "split_async")):
        assert facts[f"{name}_step_s"] == pytest.approx(tokens / d[key], rel=1e-12)
    assert facts["window_s"] == pytest.approx(2 * tokens / d["split_sync"], rel=1e-12)
    assert [facts["gen_gpus"], facts["train_gpus"]] == d["split"]


def test_the_timeline_never_overlaps_a_pool_and_async_trains_one_step_stale() -> None:
    a = rl.answer()
    tokens = 256 * 4096.0
    window = 2 * tokens / a.t.split_sync
    boxes = timeline_boxes(a, tokens, window)
    for rows in boxes.values():
        for row in rows:
            for (_, end, *_), (start, *_) in itertools.pairwise(row):
                assert start >= end - 1e-9
    gen, train = boxes["split async"]
    ends = {k: e for _, e, _, k in gen}
    for start, _, _, k in train:
        assert start >= ends[k] - 1e-9  # a batch trains only once generated…
        if k + 1 in ends:  # …while the next one is generated, by weights that have not seen it
            assert next(s for s, _, _, j in gen if j == k + 1) < start + 1e-9


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "named"), [
    (lambda: CALC["rl_value"]("nothing"), "what"),
    (lambda: CALC["rl_value"]("split", model="llama-4"), "model"),
    (lambda: CALC["rl_value"]("split", gpus=1), "gpus"),
    (lambda: CALC["rl_value"]("split", tail=0.5), "tail"),
    (lambda: CALC["rl_value"]("split", gen_gpus=64), "gen_gpus"),
    (lambda: CALC["rl_value"]("split", context=10**6), "context"),
    (lambda: CALC["rl_formula"]("sideways"), "layout"),
    (lambda: TABLES["rl_tail_table"](tails=()), "tails"),
    (lambda: TABLES["rl_split_table"](gen_gpus=(0,)), "gen_gpus"),
    (lambda: FIGURES["rl_timeline"](width=400, steps=7), "steps"),
])
def test_bad_arguments_name_themselves(call, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        call()
