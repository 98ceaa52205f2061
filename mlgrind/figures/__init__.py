"""Figures for sheets and cards: drawings computed from the reference package, as vector SVG.

A sheet names a registered drawing with literal arguments, `pipeline_schedule(stages=4)`; the
pipeline calls `FIGURES[name](width=<panel width in pt>, **arguments)` and gets a `Drawing`,
whose `svg(recall)` goes inline into the page and `svg_file()` into a card's media. Every number
a drawing shows is computed here, from `mlgrind.ref` simulations and `mlgrind.calc`, and is also
in its `facts` for the tests.
"""

import importlib
import pkgutil

from mlgrind.figures.canvas import Drawing
from mlgrind.figures.registry import FIGURES, figure

# Importing a drawing's module registers it: every module of this package is imported.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FIGURES", "Drawing", "figure"]
