"""The registered computations: every number or shape on a sheet or card comes from here.

YAML calls these by name, `${ calc.broadcast((9, 1, 3), (4, 1)) }`, and a table can take its
rows from a registered table, `rows_from: suffix_letters`. Nothing else is callable from YAML.
Each function computes with NumPy or the reference package (`mlgrind.ref`), never from a typed
answer. One module per topic, in the curriculum's order; each registers what it defines when
imported, and every module of this package is imported here.
"""

import importlib
import pkgutil

from .core import *
from .core import CALC, TABLES, WORST, calc, int_text, shape_text, shown, table

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CALC", "TABLES", "WORST", "calc", "int_text", "shape_text", "shown", "table"]
