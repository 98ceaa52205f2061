"""The closed forms against the NumPy reference package on small dimensions: parameters from
the actual arrays, FLOPs counted from the einsums, bytes from the simulated collectives' ledger."""

from __future__ import annotations

import numpy as np
import pytest

from mlgrind.calc import comms, memory
from mlgrind.calc.flops import forward_flops, layer_forward_flops
from mlgrind.calc.inference import kv_bytes, kv_bytes_per_token
from mlgrind.calc.params import attention_matrices, count
from mlgrind.calc.specs import MLA, ModelSpec
from mlgrind.ref import (
    checkpointing,
    context_parallel,
    inference,
    mla,
    moe,
    pipeline,
    zero,
)
from mlgrind.ref.collectives import Comm
from mlgrind.ref.einsum import count_flops

REF = inference.Config(V=13, D=8, H=4, G=2, K=2, F=16, n_layers=2)


def spec_of(config: inference.Config, **changes) -> ModelSpec:
    """The reference decoder as a spec: GQA, ReLU MLP, no norms or biases, untied head."""
    return ModelSpec(**{
        "name": "ref", "source": "mlgrind.ref.inference", "model_type": "llama", "V": config.V,
        "D": config.D, "n_layers": config.n_layers, "H": config.H, "G": config.G, "K": config.K,
        "K_v": config.K, "F": config.F, "context": 64, "learned_positions": 0, "norm": "rmsnorm",
        "mlp_gated": False, "qkv_bias": False, "o_bias": False, "mlp_bias": False, "tied": False,
        **changes})


def test_parameters_equal_the_reference_decoders_arrays():
    model = inference.init_model(REF, np.random.default_rng(0))
    c = count(spec_of(REF))
    assert c.embedding == model.embed_VD.size
    assert c.unembedding == model.unembed_DV.size
    assert c.attention == sum(b.w_q_DHK.size + b.w_k_DGK.size + b.w_v_DGK.size + b.w_o_HKD.size
                              for b in model.blocks)
    assert c.mlp == sum(b.w_in_DF.size + b.w_out_FD.size for b in model.blocks)


@pytest.mark.parametrize("B, L", [(1, 5), (3, 7)])
def test_prefill_and_decode_flops_equal_the_counted_einsums(B, L):
    model = inference.init_model(REF, np.random.default_rng(1))
    tokens_BL = np.random.default_rng(2).integers(0, REF.V, size=(B, L))
    cache = inference.KVCache.empty(REF, B)
    with count_flops() as prefill:
        inference.forward(model, tokens_BL, cache)
    with count_flops() as decode:
        inference.forward(model, tokens_BL[:, :1], cache)
    spec = spec_of(REF)
    assert prefill.total == forward_flops(spec, B, L)
    assert decode.total == forward_flops(spec, B, 1, L + 1)


def test_kv_cache_bytes_equal_the_reference_cache():
    model = inference.init_model(REF, np.random.default_rng(3))
    cache = inference.KVCache.empty(REF, 2)
    inference.forward(model, np.zeros((2, 9), dtype=int), cache)
    assert cache.nbytes == kv_bytes(spec_of(REF), 9, batch=2, bytes_per_element=8)


def test_mla_parameters_and_cache_equal_the_reference():
    D, H, K, C, R = 12, 3, 4, 5, 2
    w = mla.init_mla(np.random.default_rng(4), D, H, K, C, R)
    spec = spec_of(REF, D=D, H=H, G=H, K=K + R, K_v=K, model_type="deepseek_v3",
                   mla=MLA(q_rank=0, C=C, R=R, K_nope=K))
    assert attention_matrices(spec) == sum(a.size for a in vars(w).values())
    x_BMD = np.random.default_rng(5).normal(size=(1, 6, D))
    c_kv_BMC, k_rope_BMR = mla.mla_latent_cache(x_BMD, np.arange(6), w)
    per_token = (c_kv_BMC.nbytes + k_rope_BMR.nbytes) // 6
    assert per_token * spec.n_layers == kv_bytes_per_token(spec, bytes_per_element=8)


def test_moe_layer_flops_equal_the_counted_einsums():
    B, D, F, E, k = 10, 6, 8, 4, 2
    rng = np.random.default_rng(6)
    with count_flops() as counter:
        moe.moe_forward(rng.normal(size=(B, D)), rng.normal(size=(D, E)),
                        rng.normal(size=(E, D, F)), rng.normal(size=(E, F, D)), k)
    spec = spec_of(REF, D=D, E=E, top_k=k, F_expert=F)
    parts = layer_forward_flops(spec, 1, B, moe=True)
    assert counter.total == parts["router"] + parts["experts (top-k + shared)"]


@pytest.mark.parametrize("S", [2, 3, 4])
@pytest.mark.parametrize("collective", ["all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send"])
def test_bytes_per_rank_equal_the_simulated_ledger(collective, S):
    x = np.arange(12.0 * S)  # divides evenly into S chunks
    comm = Comm(S)
    if collective == "all_reduce":
        comm.all_reduce([x] * S)
    elif collective == "reduce_scatter":
        comm.reduce_scatter([x] * S)
    elif collective == "all_gather":
        comm.all_gather(np.split(x, S))  # each rank contributes 1/S of the gathered tensor
    elif collective == "all_to_all":
        comm.all_to_all([np.split(x, S)] * S)
    else:
        comm.send(x, 0, 1)
    assert comm.sent[0] == comms.bytes_per_rank(collective, x.nbytes, S)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_step_bytes_and_states_equal_the_reference(stage):
    S, steps = 3, 2
    rng = np.random.default_rng(7)
    params = {"w_in_DF": rng.normal(size=(3, 5)), "w_out_FD": rng.normal(size=(5, 3))}
    batches = [(rng.normal(size=(6, 3)), rng.normal(size=(6, 3))) for _ in range(steps)]
    _, comm, ranks = zero.train(stage, S, params, batches)
    n_bytes = sum(w.nbytes for w in params.values())
    spec = spec_of(REF)
    rows = comms.step_collectives(spec, memory.Parallel(dp=S), 1, 8, zero=stage)
    dense = (count(spec).total - count(spec).experts) * 2
    # Both sides as a multiple of the parameter bytes, so dtypes need not match.
    assert comm.sent[0] / steps / n_bytes == pytest.approx(sum(r.bytes_per_rank for r in rows) / dense)
    held = ranks[0].nbytes()
    # fp32 states are 4 + 4 + 8 bytes per 4-byte parameter, the reference's float64 ones
    # 8 + 8 + 16 per 8-byte parameter: the same multiples of the parameter bytes.
    states = memory.zero_state_bytes(1.0, S, stage, "fp32")
    for kind in ("params", "grads", "optimizer"):
        assert held[kind] / n_bytes == pytest.approx(states[kind] / 4)


def test_context_parallel_forward_bytes_equal_the_ring_attention_ledger():
    B, L, H, K, S = 2, 12, 3, 4, 4
    rng = np.random.default_rng(8)
    shards = [np.split(rng.normal(size=(B, L, H, K)), S, axis=1) for _ in range(3)]
    comm = Comm(S)
    context_parallel.ring_attention(*shards, comm)
    spec = spec_of(REF, H=H, G=H, K=K, K_v=K, n_layers=1)
    [row] = [r for r in comms.step_collectives(spec, memory.Parallel(cp=S), B, L, dtype_bytes=8)
             if r.parallelism == "CP"]
    forward_calls = row.calls // 3  # backward moves K, V again and then their gradients
    assert comm.sent[0] == forward_calls * row.n_bytes


def test_full_recompute_keeps_what_the_checkpointed_stack_keeps():
    n_layers, s, b, h = 6, 16, 2, 8
    kept = checkpointing.checkpoint_bytes(n_layers, 1, s * b, h, itemsize=2)
    per_layer = memory.activation_bytes_per_layer(s, b, h, a=2, recompute="full")
    assert n_layers * per_layer == kept


@pytest.mark.parametrize("p, m", [(2, 4), (4, 8), (4, 2)])
def test_first_pipeline_stage_holds_the_microbatches_1f1b_keeps_in_flight(p, m):
    ops = pipeline.simulate(pipeline.one_f_one_b_order(p, m))
    spec = spec_of(REF, n_layers=4 * p, H=4)
    per_layer = memory.activation_bytes_per_layer(32, 1, spec.D, spec.H)
    rank = memory.memory_per_rank(spec, memory.Parallel(pp=p), seq_len=32, microbatches=m)
    assert rank.activation_parts.layers == spec.n_layers // p * pipeline.peak_in_flight(ops)[0] * per_layer
