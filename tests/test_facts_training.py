"""Sheet 09's computations (mlgrind/facts/training.py, mlgrind/figures/training.py) against the
calculators run through the command line, the reference code's own einsums, independent closed
forms and the papers' published figures: every worked answer on a card is recomputed with
`mlgrind calc … --json` and looked for in the card."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import calc_json, card_field

from mlgrind import palette
from mlgrind.calc import flops as calc_flops
from mlgrind.calc import hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, load_model
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import training as tr
from mlgrind.figures import FIGURES
from mlgrind.ref import attention as ref_attention
from mlgrind.ref import inference as ref_inference
from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref.einsum import count_flops

CARDS = "09-training.yaml"
A100_PEAK = hardware.load("a100-80gb").bf16_flops
MEGATRON_HFU = repr(140e12 / A100_PEAK)  # Narayanan et al.'s 140 TFLOP/s executed per A100
GPT3_MEGATRON = ("train", "--model", "gpt3-175b", "--tokens", 300e9, "--gpus", 1024, "--hw", "a100-80gb",
                 "--recompute", "full", "--hfu", MEGATRON_HFU, "--attention", "none")
LLAMA_70B_RUN = ("train", "--model", "llama-3-70b", "--tokens", 15e12, "--seq-len", 8192)


def block_forward(data: dict) -> int:
    """One dense block's forward, the sum of the parts `calc flops` lists for it."""
    return sum(v for k, v in data.items() if k.startswith("dense_layer_fwd_"))


# (note, field, CLI arguments, the card's text from the CLI's JSON)
WORKED = [
    ("chinchilla-llama-3-70b", "back", ("flops", "--model", "llama-3-70b"),
     lambda d: [tr.amount(d["chinchilla_tokens_active"]), tr.amount(d["active_params"])]),
    ("chinchilla-gpt3", "back", ("flops", "--model", "gpt3-175b"),
     lambda d: [tr.ratio_text(300e9 / d["active_params"]), tr.amount(d["chinchilla_tokens_active"])]),
    ("moe-mixtral-tokens", "back", ("flops", "--model", "mixtral-8x7b"),
     lambda d: [tr.amount(d["chinchilla_tokens_active"]), tr.amount(d["active_params"])]),
    ("moe-mixtral-tokens", "extra", ("flops", "--model", "mixtral-8x7b"),
     lambda d: [tr.amount(d["chinchilla_tokens_total"])]),
    ("moe-deepseek-v3-ratio", "back", ("params", "--model", "deepseek-v3"),
     lambda d: [tr.ratio_text(14.8e12 / d["active"]), tr.amount(d["active"]), tr.amount(d["total"])]),
    ("hfu-vs-mfu", "back", GPT3_MEGATRON,
     lambda d: [f"{d['executed_flops_per_token'] / d['model_flops_per_token']:.3g}"]),
    ("megatron-gpt3-mfu", "back", GPT3_MEGATRON,
     lambda d: [tr.percent(140e12 / d["peak"]), tr.percent(d["mfu"])]),
    ("block-forward-llama-3-70b", "back", ("flops", "--model", "llama-3-70b", "--seq-len", 8192),
     lambda d: [tr.sci(block_forward(d))]),
    ("block-forward-llama-3-70b", "extra", ("flops", "--model", "llama-3-70b", "--seq-len", 8192),
     lambda d: [tr.sci(d["forward_per_token"]), tr.sci(d["dense_layer_fwd_mlp"])]),
    ("attention-share-llama-3-8b", "back", ("flops", "--model", "llama-3-8b", "--seq-len", 8192),
     lambda d: [tr.percent(d["model_flops_per_token"] / d["6n_per_token"] - 1)]),
    ("llama-405b-compute", "back", ("flops", "--model", "llama-3.1-405b"),
     lambda d: [tr.sci(d["6n_per_token"] * 15.6e12)]),
    ("days-llama-3-70b", "back", (*LLAMA_70B_RUN, "--gpus", 4096),
     lambda d: [tr.days_text(d["days"])]),
    ("days-llama-3-70b", "extra", (*LLAMA_70B_RUN, "--gpus", 4096),
     lambda d: [tr.sci(d["training_flops"]), tr.amount(d["gpu_hours"])]),
    ("days-gpt3-megatron", "back", GPT3_MEGATRON, lambda d: [tr.days_text(d["days"])]),
    ("gpus-for-days", "back", (*LLAMA_70B_RUN, "--days", 30), lambda d: [f"{d['gpus']:,}"]),
    ("budget-inverse", "back", ("train", "--gpus", 1024, "--days", 30, "--hw", "h100"),
     lambda d: [tr.amount(d["chinchilla_params"]), tr.amount(d["chinchilla_tokens"])]),
    ("budget-inverse", "extra", ("train", "--gpus", 1024, "--days", 30, "--hw", "h100"),
     lambda d: [tr.sci(d["training_flops"])]),
]


@pytest.mark.parametrize(("note", "field", "cli", "expected"), WORKED,
                         ids=[f"{w[0]}:{w[1]}" for w in WORKED])
def test_every_worked_card_answer_is_what_mlgrind_calc_prints(note, field, cli, expected) -> None:
    text = card_field(CARDS, note, field)
    for value in expected(calc_json(*cli)):
        assert value in text, (value, text)


# -- counted on the reference code ----------------------------------------------------------------


def test_flops_per_weight_are_the_reference_mlps_counted_on_a_batch() -> None:
    """2 forward, 4 backward per weight and token, counted on a batch of 7 (the module counts one
    example): as the closed forms of ref.mlp say, and Kaplan et al.'s C ≈ 6N."""
    rng = np.random.default_rng(1)
    B, D, F = 7, 4, 9
    x_BD, w_in_DF, w_out_FD = rng.normal(size=(B, D)), rng.normal(size=(D, F)), rng.normal(size=(F, D))
    with count_flops() as forward:
        y_BD, saved = ref_mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with count_flops() as backward:
        ref_mlp.mlp_backward(np.ones_like(y_BD), saved)
    per = B * (w_in_DF.size + w_out_FD.size)
    assert forward.total == ref_mlp.mlp_flops(B, D, F) == per * tr.train_flops_per_weight("forward")
    assert backward.total == ref_mlp.mlp_backward_flops(B, D, F) == per * tr.train_flops_per_weight("backward")
    assert tr.train_flops_per_weight("step") == 6 and tr.train_flops_per_weight("recomputed step") == 8


def test_attention_backward_is_twice_its_forward_plus_the_softmax_row_sums() -> None:
    """BWD = 2 × FWD holds for attention's einsums too (the sheet says so): counted."""
    rng = np.random.default_rng(2)
    B, L, D, H, K = 2, 6, 8, 2, 4
    weights = [rng.normal(size=s) for s in [(D, H, K)] * 3 + [(H, K, D)]]
    with count_flops() as forward:
        y_BLD, saved = ref_attention.mha_forward(rng.normal(size=(B, L, D)), *weights)
    with count_flops() as backward:
        ref_attention.mha_backward(np.ones_like(y_BLD), saved)
    assert backward.total == 2 * forward.total + 2 * B * H * L * L


def test_the_attention_rule_is_narayanans_s_over_6h() -> None:
    """Narayanan et al. 2021, eq. 3: 72·B·s·l·h²·(1 + s/6h + …): attention / weights = s / 6h."""
    assert tr.train_attention_rule() == 6


def test_gpt3s_counted_share_is_the_rule_less_the_output_heads_share() -> None:
    """GPT-3 is MHA with F = 4D, so the calculators' share is exactly the rule over
    (1 + V / 12·l·D), the output head's weights (Korthikanti et al. 2022's V/12lh) added to 6N."""
    spec = load_model("gpt3-175b")
    T, l, D, V = 2048, spec.n_layers, spec.D, spec.V
    assert spec.F == 4 * D and spec.H * spec.K == D and spec.G == spec.H
    assert tr.attention_share(spec, T, "palm") == pytest.approx(T / (6 * D) / (1 + V / (12 * l * D)))


def test_palms_coefficient_is_twelve() -> None:
    # Chowdhery et al. 2022, appendix B: model FLOPs per token 6N + 12·L·H·Q·T.
    assert tr.train_palm_coefficient() == 12
    spec = load_model("gpt3-175b")
    assert calc_flops.training_flops_per_token(spec, 2048) == calc_flops.palm_flops_per_token(
        count(spec).matmul_per_token, spec.n_layers, spec.H, spec.K, 2048)


def test_a_block_and_the_model_as_the_reference_decoder_counts_them() -> None:
    """The sheet's split of a block, for the reference decoder's own shape (GQA, a ReLU MLP),
    summed over its layers plus the head, is what count_flops measures on its forward."""
    config = ref_inference.Config(V=11, D=8, H=4, G=2, K=4, F=12, n_layers=3)
    spec = ModelSpec(name="ref", source="", model_type="llama", V=config.V, D=config.D,
                     n_layers=config.n_layers, H=config.H, G=config.G, K=config.K, K_v=config.K,
                     F=config.F, context=64, learned_positions=0, norm="rmsnorm", mlp_gated=False,
                     qkv_bias=False, o_bias=False, mlp_bias=False, tied=False)
    model = ref_inference.init_model(config, np.random.default_rng(0))
    T = 10
    with count_flops() as counted:
        ref_inference.forward(model, np.zeros((1, T), dtype=int))
    parts = tr.block_parts(spec, T)
    assert parts[4][2] == counted.total == calc_flops.forward_flops(spec, 1, T)
    assert parts[3][2] == sum(p[2] for p in parts[:3])
    assert parts[1][2] * config.n_layers == (counted.by_spec["blghk,bmgk->bghlm"]
                                             + counted.by_spec["bghlm,bmgk->blghk"])
    assert parts[5][2] * T == parts[4][2]


@pytest.mark.parametrize("model", ["llama-3-70b", "llama-3-8b", "gpt3-175b", "qwen2.5-7b"])
def test_blocks_times_layers_plus_head_is_the_calculators_forward(model: str) -> None:
    spec, T = load_model(model), 8192
    assert tr.block_parts(spec, T)[4][2] == calc_flops.forward_flops(spec, 1, T)


# -- published figures ----------------------------------------------------------------------------


def test_narayanans_closed_form_reproduces_their_34_days() -> None:
    # Narayanan et al. 2021, section 5.1: 8·T·P/(n·X), GPT-3 175B, 300B tokens, 1024 A100s at
    # X = 140 teraFLOP/s: "the time required to train this model is 34 days".
    assert round(float(tr.train_narayanan_days(175e9, 300e9, 1024, 140))) == 34
    assert round(float(tr.train_days("gpt3-175b", 300e9, 1024, "a100-80gb", achieved=140,
                                     recompute="full", attention="none"))) == 34


def test_llama_405b_weights_only_compute_is_dubeys() -> None:
    # Dubey et al. 2024, section 1: "3.8 × 10^25 FLOPs" for 405B parameters on 15.6T tokens.
    text = tr.train_compute("llama-3.1-405b", 15.6e12, what="6nd")
    mantissa, exponent = text.split("×")
    assert round(float(mantissa), 1) == 3.8 and exponent == "10²⁵"


def test_chinchilla_20_and_its_inverse() -> None:
    # Hoffmann et al. 2022: ≈20 tokens per parameter (Chinchilla: 70B, 1.4T tokens).
    assert tr.train_chinchilla_ratio() == 20 and tr.train_budget_divisor() == 120
    n = 70e9
    assert calc_flops.chinchilla_params(6 * n * 20 * n) == pytest.approx(n)


def test_megatron_hfu_and_mfu() -> None:
    hfu = 140e12 / A100_PEAK
    assert tr.train_utilisation("gpt3-175b", 140, which="hfu") == tr.percent(hfu)
    # Full recomputation: executed = model + a layers' forward; MFU = HFU · model / executed.
    spec = load_model("gpt3-175b")
    model = calc_flops.training_flops_per_token(spec, 2048, "none", "none")
    executed = model + calc_flops.forward_flops_per_token(spec, 2048, "none") - 2 * count(spec).output_head
    assert tr.train_utilisation("gpt3-175b", 140) == tr.percent(hfu * model / executed)


def test_the_tables_use_the_formats_of_the_cards() -> None:
    rows = TABLES["train_days_table"]((("llama-3-70b", 15e12, 4096, "h100-sxm", 0.4, 8192),))
    assert rows[0][-1] == tr.train_days("llama-3-70b", 15e12, 4096, "h100-sxm", 0.4, 8192)
    budget = TABLES["train_budget_table"](((1024, "h100-sxm", 30, 0.4),))[0]
    assert budget[5:] == [tr.train_budget(1024, 30), tr.train_budget(1024, 30, what="tokens")]
    moe = TABLES["train_moe_table"](("mixtral-8x7b",))[0]
    assert moe[3] == tr.train_chinchilla_tokens("mixtral-8x7b")


# -- arguments -----------------------------------------------------------------------------------

BAD = [
    ("train_params", ("llama-9",), "model"),
    ("train_params", ("llama-3-8b", "all"), "kind"),
    ("train_tokens_per_param", ("llama-3-8b", 0), "tokens"),
    ("train_block_flops", ("mixtral-8x7b",), "not a dense"),
    ("train_block_flops", ("llama-3-8b", 0), "seq"),
    ("train_days", ("llama-3-8b", 1e12, 0), "gpus"),
    ("train_days", ("llama-3-8b", 1e12, 8, "h100"), "hardware"),
    ("train_days", ("llama-3-8b", 1e12, 8, "h100-sxm", 1.5), "mfu"),
    ("train_utilisation", ("gpt3-175b", 1000), "achieved / peak"),
    ("train_budget", (8, 30, "h100-sxm", 0.4, "cost"), "what"),
    ("train_expert_ratio", ("llama-3-8b",), "dense"),
]


@pytest.mark.parametrize(("name", "args", "named"), BAD)
def test_bad_arguments_are_refused_by_name(name: str, args: tuple, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        CALC[name](*args)


def test_every_computation_declares_its_worst_case() -> None:
    mine = [n for n in [*CALC, *TABLES] if n.startswith("train_")]
    assert mine and all(n in WORST for n in mine)
    assert FIGURES["tokens_per_param"].worst


# -- the figure -----------------------------------------------------------------------------------

RUNS = (("gpt3-175b", 300e9), ("llama-3-8b", 15e12), ("deepseek-v3", 14.8e12))
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("width", [230, 260, 400, 780])
def test_the_figure_plots_tokens_per_active_parameter_legibly(width: int) -> None:
    d = FIGURES["tokens_per_param"](width=width, runs=RUNS)
    for name, tokens in RUNS:
        active = calc_json("params", "--model", name)["active"]
        assert d.facts[name] == pytest.approx(tokens / active)
    key = ET.fromstring(d.svg("key"))
    text = " ".join("".join(t.itertext()) for t in key.iter(f"{SVG}text"))
    blank = " ".join("".join(t.itertext()) for t in ET.fromstring(d.svg("blank")).iter(f"{SVG}text"))
    for name, tokens in RUNS:
        ratio = tr.ratio_text(d.facts[name])
        assert f"{name} {ratio}" in text and ratio not in blank and name in blank
    boxes = d.text_boxes()
    for label, (left, top, right, bottom) in boxes:
        assert 0 <= left and right <= d.width and 0 <= top and bottom <= d.height, label
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert (box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1]
                    or box_b[3] <= box_a[1]), (a, b)
    allowed = palette.colours()
    for element in key.iter():
        for attribute in ("fill", "stroke"):
            value = element.get(attribute)
            assert value in (None, "none") or value in allowed, value
        if element.get("font-size") is not None:
            assert float(element.get("font-size")) >= 7
    assert FIGURES["tokens_per_param"](width=width, runs=RUNS).svg() == d.svg()


def test_the_figure_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="runs"):
        FIGURES["tokens_per_param"](width=300, runs=(("llama-9", 1e12),))
    with pytest.raises(ValueError, match="too narrow"):
        FIGURES["tokens_per_param"](width=120, runs=RUNS)
    assert math.isfinite(FIGURES["tokens_per_param"](width=300, runs=RUNS).height)
