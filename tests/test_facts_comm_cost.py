"""Sheet 13's computations: the bytes the simulated collectives move against the reference's
closed forms and nccl-tests' published bus-bandwidth factors; the fabrics against the datasheet
figures of hardware.yaml; and every worked answer on a card against `mlgrind calc` run on the
command line, so that cards and calculators cannot drift apart."""

from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources

import pytest
import yaml

from mlgrind.calc.specs import load_model
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import comm_cost as cc
from mlgrind.ref import collectives as ref
from tests.conftest import calc_json, card_field

CARDS = "13-collectives.yaml"
TENSOR = ("--shape", "4096x16384", "--dtype", "bf16")


def nccl_factor(collective: str, S: int) -> Fraction:
    """nccl-tests doc/PERFORMANCE.md, "Summary": busbw = algbw × this factor."""
    return {"all_reduce": Fraction(2 * (S - 1), S), "reduce_scatter": Fraction(S - 1, S),
            "all_gather": Fraction(S - 1, S), "all_to_all": Fraction(S - 1, S),
            "broadcast": Fraction(1), "send": Fraction(1)}[collective]


# -- the ledger against the closed forms ---------------------------------------------------------


@pytest.mark.parametrize("S", [2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("collective", list(cc.NAMES))
def test_ledger_bytes_are_the_reference_closed_forms_and_nccl_factors(collective, S) -> None:
    factor, steps = cc.ledger(collective, S)
    n = S * cc.CHUNK * 4  # the simulated float32 tensor
    closed = {"all_reduce": ref.ring_all_reduce_bytes, "reduce_scatter": ref.ring_reduce_scatter_bytes,
              "all_gather": ref.ring_all_gather_bytes, "all_to_all": ref.all_to_all_bytes,
              "broadcast": ref.broadcast_bytes, "send": lambda n, S: n}[collective](n, S)
    assert factor * n == closed
    assert factor == nccl_factor(collective, S)
    assert steps == {"all_reduce": 2 * (S - 1), "send": 1}.get(collective, S - 1)


@pytest.mark.parametrize("S", [2, 3, 5, 8, 16])
def test_tree_broadcast_and_direct_all_reduce(S) -> None:
    tree, steps = cc.ledger("broadcast", S, "tree")
    assert steps == math.ceil(math.log2(S)) and tree * 1 == ref.broadcast_bytes(1, S, "tree")
    direct, _ = cc.ledger("direct_all_reduce", S)
    assert direct == S - 1  # every rank sends all of T to each of the others
    assert cc.cc_direct_ratio(S) == cc._fraction(Fraction(S, 2))


def test_collectives_table_reads_the_ledger() -> None:
    rows = TABLES["cc_collectives_table"](ranks=8)
    by_name = {r[0].split("]")[0].strip("["): r for r in rows}
    assert by_name["all-reduce"][2] == "2(S−1) = 14" and by_name["all-reduce"][4] == "7/4 · n"
    assert by_name["all-gather"][4] == "7/8 · n" and by_name["send"][4] == "n"


def test_scaling_table_bytes_flat_in_s_direct_linear() -> None:
    n = 4096 * 16384 * 2
    rows = TABLES["cc_scaling_table"](shape=(4096, 16384), dtype="bf16", ranks=(2, 8, 64))
    for (S, steps, ring, direct), s in zip(rows, (2, 8, 64), strict=True):
        assert int(S) == s and int(steps) == 2 * (s - 1)
        assert ring.endswith(cc.size_text(ref.ring_all_reduce_bytes(n, s)))
        assert direct == cc.size_text((s - 1) * n)


# -- fabrics against the datasheet figures ------------------------------------------------------


def test_fabrics_are_the_datasheets_halved_and_bits_to_bytes() -> None:
    raw = yaml.safe_load((resources.files("mlgrind.calc") / "hardware.yaml").read_text())
    rows = TABLES["cc_fabrics_table"](hardware=("h100-sxm", "b200", "mi300x", "tpu-v5p"))
    for row, key in zip(rows, ("h100-sxm", "b200", "mi300x", "tpu-v5p"), strict=True):
        e = raw[key]
        assert row[2] == cc.rate_text(e["scale_up"]["gbps"] * 1e9 / 2)
        assert row[3] == cc.rate_text(e["network_gbit"] * 1e9 / 8)
    # The figures the sheet cites: H100 NVLink 900 GB/s, a 400 Gb/s NIC, PCIe Gen5 128 GB/s.
    assert CALC["cc_link"]("h100-sxm") == "450 GB/s"
    assert CALC["cc_link"]("h100-sxm", "network") == "50 GB/s"
    assert CALC["cc_link"]("h100-sxm", "pcie") == "64 GB/s"


# -- every worked answer on a card, against the command line -----------------------------------


def op(*args: object) -> dict:
    return calc_json("comms", "--op", "all-reduce", *args)


def dp_row(*args: object) -> dict:
    (row,) = [c for c in calc_json("comms", "--model", "llama-3-8b", *args)["collectives"]
              if c["parallelism"] == "DP"]
    return row


def crossover() -> str:
    """n* = α·steps·β / factor, each read off the calculator; at that size the latency and
    bandwidth terms are equal, so the time is twice the latency term."""
    j = op(*TENSOR, "--ranks", 8, "--hw", "h100")
    factor = j["sent_per_rank"] / j["tensor"]
    n = 2e-6 * j["steps"] * j["bandwidth"] / factor
    at = op("--shape", str(round(n / 2)), "--ranks", 8, "--hw", "h100", "--latency", 2e-6)
    assert at["time"] == pytest.approx(2 * 2e-6 * at["steps"])
    return cc.size_text(n)


def decode(part: str) -> str:
    D = load_model("llama-3-70b").D
    j = op("--shape", f"1x{D}", "--ranks", 8, "--hw", "h100", "--latency", 2e-6)
    latency = 2e-6 * j["steps"]
    assert j["time"] == pytest.approx(latency + j["sent_per_rank"] / j["bandwidth"])
    return cc.time_text(latency if part == "latency" else j["time"] - latency)


def hardware(key: str) -> dict:
    return calc_json("hardware")[key]


def one_per_node() -> str:
    """8 ranks on 8 nodes: the bytes of `--op`, at the β the calculator gives a DP group that
    spans nodes one rank per node (TP 8 fills each node)."""
    sent = op(*TENSOR, "--ranks", 8, "--hw", "h100", "--link", "network")["sent_per_rank"]
    return cc.time_text(sent / dp_row("--dp", 8, "--tp", 8)["beta"])


WORKED = [
    ("cc-ring-steps", lambda: str(op(*TENSOR, "--ranks", 8, "--hw", "h100")["steps"])),
    ("cc-flat-in-s", lambda: f"{op(*TENSOR, '--ranks', 8)['steps']} → {op(*TENSOR, '--ranks', 64)['steps']}"),
    ("cc-crossover", crossover),
    ("cc-decode-allreduce", lambda: decode("latency")),
    ("cc-decode-allreduce", lambda: decode("bandwidth")),
    ("cc-nvlink", lambda: cc.rate_text(hardware("h100-sxm")["scale_up"]["per_direction"])),
    ("cc-nic", lambda: cc.rate_text(hardware("h100-sxm")["network_bw"])),
    ("cc-nvlink-vs-nic", lambda: f"{hardware('h100-sxm')['nvlink_bw'] / hardware('h100-sxm')['network_bw']:.3g}×"),
    ("cc-tpu-ici", lambda: cc.rate_text(hardware("tpu-v5p")["scale_up"]["link_bw"])),
    ("cc-tpu-ici", lambda: cc.rate_text(op(*TENSOR, "--ranks", 8, "--hw", "v5p")["bandwidth"])),
    ("cc-worked-nvlink", lambda: cc.time_text(op(*TENSOR, "--ranks", 8, "--hw", "h100")["time"])),
    ("cc-worked-two-nodes", lambda: cc.time_text(op(*TENSOR, "--ranks", 16, "--hw", "h100")["time"])),
    ("cc-worked-one-per-node", one_per_node),
    ("cc-worked-llama-dp8", lambda: cc.size_text(dp_row("--dp", 8)["bytes_per_rank"])),
    ("cc-worked-llama-dp8", lambda: cc.time_text(dp_row("--dp", 8)["seconds"])),
    ("cc-worked-llama-dp64", lambda: cc.size_text(dp_row("--dp", 64)["bytes_per_rank"])),
    ("cc-worked-llama-dp64", lambda: cc.time_text(dp_row("--dp", 64)["seconds"])),
]


@pytest.mark.parametrize(("note", "answer"), WORKED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WORKED)])
def test_worked_answer_is_the_calculators(note, answer) -> None:
    assert answer() in card_field(CARDS, note, "back")


def test_sheet_tables_are_the_calculators() -> None:
    rows = TABLES["cc_fabric_table"](collective="all_reduce", shape=(4096, 16384), dtype="bf16",
                                     cases=(("h100-sxm", 8, "", 0), ("h100-sxm", 16, "", 0),
                                            ("h100-sxm", 8, "pcie", 0), ("mi300x", 8, "", 0)))
    for row, args in zip(rows, [("--ranks", 8, "--hw", "h100"), ("--ranks", 16, "--hw", "h100"),
                                ("--ranks", 8, "--hw", "h100", "--link", "pcie"),
                                ("--ranks", 8, "--hw", "mi300x")], strict=True):
        j = op(*TENSOR, *args)
        assert row[1:] == [j["fabric"], cc.rate_text(j["bandwidth"]), str(j["steps"]),
                           cc.size_text(j["sent_per_rank"]), cc.time_text(j["time"])]
    rows = TABLES["cc_dp_table"](model="llama-3-8b", hardware="h100-sxm", layouts=((8, 1), (8, 8)))
    for row, args in zip(rows, [("--dp", 8), ("--dp", 8, "--tp", 8)], strict=True):
        j = dp_row(*args)
        assert row[1:] == [cc.size_text(j["n_bytes"]), cc.size_text(j["bytes_per_rank"]),
                           cc.rate_text(j["beta"]), cc.time_text(j["seconds"])]


# -- arguments and costs -------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: CALC["cc_factor"]("gather"),
    lambda: CALC["cc_factor"]("all_reduce", 1),
    lambda: CALC["cc_steps"]("all_reduce", 10**6),
    lambda: CALC["cc_cost"]("all_reduce", (2**40, 2**40), "bf16", 8, "h100-sxm"),
    lambda: CALC["cc_cost"]("all_reduce", (8,), "bf16", 8, "h100-sxm", "time", "ici"),
    lambda: CALC["cc_cost"]("all_reduce", (8,), "bf16", 8, "h100-sxm", "time", "", 0, -1),
    lambda: CALC["cc_dp"]("gpt-5", "h100-sxm"),
    lambda: TABLES["cc_scaling_table"](ranks=tuple(range(2, 12))),
    lambda: TABLES["cc_fabric_table"](cases=(("h100-sxm", 8),)),
])
def test_bad_arguments_are_refused_with_a_reason(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_every_computation_declares_its_worst_case() -> None:
    mine = [n for n in [*CALC, *TABLES] if n.startswith("cc_")]
    assert mine and all(WORST.get(n) for n in mine)
