"""Seed "Context Parallel": ring attention, K/V blocks passed around the ring, merged by lse.

The reference is `mlgrind.ref.context_parallel` (block_attention, merge, ring_attention). The
ring's output is compared with full causal attention on the whole sequence
(`mlgrind.ref.attention.gqa_attend`, G = H), and its bytes per rank with the reference ring's.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref import context_parallel as ref
from mlgrind.ref.attention import causal_mask_LM, gqa_attend
from mlgrind.ref.collectives import Comm, shard

from ..catalog import Check, Exercise
from ..compare import Mismatch, Symptom, describe, expect_array, function, parts

B, L, H, K = 2, 7, 2, 3  # 7 positions split unevenly over 2 and 3 ranks
RANKS = (2, 3)

RING_CONTRACT = '''"""Context parallelism: ring attention, K/V blocks passed around, softmaxes merged by lse.

    B batch  L query positions  M key/value positions  H heads  K head size  S ranks

Causal self-attention: scores q·k / √K, each query reads the keys at or before its own position,
softmax over those keys, probabilities times v. The sequence is cut into S contiguous blocks,
one per rank (np.array_split along the sequence, so lengths may differ by one): rank s holds the
s-th block of q, k and v, and its positions start at the total length of the blocks before it.
No rank ever holds all of K and V.

A softmax over a set of keys splits exactly into softmaxes over disjoint parts. For each query
and one part, keep out, the output normalised within the part, and lse = log Σ_m exp(score_m),
the log-sum-exp of the query's scores in that part. Two parts a and b combine into their union:

    lse = log(exp(lse_a) + exp(lse_b))
    out = exp(lse_a − lse) · out_a + exp(lse_b − lse) · out_b

each part weighted by its share of the union's exp-mass (an average would be wrong).

The ring runs S rounds. Every rank starts with its own k and v block; in each round it attends
to the block it holds and merges the result into its running (out, lse); after every round but
the last it passes that block to its right neighbour (rank r to rank r + 1 mod S) and receives
its left neighbour's. So in round t (from 0) rank s holds the block of rank (s − t) mod S, and
S − 1 passes show every rank every block. A block wholly in the causal future of a rank's
queries is skipped: every score in it would be masked.

`comm` simulates S = comm.size ranks (it is mlgrind.ref.collectives.Comm). A per-rank value is
a list of S arrays: q_shards_BLHK[s] is rank s's block of q. Ranks exchange data only through

    comm.send_recv(xs, shift=1)   rank r sends xs[r] to rank (r + shift) mod S, all at once;
                                  returns the arrays received: received[r] = xs[(r − shift) mod S]

After round 0 a rank attends only to the blocks it received: reading k_shards_BMHK[j] of another
rank j is free in this simulation, where every list is in one process, but no GPU could do it,
and the checks cannot see it. They compare the number of bytes each rank sends with the
reference's: one k and one v block per pass (separately or stacked in one array, as you like),
S − 1 passes (to the left neighbour instead is fine too). Scores may be large: the checks also
run queries scaled up until a naive exp overflows.
"""

import numpy as np


def block_attention(q_BLHK, k_BMHK, v_BMHK, mask_LM):
    """Attention of the queries to ONE block of keys and values. mask_LM[l, m] is True where
    query l may read key m; here every query may read at least one key.

    Returns (out_BLHK, lse_BHL): the output normalised within this block, and each query's
    log-sum-exp over the scores it may read (scaled by 1/√K; masked keys do not count).
    """
    raise NotImplementedError


def merge(out_a_BLHK, lse_a_BHL, out_b_BLHK, lse_b_BHL):
    """Two parts over disjoint sets of keys → the part over their union: (out_BLHK, lse_BHL).
    lse = −inf means "no keys seen yet" (out is then all zeros): that part gets weight 0."""
    raise NotImplementedError


def ring_attention(q_shards_BLHK, k_shards_BMHK, v_shards_BMHK, comm):
    """Causal self-attention over the whole sequence, rank s holding block s of q, k and v.

    Returns out_shards_BLHK: a list of S arrays, rank s's block of the output. Masks compare
    GLOBAL positions: the query at position l may read the key at position m iff m ≤ l.
    """
    raise NotImplementedError
'''

# ----------------------------------------------------------------- inputs and symptoms


def _qkv(seed: int, Lq: int = L, M: int = L):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Lq, H, K))
    return q, rng.standard_normal((B, M, H, K)), rng.standard_normal((B, M, H, K))


def _block_inputs():
    """Queries at positions 4..7 against keys at 2..6: some rows partly masked, none wholly."""
    q_BLHK, k_BMHK, v_BMHK = _qkv(1, 4, 5)
    return q_BLHK, k_BMHK, v_BMHK, causal_mask_LM(np.arange(4, 8), np.arange(2, 7))


def _starts(shards) -> np.ndarray:
    return np.cumsum([0] + [s.shape[1] for s in shards[:-1]])


def _average(out_a, lse_a, out_b, lse_b):
    """The slip merge: a plain average of the two parts."""
    return (out_a + out_b) / 2, np.logaddexp(lse_a, lse_b)


def _ring_without_comm(q_shards, k_shards, v_shards, mask, merge=ref.merge, start=None):
    """Each rank's attention merged over the blocks `mask(s, owner)` admits (None: skipped),
    with the reference's block_attention: how the mistaken rings come out. `start`, when given,
    is the running (out, lse) every rank begins from (else its first block)."""
    outs = []
    for s, q_BLHK in enumerate(q_shards):
        out, lse = start(q_BLHK) if start else (None, None)
        for owner, (k_BMHK, v_BMHK) in enumerate(zip(k_shards, v_shards)):
            mask_LM = mask(s, owner)
            if mask_LM is None or not mask_LM.any():
                continue
            block = ref.block_attention(q_BLHK, k_BMHK, v_BMHK, mask_LM)
            out, lse = block if out is None else merge(out, lse, *block)
        outs.append(out)
    return outs


def _ring_symptoms(q_shards, k_shards, v_shards) -> list[list[Symptom]]:
    """Per rank: the rings that a known slip computes, and the sentence naming the slip."""
    sizes = [q.shape[1] for q in q_shards]
    starts = _starts(q_shards)

    def local(s, owner):
        return causal_mask_LM(np.arange(sizes[s]), np.arange(sizes[owner]))

    def global_(s, owner):
        return causal_mask_LM(
            starts[s] + np.arange(sizes[s]), starts[owner] + np.arange(sizes[owner])
        )

    def empty(q_BLHK):
        B, L, H, _ = q_BLHK.shape
        return np.zeros_like(q_BLHK), np.full((B, H, L), -np.inf)

    def past(mask):
        return lambda s, o: mask(s, o) if o <= s else None

    qkv = (q_shards, k_shards, v_shards)
    local_mask = (
        "the causal mask compares LOCAL positions (each block counted from 0): rank s's queries "
        "and keys sit at global positions that start after the earlier blocks, so a block from "
        "an earlier rank is wholly in the past"
    )
    averaged = (
        "the blocks' results are averaged: merge each by its share of the exp-mass, "
        "exp(lse_part − lse) (see the merge check)"
    )
    slips = [  # (the rings one slip can give, the sentence that names it)
        ([_ring_without_comm(*qkv, local), _ring_without_comm(*qkv, past(local))], local_mask),
        (
            [
                _ring_without_comm(*qkv, past(global_), _average),
                _ring_without_comm(*qkv, past(global_), _average, empty),
            ],
            averaged,
        ),
        (
            [_ring_without_comm(*qkv, lambda s, o: global_(s, o) if o == s else None)],
            (
                "it is attention to the rank's own block only: the other ranks' k and v "
                "blocks must come round the ring and be merged in"
            ),
        ),
        (
            [_ring_without_comm(*qkv, lambda s, o: np.ones((sizes[s], sizes[o]), bool))],
            (
                "it is attention without the causal mask: a query may read only keys at or before "
                "its own global position"
            ),
        ),
    ]
    nan = (
        lambda got: bool(np.isnan(got).any()),
        (
            "nan: some query had no key it may read (a softmax of only −inf): either a block "
            "wholly in the causal future was not skipped, or the mask leaves out the diagonal "
            "(a query reads its own key: m ≤ l)"
        ),
    )
    return [
        [
            (lambda got, w=[r[s] for r in rings]: any(np.allclose(got, x) for x in w), sentence)
            for rings, sentence in slips
        ]
        + [nan]
        for s in range(len(q_shards))
    ]


# ----------------------------------------------------------------- checks


def _block_check(i: int) -> Check:
    name = ("out_BLHK", "lse_BHL")[i]

    def run(learner) -> None:
        q_BLHK, k_BMHK, v_BMHK, mask_LM = _block_inputs()
        expected = ref.block_attention(q_BLHK, k_BMHK, v_BMHK, mask_LM)[i]
        unmasked = ref.block_attention(q_BLHK, k_BMHK, v_BMHK, np.ones_like(mask_LM))[i]
        over_K = ref.block_attention(q_BLHK / np.sqrt(K), k_BMHK, v_BMHK, mask_LM)[i]
        unscaled = ref.block_attention(q_BLHK * np.sqrt(K), k_BMHK, v_BMHK, mask_LM)[i]
        symptoms = [
            (
                lambda got: np.allclose(got, unmasked),
                "the masked keys were not left out",
            ),
            (
                lambda got: np.allclose(got, over_K),
                "the scores are divided by K, not √K",
            ),
            (
                lambda got: np.allclose(got, unscaled),
                "the scores are not divided by √K",
            ),
        ]
        if name == "lse_BHL":
            scores_BHLM = np.einsum("blhk,bmhk->bhlm", q_BLHK, k_BMHK) / np.sqrt(K)
            row_max = np.where(mask_LM, scores_BHLM, -np.inf).max(axis=-1)
            symptoms.append(
                (
                    lambda got: np.allclose(got, row_max),
                    (
                        "it is each query's largest score, not the log of the sum of exp(scores): "
                        "the max only keeps exp from overflowing, "
                        "lse = max + log Σ exp(score − max)"
                    ),
                )
            )
        result = function(learner, "block_attention")(q_BLHK, k_BMHK, v_BMHK, mask_LM)
        got = parts(result, ("out_BLHK", "lse_BHL"), "block_attention")[i]
        expect_array(name, got, expected, symptoms)

    return Check(f"block_attention: {name}", run)


def _merge_inputs():
    out_a, _, out_b = _qkv(2, 4, 4)
    rng = np.random.default_rng(3)
    lse_a, lse_b = 2 * rng.standard_normal((2, B, H, 4))
    return out_a, lse_a, out_b, lse_b


def _merge_check(learner) -> None:
    out_a, lse_a, out_b, lse_b = _merge_inputs()
    empty = (np.zeros_like(out_a), np.full_like(lse_a, -np.inf))
    for what, args in (
        ("", (out_a, lse_a, out_b, lse_b)),
        (" with lse_a = −inf (no keys yet)", (*empty, out_b, lse_b)),
    ):
        expected = ref.merge(*args)
        result = function(learner, "merge")(*args)
        got = parts(result, ("out_BLHK", "lse_BHL"), "merge")
        a, lse_a, b, lse_b = args
        exp_weighted = (
            np.exp(lse_a).transpose(0, 2, 1)[..., None] * a
            + np.exp(lse_b).transpose(0, 2, 1)[..., None] * b
        )
        out_symptoms = [
            (
                lambda g, a=a, b=b: np.allclose(g, (a + b) / 2),
                (
                    "it is the average of the two parts: weight each by its share of the union's "
                    "exp-mass, exp(lse_part − lse)"
                ),
            ),
            (
                lambda g, w=exp_weighted: np.allclose(g, w),
                (
                    "each part is weighted by exp(lse_part) but not divided by the union's "
                    "exp(lse): the weights must sum to 1"
                ),
            ),
            (
                lambda g: bool(np.isnan(g).any()),
                (
                    "nan: with lse = −inf a part has no keys and must get weight exp(−inf) = 0; "
                    "never subtract −inf from −inf"
                ),
            ),
        ]
        lse_symptoms = [
            (
                lambda g, x=lse_a, y=lse_b: np.allclose(g, np.maximum(x, y)),
                "it is the larger lse: the union's is log(exp(lse_a) + exp(lse_b))",
            ),
            (
                lambda g, x=lse_a, y=lse_b: np.allclose(g, x + y),
                "it is lse_a + lse_b: the exps add, inside the log",
            ),
        ]
        expect_array(f"out_BLHK from merge{what}", got[0], expected[0], out_symptoms)
        expect_array(f"lse_BHL from merge{what}", got[1], expected[1], lse_symptoms)


def _ring_inputs(S: int):
    q, k, v = _qkv(10 + S)
    return [shard(a, S, axis=1) for a in (q, k, v)], q, k, v


def _ring_check(learner) -> None:
    for S in RANKS:
        (q_shards, k_shards, v_shards), q, k, v = _ring_inputs(S)
        positions = np.arange(L)
        whole = gqa_attend(q, k, v, causal_mask_LM(positions, positions))[0]
        expected = shard(whole, S, axis=1)
        got = function(learner, "ring_attention")(q_shards, k_shards, v_shards, Comm(S))
        if not isinstance(got, list | tuple) or len(got) != S:
            what = f"{len(got)} entries" if isinstance(got, list | tuple) else describe(got)
            raise Mismatch(
                f"out_shards_BLHK (S={S} ranks): expected a list of {S} arrays, one per rank; "
                f"got {what}"
            )
        symptoms = _ring_symptoms(q_shards, k_shards, v_shards)
        for s in range(S):
            expect_array(
                f"out_shards_BLHK[{s}] (S={S} ranks; it must equal full causal attention)",
                got[s],
                expected[s],
                symptoms[s],
            )


def _large_scores_check(learner) -> None:
    """Scores of several hundred: exp of one overflows float64 (past 709), so only a softmax
    that subtracts the row's max, and a merge in log space, come through finite. A ring that is
    wrong at ordinary scores fails here as it fails there, not with a story of overflow."""
    _ring_check(learner)
    S = 3
    (q_shards, k_shards, v_shards), q, k, v = _ring_inputs(S)
    q_shards, q = [x * 500 for x in q_shards], q * 500
    positions = np.arange(L)
    expected = shard(gqa_attend(q, k, v, causal_mask_LM(positions, positions))[0], S, axis=1)
    with np.errstate(all="ignore"):  # the overflow is what this check reports, in words
        got = function(learner, "ring_attention")(q_shards, k_shards, v_shards, Comm(S))
    overflow = (
        lambda got: not bool(np.isfinite(got).all()),
        (
            "inf or nan where the scores are large: exp(score) overflows past 709. Subtract each "
            "row's max before exp, and merge in log space: lse = max(lse_a, lse_b) + "
            "log(exp(lse_a − max) + exp(lse_b − max)) (np.logaddexp)"
        ),
    )
    for s in range(S):
        expect_array(
            f"out_shards_BLHK[{s}] (S={S} ranks, queries × 500)",
            got[s] if isinstance(got, list | tuple) and len(got) == S else got,
            expected[s],
            [overflow],
        )


def _comm_check(learner) -> None:
    for S in RANKS:
        shards, *_ = _ring_inputs(S)
        reference, comm = Comm(S), Comm(S)
        ref.ring_attention(*shards, reference)
        function(learner, "ring_attention")(*shards, comm)
        expected, sent = reference.sent, comm.sent
        # One hop more: rank r would also pass on the k and v it got last, rank r + 1's.
        one_more = [e + 2 * shards[1][(r + 1) % S].nbytes for r, e in enumerate(expected)]
        head = f"ring_attention (S={S} ranks): "
        others = sorted({r.collective for r in comm.log} - {"send_recv"})
        if others:
            raise Mismatch(
                f"{head}you called {', '.join(others)}: the blocks travel round the ring, one "
                f"neighbour to the next, with comm.send_recv; gathering them all would hold the "
                f"whole of K and V on every rank, which context parallelism avoids"
            )
        far = [
            (t.src, t.dst)
            for r in comm.log
            for t in r.transfers
            if (t.dst - t.src) % S not in (1, S - 1)
        ]
        if far:
            raise Mismatch(
                f"{head}rank {far[0][0]} sent to rank {far[0][1]}: in a ring each rank sends only "
                f"to a neighbour (shift=1)"
            )
        if sorted(sent) == sorted(expected):  # round the ring either way: the same loads
            continue
        passes = f"{S - 1} pass{'es' * (S != 2)}"
        lines = [
            (
                f"{head}ranks 0…{S - 1} send {', '.join(map(str, expected))} B in the "
                f"reference ({passes} of one k and one v block each); you sent "
                f"{', '.join(map(str, sent))} B"
            )
        ]
        if not comm.log:
            lines.append(
                "  you made no call. Reading another rank's k or v from the list is free in "
                "this simulation; on real GPUs each rank holds only its own block, so the "
                "blocks must be passed with comm.send_recv"
            )
        elif sorted(sent) == sorted(one_more):
            lines.append(
                f"  that is S = {S} passes, one too many: after S − 1 every rank has seen "
                f"every block, and the last hop only brings each rank its own block back"
            )
        elif sum(sent) > sum(expected):
            lines.append("  more than one k and one v block per rank per pass")
        else:
            lines.append(
                "  fewer bytes than the blocks need: every rank must receive every other "
                "rank's k and v through send_recv, not read them from the list"
            )
        raise Mismatch("\n".join(lines))


EXERCISES = [
    Exercise(
        name="ring_attention",
        title="Ring attention (context parallelism)",
        goal="K/V blocks passed round a ring of S ranks, partial softmaxes merged by log-sum-exp.",
        contract=RING_CONTRACT,
        hints=(
            (
                "block_attention is your attention core with one more output: before the "
                "softmax, the log-sum-exp of each query's readable scores (subtract the row max "
                "first so exp cannot overflow). The probabilities are then exp(score − lse)."
            ),
            (
                "merge is the two formulas of the docstring. lse has the axes B, H, L and out "
                "has B, L, H, K: line the weights up with out's axes before multiplying."
            ),
            (
                "Give every rank a running (out, lse): zeros and −inf, which merge turns into "
                "weight 0. Then loop over the S rounds, and over the ranks inside each round."
            ),
            (
                "In round t rank s holds the block that started on rank (s − t) mod S. Its key "
                "positions start where that rank's block starts in the whole sequence."
            ),
            (
                "Pass k and v on after every round but the last: S − 1 calls per tensor (or per "
                "stacked pair), each one moving every rank's block one rank to the right."
            ),
        ),
        hint_for={
            "block_attention: lse_BHL": 0,
            "merge: out_BLHK and lse_BHL": 1,
            "ring_attention: out_shards_BLHK equals full causal attention": 3,
            "ring_attention: collectives": 4,
        },
        checks=(
            _block_check(0),
            _block_check(1),
            Check("merge: out_BLHK and lse_BHL", _merge_check),
            Check(
                "ring_attention: out_shards_BLHK equals full causal attention",
                _ring_check,
            ),
            Check("ring_attention: large scores, no overflow", _large_scores_check),
            Check("ring_attention: collectives", _comm_check),
        ),
    ),
]
