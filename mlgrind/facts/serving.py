"""Seed questions "latency for prefill vs decode given a model's dimensions" and "how many H100s
will you need to serve 10k users?" (sheet 15).

Every value here is the calculator's (`mlgrind.calc.inference`: `prefill_step`, `decode_step`,
`serve`, `kv_bytes_per_token`), the same functions `mlgrind calc serve` prints, so a sheet, a
card and the command line cannot disagree; the tests run the command and compare. What the
calculator hides, this module shows: the rules of thumb a learner writes on paper (prefill ≈
2·N·L FLOPs at the peak, decode ≈ weights plus cache at the bandwidth) with their numbers
substituted, and the two wrong answers an interview hears (counting FLOPs only, counting the
cache only).

The question's defaults are the seed's: Llama-3-70B on H100 SXM, 10,000 users at 20 tokens/s
each with 4,096 tokens cached, bf16 weights and cache, 90 % of HBM usable, ideal kernels (100 %
of the bf16 peak and of HBM bandwidth), tensor parallelism without its communication.
"""

from __future__ import annotations

import math
from typing import Any

from ..calc import hardware as hw_table
from ..calc.inference import (ServePlan, Serving, Step, decode_step, domain, kv_bytes_per_token,
                              prefill_step)
from ..calc.params import count
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from .core import calc, int_arg, is_int, shown, si_text, sig_text, table, text_arg

MODEL, HARDWARE = "llama-3-70b", "h100-sxm"
USERS, RATE, CONTEXT = 10_000, 20, 4096
MAX_USERS = 10**8
MAX_TOKENS = 1 << 20
MAX_GPUS = 64  # per replica, as `calc serve` searches
MAX_BATCH = 1 << 20
DTYPES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}  # bytes per weight or cached number
WORST_MODEL = "deepseek-v3"  # MoE and MLA: the costliest step the calculator models
WORST_TOKENS = load_model(WORST_MODEL).context  # its longest context: 163,840 positions


# Arguments, each checked before any work ---------------------------------------------------


def _spec(model: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", model) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {model!r}")
    return load_model(model)


def _gpu(hardware: Any) -> hw_table.Hardware:
    table_ = hw_table.load_all()
    if text_arg("hardware", hardware) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {hardware!r}")
    return table_[hardware]


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def _bytes(name: str, dtype: Any) -> int:
    if text_arg(name, dtype) not in DTYPES:
        raise ValueError(f"{name} must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def _positions(name: str, tokens: Any, spec: ModelSpec) -> int:
    """Tokens a model can hold: at most its max_position_embeddings, as `calc serve` insists."""
    tokens = int_arg(name, tokens, 1, MAX_TOKENS)
    if tokens > spec.context:
        raise ValueError(f"{name} {tokens:,} is beyond {spec.name}'s {spec.context:,} positions")
    return tokens


def _optional_int(name: str, value: Any, high: int) -> int | None:
    return None if value is None else int_arg(name, value, 1, high)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if text_arg(name, value) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def serving(model: Any = MODEL, hardware: Any = HARDWARE, users: Any = USERS,
            tokens_per_second: Any = RATE, context: Any = CONTEXT, weights: Any = "bf16",
            cache: Any = "bf16", usable: Any = 0.9, mfu: Any = 1.0, mbu: Any = 1.0) -> Serving:
    """The question, checked: what every candidate deployment shares."""
    spec = _spec(model)
    return Serving(spec, _gpu(hardware), int_arg("users", users, 1, MAX_USERS),
                   _number("tokens_per_second", tokens_per_second, 0.01, 10_000),
                   _positions("context", context, spec), _bytes("weights", weights),
                   _bytes("cache", cache), _number("usable", usable, 0.05, 1),
                   _number("mfu", mfu, 0.01, 1), _number("mbu", mbu, 0.01, 1))


def plan(question: Serving, gpus: Any = None, batch: Any = None) -> ServePlan:
    """`calc serve`'s deployment: the fewest GPUs in all, or the one fixed by `gpus`/`batch`."""
    gpus, batch = _optional_int("gpus", gpus, MAX_GPUS), _optional_int("batch", batch, MAX_BATCH)
    try:
        return question.best(gpus, batch)
    except SpecError as error:
        raise ValueError(str(error)) from None


def binds(question: Serving, found: ServePlan) -> str:
    """What stops the batch growing, as `calc serve` words it: the memory, the users or the
    per-user target."""
    if found.batch_per_replica == found.fit:
        return "memory"
    return "users" if found.batch_per_replica == question.users else "target"


# Numbers as the sheet prints them -----------------------------------------------------------


def seconds_text(s: float) -> str:
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def gb_text(n: float) -> str:
    """Bytes in GB (10^9, as HBM is sold and as `calc serve` prints), three digits; TB above."""
    return f"{n / 1e12:.3g} TB" if n >= 1e12 else f"{n / 1e9:.3g} GB"


def rate_text(x: float) -> str:
    """Tokens per second: whole above 100, three significant digits below (as `calc serve`)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def billions(n: float) -> str:
    return f"{n / 1e9:.3g} billion"


# The deployment, as `calc serve` finds it -------------------------------------------------------

SERVE_VALUES = {  # what: (the value off the plan, how it reads); keys as `calc serve --json`
    "weights": (lambda q, p: p.weights, gb_text),
    "kv_per_user": (lambda q, p: p.kv_per_user, gb_text),
    "gpus_per_replica": (lambda q, p: p.gpus_per_replica, "{:,}".format),
    "usable_memory_per_replica": (lambda q, p: p.usable, gb_text),
    "batch_that_fits": (lambda q, p: p.fit, "{:,}".format),
    "batch_per_replica": (lambda q, p: p.batch_per_replica, "{:,}".format),
    "decode_weight_matmuls": (lambda q, p: p.step.weights.seconds, seconds_text),
    "decode_attention": (lambda q, p: p.step.attention.seconds, seconds_text),
    "decode_step": (lambda q, p: p.step.seconds, seconds_text),
    "tokens_per_second_per_user": (lambda q, p: p.tokens_per_second_per_user, rate_text),
    "tokens_per_second_per_replica": (lambda q, p: p.tokens_per_second_per_replica, rate_text),
    "memory_used": (lambda q, p: p.memory_used, gb_text),
    "replicas": (lambda q, p: p.replicas, "{:,}".format),
    "gpus": (lambda q, p: p.gpus, "{:,}".format),
    "binds": (lambda q, p: binds(q, p), str),
    "kv_copies": (lambda q, p: p.kv_copies, "{:g}".format),
}

_SERVE_WORST = [  # the widest searches that still find a deployment
    f"serve_value('gpus', '{WORST_MODEL}', 'mi300x', {MAX_USERS}, 0.01, 1)",
    f"serve_value('decode_step', 'llama-3.1-405b', 'tpu-v5e', {MAX_USERS}, 0.01, 1)",
    f"serve_value('gpus', 'gpt2', 'b200', {MAX_USERS}, 0.01, 1, 'fp8', 'fp8')"]


@calc(worst=_SERVE_WORST)
def serve_value(what: str, model: str = MODEL, hardware: str = HARDWARE, users: int = USERS,
                tokens_per_second: float = RATE, context: int = CONTEXT, weights: str = "bf16",
                cache: str = "bf16", usable: float = 0.9, mfu: float = 1.0, mbu: float = 1.0,
                gpus: int | None = None, batch: int | None = None) -> str:
    """One line of `calc serve`'s answer (`what`: its JSON key), as the sheet prints it. Without
    `gpus` and `batch` the deployment is the one needing the fewest GPUs in all."""
    _choice("what", what, tuple(SERVE_VALUES))
    question = serving(model, hardware, users, tokens_per_second, context, weights, cache,
                       usable, mfu, mbu)
    value, text = SERVE_VALUES[what]
    return text(value(question, plan(question, gpus, batch)))


# Prefill and decode, part by part ----------------------------------------------------------

PARTS = ("weights", "attention", "step")
PHASE_VALUES = ("time", "bound", "intensity", "flops", "bytes")


def phase_step(phase: Any, tokens: Any, batch: Any, gpus: Any, model: Any, hardware: Any) -> Step:
    """A prefill of `batch` prompts of `tokens` tokens, or one decode step of `batch` users
    after `tokens` cached ones, on `gpus` tensor-parallel GPUs: the calculator's own step."""
    phase = _choice("phase", phase, ("prefill", "decode"))
    spec, gpu = _spec(model), _gpu(hardware)
    tokens = _positions("tokens", tokens, spec)
    batch, gpus = int_arg("batch", batch, 1, MAX_BATCH), int_arg("gpus", gpus, 1, MAX_GPUS)
    if phase == "prefill":
        return prefill_step(spec, gpu, tokens, batch, gpus)
    return decode_step(spec, gpu, batch, tokens, gpus)


def _part_value(step: Step, part: str, what: str, gpus: int) -> str:
    if part == "step":
        return {"time": seconds_text(step.seconds), "bound": step.bound,
                "intensity": sig_text(step.flops / step.bytes),
                "flops": si_text(step.flops / gpus, "FLOP"),
                "bytes": si_text(step.bytes / gpus, "B")}[what]
    p = step.weights if part == "weights" else step.attention
    return {"time": seconds_text(p.seconds), "bound": p.bound, "intensity": sig_text(p.intensity),
            "flops": si_text(p.flops / gpus, "FLOP"), "bytes": si_text(p.bytes / gpus, "B")}[what]


@calc(worst=[f"serve_phase('time', '{p}', {WORST_TOKENS}, {MAX_BATCH}, 1, 'step', '{WORST_MODEL}')"
             for p in ("prefill", "decode")])
def serve_phase(what: str, phase: str, tokens: int, batch: int = 1, gpus: int = 4,
                part: str = "step", model: str = MODEL, hardware: str = HARDWARE) -> str:
    """`what` (time, bound, FLOP/B, FLOPs or bytes per GPU) of a whole step or of one part
    (weight matmuls or attention), each part on its own roof, the step their sum."""
    what, part = _choice("what", what, PHASE_VALUES), _choice("part", part, PARTS)
    step = phase_step(phase, tokens, batch, gpus, model, hardware)
    return _part_value(step, part, what, gpus)


def rule_seconds(kind: str, tokens: int, batch: int, gpus: int, model: str,
                 hardware: str) -> tuple[str, float]:
    """A rule of thumb with its numbers substituted, and its value in seconds. Prefill: every
    weight a token multiplies costs two FLOPs, at the peak. Decode: the weights once plus every
    user's cache, at the bandwidth (M = context + 1: the new token attends to itself too)."""
    kind = _choice("kind", kind, ("prefill", "decode"))
    spec, gpu = _spec(model), _gpu(hardware)
    tokens = _positions("tokens", tokens, spec)
    batch, gpus = int_arg("batch", batch, 1, MAX_BATCH), int_arg("gpus", gpus, 1, MAX_GPUS)
    n_matmul = count(spec).matmul_per_token
    peak, bandwidth = si_text(gpu.bf16_flops, "FLOP/s"), si_text(gpu.hbm_bw, "B/s")
    if kind == "prefill":
        t = 2 * n_matmul * batch * tokens / (gpus * gpu.bf16_flops)
        lead = "" if batch == 1 else f"{batch:,} · "
        working = (f"2 · {billions(n_matmul)} · {lead}{tokens:,} ÷ ({gpus} · {peak}) = "
                   f"{seconds_text(t)}")
        return working, t
    weights = 2 * n_matmul
    cache = batch * (tokens + 1) * kv_bytes_per_token(spec)
    t = (weights + cache) / (gpus * gpu.hbm_bw)
    per_token = si_text(kv_bytes_per_token(spec), "B")
    working = (f"({gb_text(weights)} + {batch:,} · {tokens + 1:,} · {per_token}) ÷ ({gpus} · "
               f"{bandwidth}) = {seconds_text(t)}")
    return working, t


@calc(worst=[f"serve_rule('{k}', {WORST_TOKENS}, {MAX_BATCH}, 1, '{WORST_MODEL}')"
             for k in ("prefill", "decode")])
def serve_rule(kind: str, tokens: int, batch: int = 1, gpus: int = 4, model: str = MODEL,
               hardware: str = HARDWARE) -> str:
    """The paper rule with its numbers: prefill 2·N·B·L ÷ (n·peak), decode (W + B·M·KV/token) ÷
    (n·bandwidth), N the weights a token multiplies, W their bytes."""
    return rule_seconds(kind, tokens, batch, gpus, model, hardware)[0]


@calc(worst=[f"serve_params('{WORST_MODEL}', 'total')"])
def serve_params(model: str = MODEL, which: str = "matmul") -> str:
    """N: the weights one token multiplies (the embedding is a lookup), or every parameter."""
    c = count(_spec(model))
    return billions(c.matmul_per_token if _choice("which", which, ("matmul", "total")) == "matmul"
                    else c.total)


@calc(worst=[f"serve_kv_token('{WORST_MODEL}', 'fp32')"])
def serve_kv_token(model: str = MODEL, cache: str = "bf16") -> str:
    """Cache bytes per token, as `calc kv` counts them (2·G·K·layers·bytes; MLA its latent)."""
    return f"{kv_bytes_per_token(_spec(model), _bytes('cache', cache)):,.0f} B"


@calc(worst=["serve_usable_per_gpu('mi300x', 1.0)"])
def serve_usable_per_gpu(hardware: str = HARDWARE, usable: float = 0.9) -> str:
    return gb_text(_gpu(hardware).hbm_bytes * _number("usable", usable, 0.05, 1))


def cache_crossover(context: int, gpus: int, model: Any, hardware: Any) -> int | None:
    """The smallest decode batch whose attention (each user reading its own cache) takes at
    least as long as the weight matmuls (the weights read once for all): past it, the cache is
    what a step waits on. Attention grows with the batch faster than the matmuls, so bisect."""
    spec, gpu = _spec(model), _gpu(hardware)
    context, gpus = _positions("context", context, spec), int_arg("gpus", gpus, 1, MAX_GPUS)

    def cache_bound(b: int) -> bool:
        step = decode_step(spec, gpu, b, context, gpus)
        return step.attention.seconds >= step.weights.seconds

    if not cache_bound(MAX_BATCH):
        return None
    low, high = 1, MAX_BATCH
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if cache_bound(mid) else (mid + 1, high)
    return low


@calc(worst=[f"serve_crossover({WORST_TOKENS}, 1, '{WORST_MODEL}', 'b200')"])
def serve_crossover(context: int = CONTEXT, gpus: int = 4, model: str = MODEL,
                    hardware: str = HARDWARE) -> str:
    found = cache_crossover(context, gpus, model, hardware)
    if found is None:
        raise ValueError(f"{model}'s cache never outlasts its weights at {context:,} cached tokens "
                         f"up to batch {MAX_BATCH:,}")
    return f"{found:,}"


@calc(worst=[f"serve_dim('G', '{WORST_MODEL}')"])
def serve_dim(letter: str, model: str = MODEL) -> str:
    """A suffix letter's size in the model's config: H query heads, G kv heads, K head size,
    D model width, F MLP width."""
    letter = _choice("letter", letter, ("D", "F", "H", "G", "K"))
    return f"{getattr(_spec(model), letter):,}"


@calc(worst=[f"serve_little('arrivals', {MAX_USERS}, {MAX_TOKENS}, 0.01)"])
def serve_little(what: str, users: int = USERS, answer: int = 500,
                 tokens_per_second: float = RATE) -> str:
    """Little's law between concurrent users and arrivals: a user decoding an `answer`-token
    reply at `tokens_per_second` stays answer / rate seconds, so `users` at once means users ÷
    that many new requests a second (`seconds` or `arrivals`)."""
    what = _choice("what", what, ("seconds", "arrivals"))
    users, answer = int_arg("users", users, 1, MAX_USERS), int_arg("answer", answer, 1, MAX_TOKENS)
    stay = answer / _number("tokens_per_second", tokens_per_second, 0.01, 10_000)
    return f"{stay:.3g} s" if what == "seconds" else f"{rate_text(users / stay)} requests/s"


@calc(worst=["serve_domain('tpu-v5p')"])
def serve_domain(hardware: str = HARDWARE) -> str:
    """Chips one tensor-parallel replica may span in `calc serve`: one scale-up domain (an
    NVLink node of H100s), since its per-layer all-reduces are not costed."""
    return f"{domain(_gpu(hardware)):,}"


# The two wrong answers ------------------------------------------------------------------------


def compute_only(question: Serving) -> tuple[float, int]:
    """(FLOPs per generated token, GPUs) if serving were compute-bound: every user's tokens/s
    times one decode step's FLOPs per user (batch 1: the weights' 2·N plus its attention), all
    at the bf16 peak."""
    flops = decode_step(question.spec, question.hw, 1, question.context).flops
    return flops, math.ceil(question.users * question.tokens_per_second * flops
                            / (question.hw.bf16_flops * question.mfu))


def cache_only(question: Serving) -> tuple[float, int]:
    """(bytes of every user's cache, GPUs whose usable HBM holds just that)."""
    total = question.users * question.context * kv_bytes_per_token(question.spec,
                                                                    question.kv_bytes_per_element)
    return total, math.ceil(total / (question.hw.hbm_bytes * question.usable_memory))


_WRONG_WORST = [f"serve_shortcut('{w}', '{WORST_MODEL}', 'tpu-v5e', {MAX_USERS}, 10000, {WORST_TOKENS})"
                for w in ("compute_gpus", "cache_gpus")]


@calc(worst=_WRONG_WORST)
def serve_shortcut(what: str, model: str = MODEL, hardware: str = HARDWARE, users: int = USERS,
                   tokens_per_second: float = RATE, context: int = CONTEXT) -> str:
    """The shortcuts: `token_flops` and `compute_gpus` (FLOPs only), `cache_bytes` and
    `cache_gpus` (the users' caches only, no weights)."""
    what = _choice("what", what, ("token_flops", "compute_gpus", "cache_bytes", "cache_gpus"))
    question = serving(model, hardware, users, tokens_per_second, context)
    if what.startswith("compute") or what == "token_flops":
        flops, gpus = compute_only(question)
        return si_text(flops, "FLOP") if what == "token_flops" else f"{gpus:,}"
    total, gpus = cache_only(question)
    return gb_text(total) if what == "cache_bytes" else f"{gpus:,}"


# Tables -------------------------------------------------------------------------------------

_PART_NAMES = {"weights": "[weights]{.params} matmuls", "attention": "[KV cache]{.kv-cache} attention"}


def _case(case: Any) -> tuple[str, int, int]:
    if not (isinstance(case, tuple) and len(case) == 3 and case[0] in ("prefill", "decode")
            and is_int(case[1]) and is_int(case[2])):
        raise ValueError(f"a case is ('prefill', prompts, tokens) or ('decode', users, cached "
                         f"tokens); got {shown(case)}")
    return case


@table(worst=[f"serve_latency_table(gpus=1, model='{WORST_MODEL}', cases=("
              + ", ".join([f"('prefill', {MAX_BATCH}, {WORST_TOKENS})"] * 4
                          + [f"('decode', {MAX_BATCH}, {WORST_TOKENS})"] * 4) + "))"])
def serve_latency_table(gpus: int = 4, model: str = MODEL, hardware: str = HARDWARE,
                        cases: tuple = (("prefill", 1, 2048), ("prefill", 1, 16),
                                        ("decode", 64, 4096)),
                        steps: bool = True) -> list[list[str]]:
    """Per case, each part's FLOPs and HBM bytes per GPU, FLOP/B, bound and time on its own
    roof, then (`steps`) the step: their sum. The first column states the case: an input."""
    if not (isinstance(cases, tuple) and 1 <= len(cases) <= 8):
        raise ValueError(f"cases is a tuple of one to eight cases; got {shown(cases)}")
    rows = []
    for phase, batch, tokens in map(_case, cases):
        step = phase_step(phase, tokens, batch, gpus, model, hardware)
        if phase == "prefill":
            label = f"prefill, {tokens:,} tokens" + ("" if batch == 1 else f" × {batch:,}")
        else:
            label = f"decode, {batch:,} users × {tokens:,} cached"
        for i, part in enumerate(("weights", "attention")):
            rows.append([label if i == 0 else "", _PART_NAMES[part],
                         *(_part_value(step, part, w, gpus) for w in ("flops", "bytes", "intensity",
                                                                         "bound", "time"))])
        if steps:
            rows.append(["", "**step**", "", "", "", f"**{step.bound}**",
                         f"**{seconds_text(step.seconds)}**"])
    return rows


VARIANTS = {  # a change to the question: (its label, the argument it sets)
    "baseline": ("as asked", None),
    "fp8-weights": ("fp8 weights", ("weights", "fp8")),
    "fp8-cache": ("fp8 KV cache", ("cache", "fp8")),
    "h200": ("H200", ("hardware", "h200")),
    "b200": ("B200", ("hardware", "b200")),
}


def _variant(variant: Any) -> tuple[str, dict]:
    """A named change, or (argument, value) for a number the learner reads as given."""
    if isinstance(variant, str) and variant in VARIANTS:
        label, change = VARIANTS[variant]
        return label, dict([change]) if change else {}
    labels = {"context": "{:,} cached tokens", "tokens_per_second": "{:g} tokens/s each",
              "users": "{:,} users", "mbu": "{:.0%} of HBM bandwidth", "usable": "{:.0%} of HBM usable"}
    if isinstance(variant, tuple) and len(variant) == 2 and variant[0] in labels:
        return labels[variant[0]].format(variant[1]), {variant[0]: variant[1]}
    raise ValueError(f"a variant is one of {', '.join(VARIANTS)} or (argument, value) with an "
                     f"argument of {', '.join(labels)}; got {shown(variant)}")


@table(worst=[("serve_variants_table(('baseline', 'fp8-weights', 'fp8-cache', 'h200', 'b200', "
               f"('context', 8192), ('users', {MAX_USERS}), ('mbu', 0.3)))")])
def serve_variants_table(variants: tuple = ("baseline", "fp8-cache", "h200", ("context", 8192),
                                            ("tokens_per_second", 50))) -> list[list[str]]:
    """The seed's question with one thing changed per row: GPUs per replica, the batch, what
    binds it, and the GPUs in all (`calc serve` with that option)."""
    if not (isinstance(variants, tuple) and 1 <= len(variants) <= 8):
        raise ValueError(f"variants is a tuple of one to eight changes; got {shown(variants)}")
    rows = []
    for variant in variants:
        label, change = _variant(variant)
        question = serving(**change)
        found = plan(question)
        rows.append([label, f"{found.gpus_per_replica}", f"{found.batch_per_replica:,}",
                     binds(question, found), f"**{found.gpus:,}**"])
    return rows
