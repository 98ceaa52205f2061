"""Learner files for every exercise: the reference dropped in, and a subtly wrong one.

The wrong ones make the mistakes the seed's learners make (a transposed weight gradient, a
missing causal mask, a sum done in Python instead of an all-reduce…), each next to the checks it
must fail and words its message must contain.
"""

from __future__ import annotations

from dataclasses import dataclass

# Typed by hand, not derived from the catalog: an independent statement of what the drills mean.
DRILLS_REFERENCE = """
from mlgrind.ref.einsum import einsum, flops as einsum_flops

def matvec(x_D, w_DF): return einsum("d,df->f", x_D, w_DF)
def project(x_BLD, w_in_DF): return einsum("bld,df->blf", x_BLD, w_in_DF)
def outer(x_D, d_h_F): return einsum("d,f->df", x_D, d_h_F)
def weight_grad(x_BLD, d_h_BLF): return einsum("bld,blf->df", x_BLD, d_h_BLF)
def heads_first(q_BLHK): return einsum("blhk->bhlk", q_BLHK)
def scores(q_BLHK, k_BMHK): return einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK)
def attend(probs_BHLM, v_BMHK): return einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
def merge_heads(out_BLHK, w_o_HKD): return einsum("blhk,hkd->bld", out_BLHK, w_o_HKD)
def row_sums(probs_BHLM): return einsum("bhlm->bhl", probs_BHLM)
"""

REFERENCE = {
    "einsum_drills": DRILLS_REFERENCE,
    "mlp": "from mlgrind.ref.mlp import mlp_forward_D, mlp_backward_D",
    "mlp_batched": "from mlgrind.ref.mlp import mlp_forward, mlp_backward",
    "row_parallel": "from mlgrind.ref.mlp import row_parallel_forward, row_parallel_backward",
    "column_parallel": "from mlgrind.ref.mlp import column_parallel_forward, column_parallel_backward",
    "data_parallel": "from mlgrind.ref.mlp import data_parallel_forward, data_parallel_backward",
    "attention": "from mlgrind.ref.attention import mha_forward, mha_backward",
    "gqa": "from mlgrind.ref.attention import gqa_attend, gqa_forward, gqa_backward",
    "rope": "from mlgrind.ref.rope import rope, rope_backward",
    "mla": "from mlgrind.ref.rope import rope\n"
    "from mlgrind.ref.mla import mla_latent_cache, mla_rope_query, mla_naive, mla_absorbed",
    "kv_cache": "from mlgrind.ref.rope import rope\n"
    "from mlgrind.ref.attention import gqa_attend\n"
    "from mlgrind.ref.inference import forward, generate",
    "speculative": "from mlgrind.ref.speculative import (residual, acceptance_rate, "
    "expected_tokens_per_step, step_distribution, speculative_step)",
}


@dataclass(frozen=True)
class Wrong:
    source: str
    failing: dict[str, tuple[str, ...]]  # exactly the checks that fail, and words each one says


WRONG = {
    "einsum_drills": Wrong(
        DRILLS_REFERENCE.replace('"blhk,bmhk->bhlm"', '"blhk,bmhk->bhml"').replace(
            "flops as einsum_flops", "flops"
        )
        + "\ndef einsum_flops(spec, sizes): return flops(spec, sizes) // 2\n",
        {
            "scores: scores_BHLM": (
                "expected shape (B=2, H=4, L=5, M=3), got (2, 4, 3, 5)",
                "'bhml'",
                "'bhlm'",
            ),
            "einsum_flops": ("expected 960, got 480", "multiply AND an add"),
        },
    ),
    "mlp": Wrong(
        """
from mlgrind.ref.mlp import mlp_forward_D, mlp_backward_D as reference

def mlp_backward_D(d_y_D, saved):
    d_x_D, d_w_in_DF, d_w_out_FD = reference(d_y_D, saved)
    return d_x_D, d_w_in_DF, d_w_out_FD.T  # einsum("f,d->df") instead of "->fd"
""",
        {
            "backward: d_w_out_FD": (
                "d_w_out_FD: expected shape (F=7, D=4), got (4, 7)",
                "order 'df'",
            )
        },
    ),
    "mlp_batched": Wrong(
        """
from mlgrind.ref.mlp import mlp_forward, mlp_backward as reference

def mlp_backward(d_y_BD, saved):
    d_x_BD, d_w_in_DF, d_w_out_FD = reference(d_y_BD, saved)
    B = len(d_y_BD)
    return d_x_BD, d_w_in_DF / B, d_w_out_FD / B  # a mean over the batch, not a sum
""",
        {
            "backward: d_w_in_DF": ("× 1/5", "divided by B = 5"),
            "backward: d_w_out_FD": ("divided by B = 5",),
        },
    ),
    "row_parallel": Wrong(
        """
import numpy as np
from mlgrind.ref.mlp import row_parallel_backward

def row_parallel_forward(comm, x_BD, w_in_DF, w_out_FD_ranks):
    h_BF = x_BD @ w_in_DF
    a_BF_ranks = np.array_split(np.maximum(h_BF, 0), comm.size, axis=1)
    y_BD = sum(a @ w for a, w in zip(a_BF_ranks, w_out_FD_ranks))  # no all-reduce
    return y_BD, (x_BD, w_in_DF, w_out_FD_ranks, h_BF)
""",
        {
            "forward: collectives": (
                ("all_reduce: y_BD (B=5, D=4) on every rank; each rank sends 160 B"),
                "you made no collective call",
            )
        },
    ),
    "column_parallel": Wrong(
        """
import numpy as np
from mlgrind.ref.mlp import column_parallel_forward

def column_parallel_backward(comm, d_y_BD, saved):
    x_BD, w_in_DF_ranks, w_out_FD, h_BF_ranks, a_BF = saved
    d_a_BF = d_y_BD @ w_out_FD.T
    d_h_BF_ranks = [d_a * (h > 0) for d_a, h in
                    zip(np.array_split(d_a_BF, comm.size, axis=1), h_BF_ranks)]
    d_w_in_DF_ranks = [x_BD.T @ d_h for d_h in d_h_BF_ranks]
    d_x_BD = comm.all_gather([d_h @ w.T for d_h, w in zip(d_h_BF_ranks, w_in_DF_ranks)])[0]
    return d_x_BD[: len(x_BD)], d_w_in_DF_ranks, a_BF.T @ d_y_BD  # gathered, not summed
""",
        {
            "backward: d_x_BD": ("d_x_BD (S=2 ranks)", "entries differ"),
            # S=2 passes: there an all-gather sends what an all-reduce does. At S=3 a ring
            # all-gather of three 5×4 float64 blocks has each rank pass on two: 2·160 B.
            "backward: collectives": (
                "(S=3 ranks): you send 320 B per rank",
                "yours sends more",
                "all_reduce: d_x_BD (B=5, D=4) on every rank",
                "you made 1:",
                "all_gather",
            ),
        },
    ),
    "data_parallel": Wrong(
        """
from mlgrind.ref.mlp import data_parallel_forward, mlp_backward

def data_parallel_backward(comm, d_y_BD_ranks, saved_ranks):
    grads = [mlp_backward(d_y, saved) for d_y, saved in zip(d_y_BD_ranks, saved_ranks)]
    S = comm.size
    d_w_in_DF = comm.all_reduce([g[1] for g in grads])[0] / S  # averaged: each rank's share 1/S
    d_w_out_FD = comm.all_reduce([g[2] for g in grads])[0] / S
    return [g[0] for g in grads], d_w_in_DF, d_w_out_FD
""",
        {
            "backward: d_w_in_DF": ("× 1/2", "divided by S = 2"),
            "backward: d_w_out_FD": ("divided by S = 2",),
        },
    ),
    "attention": Wrong(
        """
import numpy as np
from mlgrind.ref.attention import mha_backward

def mha_forward(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD):
    K = w_q_DHK.shape[-1]
    q_BLHK = np.einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
    k_BMHK = np.einsum("bmd,dhk->bmhk", x_BLD, w_k_DHK)
    v_BMHK = np.einsum("bmd,dhk->bmhk", x_BLD, w_v_DHK)
    scores_BHLM = np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(K)  # no mask
    e = np.exp(scores_BHLM - scores_BHLM.max(-1, keepdims=True))
    probs_BHLM = e / e.sum(-1, keepdims=True)
    out_BLHK = np.einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    y_BLD = np.einsum("blhk,hkd->bld", out_BLHK, w_o_HKD)
    return y_BLD, (x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD,
                   q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK)
""",
        {
            "forward: y_BLD": (
                "wrong only where l ∈ {0, 1, 2, 3}; right for l ∈ {4}",
                "causal mask missing",
            ),
            "causal: no position reads a later one": (
                ("changing the token at l=3 changed y_BLD at l=0, 1, 2"),
            ),
            # the backward of the unmasked saved tensors is wrong everywhere, naturally
            **{
                f"backward: {g}": ("entries differ",)
                for g in ("d_x_BLD", "d_w_q_DHK", "d_w_k_DHK", "d_w_v_DHK", "d_w_o_HKD")
            },
        },
    ),
    "gqa": Wrong(
        """
import numpy as np
from mlgrind.ref.attention import gqa_forward, gqa_backward

def gqa_attend(q_BLHK, k_BMGK, v_BMGK, mask_LM):
    B, L, H, K = q_BLHK.shape
    G = k_BMGK.shape[2]
    k_BMHK = np.tile(k_BMGK, (1, 1, H // G, 1))  # head h gets kv head h % G
    v_BMHK = np.tile(v_BMGK, (1, 1, H // G, 1))
    scores_BHLM = np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(K)
    scores_BHLM = np.where(mask_LM, scores_BHLM, -np.inf)
    e = np.exp(scores_BHLM - scores_BHLM.max(-1, keepdims=True))
    probs_BHLM = e / e.sum(-1, keepdims=True)
    out_BLHK = np.einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    return out_BLHK, probs_BHLM.reshape(B, G, H // G, L, -1)
""",
        {
            "gqa_attend: out_BLHK": ("wrong only where h ∈ {1, 2}", "h // (H/G)"),
            "gqa_attend: probs_BGHLM": ("entries differ",),
        },
    ),
    "rope": Wrong(
        """
import numpy as np
from mlgrind.ref.rope import rope_backward

def rope(x_BLHK, positions_L, theta=10000.0):
    K = x_BLHK.shape[-1]
    angles = np.asarray(positions_L, float)[:, None] * theta ** (-np.arange(0, K, 2) / K)
    cos, sin = np.cos(angles)[None, :, None, :], np.sin(angles)[None, :, None, :]
    first, second = x_BLHK[..., : K // 2], x_BLHK[..., K // 2 :]  # "rotate half" pairs
    return np.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)
""",
        {"rope: y_BLHK": ("right for l ∈ {0}", "GPT-NeoX")},
    ),
    "mla": Wrong(
        """
import numpy as np
from mlgrind.ref.rope import rope
from mlgrind.ref.mla import mla_rope_query, mla_naive, mla_absorbed

def mla_latent_cache(x_BMD, positions_M, w):
    c_kv_BMC = np.einsum("bmd,dc->bmc", x_BMD, w.w_dkv_DC)
    k_rope_BMR = np.einsum("bmd,dr->bmr", x_BMD, w.w_kr_DR)  # cached before RoPE
    return c_kv_BMC, k_rope_BMR
""",
        {"mla_latent_cache: k_rope_BMR": ("k_rope_BMR", "not rotated")},
    ),
    "kv_cache": Wrong(
        """
import numpy as np
from mlgrind.ref.rope import rope
from mlgrind.ref.attention import gqa_attend, causal_mask_LM
from mlgrind.ref.inference import generate as reference_generate, KVCache

def forward(model, tokens_BL, cache=None):
    B, L = tokens_BL.shape
    cache = cache if cache is not None else KVCache.empty(model.config, B)
    positions_L = np.arange(L)  # restarts at 0 on every call
    x_BLD = model.embed_VD[tokens_BL]
    for i, block in enumerate(model.blocks):
        q_BLHK = rope(np.einsum("bld,dhk->blhk", x_BLD, block.w_q_DHK), positions_L)
        k_BLGK = rope(np.einsum("bld,dgk->blgk", x_BLD, block.w_k_DGK), positions_L)
        v_BLGK = np.einsum("bld,dgk->blgk", x_BLD, block.w_v_DGK)
        cache.k[i] = np.concatenate([cache.k[i], k_BLGK], axis=1)
        cache.v[i] = np.concatenate([cache.v[i], v_BLGK], axis=1)
        M = cache.k[i].shape[1]
        mask_LM = causal_mask_LM(np.arange(M - L, M), np.arange(M))
        out_BLHK, _ = gqa_attend(q_BLHK, cache.k[i], cache.v[i], mask_LM)
        x_BLD = x_BLD + np.einsum("blhk,hkd->bld", out_BLHK, block.w_o_HKD)
        h_BLF = np.maximum(np.einsum("bld,df->blf", x_BLD, block.w_in_DF), 0)
        x_BLD = x_BLD + np.einsum("blf,fd->bld", h_BLF, block.w_out_FD)
    return np.einsum("bld,dv->blv", x_BLD, model.unembed_DV)

def generate(model, prompt_BL, n_new):
    cache = KVCache.empty(model.config, prompt_BL.shape[0])
    logits_BLV = forward(model, prompt_BL, cache)
    tokens = [prompt_BL]
    for _ in range(n_new):
        tokens.append(logits_BLV[:, -1:].argmax(-1))
        logits_BLV = forward(model, tokens[-1], cache)
    return np.concatenate(tokens, axis=1)
""",
        {
            "prefill + decode: logits_BLV per step": ("decode step at position 3",),
            "cache: k_BMGK and v_BMGK per layer": (
                "wrong only where m ∈ {3, 4, 5, 6}",
                "position is the cache's length, not 0",
            ),
            "generate: tokens_BL": ("entries differ",),
        },
    ),
    "speculative": Wrong(
        """
from mlgrind.ref.speculative import (residual, acceptance_rate, expected_tokens_per_step,
                                     step_distribution)

def speculative_step(target, draft, context, gamma, rng):
    drafted, q = (), []
    for _ in range(gamma):
        q_V = draft(context + drafted)
        drafted += (int(rng.choice(len(q_V), p=q_V)),)
        q.append(q_V)
    p = [target(context + drafted[:i]) for i in range(gamma + 1)]
    for i, x in enumerate(drafted):
        if rng.random() >= p[i][x] / q[i][x]:
            return drafted[:i] + (int(rng.choice(len(p[i]), p=p[i])),)  # from p, not residual
    return drafted + (int(rng.choice(len(p[gamma]), p=p[gamma])),)
""",
        {
            "speculative_step: samples follow the target": (
                "the first emitted token must follow the target exactly",
                "residual(p, q)",
            )
        },
    ),
}


# Learner-written attention with one known slip: scores divided by K instead of sqrt(K).
# Typed independently of mlgrind.ref; with the slip fixed it must pass every check.
MHA_OVER_K = """
import numpy as np

def mha_forward(x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD):
    K, L = w_q_DHK.shape[-1], x_BLD.shape[1]
    q_BLHK = np.einsum("bld,dhk->blhk", x_BLD, w_q_DHK)
    k_BMHK = np.einsum("bmd,dhk->bmhk", x_BLD, w_k_DHK)
    v_BMHK = np.einsum("bmd,dhk->bmhk", x_BLD, w_v_DHK)
    scale = 1 / K
    scores_BHLM = np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) * scale
    scores_BHLM = np.where(np.tril(np.ones((L, L), bool)), scores_BHLM, -np.inf)
    e_BHLM = np.exp(scores_BHLM - scores_BHLM.max(-1, keepdims=True))
    probs_BHLM = e_BHLM / e_BHLM.sum(-1, keepdims=True)
    out_BLHK = np.einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    y_BLD = np.einsum("blhk,hkd->bld", out_BLHK, w_o_HKD)
    saved = (x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD, q_BLHK, k_BMHK, v_BMHK, probs_BHLM,
             out_BLHK, scale)
    return y_BLD, saved

def mha_backward(d_y_BLD, saved):
    x_BLD, w_q_DHK, w_k_DHK, w_v_DHK, w_o_HKD, q_BLHK, k_BMHK, v_BMHK, probs_BHLM, out_BLHK, \\
        scale = saved
    d_out_BLHK = np.einsum("bld,hkd->blhk", d_y_BLD, w_o_HKD)
    d_w_o_HKD = np.einsum("blhk,bld->hkd", out_BLHK, d_y_BLD)
    d_probs_BHLM = np.einsum("blhk,bmhk->bhlm", d_out_BLHK, v_BMHK)
    d_v_BMHK = np.einsum("bhlm,blhk->bmhk", probs_BHLM, d_out_BLHK)
    row_BHL = (probs_BHLM * d_probs_BHLM).sum(-1, keepdims=True)
    d_scores_BHLM = probs_BHLM * (d_probs_BHLM - row_BHL) * scale
    d_q_BLHK = np.einsum("bhlm,bmhk->blhk", d_scores_BHLM, k_BMHK)
    d_k_BMHK = np.einsum("bhlm,blhk->bmhk", d_scores_BHLM, q_BLHK)
    d_x_BLD = (np.einsum("blhk,dhk->bld", d_q_BLHK, w_q_DHK)
               + np.einsum("bmhk,dhk->bmd", d_k_BMHK, w_k_DHK)
               + np.einsum("bmhk,dhk->bmd", d_v_BMHK, w_v_DHK))
    return (d_x_BLD, np.einsum("bld,blhk->dhk", x_BLD, d_q_BLHK),
            np.einsum("bmd,bmhk->dhk", x_BLD, d_k_BMHK),
            np.einsum("bmd,bmhk->dhk", x_BLD, d_v_BMHK), d_w_o_HKD)
"""

GQA_ATTEND = """
import numpy as np
from mlgrind.ref.attention import gqa_forward, gqa_backward

def gqa_attend(q_BLHK, k_BMGK, v_BMGK, mask_LM):
    B, L, H, K = q_BLHK.shape
    G = k_BMGK.shape[2]
    q_BLGHK = q_BLHK.reshape(B, L, G, H // G, K)
    scores_BGHLM = np.einsum("blghk,bmgk->bghlm", q_BLGHK, k_BMGK) / np.sqrt(K)
    scores_BGHLM = np.where(mask_LM, scores_BGHLM, -np.inf)
    e_BGHLM = np.exp(scores_BGHLM - scores_BGHLM.max(-1, keepdims=True))
    probs_BGHLM = e_BGHLM / e_BGHLM.sum(-1, keepdims=True)
    out_BLGHK = np.einsum("bghlm,bmgk->blghk", probs_BGHLM, v_BMGK)
    return out_BLGHK.reshape(B, L, H, K), probs_BGHLM
"""

ROPE = """
import numpy as np
from mlgrind.ref.rope import rope_backward

def rope(x_BLHK, positions_L, theta=10000.0):
    K = x_BLHK.shape[-1]
    angle_LI = np.outer(positions_L, theta ** (-np.arange(0, K, 2) / K))
    cos, sin = np.cos(angle_LI)[None, :, None, :], np.sin(angle_LI)[None, :, None, :]
    x0, x1 = x_BLHK[..., 0::2], x_BLHK[..., 1::2]
    y_BLHK = np.empty_like(x_BLHK)
    y_BLHK[..., 0::2] = x0 * cos - x1 * sin
    y_BLHK[..., 1::2] = x0 * sin + x1 * cos
    return y_BLHK
"""

# MLA's decode form written in the latent space, one slip: 1/sqrt(C) for 1/sqrt(K + R).
MLA_ABSORBED_OVER_C = """
import numpy as np
from mlgrind.ref.rope import rope
from mlgrind.ref.mla import mla_latent_cache, mla_rope_query, mla_naive

def mla_absorbed(x_BLD, positions_L, c_kv_BMC, k_rope_BMR, positions_M, w):
    K, R, C = w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1], c_kv_BMC.shape[-1]
    w_q_DHC = np.einsum("dhk,chk->dhc", w.w_q_DHK, w.w_uk_CHK)
    w_o_HCD = np.einsum("chk,hkd->hcd", w.w_uv_CHK, w.w_o_HKD)
    q_BLHC = np.einsum("bld,dhc->blhc", x_BLD, w_q_DHC)
    q_rope_BLHR = mla_rope_query(x_BLD, positions_L, w)
    scores_BHLM = (np.einsum("blhc,bmc->bhlm", q_BLHC, c_kv_BMC)
                   + np.einsum("blhr,bmr->bhlm", q_rope_BLHR, k_rope_BMR)) / np.sqrt(C)
    scores_BHLM = np.where(positions_M[None, :] <= positions_L[:, None], scores_BHLM, -np.inf)
    e_BHLM = np.exp(scores_BHLM - scores_BHLM.max(-1, keepdims=True))
    probs_BHLM = e_BHLM / e_BHLM.sum(-1, keepdims=True)
    out_BLHC = np.einsum("bhlm,bmc->blhc", probs_BHLM, c_kv_BMC)
    return np.einsum("blhc,hcd->bld", out_BLHC, w_o_HCD)
"""

COLUMN_BACKWARD = """
import numpy as np
from mlgrind.ref.mlp import column_parallel_forward

def column_parallel_backward(comm, d_y_BD, saved):
    x_BD, w_in_DF_ranks, w_out_FD, h_BF_ranks, a_BF = saved
    d_a_BF_ranks = np.array_split(d_y_BD @ w_out_FD.T, comm.size, axis=1)
    d_h_BF_ranks = [d_a * (h > 0) for d_a, h in zip(d_a_BF_ranks, h_BF_ranks)]
    parts = [d_h @ w.T for d_h, w in zip(d_h_BF_ranks, w_in_DF_ranks)]
    d_x_BD = comm.all_gather(comm.reduce_scatter(parts, axis=0), axis=0)[0]
    return d_x_BD, [x_BD.T @ d_h for d_h in d_h_BF_ranks], a_BF.T @ d_y_BD
"""

ROW_FORWARD_LIST = """
import numpy as np
from mlgrind.ref.mlp import row_parallel_backward

def row_parallel_forward(comm, x_BD, w_in_DF, w_out_FD_ranks):
    h_BF = x_BD @ w_in_DF
    a_BF_ranks = np.array_split(np.maximum(h_BF, 0), comm.size, axis=1)
    y_BD = comm.all_reduce([a @ w for a, w in zip(a_BF_ranks, w_out_FD_ranks)])
    return y_BD, (x_BD, w_in_DF, w_out_FD_ranks, h_BF)
"""

SCALED = "scores scaled by 1/K (K = 3); attention scales by 1/√K"
FULLY_MASKED = ("row l=4 is fully masked: exp(−inf − (−inf)) is NaN", "is your mask inverted")

# Each: (exercise, a learner's file with one known slip, the checks it fails and the words that
# name the cause). An empty `failing` is a correct independent solution: it must pass.
CAUSES = {
    "attention: scores / K": (
        "attention",
        Wrong(
            MHA_OVER_K,
            {
                "forward: y_BLD": (SCALED, "variance"),
                **{f"backward: {g}": (SCALED,) for g in (
                    "d_x_BLD", "d_w_q_DHK", "d_w_k_DHK", "d_w_v_DHK", "d_w_o_HKD")},
            },
        ),
    ),
    "attention: scores / sqrt(K), independent": (
        "attention",
        Wrong(MHA_OVER_K.replace("scale = 1 / K", "scale = 1 / np.sqrt(K)"), {}),
    ),
    "attention: backward without the 1/sqrt(K)": (
        "attention",
        Wrong(
            MHA_OVER_K.replace("scale = 1 / K", "scale = 1 / np.sqrt(K)").replace(
                "(d_probs_BHLM - row_BHL) * scale", "(d_probs_BHLM - row_BHL)"
            ),
            {
                f"backward: {g}": ("leaves out the 1/√K that scaled the scores",)
                for g in ("d_x_BLD", "d_w_q_DHK", "d_w_k_DHK")
            },
        ),
    ),
    "attention: mask inverted, the last row fully masked": (
        "attention",
        Wrong(
            MHA_OVER_K.replace("scale = 1 / K", "scale = 1 / np.sqrt(K)").replace(
                "np.tril(np.ones((L, L), bool))", "np.triu(np.ones((L, L), bool), 1)"
            ),
            {
                "forward: y_BLD": FULLY_MASKED,
                "causal: no position reads a later one": ("changed y_BLD at l=0, 1, 2",),
                # the NaN row spreads through every sum over l in the backward
                **{
                    f"backward: {g}": ("holds nan or inf",)
                    for g in ("d_x_BLD", "d_w_q_DHK", "d_w_k_DHK", "d_w_v_DHK", "d_w_o_HKD")
                },
            },
        ),
    ),
    "gqa: scores / K": (
        "gqa",
        Wrong(
            GQA_ATTEND.replace("/ np.sqrt(K)", "/ K"),
            {"gqa_attend: out_BLHK": (SCALED,), "gqa_attend: probs_BGHLM": (SCALED,)},
        ),
    ),
    "gqa: mask inverted, a row fully masked": (
        "gqa",
        Wrong(
            GQA_ATTEND.replace(
                "np.where(mask_LM, scores_BGHLM, -np.inf)",
                "np.where(mask_LM, -np.inf, scores_BGHLM)",
            ),
            {"gqa_attend: out_BLHK": FULLY_MASKED, "gqa_attend: probs_BGHLM": FULLY_MASKED},
        ),
    ),
    "gqa: attend, independent": ("gqa", Wrong(GQA_ATTEND, {})),
    "rope: turned clockwise": (
        "rope",
        Wrong(
            ROPE.replace("x0 * cos - x1 * sin", "x0 * cos + x1 * sin").replace(
                "x0 * sin + x1 * cos", "-x0 * sin + x1 * cos"
            ),
            {"rope: y_BLHK": ("rotated the other way (clockwise, by −a)", "sin terms")},
        ),
    ),
    "rope: rotate-half pairs, turned clockwise": (
        "rope",
        Wrong(
            """
import numpy as np
from mlgrind.ref.rope import rope_backward

def rope(x_BLHK, positions_L, theta=10000.0):
    K = x_BLHK.shape[-1]
    angle_LI = np.outer(positions_L, theta ** (-np.arange(0, K, 2) / K))
    cos, sin = np.cos(angle_LI)[None, :, None, :], np.sin(angle_LI)[None, :, None, :]
    x0, x1 = x_BLHK[..., : K // 2], x_BLHK[..., K // 2 :]
    return np.concatenate([x0 * cos + x1 * sin, x1 * cos - x0 * sin], axis=-1)
""",
            {"rope: y_BLHK": ("GPT-NeoX", "clockwise")},
        ),
    ),
    "rope: theta^(-i/K)": (
        "rope",
        Wrong(
            ROPE.replace("np.arange(0, K, 2) / K", "np.arange(K // 2) / K"),
            {"rope: y_BLHK": ("the exponent is −2i/K",)},
        ),
    ),
    "rope: backward rotated forward": (
        "rope",
        Wrong(
            ROPE.replace("from mlgrind.ref.rope import rope_backward", "")
            + "\ndef rope_backward(d_y_BLHK, positions_L, theta=10000.0):\n"
            "    return rope(d_y_BLHK, positions_L, theta)\n",
            {"rope_backward: d_x_BLHK": ("rotated forward, by +a", "rotation back by −a")},
        ),
    ),
    "rope: independent, backward by the inverse angle": (
        "rope",
        Wrong(
            ROPE.replace("from mlgrind.ref.rope import rope_backward", "")
            + "\ndef rope_backward(d_y_BLHK, positions_L, theta=10000.0):\n"
            "    return rope(d_y_BLHK, -np.asarray(positions_L), theta)\n",
            {},
        ),
    ),
    "mla: absorbed scaled by 1/sqrt(C)": (
        "mla",
        Wrong(
            MLA_ABSORBED_OVER_C,
            {
                f"mla_absorbed: y_BLD, {form}": (
                    "scores scaled by 1/√C (K = 4, R = 2, C = 5)",
                    "not the dot product",
                )
                for form in ("prefill", "decode")
            },
        ),
    ),
    "mla: absorbed in the latent space, independent": (
        "mla",
        Wrong(MLA_ABSORBED_OVER_C.replace("np.sqrt(C)", "np.sqrt(K + R)"), {}),
    ),
    "mla: naive scaled by 1/sqrt(K)": (
        "mla",
        Wrong(
            """
import numpy as np
from dataclasses import replace
from mlgrind.ref.rope import rope
from mlgrind.ref.mla import mla_latent_cache, mla_rope_query, mla_absorbed
from mlgrind.ref.mla import mla_naive as reference

def mla_naive(x_BLD, w):  # the same as dividing the scores by sqrt(K) instead of sqrt(K + R)
    K, R = w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1]
    c = np.sqrt((K + R) / K)
    return reference(x_BLD, replace(w, w_q_DHK=w.w_q_DHK * c, w_qr_DHR=w.w_qr_DHR * c))
""",
            {"mla_naive: y_BLD": ("scores scaled by 1/√K", "K + R terms")},
        ),
    ),
    "mla: absorbed up-projects per-head k and v": (
        "mla",
        Wrong(
            """
import numpy as np
from mlgrind.ref.rope import rope
from mlgrind.ref.mla import mla_latent_cache, mla_rope_query, mla_naive

def mla_absorbed(x_BLD, positions_L, c_kv_BMC, k_rope_BMR, positions_M, w):
    K, R = w.w_q_DHK.shape[-1], w.w_kr_DR.shape[-1]
    k_BMHK = np.einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uk_CHK)  # per-head keys, as in training
    v_BMHK = np.einsum("bmc,chk->bmhk", c_kv_BMC, w.w_uv_CHK)
    q_BLHK = np.einsum("bld,dhk->blhk", x_BLD, w.w_q_DHK)
    q_rope_BLHR = mla_rope_query(x_BLD, positions_L, w)
    scores_BHLM = (np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK)
                   + np.einsum("blhr,bmr->bhlm", q_rope_BLHR, k_rope_BMR)) / np.sqrt(K + R)
    scores_BHLM = np.where(positions_M[None, :] <= positions_L[:, None], scores_BHLM, -np.inf)
    e_BHLM = np.exp(scores_BHLM - scores_BHLM.max(-1, keepdims=True))
    probs_BHLM = e_BHLM / e_BHLM.sum(-1, keepdims=True)
    out_BLHK = np.einsum("bhlm,bmhk->blhk", probs_BHLM, v_BMHK)
    return np.einsum("blhk,hkd->bld", out_BLHK, w.w_o_HKD)
""",
            {
                "mla_absorbed: never builds per-head k or v": (
                    "mla_absorbed built a B×M×H×K tensor (per-head keys or values)",
                    "attends in the latent C space",
                )
            },
        ),
    ),
    "row_parallel: all_reduce's list returned whole": (
        "row_parallel",
        Wrong(
            ROW_FORWARD_LIST,
            {
                "forward: y_BD": (
                    (
                        "returned a list of 2 arrays (one per rank) where one array of shape "
                        "(B=5, D=4) is expected"
                    ),
                    "take any rank's, e.g. [0]",
                )
            },
        ),
    ),
    "row_parallel: d_a all-reduced, zero-padded": (
        "row_parallel",
        Wrong(
            """
import numpy as np
from mlgrind.ref.mlp import row_parallel_forward

def row_parallel_backward(comm, d_y_BD, saved):
    x_BD, w_in_DF, w_out_FD_ranks, h_BF = saved
    a_BF_ranks = np.array_split(np.maximum(h_BF, 0), comm.size, axis=1)
    d_w_out_FD_ranks = [a.T @ d_y_BD for a in a_BF_ranks]
    padded = []  # each rank's block of d_a placed in a zero B×F array, then summed
    start = 0
    for w in w_out_FD_ranks:
        block = np.zeros_like(h_BF)
        block[:, start : start + len(w)] = d_y_BD @ w.T
        padded.append(block)
        start += len(w)
    d_h_BF = comm.all_reduce(padded)[0] * (h_BF > 0)
    return d_h_BF @ w_in_DF.T, x_BD.T @ d_h_BF, d_w_out_FD_ranks
""",
            # a ring all-reduce of the B×F = 5×7 float64 d_a over S=2 ranks: 2·(S−1)/S·280 B
            {"backward: collectives": ("(S=2 ranks): you send 280 B per rank", "sends more")},
        ),
    ),
    "column_parallel: all_reduce as reduce_scatter + all_gather": (
        "column_parallel",
        Wrong(COLUMN_BACKWARD, {}),
    ),
    "column_parallel: backward without the ReLU gate": (
        "column_parallel",
        Wrong(
            COLUMN_BACKWARD.replace("[d_a * (h > 0) for", "[d_a + 0 * h for"),
            {
                "backward: d_x_BD": ("the ReLU gate is missing",),
                "backward: d_w_in_DF_ranks": ("entries differ",),
            },
        ),
    ),
    "row_parallel: forward without the ReLU": (
        "row_parallel",
        Wrong(
            ROW_FORWARD_LIST.replace("np.maximum(h_BF, 0)", "h_BF").replace(
                "[a @ w for a, w in zip(a_BF_ranks, w_out_FD_ranks)])",
                "[a @ w for a, w in zip(a_BF_ranks, w_out_FD_ranks)])[0]",
            ),
            {"forward: y_BD": ("it equals the network without its ReLU",)},
        ),
    ),
    "data_parallel: y joined into one array": (
        "data_parallel",
        Wrong(
            """
import numpy as np
from mlgrind.ref.mlp import data_parallel_backward, mlp_forward

def data_parallel_forward(x_BD_ranks, w_in_DF, w_out_FD):
    outs = [mlp_forward(x_BD, w_in_DF, w_out_FD) for x_BD in x_BD_ranks]
    return np.concatenate([y for y, _ in outs]), [saved for _, saved in outs]
""",
            {
                "forward: y_BD_ranks": (
                    "returned one array of shape (5, 4) where a list of 2 arrays (one per rank)",
                    "joined along axis 0",
                )
            },
        ),
    ),
}
# The systems exercises keep their solutions and slips in modules of their own.
from tests.exercise import impl_experts, impl_schedules, impl_sharding  # noqa: E402

for _module in (impl_sharding, impl_schedules, impl_experts):
    REFERENCE |= _module.REFERENCE
    WRONG |= {name: Wrong(*wrong) for name, wrong in _module.WRONG.items()}
