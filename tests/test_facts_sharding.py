"""Sheet 11's computations: every worked card against `mlgrind calc` run as a learner runs it;
the calculators' collectives against the simulated rings and the ZeRO stages trained on
simulated ranks; pipeline bubbles and held micro-batches against the papers' closed forms;
shapes and activations against independent formulas."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import calc_json, card_field

from mlgrind.calc import comms as calc_comms
from mlgrind.calc import memory as calc_memory
from mlgrind.calc.working import size
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import sharding as sh
from mlgrind.ref import zero as ref_zero
from mlgrind.ref.collectives import Comm

CARDS = "11-sharding.yaml"
MODEL = ("--model", "llama-3-70b")
LAYOUT = (*MODEL, "--tp", 8, "--pp", 2, "--dp", 4, "--seq-len", 4096, "--microbatches", 16)


def step_bytes(label: str, *args: str | int) -> float:
    """What `mlgrind calc comms` says one rank sends a step for the rows of one parallelism."""
    rows = calc_json("comms", *args)["collectives"]
    found = [c["bytes_per_rank"] for c in rows if c["parallelism"] == label]
    assert found, f"no {label} row in {[c['parallelism'] for c in rows]}"
    return sum(found)


def memory(key: str | tuple[str, ...], *args: str | int) -> float:
    data = calc_json("memory", *args)
    return sum(data[k] for k in ((key,) if isinstance(key, str) else key))


STATES = ("params", "grads", "optimizer")

# (note id, field, what the CLI says): every worked question on the cards.
WORKED = [
    ("shard-tp-bytes-per-call", "back",
     lambda: calc_json("comms", "--op", "all-reduce", "--shape", "1x4096x8192", "--dtype", "bf16",
                       "--ranks", 8)["sent_per_rank"]),
    ("shard-sp-activations", "back",
     lambda: memory("activations_per_layer", *MODEL, "--tp", 8, "--seq-len", 4096,
                    "--recompute", "selective")),
    ("shard-sp-activations", "back",
     lambda: memory("activations_per_layer", *MODEL, "--tp", 8, "--seq-len", 4096,
                    "--recompute", "selective", "--sp")),
    ("shard-layout-fits", "back",
     lambda: memory("total", *LAYOUT, "--zero", 1, "--sp", "--recompute", "selective")),
    ("shard-layout-fits", "back",
     lambda: memory("usable_memory", *LAYOUT, "--zero", 1, "--sp", "--recompute", "selective")),
    ("shard-layout-fits", "extra",
     lambda: memory(STATES, *LAYOUT, "--zero", 1, "--sp", "--recompute", "selective")),
    ("shard-tp8-dp8-zero", "back",
     lambda: memory("total", *MODEL, "--tp", 8, "--dp", 8, "--zero", 0, "--sp", "--seq-len", 4096,
                    "--recompute", "selective")),
    ("shard-tp8-dp8-zero", "back",
     lambda: memory("total", *MODEL, "--tp", 8, "--dp", 8, "--zero", 1, "--sp", "--seq-len", 4096,
                    "--recompute", "selective")),
    ("shard-tp-bytes-per-step", "back", lambda: step_bytes("TP", *LAYOUT)),
    ("shard-pp-bytes", "back", lambda: step_bytes("PP", *LAYOUT, "--sp")),
    ("shard-dp-bytes", "back", lambda: step_bytes("DP", *LAYOUT, "--zero", 0)),
    ("shard-zero12-bytes", "back", lambda: step_bytes("DP ZeRO-1", *LAYOUT, "--zero", 1, "--sp")),
    ("shard-zero12-bytes", "back", lambda: step_bytes("DP ZeRO-2", *LAYOUT, "--zero", 2, "--sp")),
    ("shard-zero3-bytes", "back", lambda: step_bytes("DP ZeRO-3", *LAYOUT, "--zero", 3, "--sp")),
]


@pytest.mark.parametrize(("note", "field", "cli"), WORKED, ids=[f"{n}-{i}" for i, (n, _, _) in
                                                                 enumerate(WORKED)])
def test_worked_card_shows_what_the_calculator_prints(note, field, cli) -> None:
    assert size(cli()) in card_field(CARDS, note, field)


@pytest.mark.parametrize("ranks", [4, 8])
def test_tp_factor_card_is_the_calculators_share(ranks: int) -> None:
    """The share of `x_BLD` one rank sends, from the CLI's sent / tensor."""
    one = calc_json("comms", "--op", "all-reduce", "--shape", "1x4096x8192", "--ranks", ranks)
    share = Fraction(int(one["sent_per_rank"]), one["tensor"])
    assert f" {share.numerator}/{share.denominator} " in card_field(CARDS, "shard-tp-bytes-vs-tp")


def test_the_step_table_is_the_calculators_rows() -> None:
    """Each row of the sheet's table sends what `calc comms` prints for that parallelism."""
    rows = TABLES["shard_comm_table"]()
    expected = {
        "TP": step_bytes("TP", *LAYOUT),
        "TP+SP": step_bytes("TP+SP", *LAYOUT, "--sp"),
        "PP": step_bytes("PP", *LAYOUT, "--sp"),
        "DDP": step_bytes("DP", *LAYOUT),
        "ZeRO-1": step_bytes("DP ZeRO-1", *LAYOUT, "--zero", 1, "--sp"),
        "ZeRO-2": step_bytes("DP ZeRO-2", *LAYOUT, "--zero", 2, "--sp"),
        "ZeRO-3": step_bytes("DP ZeRO-3", *LAYOUT, "--zero", 3, "--sp"),
    }
    assert [row[0] for row in rows] == list(expected)
    for row in rows:
        assert row[-1] == f"**{size(expected[row[0]])}**"
    # sequence parallelism moves exactly TP's bytes, as two collectives
    assert expected["TP+SP"] == expected["TP"]


# -- the calculator's collectives against simulated rings ---------------------------------------


@pytest.mark.parametrize("S", [2, 4, 8])
@pytest.mark.parametrize("collective", ["all_reduce", "reduce_scatter", "all_gather"])
def test_bytes_per_rank_match_a_simulated_ring(collective: str, S: int) -> None:
    n_elements = S * 96  # a bf16 tensor (float16 is as wide), evenly split
    x = [np.ones(n_elements, np.float16) for _ in range(S)]
    comm = Comm(S)
    if collective == "all_gather":
        comm.all_gather([a[: n_elements // S] for a in x])
    else:
        getattr(comm, collective)(x)
    assert comm.sent[0] == calc_comms.bytes_per_rank(collective, n_elements * 2, S)


@pytest.mark.parametrize("S", [2, 3, 8, 16])
def test_a_reduce_scatter_then_all_gather_sends_what_one_all_reduce_sends(S: int) -> None:
    one, pair = sh.sp_pair_sent(S)
    assert one == pair


def test_tp_tensor_is_the_activation_of_the_micro_batch() -> None:
    """Independent: B·L·D bf16 elements; SP and PP send 1/TP of L."""
    (tp,) = sh.kind_rows("TP", "llama-3-70b", 8, 2, 4, 4096, 16)
    (pp,) = sh.kind_rows("PP", "llama-3-70b", 8, 2, 4, 4096, 16)
    assert tp.n_bytes == 1 * 4096 * 8192 * 2
    assert pp.n_bytes == tp.n_bytes / 8
    assert CALC["sp_shape"]("llama-3-70b", 8, 4096, 1) == "(1, 512, 8192)"


def test_dp_gradients_are_the_parameters_over_tp_times_pp() -> None:
    total = calc_json("params", *MODEL)["total"]
    (dp,) = sh.kind_rows("DP", "llama-3-70b", 8, 2, 4, 4096, 16)
    assert dp.n_bytes == pytest.approx(total / (8 * 2) * 2)


# -- ZeRO: the stages trained on simulated ranks -------------------------------------------------


def test_every_zero_stage_takes_the_same_step_as_plain_dp() -> None:
    rng = np.random.default_rng(1)
    params = {"w_in_DF": rng.standard_normal((4, 8)), "w_out_FD": rng.standard_normal((8, 4))}
    batches = [(rng.standard_normal((8, 4)), rng.standard_normal((8, 4))) for _ in range(3)]
    reference, _, _ = ref_zero.train(0, 4, params, batches)
    for stage in (1, 2, 3):
        final, _, _ = ref_zero.train(stage, 4, params, batches)
        for name in params:
            np.testing.assert_allclose(final[name], reference[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_shards_read_off_the_ranks_are_the_calculators(stage: int) -> None:
    sharded = {kind for kind, first in calc_memory.ZERO_SHARDS.items() if stage >= first}
    assert set(sh.zero_shards(stage)) == sharded
    # and the calculator's bytes per parameter shrink exactly those states by DP
    whole = calc_memory.zero_state_bytes(1, 1, 0)
    split = calc_memory.zero_state_bytes(1, 8, stage)
    assert {k for k in whole if split[k] < whole[k]} == sharded


def test_zero_bytes_per_rank_off_the_ledger() -> None:
    """ZeRO's §7: stages 1 and 2 move DP's 2Ψ, stage 3 3Ψ (×(S−1)/S for a ring)."""
    assert [sh.zero_multiple(stage) for stage in range(4)] == [2, 2, 2, 3]
    assert CALC["zero_ratio"](3, 0) == "1.5"


@pytest.mark.parametrize("m", [1, 16])
def test_the_calculators_zero_rows_keep_the_ledgers_ratios(m: int) -> None:
    """On one micro-batch the ledger's ratios; on m, ZeRO-2 reduce-scatters and ZeRO-3
    gathers and reduce-scatters on every one (ZeRO-1 keeps whole gradients, reduced once)."""
    layout = (*MODEL, "--tp", 8, "--pp", 2, "--dp", 4, "--seq-len", 4096, "--microbatches", m)
    dp = step_bytes("DP", *layout, "--zero", 0)
    half = dp / 2  # a reduce-scatter or an all-gather of the same gradients
    assert step_bytes("DP ZeRO-1", *layout, "--zero", 1) == pytest.approx(dp)
    assert step_bytes("DP ZeRO-2", *layout, "--zero", 2) == pytest.approx(m * half + half)
    assert step_bytes("DP ZeRO-3", *layout, "--zero", 3) == pytest.approx(m * 1.5 * dp)


def test_zero_collectives_off_the_ledger() -> None:
    assert sh.zero_collectives(0) == [("all_reduce", "grads", 1)]
    assert sh.zero_collectives(1) == [("reduce_scatter", "grads", 1), ("all_gather", "params", 1)]
    assert sh.zero_collectives(3) == [("all_gather", "params", 2), ("reduce_scatter", "grads", 1)]


def test_mixed_precision_bytes_per_parameter() -> None:
    """ZeRO §3.1: 2Ψ + 2Ψ + KΨ with K = 12."""
    assert sum(calc_memory.zero_state_bytes(1, 64, 0).values()) == 16
    assert sum(calc_memory.zero_state_bytes(1, 64, 3).values()) == 16 / 64
    assert CALC["zero_formula"](0) == "2+2+12 = 16"
    assert CALC["zero_formula"](1) == "2+2+12/DP"
    assert CALC["zero_formula"](3) == "(2+2+12)/DP"


# -- pipeline: the simulated schedules against the papers' closed forms --------------------------


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
@pytest.mark.parametrize(("p", "m"), [(2, 6), (4, 8), (4, 16), (8, 8)])
def test_bubble_is_the_papers(schedule: str, p: int, m: int) -> None:
    assert CALC["pp_bubble"](p, m, "ideal", schedule) == f"{(p - 1) / m:.1%}"
    assert CALC["pp_bubble"](p, m, "timeline", schedule) == f"{(p - 1) / (m + p - 1):.1%}"


@pytest.mark.parametrize(("p", "percent"), [(2, 10), (4, 10), (4, 5), (8, 25)])
def test_fewest_microbatches_is_the_closed_forms(p: int, percent: int) -> None:
    """Narayanan et al.: (p − 1)/m ≤ target, so m = ⌈(p − 1)/target⌉."""
    assert CALC["pp_min_microbatches"](p, percent) == str(-(-(p - 1) * 100 // percent))


@pytest.mark.parametrize(("p", "m"), [(2, 6), (4, 8), (8, 16)])
def test_first_stage_holds_m_under_gpipe_and_p_under_1f1b(p: int, m: int) -> None:
    assert CALC["pp_held"](p, m, "gpipe") == str(m)
    assert CALC["pp_held"](p, m, "1f1b") == str(p)


# -- tensor parallel: shapes and activations against independent formulas ------------------------


def test_tp_blocks_cut_the_letter_megatron_cuts() -> None:
    # Llama-3-70B: D 8192, H 64, G 8, K 128, F 28672 (config.json)
    expected = {"w_q_DHK": (8192, 8, 128), "w_k_DGK": (8192, 1, 128), "w_o_HKD": (8, 128, 8192),
                "w_in_DF": (8192, 3584), "w_out_FD": (3584, 8192)}
    spec = sh._model("llama-3-70b")
    for weight, shape in expected.items():
        assert sh.tp_block(spec, weight, 8) == shape
    assert CALC["tp_shard_shape"]("llama-3-70b", "w_q_DHK", 8) == "(8192, 8, 128)"


def test_activations_are_korthikantis_table_2() -> None:
    s, b, h, t = 4096, 1, 8192, 8
    assert CALC["tp_activations"]("llama-3-70b", t, s, b, False) == size(s * b * h * (10 + 24 / t))
    assert CALC["tp_activations"]("llama-3-70b", t, s, b, True) == size(s * b * h * 34 / t)


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "args", "message"), [
    ("shard_sent", ("EP",), "kind must be one of"),
    ("shard_sent", ("TP", "llama-3-70b", 3), "heads cannot be split"),
    ("shard_sent", ("PP", "llama-3-70b", 8, 1), "its group has one rank"),
    ("tp_shard_shape", ("deepseek-v3", "w_q_DHK"), "not a dense model"),
    ("pp_bubble", (4, 8, "bubble"), "of must be"),
    ("shard_memory", ("llama-3-70b", 8, 2, 4, 4), "zero must be"),
])
def test_bad_arguments_name_what_is_wrong(name, args, message) -> None:
    with pytest.raises(ValueError, match=message):
        CALC[name](*args)


def test_every_registration_declares_its_worst_case() -> None:
    names = [n for n, fn in {**CALC, **TABLES}.items() if fn.__module__ == sh.__name__]
    assert names and all(n in WORST for n in names)
