"""Seed "Given real hardware constraints → how would you shard the model? Tensor Parallel, FSDP
(Zero 1/2/3), Pipeline Parallel" and "which collectives each parallelism uses; the exact tensor
shapes; bytes moved per rank" (sheet 11).

A real model is too large to run, so its numbers are the calculators': every collective of a
training step from `calc.comms.step_collectives` (the rows `mlgrind calc comms` prints), memory
per GPU from `calc.memory.memory_per_rank` (`mlgrind calc memory`), links from `calc.hardware`.
The mechanisms are small enough to run, and are read off the reference code: the ZeRO stages
train an MLP on simulated ranks (`ref.zero`, its collectives and bytes off the communicator's
ledger), the pipeline schedules are simulated timelines (`ref.pipeline`), and sequence
parallelism's reduce-scatter + all-gather pair is run against one all-reduce
(`ref.collectives`). tests/test_facts_sharding.py checks the calculators against those runs.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import numpy as np

from ..calc import comms as calc_comms
from ..calc import hardware as hw_table
from ..calc import memory as calc_memory
from ..calc.plan import Request
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from ..calc.working import num, size
from ..ref import collectives as co
from ..ref import pipeline as ref_pipeline
from ..ref import zero as ref_zero
from .core import calc, int_arg, table, text_arg

ROLE = {"all_reduce": "all-reduce", "all_gather": "all-gather",
        "reduce_scatter": "reduce-scatter", "send": "p2p"}
NAME = {"all_reduce": "all-reduce", "all_gather": "all-gather",
        "reduce_scatter": "reduce-scatter", "send": "send"}
KINDS = ("TP", "TP+SP", "PP", "DP", "ZeRO-1", "ZeRO-2", "ZeRO-3")
MAX_TP, MAX_PP, MAX_DP = 64, 128, 4096
MAX_SEQ, MAX_MICRO, MAX_MICROBATCHES = 1 << 20, 64, 4096
MAX_LAYOUTS = 8
WORST_MODEL = "llama-3.1-405b"
WORST_LAYOUT = {"tp": 8, "pp": 2, "dp": MAX_DP, "seq_len": MAX_SEQ,
                "microbatches": MAX_MICROBATCHES, "micro_batch": MAX_MICRO}


# Arguments, each checked before any work ---------------------------------------------------


def _model(name: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", name) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {name!r}")
    return load_model(name)


def _hardware(name: Any) -> hw_table.Hardware:
    table_ = hw_table.load_all()
    if text_arg("hardware", name) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {name!r}")
    return table_[name]


def _parallel(spec: ModelSpec, tp: Any, pp: Any, dp: Any) -> calc_memory.Parallel:
    par = calc_memory.Parallel(dp=int_arg("dp", dp, 1, MAX_DP), tp=int_arg("tp", tp, 1, MAX_TP),
                               pp=int_arg("pp", pp, 1, MAX_PP))
    try:
        par.check(spec)
    except SpecError as error:
        raise ValueError(str(error)) from None
    return par


def _zero(zero: Any) -> int:
    return int_arg("zero", zero, 0, 3)


def _recompute(recompute: Any) -> str:
    if text_arg("recompute", recompute) not in calc_memory.RECOMPUTE:
        raise ValueError(f"recompute must be one of {', '.join(calc_memory.RECOMPUTE)}; "
                         f"got {recompute!r}")
    return recompute


def _flag(name: str, value: Any) -> bool:
    if value is not True and value is not False:
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _kind(kind: Any) -> str:
    if text_arg("kind", kind) not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


# A training step's collectives, from the calculator --------------------------------------


def _rows(model: Any, tp: Any, pp: Any, dp: Any, seq_len: Any, microbatches: Any,
          micro_batch: Any, zero: Any, sp: Any) -> tuple[calc_comms.CommRow, ...]:
    """`calc.comms.step_collectives` for a layout, every argument checked first."""
    spec = _model(model)
    _parallel(spec, tp, pp, dp)
    int_arg("seq_len", seq_len, 1, MAX_SEQ)
    int_arg("microbatches", microbatches, 1, MAX_MICROBATCHES)
    int_arg("micro_batch", micro_batch, 1, MAX_MICRO)
    return _step_rows(model, tp, pp, dp, seq_len, microbatches, micro_batch, _zero(zero),
                      _flag("sp", sp))


@functools.lru_cache(maxsize=64)
def _step_rows(model: str, tp: int, pp: int, dp: int, seq_len: int, microbatches: int,
               micro_batch: int, zero: int, sp: bool) -> tuple[calc_comms.CommRow, ...]:
    """Cached: a sheet and its cards ask for the same layout often."""
    spec, par = load_model(model), calc_memory.Parallel(dp=dp, tp=tp, pp=pp)
    try:
        return tuple(calc_comms.step_collectives(spec, par, micro_batch, seq_len, microbatches,
                                                 zero, sp))
    except SpecError as error:
        raise ValueError(str(error)) from None


def kind_rows(kind: str, model: str, tp: int, pp: int, dp: int, seq_len: int,
              microbatches: int, micro_batch: int = 1) -> tuple[calc_comms.CommRow, ...]:
    """The calculator's rows of one parallelism: TP alone, TP with sequence parallelism, PP
    (with SP, as Megatron sends it), plain DP (ZeRO-0), ZeRO-1, ZeRO-2, ZeRO-3."""
    zero, sp, label = {"TP": (0, False, "TP"), "TP+SP": (0, True, "TP+SP"), "PP": (0, True, "PP"),
                       "DP": (0, False, "DP"), "ZeRO-1": (1, True, "DP ZeRO-1"),
                       "ZeRO-2": (2, True, "DP ZeRO-2"),
                       "ZeRO-3": (3, True, "DP ZeRO-3")}[_kind(kind)]
    rows = _rows(model, tp, pp, dp, seq_len, microbatches, micro_batch, zero, sp)
    found = tuple(r for r in rows if r.parallelism == label)
    if not found:
        raise ValueError(f"{kind} sends nothing with tp={tp}, pp={pp}, dp={dp}: its group has one rank")
    return found


_WORST_ROWS = (f"'{WORST_MODEL}', tp={WORST_LAYOUT['tp']}, pp={WORST_LAYOUT['pp']}, "
               f"dp={WORST_LAYOUT['dp']}, seq_len={WORST_LAYOUT['seq_len']}, "
               f"microbatches={WORST_LAYOUT['microbatches']}, micro_batch={WORST_LAYOUT['micro_batch']}")


def _shape(dims: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, dims)) + ")"


def _collectives(rows: list[calc_comms.CommRow], spec: ModelSpec, tp: int, seq_len: int,
                 micro_batch: int) -> str:
    """One parallelism's collectives and what each carries, by suffixed name and per-rank
    shape: TP the whole `x_BLD` (sequence parallelism's reduce-scatter takes it, its
    all-gather gives it back), PP's sends 1/TP of L (Megatron sends the SP shard), DP the
    gradients (then, under ZeRO, the parameters) of the rank's P/(TP·PP) (`shard_params`
    counts them), ZeRO-3 one layer's at a time."""
    names = [f"[{NAME[r.collective]}]{{.{ROLE[r.collective]}}}" for r in rows]
    kind = rows[0].parallelism
    if kind in ("TP", "TP+SP", "PP"):
        L = seq_len // tp if kind == "PP" else seq_len
        return f"{' + '.join(names)} of `x_BLD` {_shape((micro_batch, L, spec.D))}"
    whose = ("a layer's ", "its ") if kind == "DP ZeRO-3" else ("", "")
    carried = [f"{name} of {whose[i > 0]}"
               f"{'grads' if r.collective in ('all_reduce', 'reduce_scatter') else 'params'}"
               for i, (name, r) in enumerate(zip(names, rows, strict=True))]
    return " + ".join(carried)


WHEN = {
    ("TP", "all_reduce"): "fwd: after attention, MLP; bwd: before",
    ("TP+SP", "reduce_scatter"): "after attention, MLP;",
    ("TP+SP", "all_gather"): "before them (fwd)",
    ("PP", "send"): "each micro-batch, fwd and bwd",
    ("DP", "all_reduce"): "once, under the last bwd",
    ("DP ZeRO-1", "reduce_scatter"): "after bwd;",
    ("DP ZeRO-1", "all_gather"): "after the update",
    ("DP ZeRO-2", "reduce_scatter"): "each micro-batch;",
    ("DP ZeRO-2", "all_gather"): "after the update",
    ("DP ZeRO-3", "reduce_scatter"): "bwd;",
    ("DP ZeRO-3", "all_gather"): "fwd and bwd, per layer, micro-batch",
}
LABEL = {"TP": "TP", "TP+SP": "TP+SP", "PP": "PP", "DP": "DDP",
         "DP ZeRO-1": "ZeRO-1", "DP ZeRO-2": "ZeRO-2", "DP ZeRO-3": "ZeRO-3"}


@table(worst=[f"shard_comm_table({_WORST_ROWS})"])
def shard_comm_table(model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                     seq_len: int = 4096, microbatches: int = 16,
                     micro_batch: int = 1) -> list[list[str]]:
    """Every parallelism's collectives in one training step of the layout, a row per
    parallelism: its collectives and what they carry (shape per rank), when, and the bytes
    one rank sends for them in the step, all from `calc.comms` (bf16). TP is shown alone and with
    sequence parallelism, DP as plain DDP and under each ZeRO stage."""
    spec = _model(model)
    out = []
    for kind in KINDS:
        # reduce-scatter first: the order the halves of an all-reduce run in
        rows = sorted(kind_rows(kind, model, tp, pp, dp, seq_len, microbatches, micro_batch),
                      key=lambda r: r.collective != "reduce_scatter")
        when = " ".join(WHEN[(r.parallelism, r.collective)] for r in rows)
        sent = size(sum(r.bytes_per_rank for r in rows))
        out.append([LABEL[rows[0].parallelism], _collectives(rows, spec, tp, seq_len, micro_batch),
                    when, f"**{sent}**"])
    return out


def _pick(kind: str, collective: str | None, model: str, tp: int, pp: int, dp: int, seq_len: int,
          microbatches: int, micro_batch: int) -> list[calc_comms.CommRow]:
    rows = kind_rows(kind, model, tp, pp, dp, seq_len, microbatches, micro_batch)
    if collective is None:
        return list(rows)
    if text_arg("collective", collective) not in ROLE:
        raise ValueError(f"collective must be one of {', '.join(ROLE)}; got {collective!r}")
    found = [r for r in rows if r.collective == collective]
    if not found:
        raise ValueError(f"{kind} runs no {collective}; it runs "
                         f"{', '.join(r.collective for r in rows)}")
    return found


@calc(worst=[f"shard_sent('ZeRO-3', {_WORST_ROWS})"])
def shard_sent(kind: str, model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
               seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
               collective: str | None = None) -> str:
    """Bytes one rank sends in one step for one parallelism (one of its collectives, or all of
    them), as `mlgrind calc comms` prints them: "300.648 GB"."""
    rows = _pick(kind, collective, model, tp, pp, dp, seq_len, microbatches, micro_batch)
    return size(sum(r.bytes_per_rank for r in rows))


@calc(worst=[f"shard_tensor('ZeRO-3', {_WORST_ROWS})"])
def shard_tensor(kind: str, model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                 seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
                 collective: str | None = None) -> str:
    """The bytes of the tensor one call carries (the n of the ring formulas): "67.109 MB"."""
    rows = _pick(kind, collective, model, tp, pp, dp, seq_len, microbatches, micro_batch)
    return size(rows[0].n_bytes)


@calc(worst=[f"shard_calls('ZeRO-3', {_WORST_ROWS})"])
def shard_calls(kind: str, model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
                collective: str | None = None) -> str:
    """Calls per step of a parallelism's (first) collective, with the calculator's working:
    "(2 fwd + 2 bwd) · layers/PP · m = 4 · 40 · 16 = 2,560"."""
    return _pick(kind, collective, model, tp, pp, dp, seq_len, microbatches,
                 micro_batch)[0].calls_formula


@calc(worst=[f"shard_call_sent('ZeRO-3', {_WORST_ROWS})"])
def shard_call_sent(kind: str, model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                    seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
                    collective: str | None = None) -> str:
    """Bytes one rank sends in ONE call of a parallelism's (first) collective: factor · n."""
    row = _pick(kind, collective, model, tp, pp, dp, seq_len, microbatches, micro_batch)[0]
    return size(calc_comms.bytes_per_rank(row.collective, row.n_bytes, row.group))


@calc(worst=[f"shard_params({_WORST_ROWS})"])
def shard_params(model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                 seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1) -> str:
    """Parameters whose gradients one DP rank reduces, P/(TP·PP), off the calculator's DP
    row (bf16: two bytes each): "4.41e9"."""
    row = kind_rows("DP", model, tp, pp, dp, seq_len, microbatches, micro_batch)[0]
    return num(row.n_bytes / 2)


@calc(worst=[f"shard_total({_WORST_ROWS}, zero=3)"])
def shard_total(model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4,
                seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
                zero: int = 1, sp: bool = True) -> str:
    """Everything one rank sends in one step of the layout: `calc comms`' total."""
    rows = _rows(model, tp, pp, dp, seq_len, microbatches, micro_batch, zero, sp)
    return size(sum(r.bytes_per_rank for r in rows))


@calc(worst=["shard_factor('all_reduce', 4096)"])
def shard_factor(collective: str, ranks: int) -> str:
    """The share of the tensor each rank sends, as a fraction with S substituted: "7/4"."""
    if text_arg("collective", collective) not in ROLE:
        raise ValueError(f"collective must be one of {', '.join(ROLE)}; got {collective!r}")
    S = int_arg("ranks", ranks, 2, MAX_DP)
    lead = {"all_reduce": 2, "send": 0}.get(collective, 1)
    f = Fraction(lead * (S - 1), S) if lead else Fraction(1)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


@calc(worst=["bus_factor_text('all_reduce', 'DP')"])
def bus_factor_text(collective: str = "all_reduce", group: str = "S") -> str:
    """The share of the tensor each rank sends, in symbols with the group's name: "2(TP−1)/TP"."""
    if text_arg("collective", collective) not in ROLE:
        raise ValueError(f"collective must be one of {', '.join(ROLE)}; got {collective!r}")
    if text_arg("group", group) not in ("S", "TP", "PP", "DP"):
        raise ValueError(f"group must be S, TP, PP or DP, got {group!r}")
    return calc_comms.factor_text(collective).replace("S", group)


@calc(worst=["fabric_ratio('tpu-v5e')"])
def fabric_ratio(hardware: str = "h100-sxm") -> str:
    """How many times a rank's scale-up bandwidth is its network bandwidth: "9"."""
    h = _hardware(hardware)
    if h.scale_up is None or h.network_bw is None:
        raise ValueError(f"{hardware} lacks a scale-up fabric or a network bandwidth")
    return f"{h.scale_up.per_direction / h.network_bw:.3g}"


# Tensor parallelism: what each rank holds -------------------------------------------------

# Each weight of a Megatron layer: its full shape in letters, the letter TP cuts, and the cut.
WEIGHTS = {
    "w_q_DHK": ("DHK", "H", "column"),
    "w_k_DGK": ("DGK", "G", "column"),  # w_v_DGK alike
    "w_o_HKD": ("HKD", "H", "row"),
    "w_in_DF": ("DF", "F", "column"),
    "w_out_FD": ("FD", "F", "row"),
}


def _block(full: tuple[int, ...], S: int, axis: int) -> tuple[int, ...]:
    """Rank 0's block of an array of shape `full` cut into S along `axis`, as `co.shard` cuts
    it (np.array_split), on a zero-stride stand-in: views only, nothing allocated."""
    stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), full, (0,) * len(full))
    return np.array_split(stand_in, S, axis=axis)[0].shape


def tp_block(spec: ModelSpec, weight: str, tp: int) -> tuple[int, ...]:
    """Rank 0's block of the weight, cut along its TP letter as Megatron cuts it."""
    letters, cut, _ = WEIGHTS[weight]
    sizes = {"D": spec.D, "H": spec.H, "G": spec.G, "K": spec.K, "F": spec.F}
    full = tuple(sizes[c] for c in letters)
    if full[letters.index(cut)] % tp:
        raise ValueError(f"{spec.name}'s {cut} = {full[letters.index(cut)]} does not split over TP {tp}")
    return _block(full, tp, letters.index(cut))


def _weight(weight: Any) -> str:
    if text_arg("weight", weight) not in WEIGHTS:
        raise ValueError(f"weight must be one of {', '.join(WEIGHTS)}; got {weight!r}")
    return weight


@calc(worst=[f"tp_shard_shape('{WORST_MODEL}', 'w_out_FD', 8)"])
def tp_shard_shape(model: str, weight: str, tp: int = 8) -> str:
    """Rank s's block of one weight under Megatron TP, as a tuple to type: "(8192, 8, 128)"."""
    spec, weight = _model(model), _weight(weight)
    if spec.mla is not None or spec.E:
        raise ValueError(f"{model} is not a dense model with per-head k, v (MLA and MoE differ)")
    return _shape(tp_block(spec, weight, int_arg("tp", tp, 1, MAX_TP)))


@table(worst=[f"tp_shard_table('{WORST_MODEL}', 8)"])
def tp_shard_table(model: str = "llama-3-70b", tp: int = 8) -> list[list[str]]:
    """Every weight of a layer: the letter TP cuts, column- or row-parallel, rank s's block."""
    spec = _model(model)
    int_arg("tp", tp, 1, MAX_TP)
    rows = []
    for weight, (_, cut, kind) in WEIGHTS.items():
        block = tp_block(spec, weight, tp)
        name = f"`{weight}`, `w_v_DGK`" if weight == "w_k_DGK" else f"`{weight}`"
        rows.append([name, f"[{cut}]{{.dim-{'heads' if cut in 'HG' else 'model'}}}", kind,
                     _shape(block)])
    return rows


@calc(worst=[f"sp_shape('{WORST_MODEL}', 64, 1048576, 64)"])
def sp_shape(model: str = "llama-3-70b", tp: int = 8, seq_len: int = 4096,
             micro_batch: int = 1) -> str:
    """One rank's `x_BLD` in the norm and dropout regions under sequence parallelism, L cut
    over the TP ranks: "(1, 512, 8192)"."""
    spec = _model(model)
    tp = int_arg("tp", tp, 1, MAX_TP)
    L, B = int_arg("seq_len", seq_len, 1, MAX_SEQ), int_arg("micro_batch", micro_batch, 1, MAX_MICRO)
    if L % tp:
        raise ValueError(f"seq_len {L} does not split over TP {tp}")
    return _shape(_block((B, L, spec.D), tp, 1))


def sp_pair_sent(ranks: int) -> tuple[int, int]:
    """Bytes rank 0 sends for one all-reduce, and for a reduce-scatter then an all-gather of the
    same tensor, off the ledger of `ref.collectives.Comm`."""
    x = [np.ones(ranks * 64, np.float16) for _ in range(ranks)]
    one, pair = co.Comm(ranks), co.Comm(ranks)
    one.all_reduce(x)
    pair.all_gather(pair.reduce_scatter(x))
    return one.sent[0], pair.sent[0]


@calc(worst=["sp_pair_bytes(16)"])
def sp_pair_bytes(ranks: int = 8) -> str:
    """A simulated reduce-scatter + all-gather pair against one all-reduce of the same tensor:
    "the same bytes as", or "1.25 × the bytes of" should they ever differ."""
    one, pair = sp_pair_sent(int_arg("ranks", ranks, 2, 16))
    return "the same bytes as" if one == pair else f"{Fraction(pair, one)} × the bytes of"


@calc(worst=[f"tp_activations('{WORST_MODEL}', 64, 1048576, 64, True, 'none')"])
def tp_activations(model: str = "llama-3-70b", tp: int = 8, seq_len: int = 4096,
                   micro_batch: int = 1, sp: bool = True, recompute: str = "selective") -> str:
    """Activations one layer keeps per GPU (Korthikanti et al. 2022, Table 2, via
    `calc.memory`): "142.606 MB"."""
    spec = _model(model)
    _flag("sp", sp)
    value = calc_memory.activation_bytes_per_layer(
        int_arg("seq_len", seq_len, 1, MAX_SEQ), int_arg("micro_batch", micro_batch, 1, MAX_MICRO),
        spec.D, spec.H, int_arg("tp", tp, 1, MAX_TP), sp, _recompute(recompute))
    return size(value)


# Data parallel and ZeRO: a real MLP trained on simulated ranks --------------------------------

STAGES = {0: "ZeRO-0", 1: "ZeRO-1", 2: "ZeRO-2", 3: "ZeRO-3"}


@functools.lru_cache(maxsize=4)
def zero_run(stage: int, S: int = 4, D: int = 8, F: int = 16):
    """One Adam step of `ref.zero` at this stage on S simulated ranks: (ledger, rank 0's held
    bytes, the parameters' bytes Ψ)."""
    rng = np.random.default_rng(0)
    params = {"w_in_DF": rng.standard_normal((D, F)) / np.sqrt(D),
              "w_out_FD": rng.standard_normal((F, D)) / np.sqrt(F)}
    batch = (rng.standard_normal((2 * S, D)), rng.standard_normal((2 * S, D)))
    _, comm, ranks = ref_zero.train(stage, S, params, [batch])
    return comm, ranks[0].nbytes(), sum(w.nbytes for w in params.values())


def _stage(stage: Any) -> int:
    return int_arg("stage", stage, 0, 3)


def zero_shards(stage: int, S: int = 4) -> list[str]:
    """The model states rank 0 holds 1/S of, read off its bytes against plain DP's."""
    held, full = zero_run(stage, S)[1], zero_run(0, S)[1]
    return [kind for kind in ("optimizer", "grads", "params") if held[kind] < full[kind]]


def _shards_text(stage: int) -> str:
    """"optimizer" for stage 1, then what each stage adds: "+ grads", "+ params"."""
    new = [k for k in zero_shards(stage) if stage == 0 or k not in zero_shards(stage - 1)]
    if not new:
        return "nothing"
    return ("+ " if stage > 1 else "") + ", ".join(new)


def zero_collectives(stage: int, S: int = 4) -> list[tuple[str, str, int]]:
    """(collective, "grads" or "params", calls) of one step, off the ledger, in the order they
    first run; a call is one per parameter tensor of the MLP."""
    calls: dict[tuple[str, str], int] = {}
    for record in zero_run(stage, S)[0].log:
        key = (record.collective, "grads" if record.tag.startswith("d_") else "params")
        calls[key] = calls.get(key, 0) + 1
    return [(c, what, n // len(ref_zero.NAMES)) for (c, what), n in calls.items()]


def zero_multiple(stage: int, S: int = 4) -> int:
    """k in "sent per rank = k · (S−1)/S · Ψ", off the ledger."""
    comm, _, psi = zero_run(stage, S)
    k = Fraction(comm.sent[0], psi) * Fraction(S, S - 1)
    if k.denominator != 1:
        raise AssertionError(f"ZeRO-{stage} sent {comm.sent[0]} B, not a whole multiple of (S−1)/S · Ψ")
    return int(k)


def _bytes_per_param(stage: int) -> str:
    """Mixed-precision bytes per parameter one GPU holds, symbolic: "2+2+12/DP"."""
    recipe = calc_memory.RECIPES["mixed"]
    terms = [(f"{getattr(recipe, kind):g}", stage >= calc_memory.ZERO_SHARDS[kind])
             for kind in ("params", "grads", "optimizer")]
    if all(sharded for _, sharded in terms):
        return f"({'+'.join(t for t, _ in terms)})/DP"
    if not any(sharded for _, sharded in terms):
        return f"{'+'.join(t for t, _ in terms)} = {sum(float(t) for t, _ in terms):g}"
    return "+".join(f"{t}/DP" if sharded else t for t, sharded in terms)


@table(worst=["zero_stage_table()"])
def zero_stage_table() -> list[list[str]]:
    """ZeRO stages 0–3 on an MLP trained one step on four simulated ranks (`ref.zero`): what
    rank 0 holds 1/DP of and the bytes one rank sends, as a multiple of (DP−1)/DP · n (n: the
    parameters' bytes), both read off the ranks and their ledger; and the bytes per parameter
    one GPU holds in mixed precision (`calc.memory`)."""
    rows = []
    for stage, label in STAGES.items():
        rows.append([label, _shards_text(stage),
                     f"{zero_multiple(stage)}(DP−1)/DP·n", _bytes_per_param(stage)])
    return rows


@calc(worst=["zero_ratio(3, 0)"])
def zero_ratio(stage: int = 3, than: int = 0) -> str:
    """Bytes per rank of one stage over another's, off the simulated ledger: "1.5"."""
    a, b = zero_run(_stage(stage))[0].sent[0], zero_run(_stage(than))[0].sent[0]
    return f"{a / b:.3g}"


@calc(worst=["zero_formula(3)"])
def zero_formula(stage: int = 0) -> str:
    """The mixed-precision bytes per parameter per GPU, symbolic: "2+2+12/DP"."""
    return _bytes_per_param(_stage(stage))


# Memory per GPU of a layout, from the calculator ------------------------------------------


def _memory(model: str, tp: int, pp: int, dp: int, zero: int, recompute: str, seq_len: int,
            microbatches: int, micro_batch: int) -> calc_memory.RankMemory:
    spec = _model(model)
    par = _parallel(spec, tp, pp, dp)
    int_arg("seq_len", seq_len, 1, MAX_SEQ)
    int_arg("microbatches", microbatches, 1, MAX_MICROBATCHES)
    int_arg("micro_batch", micro_batch, 1, MAX_MICRO)
    try:
        return calc_memory.memory_per_rank(spec, par, _zero(zero), micro_batch, seq_len,
                                           _recompute(recompute), tp > 1, "mixed", microbatches)
    except SpecError as error:
        raise ValueError(str(error)) from None


@calc(worst=[(f"shard_memory('{WORST_MODEL}', 8, 2, {MAX_DP}, 0, 'none', {MAX_SEQ}, "
              f"{MAX_MICROBATCHES}, {MAX_MICRO}, 'total')")])
def shard_memory(model: str = "llama-3-70b", tp: int = 8, pp: int = 2, dp: int = 4, zero: int = 1,
                 recompute: str = "selective", seq_len: int = 4096, microbatches: int = 16,
                 micro_batch: int = 1, part: str = "total") -> str:
    """Bytes one GPU holds (`mlgrind calc memory`, sequence parallel when TP > 1): the
    `part` "total", "states" (params + grads + optimizer), "activations", "params", "grads"
    or "optimizer"."""
    parts = ("total", "states", "activations", "params", "grads", "optimizer")
    if text_arg("part", part) not in parts:
        raise ValueError(f"part must be one of {', '.join(parts)}; got {part!r}")
    m = _memory(model, tp, pp, dp, zero, recompute, seq_len, microbatches, micro_batch)
    value = m.params + m.grads + m.optimizer if part == "states" else getattr(m, part)
    return size(value)


def _layout_arg(spec: ModelSpec, layout: Any) -> tuple[int, int, int, int, str]:
    """A layout (tp, pp, dp, zero, recompute), every entry checked."""
    if not (isinstance(layout, tuple) and len(layout) == 5):
        raise ValueError(f"a layout is a tuple (tp, pp, dp, zero, recompute), got {layout!r}")
    tp, pp, dp, zero, recompute = layout
    _parallel(spec, tp, pp, dp)
    return tp, pp, dp, _zero(zero), _recompute(recompute)


@table(worst=[f"shard_memory_table('{WORST_MODEL}', "
              + repr(((8, 2, MAX_DP, 0, "none"),) * MAX_LAYOUTS)
              + f", {MAX_SEQ}, {MAX_MICROBATCHES}, {MAX_MICRO})"])
def shard_memory_table(model: str = "llama-3-70b",
                       layouts: tuple = ((1, 1, 64, 0, "full"), (8, 2, 4, 1, "selective")),
                       seq_len: int = 4096, microbatches: int = 16, micro_batch: int = 1,
                       hardware: str = "h100-sxm") -> list[list[str]]:
    """Memory per GPU of each layout (tp, pp, dp, zero, recompute), from `calc.memory`
    (sequence parallel when TP > 1): model states and the total with activations, ticked when
    it fits in the HBM the calculators let a GPU fill."""
    if not (isinstance(layouts, tuple) and 1 <= len(layouts) <= MAX_LAYOUTS):
        raise ValueError(f"layouts must be a tuple of 1 to {MAX_LAYOUTS} layouts")
    spec = _model(model)
    checked = [_layout_arg(spec, layout) for layout in layouts]
    usable = Request.usable * _hardware(hardware).hbm_bytes
    rows = []
    for tp, pp, dp, zero, recompute in checked:
        m = _memory(model, tp, pp, dp, zero, recompute, seq_len, microbatches, micro_batch)
        name = " ".join(f"{k}{v}" for k, v in (("TP", tp), ("PP", pp), ("DP", dp)) if v > 1)
        rows.append([f"{name} ZeRO-{zero}", recompute, size(m.params + m.grads + m.optimizer),
                     f"**{size(m.total)}** {'✓' if m.total <= usable else '✗'}"])
    return rows


@calc(worst=["usable_memory('b200')"])
def usable_memory(hardware: str = "h100-sxm") -> str:
    """The share of HBM `calc memory` and `calc plan` let a GPU fill: "72.000 GB"."""
    return size(Request.usable * _hardware(hardware).hbm_bytes)


# Pipeline parallelism: simulated schedules ------------------------------------------------

SCHEDULES = {"1f1b": ref_pipeline.one_f_one_b_order, "gpipe": ref_pipeline.gpipe_order}


def _timeline(p: Any, m: Any, schedule: Any) -> list[ref_pipeline.Op]:
    """The simulated schedule, every argument checked first."""
    if text_arg("schedule", schedule) not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    return _simulated(int_arg("p", p, 1, 32), int_arg("m", m, 1, 128), schedule)


@functools.lru_cache(maxsize=32)
def _simulated(p: int, m: int, schedule: str) -> list[ref_pipeline.Op]:
    return ref_pipeline.simulate(SCHEDULES[schedule](p, m))


def ideal_bubble(ops: list[ref_pipeline.Op]) -> float:
    """Idle time over the ideal time m·(t_f + t_b), one stage's busy time (Narayanan et al.'s
    bubble time fraction, (p − 1)/m)."""
    p = 1 + max(op.stage for op in ops)
    makespan = max(op.end for op in ops) - min(op.start for op in ops)
    ideal = sum(op.end - op.start for op in ops) / p
    return (makespan - ideal) / ideal


@calc(worst=["pp_bubble(32, 128, 'ideal', 'gpipe')"])
def pp_bubble(p: int = 4, m: int = 8, of: str = "ideal", schedule: str = "1f1b") -> str:
    """The bubble of the simulated schedule, as a share of the ideal time ("ideal", (p−1)/m)
    or of the whole timeline ("timeline", (p−1)/(m+p−1))."""
    if text_arg("of", of) not in ("ideal", "timeline"):
        raise ValueError(f"of must be 'ideal' or 'timeline', got {of!r}")
    ops = _timeline(p, m, schedule)
    return f"{ref_pipeline.bubble_fraction(ops) if of == 'timeline' else ideal_bubble(ops):.1%}"


@calc(worst=["pp_min_microbatches(16, 5)"])
def pp_min_microbatches(p: int = 4, percent: int = 10) -> str:
    """The fewest micro-batches that keep the simulated 1F1B bubble at most `percent` % of the
    ideal time, by bisection over m (the bubble only shrinks as m grows)."""
    p, target = int_arg("p", p, 1, 16), int_arg("percent", percent, 5, 100) / 100
    low, high = 1, 512  # bubble(512) ≤ 15/512 < 5 %: the answer lies in [1, 512]
    while low < high:
        mid = (low + high) // 2
        ops = ref_pipeline.simulate(ref_pipeline.one_f_one_b_order(p, mid))
        low, high = (low, mid) if ideal_bubble(ops) <= target + 1e-12 else (mid + 1, high)
    return str(low)


@calc(worst=["pp_held(32, 128, 'gpipe')"])
def pp_held(p: int = 4, m: int = 8, schedule: str = "1f1b") -> str:
    """Micro-batches whose activations the first stage holds at its peak, simulated."""
    return f"{ref_pipeline.peak_in_flight(_timeline(p, m, schedule))[0]}"
