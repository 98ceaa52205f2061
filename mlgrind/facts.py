"""The registered computations: every number or shape on a sheet or card comes from here.

YAML calls these by name, `${ calc.broadcast((9, 1, 3), (4, 1)) }`, and a table can take its
rows from a registered table, `rows_from: suffix_letters`. Nothing else is callable from YAML.
Each function computes with NumPy or the reference package (`mlgrind.ref`), never from a typed
answer.

Arguments come from YAML, so each function checks them and raises `ValueError` with a readable
reason naming the argument and its allowed range (the build reports it as "computation failed: …"
at the YAML line). Every bound is checked on the arguments before any work, so a computation's
cost follows from its arguments alone: integers in a range, shapes of at most `MAX_RANK` entries,
strings of at most `MAX_TEXT` characters, at most `MAX_SHAPES` shapes or `MAX_STEPS` chained
operations, at most `MAX_COPIES` copies. Checking a spec never costs real memory: einsum specs
are checked by NumPy's own parser on zero-stride operands, and the shape operations that need a
real array are capped at `MAX_ELEMENTS` one-byte elements, an empty axis counted as 1.
tests/test_costs.py runs every computation's worst legal arguments under a memory and time limit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np

from .ref import einsum as ref_einsum
from .ref.notation import LETTERS, split_suffix

CALC: dict[str, Callable[..., Any]] = {}
TABLES: dict[str, Callable[[], list[list[str]]]] = {}


def calc(fn: Callable[..., Any]) -> Callable[..., Any]:
    CALC[fn.__name__] = fn
    return fn


def table(fn: Callable[[], list[list[str]]]) -> Callable[[], list[list[str]]]:
    TABLES[fn.__name__] = fn
    return fn


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def int_text(n: int) -> str:
    """`1,048,576`; from 10^21 on, `1.000e+24`. Python refuses to print an integer of more than
    4,300 digits (and takes quadratic time below that), so a long one is never printed in full."""
    return f"{n:,}" if abs(n) < 10**21 else f"{Decimal(n):.4g}"


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` for a message: cut to `limit` characters, and an integer of 21 digits or
    more, alone or in a tuple or list, as its number of digits (Python refuses to print one of
    more than 4,300)."""
    if _is_int(value) and abs(value) >= 10**21:
        text = f"an integer of {math.floor(math.log10(abs(value))) + 1:,} digits"
    elif isinstance(value, tuple | list):
        items: list[str] = []
        for item in value:  # only as many as the message shows
            items.append(shown(item, limit))
            if sum(len(i) + 2 for i in items) > limit:
                break
        single = "," if isinstance(value, tuple) and len(value) == 1 else ""
        left, right = "[]" if isinstance(value, list) else "()"
        text = left + ", ".join(items) + single + right
    else:
        try:
            text = repr(value)
        except ValueError:  # e.g. a dict holding an integer too long to print
            text = f"a {type(value).__name__} holding an integer of more than 4,300 digits"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Bounds on the arguments, each checked before any work. --------------------------------------

MAX_SIZE = int(np.iinfo(np.intp).max)  # elements NumPy can index: a shape's dims and size
MAX_RANK = 32  # entries of a shape or a reshape target (NumPy allows 64)
NUMPY_MAX_RANK = 64  # what NumPy allows: an axis argument lies in -64..63
MAX_SHAPES = 8  # shapes broadcast or right-aligned together
MAX_STEPS = 8  # operations chained in shape_after, contiguous and reshape_is_view
MAX_COPIES = 1024  # copies stacked or concatenated: each is a Python object, even when empty
MAX_TEXT = 200  # characters of a string argument (an einsum of eight tensors fits)
MAX_OPERANDS = 8  # tensors in one einsum
# Reshape, transpose and the rest run on a real array, since whether the result is contiguous
# or a view depends on its strides. One byte per element, and never more than this many.
MAX_ELEMENTS = 1 << 24


def _int(name: str, value: Any, low: int, high: int) -> int:
    if not (_is_int(value) and low <= value <= high):
        allowed = (f"a positive integer up to {high:,}" if low == 1 else
                   f"an integer from {low:,} to {high:,}")
        raise ValueError(f"{name} must be {allowed}, got {shown(value)}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {shown(value)}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} has {len(value):,} characters; at most {MAX_TEXT} are allowed")
    return value


def _elements(dims: tuple[int, ...]) -> int:
    """Elements of an array with these dims, an empty axis counted as 1: what an operation on
    it may make (summing shape (0, 10**9) over its first axis gives 10**9 zeros)."""
    return math.prod(max(1, n) for n in dims)


def _described(shape: tuple[int, ...]) -> str:
    """A shape for a message about its elements, which says how an empty axis counts."""
    return shown(shape) + (" (an empty axis counted as 1)" if 0 in shape else "")


def _check_elements(count: int, what: str, limit: int = MAX_ELEMENTS,
                    within: str = "shape operations are checked on arrays of") -> None:
    if count > limit:
        raise ValueError(f"{what} has {int_text(count)} elements; {within} at most {limit:,}")


def _shape(value: Any) -> tuple[int, ...]:
    """A shape argument, checked: a tuple of at most `MAX_RANK` non-negative integers such as
    `(2, 3)` or `(4,)`, with at most `MAX_SIZE` elements (an empty axis counted as 1)."""
    if not (isinstance(value, tuple) and len(value) <= MAX_RANK
            and all(_is_int(n) and 0 <= n <= MAX_SIZE for n in value)):
        many = isinstance(value, tuple) and len(value) > MAX_RANK
        raise ValueError(f"a shape is a tuple of non-negative integers like (2, 3) or (4,), "
                         f"with at most {MAX_RANK} entries, each at most {MAX_SIZE:,}; got "
                         + (f"{len(value):,} entries" if many else shown(value)))
    _check_elements(_elements(value), _described(value), MAX_SIZE, "NumPy indexes arrays of")
    return value


def _new_shape(value: Any) -> int | tuple[int, ...]:
    """A reshape target: an integer or a tuple of at most `MAX_RANK` integers, one of them may
    be -1 (inferred), with at most `MAX_ELEMENTS` elements (-1 and empty axes counted as 1)."""
    dims = value if isinstance(value, tuple) else (value,)
    if not (len(dims) <= MAX_RANK and all(_is_int(n) and -1 <= n <= MAX_SIZE for n in dims)):
        raise ValueError(f"a new shape is an integer or a tuple of integers (-1: inferred), "
                         f"at most {MAX_RANK} of them, each from -1 to {MAX_SIZE:,}; got "
                         + (f"{len(dims):,} entries" if len(dims) > MAX_RANK else shown(value)))
    _check_elements(_elements(dims), f"the new shape {_described(dims)}")
    return value


def _axes(name: str, value: Any, count: int | None = None, every: bool = True) -> Any:
    """An axis argument: an integer from -64 to 63, a tuple of them, or None (every axis, where
    `every`); exactly `count` integers when given (swapaxes takes two)."""
    if value is None and every and count is None:
        return value
    axes = value if isinstance(value, tuple) else (value,)
    fits = len(axes) == count if count else len(axes) <= NUMPY_MAX_RANK
    if not (fits and all(_is_int(a) and -NUMPY_MAX_RANK <= a < NUMPY_MAX_RANK for a in axes)):
        what = (f"a tuple of {count} axes" if count else
                "an axis, a tuple of axes or None" if every else "an axis or a tuple of axes")
        raise ValueError(f"{name} takes {what}, each an integer from {-NUMPY_MAX_RANK} to "
                         f"{NUMPY_MAX_RANK - 1}; got {shown(value)}")
    return value


def _zeros(shape: Any) -> np.ndarray:
    shape = _shape(shape)
    _check_elements(_elements(shape), _described(shape))
    return np.zeros(shape, dtype=np.uint8)


# Seed step 1: shape suffixes and einsum ----------------------------------------------------------


@table
def suffix_letters() -> list[list[str]]:
    """The suffix table: letter, meaning, and whether Shazeer's post defines it."""
    return [[f"[{e.letter}]{{.{e.family}}}", e.meaning + ("" if e.shazeer else " *(ours)*")]
            for e in LETTERS.values()]


@calc
def letter(name: str) -> str:
    if _text("the letter", name) not in LETTERS:
        raise ValueError(f"unknown suffix letter {name!r}; known: {', '.join(LETTERS)}")
    return LETTERS[name].meaning


MAX_EINSUM_RANK = 8  # letters in one tensor's suffix; attention's q_BLHK has 4


def _einsum_of(names: str) -> tuple[str, list[str], str]:
    """`"x_BLD, w_in_DF -> h_BLF"` → ("bld,df->blf", ["BLD", "DF"], "BLF"), checked by NumPy."""
    if not isinstance(names, str):
        raise ValueError(f"expected a string 'a_XY, b_YZ -> c_XZ', got {shown(names)}")
    lhs, arrow, rhs = _text("an einsum", names).partition("->")
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
    shapes = tuple(map(_shape, shapes))
    rank = max(map(len, shapes), default=0)
    longest = [max(max(1, n) for n in column)
               for column in zip(*((1,) * (rank - len(s)) + s for s in shapes))]
    _check_elements(math.prod(longest), "broadcasting " + ", ".join(map(_described, shapes)),
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
    return shape_text(_zeros(shape).reshape(_new_shape(new)).shape)


def _copy_count(n: Any) -> int:
    """Copies to stack or concatenate: at most `MAX_COPIES` whatever the array's size (an empty
    array's copies still cost a view each)."""
    return _int("the number of copies", n, 1, MAX_COPIES)


def _copies_and_axis(n_axis: Any) -> tuple[int, Any]:
    if not (isinstance(n_axis, tuple) and len(n_axis) == 2):
        raise ValueError(f"concatenate takes (copies, axis), like (2, 0); got {shown(n_axis)}")
    n, axis = n_axis
    if axis is not None:  # None: flattened first
        _int("the axis of concatenate", axis, -NUMPY_MAX_RANK, NUMPY_MAX_RANK - 1)
    return _copy_count(n), axis


def _copies(x: np.ndarray, n: int) -> list[np.ndarray]:
    _check_elements(_elements(x.shape) * n, f"{n} × {_described(x.shape)}")
    return [x] * n


# The NumPy shape operations a sheet may chain: a check of the argument, run on every step
# before any array is built, then the operation on the array. None makes more elements than
# `_new_shape` and `_copies` allow, and none costs more than a pass over them; `sum` keeps one
# byte per element.
_SHAPE_OPS: dict[str, tuple[Callable[[Any], Any], Callable[[np.ndarray, Any], np.ndarray]]] = {
    "reshape": (_new_shape, lambda x, shape: x.reshape(shape)),
    "transpose": (functools.partial(_axes, "transpose"), lambda x, axes: x.transpose(axes)),
    "swapaxes": (functools.partial(_axes, "swapaxes", count=2),
                 lambda x, axes: np.swapaxes(x, *axes)),
    "expand_dims": (functools.partial(_axes, "expand_dims", every=False), np.expand_dims),
    "squeeze": (functools.partial(_axes, "squeeze"), np.squeeze),
    "sum": (functools.partial(_axes, "sum"), lambda x, axis: x.sum(axis=axis, dtype=x.dtype)),
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
    x = _zeros(shape)
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
    new = _new_shape(new)
    x = _apply(shape, steps)
    return "view" if np.may_share_memory(x, x.reshape(new)) else "copy"


@calc
def size(shape: tuple[int, ...]) -> int:
    return math.prod(_shape(shape))


# Tables computed by running the reference code -------------------------------------------------

# A table runs the reference code on real arrays: each array at most this many float64s (8 MiB).
MAX_TABLE_ELEMENTS = 1 << 20


@table
def mlp_flops_table(B: int = 8, D: int = 16, F: int = 64) -> list[list[str]]:
    """Each matmul of the 2-layer MLP, forward then backward, with the FLOPs counted while the
    reference code (`ref.mlp`) ran it on arrays of these sizes; then each pass's total.
    B·D, D·F and B·F are each at most `MAX_TABLE_ELEMENTS`, so B·D·F ≤ 2^30: ~0.5 s."""
    from .ref import mlp

    for name, n in (("B", B), ("D", D), ("F", F)):
        _int(name, n, 1, MAX_TABLE_ELEMENTS)
    _check_elements(max(B * D, D * F, B * F), f"B·D, D·F or B·F with B={B}, D={D}, F={F}",
                    MAX_TABLE_ELEMENTS, "a table runs the reference code on arrays of")
    rng = np.random.default_rng(0)
    x_BD, w_in_DF, w_out_FD = (rng.standard_normal(s) for s in ((B, D), (D, F), (F, D)))
    with ref_einsum.count_flops() as forward:
        y_BD, saved = mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with ref_einsum.count_flops() as backward:
        mlp.mlp_backward(mlp.l2_loss(y_BD, np.zeros_like(y_BD))[1], saved)
    rows = [[name, f"`{spec}`", f"{count:,}"] for name, counter in
            (("forward", forward), ("backward", backward)) for spec, count in counter.by_spec.items()]
    ratio = backward.total / forward.total
    return rows + [["**forward total**", "", f"**{forward.total:,}**"],
                   ["**backward total**", "", f"**{backward.total:,}** (= {ratio:g} × forward)"]]


_DTYPES = {"bf16": np.float16, "fp16": np.float16, "fp32": np.float32, "fp8": np.uint8}


def _size(n: float) -> str:
    """Bytes for people: 1,536 B, 12 KiB, 3.5 MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,.0f} B"


@table
def collective_table(ranks: int = 4, shape: tuple[int, ...] = (1024, 1024),
                     dtype: str = "bf16") -> list[list[str]]:
    """Each collective on a tensor T of `shape`, run by the simulated communicator
    (`ref.collectives.Comm`) across `ranks` ranks: what each rank holds before and after, the
    steps, and the bytes the busiest rank sent (read off the communicator's ledger)."""
    from .ref.collectives import Comm, shard

    _int("ranks", ranks, 2, 16)
    if _text("dtype", dtype) not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    shape = _shape(shape)
    if not shape or shape[0] % ranks:
        raise ValueError(f"the first axis of {shape_text(shape)} must split evenly over {ranks} ranks")
    _check_elements(_elements(shape) * ranks, f"{ranks} ranks × {_described(shape)}",
                    within="a table runs the collectives on")
    t = np.ones(shape, dtype=_DTYPES[dtype])
    block = shard(t, ranks)[0].shape
    full, part = shape_text(shape), shape_text(block)
    runs = [("all-reduce", full, full, lambda c: c.all_reduce([t] * ranks)),
            ("reduce-scatter", full, part, lambda c: c.reduce_scatter([t] * ranks)),
            ("all-gather", part, full, lambda c: c.all_gather(shard(t, ranks))),
            ("all-to-all", full, full, lambda c: c.all_to_all([shard(t, ranks)] * ranks)),
            ("broadcast", f"{full} on one", full, lambda c: c.broadcast(t))]
    rows = []
    for name, before, after, run in runs:
        comm = Comm(ranks)
        run(comm)
        (record,) = comm.log
        role = "p2p" if name == "broadcast" else name
        rows.append([f"[{name}]{{.{role}}}", before, after, str(record.steps),
                     _size(max(record.sent))])
    return rows
