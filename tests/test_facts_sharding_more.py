"""Sheet 12's computations: checkpointing on the reference stack against the reference's own
checkpointed run, ring attention and expert parallelism against their ledgers and einsum counts,
the closed forms against published figures, and every worked card against `mlgrind calc`."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from mlgrind.calc.working import dur, size
from mlgrind.facts import CALC, TABLES
from mlgrind.facts import sharding_more as sm
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.ref import checkpointing as ck
from mlgrind.ref import collectives as co
from mlgrind.ref import context_parallel as cpar
from mlgrind.ref import mlp, moe
from mlgrind.ref.einsum import count_flops
from tests.conftest import calc_json, card_field

CARDS = "12-sharding-more.yaml"

# -- checkpointing: the traced step is the reference's -------------------------------------


@pytest.mark.parametrize(("n", "every"), [(4, 1), (5, 2), (6, 3), (7, 3), (16, 2)])
def test_traced_step_matches_the_reference_checkpointed_run(n, every) -> None:
    events, unit, grads = sm.trace(n, every)
    x_BD, w_in, w_out, d_y_BD = sm._stack(n)
    _, checkpoints = ck.checkpointed_forward(x_BD, w_in, w_out, every)
    _, d_w_in, d_w_out, peak = ck.checkpointed_backward(d_y_BD, checkpoints, w_in, w_out, every)
    assert max(held for _, _, held in events) == peak
    assert events[-1][2] == 0  # everything freed at the end of the step
    for got, expected in zip(grads, d_w_in + d_w_out, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    per_layer = mlp.mlp_flops(sm.CK_B, sm.CK_D, sm.CK_F)
    assert sum(f for _, f, _ in events) == 4 * n * per_layer  # fwd + recompute + 2 × fwd
    assert unit == sm.CK_B * sm.CK_D * 8


def test_traced_plain_step_keeps_every_layer_and_costs_three_forwards() -> None:
    n = 6
    events, _, grads = sm.trace(n, None)
    x_BD, w_in, w_out, d_y_BD = sm._stack(n)
    _, saved = ck.stack_forward(x_BD, w_in, w_out)
    _, d_w_in, d_w_out = ck.stack_backward(d_y_BD, saved)
    assert max(h for _, _, h in events) == ck.stack_activation_bytes(n, sm.CK_B, sm.CK_D, sm.CK_F, 8)
    assert sum(f for _, f, _ in events) == 3 * n * mlp.mlp_flops(sm.CK_B, sm.CK_D, sm.CK_F)
    for got, expected in zip(grads, d_w_in + d_w_out, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_step_multiples_and_peaks() -> None:
    assert (CALC["ckpt_multiple"]("full"), CALC["ckpt_multiple"]("none")) == ("4", "3")
    assert CALC["ckpt_backward_multiple"]() == "2"
    # keeping all: a layer holds x_BD and h_BF, (D + F)/D x_BD's each
    assert CALC["ckpt_peak"](16, 0) == f"{16 * (sm.CK_D + sm.CK_F) // sm.CK_D}"
    # every k: j+1 checkpoints, k-1 more inputs and k h_BF's, at the worst segment (j = n/k - 1)
    k, n = 2, 16
    assert CALC["ckpt_peak"](16, 2) == f"{n // k + (k - 1) + k * sm.CK_F // sm.CK_D}"
    # Chen et al.'s rule, as the reference states it: k ≈ sqrt(n·D/(D + F))
    assert CALC["ckpt_sqrt_rule"](16) == str(round(math.sqrt(16 * sm.CK_D / (sm.CK_D + sm.CK_F))))


def test_layer_formula_is_korthikanti_table_2() -> None:
    # Korthikanti et al. 2022 (arXiv 2205.05198), eq. 1 / Table 2: sbh(34 + 5as/h) without
    # recomputation, 34·sbh with selective, 2·sbh (the layer input) with full.
    assert CALC["ckpt_layer_formula"]("none") == "s·b·h·(34 + 5·a·s/h)"
    assert CALC["ckpt_layer_formula"]("selective") == "34·s·b·h"
    assert CALC["ckpt_layer_formula"]("full") == "2·s·b·h"


def test_policy_table_rows_equal_calc_memory() -> None:
    rows = TABLES["ckpt_table"]("llama-3-70b", 8, 8192, 1, (4,))
    for row, (policy, every) in zip(rows, [("none", 1), ("selective", 1), ("full", 1), ("full", 4)],
                                    strict=True):
        data = calc_json("memory", "--model", "llama-3-70b", "--tp", 8, "--sp", "--seq-len", 8192,
                         "--recompute", policy, "--recompute-every", every)
        assert row[1] == f"**{sm.short(data['layer_activations'])}**"
        live = data.get("recomputed_in_backward", 0)  # calc memory prints no line for none
        assert row[2] == (sm.short(live) if live else "—")
    assert [r[4] for r in rows] == ["4", "4", "6", "6"]  # TP all-reduces per layer
    # a checkpoint is far smaller than a layer: every layer is best, and every 4 holds more
    assert CALC["ckpt_best_every"]("llama-3-70b", 8, 8192) == "1"


def test_tp_collectives_per_layer_from_calc_comms() -> None:
    for policy, expected in [("none", 4), ("selective", 4), ("full", 6)]:
        (row,) = [c for c in calc_json("comms", "--model", "llama-3-8b", "--tp", 2, "--recompute",
                                       policy)["collectives"] if c["parallelism"] == "TP"]
        assert row["calls"] == expected * 32  # Megatron's 2 + 2, and 2 more re-run forward
        assert CALC["ckpt_tp_calls"](policy) == str(expected)


# -- expert parallelism -----------------------------------------------------------------------


@pytest.mark.parametrize(("S", "k"), [(2, 1), (4, 2), (4, 1)])
def test_ep_share_off_the_ledger_counts_the_pairs_that_leave(S, k) -> None:
    # Independent count: route the same tokens with the reference's router and count the
    # (token, expert) pairs whose expert lives on another rank.
    E, tokens = 4, 8
    comm = sm.ep_run(S, k, tokens, E, 8)
    x = np.stack([sum(np.roll(np.eye(E)[i % E], j) * (k - j) for j in range(k))
                  for i in range(S * tokens)])
    gates = moe.route(x, np.eye(E), k)
    owner = np.repeat(np.arange(S), E // S)
    leaving = sum(int(owner[e] != b // tokens) for b, e in zip(*np.nonzero(gates)))
    (dispatch,) = comm.records(tag="dispatch")
    assert sum(dispatch.sent) == leaving * E * 8  # D = E columns of fp64
    assert CALC["ep_sim_share"](S, k, tokens, E, 8) == str(Fraction(S - 1, S))
    # the backward retraces the forward: four all-to-alls and the router's all-reduce
    assert [r.collective for r in comm.log] == ["all_to_all"] * 5 + ["all_reduce"]


def test_ep_calls_and_groups_from_calc_comms() -> None:
    for recompute, per_layer in [("none", 4), ("full", 6)]:
        (row,) = [c for c in calc_json("comms", "--model", "mixtral-8x7b", "--dp", 2, "--ep", 2,
                                       "--recompute", recompute)["collectives"] if c["parallelism"] == "EP"]
        assert row["calls"] == per_layer * 32
        assert CALC["ep_calls_per_layer"](recompute) == str(per_layer)
    assert CALC["ep_share"](8) == "7/8"


def test_capacity_closed_form() -> None:
    # Switch Transformer's capacity, tokens/E × factor, times k for top-k (Megatron-Core's
    # get_capacity is called on tokens × top_k): Mixtral top-2 of 8.
    assert CALC["ep_capacity"]("mixtral-8x7b", 4096, 1.25) == f"{math.ceil(4096 * 2 / 8 * 1.25):,}"


# -- context parallelism ----------------------------------------------------------------------


@pytest.mark.parametrize("S", [2, 3, 4, 8])
def test_ring_schedule_flops_equal_the_reference_ring(S) -> None:
    B, L, H, K = 1, 2 * S, 2, 4
    rng = np.random.default_rng(S)
    q, k, v = (rng.standard_normal((B, L, H, K)) for _ in range(3))
    with count_flops() as ring:
        cpar.ring_attention(co.shard(q, S, 1), co.shard(k, S, 1), co.shard(v, S, 1), co.Comm(S))
    computed = sum(step is not None for row in sm.ring_schedule(S) for step in row)
    assert ring.total == computed * 2 * 2 * B * H * (L // S) ** 2 * K
    assert ring.total == cpar.ring_attention_flops(B, L, H, K, S)
    assert [int(CALC["cp_blocks"](S, r)) for r in range(S)] == list(range(1, S + 1))
    assert CALC["cp_flops_share"](S) == str(Fraction(S + 1, 2 * S))


def test_ring_bytes_off_the_ledger() -> None:
    comm = sm.cp_run(4, L=16)
    assert comm.sent == [cpar.ring_attention_bytes(1, 16, 2, 4, 4, 8)] * 4
    assert (CALC["cp_sim"]("passes", 4), CALC["cp_sim"]("share", 4)) == ("3", "3/4")


def test_ring_step_intensity_is_l_over_cp_times_h_over_g() -> None:
    # One ring step on the reference: block attention's einsums over the k and v block received.
    S, B, L, H, K = 4, 1, 32, 2, 4
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, L // S, H, K)) for _ in range(3))
    with count_flops() as step:
        cpar.block_attention(q, k, v, np.ones((L // S, L // S), dtype=bool))
    received = k.nbytes + v.nbytes  # the ref passes k and v with H heads: G = H
    assert Fraction(step.total, received) == Fraction(L // S, 1) * Fraction(2, 8)  # × 2 B/fp64's 8
    # Llama-3-70B: H/G = 8; the threshold scales as G/H
    assert int(CALC["cp_hide_tokens"]("llama-3-70b", "h100-sxm", "network").replace(",", "")) == \
        math.ceil(989.5e12 * 0.5 / 50e9 / 8)  # H100 datasheet: 989.5 TFLOP/s bf16, 400 Gb/s NIC


# -- trade-offs ---------------------------------------------------------------------------------


def test_zero3_moves_one_and_a_half_times_dp() -> None:
    # ZeRO paper (Rajbhandari et al. 2020, sec. 7): 3Ψ for stage 3 against 2Ψ for DP.
    S = 8
    assert float(CALC["tradeoff_zero3_ratio"](S)) == (3 * (S - 1) / S) / (2 * (S - 1) / S)


def test_intensity_constants_are_counted() -> None:
    # 6 FLOPs per parameter and token: a training step of the reference MLP, counted.
    B, D, F = 4, 8, 32
    rng = np.random.default_rng(0)
    x, w_in, w_out = rng.standard_normal((B, D)), rng.standard_normal((D, F)), rng.standard_normal((F, D))
    with count_flops() as step:
        y, saved = mlp.mlp_forward(x, w_in, w_out)
        mlp.mlp_backward(np.ones_like(y), saved)
    assert step.total == 6 * (2 * D * F) * B
    assert CALC["tradeoff_intensity_tex"]() == r"\frac{6\,\Psi T}{3 \cdot 2\,\Psi} = T"
    # A100 datasheet: 312 TFLOP/s bf16; HDR InfiniBand 200 Gb/s per GPU; 8 per DGX node
    assert CALC["tradeoff_break_even"]("a100-80gb", "nic") == f"{math.ceil(312e12 * 0.5 / 25e9):,}"
    assert CALC["tradeoff_break_even"]("a100-80gb", "rails") == f"{math.ceil(312e12 * 0.5 / 200e9):,}"


def test_tradeoff_table_equals_calc_comms() -> None:
    args = ("--model", "mixtral-8x7b", "--tp", 2, "--cp", 2, "--pp", 2, "--dp", 8, "--ep", 4,
            "--zero", 1, "--sp", "--microbatches", 8, "--seq-len", 8192)
    collectives = calc_json("comms", *args)["collectives"]
    rows = TABLES["tradeoff_table"]("mixtral-8x7b", 2, 2, 2, 8, 4, 1, 8192, 8, "h100-sxm")
    assert len(rows) == 6
    for row in rows:
        mine = [c for c in collectives if c["parallelism"].replace("+SP", "") == row[0]]
        assert row[2] == f"{mine[0]['group']:,}"
        assert row[4] == mine[0]["fabric"]
        assert row[5] == f"**{sm.short(sum(c['bytes_per_rank'] for c in mine))}**"
    fabric = {row[0]: row[4] for row in rows}
    assert {fabric["TP"], fabric["EP"], fabric["CP"]} == {"NVLink"}
    assert {fabric["PP"], fabric["DP ZeRO-1"], fabric["EDP ZeRO-1"]} == {"network"}


def test_measured_gap_and_the_planner() -> None:
    # Narayanan et al. 2021, Table 2: 44 vs 141 TFLOP/s per GPU on 1536 A100s.
    assert CALC["tradeoff_measured_ratio"](1536) == "3.2"
    ratio = float(CALC["tradeoff_planner_zero3"]("a100-80gb", 1536))
    assert 1 < ratio < float(CALC["tradeoff_measured_ratio"](1536))


# -- figures ------------------------------------------------------------------------------------


def test_figures_carry_the_computed_facts() -> None:
    d = FIGURES["checkpoint_memory"](width=250, layers=16, every=2)
    assert (d.facts["keep_peak"], d.facts["checkpoint_peak"]) == (80, 17)
    assert Fraction(d.facts["checkpoint_flops"]) / Fraction(d.facts["keep_flops"]) == Fraction(4, 3)
    r = FIGURES["ring_attention_blocks"](width=250, ranks=4)
    assert r.facts["blocks"] == "1, 2, 3, 4"
    # the recall edition blanks every computed label: peaks, FLOPs, ring steps, block counts
    assert d.svg("blank").count(f">{BLANK_RULE}<") == 5  # the y-axis top, two peaks, two step ends
    assert r.svg("blank").count(f">{BLANK_RULE}<") == 10 + 4


@pytest.mark.parametrize(("name", "args"), [
    ("ckpt_multiple", ("selective",)), ("ckpt_peak", (65, 0)), ("ep_step", ("llama-3-8b", "sent", 8, 8)),
    ("ep_edp", ("mixtral-8x7b", 8, 3)), ("cp_blocks", (4, 4)), ("tradeoff_measured", ("ptd", 1000)),
    ("tradeoff_plan", ("llama-3-70b", "step", 64, 512, 4096, 3, 1, 1, 3)),
])
def test_bad_arguments_are_refused(name, args) -> None:
    with pytest.raises(ValueError):
        CALC[name](*args)


# -- every worked card against the command line --------------------------------------------


def _rows_of(data: dict, kind: str) -> list[dict]:
    return [c for c in data["collectives"] if c["parallelism"] == kind]


@functools.cache  # one run of the command line per question
def _memory(recompute: str, every: int = 1) -> dict:
    return calc_json("memory", "--model", "llama-3-70b", "--tp", 8, "--sp", "--seq-len", 8192,
                     "--recompute", recompute, "--recompute-every", every)


@functools.cache  # one run of the command line per question
def _train() -> dict:
    return calc_json("train", "--model", "llama-3-70b", "--tokens", "15e12", "--gpus", 4096,
                     "--seq-len", 8192, "--recompute", "full", "--hfu", 0.5)


@functools.cache  # one run of the command line per question
def _plan(zero: int) -> dict:
    return calc_json("plan", "--model", "llama-3-70b", "--gpus", 64, "--hw", "h100-sxm", "--batch",
                     512, "--seq", 4096, "--tp", 8, "--pp", 1, "--cp", 1, "--zero", zero)


def _dp_seconds(data: dict, zero: int) -> float:
    return sum(v for k, v in data.items() if k.startswith(f"dp_zero_{zero}_"))


@functools.cache  # one run of the command line per question
def _mixtral(dp: int) -> dict:
    return calc_json("comms", "--model", "mixtral-8x7b", "--dp", dp, "--ep", 8)


@functools.cache  # one run of the command line per question
def _cp() -> dict:
    return calc_json("comms", "--model", "llama-3-70b", "--cp", 8, "--seq-len", 131072)


@functools.cache  # one run of the command line per question
def _planner_gap() -> str:
    def step(gpus: int, *pins) -> float:
        return calc_json("plan", "--model", "gpt3-175b", "--hw", "a100-80gb", "--gpus", gpus,
                         "--batch", 1536, "--seq", 2048, *pins)["plans"][0]["step_seconds"]
    zero3 = step(1536, "--micro-batch", 1, "--tp", 1, "--pp", 1, "--cp", 1, "--zero", 3)
    ptd = step(1536, "--tp", 8, "--pp", 12, "--cp", 1, "--zero", 0)
    return f"×{zero3 / ptd:.2g}"


WORKED = [
    ("shm-ckpt-worked-memory", "back", lambda: f"None: **{size(_memory('none')['activations'])}**"),
    ("shm-ckpt-worked-memory", "back", lambda: f"Full: **{size(_memory('full')['activations'])}**"),
    ("shm-ckpt-every-layer", "extra", lambda: f"{size(_memory('full', 1)['activations'])} every layer"),
    ("shm-ckpt-every-layer", "extra", lambda: f"{size(_memory('full', 4)['activations'])} every"),
    ("shm-ckpt-selective", "extra", lambda: f"keeps {size(_memory('none')['activations_per_layer'])}"),
    ("shm-ckpt-selective", "extra", lambda: f"{size(_memory('selective')['activations_per_layer'])} with selective"),
    ("shm-ckpt-hfu-mfu", "back", lambda: f"**{100 * _train()['mfu']:.1f} %**"),
    ("shm-ckpt-hfu-mfu", "extra", lambda: f"{_train()['days']:,.1f} days"),
    ("shm-ckpt-hfu-mfu", "back",
     lambda: f"= {_train()['executed_flops_per_token'] / _train()['model_flops_per_token']:.3g}"),
    ("shm-zero3-activations", "extra", lambda: f"keeps {size(calc_json('memory', '--model', 'llama-3-70b', '--seq-len', 8192)['activations_per_layer'])}"),
    ("shm-ep-worked-mixtral", "back", lambda: f"**{size(_rows_of(_mixtral(8), 'EP')[0]['bytes_per_rank'])}**"),
    ("shm-ep-worked-mixtral", "back", lambda: f"{_rows_of(_mixtral(8), 'EP')[0]['calls']:,} all-to-alls"),
    ("shm-ep-worked-mixtral", "back", lambda: f"of {size(_rows_of(_mixtral(8), 'EP')[0]['n_bytes'])}"),
    ("shm-ep-edp", "back", lambda: f"then {_rows_of(_mixtral(32), 'EDP')[0]['group']}."),
    ("shm-ep-edp", "back", lambda: "1 (nothing to reduce)" if not _rows_of(_mixtral(8), "EDP") else "EDP row"),
    ("shm-cp-worked", "back", lambda: f"Block {size(_rows_of(_cp(), 'CP')[0]['n_bytes'])}"),
    ("shm-cp-worked", "back", lambda: f"{_rows_of(_cp(), 'CP')[0]['calls']:,} passes"),
    ("shm-cp-worked", "back", lambda: f"**{size(_rows_of(_cp(), 'CP')[0]['bytes_per_rank'])}**"),
    ("shm-zero3-microbatch", "back", lambda: f"ZeRO-3: **{dur(_dp_seconds(_plan(3), 3))}**"),
    ("shm-zero3-microbatch", "back", lambda: f"step {dur(_plan(3)['step_time'])}"),
    ("shm-zero3-microbatch", "back", lambda: f"ZeRO-1: {dur(_dp_seconds(_plan(1), 1))}"),
    ("shm-zero3-microbatch", "back", lambda: f"step {dur(_plan(1)['step_time'])}"),
    ("shm-zero3-microbatch", "extra", lambda: f"of the {_plan(3)['microbatches']} micro-batches"),
    ("shm-zero3-microbatch", "extra", lambda: f"{dur(_plan(3)['dp_exposed'])} stays exposed"),
    ("shm-zero3-measured", "back", _planner_gap),
]


@pytest.mark.parametrize(("note", "field", "answer"), WORKED,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WORKED)])
def test_worked_cards_agree_with_the_calculators(note, field, answer) -> None:
    assert answer() in card_field(CARDS, note, field)
