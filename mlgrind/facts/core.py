"""The registries and the argument bounds every registered computation checks.

Arguments come from YAML, so each function checks them and raises `ValueError` with a readable
reason naming the argument and its allowed range (the build reports it as "computation failed: …"
at the YAML line). Every bound is checked on the arguments before any work, so a computation's
cost follows from its arguments alone: integers in a range, shapes of at most `MAX_RANK` entries,
strings of at most `MAX_TEXT` characters, at most `MAX_SHAPES` shapes or `MAX_STEPS` chained
operations, at most `MAX_COPIES` copies. Checking a spec never costs real memory: einsum specs
are checked by NumPy's own parser on zero-stride operands, and the shape operations that need a
real array are capped at `MAX_ELEMENTS` one-byte elements, an empty axis counted as 1.
Each registration names its worst legal arguments, spelled as a sheet writes them
(`worst=["size((3,) * 32)"]`); tests/test_costs.py runs them all under a memory and time limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np

CALC: dict[str, Callable[..., Any]] = {}  # `${ calc.NAME(…) }`: a value for a text
TABLES: dict[str, Callable[..., list[list[str]]]] = {}  # `rows_from: NAME(…)`: a table's rows
WORST: dict[str, list[str]] = {}  # NAME → its costliest legal calls, as a sheet writes them


def _register(registry: dict[str, Callable[..., Any]], worst: list[str] | None):
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if fn.__name__ in CALC or fn.__name__ in TABLES:  # one name, one computation
            raise ValueError(f"{fn.__module__}.{fn.__name__} is already registered")
        registry[fn.__name__] = fn
        if worst is not None:
            WORST[fn.__name__] = worst
        return fn
    return register


def calc(fn: Callable[..., Any] | None = None, *, worst: list[str] | None = None) -> Any:
    """Register `fn` as `calc.NAME`; `@calc(worst=[…])` also names its costliest calls."""
    return _register(CALC, worst)(fn) if fn else _register(CALC, worst)


def table(fn: Callable[..., Any] | None = None, *, worst: list[str] | None = None) -> Any:
    """Register `fn` as a table for `rows_from:`; `worst` as for `calc`."""
    return _register(TABLES, worst)(fn) if fn else _register(TABLES, worst)


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
    if is_int(value) and abs(value) >= 10**21:
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


def is_int(value: Any) -> bool:
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


def int_arg(name: str, value: Any, low: int, high: int) -> int:
    if not (is_int(value) and low <= value <= high):
        allowed = (f"a positive integer up to {high:,}" if low == 1 else
                   f"an integer from {low:,} to {high:,}")
        raise ValueError(f"{name} must be {allowed}, got {shown(value)}")
    return value


def text_arg(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {shown(value)}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} has {len(value):,} characters; at most {MAX_TEXT} are allowed")
    return value


def elements(dims: tuple[int, ...]) -> int:
    """Elements of an array with these dims, an empty axis counted as 1: what an operation on
    it may make (summing shape (0, 10**9) over its first axis gives 10**9 zeros)."""
    return math.prod(max(1, n) for n in dims)


def described(shape: tuple[int, ...]) -> str:
    """A shape for a message about its elements, which says how an empty axis counts."""
    return shown(shape) + (" (an empty axis counted as 1)" if 0 in shape else "")


def check_elements(count: int, what: str, limit: int = MAX_ELEMENTS,
                    within: str = "shape operations are checked on arrays of") -> None:
    if count > limit:
        raise ValueError(f"{what} has {int_text(count)} elements; {within} at most {limit:,}")


def shape_arg(value: Any) -> tuple[int, ...]:
    """A shape argument, checked: a tuple of at most `MAX_RANK` non-negative integers such as
    `(2, 3)` or `(4,)`, with at most `MAX_SIZE` elements (an empty axis counted as 1)."""
    if not (isinstance(value, tuple) and len(value) <= MAX_RANK
            and all(is_int(n) and 0 <= n <= MAX_SIZE for n in value)):
        many = isinstance(value, tuple) and len(value) > MAX_RANK
        raise ValueError(f"a shape is a tuple of non-negative integers like (2, 3) or (4,), "
                         f"with at most {MAX_RANK} entries, each at most {MAX_SIZE:,}; got "
                         + (f"{len(value):,} entries" if many else shown(value)))
    check_elements(elements(value), described(value), MAX_SIZE, "NumPy indexes arrays of")
    return value


def new_shape_arg(value: Any) -> int | tuple[int, ...]:
    """A reshape target: an integer or a tuple of at most `MAX_RANK` integers, one of them may
    be -1 (inferred), with at most `MAX_ELEMENTS` elements (-1 and empty axes counted as 1)."""
    dims = value if isinstance(value, tuple) else (value,)
    if not (len(dims) <= MAX_RANK and all(is_int(n) and -1 <= n <= MAX_SIZE for n in dims)):
        raise ValueError(f"a new shape is an integer or a tuple of integers (-1: inferred), "
                         f"at most {MAX_RANK} of them, each from -1 to {MAX_SIZE:,}; got "
                         + (f"{len(dims):,} entries" if len(dims) > MAX_RANK else shown(value)))
    check_elements(elements(dims), f"the new shape {described(dims)}")
    return value


def axes_arg(name: str, value: Any, count: int | None = None, every: bool = True) -> Any:
    """An axis argument: an integer from -64 to 63, a tuple of them, or None (every axis, where
    `every`); exactly `count` integers when given (swapaxes takes two)."""
    if value is None and every and count is None:
        return value
    axes = value if isinstance(value, tuple) else (value,)
    fits = len(axes) == count if count else len(axes) <= NUMPY_MAX_RANK
    if not (fits and all(is_int(a) and -NUMPY_MAX_RANK <= a < NUMPY_MAX_RANK for a in axes)):
        what = (f"a tuple of {count} axes" if count else
                "an axis, a tuple of axes or None" if every else "an axis or a tuple of axes")
        raise ValueError(f"{name} takes {what}, each an integer from {-NUMPY_MAX_RANK} to "
                         f"{NUMPY_MAX_RANK - 1}; got {shown(value)}")
    return value


def zeros(shape: Any) -> np.ndarray:
    shape = shape_arg(shape)
    check_elements(elements(shape), described(shape))
    return np.zeros(shape, dtype=np.uint8)


def size_text(n: float) -> str:
    """Bytes for people: 1,536 B, 12 KiB, 3.5 MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,.0f} B"


def si_text(n: float, unit: str = "") -> str:
    """Three significant digits under a decimal prefix: `618 G`, `2.68 TFLOP`, `35.2 GB`."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"),
                          (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".rstrip()


def sig_text(x: float) -> str:
    """Three significant digits, thousands separated: 0.985, 63.2, 1,480, 2,540,000."""
    if abs(x) >= 1000:
        return f"{round(x, 2 - math.floor(math.log10(abs(x)))):,.0f}"
    return f"{x:.3g}"


# A table runs the reference code on real arrays: each array at most this many float64s (8 MiB).
MAX_TABLE_ELEMENTS = 1 << 20
