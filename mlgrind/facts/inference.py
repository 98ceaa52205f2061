"""Seed step "Inference: KV cache", and prefill vs decode on a roofline (sheet 07).

The KV cache's size is read off the reference cache itself (`ref.inference.KVCache`, filled by
the reference decoder), cast to the serving dtype. Prefill and decode are modelled kernel by
kernel: every matmul of a layer is one einsum (its FLOPs counted by `ref.einsum.flops`, its HBM
traffic its operands and its output, each moved once), and attention is one fused kernel
(FlashAttention-style: q, the cached k and v in, out back; scores stay on chip). Each kernel
takes max(FLOPs / peak, bytes / bandwidth) on its own roof, and a step is the sum of its
kernels. The kernels come in two parts with very different intensities:

    weights     the projections, the MLP and the output head: every weight is read once per
                step and used by all B·L tokens, so FLOP/B ≈ B·L (bf16: two FLOPs per weight,
                two bytes per weight)
    attention   each sequence reads its own cache: FLOP/B ≈ H/G at decode, whatever the batch

`calc.inference` models the same two parts (and adds MoE routing, absorbed MLA and the cache
copies of tensor parallelism); its tests check it against these kernels. Elementwise work (norms, RoPE, SwiGLU's gate, residual adds) and the
embedding lookup are left out, and tensor parallelism splits FLOPs and bytes evenly over the
GPUs with no communication: every time below is a lower bound.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..calc import hardware as hw_table
from ..calc.params import count
from ..calc.specs import ModelSpec, load_model, model_names
from ..ref import einsum as ref_einsum
from .core import calc, int_arg, si_text, sig_text, size_text, table, text_arg

# The serving dtypes, each by a NumPy type of the same width (NumPy has no bfloat16).
DTYPES = {"bf16": np.float16, "fp16": np.float16, "fp8": np.uint8, "fp32": np.float32}
PHASES = ("prefill", "decode")
MAX_BATCH = 4096
MAX_TOKENS = 1 << 20
MAX_GPUS = 64
WORST_MODEL = "llama-3.1-405b"  # the most layers of the models this sheet can model


# Arguments, each checked before any work ---------------------------------------------------


def _model(name: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", name) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {name!r}")
    return load_model(name)


def _gqa_model(name: Any) -> ModelSpec:
    """A model whose cache is per-head k and v (MHA or GQA): not MLA's latent (sheet 05)."""
    spec = _model(name)
    if spec.mla is not None or spec.K != spec.K_v:
        raise ValueError(f"{name} caches a compressed latent (MLA), not k and v per head: "
                         f"see the GQA/MLA sheet")
    return spec


def dense_model_arg(name: Any) -> ModelSpec:
    spec = _gqa_model(name)
    if spec.E:
        raise ValueError(f"{name} is a mixture of experts: a decode step reads only the experts "
                         f"its tokens were routed to, which this roofline does not model")
    return spec


def hardware_arg(name: Any) -> hw_table.Hardware:
    table_ = hw_table.load_all()
    if text_arg("hardware", name) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {name!r}")
    return table_[name]


def _dtype(name: Any) -> int:
    """Bytes per element of a serving dtype."""
    if text_arg("dtype", name) not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {name!r}")
    return np.dtype(DTYPES[name]).itemsize


def _phase(name: Any) -> str:
    if text_arg("phase", name) not in PHASES:
        raise ValueError(f"phase must be 'prefill' or 'decode'; got {name!r}")
    return name


# The KV cache, from the reference cache -----------------------------------------------------


@functools.cache
def cache_elements_per_token(model: str) -> int:
    """Elements the reference decoder appends to its KVCache for one token: a k and a v of K
    numbers per kv head per layer. The decoder gets the model's G, K and layer count (and the
    smallest everything else: the cache does not depend on D, F, V or the query heads)."""
    from ..ref.inference import Config, KVCache, forward, init_model

    spec = _gqa_model(model)
    config = Config(V=2, D=2, H=spec.G, G=spec.G, K=spec.K, F=1, n_layers=spec.n_layers)
    decoder = init_model(config, np.random.default_rng(0))
    cache = KVCache.empty(config, B=1)
    forward(decoder, np.zeros((1, 1), dtype=int), cache)
    return sum(a.size for a in cache.k + cache.v)


def kv_bytes_token(model: str, dtype: str = "bf16") -> int:
    """Bytes of cache per token: the reference cache's arrays cast to `dtype`."""
    return cache_elements_per_token(model) * _dtype(dtype)


@calc(worst=["kv_tensors()"])
def kv_tensors() -> int:
    """Tensors the reference cache keeps per layer: its fields, k and v."""
    from dataclasses import fields

    from ..ref.inference import KVCache

    return len(fields(KVCache))


@calc(worst=["dtype_bytes('fp32')"])
def dtype_bytes(dtype: str = "bf16") -> int:
    return _dtype(dtype)


@calc(worst=["flops_per_term()"])
def flops_per_term() -> int:
    """FLOPs the reference counter charges one multiply-add: an einsum with a single term."""
    return ref_einsum.flops("i,i->", {"i": 1})


def _tokens(spec: ModelSpec, tokens: Any) -> int:
    return spec.context if tokens is None else int_arg("tokens", tokens, 1, MAX_TOKENS)


@calc(worst=[f"kv_per_token('{WORST_MODEL}', 'fp32')"])
def kv_per_token(model: str, dtype: str = "bf16") -> str:
    _gqa_model(model)
    return size_text(kv_bytes_token(model, dtype))


@calc(worst=[f"kv_per_sequence('{WORST_MODEL}', {MAX_TOKENS}, 'fp32')"])
def kv_per_sequence(model: str, tokens: int | None = None, dtype: str = "bf16") -> str:
    """A sequence of `tokens` tokens (default: the model's longest context)."""
    spec = _gqa_model(model)
    return size_text(_tokens(spec, tokens) * kv_bytes_token(model, dtype))


@calc(worst=[f"max_context('{WORST_MODEL}')"])
def max_context(model: str) -> str:
    """The longest context the model's config allows, in tokens."""
    return f"{_model(model).context:,}"


@calc(worst=[f"kv_formula('{WORST_MODEL}')"])
def kv_formula(model: str, dtype: str = "bf16") -> str:
    """The product the bytes per token come from, in the order of the formula: k and v (two),
    kv heads G, head size K, layers, bytes per element. Each factor is checked against the
    reference cache's count."""
    spec = _gqa_model(model)
    factors = [2, spec.G, spec.K, spec.n_layers, _dtype(dtype)]
    if math.prod(factors) != kv_bytes_token(model, dtype):
        raise ValueError(f"the reference cache disagrees with 2·G·K·layers for {model}")
    return " · ".join(f"{n:,}" for n in factors)


@calc(worst=[f"weights_size('{WORST_MODEL}', 'fp32')"])
def weights_size(model: str, dtype: str = "bf16") -> str:
    """Every parameter at `dtype`, in GB (10^9 B, as HBM is sold)."""
    return _gb(count(_model(model)).total * _dtype(dtype))


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def fitting_sequences(model: str, hardware: str, gpus: int, tokens: int | None,
                      dtype: str = "bf16") -> int:
    """Sequences of `tokens` cached tokens that fit in the HBM of `gpus` GPUs beside the
    weights (no room kept for activations or fragmentation: an upper bound)."""
    spec, gpu = _gqa_model(model), hardware_arg(hardware)
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    room = gpus * gpu.hbm_bytes - count(spec).total * _dtype(dtype)
    if room <= 0:
        raise ValueError(f"{model}'s weights do not fit on {gpus} × {hardware}")
    return int(room // (_tokens(spec, tokens) * kv_bytes_token(model, dtype)))


@calc(worst=[f"sequences_fit('{WORST_MODEL}', 'h200', {MAX_GPUS}, 1)"])
def sequences_fit(model: str, hardware: str = "h100-sxm", gpus: int = 1,
                  tokens: int | None = None) -> str:
    return f"{fitting_sequences(model, hardware, gpus, tokens):,}"


@table(worst=["kv_cache_table((" + ", ".join([repr(WORST_MODEL)] * 8) + "), 'fp32')"])
def kv_cache_table(models: tuple[str, ...] = ("llama-3-8b", "llama-3-70b"),
                   dtype: str = "bf16") -> list[list[str]]:
    """Per model: G, K and layers as the config gives them, the cache per token (read off the
    reference cache), and per sequence at the model's longest context."""
    if not (isinstance(models, tuple) and 1 <= len(models) <= 8):
        raise ValueError(f"models is a tuple of one to eight model names; got {models!r}")
    rows = []
    for name in models:
        spec = _gqa_model(name)
        heads = f"[{spec.G}]{{.dim-heads}} · [{spec.K}]{{.dim-heads}} · {spec.n_layers}"
        rows.append([name, heads, kv_per_token(name, dtype), kv_per_sequence(name, None, dtype)])
    return rows


# The roofline, kernel by kernel -------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    """What the kernels need of a decoder: the suffix letters' sizes, its depth, its MLP."""

    D: int
    H: int
    G: int
    K: int
    F: int
    V: int
    n_layers: int
    gated: bool  # SwiGLU: gate and up projections, then down

    @classmethod
    def of(cls, spec: ModelSpec) -> Dims:
        return cls(spec.D, spec.H, spec.G, spec.K, spec.F, spec.V, spec.n_layers, spec.mlp_gated)


@dataclass(frozen=True)
class Kernel:
    part: str  # "weights" or "attention"
    spec: str  # its einsum(s), as the reference code writes them
    flops: int
    bytes: int  # HBM traffic: each operand read once, the output written once


def _elements(term: str, sizes: dict[str, int]) -> int:
    return math.prod(sizes[c] for c in term)


def kernels(d: Dims, B: int, L: int, M: int, itemsize: int) -> list[Kernel]:
    """One forward of B sequences, L new tokens each, against M positions (cached plus new:
    prefill M = L, a decode step L = 1, M = context + 1), kernel by kernel for all layers."""
    sizes = {"b": B, "l": L, "m": M, "d": d.D, "h": d.H, "g": d.G, "k": d.K, "f": d.F, "v": d.V}
    mlp = (["bld,df->blf", "bld,df->blf", "blf,fd->bld"] if d.gated
           else ["bld,df->blf", "blf,fd->bld"])
    layer = ["bld,dhk->blhk", "bld,dgk->blgk", "bld,dgk->blgk", "blhk,hkd->bld", *mlp]

    def matmul(spec: str, times: int) -> Kernel:
        inputs, output = ref_einsum.parse(spec)
        moved = sum(_elements(t, sizes) for t in [*inputs, output]) * itemsize
        return Kernel("weights", spec, times * ref_einsum.flops(spec, sizes), times * moved)

    out = [matmul(spec, d.n_layers) for spec in layer] + [matmul("bld,dv->blv", 1)]
    # Attention as the reference's gqa_attend runs it, H split into G groups of H/G heads.
    grouped = {**sizes, "h": d.H // d.G}
    scores, weighted = "blghk,bmgk->bghlm", "bghlm,bmgk->blghk"
    flops = ref_einsum.flops(scores, grouped) + ref_einsum.flops(weighted, grouped)
    moved = (2 * _elements("blhk", sizes) + 2 * _elements("bmgk", sizes)) * itemsize
    out.append(Kernel("attention", f"{scores}; {weighted}", d.n_layers * flops,
                      d.n_layers * moved))
    return out


@dataclass(frozen=True)
class Part:
    name: str
    flops: float  # per GPU
    bytes: float  # per GPU
    seconds: float  # its kernels' times, each on its own roof
    bound: str  # "compute", "memory" or "mixed" (some kernels each way)

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes


@dataclass(frozen=True)
class Step:
    parts: list[Part]
    gpu: hw_table.Hardware

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def single_max_seconds(self) -> float:
        """What one max() over the whole step's FLOPs and bytes gives (a common shortcut):
        never more than the sum over parts, less when the parts disagree."""
        return max(sum(p.flops for p in self.parts) / self.gpu.bf16_flops,
                   sum(p.bytes for p in self.parts) / self.gpu.hbm_bw)


def _ints(batch: Any, tokens: Any, gpus: Any) -> tuple[int, int, int]:
    return (int_arg("batch", batch, 1, MAX_BATCH), int_arg("tokens", tokens, 1, MAX_TOKENS),
            int_arg("gpus", gpus, 1, MAX_GPUS))


def step(model: str, hardware: str, phase: str, batch: int, tokens: int, gpus: int = 1,
         dtype: str = "bf16") -> Step:
    """A prefill of `tokens` prompt tokens per sequence, or one decode step after `tokens`
    cached ones, for `batch` sequences on `gpus` GPUs, each kernel on its own roof."""
    spec, gpu, phase = dense_model_arg(model), hardware_arg(hardware), _phase(phase)
    batch, tokens, gpus = _ints(batch, tokens, gpus)
    L, M = (tokens, tokens) if phase == "prefill" else (1, tokens + 1)
    found = kernels(Dims.of(spec), batch, L, M, _dtype(dtype))
    parts = []
    for name in ("weights", "attention"):
        mine = [k for k in found if k.part == name]
        compute = [k.flops / (gpus * gpu.bf16_flops) for k in mine]
        memory = [k.bytes / (gpus * gpu.hbm_bw) for k in mine]
        bounds = {"compute" if c >= m else "memory" for c, m in zip(compute, memory)}
        parts.append(Part(name, sum(k.flops for k in mine) / gpus,
                          sum(k.bytes for k in mine) / gpus,
                          sum(max(c, m) for c, m in zip(compute, memory)),
                          bounds.pop() if len(bounds) == 1 else "mixed"))
    return Step(parts, gpu)


def _seconds(s: float) -> str:
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


_PART_NAMES = {"weights": "[weights]{.params} matmuls", "attention": "[KV cache]{.kv-cache} attention"}
_STEP_WORST = [f"step_time('{WORST_MODEL}', 'b200', '{p}', {MAX_BATCH}, {MAX_TOKENS}, 1)"
               for p in PHASES]


@calc(worst=[f"ridge('{h}')" for h in ("h100-sxm", "tpu-v4")])
def ridge(hardware: str = "h100-sxm") -> str:
    """FLOPs per byte at which a kernel's compute and memory times are equal: peak / bandwidth."""
    return sig_text(hardware_arg(hardware).ops_per_byte)


@calc(worst=["peak('h100-sxm')"])
def peak(hardware: str = "h100-sxm") -> str:
    return si_text(hardware_arg(hardware).bf16_flops, "FLOP/s")


@calc(worst=["bandwidth('h100-sxm')"])
def bandwidth(hardware: str = "h100-sxm") -> str:
    return si_text(hardware_arg(hardware).hbm_bw, "B/s")


@calc(worst=["hbm('h200')"])
def hbm(hardware: str = "h100-sxm") -> str:
    return _gb(hardware_arg(hardware).hbm_bytes)


@calc(worst=[f"intensity('{WORST_MODEL}', 'b200', '{p}', {MAX_BATCH}, {MAX_TOKENS}, '{part}')"
             for p in PHASES for part in ("weights", "attention")])
def intensity(model: str, hardware: str, phase: str, batch: int, tokens: int,
              part: str = "weights") -> str:
    """FLOPs per HBM byte of one part of a step."""
    if text_arg("part", part) not in _PART_NAMES:
        raise ValueError(f"part must be 'weights' or 'attention'; got {part!r}")
    found = step(model, hardware, phase, batch, tokens)
    return sig_text(next(p for p in found.parts if p.name == part).intensity)


@calc(worst=[f"heads_per_kv_head('{WORST_MODEL}')"])
def heads_per_kv_head(model: str) -> str:
    """H / G: the decode attention's FLOPs per byte of cache read (bf16), whatever the batch."""
    spec = _gqa_model(model)
    return f"{spec.H // spec.G:,}" if spec.H % spec.G == 0 else f"{spec.H / spec.G:.3g}"


@calc(worst=_STEP_WORST)
def step_time(model: str, hardware: str, phase: str, batch: int, tokens: int,
              gpus: int = 1) -> str:
    return _seconds(step(model, hardware, phase, batch, tokens, gpus).seconds)


@calc(worst=[f"single_max_time('{WORST_MODEL}', 'b200', '{p}', {MAX_BATCH}, {MAX_TOKENS}, 1)"
             for p in PHASES])
def single_max_time(model: str, hardware: str, phase: str, batch: int, tokens: int,
                    gpus: int = 1) -> str:
    return _seconds(step(model, hardware, phase, batch, tokens, gpus).single_max_seconds)


@calc(worst=[f"tokens_per_second('{WORST_MODEL}', 'b200', {MAX_BATCH}, {MAX_TOKENS}, 1)"])
def tokens_per_second(model: str, hardware: str, batch: int, tokens: int, gpus: int = 1) -> str:
    """Tokens one sequence gets per second from back-to-back decode steps."""
    return f"{1 / step(model, hardware, 'decode', batch, tokens, gpus).seconds:,.0f}"


def compute_bound_batch(model: str, hardware: str, tokens: int, limit: int = 1 << 16) -> int:
    """The smallest decode batch whose weight matmuls are compute-bound (at `tokens` cached
    tokens; the matmuls do not depend on it). Compute time grows faster with the batch than
    the matmuls' bytes (weights fixed, activations ∝ batch): bisect."""
    spec, gpu = dense_model_arg(model), hardware_arg(hardware)
    tokens = int_arg("tokens", tokens, 1, MAX_TOKENS)

    def compute_bound(b: int) -> bool:
        ks = [k for k in kernels(Dims.of(spec), b, 1, tokens + 1, 2) if k.part == "weights"]
        return sum(k.flops for k in ks) / gpu.bf16_flops >= sum(k.bytes for k in ks) / gpu.hbm_bw

    if not compute_bound(limit):
        raise ValueError(f"{model}'s decode matmuls stay memory-bound up to batch {limit:,}")
    low, high = 1, limit
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if compute_bound(mid) else (mid + 1, high)
    return low


@calc(worst=[f"critical_batch('{WORST_MODEL}', 'b200', {MAX_TOKENS})"])
def critical_batch(model: str, hardware: str = "h100-sxm", tokens: int = 2048) -> str:
    return f"{compute_bound_batch(model, hardware, tokens):,}"


@table(worst=[f"roofline_table('{WORST_MODEL}', 'b200', {MAX_BATCH}, {MAX_TOKENS}, {MAX_TOKENS}, 1)"])
def roofline_table(model: str = "llama-3-70b", hardware: str = "h100-sxm", batch: int = 1,
                   prompt: int = 2048, context: int = 2048, gpus: int = 8) -> list[list[str]]:
    """A prefill of `prompt` tokens and a decode step after `context` cached tokens, `batch`
    sequences on `gpus` GPUs: each part's FLOPs and HBM bytes per GPU, FLOP/B, its bound and
    its time on its own roof (a phase takes the sum: `step_time`)."""
    rows = []
    for phase, tokens in (("prefill", prompt), ("decode", context)):
        for p in step(model, hardware, phase, batch, tokens, gpus).parts:
            rows.append([phase, _PART_NAMES[p.name], si_text(p.flops, "FLOP"), si_text(p.bytes, "B"),
                         sig_text(p.intensity), p.bound, _seconds(p.seconds)])
    return rows


@table(worst=[(f"decode_batch_table('{WORST_MODEL}', 'b200', 1, "
               f"({', '.join([str(MAX_BATCH)] * 8)}), {MAX_GPUS})")])
def decode_batch_table(model: str = "llama-3-8b", hardware: str = "h100-sxm", context: int = 1024,
                       batches: tuple[int, ...] = (1, 64, 256, 448),
                       gpus: int = 1) -> list[list[str]]:
    """One decode step at each batch, `context` tokens cached per sequence: the step's time,
    the tokens per second of all sequences together, and each part's bound. A batch whose
    cache does not fit beside the weights is refused."""
    if not (isinstance(batches, tuple) and 1 <= len(batches) <= 8):
        raise ValueError(f"batches is a tuple of one to eight batch sizes; got {batches!r}")
    context = int_arg("context", context, 1, MAX_TOKENS)
    fit = fitting_sequences(model, hardware, gpus, context + 1)
    rows = []
    for batch in batches:
        found = step(model, hardware, "decode", batch, context, gpus)
        if batch > fit:
            raise ValueError(f"{batch:,} sequences of {context + 1:,} tokens do not fit beside "
                             f"{model}'s weights on {gpus} × {hardware} (at most {fit:,})")
        rows.append([f"{batch:,}", _seconds(found.seconds), f"{batch / found.seconds:,.0f}",
                     *(p.bound for p in found.parts)])
    return rows
