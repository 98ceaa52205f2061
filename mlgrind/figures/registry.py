"""The registry: every drawing a sheet or card may name, as FIGURES[name](width=…, **kwargs)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from mlgrind.figures import args
from mlgrind.figures.canvas import Drawing

FIGURES: dict[str, Callable[..., Drawing]] = {}


def figure(draw: Callable[..., Drawing] | None = None, *,
           worst: list[str] | None = None) -> Callable[..., Drawing]:
    """Register `draw` by its name, checking the arguments every drawing shares: the panel's
    width in pt, and no keyword the drawing does not take (a ValueError naming the ones it does,
    not Python's TypeError). `@figure(worst=[…])` names its costliest calls as a sheet writes
    them, for tests/test_costs.py."""
    if draw is None:
        return functools.partial(figure, worst=worst)  # type: ignore[return-value]
    known = [p for p in inspect.signature(draw).parameters if p != "width"]

    @functools.wraps(draw)
    def checked(*positional, width: float, **kwargs) -> Drawing:
        if positional:  # YAML wrote pipeline_schedule(4): say which name each value needs
            raise ValueError(f"{draw.__name__} takes named arguments only, like "
                             f"{draw.__name__}({known[0]}=…); it takes {', '.join(known)}")
        for key in kwargs:
            if key not in known:
                raise ValueError(f"{draw.__name__} takes no argument {key!r}; "
                                 f"it takes {', '.join(known)}")
        return draw(args.number("width", width, *args.WIDTH), **kwargs)

    if draw.__name__ in FIGURES:
        raise ValueError(f"{draw.__module__}.{draw.__name__} is already registered")
    checked.worst = worst  # type: ignore[attr-defined]
    FIGURES[draw.__name__] = checked
    return checked
