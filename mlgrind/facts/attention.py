"""Seed step "Implement full multi-head attention with suffix notation + einsum" (sheet 04).

Every number is read off the reference code, `mlgrind.ref.attention`. Its einsums are found by
running `mha_forward` and `mha_backward` once on tiny arrays under `count_flops()` (a distinct
size per letter, so each einsum's multiplicity is exact), then priced at a model's sizes by the
same counter (`ref.einsum.flops`): nothing is counted twice by hand. The causal mask and the
softmax are the reference's; the pitfalls run the reference pieces with one step done wrong.
Models come from `mlgrind/calc/models`; the sheet is about multi-head attention, so a model
must have one kv head per query head (G = H, no MLA).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from fractions import Fraction

import numpy as np

from ..calc.specs import ModelSpec, SpecError, load_model
from ..ref import attention as ref_attention
from ..ref import einsum as ref_einsum
from ..ref import mlp as ref_mlp
from ..ref.notation import split_suffix
from .core import calc, int_arg, shown, si_text, size_text, table, text_arg
from .shapes import einsum_spec

# The einsums of mha_forward, named as the sheet names them; `_forward_ops` checks this list
# against the einsums the reference really runs, with their multiplicities.
FORWARD = [
    ("q projection", "x_BLD, w_q_DHK -> q_BLHK"),
    ("k projection", "x_BMD, w_k_DHK -> k_BMHK"),
    ("v projection", "x_BMD, w_v_DHK -> v_BMHK"),
    ("scores q·k", "q_BLHK, k_BMHK -> scores_BHLM"),
    ("weighted sum of v", "probs_BHLM, v_BMHK -> out_BLHK"),
    ("output projection", "out_BLHK, w_o_HKD -> y_BLD"),
]
# The tensors of the forward pass, grouped by their sizes in self-attention (M = L).
TENSORS = [
    ("x_BLD", "y_BLD"),
    ("q_BLHK", "k_BMHK", "v_BMHK", "out_BLHK"),
    ("scores_BHLM", "probs_BHLM"),
    ("w_q_DHK", "w_k_DHK", "w_v_DHK"),
    ("w_o_HKD",),
]
TITLES = {"gpt2": "GPT-2", "gpt3-175b": "GPT-3 175B", "llama-2-7b": "Llama-2-7B"}
BF16_BYTES = np.dtype(np.float16).itemsize  # bf16 and fp16 are both two bytes
MAX_B, MAX_L = 1 << 12, 1 << 20  # batch and sequence lengths a sheet may price
TINY = {"B": 2, "L": 3, "D": 5, "H": 7, "K": 11}  # distinct sizes: one run finds every einsum exactly


def _sizes(B: int, L: int, D: int, H: int, K: int) -> dict[str, int]:
    """Index sizes of the reference's einsums; self-attention, so M = L."""
    return {"b": B, "l": L, "m": L, "d": D, "h": H, "k": K}


def _tiny_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    B, L, D, H, K = TINY.values()
    return (rng.standard_normal((B, L, D)), *(rng.standard_normal((D, H, K)) for _ in range(3)),
            rng.standard_normal((H, K, D)))


def _multiplicities(counter: ref_einsum.FlopCounter) -> dict[str, int]:
    """How many times each einsum ran: its FLOPs over the FLOPs of one run at TINY sizes."""
    sizes = _sizes(*TINY.values())
    return {spec: n // ref_einsum.flops(spec, sizes) for spec, n in counter.by_spec.items()}


@functools.cache
def _forward_ops() -> tuple[tuple[str, str, str], ...]:
    """(label, names, spec) for each einsum of `mha_forward`, checked against a counted run."""
    with ref_einsum.count_flops() as counter:
        ref_attention.mha_forward(*_tiny_arrays())
    ops = tuple((label, names, einsum_spec(names)) for label, names in FORWARD)
    if Counter(spec for *_, spec in ops) != Counter(_multiplicities(counter)):
        raise AssertionError(f"the reference forward runs {_multiplicities(counter)}, not the "
                             f"einsums named in FORWARD")
    return ops


@functools.cache
def _backward_runs() -> dict[str, int]:
    """Each einsum of `mha_backward` and how many times it runs, counted."""
    x_BLD, *weights = _tiny_arrays()
    y_BLD, saved = ref_attention.mha_forward(x_BLD, *weights)
    with ref_einsum.count_flops() as counter:
        ref_attention.mha_backward(np.ones_like(y_BLD), saved)
    return _multiplicities(counter)


def forward_flops(B: int, L: int, D: int, H: int, K: int) -> list[tuple[str, str, int]]:
    """(label, names, FLOPs) of each forward einsum at these sizes, by the reference counter."""
    sizes = _sizes(B, L, D, H, K)
    return [(label, names, ref_einsum.flops(spec, sizes)) for label, names, spec in _forward_ops()]


def backward_flops(B: int, L: int, D: int, H: int, K: int) -> int:
    sizes = _sizes(B, L, D, H, K)
    return sum(n * ref_einsum.flops(spec, sizes) for spec, n in _backward_runs().items())


def _is_core(names: str) -> bool:
    """The two einsums over query-key pairs (their FLOPs grow as L·M): both L and M appear."""
    letters = "".join(split_suffix(n.strip())[1] for n in names.replace("->", ",").split(","))
    return "L" in letters and "M" in letters


# Models ------------------------------------------------------------------------------------


def _model(name: str) -> ModelSpec:
    try:
        spec = load_model(text_arg("model", name))
    except SpecError as error:
        raise ValueError(str(error)) from None
    if spec.mla or spec.G != spec.H or spec.K_v != spec.K:
        raise ValueError(f"{name} is not multi-head attention (it has {spec.G} kv heads for "
                         f"{spec.H} query heads{', MLA' if spec.mla else ''}); this sheet "
                         f"prices MHA only")
    return spec


def _dims(spec: ModelSpec) -> tuple[int, int, int]:
    return spec.D, spec.H, spec.K


def _length(name: str, L: int | None, spec: ModelSpec) -> int:
    return spec.context if L is None else int_arg(name, L, 1, MAX_L)


@calc(worst=["model_title('llama-2-7b')"])
def model_title(model: str) -> str:
    """The model's name as its paper writes it, with the sizes this sheet uses."""
    _model(model)
    return TITLES.get(model, model)


@calc(worst=["model_context('llama-2-7b')"])
def model_context(model: str) -> int:
    return _model(model).context


# Tables of the sheet --------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    p = 100 * part / whole
    return f"{p:.0f} %" if p >= 10 else f"{p:.2g} %"


def tensor_shapes(B: int, L: int, D: int, H: int, K: int) -> dict[str, tuple[int, ...]]:
    """Each tensor of the forward and its shape, read off its suffix (M = L)."""
    sizes = {c.upper(): n for c, n in _sizes(B, L, D, H, K).items()}
    return {name: tuple(sizes[c] for c in split_suffix(name)[1])
            for names in TENSORS for name in names}


@table(worst=["attention_shapes(model='gpt3-175b', B=4096, L=1048576)"])
def attention_shapes(model: str = "gpt3-175b", B: int = 1, L: int | None = None) -> list[list[str]]:
    """Each tensor of the forward (those of one shape on one row): its sizes in the model, one
    layer with `L` defaulting to the model's context, and its size in bf16."""
    spec = _model(model)
    shapes = tensor_shapes(int_arg("B", B, 1, MAX_B), _length("L", L, spec), *_dims(spec))
    return [[" ".join(f"`{n}`" for n in names), "(" + ", ".join(map(str, shapes[names[0]])) + ")",
             size_text(math.prod(shapes[names[0]]) * BF16_BYTES)] for names in TENSORS]


@calc(worst=["tensor_bytes('gpt3-175b', 'scores_BHLM', L=1048576, B=4096)"])
def tensor_bytes(model: str, name: str, L: int | None = None, B: int = 1) -> str:
    """One layer's tensor `name` (a name of the forward, like `scores_BHLM`) in bf16, at the
    model's sizes and sequence length `L` (default: its context)."""
    spec = _model(model)
    known = [n for names in TENSORS for n in names]
    if text_arg("name", name) not in known:
        raise ValueError(f"{name!r} is not a tensor of the forward; known: {', '.join(known)}")
    shapes = tensor_shapes(int_arg("B", B, 1, MAX_B), _length("L", L, spec), *_dims(spec))
    return size_text(math.prod(shapes[name]) * BF16_BYTES)


@table(worst=["attention_flops(model='gpt3-175b', B=4096, L=1048576)"])
def attention_flops(model: str = "gpt3-175b", B: int = 1, L: int | None = None) -> list[list[str]]:
    """Each einsum of one layer's forward at the model's sizes (`L` defaulting to its context):
    FLOPs and share of the forward (the projections on one row when they cost the same, as in
    self-attention); then the forward and the backward totals, counted."""
    spec = _model(model)
    B, L = int_arg("B", B, 1, MAX_B), _length("L", L, spec)
    ops = forward_flops(B, L, *_dims(spec))
    total = sum(n for *_, n in ops)
    projections = [n for _, names, n in ops if not _is_core(names)]
    rows = ([[f"{len(projections)} projections, each", si_text(projections[0]),
              _percent(projections[0], total)]] if len(set(projections)) == 1 else
            [[label, si_text(n), _percent(n, total)] for label, names, n in ops if not _is_core(names)])
    rows += [[label, si_text(n), _percent(n, total)] for label, names, n in ops if _is_core(names)]
    backward = backward_flops(B, L, *_dims(spec))
    return rows + [["**forward**", f"**{si_text(total)}**", "100 %"],
                   ["**backward**", f"**{si_text(backward)}**", f"{backward / total:.3g} × fwd"]]


@calc(worst=["backward_ratio('gpt3-175b', L=1048576)"])
def backward_ratio(model: str = "gpt3-175b", L: int | None = None) -> str:
    """Backward over forward FLOPs of one layer's attention, each counted on the reference."""
    spec = _model(model)
    L = _length("L", L, spec)
    forward = sum(n for *_, n in forward_flops(1, L, *_dims(spec)))
    return f"{backward_flops(1, L, *_dims(spec)) / forward:.4g}"


@calc(worst=["einsum_count('core')"])
def einsum_count(part: str) -> int:
    """How many einsums of the reference forward are `core` (over query-key pairs) or
    `projections`."""
    if text_arg("part", part) not in ("core", "projections"):
        raise ValueError(f"part is 'core' or 'projections', got {part!r}")
    return sum(_is_core(names) == (part == "core") for _, names, _ in _forward_ops())


@calc(worst=["flops_per_score('gpt3-175b')"])
def flops_per_score(model: str = "gpt3-175b") -> int:
    """FLOPs of `q·k` per element of `scores_BHLM`: what a softmax's few FLOPs per score
    compare with."""
    D, H, K = _dims(_model(model))
    sizes = _sizes(1, 1, D, H, K)
    return ref_einsum.flops(einsum_spec("q_BLHK, k_BMHK -> scores_BHLM"), sizes) // H


# Attention against the MLP --------------------------------------------------------------------

COUNTINGS = ("dense", "causal")
MAX_MODELS = 8  # rows of the crossover table
MLPS = ("model", "4D")


def attention_per_token(D: int, H: int, K: int, L: int, counting: str) -> Fraction:
    """One layer's attention forward FLOPs per token at sequence length L. `dense`: every
    query-key pair, as the einsums compute it; `causal`: only the pairs the causal mask keeps,
    L·(L + 1)/2 of the L² (what a kernel that skips masked blocks pays)."""
    ops = forward_flops(1, L, D, H, K)
    core = sum(n for _, names, n in ops if _is_core(names))
    rest = sum(n for *_, n in ops) - core
    kept = Fraction(L * (L + 1), 2 * L * L) if counting == "causal" else Fraction(1)
    return (rest + core * kept) / L


def mlp_per_token(spec: ModelSpec, mlp: str) -> int:
    """One layer's MLP forward FLOPs per token, from the reference's two-matrix MLP: the
    model's own (a gated SwiGLU MLP has a third D×F matrix), or F = 4D with two matrices."""
    if mlp == "4D":
        return ref_mlp.mlp_flops(1, spec.D, 4 * spec.D)
    return ref_mlp.mlp_flops(1, spec.D, spec.F) * (3 if spec.mlp_gated else 2) // 2


def break_even(D: int, H: int, K: int, mlp_per_token: int, counting: str) -> Fraction:
    """The sequence length at which one layer's attention forward costs as much as an MLP of
    `mlp_per_token` FLOPs per token. Attention per token is linear in L (a + b·L dense,
    a + b·(L + 1)/2 causal), so two evaluations give a and b."""
    one, two = (attention_per_token(D, H, K, L, "dense") for L in (1, 2))
    b = two - one
    a = one - b
    return ((mlp_per_token - a) / b if counting == "dense"
            else 2 * (mlp_per_token - a) / b - 1)


def model_break_even(spec: ModelSpec, counting: str, mlp: str) -> Fraction:
    return break_even(*_dims(spec), mlp_per_token(spec, mlp), counting)


def causal_fraction(L: int) -> Fraction:
    """The query-key pairs the reference's causal mask keeps, as a fraction of L·(L + 1): one
    half, the L·(L + 1)/2 pairs with m ≤ l."""
    positions = np.arange(L)
    return Fraction(int(ref_attention.causal_mask_LM(positions, positions).sum()), L * (L + 1))


@calc(worst=["flops_coefficient('causal')"])
def flops_coefficient(part: str) -> str:
    """The constant of one layer's attention FLOPs per token: `projections` c·D·HK, `core`
    (dense) c·L·HK, `causal` c·(L + 1)·HK, read off the reference's einsums at unit sizes."""
    _choices("part", part, ("projections", "core", "causal"))
    ops = forward_flops(1, 1, 1, 1, 1)  # each einsum's FLOPs with every letter of size 1
    core = sum(n for _, names, n in ops if _is_core(names))
    if part == "projections":
        return str(sum(n for *_, n in ops) - core)
    return str(core if part == "core" else core * causal_fraction(8))


@calc(worst=["mlp_coefficient()"])
def mlp_coefficient() -> int:
    """The reference MLP's FLOPs per token with F = 4D, in units of D²."""
    return ref_mlp.mlp_flops(1, 1, 4)


def _choices(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if text_arg(name, value) not in allowed:
        raise ValueError(f"{name} is one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _length_text(n: Fraction) -> str:
    return f"{int(n):,}" if n.denominator == 1 else f"{float(n):,.1f}"


@calc(worst=["crossover('llama-2-7b', 'causal', 'model')"])
def crossover(model: str, counting: str = "dense", mlp: str = "model") -> str:
    """Sequence length above which one layer's attention (projections, scores, weighted sum)
    costs more forward FLOPs than its MLP; `counting` dense or causal, `mlp` the model's or
    F = 4D."""
    counting = _choices("counting", counting, COUNTINGS)
    mlp = _choices("mlp", mlp, MLPS)
    return _length_text(model_break_even(_model(model), counting, mlp))


@calc(worst=["crossover_rule('causal')"])
def crossover_rule(counting: str = "dense") -> str:
    """The break-even length in units of D when F = 4D and H·K = D (MHA as GPT-2 and GPT-3 size
    it): `2·D` dense; causal, `4·D − 1`. Read off `break_even` at two widths: it is linear in
    D."""
    counting = _choices("counting", counting, COUNTINGS)

    def at(D: int) -> Fraction:  # heads of 64, as GPT-2 and GPT-3 have
        return break_even(D, D // 64, 64, ref_mlp.mlp_flops(1, D, 4 * D), counting)

    slope = (at(2048) - at(1024)) / 1024
    offset = at(1024) - slope * 1024
    text = f"{slope}·D"
    return text if offset == 0 else f"{text} {'−' if offset < 0 else '+'} {abs(offset)}"


@table(worst=["crossover_table(models=" + repr(('gpt3-175b',) * 8) + ")"])
def crossover_table(models: tuple[str, ...] = ("gpt2", "gpt3-175b", "llama-2-7b")) -> list[list[str]]:
    """For each model: D, its MLP's F, the break-even length dense and causal, its context."""
    if not (isinstance(models, tuple | list) and 1 <= len(models) <= MAX_MODELS):
        raise ValueError(f"models is a tuple of one to {MAX_MODELS} bundled model names, "
                         f"got {shown(models)}")
    rows = []
    for name in models:
        spec = _model(name)
        F = f"{Fraction(spec.F, spec.D)}D" if spec.F % spec.D == 0 else f"{spec.F:,}"
        rows.append([TITLES.get(name, name), f"{spec.D:,}",
                     F + (", SwiGLU" if spec.mlp_gated else ""),
                     *(_length_text(model_break_even(spec, c, "model")) for c in COUNTINGS),
                     f"{spec.context:,}"])
    return rows


# Why ÷ √K, and the pitfalls -------------------------------------------------------------------

SCALES = ("none", "sqrt", "K")
ROWS = 256  # queries sampled for the statistics
MAX_SCORE_ELEMENTS = 1 << 18  # M·K; the scores hold ROWS·M float64s, at most 8 MiB


@functools.lru_cache(maxsize=64)
def _score_stats(K: int, M: int, scale: str) -> tuple[float, float]:  # checked by _stats
    """ROWS unit-variance queries against M unit-variance keys of size K (seed 0), scores
    scaled as asked: their standard deviation, and the largest probability of a row after the
    reference's softmax (nothing masked), averaged over the rows."""
    rng = np.random.default_rng(0)
    q_LK, k_MK = rng.standard_normal((ROWS, K)), rng.standard_normal((M, K))
    divisor = {"none": 1.0, "sqrt": np.sqrt(K), "K": float(K)}[scale]
    scores_LM = ref_einsum.einsum("lk,mk->lm", q_LK, k_MK) / divisor
    probs_LM = ref_attention.masked_softmax(scores_LM, np.ones(M, dtype=bool))
    return float(scores_LM.std()), float(probs_LM.max(axis=-1).mean())


def _stats(K: int, M: int, scale: str) -> tuple[float, float]:
    int_arg("K", K, 1, 4096)
    int_arg("M", M, 1, 4096)
    _choices("scale", scale, SCALES)
    if M * K > MAX_SCORE_ELEMENTS:
        raise ValueError(f"M·K = {M * K:,}; at most {MAX_SCORE_ELEMENTS:,}")
    return _score_stats(K, M, scale)


@calc(worst=["score_std(64, 'none', M=4096)"])
def score_std(K: int, scale: str = "sqrt", M: int = 512) -> str:
    """Standard deviation of q·k over unit-variance q, k of size K, measured: √K unscaled."""
    return f"{_stats(K, M, scale)[0]:.3g}"


@calc(worst=["softmax_peak(64, 'none', M=4096)"])
def softmax_peak(K: int, scale: str = "sqrt", M: int = 512) -> str:
    """The largest probability in a row of M keys, averaged over the rows: near 1 the softmax
    has saturated, near 1/M it is uniform."""
    return f"{_stats(K, M, scale)[1]:.2g}"


@table(worst=["scaling_table(K=64, M=4096)"])
def scaling_table(K: int = 128, M: int = 512) -> list[list[str]]:
    """Scores of unit-variance q, k: their spread and the softmax's peak, for each scaling."""
    labels = {"none": "none", "sqrt": "÷ √K", "K": "÷ K"}
    return [[labels[s], score_std(K, s, M), softmax_peak(K, s, M)] for s in SCALES] + [
        ["uniform", "", f"{1 / int_arg('M', M, 1, 4096):.2g}"]]


BUGS = ("none", "softmax-over-L", "mask-after-softmax", "scale-by-K")


def probs_for(scores_BHLM: np.ndarray, mask_LM: np.ndarray, bug: str = "none") -> np.ndarray:
    """The reference's masked softmax over M, or one of the pitfalls."""
    if bug == "softmax-over-L":  # each key's column sums to 1 instead of each query's row
        return ref_attention.masked_softmax(scores_BHLM.swapaxes(-1, -2),
                                            mask_LM.T).swapaxes(-1, -2)
    if bug == "mask-after-softmax":  # the future keys are already in each row's denominator
        return ref_attention.masked_softmax(scores_BHLM, np.ones_like(mask_LM)) * mask_LM
    return ref_attention.masked_softmax(scores_BHLM, mask_LM)


def attend(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD, bug: str = "none"):
    """`mha_forward`'s steps, from the reference's pieces, with one of them done wrong.
    Returns y_BLD and probs_BHLM."""
    L, K = x_BLD.shape[1], w_q_DHK.shape[-1]
    x_BMD = x_BLD
    q_BLHK = ref_einsum.einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
    k_BMHK = ref_einsum.einsum("bmd,dhk->bmhk", x_BMD, w_k_DHK)
    v_BMHK = ref_einsum.einsum("bmd,dhk->bmhk", x_BMD, w_v_DHK)
    scores_BHLM = (ref_einsum.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK)
                   / (K if bug == "scale-by-K" else np.sqrt(K)))
    positions = np.arange(L)
    probs_BHLM = probs_for(scores_BHLM, ref_attention.causal_mask_LM(positions, positions), bug)
    out_BLHK = ref_einsum.einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    return ref_einsum.einsum("blhk,hkd->bld", out_BLHK, w_o_HKD), probs_BHLM


@calc(worst=["future_leak('mask-after-softmax')"])
def future_leak(bug: str = "none") -> str:
    """How much the first position's output moves when every later token changes, relative to
    its size: 0 for causal attention, more when the future leaks in."""
    bug = _choices("bug", bug, BUGS)
    x_BLD, *weights = _tiny_arrays(1)
    changed = x_BLD.copy()
    changed[:, 1:] = np.random.default_rng(2).standard_normal(changed[:, 1:].shape)
    before, after = (attend(x, *weights, bug=bug)[0][:, 0] for x in (x_BLD, changed))
    moved = float(np.abs(after - before).max() / np.abs(before).max())
    return "0" if moved == 0 else f"{moved:.2g}"


@calc(worst=["row_sum('mask-after-softmax')"])
def row_sum(bug: str = "none") -> str:
    """The smallest sum over M of one query's probabilities: 1 when the softmax runs over M
    after the mask."""
    bug = _choices("bug", bug, BUGS)
    probs_BHLM = attend(*_tiny_arrays(1), bug=bug)[1]
    return f"{probs_BHLM.sum(axis=-1).min():.2g}"
