"""Stage 5, write: put outputs in place atomically, and leave unchanged files untouched.

Each file is written to a temporary file beside its target and renamed over it, so a reader
(or a crash) never sees half a PDF. The build only calls this once everything has rendered, so
a failing build leaves every previous output byte-identical.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def write_all(files: list[tuple[Path, bytes]]) -> list[bool]:
    """Write every file that changed, whether each was written. All new contents go to
    temporary files first and are renamed into place only once every one of them is on disk,
    so a full disk or a bad path fails before any target changes."""
    pending: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            if _holds(path, data):
                continue
            if path.exists() and not path.is_file():  # os.replace would fail only after others
                raise IsADirectoryError(errno.EISDIR, "not a file", str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            pending.append((_temporary(path, data), path))
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in pending:
        os.replace(tmp, path)
    changed = {path for _, path in pending}
    return [path in changed for path, _ in files]


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.read_bytes() == data
    except OSError:
        return False


def _temporary(path: Path, data: bytes) -> str:
    """`data` in a new file beside `path`, with the permissions a plain open() would give."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
