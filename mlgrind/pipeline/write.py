"""Stage 5, write: put outputs in place atomically, and leave unchanged files untouched.

Each file is written to a temporary file beside its target (`.NAME.XXXXXXXX.tmp`) and renamed
over it, so a reader (or a crash) never sees half a PDF. The build only calls this once
everything has rendered, so a failing build leaves every previous output byte-identical.

Renaming many files is not one atomic step, so a journal in the output folder lists every
(temporary, target) pair before the first rename and is deleted after the last: a build killed
in between is completed by the next one (`recover`). A rename that fails says which files were
replaced and which were not (`PartialWrite`).

The manifest in the output folder lists what mlgrind wrote there, with each file's sha256: a
build removes only files it lists, never a user's own files that share the folder. After a full
build it also holds the digest of that build's inputs, to find the next one up to date
(`fresh.py`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

JOURNAL = ".mlgrind-journal.json"
MANIFEST = ".mlgrind-manifest.json"


class PartialWrite(OSError):
    """Renaming a temporary file over its target failed: the files in `replaced` hold their new
    bytes, those in `kept` their old ones (their temporary files are deleted)."""

    def __init__(self, error: OSError, replaced: list[Path], kept: list[Path]):
        super().__init__(error.errno, error.strerror, str(kept[0]))
        self.replaced = replaced
        self.kept = kept


def write_all(files: list[tuple[Path, bytes]], journal: Path) -> list[bool]:
    """Write every file that changed, whether each was written, in order (put the ledger last).
    All new contents go to temporary files first and are renamed into place only once every
    one of them is on disk, so a full disk or a bad path fails before any target changes.
    `journal` (in the output folder) records the renames while they happen."""
    with _locked(journal.parent):
        _finish(journal)
        _remove_temporaries(path for path, _ in files)
        pending: list[tuple[str, Path, str]] = []  # (temporary file, target, sha256)
        try:
            for path, data in files:
                if _holds(path, data):
                    continue
                if path.exists() and not path.is_file():  # os.replace would fail only after others
                    raise IsADirectoryError(errno.EISDIR, "not a file", str(path))
                path.parent.mkdir(parents=True, exist_ok=True)
                pending.append((_temporary(path, data), path, sha256(data)))
            if pending:
                _write_journal(journal, pending)
        except BaseException:  # nothing renamed yet: no trace of this build is left
            for tmp, _, _ in pending:
                Path(tmp).unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
            raise
        _replace([(tmp, path) for tmp, path, _ in pending], journal)
    changed = {path for _, path, _ in pending}
    return [path in changed for path, _ in files]


def recover(journal: Path) -> list[Path]:
    """Complete the replacement a killed build left half done; the files it replaced."""
    if not journal.exists():
        return []
    with _locked(journal.parent):
        return _finish(journal)


def _replace(pending: list[tuple[str, Path]], journal: Path) -> None:
    """Rename each temporary file over its target, in order, then drop the journal. A failed
    rename stops there (PartialWrite). An interrupt (Ctrl-C, SIGTERM) finishes the renames
    first: every temporary file is whole, and the outputs were built together."""
    done = 0
    try:
        for tmp, path in pending:
            os.replace(tmp, path)
            done += 1
    except OSError as error:
        for tmp, _ in pending[done:]:
            Path(tmp).unlink(missing_ok=True)
        journal.unlink()
        raise PartialWrite(error, [p for _, p in pending[:done]],
                           [p for _, p in pending[done:]]) from error
    except BaseException:
        _finish(journal)
        raise
    journal.unlink(missing_ok=True)


def _finish(journal: Path) -> list[Path]:
    """Complete the renames `journal` lists if every file still holds what it should (its
    temporary file, or its target once renamed); else delete the temporary files. Either way
    no temporary file stays. Only mlgrind's own temporary files are ever touched."""
    try:
        entries = json.loads(journal.read_bytes())["replace"]
        listed = [(Path(e["temp"]), Path(e["target"]), e["sha256"]) for e in entries]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):  # torn by a kill, so before any rename
        listed = []
    listed = [(tmp, path, sha) for tmp, path, sha in listed
              if tmp.parent == path.parent and _target_name(tmp.name) == path.name]
    whole = all(_sha256(tmp if tmp.exists() else path) == sha for tmp, path, sha in listed)
    finished = []
    for tmp, path, _ in listed:
        if whole and tmp.exists():
            try:
                os.replace(tmp, path)
                finished.append(path)
                continue
            except OSError:  # the next write tries again, and says why
                whole = False
        tmp.unlink(missing_ok=True)
    _remove_temporaries(path for _, path, _ in listed)
    journal.unlink()
    return finished


def _write_journal(journal: Path, entries: list[tuple[str, Path, str]]) -> None:
    data = json.dumps({"replace": [{"temp": tmp, "target": str(path), "sha256": sha}
                                   for tmp, path, sha in entries]}, indent=1)
    with open(journal, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _fsync(journal.parent)  # the journal's name is on disk before the first rename


def _remove_temporaries(targets: Iterable[Path]) -> None:
    """Temporary files that a killed build left beside these targets."""
    by_folder: dict[Path, set[str]] = {}
    for path in targets:
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if _target_name(entry.name) in names:
                    Path(entry.path).unlink(missing_ok=True)


def _target_name(temporary: str) -> str | None:
    """The target that a temporary file `.NAME.XXXXXXXX.tmp` (from `_temporary`) stands for."""
    if not (temporary.startswith(".") and temporary.endswith(".tmp")):
        return None
    name, _, random = temporary[1:-4].rpartition(".")
    return name if name and random else None


def read_manifest(folder: Path) -> dict[str, str]:
    """The files an earlier build wrote into `folder` (path relative to it → sha256); none if
    there is no manifest yet, or it cannot be read."""
    files = _manifest_json(folder).get("files")
    if not isinstance(files, dict):
        return {}
    return {rel: sha for rel, sha in files.items()
            if isinstance(rel, str) and isinstance(sha, str) and _inside(rel)}


def read_inputs(folder: Path) -> str:
    """The digest of the inputs of the last full build into `folder` (`fresh.py`), or "" if
    it recorded none."""
    inputs = _manifest_json(folder).get("inputs", "")
    return inputs if isinstance(inputs, str) else ""


def _manifest_json(folder: Path) -> dict[str, object]:
    """The manifest's JSON object; empty if there is none, or it cannot be read."""
    try:
        data = json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def manifest(files: dict[str, str], inputs: str = "") -> bytes:
    """The manifest: the files written, and the digest of the inputs they were built from, if
    they are every output of a full build that had no warning."""
    content: dict[str, object] = {"files": files} | ({"inputs": inputs} if inputs else {})
    return (json.dumps(content, indent=1, sort_keys=True) + "\n").encode()


def remove_stale(folder: Path, owned: dict[str, str],
                 keep: Iterable[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Remove the files of `owned` that are not in `keep` and still hold the bytes mlgrind
    wrote: (removed, [(left in place, why)])."""
    removed, left = [], []
    for rel in sorted(set(owned) - set(keep)):
        path = folder / rel
        if not path.is_file():
            continue
        if _sha256(path) != owned[rel]:
            left.append((path, "it changed since mlgrind wrote it"))
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError as error:
            left.append((path, f"cannot remove it: {error.strerror or error}"))
    return removed, left


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except OSError:
        return None


def _inside(rel: str) -> bool:
    path = PurePosixPath(rel)
    return not path.is_absolute() and ".." not in path.parts and rel not in ("", ".")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One build at a time writes through this folder's journal, so that none takes another's
    temporary files for those of a killed build."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without locks still gets its files
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
