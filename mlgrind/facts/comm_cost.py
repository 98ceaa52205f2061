"""Sheet 13: byte-movement formulas and the cost of one collective.

Bytes per rank are read off the simulated collectives: each collective runs on S ranks of real
arrays (`ref.collectives.Comm`), and what the busiest rank sent is divided by the tensor's bytes.
That ratio is checked, every time, against the closed forms the calculator prices with
(`calc.comms.bus_factor`, nccl-tests' bus-bandwidth factors), and the ledger's steps against
`calc.comms.ring_steps`. Times are the calculator's own: `calc.comms.route` picks the fabric of
the bundled hardware table (`calc/hardware.yaml`, each entry citing its datasheet), its β per
rank and one direction and its steps, and the α-β model prices them,

    t = α · steps + factor · n / β.

So the sheet and `mlgrind calc comms` cannot disagree: a card's worked answer is one call of
the calculator, and its test runs the command line.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..calc import comms
from ..calc import hardware as hw_table
from ..calc.memory import Parallel
from ..calc.specs import ModelSpec, load_model, model_names
from ..ref.collectives import Comm, shard
from .core import calc, int_arg, is_int, shown, table, text_arg

NAMES = {"all_reduce": "all-reduce", "reduce_scatter": "reduce-scatter", "all_gather": "all-gather",
         "all_to_all": "all-to-all", "broadcast": "broadcast", "send": "send"}
ROLE = {"all_reduce": "all-reduce", "reduce_scatter": "reduce-scatter", "all_gather": "all-gather",
        "all_to_all": "all-to-all", "broadcast": "p2p", "send": "p2p"}
# What each rank holds before and after, for the table (T: the tensor, n its bytes).
HOLDS = {"all_reduce": ("its T", "the sum ΣT"),
         "reduce_scatter": ("its T", "block s of ΣT"),
         "all_gather": ("block s of T", "all of T"),
         "all_to_all": ("S blocks, one per peer", "one block from each"),
         "broadcast": ("the root: T", "T on every rank"),
         "send": ("src: T", "dst: a copy")}
STEPS = {"all_reduce": "2(S−1)", "reduce_scatter": "S−1", "all_gather": "S−1",
         "all_to_all": "S−1", "broadcast": "S−1", "send": "1"}
SHORT = {"h100-sxm": "H100", "h100-pcie": "H100 PCIe", "h200": "H200", "a100-40gb": "A100 40GB",
         "a100-80gb": "A100", "b200": "B200", "mi300x": "MI300X", "tpu-v4": "TPU v4",
         "tpu-v5e": "TPU v5e", "tpu-v5p": "TPU v5p"}
LINKS = ("", "nvlink", "infinity-fabric", "ici", "pcie", "network")
PARTS = ("tensor", "sent", "steps", "beta", "time", "latency", "bandwidth", "algbw", "busbw",
         "fabric", "route")
MAX_RANKS = 64  # simulated: 2(S−1) steps of S messages each
MAX_TABLE_ROWS = 8
MAX_ALPHA_US = 1000.0
CHUNK = 4  # float32 elements per rank's block in a simulation: 16 bytes
# Model layouts a sheet may price (GPUs = dp · tp): a bound on the work, not a physical limit.
MAX_GPUS = 1 << 16


# Arguments, each checked before any work ---------------------------------------------------


def _collective(name: Any) -> str:
    if text_arg("collective", name) not in NAMES:
        raise ValueError(f"collective must be one of {', '.join(map(repr, NAMES))}; got {name!r}")
    return name


@functools.cache
def _hardware_table() -> dict[str, hw_table.Hardware]:
    return hw_table.load_all()


def _hw(name: Any) -> hw_table.Hardware:
    table_ = _hardware_table()
    if text_arg("hardware", name) not in table_:
        raise ValueError(f"hardware must be one of {', '.join(table_)}; got {name!r}")
    return table_[name]


def _model(name: Any) -> ModelSpec:
    names = model_names()
    if text_arg("model", name) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}; got {name!r}")
    return load_model(name)


def _dtype(name: Any) -> int:
    if text_arg("dtype", name) not in comms.DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(comms.DTYPE_BYTES)}; got {name!r}")
    return comms.DTYPE_BYTES[name]


def _shape(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, tuple) and 1 <= len(value) <= 4
            and all(is_int(d) and 1 <= d <= 1 << 20 for d in value)
            and math.prod(value) <= comms.MAX_ELEMENTS):
        raise ValueError(f"shape must be a tuple of one to four sizes from 1 to {1 << 20:,}, at "
                         f"most 2^53 elements in all, like (4096, 16384); got {shown(value)}")
    return value


def _link(value: Any) -> str | None:
    if text_arg("link", value) not in LINKS:
        raise ValueError(f"link must be one of {', '.join(map(repr, LINKS))}; got {value!r}")
    return value or None


def _alpha(value: Any) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value <= MAX_ALPHA_US):
        raise ValueError(f"alpha_us must be a number of microseconds from 0 to {MAX_ALPHA_US:g}; "
                         f"got {shown(value)}")
    return value * 1e-6


def _part(value: Any) -> str:
    if text_arg("part", value) not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}; got {value!r}")
    return value


# How numbers read on the sheet (three significant figures, decimal units, as the calculator) --


def size_text(x: float) -> str:
    """Bytes in decimal units, three figures: 134 MB, 28.1 GB."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} B"


def time_text(seconds: float) -> str:
    """Three figures, trailing zeros kept: 522 µs, 4.70 ms, 62.5 ms."""
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if seconds >= scale:
            return f"{seconds / scale:#.3g}".rstrip(".") + f" {unit}"
    return f"{seconds:.3g} s"


def rate_text(x: float) -> str:
    """Bytes per second: 450 GB/s, 6.25 GB/s."""
    for scale, unit in ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s")):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} B/s"


def _times_n(factor: str) -> str:
    return "n" if factor == "1" else f"{factor} · n"


def _fraction(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


# The simulated collectives ----------------------------------------------------------------


@functools.cache
def ledger(collective: str, S: int, algorithm: str = "ring") -> tuple[Fraction, int]:
    """Run `collective` on S simulated ranks; return (bytes the busiest rank sent ÷ n, steps),
    n the full tensor: the input of all-reduce, reduce-scatter, all-to-all, broadcast and send,
    the result of all-gather. `collective` "direct_all_reduce" is the naive all-reduce: every
    rank sends its whole tensor to every other (an all-to-all of full copies)."""
    x = np.arange(S * CHUNK, dtype=np.float32)
    n = x.nbytes
    comm = Comm(S)
    if collective == "all_reduce":
        comm.all_reduce([x] * S)
    elif collective == "reduce_scatter":
        comm.reduce_scatter([x] * S)
    elif collective == "all_gather":
        comm.all_gather(shard(x, S))
    elif collective == "all_to_all":
        comm.all_to_all([shard(x, S) for _ in range(S)])
    elif collective == "broadcast":
        comm.broadcast(x, algorithm=algorithm)
    elif collective == "send":
        comm.send(x, 0, 1)
    elif collective == "direct_all_reduce":
        comm.all_to_all([[x] * S for _ in range(S)])
    else:
        raise ValueError(f"no simulation of {collective!r}")
    (record,) = comm.log
    factor = Fraction(max(record.sent), n)
    if collective in comms.COLLECTIVES and algorithm == "ring":
        # The calculator prices with the closed form; the simulated ranks must agree with it.
        closed = Fraction(comms.bus_factor(collective, S)).limit_denominator(1 << 20)
        if factor != closed or record.steps != comms.ring_steps(collective, S):
            raise RuntimeError(f"{collective} on {S} simulated ranks sent {factor} · n in "
                               f"{record.steps} steps; calc.comms says {closed} · n in "
                               f"{comms.ring_steps(collective, S)}")
    return factor, record.steps


@calc(worst=[f"cc_factor('all_reduce', {MAX_RANKS})"])
def cc_factor(collective: str, ranks: int = 0) -> str:
    """The bytes a rank sends, as a multiple of n: the closed form `2(S−1)/S` (ranks 0), or the
    simulated ledger's ratio at `ranks` (`7/4`)."""
    _collective(collective)
    int_arg("ranks", ranks, 0, MAX_RANKS)
    if ranks == 1:
        raise ValueError("ranks must be 0 (the closed form) or at least 2")
    if ranks:
        return _fraction(ledger(collective, ranks)[0])
    return comms.factor_text(collective)


@calc(worst=["cc_limit('all_reduce')"])
def cc_limit(collective: str = "all_reduce") -> int:
    """The factor's limit for many ranks (the closed form at S = 2^40, rounded): what a rank
    sends as a multiple of n, to estimate without the (S−1)/S."""
    return round(comms.bus_factor(_collective(collective), 1 << 40))


@calc(worst=["cc_steps_formula('all_reduce', True)"])
def cc_steps_formula(collective: str = "all_reduce", tex: bool = False) -> str:
    """A ring's steps in symbols: 2(S−1) for an all-reduce, S−1 for the others, 1 for a send."""
    text = STEPS[_collective(collective)]
    return text.replace("−", "-") if tex else text


@calc(worst=[f"cc_steps('all_reduce', {MAX_RANKS})"])
def cc_steps(collective: str, ranks: int = 8, algorithm: str = "ring") -> int:
    """Steps of the collective on `ranks` simulated ranks (broadcast: "ring", a chain, or "tree")."""
    _collective(collective)
    int_arg("ranks", ranks, 2, MAX_RANKS)
    if text_arg("algorithm", algorithm) not in ("ring", "tree") or (
            algorithm == "tree" and collective != "broadcast"):
        raise ValueError(f"algorithm is 'ring', or 'tree' for a broadcast; got {algorithm!r}")
    return ledger(collective, ranks, algorithm)[1]


@calc(worst=[f"cc_direct_ratio({MAX_RANKS})"])
def cc_direct_ratio(ranks: int = 8) -> str:
    """How many times the ring's bytes the naive all-reduce sends (every rank's whole tensor to
    every other): both read off simulated ranks."""
    int_arg("ranks", ranks, 2, MAX_RANKS)
    return _fraction(ledger("direct_all_reduce", ranks)[0] / ledger("all_reduce", ranks)[0])


@table(worst=["cc_collectives_table(16)"])
def cc_collectives_table(ranks: int = 8) -> list[list[str]]:
    """Each collective: what a rank holds before and after, the steps, the bytes a rank sends as
    a multiple of n (closed form), and that multiple read off `ranks` simulated ranks."""
    int_arg("ranks", ranks, 2, 16)
    rows = []
    for c, name in NAMES.items():
        factor, steps = ledger(c, ranks)
        before, after = HOLDS[c]
        label = f"[{name}]{{.{ROLE[c]}}}" + (" (chain)" if c == "broadcast" else "")
        rows.append([label, f"{before} → {after}", f"{STEPS[c]} = {steps}" if STEPS[c] != "1" else "1",
                     _times_n(comms.factor_text(c)), _times_n(_fraction(factor))])
    return rows


@table(worst=[f"cc_scaling_table((4096, 16384), 'bf16', (2, 4, 8, 16, 32, 48, 56, {MAX_RANKS}))"])
def cc_scaling_table(shape: tuple[int, ...] = (4096, 16384), dtype: str = "bf16",
                     ranks: tuple[int, ...] = (2, 4, 8, 64)) -> list[list[str]]:
    """All-reduce of one tensor over more and more ranks: the ring's steps and bytes per rank,
    and the naive all-reduce's (every rank sends all of T to every other), from the ledgers."""
    n = math.prod(_shape(shape)) * _dtype(dtype)
    if not (isinstance(ranks, tuple) and 1 <= len(ranks) <= MAX_TABLE_ROWS):
        raise ValueError(f"ranks must be a tuple of one to {MAX_TABLE_ROWS} rank counts; got {shown(ranks)}")
    for S in ranks:
        int_arg("ranks", S, 2, MAX_RANKS)
    rows = []
    for S in ranks:
        ring, steps = ledger("all_reduce", S)
        direct, _ = ledger("direct_all_reduce", S)
        rows.append([str(S), f"{steps:,}", f"{_times_n(_fraction(ring))} = {size_text(float(ring * n))}",
                     size_text(float(direct * n))])
    return rows


# Fabrics: the bundled hardware table ----------------------------------------------------


def _short(h: hw_table.Hardware) -> str:
    return SHORT.get(h.key, h.key)


def _link_beta(h: hw_table.Hardware, link: str) -> tuple[float, str]:
    """(β per chip in one direction, what the datasheet prints) of one of the chip's links."""
    up = h.scale_up
    if link == "scale-up":
        if up is None:
            raise ValueError(f"{h.key} has no scale-up fabric")
        return up.per_direction, f"{up.name} {rate_text(up.bandwidth)} both ways"
    if link == "link":
        if up is None:
            raise ValueError(f"{h.key} has no scale-up fabric")
        return up.link_bw, f"{up.links} links, {rate_text(up.bandwidth)} both ways"
    if link == "network":
        if h.network_bw is None:
            raise ValueError(f"{h.key} lists no network bandwidth")
        return h.network_bw, f"{h.network_bw * 8 / 1e9:g} Gb/s"
    if link == "pcie":
        if h.pcie_bw is None:
            raise ValueError(f"{h.key} lists no PCIe bandwidth")
        return h.pcie_bw, f"PCIe {rate_text(2 * h.pcie_bw)} both ways"
    raise ValueError(f"link must be 'scale-up', 'link', 'network' or 'pcie'; got {link!r}")


@calc(worst=["cc_link('tpu-v5p', 'link', True)"])
def cc_link(hardware: str = "h100-sxm", link: str = "scale-up", printed: bool = False) -> str:
    """A chip's bandwidth per direction over one of its links (hardware.yaml, halved or turned
    from bits into bytes as the datasheet needs), or, `printed`, the figure the datasheet prints."""
    h = _hw(hardware)
    text_arg("link", link)
    beta, datasheet = _link_beta(h, link)
    return datasheet if printed else rate_text(beta)


@calc(worst=["cc_link_ratio('tpu-v5e', 'scale-up', 'network')"])
def cc_link_ratio(hardware: str = "h100-sxm", fast: str = "scale-up", slow: str = "network") -> str:
    """How many times faster one link of the chip is than another, per direction."""
    h = _hw(hardware)
    text_arg("fast", fast)
    text_arg("slow", slow)
    return f"{_link_beta(h, fast)[0] / _link_beta(h, slow)[0]:.3g}"


@table(worst=["cc_fabrics_table(('h100-sxm', 'h100-pcie', 'h200', 'a100-40gb', 'a100-80gb', 'b200', 'mi300x', 'tpu-v5p'))"])
def cc_fabrics_table(hardware: tuple[str, ...] = ("h100-sxm", "b200", "mi300x", "tpu-v5p")) -> list[list[str]]:
    """Per chip: its scale-up fabric and topology, its β per direction, and its NIC's β per
    direction (hardware.yaml; datasheets print the fabric both ways, the NIC in bits)."""
    if not (isinstance(hardware, tuple) and 1 <= len(hardware) <= MAX_TABLE_ROWS):
        raise ValueError(f"hardware must be a tuple of one to {MAX_TABLE_ROWS} names; got {shown(hardware)}")
    chips = [_hw(name) for name in hardware]
    rows = []
    for h in chips:
        up = h.scale_up
        if up is None:
            raise ValueError(f"{h.key} has no scale-up fabric")
        shape = {"switch": f"switch, {up.domain}", "mesh": f"mesh, {up.domain}",
                 "torus": f"{len(up.torus)}-D torus"}[up.topology]
        nic = rate_text(h.network_bw) if h.network_bw else "—"
        rows.append([_short(h), f"{up.name} {shape}", rate_text(up.per_direction), nic])
    return rows


# The cost of one collective: calc.comms ---------------------------------------------------


def _route(h: hw_table.Hardware, collective: str, S: int, link: str | None, per_node: int) -> comms.Route:
    """calc.comms.route, `per_node` ranks of the group on each node (0: packed, the default)."""
    inner = max(1, h.gpus_per_node // per_node) if per_node else 1
    try:
        return comms.route(h, collective, S, link, inner=inner)
    except comms.SpecError as e:
        raise ValueError(str(e)) from None


def cost(collective: str, n: float, S: int, h: hw_table.Hardware, link: str | None = None,
         per_node: int = 0, alpha: float = 0.0) -> dict[str, float | str]:
    """Every part of one collective's α-β cost, from calc.comms."""
    r = _route(h, collective, S, link, per_node)
    sent = comms.bytes_per_rank(collective, n, S)
    t = r.seconds(collective, n, S, alpha)
    return {"tensor": n, "sent": sent, "steps": r.steps, "beta": r.beta, "time": t,
            "latency": alpha * r.steps, "bandwidth": sent / r.beta, "algbw": n / t, "busbw": sent / t,
            "fabric": r.fabric, "route": r.beta_text}


def _shown(part: str, value: float | str) -> str:
    if part in ("tensor", "sent"):
        return size_text(value)
    if part in ("beta", "algbw", "busbw"):
        return rate_text(value)
    if part in ("time", "latency", "bandwidth"):
        return time_text(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


@calc(worst=[(f"cc_cost('all_reduce', (1048576, 1048576, 8192), 'fp32', {MAX_RANKS}, "
              f"'tpu-v5p', 'time', '', 0, {MAX_ALPHA_US})")])
def cc_cost(collective: str, shape: tuple[int, ...], dtype: str, ranks: int, hardware: str,
            part: str = "time", link: str = "", per_node: int = 0, alpha_us: float = 0.0) -> str:
    """One part of the cost of `collective` on a `shape` tensor of `dtype` over `ranks` chips
    (`mlgrind calc comms --op … --shape … --ranks …`): tensor, sent (per rank), steps, beta,
    time, latency (α·steps), bandwidth (sent/β), algbw, busbw, fabric, route (how β follows
    from the links, the calculator's working). `link` forces a fabric;
    `per_node` puts that many ranks of the group on each node (1: one per node)."""
    _collective(collective)
    n = math.prod(_shape(shape)) * _dtype(dtype)
    S = int_arg("ranks", ranks, 2, 1 << 20)
    h = _hw(hardware)
    _part(part)
    link_ = _link(link)
    int_arg("per_node", per_node, 0, h.gpus_per_node)
    alpha = _alpha(alpha_us)
    return _shown(part, cost(collective, n, S, h, link_, per_node, alpha)[part])


@calc(worst=[f"cc_crossover({1 << 20}, 'tpu-v5p', {MAX_ALPHA_US})"])
def cc_crossover(ranks: int = 8, hardware: str = "h100-sxm", alpha_us: float = 2.0, link: str = "") -> str:
    """The tensor at which a ring all-reduce's latency term equals its bandwidth term:
    α · 2(S−1) = 2(S−1)/S · n / β, so n* = S · α · β."""
    S = int_arg("ranks", ranks, 2, 1 << 20)
    h = _hw(hardware)
    alpha = _alpha(alpha_us)
    r = _route(h, "all_reduce", S, _link(link), 0)
    n = alpha * r.steps * r.beta / comms.bus_factor("all_reduce", S)
    return size_text(n)


@calc(worst=["cc_model_dim('deepseek-v3')"])
def cc_model_dim(model: str = "llama-3-70b") -> str:
    """The model dimension D, read off the bundled config."""
    return f"{_model(model).D:,}"


@calc(worst=[f"cc_token_cost('llama-3.1-405b', 1048576, {MAX_RANKS}, 'h100-sxm', 'time', {MAX_ALPHA_US})"])
def cc_token_cost(model: str = "llama-3-70b", tokens: int = 1, ranks: int = 8,
                  hardware: str = "h100-sxm", part: str = "time", alpha_us: float = 2.0) -> str:
    """A tensor-parallel all-reduce of `tokens` tokens' activations, `y_BD` (tokens × D, bf16):
    one part of its cost, as cc_cost."""
    spec = _model(model)
    int_arg("tokens", tokens, 1, 1 << 20)
    return cc_cost("all_reduce", (tokens, spec.D), "bf16", ranks, hardware, part, "", 0, alpha_us)


@calc(worst=["cc_estimate('all_reduce', (1048576, 1048576, 8192), 'fp32', 'tpu-v5p')"])
def cc_estimate(collective: str, shape: tuple[int, ...], dtype: str, hardware: str = "h100-sxm",
                link: str = "scale-up") -> str:
    """The estimate made without a calculator: the factor rounded to its limit (2 for an
    all-reduce, 1 otherwise), so t ≈ 2n/β or n/β."""
    _collective(collective)
    n = math.prod(_shape(shape)) * _dtype(dtype)
    h = _hw(hardware)
    text_arg("link", link)
    limit = 2 if collective == "all_reduce" else 1
    return time_text(limit * n / _link_beta(h, link)[0])


def _layout(spec: ModelSpec, h: hw_table.Hardware, dp: int, tp: int) -> dict:
    """The data-parallel gradient all-reduce of one training step (calc.comms.step_report)."""
    int_arg("dp", dp, 2, MAX_GPUS)
    int_arg("tp", tp, 1, MAX_GPUS)
    if dp * tp > MAX_GPUS:
        raise ValueError(f"dp × tp must be at most {MAX_GPUS:,}; got {dp * tp:,}")
    try:
        report = comms.step_report(spec, Parallel(dp=dp, tp=tp), h)
    except comms.SpecError as e:
        raise ValueError(str(e)) from None
    (row,) = [c for c in report.collectives if c["parallelism"] == "DP"]
    return row


@calc(worst=[f"cc_dp('deepseek-v3', 'h100-sxm', {MAX_GPUS // 8}, 8, 'time')"])
def cc_dp(model: str = "llama-3-8b", hardware: str = "h100-sxm", dp: int = 8, tp: int = 1,
          part: str = "time") -> str:
    """The data-parallel gradient all-reduce of a training step (bf16 gradients, ZeRO-0), as
    `mlgrind calc comms --model … --dp … --tp …` prices it: tensor (the gradients one rank holds),
    sent, beta, time, steps, fabric."""
    spec, h = _model(model), _hw(hardware)
    _part(part)
    row = _layout(spec, h, dp, tp)
    value = {"tensor": row["n_bytes"], "sent": row["bytes_per_rank"], "beta": row["beta"],
             "time": row["seconds"], "fabric": row["fabric"],
             "steps": comms.ring_steps("all_reduce", row["group"])}.get(part)
    if value is None:
        raise ValueError(f"part must be tensor, sent, beta, time, steps or fabric; got {part!r}")
    return _shown(part, value)


# Worked tables ---------------------------------------------------------------------------


def _where(h: hw_table.Hardware, S: int, link: str | None, per_node: int) -> str:
    if link == "pcie":
        return f"{S} × {_short(h)}, PCIe only"
    if per_node == 1:
        return f"{S} × {_short(h)}, one per node"
    nodes = -(-S // h.gpus_per_node)
    up = h.scale_up
    if up and S <= up.domain and link is None:
        return f"{S} × {_short(h)}" + (", one node" if h.gpus_per_node >= S and up.topology != "torus" else "")
    return f"{S} × {_short(h)}, {nodes} nodes"


_WORST_CASES = ", ".join(["('tpu-v5p', 1048576, '', 0)"] * MAX_TABLE_ROWS)


@table(worst=[f"cc_fabric_table('all_reduce', (1048576, 1048576, 8192), 'fp32', ({_WORST_CASES}))"])
def cc_fabric_table(collective: str = "all_reduce", shape: tuple[int, ...] = (4096, 16384),
                    dtype: str = "bf16", cases: tuple = (("h100-sxm", 8, "", 0),)) -> list[list[str]]:
    """One collective on one tensor over several fabrics; each case (hardware, ranks, link,
    per_node) as cc_cost: where, fabric, β, steps, bytes sent per rank, time."""
    _collective(collective)
    n = math.prod(_shape(shape)) * _dtype(dtype)
    if not (isinstance(cases, tuple) and 1 <= len(cases) <= MAX_TABLE_ROWS
            and all(isinstance(c, tuple) and len(c) == 4 for c in cases)):
        raise ValueError(f"cases must be a tuple of one to {MAX_TABLE_ROWS} (hardware, ranks, link, "
                         f"per_node) tuples; got {shown(cases)}")
    checked = []
    for hardware, ranks, link, per_node in cases:
        h = _hw(hardware)
        checked.append((h, int_arg("ranks", ranks, 2, 1 << 20), _link(link),
                        int_arg("per_node", per_node, 0, h.gpus_per_node)))
    rows = []
    for h, S, link, per_node in checked:
        c = cost(collective, n, S, h, link, per_node)
        rows.append([_where(h, S, link, per_node), str(c["fabric"]), rate_text(c["beta"]),
                     f"{c['steps']:,}", size_text(c["sent"]), time_text(c["time"])])
    return rows


@table(worst=[f"cc_dp_table('deepseek-v3', 'h100-sxm', ({', '.join([f'({MAX_GPUS // 8}, 8)'] * 8)}))"])
def cc_dp_table(model: str = "llama-3-8b", hardware: str = "h100-sxm",
                layouts: tuple = ((8, 1), (64, 1), (8, 8))) -> list[list[str]]:
    """A model's data-parallel gradient all-reduce for each (dp, tp) layout: where it runs, the
    gradients one rank holds, what it sends, β and the time (calc.comms.step_report)."""
    spec, h = _model(model), _hw(hardware)
    if not (isinstance(layouts, tuple) and 1 <= len(layouts) <= MAX_TABLE_ROWS
            and all(isinstance(x, tuple) and len(x) == 2 for x in layouts)):
        raise ValueError(f"layouts must be a tuple of one to {MAX_TABLE_ROWS} (dp, tp) pairs; "
                         f"got {shown(layouts)}")
    for dp, tp in layouts:
        int_arg("dp", dp, 2, MAX_GPUS)
        int_arg("tp", tp, 1, MAX_GPUS)
    rows = []
    for dp, tp in layouts:
        row = _layout(spec, h, dp, tp)
        gpus = dp * tp
        nodes = -(-gpus // h.gpus_per_node)
        where = f"DP {dp}" + (f" × TP {tp}" if tp > 1 else "") + f": {gpus} × {_short(h)}, " + (
            "one node" if nodes == 1 else f"{nodes} nodes")
        rows.append([where, size_text(row["n_bytes"]), size_text(row["bytes_per_rank"]),
                     rate_text(row["beta"]), time_text(row["seconds"])])
    return rows
