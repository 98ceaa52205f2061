"""Compare a learner's result with the reference's, and say what is wrong in words that teach.

Every message names the output (`d_w_out_FD`), reads the expected shape off its suffix
(`(F=6, D=4)`), and for wrong values points at the first mismatch (index and both values), the
slice where the mismatches live (`only where l ∈ {0, 1, 2}`), and shapes of error that have a
cause: transposed, negated, scaled by a constant, a missing or an extra sum.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from types import ModuleType

import numpy as np

from mlgrind.ref.collectives import Comm, Record
from mlgrind.ref.notation import LETTERS

ATOL, RTOL = 1e-8, 1e-6  # float64 throughout; a correct implementation lands near 1e-15

# A symptom is a test on the learner's value and the sentence to print when it holds (or a
# function of the value that writes it, when the sentence names where the value went wrong).
Symptom = tuple[Callable[[np.ndarray], bool], str | Callable[[np.ndarray], str]]


class Mismatch(AssertionError):
    """A check failed; the message is meant for the learner, so no traceback goes with it."""


def letters(name: str) -> str:
    """The suffix of the tensor a label starts with: `d_w_out_FD_ranks[2]` → `FD`,
    `y_BLD from f(x_BLD)` → `BLD`; '' when it has none."""
    head = name.split(" ", 1)[0]
    found = [m for m in re.findall(r"_([A-Z]+)(?=_|\b)", head) if all(c in LETTERS for c in m)]
    return found[-1] if found else ""


def dims(name: str, shape: Sequence[int]) -> str:
    """`(F=6, D=4)` when the name's suffix has one letter per axis, else the bare shape."""
    suffix = letters(name)
    if len(suffix) != len(shape):
        return str(tuple(shape))
    return "(" + ", ".join(f"{c}={n}" for c, n in zip(suffix, shape)) + ")"


def at(name: str, index: Sequence[int]) -> str:
    """`[f=2, d=0]`: an index with each position labelled by its (lower-case) letter."""
    suffix = letters(name).lower()
    if len(suffix) != len(index):
        return "[" + ", ".join(str(int(i)) for i in index) + "]"
    return "[" + ", ".join(f"{c}={int(i)}" for c, i in zip(suffix, index)) + "]"


def function(module: ModuleType, name: str) -> Callable:
    """The learner's function `name`, or a message saying the contract needs it."""
    found = getattr(module, name, None)
    if not callable(found):
        raise Mismatch(
            f"{module.__name__.rpartition('.')[2]}.py has no function {name}(); "
            f"the contract asks for it (restore it from the scaffold)"
        )
    return found


def parts(result: object, names: Sequence[str], function_name: str) -> tuple:
    """Unpack a returned tuple, or say what the contract promised instead."""
    promised = "(" + ", ".join(names) + ")"
    if not isinstance(result, tuple | list) or len(result) != len(names):
        got = (
            f"a {type(result).__name__} of length {len(result)}"
            if isinstance(result, tuple | list)
            else describe(result)
        )
        raise Mismatch(f"{function_name} must return {promised}; it returned {got}")
    return tuple(result)


def describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return "None (a missing `return`?)" if value is None else f"a {type(value).__name__}"


def _per_rank_list(name: str, got: list | tuple, expected: np.ndarray) -> str:
    """What to say when a list of arrays, each of the expected shape, came back where one array
    was asked for: almost always a collective's per-rank result returned whole."""
    n = len(got)
    if n == 1:
        return f"{name}: returned a list holding one array where the array itself is expected"
    said = (
        f"{name}: returned a list of {n} arrays (one per rank) where one array of shape "
        f"{dims(name, expected.shape)} is expected"
    )
    if all(np.array_equal(g, got[0], equal_nan=True) for g in got):
        return said + ": every rank holds the same one, take any rank's, e.g. [0]"
    return said + "; the ranks' arrays differ, so they still need combining through comm"


def _as_array(name: str, got: object, expected: np.ndarray) -> np.ndarray:
    if (
        isinstance(got, list | tuple)
        and got
        and all(isinstance(g, np.ndarray) and g.shape == expected.shape for g in got)
    ):
        raise Mismatch(_per_rank_list(name, got, expected))
    if got is None:
        raise Mismatch(
            f"{name}: expected an array of shape {dims(name, expected.shape)}, "
            f"got None (a missing `return`?)"
        )
    try:
        array = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        raise Mismatch(
            f"{name}: expected an array of shape {dims(name, expected.shape)}, got {describe(got)}"
        ) from None
    return array


def _close(got: np.ndarray, expected: np.ndarray) -> bool:
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=ATOL, rtol=RTOL))


def _factor(c: float) -> str:
    """A constant factor in words: 1/3, 2, √4 … (causes are usually one of these)."""
    for value, show in ((c, ""), (c * c, "√")):
        fraction = Fraction(value).limit_denominator(64)
        if abs(float(fraction) - value) < 1e-9 * max(1.0, abs(value)):
            return (
                f"{show}({fraction})" if show and fraction.denominator != 1 else f"{show}{fraction}"
            )
    return f"{c:.6g}"


def _shape_advice(name: str, got: np.ndarray, expected: np.ndarray) -> str:
    """Why the shapes differ, when the right numbers are in there."""
    suffix = letters(name).lower()
    if got.size == expected.size and got.ndim == expected.ndim:
        for perm in itertools.permutations(range(got.ndim)):
            if _close(np.transpose(got, perm), expected):
                if len(suffix) != got.ndim:
                    return " It holds the right numbers with the axes in another order."
                yours = [""] * got.ndim
                for i, p in enumerate(perm):
                    yours[p] = suffix[i]
                return (
                    f" It holds the right numbers with the axes in the order "
                    f"'{''.join(yours)}'; {name} asks for '{suffix}': read the output letters "
                    f"off the name."
                )
    if got.ndim + 1 == expected.ndim:
        for axis in range(expected.ndim):
            if _close(got, expected.sum(axis=axis)):
                which = f"'{suffix[axis]}'" if len(suffix) == expected.ndim else f"axis {axis}"
                return (
                    f" It equals the expected value summed over {which}: that letter is in "
                    f"the output's name, so it must not be summed away."
                )
    if got.ndim == expected.ndim + 1:
        for axis in range(got.ndim):
            if _close(got.sum(axis=axis), expected):
                return (
                    f" Summed over its axis {axis} it is right: a letter that is not in the "
                    f"output's name must be summed (contracted) away."
                )
    return ""


def _where_wrong(name: str, bad: np.ndarray) -> list[str]:
    """For each labelled axis on which only some positions are wrong, say which."""
    suffix = letters(name).lower()
    if len(suffix) != bad.ndim:
        return []
    notes = []
    for axis, c in enumerate(suffix):
        others = tuple(i for i in range(bad.ndim) if i != axis)
        wrong = np.flatnonzero(bad.any(axis=others)) if others else np.flatnonzero(bad)
        if 0 < len(wrong) < bad.shape[axis]:
            right = sorted(set(range(bad.shape[axis])) - set(wrong.tolist()))
            notes.append(
                f"wrong only where {c} ∈ {{{', '.join(map(str, wrong))}}}; "
                f"right for {c} ∈ {{{', '.join(map(str, right))}}}"
            )
    return notes


def expect_array(
    name: str, got: object, expected: np.ndarray, symptoms: Sequence[Symptom] = ()
) -> None:
    """Pass if got equals expected (shape and values, float64 tolerance), else teach."""
    expected = np.asarray(expected, dtype=float)
    array = _as_array(name, got, expected)
    if array.shape != expected.shape:
        raise Mismatch(
            f"{name}: expected shape {dims(name, expected.shape)}, got {array.shape}."
            + _shape_advice(name, array, expected)
        )
    if _close(array, expected):
        return
    lines = []
    if not np.all(np.isfinite(array)):
        index = tuple(np.argwhere(~np.isfinite(array))[0])
        lines.append(f"{name} holds nan or inf, first at {at(name, index)}: {array[index]}")
    bad = ~np.isclose(array, expected, atol=ATOL, rtol=RTOL)
    index = tuple(np.argwhere(bad)[0])
    lines.append(
        f"{name}: {bad.sum()} of {bad.size} entries differ; the first at "
        f"{at(name, index)}: expected {expected[index] + 0.0:.6g}, "  # + 0.0: no "-0"
        f"got {array[index] + 0.0:.6g}"
    )
    lines += _where_wrong(name, bad)
    with np.errstate(all="ignore"):  # nan or inf in the learner's array: no scale to find
        scale = (
            float(np.vdot(array, expected) / np.vdot(expected, expected)) if expected.any() else 0
        )
    if array.ndim == 2 and array.shape[0] == array.shape[1] and _close(array.T, expected):
        lines.append("it is the expected value transposed")
    elif np.isfinite(scale) and scale != 0 and _close(array, scale * expected):
        lines.append(
            "every entry is minus the expected one: a sign is flipped"
            if abs(scale + 1) < 1e-9
            else f"every entry is the expected one × {_factor(scale)}: a constant "
            f"factor is missing or extra"
        )
    elif np.all(np.isfinite(array)) and np.ptp(array - expected) < ATOL:  # e.g. a stray + 1
        lines.append(
            f"every entry is off by the same amount, {float(np.mean(array - expected)):+.6g}"
        )
    for test, sentence in symptoms:
        try:
            holds = test(array)
        except Exception:  # noqa: BLE001 - advice only; it must not hide the mismatch itself
            holds = False
        if holds:
            lines.append(sentence(array) if callable(sentence) else sentence)
    raise Mismatch("\n".join(lines))


def expect_ranks(
    name: str, got: object, expected: Sequence[np.ndarray], symptoms: Sequence[Symptom] = ()
) -> None:
    """A per-rank list: one array per rank, each checked like expect_array as `name[s]`."""
    if isinstance(got, np.ndarray):
        raise Mismatch(_one_array(name, got, expected))
    if not isinstance(got, list | tuple) or len(got) != len(expected):
        raise Mismatch(
            f"{name}: expected a list of {len(expected)} arrays, one per rank; "
            f"got {describe(got) if not isinstance(got, list | tuple) else len(got)}"
        )
    for s, (g, e) in enumerate(zip(got, expected)):
        expect_array(f"{name}[{s}]", g, e, symptoms)


def _one_array(name: str, got: np.ndarray, expected: Sequence[np.ndarray]) -> str:
    """What to say when one array came back where a per-rank list was asked for."""
    S = len(expected)
    said = (
        f"{name}: returned one array of shape {got.shape} where a list of {S} arrays "
        f"(one per rank) is expected"
    )
    for axis in range(got.ndim):
        if got.shape[axis] >= S and all(
            _close(block, e) for block, e in zip(np.array_split(got, S, axis=axis), expected)
        ):
            return (
                f"{said}: it holds every rank's block joined along axis {axis}; rank s keeps "
                f"only its own, block s of np.array_split(…, {S}, axis={axis})"
            )
    if all(_close(got, e) for e in expected):
        return f"{said}: every rank holds this same array, so return a list of {S} of it"
    return said


def _calls(log: list[Record], named: bool) -> list[str]:
    lines = []
    for r in log:
        label = r.tag if named and letters(r.tag) else ""
        if len(set(r.shapes)) == 1:
            shapes = f"{label} {dims(label, r.shapes[0])} on every rank".strip()
        else:
            shapes = "per-rank blocks " + ", ".join(dims(label, s) for s in r.shapes)
            shapes = f"{label} {shapes}".strip() if label else shapes
        moved = f"; each rank sends {max(r.sent)} B" if named else ""
        lines.append(f"    {r.collective}: {shapes}{moved}")
    return lines


def _bytes_per_rank(comm: Comm) -> str:
    """What each rank sends over the whole call: one number when the ranks agree, else their
    mean and each rank's (uneven blocks make ring ranks send slightly different amounts)."""
    sent = comm.sent
    if len(set(sent)) == 1:
        return f"{sent[0]} B per rank"
    mean = f"{sum(sent) / len(sent):.1f}".removesuffix(".0")
    return f"{mean} B per rank on average ({', '.join(map(str, sent))})"


OUTSIDE_COMM = (
    "Adding up or concatenating the ranks' arrays in Python is free in this simulation; on "
    "real GPUs each rank holds only its own, and combining them is a collective that moves "
    "bytes: call it on comm."
)


def expect_collectives(
    what: str,
    comm: Comm,
    reference: Comm,
    fewer_ok: bool = False,
    same_sequence: bool = False,
) -> None:
    """The learner's collectives send, in total over the ranks, the bytes the reference's send.
    Which collectives, in which order, on which shapes, is the learner's choice (a
    reduce_scatter then an all_gather is an all_reduce; the results are checked separately);
    sending more fails. Sending fewer fails too unless fewer_ok: where the reference's sequence
    is the least data that must move, fewer bytes mean some ranks' arrays met outside comm.
    same_sequence: the reference's calls exactly (kind, per-rank shapes, order), for a scaffold
    that says which sequence it requires and why."""
    mine, theirs = sum(comm.sent), sum(reference.sent)
    if same_sequence:
        calls = [(r.collective, r.shapes) for r in comm.log]
        if calls == [(r.collective, r.shapes) for r in reference.log]:
            return
    elif mine == theirs or (fewer_ok and 0 < mine < theirs):
        return
    n = len(reference.log)
    you = f"you send {_bytes_per_rank(comm)}, the reference sends {_bytes_per_rank(reference)}"
    dtypes = {r.dtype for r in comm.log} - {r.dtype for r in reference.log}
    if not comm.log:
        why = f"you made no collective call. {OUTSIDE_COMM}"
    elif dtypes and not same_sequence:
        why = (
            f"{you}: your arrays are {', '.join(sorted(dtypes))}, the reference's "
            f"{', '.join(sorted({r.dtype for r in reference.log}))}; a collective moves elements "
            f"× the dtype's size: keep the inputs' dtype."
        )
    elif same_sequence:
        why = f"{you}; the scaffold asks for the reference's sequence of collectives, in order."
    elif mine > theirs:
        why = (
            f"{you}: any sequence of collectives that sends the same bytes passes (a "
            f"reduce_scatter then an all_gather is an all_reduce); yours sends more."
        )
    else:
        why = (
            f"{you}: less than the data that must move, so some ranks' arrays were combined "
            f"outside comm. {OUTSIDE_COMM}"
        )
    lines = [
        f"{what} (S={comm.size} ranks): {why}",
        f"  the reference makes {n} collective call{'s' * (n != 1)}:",
        *_calls(reference.log, named=True),
    ]
    if comm.log:
        lines += [f"  you made {len(comm.log)}:", *_calls(comm.log, named=False)]
    raise Mismatch("\n".join(lines))
