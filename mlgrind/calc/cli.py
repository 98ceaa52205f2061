"""`mlgrind calc`: the calculators on the command line, as tables or JSON.

Every topic prints one table of (quantity, value) rows; `--json` prints instead one object whose
keys are the rows' snake_case names, values in base units (parameters, FLOPs, bytes, seconds,
tokens/s), plus `model` and, where used, `hardware`. Exit status: 0, 1 for a bad config or an
impossible request (one line on stderr), 2 for a usage error.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import textwrap
from pathlib import Path

import click

from mlgrind.calc import flops as F
from mlgrind.calc import hardware as hw_table
from mlgrind.calc import specs
from mlgrind.calc.params import count
from mlgrind.calc.working import Report, count_text, dur, flops_text, gb, size, table_text, terminal_width

TOPICS = "params flops train memory comms kv serve rl"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _guard(command):
    """A SpecError (bad config, impossible request) ends in one line and exit 1."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except specs.SpecError as error:
            _fail(str(error))
    return run


def _spec(model: str | None, config: Path | None) -> specs.ModelSpec:
    if (model is None) == (config is None):
        raise click.UsageError("give exactly one of --model NAME or --config PATH")
    return specs.load_model(model) if model else specs.load_config(config)


def model_options(command):
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(command)
    command = click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
                           help="A Hugging Face config.json of your own.")(command)
    command = click.option("--model", metavar="NAME",
                           help="A bundled model (see `mlgrind calc models`).")(command)
    return command


def hw_option(command):
    return click.option("--hw", default="h100-sxm", show_default=True, metavar="NAME",
                        help="Accelerator (see `mlgrind calc hardware`).")(command)


# ----------------------------------------------------------------------------- options


class Number(click.ParamType):
    """A finite float above `low` (or at it, unless `open_`): `nan`, `inf` and `0` where zero
    makes no sense are usage errors, not tracebacks or nonsense answers further down."""

    name = "number"

    def __init__(self, low: float = 0.0, open_: bool = True, high: float | None = None):
        self.low, self.open_, self.high = low, open_, high

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if x < self.low or (self.open_ and x == self.low):
            self.fail(f"{value!r} must be {'above' if self.open_ else 'at least'} {self.low:g}", param, ctx)
        if self.high is not None and x > self.high:
            self.fail(f"{value!r} must be at most {self.high:g}", param, ctx)
        return x


POSITIVE = Number()
FRACTION = Number(0, True, 1)  # MFU, usable memory: (0, 1]
COUNT = click.IntRange(1, 2**53)  # beyond 2^53 a count is no longer exact as a float


def _show(report: Report, as_json: bool) -> None:
    click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False) if as_json else report.as_text())


def _emit(title: str, rows: list[tuple[str, str, object]], as_json: bool, **extra) -> None:
    """rows: (label, shown value, JSON value), shown without their working."""
    report = Report(title, context=extra)
    for label, shown, value in rows:
        report.add(label, value, shown)
    _show(report, as_json)


# ----------------------------------------------------------------------------- the group


@click.group("calc", context_settings={"help_option_names": ["-h", "--help"]})
def calc() -> None:
    """Back-of-envelope calculators from real model configs.

    \b
    Topics: params, flops, train, memory, comms, kv, serve, rl
    Lists:  models (bundled configs), hardware (bundled accelerators)

    \b
    mlgrind calc params --model llama-2-7b
    mlgrind calc train --model llama-3-70b --tokens 15e12 --gpus 16384 --mfu 0.4
    mlgrind calc memory --model llama-3-70b --tp 8 --pp 4 --dp 32 --zero 1 --sp
    mlgrind calc serve --config ./config.json --hw h200 --users 10000 --json
    """


@calc.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_guard
def models_command(as_json: bool) -> None:
    """List the bundled model configs and their sources."""
    loaded = [specs.load_model(name) for name in specs.model_names()]
    if as_json:
        click.echo(json.dumps([{"name": s.name, "model_type": s.model_type, "params": count(s).total,
                                "active_params": count(s).active, "source": s.source} for s in loaded], indent=2))
        return
    rows = [[s.name, s.model_type, f"{count(s).total / 1e9:,.2f}", f"{count(s).active / 1e9:,.2f}",
             str(s.n_layers), str(s.D), f"{s.H}/{s.G}"] for s in loaded]
    click.echo(table_text("bundled models (parameters in billions)",
                          ["name", "type", "params B", "active B", "layers", "D", "heads H/G"], rows))
    for s in loaded:
        click.echo(textwrap.fill(f"{s.name}: {s.source}", terminal_width(), subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False))


@calc.command("hardware")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_guard
def hardware_command(as_json: bool) -> None:
    """List the bundled accelerators (dense peaks; bandwidths per direction) and sources."""
    table_ = hw_table.load_all()
    if as_json:
        click.echo(json.dumps({k: h.__dict__ for k, h in table_.items()}, indent=2))
        return
    def opt(x, scale):
        return "—" if x is None else f"{x / scale:,.4g}"
    rows = [[h.key, opt(h.bf16_flops, 1e12), opt(h.fp8_flops, 1e12), opt(h.hbm_bytes, 1e9),
             opt(h.hbm_bw, 1e12), opt(h.nvlink_bw, 1e9), opt(h.network_bw, 1e9)] for h in table_.values()]
    click.echo(table_text("bundled accelerators (dense peaks; bandwidths per direction)",
                          ["key", "bf16 TFLOP/s", "fp8 TFLOP/s", "HBM GB", "HBM TB/s", "NVLink GB/s",
                           "network GB/s"], rows))
    for h in table_.values():
        click.echo(textwrap.fill(f"{h.key} ({h.name}): {h.source}", terminal_width(), subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False))


@calc.command("params")
@model_options
@_guard
def params_command(model, config, as_json) -> None:
    """Exact parameter counts: total, active (MoE), embedding vs non-embedding, by module."""
    from mlgrind.calc import params

    _show(params.report(_spec(model, config)), as_json)


@calc.command("flops")
@model_options
@click.option("--seq-len", type=click.IntRange(1), default=2048, show_default=True)
@click.option("--tokens", type=float, help="Training tokens  [default: 20 × active params]")
@click.option("--recompute", is_flag=True, help="Full activation recomputation (4 × forward).")
@_guard
def flops_command(model, config, as_json, seq_len, tokens, recompute) -> None:
    """FLOPs per layer, per token and for a training run (BWD = 2 × FWD, step = 3 × FWD)."""
    s = _spec(model, config)
    c = count(s)
    tokens = F.chinchilla_tokens(c.active) if tokens is None else tokens
    rows = []
    kinds = [("dense layer", False)] * bool(s.dense_layers) + [("MoE layer", True)] * bool(s.moe_layers)
    for kind, moe in kinds:
        for part, v in F.layer_forward_flops(s, 1, seq_len, moe).items():
            rows.append((f"{kind} fwd {part}", flops_text(v), v))
    per_token = F.training_flops_per_token(s, seq_len, recompute)
    rows += [
        ("forward per token", flops_text(F.forward_flops_per_token(s, seq_len)), F.forward_flops_per_token(s, seq_len)),
        ("training per token", flops_text(per_token), per_token),
        ("6N per token", flops_text(6 * c.matmul_per_token), 6 * c.matmul_per_token),
        ("tokens", count_text(tokens), tokens),
        ("training total", flops_text(tokens * per_token), tokens * per_token),
        ("chinchilla tokens active", count_text(F.chinchilla_tokens(c.active)), F.chinchilla_tokens(c.active)),
        ("chinchilla tokens total", count_text(F.chinchilla_tokens(c.total)), F.chinchilla_tokens(c.total)),
    ]
    _emit(f"{s.name}: FLOPs at sequence {seq_len}", rows, as_json, model=s.name)


@calc.command("train")
@model_options
@hw_option
@click.option("--tokens", type=float, help="Training tokens  [default: 20 × active params]")
@click.option("--seq-len", type=click.IntRange(1), default=2048, show_default=True)
@click.option("--gpus", type=click.IntRange(1), help="GPUs: how many days?")
@click.option("--days", type=float, help="Days: how many GPUs?")
@click.option("--mfu", type=click.FloatRange(0, 1, min_open=True), default=0.4, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp8"]), default="bf16", show_default=True)
@click.option("--tokens-per-second", type=float, help="A measured throughput on --gpus: report its MFU.")
@_guard
def train_command(model, config, as_json, hw, tokens, seq_len, gpus, days, mfu, dtype, tokens_per_second) -> None:
    """Training time: GPUs × days from tokens, hardware and MFU; MFU from a throughput."""
    from mlgrind.calc import train as T

    s, h = _spec(model, config), hw_table.load(hw)
    if (gpus is None) == (days is None):
        raise click.UsageError("give exactly one of --gpus N or --days D")
    tokens = F.chinchilla_tokens(count(s).active) if tokens is None else tokens
    total = F.training_flops(s, tokens, seq_len)
    peak = h.peak(dtype)
    rows = [("tokens", count_text(tokens), tokens), ("training flops", flops_text(total), total),
            ("gpu hours", f"{T.gpu_hours(total, peak, mfu):,.0f}", T.gpu_hours(total, peak, mfu))]
    if gpus is not None:
        d = T.training_days(total, gpus, peak, mfu)
        rows.append(("days", f"{d:,.1f} on {gpus:,} × {h.key}", d))
    else:
        g = T.gpus_for_days(total, days, peak, mfu)
        rows.append(("gpus", f"{g:,} × {h.key} for {days:g} days", g))
    if tokens_per_second is not None:
        if gpus is None:
            raise click.UsageError("--tokens-per-second needs --gpus (the GPUs that measured it)")
        m = T.mfu(tokens_per_second, F.training_flops_per_token(s, seq_len), gpus, peak)
        rows.append(("measured mfu", f"{m:.1%}", m))
    _emit(f"{s.name}: training on {h.name} at {mfu:.0%} MFU", rows, as_json, model=s.name, hardware=h.key)


def parallel_options(command):
    for name, text in [("cp", "context"), ("ep", "expert"), ("pp", "pipeline"), ("tp", "tensor"), ("dp", "data")]:
        command = click.option(f"--{name}", type=click.IntRange(1), default=1, show_default=True,
                               help=f"{text.capitalize()}-parallel size.")(command)
    command = click.option("--zero", type=click.IntRange(0, 3), default=0, show_default=True,
                           help="ZeRO stage over the data-parallel ranks (3 = FSDP).")(command)
    command = click.option("--micro-batch", type=click.IntRange(1), default=1, show_default=True)(command)
    command = click.option("--microbatches", type=click.IntRange(1), default=1, show_default=True,
                           help="Micro-batches per step (pipeline).")(command)
    command = click.option("--seq-len", type=click.IntRange(1), default=2048, show_default=True)(command)
    command = click.option("--sp", is_flag=True, help="Sequence parallelism with TP.")(command)
    return command


@calc.command("memory")
@model_options
@hw_option
@parallel_options
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True)
@click.option("--precision", type=click.Choice(["mixed", "fp32", "bf16"]), default="mixed", show_default=True,
              help="mixed: 2+2+12 bytes/param (bf16 + fp32 Adam).")
@_guard
def memory_command(model, config, as_json, hw, dp, tp, pp, ep, cp, zero, micro_batch, microbatches,
                   seq_len, sp, recompute, precision) -> None:
    """Training memory per rank: params, grads, optimizer, activations (Korthikanti et al. 2022)."""
    from mlgrind.calc.memory import Parallel, memory_per_rank

    s, h = _spec(model, config), hw_table.load(hw)
    m = memory_per_rank(s, Parallel(dp, tp, pp, ep, cp), zero, micro_batch, seq_len, recompute, sp,
                        precision, microbatches)
    rows = [(label, gb(v), v) for label, v in [("params", m.params), ("grads", m.grads),
            ("optimizer", m.optimizer), ("activations", m.activations), ("total", m.total)]]
    rows.append(("fits", f"{'yes' if m.total <= h.hbm_bytes else 'no'} ({h.hbm_bytes / 1e9:g} GB {h.key})",
                 m.total <= h.hbm_bytes))
    _emit(f"{s.name}: memory per rank, {dp * tp * pp * cp} GPUs", rows, as_json, model=s.name, hardware=h.key)


@calc.command("comms")
@model_options
@hw_option
@parallel_options
@click.option("--latency", type=float, default=0.0, show_default=True,
              help="α: seconds per ring step (β comes from --hw's NVLink / network).")
@_guard
def comms_command(model, config, as_json, hw, dp, tp, pp, ep, cp, zero, micro_batch, microbatches,
                  seq_len, sp, latency) -> None:
    """Collectives of one training step: tensors, bytes per rank, α-β ring time."""
    from mlgrind.calc.comms import row_seconds, step_collectives
    from mlgrind.calc.memory import Parallel

    s, h = _spec(model, config), hw_table.load(hw)
    rows = step_collectives(s, Parallel(dp, tp, pp, ep, cp), micro_batch, seq_len, microbatches,
                            zero, sp, h.gpus_per_node)
    timed = [(r, row_seconds(r, h.nvlink_bw, h.network_bw, latency)) for r in rows]
    if as_json:
        click.echo(json.dumps({"model": s.name, "hardware": h.key, "collectives": [
            {**r.__dict__, "bytes_per_rank": r.bytes_per_rank, "seconds": t} for r, t in timed]}, indent=2))
        return
    rows = [[r.parallelism, r.collective, r.tensor, str(r.group), size(r.n_bytes), f"{r.calls:,}",
             size(r.bytes_per_rank), "NVLink" if r.intra_node else "network", dur(t)] for r, t in timed]
    if not rows:
        click.echo("no communication: every group has one rank")
        return
    click.echo(table_text(f"{s.name}: one training step on {h.key}",
                          ["parallelism", "collective", "tensor", "ranks", "tensor bytes", "calls",
                           "sent per rank", "link", "time"], rows))


BYTES = Number(0.125, False, 8)  # bytes per number: one bit to fp64


@calc.command("kv")
@model_options
@click.option("--context", type=COUNT, help="Tokens per sequence  [default: the model's]")
@click.option("--batch", type=COUNT, default=1, show_default=True)
@click.option("--kv-bytes", type=BYTES, default=2.0, show_default=True, help="Bytes per cached number.")
@_guard
def kv_command(model, config, as_json, context, batch, kv_bytes) -> None:
    """KV-cache bytes per token, per sequence and per batch (MHA, GQA or MLA)."""
    from mlgrind.calc import inference

    _show(inference.kv_report(_spec(model, config), context, batch, kv_bytes), as_json)


@calc.command("serve")
@model_options
@hw_option
@click.option("--users", type=COUNT, default=10_000, show_default=True, help="Concurrent users, all decoding.")
@click.option("--tokens-per-second", type=POSITIVE, default=20.0, show_default=True, help="Target per user.")
@click.option("--context", type=COUNT, default=4096, show_default=True, help="Cached tokens per user.")
@click.option("--prompt", type=COUNT, default=2048, show_default=True, help="Prompt for prefill latency.")
@click.option("--gpus", type=COUNT, help="GPUs per replica (tensor-parallel)  [default: fewest GPUs in all]")
@click.option("--tp", type=COUNT, help="Tensor-parallel size of a replica: the same as --gpus.")
@click.option("--batch", type=COUNT, help="Users a replica decodes at once  [default: largest that fits and "
              "meets the target]")
@click.option("--weight-bytes", type=BYTES, default=2.0, show_default=True, help="Bytes per weight.")
@click.option("--kv-bytes", type=BYTES, default=2.0, show_default=True, help="Bytes per cached number.")
@click.option("--usable-memory", type=FRACTION, default=0.9, show_default=True,
              help="Fraction of HBM for weights and cache.")
@click.option("--mfu", type=FRACTION, default=1.0, show_default=True, help="Fraction of the bf16 peak reached.")
@click.option("--mbu", type=FRACTION, default=1.0, show_default=True, help="Fraction of HBM bandwidth reached.")
@click.option("--alpha", type=Number(0, False, 1), default=0.8, show_default=True,
              help="Speculative acceptance rate, 0 to 1.")
@click.option("--gamma", type=COUNT, default=4, show_default=True, help="Drafted tokens per step.")
@click.option("--draft-cost", type=Number(0, False), default=0.05, show_default=True,
              help="Draft call / target call, at least 0.")
@_guard
def serve_command(model, config, as_json, hw, users, tokens_per_second, context, prompt, gpus, tp, batch,
                  weight_bytes, kv_bytes, usable_memory, mfu, mbu, alpha, gamma, draft_cost) -> None:
    """Deploy for N users: memory per user, batch, decode step part by part, replicas, GPUs; prefill, critical
    batch, speculative speed-up. --gpus/--tp and --batch fix the deployment instead of choosing it."""
    from mlgrind.calc import inference

    if gpus and tp and gpus != tp:
        raise click.UsageError("--gpus and --tp both give the GPUs of a replica: give one (or the same)")
    _show(inference.serve_report(_spec(model, config), hw_table.load(hw), users, tokens_per_second, context,
                                 prompt, weight_bytes, kv_bytes, usable_memory, mfu, mbu, gpus or tp, batch,
                                 alpha, gamma, draft_cost), as_json)


@calc.command("rl")
@model_options
@hw_option
@click.option("--gpus", type=click.IntRange(2, 2**53), default=64, show_default=True)
@click.option("--gen-rate", type=POSITIVE, help="Generation tokens/s per GPU  [default: decode at --gen-batch]")
@click.option("--train-rate", type=POSITIVE, help="Training tokens/s per GPU  [default: from FLOPs at --mfu]")
@click.option("--gen-gpus", type=COUNT, help="GPUs that generate  [default: the split that balances the pools]")
@click.option("--gen-batch", type=COUNT, default=64, show_default=True)
@click.option("--context", type=COUNT, default=4096, show_default=True)
@click.option("--mfu", type=FRACTION, default=0.4, show_default=True)
@click.option("--tail", type=Number(1, False), default=1.0, show_default=True,
              help="Longest / mean rollout length (sync waits for the longest), at least 1.")
@_guard
def rl_command(model, config, as_json, hw, gpus, gen_rate, train_rate, gen_gpus, gen_batch, context, mfu,
               tail) -> None:
    """Synchronous vs asynchronous (one-step off-policy) RL throughput, and where GPUs idle."""
    from mlgrind.calc import rl

    _show(rl.report(_spec(model, config), hw_table.load(hw), gpus, gen_rate, train_rate, gen_batch, context,
                    mfu, tail, gen_gpus), as_json)
