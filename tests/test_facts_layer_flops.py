"""Sheet 10's computations (mlgrind/facts/layer_flops.py, mlgrind/figures/layer_flops.py) against
independent oracles: the reference code run and counted at other sizes than the module traces,
finite differences for the sheet's own SwiGLU, closed forms read off the config files directly,
published formulas (Narayanan et al. 2021, Kaplan et al. 2020), and, for every worked card,
`mlgrind calc … --json`."""

from __future__ import annotations

import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import calc_json, card_field
from mlgrind.calc import flops as calc_flops
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES
from mlgrind.facts import layer_flops as lf
from mlgrind.facts.mlp import flops_text
from mlgrind.figures import FIGURES
from mlgrind.ref import attention as ref_attention
from mlgrind.ref import inference as ref_inference
from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref import moe as ref_moe
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad

CARDS = "10-layer-flops.yaml"
MODELS = Path(__file__).resolve().parent.parent / "mlgrind" / "calc" / "models"
T = 4096


def config(name: str) -> dict:
    """The bundled config.json, read without mlgrind."""
    return json.loads((MODELS / f"{name}.json").read_text())


# The sheet's names against the reference's einsums -------------------------------------------


def traced_block(B=2, L=5, D=6, H=9, G=3, K=4, F=7, seed=0):
    """ref.attention's GQA block and ref.mlp's SwiGLU at sizes other than the module's,
    counted forward and backward."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, L, D))
    attention = (rng.standard_normal((D, H, K)), rng.standard_normal((D, G, K)),
                 rng.standard_normal((D, G, K)), rng.standard_normal((H, K, D)))
    mlp = (rng.standard_normal((D, F)), rng.standard_normal((D, F)), rng.standard_normal((F, D)))
    with count_flops() as fwd:
        y, saved_a = ref_attention.gqa_forward(x, *attention)
        z, saved_m = ref_mlp.swiglu_forward(y, *mlp)
    with count_flops() as bwd:
        d_y = ref_mlp.swiglu_backward(np.ones_like(z), saved_m)[0]
        ref_attention.gqa_backward(d_y, saved_a)
    return fwd, bwd, lf.Dims(D, H, G, K, F, V=1, gated=True)


def test_every_einsum_of_the_table_is_one_the_reference_runs() -> None:
    fwd, bwd, _ = traced_block()
    forward = [CALC["block_einsum"](m.key) for m in lf.MATMULS]
    backward = [CALC["block_einsum"](m.key, lf._stems(n)[1][2:]) for m in lf.MATMULS
                for n in m.backward]
    assert set(forward) == set(fwd.by_spec)
    assert set(backward) | {"bghlm,bghlm->bghl"} == set(bwd.by_spec)  # + the softmax row sum


def test_priced_flops_equal_the_counted_run_at_other_sizes() -> None:
    B, L = 2, 5
    fwd, bwd, dims = traced_block(B=B, L=L)
    assert sum(lf.forward_parts(dims, B, L).values()) == fwd.total
    row_sum = 2 * B * dims.H * L * L  # Σ_m p·d_p: one multiply-add per score
    assert sum(map(sum, lf.backward_parts(dims, B, L).values())) + row_sum == bwd.total


def test_backward_is_exactly_twice_forward_matmul_by_matmul() -> None:
    dims = lf.Dims(D=64, H=8, G=2, K=16, F=96, V=50, gated=True)
    forward, backward = lf.forward_parts(dims, 3, 11), lf.backward_parts(dims, 3, 11)
    assert all(sum(backward[k]) == 2 * n for k, n in forward.items())


def test_a_whole_reference_decoder_costs_layers_times_the_block_plus_the_head() -> None:
    cfg = ref_inference.Config(V=23, D=6, H=8, G=2, K=4, F=10, n_layers=3)
    rng = np.random.default_rng(4)
    model = ref_inference.init_model(cfg, rng)
    B, L = 2, 7
    with count_flops() as counted:
        ref_inference.forward(model, rng.integers(0, cfg.V, size=(B, L)))
    dims = lf.Dims(cfg.D, cfg.H, cfg.G, cfg.K, cfg.F, cfg.V, gated=False)
    head = lf._price(dims, B, L, lf.HEAD.forward)
    assert counted.total == cfg.n_layers * sum(lf.forward_parts(dims, B, L).values()) + head
    assert counted.total == ref_inference.forward_flops(cfg, B, L, L)  # the reference's closed form


def test_the_sheets_head_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 6))
    target = rng.standard_normal((2, 3, 6))
    logits, saved = lf.head_forward(x, w)
    d_x, d_w = lf.head_backward(logits - target, saved)

    def loss(x_, w_):
        return 0.5 * np.sum((x_ @ w_ - target) ** 2)

    np.testing.assert_allclose(d_x, numerical_grad(lambda v: loss(v, w), x), atol=1e-6)
    np.testing.assert_allclose(d_w, numerical_grad(lambda v: loss(x, v), w), atol=1e-6)


def test_moe_flops_follow_top_k_not_the_number_of_experts() -> None:
    rng = np.random.default_rng(6)
    B, D, F, k = 10, 4, 6, 2
    for E in (3, 8):
        weights = (rng.standard_normal((D, E)), rng.standard_normal((E, D, F)),
                   rng.standard_normal((E, F, D)))
        with count_flops() as counted:
            ref_moe.moe_forward(rng.standard_normal((B, D)), *weights, k)
        assert counted.total == 2 * B * D * E + k * 4 * B * D * F  # router + k two-matrix MLPs


# Every total against the calculator -----------------------------------------------------------


@pytest.mark.parametrize("model", ["llama-3-8b", "llama-3-70b", "gpt3-175b", "gpt2"])
def test_block_head_model_and_step_equal_calc_flops(model: str) -> None:
    data = calc_json("flops", "--model", model, "--seq-len", T)
    p = lf.priced(load_model(model), 1, T)
    assert p.part("projections") == data["dense_layer_fwd_attention_projections"]
    assert p.part("core") == data["dense_layer_fwd_attention_scores__weighted_sum"]
    assert p.part("mlp") == data["dense_layer_fwd_mlp"]
    assert p.model_forward == T * data["forward_per_token"]
    assert p.total("model-step") == T * data["model_flops_per_token"]
    assert p.block_backward == 2 * p.block_forward


def test_the_block_against_a_closed_form_read_off_the_config() -> None:
    c = config("llama-3-8b")
    D, H, F, V = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"], c["vocab_size"]
    G, K = c["num_key_value_heads"], D // H
    p = lf.priced(load_model("llama-3-8b"), 1, T)
    weights = D * H * K + 2 * D * G * K + H * K * D + 3 * D * F
    assert p.block_forward == 2 * T * weights + 2 * 2 * T * T * H * K
    assert p.head_forward == 2 * T * D * V
    assert CALC["block_flops"]("q") == flops_text(2 * T * D * H * K)


def test_the_sheets_table_shows_calcs_totals() -> None:
    rows = {r[0]: r for r in TABLES["block_flops_table"]("llama-3-8b", T, "llama-3-70b")}
    for model, column in (("llama-3-8b", 4), ("llama-3-70b", 6)):
        data = calc_json("flops", "--model", model, "--seq-len", T)
        block = sum(v for k, v in data.items() if k.startswith("dense_layer_fwd_"))
        assert rows["**block forward**"][column] == f"**{lf.si(block)}**"
        assert rows["**model forward**"][column] == f"**{lf.si(T * data['forward_per_token'])}**"
        assert rows["**training step**"][column] == f"**{lf.si(T * data['model_flops_per_token'])}**"


def test_narayanan_per_iteration_formula_from_the_sheets_coefficients() -> None:
    # Narayanan et al. 2021 (arXiv 2104.04473), section 5.1: F = 96·B·s·l·h²·(1 + s/6h + V/16lh)
    # with full recomputation; the sheet's coefficients must rebuild it and agree with calc.
    assert (CALC["block_coefficient"]("weights", 4), CALC["block_crossover_rule"](),
            CALC["block_head_denominator"](4)) == ("96", "6", "16")
    spec = load_model("megatron-1t")
    B, s, l, h, V = 2, 2048, spec.n_layers, spec.D, spec.V
    c, r, d = (int(CALC["block_coefficient"]("weights", 4)), int(CALC["block_crossover_rule"]()),
               int(CALC["block_head_denominator"](4)))
    formula = c * B * s * l * h * h * (1 + Fraction(s, r * h) + Fraction(V, d * l * h))
    assert formula == B * s * calc_flops.training_flops_per_token(spec, s, recompute="full")
    # Without recomputation: 72·B·s·l·h²·(1 + s/6h + V/12lh), 3 × forward.
    c3, d3 = int(CALC["block_coefficient"]("weights", 3)), int(CALC["block_head_denominator"](3))
    assert c3 * B * s * l * h * h * (1 + Fraction(s, r * h) + Fraction(V, d3 * l * h)) == \
        B * s * calc_flops.training_flops_per_token(spec, s)


def test_palm_and_kaplan_coefficients() -> None:
    # PaLM (arXiv 2204.02311), appendix B: 6N + 12·L·H·Q·T per token; Kaplan et al. (arXiv
    # 2001.08361), Table 1: C_forward = 2N + 2·n_layer·n_ctx·d_attn, half the dense core.
    assert (CALC["block_step_coefficient"]("n"), CALC["block_step_coefficient"]("attention")) == ("6", "12")
    spec = load_model("gpt3-175b")
    assert calc_flops.palm_flops_per_token(1, spec.n_layers, spec.H, spec.K, 2048) - 6 == \
        spec.n_layers * 2048 * spec.H * spec.K * int(CALC["block_step_coefficient"]("attention"))
    kaplan = calc_flops.attention_flops_per_token(spec, 2048, "kaplan")
    assert kaplan == int(CALC["block_step_coefficient"]("n", 1)) * spec.n_layers * 2048 * spec.H * spec.K
    assert 2 * kaplan == calc_flops.attention_flops_per_token(spec, 2048, "palm")


def test_the_crossover_rule_and_per_model_crossovers() -> None:
    assert (CALC["block_crossover_rule"](), CALC["block_crossover_rule"]("causal")) == ("6", "12")
    assert CALC["block_coefficient"]("weights") == "24" and CALC["block_coefficient"]("core") == "4"
    for name in ("llama-3-8b", "llama-3-70b", "gpt3-175b"):
        c = config(name)
        D = c.get("hidden_size", c.get("n_embd"))
        H = c.get("num_attention_heads", c.get("n_head"))
        G = c.get("num_key_value_heads", H)
        F = c.get("intermediate_size") or 4 * D
        K, matrices = D // H, 3 if "intermediate_size" in c else 2
        weights = 2 * (2 * D * H * K + 2 * D * G * K + matrices * D * F)  # per token and layer
        assert weights % (4 * H * K) == 0
        assert CALC["block_crossover"](name) == f"{weights // (4 * H * K):,}"


def test_figure_crosses_half_way_at_the_crossover() -> None:
    drawing = FIGURES["flops_by_length"](width=250)
    assert drawing.facts["crossover"] == 26624 == int(CALC["block_crossover"]().replace(",", ""))
    assert drawing.facts["core_26624"] == pytest.approx(0.5)
    shares = [v for k, v in drawing.facts.items() if k.startswith("core_")]
    assert shares == sorted(shares)  # the core's share grows with L


@pytest.mark.parametrize("call, message", [
    (lambda: CALC["block_flops"]("block-forward", "mixtral-8x7b"), "mixture of experts"),
    (lambda: CALC["block_flops"]("block-forward", "deepseek-v3"), "MLA"),
    (lambda: CALC["block_flops"]("block-forward", "llama-9"), "model must be one of"),
    (lambda: CALC["block_flops"]("everything"), "what must be one of"),
    (lambda: CALC["block_flops"]("q", "llama-3-8b", 0), "T must be"),
    (lambda: CALC["block_einsum"]("scores", "w_q"), "gradients q and k"),
    (lambda: TABLES["block_flops_table"]("llama-3-8b", 4096, "gpt2"), "same kind of MLP"),
    (lambda: CALC["moe_block_ratio"]("llama-3-8b"), "no mixture-of-experts"),
    (lambda: FIGURES["flops_by_length"](width=250, lengths=(4096, 1024)), "increase"),
])
def test_bad_arguments_are_refused_by_name(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# Worked cards against the calculators' command line -------------------------------------------


def flops(model: str, *extra) -> dict:
    return calc_json("flops", "--model", model, "--seq-len", T, *extra)


def block(data: dict) -> int:
    return sum(v for k, v in data.items() if k.startswith("dense_layer_fwd_"))


def crossover(data: dict) -> int:
    """From calc's per-layer parts at T: weights per token over the core per token and position
    (a whole number for the bundled models)."""
    core = data["dense_layer_fwd_attention_scores__weighted_sum"]
    weights = data["dense_layer_fwd_attention_projections"] + data["dense_layer_fwd_mlp"]
    length = Fraction(weights * T, core)
    assert length.denominator == 1
    return int(length)


def head_in_blocks(model: str) -> str:
    data, params = flops(model), calc_json("params", "--model", model)
    head = data["forward_per_token"] - data["attention_per_token"] - 2 * (params["attention"] + params["mlp"])
    weights_per_block = (data["dense_layer_fwd_attention_projections"] + data["dense_layer_fwd_mlp"]) / T
    return f"{head / weights_per_block:.3g}"


def mha_growth(tmp: Path) -> str:
    """Llama-3-70B's config with a kv head per query head, through `--config`: the block grows."""
    cfg = config("llama-3-70b")
    cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    path = tmp / "llama-3-70b-mha.json"
    path.write_text(json.dumps(cfg))
    gqa, mha = block(flops("llama-3-70b")), block(calc_json("flops", "--config", path, "--seq-len", T))
    return "+" + lf.percent(mha - gqa, gqa)


def moe_ratio() -> str:
    params = calc_json("params", "--model", "mixtral-8x7b")
    return f"{Fraction(params['experts'], params['active_experts'])} ×"


WORKED = [
    ("block-forward-llama3-8b", "back", lambda: flops_text(block(flops("llama-3-8b")))),
    ("block-core-llama3-70b", "back",
     lambda: flops_text(flops("llama-3-70b")["dense_layer_fwd_attention_scores__weighted_sum"])),
    ("model-forward-llama3-70b", "back", lambda: flops_text(T * flops("llama-3-70b")["forward_per_token"])),
    ("model-step-llama3-8b", "back", lambda: flops_text(T * flops("llama-3-8b")["model_flops_per_token"])),
    ("head-in-blocks", "back", lambda: head_in_blocks("llama-3-8b")),
    ("head-in-blocks", "extra", lambda: head_in_blocks("llama-3-70b")),
    ("per-token-n", "back", lambda: f"{flops('llama-3-8b')['6n_per_token'] // 6:,} of its "
                                    f"{calc_json('params', '--model', 'llama-3-8b')['total']:,}"),
    ("causal-kernel-flops", "back", lambda: f"{lf.si(flops('llama-3-8b')['attention_per_token'])}FLOP → "
     f"{lf.si(flops('llama-3-8b', '--attention', 'causal')['attention_per_token'])}FLOP"),
    ("crossover-llama3-8b", "back", lambda: f"L* = {crossover(flops('llama-3-8b')):,}"),
    ("crossover-llama3-8b", "extra",
     lambda: f"Causal: {crossover(flops('llama-3-8b', '--attention', 'causal')):,}"),
    ("crossover-llama31-405b", "back", lambda: f"L* = {crossover(flops('llama-3.1-405b')):,} is shorter"),
    ("crossover-llama31-405b", "back",
     lambda: f"L* = {crossover(flops('llama-3.1-405b', '--attention', 'causal')):,}: the weights"),
    ("core-share-llama3-8b", "back", lambda: lf.percent(
        flops("llama-3-8b")["dense_layer_fwd_attention_scores__weighted_sum"], block(flops("llama-3-8b")))),
    ("moe-experts-mixtral", "back",
     lambda: flops_text(flops("mixtral-8x7b")["moe_layer_fwd_experts_top_k__shared"])),
    ("moe-experts-mixtral", "back", moe_ratio),
]


@pytest.mark.parametrize("note, field, expected", WORKED, ids=[f"{n}-{f}" for n, f, _ in WORKED])
def test_worked_cards_agree_with_the_calculators(note: str, field: str, expected) -> None:
    assert expected() in card_field(CARDS, note, field)


def test_gqa_card_agrees_with_calc_on_an_mha_config(tmp_path: Path) -> None:
    assert mha_growth(tmp_path) in card_field(CARDS, "gqa-vs-mha-llama3-70b")


def test_mlp_coefficients_are_the_matrices_times_two() -> None:
    # A GELU MLP multiplies each token by two D×F matrices, SwiGLU by three; 2 FLOPs a weight.
    assert CALC["block_mlp_coefficient"]("two-matrix") == "4" and CALC["block_mlp_coefficient"]() == "6"
    card = card_field(CARDS, "mlp-flops-per-token", "text")
    assert "{{c1::4·D·F}}" in card and "{{c2::6·D·F}}" in card


def test_the_405b_context_passes_the_dense_crossover_but_not_the_causal_one() -> None:
    context = config("llama-3.1-405b")["max_position_embeddings"]
    assert crossover(flops("llama-3.1-405b")) < context < crossover(
        flops("llama-3.1-405b", "--attention", "causal"))
    assert math.isclose(crossover(flops("llama-3-8b")) / 4096, 6.5)


def test_each_forward_einsum_runs_once_per_matmul_in_the_reference() -> None:
    fwd, _, dims = traced_block()
    priced = {spec: lf.ref_einsum.flops(spec, dims.sizes(2, 5, spec)) for spec in fwd.by_spec}
    runs = Counter({spec: n // priced[spec] for spec, n in fwd.by_spec.items()})
    assert runs == Counter(CALC["block_einsum"](m.key) for m in lf.MATMULS)


@pytest.mark.parametrize("width", [190, 250, 520])
def test_figure_text_stays_inside_and_apart_and_the_recall_hides_its_numbers(width: int) -> None:
    drawing = FIGURES["flops_by_length"](width=width)
    boxes = [box for _, box in drawing.text_boxes()]
    assert all(0 <= b[0] and b[2] <= width and 0 <= b[1] and b[3] <= drawing.height for b in boxes)
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])
    key, blank = drawing.svg("key"), drawing.svg("blank")
    assert "26,624" in key and "50 %" in key
    assert "26,624" not in blank and "50 %" not in blank and "L = 4,096" in blank
    with pytest.raises(ValueError, match="too narrow"):
        FIGURES["flops_by_length"](width=150)
