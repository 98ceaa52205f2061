"""Sheet 15's computations (mlgrind/facts/serving.py): every worked answer on a card against
`mlgrind calc serve --json`, so cards and calculator cannot drift apart; the FLOPs against the
reference einsums, the cache against the reference cache, and the memory arithmetic, the two
shortcuts and Little's law against closed forms from the datasheet and the config."""

from __future__ import annotations

import math
import re

import pytest

from conftest import calc_json, card_field, run
from mlgrind.calc import hardware
from mlgrind.calc.inference import decode_step, kv_copies, prefill_step
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES
from mlgrind.facts import inference as inf
from mlgrind.figures import FIGURES

CARDS = "15-serving.yaml"
QUESTION = ("serve", "--model", "llama-3-70b", "--users", 10000, "--tokens-per-second", 20,
            "--context", 4096)
FIXED = ("--gpus", 4, "--batch", 64)
SPEC, H100 = load_model("llama-3-70b"), hardware.load("h100-sxm")


# Formatted as the cards print them: three significant digits, thousands separated.

def seconds(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def whole(n: int) -> str:
    return f"{n:,}"


def rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


WORKED = [  # (note, field, options beyond the question, JSON key, format)
    ("serve-prefill-2048-4xh100", "back", FIXED, "prefill_latency", seconds),
    ("serve-prefill-16-memory-bound", "back", (*FIXED, "--prompt", 16), "prefill_latency", seconds),
    ("serve-decode-parts-4xh100", "back", FIXED, "decode_weight_matmuls", seconds),
    ("serve-decode-parts-4xh100", "back", FIXED, "decode_attention", seconds),
    ("serve-decode-parts-4xh100", "back", FIXED, "decode_step", seconds),
    ("serve-decode-rate-4xh100", "back", FIXED, "tokens_per_second_per_user", rate),
    ("serve-decode-rate-4xh100", "back", FIXED, "tokens_per_second_per_replica", rate),
    ("serve-kv-per-user", "back", (), "kv_per_user", gb),
    ("serve-batch-fit-4xh100", "back", ("--gpus", 4), "batch_that_fits", whole),
    ("serve-batch-fit-8xh100", "back", ("--gpus", 8), "batch_that_fits", whole),
    ("serve-10k-users", "back", (), "gpus", whole),
    ("serve-10k-users", "back", (), "replicas", whole),
    ("serve-10k-users", "back", (), "gpus_per_replica", whole),
    ("serve-10k-what-binds", "back", (), "decode_step", seconds),
    ("serve-10k-what-binds", "back", (), "tokens_per_second_per_user", rate),
    ("serve-fixed-4x64", "back", FIXED, "gpus", whole),
    ("serve-fixed-4x64", "back", FIXED, "replicas", whole),
    ("serve-replica-size", "back", ("--gpus", 4), "gpus", whole),
    ("serve-replica-size", "back", (), "gpus", whole),
    ("serve-paged-vs-reserved", "back", ("--context", 8192), "batch_that_fits", whole),
    ("serve-fp8-cache", "back", ("--kv-bytes", 1), "gpus", whole),
    ("serve-fp8-cache", "back", ("--weight-bytes", 1), "gpus", whole),
    ("serve-h200", "back", ("--hw", "h200"), "gpus", whole),
    ("serve-h200", "back", ("--hw", "h200"), "gpus_per_replica", whole),
    ("serve-h200", "back", ("--hw", "h200"), "batch_per_replica", whole),
    ("serve-slow-kernels", "back", ("--mbu", 0.5), "gpus", whole),
    ("serve-slow-kernels", "back", ("--mbu", 0.5), "decode_step", seconds),
]


def stated(value: str, text: str) -> bool:
    """`value` appears in `text` as a whole number, not inside a longer one (248 in 1,248)."""
    after = r"(?![\d]|,\d|\.\d)" if value[-1].isdigit() else ""
    return re.search(rf"(?<![\d,.]){re.escape(value)}{after}", text) is not None


@pytest.mark.parametrize(("note", "field", "options", "key", "shown"), WORKED,
                         ids=[f"{w[0]}:{w[3]}{''.join(map(str, w[2]))}" for w in WORKED])
def test_every_worked_answer_is_the_calculators(note, field, options, key, shown) -> None:
    """Replace the question's options by the note's (a later --context wins) and compare."""
    value = calc_json(*QUESTION, *options)[key]
    assert stated(shown(value), card_field(CARDS, note, field)), (note, key, shown(value))


def test_the_sheets_answer_is_248_h100s_in_31_replicas_of_8() -> None:
    """The sheet's numbers against the command line, and the memory arithmetic by hand from the
    datasheet (80 GB), the config (8 kv heads of 128, 80 layers) and the parameter count."""
    answer = calc_json(*QUESTION)
    usable, weights = 0.9 * 8 * 80e9, 2 * count(SPEC).total
    per_user = 4096 * 2 * 8 * 128 * 80 * 2
    fit = math.floor((usable - weights) / per_user)
    assert answer["batch_that_fits"] == answer["batch_per_replica"] == fit
    assert answer["replicas"] == math.ceil(10_000 / fit)
    assert answer["gpus"] == 8 * math.ceil(10_000 / fit)
    assert CALC["serve_value"]("gpus") == whole(answer["gpus"])
    assert CALC["serve_value"]("binds") == "memory"
    assert CALC["serve_value"]("binds", tokens_per_second=50) == "target"


def test_the_replica_figure_is_the_calculators_choice() -> None:
    drawing = FIGURES["serve_memory"](width=250)
    assert drawing.facts["best_gpus"] == calc_json(*QUESTION)["gpus"]
    for n in (2, 4, 8):
        found = calc_json(*QUESTION, "--gpus", n)
        assert drawing.facts[f"n{n}_gpus"] == found["gpus"]
        assert drawing.facts[f"n{n}_batch"] == found["batch_per_replica"]
    assert "n = 1: weights and one user's cache do not fit" in drawing.alt
    assert "n = 16: beyond one scale-up domain" in drawing.alt
    refused = run("calc", *QUESTION, "--gpus", 16)  # the command line refuses it too
    assert refused.code == 1 and "scale-up domain" in refused.err


def test_the_latency_table_is_calc_serve_part_by_part() -> None:
    rows = TABLES["serve_latency_table"](gpus=4, steps=True)
    fixed = calc_json(*QUESTION, *FIXED)
    short = calc_json(*QUESTION, *FIXED, "--prompt", 16)
    times = [r[6].strip("*") for r in rows]
    assert times[0:3] == [seconds(fixed["prefill_weight_matmuls"]), seconds(fixed["prefill_attention"]),
                          seconds(fixed["prefill_latency"])]
    assert times[5] == seconds(short["prefill_latency"])
    assert times[6:9] == [seconds(fixed["decode_weight_matmuls"]), seconds(fixed["decode_attention"]),
                          seconds(fixed["decode_step"])]
    assert [r[5] for r in rows[:2]] == ["compute", "compute"]  # 2,048 tokens: past the ridge
    assert [r[5] for r in rows[3:5] + rows[6:8]] == ["memory"] * 4  # 16 tokens, decode


@pytest.mark.parametrize(("variant", "options"), [
    ("baseline", ()), ("fp8-cache", ("--kv-bytes", 1)), ("fp8-weights", ("--weight-bytes", 1)),
    ("h200", ("--hw", "h200")), (("context", 8192), ("--context", 8192)),
    (("tokens_per_second", 50), ("--tokens-per-second", 50)), (("mbu", 0.5), ("--mbu", 0.5))])
def test_each_change_to_the_question_is_calc_serve_with_that_option(variant, options) -> None:
    (row,) = TABLES["serve_variants_table"]((variant,))
    found = calc_json(*QUESTION, *options)
    assert row[1:] == [whole(found["gpus_per_replica"]), whole(found["batch_per_replica"]),
                       "memory" if found["batch_per_replica"] == found["batch_that_fits"] else "target",
                       f"**{whole(found['gpus'])}**"]


# -- against the reference code and closed forms ------------------------------------------------


@pytest.mark.parametrize(("phase", "batch", "tokens"), [("prefill", 1, 2048), ("prefill", 1, 16),
                                                        ("decode", 64, 4096)])
def test_flops_are_the_reference_einsums(phase: str, batch: int, tokens: int) -> None:
    """The calculator's FLOPs equal the kernels of sheet 07, each counted by the reference
    einsum counter on the reference decoder's einsum specs (tests/test_facts_inference.py
    checks those against a counted run of the reference decoder)."""
    L, M = (tokens, tokens) if phase == "prefill" else (1, tokens + 1)
    kernels = inf.kernels(inf.Dims.of(SPEC), batch, L, M, 2)
    step = (prefill_step(SPEC, H100, tokens, batch) if phase == "prefill"
            else decode_step(SPEC, H100, batch, tokens))
    assert step.weights.flops == sum(k.flops for k in kernels if k.part == "weights")
    assert step.attention.flops == sum(k.flops for k in kernels if k.part == "attention")


def test_the_cache_is_the_reference_caches() -> None:
    per_token = inf.kv_bytes_token("llama-3-70b", "bf16")  # the reference KVCache, cast to bf16
    assert CALC["serve_kv_token"]() == f"{per_token:,} B"
    assert CALC["serve_value"]("kv_per_user") == gb(4096 * per_token)
    step = decode_step(SPEC, H100, 64, 4096)  # attention reads each user's own cache, M = 4,097
    assert step.attention.bytes - 64 * 80 * SPEC.H * 2 * SPEC.K * 2 == 64 * 4097 * per_token


def test_the_rules_of_thumb_are_the_rooflines_limits() -> None:
    """Prefill: 2·N·L at the peak is the weight matmuls' compute time. Decode: weights plus
    caches at the bandwidth is within a few per cent of the step (activations add the rest)."""
    prefill = prefill_step(SPEC, H100, 2048, 1, 4)
    assert CALC["serve_rule"]("prefill", 2048).endswith(f"= {seconds(prefill.weights.compute_s)}")
    decode = decode_step(SPEC, H100, 64, 4096, 4)
    rule = (2 * count(SPEC).matmul_per_token + 64 * 4097 * 327_680) / (4 * 3.35e12)
    assert CALC["serve_rule"]("decode", 4096, 64).endswith(f"= {seconds(rule)}")
    assert 0.97 < rule / decode.seconds < 1


def test_a_short_prompt_reads_every_weight_for_few_tokens() -> None:
    """16 tokens: about 16 FLOPs a byte (two FLOPs and two bytes a weight), far below the
    ridge, and about as long as reading the weights once."""
    assert float(CALC["serve_phase"]("intensity", "prefill", 16, part="weights")) == pytest.approx(16, rel=0.05)
    weights_read = 2 * count(SPEC).matmul_per_token / (4 * H100.hbm_bw)
    prefill = prefill_step(SPEC, H100, 16, 1, 4)
    assert prefill.bound == "memory" and prefill.seconds == pytest.approx(weights_read, rel=0.02)


def test_the_cache_outlasts_the_weights_near_weights_over_cache_per_user() -> None:
    closed_form = 2 * count(SPEC).matmul_per_token / (4097 * 327_680)  # W / (M · KV/token)
    found = int(CALC["serve_crossover"]().replace(",", ""))
    assert closed_form < found < 1.05 * closed_form
    before, at = decode_step(SPEC, H100, found - 1, 4096, 4), decode_step(SPEC, H100, found, 4096, 4)
    assert before.attention.seconds < before.weights.seconds and at.attention.seconds >= at.weights.seconds


def test_the_two_shortcuts_and_littles_law_by_hand() -> None:
    token_flops = 2 * count(SPEC).matmul_per_token + 2 * 4097 * 80 * 64 * (128 + 128)
    assert CALC["serve_shortcut"]("compute_gpus") == whole(math.ceil(10_000 * 20 * token_flops / 989.5e12))
    assert CALC["serve_shortcut"]("cache_gpus") == whole(math.ceil(10_000 * 4096 * 327_680 / 72e9))
    assert CALC["serve_shortcut"]("cache_bytes") == "13.4 TB"  # 10,000 × 4,096 × 327,680 B
    assert CALC["serve_little"]("seconds") == "25 s"  # 500 tokens at 20 a second
    assert CALC["serve_little"]("arrivals") == "400 requests/s"  # 10,000 ÷ 25 s


def test_past_g_gpus_each_kv_head_is_stored_n_over_g_times() -> None:
    """What the batch formula's card says past n = G: with 8 kv heads on 16 GPUs (a size
    `calc serve` no longer tries on H100s), every head sits on two."""
    assert kv_copies(SPEC, 16) == 16 // SPEC.G == 2
    assert CALC["serve_value"]("kv_copies", gpus=8) == "1"
    assert CALC["serve_dim"]("G") == "8" and CALC["serve_domain"]() == "8"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: CALC["serve_value"]("gpu"), "what must be one of"),
    (lambda: CALC["serve_value"]("gpus", model="llama-4"), "model must be one of"),
    (lambda: CALC["serve_value"]("gpus", gpus=0), "gpus must be"),
    (lambda: CALC["serve_value"]("gpus", tokens_per_second="fast"), "tokens_per_second must be"),
    (lambda: CALC["serve_value"]("gpus", cache="int3"), "cache must be one of"),
    (lambda: CALC["serve_value"]("gpus", tokens_per_second=5000), "cannot serve"),
    (lambda: CALC["serve_value"]("gpus", context=16384), "beyond llama-3-70b's 8,192 positions"),
    (lambda: CALC["serve_phase"]("time", "train", 16), "phase must be"),
    (lambda: TABLES["serve_latency_table"](cases=(("decode", 1),)), "a case is"),
    (lambda: TABLES["serve_variants_table"]((("layers", 3),)), "a variant is"),
    (lambda: FIGURES["serve_memory"](width=250, sizes=(8, 4)), "increasing order"),
])
def test_bad_arguments_say_what_is_allowed(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
