"""Sheet 07's computations (mlgrind/facts/inference.py) against the reference decoder, the
closed forms of mlgrind.calc and NVIDIA's datasheet: cache bytes from the reference cache, FLOPs
counted while the reference code ran, bytes against the parameter count, times against the
roofline's two limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlgrind.calc import hardware
from mlgrind.calc.flops import forward_flops
from mlgrind.calc.inference import decode_step, kv_bytes_per_token
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES
from mlgrind.facts import inference as inf
from mlgrind.figures import FIGURES
from mlgrind.ref import inference as ref
from mlgrind.ref.einsum import count_flops

H100 = hardware.load("h100-sxm")
GQA_MODELS = ["llama-3-8b", "llama-3-70b", "mistral-7b", "qwen2.5-7b", "gpt2", "mixtral-8x7b"]


def part(step: inf.Step, name: str) -> inf.Part:
    return next(p for p in step.parts if p.name == name)


# -- the cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", GQA_MODELS)
def test_cache_bytes_per_token_are_the_reference_caches_and_the_closed_form(model: str) -> None:
    spec = load_model(model)
    assert inf.cache_elements_per_token(model) == 2 * spec.G * spec.K * spec.n_layers
    assert inf.kv_bytes_token(model, "bf16") == kv_bytes_per_token(spec, 2)
    assert inf.kv_bytes_token(model, "fp32") == kv_bytes_per_token(spec, 4)


def test_the_cache_grows_by_one_token_a_step_and_keeps_the_full_forwards_logits() -> None:
    """What the sheet says of the cache, on the reference decoder itself: prefill writes every
    prompt position, each step appends one, and the logits equal a run without a cache."""
    config = ref.Config()
    model = ref.init_model(config, np.random.default_rng(1))
    B, P = 2, 5
    tokens = np.random.default_rng(2).integers(0, config.V, size=(B, P + 3))
    cache = ref.KVCache.empty(config, B)
    ref.forward(model, tokens[:, :P], cache)
    per_token = B * 2 * config.G * config.K * config.n_layers * 8  # float64 arrays
    assert cache.length == P and cache.nbytes == P * per_token
    for step in range(3):
        logits = ref.forward(model, tokens[:, P + step:P + step + 1], cache)
        assert cache.length == P + step + 1 and cache.nbytes == (P + step + 1) * per_token
    np.testing.assert_allclose(logits[:, -1], ref.forward(model, tokens)[:, -1], atol=1e-10)


def test_llama_3_8b_caches_128_kib_a_token_and_1_gib_at_full_context() -> None:
    # 2 · 8 kv heads · 128 · 32 layers · 2 bytes: the configs' own numbers, multiplied out.
    assert inf.kv_per_token("llama-3-8b") == "128 KiB"
    assert inf.kv_per_sequence("llama-3-8b") == "1 GiB"
    assert inf.kv_formula("llama-3-70b") == "2 · 8 · 128 · 80 · 2"
    assert TABLES["kv_cache_table"]()[1] == [
        "llama-3-70b", "[8]{.dim-heads} · [128]{.dim-heads} · 80", "320 KiB", "2.5 GiB"]


@pytest.mark.parametrize(("model", "gpus"), [("llama-3-8b", 1), ("llama-3-70b", 8)])
def test_sequences_that_fit_beside_the_weights(model: str, gpus: int) -> None:
    spec = load_model(model)
    room = gpus * 80e9 - 2 * count(spec).total  # the datasheet's 80 GB, bf16 weights
    assert inf.fitting_sequences(model, "h100-sxm", gpus, None) == int(
        room // (spec.context * kv_bytes_per_token(spec)))


# -- the kernels against the reference code and the closed forms ---------------------------------


@pytest.mark.parametrize(("B", "L", "M"), [(1, 6, 6), (3, 4, 4), (2, 1, 7), (4, 1, 1)])
def test_kernel_flops_are_the_flops_counted_on_the_reference_forward(B: int, L: int, M: int) -> None:
    config = ref.Config()
    model = ref.init_model(config, np.random.default_rng(0))
    cache = ref.KVCache.empty(config, B)
    rng = np.random.default_rng(3)
    if M > L:
        ref.forward(model, rng.integers(0, config.V, size=(B, M - L)), cache)
    with count_flops() as counted:
        ref.forward(model, rng.integers(0, config.V, size=(B, L)), cache)
    dims = inf.Dims(config.D, config.H, config.G, config.K, config.F, config.V, config.n_layers,
                    gated=False)
    kernels = inf.kernels(dims, B, L, M, 2)
    assert sum(k.flops for k in kernels) == counted.total
    (attention,) = [k for k in kernels if k.part == "attention"]
    assert attention.flops == (counted.by_spec["blghk,bmgk->bghlm"]
                               + counted.by_spec["bghlm,bmgk->blghk"])


@pytest.mark.parametrize("model", ["llama-3-8b", "llama-3-70b", "gpt2", "qwen2.5-0.5b"])
@pytest.mark.parametrize(("B", "L", "M"), [(1, 2048, 2048), (8, 1, 4097)])
def test_kernel_flops_are_the_calculators_forward_flops(model: str, B: int, L: int, M: int) -> None:
    spec = load_model(model)
    flops = sum(k.flops for k in inf.kernels(inf.Dims.of(spec), B, L, M, 2))
    assert flops == forward_flops(spec, B, L, M)


@pytest.mark.parametrize("model", ["llama-3-8b", "llama-3-70b", "mistral-7b"])
def test_decode_bytes_are_every_weight_once_plus_the_cache(model: str) -> None:
    """The weights part is affine in the tokens B·L: its intercept is every matmul weight, two
    bytes each; the attention part reads each sequence's cache of M positions, the reference
    cache's bytes, plus q and out."""
    spec = load_model(model)
    dims, M = inf.Dims.of(spec), 1000

    def weights(B: int) -> int:
        return sum(k.bytes for k in inf.kernels(dims, B, 1, M, 2) if k.part == "weights")

    assert 2 * weights(1) - weights(2) == 2 * count(spec).matmul_per_token
    for B in (1, 16):
        (attention,) = [k for k in inf.kernels(dims, B, 1, M, 2) if k.part == "attention"]
        q_and_out = 2 * B * spec.H * spec.K * spec.n_layers * 2
        assert attention.bytes - q_and_out == B * M * inf.kv_bytes_token(model)


# -- the roofline ---------------------------------------------------------------------------------


def test_the_ridge_is_the_datasheets_dense_peak_over_its_bandwidth() -> None:
    # NVIDIA H100 datasheet, SXM: BF16 1,979 TFLOPS with sparsity (dense: half), 3.35 TB/s.
    assert inf.ridge("h100-sxm") == f"{1979e12 / 2 / 3.35e12:.0f}"
    assert inf.peak("h100-sxm") == "990 TFLOP/s" and inf.bandwidth("h100-sxm") == "3.35 TB/s"


@pytest.mark.parametrize("model", ["llama-3-8b", "llama-3-70b"])
def test_decode_attention_stays_at_heads_per_kv_head_whatever_the_batch(model: str) -> None:
    spec = load_model(model)
    found = [part(inf.step(model, "h100-sxm", "decode", b, 8192), "attention") for b in (1, 64, 512)]
    assert found[0].intensity == pytest.approx(spec.H / spec.G, rel=2e-3)
    assert all(p.intensity == pytest.approx(found[0].intensity, rel=1e-12) for p in found)
    assert all(p.bound == "memory" for p in found)


@pytest.mark.parametrize("batch", [1, 4, 16, 64])
def test_decode_weight_matmuls_do_about_batch_flops_per_byte(batch: int) -> None:
    weights = part(inf.step("llama-3-8b", "h100-sxm", "decode", batch, 2048), "weights")
    assert weights.intensity == pytest.approx(batch, rel=0.03)


def test_the_critical_batch_is_where_the_weights_compute_time_passes_their_reads() -> None:
    """Closed form: 2·b·N / peak ≥ (2·N + 2·b·A) / bandwidth, with N the matmul weights and A
    the activation elements one token moves through them (inputs plus outputs)."""
    spec = load_model("llama-3-8b")
    N = count(spec).matmul_per_token
    D, F, V, GK, HK = spec.D, spec.F, spec.V, spec.G * spec.K, spec.H * spec.K
    A = spec.n_layers * ((D + HK) + 2 * (D + GK) + (HK + D) + 2 * (D + F) + (F + D)) + D + V
    r = H100.ops_per_byte
    assert inf.compute_bound_batch("llama-3-8b", "h100-sxm", 2048) == math.ceil(N * r / (N - r * A))


def test_a_decode_step_at_batch_1_is_its_bytes_over_the_bandwidth() -> None:
    spec, gpus, context = load_model("llama-3-70b"), 8, 2048
    found = inf.step("llama-3-70b", "h100-sxm", "decode", 1, context, gpus)
    reads = 2 * count(spec).matmul_per_token + (context + 1) * kv_bytes_per_token(spec)
    assert all(p.bound == "memory" for p in found.parts)
    assert found.seconds == pytest.approx(reads / (gpus * H100.hbm_bw), rel=1e-3)
    assert found.seconds >= reads / (gpus * H100.hbm_bw)


def test_a_long_prefill_is_its_forward_flops_over_the_peak() -> None:
    spec, gpus, prompt = load_model("llama-3-70b"), 8, 2048
    found = inf.step("llama-3-70b", "h100-sxm", "prefill", 1, prompt, gpus)
    floor = forward_flops(spec, 1, prompt) / (gpus * H100.bf16_flops)
    assert all(p.bound == "compute" for p in found.parts)
    assert found.seconds == pytest.approx(floor, rel=1e-9)
    assert inf.step_time("llama-3-70b", "h100-sxm", "prefill", 1, prompt, gpus) == "37.4 ms"


def test_one_max_over_the_step_underestimates_when_the_parts_disagree() -> None:
    """One max over the whole step's FLOPs and bytes (`single_max_seconds`) is never more than
    the sum over kernels, and less once the matmuls are compute-bound while attention still
    waits on memory. calc.inference.decode_step sums its two parts, each on its own roof, and
    agrees with the sum over kernels here."""
    spec, batch, context = load_model("llama-3-8b"), 512, 512
    found = inf.step("llama-3-8b", "h100-sxm", "decode", batch, context)
    assert part(found, "attention").bound == "memory" and part(found, "weights").bound != "memory"
    assert found.seconds > 1.1 * found.single_max_seconds
    assert decode_step(spec, H100, batch, context).seconds == pytest.approx(found.seconds, rel=1e-3)
    for model, phase, b, t in [("llama-3-8b", "decode", 1, 2048), ("gpt2", "prefill", 4, 64),
                               ("llama-3-70b", "decode", 64, 8192)]:
        s = inf.step(model, "h100-sxm", phase, b, t)
        assert s.seconds >= s.single_max_seconds * (1 - 1e-12)


def test_the_tables_agree_with_the_steps() -> None:
    rows = TABLES["roofline_table"]()
    assert [r[0] for r in rows] == ["prefill", "prefill", "decode", "decode"]
    decode = inf.step("llama-3-70b", "h100-sxm", "decode", 1, 2048, 8)
    assert rows[2][4] == inf.sig_text(part(decode, "weights").intensity)
    batches = TABLES["decode_batch_table"]()
    for row, batch in zip(batches, (1, 64, 256, 448), strict=True):
        s = inf.step("llama-3-8b", "h100-sxm", "decode", batch, 1024)
        assert row[0] == f"{batch:,}" and row[2] == f"{batch / s.seconds:,.0f}"
    assert batches[-1][3:] == ["mixed", "memory"]  # the narrow k, v projections flip last


def test_the_figure_draws_the_steps_parts() -> None:
    drawing = FIGURES["roofline_parts"](width=260, model="llama-3-8b", batch=64)
    facts = drawing.facts
    assert facts["ridge"] == H100.ops_per_byte
    one = inf.step("llama-3-8b", "h100-sxm", "decode", 1, 2048)
    many = inf.step("llama-3-8b", "h100-sxm", "decode", 64, 2048)
    prefill = inf.step("llama-3-8b", "h100-sxm", "prefill", 1, 2048)
    assert facts["decode weights, batch 1"] == part(one, "weights").intensity
    assert facts["decode weights, batch 64"] == part(many, "weights").intensity
    assert facts["decode attention"] == pytest.approx(part(one, "attention").intensity, rel=1e-12)
    assert facts["prefill weights"] == part(prefill, "weights").intensity


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "args", "message"), [
    ("kv_per_token", ("llama-4",), "model must be one of"),
    ("kv_per_token", ("deepseek-v3",), "MLA"),
    ("kv_per_token", ("llama-3-8b", "int4"), "dtype"),
    ("kv_per_sequence", ("llama-3-8b", 0), "tokens"),
    ("step_time", ("mixtral-8x7b", "h100-sxm", "decode", 1, 8), "mixture of experts"),
    ("step_time", ("llama-3-8b", "h100", "decode", 1, 8), "hardware"),
    ("step_time", ("llama-3-8b", "h100-sxm", "train", 1, 8), "phase"),
    ("step_time", ("llama-3-8b", "h100-sxm", "decode", 4097, 8), "batch"),
    ("step_time", ("llama-3-8b", "h100-sxm", "decode", True, 8), "batch"),
    ("step_time", ("llama-3-8b", "h100-sxm", "decode", 1, 8, 65), "gpus"),
    ("intensity", ("llama-3-8b", "h100-sxm", "decode", 1, 8, "mlp"), "part"),
    ("sequences_fit", ("llama-3.1-405b", "h100-sxm", 1), "do not fit"),
])
def test_bad_arguments_are_refused_with_their_name(name: str, args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CALC[name](*args)


def test_a_batch_whose_cache_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        TABLES["decode_batch_table"](batches=(1, 4096))
    with pytest.raises(ValueError, match="batches"):
        TABLES["decode_batch_table"](batches=[1, 2])
