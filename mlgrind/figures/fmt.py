"""Numbers as people read them on a sheet: "27 %", "3.15 MB", "990 TFLOP/s", "1,048,576"."""

from __future__ import annotations

import math

_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")]


def si(value: float, unit: str, digits: int = 3) -> str:
    """Three significant digits under a decimal prefix (bytes too: 1 MB = 10^6 B, as in calc)."""
    rounded = float(f"{value:.{digits}g}")  # first, so that 999.7 k becomes 1 M, not 1e+03 k
    for scale, prefix in _PREFIXES:
        if abs(rounded) >= scale or scale == 1:
            return f"{rounded / scale:.{digits}g} {prefix}{unit}"


def tick(value: float) -> str:
    """An axis tick on a log scale: "100G", "1k", "0.1"."""
    return si(value, "").replace(" ", "")


def sig(value: float) -> str:
    """Three significant digits without a prefix: "0.985", "295", "2,020"."""
    if abs(value) < 1000:
        return f"{value:.3g}"
    return f"{round(value, 2 - math.floor(math.log10(abs(value)))):,.0f}"


def percent(fraction: float) -> str:
    p = 100 * fraction
    return f"{p:.0f} %" if p >= 10 else f"{p:.2g} %"


def count(n: int) -> str:
    return f"{n:,}"


def words(n: float) -> str:
    """Counts in words, as papers quote model sizes: "8.03 billion", "124 million"."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:.3g} {word}"
    return count(round(n))
