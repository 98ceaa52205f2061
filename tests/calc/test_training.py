"""`calc flops`, `train` and `memory` (issue 14): the working on every line, the attention
conventions, recomputation in FLOPs and memory, precision recipes, the inverse questions, and
bad input. Published numbers name their source; each was checked against a copy of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlgrind.calc import hardware, memory
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.ref import checkpointing
from tests.conftest import calc_json, run

DAY = 86_400


def rounds_to(value: float, printed: float, step: float) -> bool:
    """`value` prints as `printed` when rounded to a multiple of `step` (the source's precision)."""
    return abs(value - printed) <= step / 2


def calc(*args: object) -> dict:
    result = run("calc", *map(str, args), "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


# ------------------------------------------------------------------------- the working shown

ECHOED = {"gpus", "days", "peak", "activations"}  # inputs and datasheet values, given not derived
COMMANDS = [
    ("flops", "--model", "mixtral-8x7b"),
    ("flops", "--model", "llama-3-8b", "--recompute", "selective", "--attention", "causal"),
    ("train", "--model", "llama-3-70b", "--gpus", "1024", "--recompute", "full"),
    ("train", "--model", "llama-3-8b", "--days", "30", "--hfu", "0.5", "--recompute", "full"),
    ("train", "--model", "llama-3-8b", "--gpus", "64", "--days", "7"),
    ("train", "--gpus", "16384", "--days", "90"),
    ("train", "--model", "llama-3-8b", "--gpus", "8", "--tokens-per-second", "30000"),
    ("memory", "--model", "llama-3-8b", "--dp", "8", "--zero", "3"),
    ("memory", "--model", "mixtral-8x7b", "--tp", "2", "--pp", "4", "--dp", "4", "--ep", "2", "--sp",
     "--microbatches", "8", "--recompute", "full", "--recompute-every", "2", "--precision", "adam-8bit"),
    ("memory", "--model", "llama-3-8b", "--recompute", "selective", "--tp", "4", "--gpus", "16"),
    ("memory", "--fit", "--gpus", "8", "--zero", "3"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_every_derived_line_carries_its_formula_and_the_text_fits_80_columns(args):
    data = calc(*args)
    values = {k for k in data if k not in ("formula", "assumptions", "model", "hardware",
                                           "precision", "attention", "recompute")}
    assert values - ECHOED <= set(data["formula"]), values - ECHOED - set(data["formula"])
    assert all(" = " in f for f in data["formula"].values())  # the numbers substituted, then the result
    text = run("calc", *args).out
    assert max(map(len, text.splitlines())) <= 80


def test_assumptions_name_utilisation_precision_convention_and_usable_memory():
    train = calc("train", "--model", "llama-3-8b", "--gpus", "8")
    notes = " ".join(a for notes in train["assumptions"].values() for a in notes)
    assert "MFU 40% of the bf16 dense peak" in notes and "PaLM convention" in notes
    mem = calc("memory", "--model", "llama-3-8b")
    notes = " ".join(a for notes in mem["assumptions"].values() for a in notes)
    assert "usable memory 90% of HBM" in notes and "16 B" in notes and "not counted:" in notes


# ------------------------------------------------------------------ attention conventions

def test_palm_convention_is_6n_plus_12_lhqt():
    # Chowdhery et al. 2022 (PaLM), appendix B: model FLOPs per token 6N + 12·L·H·Q·T.
    gpt3 = load_model("gpt3-175b")
    data = calc("flops", "--model", "gpt3-175b", "--seq-len", 2048, "--attention", "palm")
    L, H, Q, T = gpt3.n_layers, gpt3.H, gpt3.K, 2048
    assert data["model_flops_per_token"] - data["6n_per_token"] == 12 * L * H * Q * T


def test_kaplan_convention_is_table_1s_2_nlayer_nctx_dattn_half_of_palm():
    # Kaplan et al. 2020 (arXiv 2001.08361), Table 1, row "Attention: Mask": 2·n_layer·n_ctx·d_attn
    # forward FLOPs per token; GPT-3 has d_attn = d_model = 12288 (Brown et al. 2020, Table 2.1).
    by = {a: calc("flops", "--model", "gpt3-175b", "--attention", a)["attention_per_token"]
          for a in ("palm", "causal", "kaplan", "none")}
    assert by["kaplan"] == 2 * 96 * 2048 * 12288
    assert by["palm"] == 2 * by["kaplan"] and by["causal"] == by["palm"] / 2 and by["none"] == 0


def test_the_convention_used_is_printed():
    for convention, words in [("palm", "PaLM convention"), ("causal", "FlashAttention"),
                              ("kaplan", "Kaplan et al. 2020, Table 1"), ("none", "6N only")]:
        out = run("calc", "flops", "--model", "gpt2", "--attention", convention).out
        assert words in out.replace("\n      ", " ")


def test_no_attention_leaves_6n():
    data = calc("flops", "--model", "llama-3-8b", "--attention", "none")
    assert data["model_flops_per_token"] == data["6n_per_token"]


# ------------------------------------------------------------- recomputation: FLOPs and time

@pytest.mark.parametrize("name, tokens, gpus, achieved, printed_days", [
    pytest.param("gpt3-175b", 300e9, 1024, 140e12, 34, id="Narayanan 2021 sec. 5.1: GPT-3, 34 days"),
    pytest.param("megatron-1t", 450e9, 3072, 163e12, 84, id="Narayanan 2021 sec. 5.1: 1T model, 84 days"),
])
def test_megatron_training_time_from_hfu_with_full_recomputation(name, tokens, gpus, achieved, printed_days):
    # Narayanan et al. 2021 (arXiv 2104.04473), section 5.1: "On n = 1024 A100 GPUs using batch
    # size 1536, we achieve X = 140 teraFLOP/s per GPU ... the time required to train this model
    # is 34 days"; the 1T model on 450B tokens, 3072 GPUs at 163 teraFLOP/s: 84 days. X counts the
    # executed FLOPs (full recomputation, 4 × forward): an HFU of X / 312 TFLOP/s (A100 bf16).
    # Their 8·T·P/(n·X) drops attention: --attention none.
    hfu = achieved / hardware.load("a100-80gb").bf16_flops
    args = ["train", "--model", name, "--tokens", tokens, "--gpus", gpus, "--hw", "a100-80gb",
            "--recompute", "full", "--hfu", repr(hfu)]
    assert rounds_to(calc(*args, "--attention", "none")["days"], printed_days, 1)
    # Counting attention dense adds its s/6h to the estimate: 2.8 % for GPT-3, 1.3 % for 1T.
    with_attention = calc(*args)["days"] / calc(*args, "--attention", "none")["days"]
    assert 1.01 < with_attention < 1.03


def test_model_and_executed_flops_match_korthikanti_and_narayanan():
    # Korthikanti et al. 2022 (arXiv 2205.05198), section 6.3 / appendix A: model FLOPs per
    # iteration 72·B·s·l·h²·(1 + s/6h + V/12lh); Narayanan et al. 2021, eq. 3: with full
    # recomputation 96·B·s·l·h²·(1 + s/6h + V/16lh). Per token: divide by B·s.
    spec = load_model("megatron-1t")
    s, l, h, V = 2048, spec.n_layers, spec.D, spec.V
    data = calc("train", "--model", "megatron-1t", "--seq-len", s, "--gpus", 3072, "--recompute", "full")
    assert data["model_flops_per_token"] == 72 * l * h * h + 12 * s * l * h + 6 * V * h
    assert data["executed_flops_per_token"] == 96 * l * h * h + 16 * s * l * h + 6 * V * h


def test_selective_recomputation_runs_the_attention_core_again():
    data = calc("train", "--model", "llama-3-8b", "--gpus", 8, "--recompute", "selective")
    spec = load_model("llama-3-8b")
    core = 2 * spec.n_layers * 2048 * spec.H * (spec.K + spec.K_v)  # scores + weighted sum, forward
    assert data["executed_flops_per_token"] - data["model_flops_per_token"] == core


def test_mfu_and_hfu_describe_the_same_wall_time():
    base = ["train", "--model", "llama-3-70b", "--gpus", 2048, "--recompute", "full"]
    with_mfu = calc(*base, "--mfu", 0.4)
    with_hfu = calc(*base, "--hfu", repr(with_mfu["hfu"]))
    assert with_hfu["days"] == pytest.approx(with_mfu["days"])
    assert with_hfu["mfu"] == pytest.approx(0.4)
    assert with_mfu["hfu"] == pytest.approx(0.4 * with_mfu["executed_flops"] / with_mfu["training_flops"])


# ---------------------------------------------------------------------- activation memory

@pytest.mark.parametrize("tp, pp, sp", [(1, 1, False), (4, 1, True), (2, 4, True)])
def test_activations_add_the_embedding_and_output_terms_of_korthikanti_section_4_3(tp, pp, sp):
    # Korthikanti et al. 2022, section 4.3: besides the layers, the embeddings' dropout needs
    # s·b·h·p/t and, with no pipeline (only the first stage is counted), the final layer norm
    # 2sbh/t, the output projection's input 2sbh/t and the fp32 logits 4sbv/t: in all
    # s·b·h·L/t·(p/L + δ_{p=1}·4/L·(1 + v/h)). Their expressions assume sequence parallelism
    # (t = 1 here without it).
    spec, s, b = load_model("llama-3-8b"), 2048, 1
    h, v, L = spec.D, spec.V, spec.n_layers
    args = ["memory", "--model", "llama-3-8b", "--seq-len", s, "--tp", tp, "--pp", pp,
            "--microbatches", pp] + ["--sp"] * sp
    data = calc(*args)
    extra = s * b * h * L / tp * (pp / L + (pp == 1) * 4 / L * (1 + v / h))
    assert data["activations"] - data["layer_activations"] == pytest.approx(extra)


def test_the_extra_terms_are_about_3_percent_on_llama_3_8b():
    # The estimate (~3 %) of what the totals omitted before.
    data = calc("memory", "--model", "llama-3-8b")
    assert 0.02 < (data["activations"] - data["layer_activations"]) / data["layer_activations"] < 0.05


@pytest.mark.parametrize("n_layers, every", [(6, 1), (6, 2), (6, 3), (6, 6), (8, 4)])
def test_checkpoint_every_k_layers_holds_what_the_reference_stack_holds(n_layers, every):
    # The NumPy stack of mlgrind.ref.checkpointing, run: its measured peak (checkpoints plus the
    # segment recomputed in backward) equals the closed form with its own per-layer bytes.
    B, D, F = 3, 4, 5
    rng = np.random.default_rng(n_layers * 10 + every)
    w_in = [rng.normal(size=(D, F)) for _ in range(n_layers)]
    w_out = [rng.normal(size=(F, D)) for _ in range(n_layers)]
    y, kept = checkpointing.checkpointed_forward(rng.normal(size=(B, D)), w_in, w_out, every)
    *_, peak = checkpointing.checkpointed_backward(np.ones_like(y), kept, w_in, w_out, every)
    stored, live = memory.checkpointed(n_layers, every, B * D * 8, (B * D + B * F) * 8)
    assert stored + live == peak


def test_recompute_every_k_keeps_one_input_per_segment_and_recomputes_one_segment():
    spec, s = load_model("llama-3-8b"), 2048
    sbh = s * spec.D
    data = calc("memory", "--model", "llama-3-8b", "--recompute", "full", "--recompute-every", 4)
    per_layer = memory.activation_bytes_per_layer(s, 1, spec.D, spec.H)  # Table 2, no recompute
    assert data["layer_activations"] == 32 // 4 * 2 * sbh
    assert data["recomputed_in_backward"] == 4 * per_layer - 2 * sbh


@pytest.mark.parametrize("precision, per_param", [
    ("mixed", 16), ("fp32", 16), ("bf16", 8), ("bf16-fp32-moments", 12), ("adam-8bit", 10),
])
def test_precision_recipes_bytes_per_parameter(precision, per_param):
    # Bytes of each dtype: bf16 2, fp32 4, int8 1. mixed is ZeRO's 2 + 2 + K = 12 (Rajbhandari
    # et al. 2020, section 3.1); 8-bit Adam (Dettmers et al. 2022, "8-bit Optimizers via
    # Block-wise Quantization") keeps m and v in 1 byte each instead of 4.
    data = calc("memory", "--model", "gpt2", "--precision", precision)
    n = count(load_model("gpt2")).total
    assert (data["params"] + data["grads"] + data["optimizer"]) == pytest.approx(per_param * n)


def test_8bit_adam_states_are_a_quarter_of_32bit_ones():
    # Dettmers et al. 2022 (arXiv 2110.02861), Background, "Stateful Optimizers": "For 32-bit
    # states, Momentum and Adam consume 4 and 8 bytes per parameter"; the bitsandbytes docs
    # (huggingface.co/docs/bitsandbytes, "8-bit optimizers"): "75% less memory".
    assert memory.RECIPES["adam-8bit"].moments == 0.25 * memory.RECIPES["mixed"].moments == 2


def test_the_cli_offers_every_recipe():
    out = run("calc", "memory", "--help").out
    assert all(name in out for name in memory.RECIPES)


# ------------------------------------------------------------------- the inverse questions

def test_a_gpu_budget_gives_chinchillas_70b_on_1_4t_tokens():
    # Hoffmann et al. 2022: Chinchilla, 70B parameters, 1.4T tokens (C = 6·N·D = 5.88e23).
    # GPUs × days × MFU that buy that compute give back that model and token count.
    peak = hardware.load("h100-sxm").bf16_flops
    days = 6 * 70e9 * 1.4e12 / (1024 * peak * 0.4 * DAY)
    data = calc("train", "--gpus", 1024, "--days", repr(days), "--mfu", 0.4)
    assert rounds_to(data["chinchilla_params"], 70e9, 1e9)
    assert rounds_to(data["chinchilla_tokens"], 1.4e12, 0.1e12)


@pytest.mark.parametrize("flops, printed_params, step", [
    pytest.param(1.21e20, 1e9, 0.1e9, id="Chinchilla Table 3: 1.21e20 FLOPs, 1 Billion"),
    pytest.param(1.23e22, 10e9, 1e9, id="Chinchilla Table 3: 1.23e22 FLOPs, 10 Billion"),
])
def test_a_budget_gives_chinchilla_table_3s_model_size(flops, printed_params, step):
    # Hoffmann et al. 2022, Table 3 (Approach 1). Its larger rows drift from 20 tokens per
    # parameter (67B on 1.5T tokens is 22), so only the small ones are asserted.
    peak = hardware.load("h100-sxm").bf16_flops
    data = calc("train", "--gpus", 8, "--days", repr(flops / (8 * peak * 0.5 * DAY)), "--mfu", 0.5)
    assert data["training_flops"] == pytest.approx(flops)
    assert rounds_to(data["chinchilla_params"], printed_params, step)


def test_a_model_and_a_budget_give_the_tokens_that_take_that_long():
    budget = calc("train", "--model", "llama-3-8b", "--gpus", 64, "--days", 7)
    back = calc("train", "--model", "llama-3-8b", "--gpus", 64, "--tokens", repr(budget["tokens"]))
    assert back["days"] == pytest.approx(7)


def test_memory_fit_finds_zeros_trillion_parameters_on_1024_gpus_at_16_gb():
    # Rajbhandari et al. 2020, ZeRO (arXiv 1910.02054), section 1: a trillion parameters with
    # mixed-precision Adam "requires approximately 16 terabytes (TB) of memory ... 16TB divided
    # by 1024 is 16GB" with all three stages. 16 GB per GPU: 40 GB × 0.4.
    data = calc("memory", "--fit", "--gpus", 1024, "--zero", 3, "--hw", "a100-40gb", "--usable-memory", 0.4)
    assert rounds_to(data["largest_model"] / 1e12, 1, 0.1)


@pytest.mark.parametrize("args", [["--zero", 3], ["--zero", 1, "--tp", 8], ["--zero", 2, "--pp", 4,
                                                                            "--precision", "adam-8bit"]])
def test_the_largest_model_fills_the_usable_memory_exactly(args):
    data = calc("memory", "--fit", "--gpus", 64, "--activations", 10, *args)
    largest, opts = data["largest_model"], dict(zip(args[::2], args[1::2]))
    tp, pp = opts.get("--tp", 1), opts.get("--pp", 1)
    states = memory.zero_state_bytes(largest / (tp * pp), 64 // (tp * pp), opts["--zero"],
                                     opts.get("--precision", "mixed"))
    assert sum(states.values()) + 10e9 == pytest.approx(data["usable_memory"])


# ------------------------------------------------------------------------------ MoE tokens

def test_flops_says_which_chinchilla_count_applies_to_an_moe_and_why():
    data = calc("flops", "--model", "mixtral-8x7b")
    c = count(load_model("mixtral-8x7b"))
    assert data["chinchilla_tokens_active"] == 20 * c.active and data["tokens"] == 20 * c.active
    assert data["chinchilla_tokens_total"] == 20 * c.total
    why = " ".join(data["assumptions"]["chinchilla_tokens_active"])
    assert "active parameters" in why and "idle experts" in why
    assert "comparison only" in " ".join(data["assumptions"]["chinchilla_tokens_total"])


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args", [
    ["train", "--model", "gpt2", "--days", "0"],
    ["train", "--model", "gpt2", "--days", "nan"],
    ["train", "--model", "gpt2", "--days", "inf"],
    ["train", "--model", "gpt2", "--gpus", "8", "--tokens", "-1e9"],
    ["train", "--model", "gpt2", "--gpus", "8", "--mfu", "0"],
    ["train", "--model", "gpt2", "--gpus", "8", "--mfu", "1.5"],
    ["train", "--model", "gpt2", "--gpus", "8", "--hfu", "0"],
    ["train", "--model", "gpt2", "--gpus", "8", "--mfu", "0.4", "--hfu", "0.5"],
    ["train", "--model", "gpt2", "--gpus", "0"],
    ["train", "--model", "gpt2", "--gpus", "8", "--tokens-per-second", "0"],
    ["train", "--model", "gpt2", "--gpus", "8", "--days", "3", "--tokens", "1e9"],
    ["train", "--gpus", "8"],
    ["flops", "--model", "gpt2", "--tokens", "-5"],
    ["memory", "--model", "gpt2", "--recompute-every", "2"],
    ["memory", "--model", "gpt2", "--usable-memory", "0"],
    ["memory", "--fit", "--activations", "-1"],
    ["memory", "--fit", "--model", "gpt2"],
])
def test_bad_input_is_a_usage_error(args):
    result = run("calc", *args)
    assert result.code == 2 and "Traceback" not in result.err


@pytest.mark.parametrize("args", [
    ["memory", "--model", "gpt2", "--recompute", "full", "--recompute-every", "5"],  # 12 layers
    ["memory", "--model", "gpt2", "--gpus", "6", "--tp", "4"],
    ["memory", "--fit", "--activations", "80"],
])
def test_impossible_requests_are_one_line(args):
    result = run("calc", *args)
    assert result.code == 1 and result.err.startswith("error: ") and len(result.err.splitlines()) == 1


def test_flashattention_keeps_no_scores_as_selective_recomputation_drops_them():
    # Dao et al. 2022: FlashAttention never writes the s×s scores to HBM, so the 5·a·s/h term of
    # Korthikanti et al.'s Table 2 (eager attention) is not kept: the per-layer activations are
    # those of selective recomputation, without its recomputed attention core held in backward.
    args = ("memory", "--model", "llama-3-70b", "--tp", "8", "--sp", "--seq-len", "8192")
    eager, flash = calc_json(*args), calc_json(*args, "--attention-kernel", "flash")
    selective = calc_json(*args, "--recompute", "selective")
    spec = load_model("llama-3-70b")
    assert flash["activations_per_layer"] == selective["activations_per_layer"] == 8192 * spec.D / 8 * 34
    assert eager["activations_per_layer"] == 8192 * spec.D / 8 * (34 + 5 * spec.H * 8192 / spec.D)
    assert "recomputed_in_backward" in selective and "recomputed_in_backward" not in flash
    assert any("FlashAttention" in a for a in flash["assumptions"]["activations_per_layer"])
