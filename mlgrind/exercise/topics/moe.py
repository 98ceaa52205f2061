"""Seed "how would you shard the model? Expert Parallel": top-k routing and the two all-to-alls.

The reference is `mlgrind.ref.moe` (route, expert_parallel_forward, expert_parallel_backward);
the expert MLP is carried over from mlp_batched (`mlgrind.ref.mlp`). The sharded output and
gradients are compared with the UNSHARDED moe_forward / moe_backward on the whole batch, and
the collectives with the reference's expert_parallel_* on the same inputs.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref import moe as ref
from mlgrind.ref.collectives import Comm, Record, shard

from ..catalog import Check, Exercise
from ..compare import Mismatch, describe, expect_array, function, parts
from .common import COMM_DOC, RANKS

B, D, F, E, TOP_K = (
    7,
    4,
    6,
    5,
    2,
)  # 7 tokens and 5 experts split unevenly over 2 and 3 ranks

MOE_CONTRACT = f'''"""Mixture of experts with expert parallelism: top-k routing and the two all-to-alls.

    B tokens  D model width  F expert hidden width  E experts  S ranks  k experts per token

The router scores each token against the E experts: logits_BE = x_BD · w_router_DE. Token b
goes to its k highest-scoring experts. Its gates are the softmax over those k logits ONLY
(renormalised top-k, as in Mixtral), and exactly 0 for the other E − k experts, so every row of
gates_BE sums to 1. Expert e is the batched ReLU MLP of exercise mlp_batched with the weights
w_in_EDF[e], w_out_EFD[e], and

    y_BD[b] = Σ_e gates_BE[b, e] · expert_e(x_BD[b])      (only the k chosen experts run)

No capacity limit: every (token, expert) pair is computed, none is dropped (a "dropless" MoE, as
in MegaBlocks), so the ranks exchange blocks of different sizes. (GShard and Switch instead cap
each expert at capacity = factor · B·k / E rows and drop the overflow, for fixed-size buffers.)

Expert parallel over S ranks: rank s holds its block of tokens x_BD_ranks[s] (np.array_split
along B), the router w_router_DE (replicated), and a block of the experts, w_in_EDF_ranks[s] and
w_out_EFD_ranks[s] (np.array_split along E): rank s owns n_s = len(w_in_EDF_ranks[s]) experts,
the global experts n_0 + … + n_(s−1) onwards.

{COMM_DOC}

    comm.all_to_all(chunks)   chunks[src][dst] is the array rank src sends to rank dst (a list
                              of S lists of S arrays; sizes may differ, (0, D) is fine); returns
                              received, with received[dst][src] what dst got from src

What a rank hands itself costs no bytes. The checks compare, call by call, the bytes each rank
sends and receives in collectives of FLOAT data with the reference's, which makes exactly:

    forward    all_to_all  dispatch: to each expert's rank, the token row x_D of every
                           (token, expert) pair, one row per pair
               all_to_all  combine: the expert outputs, one row per pair, back to the token's
                           rank, which applies the gates (gates never travel)
    backward   all_to_all  the gradients of those outputs, to the experts' ranks
               all_to_all  the gradients of the dispatched rows, back to the tokens' ranks
               all_reduce  the replicated router's gradient

Integer metadata (which expert a row is for, how many rows each expert gets) may travel in
all-to-alls of integer arrays, as on real hardware; those are not counted.
"""

import numpy as np


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    """Carried over from the mlp_batched exercise: paste yours here, or replace these two
    functions with `from mlp_batched import mlp_forward, mlp_backward` when your mlp_batched.py
    sits in this folder. Returns (y_BD, saved)."""
    raise NotImplementedError


def mlp_backward(d_y_BD, saved):
    """Carried over from mlp_batched. Returns (d_x_BD, d_w_in_DF, d_w_out_FD); the weight
    gradients sum over the batch."""
    raise NotImplementedError


def route(x_BD, w_router_DE, k):
    """Returns gates_BE: for each token, the softmax of its k largest logits at those k
    experts, 0 at the others."""
    raise NotImplementedError


def expert_parallel_forward(comm, x_BD_ranks, w_router_DE, w_in_EDF_ranks, w_out_EFD_ranks, k):
    """Each rank routes its own tokens, dispatches them to the experts' ranks, the experts run
    (one mlp_forward per expert on all the rows it received), the outputs come back (combine)
    and the token's rank sums them weighted by the gates.

    Returns (y_BD_ranks, saved): y_BD_ranks[s] is the output for rank s's tokens, row for row
    in their order; saved is whatever your backward needs.
    """
    raise NotImplementedError


def expert_parallel_backward(comm, d_y_BD_ranks, saved):
    """d_y_BD_ranks[s] is the gradient of the loss with respect to y_BD_ranks[s].

    Returns (d_x_BD_ranks, d_w_router_DE, d_w_in_EDF_ranks, d_w_out_EFD_ranks): d_x per rank;
    the router's gradient summed over every rank's tokens (one array, every rank holds it);
    d_w_in_EDF_ranks[s] and d_w_out_EFD_ranks[s] for rank s's own experts.

    x reaches y twice: through the experts, and through the gates. For a chosen expert e,
    d_gates_BE[b, e] = d_y_BD[b] · expert_e(x_BD[b]) (0 elsewhere), and the softmax over the
    chosen logits gives d_logits_BE = gates_BE ⊙ (d_gates_BE − Σ_e gates_BE ⊙ d_gates_BE), the
    sum taken per token; logits_BE = x_BD · w_router_DE then passes it on to d_x and d_w_router.
    """
    raise NotImplementedError
'''


# ----------------------------------------------------------------- inputs, truth, symptoms

GRADS = ("d_x_BD_ranks", "d_w_router_DE", "d_w_in_EDF_ranks", "d_w_out_EFD_ranks")


def _inputs(S: int):
    """The whole batch and all experts, seeded by S: (x, w_router, w_in, w_out, d_y)."""
    rng = np.random.default_rng(S)
    return (
        rng.standard_normal((B, D)),
        rng.standard_normal((D, E)),
        rng.standard_normal((E, D, F)) / np.sqrt(D),
        rng.standard_normal((E, F, D)) / np.sqrt(F),
        rng.standard_normal((B, D)),
    )


def _run(get, S: int):
    """Forward then backward on S ranks, each on its own Comm, with get(name) the functions:
    (y_BD_ranks, forward comm, grads, backward comm)."""
    x_BD, w_router_DE, w_in_EDF, w_out_EFD, d_y_BD = _inputs(S)
    forward_comm, backward_comm = Comm(S), Comm(S)
    result = get("expert_parallel_forward")(
        forward_comm,
        shard(x_BD, S),
        w_router_DE,
        shard(w_in_EDF, S),
        shard(w_out_EFD, S),
        TOP_K,
    )
    y_ranks, saved = parts(result, ("y_BD_ranks", "saved"), "expert_parallel_forward")
    result = get("expert_parallel_backward")(backward_comm, shard(d_y_BD, S), saved)
    grads = parts(result, GRADS, "expert_parallel_backward")
    return y_ranks, forward_comm, grads, backward_comm


def _experts_EBD(x_BD, w_in_EDF, w_out_EFD):
    """Every expert on every token, for the symptoms to weight by candidate gates."""
    return np.stack([ref_mlp.mlp_forward(x_BD, wi, wo)[0] for wi, wo in zip(w_in_EDF, w_out_EFD)])


def _softmax_then_top_k(x_BD, w_router_DE, k):
    """The classic slip: softmax over all E experts, then keep the top k, not renormalised."""
    logits_BE = x_BD @ w_router_DE
    p_BE = np.exp(logits_BE - logits_BE.max(axis=1, keepdims=True))
    return np.where(ref.route(x_BD, w_router_DE, k) > 0, p_BE / p_BE.sum(axis=1, keepdims=True), 0)


def _router_part(x_BD, w_router_DE, w_in_EDF, w_out_EFD, d_y_BD):
    """The share of (d_x_BD, d_w_router_DE) that flows through the gates."""
    gates_BE = ref.route(x_BD, w_router_DE, TOP_K)
    outs_EBD = _experts_EBD(x_BD, w_in_EDF, w_out_EFD)
    d_gates_BE = np.einsum("bd,ebd->be", d_y_BD, outs_EBD) * (gates_BE > 0)
    return ref.route_backward(d_gates_BE, gates_BE, x_BD, w_router_DE)


def _same_rows(got_BD, expected_BD) -> bool:
    """The same rows, in some order (rows sorted by their first entry, which differ here)."""
    return bool(
        np.allclose(got_BD[np.argsort(got_BD[:, 0])], expected_BD[np.argsort(expected_BD[:, 0])])
    )


def _per_rank(name: str, S: int, got: object, expected: list, symptoms=lambda s: ()) -> None:
    """expect_array on each rank's block, named like `y_BD_ranks[1] (S=3 ranks)`."""
    if not isinstance(got, list | tuple) or len(got) != S:
        what = f"{len(got)} entries" if isinstance(got, list | tuple) else describe(got)
        raise Mismatch(
            f"{name} (S={S} ranks): expected a list of {S} arrays, one per rank; got {what}"
        )
    for s, (g, e) in enumerate(zip(got, expected)):
        expect_array(f"{name}[{s}] (S={S} ranks)", g, e, symptoms(s))


# ----------------------------------------------------------------- checks of values


def _mlp_check(learner) -> None:
    x_BD, _, w_in_EDF, w_out_EFD, d_y_BD = _inputs(1)
    expected, saved = ref_mlp.mlp_forward(x_BD, w_in_EDF[0], w_out_EFD[0])
    result = function(learner, "mlp_forward")(x_BD, w_in_EDF[0], w_out_EFD[0])
    y_BD, mine = parts(result, ("y_BD", "saved"), "mlp_forward")
    expect_array("y_BD from mlp_forward", y_BD, expected)
    names = ("d_x_BD", "d_w_in_DF", "d_w_out_FD")
    got = parts(function(learner, "mlp_backward")(d_y_BD, mine), names, "mlp_backward")
    for name, g, e in zip(names, got, ref_mlp.mlp_backward(d_y_BD, saved)):
        expect_array(f"{name} from mlp_backward", g, e)


def _route_check(learner) -> None:
    x_BD, w_router_DE, *_ = _inputs(1)
    for k in (1, 2, 3):
        expected = ref.route(x_BD, w_router_DE, k)
        chosen = expected > 0
        unnormalised = _softmax_then_top_k(x_BD, w_router_DE, k)
        symptoms = [
            (
                lambda got, u=unnormalised: np.allclose(got, u),
                (
                    "it is the softmax over all E experts with the top k kept, so a token's gates "
                    "sum to less than 1: take the softmax over the k chosen logits only"
                ),
            ),
            (
                lambda got, c=chosen, e=expected: np.allclose(got[c], e[c]),
                "the chosen experts' gates are right; the other E − k must be exactly 0",
            ),
            (
                lambda got, c=chosen: not np.array_equal(got > 0, c),
                "the non-zero gates are not at each token's k largest logits",
            ),
        ]
        got = function(learner, "route")(x_BD, w_router_DE, k)
        expect_array(f"gates_BE (k={k})", got, expected, symptoms)


def _forward_check(learner) -> None:
    for S in RANKS:
        x_BD, w_router_DE, w_in_EDF, w_out_EFD, _ = _inputs(S)
        expected = shard(ref.moe_forward(x_BD, w_router_DE, w_in_EDF, w_out_EFD, TOP_K)[0], S)
        outs_EBD = _experts_EBD(x_BD, w_in_EDF, w_out_EFD)
        chosen_BE = (ref.route(x_BD, w_router_DE, TOP_K) > 0).astype(float)
        ungated = shard(np.einsum("be,ebd->bd", chosen_BE, outs_EBD), S)
        unnormalised_BE = _softmax_then_top_k(x_BD, w_router_DE, TOP_K)
        unnormalised = shard(np.einsum("be,ebd->bd", unnormalised_BE, outs_EBD), S)

        def symptoms(s: int, expected=expected, ungated=ungated, unnormalised=unnormalised):
            return [
                (
                    lambda got: _same_rows(got, expected[s]),
                    (
                        "it holds the right rows in another order: each output must go back to "
                        "the row of the token it came from (keep the token index of every "
                        "(token, expert) pair you dispatch)"
                    ),
                ),
                (
                    lambda got: np.allclose(got, ungated[s]),
                    (
                        "it is the plain sum of each token's k expert outputs: weight each by its "
                        "gate"
                    ),
                ),
                (
                    lambda got: np.allclose(got, unnormalised[s]),
                    (
                        "its gates are the softmax over all E experts cut to the top k: "
                        "renormalise over the k chosen (see the route check)"
                    ),
                ),
                (
                    lambda got: bool(np.any(np.all(got == 0, axis=1))),
                    (
                        "some tokens' outputs are all zero: no token is dropped here (no capacity "
                        "limit), and every expert output must come back to its token"
                    ),
                ),
            ]

        result = function(learner, "expert_parallel_forward")(
            Comm(S),
            shard(x_BD, S),
            w_router_DE,
            shard(w_in_EDF, S),
            shard(w_out_EFD, S),
            TOP_K,
        )
        mine, _ = parts(result, ("y_BD_ranks", "saved"), "expert_parallel_forward")
        _per_rank("y_BD_ranks", S, mine, expected, symptoms)


def _ungated_backward(x_BD, w_router_DE, w_in_EDF, w_out_EFD, d_y_BD):
    """(d_x_BD, d_w_in_EDF, d_w_out_EFD) when each expert is sent d_y instead of gate · d_y."""
    chosen_BE = ref.route(x_BD, w_router_DE, TOP_K) > 0
    d_x_BD = _router_part(x_BD, w_router_DE, w_in_EDF, w_out_EFD, d_y_BD)[0]
    d_w_in, d_w_out = [], []
    for e, (wi, wo) in enumerate(zip(w_in_EDF, w_out_EFD)):
        b = np.flatnonzero(chosen_BE[:, e])
        d_x_part, d_wi, d_wo = ref_mlp.mlp_backward(
            d_y_BD[b], ref_mlp.mlp_forward(x_BD[b], wi, wo)[1]
        )
        d_x_BD[b] += d_x_part
        d_w_in.append(d_wi)
        d_w_out.append(d_wo)
    return d_x_BD, np.stack(d_w_in), np.stack(d_w_out)


UNGATED = (
    "each expert was sent d_y: y = Σ_e gate · expert_e(x), so the gradient of expert e's "
    "output is gate · d_y"
)
NO_ROUTER = (
    "it lacks the router's part: the gates depend on x through logits_BE = x_BD · w_router_DE, "
    "so d_logits_BE flows back to d_x too"
)
RANK_0 = (
    "it is rank 0's part alone: every rank's tokens went through the replicated router, so the "
    "ranks' parts must be summed"
)


def _grad_check(i: int) -> Check:
    name = GRADS[i]

    def run(learner) -> None:
        for S in RANKS:
            x_BD, w_router_DE, w_in_EDF, w_out_EFD, d_y_BD = inputs = _inputs(S)
            _, saved = ref.moe_forward(x_BD, w_router_DE, w_in_EDF, w_out_EFD, TOP_K)
            expected = ref.moe_backward(d_y_BD, saved)[i]
            _, _, grads, _ = _run(lambda n: function(learner, n), S)
            if name == "d_w_router_DE":
                x_0, d_y_0 = shard(x_BD, S)[0], shard(d_y_BD, S)[0]
                rank_0 = _router_part(x_0, w_router_DE, w_in_EDF, w_out_EFD, d_y_0)[1]
                symptoms = [(lambda got, r=rank_0: np.allclose(got, r), RANK_0)]
                expect_array(f"d_w_router_DE (S={S} ranks)", grads[i], expected, symptoms)
                continue
            ungated = _ungated_backward(*inputs)[GRADS.index(name) - (name != "d_x_BD_ranks")]
            slips = [(shard(ungated, S), UNGATED)]
            if name == "d_x_BD_ranks":
                router_d_x = _router_part(*inputs)[0]
                slips.append((shard(expected - router_d_x, S), NO_ROUTER))
            _per_rank(
                name,
                S,
                grads[i],
                shard(expected, S),
                lambda s, slips=slips: [
                    (lambda got, w=wrong[s]: np.allclose(got, w), why) for wrong, why in slips
                ],
            )

    return Check(f"backward: {name}", run)


# ----------------------------------------------------------------- checks of the collectives


def _data_calls(comm: Comm) -> list[Record]:
    """The collectives that carry float data; integer metadata (counts, expert ids) is free."""
    return [r for r in comm.log if np.dtype(r.dtype).kind in "fc"]


def _listing(records: list[Record]) -> list[str]:
    return [
        f"    {r.collective}{f' ({r.tag})' if r.tag else ''}: ranks 0…{len(r.sent) - 1} send "
        f"{', '.join(map(str, r.sent))} B and receive {', '.join(map(str, r.received))} B"
        for r in records
    ]


def _cause(mine: list[Record], theirs: list[Record]) -> str:
    """The likely reason the learner's float collectives differ from the reference's."""
    if not mine:
        return (
            "  you made none. Reading another rank's list entries in Python is free in this "
            "simulation; on real GPUs each rank holds only its own, and moving rows between "
            "ranks is an all-to-all that moves bytes: call comm.all_to_all."
        )
    have = {r.collective: sum(m.collective == r.collective for m in mine) for r in mine}
    count = {r.collective: sum(t.collective == r.collective for t in theirs) for r in theirs}
    extra = sorted(set(have) - set(count))
    if extra:
        return f"  the reference makes no {', '.join(extra)}: see the list the scaffold gives"
    if have.get("all_to_all", 0) < count["all_to_all"]:
        return (
            "  an all-to-all is missing: the expert outputs (their gradients, in backward) are "
            "made on the experts' ranks and must travel back to the tokens' ranks in a second "
            "all-to-all, one row per (token, expert) pair"
        )
    if have["all_to_all"] > count["all_to_all"]:
        return (
            "  one all-to-all per direction carries every row for every expert; integer "
            "metadata sent as floats counts as data (send counts or expert ids as integers)"
        )
    if have.get("all_reduce", 0) < count.get("all_reduce", 0):
        return (
            "  the router is replicated and every rank's tokens used it: its gradient is the sum "
            "of the ranks' parts, one all_reduce"
        )
    if have.get("all_reduce", 0) > count.get("all_reduce", 0):
        return (
            "  only the replicated router's gradient is summed over ranks; each expert lives on "
            "one rank, so its weight gradients stay there"
        )
    sent, expected = sum(sum(r.sent) for r in mine), sum(sum(r.sent) for r in theirs)
    if sent > expected:
        return (
            "  more bytes than the reference: send each (token, expert) pair's row once, with "
            "nothing else in it (gates never travel), and nothing to a rank that owns none of "
            "the token's experts"
        )
    if sent < expected:
        return (
            "  fewer bytes than one row per (token, expert) pair each way: a token goes once "
            "per chosen expert, even to a rank that owns two of them (sending it once is a real "
            "optimisation, but then the gates must travel too: not this contract); and a rank "
            "may not read another rank's rows from the list directly"
        )
    return "  the same total, shared differently between the ranks or the calls"


def _comm_check(backward: bool) -> Check:
    what = "expert_parallel_backward" if backward else "expert_parallel_forward"

    def run(learner) -> None:
        for S in RANKS:
            _, ref_forward, _, ref_backward = _run(lambda n: getattr(ref, n), S)
            if backward:
                _, _, _, comm = _run(lambda n: function(learner, n), S)
            else:
                x_BD, w_router_DE, w_in_EDF, w_out_EFD, _ = _inputs(S)
                comm = Comm(S)
                parts(
                    function(learner, what)(
                        comm,
                        shard(x_BD, S),
                        w_router_DE,
                        shard(w_in_EDF, S),
                        shard(w_out_EFD, S),
                        TOP_K,
                    ),
                    ("y_BD_ranks", "saved"),
                    what,
                )
            theirs, mine = (
                _data_calls(ref_backward if backward else ref_forward),
                _data_calls(comm),
            )

            def key(r: Record):
                return (r.collective, r.sent, r.received)

            if sorted(map(key, mine)) == sorted(map(key, theirs)):
                continue
            lines = [
                (
                    f"{what}: collectives of float data (S={S} ranks, k={TOP_K}): the reference "
                    f"makes {len(theirs)}:"
                ),
                *_listing(theirs),
            ]
            if mine:
                lines += [f"  you made {len(mine)}:", *_listing(mine)]
            lines.append(_cause(mine, theirs))
            raise Mismatch("\n".join(lines))

    return Check(f"{'backward' if backward else 'forward'}: collectives", run)


EXERCISES = [
    Exercise(
        name="moe_ep",
        title="Mixture of experts with expert parallelism",
        goal="Top-k routing, dispatch and combine all-to-alls; sharded equals unsharded, fwd+bwd.",
        contract=MOE_CONTRACT,
        hints=(
            (
                "route: find each token's k largest logits, then a softmax over just those k "
                "values; every other gate is zero. Subtract the row's max before exponentiating."
            ),
            (
                "Forward, on each token rank: list the (token, expert) pairs with a non-zero "
                "gate, and for each destination rank gather the rows of the pairs whose expert "
                "it owns. Keep the pairs: combine needs them to put outputs back."
            ),
            (
                "The expert rank receives rows from every source; it needs to know which rows "
                "are for which of its experts. Send that as integers alongside (a second "
                "all-to-all of counts or expert ids), then run each expert once on all its rows."
            ),
            (
                "Combine is the dispatch in reverse: the expert rank sends back the outputs "
                "cut the way it received the rows; the token rank adds gate times output into "
                "the token's row (a token can get two outputs from one rank)."
            ),
            (
                "Backward walks the same path in reverse: gate times d_y goes out along the "
                "combine route, the expert backward runs, d_x of the rows comes back along the "
                "dispatch route and is added to the token's row, plus the router's part."
            ),
        ),
        hint_for={
            "route: gates_BE": 0,
            "forward: y_BD_ranks equals the unsharded MoE": 1,
            "forward: collectives": 2,
            "backward: d_x_BD_ranks": 4,
            "backward: collectives": 4,
        },
        checks=(
            Check("mlp_forward, mlp_backward (carried over)", _mlp_check),
            Check("route: gates_BE", _route_check),
            Check("forward: y_BD_ranks equals the unsharded MoE", _forward_check),
            _comm_check(backward=False),
            *(_grad_check(i) for i in range(len(GRADS))),
            _comm_check(backward=True),
        ),
    ),
]
