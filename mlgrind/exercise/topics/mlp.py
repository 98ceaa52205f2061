"""Seed "Core - Pure NumPy, Implement FWD + BWD": the 2-layer ReLU MLP, then its sharded forms.

The references are `mlgrind.ref.mlp`'s functions; each exercise's contract has their names and
signatures, so the reference module itself, dropped in, passes.
"""

from __future__ import annotations

import numpy as np

from mlgrind.ref import mlp as ref
from mlgrind.ref.collectives import shard

from ..catalog import Exercise
from .common import COMM_DOC, Pair

B, D, F = 5, 4, 7  # B and F split unevenly over 2 and 3 ranks; all three differ

NOTATION = "B batch, D model width, F hidden width, S ranks"
RELU_GATE = (
    "the ReLU gate is missing: the gradient flows back only where h > 0 "
    "(a zero input to relu gets no gradient either)"
)


def _weights(rng):
    return (rng.standard_normal((D, F)) / np.sqrt(D), rng.standard_normal((F, D)) / np.sqrt(F))


def _ungated(stem, x, w_in_DF, w_out_FD, d_y):
    """d_x or d_w_in as they would be if the ReLU let every gradient through: that mistake."""
    d_h = d_y @ w_out_FD.T
    if stem == "d_x":
        return d_h @ w_in_DF.T
    return np.outer(x, d_h) if x.ndim == 1 else x.T @ d_h


def _dense_symptoms(name, args, d_y, expected):
    x, w_in_DF, w_out_FD = args[0], args[1], args[2]
    symptoms = []
    if name.startswith("y_"):
        symptoms.append(
            (
                lambda got: np.allclose(got, x @ w_in_DF @ w_out_FD),
                "it equals the network without its ReLU: a = relu(h) = max(h, 0)",
            )
        )
    stem = name.rpartition("_")[0]
    if stem in ("d_x", "d_w_in"):
        ungated = _ungated(stem, x, w_in_DF, w_out_FD, d_y)
        symptoms.append((lambda got: np.allclose(got, ungated), RELU_GATE))
    if stem in ("d_w_in", "d_w_out") and x.ndim == 2:
        symptoms.append(
            (
                lambda got: np.allclose(got * len(x), expected),
                (
                    f"it is the reference divided by B = {len(x)}: the loss sums over the "
                    f"examples, so the weight gradients sum too (no mean)"
                ),
            )
        )
    return symptoms


MLP_CONTRACT = '''"""2-layer MLP with ReLU, ONE example, forward and backward by hand.

    h_F = x_D · w_in_DF      a_F = relu(h_F)      y_D = a_F · w_out_FD

D model width, F hidden width. A gradient is named d_<tensor> and has that tensor's suffix:
d_w_in_DF is the gradient of the loss with respect to w_in_DF, so it has w_in_DF's shape.
"""

import numpy as np


def mlp_forward_D(x_D, w_in_DF, w_out_FD):
    """Returns (y_D, saved): the output, and whatever your backward pass will need (a tuple of
    your choice; only your own mlp_backward_D reads it)."""
    raise NotImplementedError


def mlp_backward_D(d_y_D, saved):
    """Given d_y_D, the gradient of the loss with respect to y_D, and your `saved`, returns
    (d_x_D, d_w_in_DF, d_w_out_FD)."""
    raise NotImplementedError
'''

BATCHED_CONTRACT = '''"""The same MLP with a batch dimension: B examples at once, forward and backward.

    h_BF = x_BD · w_in_DF      a_BF = relu(h_BF)      y_BD = a_BF · w_out_FD

B batch, D model width, F hidden width. The loss is a SUM over the batch, so a weight
gradient is the sum of the per-example ones; d_x_BD stays per example.
"""

import numpy as np


def mlp_forward(x_BD, w_in_DF, w_out_FD):
    """Returns (y_BD, saved)."""
    raise NotImplementedError


def mlp_backward(d_y_BD, saved):
    """Returns (d_x_BD, d_w_in_DF, d_w_out_FD)."""
    raise NotImplementedError
'''

ROW_CONTRACT = f'''"""Row-parallel MLP (tensor parallel): w_out_FD is split along F over S ranks.

w_in_DF is replicated: every rank holds all of it and computes all of h_BF. Rank s holds rows
(the F block s) of w_out_FD, so from its block of a_BF it can make only a PARTIAL y_BD: the
true y_BD is the sum of the S partials. {NOTATION}.

{COMM_DOC}
"""

import numpy as np


def row_parallel_forward(comm, x_BD, w_in_DF, w_out_FD_ranks):
    """w_out_FD_ranks[s] is rank s's F block of w_out_FD (np.array_split along F).

    Returns (y_BD, saved): y_BD, the full output every rank ends up holding (one array).
    """
    raise NotImplementedError


def row_parallel_backward(comm, d_y_BD, saved):
    """d_y_BD is replicated (every rank has it).

    Returns (d_x_BD, d_w_in_DF, d_w_out_FD_ranks): d_w_out_FD_ranks[s] is the gradient of rank
    s's block. The replicated first layer needs d_a_BF for EVERY F.
    """
    raise NotImplementedError
'''

COLUMN_CONTRACT = f'''"""Column-parallel MLP (tensor parallel): w_in_DF is split along F over S ranks.

Rank s holds columns (the F block s) of w_in_DF and computes only its F block of h_BF and
a_BF; w_out_FD is replicated and needs all of a_BF. {NOTATION}.

{COMM_DOC}
"""

import numpy as np


def column_parallel_forward(comm, x_BD, w_in_DF_ranks, w_out_FD):
    """w_in_DF_ranks[s] is rank s's F block of w_in_DF (np.array_split along F).

    Returns (y_BD, saved).
    """
    raise NotImplementedError


def column_parallel_backward(comm, d_y_BD, saved):
    """Returns (d_x_BD, d_w_in_DF_ranks, d_w_out_FD). x_BD fed every rank's F block, so its
    gradient has a part from each rank."""
    raise NotImplementedError
'''

DATA_CONTRACT = f'''"""Data-parallel MLP: the batch is split along B over S ranks; every rank has all weights.

Each rank runs the whole MLP on its block of examples. The loss is a SUM over the global
batch, so the weight gradient is the sum of the ranks' local gradients, and every replica
must end up with that same sum to take the same optimizer step.
{NOTATION}.

{COMM_DOC}
"""

import numpy as np


def data_parallel_forward(x_BD_ranks, w_in_DF, w_out_FD):
    """x_BD_ranks[s] is rank s's block of the batch. No communication is needed here.

    Returns (y_BD_ranks, saved_ranks).
    """
    raise NotImplementedError


def data_parallel_backward(comm, d_y_BD_ranks, saved_ranks):
    """Returns (d_x_BD_ranks, d_w_in_DF, d_w_out_FD): per-rank input gradients, and the weight
    gradients every rank holds after combining."""
    raise NotImplementedError
'''


def _one_example(rng, S):
    w_in_DF, w_out_FD = _weights(rng)
    return (rng.standard_normal(D), w_in_DF, w_out_FD), rng.standard_normal(D)


def _batch(rng, S):
    w_in_DF, w_out_FD = _weights(rng)
    return (rng.standard_normal((B, D)), w_in_DF, w_out_FD), rng.standard_normal((B, D))


def _row(rng, S):
    (x_BD, w_in_DF, w_out_FD), d_y_BD = _batch(rng, S)
    return (x_BD, w_in_DF, shard(w_out_FD, S, axis=0)), d_y_BD


def _column(rng, S):
    (x_BD, w_in_DF, w_out_FD), d_y_BD = _batch(rng, S)
    return (x_BD, shard(w_in_DF, S, axis=1), w_out_FD), d_y_BD


def _data(rng, S):
    (x_BD, w_in_DF, w_out_FD), d_y_BD = _batch(rng, S)
    return (shard(x_BD, S), w_in_DF, w_out_FD), shard(d_y_BD, S)


def _whole(name, x_BD, w_in_DF, w_out_FD, d_y_BD, expected):
    """The dense MLP's symptoms (no ReLU, no ReLU gate, a mean for a sum) for a value every
    rank holds whole: the sharded MLP computes the same function as the dense one."""
    if name.endswith("_ranks"):
        return []
    return _dense_symptoms(name, (x_BD, w_in_DF, w_out_FD), d_y_BD, expected)


def _row_symptoms(name, args, d_y, expected):
    x_BD, w_in_DF, w_out_FD_ranks = args
    found = _whole(name, x_BD, w_in_DF, np.concatenate(w_out_FD_ranks), d_y, expected)
    if name != "y_BD":
        return found
    a_BF = np.maximum(x_BD @ w_in_DF, 0)
    partial = a_BF[:, : len(w_out_FD_ranks[0])] @ w_out_FD_ranks[0]
    return [
        *found,
        (
            lambda got: np.allclose(got, partial),
            "it is rank 0's partial sum alone: the partials of all ranks must be summed",
        ),
    ]


def _column_symptoms(name, args, d_y, expected):
    x_BD, w_in_DF_ranks, w_out_FD = args
    return _whole(name, x_BD, np.concatenate(w_in_DF_ranks, axis=1), w_out_FD, d_y, expected)


def _data_symptoms(name, args, d_y_ranks, expected):
    x_ranks, w_in_DF, w_out_FD = args
    if not name.startswith("d_w"):
        return []
    x_BD, d_y_BD = np.concatenate(x_ranks), np.concatenate(d_y_ranks)
    whole = _whole(name, x_BD, w_in_DF, w_out_FD, d_y_BD, expected)
    S = len(x_ranks)
    i = 1 if name.startswith("d_w_in") else 2
    local = ref.mlp_backward(d_y_ranks[0], ref.mlp_forward(x_ranks[0], w_in_DF, w_out_FD)[1])[i]
    return [
        *whole,
        (
            lambda got: np.allclose(got * S, expected),
            (
                f"it is the sum divided by S = {S}: averaging over ranks gives each rank's examples "
                f"weight 1/S, but the loss is a plain sum over the global batch"
            ),
        ),
        (
            lambda got: np.allclose(got, local),
            "it is rank 0's local gradient alone: the ranks' gradients must be summed",
        ),
    ]


EXERCISES = [
    Exercise(
        name="mlp",
        title="2-layer MLP, forward and backward",
        goal="One example through x·w_in → relu → ·w_out, and every gradient back by hand.",
        contract=MLP_CONTRACT,
        hints=(
            (
                "Forward is three lines, one per equation in the docstring. Save h_F (or a_F): "
                "the backward needs to know where the ReLU was open."
            ),
            (
                "Every gradient has its tensor's suffix. d_w_out_FD is F × D: which two tensors "
                "you have carry exactly an F and a D?"
            ),
            (
                "Walk back one equation at a time: d_a_F from d_y_D, then d_h_F, then the two "
                "quantities that h_F was made from."
            ),
            (
                "relu's derivative is 1 where h_F > 0 and 0 elsewhere: it multiplies elementwise, "
                "it is not a matmul."
            ),
        ),
        hint_for={
            "forward: y_D": 0,
            "backward: d_w_out_FD": 1,
            "backward: d_x_D": 2,
            "backward: d_w_in_DF": 3,
        },
        checks=Pair(
            ref,
            "mlp_forward_D",
            "mlp_backward_D",
            "y_D",
            ("d_x_D", "d_w_in_DF", "d_w_out_FD"),
            _one_example,
            symptoms=_dense_symptoms,
        ).checks(),
    ),
    Exercise(
        name="mlp_batched",
        title="The MLP with a batch dimension",
        goal="The same MLP on B examples at once; weight gradients sum over the batch.",
        contract=BATCHED_CONTRACT,
        hints=(
            (
                "Take your one-example solution and add a 'b' to every activation's einsum; the "
                "weights keep their suffixes."
            ),
            (
                "A weight gradient's name has no B, so b must be summed over: a letter that is in "
                "the inputs but not in the output is summed by einsum."
            ),
            "Do not divide by B: the loss here is a sum, not a mean.",
        ),
        checks=Pair(
            ref,
            "mlp_forward",
            "mlp_backward",
            "y_BD",
            ("d_x_BD", "d_w_in_DF", "d_w_out_FD"),
            _batch,
            symptoms=_dense_symptoms,
        ).checks(),
    ),
    Exercise(
        name="row_parallel",
        title="Row-parallel MLP on simulated ranks",
        goal="w_out split along F: partial y's summed with one all-reduce; backward too.",
        contract=ROW_CONTRACT,
        hints=(
            (
                "Each rank needs only its F block of a_BF, the block that matches its rows of "
                "w_out: cut a_BF the same way w_out was cut."
            ),
            (
                "Forward: one partial y_BD per rank, then one collective that leaves every rank "
                "with their sum. Which collective sums?"
            ),
            (
                "Backward: each rank can make d_a_BF only for its own F block, but the replicated "
                "w_in needs all of F on every rank. Which collective assembles blocks?"
            ),
            (
                "Blocks of uneven size concatenate fine; array_split and all_gather agree on "
                "the cut."
            ),
        ),
        checks=Pair(
            ref,
            "row_parallel_forward",
            "row_parallel_backward",
            "y_BD",
            ("d_x_BD", "d_w_in_DF", "d_w_out_FD_ranks"),
            _row,
            comm_forward=True,
            comm_backward=True,
            symptoms=_row_symptoms,
        ).checks(),
    ),
    Exercise(
        name="column_parallel",
        title="Column-parallel MLP on simulated ranks",
        goal="w_in split along F: blocks of a all-gathered forward, d_x all-reduced backward.",
        contract=COLUMN_CONTRACT,
        hints=(
            (
                "Forward: each rank makes its F block of h_BF and a_BF with no communication; "
                "the replicated w_out needs all of a_BF on every rank."
            ),
            (
                "Backward: d_a_BF can be computed whole on every rank; each rank keeps only its "
                "own F block of it, which costs no communication."
            ),
            (
                "d_x_BD gets a contribution from every rank's F block, and the rank's share only "
                "sees its own block. Which collective adds them up?"
            ),
        ),
        checks=Pair(
            ref,
            "column_parallel_forward",
            "column_parallel_backward",
            "y_BD",
            ("d_x_BD", "d_w_in_DF_ranks", "d_w_out_FD"),
            _column,
            comm_forward=True,
            comm_backward=True,
            symptoms=_column_symptoms,
        ).checks(),
    ),
    Exercise(
        name="data_parallel",
        title="Data-parallel MLP on simulated ranks",
        goal="Batch split along B: local forward/backward, weight gradients all-reduced.",
        contract=DATA_CONTRACT,
        hints=(
            "The forward is your batched MLP run once per rank on that rank's examples.",
            "The backward is your batched backward per rank; d_x stays where it is.",
            (
                "Every replica must take the same step with the gradient of the whole batch: one "
                "collective per weight gradient, and it sums (no division by S)."
            ),
        ),
        checks=Pair(
            ref,
            "data_parallel_forward",
            "data_parallel_backward",
            "y_BD_ranks",
            ("d_x_BD_ranks", "d_w_in_DF", "d_w_out_FD"),
            _data,
            comm_backward=True,
            symptoms=_data_symptoms,
        ).checks(),
    ),
]
