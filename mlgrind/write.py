"""Stage 5, write: put outputs in place atomically, and leave unchanged files untouched.

Each file is written to a temporary file beside its target and renamed over it, so a reader
(or a crash) never sees half a PDF. The build only calls this once everything has rendered, so
a failing build leaves every previous output byte-identical.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path`; returns False (and touches nothing) if it already holds it."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
