"""Seed "how would you shard the model?": the Megatron MLP, then ZeRO stages 0-3.

References: `mlgrind.ref.mlp` (megatron_forward, megatron_backward) and `mlgrind.ref.zero`. Each
contract has their names and signatures, so the reference functions, dropped in, pass.

ZeRO is one exercise with a `stage` argument: the learner compares the stages side by side, and
each check names its stage ("zero-2: what each rank keeps").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from mlgrind.ref import mlp as ref_mlp
from mlgrind.ref import zero as ref
from mlgrind.ref.collectives import Comm, Record, shard

from ..catalog import Check, Exercise
from ..compare import Mismatch, expect_array, expect_collectives, function, parts
from .common import COMM_DOC, RANKS, Pair

B, D, F = 5, 4, 7  # B and F split unevenly over 2 and 3 ranks; all three differ
NOTATION = "B batch, D model width, F hidden width, S ranks"

# ---------------------------------------------------------------- Megatron MLP

MEGATRON_CONTRACT = f'''"""Megatron MLP: w_in_DF column-parallel, then w_out_FD row-parallel.

    h_BF = x_BD · w_in_DF      a_BF = relu(h_BF)      y_BD = a_BF · w_out_FD

BOTH weights are split along F over S ranks: rank s holds the F block s of w_in_DF's columns
and the same F block of w_out_FD's rows. x_BD and d_y_BD are replicated (every rank has them).
Megatron's point: with the two splits paired this way, the MLP needs exactly ONE collective
forward and ONE backward. Find where a sum over ranks is unavoidable.
{NOTATION}.

{COMM_DOC}
"""

import numpy as np


def megatron_forward(comm, x_BD, w_in_DF_ranks, w_out_FD_ranks):
    """w_in_DF_ranks[s] is rank s's F block of w_in_DF (np.array_split along axis 1);
    w_out_FD_ranks[s] is the same F block of w_out_FD (np.array_split along axis 0).

    Returns (y_BD, saved_ranks): y_BD, the full output every rank ends up holding (one array),
    and saved_ranks[s], what rank s keeps for its backward (your choice; only your
    megatron_backward reads it).
    """
    raise NotImplementedError


def megatron_backward(comm, d_y_BD, saved_ranks):
    """Returns (d_x_BD, d_w_in_DF_ranks, d_w_out_FD_ranks): d_x_BD, the full input gradient every
    rank ends up holding (one array), and per rank the gradients of its own weight blocks."""
    raise NotImplementedError
'''


def _megatron(rng, S):
    w_in_DF = rng.standard_normal((D, F)) / np.sqrt(D)
    w_out_FD = rng.standard_normal((F, D)) / np.sqrt(F)
    x_BD, d_y_BD = rng.standard_normal((B, D)), rng.standard_normal((B, D))
    return (x_BD, shard(w_in_DF, S, axis=1), shard(w_out_FD, S, axis=0)), d_y_BD


def _megatron_symptoms(name, args, d_y_BD, expected):
    x_BD, w_in_DF_ranks, w_out_FD_ranks = args
    w_in_DF, w_out_FD = np.concatenate(w_in_DF_ranks, axis=1), np.concatenate(w_out_FD_ranks)
    h_BF = x_BD @ w_in_DF
    if name == "y_BD":
        return [
            (
                lambda got: np.allclose(got, np.maximum(h_BF @ w_out_FD, 0)),
                (
                    "it equals relu applied after the all-reduce, to y_BD: the ReLU belongs "
                    "between the two matmuls, on each rank's own F block of h_BF (it is "
                    "elementwise, so it needs no communication)"
                ),
            ),
            (
                lambda got: np.allclose(got, h_BF @ w_out_FD),
                "it equals the network without its ReLU: a_BF = relu(h_BF) = max(h_BF, 0)",
            ),
            (
                lambda got: np.allclose(
                    got, np.maximum(x_BD @ w_in_DF_ranks[0], 0) @ w_out_FD_ranks[0]
                ),
                "it is rank 0's partial y_BD alone: the S partials must be summed",
            ),
        ]
    if name == "d_x_BD":
        d_h_BF_ranks = shard((d_y_BD @ w_out_FD.T) * (h_BF > 0), len(w_in_DF_ranks), axis=1)
        return [
            (
                lambda got: np.allclose(got, d_h_BF_ranks[0] @ w_in_DF_ranks[0].T),
                (
                    "it is rank 0's partial d_x_BD alone: x_BD fed every rank's F block, so "
                    "its gradient is the sum of every rank's partial"
                ),
            )
        ]
    return []


def _megatron_cause(log: list[Record], backward: bool) -> str:
    """Why the learner's collectives differ from Megatron's single all-reduce each way."""
    kinds = Counter(r.collective for r in log)
    way = "backward" if backward else "forward"
    summed = "d_x_BD" if backward else "y_BD"
    if kinds["all_reduce"] >= 2:
        return (
            f"{kinds['all_reduce']} all-reduces {way}, Megatron needs one: the all-reduce of "
            f"the partial {summed}"
        )
    if kinds["all_gather"] and not backward:
        return (
            "an all-gather in the forward is column-parallel's habit (a replicated w_out needs "
            "all of a_BF); here w_out is split along F too, so each rank's own F block of a_BF "
            "is all its rows of w_out need"
        )
    if kinds["all_gather"]:
        return (
            "an all-gather in the backward is row-parallel's habit (a replicated w_in needs "
            "d_a_BF for every F); here w_in is split along F too, so each rank needs only its "
            "own F block of d_a_BF, which it makes from d_y_BD and its rows of w_out"
        )
    if len(log) > 1:
        return (
            f"{len(log)} collectives {way}, Megatron needs one: the all-reduce of the "
            f"partial {summed}"
        )
    return ""


def _megatron_comm_check(backward: bool) -> Callable:
    grads = ("d_x_BD", "d_w_in_DF_ranks", "d_w_out_FD_ranks")

    def run(learner) -> None:
        forward = function(learner, "megatron_forward")
        for S in RANKS:
            args, d_y_BD = _megatron(np.random.default_rng(S), S)
            ref_forward, ref_backward = Comm(S), Comm(S)
            _, saved = ref_mlp.megatron_forward(ref_forward, *args)
            ref_mlp.megatron_backward(ref_backward, d_y_BD, saved)
            comm = Comm(S)
            _, saved = parts(forward(comm, *args), ("y_BD", "saved_ranks"), "megatron_forward")
            what, reference = "megatron_forward", ref_forward
            if backward:
                comm, what, reference = Comm(S), "megatron_backward", ref_backward
                backward_fn = function(learner, "megatron_backward")
                parts(backward_fn(comm, d_y_BD, saved), grads, "megatron_backward")
            try:
                expect_collectives(f"{what}: collectives", comm, reference)
            except Mismatch as error:
                cause = _megatron_cause(comm.log, backward)
                raise Mismatch(f"{error}\n{cause}" if cause else str(error)) from None

    return run


def _megatron_checks() -> tuple[Check, ...]:
    pair = Pair(
        ref_mlp,
        "megatron_forward",
        "megatron_backward",
        "y_BD",
        ("d_x_BD", "d_w_in_DF_ranks", "d_w_out_FD_ranks"),
        _megatron,
        comm_forward=True,
        comm_backward=True,
        symptoms=_megatron_symptoms,
    )
    # Pair's collectives checks list the calls; these add the cause in Megatron's terms.
    mine = {
        "forward: collectives": _megatron_comm_check(backward=False),
        "backward: collectives": _megatron_comm_check(backward=True),
    }
    return tuple(Check(c.name, mine.get(c.name, c.run)) for c in pair.checks())


# ---------------------------------------------------------------- ZeRO stages 0-3

ZERO_CONTRACT = '''"""ZeRO stages 0-3: data-parallel Adam training of the MLP, its state sharded.

S ranks train one MLP (B batch, D model width, F hidden width, S ranks). Each step, the global
batch x_BD, target_BD is split along B (np.array_split(x_BD, S): rank s gets block s), every rank
runs forward and backward on its own examples (MLP below, given), the ranks' gradients are
summed (the loss 0.5·Σ(y − target)² is a SUM over the global batch: never divide by S), and
Adam updates the weights. The stages differ in what a rank keeps between steps:

    stage           params      grads       Adam m and v
    0 (plain DP)    full        full        full
    1               full        full        its block
    2               full        its block   its block
    3               its block   its block   its block

A parameter's "block" for rank r is block(w, S, r): the parameter FLATTENED, cut like
np.array_split(w.reshape(-1), S), piece r; a "full" one keeps its own shape, shapes[name].
Every collective in a step works on one parameter at a time, flattened (or on its flat
blocks). A stage-3 rank keeps only its block of the params between uses: the full weights it
gathers for the forward are dropped after it and gathered again for the backward (that is
where its memory goes down).

What rank r keeps in .grads after a step: stage 0 the summed full gradient; stage 1 its OWN
full gradient (the buffer it communicates from, before any sum); stages 2, 3 its block of the
summed gradient. Communicate only what the table forces, and only through comm: the checks
compare your collective calls (in any order) and the bytes each rank sends with the reference's.

`comm` simulates S = comm.size ranks (it is mlgrind.ref.collectives.Comm). Collectives take a
list with one array per rank, and return a list with one array per rank:

    comm.all_reduce(xs)              every rank gets the elementwise sum
    comm.all_gather(xs, axis=0)      every rank gets all blocks, concatenated along axis
    comm.reduce_scatter(xs, axis=0)  rank r gets block r of the elementwise sum

`adam` has update(w, d_w, m, v, t) -> (w, m, v): one Adam step at step number t (from 1);
elementwise, so it works on a whole tensor or on a flat block alike. `shapes` maps each
parameter's name to its full shape: {"w_in_DF": (D, F), "w_out_FD": (F, D)}.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rank:
    """What one rank keeps between steps: dicts from a parameter name ("w_in_DF", "w_out_FD")
    to the full tensor or to this rank's flat block of it, as the table says."""

    params: dict
    grads: dict = field(default_factory=dict)  # empty until the first step
    m: dict = field(default_factory=dict)
    v: dict = field(default_factory=dict)


class MLP:
    """Given, not part of this exercise: the mlp_batched model, h = x·w_in, y = relu(h)·w_out."""

    @staticmethod
    def forward(x_BD, w_in_DF, w_out_FD):
        """Returns (y_BD, h_BF). The loss gradient is d_y_BD = y_BD − target_BD."""
        h_BF = x_BD @ w_in_DF
        return np.maximum(h_BF, 0) @ w_out_FD, h_BF

    @staticmethod
    def backward(d_y_BD, x_BD, h_BF, w_in_DF, w_out_FD):
        """The gradients from these examples alone: (d_w_in_DF, d_w_out_FD)."""
        d_h_BF = (d_y_BD @ w_out_FD.T) * (h_BF > 0)
        return x_BD.T @ d_h_BF, np.maximum(h_BF, 0).T @ d_y_BD


def block(w, S, r):
    """Rank r's block of parameter w: flattened, cut into S pieces like np.array_split."""
    raise NotImplementedError


def init_ranks(stage, S, params):
    """params maps each name to its full initial tensor. Returns a list of S Rank objects
    holding what the table says for `stage`: params copied or cut, m and v zeros of the same
    shape as the params they track (full or block), grads empty."""
    raise NotImplementedError


def gather_params(comm, ranks, shapes, tag):
    """Stage 3: every rank all-gathers each parameter from the ranks' blocks. tag is a label for
    the collectives (e.g. "forward"), free to ignore. Returns a list of S dicts, name -> full
    tensor with its shape from `shapes`."""
    raise NotImplementedError


def step(stage, comm, ranks, shapes, x_BD, target_BD, adam, t):
    """One training step on the global batch, changing `ranks` in place (returns nothing):
    afterwards each rank's params, grads, m and v are what the table says for `stage`."""
    raise NotImplementedError


def zero_bytes_per_rank(stage, n_param_bytes, S):
    """Bytes each rank sends in one step, ring collectives, when every block is the same size:
    n_param_bytes is Ψ, the bytes of all parameters. Returns a float."""
    raise NotImplementedError


def zero_state_bytes(stage, n_param_bytes, S):
    """Bytes one rank keeps between steps: {"params": …, "grads": …, "optimizer": …} where the
    optimizer is Adam's m and v (as many bytes each as the params they track)."""
    raise NotImplementedError
'''

STAGES = (0, 1, 2, 3)
STEPS = 3  # enough for Adam's bias correction and the moments to matter


def _label(stage: int) -> str:
    return "zero-0 (plain DP)" if stage == 0 else f"zero-{stage}"


def _params(rng) -> dict[str, np.ndarray]:
    return {
        "w_in_DF": rng.standard_normal((D, F)) / np.sqrt(D),
        "w_out_FD": rng.standard_normal((F, D)) / np.sqrt(F),
    }


def _batches(rng, n: int):
    return [(rng.standard_normal((B, D)), rng.standard_normal((B, D))) for _ in range(n)]


def _copy(params):
    return {n: w.copy() for n, w in params.items()}


def _shapes(params):
    return {n: w.shape for n, w in params.items()}


def _unsharded(params, batches, adam: ref.Adam) -> dict[str, np.ndarray]:
    """The oracle: one device, the whole batch, plain Adam. Every stage must land here."""
    w = {n: p.copy() for n, p in params.items()}
    m = {n: np.zeros_like(p) for n, p in w.items()}
    v = {n: np.zeros_like(p) for n, p in w.items()}
    for t, (x_BD, target_BD) in enumerate(batches, start=1):
        y_BD, saved = ref_mlp.mlp_forward(x_BD, w["w_in_DF"], w["w_out_FD"])
        _, d_w_in_DF, d_w_out_FD = ref_mlp.mlp_backward(y_BD - target_BD, saved)
        for n, d_w in (("w_in_DF", d_w_in_DF), ("w_out_FD", d_w_out_FD)):
            w[n], m[n], v[n] = adam.update(w[n], d_w, m[n], v[n], t)
    return w


KINDS = ("params", "grads", "m", "v")
SHARDED_FROM = {"params": 3, "grads": 2, "m": 1, "v": 1}  # the table's columns


def _held(ranks: object, S: int, what: str) -> list[dict[str, dict]]:
    """The learner's ranks as [{kind: {name: array}}], or a message saying what init_ranks
    must return."""
    if not isinstance(ranks, list | tuple) or len(ranks) != S:
        got = f"{len(ranks)} entries" if isinstance(ranks, list | tuple) else type(ranks).__name__
        raise Mismatch(f"{what}: expected a list of S = {S} Rank objects, one per rank; got {got}")
    held = []
    for r, rank in enumerate(ranks):
        kinds = {}
        for kind in KINDS:
            d = getattr(rank, kind, None)
            if not isinstance(d, dict):
                raise Mismatch(
                    f"{what}: rank {r}'s .{kind} must be a dict name -> array "
                    f"(use the Rank class of the scaffold); got {type(d).__name__}"
                )
            kinds[kind] = d
        held.append(kinds)
    return held


def _expect_state(where: str, stage: int, S: int, got, expected, symptoms=None) -> None:
    """Every rank's params, grads, m and v: same names, same shapes (full or block), same
    values. The shape message says which the table wants and why."""
    pairs = zip(_held(got, S, where), _held(expected, S, where), strict=True)
    for r, (mine, theirs) in enumerate(pairs):
        for kind in KINDS:
            if set(mine[kind]) != set(theirs[kind]):
                raise Mismatch(
                    f"{_label(stage)} (S={S} ranks), rank {r} {where}: .{kind} holds "
                    f"{sorted(mine[kind]) or 'nothing'}, "
                    f"expected {sorted(theirs[kind]) or 'nothing'}"
                )
            for n, e in theirs[kind].items():
                g = np.asarray(mine[kind][n], dtype=float)
                label = f"{_label(stage)} (S={S} ranks), rank {r} {where}: {kind}['{n}']"
                if g.shape != e.shape:
                    raise Mismatch(_shape_cause(label, stage, kind, n, g.shape, e.shape))
                extra = symptoms(stage, S, r, kind, n, e) if symptoms else ()
                expect_array(label, g, e, extra)


def _shape_cause(label, stage, kind, n, got, expected) -> str:
    full = len(expected) != 1
    lines = [f"{label}: expected shape {expected}, got {got}"]
    sharded = SHARDED_FROM[kind] <= stage
    what = "Adam's m and v" if kind in "mv" else kind
    if sharded and len(got) > 1:
        lines.append(
            f"from stage {SHARDED_FROM[kind]} on, {what} are sharded: a rank keeps only its "
            f"flat block, block({n}, S, r), not the whole tensor"
            + (
                " (after the reduce-scatter it needs only the summed block its m and v cover)"
                if kind == "grads"
                else ""
            )
        )
    elif full and len(got) == 1 and np.prod(got) == np.prod(expected):
        lines.append("it has the right number of entries, flat: a full tensor keeps its shape")
    elif full and len(got) == 1:
        lines.append(
            f"stage {stage} keeps {what} whole on every rank; only "
            + ", ".join(k for k in ("m", "v", "grads", "params") if SHARDED_FROM[k] <= stage)
            + " are sharded"
            if stage
            else f"stage 0 is plain data parallel: every rank keeps {what} whole"
        )
    elif not full and len(got) == 1:
        lines.append(f"a block is cut from the FLATTENED {n}: np.array_split(w.reshape(-1), S)")
    return "\n".join(lines)


def _state_symptoms(stage, S, r, kind, n, expected):
    """Averaged gradients (m, v and grads show it even where Adam's update hides it), and a
    stage-1 or -2 rank whose own block of the params is fresh and the rest stale."""
    if kind == "params" and stage in (1, 2):
        own = np.zeros(expected.size, bool)
        start = sum(ref.block(expected, S, q).size for q in range(r))
        own[start : start + ref.block(expected, S, r).size] = True
        return [
            (
                lambda got: np.allclose(got.reshape(-1)[own], expected.reshape(-1)[own]),
                (
                    f"only rank {r}'s own block is up to date: each rank updates the block its "
                    f"m and v cover, and stages 1, 2 keep full params, so the updated blocks "
                    f"must be all-gathered"
                ),
            )
        ]
    if kind not in ("grads", "m", "v") or (kind == "grads" and stage == 1):
        return []
    power = 2 if kind == "v" else 1
    return [
        (
            lambda got: np.allclose(got * S**power, expected),
            (
                f"it is the expected one divided by S{'²' * (power == 2)} = {S**power}: the "
                f"ranks' gradients were averaged, but the loss is a SUM over the global batch "
                f"(Adam's update hides the factor, m and v do not)"
            ),
        )
    ]


def _run_learner(learner, stage, S, params, batches, adam):
    ranks = function(learner, "init_ranks")(stage, S, _copy(params))
    _held(ranks, S, "init_ranks")
    comm = Comm(S)
    step = function(learner, "step")
    for t, (x_BD, target_BD) in enumerate(batches, start=1):
        step(stage, comm, ranks, _shapes(params), x_BD, target_BD, adam, t)
    return ranks, comm


def _keeps_check(stage: int) -> Callable:
    def run(learner) -> None:
        for S in RANKS:
            rng = np.random.default_rng(10 + S)
            params, batches, adam = _params(rng), _batches(rng, 1), ref.Adam()
            expected = ref.init_ranks(stage, S, params)
            ranks = function(learner, "init_ranks")(stage, S, _copy(params))
            _expect_state("after init_ranks", stage, S, ranks, expected)
            x_BD, target_BD = batches[0]
            ref.step(stage, Comm(S), expected, _shapes(params), x_BD, target_BD, adam, 1)
            learner_step = function(learner, "step")
            learner_step(stage, Comm(S), ranks, _shapes(params), x_BD, target_BD, adam, 1)
            _expect_state("after one step", stage, S, ranks, expected, _state_symptoms)

    return run


def _training_check(stage: int) -> Callable:
    def run(learner) -> None:
        for S in RANKS:
            rng = np.random.default_rng(20 + S)
            params, batches, adam = _params(rng), _batches(rng, STEPS), ref.Adam()
            full = _unsharded(params, batches, adam)
            ranks, _ = _run_learner(learner, stage, S, params, batches, adam)
            held_ranks = _held(ranks, S, "init_ranks")
            for r, held in enumerate(held_ranks):
                for n, w in full.items():
                    expected = ref.block(w, S, r) if stage == 3 else w
                    label = (
                        f"{_label(stage)} (S={S} ranks), rank {r}: params['{n}'] after {STEPS} "
                        f"steps, against unsharded Adam on the whole batch"
                    )
                    got = held["params"].get(n)
                    if got is None:
                        raise Mismatch(f"{label}: rank {r} holds no params['{n}']")
                    got = np.asarray(got, dtype=float)
                    if got.shape != expected.shape:
                        raise Mismatch(
                            _shape_cause(label, stage, "params", n, got.shape, expected.shape)
                        )
                    expect_array(label, got, expected, _out_of_sync(stage, held_ranks, n))

    return run


def _out_of_sync(stage, held, n):
    """Stages 0-2 keep full params on every rank: copies that differ cannot all be right."""
    copies = [h["params"][n] for h in held]
    if stage == 3 or all(np.allclose(c, copies[0]) for c in copies):
        return []
    return [
        (
            lambda got: True,
            (
                "the ranks' copies of the params differ from each other: every rank must end "
                "each step with the same full params"
                + (", so the updated blocks must be all-gathered" if stage else "")
            ),
        )
    ]


def _calls(log: list[Record]) -> list[str]:
    lines = []
    for r in log:
        shapes = (
            f"{r.shapes[0]} on every rank"
            if len(set(r.shapes)) == 1
            else "blocks " + ", ".join(map(str, r.shapes))
        )
        tag = f" {r.tag}" if r.tag else ""
        lines.append(f"    {r.collective}{tag}: {shapes}; rank 0 sends {r.sent[0]} B")
    return lines


def _zero_cause(stage: int, log: list[Record], reference: list[Record]) -> str:
    mine = Counter(r.collective for r in log)
    theirs = Counter(r.collective for r in reference)
    if stage == 0 and mine["reduce_scatter"]:
        return (
            "stage 0 is plain data parallel: every rank keeps full gradients and full Adam "
            "state, so every rank needs the whole summed gradient: an all-reduce"
        )
    if stage >= 1 and mine["all_reduce"]:
        return (
            "from stage 1 on, a rank updates only the block of each parameter its m and v "
            "cover, so it needs only that block of the summed gradient: a reduce-scatter (half "
            "the bytes of an all-reduce)"
        )
    if stage in (1, 2) and mine["all_gather"] < theirs["all_gather"]:
        return (
            "after the update a rank has only its own block fresh, and stages 1, 2 keep full "
            "params: all-gather the updated blocks (reduce-scatter + all-gather is the ring "
            "all-reduce cut in two, which is why stages 1, 2 move exactly DP's bytes)"
        )
    if stage == 3 and mine["all_gather"] < theirs["all_gather"]:
        return (
            "stage 3 drops the gathered weights after the forward (its memory saving) and "
            "all-gathers them again for the backward: two all-gathers per parameter per step, "
            "which is why it moves 1.5 × DP's bytes"
        )
    if stage == 3 and mine["all_gather"] > theirs["all_gather"]:
        return (
            "stage 3 keeps only its block of the params: no all-gather after the update, the "
            "next step's forward gathers them"
        )
    return ""


def _signature(log: list[Record]) -> Counter:
    """The calls as a multiset of (collective, elements per rank): order, tags and whether a
    tensor was flattened first change no byte on the wire."""
    return Counter((r.collective, tuple(int(np.prod(s)) for s in r.shapes)) for r in log)


def _collectives_check(stage: int) -> Callable:
    def run(learner) -> None:
        for S in RANKS:
            rng = np.random.default_rng(30 + S)
            params, batches, adam = _params(rng), _batches(rng, 1), ref.Adam()
            expected, dp = Comm(S), Comm(S)
            for s, comm in ((stage, expected), (0, dp)):
                ref_ranks = ref.init_ranks(s, S, params)
                x_BD, target_BD = batches[0]
                ref.step(s, comm, ref_ranks, _shapes(params), x_BD, target_BD, adam, 1)
            _, comm = _run_learner(learner, stage, S, params, batches, adam)
            if _signature(comm.log) == _signature(expected.log):
                continue
            ratio = max(expected.sent) / max(dp.sent)
            lines = [
                (
                    f"{_label(stage)} (S={S} ranks), one step: the reference makes "
                    f"{len(expected.log)} collective calls (in any order), each rank sends up "
                    f"to {max(expected.sent)} B, {ratio:.2g} × plain DP's {max(dp.sent)} B:"
                ),
                *_calls(expected.log),
            ]
            if comm.log:
                lines += [
                    (
                        f"  you made {len(comm.log)}, each rank sends up to {max(comm.sent)} B "
                        f"({max(comm.sent) / max(dp.sent):.2g} × DP):"
                    ),
                    *_calls(comm.log),
                ]
            else:
                lines.append(
                    "  you made none: summing or concatenating the ranks' arrays in Python is "
                    "free here, on real GPUs it is a collective that moves bytes: call it on comm"
                )
            cause = _zero_cause(stage, comm.log, expected.log)
            raise Mismatch("\n".join(lines + ([cause] if cause else [])))

    return run


def _block_check(learner) -> None:
    w = np.arange(D * F, dtype=float).reshape(D, F)
    for S in RANKS:
        for r in range(S):
            got = function(learner, "block")(w, S, r)
            expect_array(f"block(w_in_DF, S={S}, r={r})", got, ref.block(w, S, r))


def _gather_check(learner) -> None:
    for S in RANKS:
        params = _params(np.random.default_rng(40 + S))
        ranks, comm, expected = ref.init_ranks(3, S, params), Comm(S), Comm(S)
        ref.gather_params(expected, ranks, _shapes(params), "forward")
        got = function(learner, "gather_params")(comm, ranks, _shapes(params), "forward")
        if not isinstance(got, list | tuple) or len(got) != S:
            raise Mismatch(
                f"gather_params (S={S} ranks) must return a list of S dicts, one per rank; "
                f"got {got!r:.60}"
            )
        for r, full in enumerate(got):
            for n, w in params.items():
                if not isinstance(full, dict) or n not in full:
                    raise Mismatch(f"gather_params (S={S} ranks): rank {r}'s dict has no '{n}'")
                expect_array(f"{n} gathered on rank {r} (S={S} ranks)", full[n], w)
        expect_collectives("gather_params: collectives", comm, expected)


def _bytes_check(learner) -> None:
    n_bytes = 7200
    for S in (2, 4, 8):
        dp = ref.zero_bytes_per_rank(0, n_bytes, S)
        for stage in STAGES:
            expected = ref.zero_bytes_per_rank(stage, n_bytes, S)
            got = function(learner, "zero_bytes_per_rank")(stage, n_bytes, S)
            expect_array(
                f"zero_bytes_per_rank(stage={stage}, n_param_bytes={n_bytes}, S={S})",
                got,
                expected,
                [
                    (
                        lambda g, dp=dp, stage=stage: stage == 3 and np.isclose(g, dp),
                        (
                            "that is plain DP's 2(S − 1)/S · Ψ; stage 3 also all-gathers the "
                            "params a second time, for the backward"
                        ),
                    ),
                    (
                        lambda g, ring=expected / ((S - 1) / S): np.isclose(g, ring),
                        "a ring pass moves (S − 1)/S of the tensor from each rank, not all of it",
                    ),
                ],
            )


def _state_bytes_check(learner) -> None:
    n_bytes = 7200
    for S in (2, 4):
        for stage in STAGES:
            expected = ref.zero_state_bytes(stage, n_bytes, S)
            got = function(learner, "zero_state_bytes")(stage, n_bytes, S)
            if not isinstance(got, dict) or set(got) != set(expected):
                raise Mismatch(
                    f"zero_state_bytes must return a dict with keys {sorted(expected)}; "
                    f"got {got!r:.80}"
                )
            for kind, e in expected.items():
                expect_array(
                    f"zero_state_bytes(stage={stage}, n_param_bytes={n_bytes}, S={S})['{kind}']",
                    got[kind],
                    e,
                    [
                        (
                            lambda g, e=e: np.isclose(g * 2, e),
                            "the optimizer is Adam's m AND v: two tensors the size of the params",
                        )
                    ]
                    if kind == "optimizer"
                    else [],
                )


def _zero_checks() -> tuple[Check, ...]:
    found = [
        Check("block: rank r's flat block", _block_check),
        Check("gather_params: full weights on every rank (stage 3)", _gather_check),
    ]
    for stage in STAGES:
        found += [
            Check(f"{_label(stage)}: what each rank keeps", _keeps_check(stage)),
            Check(f"{_label(stage)}: {STEPS} steps equal unsharded Adam", _training_check(stage)),
            Check(f"{_label(stage)}: collectives and bytes per rank", _collectives_check(stage)),
        ]
    found += [
        Check("zero_bytes_per_rank: against plain DP", _bytes_check),
        Check("zero_state_bytes: what a rank keeps, in bytes", _state_bytes_check),
    ]
    return tuple(found)


EXERCISES = [
    Exercise(
        name="megatron_mlp",
        title="Megatron MLP: column-parallel then row-parallel",
        goal="Both weights split along F: one all-reduce in the forward, one in the backward.",
        contract=MEGATRON_CONTRACT,
        hints=(
            (
                "With its F block of w_in's columns, a rank computes its F block of h_BF in full: "
                "each entry of h needs all of D, which every rank has."
            ),
            (
                "relu works entry by entry, so each rank applies it to its own F block; no other "
                "rank's block is needed."
            ),
            (
                "A rank's rows of w_out turn its F block of a_BF into a partial y_BD: the sum over "
                "F is split across ranks. That sum is the one collective forward."
            ),
            (
                "Backward mirrors it: d_y_BD is replicated, so each rank makes its own F block of "
                "d_a_BF, d_h_BF and its weight gradients locally; only d_x_BD, a sum over F, "
                "needs a collective."
            ),
        ),
        checks=_megatron_checks(),
    ),
    Exercise(
        name="zero",
        title="ZeRO stages 0-3: sharded optimizer state, gradients, parameters",
        goal="Data-parallel Adam with m, v, grads, params sharded stage by stage; same result.",
        contract=ZERO_CONTRACT,
        hints=(
            (
                "Start with stage 0: split the batch, run MLP.forward and MLP.backward per rank, "
                "all-reduce each flat gradient, and let every rank update everything."
            ),
            (
                "Stage 1: a rank's m and v cover only its block, so it needs only that block of "
                "the summed gradient (reduce-scatter), updates that block of the params, and the "
                "ranks then share the updated blocks so everyone has full params again."
            ),
            (
                "Stage 2 is stage 1 keeping only the summed block as .grads; stage 3 also keeps "
                "only its block of the params, so full weights are gathered before they are "
                "used: for the forward, and again for the backward."
            ),
            (
                "Bytes: a ring reduce-scatter or all-gather of Ψ bytes moves (S − 1)/S · Ψ "
                "from each rank; an all-reduce is one of each. Count the passes per stage."
            ),
        ),
        hint_for={
            "zero-0 (plain DP): what each rank keeps": 0,
            "zero-1: what each rank keeps": 1,
            "zero-1: collectives and bytes per rank": 1,
            "zero-2: what each rank keeps": 2,
            "zero-3: what each rank keeps": 2,
            "zero-3: collectives and bytes per rank": 2,
            "zero_bytes_per_rank: against plain DP": 3,
        },
        checks=_zero_checks(),
    ),
]
