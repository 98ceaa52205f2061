"""Sheet 14's computations: every worked card against `mlgrind calc memory --json`, Korthikanti's
coefficients against the arrays the reference forward keeps and against the calculator's Table 2,
ZeRO against its Figure 1 and the simulated ranks' ledger, the bf16 rounding against NumPy's
float formats, and the figure against `memory_per_rank` and the print rules."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import calc_json, card_field

from mlgrind import palette
from mlgrind.calc import memory as calc_memory
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import memory as m
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.ref import attention, mlp, zero
from mlgrind.ref.collectives import ring_all_reduce_bytes

CARDS = "14-memory.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def states(data: dict) -> float:
    return data["params"] + data["grads"] + data["optimizer"]


# -- worked cards against the calculator's CLI ------------------------------------------------

WORKED = [  # note id, field, `mlgrind calc memory` arguments, the card's text from the JSON
    ("mem-llama-3-8b-dp", "back", ("--model", "llama-3-8b", "--gpus", 8, "--zero", 0),
     lambda d: m.gb(states(d))),
    ("mem-llama-3-8b-zero1", "back", ("--model", "llama-3-8b", "--gpus", 8, "--zero", 1),
     lambda d: m.gb(states(d))),
    ("mem-llama-3-8b-zero1", "extra", ("--model", "llama-3-8b", "--gpus", 8, "--zero", 1),
     lambda d: m.gb(d["optimizer"])),
    ("mem-llama-3-1-405b-zero", "back", ("--model", "llama-3.1-405b", "--gpus", 1024, "--tp", 8,
                                         "--zero", 1), lambda d: m.gb(states(d))),
    ("mem-llama-3-1-405b-zero", "back", ("--model", "llama-3.1-405b", "--gpus", 1024, "--tp", 8,
                                         "--zero", 3), lambda d: m.gb(states(d))),
    ("mem-mixtral-zero3", "back", ("--model", "mixtral-8x7b", "--gpus", 8, "--zero", 3),
     lambda d: m.gb(states(d))),
    ("mem-adam-8bit-llama-3-8b", "back", ("--model", "llama-3-8b", "--precision", "adam-8bit"),
     lambda d: m.gb(16 * d["parameters_per_rank"] - states(d))),
    ("mem-fit-8-h100-zero3", "back", ("--fit", "--gpus", 8, "--zero", 3),
     lambda d: m.params_text(d["largest_model"])),
    ("mem-fit-8-h100-zero3", "extra", ("--fit", "--gpus", 8, "--zero", 0),
     lambda d: m.params_text(d["largest_model"])),
    ("mem-lowest-stage", "back", ("--model", "llama-3-8b", "--gpus", 8, "--zero", 1,
                                  "--seq-len", 4096, "--recompute", "full"),
     lambda d: m.gb(d["total"])),
    ("mem-lowest-stage", "extra", ("--model", "llama-3-8b", "--gpus", 8, "--zero", 0,
                                   "--seq-len", 4096, "--recompute", "full"),
     lambda d: m.gb(d["total"])),
    ("mem-llama-3-1-405b-selective", "back", ("--model", "llama-3.1-405b", "--tp", 8, "--sp",
                                              "--recompute", "selective", "--seq-len", 8192),
     lambda d: m.gb(d["layer_activations"])),
    ("mem-llama-3-1-405b-selective", "extra", ("--model", "llama-3.1-405b", "--tp", 8, "--sp",
                                               "--recompute", "selective", "--seq-len", 8192),
     lambda d: m.gb(d["activations_per_layer"])),
    ("mem-llama-3-1-405b-selective", "extra", ("--model", "llama-3.1-405b", "--tp", 8, "--sp",
                                               "--seq-len", 8192),
     lambda d: m.gb(d["layer_activations"])),
    ("mem-recompute-peak", "back", ("--model", "llama-3-8b", "--seq-len", 8192, "--recompute", "full"),
     lambda d: m.gb(d["layer_activations"])),
    ("mem-recompute-peak", "back", ("--model", "llama-3-8b", "--seq-len", 8192, "--recompute", "full"),
     lambda d: m.gb(d["recomputed_in_backward"])),
    ("mem-output-llama-3-8b", "back", ("--model", "llama-3-8b", "--seq-len", 8192),
     lambda d: m.gb(d["output_activations"])),
]


@pytest.mark.parametrize(("note", "field", "args", "shown"), WORKED,
                         ids=[f"{w[0]}-{i}" for i, w in enumerate(WORKED)])
def test_worked_card_equals_the_calculator(note, field, args, shown):
    assert shown(calc_json("memory", *args)) in card_field(CARDS, note, field)


def test_fewest_gpus_for_llama_3_70b_states_is_where_the_calculator_starts_to_fit():
    n = int(card_field(CARDS, "mem-llama-3-70b-min-gpus"))
    fits = [states(d) <= d["usable_memory"] for d in
            (calc_json("memory", "--model", "llama-3-70b", "--gpus", g, "--zero", 3) for g in (n - 1, n))]
    assert fits == [False, True]


def test_lowest_stage_is_the_first_the_calculator_says_fits():
    fits = [calc_json("memory", "--model", "llama-3-8b", "--gpus", 8, "--zero", z,
                      "--seq-len", 4096, "--recompute", "full")["fits"] for z in range(4)]
    assert card_field(CARDS, "mem-lowest-stage").startswith(f"ZeRO-{fits.index(True)}")


def test_zero_figure_1_card_and_table_print_the_papers_numbers():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB.
    assert card_field(CARDS, "mem-zero-figure-1").startswith("31.4 GB")
    cells = [float(re.search(r"[\d.]+", row[3]).group()) for row in m.mem_zero_stages(7.5e9, 64)]
    assert cells[:3] == [120, 31.4, 16.6] and round(cells[3], 1) == 1.9


def test_gpt3_selective_saving_is_the_papers_70_percent():
    # Korthikanti et al. 2022, §5: for GPT-3, 5as/h = 80, and selective recomputation with
    # TP and SP saves 70 % of the activation memory.
    assert card_field(CARDS, "mem-gpt3-selective").startswith("70 %")
    assert m.mem_scores_term("gpt3-175b", 2048) == "80"


# -- Korthikanti's coefficients, counted on arrays ---------------------------------------------


def test_counted_coefficients_are_korthikantis():
    # Korthikanti et al. 2022, §4.1 and Table 2: 34 + 5as/h; with TP 10 + 24/t; full keeps 2sbh.
    c = m.coefficients()
    assert (c["sbh"], c["as2b"], c["replicated"], c["split"], c["checkpoint"]) == (34, 5, 10, 24, 2)


@pytest.mark.parametrize("policy", list(m.POLICIES))
@pytest.mark.parametrize(("s", "b", "h", "a", "t"), [(2048, 1, 12288, 96, 8), (8192, 2, 4096, 32, 4),
                                                     (100, 3, 60, 5, 2)])
def test_policy_formulas_from_counted_coefficients_equal_the_calculators_table_2(policy, s, b, h, a, t):
    tp, sp, recompute = m.POLICIES[policy]
    text = m.policy_formula(policy, tex=False)
    python = text.replace("·", "*").replace("sbh", "(s*b*h)").replace("as/", "a*s/").replace("ht", "h*t")
    python = re.sub(r"(?<=[\d)])(?=[a-z(])", "*", python)  # 5a*s → 5*a*s, 34(…) never occurs
    value = eval(python, {"s": s, "b": b, "h": h, "a": a, "t": t if tp else 1})
    expected = calc_memory.activation_bytes_per_layer(s, b, h, a, t if tp else 1, sp, recompute)
    assert value == pytest.approx(expected, rel=1e-12)


def test_the_reference_caches_hold_the_bytes_counted_for_them():
    """Independently: run ref.attention and ref.mlp at 16-bit, add up what their `saved` tuples
    hold besides the weights, and compare with the rows the table marks ✓."""
    B, L, H, K = 2, 5, 3, 4
    D, F = H * K, 4 * H * K
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, L, D))
    weights = [rng.standard_normal(s) for s in ((D, H, K),) * 3 + ((H, K, D),)]
    _, saved = attention.mha_forward(x, *weights)
    _, (x_bd, _, _, h_bf) = mlp.mlp_forward(x.reshape(B * L, D), rng.standard_normal((D, F)),
                                            rng.standard_normal((F, D)))
    kept = [a for a in saved if not any(a is w for w in weights)] + [x_bd, h_bf]
    nbytes = sum(a.astype(np.float16).nbytes for a in kept)
    c = m.coefficients()
    assert nbytes == c["ref_sbh"] * B * L * D + c["ref_as2b"] * H * L * L * B


def test_layer_table_rows_add_up_to_table_2():
    total: dict[tuple[str, str], int] = {}
    for _, bytes_, _, tp in m.mem_layer_terms():
        n, unit = bytes_.split()
        total[unit, tp] = total.get((unit, tp), 0) + int(n)
    # Korthikanti et al. 2022, Table 2: TP leaves 10 sbh whole, splits 24 sbh and the scores' 5.
    assert total == {("sbh", "whole"): 10, ("sbh", "÷t"): 24, ("as²b", "÷t"): 5}


def test_full_recompute_costs_one_more_forward():
    # Backward is twice forward (two matmuls per forward one), so a step is 3 forwards; full
    # recomputation runs forward once more: 4/3.
    assert m.recompute_flops_ratio() == pytest.approx(4 / 3)
    assert m.mem_recompute_cost() == "1.33"


# -- bytes per parameter and ZeRO ---------------------------------------------------------------


def test_recipes_table_sums_each_recipes_bytes():
    for row, (name, recipe) in zip(m.mem_recipes(), calc_memory.RECIPES.items(), strict=True):
        parts = [0 if c == "–" else float(c) for c in row[1:5]]
        assert name in row[0] and sum(parts) == float(row[5].strip("*"))
        assert sum(parts) == recipe.params + recipe.grads + recipe.optimizer


def test_zero_traffic_is_read_off_the_ledger_and_matches_the_ring_formulas():
    S = 4
    psi = 1000  # bytes of parameters: DP's all-reduce sends 2(S-1)/S of them, ZeRO-3 3(S-1)/S
    assert zero.zero_bytes_per_rank(0, psi, S) == ring_all_reduce_bytes(psi, S)
    for stage in range(4):
        assert m.zero_traffic(stage, S) == pytest.approx(
            zero.zero_bytes_per_rank(stage, psi, S) / zero.zero_bytes_per_rank(0, psi, S))


def test_zero_models_table_bold_exactly_where_the_calculator_fits():
    layouts = (("llama-3-8b", 8, 1), ("mixtral-8x7b", 8, 1))
    for row, (model, gpus, tp) in zip(m.mem_zero_models(layouts), layouts, strict=True):
        for zero_stage, cell in enumerate(row[1:5]):
            d = calc_json("memory", "--model", model, "--gpus", gpus, "--tp", tp, "--zero", zero_stage,
                          "--seq-len", 4096, "--recompute", "full")
            assert cell.strip("*") == m.gb(states(d))
            assert cell.startswith("**") == d["fits"]


def test_fit_is_usable_memory_over_bytes_per_parameter():
    usable = 80e9 * 0.9
    assert m.mem_fit(8, 3) == m.params_text(usable * 8 / 16) == "36B"
    assert m.mem_fit(8, 0) == m.params_text(usable / 16) == "4.5B"
    assert m.mem_min_gpus("llama-3-70b") == str(math.ceil(16 * count(load_model("llama-3-70b")).total / usable))


# -- why the master copy is fp32 ----------------------------------------------------------------


def test_lost_updates_follow_the_mantissa_width():
    # An update of 2^-k vanishes added to 1 when k > mantissa bits (a tie rounds to even).
    assert m.lost_exponent("fp16") == np.finfo(np.float16).nmant + 1 == 11  # Micikevicius: 2^11
    assert m.lost_exponent("fp32") == np.finfo(np.float32).nmant + 1
    assert m.lost_exponent("bf16") == np.finfo(np.float32).nmant - 16 + 1 == 8
    assert np.float16(1) + np.float16(2.0**-11) == 1 and np.float16(1) + np.float16(2.0**-10) != 1


def test_bf16_rounding_keeps_the_top_16_bits_to_nearest_even():
    values = np.array([1 + 2**-7, 1 + 2**-8, 1 + 3 * 2**-8, 3.140625, -2.5], dtype=np.float32)
    assert m.to_bf16(values).tolist() == [1 + 2**-7, 1.0, 1 + 2**-6, 3.140625, -2.5]


# -- every registered computation: bad arguments are refused by name --------------------------

MINE = [name for name, fn in {**CALC, **TABLES}.items() if fn.__module__ == m.__name__]


def test_every_computation_declares_its_worst_calls():
    assert MINE and all(name in WORST for name in MINE)


@pytest.mark.parametrize(("fn", "kwargs", "named"), [
    (m.mem_recipe, {"precision": "fp8"}, "precision"),
    (m.mem_states, {"model": "llama-9b"}, "model"),
    (m.mem_states, {"model": "llama-3-8b", "gpus": 0}, "gpus"),
    (m.mem_states, {"model": "llama-3-8b", "gpus": 8, "tp": 3}, "tensor-parallel"),
    (m.mem_zero_stages, {"n_params": 0}, "n_params"),
    (m.mem_zero_models, {"layouts": (("llama-3-8b", 8),)}, "layouts"),
    (m.mem_policies, {"seq_len": 0}, "seq_len"),
    (m.mem_fit, {"usable": 1.5}, "usable"),
    (m.mem_lost_update, {"dtype": "fp8"}, "dtype"),
    (m.mem_acts, {"model": "llama-3-8b", "part": "weights"}, "part"),
])
def test_bad_arguments_raise_a_value_error_naming_them(fn, kwargs, named):
    with pytest.raises(ValueError, match=named):
        fn(**kwargs)


# -- the figure ----------------------------------------------------------------------------------


def test_figure_bars_are_the_calculators_totals():
    facts = FIGURES["memory_per_gpu"](width=260, model="llama-3-8b", gpus=8).facts
    spec = load_model("llama-3-8b")
    for z in range(4):
        rank = calc_memory.memory_per_rank(spec, calc_memory.Parallel(dp=8), z, 1, 4096, "full")
        assert facts[f"zero{z}_bytes"] == rank.total
    assert facts["usable_bytes"] == 72e9


@pytest.mark.parametrize("width", [170, 520])
def test_figure_print_rules(width):
    d = FIGURES["memory_per_gpu"](width=width)
    allowed = palette.colours()
    for recall in ("key", "blank"):
        svg = ET.fromstring(d.svg(recall))
        for element in svg.iter():
            for attribute in ("fill", "stroke"):
                value = element.get(attribute)
                if value and value != "none" and not value.startswith("url("):
                    assert value in allowed, value
            if element.tag == f"{SVG}text":
                assert float(element.get("font-size")) >= 7
    key = "".join(ET.fromstring(d.svg("key")).itertext())
    blank = "".join(t for e in ET.fromstring(d.svg("blank")).iter(f"{SVG}text") for t in e.itertext())
    assert "72 GB" in key and "72 GB" not in blank and BLANK_RULE in blank
    assert "ZeRO-3" in blank and "optimizer states" in blank
    boxes = [box for _, box in d.text_boxes()]
    assert all(0 <= b[0] and b[2] <= d.width for b in boxes)
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"model": "gpt-9"}, "model"), ({"gpus": 0}, "gpus"), ({"gpus": 8, "tp": 3}, "tp"),
    ({"recompute": "some"}, "recompute"), ({"usable": 2}, "usable"), ({"width": 20}, "width"),
])
def test_figure_bad_arguments_name_them(kwargs, named):
    with pytest.raises(ValueError, match=named):
        FIGURES["memory_per_gpu"](**{"width": 300, **kwargs})
