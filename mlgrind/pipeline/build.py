"""A build, top to bottom (`build`, at the bottom of this module):

    recover       complete the replacement of files that a killed build left half done
                  (write.py)
    up to date?   a full build whose inputs are those the last one recorded, and whose outputs
                  all still hold the bytes written then, stops here: it has nothing to do
                  (fresh.py)
    compile       every output in memory, or every problem found: load, validate, compute,
                  render, the notes ledger, the deck (compiler.py, `compile_project`)
    write         each output, cache file and the ledger whose bytes changed; the files of
                  earlier builds that this one no longer makes are removed; the manifest
                  (write.py)

Nothing is written unless compiling succeeded, so a failed build never leaves half its outputs.
`check` compiles without making PDFs. This module imports no stage itself: finding a build up
to date imports neither NumPy and the reference code nor pydantic, genanki or WeasyPrint;
`build` imports the compiler only when it has to compile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fresh, write
from .pages import PAPERS
from .problems import display_path

LEDGER_FILE = "notes.lock.json"


class UsageError(Exception):
    """A mistake in how mlgrind was called (exit 2), as opposed to in the content (exit 1)."""


@dataclass(frozen=True)
class Project:
    """A project folder: onepagers/ and cards/ (the YAML sources), templates/, and the notes
    ledger beside them."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> Project:
        project = cls(root.resolve())
        missing = [d for d in ("onepagers", "cards", "templates") if not (project.root / d).is_dir()]
        if missing:
            folders = ", ".join(f"{d}/" for d in missing)
            raise UsageError(f"{root} is not an mlgrind project: it has no {folders} (run mlgrind "
                             "in the project folder, or pass --root)")
        return project

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER_FILE

    def sources(self, folder: str) -> list[tuple[Path, str]]:
        return [(p, display_path(p, self.root)) for p in sorted((self.root / folder).glob("*.yaml"))]


@dataclass
class Output:
    path: str  # relative to the output folder
    data: bytes
    seconds: float
    cached: bool = False
    written: bool = False
    key: str = ""  # a booklet's: a digest of everything its bytes depend on


@dataclass
class Changes:
    """What this build does to the learner's collection, for the build to report."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # newly retired in this build
    retyped: list[str] = field(default_factory=list)  # Anki refuses these: an error
    moved: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (old, new deck) → ids
    warnings: list[str] = field(default_factory=list)


@dataclass
class Result:
    outputs: list[Output]
    ledger: bytes  # the new notes ledger, written beside the sources
    changes: Changes
    cache_files: list[tuple[Path, bytes]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # outputs of sheets that are gone
    up_to_date: bool = False  # nothing changed since the last full build: nothing was compiled


def clock() -> int:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return int(time.time())
    if not epoch.isdigit() or int(epoch) >= 2**32:  # the PDF dates stop at year 9999
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    return int(epoch)


def check(project: Project, out: Path, **options: Any) -> Result:
    """Compile without making PDFs: every page laid out and counted, or known to fit from the
    cache in OUT/.cache, which then holds what this check learnt (each page's layout, the
    typeset formulas) for the next build or check. A cache that cannot be written costs only
    time: it is a warning."""
    from .compiler import compile_project

    cache = out / ".cache"
    result = compile_project(project, cache=cache, write=False, **options)
    try:
        write.write_all(result.cache_files, out / write.JOURNAL)
    except OSError as error:
        result.changes.warnings.append(
            f"cannot write the cache in {display_path(cache, project.root)} "
            f"({error.strerror or error}): the next build lays out every page again")
    return result


def build(project: Project, out: Path, **options: Any) -> Result:
    """Compile, then write every output, the caches and the ledger; nothing is written if
    compiling fails. A build killed while it replaced its files is completed first.

    A full build (no `only`) first reads its inputs (`fresh.Inputs`): if the last full build
    recorded the same and its outputs are intact, it returns them (`up_to_date`, each one
    `cached`) and writes nothing. Else it compiles, then removes what earlier builds wrote into
    `out` and this one no longer makes: only files that the manifest lists, and only while they
    hold the bytes mlgrind wrote. It records its inputs in the manifest, unless it had a
    warning (the next build compiles again, and says it again)."""
    journal = out / write.JOURNAL
    finished = write.recover(journal)  # before the ledger is read: it may be one of them
    inputs = None
    if not options.get("only"):
        sources = [path for folder in ("onepagers", "cards") for path, _ in project.sources(folder)]
        inputs = fresh.Inputs(project.root, sources, options.get("papers", PAPERS))
        ledger = fresh.read(project.ledger)
        if not finished and (intact := fresh.built(out, inputs.stamp(ledger, LEDGER_FILE))):
            return Result([Output(path, data, 0.0, cached=True) for path, data in intact.items()],
                          ledger or b"", Changes(), up_to_date=True)

    from .compiler import compile_project

    result = compile_project(project, cache=out / ".cache", **options)
    if finished:
        result.changes.warnings.append(f"completed the replacement of {len(finished)} file(s) "
                                       "that an interrupted build had left half done")
    owned = write.read_manifest(out)
    files = [(out / o.path, o.data) for o in result.outputs]
    # The ledger goes last: if writing an output failed, it must not claim it was published.
    written = write.write_all([*files, *result.cache_files, (project.ledger, result.ledger)],
                              journal)
    for output, was_written in zip(result.outputs, written, strict=False):
        output.written = was_written
    made = {o.path: write.sha256(o.data) for o in result.outputs}
    if inputs is None:  # --only
        made = owned | made
    else:
        result.removed, left = write.remove_stale(out, owned, keep=made)
        result.changes.warnings += [f"left {display_path(path, project.root)} in place: {why}"
                                    for path, why in left]
    # The stamp holds the inputs read before compiling: a source saved during this build makes
    # the next one compile, never find these outputs up to date.
    stamp = (inputs.stamp(result.ledger, LEDGER_FILE)
             if inputs is not None and not result.changes.warnings else "")
    try:
        write.write_all([(out / write.MANIFEST, write.manifest(made, stamp))], journal)
    except OSError as error:  # the outputs are in place: only a later clean-up misses them
        result.changes.warnings.append(
            f"cannot record the outputs in {write.MANIFEST} ({error.strerror or error}): a later "
            "build will not remove those it no longer makes")
    return result
