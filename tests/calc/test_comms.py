"""`mlgrind calc comms`: one collective worked by hand, the bus factors of nccl-tests, every
gradient reduced over the ranks holding a replica of it, the collectives recomputation repeats."""

from __future__ import annotations

import json

import pytest

from mlgrind.calc import comms as comms_module
from mlgrind.calc import hardware
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from tests.conftest import run

N = 4096 * 16384 * 2  # the tensor: 4096x16384 in bf16, 134,217,728 bytes
TENSOR = ["--shape", "4096x16384", "--dtype", "bf16"]


def comms(*args: str) -> dict:
    result = run("calc", "comms", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def rounds_to(value: float, printed: float, step: float) -> bool:
    return abs(value - printed) <= step / 2


# ----------------------------------------------------------------------------- one collective


@pytest.mark.parametrize("op, factor", [
    ("all-reduce", 2 * 7 / 8), ("reduce-scatter", 7 / 8), ("all-gather", 7 / 8), ("all-to-all", 7 / 8),
    ("broadcast", 1.0),
])
def test_bytes_per_rank_are_the_nccl_tests_bus_bandwidth_factors(op, factor):
    # nccl-tests doc/PERFORMANCE.md, "Summary": busBw = algBw × 2(n-1)/n for AllReduce, (n-1)/n
    # for ReduceScatter, AllGather and AlltoAll, 1 for Broadcast; here n = 8 (verified with search).
    data = comms("--op", op, *TENSOR, "--ranks", "8")
    assert data["tensor"] == N
    assert data["sent_per_rank"] == pytest.approx(factor * N)
    # busbw = algbw × factor: on a switch with α = 0 it is the link's own bandwidth.
    assert data["algorithm_bandwidth"] * factor == pytest.approx(data["bandwidth"])


def test_an_all_reduce_worked_by_hand_on_8_h100s():
    # 4,096 × 16,384 × 2 B = 134,217,728 B; a ring sends 2·7/8 of it, 234,881,024 B, in
    # 2·7 = 14 steps; NVLink's 900 GB/s both ways is 450e9 B/s one way:
    # t = 14 · 5 µs + 234,881,024 / 450e9 = 70 µs + 521.96 µs.
    data = comms("--op", "all-reduce", *TENSOR, "--ranks", "8", "--hw", "h100", "--latency", "5e-6")
    assert (data["hardware"], data["fabric"]) == ("h100-sxm", "NVLink")
    assert data["tensor"] == 134_217_728
    assert data["sent_per_rank"] == 234_881_024
    assert data["steps"] == 14
    assert data["bandwidth"] == 450e9
    assert data["time"] == pytest.approx(14 * 5e-6 + 234_881_024 / 450e9)
    assert "2·7/8 · 134,217,728 B = 234,881,024 B" in data["formula"]["sent_per_rank"]
    assert "5e-6 s · 14 + 234,881,024 B / 4.5e11 B/s" in data["formula"]["time"]
    assert any("nccl-tests" in a for a in data["assumptions"]["sent_per_rank"])


@pytest.mark.parametrize("args, fabric, steps, seconds", [
    # 2 nodes of 8: eight rings side by side, one per 400 Gb/s NIC (50e9 B/s): β = 8 · 50e9.
    (["--ranks", "16", "--hw", "h100-sxm"], "network", 30, 2 * 15 / 16 * N / 400e9),
    # MI300X: 7 Infinity Fabric links of 128 GB/s both ways (64e9 one way), one per peer.
    (["--ranks", "8", "--hw", "mi300x"], "Infinity Fabric", 2, 2 * 7 / 8 * N / (7 * 64e9)),
    # TPU v5e: 400 GB/s both ways over 4 ports is 50e9 B/s per link one way; one torus axis
    # of 16 is a bidirectional ring on 2 links.
    (["--ranks", "16", "--hw", "v5e"], "ICI", 30, 2 * 15 / 16 * N / (2 * 50e9)),
    # 64 chips on a 16x4 block: both axes at once, one half of the tensor reduce-scattered along
    # 16 then 4, the other along 4 then 16, each axis's ring on its own 2 links: β = 4 links.
    (["--ranks", "64", "--hw", "v5e"], "ICI", 2 * (15 + 3), 2 * 63 / 64 * N / (4 * 50e9)),
    # PCIe Gen5 x16: 128 GB/s both ways.
    (["--ranks", "4", "--hw", "h100-pcie", "--link", "pcie"], "PCIe", 6, 2 * 3 / 4 * N / 64e9),
])
def test_all_reduce_by_hand_on_each_fabric(args, fabric, steps, seconds):
    data = comms("--op", "all-reduce", *TENSOR, *args)
    assert (data["fabric"], data["steps"]) == (fabric, steps)
    assert data["time"] == pytest.approx(seconds)


def test_all_to_all_across_nodes_is_limited_by_the_ranks_own_nic():
    # 16 H100s on 2 nodes, k = 8 per node: each rank sends 8/16 of the tensor to the other node's
    # ranks, all of it through its own 400 Gb/s NIC (50e9 B/s), while 7/16 goes over NVLink at
    # 450e9 B/s at the same time: t = max(8/16 · N / 50e9, 7/16 · N / 450e9) = 1.342 ms
    # (35c052a: 314.57 µs, 8 NICs' worth as if it were 8 rings).
    data = comms("--op", "all-to-all", *TENSOR, "--ranks", "16", "--hw", "h100")
    assert data["fabric"] == "network"
    assert data["time"] == pytest.approx(8 / 16 * N / 50e9)
    assert data["time"] >= 1.34e-3
    steps = data["assumptions"]["steps"]
    assert any("own NIC" in a for a in steps) and not any("rings" in a for a in steps)


def test_expert_parallel_all_to_all_across_nodes_is_nic_bound():
    # Mixtral at TP 2, EP 8: an EP group of 8 ranks 2 apart spans 16 GPUs, 2 nodes, 4 per node;
    # each rank's off-node half leaves through its NIC: β = 7/8 / (4/8 / 50e9) = 87.5e9 B/s
    # (35c052a: min(4 · 50e9, 450e9) = 200e9).
    data = comms("--model", "mixtral-8x7b", "--tp", "2", "--ep", "8", "--dp", "8")
    [ep] = [c for c in data["collectives"] if c["parallelism"] == "EP"]
    assert (ep["fabric"], ep["group"]) == ("network", 8)
    assert ep["beta"] == pytest.approx(7 / 8 / (4 / 8 / 50e9))


@pytest.mark.parametrize("hw, ranks, printed, step, source", [
    # cloud.google.com/tpu/docs/v5e, Pod specifications: "All-reduce bandwidth per Pod 51.2 TB/s",
    # 256 chips (verified with search). A pod's all-reduce bandwidth is every chip's β added.
    ("v5e", "256", 51.2e12, 0.1e12, "TPU v5e docs"),
    # cloud.google.com/tpu/docs/v4: "All-reduce bandwidth per Pod 1.1 PB/s", 4,096 chips (verified
    # with search). Our 4,096 · 2 · 3 · 50 GB/s = 1.23 PB/s is 12 % above it: Google does not say
    # how it counts (its v4 table calls the pod a "3D mesh"); the tolerance says so.
    ("v4", "4096", 1.1e15, 0.3e15, "TPU v4 docs"),
])
def test_torus_all_reduce_uses_every_axis_at_once(hw, ranks, printed, step, source):
    # 35c052a ran one axis at a time, 2 of the 4 (v5e) or 6 (v4) links: 25.6 TB/s and 0.41 PB/s.
    data = comms("--op", "all-reduce", *TENSOR, "--ranks", ranks, "--hw", hw)
    assert data["fabric"] == "ICI"
    assert rounds_to(int(ranks) * data["bandwidth"], printed, step), source


def test_all_to_all_on_a_torus_axis_is_limited_by_its_busiest_link():
    # 16 chips on a bidirectional ring: each sends N/16 to every other along the shorter way;
    # the hops add up to 16 · 64 · N/16 byte-hops over 32 one-way links, 2N on each: t = 2N / 50e9.
    data = comms("--op", "all-to-all", *TENSOR, "--ranks", "16", "--hw", "tpu-v5e")
    assert data["time"] == pytest.approx(2 * N / 50e9)


@pytest.mark.parametrize("args", [
    ["--op", "all-reduce", *TENSOR],  # no --ranks
    ["--op", "all-reduce", *TENSOR, "--ranks", "1"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--latency", "-1"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--latency", "nan"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--model", "gpt2"],
    ["--model", "gpt2", "--ranks", "8"],
    ["--model", "gpt2", "--dtype", "fp32"],  # --dtype is --op's
    # A training step's options with --op were silently ignored at 35c052a.
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--tp", "8"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--dp", "4"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--zero", "3"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--sp"],
    # α per step above a second (35c052a printed "inf days" for 1e308).
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--latency", "1e308"],
    ["--op", "all-reduce", *TENSOR, "--ranks", "8", "--latency", "1.5"],
])
def test_usage_errors_exit_2(args):
    assert run("calc", "comms", *args).code == 2


@pytest.mark.parametrize("args, message", [
    (["--shape", "0x4", "--ranks", "8"], "positive"),
    (["--shape", "4xq", "--ranks", "8"], "dimensions joined by x"),
    (["--shape", "4x4", "--ranks", "8", "--link", "ici"], "h100-sxm has no ici"),
    (["--shape", "4x4", "--ranks", "16", "--link", "nvlink"], "exceed"),
    (["--shape", "4x4", "--ranks", "64", "--hw", "v5e", "--torus", "8x4"], "not 64"),
    (["--shape", "4x4", "--ranks", "8", "--torus", "4x2"], "describes a TPU slice"),
])
def test_impossible_requests_are_one_line_exit_1(args, message):
    result = run("calc", "comms", "--op", "all-reduce", *args)
    assert result.code == 1 and message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_the_working_fits_80_columns():
    for args in (["--op", "all-to-all", *TENSOR, "--ranks", "64", "--hw", "v5p"],
                 ["--model", "mixtral-8x7b", "--tp", "2", "--dp", "8", "--ep", "4", "--pp", "2", "--sp",
                  "--zero", "1", "--cp", "2", "--recompute", "full"]):
        result = run("calc", "comms", *args)
        assert result.code == 0, result.err
        assert max(len(line) for line in result.out.splitlines()) <= 80


# ----------------------------------------------------------------------------- a training step


def grad_rows(data: dict) -> list[dict]:
    return [c for c in data["collectives"] if c["tensor"].startswith("grads")]


def test_mixtral_reduces_all_of_its_gradients_with_data_parallelism():
    # Mistral AI, "Mixtral of experts" (mistral.ai/news/mixtral-of-experts, 2023): "46.7B total
    # parameters" (verified with search). At --dp 8 every one of them has 8 replicas, so all
    # 93.4 GB of bf16 gradients are reduced (at 234a881 only the 3.2 GB outside the experts).
    rows = grad_rows(comms("--model", "mixtral-8x7b", "--dp", "8"))
    assert rounds_to(sum(r["n_bytes"] for r in rows) / 2 / 1e9, 46.7, 0.1)
    assert {(r["parallelism"], r["group"]) for r in rows} == {("DP", 8), ("EDP", 8)}


@pytest.mark.parametrize("dp, ep", [(8, 2), (16, 8), (8, 8)])
def test_expert_gradients_are_reduced_over_the_expert_data_parallel_group(dp, ep):
    spec = load_model("mixtral-8x7b")
    c = count(spec)
    data = comms("--model", "mixtral-8x7b", "--dp", str(dp), "--ep", str(ep))
    rows = {r["parallelism"]: r for r in grad_rows(data)}
    assert rows["DP"]["group"] == dp
    assert rows["DP"]["n_bytes"] == (c.total - c.experts) * 2
    if dp == ep:  # each expert lives on one rank: nothing to reduce
        assert "EDP" not in rows
    else:
        assert rows["EDP"]["group"] == dp // ep
        assert rows["EDP"]["n_bytes"] == c.experts / ep * 2  # this rank's experts


def test_zero_shards_every_group_the_same_way():
    data = comms("--model", "mixtral-8x7b", "--dp", "8", "--ep", "2", "--zero", "1")
    kinds = {(c["parallelism"], c["collective"]) for c in data["collectives"]}
    assert {("DP ZeRO-1", "reduce_scatter"), ("DP ZeRO-1", "all_gather"),
            ("EDP ZeRO-1", "reduce_scatter"), ("EDP ZeRO-1", "all_gather")} <= kinds


def test_zero2_reduces_every_microbatch_and_zero3_gathers_each_layer():
    # ZeRO-2 keeps only its gradient shard, so it reduce-scatters after every micro-batch; ZeRO-3
    # (FSDP) gathers one layer at a time, forward and backward, and reduce-scatters that layer's
    # gradients, in every micro-batch (35c052a: 1 reduce-scatter and 2 whole-model gathers).
    spec = load_model("llama-2-7b")
    dense = (count(spec).total - count(spec).experts) * 2
    m, layers = 4, spec.n_layers // 2
    args = ("--model", "llama-2-7b", "--dp", "8", "--pp", "2", "--microbatches", str(m))
    zero2 = {c["collective"]: c for c in comms(*args, "--zero", "2")["collectives"] if c["tensor"][:5] in ("grads", "param")}
    assert (zero2["reduce_scatter"]["calls"], zero2["all_gather"]["calls"]) == (m, 1)
    assert zero2["reduce_scatter"]["n_bytes"] == pytest.approx(dense / 2)
    zero3 = {c["collective"]: c for c in comms(*args, "--zero", "3")["collectives"] if c["tensor"][:5] in ("grads", "param")}
    assert zero3["all_gather"]["calls"] == 2 * layers * m
    assert zero3["reduce_scatter"]["calls"] == layers * m
    assert zero3["all_gather"]["n_bytes"] == pytest.approx(dense / 2 / layers)  # one layer of a stage
    # The bytes are the ZeRO paper's 1.5 × DP per micro-batch: gathers 2·P, reduce-scatter P.
    total = sum(c["calls"] * c["n_bytes"] for c in zero3.values())
    assert total == pytest.approx(3 * m * dense / 2)


def test_nccls_latency_model_counts_the_steps_by_the_link_they_cross():
    # NCCL 2.30 src/graph/tuning.cc, ncclTunerConstantsDefaults (read in github.com/NVIDIA/nccl):
    # ring, Simple protocol: base 8.4 µs; per step 3.4 µs over NVLink, 14 µs over the network; a
    # ring all-reduce of S ranks on N nodes has 2(S−1) steps, 2(N−1) of them between nodes.
    h100 = hardware.load("h100")
    across = comms_module.route(h100, "all_reduce", 16)
    assert across.latency(None) == pytest.approx(8.4e-6 + 28 * 3.4e-6 + 2 * 14e-6)
    within = comms_module.route(h100, "all_gather", 8)
    assert within.latency(None) == pytest.approx(8.4e-6 + 7 * 3.4e-6)
    assert within.latency(5e-6) == pytest.approx(7 * 5e-6)  # --latency: α per step, no base


@pytest.mark.parametrize("recompute, per_layer", [("none", 4), ("selective", 4), ("full", 6)])
def test_full_recomputation_repeats_the_tensor_parallel_collectives(recompute, per_layer):
    # Shoeybi et al. 2019 (Megatron-LM), Fig. 4: 4 communication operations per layer, two
    # all-reduces forward and two backward (not re-checked). Full recomputation runs the forward
    # again in backward (Korthikanti et al. 2022, sec. 5), with its two: 6; selective
    # recomputation re-runs the attention core only, which has none.
    layers = load_model("llama-2-7b").n_layers
    data = comms("--model", "llama-2-7b", "--tp", "8", "--recompute", recompute)
    [tp] = [c for c in data["collectives"] if c["parallelism"] == "TP"]
    assert (tp["collective"], tp["calls"]) == ("all_reduce", per_layer * layers)
    sp = comms("--model", "llama-2-7b", "--tp", "8", "--recompute", recompute, "--sp")
    pairs = {c["collective"]: c["calls"] for c in sp["collectives"] if c["parallelism"] == "TP+SP"}
    assert pairs == {"all_gather": per_layer * layers, "reduce_scatter": per_layer * layers}


def test_every_collective_carries_its_working_and_the_step_a_total():
    data = comms("--model", "mixtral-8x7b", "--tp", "2", "--dp", "4", "--ep", "4", "--pp", "2",
                 "--microbatches", "4")
    assert {c["parallelism"] for c in data["collectives"]} == {"DP", "TP", "PP", "EP"}  # EDP: 4/4 = 1
    for c in data["collectives"]:
        assert {"parallelism", "collective", "tensor", "group", "n_bytes", "calls", "intra_node",
                "bytes_per_rank", "seconds"} <= set(c)
        assert "sent = calls" in c["formula"] and "t = calls" in c["formula"]
        assert any(how in a for a in c["assumptions"] for how in ("ring", "exchange", "send", "hop"))
    total = data["total"]
    assert total["bytes_per_rank"] == pytest.approx(sum(c["bytes_per_rank"] for c in data["collectives"]))
    assert total["seconds"] == pytest.approx(sum(c["seconds"] for c in data["collectives"]))
    assert total["formula"]["seconds"].startswith("Σ t =")


def test_context_parallel_passes_only_the_kv_heads_a_tensor_parallel_rank_holds():
    # Llama-3-70B has G = 8 kv heads: at TP 8 each rank holds one, and its ring-attention pass
    # carries that head's K and V for its L/CP tokens, not all eight (16.8 MB before the fix).
    data = json.loads(run("calc", "comms", "--model", "llama-3-70b", "--tp", "8", "--cp", "2",
                          "--seq-len", "8192", "--json").out)
    (cp,) = [c for c in data["collectives"] if c["parallelism"] == "CP"]
    assert cp["n_bytes"] == 1 * 4096 * 1 * (128 + 128) * 2
    wide = json.loads(run("calc", "comms", "--model", "llama-3-70b", "--tp", "16", "--cp", "2", "--hw", "v5p",
                          "--seq-len", "8192", "--json").out)
    (cp,) = [c for c in wide["collectives"] if c["parallelism"] == "CP"]
    assert cp["n_bytes"] == 4096 * 1 * 256 * 2  # TP 16 > G: one (replicated) head per rank
