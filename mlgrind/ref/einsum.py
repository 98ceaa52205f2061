"""Seed step 1: einsum, and FLOPs counted from the einsums themselves.

Every contraction in the reference code goes through `einsum` below, so running a forward pass
inside `count_flops()` measures its FLOPs from the code itself; closed-form formulas are
checked against that count.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np


def parse(spec: str) -> tuple[list[str], str]:
    """`"bld,df->blf"` → (["bld", "df"], "blf"). Explicit output only: we always name it."""
    inputs, arrow, output = spec.replace(" ", "").partition("->")
    if not arrow:
        raise ValueError(f"einsum spec {spec!r} needs an explicit '->output'")
    return inputs.split(","), output


def flops(spec: str, sizes: dict[str, int]) -> int:
    """FLOPs of one einsum: 2 × the product of the sizes of every index it mentions.

    Each output element is a sum over the contracted indices: one multiply and one add per
    term. A pure elementwise product or a transpose (nothing contracted) counts the same way;
    that overcounts by 2× for them, which never matters next to the matmuls.
    """
    inputs, output = parse(spec)
    letters = set("".join(inputs)) | set(output)
    return 2 * math.prod(sizes[c] for c in letters)


def sizes_of(spec: str, *operands: np.ndarray) -> dict[str, int]:
    """Read each index letter's size off the operands."""
    inputs, _ = parse(spec)
    sizes: dict[str, int] = {}
    for term, array in zip(inputs, operands, strict=True):
        for letter, size in zip(term, array.shape, strict=True):
            if sizes.setdefault(letter, size) != size:
                raise ValueError(f"index {letter!r} is {sizes[letter]} and {size} in {spec!r}")
    return sizes


class FlopCounter:
    """Accumulates the FLOPs of every `einsum` run while it is active."""

    def __init__(self) -> None:
        self.total = 0
        self.by_spec: dict[str, int] = {}

    def add(self, spec: str, count: int) -> None:
        self.total += count
        self.by_spec[spec] = self.by_spec.get(spec, 0) + count


_active: list[FlopCounter] = []


@contextlib.contextmanager
def count_flops() -> Iterator[FlopCounter]:
    counter = FlopCounter()
    _active.append(counter)
    try:
        yield counter
    finally:
        _active.remove(counter)


def einsum(spec: str, *operands: np.ndarray) -> np.ndarray:
    """`np.einsum` that also reports its FLOPs to every active `count_flops()`."""
    if _active:
        count = flops(spec, sizes_of(spec, *operands))
        for counter in _active:
            counter.add(spec, count)
    return np.einsum(spec, *operands, optimize=True)
