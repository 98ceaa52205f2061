"""Up to date: does a full build have anything to do? Asked the way make and ninja ask it.

A full build that went without a warning records in the output folder's manifest a digest of
every input it read (`"inputs"`, beside `"files"`). The next full build computes the digest
again; when it is the same and every file the manifest lists holds the sha256 recorded for it,
compiling would only find every output unchanged, so the build does nothing.

What is hashed: a sequence of (name, bytes) parts, in this order, each written as two
netstrings (`LENGTH:BYTES,`), so no part can run into the next:

    version python        `sys.version`
    version NAME          the installed version of mlgrind and of each of its direct
                          dependencies (`importlib.metadata.requires("mlgrind")`, extras left out)
    code                  `code_digest()`: every .py/.yaml/.json file of the mlgrind package
    papers                the papers built, comma-separated, in order
    SOURCE_DATE_EPOCH     its value (the part is there only when the variable is set)
    onepagers/NAME.yaml   each source's bytes, by its path in the project, sorted; then
    cards/NAME.yaml       those of the card sets
    templates/PATH        every file under templates/, sorted by path
    notes.lock.json       the ledger's bytes, or the part `no notes.lock.json` (empty) when absent

The output cache (OUT/.cache) is not an input: it only saves time, never changes a byte.
Transitive dependencies (WeasyPrint's own, the fonts it finds) are not hashed either: an
upgrade of one of those alone needs a clean build, or any edit.

This module uses the standard library only: finding a build up to date must cost milliseconds,
not the imports of the stages (NumPy and the reference code, pydantic, genanki, WeasyPrint).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from . import write

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's distribution name


class Inputs:
    """The digest of a full build's inputs but the ledger, read once, before compiling; the
    ledger's part is added by `stamp` (the ledger read now, or the one a build wrote)."""

    def __init__(self, root: Path, sources: Iterable[Path], papers: Iterable[str]) -> None:
        self._digest, self._complete = hashlib.sha256(), True
        for name, version in versions():
            self._part(f"version {name}", version.encode())
        self._part("code", code_digest().encode())
        self._part("papers", ",".join(papers).encode())
        if (epoch := os.environ.get("SOURCE_DATE_EPOCH")) is not None:
            self._part("SOURCE_DATE_EPOCH", epoch.encode())
        templates = root / "templates"
        for path in [*sources, *sorted(p for p in templates.rglob("*") if p.is_file())]:
            try:
                self._part(path.relative_to(root).as_posix(), path.read_bytes())
            except OSError:  # gone since listed, or unreadable: compiling says what is wrong
                self._complete = False
                return

    def stamp(self, ledger: bytes | None, name: str) -> str:
        """The whole digest, with `ledger` (None: there is none) as the file `name`; "" if an
        input could not be read (then no build is up to date, and none records its inputs)."""
        if not self._complete:
            return ""
        whole = self._digest.copy()
        _update(whole, name if ledger is not None else f"no {name}", ledger or b"")
        return whole.hexdigest()

    def _part(self, name: str, data: bytes) -> None:
        _update(self._digest, name, data)


def _update(digest: hashlib._Hash, name: str, data: bytes) -> None:
    encoded = name.encode()
    digest.update(b"%d:%s,%d:%s," % (len(encoded), encoded, len(data), data))


def built(out: Path, stamp: str) -> dict[str, bytes] | None:
    """The outputs in `out` (path relative to it → bytes), if the last full build there had
    the inputs `stamp` and every file it wrote still holds its bytes; else None."""
    if not stamp or write.read_inputs(out) != stamp:
        return None
    files = write.read_manifest(out)
    found = {}
    for rel, sha in sorted(files.items()):
        try:
            data = (out / rel).read_bytes()
        except OSError:
            return None
        if write.sha256(data) != sha:
            return None
        found[rel] = data
    return found or None


def read(path: Path) -> bytes | None:
    """A file's bytes, or None if it is not there (a missing ledger is an input too) or cannot
    be read (compiling says why)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def versions() -> list[tuple[str, str]]:
    """Python's version, mlgrind's and each of its direct dependencies' (not the extras')."""
    names = [match.group() for requirement in importlib.metadata.requires("mlgrind") or []
             if "extra ==" not in requirement and (match := _NAME.match(requirement))]
    found = [("python", sys.version)]
    for name in ["mlgrind", *names]:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found


@functools.cache
def code_digest() -> str:
    """Every .py, .yaml and .json file of the mlgrind package (the pipeline, the reference code,
    the facts, the calculators' data), by its path in the package."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml", ".json"):
            _update(digest, path.relative_to(package).as_posix(), path.read_bytes())
    return digest.hexdigest()
