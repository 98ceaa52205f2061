"""Sheet 05 (GQA & MLA): the computations behind its numbers, checked against independent
oracles: the reference forwards themselves (GQA with G = H is MHA, absorbed MLA is naive MLA),
FLOPs counted from their einsums, bytes read off the arrays they cache, the calculators' closed
forms (`mlgrind.calc`), and published figures."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from fractions import Fraction

import numpy as np
import pytest

from mlgrind import palette
from mlgrind.calc.inference import kv_bytes_per_token as calc_kv_bytes_per_token
from mlgrind.calc.params import attention_matrices
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES
from mlgrind.facts import kv_heads as kv
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.ref.attention import (
    causal_mask_LM,
    gqa_forward,
    kv_cache_bytes_per_token,
    masked_softmax,
    mha_forward,
)
from mlgrind.ref.einsum import count_flops, einsum
from mlgrind.ref.mla import (
    absorb,
    init_mla,
    mla_absorbed,
    mla_cache_bytes_per_token,
    mla_latent_cache,
    mla_naive,
    mla_rope_query,
)

GQA_MODELS = ["llama-3-8b", "llama-3-70b", "llama-3.1-405b", "mistral-7b", "llama-2-7b"]


# ------------------------------------------------------------------------- GQA against MHA


@pytest.mark.parametrize("H, K", [(4, 3), (6, 2)])
def test_gqa_with_g_equal_to_h_is_mha(H, K):
    rng = np.random.default_rng(H)
    B, L, D = 2, 5, 7
    x = rng.normal(size=(B, L, D))
    w_q, w_k, w_v = (rng.normal(size=(D, H, K)) for _ in range(3))
    w_o = rng.normal(size=(H, K, D))
    y_mha, saved_mha = mha_forward(x, w_q, w_k, w_v, w_o)
    y_gqa, saved_gqa = gqa_forward(x, w_q, w_k, w_v, w_o)
    np.testing.assert_allclose(y_gqa, y_mha, atol=1e-12)
    # what each caches: the same keys and values, head for head
    np.testing.assert_allclose(saved_gqa[6], saved_mha[6])
    np.testing.assert_allclose(saved_gqa[7], saved_mha[7])
    # and every step's FLOPs, counted as the sheet counts them, are equal at G = H
    mha_flops, gqa_flops = kv.counted_steps(H, H)
    assert gqa_flops == mha_flops


@pytest.mark.parametrize("H, G", [(64, 8), (8, 1), (6, 3)])
def test_counted_flops_shrink_by_g_over_h_for_k_v_only(H, G):
    mha_flops, gqa_flops = kv.counted_steps(H, G)
    assert Fraction(gqa_flops["kv"], mha_flops["kv"]) == Fraction(G, H)
    assert all(gqa_flops[s] == mha_flops[s] for s in ("q", "scores", "weighted", "out"))


@pytest.mark.parametrize("model", GQA_MODELS)
def test_the_sheet_ratios_use_the_model_heads(model):
    spec = load_model(model)
    assert CALC["gqa_flops_ratio"]("kv", model) == str(Fraction(spec.G, spec.H))
    assert CALC["gqa_flops_ratio"]("scores", model) == "1"


def test_the_counted_steps_are_every_einsum_of_the_forwards():
    """Nothing the forwards run is left out of the table of steps (k and v share one spec)."""
    _, gqa = kv.counted_steps(H=4, G=2)
    with count_flops() as counter:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1, 2, 2))
        gqa_forward(x, rng.normal(size=(2, 4, 2)), *(rng.normal(size=(2, 2, 2)) for _ in "kv"),
                    rng.normal(size=(4, 2, 2)))
    assert sum(gqa.values()) == counter.total
    assert set(counter.by_spec) == {spec for _, spec in kv.STEPS.values()}


# ------------------------------------------------------------- formulas read off the arrays


def evaluate(formula: str, sizes: dict[str, int]) -> int:
    """`2·G·K + H·R` at these sizes: the sheet's text, read back independently."""
    return sum(math.prod(int(f) if f.isdigit() else sizes[f] for f in term.split("·"))
               for term in formula.split(" + "))


@pytest.mark.parametrize("variant, closed_form", [
    ("mha", "2·H·K"), ("gqa", "2·G·K"), ("mqa", "2·K"), ("mla", "C + R"),
    ("mla-as-mha", "2·H·K + H·R"),
])
def test_cache_formulas_are_the_reference_docstrings_and_hold_at_other_sizes(variant, closed_form):
    # ref.attention.kv_cache_bytes_per_token: 2·G·K per layer; ref.mla: C + R per layer.
    assert CALC["kv_terms"](variant) == closed_form
    sizes = {"D": 5, "H": 12, "G": 3, "K": 7, "C": 11, "R": 6}  # none of the doubling's sizes
    arrays = kv.cache_arrays(variant, sizes, B=3, M=4, dtype=np.float64)
    assert sum(a.size for a in arrays) == 3 * 4 * evaluate(closed_form, sizes)


def test_tex_formulas_colour_the_same_letters():
    assert CALC["kv_terms_tex"]("gqa") == r"2 \cdot \dim{G} \cdot \dim{K}"
    assert CALC["kv_terms_tex"]("mla") == r"\dim{C} + \dim{R}"


# ------------------------------------------------------------------- bytes of real models


@pytest.mark.parametrize("model", GQA_MODELS + ["deepseek-v3"])
def test_bytes_per_token_equal_the_calculator_and_the_reference_closed_forms(model):
    spec = load_model(model)
    measured = CALC["kv_bytes_per_token"](model)
    assert measured == calc_kv_bytes_per_token(spec, bytes_per_element=2)
    if spec.mla:
        assert measured == mla_cache_bytes_per_token(spec.mla.C, spec.mla.R, spec.n_layers, 2)
    else:
        assert measured == kv_cache_bytes_per_token(spec.G, spec.K, spec.n_layers, 2)
        # MHA with the same heads: G = H, so H / G times more
        assert CALC["kv_bytes_per_token"](model, "mha") * spec.G == measured * spec.H
    assert CALC["kv_bytes_per_token"](model, dtype="fp32") == 2 * measured


@pytest.mark.parametrize("model, published", [
    # Zhao et al. 2025, "Insights into DeepSeek-V3" (arXiv 2505.09343), Table 1, BF16, KB = 1000 B
    ("deepseek-v3", 70_272), ("llama-3.1-405b", 516_096), ("qwen2.5-72b", 327_680),
])
def test_bytes_per_token_reproduce_published_figures(model, published):
    assert CALC["kv_bytes_per_token"](model) == published


def test_the_cache_measured_at_a_tiny_d_is_the_cache_at_any_d():
    """The facts build real models' caches with D = 2: the arrays do not depend on D."""
    for variant, sizes in (("gqa", {"H": 8, "G": 2, "K": 4}),
                           ("mla-as-mha", {"H": 4, "K": 4, "C": 6, "R": 2})):
        per_token = {D: sum(a.nbytes for a in kv.cache_arrays(variant, {**sizes, "D": D}, 2, 3))
                     for D in (2, 16, 33)}
        assert len(set(per_token.values())) == 1


def test_deepseek_v3_mha_equivalent_caches_full_keys_and_values():
    # DeepSeek-V3 config: 128 heads, qk_nope 128 + qk_rope 64 per key, v_head_dim 128, 61 layers
    assert CALC["kv_bytes_per_token"]("deepseek-v3", "mha") == 128 * (128 + 64 + 128) * 61 * 2
    assert CALC["kv_saving"]("deepseek-v3") == f"{(128 * 320) / 576:.3g}×"


def test_mla_caches_as_much_as_gqa_with_2_25_groups():
    # DeepSeek-V2 (arXiv 2405.04434) section 2.1.4: "equal to GQA with only 2.25 groups";
    # DeepSeek-V3 keeps d_c = 4 d_h and d_h^R = d_h / 2.
    assert CALC["mla_gqa_groups"]("deepseek-v3") == "2.25"


def test_models_table_rows_match_the_calculator():
    rows = TABLES["kv_models_table"](("llama-3-8b", "deepseek-v3"))
    for row, model in zip(rows, ("llama-3-8b", "deepseek-v3"), strict=True):
        spec = load_model(model)
        native = calc_kv_bytes_per_token(spec)
        assert row[3] == f"{native:,}"
        assert row[6].startswith(CALC["kv_bytes_at"](model))
        assert f"({spec.context:,})" in row[6]
    assert rows[0][2] == f"2·G·K = {2 * 8 * 128:,}" and rows[1][2] == "C + R = 576"
    assert rows[0][5] == "4×"  # H / G = 32 / 8


def test_projection_parameters_equal_the_calculator():
    for model in GQA_MODELS:
        spec = load_model(model)
        rows = TABLES["kv_params_table"](model)
        total = int(re.sub(r"[^0-9]", "", rows[-1][2]))
        assert total == attention_matrices(spec)
        assert int(rows[-1][3].replace(",", "")) == 4 * spec.D * spec.H * spec.K
        assert CALC["kv_weight_params"](model, "w_k_DGK") == spec.D * spec.G * spec.K


# ------------------------------------------------------------------ MLA: absorbed vs naive


def rebuild_decode(x_BLD, positions_L, c_kv_BMC, k_rope_BMR, positions_M, w):
    """A decode step that reads the latent cache but up-projects every cached token to
    per-head keys and values first: the einsums of `mla_naive`, queries from the new tokens."""
    K, R = w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1]
    k_BMHK = einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uk_CHK)
    v_BMHK = einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uv_CHK)
    q_BLHK = einsum("bld,dhk->blhk", x_BLD, w.w_q_DHK)
    q_rope_BLHR = mla_rope_query(x_BLD, positions_L, w)
    scores_BHLM = einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK)
    scores_BHLM = scores_BHLM + einsum("blhr,bmr->bhlm", q_rope_BLHR, k_rope_BMR)
    probs_BHLM = masked_softmax(scores_BHLM / np.sqrt(K + R),
                                causal_mask_LM(positions_L, positions_M))
    out_BLHK = einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    return einsum("blhk,hkd->bld", out_BLHK, w.w_o_HKD)


@pytest.mark.parametrize("B, M, D, H, K, C, R", [(2, 6, 8, 3, 4, 5, 2), (1, 9, 5, 4, 2, 7, 4)])
def test_absorbed_mla_equals_naive_mla_and_the_decode_flops_are_counted(B, M, D, H, K, C, R):
    rng = np.random.default_rng(M)
    w = init_mla(rng, D, H, K, C, R)
    x = rng.normal(size=(B, M, D))
    positions = np.arange(M)
    c_kv, k_rope = mla_latent_cache(x, positions, w)
    naive = mla_naive(x, w)
    # every position, absorbed against the latent cache
    np.testing.assert_allclose(mla_absorbed(x, positions, c_kv, k_rope, positions, w), naive,
                               atol=1e-12)
    step = (x[:, -1:], np.array([M - 1]), c_kv, k_rope, positions, w)
    folded = absorb(w)
    with count_flops() as absorbed_count:
        absorbed_last = mla_absorbed(*step, folded)
    with count_flops() as rebuild_count:
        rebuilt_last = rebuild_decode(*step)
    np.testing.assert_allclose(absorbed_last[:, 0], naive[:, -1], atol=1e-12)
    np.testing.assert_allclose(rebuilt_last[:, 0], naive[:, -1], atol=1e-12)
    assert kv.mla_decode_step_flops("absorbed", M, D, H, K, C, R, B) == absorbed_count.total
    assert kv.mla_decode_step_flops("rebuild", M, D, H, K, C, R, B) == rebuild_count.total


def test_deepseek_v3_decode_numbers():
    # C = 512, R = 64, K = 128, H = 128, D = 7168 (config.json); at 4096 cached tokens
    C, R, K, H, D, M = 512, 64, 128, 128, 7168, 4096
    absorbed = 2 * D * H * (C + R) + 2 * H * M * (C + R) + 2 * H * M * C + 2 * H * C * D
    assert CALC["mla_decode_flops"]("deepseek-v3", M) == f"{absorbed / 1e9:.3g} GFLOP"
    rebuild = kv.mla_decode_step_flops("rebuild", M, D, H, K, C, R)
    assert CALC["mla_rebuild_ratio"]("deepseek-v3", M) == f"{rebuild / absorbed:.3g}×"
    assert CALC["mla_score_width"]("deepseek-v3", "naive") == K + R
    assert CALC["mla_score_width"]("deepseek-v3", "absorbed") == C + R
    assert [CALC["model_dim"]("deepseek-v3", c) for c in ("C", "R", "H", "K", "layers")] == \
        [512, 64, 128, 128, 61]


# ------------------------------------------------------------------------------- the figure

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("width", [170, 240, 520])
def test_figure_numbers_come_from_the_arrays_and_its_text_stays_apart(width):
    try:
        d = FIGURES["kv_sharing"](width=width)
    except ValueError as error:
        assert "too narrow" in str(error)
        return
    H, G, K, C, R = 8, 2, 128, 512, 64
    assert d.facts == {"numbers_mha": 2 * H * K, "numbers_gqa": 2 * G * K, "numbers_mqa": 2 * K,
                       "numbers_mla": C + R}
    boxes = d.text_boxes()
    for text, (left, top, right, bottom) in boxes:
        assert 0 <= left and right <= d.width and 0 <= top and bottom <= d.height, text
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert (box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1]
                    or box_b[3] <= box_a[1]), (a, b)
    allowed = palette.colours()
    for element in ET.fromstring(d.svg()).iter():
        for attribute in ("fill", "stroke"):
            value = element.get(attribute)
            assert value in (None, "none") or value in allowed or value.startswith("url(#")


def test_figure_recall_hides_the_numbers_and_keeps_the_labels():
    d = FIGURES["kv_sharing"](width=240)
    key = " ".join("".join(t.itertext()) for t in ET.fromstring(d.svg("key")).iter(f"{SVG}text"))
    blank = " ".join("".join(t.itertext())
                     for t in ET.fromstring(d.svg("blank")).iter(f"{SVG}text"))
    assert "2,048" in key and "2,048" not in blank and BLANK_RULE in blank
    assert "MLA" in blank and "query head" in blank


@pytest.mark.parametrize("kwargs, named", [
    ({"H": 8, "G": 3}, "divide"), ({"H": 17}, "H"), ({"R": 3}, "even"), ({"K": 0}, "K"),
])
def test_figure_refuses_bad_sizes(kwargs, named):
    with pytest.raises(ValueError, match=named):
        FIGURES["kv_sharing"](width=240, **kwargs)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("name, args, named", [
    ("kv_bytes_per_token", ("llama-4",), "unknown model"),
    ("kv_bytes_per_token", ("llama-3-8b", "gqa"), "variant"),
    ("kv_bytes_per_token", ("llama-3-8b", "native", "fp4"), "dtype"),
    ("kv_terms", ("mqa2",), "variant"),
    ("gqa_flops_ratio", ("kv", "deepseek-v3"), "MLA"),
    ("gqa_flops_ratio", ("attention", "llama-3-8b"), "step"),
    ("mla_decode_flops", ("llama-3-8b", 4096), "MLA"),
    ("mla_decode_flops", ("deepseek-v3", 0), "context"),
    ("mla_gqa_groups", ("llama-3-70b",), "MLA"),
    ("model_dim", ("llama-3-8b", "C"), "no 'C'"),
    ("kv_weight_params", ("deepseek-v3", "w_k_DGK"), "MLA"),
    ("kv_bytes_at", ("llama-3-8b", 1 << 30), "tokens"),
])
def test_bad_arguments_are_refused_by_name(name, args, named):
    with pytest.raises(ValueError, match=named):
        CALC[name](*args)
