"""What the topics share: a forward/backward pair checked output by output, gradient by gradient,
on simulated ranks when it is sharded; and the text that explains `comm` to the learner."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from mlgrind.ref.collectives import Comm

from ..catalog import Check
from ..compare import (
    Symptom,
    expect_array,
    expect_collectives,
    expect_ranks,
    function,
    parts,
)

# Rank counts every sharded check runs with: 3 splits the test sizes unevenly on purpose.
RANKS = (2, 3)

COMM_DOC = """\
`comm` simulates S = comm.size ranks (it is mlgrind.ref.collectives.Comm). A value that differs
per rank is a list of S arrays, its name ending in _ranks; a value every rank holds identically
is one array. Every collective takes a per-rank list (S arrays, one per rank) and returns a
per-rank list (S arrays: what each rank holds afterwards):

    comm.all_reduce(xs_ranks)              every rank gets the elementwise sum
    comm.all_gather(xs_ranks, axis=0)      every rank gets all blocks, concatenated along axis
    comm.reduce_scatter(xs_ranks, axis=0)  rank s gets block s of the elementwise sum

After all_reduce or all_gather the S arrays are equal; where one array is asked for, take any
rank's, e.g. the result's [0]. Blocks are cut like np.array_split(x, S, axis) (the first ones one
longer when uneven). Combine the ranks' arrays only through comm: the tests count the bytes your
collectives send per rank against the reference's. Any sequence that sends the same bytes passes
(a reduce_scatter then an all_gather is an all_reduce); one that sends more fails, and so does
one that sends fewer, since then some ranks' arrays were combined outside comm. The tests see
bytes, not which arrays you send: a collective on some other array beside a sum in Python would
pass them and teach nothing; S changes between checks, so use comm.size."""


def expect(name: str, got: object, expected: object, symptoms: Sequence[Symptom] = ()) -> None:
    """expect_array, or expect_ranks for a per-rank list (a name ending in _ranks)."""
    if name.split(" ", 1)[0].endswith("_ranks"):
        expect_ranks(name, got, expected, symptoms)
    else:
        expect_array(name, got, expected, symptoms)


@dataclass(frozen=True)
class Pair:
    """forward(*args) -> (output, saved) and backward(d_output, saved) -> grads, named alike in
    the learner's module and in `ref`; comm comes first when that half is sharded."""

    ref: ModuleType
    forward: str
    backward: str
    output: str
    grads: tuple[str, ...]
    make: Callable[[np.random.Generator, int], tuple[tuple, object]]  # (rng, S) → (args, d_out)
    comm_forward: bool = False
    comm_backward: bool = False
    # compare.expect_collectives' rule: the reference's bytes (default) or its exact calls
    same_sequence: bool = False
    # (name of the checked value, forward args, d_out, expected value) → symptoms worth naming
    symptoms: Callable[[str, tuple, object, object], Sequence[Symptom]] = (
        lambda name, args, d_out, expected: ()
    )

    @property
    def sharded(self) -> bool:
        return self.comm_forward or self.comm_backward

    def _call_forward(self, fn: Callable, S: int, args: tuple):
        comm = Comm(S)
        result = fn(comm, *args) if self.comm_forward else fn(*args)
        out, saved = parts(result, (self.output, "saved"), self.forward)
        return out, saved, comm

    def _run(self, get: Callable[[str], Callable], S: int, args: tuple, d_out: object):
        """Forward then backward, each on its own Comm: (output, its comm, grads, their comm)."""
        out, saved, forward_comm = self._call_forward(get(self.forward), S, args)
        backward_comm = Comm(S)
        backward = get(self.backward)
        result = (
            backward(backward_comm, d_out, saved) if self.comm_backward else backward(d_out, saved)
        )
        return out, forward_comm, parts(result, self.grads, self.backward), backward_comm

    def _reference(self, name: str) -> Callable:
        return getattr(self.ref, name)

    def _cases(self):
        for S in RANKS if self.sharded else (1,):
            args, d_out = self.make(np.random.default_rng(S), S)
            yield S, (f" (S={S} ranks)" if self.sharded else ""), args, d_out

    def _forward_check(self, learner: ModuleType) -> None:
        for S, where, args, d_out in self._cases():
            expected, _, _ = self._call_forward(self._reference(self.forward), S, args)
            got, _, _ = self._call_forward(function(learner, self.forward), S, args)
            expect(
                self.output + where,
                got,
                expected,
                self.symptoms(self.output, args, d_out, expected),
            )

    def _grad_check(self, i: int) -> Callable[[ModuleType], None]:
        def run(learner: ModuleType) -> None:
            for S, where, args, d_out in self._cases():
                _, _, expected, _ = self._run(self._reference, S, args, d_out)
                _, _, got, _ = self._run(lambda n: function(learner, n), S, args, d_out)
                name = self.grads[i]
                expect(
                    name + where, got[i], expected[i], self.symptoms(name, args, d_out, expected[i])
                )

        return run

    def _comm_check(self, backward: bool) -> Callable[[ModuleType], None]:
        def run(learner: ModuleType) -> None:
            for S, _, args, d_out in self._cases():
                _, ref_forward, _, ref_backward = self._run(self._reference, S, args, d_out)
                if backward:
                    _, _, _, mine = self._run(lambda n: function(learner, n), S, args, d_out)
                    half, theirs = self.backward, ref_backward
                else:
                    _, _, mine = self._call_forward(function(learner, self.forward), S, args)
                    half, theirs = self.forward, ref_forward
                expect_collectives(
                    f"{half}: collectives", mine, theirs, same_sequence=self.same_sequence
                )

        return run

    def checks(self) -> tuple[Check, ...]:
        found = [Check(f"forward: {self.output}", self._forward_check)]
        if self.comm_forward:
            found.append(Check("forward: collectives", self._comm_check(backward=False)))
        found += [Check(f"backward: {g}", self._grad_check(i)) for i, g in enumerate(self.grads)]
        if self.comm_backward:
            found.append(Check("backward: collectives", self._comm_check(backward=True)))
        return tuple(found)
