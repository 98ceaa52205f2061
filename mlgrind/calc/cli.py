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

from mlgrind.calc import flops, specs
from mlgrind.calc import hardware as hw_table
from mlgrind.calc.params import count
from mlgrind.calc.working import Report, table_text, terminal_width

TOPICS = "params flops train memory comms kv serve rl plan"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _guard(command):
    """A SpecError (bad config, impossible request) ends in one line and exit 1; so does a
    result too large for a float, which only inputs far beyond any real model produce."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except specs.SpecError as error:
            _fail(str(error))
        except OverflowError:
            _fail("a result is beyond floating-point range: give smaller inputs")
    return run


def _spec(model: str | None, config: Path | None) -> specs.ModelSpec:
    if (model is None) == (config is None):
        raise click.UsageError("give exactly one of --model NAME or --config PATH")
    if model is None:
        return specs.load_config(config)
    if "/" in model or "\\" in model or model.lower().endswith(".json"):
        raise click.BadParameter(f"{model!r} is a path; --model takes a bundled name (see `mlgrind calc "
                                 "models`), a config.json of your own goes through --config", param_hint="--model")
    return specs.load_model(model)


def model_options(command):
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(command)
    command = click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
                           help=f"A Hugging Face config.json of your own (at most "
                                f"{specs.MAX_CONFIG_BYTES // 10**6} MB).")(command)
    command = click.option("--model", metavar="NAME",
                           help="A bundled model, any case (see `mlgrind calc models`).")(command)
    return command


def hw_option(command):
    return click.option("--hw", default="h100-sxm", show_default=True, metavar="NAME",
                        help="Accelerator: a key, an alias or a unique prefix, any case "
                             "(h100, mi300x, v5e; see `mlgrind calc hardware`).")(command)


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
PRECISIONS = ["mixed", "bf16-fp32-moments", "bf16", "fp32", "adam-8bit"]  # memory.RECIPES' keys


def _show(report: Report, as_json: bool) -> None:
    click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False) if as_json else report.as_text())


# ----------------------------------------------------------------------------- the group


@click.group("calc", context_settings={"help_option_names": ["-h", "--help"]})
def calc() -> None:
    """Back-of-envelope calculators from real model configs.

    \b
    Topics: params, flops, train, memory, comms, kv, serve, rl, plan
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
    """The bundled accelerators: dense peaks, memory, links and topology, ridge point, sources."""
    table_ = hw_table.load_all()
    if as_json:
        click.echo(json.dumps({k: h.as_json() for k, h in table_.items()}, indent=2, ensure_ascii=False))
        return

    def opt(x, scale):
        return "—" if x is None else f"{x / scale:,.4g}"
    rows = [[h.key, opt(h.bf16_flops, 1e12), opt(h.fp8_flops, 1e12), opt(h.hbm_bytes, 1e9),
             opt(h.hbm_bw, 1e12), opt(h.scale_up and h.scale_up.per_direction, 1e9),
             opt(h.network_bw, 1e9), f"{h.ops_per_byte:,.0f}"] for h in table_.values()]
    click.echo(table_text("bundled accelerators: dense peaks in TFLOP/s; links in GB/s per chip, "
                          "one direction; ridge in FLOP/B", ["key", "bf16", "fp8", "HBM GB", "HBM TB/s",
                          "scale-up", "network", "ridge"], rows))
    for h in table_.values():
        s = h.scale_up
        peaks = ", ".join(f"{d} {x / 1e12:,.4g}" for d, x in h.flops.items())
        facts = [f"dense peaks, TFLOP/s (int8: TOPS): {peaks}"]
        if s:
            reach = (f"torus, pod of {s.domain:,} chips, largest slice {'x'.join(map(str, s.torus))} = "
                     f"{s.reach:,} chips" if s.torus else f"{s.topology} of {s.domain:,} chips")
            facts.append(f"{s.name}: {s.links} links, {s.bandwidth / 1e9:,.4g} GB/s per chip both ways, {reach}")
        if h.network_bw:
            facts.append(f"network: {h.network_bw * 8 / 1e9:,.4g} Gbit/s per chip each way")
        facts += [f"aliases: {', '.join(h.aliases)}"] * bool(h.aliases) + [f"source: {h.source}"]
        click.echo(f"\n{h.key}: {h.name}")
        for fact in facts:
            click.echo(textwrap.fill(fact, terminal_width(), initial_indent="  ", subsequent_indent="    ",
                                     break_long_words=False, break_on_hyphens=False))
    click.echo("\n" + hw_table.report(table_).as_text())


@calc.command("params")
@model_options
@_guard
def params_command(model, config, as_json) -> None:
    """Exact parameter counts: total, active (MoE), embedding vs non-embedding, by module."""
    from mlgrind.calc import params

    _show(params.report(_spec(model, config)), as_json)


@calc.command("flops")
@model_options
@click.option("--seq-len", type=COUNT, default=2048, show_default=True)
@click.option("--tokens", type=POSITIVE, help="Training tokens  [default: 20 × active params]")
@click.option("--recompute", type=click.Choice(list(flops.RECOMPUTE)), default="none", show_default=True,
              help="FLOPs run again in backward: full 4 × forward, selective the attention core.")
@click.option("--attention", type=click.Choice(list(flops.ATTENTION)), default="palm", show_default=True,
              help="How attention is counted: palm dense, causal half, kaplan (Table 1), none (6N).")
@_guard
def flops_command(model, config, as_json, seq_len, tokens, recompute, attention) -> None:
    """Tokens for a model (Chinchilla, active vs total for an MoE) and FLOPs per layer, per token
    and for a training run (BWD = 2 × FWD, step = 3 × FWD)."""
    _show(flops.report(_spec(model, config), seq_len, tokens, recompute, attention), as_json)


@calc.command("train")
@model_options
@hw_option
@click.option("--tokens", type=POSITIVE, help="Training tokens  [default: 20 × active params]")
@click.option("--seq-len", type=COUNT, default=2048, show_default=True)
@click.option("--gpus", type=COUNT, help="GPUs: how many days? With --days: what they train.")
@click.option("--days", type=POSITIVE, help="Days: how many GPUs? With --gpus: what they train.")
@click.option("--mfu", type=FRACTION, help="Model FLOPs utilisation: model FLOP/s / peak  [default: 0.4]")
@click.option("--hfu", type=FRACTION,
              help="Instead of --mfu: hardware FLOPs utilisation, executed FLOP/s (recomputation "
                   "included) / peak, as Narayanan et al. 2021 report it.")
@click.option("--dtype", type=click.Choice(["bf16", "fp8"]), default="bf16", show_default=True)
@click.option("--recompute", type=click.Choice(list(flops.RECOMPUTE)), default="none", show_default=True,
              help="FLOPs run again in backward (counted by --hfu, not by --mfu).")
@click.option("--attention", type=click.Choice(list(flops.ATTENTION)), default="palm", show_default=True,
              help="How attention is counted: palm dense, causal half, kaplan (Table 1), none (6N).")
@click.option("--tokens-per-second", type=POSITIVE, help="A measured throughput on --gpus: report its MFU.")
@_guard
def train_command(model, config, as_json, hw, tokens, seq_len, gpus, days, mfu, hfu, dtype, recompute,
                  attention, tokens_per_second) -> None:
    """Training time: GPUs × days from tokens, hardware and MFU (or HFU); MFU from a throughput.
    Given --gpus and --days: the tokens they train a model on, or without a model the compute
    they buy and the Chinchilla-optimal model and tokens for it."""
    from mlgrind.calc import train

    if mfu is not None and hfu is not None:
        raise click.UsageError("give --mfu or --hfu, not both")
    if tokens_per_second is not None and (gpus is None or days is not None):
        raise click.UsageError("--tokens-per-second needs --gpus (the GPUs that measured it) and no --days")
    if model is None and config is None:
        # The inverse question reads the same equation the other way: no new command needed.
        if gpus is None or days is None or tokens is not None or tokens_per_second is not None:
            raise click.UsageError("without --model, give --gpus and --days (and no --tokens): the "
                                   "compute they buy and the model it trains")
        spec = None
    else:
        spec = _spec(model, config)
        if gpus is None and days is None:
            raise click.UsageError("give --gpus N (how many days?), --days D (how many GPUs?) or both")
        if gpus is not None and days is not None and tokens is not None:
            raise click.UsageError("--tokens, --gpus and --days: give at most two, the third is the answer")
    _show(train.report(spec, hw_table.load(hw), tokens=tokens, seq_len=seq_len, gpus=gpus, days=days,
                       mfu=mfu, hfu=hfu, dtype=dtype, tokens_per_second=tokens_per_second,
                       recompute=recompute, attention=attention), as_json)


def parallel_options(command):
    for name, text in [("cp", "context"), ("ep", "expert"), ("pp", "pipeline"), ("tp", "tensor"), ("dp", "data")]:
        command = click.option(f"--{name}", type=COUNT, default=1, show_default=True,
                               help=f"{text.capitalize()}-parallel size.")(command)
    command = click.option("--zero", type=click.IntRange(0, 3), default=0, show_default=True,
                           help="ZeRO stage over the data-parallel ranks (3 = FSDP).")(command)
    command = click.option("--micro-batch", type=COUNT, default=1, show_default=True)(command)
    command = click.option("--microbatches", type=COUNT, default=1, show_default=True,
                           help="Micro-batches per step (pipeline).")(command)
    command = click.option("--seq-len", type=COUNT, default=2048, show_default=True)(command)
    command = click.option("--sp", is_flag=True, help="Sequence parallelism with TP.")(command)
    return command


@calc.command("memory")
@model_options
@hw_option
@parallel_options
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True)
@click.option("--recompute-every", type=COUNT, default=1, show_default=True, metavar="K",
              help="With --recompute full: a checkpoint every K layers, recomputed a segment at a time.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              default="mixed", show_default=True,
              help="Bytes per parameter: mixed 2+2+4+8 (bf16, fp32 master and Adam), bf16-fp32-moments "
                   "2+2+8, bf16 2+2+4, fp32 4+4+8, adam-8bit 2+2+4+2.")
@click.option("--usable-memory", type=FRACTION, default=0.9, show_default=True,
              help="Fraction of HBM for model states and activations (the rest: buffers, fragmentation).")
@click.option("--gpus", type=COUNT, help="GPUs in all: the data-parallel size is what tp × pp × cp leave.")
@click.option("--fit", is_flag=True, help="No model: the largest one whose states fit this layout.")
@click.option("--activations", "activation_gb", type=Number(0, False), default=0.0, show_default=True,
              metavar="GB", help="With --fit: GB per GPU to leave for activations.")
@click.option("--attention-kernel", "kernel", type=click.Choice(["eager", "flash"]), default="eager",
              show_default=True, help="eager keeps the s×s attention scores for backward (Korthikanti et "
              "al.'s tables); flash (FlashAttention) never stores them.")
@_guard
def memory_command(model, config, as_json, hw, dp, tp, pp, ep, cp, zero, micro_batch, microbatches,
                   seq_len, sp, recompute, recompute_every, precision, usable_memory, gpus, fit,
                   activation_gb, kernel) -> None:
    """Training memory per rank: params, grads, optimizer, activations (Korthikanti et al. 2022);
    with --fit, the largest model a layout holds."""
    from mlgrind.calc import memory

    if recompute_every != 1 and recompute != "full":
        raise click.UsageError("--recompute-every K checkpoints every K-th layer: use it with --recompute full")
    if gpus is not None:
        dp = memory.layout(gpus, dp, tp, pp, cp)
    h, par = hw_table.load(hw), memory.Parallel(dp, tp, pp, ep, cp)
    if fit:
        if model is not None or config is not None:
            raise click.UsageError("--fit finds the model size: leave out --model and --config")
        _show(memory.fit_report(h, par, zero, precision, usable_memory, activation_gb * 1e9), as_json)
        return
    if activation_gb:
        raise click.UsageError("--activations goes with --fit; with a model they are computed")
    _show(memory.report(_spec(model, config), h, par, zero, micro_batch, seq_len, recompute, sp, precision,
                        microbatches, recompute_every, usable_memory, kernel), as_json)


@calc.command("comms")
@model_options
@hw_option
@parallel_options
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True,
              help="Full recomputation repeats the forward's collectives in backward.")
@click.option("--latency", type=Number(0, open_=False, high=1), default=0.0, show_default=True,
              help="α: seconds per step of a collective, at most 1 (β comes from --hw).")
@click.option("--op", type=click.Choice([c.replace("_", "-") for c in
                                         ("all_reduce", "reduce_scatter", "all_gather", "all_to_all",
                                          "broadcast", "send")]),
              help="One collective on one tensor (no model): with --shape, --dtype, --ranks.")
@click.option("--shape", metavar="AxB…", help="The tensor of --op, e.g. 4096x16384.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16", "fp8", "int8"]), default="bf16",
              show_default=True, help="Element type of --op's tensor.")
@click.option("--ranks", type=click.IntRange(2, 2**20), help="Ranks of --op's group.")
@click.option("--link", type=click.Choice(["nvlink", "infinity-fabric", "ici", "pcie", "network"]),
              help="Fabric of --op  [default: the scale-up fabric if --ranks fit its domain, else the network]")
@click.option("--torus", metavar="AxB…", help="TPU: the torus axes --op's group spans  [default: --ranks over the slice]")
@_guard
def comms_command(model, config, as_json, hw, dp, tp, pp, ep, cp, zero, micro_batch, microbatches,
                  seq_len, sp, recompute, latency, op, shape, dtype, ranks, link, torus) -> None:
    """Collectives with their working: one --op on one tensor, or every collective of a training
    step of --model (tensors, groups, bytes per rank, α-β time, fabric)."""
    from mlgrind.calc import comms
    from mlgrind.calc.memory import Parallel

    h = hw_table.load(hw)
    ctx = click.get_current_context()

    def given(*names: str) -> list[str]:
        """The options among `names` set on the command line (not left at their default)."""
        return [f"--{name.replace('_', '-')}" for name in names
                if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]

    if op is None:
        one = given("shape", "ranks", "link", "torus", "dtype")
        if one:
            raise click.UsageError(f"{', '.join(one)} describe(s) one collective: give --op too")
        s = _spec(model, config)
        _show(comms.step_report(s, Parallel(dp, tp, pp, ep, cp), h, micro_batch, seq_len, microbatches,
                                zero, sp, recompute, latency), as_json)
        return
    if model or config:
        raise click.UsageError("give --op (one tensor) or --model/--config (one training step), not both")
    step = given("dp", "tp", "pp", "ep", "cp", "zero", "micro_batch", "microbatches", "seq_len", "sp", "recompute")
    if step:
        raise click.UsageError(f"{', '.join(step)} describe(s) a training step of --model, not one --op")
    if shape is None or ranks is None:
        raise click.UsageError("--op needs --shape and --ranks")
    axes = comms.parse_shape(torus) if torus else None
    _show(comms.collective_report(op.replace("-", "_"), comms.parse_shape(shape), dtype, ranks, h, link,
                                  latency, axes), as_json)


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
@click.option("--context", type=COUNT, help="Cached tokens per user  [default: 4096, or the model's "
              "positions if fewer]")
@click.option("--prompt", type=COUNT, help="Prompt for prefill latency  [default: 2048, or the model's "
              "positions if fewer]")
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
@click.option("--context", type=COUNT, help="Tokens per rollout  [default: 4096, or the model's positions "
              "if fewer]")
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


@calc.command("plan")
@model_options
@hw_option
@click.option("--gpus", type=click.IntRange(1, 2**20), required=True, help="GPUs to shard over.")
@click.option("--batch", type=COUNT, required=True, help="Global batch, in sequences.")
@click.option("--seq", "--seq-len", "seq_len", type=COUNT, default=2048, show_default=True,
              help="Tokens per sequence.")
@click.option("--micro-batch", type=COUNT, default=1, show_default=True, help="Sequences per micro-batch.")
@click.option("--efficiency", type=FRACTION, default=0.5, show_default=True,
              help="Fraction of the bf16 peak the matmuls reach; bubble and exposed communication "
                   "come on top, so the MFU printed is lower.")
@click.option("--usable-memory", type=FRACTION, default=0.9, show_default=True,
              help="Fraction of HBM a GPU may fill.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="mixed", show_default=True,
              help="Bytes per parameter, as `calc memory --precision`.")
@click.option("--top", type=COUNT, default=5, show_default=True, help="Layouts to list.")
@click.option("--tp", type=COUNT, help="Pin the tensor-parallel size  [default: search]")
@click.option("--pp", type=COUNT, help="Pin the pipeline-parallel size  [default: search]")
@click.option("--cp", type=COUNT, help="Pin the context-parallel size  [default: search]")
@click.option("--ep", type=COUNT, help="Pin the expert-parallel size  [default: search]")
@click.option("--zero", type=click.IntRange(0, 3), help="Pin the ZeRO stage  [default: search]")
@click.option("--latency", type=Number(0, open_=False, high=1),
              help="α: seconds per step of every collective, at most 1  [default: NCCL's cost model, 8.4 µs "
                   "per call + 3.4 µs per NVLink step, 14 µs per network step]")
@click.option("--overlap", type=Number(0, open_=False, high=1), default=0.7, show_default=True,
              help="Fraction of data-parallel traffic that can hide under compute, 0 to 1 (1: perfect "
                   "overlap); the rest is exposed.")
@click.option("--attention-kernel", "kernel", type=click.Choice(["eager", "flash"]), default="flash",
              show_default=True, help="flash (FlashAttention) keeps no s×s attention scores; eager keeps "
              "them for backward (Korthikanti et al.'s tables).")
@_guard
def plan_command(model, config, as_json, hw, gpus, batch, seq_len, micro_batch, efficiency, usable_memory,
                 precision, top, tp, pp, cp, ep, zero, latency, overlap, kernel) -> None:
    """Shard a model for training: TP × PP × DP (ZeRO) × EP × CP layouts that fit, by step time."""
    from mlgrind.calc import plan

    request = plan.Request(_spec(model, config), hw_table.load(hw), gpus, batch, seq_len, micro_batch,
                           efficiency, usable_memory, precision, latency, overlap, kernel)
    report = plan.report(request, {"tp": tp, "pp": pp, "cp": cp, "ep": ep, "zero": zero}, top)
    if not as_json:
        click.echo(plan.ranking_text(report) + "\n")
    _show(report, as_json)
