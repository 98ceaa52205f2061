"""megatron_mlp and zero as a learner meets them: a solution written from the scaffold alone
passes, and the typical bugs fail with a message that names their cause.

(The untouched scaffold, the reference dropped in and one subtle bug each are graded by
test_exercises.py, which runs every exercise of the catalog, these two included.)
"""

from __future__ import annotations

import re

import pytest

from mlgrind.exercise.catalog import get
from mlgrind.exercise.scaffold import module_source
from tests.exercise.grading import assert_fails_exactly, graded


def filled(name: str, bodies: dict[str, str]) -> str:
    """The scaffold with each named function's `raise NotImplementedError` replaced by a body:
    what a learner hands in (the given Rank and MLP classes stay as the scaffold has them)."""
    source = module_source(get(name))
    for function, body in bodies.items():
        pattern = re.compile(rf'(def {function}\(.*?"""\n)    raise NotImplementedError\n', re.S)
        source, n = pattern.subn(lambda m, body=body: m.group(1) + body, source, count=1)
        assert n == 1, function
    return source


# ---------------------------------------------------------------- Megatron, written from scratch

MEGATRON = {
    "megatron_forward": """\
    saved_ranks, y_part_BD_ranks = [], []
    for w_in_DF, w_out_FD in zip(w_in_DF_ranks, w_out_FD_ranks):
        h_BF = np.einsum("bd,df->bf", x_BD, w_in_DF)  # this rank's F block, complete
        y_part_BD_ranks.append(np.einsum("bf,fd->bd", np.maximum(h_BF, 0), w_out_FD))
        saved_ranks.append((x_BD, w_in_DF, w_out_FD, h_BF))
    return comm.all_reduce(y_part_BD_ranks)[0], saved_ranks
""",
    "megatron_backward": """\
    d_x_part_BD_ranks, d_w_in_DF_ranks, d_w_out_FD_ranks = [], [], []
    for x_BD, w_in_DF, w_out_FD, h_BF in saved_ranks:
        d_w_out_FD_ranks.append(np.einsum("bf,bd->fd", np.maximum(h_BF, 0), d_y_BD))
        d_h_BF = np.einsum("bd,fd->bf", d_y_BD, w_out_FD) * (h_BF > 0)
        d_w_in_DF_ranks.append(np.einsum("bd,bf->df", x_BD, d_h_BF))
        d_x_part_BD_ranks.append(np.einsum("bf,df->bd", d_h_BF, w_in_DF))
    return comm.all_reduce(d_x_part_BD_ranks)[0], d_w_in_DF_ranks, d_w_out_FD_ranks
""",
}


def megatron_with(function: str, old: str, new: str) -> str:
    assert old in MEGATRON[function]
    return filled("megatron_mlp", MEGATRON | {function: MEGATRON[function].replace(old, new)})


MEGATRON_BUGS = {
    "relu after the all-reduce": (
        megatron_with(
            "megatron_forward",
            "return comm.all_reduce(y_part_BD_ranks)[0], saved_ranks",
            "y_BD = comm.all_reduce([h @ w for (_, _, w, h) in saved_ranks])[0]\n"
            "    return np.maximum(y_BD, 0), saved_ranks",
        ),
        {"forward: y_BD": ("relu applied after the all-reduce", "between the two matmuls")},
    ),
    "d_x left as each rank's partial": (
        megatron_with(
            "megatron_backward",
            "return comm.all_reduce(d_x_part_BD_ranks)[0],",
            "return d_x_part_BD_ranks[0],",
        ),
        {
            "backward: d_x_BD": ("rank 0's partial d_x_BD alone", "sum of every rank's partial"),
            "backward: collectives": ("all_reduce: d_x_BD (B=5, D=4)", "you made no collective call"),
        },
    ),
    "row-parallel's all-gather of d_a in the backward": (
        megatron_with(
            "megatron_backward",
            "    for x_BD, w_in_DF, w_out_FD, h_BF in saved_ranks:\n",
            "    d_a_BF_ranks = [d_y_BD @ w.T for (_, _, w, _) in saved_ranks]\n"
            "    d_a_BF = comm.all_gather(d_a_BF_ranks, axis=1)[0]\n"
            "    for x_BD, w_in_DF, w_out_FD, h_BF in saved_ranks:\n",
        ),
        {"backward: collectives": ("you made 2:", "row-parallel's habit", "its own F block")},
    ),
    "two all-reduces forward": (
        megatron_with(
            "megatron_forward",
            "return comm.all_reduce(y_part_BD_ranks)[0], saved_ranks",
            "y_BD = comm.all_reduce(y_part_BD_ranks)[0]\n"
            "    comm.all_reduce([y_BD] * comm.size)  # 'to be sure every rank has it'\n"
            "    return y_BD, saved_ranks",
        ),
        {"forward: collectives": ("2 all-reduces forward, Megatron needs one",)},
    ),
}


# ---------------------------------------------------------------- ZeRO, written from the scaffold

ZERO = {
    "block": """\
    return np.array_split(np.ravel(w), S)[r].copy()
""",
    "init_ranks": """\
    out = []
    for r in range(S):
        held = {n: block(w, S, r) if stage == 3 else np.array(w) for n, w in params.items()}
        tracked = {n: block(w, S, r) if stage >= 1 else w for n, w in params.items()}
        out.append(Rank(held, {}, {n: np.zeros(x.shape) for n, x in tracked.items()},
                        {n: np.zeros(x.shape) for n, x in tracked.items()}))
    return out
""",
    "gather_params": """\
    full = [{} for _ in ranks]
    for n, shape in shapes.items():
        gathered = comm.all_gather([rank.params[n] for rank in ranks], axis=0, tag=tag)
        for r in range(comm.size):
            full[r][n] = gathered[r].reshape(shape)
    return full
""",
    "step": """\
    S = comm.size
    xs, targets = np.array_split(x_BD, S), np.array_split(target_BD, S)
    weights = gather_params(comm, ranks, shapes, "fwd") if stage == 3 else [k.params for k in ranks]
    outs = [MLP.forward(xs[r], weights[r]["w_in_DF"], weights[r]["w_out_FD"]) for r in range(S)]
    if stage == 3:
        weights = gather_params(comm, ranks, shapes, "bwd")
    local = []
    for r in range(S):
        y_BD, h_BF = outs[r]
        w = weights[r]
        d_w = MLP.backward(y_BD - targets[r], xs[r], h_BF, w["w_in_DF"], w["w_out_FD"])
        local.append(dict(zip(("w_in_DF", "w_out_FD"), d_w)))
    for n in shapes:
        flat = [local[r][n].reshape(-1) for r in range(S)]
        if stage == 0:
            summed = comm.all_reduce(flat, tag=n)
            for r, rank in enumerate(ranks):
                rank.grads[n] = summed[r].reshape(shapes[n])
                rank.params[n], rank.m[n], rank.v[n] = adam.update(
                    rank.params[n], rank.grads[n], rank.m[n], rank.v[n], t)
            continue
        mine = comm.reduce_scatter(flat, axis=0, tag=n)
        fresh = []
        for r, rank in enumerate(ranks):
            rank.grads[n] = local[r][n] if stage == 1 else mine[r]
            w_block = rank.params[n] if stage == 3 else block(rank.params[n], S, r)
            w_block, rank.m[n], rank.v[n] = adam.update(w_block, mine[r], rank.m[n], rank.v[n], t)
            fresh.append(w_block)
        if stage == 3:
            for rank, w_block in zip(ranks, fresh):
                rank.params[n] = w_block
        else:
            whole = comm.all_gather(fresh, axis=0, tag=n)
            for r, rank in enumerate(ranks):
                rank.params[n] = whole[r].reshape(shapes[n])
""",
    "zero_bytes_per_rank": """\
    passes = 3 if stage == 3 else 2  # stage 3 gathers the params twice, then reduce-scatters
    return passes * (S - 1) / S * n_param_bytes
""",
    "zero_state_bytes": """\
    P = float(n_param_bytes)
    return {"params": P / S if stage == 3 else P, "grads": P / S if stage >= 2 else P,
            "optimizer": 2 * P / S if stage >= 1 else 2 * P}
""",
}


def zero_with(function: str, old: str, new: str) -> str:
    assert old in ZERO[function]
    return filled("zero", ZERO | {function: ZERO[function].replace(old, new)})


ZERO_BUGS = {
    "stage 2 keeping full gradients": (
        zero_with(
            "step",
            "rank.grads[n] = local[r][n] if stage == 1 else mine[r]",
            "rank.grads[n] = local[r][n]",
        ),
        {
            check: ("from stage 2 on, grads are sharded", "block(w_in_DF, S, r)")
            for check in ("zero-2: what each rank keeps", "zero-3: what each rank keeps")
        },
    ),
    "gradients averaged over the ranks": (
        zero_with("step", "mine = comm.reduce_scatter(flat, axis=0, tag=n)",
                  "mine = [g / S for g in comm.reduce_scatter(flat, axis=0, tag=n)]"),
        {
            check: ("divided by S", "a SUM over the global batch", "Adam's update hides")
            for check in (
                "zero-1: what each rank keeps",
                "zero-2: what each rank keeps",
                "zero-3: what each rank keeps",
            )
        },
    ),
    "stages 1, 2 never all-gathering the updated blocks": (
        zero_with(
            "step",
            "            whole = comm.all_gather(fresh, axis=0, tag=n)\n"
            "            for r, rank in enumerate(ranks):\n"
            "                rank.params[n] = whole[r].reshape(shapes[n])\n",
            "            for r, rank in enumerate(ranks):\n"
            "                own = np.array_split(np.arange(rank.params[n].size), S)[r]\n"
            "                rank.params[n].reshape(-1)[own] = fresh[r]\n",
        ),
        {
            **{
                f"zero-{s}: what each rank keeps": ("only rank 0's own block is up to date",)
                for s in (1, 2)
            },
            **{
                f"zero-{s}: 3 steps equal unsharded Adam": (
                    "copies of the params differ",
                    "all-gathered",
                )
                for s in (1, 2)
            },
            **{
                f"zero-{s}: collectives and bytes per rank": (
                    "you made 2",
                    "all-gather the updated blocks",
                )
                for s in (1, 2)
            },
        },
    ),
    "an all-reduce where a reduce-scatter does": (
        zero_with(
            "step",
            "mine = comm.reduce_scatter(flat, axis=0, tag=n)",
            "mine = [block(g, S, r) for r, g in enumerate(comm.all_reduce(flat, tag=n))]",
        ),
        {
            f"zero-{s}: collectives and bytes per rank": ("all_reduce", "a reduce-scatter (half")
            for s in (1, 2, 3)
        },
    ),
    "stage 3's bytes counted like DP's": (
        zero_with("zero_bytes_per_rank", "3 if stage == 3 else 2", "2"),
        {"zero_bytes_per_rank: against plain DP": ("all-gathers the params a second time",)},
    ),
}

SOLUTIONS = {"megatron_mlp": MEGATRON, "zero": ZERO}
BUGS = [("megatron_mlp", bug, *case) for bug, case in MEGATRON_BUGS.items()] + [
    ("zero", bug, *case) for bug, case in ZERO_BUGS.items()
]


@pytest.mark.parametrize("name", SOLUTIONS)
def test_a_solution_written_from_the_scaffold_alone_passes(tmp_path, name):
    results = graded(tmp_path, name, filled(name, SOLUTIONS[name]))
    assert {c: r.message for c, r in results.items() if not r.passed} == {}


@pytest.mark.parametrize(("name", "bug", "source", "failing"), BUGS, ids=[b[1] for b in BUGS])
def test_a_typical_bug_fails_exactly_its_checks_naming_the_cause(
    tmp_path, name, bug, source, failing
):
    results = graded(tmp_path, name, source)
    assert_fails_exactly(results, failing)


def test_the_all_reduce_done_by_hand_passes(tmp_path):
    """A reduce-scatter then an all-gather sends what one all-reduce sends: any sequence of
    collectives with the reference's bytes is as good."""
    source = megatron_with(
        "megatron_forward",
        "return comm.all_reduce(y_part_BD_ranks)[0], saved_ranks",
        "flat = comm.reduce_scatter([y.reshape(-1) for y in y_part_BD_ranks])\n"
        "    return comm.all_gather(flat)[0].reshape(x_BD.shape), saved_ranks",
    )
    results = graded(tmp_path, "megatron_mlp", source)
    assert {c: r.message for c, r in results.items() if not r.passed} == {}
