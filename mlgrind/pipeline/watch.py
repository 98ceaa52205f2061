"""`mlgrind watch`: build, then build again each time a source or a template is saved.

Each round is an ordinary build (`build.build`, the same options): unchanged pages come from
the cache, so a round costs what the edit costs. A round that fails writes nothing, as a build
does, and the watch goes on: the next save is built again. Saves are read with watchfiles (the
operating system's file events, not polling), debounced, and those made during a round are
built in the next one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from .build import Output, Project, Result, UsageError, build
from .problems import ContentError, Problem, display_path

WATCHED = ("onepagers", "cards", "templates")
DEBOUNCE_MS = 200  # an editor's save is often several writes (a temporary file, a rename)


@dataclass
class Round:
    """One build: what was saved to start it (nothing for the first), and how it went."""

    changed: list[str]  # relative to the project
    seconds: float
    result: Result | None = None  # None when it failed
    problems: list[Problem] = field(default_factory=list)  # the content's problems, if any
    error: str = ""  # a usage or write error, one line
    usage: bool = False  # the error is a mistake in how mlgrind was called

    @property
    def rendered(self) -> list[Output]:
        """The pages WeasyPrint rendered in this round (the others came from the cache)."""
        return [] if self.result is None else [
            o for o in self.result.outputs if o.path.endswith(".pdf") and o.path.startswith(
                "onepagers/") and not o.cached]

    @property
    def written(self) -> list[Output]:
        """The outputs whose bytes changed (the others were left untouched)."""
        return [] if self.result is None else [o for o in self.result.outputs if o.written]


def rounds(project: Project, out: Path, saves: Iterable[list[str]],
           **options: Any) -> Iterator[Round]:
    """A build now, then one per batch of saves. A usage error (such as `--only` naming no
    sheet) ends the first round with UsageError; in a later round it is reported, since a
    save may have caused it and the next may undo it."""
    first = _round(project, out, [], options)
    if first.usage:
        raise UsageError(first.error)
    yield first
    for changed in saves:
        yield _round(project, out, changed, options)


def _round(project: Project, out: Path, changed: list[str], options: dict[str, Any]) -> Round:
    start = time.perf_counter()

    def done(**how: Any) -> Round:
        return Round(changed, time.perf_counter() - start, **how)

    try:
        return done(result=build(project, out, **options))
    except ContentError as error:
        return done(problems=list(error.problems))
    except UsageError as error:
        return done(error=str(error), usage=True)
    except OSError as error:  # the build's guarantee holds: nothing was half-written
        return done(error=f"cannot write {error.filename or out}: {error.strerror or error}")


class Saves:
    """Batches of saved sources and templates (paths relative to the project), as they come.

    The watcher runs on a thread of its own from the moment this is made, so that a save made
    while a build runs (the first one included) is in the next batch; all the saves made
    during one build make one batch. The main thread only waits, so Ctrl-C and SIGTERM reach
    it at once. `close` (or leaving the `with` block) stops the watcher."""

    def __init__(self, project: Project, out: Path, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        import watchfiles

        self.root = project.root
        self._stop = threading.Event()
        self._batches: queue.Queue[set[str] | Exception] = queue.Queue()
        folders = [self.root / name for name in WATCHED if (self.root / name).is_dir()]

        def watch() -> None:
            try:
                for batch in watchfiles.watch(*folders, watch_filter=_Sources(self.root, out),
                                              debounce=debounce_ms, stop_event=self._stop,
                                              raise_interrupt=False):
                    self._batches.put({path for _, path in batch})
            # A folder removed, too many watches…: raised again in the main thread.
            except Exception as error:  # noqa: BLE001
                self._batches.put(error)

        self._thread = threading.Thread(target=watch, name="mlgrind-watch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[list[str]]:
        while True:
            try:  # a timeout keeps the wait interruptible everywhere
                got = self._batches.get(timeout=0.5)
            except queue.Empty:
                continue
            paths: set[str] = set()
            while True:
                if isinstance(got, Exception):
                    raise got
                paths |= got
                try:
                    got = self._batches.get_nowait()
                except queue.Empty:
                    break
            yield sorted(display_path(Path(path), self.root) for path in paths)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Sources:
    """What a build reads: YAML under onepagers/ and cards/, any file under templates/; not
    an editor's swap or backup files, and nothing in the output folder."""

    def __init__(self, root: Path, out: Path) -> None:
        import watchfiles

        self.root, self.out = root, out.resolve()
        self.editors = watchfiles.DefaultFilter()

    def __call__(self, change: Any, path: str) -> bool:
        target = Path(path)
        if not self.editors(change, path) or target.is_relative_to(self.out):
            return False
        folder = target.relative_to(self.root).parts[0]
        return folder == "templates" or target.suffix == ".yaml"
