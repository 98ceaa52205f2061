"""Seed one-pager "memory breakdowns (params, grads, activations)" and "why ZeRO" (sheet 14).

Training memory per GPU, as `mlgrind calc memory` computes it (`calc.memory`: RECIPES,
zero_state_bytes, activation_bytes_per_layer, activations, memory_per_rank, fit_report); this
module only asks it the sheet's questions and formats the answers. What the calculator takes
as given is shown from the reference package instead:

- Korthikanti et al.'s 34 and 5 (bytes per s·b·h and per a·s²·b of one layer): one GPT layer is
  run forward on small arrays, its attention and MLP by the reference code (`ref.attention`,
  `ref.mlp`), and the bytes of every array kept for backward are read off the arrays
  (`.nbytes`: 16-bit activations as float16, NumPy having no bfloat16 of the same width;
  dropout masks as bool, one byte). What the reference caches is taken from its own `saved`
  tuples; what Korthikanti's GPT layer adds (its norms, dropouts, and GeLU, whose output
  ReLU's backward recomputes) is built in the same shapes. TP's 10 + 24/t follows from the
  suffixes: a tensor with an H or F axis is split over tensor-parallel ranks, the rest is not.
- ZeRO's communication against plain data parallelism: `ref.zero.train` run on simulated ranks,
  the bytes read off the communicator's ledger.
- Why the master copy is fp32: 1 + 2^-k rounded to bf16 (fp32 bits, rounded to the nearest
  even 16-bit pattern) or to NumPy's float16.

Sizes print in decimal units, as the calculator's do (1 GB = 10^9 bytes).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..calc import hardware as hw_table
from ..calc import memory as mem
from ..calc.params import count
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from ..ref import attention as ref_attention
from ..ref import checkpointing as ref_ckpt
from ..ref import einsum as ref_einsum
from ..ref import mlp as ref_mlp
from ..ref import zero as ref_zero
from .core import calc, int_arg, shown, table, text_arg

NAMES = {"llama-3-8b": "Llama-3-8B", "llama-3-70b": "Llama-3-70B", "llama-3.1-405b": "Llama-3.1-405B",
         "mixtral-8x7b": "Mixtral-8x7B", "deepseek-v3": "DeepSeek-V3", "gpt3-175b": "GPT-3 175B",
         "llama-2-7b": "Llama-2-7B", "llama-2-70b": "Llama-2-70B", "mistral-7b": "Mistral-7B"}
MAX_GPUS = 1 << 20
MAX_SEQ = 1 << 20
MAX_BATCH = 256
MAX_TP = 64
MAX_PARAMS = 10**15
WORST_MODEL = "deepseek-v3"  # the most parameters, experts and all
USABLE = 0.9  # the share of HBM `calc memory` counts as usable (its --usable-memory default)


# Arguments, each checked before any work ---------------------------------------------------


def _model(name: Any) -> ModelSpec:
    if text_arg("model", name) not in model_names():
        raise ValueError(f"model must be one of {', '.join(model_names())}; got {shown(name)}")
    return load_model(name)


def display(spec: ModelSpec) -> str:
    return NAMES.get(spec.name, spec.name)


def _choice(name: str, value: Any, allowed) -> str:
    if text_arg(name, value) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value


def _hardware(name: Any) -> hw_table.Hardware:
    return hw_table.load_all()[_choice("hardware", name, list(hw_table.load_all()))]


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {shown(value)}")
    return float(value)


def _params_arg(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= MAX_PARAMS:
        raise ValueError(f"n_params must be a number from 1 to {MAX_PARAMS:.0e}, got {shown(value)}")
    return float(value)


def _layouts(value: Any) -> list[tuple[ModelSpec, int, int]]:
    """((model, gpus, tp), …): at most eight rows."""
    if not (isinstance(value, tuple | list) and 1 <= len(value) <= 8 and all(
            isinstance(row, tuple | list) and len(row) == 3 for row in value)):
        raise ValueError(f"layouts must be one to eight (model, gpus, tp) triples, got {shown(value)}")
    return [(_model(m), int_arg("gpus", g, 1, MAX_GPUS), int_arg("tp", t, 1, MAX_TP))
            for m, g, t in value]


def _call(fn, *args, **kwargs):
    """A calculator's refusal (a layout that does not divide) as the ValueError facts raise."""
    try:
        return fn(*args, **kwargs)
    except SpecError as error:
        raise ValueError(str(error)) from None


# Formatting --------------------------------------------------------------------------------


def gb(n: float) -> str:
    """Bytes in decimal units, three significant digits or the whole number: `44.2 GB`,
    `129 GB`, `1.13 TB`, `67.1 MB`."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return f"{n:,.0f} B"


def params_text(n: float) -> str:
    """`8.03B`, `36B`, `4.5B`: parameters in billions, three significant digits."""
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def num(x: float) -> str:
    return f"{x:g}"


# Bytes per parameter: the precision recipes ---------------------------------------------------

KINDS = ("params", "grads", "master", "moments", "moment", "optimizer", "total")


def recipe_bytes(precision: str, kind: str) -> float:
    r = mem.RECIPES[precision]
    return {"params": r.params, "grads": r.grads, "master": r.master, "moments": r.moments,
            "moment": r.moments / 2, "optimizer": r.optimizer, "total": r.params + r.grads + r.optimizer}[kind]


@calc(worst=["mem_recipe('adam-8bit', 'total')"])
def mem_recipe(precision: str = "mixed", kind: str = "total") -> str:
    """Bytes per parameter of one part of a precision recipe (`--precision`)."""
    _choice("precision", precision, list(mem.RECIPES))
    _choice("kind", kind, KINDS)
    return num(recipe_bytes(precision, kind))


@table(worst=["mem_recipes()"])
def mem_recipes() -> list[list[str]]:
    """One row per recipe: name, params, grads, fp32 master, m + v, total bytes per parameter."""
    rows = []
    for name in mem.RECIPES:
        parts = [recipe_bytes(name, k) for k in ("params", "grads", "master", "moments", "total")]
        cells = [num(p) if p else "–" for p in parts[:-1]]
        rows.append([f"`{name}`", *cells, f"**{num(parts[-1])}**"])
    return rows


# Why the master copy is fp32 ------------------------------------------------------------------


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (its top 16 bits), to the nearest, ties to even; back as
    float32."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def _sum(dtype: str, a: float, b: float) -> float:
    if dtype == "bf16":
        return float(to_bf16(to_bf16(np.float32(a)) + to_bf16(np.float32(b))))
    t = {"fp16": np.float16, "fp32": np.float32}[dtype]
    return float(t(a) + t(b))


@functools.cache
def lost_exponent(dtype: str) -> int:
    """The largest update 2^-k that leaves a weight of 1 unchanged when added in `dtype`: k."""
    return next(k for k in range(1, 64) if _sum(dtype, 1.0, 2.0**-k) == 1.0)


@calc(worst=["mem_float_bits('fp32', 'mantissa')"])
def mem_float_bits(dtype: str = "bf16", part: str = "exponent") -> str:
    """Exponent or (explicit) mantissa bits of a float format: NumPy's `finfo`; bf16 is fp32's
    top half, so fp32's exponent and its mantissa less the 16 bits dropped."""
    _choice("dtype", dtype, ("bf16", "fp16", "fp32"))
    _choice("part", part, ("exponent", "mantissa"))
    info = np.finfo(np.float16 if dtype == "fp16" else np.float32)
    dropped = 16 if dtype == "bf16" else 0
    return str(info.nexp if part == "exponent" else info.nmant - dropped)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@calc(worst=["mem_lost_update('fp32')"])
def mem_lost_update(dtype: str = "bf16", form: str = "power") -> str:
    """The relative update lost when added to a weight of 1 in `dtype` (half its unit in the
    last place, a tie rounding to even): `2⁻⁸` (form 'power') or the weight-to-update ratio
    from which it is lost, `256` (form 'ratio'). Within [1, 2) the bound falls to half that."""
    _choice("dtype", dtype, ("bf16", "fp16", "fp32"))
    _choice("form", form, ("power", "ratio"))
    k = lost_exponent(dtype)
    return f"{2**k:,}" if form == "ratio" else "2" + f"-{k}".translate(SUPERSCRIPT)


# ZeRO: who shards what --------------------------------------------------------------------------

STAGE_SHARDS = {0: "nothing", 1: "[optimizer]{.optimizer}", 2: "+ [grads]{.grads}", 3: "+ [params]{.params}"}


@functools.cache
def zero_traffic(stage: int, S: int = 4) -> float:
    """Bytes a rank sends in a training step under ZeRO `stage`, over plain DP's: read off the
    ledger of `ref.zero.train` run on S simulated ranks (an MLP, one step)."""
    rng = np.random.default_rng(0)
    params = {"w_in_DF": rng.standard_normal((4, 8)), "w_out_FD": rng.standard_normal((8, 4))}
    batch = [(rng.standard_normal((2 * S, 4)), rng.standard_normal((2 * S, 4)))]
    sent = [ref_zero.train(z, S, params, batch)[1].sent[0] for z in (0, stage)]
    return sent[1] / sent[0]


def _stage_formula(stage: int, precision: str, n: str = "N", psi: str = "Ψ") -> str:
    """Model-state bytes per GPU under ZeRO `stage` over n ranks, the bytes that stay whole
    added up: `16Ψ`, `(4 + 12/N)Ψ`, `(2 + 14/N)Ψ`, `16Ψ/N`."""
    p, g, o = (recipe_bytes(precision, k) for k in ("params", "grads", "optimizer"))
    whole = [p + g + o, p + g, p, 0][stage]
    if stage == 0:
        return f"{num(whole)}{psi}"
    if stage == 3:
        return f"{num(p + g + o)}{psi}/{n}"
    return f"({num(whole)} + {num(p + g + o - whole)}/{n}){psi}"


@calc(worst=["mem_stage_formula(3, 'adam-8bit', 1048576)"])
def mem_stage_formula(stage: int = 3, precision: str = "mixed", n: int = 0) -> str:
    """Model-state bytes per GPU under a ZeRO stage over N data-parallel ranks:
    `(4 + 12/N)Ψ`; with `n`, N written as that number."""
    int_arg("stage", stage, 0, 3)
    _choice("precision", precision, list(mem.RECIPES))
    n = int_arg("n", n, 0, MAX_GPUS)
    return _stage_formula(stage, precision, f"{n:,}" if n else "N")


@calc(worst=["mem_zero_traffic(3)"])
def mem_zero_traffic(stage: int = 3) -> str:
    """A ZeRO stage's bytes per rank per step, as a multiple of plain data parallelism's."""
    return num(round(zero_traffic(int_arg("stage", stage, 0, 3)), 6))


@table(worst=["mem_zero_stages(1000000000000000, 1048576, 'adam-8bit')"])
def mem_zero_stages(n_params: float = 7.5e9, dp: int = 64, precision: str = "mixed") -> list[list[str]]:
    """Stage, what it shards, bytes per GPU as a formula, that for Ψ = n_params over dp ranks,
    and the step's traffic over plain DP's (simulated)."""
    n = _params_arg(n_params)
    dp = int_arg("dp", dp, 1, MAX_GPUS)
    _choice("precision", precision, list(mem.RECIPES))
    rows = []
    for stage in range(4):
        states = sum(mem.zero_state_bytes(n, dp, stage, precision).values())
        rows.append([f"ZeRO-{stage}", STAGE_SHARDS[stage], _stage_formula(stage, precision),
                     f"**{gb(states)}**", f"{num(round(zero_traffic(stage), 6))} ×"])
    return rows


@calc(worst=["mem_zero_cell(1000000000000000, 1048576, 3, 'adam-8bit')"])
def mem_zero_cell(n_params: float = 7.5e9, dp: int = 64, stage: int = 1, precision: str = "mixed") -> str:
    """Model states per GPU of Ψ = n_params over dp ranks under a ZeRO stage."""
    n = _params_arg(n_params)
    dp = int_arg("dp", dp, 1, MAX_GPUS)
    int_arg("stage", stage, 0, 3)
    _choice("precision", precision, list(mem.RECIPES))
    return gb(sum(mem.zero_state_bytes(n, dp, stage, precision).values()))


@calc(worst=[f"mem_states('{WORST_MODEL}', 1048576, 3, 'adam-8bit', 'optimizer', 64)"])
def mem_states(model: str, gpus: int = 1, zero: int = 0, precision: str = "mixed",
               kind: str = "total", tp: int = 1) -> str:
    """Model-state bytes per GPU (`params`, `grads`, `optimizer` or their `total`) of a bundled
    model on `gpus` GPUs (data parallel × tp), as `calc memory` computes them."""
    _choice("kind", kind, ("params", "grads", "optimizer", "total"))
    _, m = _rank(model, gpus, zero, precision, tp)
    value = m.params + m.grads + m.optimizer if kind == "total" else getattr(m, kind)
    return gb(value)


def _rank(model: str, gpus: int, zero: int, precision: str = "mixed", tp: int = 1,
          seq_len: int = 4096, recompute: str = "full", micro_batch: int = 1):
    spec = _model(model)
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    int_arg("zero", zero, 0, 3)
    _choice("precision", precision, list(mem.RECIPES))
    tp = int_arg("tp", tp, 1, MAX_TP)
    int_arg("seq_len", seq_len, 1, MAX_SEQ)
    int_arg("micro_batch", micro_batch, 1, MAX_BATCH)
    _choice("recompute", recompute, mem.RECOMPUTE)
    if gpus % tp:
        raise ValueError(f"{gpus} GPUs do not split into tensor-parallel groups of {tp}")
    par = mem.Parallel(dp=gpus // tp, tp=tp)
    return spec, _call(mem.memory_per_rank, spec, par, zero, micro_batch, seq_len, recompute,
                       precision=precision)


@calc(worst=[f"mem_total('{WORST_MODEL}', 1048576, 3, 1048576, 'none', 64)"])
def mem_total(model: str, gpus: int = 8, zero: int = 0, seq_len: int = 4096,
              recompute: str = "full", tp: int = 1) -> str:
    """Everything `calc memory` counts per GPU (states and activations), micro-batch 1."""
    return gb(_rank(model, gpus, zero, tp=tp, seq_len=seq_len, recompute=recompute)[1].total)


@calc(worst=[f"mem_saving('{WORST_MODEL}', 1048576, 0, 3, 1048576, 'none', 64)"])
def mem_saving(model: str, gpus: int = 8, zero: int = 1, than: int = 3, seq_len: int = 4096,
               recompute: str = "full", tp: int = 1) -> str:
    """Bytes per GPU ZeRO stage `than` saves over stage `zero`."""
    int_arg("than", than, 0, 3)
    a = _rank(model, gpus, zero, tp=tp, seq_len=seq_len, recompute=recompute)[1].total
    b = _rank(model, gpus, than, tp=tp, seq_len=seq_len, recompute=recompute)[1].total
    return gb(a - b)


def lowest_stage(model: str, gpus: int, seq_len: int, recompute: str, tp: int, hardware: str) -> int | None:
    room = _hardware(hardware).hbm_bytes * USABLE
    return next((z for z in range(4) if _rank(model, gpus, z, tp=tp, seq_len=seq_len,
                                             recompute=recompute)[1].total <= room), None)


@calc(worst=[f"mem_lowest_stage('{WORST_MODEL}', 1048576, 1048576, 'none', 64)"])
def mem_lowest_stage(model: str, gpus: int = 8, seq_len: int = 4096, recompute: str = "full",
                     tp: int = 1, hardware: str = "h100-sxm") -> str:
    """The lowest ZeRO stage whose total per GPU fits the usable memory (90 %): `ZeRO-1`."""
    stage = lowest_stage(model, gpus, seq_len, recompute, tp, hardware)
    return "none" if stage is None else f"ZeRO-{stage}"


@calc(worst=[f"mem_params('{WORST_MODEL}')"])
def mem_params(model: str) -> str:
    """A bundled model's parameter count, `8.03B` (all of them: an MoE's experts count too)."""
    return params_text(count(_model(model)).total)


DIMS = {"D": "D", "H": "H", "layers": "n_layers", "V": "V", "E": "E", "top_k": "top_k"}


@calc(worst=[f"mem_model_dim('{WORST_MODEL}', 'V')"])
def mem_model_dim(model: str, dim: str = "D") -> str:
    """A bundled model's size: `D`, `H`, `layers`, `V`, experts `E`, experts per token `top_k`."""
    spec = _model(model)
    return f"{getattr(spec, DIMS[_choice('dim', dim, list(DIMS))]):,}"


_MODELS_WORST = ("mem_zero_models((" + "('deepseek-v3', 1048576, 64), " * 8
                 + "), 1048576, 'none', 'h100-sxm', 256)")


@table(worst=[_MODELS_WORST])
def mem_zero_models(layouts=(("llama-3-8b", 8, 1),), seq_len: int = 4096, recompute: str = "full",
                    hardware: str = "h100-sxm", micro_batch: int = 1) -> list[list[str]]:
    """Per layout (model, GPUs, tp): model states per GPU under ZeRO-0 … 3, then activations.
    A state cell is bold where states + activations fit the GPU's usable memory (90 %)."""
    rows_in = _layouts(layouts)
    int_arg("seq_len", seq_len, 1, MAX_SEQ)
    _choice("recompute", recompute, mem.RECOMPUTE)
    usable = _hardware(hardware).hbm_bytes * USABLE
    rows = []
    for spec, gpus, tp in rows_in:
        cells, acts = [], 0.0
        for zero in range(4):
            _, m = _rank(spec.name, gpus, zero, tp=tp, seq_len=seq_len, recompute=recompute,
                         micro_batch=micro_batch)
            states, acts = m.params + m.grads + m.optimizer, m.activations
            cells.append(f"**{gb(states)}**" if m.total <= usable else gb(states))
        where = f"{gpus:,} GPUs" + (f", TP {tp}" if tp > 1 else "")
        rows.append([f"{display(spec)}, {where}", *cells, gb(acts)])
    return rows


# Activations of one layer, read off a forward pass ------------------------------------------


@dataclass(frozen=True)
class Kept:
    """An array one GPT layer keeps from forward for backward."""

    name: str  # its suffixed name
    nbytes: int  # of the actual array
    per: str  # "sbh" or "as2b": the unit it is counted in
    coefficient: int  # nbytes in that unit
    ref: bool  # the reference forward's `saved` holds it
    split: bool  # tensor parallelism splits it (it has an H or an F axis)


def _gelu(h: np.ndarray) -> np.ndarray:
    return 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))


def _norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


HALF, MASK = np.float16, np.bool_  # 16-bit activations (bf16's width); 1-byte dropout masks
SPLIT = "HF"  # Megatron's tensor parallelism cuts the heads and the MLP's hidden axis


@functools.cache
def layer_kept(B: int = 2, L: int = 6, H: int = 3, K: int = 4, p: float = 0.1) -> tuple[Kept, ...]:
    """Korthikanti et al.'s GPT layer (norm, attention with dropout on the probabilities and
    on its output, norm, 4D GeLU MLP, dropout), forward on small arrays; the attention and the
    MLP are the reference code's, their `saved` tuples what the reference keeps. Every array
    kept is returned with its bytes at training dtypes (float16 for bf16, bool for masks)."""
    D, F = H * K, 4 * H * K
    rng = np.random.default_rng(0)
    x_BLD = rng.standard_normal((B, L, D))
    w = [rng.standard_normal(s) / math.sqrt(D) for s in ((D, H, K),) * 3 + ((H, K, D),)]
    normed_BLD = _norm(x_BLD)
    y_BLD, saved = ref_attention.mha_forward(normed_BLD, *w)
    x_in_BLD, _, _, _, _, q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK = saved
    drop_BHLM = rng.random(probs_BHLM.shape) >= p
    dropped_BHLM = probs_BHLM * drop_BHLM / (1 - p)
    drop_attn_BLD = rng.random(y_BLD.shape) >= p
    r_BLD = x_BLD + y_BLD * drop_attn_BLD / (1 - p)
    w_in_DF, w_out_FD = rng.standard_normal((D, F)) / math.sqrt(D), rng.standard_normal((F, D))
    _, (x_mlp_BD, _, _, h_BF) = ref_mlp.mlp_forward(_norm(r_BLD).reshape(B * L, D), w_in_DF, w_out_FD)
    a_BF = _gelu(h_BF)  # GeLU's output: the second matmul's input (ReLU's backward recomputes it)
    drop_mlp_BLD = rng.random((B, L, D)) >= p

    sbh, as2b = B * L * D, H * L * L * B
    rows = [  # name, array, dtype, in the reference's saved; what backward reads it for
        ("`x_BLD`", x_BLD, HALF, False),  # norm 1's input
        ("`x_BLD` normed", x_in_BLD, HALF, True),  # the q, k, v projections' input
        ("`q_BLHK` `k_BMHK`", np.stack([q_BLHK, k_BMHK]), HALF, True),  # the scores' inputs
        ("`probs_BHLM`", probs_BHLM, HALF, True),  # softmax's output, for its backward
        ("`drop_BHLM`", drop_BHLM, MASK, False),  # its dropout mask
        ("`dropped_BHLM`", dropped_BHLM, HALF, False),  # probs·v's input
        ("`v_BMHK`", v_BMHK, HALF, True),  # probs·v's other input
        ("`out_BLHK`", out_BLHK, HALF, True),  # w_o's input
        ("`drop_BLD`", drop_attn_BLD, MASK, False),  # attention's output dropout mask
        ("`r_BLD`", r_BLD, HALF, False),  # norm 2's input
        ("`x_BLD` normed", x_mlp_BD, HALF, True),  # w_in's input
        ("`h_BLF`", h_BF, HALF, True),  # GeLU's input
        ("`a_BLF`", a_BF, HALF, False),  # GeLU's output, w_out's input
        ("`drop_BLD`", drop_mlp_BLD, MASK, False),  # the MLP's dropout mask
    ]
    kept = []
    for name, array, dtype, in_ref in rows:
        nbytes = array.astype(dtype).nbytes
        suffixes = [part.strip("`").rsplit("_", 1)[1] for part in name.split() if "_" in part]
        per = "as2b" if {"L", "M"} <= set(suffixes[0]) else "sbh"  # a score per query and key
        unit = as2b if per == "as2b" else sbh
        if nbytes % unit:
            raise AssertionError(f"{name}: {nbytes} bytes is not a multiple of {per}")
        split = bool(set("".join(suffixes)) & set(SPLIT))
        kept.append(Kept(name, nbytes, per, nbytes // unit, in_ref, split))
    return tuple(kept)


@calc(worst=["mem_itemsize('mask')"])
def mem_itemsize(kind: str = "activation") -> str:
    """Bytes per element the layer's arrays are counted at: a 16-bit `activation`, a dropout
    `mask`, an fp32 `logit`."""
    dtype = {"activation": HALF, "mask": MASK, "logit": np.float32}[_choice("kind", kind, ("activation", "mask", "logit"))]
    return str(np.dtype(dtype).itemsize)


TERMS = ("sbh", "as2b", "replicated", "split", "checkpoint", "ref_sbh", "ref_as2b")


@functools.cache
def coefficients() -> dict[str, int]:
    """Bytes per s·b·h (`sbh`) and per a·s²·b (`as2b`) of one layer, split into what tensor
    parallelism leaves whole (`replicated`) and what it splits (`split`, of the s·b·h part);
    `checkpoint`: bytes per element of the layer's input, all full recomputation keeps; the
    same two for the reference's own caches (`ref_sbh`, `ref_as2b`)."""
    kept = layer_kept()
    return {
        "sbh": sum(k.coefficient for k in kept if k.per == "sbh"),
        "as2b": sum(k.coefficient for k in kept if k.per == "as2b"),
        "replicated": sum(k.coefficient for k in kept if k.per == "sbh" and not k.split),
        "split": sum(k.coefficient for k in kept if k.per == "sbh" and k.split),
        "checkpoint": np.dtype(HALF).itemsize,
        "ref_sbh": sum(k.coefficient for k in kept if k.per == "sbh" and k.ref),
        "ref_as2b": sum(k.coefficient for k in kept if k.per == "as2b" and k.ref),
    }


@calc(worst=["mem_coefficient('ref_as2b')"])
def mem_coefficient(term: str = "sbh") -> str:
    """One of Korthikanti et al.'s coefficients, counted on the arrays (see `coefficients`)."""
    return str(coefficients()[_choice("term", term, TERMS)])


def _unit(per: str) -> str:
    return "sbh" if per == "sbh" else "as²b"


GROUPS = {  # the table's rows: arrays kept alike (same unit, reference or not, split or not)
    "norms' inputs `x_BLD` `r_BLD`": ("`x_BLD`", "`r_BLD`"),
    "inputs of q, k, v and of `w_in`": ("`x_BLD` normed",),
    "`q_BLHK` `k_BMHK` `v_BMHK` `out_BLHK`": ("`q_BLHK` `k_BMHK`", "`v_BMHK`", "`out_BLHK`"),
    "GeLU's input `h_BLF`": ("`h_BLF`",),
    "GeLU's output `a_BLF`": ("`a_BLF`",),
    "two dropout masks `drop_BLD`": ("`drop_BLD`",),
    "softmax's output `probs_BHLM`": ("`probs_BHLM`",),
    "its dropout mask and output": ("`drop_BHLM`", "`dropped_BHLM`"),
}


@table(worst=["mem_layer_terms()"])
def mem_layer_terms() -> list[list[str]]:
    """The arrays one GPT layer keeps for backward, grouped: bytes (in s·b·h or a·s²·b),
    whether the reference caches them, whether tensor parallelism splits them."""
    kept, rows = layer_kept(), []
    for label, names in GROUPS.items():
        group = [k for k in kept if k.name in names]
        first = group[0]
        if any((k.per, k.ref, k.split) != (first.per, first.ref, first.split) for k in group):
            raise AssertionError(f"{label}: its arrays are not kept alike")
        rows.append([label, f"{sum(k.coefficient for k in group)} {_unit(first.per)}",
                     "✓" if first.ref else "–", "÷t" if first.split else "whole"])
    if sum(len([k for k in kept if k.name in names]) for names in GROUPS.values()) != len(kept):
        raise AssertionError("an array kept is in no row, or in two")
    return rows


POLICIES = {  # name: (tensor parallel, sequence parallel, recompute)
    "no parallelism": (False, False, "none"),
    "TP": (True, False, "none"),
    "TP + SP": (True, True, "none"),
    "TP + selective": (True, False, "selective"),
    "TP + SP + selective": (True, True, "selective"),
    "full recompute": (False, False, "full"),
}


def policy_formula(policy: str, tex: bool = True) -> str:
    """Table 2's row for a policy, its coefficients counted on the arrays: TeX on one line, or
    plain text (`sbh·(34 + 5as/h)`) for a table cell."""
    c = coefficients()
    tp, sp, recompute = POLICIES[policy]
    if recompute == "full":
        text = f"{c['checkpoint']}·sbh"
    elif not tp:
        scores = "" if recompute == "selective" else f" + {c['as2b']}as/h"
        text = f"sbh·({c['sbh']}{scores})"
    elif sp:
        text = f"sbh/t·({c['sbh']} + {c['as2b']}as/h)" if recompute == "none" else f"{c['sbh']}·sbh/t"
    else:
        scores = f" + {c['as2b']}as/(ht)" if recompute == "none" else ""
        text = f"sbh·({c['replicated']} + {c['split']}/t{scores})"
    return text.replace("·", r"\,") if tex else text


@calc(worst=["mem_policy_formula('TP + SP + selective')"])
def mem_policy_formula(policy: str = "no parallelism") -> str:
    """Korthikanti et al.'s Table 2 row, as TeX, its numbers counted on the layer's arrays."""
    return policy_formula(_choice("policy", policy, list(POLICIES)))


def layer_bytes(spec: ModelSpec, policy: str, seq_len: int, micro_batch: int, tp: int) -> float:
    use_tp, sp, recompute = POLICIES[policy]
    t = tp if use_tp else 1
    return mem.activation_bytes_per_layer(seq_len, micro_batch, spec.D, spec.H, t, sp, recompute)


@table(worst=[f"mem_policies('{WORST_MODEL}', 1048576, 256, 64)"])
def mem_policies(model: str = "llama-3-70b", seq_len: int = 8192, micro_batch: int = 1,
                 tp: int = 8) -> list[list[str]]:
    """Per policy: Table 2's formula, one layer's bytes for the model, all its layers'."""
    spec = _model(model)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    micro_batch = int_arg("micro_batch", micro_batch, 1, MAX_BATCH)
    tp = int_arg("tp", tp, 1, MAX_TP)
    rows = []
    for policy in POLICIES:
        per_layer = layer_bytes(spec, policy, seq_len, micro_batch, tp)
        rows.append([policy, policy_formula(policy, tex=False), gb(per_layer),
                     f"**{gb(per_layer * spec.n_layers)}**"])
    return rows


@calc(worst=[f"mem_layer('{WORST_MODEL}', 1048576, 256, 64, 'TP + SP')"])
def mem_layer(model: str, seq_len: int = 4096, micro_batch: int = 1, tp: int = 1,
              policy: str = "no parallelism", layers: str = "one") -> str:
    """One layer's activations kept for backward (Table 2) under `policy`, or all the model's
    layers' (`layers='all'`)."""
    spec = _model(model)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    micro_batch = int_arg("micro_batch", micro_batch, 1, MAX_BATCH)
    tp = int_arg("tp", tp, 1, MAX_TP)
    _choice("policy", policy, list(POLICIES))
    _choice("layers", layers, ("one", "all"))
    per_layer = layer_bytes(spec, policy, seq_len, micro_batch, tp)
    return gb(per_layer * (spec.n_layers if layers == "all" else 1))


@functools.cache
def recompute_flops_ratio(n_layers: int = 4, B: int = 3, D: int = 4, F: int = 8) -> float:
    """A training step's FLOPs with a checkpoint every layer over without: `ref.checkpointing`'s
    stack run both ways, each einsum counted."""
    rng = np.random.default_rng(0)
    w_in = [rng.standard_normal((D, F)) for _ in range(n_layers)]
    w_out = [rng.standard_normal((F, D)) for _ in range(n_layers)]
    x_BD, d_y_BD = rng.standard_normal((B, D)), rng.standard_normal((B, D))
    with ref_einsum.count_flops() as plain:
        _, saved = ref_ckpt.stack_forward(x_BD, w_in, w_out)
        ref_ckpt.stack_backward(d_y_BD, saved)
    with ref_einsum.count_flops() as full:
        _, checkpoints = ref_ckpt.checkpointed_forward(x_BD, w_in, w_out, 1)
        ref_ckpt.checkpointed_backward(d_y_BD, checkpoints, w_in, w_out, 1)
    return full.total / plain.total


@calc(worst=["mem_recompute_cost()"])
def mem_recompute_cost() -> str:
    """A step's FLOPs under full recomputation over without, counted on the reference stack."""
    return f"{recompute_flops_ratio():.3g}"


# Outside the layers --------------------------------------------------------------------------

PARTS = ("logits", "output", "embedding", "checkpoints", "recomputed", "ratio")


@calc(worst=[f"mem_acts('{WORST_MODEL}', 1048576, 256, 'ratio')"])
def mem_acts(model: str, seq_len: int = 8192, micro_batch: int = 1, part: str = "logits") -> str:
    """Activations under full recompute (a checkpoint every layer), no pipeline, no TP, as
    `calc memory` counts them: all layers' `checkpoints`, the one layer `recomputed` in
    backward; outside the layers (Korthikanti et al. section 4.3) the fp32 `logits` 4·s·b·V,
    the whole `output` term (norm and head inputs and logits), the `embedding` dropout mask;
    `ratio`: logits over checkpoints."""
    spec = _model(model)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    micro_batch = int_arg("micro_batch", micro_batch, 1, MAX_BATCH)
    _choice("part", part, PARTS)
    acts = _call(mem.activations, spec, mem.Parallel(), micro_batch, seq_len, "full")
    logits = acts.output - 4 * seq_len * micro_batch * spec.D  # less the two bf16 inputs
    if part == "ratio":
        return f"{logits / acts.layers:.2g}"
    return gb({"logits": logits, "output": acts.output, "embedding": acts.embedding,
               "checkpoints": acts.layers, "recomputed": acts.recomputed}[part])


@calc(worst=[f"mem_scores_term('{WORST_MODEL}', 1048576)"])
def mem_scores_term(model: str = "gpt3-175b", seq_len: int = 2048) -> str:
    """Korthikanti et al.'s 5as/h for a model and sequence length (its coefficient counted)."""
    spec = _model(model)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    return f"{coefficients()['as2b'] * spec.H * seq_len / spec.D:g}"


@calc(worst=[f"mem_selective_saving('{WORST_MODEL}', 1048576, 256, 64)"])
def mem_selective_saving(model: str = "gpt3-175b", seq_len: int = 2048, micro_batch: int = 1,
                         tp: int = 8) -> str:
    """The share of a layer's activations (TP + SP) selective recomputation saves: `70 %`."""
    spec = _model(model)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    micro_batch = int_arg("micro_batch", micro_batch, 1, MAX_BATCH)
    tp = int_arg("tp", tp, 1, MAX_TP)
    full = layer_bytes(spec, "TP + SP", seq_len, micro_batch, tp)
    kept = layer_bytes(spec, "TP + SP + selective", seq_len, micro_batch, tp)
    return f"{100 * (1 - kept / full):.0f} %"


@calc(worst=[f"mem_recipe_saving('{WORST_MODEL}', 'adam-8bit', 'fp32')"])
def mem_recipe_saving(model: str, precision: str = "adam-8bit", than: str = "mixed") -> str:
    """Model-state bytes (one replica, no ZeRO) recipe `precision` saves over `than`."""
    n = count(_model(model)).total
    _choice("precision", precision, list(mem.RECIPES))
    _choice("than", than, list(mem.RECIPES))
    return gb(n * (recipe_bytes(than, "total") - recipe_bytes(precision, "total")))


@calc(worst=["mem_output_formula()"])
def mem_output_formula(tex: bool = True) -> str:
    """Section 4.3's output term: norm and head inputs (bf16) and fp32 logits; TeX or text."""
    c = coefficients()["checkpoint"]
    logit = np.dtype(np.float32).itemsize
    text = f"{c + c}·sbh/t + {logit}·sbV/t"
    return text.replace("·", r"\,") if tex else text


# The inverse question: the largest model that fits -----------------------------------------


def _fit(gpus: int, zero: int, hardware: str, precision: str, usable: float):
    report = mem.fit_report(_hardware(hardware), mem.Parallel(dp=gpus), zero, precision, usable)
    return {line.key: line.value for line in report.lines}


@calc(worst=["mem_fit(1048576, 3, 'h100-sxm', 'adam-8bit', 1, 'largest')"])
def mem_fit(gpus: int = 8, zero: int = 3, hardware: str = "h100-sxm", precision: str = "mixed",
            usable: float = 0.9, what: str = "largest") -> str:
    """`calc memory --fit`: the `largest` model whose states fit, or the `bytes` per parameter
    one GPU holds, or the `usable` memory per GPU."""
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    int_arg("zero", zero, 0, 3)
    _hardware(hardware)
    _choice("precision", precision, list(mem.RECIPES))
    _choice("what", what, ("largest", "bytes", "usable"))
    fit = _fit(gpus, zero, hardware, precision, _fraction("usable", usable))
    return {"largest": lambda: params_text(fit["largest_model"]),
            "bytes": lambda: f"{fit['bytes_per_parameter']:.3g}",
            "usable": lambda: gb(fit["usable_memory"])}[what]()


@table(worst=["mem_fit_table(1048576, 'h100-sxm', 'adam-8bit')"])
def mem_fit_table(gpus: int = 8, hardware: str = "h100-sxm", precision: str = "mixed") -> list[list[str]]:
    """Per ZeRO stage: bytes per parameter per GPU and the largest model whose states fit."""
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    _hardware(hardware)
    _choice("precision", precision, list(mem.RECIPES))
    rows = []
    for zero in range(4):
        fit = _fit(gpus, zero, hardware, precision, USABLE)
        formula = _stage_formula(zero, precision, f"{gpus:,}", "").strip("()")
        per_gpu = f"{fit['bytes_per_parameter']:.3g} B"
        rows.append([f"ZeRO-{zero}", per_gpu if zero == 0 else f"{formula} = {per_gpu}",
                     f"**{params_text(fit['largest_model'])}**"])
    return rows


@calc(worst=[f"mem_min_gpus('{WORST_MODEL}', 'h100-sxm', 'adam-8bit', 1, 'exact')"])
def mem_min_gpus(model: str, hardware: str = "h100-sxm", precision: str = "mixed",
                 usable: float = 0.9, form: str = "ceil") -> str:
    """The fewest GPUs whose usable memory holds a model's states under ZeRO-3 (nothing left
    for activations): ⌈bytes per parameter · Ψ / usable⌉; `form='exact'`: before rounding up."""
    spec = _model(model)
    hw = _hardware(hardware)
    _choice("precision", precision, list(mem.RECIPES))
    _choice("form", form, ("ceil", "exact"))
    room = hw.hbm_bytes * _fraction("usable", usable)
    total = sum(mem.zero_state_bytes(count(spec).total, 1, 3, precision).values())
    return f"{math.ceil(total / room):,}" if form == "ceil" else f"{total / room:.3g}"
