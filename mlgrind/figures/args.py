"""Checks for a figure's arguments, which come from YAML: each failure names the argument and
what it may be, and every bound keeps one drawing well under a second and a few MB. Every
argument of a drawing goes through one of these (tests/test_costs.py draws each at its worst):
a whole number is an `int` in a range (not a bool, not 4.0), a number a finite int or float in a
range (not NaN), a choice one of the allowed strings; a message shows the value it refuses cut
short, even an integer too long for Python to print."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable

from mlgrind.facts import shown

WIDTH = (100, 1200)  # pt: a narrow column of a sheet to a whole landscape page


class NoRoom(Exception):
    """A layout that does not fit the width it was given."""


def integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {shown(value)}")
    return value


def number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, not {shown(value)}")
    return float(value)


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    close = difflib.get_close_matches(value, allowed, n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, "
                     f"not {shown(value)}{hint}")


def too_narrow(width: float, needed: float, what: str) -> ValueError:
    if needed > WIDTH[1]:
        how_much = "" if math.isinf(needed) else f"{math.ceil(needed)} pt, "
        return ValueError(f"width {width:g} pt is too narrow for {what}: it needs {how_much}more "
                          f"than the widest panel ({WIDTH[1]} pt); use smaller arguments")
    return ValueError(f"width {width:g} pt is too narrow for {what}: "
                      f"it needs at least {math.ceil(needed)} pt")


def fit(draw: Callable[[float], object], width: float, what: str, floor: float = 0):
    """draw(width), if its layout fits. If not, a ValueError naming the narrowest width that
    does (to the pt), found by trying: a layout knows when it has no room, not always how much
    it would need. `floor` is a width below which it certainly fails, where the search starts."""
    if floor > WIDTH[1]:
        raise too_narrow(width, floor, what)
    if width >= floor:
        try:
            return draw(width)
        except NoRoom:
            pass
    failed = math.floor(max(width, floor - 1))  # the widest width known not to fit
    for wider in [*range(failed + 1, WIDTH[1], 10), WIDTH[1]]:
        try:
            draw(wider)
        except NoRoom:
            failed = wider
            continue
        while wider - failed > 1:  # bisect down to the pt between the last miss and this fit
            middle = (failed + wider) // 2
            try:
                draw(middle)
                wider = middle
            except NoRoom:
                failed = middle
        raise too_narrow(width, wider, what)
    raise too_narrow(width, math.inf, what)
