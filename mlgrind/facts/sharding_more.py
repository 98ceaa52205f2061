"""Seed "how would you shard the model? Gradient Checkpointing, Expert Parallel, Context
Parallel" and "explain trade-offs of various parallelisms, why FSDP ZeRO-3 is rarely used in
practice?" (sheet 12).

Two sources, never a typed answer:

- the reference package run on small arrays, for what a rank does: `ref.checkpointing` (a stack
  of MLP layers, FLOPs counted on its einsums), `ref.moe` (top-k routing, expert parallelism on
  simulated ranks, bytes off the communicator's ledger), `ref.context_parallel` (ring attention,
  bytes off the ledger, FLOPs off its einsums);
- the calculators (`mlgrind.calc`) for real models: `memory.activations` and
  `memory.memory_per_rank` (Korthikanti et al. 2022), `flops` and `train.report` (MFU vs HFU),
  `comms.step_collectives` (every collective of a step, its calls, group and link) and
  `plan.evaluate` (a layout timed, with its overlap assumption).

tests/test_facts_sharding_more.py checks each closed form against the reference code and each
worked answer against the `mlgrind calc` command line.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..calc import comms, flops, memory, plan, train
from ..calc import hardware as hw_table
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from ..calc.working import dur, size
from ..ref import checkpointing as ck
from ..ref import collectives as co
from ..ref import context_parallel as cpar
from ..ref import mlp, moe
from ..ref.attention import causal_mask_LM
from ..ref.einsum import count_flops
from .core import calc, int_arg, table, text_arg

POLICIES = ("none", "selective", "full")
ROLE = {"all_reduce": "all-reduce", "all_gather": "all-gather", "reduce_scatter": "reduce-scatter",
        "all_to_all": "all-to-all", "send": "p2p"}
COLLECTIVE_TEXT = {"all_reduce": "all-reduce", "all_gather": "all-gather",
                   "reduce_scatter": "reduce-scatter", "all_to_all": "all-to-all", "send": "send / recv"}
MAX_PARALLEL = 4096  # any one parallel size
MAX_GPUS = 1 << 16
MAX_SEQ = 1 << 21
MAX_BATCH = 1 << 16
MAX_MICROBATCHES = 4096
WORST_MODEL = "deepseek-v3"  # the most layers and experts among the bundled models


# -- arguments, each checked before any work -------------------------------------------------


def _model(name: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", name) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {name!r}")
    return load_model(name)


def _moe_model(name: Any) -> ModelSpec:
    spec = _model(name)
    if not spec.E:
        raise ValueError(f"{name} has no routed experts: expert parallelism needs a mixture of experts")
    return spec


def _hardware(name: Any) -> hw_table.Hardware:
    table_ = hw_table.load_all()
    if text_arg("hardware", name) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {name!r}")
    return table_[name]


def _policy(policy: Any) -> str:
    if text_arg("policy", policy) not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    return policy


def _fraction(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _calc_error(fn, *args, **kwargs):
    """A calculator's refusal (a layout that does not divide the model) as a ValueError."""
    try:
        return fn(*args, **kwargs)
    except SpecError as error:
        raise ValueError(str(error)) from None


def short(n_bytes: float) -> str:
    """Bytes to three significant digits, for a table's narrow column: 238 GB, 16.8 MB."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:,.0f} B"


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _frac_text(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


# -- gradient checkpointing: the reference stack ---------------------------------------------

# A stack of MLP layers small enough to run in a millisecond (fp64, as the reference runs).
CK_B, CK_D, CK_F = 4, 8, 32
MAX_CK_LAYERS = 64


def _stack(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x_BD = rng.standard_normal((CK_B, CK_D))
    w_in = [rng.standard_normal((CK_D, CK_F)) / np.sqrt(CK_D) for _ in range(n)]
    w_out = [rng.standard_normal((CK_F, CK_D)) / np.sqrt(CK_F) for _ in range(n)]
    d_y_BD = rng.standard_normal((CK_B, CK_D))
    return x_BD, w_in, w_out, d_y_BD


@functools.lru_cache(maxsize=8)
def forward_multiple(policy: str, n: int = 4) -> Fraction:
    """FLOPs of a training step over the FLOPs of its forward pass, counted on the reference
    stack's einsums: backward costs two forwards, full recomputation one more."""
    x_BD, w_in, w_out, d_y_BD = _stack(n)
    with count_flops() as forward:
        ck.stack_forward(x_BD, w_in, w_out)
    with count_flops() as step:
        if policy == "full":
            _, checkpoints = ck.checkpointed_forward(x_BD, w_in, w_out, 1)
            ck.checkpointed_backward(d_y_BD, checkpoints, w_in, w_out, 1)
        else:
            _, saved = ck.stack_forward(x_BD, w_in, w_out)
            ck.stack_backward(d_y_BD, saved)
    return Fraction(step.total, forward.total)


@calc(worst=["ckpt_multiple('full')"])
def ckpt_multiple(policy: str) -> str:
    """Forward passes' worth of FLOPs in a training step of the layers: 3, or 4 with full
    recomputation (every layer's forward run again in backward). Counted on the reference."""
    if _policy(policy) == "selective":
        raise ValueError("selective recomputation re-runs only the attention core: its cost "
                         "depends on the model and sequence (ckpt_extra_flops)")
    return _frac_text(forward_multiple(policy))


@calc(worst=["ckpt_backward_multiple()"])
def ckpt_backward_multiple() -> str:
    """Backward over forward FLOPs, counted on the reference stack: 2."""
    return _frac_text(forward_multiple("none") - 1)


def trace(n: int, every: int | None, seed: int = 0) -> tuple[list[tuple[str, int, int]], int, list]:
    """One training step of the reference stack, event by event: (event, FLOPs it ran, counted
    on its einsums, activation bytes held after it), the bytes of one x_BD, and the gradients.
    `every=None` keeps every layer's activations (as ref.checkpointing.stack_*); otherwise a
    checkpoint every `every` layers, each segment recomputed just before its backward (as
    ref.checkpointing.checkpointed_*), one layer at a time. Bytes are those of the arrays held
    (`held_bytes`); tests check the peak and the gradients against the reference's own."""
    x_BD, w_in, w_out, d_y_BD = _stack(n, seed)
    unit = x_BD.nbytes
    events: list[tuple[str, int, int]] = [("start", 0, 0)]
    grads_in, grads_out = [None] * n, [None] * n

    def run(kind, fn, *args):
        with count_flops() as counted:
            out = fn(*args)
        return out, lambda held: events.append((kind, counted.total, ck.held_bytes(held)))

    if every is None:
        saved_layers = []
        for layer in range(n):
            (x_BD, saved), note = run("forward", mlp.mlp_forward, x_BD, w_in[layer], w_out[layer])
            saved_layers.append(saved)
            note(ck.activations(saved_layers))
        for layer in reversed(range(n)):
            out, note = run("backward", mlp.mlp_backward, d_y_BD, saved_layers.pop())
            d_y_BD, grads_in[layer], grads_out[layer] = out
            note(ck.activations(saved_layers))
        return events, unit, grads_in + grads_out
    checkpoints = []
    for seg in ck.segments(n, every):
        checkpoints.append(x_BD)
        for layer in seg:
            (x_BD, _), note = run("forward", mlp.mlp_forward, x_BD, w_in[layer], w_out[layer])
            note(checkpoints)
    for seg in reversed(ck.segments(n, every)):
        saved_layers, x_seg = [], checkpoints[-1]
        for layer in seg:
            (x_seg, saved), note = run("recompute", mlp.mlp_forward, x_seg, w_in[layer], w_out[layer])
            saved_layers.append(saved)
            note(checkpoints + ck.activations(saved_layers))
        for layer in reversed(seg):
            out, note = run("backward", mlp.mlp_backward, d_y_BD, saved_layers.pop())
            d_y_BD, grads_in[layer], grads_out[layer] = out
            # the segment's checkpoint goes with its last layer's backward
            note(checkpoints + ck.activations(saved_layers) if saved_layers else checkpoints[:-1])
        checkpoints = checkpoints[:-1]
    return events, unit, grads_in + grads_out


def _layers(n: Any) -> int:
    return int_arg("layers", n, 1, MAX_CK_LAYERS)


@calc(worst=["ckpt_peak(64, 64)"])
def ckpt_peak(layers: int, every: int = 0) -> str:
    """The reference stack's peak activation memory in units of one x_BD (F = 4·D, so one
    layer keeps 5): every=0 keeps every layer; else a checkpoint every `every` layers."""
    n = _layers(layers)
    k = int_arg("every", every, 0, n)
    events, unit, _ = trace(n, k or None)
    return f"{max(b for _, _, b in events) / unit:g}"


@calc(worst=["ckpt_sqrt_rule(64)"])
def ckpt_sqrt_rule(layers: int) -> str:
    """The segment length that minimises the reference stack's peak, searched over every k."""
    n = _layers(layers)
    peaks = {k: ck.checkpoint_peak_bytes(n, k, CK_B, CK_D, CK_F, 8) for k in range(1, n + 1)}
    return str(min(peaks, key=lambda k: (peaks[k], k)))


# -- checkpointing on a real model: calc.memory, calc.flops, calc.comms ----------------------


def _activations(spec: ModelSpec, tp: int, seq_len: int, policy: str, every: int,
                 micro_batch: int) -> memory.Activations:
    """Korthikanti et al. 2022 for one rank of a tensor(+sequence)-parallel group."""
    return _calc_error(memory.activations, spec, memory.Parallel(tp=tp), micro_batch, seq_len,
                       policy, tp > 1, 1, every)


def _real_args(model, tp, seq_len, micro_batch):
    spec = _model(model)
    return (spec, int_arg("tp", tp, 1, MAX_PARALLEL), int_arg("seq_len", seq_len, 1, MAX_SEQ),
            int_arg("micro_batch", micro_batch, 1, MAX_BATCH))


def extra_flops(spec: ModelSpec, seq_len: int, policy: str) -> float:
    """Recomputed FLOPs per token over the model FLOPs per token (3 × forward)."""
    return (plan.recompute_flops_per_token(spec, seq_len, policy)
            / flops.training_flops_per_token(spec, seq_len))


def tp_calls_per_layer(spec: ModelSpec, policy: str) -> int:
    """Tensor-parallel all-reduces per layer per step, read off calc.comms."""
    rows = _calc_error(comms.step_collectives, spec, memory.Parallel(tp=2), 1, 2, recompute=policy)
    (row,) = [r for r in rows if r.parallelism == "TP"]
    return row.calls // spec.n_layers


@table(worst=[f"ckpt_table('{WORST_MODEL}', 4096, 2097152, 65536, (61,))"])
def ckpt_table(model: str = "llama-3-70b", tp: int = 8, seq_len: int = 8192, micro_batch: int = 1,
               every: tuple = (4,)) -> list[list[str]]:
    """One rank of a TP(+SP) group under each recomputation policy, from calc.memory: what all
    layers keep, what is live again while backward recomputes, the FLOPs added (share of the
    model FLOPs) and the TP all-reduces per layer per step."""
    spec, tp, seq_len, micro_batch = _real_args(model, tp, seq_len, micro_batch)
    if not (isinstance(every, tuple) and len(every) <= 4):
        raise ValueError(f"every must be a tuple of at most four segment lengths, got {every!r}")
    for k in every:
        int_arg("every", k, 2, spec.n_layers)
    rows = []
    for policy, k in [("none", 1), ("selective", 1), ("full", 1)] + [("full", k) for k in every]:
        a = _activations(spec, tp, seq_len, policy, k, micro_batch)
        name = f"full, every [{k}]{{.given}}" if k > 1 else policy
        rows.append([name, f"**{short(a.layers)}**", short(a.recomputed) if a.recomputed else "—",
                     f"+{_percent(extra_flops(spec, seq_len, policy))}" if policy != "none" else "—",
                     str(tp_calls_per_layer(spec, policy))])
    return rows


def _coefficients(policy: str) -> tuple[Fraction, Fraction]:
    """(c, d) of calc.memory's bytes per layer s·b·h·(c + d·a·s/h) without tensor parallelism,
    read off the function itself at two head counts."""
    def at(a: int) -> Fraction:
        return Fraction(memory.activation_bytes_per_layer(1, 1, 1, a, recompute=policy)).limit_denominator()
    return at(0), at(1) - at(0)


@calc(worst=["ckpt_layer_formula('none')"])
def ckpt_layer_formula(policy: str) -> str:
    """Korthikanti et al. 2022's bytes one layer keeps, as calc.memory computes them (16-bit
    activations, 1-byte masks, no tensor parallelism): "s·b·h·(34 + 5·a·s/h)"."""
    c, d = _coefficients(_policy(policy))
    constant = _frac_text(c)
    if not d:
        return f"{constant}·s·b·h"
    return f"s·b·h·({constant} + {_frac_text(d)}·a·s/h)"


@calc(worst=[f"ckpt_activations('{WORST_MODEL}', 128, 2097152, 'full', 61, 65536)",
             f"ckpt_activations('{WORST_MODEL}', 128, 2097152, 'none', 1, 65536)"])
def ckpt_activations(model: str, tp: int, seq_len: int, policy: str, every: int = 1,
                     micro_batch: int = 1) -> str:
    """All activation bytes one rank holds at its peak (calc memory's `activations`: the
    layers' kept tensors, the segment being recomputed, embedding and output terms)."""
    spec, tp, seq_len, micro_batch = _real_args(model, tp, seq_len, micro_batch)
    policy = _policy(policy)
    int_arg("every", every, 1, spec.n_layers)
    m = _calc_error(memory.memory_per_rank, spec, memory.Parallel(tp=tp), 0, micro_batch, seq_len,
                    policy, tp > 1, "mixed", 1, every)
    return size(m.activations)


@calc(worst=[f"ckpt_layer('{WORST_MODEL}', 4096, 2097152, 'none', 65536)"])
def ckpt_layer(model: str, tp: int, seq_len: int, policy: str, micro_batch: int = 1) -> str:
    """What one layer keeps for backward on one rank (Korthikanti et al. 2022, Table 2)."""
    spec, tp, seq_len, micro_batch = _real_args(model, tp, seq_len, micro_batch)
    return size(_activations(spec, tp, seq_len, _policy(policy), 1, micro_batch).per_layer)


@calc(worst=[f"ckpt_extra_flops('{WORST_MODEL}', 2097152, 'full')"])
def ckpt_extra_flops(model: str, seq_len: int, policy: str) -> str:
    """FLOPs recomputation adds, as a share of the model FLOPs of a step."""
    spec = _model(model)
    return _percent(extra_flops(spec, int_arg("seq_len", seq_len, 1, MAX_SEQ), _policy(policy)))


@calc(worst=[f"ckpt_best_every('{WORST_MODEL}', 4096, 2097152, 65536)"])
def ckpt_best_every(model: str, tp: int = 8, seq_len: int = 8192, micro_batch: int = 1) -> str:
    """The checkpoint spacing k (a divisor of the layers) that holds the fewest activations."""
    spec, tp, seq_len, micro_batch = _real_args(model, tp, seq_len, micro_batch)
    ks = [k for k in range(1, spec.n_layers + 1) if spec.n_layers % k == 0]
    totals = {k: _activations(spec, tp, seq_len, "full", k, micro_batch).total for k in ks}
    return str(min(ks, key=lambda k: (totals[k], k)))


@calc(worst=["ckpt_tp_calls('full')"])
def ckpt_tp_calls(policy: str) -> str:
    """Tensor-parallel all-reduces per layer per step under a policy, from calc.comms."""
    return str(tp_calls_per_layer(load_model("llama-3-8b"), _policy(policy)))


def _train_report(model, hfu, tokens, gpus, hardware, seq_len):
    spec = _model(model)
    hw = _hardware(hardware)
    hfu = _fraction("hfu", hfu, 0.01, 1)
    tokens = _fraction("tokens", tokens, 1, 1e16)
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    seq_len = int_arg("seq_len", seq_len, 1, MAX_SEQ)
    return train.report(spec, hw, tokens=tokens, gpus=gpus, hfu=hfu, recompute="full",
                        seq_len=seq_len)


def _line(report, key: str):
    (line,) = [line for line in report.lines if line.key == key]
    return line


@calc(worst=["ckpt_train('llama-3.1-405b', 'mfu', 1.0, 1e16, 65536, 'h100-sxm', 2097152)"])
def ckpt_train(model: str, what: str, hfu: float, tokens: float, gpus: int,
               hardware: str = "h100-sxm", seq_len: int = 2048) -> str:
    """`mlgrind calc train --recompute full --hfu …`: the MFU the same run shows ("mfu"), the
    days ("days"), or executed over model FLOPs per token ("ratio")."""
    if text_arg("what", what) not in ("mfu", "days", "ratio"):
        raise ValueError(f"what must be 'mfu', 'days' or 'ratio', got {what!r}")
    r = _train_report(model, hfu, tokens, gpus, hardware, seq_len)
    if what == "mfu":
        return _percent(_line(r, "mfu").value)
    if what == "days":
        return f"{_line(r, 'days').value:,.1f}"
    ratio = _line(r, "executed_flops_per_token").value / _line(r, "model_flops_per_token").value
    return f"{ratio:.3g}"


# -- expert parallelism: the reference on simulated ranks -------------------------------------

MAX_EP_RANKS = 8
MAX_EP_EXPERTS = 16
MAX_EP_TOKENS = 64
MAX_EP_F = 64


def _ep_sizes(S, k, tokens, E, F):
    S = int_arg("S", S, 2, MAX_EP_RANKS)
    E = int_arg("E", E, S, MAX_EP_EXPERTS)
    if E % S:
        raise ValueError(f"E = {E} experts must split evenly over S = {S} ranks")
    k = int_arg("k", k, 1, E)
    tokens = int_arg("tokens", tokens, 1, MAX_EP_TOKENS)
    if tokens % E:
        raise ValueError(f"tokens = {tokens} per rank must be a multiple of E = {E}: "
                         "uniform routing sends the same count to every expert")
    return S, k, tokens, E, int_arg("F", F, 1, MAX_EP_F)


@functools.lru_cache(maxsize=16)
def ep_run(S: int, k: int, tokens: int, E: int, F: int) -> co.Comm:
    """Expert parallelism forward and backward on S simulated ranks, routing uniform by
    construction (as calc.comms assumes): D = E, the router is the identity and token i scores
    k, k-1, ..., 1 on experts i, i+1, ... (mod E), so each expert gets the same number of each
    rank's tokens. Returns the communicator, its log and ledger filled."""
    D = E
    x = np.stack([sum(np.roll(np.eye(E)[i % E], j) * (k - j) for j in range(k))
                  for i in range(S * tokens)])
    rng = np.random.default_rng(0)
    w_in = rng.standard_normal((E, D, F)) / np.sqrt(D)
    w_out = rng.standard_normal((E, F, D)) / np.sqrt(F)
    comm = co.Comm(S)
    ys, saved = moe.expert_parallel_forward(comm, co.shard(x, S), np.eye(D), co.shard(w_in, S),
                                            co.shard(w_out, S), k)
    d_ys = [rng.standard_normal(y.shape) for y in ys]
    moe.expert_parallel_backward(comm, d_ys, saved)
    return comm


@calc(worst=["ep_sim_share(8, 16, 64, 16, 64)"])
def ep_sim_share(S: int = 4, k: int = 2, tokens: int = 8, E: int = 4, F: int = 8) -> str:
    """The share of its dispatched tokens a rank sends away, off the ledger: (S−1)/S."""
    S, k, tokens, E, F = _ep_sizes(S, k, tokens, E, F)
    (dispatch,) = ep_run(S, k, tokens, E, F).records(tag="dispatch")
    return _frac_text(Fraction(dispatch.sent[0], int(np.prod(dispatch.shapes[0])) * 8))


# -- expert parallelism on a real model: calc.comms ------------------------------------------


def _layout(spec, dp, ep, cp, tp, pp):
    return memory.Parallel(int_arg("dp", dp, 1, MAX_PARALLEL), int_arg("tp", tp, 1, MAX_PARALLEL),
                           int_arg("pp", pp, 1, MAX_PARALLEL), int_arg("ep", ep, 1, MAX_PARALLEL),
                           int_arg("cp", cp, 1, MAX_PARALLEL))


def _rows(spec, par, seq_len, micro_batch, microbatches, recompute, zero=0, sp=False):
    return _calc_error(comms.step_collectives, spec, par,
                       int_arg("micro_batch", micro_batch, 1, MAX_BATCH),
                       int_arg("seq_len", seq_len, 1, MAX_SEQ),
                       int_arg("microbatches", microbatches, 1, MAX_MICROBATCHES),
                       int_arg("zero", zero, 0, 3), sp, recompute=_policy(recompute))


WHATS = ("tensor", "calls", "sent", "per_call", "group")


def _row_value(row: comms.CommRow, what: str) -> str:
    if what == "tensor":
        return size(row.n_bytes)
    if what == "calls":
        return f"{row.calls:,}"
    if what == "sent":
        return size(row.bytes_per_rank)
    if what == "per_call":
        return size(comms.bytes_per_rank(row.collective, row.n_bytes, row.group))
    return f"{row.group:,}"


def _what(what: Any) -> str:
    if text_arg("what", what) not in WHATS:
        raise ValueError(f"what must be one of {', '.join(WHATS)}, got {what!r}")
    return what


@calc(worst=[f"ep_step('{WORST_MODEL}', 'sent', 4096, 256, 2097152, 1, 'full', 16, 1, 1)"])
def ep_step(model: str, what: str, dp: int, ep: int, seq_len: int = 2048, micro_batch: int = 1,
            recompute: str = "none", cp: int = 1, tp: int = 1, pp: int = 1) -> str:
    """calc.comms' EP all-to-all row: the tensor of one call ("tensor", B·L·top_k·D), the calls
    per step ("calls"), the bytes one rank sends per call ("per_call") or per step ("sent")."""
    spec = _moe_model(model)
    what = _what(what)
    par = _layout(spec, dp, ep, cp, tp, pp)
    rows = [r for r in _rows(spec, par, seq_len, micro_batch, 1, recompute) if r.parallelism == "EP"]
    if not rows:
        raise ValueError("expert parallel size 1: no all-to-all")
    return _row_value(rows[0], what)


@calc(worst=["ep_calls_per_layer('full')"])
def ep_calls_per_layer(recompute: str) -> str:
    """All-to-alls per MoE layer per step, from calc.comms: 4, or 6 with full recomputation."""
    spec = load_model("mixtral-8x7b")
    rows = _rows(spec, memory.Parallel(dp=2, ep=2), 2, 1, 1, recompute)
    (row,) = [r for r in rows if r.parallelism == "EP"]
    return str(row.calls // spec.moe_layers)


@calc(worst=[f"ep_edp('{WORST_MODEL}', 4096, 256, 16)"])
def ep_edp(model: str, dp: int, ep: int, cp: int = 1) -> str:
    """The expert-data-parallel group: the DP·CP/EP ranks that hold the same experts and
    reduce their gradients (calc.memory.Parallel checks EP divides DP·CP)."""
    spec = _moe_model(model)
    par = _layout(spec, dp, ep, cp, 1, 1)
    _calc_error(par.check, spec)
    return f"{par.dp * par.cp // par.ep:,}"


@calc(worst=[f"ep_experts_per_rank('{WORST_MODEL}', 256)"])
def ep_experts_per_rank(model: str, ep: int) -> str:
    spec = _moe_model(model)
    ep = int_arg("ep", ep, 1, MAX_PARALLEL)
    if spec.E % ep:
        raise ValueError(f"{spec.E} experts cannot be split over {ep} ranks")
    return str(spec.E // ep)


@calc(worst=[f"ep_model('{WORST_MODEL}', 'top_k')"])
def ep_model(model: str, what: str) -> str:
    """A bundled MoE's routed experts ("E") or experts per token ("top_k"), from its config."""
    spec = _moe_model(model)
    if text_arg("what", what) not in ("E", "top_k"):
        raise ValueError(f"what must be 'E' or 'top_k', got {what!r}")
    return str(spec.E if what == "E" else spec.top_k)


@calc(worst=[f"ep_capacity('{WORST_MODEL}', 16777216, 4.0)"])
def ep_capacity(model: str, tokens: int, factor: float) -> str:
    """Tokens one expert takes per batch: ⌈factor · tokens · top_k / E⌉ (Switch Transformer's
    capacity, times k for top-k routing; Megatron-Core's get_capacity)."""
    spec = _moe_model(model)
    tokens = int_arg("tokens", tokens, 1, 1 << 24)
    factor = _fraction("factor", factor, 1, 4)
    return f"{math.ceil(Fraction(tokens * spec.top_k, spec.E) * Fraction(str(factor))):,}"


@calc(worst=["ep_share(4096)"])
def ep_share(S: int) -> str:
    """What an all-to-all sends of what a rank holds: (S−1)/S, from ref.collectives."""
    S = int_arg("S", S, 2, MAX_PARALLEL)
    return _frac_text(Fraction(int(co.all_to_all_bytes(S * 1024, S)), S * 1024))


# -- context parallelism: ring attention ----------------------------------------------------

MAX_CP_RANKS = 16


@functools.lru_cache(maxsize=16)
def ring_schedule(S: int) -> tuple[tuple[int | None, ...], ...]:
    """schedule[s][j]: the ring step at which rank s attends to kv block j (the block rank j
    owns), or None when that block lies wholly in its causal future and is skipped. The loop of
    ref.context_parallel.ring_attention over contiguous shards, whose blocks are wholly past,
    diagonal or wholly future whatever their length; tests check its FLOPs against the ref's."""
    positions = [np.arange(2 * s, 2 * s + 2) for s in range(S)]
    out: list[list[int | None]] = [[None] * S for _ in range(S)]
    for step in range(S):
        for s in range(S):
            owner = (s - step) % S  # the block rank s holds at this step
            if causal_mask_LM(positions[s], positions[owner]).any():
                out[s][owner] = step
    return tuple(tuple(row) for row in out)


def _cp_ranks(S):
    return int_arg("S", S, 2, MAX_CP_RANKS)


@calc(worst=["cp_blocks(16, 15)"])
def cp_blocks(S: int, rank: int) -> str:
    """kv blocks rank `rank` attends to in causal ring attention with contiguous shards."""
    S = _cp_ranks(S)
    rank = int_arg("rank", rank, 0, S - 1)
    return str(sum(step is not None for step in ring_schedule(S)[rank]))


@calc(worst=["cp_flops_share(16)"])
def cp_flops_share(S: int) -> str:
    """Causal ring attention's FLOPs over dense attention's, counted on the reference's einsums:
    (S + 1)/(2S)."""
    S = _cp_ranks(S)
    B, L, H, K = 1, 2 * S, 2, 4
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, L, H, K)) for _ in range(3))
    with count_flops() as ring:
        cpar.ring_attention(co.shard(q, S, 1), co.shard(k, S, 1), co.shard(v, S, 1), co.Comm(S))
    dense = 2 * 2 * B * H * L * L * K  # the two einsums of block_attention over the whole L × L
    return _frac_text(Fraction(ring.total, dense))


@functools.lru_cache(maxsize=16)
def cp_run(S: int, B: int = 1, L: int = 16, H: int = 2, K: int = 4) -> co.Comm:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, L, H, K)) for _ in range(3))
    comm = co.Comm(S)
    cpar.ring_attention(co.shard(q, S, 1), co.shard(k, S, 1), co.shard(v, S, 1), comm)
    return comm


@calc(worst=["cp_sim('passes', 16)"])
def cp_sim(what: str, S: int = 4) -> str:
    """Off the simulated ring (B = 1, L = 4S, H = 2, K = 4, fp64): "passes", the sends of each
    of k and v; "share", what one rank sent over the full K and V it did not own."""
    S = _cp_ranks(S)
    if text_arg("what", what) not in ("passes", "share"):
        raise ValueError(f"what must be 'passes' or 'share', got {what!r}")
    comm = cp_run(S, L=4 * S)
    if what == "passes":
        return str(len(comm.records(tag="k")))
    full = 2 * 4 * S * 2 * 4 * 8  # K and V of the whole sequence, fp64
    return _frac_text(Fraction(comm.sent[0], full))


@calc(worst=[f"cp_step('{WORST_MODEL}', 'sent', 4096, 2097152, 'full', 4096)"])
def cp_step(model: str, what: str, cp: int, seq_len: int, recompute: str = "none",
            dp: int = 1, micro_batch: int = 1) -> str:
    """calc.comms' CP row: the K, V block one rank passes ("tensor"), the passes per step
    ("calls"), the bytes one rank sends per step ("sent")."""
    spec = _model(model)
    what = _what(what)
    par = _layout(spec, dp, 1, cp, 1, 1)
    rows = [r for r in _rows(spec, par, seq_len, micro_batch, 1, recompute) if r.parallelism == "CP"]
    if not rows:
        raise ValueError("context parallel size 1: no ring")
    return _row_value(rows[0], what)


@calc(worst=["cp_passes_per_layer('full', 4096)"])
def cp_passes_per_layer(recompute: str, cp: int) -> str:
    """K, V passes per layer per step, from calc.comms: 3(CP−1), 4(CP−1) when recomputing."""
    spec = load_model("llama-3-8b")
    cp = int_arg("cp", cp, 2, MAX_PARALLEL)
    rows = _rows(spec, memory.Parallel(cp=cp), cp, 1, 1, recompute)
    (row,) = [r for r in rows if r.parallelism == "CP"]
    return str(row.calls // spec.n_layers)


def link_bandwidth(hw: hw_table.Hardware, link: str) -> float:
    """β one rank sends at: over the scale-up fabric, or one NIC of the network."""
    if link == "nvlink":
        return comms.route(hw, "send", 2).beta
    return comms.route(hw, "send", 2, link="network", inner=hw.gpus_per_node).beta


@calc(worst=["cp_hide_tokens('llama-3-8b', 'h100-sxm', 'network', 1.0)"])
def cp_hide_tokens(model: str, hardware: str, link: str, efficiency: float = 0.5) -> str:
    """Tokens per rank L/CP above which a ring step's attention outlasts passing its K, V
    block: a step computes 4·(L/CP)²·H·K FLOPs and receives 2·(L/CP)·G·K·2 bytes (bf16), so
    (L/CP)·H/G FLOP/B, against the link's peak · efficiency / β."""
    spec = _model(model)
    hw = _hardware(hardware)
    if text_arg("link", link) not in ("nvlink", "network"):
        raise ValueError(f"link must be 'nvlink' or 'network', got {link!r}")
    efficiency = _fraction("efficiency", efficiency, 0.01, 1)
    needed = hw.bf16_flops * efficiency / _calc_error(link_bandwidth, hw, link) * spec.G / spec.H
    return f"{math.ceil(needed):,}"


# -- the trade-offs: every collective of a step, and ZeRO-3 ----------------------------------

WHERE = {True: "in node", False: "across nodes"}


@table(worst=[f"tradeoff_table('{WORST_MODEL}', 8, 4, 61, 16, 64, 3, 2097152, 4096, 'h100-sxm')"])
def tradeoff_table(model: str = "mixtral-8x7b", tp: int = 2, cp: int = 2, pp: int = 2, dp: int = 8,
                   ep: int = 4, zero: int = 1,
                   seq_len: int = 8192, microbatches: int = 8,
                   hardware: str = "h100-sxm") -> list[list[str]]:
    """Every collective of one training step (calc.comms.step_collectives, sequence parallel
    with TP), each with its group, its calls, the fabric it crosses (calc.comms.row_route:
    ranks laid out TP innermost, then CP, DP, PP) and the bytes one rank sends per step."""
    spec = _model(model)
    hw = _hardware(hardware)
    par = _layout(spec, dp, ep, cp, tp, pp)
    if par.gpus > MAX_GPUS:
        raise ValueError(f"{par.gpus:,} GPUs: at most {MAX_GPUS:,}")
    rows = _rows(spec, par, seq_len, 1, microbatches, "none", zero, sp=par.tp > 1)
    merged: dict[str, list[comms.CommRow]] = {}  # a reduce-scatter and its all-gather: one row
    for row in rows:
        merged.setdefault(row.parallelism, []).append(row)
    out = []
    for label, group in merged.items():
        fabrics = {_calc_error(comms.row_route, row, hw).fabric for row in group}
        calls = list(dict.fromkeys(f"{row.calls:,}" for row in group))  # in the rows' order
        out.append([label.replace("+SP", ""),
                    " + ".join(f"[{COLLECTIVE_TEXT[r.collective]}]{{.{ROLE[r.collective]}}}"
                               for r in group),
                    f"{group[0].group:,}", " + ".join(calls), " + ".join(sorted(fabrics)),
                    f"**{short(sum(r.bytes_per_rank for r in group))}**"])
    return out


@calc(worst=["tradeoff_zero3_ratio(4096)"])
def tradeoff_zero3_ratio(S: int = 8) -> str:
    """ZeRO-3's bytes per rank over plain DP's for one step without accumulation, from
    calc.comms: reduce-scatter + two all-gathers against one all-reduce."""
    S = int_arg("S", S, 2, MAX_PARALLEL)
    spec = load_model("llama-3-8b")
    sent = {z: sum(r.bytes_per_rank for r in _rows(spec, memory.Parallel(dp=S), 2, 1, 1, "none", z))
            for z in (0, 3)}
    return f"{sent[3] / sent[0]:g}"


PLAN_WHATS = ("microbatches", "dp_traffic", "dp_exposed", "step", "memory", "recompute",
              "per_microbatch")


def _plan(model, gpus, batch, seq_len, tp, pp, cp, zero, hardware, micro_batch=1, efficiency=0.5):
    spec = _model(model)
    hw = _hardware(hardware)
    gpus = int_arg("gpus", gpus, 1, MAX_GPUS)
    tp, pp, cp = (int_arg(n, v, 1, MAX_PARALLEL) for n, v in (("tp", tp), ("pp", pp), ("cp", cp)))
    if gpus % (tp * pp * cp):
        raise ValueError(f"tp·pp·cp = {tp * pp * cp} does not divide {gpus} GPUs")
    req = plan.Request(spec, hw, gpus, int_arg("batch", batch, 1, 1 << 24),
                       int_arg("seq_len", seq_len, 1, MAX_SEQ),
                       int_arg("micro_batch", micro_batch, 1, MAX_BATCH),
                       _fraction("efficiency", efficiency, 0.01, 1))
    if req.batch % (gpus // (tp * pp * cp) * req.micro_batch):
        raise ValueError("DP · micro-batch must divide the batch")
    layout = plan.Layout(tp, pp, gpus // (tp * pp * cp), cp)
    return _calc_error(plan.evaluate, req, layout, int_arg("zero", zero, 0, 3))


def dp_seconds(p: plan.Plan) -> float:
    return sum(t for row, t in p.comms if plan.syncs_replicas(row))


@calc(worst=["tradeoff_plan('llama-3.1-405b', 'step', 65536, 16777216, 2048, 1, 1, 1, 3, 'h100-sxm')"])
def tradeoff_plan(model: str, what: str, gpus: int, batch: int, seq_len: int, tp: int, pp: int,
                  cp: int, zero: int, hardware: str = "h100-sxm", micro_batch: int = 1) -> str:
    """`mlgrind calc plan` with every size pinned: the micro-batches per step, the DP traffic's
    seconds per step (or per micro-batch), the part of it no overlap hides, the step time, the
    memory per GPU, the recomputation that fits."""
    if text_arg("what", what) not in PLAN_WHATS:
        raise ValueError(f"what must be one of {', '.join(PLAN_WHATS)}, got {what!r}")
    p = _plan(model, gpus, batch, seq_len, tp, pp, cp, zero, hardware, micro_batch)
    return {"microbatches": lambda: f"{p.microbatches:,}", "dp_traffic": lambda: dur(dp_seconds(p)),
            "per_microbatch": lambda: dur(dp_seconds(p) / p.microbatches),
            "dp_exposed": lambda: dur(p.dp_exposed), "step": lambda: dur(p.step),
            "memory": lambda: size(p.memory.total), "recompute": lambda: p.recompute}[what]()


@calc(worst=["tradeoff_plan_ratio('llama-3.1-405b', 'dp_traffic', 65536, 16777216, 2048, 1, 1, 1, 'h100-sxm')"])
def tradeoff_plan_ratio(model: str, what: str, gpus: int, batch: int, seq_len: int, tp: int,
                        pp: int, cp: int, hardware: str = "h100-sxm") -> str:
    """ZeRO-3 over ZeRO-1 on the same pinned layout: "dp_traffic" or "step"."""
    if text_arg("what", what) not in ("dp_traffic", "step"):
        raise ValueError(f"what must be 'dp_traffic' or 'step', got {what!r}")
    one, three = (_plan(model, gpus, batch, seq_len, tp, pp, cp, z, hardware) for z in (1, 3))
    value = (lambda p: dp_seconds(p)) if what == "dp_traffic" else (lambda p: p.step)
    return f"{value(three) / value(one):.3g}"


@calc(worst=["tradeoff_break_even('h100-sxm', 'rails', 1.0)"])
def tradeoff_break_even(hardware: str, link: str = "nic", efficiency: float = 0.5) -> str:
    """Tokens per rank per micro-batch above which ZeRO-3's traffic can hide under compute.
    Per micro-batch a rank computes ≈ 6·Ψ·T FLOPs (Ψ parameters, T tokens) and sends ≈ 3·2Ψ
    bytes (reduce-scatter, two all-gathers, bf16): T FLOP/B, against peak · efficiency / β.
    β: one NIC ("nic"), or every NIC of a node in parallel ("rails", as the planner assumes)."""
    hw = _hardware(hardware)
    if text_arg("link", link) not in ("nic", "rails"):
        raise ValueError(f"link must be 'nic' or 'rails', got {link!r}")
    efficiency = _fraction("efficiency", efficiency, 0.01, 1)
    if hw.network_bw is None:
        raise ValueError(f"{hardware} lists no network bandwidth")
    beta = hw.network_bw if link == "nic" else comms.route(hw, "all_gather", 2 * hw.gpus_per_node,
                                                            link="network").beta
    return f"{math.ceil(hw.bf16_flops * efficiency / beta):,}"


@calc(worst=["tradeoff_intensity_tex()"])
def tradeoff_intensity_tex() -> str:
    """ZeRO-3's FLOPs per byte for a micro-batch of T tokens, as TeX: training FLOPs per
    parameter and token (twice the multiple of a forward, counted on the reference) over the
    collectives of a ZeRO-3 step (calc.comms) times the bytes of a bf16 parameter."""
    per_token = 2 * forward_multiple("none")
    spec = load_model("llama-3-8b")
    rows = _rows(spec, memory.Parallel(dp=2), 2, 1, 1, "none", 3)
    # per layer and micro-batch (calc.comms gathers and reduces layer by layer)
    collectives = sum(r.calls for r in rows if r.parallelism.startswith("DP")) // spec.n_layers
    width = comms.DTYPE_BYTES["bf16"]
    ratio = per_token / (collectives * width)
    return (f"\\frac{{{_frac_text(per_token)}\\,\\Psi T}}{{{collectives} \\cdot {width}\\,\\Psi}}"
            f" = {'' if ratio == 1 else _frac_text(ratio)}T")


# Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
# Megatron-LM" (arXiv 2104.04473), Table 2: GPT-3 174.6B, batch 1536, sequence 2048, A100s;
# achieved teraFLOP/s per GPU (recomputation counted). ZeRO-3 without model parallelism at
# micro-batches 4, 2, 1; PTD parallelism at model-parallel size 96, micro-batch 1. A published
# measurement, quoted: nothing computes it.
NARAYANAN_TABLE_2 = {("zero3", 384): 144, ("zero3", 768): 88, ("zero3", 1536): 44,
                     ("ptd", 384): 153, ("ptd", 768): 149, ("ptd", 1536): 141}


@calc(worst=["tradeoff_measured('ptd', 1536)"])
def tradeoff_measured(scheme: str, gpus: int) -> str:
    """Narayanan et al. 2021, Table 2: TFLOP/s per GPU for GPT-3 175B at batch 1536."""
    if (text_arg("scheme", scheme), int_arg("gpus", gpus, 1, MAX_GPUS)) not in NARAYANAN_TABLE_2:
        raise ValueError(f"Table 2 has {', '.join(f'{s} on {g}' for s, g in NARAYANAN_TABLE_2)}; "
                         f"got {scheme!r} on {gpus!r}")
    return str(NARAYANAN_TABLE_2[scheme, gpus])


@calc(worst=["tradeoff_measured_ratio(1536)"])
def tradeoff_measured_ratio(gpus: int) -> str:
    """PTD parallelism's throughput over ZeRO-3's, Narayanan et al. 2021, Table 2."""
    if ("ptd", int_arg("gpus", gpus, 1, MAX_GPUS)) not in NARAYANAN_TABLE_2:
        raise ValueError(f"Table 2 has 384, 768 and 1536 GPUs; got {gpus!r}")
    return f"{NARAYANAN_TABLE_2['ptd', gpus] / NARAYANAN_TABLE_2['zero3', gpus]:.2g}"


@calc(worst=["tradeoff_planner_overlap()"])
def tradeoff_planner_overlap() -> str:
    """The share of DP traffic `mlgrind calc plan` hides under compute by default (--overlap)."""
    return _percent(plan.OVERLAP).replace(".0 %", " %")


@calc(worst=["tradeoff_planner_zero3('a100-80gb', 1536)"])
def tradeoff_planner_zero3(hardware: str = "a100-80gb", gpus: int = 1536) -> str:
    """The planner's step time for GPT-3 175B at batch 1536 under ZeRO-3 without model
    parallelism over its time for PTD parallelism (TP 8 × PP 12, Table 2's model-parallel 96),
    at its defaults (NCCL's latencies, `OVERLAP` of DP traffic hidden): what it predicts for
    the gap Table 2 measured."""
    if ("ptd", int_arg("gpus", gpus, 1, MAX_GPUS)) not in NARAYANAN_TABLE_2:
        raise ValueError(f"Table 2 has 384, 768 and 1536 GPUs; got {gpus!r}")
    zero3 = _plan("gpt3-175b", gpus, 1536, 2048, 1, 1, 1, 3, hardware, micro_batch=1536 // gpus)
    ptd = _plan("gpt3-175b", gpus, 1536, 2048, 8, 12, 1, 0, hardware)
    return f"{zero3.step / ptd.step:.2g}"
