"""Seed step 1: shape suffixes and einsum, and the NumPy shape rules of the appendix (sheets 01
and 90), each answered by NumPy itself on zero-cost arrays."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ref import einsum as ref_einsum
from ..ref.notation import LETTERS, split_suffix
from .core import (MAX_COPIES, MAX_OPERANDS, MAX_SHAPES, MAX_SIZE, MAX_STEPS, MAX_TEXT,
                   NUMPY_MAX_RANK, axes_arg, calc, check_elements, described, elements,
                   int_arg, new_shape_arg, shape_arg, shape_text, shown, table, text_arg,
                   zeros)


@table
def suffix_letters() -> list[list[str]]:
    """The suffix table: letter, meaning, and whether Shazeer's post defines it."""
    return [[f"[{e.letter}]{{.{e.family}}}", e.meaning + ("" if e.shazeer else " *(ours)*")]
            for e in LETTERS.values()]


@calc
def letter(name: str) -> str:
    if text_arg("the letter", name) not in LETTERS:
        raise ValueError(f"unknown suffix letter {name!r}; known: {', '.join(LETTERS)}")
    return LETTERS[name].meaning


MAX_EINSUM_RANK = 8  # letters in one tensor's suffix; attention's q_BLHK has 4


def _einsum_of(names: str) -> tuple[str, list[str], str]:
    """`"x_BLD, w_in_DF -> h_BLF"` → ("bld,df->blf", ["BLD", "DF"], "BLF"), checked by NumPy."""
    if not isinstance(names, str):
        raise ValueError(f"expected a string 'a_XY, b_YZ -> c_XZ', got {shown(names)}")
    lhs, arrow, rhs = text_arg("an einsum", names).partition("->")
    if lhs.count(",") >= MAX_OPERANDS:
        raise ValueError(f"{names!r} has {lhs.count(',') + 1} inputs; an einsum may have at "
                         f"most {MAX_OPERANDS}")
    suffixes = []
    for name in [*lhs.split(","), rhs]:
        parts = split_suffix(name.strip())
        if not arrow or parts is None:
            raise ValueError(f"expected 'a_XY, b_YZ -> c_XZ' with suffix letters, got {names!r}")
        if len(parts[1]) > MAX_EINSUM_RANK:
            raise ValueError(f"{name.strip()} has {len(parts[1])} suffix letters; an einsum "
                             f"tensor may have at most {MAX_EINSUM_RANK}")
        suffixes.append(parts[1])
    *inputs, output = suffixes
    spec = ",".join(s.lower() for s in inputs) + "->" + output.lower()
    # NumPy's einsum parser checks the spec (every output letter in an input, none twice) on
    # zero-stride operands of distinct sizes per letter: nothing is allocated, nothing computed.
    sizes = {c: i + 2 for i, c in enumerate(dict.fromkeys("".join(suffixes)))}
    operands = [np.broadcast_to(np.zeros(()), [sizes[c] for c in s]) for s in inputs]
    try:
        np.einsum_path(spec, *operands, optimize=False)
    except ValueError as error:
        raise ValueError(f"{names!r} is not a valid einsum ({spec}): {error}") from None
    return spec, inputs, output


@calc
def einsum_spec(names: str) -> str:
    return _einsum_of(names)[0]


@calc
def einsum_contracted(names: str) -> str:
    """The letters summed over (in an input, absent from the output), marked as contracted."""
    _, inputs, output = _einsum_of(names)
    summed = [c for c in dict.fromkeys("".join(inputs)) if c not in output]
    return " ".join(f"[{c}]{{.contract}}" for c in summed) or "none"


@calc
def einsum_flops_tex(names: str) -> str:
    """The same FLOP count as LaTeX for a formula block, letters coloured by family."""
    return r" \cdot ".join(["2", *(rf"\dim{{{c}}}" for c in einsum_flops(names).split("·")[1:])])


# Each idiom: einsum spec, the NumPy spelling shown, and a function computing that spelling.
_IDIOMS: list[tuple[str, str, Callable[..., np.ndarray]]] = [
    ("ij,jk->ik", "A @ B", lambda a, b: a @ b),
    ("i,i->", "a @ b (dot)", lambda a, b: a @ b),
    ("i,j->ij", "np.outer(a, b)", np.outer),
    ("ij->ji", "A.T", lambda a: a.T),
    ("ij->i", "A.sum(axis=1)", lambda a: a.sum(axis=1)),
    ("ii->i", "np.diag(A)", np.diag),
    ("ii->", "np.trace(A)", np.trace),
    ("ij,ij->ij", "A * B", lambda a, b: a * b),
]


@table
def einsum_idioms() -> list[list[str]]:
    """einsum next to its NumPy spelling, each pair checked equal on random arrays."""
    rng = np.random.default_rng(0)
    rows = []
    for spec, spelling, fn in _IDIOMS:
        inputs, _ = ref_einsum.parse(spec)
        n = 3 if any(len(set(t)) < len(t) for t in inputs) else None  # repeated index: square
        sizes = {c: n or 2 + i for i, c in enumerate(dict.fromkeys("".join(inputs)))}
        arrays = [rng.standard_normal([sizes[c] for c in term]) for term in inputs]
        if not np.allclose(np.einsum(spec, *arrays), fn(*arrays)):
            raise AssertionError(f"{spec} is not {spelling}")
        rows.append([f"`{spec}`", f"`{spelling}`"])
    return rows


def _primes(count: int) -> list[int]:
    primes: list[int] = []
    n = 2
    while len(primes) < count:
        if all(n % p for p in primes):
            primes.append(n)
        n += 1
    return primes


@calc
def einsum_flops(names: str) -> str:
    """2 × the product of every letter's size, as a formula, checked against the FLOP counter."""
    spec, inputs, output = _einsum_of(names)
    letters = list(dict.fromkeys("".join(inputs) + output))
    # A distinct prime per letter: the product names each letter exactly once, so a counter
    # that skipped or repeated a letter cannot agree by coincidence.
    sizes = {c.lower(): p for c, p in zip(letters, _primes(len(letters)), strict=True)}
    if ref_einsum.flops(spec, sizes) != 2 * math.prod(sizes.values()):
        raise ValueError(f"the FLOP counter disagrees with 2·{'·'.join(letters)} for {spec}")
    return "2·" + "·".join(letters)


# Appendix: NumPy broadcasting, matmul shapes, reshape -----------------------------------------


def _shapes(shapes: tuple[Any, ...]) -> tuple[tuple[int, ...], ...]:
    """Shapes to broadcast: at most `MAX_SHAPES`, and even their broadcast (each axis as long as
    its longest, an empty axis counted as 1) within what NumPy indexes."""
    if len(shapes) > MAX_SHAPES:
        raise ValueError(f"{len(shapes):,} shapes given; at most {MAX_SHAPES} broadcast together")
    shapes = tuple(map(shape_arg, shapes))
    rank = max(map(len, shapes), default=0)
    longest = [max(max(1, n) for n in column)
               for column in zip(*((1,) * (rank - len(s)) + s for s in shapes))]
    check_elements(math.prod(longest), "broadcasting " + ", ".join(map(described, shapes)),
                    MAX_SIZE, "NumPy indexes arrays of")
    return shapes


@calc
def broadcast(*shapes: tuple[int, ...]) -> str:
    return shape_text(np.broadcast_shapes(*_shapes(shapes)))


@calc
def broadcast_or_error(*shapes: tuple[int, ...]) -> str:
    """The broadcast shape, or which dimensions clash (read off NumPy's own refusal)."""
    shapes = _shapes(shapes)
    try:
        return shape_text(np.broadcast_shapes(*shapes))
    except ValueError:
        rank = max(map(len, shapes))
        padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
        clash = next(sizes for sizes in zip(*padded) if len({n for n in sizes if n != 1}) > 1)
        return "error: " + " vs ".join(str(n) for n in clash if n != 1)


@calc
def right_aligned(shape: tuple[int, ...], *others: tuple[int, ...]) -> str:
    """`shape` padded on the left with 1s to the rank of the longest: the first broadcast rule."""
    rank = max(len(s) for s in _shapes((shape, *others)))
    return " × ".join(map(str, (1,) * (rank - len(shape)) + tuple(shape)))


# Symbolic dims get distinct sizes; "..." stands for two extra leading dims.
_SYMBOL_SIZES = {"M": 2, "K": 3, "N": 5}
_ELLIPSIS = (7, 11)


def _symbolic(dims: str) -> np.ndarray:
    """`"... M K"` → a zero array of shape (7, 11, 2, 3): an optional leading `...`, then one
    to three of M, K, N (so the array stays tiny)."""
    words = dims.split() if isinstance(dims, str) and len(dims) <= MAX_TEXT else []
    batch = words[:1] == ["..."]
    letters = words[1:] if batch else words
    if not 1 <= len(letters) <= 3 or any(d not in _SYMBOL_SIZES for d in letters):
        raise ValueError(f"a matmul shape is an optional '...' then one to three of "
                         f"{', '.join(_SYMBOL_SIZES)}, like '... M K'; got {shown(dims)}")
    return np.zeros([*(_ELLIPSIS if batch else ()), *(_SYMBOL_SIZES[d] for d in letters)])


@calc
def matmul(a: str, b: str) -> str:
    """Result shape of `a @ b` for symbolic shapes like "... M K", computed by np.matmul."""
    shape = (_symbolic(a) @ _symbolic(b)).shape
    if not shape:
        return "scalar"
    names = {size: dim for dim, size in _SYMBOL_SIZES.items()}
    dims = []
    if shape[: len(_ELLIPSIS)] == _ELLIPSIS:
        dims, shape = ["..."], shape[len(_ELLIPSIS):]
    return " ".join(dims + [names[size] for size in shape])


@calc
def reshape(shape: tuple[int, ...], new: tuple[int, ...] | int) -> str:
    return shape_text(zeros(shape).reshape(new_shape_arg(new)).shape)


def _copy_count(n: Any) -> int:
    """Copies to stack or concatenate: at most `MAX_COPIES` whatever the array's size (an empty
    array's copies still cost a view each)."""
    return int_arg("the number of copies", n, 1, MAX_COPIES)


def _copies_and_axis(n_axis: Any) -> tuple[int, Any]:
    if not (isinstance(n_axis, tuple) and len(n_axis) == 2):
        raise ValueError(f"concatenate takes (copies, axis), like (2, 0); got {shown(n_axis)}")
    n, axis = n_axis
    if axis is not None:  # None: flattened first
        int_arg("the axis of concatenate", axis, -NUMPY_MAX_RANK, NUMPY_MAX_RANK - 1)
    return _copy_count(n), axis


def _copies(x: np.ndarray, n: int) -> list[np.ndarray]:
    check_elements(elements(x.shape) * n, f"{n} × {described(x.shape)}")
    return [x] * n


# The NumPy shape operations a sheet may chain: a check of the argument, run on every step
# before any array is built, then the operation on the array. None makes more elements than
# `new_shape_arg` and `_copies` allow, and none costs more than a pass over them; `sum` keeps one
# byte per element.
_SHAPE_OPS: dict[str, tuple[Callable[[Any], Any], Callable[[np.ndarray, Any], np.ndarray]]] = {
    "reshape": (new_shape_arg, lambda x, shape: x.reshape(shape)),
    "transpose": (functools.partial(axes_arg, "transpose"), lambda x, axes: x.transpose(axes)),
    "swapaxes": (functools.partial(axes_arg, "swapaxes", count=2),
                 lambda x, axes: np.swapaxes(x, *axes)),
    "expand_dims": (functools.partial(axes_arg, "expand_dims", every=False), np.expand_dims),
    "squeeze": (functools.partial(axes_arg, "squeeze"), np.squeeze),
    "sum": (functools.partial(axes_arg, "sum"), lambda x, axis: x.sum(axis=axis, dtype=x.dtype)),
    "stack": (_copy_count, lambda x, n: np.stack(_copies(x, n))),
    "concatenate": (_copies_and_axis,
                    lambda x, n_axis: np.concatenate(_copies(x, n_axis[0]), axis=n_axis[1])),
}


def _apply(shape: tuple[int, ...], steps: tuple[Any, ...]) -> np.ndarray:
    if len(steps) > 2 * MAX_STEPS:
        raise ValueError(f"{len(steps) // 2:,} steps given; at most {MAX_STEPS} chain together")
    if len(steps) % 2:
        raise ValueError("steps come in pairs: an operation's name, then its argument")
    checked = []
    for name, arg in zip(steps[::2], steps[1::2]):
        if not (isinstance(name, str) and name in _SHAPE_OPS):
            raise ValueError(f"unknown shape operation {shown(name)}; "
                             f"known: {', '.join(_SHAPE_OPS)}")
        check, run = _SHAPE_OPS[name]
        checked.append((run, check(arg)))
    x = zeros(shape)
    for run, arg in checked:
        x = run(x, arg)
    return x


@calc
def shape_after(shape: tuple[int, ...], *steps: Any) -> str:
    """Shape of a zero array of `shape` after NumPy operations, e.g. ('transpose', (1, 0))."""
    return shape_text(_apply(shape, steps).shape)


@calc
def contiguous(shape: tuple[int, ...], *steps: Any) -> str:
    """Whether the array is C-contiguous (what `view()` needs) after `steps`."""
    return "yes" if _apply(shape, steps).flags.c_contiguous else "no"


@calc
def reshape_is_view(shape: tuple[int, ...], new: tuple[int, ...] | int, *steps: Any) -> str:
    """Whether `reshape(new)`, after `steps`, returns a view (shares memory) or had to copy.
    A copy is a new buffer, so comparing the two arrays' memory bounds answers exactly and at
    once (`np.shares_memory` solves an integer program, which can take time exponential in the
    rank)."""
    new = new_shape_arg(new)
    x = _apply(shape, steps)
    return "view" if np.may_share_memory(x, x.reshape(new)) else "copy"


@calc
def size(shape: tuple[int, ...]) -> int:
    return math.prod(shape_arg(shape))
