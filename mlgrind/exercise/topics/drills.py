"""Seed step 1, "Learn einsum" with Noam's suffixes: one np.einsum per drill, spec read off names.

The reference for a drill is `mlgrind.ref.einsum.einsum` run on the spec its names spell:
`project(x_BLD, w_in_DF) -> h_BLF` is "bld,df->blf". The suffixes are the truth; nothing else
is typed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlgrind.ref import einsum as ref
from mlgrind.ref.notation import split_suffix

from ..catalog import Check, Exercise
from ..compare import Mismatch, expect_array, function

# A different size per letter, so a shape in a message says which letter went where.
SIZES = {"B": 2, "M": 3, "H": 4, "L": 5, "F": 6, "K": 7, "D": 8}


@dataclass(frozen=True)
class Drill:
    function: str
    args: tuple[str, ...]
    returns: str
    what: str

    @property
    def spec(self) -> str:
        def suffix(name: str) -> str:
            split = split_suffix(name)
            assert split is not None, name
            return split[1].lower()

        return ",".join(suffix(a) for a in self.args) + "->" + suffix(self.returns)


DRILLS = (
    Drill(
        "matvec",
        ("x_D", "w_DF"),
        "h_F",
        "A linear layer for one example: D is contracted, F is what is left.",
    ),
    Drill(
        "project",
        ("x_BLD", "w_in_DF"),
        "h_BLF",
        "The same layer on every position of every sequence: B and L just ride along.",
    ),
    Drill(
        "outer",
        ("x_D", "d_h_F"),
        "d_w_DF",
        "An outer product, the weight gradient of one example: nothing is summed.",
    ),
    Drill(
        "weight_grad",
        ("x_BLD", "d_h_BLF"),
        "d_w_DF",
        "The weight gradient of a whole batch: the letters missing from the output are summed.",
    ),
    Drill(
        "heads_first",
        ("q_BLHK",),
        "q_BHLK",
        "A transpose is an einsum that sums nothing: move the heads axis before the sequence.",
    ),
    Drill(
        "scores",
        ("q_BLHK", "k_BMHK"),
        "scores_BHLM",
        "Attention scores: each query position l against each key position m, per head.",
    ),
    Drill(
        "attend",
        ("probs_BHLM", "v_BMHK"),
        "out_BLHK",
        "Each query's output: the values weighted by its probabilities over the keys.",
    ),
    Drill(
        "merge_heads",
        ("out_BLHK", "w_o_HKD"),
        "y_BLD",
        "The output projection contracts two letters at once.",
    ),
    Drill(
        "row_sums",
        ("probs_BHLM",),
        "total_BHL",
        "A sum over one axis is an einsum with one input (softmax rows sum to 1).",
    ),
)

FLOP_CASES = (
    ("bld,df->blf", {"b": 2, "l": 5, "d": 8, "f": 6}),
    ("blhk,bmhk->bhlm", {"b": 2, "l": 5, "m": 3, "h": 4, "k": 7}),
    ("bhlm->bhl", {"b": 2, "h": 4, "l": 5, "m": 3}),
)


def _drill_source(d: Drill) -> str:
    return (
        f"def {d.function}({', '.join(d.args)}):\n"
        f'    """{d.what}\n\n    Returns {d.returns}. One np.einsum call.\n    """\n'
        f"    raise NotImplementedError\n"
    )


CONTRACT = (
    '''"""Einsum drills: write each function as ONE np.einsum call whose spec you read off the names.

A tensor's name ends in its dimensions (Shazeer's suffixes). The input letters, a comma between
inputs, an arrow, and the output letters ARE the spec: a letter missing from the output is
summed over, a letter present everywhere rides along.

    B batch  L query positions  M key/value positions  D model width  F hidden width
    H heads  K size of one head
"""

import numpy as np


'''
    + "\n\n".join(_drill_source(d) for d in DRILLS)
    + '''

def einsum_flops(spec, sizes):
    """FLOPs of one einsum, e.g. einsum_flops("ij,jk->ik", {"i": 2, "j": 3, "k": 4}).

    Each output element is a sum over the contracted letters: one multiply and one add per
    term. Returns an int.
    """
    raise NotImplementedError
'''
)


def _drill_check(i: int, d: Drill) -> Check:
    def run(learner):
        rng = np.random.default_rng(i)
        args = [rng.standard_normal([SIZES[c] for c in split_suffix(a)[1]]) for a in d.args]
        expected = ref.einsum(d.spec, *args)
        got = function(learner, d.function)(*args)
        expect_array(f"{d.returns} from {d.function}({', '.join(d.args)})", got, expected)

    return Check(f"{d.function}: {d.returns}", run)


def _flops_check(learner) -> None:
    for spec, sizes in FLOP_CASES:
        expected = ref.flops(spec, sizes)
        got = function(learner, "einsum_flops")(spec, dict(sizes))
        if not isinstance(got, int | np.integer) or got != expected:
            hint = ""
            if isinstance(got, int | float | np.number) and got and expected / got == 2:
                hint = " That is half: each term is a multiply AND an add."
            raise Mismatch(
                f"einsum_flops({spec!r}, {sizes}): expected {expected}, got {got!r}."
                f"{hint} Count every letter once, summed or not."
            )


EXERCISES = [
    Exercise(
        name="einsum_drills",
        title="Einsum drills",
        goal="Nine contractions as one np.einsum each, specs read off the suffixes; count FLOPs.",
        contract=CONTRACT,
        hints=(
            (
                "Write the names' suffixes in lower case, inputs separated by a comma, then '->' and "
                "the output's suffix. That string is the whole answer for every drill but the last."
            ),
            (
                "A letter that appears in an input but not in the output is summed over; einsum "
                "does that for you. Never reshape or transpose by hand here."
            ),
            (
                "For einsum_flops: every distinct letter of the spec, input or output, contributes "
                "its size once to one product."
            ),
            (
                "Still stuck on einsum_flops? Multiply the sizes of the set of letters, then account "
                "for the multiply and the add in each term."
            ),
        ),
        checks=(
            *(_drill_check(i, d) for i, d in enumerate(DRILLS)),
            Check("einsum_flops", _flops_check),
        ),
    )
]
