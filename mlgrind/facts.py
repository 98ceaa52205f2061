"""The registered computations: every number or shape on a sheet or card comes from here.

YAML calls these by name, `${ calc.broadcast((9, 1, 3), (4, 1)) }`, and a table can take its
rows from a registered table, `rows_from: suffix_letters`. Nothing else is callable from YAML.
Each function computes with NumPy or the reference package (`mlgrind.ref`), never from a typed
answer.

Arguments come from YAML, so each function checks them and raises `ValueError` with a readable
reason (the build reports it as "computation failed: …" at the YAML line). Checking a spec never
costs real memory: einsum specs are checked by NumPy's own parser on zero-stride operands, and
the shape operations that need a real array are capped at `MAX_ELEMENTS` one-byte elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(value: Any) -> tuple[int, ...]:
    """A shape argument, checked: a tuple of non-negative integers such as `(2, 3)` or `(4,)`."""
    if not (isinstance(value, tuple) and all(_is_int(n) and n >= 0 for n in value)):
        raise ValueError(f"a shape is a tuple of non-negative integers like (2, 3) or (4,), "
                         f"got {value!r}")
    return value


def _new_shape(value: Any) -> int | tuple[int, ...]:
    """A reshape target: an integer or a tuple of integers, one of them may be -1."""
    if not (_is_int(value) or isinstance(value, tuple) and all(map(_is_int, value))):
        raise ValueError(f"a new shape is an integer or a tuple of integers (-1: inferred), "
                         f"got {value!r}")
    return value


# Reshape, transpose and the rest run on a real array, since whether the result is contiguous
# or a view depends on its strides. One byte per element, and never more than this many.
MAX_ELEMENTS = 1 << 24


def _check_elements(count: int, shape: Any) -> None:
    if count > MAX_ELEMENTS:
        raise ValueError(f"{shape} has {count:,} elements; shape operations are checked on "
                         f"arrays of at most {MAX_ELEMENTS:,}")


def _zeros(shape: Any) -> np.ndarray:
    shape = _shape(shape)
    _check_elements(math.prod(shape), shape_text(shape))
    return np.zeros(shape, dtype=np.uint8)


# Seed step 1: shape suffixes and einsum ----------------------------------------------------------


@table
def suffix_letters() -> list[list[str]]:
    """The suffix table: letter, meaning, and whether Shazeer's post defines it."""
    return [[f"[{e.letter}]{{.{e.family}}}", e.meaning + ("" if e.shazeer else " *(ours)*")]
            for e in LETTERS.values()]


@calc
def letter(name: str) -> str:
    if name not in LETTERS:
        raise ValueError(f"unknown suffix letter {name!r}; known: {', '.join(LETTERS)}")
    return LETTERS[name].meaning


MAX_EINSUM_RANK = 8  # letters in one tensor's suffix; attention's q_BLHK has 4


def _einsum_of(names: str) -> tuple[str, list[str], str]:
    """`"x_BLD, w_in_DF -> h_BLF"` → ("bld,df->blf", ["BLD", "DF"], "BLF"), checked by NumPy."""
    if not isinstance(names, str):
        raise ValueError(f"expected a string 'a_XY, b_YZ -> c_XZ', got {names!r}")
    lhs, arrow, rhs = names.partition("->")
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


@calc
def broadcast(*shapes: tuple[int, ...]) -> str:
    return shape_text(np.broadcast_shapes(*map(_shape, shapes)))


@calc
def broadcast_or_error(*shapes: tuple[int, ...]) -> str:
    """The broadcast shape, or which dimensions clash (read off NumPy's own refusal)."""
    shapes = tuple(map(_shape, shapes))
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
    rank = max(len(_shape(s)) for s in (shape, *others))
    return " × ".join(map(str, (1,) * (rank - len(shape)) + tuple(shape)))


# Symbolic dims get distinct sizes; "..." stands for two extra leading dims.
_SYMBOL_SIZES = {"M": 2, "K": 3, "N": 5}
_ELLIPSIS = (7, 11)


def _symbolic(dims: str) -> np.ndarray:
    """`"... M K"` → a zero array of shape (7, 11, 2, 3): an optional leading `...`, then one
    to three of M, K, N (so the array stays tiny)."""
    words = dims.split() if isinstance(dims, str) else []
    batch = words[:1] == ["..."]
    letters = words[1:] if batch else words
    if not 1 <= len(letters) <= 3 or any(d not in _SYMBOL_SIZES for d in letters):
        raise ValueError(f"a matmul shape is an optional '...' then one to three of "
                         f"{', '.join(_SYMBOL_SIZES)}, like '... M K'; got {dims!r}")
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


def _copies(x: np.ndarray, n: Any) -> list[np.ndarray]:
    """`n` copies of `x` to stack or concatenate, within the element budget."""
    if not (_is_int(n) and n >= 1):
        raise ValueError(f"the number of copies is a positive integer, got {n!r}")
    _check_elements(x.size * n, f"{n} × {shape_text(x.shape)}")
    return [x] * n


# The NumPy shape operations a sheet may chain, each taking an array and one argument. None
# makes more elements than `_copies` allows; `sum` keeps one byte per element.
_SHAPE_OPS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "reshape": lambda x, shape: x.reshape(_new_shape(shape)),
    "transpose": lambda x, axes: x.transpose(axes),
    "swapaxes": lambda x, axes: np.swapaxes(x, *axes),
    "expand_dims": lambda x, axis: np.expand_dims(x, axis),
    "squeeze": lambda x, axis: np.squeeze(x, axis),
    "sum": lambda x, axis: x.sum(axis=axis, dtype=x.dtype),
    "stack": lambda x, n: np.stack(_copies(x, n)),
    "concatenate": lambda x, n_axis: np.concatenate(_copies(x, n_axis[0]), axis=n_axis[1]),
}


def _apply(shape: tuple[int, ...], steps: tuple[Any, ...]) -> np.ndarray:
    if len(steps) % 2:
        raise ValueError("steps come in pairs: an operation's name, then its argument")
    x = _zeros(shape)
    for name, arg in zip(steps[::2], steps[1::2]):
        if name not in _SHAPE_OPS:
            raise ValueError(f"unknown shape operation {name!r}; known: {', '.join(_SHAPE_OPS)}")
        x = _SHAPE_OPS[name](x, arg)
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
    """Whether `reshape(new)`, after `steps`, returns a view (shares memory) or had to copy."""
    x = _apply(shape, steps)
    return "view" if np.shares_memory(x, x.reshape(_new_shape(new))) else "copy"


@calc
def size(shape: tuple[int, ...]) -> int:
    return math.prod(_shape(shape))


# Tables computed by running the reference code -------------------------------------------------

# A table runs the reference code on real arrays: small enough to build in milliseconds.
MAX_TABLE_ELEMENTS = 1 << 20


def _dims(**sizes: Any) -> dict[str, int]:
    for name, n in sizes.items():
        if not (_is_int(n) and n >= 1):
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return sizes


@table
def mlp_flops_table(B: int = 8, D: int = 16, F: int = 64) -> list[list[str]]:
    """Each matmul of the 2-layer MLP, forward then backward, with the FLOPs counted while the
    reference code (`ref.mlp`) ran it on arrays of these sizes; then each pass's total."""
    from .ref import mlp

    _dims(B=B, D=D, F=F)
    _check_elements(max(B * D, D * F, B * F), f"B={B}, D={D}, F={F}")
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

    if not (_is_int(ranks) and 2 <= ranks <= 16):
        raise ValueError(f"ranks must be an integer from 2 to 16, got {ranks!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    shape = _shape(shape)
    if not shape or shape[0] % ranks:
        raise ValueError(f"the first axis of {shape_text(shape)} must split evenly over {ranks} ranks")
    _check_elements(math.prod(shape) * ranks, f"{ranks} × {shape_text(shape)}")
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
