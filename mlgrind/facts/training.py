"""Seed questions "how many tokens should you train on? (and for an MoE)" and "model size +
tokens → how many GPUs and days?" (sheet 09).

Every number comes from the calculators (`mlgrind.calc`: `params.count`, `flops.*`, `train.report`),
which the tests run through the command line; what the calculators take as given, this module
counts on the reference code:

    FLOPs per weight and token   forward, backward and a step, counted on `ref.mlp` (each weight
                                 one multiply-add forward, two backward): 2, 4, 6, so C = 6·N·D
    attention against 6N         the core (scores, weighted sum) against the weight matmuls of
                                 a `ref.attention` block plus its MLP, counted by `ref.einsum`:
                                 attention / 6N = L / (6·D) for MHA with F = 4·D, L the sequence

A block's forward is split as the calculators split it (`flops.layer_forward_flops`: the weight
matmuls, 2·L per weight, plus the attention core); the matmul-by-matmul table is the per-layer
FLOPs sheet's (10). The drawing of tokens against parameters is `figures/training.py`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..calc import flops as calc_flops
from ..calc import hardware as hw_table
from ..calc import train as calc_train
from ..calc.params import count
from ..calc.specs import ModelSpec, load_model, model_names
from ..ref import attention as ref_attention
from ..ref import mlp as ref_mlp
from ..ref.einsum import count_flops
from .core import calc, int_arg, is_int, shown, table, text_arg

KINDS = ("active", "total")
PHASES = ("forward", "backward", "step", "recomputed step")
CONVENTIONS = tuple(calc_flops.ATTENTION)  # palm, causal, kaplan, none
RECOMPUTE = tuple(calc_flops.RECOMPUTE)  # none, selective, full
BLOCK_PARTS = ("projections", "core", "mlp", "block", "forward", "per token")
BUDGET = ("flops", "params", "tokens", "gpu hours")
MAX_SEQ = 1 << 20
MAX_GPUS = 1 << 20
MAX_TOKENS = 1e15  # a thousand trillion tokens: past any corpus
MAX_DAYS = 10_000.0
MAX_ROWS = 8
WORST = "llama-3.1-405b"  # the most layers of the bundled dense models (all closed forms: cheap)


# Arguments, each checked before any work ---------------------------------------------------


def _model(name: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", name) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {shown(name)}")
    return load_model(name)


def _dense(name: Any) -> ModelSpec:
    spec = _model(name)
    if spec.E or spec.mla is not None:
        raise ValueError(f"{name} is not a dense GQA model: its block splits differently "
                         f"(experts, latent attention); see `mlgrind calc flops --model {name}`")
    return spec


@functools.cache
def _hardware_table() -> dict[str, hw_table.Hardware]:
    return hw_table.load_all()  # parsed once: a sheet asks for it in many cells


def _hardware(name: Any) -> hw_table.Hardware:
    table_ = _hardware_table()
    if text_arg("hardware", name) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {shown(name)}")
    return table_[name]


def _choice(what: str, value: Any, allowed: tuple[str, ...]) -> str:
    if text_arg(what, value) not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {shown(value)}")
    return value


def _number(what: str, value: Any, low: float, high: float) -> float:
    """A finite int or float in [low, high] (YAML's 15e12 is a float, 4096 an int)."""
    if not ((is_int(value) or isinstance(value, float)) and low <= value <= high):
        raise ValueError(f"{what} must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def _tokens(value: Any) -> float:
    return _number("tokens", value, 1.0, MAX_TOKENS)


def _fraction(what: str, value: Any) -> float:
    if not ((is_int(value) or isinstance(value, float)) and 0 < value <= 1):
        raise ValueError(f"{what} must be a fraction in (0, 1], got {shown(value)}")
    return float(value)


def _rows(what: str, value: Any, width: int) -> tuple:
    """A tuple of one to MAX_ROWS tuples of `width` entries, each checked by the caller."""
    if not (isinstance(value, tuple) and 1 <= len(value) <= MAX_ROWS
            and all(isinstance(r, tuple) and len(r) == width for r in value)):
        raise ValueError(f"{what} is a tuple of one to {MAX_ROWS} tuples of {width} entries; "
                         f"got {shown(value)}")
    return value


# Formats: the sheet's, the cards' and the tests' (which format the CLI's values with them) ----

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float) -> str:
    """FLOPs: `6.5×10²⁴`, three significant digits (no spaces: a narrow column keeps it whole)."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{float(mantissa):.3g}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def amount(n: float) -> str:
    """Parameters, tokens, GPU-hours: `70.6 B`, `15 T`, `4.56 M`."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g}"


def percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def days_text(d: float) -> str:
    return f"{d:,.1f}"


def ratio_text(r: float) -> str:
    """Tokens per parameter: `1.71`, `38`, `1,868`."""
    return f"{r:,.0f}" if r >= 10 else f"{r:.3g}"


# What the reference code counts ------------------------------------------------------------


@functools.cache
def flops_per_weight() -> dict[str, int]:
    """FLOPs per weight and per token, counted on `ref.mlp` for one example: forward (each weight
    one multiply-add), backward (the gradients of the input and of the weight), a step, and a
    step that runs the forward again for recomputation."""
    rng = np.random.default_rng(0)
    D, F = 3, 5
    x_BD, w_in_DF, w_out_FD = rng.normal(size=(1, D)), rng.normal(size=(D, F)), rng.normal(size=(F, D))
    with count_flops() as forward:
        y_BD, saved = ref_mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with count_flops() as backward:
        ref_mlp.mlp_backward(np.ones_like(y_BD), saved)
    weights = w_in_DF.size + w_out_FD.size
    fwd, bwd = forward.total // weights, backward.total // weights
    return {"forward": fwd, "backward": bwd, "step": fwd + bwd, "recomputed step": 2 * fwd + bwd}


@functools.cache
def attention_rule() -> int:
    """c in attention / 6N = T / (c·D): one MHA block (H·K = D) and its MLP (F = 4·D) run by the
    reference code, the attention core (scores, weighted sum) against the weight matmuls, each
    counted by `ref.einsum` (a step is three forwards of both, so the forward ratio is the
    training one)."""
    rng = np.random.default_rng(0)
    B, T, D, H = 1, 8, 16, 4
    K, F = D // H, 4 * D
    x_BLD = rng.normal(size=(B, T, D))
    weights = [rng.normal(size=s) for s in [(D, H, K)] * 3 + [(H, K, D)]]
    with count_flops() as counted:
        ref_attention.mha_forward(x_BLD, *weights)
        ref_mlp.mlp_forward(x_BLD.reshape(B * T, D), rng.normal(size=(D, F)), rng.normal(size=(F, D)))
    core = counted.by_spec["blhk,bmhk->bhlm"] + counted.by_spec["bhlm,bmhk->blhk"]
    matmuls = counted.total - core
    # attention / 6N = core / matmuls = T / (c·D)  ⇒  c = matmuls · T / (core · D)
    c = matmuls * T / (core * D)
    if c != round(c):
        raise ValueError(f"the counted ratio gives a non-integer coefficient {c}")
    return round(c)


# Tokens: Chinchilla, dense and MoE -----------------------------------------------------------


def params_of(spec: ModelSpec, kind: str) -> int:
    c = count(spec)
    return c.active if kind == "active" else c.total


@calc(worst=["train_chinchilla_ratio()"])
def train_chinchilla_ratio() -> int:
    """Tokens per parameter of a compute-optimal run (Hoffmann et al. 2022), as the calculators use it."""
    return calc_flops.CHINCHILLA_TOKENS_PER_PARAM


@calc(worst=["train_budget_divisor()"])
def train_budget_divisor() -> int:
    """C = 6·N·D with D = 20·N gives N = sqrt(C / 120): the 120, from the counted 6 and the 20."""
    return flops_per_weight()["step"] * calc_flops.CHINCHILLA_TOKENS_PER_PARAM


@calc(worst=[f"train_params('{WORST}', 'total')"])
def train_params(model: str, kind: str = "active") -> str:
    """Active (what a token goes through) or total parameters, as `mlgrind calc params` counts them."""
    return amount(params_of(_model(model), _choice("kind", kind, KINDS)))


@calc(worst=[f"train_chinchilla_tokens('{WORST}', 'total')"])
def train_chinchilla_tokens(model: str, kind: str = "active") -> str:
    spec, kind = _model(model), _choice("kind", kind, KINDS)
    return amount(calc_flops.chinchilla_tokens(params_of(spec, kind)))


@calc(worst=[f"train_tokens_per_param('{WORST}', {MAX_TOKENS:g}, 'total')"])
def train_tokens_per_param(model: str, tokens: float, kind: str = "active") -> str:
    spec, tokens, kind = _model(model), _tokens(tokens), _choice("kind", kind, KINDS)
    return ratio_text(tokens / params_of(spec, kind))


@calc(worst=["train_expert_ratio('deepseek-v3')"])
def train_expert_ratio(model: str) -> str:
    """Total over active parameters: how much more an MoE stores than a token pays for."""
    spec = _model(model)
    if not spec.E:
        raise ValueError(f"{model} is dense: its total and active parameters are the same")
    return f"{params_of(spec, 'total') / params_of(spec, 'active'):.3g}"


@table(worst=["train_moe_table((" + ", ".join(["'deepseek-v3'"] * MAX_ROWS) + "))"])
def train_moe_table(models: tuple = ("mixtral-8x7b", "deepseek-v3")) -> list[list[str]]:
    """Per MoE: total and active parameters, and 20 × each."""
    if not (isinstance(models, tuple) and 1 <= len(models) <= MAX_ROWS):
        raise ValueError(f"models is a tuple of one to {MAX_ROWS} model names; got {shown(models)}")
    rows = []
    for model in models:
        spec = _model(model)
        if not spec.E:
            raise ValueError(f"{model} is dense: total and active are the same")
        total, active = params_of(spec, "total"), params_of(spec, "active")
        rows.append([model, amount(total), amount(active),
                     amount(calc_flops.chinchilla_tokens(active)), amount(calc_flops.chinchilla_tokens(total))])
    return rows


# FLOPs: per weight, one block, the model ------------------------------------------------------


@calc(worst=["train_flops_per_weight('recomputed step')"])
def train_flops_per_weight(phase: str = "forward") -> int:
    """FLOPs per weight and token, counted on the reference MLP."""
    return flops_per_weight()[_choice("phase", phase, PHASES)]


@calc(worst=["train_attention_rule()"])
def train_attention_rule() -> int:
    return attention_rule()


@calc(worst=["train_palm_coefficient()"])
def train_palm_coefficient() -> int:
    """PaLM's 12 in 6N + 12·n_layers·H·K·T per training token (K_v = K): a step's three forwards
    of the calculators' dense attention, 2·T·H·(K + K_v) per layer, read off `calc.flops` on a
    model with K_v = K."""
    spec = load_model("gpt3-175b")
    T = 2048
    per = calc_flops.training_flops_per_token(spec, T, "none", "palm") - 6 * count(spec).matmul_per_token
    c = per / (spec.n_layers * spec.H * spec.K * T)
    if spec.K != spec.K_v or c != round(c):
        raise ValueError(f"the dense attention term is not a whole multiple of n_layers·H·K·T: {c}")
    return round(c)


@calc(worst=["train_seconds_per_day()"])
def train_seconds_per_day() -> int:
    return calc_train.SECONDS_PER_DAY


def block_parts(spec: ModelSpec, T: int) -> list[tuple[str, str, int]]:
    """One dense block's forward on one sequence of T tokens, as `flops.layer_forward_flops`
    splits it (attention counted dense, PaLM's convention), then the model: (part, formula in
    the suffix letters, FLOPs)."""
    two = flops_per_weight()["forward"]
    parts = calc_flops.layer_forward_flops(spec, 1, T, False, "palm")
    projections, core = parts["attention projections"], parts["attention scores + weighted sum"]
    mlp = parts["MLP"]
    block = projections + core + mlp
    head = two * T * spec.D * spec.V
    gated = 3 if spec.mlp_gated else 2
    forward = spec.n_layers * block + head
    return [
        ("projections q k v o", f"{two}·L·D·K·({two}·H + {two}·G)", projections),
        ("scores + weighted sum", f"{two}·L²·H·(K + K_v)", core),
        ("MLP" + (" (SwiGLU)" if spec.mlp_gated else ""), f"{two}·L·{gated}·D·F", mlp),
        ("one block", f"{two}·L·N_block + attention", block),
        (f"{spec.n_layers} blocks + head", f"{spec.n_layers} · block + {two}·L·D·V", forward),
        ("per token", "÷ L", forward // T),
    ]


@calc(worst=[f"train_block_flops('{WORST}', {MAX_SEQ}, 'per token')"])
def train_block_flops(model: str, seq: int = 2048, part: str = "block") -> str:
    """One part of `block_parts`: projections, core, mlp, block, forward or per token."""
    spec, part = _dense(model), _choice("part", part, BLOCK_PARTS)
    T = int_arg("seq", seq, 1, MAX_SEQ)
    return sci(block_parts(spec, T)[BLOCK_PARTS.index(part)][2])


@calc(worst=[f"train_block_share('{WORST}', {MAX_SEQ}, 'core')"])
def train_block_share(model: str, seq: int = 2048, part: str = "mlp") -> str:
    """A part's share of one block's forward."""
    spec, part = _dense(model), _choice("part", part, BLOCK_PARTS[:3])
    T = int_arg("seq", seq, 1, MAX_SEQ)
    rows = block_parts(spec, T)
    return percent(rows[BLOCK_PARTS.index(part)][2] / rows[3][2])


@table(worst=[f"train_block_table('{WORST}', {MAX_SEQ})"])
def train_block_table(model: str = "llama-3-70b", seq: int = 8192) -> list[list[str]]:
    """Part, formula, FLOPs and share of the block (the model rows: of the forward)."""
    spec, T = _dense(model), int_arg("seq", seq, 1, MAX_SEQ)
    rows = block_parts(spec, T)
    block = rows[3][2]
    return [[name, formula, sci(v), percent(v / block) if i < 3 else ""]
            for i, (name, formula, v) in enumerate(rows)]


def attention_share(spec: ModelSpec, T: int, convention: str) -> float:
    """A training step's attention FLOPs per token over 6·N (N: the weights a token is
    multiplied by), as `mlgrind calc flops` reports it."""
    attention = calc_flops.attention_flops_per_token(spec, T, convention)
    return 3 * attention / (6 * count(spec).matmul_per_token)


@calc(worst=[f"train_attention_share('{WORST}', {MAX_SEQ}, 'palm')"])
def train_attention_share(model: str, seq: int = 2048, attention: str = "palm") -> str:
    spec, T = _model(model), int_arg("seq", seq, 1, MAX_SEQ)
    return percent(attention_share(spec, T, _choice("attention", attention, CONVENTIONS)))


@calc(worst=[f"train_attention_rule_share('{WORST}', {MAX_SEQ})"])
def train_attention_rule_share(model: str, seq: int = 2048) -> str:
    """The MHA rule L / (6·D) for a model's width: what the rule says, not the count."""
    spec, T = _model(model), int_arg("seq", seq, 1, MAX_SEQ)
    return percent(T / (attention_rule() * spec.D))


_CONVENTION_TEXT = {
    "palm": "dense: all L² scores",
    "causal": "masked half skipped",
    "kaplan": "one matmul of two",
}


@table(worst=[f"train_conventions_table('{WORST}', {MAX_SEQ})"])
def train_conventions_table(model: str = "llama-3-70b", seq: int = 8192) -> list[list[str]]:
    """Per convention that counts attention (`none` adds nothing): what it counts, the forward
    attention FLOPs per token and what a step's attention adds to 6N."""
    spec, T = _model(model), int_arg("seq", seq, 1, MAX_SEQ)
    return [[name, _CONVENTION_TEXT[name], sci(calc_flops.attention_flops_per_token(spec, T, name)),
             percent(attention_share(spec, T, name))]
            for name in CONVENTIONS if name != "none"]


@table(worst=["train_share_table((" + ", ".join([f"('{WORST}', {MAX_SEQ})"] * MAX_ROWS) + "))"])
def train_share_table(cases: tuple = (("gpt3-175b", 2048), ("llama-3-8b", 8192))) -> list[list[str]]:
    """Per (model, sequence length): D, the rule T / (6·D) and the calculators' share (dense)."""
    rows = []
    for model, seq in _rows("cases", cases, 2):
        spec, T = _model(model), int_arg("seq", seq, 1, MAX_SEQ)
        rows.append([model, f"{T:,}", f"{spec.D:,}", train_attention_rule_share(model, T),
                     percent(attention_share(spec, T, "palm"))])
    return rows


# Training time, utilisation, and the inverse -------------------------------------------------


def run_report(model: str | None, hardware: str, **kw: Any) -> dict[str, Any]:
    """`mlgrind calc train` as JSON, for a model or (model None) a budget."""
    spec = None if model is None else _model(model)
    return calc_train.report(spec, _hardware(hardware), **kw).as_json()


def _utilisation(hardware: str, mfu: Any, achieved: Any) -> dict[str, float]:
    """An MFU, or an achieved executed TFLOP/s per GPU (Narayanan et al.'s X), read as an HFU."""
    if achieved is None:
        return {"mfu": _fraction("mfu", mfu)}
    tflops = _number("achieved", achieved, 1e-3, 1e6)
    return {"hfu": _fraction("achieved / peak", tflops * 1e12 / _hardware(hardware).bf16_flops)}


def _run(model: str, tokens: Any, gpus: Any, hardware: str, mfu: Any, seq: Any, achieved: Any,
         recompute: Any, attention: Any) -> dict[str, Any]:
    kw = {"tokens": _tokens(tokens), "gpus": int_arg("gpus", gpus, 1, MAX_GPUS),
          "seq_len": int_arg("seq", seq, 1, MAX_SEQ),
          "recompute": _choice("recompute", recompute, RECOMPUTE),
          "attention": _choice("attention", attention, CONVENTIONS)}
    _model(model)
    return run_report(model, hardware, **kw, **_utilisation(hardware, mfu, achieved))


_RUN_WORST = f"'{WORST}', {MAX_TOKENS:g}, 1, 'b200', 1, {MAX_SEQ}"


@calc(worst=[f"train_days({_RUN_WORST}, recompute='full')"])
def train_days(model: str, tokens: float, gpus: int, hardware: str = "h100-sxm", mfu: float = 0.4,
               seq: int = 2048, achieved: float | None = None, recompute: str = "none",
               attention: str = "palm") -> str:
    """Days to train `model` on `tokens` with `gpus` at an MFU (or an achieved executed TFLOP/s
    per GPU, an HFU, with recomputation)."""
    return days_text(_run(model, tokens, gpus, hardware, mfu, seq, achieved, recompute, attention)["days"])


@calc(worst=[f"train_gpu_hours({_RUN_WORST})"])
def train_gpu_hours(model: str, tokens: float, gpus: int, hardware: str = "h100-sxm",
                    mfu: float = 0.4, seq: int = 2048, achieved: float | None = None,
                    recompute: str = "none", attention: str = "palm") -> str:
    return amount(_run(model, tokens, gpus, hardware, mfu, seq, achieved, recompute, attention)["gpu_hours"])


@calc(worst=[f"train_compute('{WORST}', {MAX_TOKENS:g}, {MAX_SEQ}, 'palm', 'executed', 'full')"])
def train_compute(model: str, tokens: float, seq: int = 2048, attention: str = "palm",
                  what: str = "model", recompute: str = "none") -> str:
    """A run's FLOPs: model (3 × forward per token, what MFU counts), executed (recomputation
    included, what HFU counts), or 6ND (6 × the weights a token is multiplied by)."""
    what = _choice("what", what, ("model", "executed", "6nd"))
    spec, tokens, T = _model(model), _tokens(tokens), int_arg("seq", seq, 1, MAX_SEQ)
    attention = _choice("attention", attention, CONVENTIONS)
    recompute = _choice("recompute", recompute, RECOMPUTE)
    if what == "6nd":
        return sci(calc_flops.six_n_d(count(spec).matmul_per_token, tokens))
    data = calc_flops.report(spec, seq_len=T, tokens=tokens, recompute=recompute,
                             attention=attention).as_json()
    return sci(data["model_flops_total" if what == "model" else "training_total"])


@calc(worst=[f"train_gpus('{WORST}', {MAX_TOKENS:g}, 0.01, 'a100-40gb', 0.01, {MAX_SEQ})"])
def train_gpus(model: str, tokens: float, days: float, hardware: str = "h100-sxm", mfu: float = 0.4,
               seq: int = 2048) -> str:
    """The fewest GPUs that train `model` on `tokens` within `days` at an MFU."""
    kw = {"tokens": _tokens(tokens), "days": _number("days", days, 0.01, MAX_DAYS),
          "mfu": _fraction("mfu", mfu), "seq_len": int_arg("seq", seq, 1, MAX_SEQ)}
    _model(model)
    return f"{run_report(model, hardware, **kw)['gpus']:,}"


@calc(worst=[f"train_utilisation('{WORST}', 100, 'b200', {MAX_SEQ}, 'full', 'palm', 'mfu')"])
def train_utilisation(model: str, achieved: float, hardware: str = "a100-80gb", seq: int = 2048,
                      recompute: str = "full", attention: str = "none", which: str = "mfu") -> str:
    """An achieved executed TFLOP/s per GPU read as an HFU, and the MFU of the same wall time."""
    which = _choice("which", which, ("hfu", "mfu"))
    # Any run will do: the utilisations of one wall time do not depend on its tokens or GPUs.
    kw = {"tokens": 1e9, "gpus": 1, "seq_len": int_arg("seq", seq, 1, MAX_SEQ),
          "recompute": _choice("recompute", recompute, RECOMPUTE),
          "attention": _choice("attention", attention, CONVENTIONS)}
    util = _utilisation(hardware, None, achieved)
    if which == "hfu":
        return percent(util["hfu"])
    _model(model)
    data = run_report(model, hardware, **kw, **util)
    return percent(data["mfu"] if "mfu" in data else util["hfu"])


@calc(worst=[f"train_recompute_factor('{WORST}', {MAX_SEQ}, 'full')"])
def train_recompute_factor(model: str, seq: int = 2048, recompute: str = "full",
                           attention: str = "palm") -> str:
    """Executed over model FLOPs per token: what HFU / MFU is for the same wall time."""
    spec, T = _model(model), int_arg("seq", seq, 1, MAX_SEQ)
    recompute = _choice("recompute", recompute, RECOMPUTE)
    attention = _choice("attention", attention, CONVENTIONS)
    executed = calc_flops.training_flops_per_token(spec, T, recompute, attention)
    model_ = calc_flops.training_flops_per_token(spec, T, "none", attention)
    return f"{executed / model_:.3g}"


@calc(worst=["train_narayanan_days(1e13, 1e15, 1, 1)"])
def train_narayanan_days(params: float, tokens: float, gpus: int, achieved: float) -> str:
    """Narayanan et al. 2021, eq. 4: time ≈ 8·T·P / (n·X) with full recomputation (8 FLOPs per
    weight and token: the counted 2 forward, 4 backward and 2 recomputed), in days."""
    P, T = _number("params", params, 1.0, 1e13), _tokens(tokens)
    n, X = int_arg("gpus", gpus, 1, MAX_GPUS), _number("achieved", achieved, 1e-3, 1e6)
    per = flops_per_weight()["recomputed step"]
    return days_text(per * T * P / (n * X * 1e12) / calc_train.SECONDS_PER_DAY)


def _budget(gpus: Any, days: Any, hardware: str, mfu: Any) -> dict[str, Any]:
    kw = {"gpus": int_arg("gpus", gpus, 1, MAX_GPUS), "days": _number("days", days, 0.01, MAX_DAYS),
          "mfu": _fraction("mfu", mfu)}
    return run_report(None, hardware, **kw)


_BUDGET_KEYS = {"flops": "training_flops", "params": "chinchilla_params",
                "tokens": "chinchilla_tokens", "gpu hours": "gpu_hours"}


@calc(worst=[f"train_budget({MAX_GPUS}, {MAX_DAYS:g}, 'b200', 1, 'tokens')"])
def train_budget(gpus: int, days: float, hardware: str = "h100-sxm", mfu: float = 0.4,
                 what: str = "params") -> str:
    """What GPUs × days buy at an MFU: the compute, the Chinchilla-optimal N and D for it."""
    what = _choice("what", what, BUDGET)
    value = _budget(gpus, days, hardware, mfu)[_BUDGET_KEYS[what]]
    return sci(value) if what == "flops" else amount(value)


@calc(worst=[f"train_optimal_for('{WORST}', {MAX_TOKENS:g}, 'tokens')"])
def train_optimal_for(model: str, tokens: float, what: str = "params") -> str:
    """The Chinchilla-optimal N (or D) for the compute of 6·N·D that `model` on `tokens` used."""
    what = _choice("what", what, ("params", "tokens"))
    spec, tokens = _model(model), _tokens(tokens)
    n = calc_flops.chinchilla_params(calc_flops.six_n_d(count(spec).matmul_per_token, tokens))
    return amount(n if what == "params" else calc_flops.chinchilla_tokens(n))


@table(worst=["train_budget_table((" + ", ".join([f"({MAX_GPUS}, 'b200', {MAX_DAYS:g}, 1)"] * MAX_ROWS) + "))"])
def train_budget_table(cases: tuple = ((1024, "h100-sxm", 30, 0.4),)) -> list[list[str]]:
    """Per (GPUs, GPU, days, MFU), the inputs: the compute and the Chinchilla-optimal N and D."""
    rows = []
    for gpus, hardware, days, mfu in _rows("cases", cases, 4):
        data = _budget(gpus, days, hardware, mfu)
        rows.append([f"{gpus:,}", hardware, f"{days:g}", f"{100 * mfu:g} %", sci(data["training_flops"]),
                     amount(data["chinchilla_params"]), amount(data["chinchilla_tokens"])])
    return rows


@table(worst=["train_days_table((" + ", ".join([f"({_RUN_WORST})"] * MAX_ROWS) + "))"])
def train_days_table(runs: tuple = (("llama-3-70b", 15e12, 4096, "h100-sxm", 0.4, 8192),)) -> list[list[str]]:
    """Per run (model, tokens, GPUs, GPU, MFU, sequence), the inputs: the model FLOPs, GPU-hours
    and days."""
    rows = []
    for model, tokens, gpus, hardware, mfu, seq in _rows("runs", runs, 6):
        data = _run(model, tokens, gpus, hardware, mfu, seq, None, "none", "palm")
        rows.append([model, amount(tokens), f"{gpus:,} {hardware.split('-')[0].upper()}",
                     f"{100 * mfu:g} %", sci(data["training_flops"]), amount(data["gpu_hours"]),
                     days_text(data["days"])])
    return rows
