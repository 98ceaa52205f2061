"""Seed "Be able to reason clearly about GQA and MLA" (sheet 05): fewer bytes of K and V.

Every count here is read off arrays the reference code (`ref.attention`, `ref.mla`) builds:
the KV cache per token is the bytes of the cached arrays it returns, divided by the tokens they
hold; a formula such as 2·G·K is found by doubling each letter in turn and watching how the
cached arrays grow (each array is a product of letters, so a doubled letter doubles it or
leaves it alone); FLOPs are counted from the einsums while the reference code runs.

The cache shapes of a real model do not depend on its model dimension D, so the arrays are
built with the model's true H, G, K, C and R but a tiny D: what is cached, per token, is exact,
at a few kilobytes of work.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..calc.specs import ModelSpec, load_model, model_names
from ..ref import attention as ref_attention
from ..ref import einsum as ref_einsum
from ..ref import mla as ref_mla
from .core import calc, int_arg, size_text, table, text_arg

# Display names for the bundled configs this sheet quotes; any other bundled model shows its key.
NAMES = {"llama-3-8b": "Llama-3-8B", "llama-3-70b": "Llama-3-70B",
         "llama-3.1-405b": "Llama-3.1-405B", "deepseek-v3": "DeepSeek-V3"}
DTYPES = {"bf16": np.float16, "fp32": np.float32}  # float16 stands in for bf16: same 2 bytes
TINY_D = 2  # the model dimension the cache arrays are built with: the cache does not read it
MAX_TOKENS = 1 << 24  # context lengths a sheet may ask about


def _model(name: object) -> ModelSpec:
    if text_arg("model", name) not in model_names():
        raise ValueError(f"unknown model {name!r}; bundled: {', '.join(model_names())}")
    return load_model(name)


def _dtype(dtype: object) -> type:
    if text_arg("dtype", dtype) not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def display(spec: ModelSpec) -> str:
    return NAMES.get(spec.name, spec.name)


# The cached arrays of one layer, as the reference code makes them ----------------------------

VARIANTS = ("mha", "gqa", "mqa", "mla", "mla-as-mha")
# The letters each variant's cache may depend on: MHA ties G to H, MQA fixes G at one.
FREE = {"mha": "DHK", "gqa": "DHGK", "mqa": "DHK", "mla": "DHKCR", "mla-as-mha": "DHKCR"}


def _weights(rng: np.random.Generator, dtype: type, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _gqa_cache(x_BMD: np.ndarray, H: int, G: int, K: int, rng) -> list[np.ndarray]:
    """k_BMGK and v_BMGK, as `ref.attention.gqa_forward` saves them for the backward pass."""
    D, dtype = x_BMD.shape[-1], x_BMD.dtype
    w_q_DHK, w_o_HKD = _weights(rng, dtype, D, H, K), _weights(rng, dtype, H, K, D)
    w_k_DGK, w_v_DGK = _weights(rng, dtype, D, G, K), _weights(rng, dtype, D, G, K)
    _, saved = ref_attention.gqa_forward(x_BMD, w_q_DHK, w_k_DGK, w_v_DGK, w_o_HKD)
    return list(saved[6:8])  # (x, four weights, q_BLHK, k_BMGK, v_BMGK, probs, out)


def _mla_weights(D: int, H: int, K: int, C: int, R: int, dtype: type, rng) -> ref_mla.MLAWeights:
    """MLA weights: the two the latent cache reads are random; the per-head matrices are
    zero-stride stand-ins (only their shapes matter here), so DeepSeek-V3's 128 heads of
    C·K each cost no memory until an einsum reads them."""
    def stand_in(*shape: int) -> np.ndarray:
        return np.broadcast_to(np.zeros((), dtype), shape)

    return ref_mla.MLAWeights(
        w_dkv_DC=_weights(rng, dtype, D, C), w_uk_CHK=stand_in(C, H, K),
        w_uv_CHK=stand_in(C, H, K), w_kr_DR=_weights(rng, dtype, D, R),
        w_q_DHK=stand_in(D, H, K), w_qr_DHR=stand_in(D, H, R), w_o_HKD=stand_in(H, K, D))


def _mla_cache(x_BMD: np.ndarray, H: int, K: int, C: int, R: int, rng,
               as_mha: bool) -> list[np.ndarray]:
    """MLA's cache (`ref.mla.mla_latent_cache`: c_kv_BMC and k_rope_BMR); `as_mha`: what MHA
    with the same heads would cache instead, each head's full key [k; k_rope] and value, built
    with the einsums of `ref.mla.mla_naive`."""
    M = x_BMD.shape[1]
    w = _mla_weights(x_BMD.shape[-1], H, K, C, R, x_BMD.dtype, rng)
    c_kv_BMC, k_rope_BMR = ref_mla.mla_latent_cache(x_BMD, np.arange(M), w)
    if not as_mha:
        return [c_kv_BMC, k_rope_BMR]
    k_BMHK = ref_einsum.einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uk_CHK)
    v_BMHK = ref_einsum.einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uv_CHK)
    k_rope_BMHR = np.repeat(k_rope_BMR[:, :, None, :], H, axis=2)  # every head holds a copy
    return [k_BMHK, k_rope_BMHR, v_BMHK]


def cache_arrays(variant: str, sizes: dict[str, int], B: int = 1, M: int = 1,
                 dtype: type = np.float16, seed: int = 0) -> list[np.ndarray]:
    """One layer's cached arrays for B sequences of M tokens. `sizes` holds D, H, K and, as the
    variant needs them, G (GQA), C and R (MLA)."""
    rng = np.random.default_rng(seed)
    x_BMD = _weights(rng, dtype, B, M, sizes["D"])
    H, K = sizes["H"], sizes["K"]
    if variant in ("mha", "gqa", "mqa"):
        G = {"mha": H, "mqa": 1}.get(variant) or sizes["G"]
        return _gqa_cache(x_BMD, H, G, K, rng)
    if variant in ("mla", "mla-as-mha"):
        return _mla_cache(x_BMD, H, K, sizes["C"], sizes["R"], rng, variant == "mla-as-mha")
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def _variant(variant: object) -> str:
    if text_arg("variant", variant) not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return variant


# Formulas, found by doubling letters ----------------------------------------------------------

# Small, distinct sizes: H a multiple of 2·G (so G can double), R even (RoPE rotates pairs).
_BASE = {"D": 7, "H": 8, "G": 2, "K": 3, "C": 5, "R": 2}


def _per_token(variant: str, sizes: dict[str, int]) -> list[int]:
    B, M = 2, 3
    return [a.size // (B * M) for a in cache_arrays(variant, sizes, B, M, np.float64)]


def cache_terms(variant: str) -> list[tuple[int, str]]:
    """One layer's cache per token as (coefficient, letters) terms, like [(2, "GK")]: each
    cached array is a product of letters, found by doubling each free letter in turn."""
    base = _per_token(variant, _BASE)
    exponents = [""] * len(base)
    for letter in FREE[variant]:
        doubled = _per_token(variant, {**_BASE, letter: 2 * _BASE[letter]})
        for i, (n, n2) in enumerate(zip(base, doubled, strict=True)):
            if n2 == 2 * n:
                exponents[i] += letter
            elif n2 != n:  # a cache quadratic in a letter would need another rule
                raise AssertionError(f"{variant}: array {i} grows {n2 / n:g}× when {letter} doubles")
    terms: dict[str, int] = {}
    for n, letters in zip(base, exponents, strict=True):
        coefficient = Fraction(n, math.prod(_BASE[c] for c in letters))
        if coefficient.denominator != 1:
            raise AssertionError(f"{variant}: {n} is not a whole multiple of {letters}")
        terms[letters] = terms.get(letters, 0) + int(coefficient)
    return [(k, letters) for letters, k in terms.items()]


@calc(worst=["kv_terms('mla-as-mha')"])
def kv_terms(variant: str) -> str:
    """`2·G·K`: numbers one layer caches per token, read off the reference code's arrays."""
    return " + ".join("·".join(([str(k)] if k != 1 else []) + list(letters))
                      for k, letters in cache_terms(_variant(variant)))


@calc(worst=["kv_terms_tex('mla-as-mha')"])
def kv_terms_tex(variant: str) -> str:
    """The same as TeX for a formula, letters coloured by family."""
    return " + ".join(r" \cdot ".join(([str(k)] if k != 1 else [])
                                      + [rf"\dim{{{c}}}" for c in letters])
                      for k, letters in cache_terms(_variant(variant)))


# Real models ---------------------------------------------------------------------------------


def model_sizes(spec: ModelSpec) -> dict[str, int]:
    """The cache's letters for a bundled model; MLA's K is the per-head key without RoPE."""
    if spec.mla is None:
        return {"D": TINY_D, "H": spec.H, "G": spec.G, "K": spec.K}
    if spec.mla.K_nope != spec.K_v:  # the reference MLA has one head size for k and v
        raise ValueError(f"{spec.name}: keys of {spec.mla.K_nope} and values of {spec.K_v} "
                         f"per head; the reference MLA takes them equal")
    return {"D": TINY_D, "H": spec.H, "K": spec.mla.K_nope, "C": spec.mla.C, "R": spec.mla.R}


def _native(spec: ModelSpec) -> str:
    return "mla" if spec.mla else "gqa"


def bytes_per_token(spec: ModelSpec, variant: str, dtype: type = np.float16) -> int:
    """Bytes of every layer's cached arrays for one token, measured on the arrays."""
    per_layer = sum(a.nbytes for a in cache_arrays(variant, model_sizes(spec), dtype=dtype))
    return per_layer * spec.n_layers


def _same_heads(spec: ModelSpec) -> str:
    """MHA with the model's query heads, each caching its own key and value."""
    return "mla-as-mha" if spec.mla else "mha"


_WORST_MODELS = ["deepseek-v3", "llama-3.1-405b"]


@calc(worst=[f"model_dim('{m}', 'K')" for m in _WORST_MODELS])
def model_dim(model: str, letter: str) -> int:
    """A cache letter of a bundled model (H, G, K, C, R; MLA's K has no RoPE part), or
    `layers`, or D, its true model dimension."""
    spec = _model(model)
    letters = {**model_sizes(spec), "D": spec.D, "layers": spec.n_layers}
    if text_arg("letter", letter) not in letters:
        raise ValueError(f"{spec.name} has no {letter!r}; it has {', '.join(letters)}")
    return letters[letter]


@calc(worst=[f"kv_bytes_per_token('{m}', '{v}', 'fp32')" for m in _WORST_MODELS
             for v in ("native", "mha")])
def kv_bytes_per_token(model: str, variant: str = "native", dtype: str = "bf16") -> int:
    """Cache bytes per token, all layers: as the model is built (`native`), or as MHA with the
    same heads (`mha`: every head caches its own key and value)."""
    spec, dtype = _model(model), _dtype(dtype)
    if text_arg("variant", variant) not in ("native", "mha"):
        raise ValueError(f"variant must be 'native' or 'mha', got {variant!r}")
    return bytes_per_token(spec, _native(spec) if variant == "native" else _same_heads(spec), dtype)


@calc(worst=[f"kv_saving('{m}')" for m in _WORST_MODELS])
def kv_saving(model: str) -> str:
    """How many times smaller the cache is than MHA's with the same heads."""
    spec = _model(model)
    ratio = bytes_per_token(spec, _same_heads(spec)) / bytes_per_token(spec, _native(spec))
    return f"{ratio:.3g}×"


@calc(worst=[f"kv_bytes_at('{m}', {MAX_TOKENS}, 'fp32')" for m in _WORST_MODELS])
def kv_bytes_at(model: str, tokens: int | None = None, dtype: str = "bf16") -> str:
    """Cache of one sequence of `tokens` (default: the model's longest context), in KiB/MiB/GiB."""
    spec, dtype = _model(model), _dtype(dtype)
    tokens = spec.context if tokens is None else int_arg("tokens", tokens, 1, MAX_TOKENS)
    return size_text(tokens * bytes_per_token(spec, _native(spec), dtype))


@calc(worst=["mla_gqa_groups('deepseek-v3')"])
def mla_gqa_groups(model: str) -> str:
    """The kv heads a GQA model of the same head size would need to cache as much as MLA does
    (DeepSeek-V2, section 2.1.4: 2.25 for its shapes)."""
    spec = _model(model)
    if spec.mla is None:
        raise ValueError(f"{spec.name} does not use MLA")
    sizes = model_sizes(spec)
    per_kv_head = sum(a.nbytes for a in cache_arrays("gqa", {**sizes, "G": 1}))
    latent = sum(a.nbytes for a in cache_arrays("mla", sizes))
    return f"{latent / per_kv_head:g}"


def _kv_cell(spec: ModelSpec) -> str:
    """`2·G·K = 2,048`: the formula and its value for one layer, in numbers per token."""
    variant = _native(spec)
    numbers = sum(a.size for a in cache_arrays(variant, model_sizes(spec)))
    return f"{kv_terms(variant)} = {numbers:,}"


def _attention(spec: ModelSpec) -> str:
    s = model_sizes(spec)
    if spec.mla:
        return f"MLA: C={s['C']}, R={s['R']}"
    return f"GQA: H={s['H']}, G={s['G']}"


@table(worst=["kv_models_table(('deepseek-v3', 'llama-3.1-405b'), 'fp32')"])
def kv_models_table(models: tuple[str, ...] = ("llama-3-8b", "llama-3-70b", "deepseek-v3"),
                    dtype: str = "bf16") -> list[list[str]]:
    """Per model: its attention, numbers cached per token per layer, bytes per token (all
    layers) as built and as MHA with the same heads, the ratio, and one sequence at the
    model's longest context."""
    if not (isinstance(models, tuple) and 1 <= len(models) <= 6):
        raise ValueError(f"models must be a tuple of one to six bundled models, got {models!r}")
    specs, np_dtype = [_model(m) for m in models], _dtype(dtype)
    rows = []
    for spec in specs:
        native = bytes_per_token(spec, _native(spec), np_dtype)
        mha = bytes_per_token(spec, _same_heads(spec), np_dtype)
        rows.append([display(spec), _attention(spec), _kv_cell(spec), f"{native:,}",
                     f"{mha:,}", f"{mha / native:.3g}×",
                     f"{size_text(spec.context * native)} ({spec.context:,})"])
    return rows


# Projection parameters -----------------------------------------------------------------------


def projection_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The four attention matrices of one GQA layer, named as the reference code names them."""
    if spec.mla:
        raise ValueError(f"{spec.name} uses MLA: its projections are not q, k, v, o")
    D, H, G, K = spec.D, spec.H, spec.G, spec.K
    return {"w_q_DHK": (D, H, K), "w_k_DGK": (D, G, K), "w_v_DGK": (D, G, K),
            "w_o_HKD": (H, K, D)}


@calc(worst=["kv_weight_params('llama-3.1-405b', 'w_q_DHK')"])
def kv_weight_params(model: str, weight: str) -> int:
    """Parameters of one projection of one layer, from its shape: `w_k_DGK` etc."""
    shapes = projection_shapes(_model(model))
    if text_arg("weight", weight) not in shapes:
        raise ValueError(f"weight must be one of {', '.join(shapes)}, got {weight!r}")
    return math.prod(shapes[weight])


@table(worst=["kv_params_table('llama-3.1-405b')"])
def kv_params_table(model: str = "llama-3-70b") -> list[list[str]]:
    """Each projection of one layer: its shape and parameters, against MHA's (G = H); then
    the totals."""
    spec = _model(model)
    gqa = projection_shapes(spec)
    mha = {name.replace("DGK", "DHK"): (s[0], spec.H, s[2]) if "DGK" in name else s
           for name, s in gqa.items()}
    rows = [[f"`{name}`", str(shape), f"{math.prod(shape):,}", f"{math.prod(full):,}"]
            for (name, shape), full in zip(gqa.items(), mha.values(), strict=True)]
    total, total_mha = (sum(math.prod(s) for s in d.values()) for d in (gqa, mha))
    rows.append(["**one layer**", "", f"**{total:,}**", f"{total_mha:,}"])
    return rows


# FLOPs: what G changes and what it does not ---------------------------------------------------

# Each step of attention: its einsum in mha_forward and in gqa_forward (k and v share a spec).
STEPS = {
    "q": ("bld,dhk->blhk", "bld,dhk->blhk"),
    "kv": ("bmd,dhk->bmhk", "bmd,dgk->bmgk"),
    "scores": ("blhk,bmhk->bhlm", "blghk,bmgk->bghlm"),
    "weighted": ("bhlm,bmhk->blhk", "bghlm,bmgk->blghk"),
    "out": ("blhk,hkd->bld", "blhk,hkd->bld"),
}


def counted_steps(H: int, G: int, B: int = 1, L: int = 2, D: int = 2, K: int = 2,
                  ) -> tuple[dict[str, int], dict[str, int]]:
    """FLOPs of each step, counted while `mha_forward` and `gqa_forward` run."""
    rng = np.random.default_rng(0)
    x_BLD = rng.standard_normal((B, L, D))
    w_q_DHK, w_o_HKD = rng.standard_normal((D, H, K)), rng.standard_normal((H, K, D))
    kv_DHK = [rng.standard_normal((D, H, K)) for _ in range(2)]
    with ref_einsum.count_flops() as mha:
        ref_attention.mha_forward(x_BLD, w_q_DHK, *kv_DHK, w_o_HKD)
    # Each kv head of GQA: the mean of its group's MHA heads (any weights would do).
    kv_DGK = [w.reshape(D, G, H // G, K).mean(axis=2) for w in kv_DHK]
    with ref_einsum.count_flops() as gqa:
        ref_attention.gqa_forward(x_BLD, w_q_DHK, *kv_DGK, w_o_HKD)
    return ({step: mha.by_spec[s] for step, (s, _) in STEPS.items()},
            {step: gqa.by_spec[s] for step, (_, s) in STEPS.items()})


@calc(worst=["gqa_flops_ratio('scores', 'llama-3.1-405b')"])  # the most heads, H = 128
def gqa_flops_ratio(step: str, model: str) -> str:
    """FLOPs of one step of a GQA model over MHA's with the same H, counted on the reference
    code at the model's H and G: `1` for the attention core, G/H for the k and v projections
    (`1/8` for Llama-3-70B)."""
    if text_arg("step", step) not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, got {step!r}")
    spec = _model(model)
    if spec.mla:
        raise ValueError(f"{spec.name} uses MLA: it has no kv heads to group")
    mha, gqa = counted_steps(spec.H, spec.G)
    return str(Fraction(gqa[step], mha[step]))


# MLA at decode: absorbed against rebuilding K and V ------------------------------------------


def mla_decode_step_flops(form: str, M: int, D: int, H: int, K: int, C: int, R: int,
                          B: int = 1) -> int:
    """FLOPs of one decode step (one new query per sequence against M cached tokens), one
    layer. `absorbed`: `ref.mla.mla_absorbed_flops` (W_UK and W_UV folded, scores taken in
    the latent space). `rebuild`: read the same latent cache but up-project every cached token
    to per-head K and V first, as `mla_naive` does, then attend as MHA:
    queries 2·B·D·H·(K + R), keys and values 2·2·B·M·C·H·K, scores 2·B·H·M·(K + R),
    weighted sum 2·B·H·M·K, output 2·B·H·K·D (tests count it on the reference einsums)."""
    if form == "absorbed":
        return ref_mla.mla_absorbed_flops(B, 1, M, D, H, C, R)
    if form == "rebuild":
        return (2 * B * D * H * (K + R) + 2 * 2 * B * M * C * H * K
                + 2 * B * H * M * (K + R) + 2 * B * H * M * K + 2 * B * H * K * D)
    raise ValueError(f"form must be 'absorbed' or 'rebuild', got {form!r}")


def _flops_text(n: float) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}FLOP"
    return f"{n:,.0f} FLOP"


def _decode(model: object, context: object) -> tuple[dict[str, int], int]:
    """An MLA model's sizes (its true D) and a context length, checked."""
    spec = _model(model)
    if spec.mla is None:
        raise ValueError(f"{spec.name} does not use MLA")
    return {**model_sizes(spec), "D": spec.D}, int_arg("context", context, 1, MAX_TOKENS)


@calc(worst=[f"mla_decode_flops('deepseek-v3', {MAX_TOKENS}, 'rebuild')"])
def mla_decode_flops(model: str, context: int, form: str = "absorbed") -> str:
    """One decode step of one layer at `context` cached tokens: `absorbed` or `rebuild`."""
    s, M = _decode(model, context)
    if text_arg("form", form) not in ("absorbed", "rebuild"):
        raise ValueError(f"form must be 'absorbed' or 'rebuild', got {form!r}")
    return _flops_text(mla_decode_step_flops(form, M, s["D"], s["H"], s["K"], s["C"], s["R"]))


@calc(worst=[f"mla_rebuild_ratio('deepseek-v3', {MAX_TOKENS})"])
def mla_rebuild_ratio(model: str, context: int) -> str:
    """How many times more FLOPs rebuilding K and V costs than the absorbed step."""
    s, M = _decode(model, context)
    sizes = (M, s["D"], s["H"], s["K"], s["C"], s["R"])
    ratio = mla_decode_step_flops("rebuild", *sizes) / mla_decode_step_flops("absorbed", *sizes)
    return f"{ratio:.3g}×"


@calc(worst=["mla_score_width('deepseek-v3', 'absorbed')"])
def mla_score_width(model: str, form: str) -> int:
    """Numbers in each head's score dot product: K + R naive, C + R absorbed (the latent
    query is C wide): counted from the reference score einsums at the model's sizes."""
    s, _ = _decode(model, 1)
    sizes = {"b": 1, "l": 1, "m": 1, "h": s["H"], "k": s["K"], "c": s["C"], "r": s["R"]}
    specs = {"naive": ("blhk,bmhk->bhlm", "blhr,bmr->bhlm"),
             "absorbed": ("blhc,bmc->bhlm", "blhr,bmr->bhlm")}
    if text_arg("form", form) not in specs:
        raise ValueError(f"form must be 'naive' or 'absorbed', got {form!r}")
    return sum(ref_einsum.flops(spec, sizes) for spec in specs[form]) // (2 * s["H"])

