"""`mlgrind calc plan`: the sharding planner against published layouts, and the shape of its
answer to the seed's question, "given real hardware constraints, how would you shard the model?".

The planner's step time is a first-order estimate (compute at a fixed fraction of peak, a 1F1B
bubble, ring collectives at link bandwidth), so two layouts a few per cent apart are a tie to it.
The tests therefore ask what such a model can honestly answer: that a published layout fits, that
the planner finds nothing much faster (a stated factor), and that it lands on the same decisions
(TP within a node, the pipeline depth) where the published setup's constraints decide them.
"""

from __future__ import annotations

import json
import re

import pytest

from mlgrind.calc import flops, hardware, memory
from mlgrind.calc.params import count
from mlgrind.calc.specs import load_model
from tests.conftest import run


def plan(*args: str) -> dict:
    result = run("calc", "plan", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def megatron(model: str, gpus: int, batch: int, *pins: str, micro_batch: int = 1) -> dict:
    # Narayanan et al. 2021 predates FlashAttention (Dao et al. 2022): its attention kept the scores;
    # and context parallelism (Megatron-Core, 2023): its layouts had none.
    return plan("--model", model, "--hw", "a100-80gb", "--gpus", str(gpus), "--batch", str(batch),
                "--seq", "2048", "--micro-batch", str(micro_batch), "--attention-kernel", "eager", "--cp", "1",
                *pins)


# ----------------------------------------------------------------------- published layouts


def test_megatron_1t_on_3072_a100s_table_1():
    # Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
    # Megatron-LM" (arXiv 2104.04473), Table 1, last row: 1008.0B parameters, tensor-parallel 8,
    # pipeline-parallel 64, 3072 GPUs (DGX A100 80GB nodes of 8), batch 3072, sequence 2048,
    # 163 TFLOP/s per GPU (52 % of peak). Micro-batch not printed there: 1, as Table 2's runs.
    best = megatron("megatron-1t", 3072, 3072)["plans"][0]
    published = megatron("megatron-1t", 3072, 3072, "--tp", "8", "--pp", "64", "--cp", "1")["plans"][0]
    assert published["dp"] == 6
    # Free to shard the optimizer, the planner prefers a shallower pipeline (less head imbalance)
    # but finds nothing more than 10 % faster than the published layout, and fills the node with TP.
    assert published["step_seconds"] <= 1.10 * best["step_seconds"]
    assert best["tp"] == 8
    # The paper's runs replicate optimizer states over DP (ZeRO appears only in its sec. 5.2
    # comparison). Under that constraint memory decides the pipeline depth: the planner's choice
    # is the published layout exactly.
    replicated = megatron("megatron-1t", 3072, 3072, "--zero", "0")["plans"][0]
    assert (replicated["tp"], replicated["pp"], replicated["dp"]) == (8, 64, 6)


def test_gpt3_175b_on_1536_a100s_table_2():
    # Narayanan et al. 2021, Table 2, "PTD Parallelism" rows: GPT-3 174.6B, model-parallel size 96,
    # batch 1536, micro-batch 1, 1536 GPUs, 141 TFLOP/s per GPU. Model-parallel 96 read as TP 8
    # (one DGX A100 node, as in every Table 1 row from 18.4B up) × PP 12 (8 of the 96 layers each).
    # Not the 1024-GPU run of sec. 5.1: the paper prints no layout for that one.
    # The paper's PTD runs replicate optimizer states over DP (ZeRO appears only in its sec. 5.2
    # comparison): under that constraint the planner fills the node with TP and ranks the
    # published layout among its top three, within 2 % of its best.
    top = megatron("gpt3-175b", 1536, 1536, "--zero", "0")["plans"]
    published = megatron("gpt3-175b", 1536, 1536, "--tp", "8", "--pp", "12", "--cp", "1", "--zero", "0")["plans"][0]
    assert top[0]["tp"] == 8
    assert any((p["tp"], p["pp"], p["dp"]) == (8, 12, 16) for p in top[:3])
    assert published["step_seconds"] <= 1.02 * top[0]["step_seconds"]


def test_gpt3_175b_on_1536_a100s_free_search_is_model_parallel_as_measured():
    # Free to pick any ZeRO stage, the planner at 35c052a chose TP2 PP1 DP768 ZeRO-3: pure
    # sharded data parallelism, which Narayanan et al. 2021, Table 2 measured at 44 TFLOP/s per
    # GPU on 1,536 GPUs against PTD parallelism's 141 (verified with search, code corpus). With
    # ZeRO-3's per-layer gathers, NCCL's latencies and 70 % of DP traffic hidden, it now picks
    # tensor and pipeline parallelism, and the paper's TP 8 × PP 12 is within 5 % of its best.
    best = megatron("gpt3-175b", 1536, 1536)["plans"][0]
    assert best["zero"] < 3 and best["pp"] > 1 and best["tp"] >= 4
    published = megatron("gpt3-175b", 1536, 1536, "--tp", "8", "--pp", "12", "--cp", "1")["plans"][0]
    assert published["step_seconds"] <= 1.05 * best["step_seconds"]
    zero3 = megatron("gpt3-175b", 1536, 1536, "--zero", "3")["plans"][0]
    assert zero3["step_seconds"] > best["step_seconds"]


def test_ptd_parallelism_ahead_of_zero3_as_measured():
    # Narayanan et al. 2021, Table 2: at batch 1536, ZeRO-3 without model parallelism reached 144,
    # 88 and 44 TFLOP/s per GPU on 384, 768 and 1536 GPUs against PTD parallelism's 153, 149 and
    # 141: 1.06, 1.69 and 3.2 times slower (verified with search, code corpus). The planner times
    # ZeRO-3's per-layer gathers with NCCL's latencies over multi-rail rings at 8 × 25 GB/s and
    # hides 70 % of DP traffic under compute (--overlap, printed among its assumptions); it
    # predicts ZeRO-3 about 1.2× slower at every size, so it does NOT reproduce the growth of the
    # measured gap (DeepSpeed's 2021 ZeRO-3 hid little of its gathers at 1,536 GPUs). What it
    # does reproduce: PTD parallelism ahead at every size, and the assumption that decides it is
    # printed.
    ratios = []
    for gpus, micro_batch in [(384, 4), (768, 2), (1536, 1)]:
        zero3 = megatron("gpt3-175b", gpus, 1536, "--tp", "1", "--pp", "1", "--cp", "1", "--zero", "3",
                         micro_batch=micro_batch)["plans"][0]
        ptd = megatron("gpt3-175b", gpus, 1536, "--tp", "8", "--pp", "12", "--cp", "1", "--zero", "0")["plans"][0]
        ratios.append(zero3["step_seconds"] / ptd["step_seconds"])
    assert all(ratio > 1 for ratio in ratios)
    plan_text = run("calc", "plan", "--model", "gpt3-175b", "--hw", "a100-80gb", "--gpus", "384", "--batch",
                    "1536", "--seq", "2048", "--tp", "1", "--pp", "1", "--cp", "1", "--zero", "3").out
    assert "overlap" in plan_text


def test_nemo_llama3_70b_recipe():
    # NVIDIA NeMo, nemo/collections/llm/recipes/llama3_70b.py (github.com/NVIDIA/NeMo): pretraining
    # on 4 nodes × 8 GPUs with tensor_parallelism=4, pipeline_parallelism=4, context_parallelism=2,
    # sequence_parallelism=True, the distributed (ZeRO-1) Adam optimizer, seq_length=8192,
    # global_batch_size=512, micro_batch_size=1. H100 assumed (its tp-overlap config is H100's).
    args = ("--model", "llama-3-70b", "--hw", "h100-sxm", "--gpus", "32", "--batch", "512", "--seq", "8192")
    # With the recipe's optimizer sharding (ZeRO-1) the planner's first choice is the recipe.
    best = plan(*args, "--zero", "1")["plans"][0]
    assert (best["tp"], best["pp"], best["cp"], best["dp"]) == (4, 4, 2, 1)
    assert best["recompute"] != "full"  # fits without recomputing whole layers


# ----------------------------------------------------------------- the acceptance question


def test_how_to_shard_a_70b_model_on_64_h100s():
    result = run("calc", "plan", "--model", "llama-3-70b", "--gpus", "64", "--hw", "h100-sxm",
                 "--batch", "512", "--seq", "4096")
    assert result.code == 0, result.err
    assert max(len(line) for line in result.out.splitlines()) <= 80
    data = plan("--model", "llama-3-70b", "--gpus", "64", "--hw", "h100-sxm", "--batch", "512", "--seq", "4096")
    best = data["plans"][0]
    h100 = hardware.load("h100-sxm")
    # TP and CP exchange activations in every layer: their groups stay inside one NVLink node
    # (TP innermost, then CP), so only PP's sends and DP's once-per-step traffic cross the network.
    assert h100.gpus_per_node % (best["tp"] * best["cp"]) == 0
    # 70B is 1.13 TB of mixed-precision Adam states: neither replicated nor on one node's 640 GB.
    assert best["tp"] * best["pp"] * best["cp"] > 1 or best["zero"] == 3
    assert best["memory_bytes"] <= 0.9 * h100.hbm_bytes
    # The time is mostly compute: at least the 6·N·D rule's, at most 25 % above it (dense
    # attention ~7 %, recomputation, the output head that only the last pipeline stage runs);
    # bubble and exposed traffic are small.
    six_nd = 6 * count(load_model("llama-3-70b")).total * 512 * 4096 / (64 * h100.bf16_flops * 0.5)
    assert six_nd <= best["compute_seconds"] <= 1.25 * six_nd
    assert best["bubble_seconds"] + best["exposed_comm_seconds"] <= 0.15 * best["step_seconds"]
    assert 0.8 * 0.5 <= best["mfu"] <= 0.5
    # Not ZeRO-3 (35c052a's pick, TP1 PP1 DP32 CP2 at 65.7 of 72 GB): sharding the parameters over
    # all 64 GPUs gathers the 141 GB of bf16 weights twice per micro-batch through the NICs, and
    # the 30 % of that traffic that does not hide under compute outweighs a 4-stage pipeline's
    # bubble; ZeRO-3's gathered layers also leave it at the edge of memory.
    assert best["zero"] < 3
    # The textbook answer, TP 8 in each node and ZeRO or PP across nodes, is within 20 % of it:
    # the planner counts TP's per-layer collectives fully exposed, pessimistic for TP 8.
    textbook = plan("--model", "llama-3-70b", "--gpus", "64", "--batch", "512", "--seq", "4096", "--tp", "8")
    assert textbook["plans"][0]["step_seconds"] <= 1.20 * best["step_seconds"]
    # Every result carries its working.
    for key in ("memory_per_gpu", "compute", "bubble", "step_time", "tokens_per_second", "mfu"):
        assert key in data["formula"]
    assert any("recomputation" in a for a in data["assumptions"]["memory_per_gpu"])


def test_recomputation_is_the_cheapest_that_fits():
    # Llama-3-70B on 64 GPUs at TP 4, PP 4: without recomputation the activations (Korthikanti et
    # al. 2022, eager attention keeping the scores) overflow 72 GB; the planner says how much, and
    # pays only selective recomputation.
    args = ("--model", "llama-3-70b", "--gpus", "64", "--batch", "512", "--seq", "4096",
            "--tp", "4", "--pp", "4", "--cp", "1", "--zero", "1", "--attention-kernel", "eager")
    data = plan(*args)
    spec = load_model("llama-3-70b")
    layout = memory.Parallel(dp=4, tp=4, pp=4)
    none, selective_fit = (memory.memory_per_rank(spec, layout, 1, 1, 4096, policy, True, microbatches=128)
                           for policy in ("none", "selective"))
    assert none.total > 72e9 >= selective_fit.total
    assert data["plans"][0]["recompute"] == "selective"
    assert any(f"none needs {none.total / 1e9:,.3f} GB" in a for a in data["assumptions"]["memory_per_gpu"])
    selective = flops.attention_flops_per_token(spec, 4096) * 512 * 4096  # the scores, run again
    assert data["flops_per_step"] == 512 * 4096 * flops.training_flops_per_token(spec, 4096) + selective
    # FlashAttention (the default) never keeps the scores: the same layout needs no recomputation.
    flash = plan(*args[:-2])
    assert flash["plans"][0]["recompute"] == "none"
    assert flash["flops_per_step"] == 512 * 4096 * flops.training_flops_per_token(spec, 4096)


# ---------------------------------------------------------------------- refusals and errors


def test_a_layout_that_does_not_fit_is_rejected_with_its_memory():
    result = run("calc", "plan", "--model", "llama-3-70b", "--gpus", "8", "--batch", "64",
                 "--tp", "8", "--zero", "0")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    needed = float(re.search(r"needs ([\d.,]+) GB per GPU", result.err).group(1).replace(",", ""))
    assert needed * 1e9 >= 16 * count(load_model("llama-3-70b")).total / 8  # model states alone
    # In a search, the refused layouts are counted and one is named with its memory.
    data = plan("--model", "llama-3-70b", "--gpus", "16", "--batch", "64")
    assert data["rejected"] >= 1
    assert re.search(r"TP\d+ PP\d+ DP\d+.*: [\d.,]+ [GT]B per GPU at least .* > 72.000 GB", data["formula"]["rejected"])


def test_70b_on_one_gpu_is_a_one_line_error():
    result = run("calc", "plan", "--model", "llama-3-70b", "--gpus", "1", "--batch", "8")
    assert result.code == 1
    assert result.err.count("\n") == 1 and "does not fit on 1 × h100-sxm" in result.err


@pytest.mark.parametrize("args", [
    ["--gpus", "8", "--batch", "8", "--latency", "2"], ["--gpus", "8", "--batch", "8", "--latency", "-1"],
    ["--gpus", "8", "--batch", "8", "--overlap", "1.5"], ["--gpus", "8", "--batch", "8", "--overlap", "nan"],
    ["--gpus", "0", "--batch", "8"], ["--gpus", "8", "--batch", "0"], ["--gpus", "8"],
    ["--gpus", "8", "--batch", "8", "--efficiency", "0"], ["--gpus", "8", "--batch", "8", "--efficiency", "nan"],
    ["--gpus", "8", "--batch", "8", "--zero", "4"], ["--gpus", "8", "--batch", "8", "--usable-memory", "1.5"],
])
def test_bad_options_are_usage_errors(args):
    assert run("calc", "plan", "--model", "llama-3-8b", *args).code == 2


def test_no_layout_for_the_shape_names_the_constraints():
    result = run("calc", "plan", "--model", "llama-3-8b", "--gpus", "7", "--batch", "5")
    assert result.code == 1 and "TP must divide 32 heads" in result.err


def test_an_moe_model_is_planned_with_expert_parallelism():
    data = plan("--model", "mixtral-8x7b", "--gpus", "64", "--batch", "256", "--seq", "4096", "--ep", "8")
    assert all(p["ep"] == 8 for p in data["plans"])
    assert any(key.startswith("ep_all_to_all") for key in data["formula"])


# -------------------------------------------------------------- fabrics, latency, overlap, memory


@pytest.mark.parametrize("hw, gpus", [("mi300x", "64"), ("v5p", "256"), ("v5e", "256"), ("v4", "64")])
def test_plans_on_infinity_fabric_and_tpu_ici(hw, gpus):
    # 35c052a refused every accelerator without NVLink ("mi300x lists no NVLink bandwidth"); the
    # rows are timed by comms.row_route over each fabric.
    data = plan("--model", "llama-3-8b", "--gpus", gpus, "--hw", hw, "--batch", "256", "--seq", "4096")
    fabrics = " ".join(a for key, notes in data["assumptions"].items() for a in notes)
    assert {"mi300x": "Infinity Fabric", "v5p": "ICI", "v5e": "ICI", "v4": "ICI"}[hw] in fabrics
    assert data["plans"][0]["memory_bytes"] <= 0.9 * hardware.load(hw).hbm_bytes


def test_zero3_memory_holds_the_gathered_layers():
    # FSDP holds, beyond its shards, the full parameters of the layer it computes and of the next
    # one it prefetches, and one layer's full gradients before their reduce-scatter: (2 · 2 + 2)
    # bytes per parameter of one layer (mixed precision), not counted at 35c052a.
    args = ("--model", "llama-3-70b", "--gpus", "64", "--batch", "512", "--seq", "4096",
            "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "3")
    best = plan(*args)["plans"][0]
    spec = load_model("llama-3-70b")
    shards = memory.memory_per_rank(spec, memory.Parallel(dp=32, tp=2), 3, 1, 4096, best["recompute"], True,
                                    microbatches=best["microbatches"], kernel="flash")
    layer = shards.params_per_rank / spec.n_layers
    assert best["memory_bytes"] == pytest.approx(shards.total + 6 * layer)


def test_overlap_charges_the_unhidden_share_of_dp_traffic():
    # --overlap 0: every DP byte is exposed; --overlap 1 and --latency 0: 35c052a's model, where
    # DP traffic that fits under its window costs nothing.
    args = ("--model", "llama-3-8b", "--gpus", "16", "--batch", "64", "--seq", "4096",
            "--tp", "1", "--pp", "1", "--cp", "1", "--zero", "1")
    none = plan(*args, "--overlap", "0")
    assert none["dp_exposed"] == pytest.approx(none["dp_zero_1_reduce_scatter"] + none["dp_zero_1_all_gather"])
    ideal = plan(*args, "--overlap", "1", "--latency", "0")
    assert ideal["dp_exposed"] == 0
    assert any("--overlap" in a for a in none["assumptions"]["dp_exposed"])


def test_collectives_pay_nccls_latency_unless_given_one():
    # NCCL 2.30 src/graph/tuning.cc (ring, Simple): 8.4 µs per call + 3.4 µs per NVLink step. TP 8
    # on one node, sequence parallel: 4 all-gathers per layer and micro-batch, 7 steps each.
    spec = load_model("llama-3-8b")
    args = ("--model", "llama-3-8b", "--gpus", "8", "--batch", "8", "--seq", "4096", "--tp", "8",
            "--pp", "1", "--cp", "1", "--zero", "0")
    calls = 4 * spec.n_layers * 8
    nccl, bare = plan(*args)["tp_sp_all_gather"], plan(*args, "--latency", "0")["tp_sp_all_gather"]
    assert nccl - bare == pytest.approx(calls * (8.4e-6 + 7 * 3.4e-6))
    given = plan(*args, "--latency", "1e-5")["tp_sp_all_gather"]
    assert given - bare == pytest.approx(calls * 7 * 1e-5)
