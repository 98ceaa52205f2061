"""Training time from FLOPs, hardware and utilisation; utilisation from a measured throughput;
and the inverse: what a GPU budget buys.

    seconds = total FLOPs / (GPUs × peak FLOP/s × utilisation)
    MFU     = tokens/s × model FLOPs per token / (GPUs × peak FLOP/s)
    HFU     = tokens/s × executed FLOPs per token / (GPUs × peak FLOP/s)

MFU counts only the model's FLOPs (3 × forward per token), not recomputation; HFU counts the FLOPs
a GPU actually executes, recomputation included: what Narayanan et al. 2021 report as "achieved
teraFLOP/s per GPU" (divided by the peak). Days from an MFU use the model FLOPs, days from an
HFU the executed ones; both give the same time when HFU = MFU × executed / model.

The inverse (Chinchilla, Hoffmann et al. 2022): GPUs × days × utilisation fix the compute C;
with C = 6·N·D and D = 20·N the compute-optimal model has N = sqrt(C / 120) parameters.
"""

from __future__ import annotations

import math

from mlgrind.calc import flops
from mlgrind.calc.hardware import Hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import ModelSpec, SpecError
from mlgrind.calc.working import Report, count_text, finite, flops_text, num, rate

SECONDS_PER_DAY = 86_400


def training_seconds(total_flops: float, n_gpus: int, flops_per_gpu: float) -> float:
    """Wall time when every GPU sustains `flops_per_gpu` (= peak × utilisation)."""
    return total_flops / (n_gpus * flops_per_gpu)


def training_days(total_flops: float, n_gpus: int, peak: float, mfu: float) -> float:
    return training_seconds(total_flops, n_gpus, peak * mfu) / SECONDS_PER_DAY


def gpus_for_days(total_flops: float, days: float, peak: float, mfu: float) -> int:
    """Fewest GPUs that finish within `days` (GPU × days is what the budget really fixes)."""
    return math.ceil(total_flops / (days * SECONDS_PER_DAY * peak * mfu))


def mfu(tokens_per_second: float, flops_per_token: float, n_gpus: int, peak: float) -> float:
    return tokens_per_second * flops_per_token / (n_gpus * peak)


def gpu_hours(total_flops: float, peak: float, mfu: float) -> float:
    return total_flops / (peak * mfu) / 3600


# ----------------------------------------------------------------------------- the working

DEFAULT_MFU = 0.4
# Without a model the budget counts 6N per token; full recomputation executes 8N of it.
BUDGET_EXECUTED_PER_MODEL = {"none": 1.0, "selective": 1.0, "full": 8 / 6}


def report(spec: ModelSpec | None, hw: Hardware, *, tokens: float | None = None, seq_len: int = 2048,
           gpus: int | None = None, days: float | None = None, mfu: float | None = None,
           hfu: float | None = None, dtype: str = "bf16", tokens_per_second: float | None = None,
           recompute: str = "none", attention: str = "palm") -> Report:
    """Days on `gpus`, GPUs for `days`, or, given both, the tokens (with a model) or the
    compute-optimal model (without one) that budget trains.

    Utilisation is an MFU (default 40 %) or, given `hfu`, an HFU; the caller checks that the
    combination of arguments asks one question."""
    peak = hw.peak(dtype)
    metric, util = ("HFU", hfu) if hfu is not None else ("MFU", DEFAULT_MFU if mfu is None else mfu)
    title = (f"{spec.name}: training on {hw.name} at {util:.0%} {metric}" if spec else
             f"{gpus:,} × {hw.name} for {days:g} days at {util:.0%} {metric}: the model it trains")
    r = Report(title,
               context={"model": spec.name, "hardware": hw.key} if spec else {"hardware": hw.key})
    r.add("peak", peak, rate(peak, "FLOP"), "",
          f"{hw.key} {dtype} dense peak (hardware.yaml: {hw.name} datasheet)")
    what = "executed FLOP/s, recomputation included" if metric == "HFU" else "model FLOP/s"
    util_note = (f"{metric} {util:.0%} of the {dtype} dense peak (--{metric.lower()})"
                 + ("" if hfu is not None or mfu is not None else ", the default"))
    sustained = peak * util
    r.add("sustained per gpu", sustained, rate(sustained, "FLOP"),
          f"peak · {metric} = {num(peak)} · {num(util)} = {num(sustained)} {what}", util_note)
    if spec is None:
        return _budget(r, peak, util, metric, gpus, days, recompute)

    c = count(spec)
    model = flops.training_flops_per_token(spec, seq_len, "none", attention)
    executed = flops.training_flops_per_token(spec, seq_len, recompute, attention)
    forward = flops.forward_flops_per_token(spec, seq_len, attention)
    r.add("model flops per token", model, flops_text(model),
          f"3 × (2·N_matmul + attention) = 3 × (2 · {c.matmul_per_token:,} + "
          f"{num(forward - 2 * c.matmul_per_token)}) = {num(model)}",
          flops.ATTENTION[attention], f"sequence {seq_len:,} tokens (--seq-len)")
    r.add("executed flops per token", executed, flops_text(executed),
          f"model + recomputed = {num(model)} + {num(executed - model)} = {num(executed)}",
          flops.RECOMPUTE[recompute])
    # Days from an HFU divide the executed FLOPs, from an MFU the model FLOPs.
    per_token, counted = (executed, "C_executed") if metric == "HFU" else (model, "C")
    if gpus is not None and days is not None:
        return _tokens_for_budget(r, spec, peak, util, metric, gpus, days, per_token, counted)

    chinchilla = tokens is None
    tokens = flops.chinchilla_tokens(c.active) if chinchilla else tokens
    r.add("tokens", tokens, count_text(tokens),
          f"20 · N_active = 20 · {c.active:,} = {num(tokens)}" if chinchilla else "",
          flops.CHINCHILLA_ACTIVE + " (no --tokens)" if chinchilla else "")
    r.add("training flops", tokens * model, flops_text(tokens * model),
          f"C = tokens × model per token = {num(tokens)} × {num(model)} = {num(tokens * model)}",
          "model FLOPs: what MFU counts")
    total = tokens * per_token
    if recompute != "none":
        r.add("executed flops", tokens * executed, flops_text(tokens * executed),
              f"C_executed = tokens × executed per token = {num(tokens)} × {num(executed)} = "
              f"{num(tokens * executed)}", "executed FLOPs: what HFU counts")
    hours = gpu_hours(total, peak, util)
    r.add("gpu hours", hours, f"{hours:,.0f}",
          f"{counted} / (peak · {metric}) / 3,600 s = {num(total)} / ({num(peak)} · {num(util)}) "
          f"/ 3,600 = {hours:,.0f}")
    if gpus is not None:
        d = training_days(total, gpus, peak, util)
        r.add("days", d, f"{d:,.1f} on {gpus:,} × {hw.key}",
              f"{counted} / (n · peak · {metric}) / 86,400 s = {num(total)} / ({gpus:,} · {num(peak)} "
              f"· {num(util)}) / 86,400 = {num(d)} days")
    else:
        g = gpus_for_days(total, days, peak, util)
        r.add("gpus", g, f"{g:,} × {hw.key} for {days:g} days",
              f"⌈{counted} / (days · 86,400 s · peak · {metric})⌉ = ⌈{num(total)} / ({num(days)} · "
              f"86,400 · {num(peak)} · {num(util)})⌉ = {g:,}")
    _other_utilisation(r, metric, util, model, executed, recompute)
    if tokens_per_second is not None:
        for key, per in (("mfu", model), ("hfu", executed))[:1 if recompute == "none" else 2]:
            m = tokens_per_second * per / (gpus * peak)  # as `mfu()`, which the argument shadows
            if finite(m, "the measured utilisation") > 1:
                raise SpecError(f"{num(tokens_per_second)} tokens/s on {gpus:,} × {hw.key} would be "
                                f"{m:.0%} of the {dtype} peak: check --tokens-per-second and --gpus")
            r.add(f"measured {key}", m, f"{m:.1%}",
                  f"tokens/s × {'model' if key == 'mfu' else 'executed'} per token / (n · peak) = "
                  f"{num(tokens_per_second)} × {num(per)} / ({gpus:,} · {num(peak)}) = {m:.1%}",
                  f"{num(tokens_per_second)} tokens/s measured on the {gpus:,} GPUs (--tokens-per-second)")
    return r


def _other_utilisation(r: Report, metric: str, util: float, model: float, executed: float,
                       recompute: str) -> None:
    """The utilisation not given, for the same wall time: they differ by executed / model."""
    if recompute == "none":
        return
    if metric == "MFU":
        h = util * executed / model
        r.add("hfu", h, f"{h:.1%}", f"MFU × executed / model = {num(util)} × {num(executed)} / "
              f"{num(model)} = {h:.1%}", "the same wall time seen as executed FLOP/s")
    else:
        m = util * model / executed
        r.add("mfu", m, f"{m:.1%}", f"HFU × model / executed = {num(util)} × {num(model)} / "
              f"{num(executed)} = {m:.1%}", "the same wall time seen as model FLOP/s")


def _tokens_for_budget(r: Report, spec: ModelSpec, peak: float, util: float, metric: str,
                       gpus: int, days: float, per_token: float, counted: str) -> Report:
    """A model and a GPU budget: how many tokens it trains on, against Chinchilla's count."""
    r.add("gpus", gpus, f"{gpus:,}")
    r.add("days", days, f"{days:g}")
    budget = gpus * peak * util * days * SECONDS_PER_DAY
    r.add("executed flops" if metric == "HFU" else "training flops", budget, flops_text(budget),
          f"{counted} = n · peak · {metric} · days · 86,400 s = {gpus:,} · {num(peak)} · {num(util)} "
          f"· {num(days)} · 86,400 = {num(budget)}")
    tokens = budget / per_token
    r.add("tokens", tokens, count_text(tokens),
          f"{counted} / per token = {num(budget)} / {num(per_token)} = {num(tokens)}")
    active = count(spec).active
    ratio = tokens / active
    r.add("tokens per parameter", ratio, f"{ratio:,.1f} (Chinchilla: 20)",
          f"tokens / N_active = {num(tokens)} / {num(active)} = {ratio:,.1f}", flops.CHINCHILLA_ACTIVE)
    return r


def _budget(r: Report, peak: float, util: float, metric: str, gpus: int, days: float,
            recompute: str) -> Report:
    """No model: the compute a budget buys and the Chinchilla-optimal model and tokens for it."""
    r.add("gpus", gpus, f"{gpus:,}")
    r.add("days", days, f"{days:g}")
    raw = gpus * peak * util * days * SECONDS_PER_DAY
    r.add("gpu hours", gpus * days * 24, f"{gpus * days * 24:,.0f}",
          f"n · days · 24 = {gpus:,} · {num(days)} · 24 = {gpus * days * 24:,.0f}")
    factor = BUDGET_EXECUTED_PER_MODEL[recompute] if metric == "HFU" else 1.0
    compute = raw / factor
    if factor != 1.0:
        r.add("executed flops", raw, flops_text(raw),
              f"C_executed = n · peak · HFU · days · 86,400 s = {gpus:,} · {num(peak)} · {num(util)} "
              f"· {num(days)} · 86,400 = {num(raw)}")
        working = f"C = C_executed · 6/8 = {num(raw)} · 6/8 = {num(compute)}"
        why = "full recomputation executes 8·N FLOPs per token for 6·N of model FLOPs"
    else:
        working = (f"C = n · peak · {metric} · days · 86,400 s = {gpus:,} · {num(peak)} · {num(util)} "
                   f"· {num(days)} · 86,400 = {num(compute)}")
        why = "" if recompute == "none" else "without a model, attention is not counted: recomputing it adds nothing"
    r.add("training flops", compute, flops_text(compute), working, "model FLOPs, C = 6·N·D", why)
    n = flops.chinchilla_params(compute)
    r.add("chinchilla params", n, count_text(n),
          f"N = sqrt(C / (6 · 20)) = sqrt({num(compute)} / 120) = {num(n)}",
          "C = 6·N·D: 2 FLOPs per parameter and token forward, 4 backward; attention not counted",
          flops.CHINCHILLA_ACTIVE, "for an MoE, N is the active parameters")
    tokens = flops.chinchilla_tokens(n)
    r.add("chinchilla tokens", tokens, count_text(tokens),
          f"D = 20 · N = 20 · {num(n)} = {num(tokens)}", flops.CHINCHILLA_ACTIVE)
    return r
