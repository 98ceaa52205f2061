"""Sheet 04's computations (mlgrind/facts/attention.py), each against an independent oracle: FLOPs
counted while the reference code runs, arrays the reference really makes, the reference's own
mask, per-row loops instead of the masked einsum, and the closed forms of the papers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from mlgrind.facts import CALC, TABLES
from mlgrind.facts import attention as facts
from mlgrind.facts.core import size_text
from mlgrind.pipeline.compute import ExpressionError, call, expand
from mlgrind.ref import attention as ref
from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref.einsum import count_flops, einsum

# Published dimensions, not read from our files: GPT-3 175B (Brown et al. 2020, Table 2.1),
# GPT-2 small (Radford et al. 2019; its config.json), Llama-2-7B (meta-llama/Llama-2-7b-hf).
GPT3 = {"D": 12288, "H": 96, "K": 128, "context": 2048}
GPT2 = {"D": 768, "H": 12, "K": 64, "context": 1024}
LLAMA2_7B = {"D": 4096, "H": 32, "K": 128, "F": 11008, "context": 4096}


def arrays(B, L, D, H, K, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, L, D)), *(rng.standard_normal((D, H, K)) / np.sqrt(D)
                                              for _ in range(3)),
            rng.standard_normal((H, K, D)) / np.sqrt(H * K))


@pytest.mark.parametrize("B, L, D, H, K", [(1, 4, 6, 2, 3), (3, 7, 5, 4, 2), (2, 1, 9, 3, 8)])
def test_forward_and_backward_flops_match_a_counted_run(B, L, D, H, K):
    args = arrays(B, L, D, H, K)
    with count_flops() as forward:
        y_BLD, saved = ref.mha_forward(*args)
    with count_flops() as backward:
        ref.mha_backward(np.ones_like(y_BLD), saved)
    ops = facts.forward_flops(B, L, D, H, K)
    assert sum(n for *_, n in ops) == forward.total == ref.mha_flops(B, L, D, H, K)
    assert facts.backward_flops(B, L, D, H, K) == backward.total
    assert backward.total == ref.mha_backward_flops(B, L, D, H, K)
    priced: dict[str, int] = {}  # each named einsum is one the reference ran, at its price
    for _, names, n in ops:
        spec = CALC["einsum_spec"](names)
        priced[spec] = priced.get(spec, 0) + n
    assert priced == forward.by_spec


def test_every_tensor_shape_is_the_shape_the_reference_makes():
    B, L, D, H, K = 2, 5, 7, 3, 4
    x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD = args = arrays(B, L, D, H, K)
    y_BLD, (_, _, _, _, _, q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK) = ref.mha_forward(*args)
    made = {"x_BLD": x_BLD, "y_BLD": y_BLD, "q_BLHK": q_BLHK, "k_BMHK": k_BMHK,
            "v_BMHK": v_BMHK, "out_BLHK": out_BLHK, "scores_BHLM": probs_BHLM,
            "probs_BHLM": probs_BHLM, "w_q_DHK": w_q_DHK, "w_k_DHK": w_k_DHK,
            "w_v_DHK": w_v_DHK, "w_o_HKD": w_o_HKD}
    assert {n: a.shape for n, a in made.items()} == facts.tensor_shapes(B, L, D, H, K)


def test_gpt3_shapes_and_bytes():
    rows = TABLES["attention_shapes"]("gpt3-175b")
    by_name = {names.split()[0].strip("`"): (sizes, size) for names, sizes, size in rows}
    D, H, K, L = GPT3["D"], GPT3["H"], GPT3["K"], GPT3["context"]
    assert by_name["scores_BHLM"] == (f"(1, {H}, {L}, {L})", size_text(H * L * L * 2))
    assert by_name["x_BLD"][0] == f"(1, {L}, {D})"
    assert by_name["w_o_HKD"][0] == f"({H}, {K}, {D})"
    # bf16 is two bytes an element, as a real float16 array of the same shape holds
    assert np.zeros((1, 3, 5, 5), np.float16).nbytes == 3 * 5 * 5 * facts.BF16_BYTES
    assert CALC["tensor_bytes"]("gpt3-175b", "scores_BHLM", L=16384) == size_text(H * 16384**2 * 2)


def test_gpt3_flops_table_against_the_closed_form():
    D, H, K, L = GPT3["D"], GPT3["H"], GPT3["K"], GPT3["context"]
    rows = {row[0]: row[1:] for row in TABLES["attention_flops"]("gpt3-175b")}
    forward, backward = ref.mha_flops(1, L, D, H, K), ref.mha_backward_flops(1, L, D, H, K)
    assert rows["**forward**"][0] == f"**{forward / 1e12:.3g} T**"
    assert rows["**backward**"] == [f"**{backward / 1e12:.3g} T**", "2 × fwd"]
    projection, score = 2 * L * D * H * K, 2 * H * L * L * K  # one matmul each: 2·m·n·k
    assert rows["4 projections, each"] == [f"{projection / 1e9:.3g} G",
                                           f"{100 * projection / forward:.0f} %"]
    assert rows["scores q·k"] == rows["weighted sum of v"] == [
        f"{score / 1e9:.3g} G", f"{100 * score / forward:.2g} %"]
    assert 4 * projection + 2 * score == forward


def test_backward_is_twice_the_forward_and_the_coefficients():
    assert expand("${ calc.backward_ratio('gpt3-175b') }") == "2"
    # 2 FLOPs per multiply-add; four projections, two query-key einsums, half the pairs causal
    assert [CALC["flops_coefficient"](p) for p in ("projections", "core", "causal")] == \
        ["8", "4", "2"]
    assert CALC["mlp_coefficient"]() == 2 * 2 * 4  # two matrices of D × 4D
    assert (CALC["einsum_count"]("projections"), CALC["einsum_count"]("core")) == (4, 2)
    assert CALC["flops_per_score"]("gpt3-175b") == 2 * GPT3["K"]


@pytest.mark.parametrize("L", range(1, 12))
def test_the_causal_mask_keeps_half_the_pairs(L):
    positions = np.arange(L)
    assert ref.causal_mask_LM(positions, positions).sum() == L * (L + 1) // 2
    assert facts.causal_fraction(L) == Fraction(1, 2)


def causal_attention_flops(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD) -> int:
    """Attention counted row by row: query l meets only keys 0..l (a kernel that skips the
    masked pairs), with the reference's einsums."""
    with count_flops() as counter:
        q_BLHK = einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
        k_BMHK = einsum("bmd,dhk->bmhk", x_BLD, w_k_DHK)
        v_BMHK = einsum("bmd,dhk->bmhk", x_BLD, w_v_DHK)
        for l in range(x_BLD.shape[1]):
            s_BHM = einsum("bhk,bmhk->bhm", q_BLHK[:, l], k_BMHK[:, :l + 1])
            einsum("bhm,bmhk->bhk", s_BHM, v_BMHK[:, :l + 1])
        einsum("blhk,hkd->bld", q_BLHK, w_o_HKD)
    return counter.total


def counted_mlp_flops(L, D, F) -> int:
    rng = np.random.default_rng(0)
    with count_flops() as counter:
        ref_mlp.mlp_forward(rng.standard_normal((L, D)), rng.standard_normal((D, F)),
                            rng.standard_normal((F, D)))
    return counter.total


@pytest.mark.parametrize("counting", facts.COUNTINGS)
def test_crossover_found_by_counting_the_reference(counting):
    """The first L at which attention, run and counted, costs more than the reference MLP with
    F = 4D, run and counted, is the first integer past the computed break-even length."""
    D, H, K = 8, 2, 4
    first = next(L for L in range(1, 80)
                 if (ref.mha_flops(1, L, D, H, K) if counting == "dense"
                     else causal_attention_flops(*arrays(1, L, D, H, K)))
                 > counted_mlp_flops(L, D, 4 * D))
    assert first == math.floor(facts.break_even(D, H, K, ref_mlp.mlp_flops(1, D, 4 * D),
                                                counting)) + 1


def test_causal_attention_per_token_is_kaplans():
    """Kaplan et al. 2020, §2.1: causal attention adds 2·n_ctx·d_attn per token and layer (with
    n_ctx positions averaged: exactly 2·(L + 1)·H·K over a sequence of L)."""
    D, H, K, L = 64, 4, 16, 100
    projections = facts.attention_per_token(D, H, K, 1, "dense") - 4 * H * K
    assert projections == 8 * D * H * K
    assert facts.attention_per_token(D, H, K, L, "causal") - projections == 2 * (L + 1) * H * K


def test_crossover_rule_and_named_models():
    assert expand("${ calc.crossover_rule('dense') } | ${ calc.crossover_rule('causal') }") \
        == "2·D | 4·D − 1"
    # F = 4D, H·K = D: 8·D² + 4·L·D = 16·D² at L = 2D; causal 8·D² + 2·(L + 1)·D at 4D − 1
    for model, dims in (("gpt2", GPT2), ("gpt3-175b", GPT3)):
        D = dims["D"]
        assert CALC["crossover"](model, "dense") == f"{2 * D:,}"
        assert CALC["crossover"](model, "causal") == f"{4 * D - 1:,}"
    # SwiGLU: three D×F matrices, 6·D·F per token
    D, F = LLAMA2_7B["D"], LLAMA2_7B["F"]
    assert CALC["crossover"]("llama-2-7b") == f"{(6 * D * F - 8 * D * D) // (4 * D):,}"
    assert (6 * D * F - 8 * D * D) % (4 * D) == 0
    assert CALC["crossover"]("llama-2-7b", "dense", "4D") == f"{2 * D:,}"
    rows = TABLES["crossover_table"](("gpt2", "gpt3-175b", "llama-2-7b"))
    assert [row[-1] for row in rows] == [f"{m['context']:,}" for m in (GPT2, GPT3, LLAMA2_7B)]
    assert rows[2][2] == f"{F:,}, SwiGLU" and rows[0][2] == "4D"


def test_scaling_statistics():
    K, M = 128, 512
    std = {s: float(CALC["score_std"](K, s, M)) for s in facts.SCALES}
    assert std["none"] == pytest.approx(math.sqrt(K), rel=0.05)  # variance K
    assert std["sqrt"] == pytest.approx(1, rel=0.05)
    assert std["K"] == pytest.approx(1 / math.sqrt(K), rel=0.05)
    peak = {s: float(CALC["softmax_peak"](K, s, M)) for s in facts.SCALES}
    assert peak["none"] > 0.5 > peak["sqrt"] > peak["K"] >= 1 / M
    assert peak["K"] == pytest.approx(1 / M, rel=0.5)


def test_the_pitfalls_run_the_reference_and_break_it():
    args = arrays(2, 6, 5, 3, 4, seed=4)
    np.testing.assert_allclose(facts.attend(*args)[0], ref.mha_forward(*args)[0], atol=1e-12)
    assert expand("${ calc.future_leak('none') } ${ calc.row_sum('none') }") == "0 1"
    assert float(CALC["future_leak"]("softmax-over-L")) > 0.1
    assert float(CALC["future_leak"]("mask-after-softmax")) > 0.1
    assert CALC["future_leak"]("scale-by-K") == "0"  # flat, but still causal
    assert float(CALC["row_sum"]("mask-after-softmax")) < 0.5
    # softmax over L: each key's column sums to one over the queries that may read it
    probs = facts.attend(*args, bug="softmax-over-L")[1]
    np.testing.assert_allclose(probs.sum(axis=-2), 1)


@pytest.mark.parametrize("text, message", [
    ("${ calc.crossover('llama-3-8b') }", "not multi-head attention"),
    ("${ calc.crossover('gpt5') }", "unknown model"),
    ("${ calc.crossover('gpt2', 'sparse') }", "counting is one of"),
    ("${ calc.tensor_bytes('gpt2', 'h_BLF') }", "not a tensor of the forward"),
    ("${ calc.score_std(1024, 'none', M=1024) }", "at most"),
    ("${ calc.future_leak('softmax') }", "bug is one of"),
])
def test_bad_arguments_are_refused_by_name(text, message):
    with pytest.raises(ExpressionError, match=message):
        expand(text)
    with pytest.raises(ExpressionError, match="models is a tuple"):
        call(f"crossover_table(models={('gpt2',) * 9!r})", TABLES, "table")
