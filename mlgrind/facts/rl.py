"""Seed question "RL training: reason through async vs sync training; estimate throughput for
both cases" (sheet 16).

Every throughput, split and idle fraction is the calculator's (`mlgrind.calc.rl`: `report`,
`throughput`, `best_split`), the same functions `mlgrind calc rl` prints, so a sheet, a card and
the command line cannot disagree; the tests run the command and compare. What the calculator
folds into one line, this module opens up:

    generation rate g    B_gen rollouts ÷ one decode step ÷ the GPUs of the smallest replica
                         that holds them: the step `calc serve` times (`inference.Serving`),
                         its weights and its KV cache read at the trainer's efficiency
    training rate r      peak · MFU ÷ (3 × forward FLOPs per token), `flops.training_flops_per_token`
    pools                n_g·g and n_t·r, each pool's idle share, the balanced rate n·g·r/(g+r)

The question's defaults are the sheet's: Llama-3-8B on 64 H100 SXM, rollouts of 4,096 tokens
decoded 64 at a time, 40 % of the bf16 peak and of HBM bandwidth for both jobs, a tail (longest
÷ mean rollout) of 2.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from ..calc import flops as calc_flops
from ..calc import hardware as hw_table
from ..calc import inference
from ..calc import rl as calc_rl
from ..calc.params import count
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from .core import calc, int_arg, is_int, shown, si_text, table, text_arg

MODEL, HARDWARE = "llama-3-8b", "h100-sxm"
GPUS, TAIL, GEN_BATCH, CONTEXT, MFU = 64, 2, 64, 4096, 0.4
MAX_GPUS = 1 << 20
MAX_TAIL = 100.0
MAX_GEN_BATCH = 1 << 16
MAX_ROWS = 8
WORST_MODEL = "deepseek-v3"  # MoE and MLA: the costliest decode step the calculator models


# Arguments, each checked before any work ---------------------------------------------------


def _spec(model: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", model) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {shown(model)}")
    return load_model(model)


def _gpu(hardware: Any) -> hw_table.Hardware:
    known = hw_table.load_all()
    if text_arg("hardware", hardware) not in known:
        raise ValueError(f"hardware must be one of {', '.join(known)}; got {shown(hardware)}")
    return known[hardware]


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if text_arg(name, value) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value


def _rows(name: str, value: Any) -> tuple:
    if not (isinstance(value, tuple) and 1 <= len(value) <= MAX_ROWS):
        raise ValueError(f"{name} is a tuple of one to {MAX_ROWS} values; got {shown(value)}")
    return value


# The question and the calculator's answer ---------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The question, `calc rl`'s throughputs for it, and the steps its lines fold away."""

    spec: ModelSpec
    hw: hw_table.Hardware
    gpus: int
    gen_batch: int
    context: int
    mfu: float
    t: calc_rl.RLThroughput
    replica_gpus: int  # the smallest replica that holds the rollouts' cache beside the weights
    step: inference.Step  # one decode step of gen_batch rollouts on it
    train_flops_per_token: float

    @property
    def g(self) -> float:
        return self.t.gen_rate

    @property
    def r(self) -> float:
        return self.t.train_rate


def generation_replica(spec: ModelSpec, hw: hw_table.Hardware, gen_batch: int, context: int,
                       mfu: float) -> tuple[int, inference.Step]:
    """The decode step `calc rl` times for its generation rate: `gen_batch` rollouts with
    `context` cached tokens each, on the smallest replica (1, 2, 4, … GPUs) whose memory holds
    the weights and their cache, its kernels at `mfu` of the peak and of HBM bandwidth."""
    serving = inference.Serving(spec, hw, gen_batch, 1.0, context, mfu=mfu, mbu=mfu)
    for n in (2**i for i in range(inference.MAX_GPUS_PER_REPLICA.bit_length())):
        plan = serving.plan(n, gen_batch)
        if plan.fits:
            return n, plan.step
    raise ValueError(f"{gen_batch:,} rollouts of {context:,} tokens do not fit beside {spec.name}'s "
                     f"weights on up to {inference.MAX_GPUS_PER_REPLICA} {hw.key}")


def answer(model: Any = MODEL, hardware: Any = HARDWARE, gpus: Any = GPUS, tail: Any = TAIL,
           gen_batch: Any = GEN_BATCH, context: Any = CONTEXT, mfu: Any = MFU,
           gen_gpus: Any = None) -> Answer:
    """The question, checked, and `calc rl`'s answer to it."""
    spec, hw = _spec(model), _gpu(hardware)
    gpus = int_arg("gpus", gpus, 2, MAX_GPUS)
    tail = _number("tail", tail, 1, MAX_TAIL)
    gen_batch = int_arg("gen_batch", gen_batch, 1, MAX_GEN_BATCH)
    context = int_arg("context", context, 1, spec.context)
    mfu = _number("mfu", mfu, 0.01, 1)
    if gen_gpus is not None:
        gen_gpus = int_arg("gen_gpus", gen_gpus, 1, gpus - 1)
    return _answer(spec.name, hw.key, gpus, tail, gen_batch, context, mfu, gen_gpus)


@functools.lru_cache(maxsize=64)
def _answer(model: str, hardware: str, gpus: int, tail: float, gen_batch: int, context: int,
            mfu: float, gen_gpus: int | None) -> Answer:
    spec, hw = load_model(model), hw_table.load(hardware)
    try:
        report = calc_rl.report(spec, hw, gpus, None, None, gen_batch, context, mfu, tail, gen_gpus)
    except SpecError as error:
        raise ValueError(str(error)) from None
    values = {line.key: line.value for line in report.lines}
    g, r = values["generation_rate_per_gpu"], values["training_rate_per_gpu"]
    replica, step = generation_replica(spec, hw, gen_batch, context, mfu)
    return Answer(spec, hw, gpus, gen_batch, context, mfu,
                  calc_rl.throughput(gpus, g, r, tail, gen_gpus), replica, step,
                  calc_flops.training_flops_per_token(spec, context))


# Numbers as the sheet prints them -----------------------------------------------------------


def rate_text(x: float) -> str:
    """Tokens per second: whole with separators from 100 up, three digits below (as `calc rl`)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def percent(x: float) -> str:
    """An idle share: `45 %`, `0.5 %`, `0 %`."""
    p = 100 * x
    return f"{p:.0f} %" if p >= 1 or p == 0 else f"{p:.1g} %"


def times(x: float) -> str:
    return f"{x:.3g}×"


def seconds_text(s: float) -> str:
    return f"{s:.3g} s" if s >= 1 else f"{s * 1e3:.3g} ms"


def _balanced(a: Answer) -> float:
    """Every GPU busy, no tail: n GPUs share 1/g + 1/r GPU-seconds per token."""
    return a.gpus * a.g * a.r / (a.g + a.r)


RL_VALUES = {  # what: (the value off the answer, how it reads); `calc rl --json` keys first
    "generation_rate_per_gpu": (lambda a: a.g, rate_text),
    "training_rate_per_gpu": (lambda a: a.r, rate_text),
    "gen_gpus": (lambda a: a.t.gen_gpus, "{:,}".format),
    "train_gpus": (lambda a: a.t.train_gpus, "{:,}".format),
    "split": (lambda a: (a.t.gen_gpus, a.t.train_gpus), lambda s: f"{s[0]:,} + {s[1]:,}"),
    "colocated_sync": (lambda a: a.t.colocated_sync, rate_text),
    "colocated_sync_idle": (lambda a: a.t.idle(a.t.colocated_sync), percent),
    "split_sync": (lambda a: a.t.split_sync, rate_text),
    "split_sync_idle": (lambda a: a.t.idle(a.t.split_sync), percent),
    "split_async": (lambda a: a.t.split_async, rate_text),
    "split_async_idle": (lambda a: a.t.idle(a.t.split_async), percent),
    "async_speedup_over_split_sync": (lambda a: a.t.split_async / a.t.split_sync, times),
    # What the calculator's lines hold inside their working:
    "split_sync_gen_idle": (lambda a: a.t.split_sync_gen_idle, percent),
    "split_sync_train_idle": (lambda a: a.t.split_sync_train_idle, percent),
    "split_async_gen_idle": (lambda a: a.t.split_async_gen_idle, percent),
    "split_async_train_idle": (lambda a: a.t.split_async_train_idle, percent),
    "gen_pool": (lambda a: a.t.gen_gpus * a.g, rate_text),
    "train_pool": (lambda a: a.t.train_gpus * a.r, rate_text),
    "async_over_colocated": (lambda a: a.t.split_async / a.t.colocated_sync, times),
    "balanced": (lambda a: _balanced(a), rate_text),
    "gen_share": (lambda a: a.r / (a.g + a.r), percent),
    "rate_ratio": (lambda a: a.r / a.g, lambda x: f"{x:.3g}"),
    "tail_idle": (lambda a: 1 - 1 / a.t.tail, percent),
    # The steps behind g and r:
    "replica_gpus": (lambda a: a.replica_gpus, "{:,}".format),
    "decode_step": (lambda a: a.step.seconds, seconds_text),
    "decode_weight_bytes": (lambda a: a.step.weights.bytes, lambda b: si_text(b, "B")),
    "decode_cache_bytes": (lambda a: a.step.attention.bytes, lambda b: si_text(b, "B")),
    "train_flops_per_token": (lambda a: a.train_flops_per_token, lambda f: si_text(f, "FLOP")),
    "step_over_forward": (lambda a: a.train_flops_per_token
                          / calc_flops.forward_flops_per_token(a.spec, a.context), "{:.3g}".format),
    # The wrong answer: generation sized by its FLOPs, as if decode were compute-bound.
    "gen_rate_if_compute_bound": (lambda a: a.hw.bf16_flops * a.mfu / (a.step.flops / a.gen_batch),
                                  rate_text),
    "peak": (lambda a: a.hw.bf16_flops, lambda f: si_text(f, "FLOP/s")),
    "bandwidth": (lambda a: a.hw.hbm_bw, lambda b: si_text(b, "B/s")),
    "weights": (lambda a: count(a.spec).total * 2, lambda b: si_text(b, "B")),  # bf16, pushed each step
}

_ALL_WORST = [
    f"rl_value('decode_step', '{WORST_MODEL}', 'mi300x', {MAX_GPUS}, {MAX_TAIL:g}, 1, 163840, 0.01)",
    f"rl_value('split_async', 'llama-3.1-405b', 'mi300x', {MAX_GPUS}, 1, {MAX_GEN_BATCH}, 1, 1.0)",
]


@calc(worst=_ALL_WORST)
def rl_value(what: str, model: str = MODEL, hardware: str = HARDWARE, gpus: int = GPUS,
             tail: float = TAIL, gen_batch: int = GEN_BATCH, context: int = CONTEXT,
             mfu: float = MFU, gen_gpus: int | None = None) -> str:
    """One number of `calc rl`'s answer (`what`: its JSON key, or a step of its working), as the
    sheet prints it. Without `gen_gpus` the split is the one that balances the pools."""
    value, text = RL_VALUES[_choice("what", what, tuple(RL_VALUES))]
    return text(value(answer(model, hardware, gpus, tail, gen_batch, context, mfu, gen_gpus)))


# The three layouts, substituted -------------------------------------------------------------

LAYOUTS = ("colocated sync", "split sync", "split async")


def layout_formula(a: Answer, layout: str) -> str:
    """The layout's throughput with its numbers, as `calc rl` substitutes them."""
    t, g, r = a.t, rate_text(a.g), rate_text(a.r)
    tail = f"{t.tail:g}"
    if layout == "colocated sync":
        return f"{a.gpus:,} / ({tail}/{g} + 1/{r})"
    if layout == "split sync":
        return f"1 / ({tail}/({t.gen_gpus:,}·{g}) + 1/({t.train_gpus:,}·{r}))"
    return f"min({t.gen_gpus:,}·{g}, {t.train_gpus:,}·{r})"


def _layout_value(a: Answer, layout: str) -> float:
    return {"colocated sync": a.t.colocated_sync, "split sync": a.t.split_sync,
            "split async": a.t.split_async}[layout]


@calc(worst=[w.replace("rl_value('decode_step'", "rl_formula('split sync'")
             .replace("rl_value('split_async'", "rl_formula('split async'") for w in _ALL_WORST])
def rl_formula(layout: str, model: str = MODEL, hardware: str = HARDWARE, gpus: int = GPUS,
               tail: float = TAIL, gen_batch: int = GEN_BATCH, context: int = CONTEXT,
               mfu: float = MFU, gen_gpus: int | None = None) -> str:
    """`layout`'s throughput formula with the question's numbers, `= result` tokens/s."""
    layout = _choice("layout", layout, LAYOUTS)
    a = answer(model, hardware, gpus, tail, gen_batch, context, mfu, gen_gpus)
    return f"{layout_formula(a, layout)} = {rate_text(_layout_value(a, layout))}"


_WHERE_IDLE = {
    "colocated sync": "the tail only",
    "split sync": "the other pool's turn; the tail",
    "split async": "the faster pool",
}


@table(worst=[f"rl_layouts_table('{WORST_MODEL}', 'mi300x', {MAX_GPUS}, {MAX_TAIL:g}, 1, 4096, 0.01)"])
def rl_layouts_table(model: str = MODEL, hardware: str = HARDWARE, gpus: int = GPUS,
                     tail: float = TAIL, gen_batch: int = GEN_BATCH, context: int = CONTEXT,
                     mfu: float = MFU) -> list[list[str]]:
    """Per layout: its throughput substituted, tokens/s, the idle share of all GPU-seconds and
    of each pool's, and where the idle time goes."""
    a = answer(model, hardware, gpus, tail, gen_batch, context, mfu)
    t = a.t
    pools = {"colocated sync": "", "split sync": (t.split_sync_gen_idle, t.split_sync_train_idle),
             "split async": (t.split_async_gen_idle, t.split_async_train_idle)}
    rows = []
    for layout in LAYOUTS:
        x = _layout_value(a, layout)
        pool = pools[layout]
        rows.append([f"**{layout}**", layout_formula(a, layout), f"**{rate_text(x)}**",
                     percent(t.idle(x)), f"{percent(pool[0])} / {percent(pool[1])}" if pool else "—",
                     _WHERE_IDLE[layout]])
    return rows


@table(worst=[(f"rl_tail_table((1, 1.5, 2, 3, 5, 10, 50, {MAX_TAIL:g}), '{WORST_MODEL}', "
               f"'mi300x', {MAX_GPUS}, 1, 4096, 0.01)")])
def rl_tail_table(tails: tuple = (1, 1.5, 2, 3), model: str = MODEL, hardware: str = HARDWARE,
                  gpus: int = GPUS, gen_batch: int = GEN_BATCH, context: int = CONTEXT,
                  mfu: float = MFU) -> list[list[str]]:
    """Per tail (longest ÷ mean rollout, the first column: an input): each layout's tokens/s and
    async over colocated sync. The split is the balanced one, whatever the tail."""
    tails = [_number("a tail", tail, 1, MAX_TAIL) for tail in _rows("tails", tails)]
    rows = []
    for tail in tails:
        a = answer(model, hardware, gpus, tail, gen_batch, context, mfu)
        t = a.t
        rows.append([f"{tail:g}", rate_text(t.colocated_sync),
                     rate_text(t.split_sync), rate_text(t.split_async),
                     times(t.split_async / t.colocated_sync)])
    return rows


@table(worst=[(f"rl_split_table(({', '.join(str(n) for n in range(1, MAX_ROWS + 1))}), "
               f"'{WORST_MODEL}', 'mi300x', {MAX_GPUS}, {MAX_TAIL:g}, 1, 4096, 0.01)")])
def rl_split_table(gen_gpus: tuple = (40, 48, 52, 56), model: str = MODEL,
                   hardware: str = HARDWARE, gpus: int = GPUS, tail: float = TAIL,
                   gen_batch: int = GEN_BATCH, context: int = CONTEXT,
                   mfu: float = MFU) -> list[list[str]]:
    """Per number of generating GPUs (the first column: an input): the training GPUs, each
    pool's rate, async's tokens/s (the slower pool's) and which pool waits."""
    splits = [int_arg("gen_gpus", n_g, 1, MAX_GPUS) for n_g in _rows("gen_gpus", gen_gpus)]
    rows = []
    for n_g in splits:
        a = answer(model, hardware, gpus, tail, gen_batch, context, mfu, n_g)
        t = a.t
        gen, train = t.gen_gpus * a.g, t.train_gpus * a.r
        waits = "trainers wait" if gen < train else "generators wait" if train < gen else "none"
        best = n_g == calc_rl.best_split(a.gpus, a.g, a.r)
        cell = f"**{rate_text(t.split_async)}**" if best else rate_text(t.split_async)
        rows.append([f"{n_g:,}", f"{t.train_gpus:,}", rate_text(gen), rate_text(train), cell, waits])
    return rows


def step_times(a: Answer, tokens: float) -> dict[str, float]:
    """Seconds of each phase of one step of `tokens` trained tokens: generating (busy, then the
    tail) and training, for each layout; and a step of each layout, `tokens` ÷ its throughput."""
    t, n = a.t, a.gpus
    if not (is_int(tokens) or isinstance(tokens, float)) or not 0 < tokens < math.inf:
        raise ValueError(f"tokens must be a positive number, got {shown(tokens)}")
    return {
        "colocated_gen": tokens / (n * a.g), "colocated_train": tokens / (n * a.r),
        "split_gen": tokens / (t.gen_gpus * a.g), "split_train": tokens / (t.train_gpus * a.r),
        "colocated_step": tokens / t.colocated_sync, "split_sync_step": tokens / t.split_sync,
        "split_async_step": tokens / t.split_async,
    }
