"""Stage 4b's processes: the pages a build must render, rendered by WeasyPrint in worker
processes when there are several and cores to spare, in this process otherwise.

This module imports no WeasyPrint (it takes most of a second): the build's own process never
does when it renders in parallel, only the workers, forked from a fork server that imports it
once. The pool starts at the first page that must be rendered, not before, and serves the
whole build: a page laid out again (a recall edition) is sent as soon as its last layout
comes back.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, Self

from .pages import Rendered

Job = tuple[str, str, int, "int | None", bool]  # pdf.render_job's arguments


def job(*args: Any) -> Rendered:
    """`pdf.render_job`, named here so that the build's process can send it without importing
    WeasyPrint; the worker's fork server has."""
    from . import pdf

    return pdf.render_job(*args)


def exit_with(lifeline: Connection) -> None:
    """A rendering worker's initializer: exit as soon as the build that started it closes the
    other end of `lifeline`, when it stops early or is killed (even by SIGKILL, which runs no
    handler). An orphaned worker would wait for work forever, and keep the fork server and
    its resource tracker alive with it. Ctrl-C reaches the whole process group: the build
    answers it, and its workers then exit this way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        wait([lifeline])  # readable only at its end: nothing is ever sent
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def cores() -> int:
    return os.cpu_count() or 1


class Renderer:
    """Renders jobs with at most `jobs` processes; a context manager, whose exit stops them."""

    def __init__(self, jobs: int | None = None):
        self.jobs = max(1, jobs if jobs is not None else cores())
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._held: Connection | None = None
        self._lifeline: Connection | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.close()

    def run(self, jobs: list[Job], then: Callable[[int, Rendered], Job | None]) -> None:
        """Renders each job, handing each rendering to `then(index, rendering)`, which may give
        a next job for the same index (a page laid out again): it runs before any job not yet
        started, so that no page's last layout is left alone at the end while the other
        processes wait. Jobs start in the order given."""
        queue = collections.deque(enumerate(jobs))
        if self.jobs == 1:  # one process: this one
            from . import pdf

            while queue:
                index, args = queue.popleft()
                if (follow := then(index, pdf.render_job(*args))) is not None:
                    queue.appendleft((index, follow))
            return
        pool = self._start()
        running: dict[concurrent.futures.Future[Rendered], int] = {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:  # the rest wait here, not in the pool
                    index, args = queue.popleft()
                    running[pool.submit(job, *args)] = index
                finished, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    if (follow := then(index, future.result())) is not None:
                        queue.appendleft((index, follow))
        except BaseException:  # Ctrl-C, SIGTERM, an error: the workers stop now, mid-page
            self.close(abort=True)
            raise

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # A fork server imports WeasyPrint once and forks each worker from it; forking this
            # process instead would copy rich's progress thread mid-flight.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["mlgrind.pipeline.pdf"])
            # Only this process holds `held`: the workers exit once it closes, when this process
            # stops early or is killed; the fork server and its resource tracker then exit too.
            self._lifeline, self._held = context.Pipe(duplex=False)
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=exit_with, initargs=(self._lifeline,))
        return self._pool

    def close(self, abort: bool = False) -> None:
        """Stops the workers: once idle, or at once (`abort`), mid-page."""
        if abort and self._held is not None:
            self._held.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        for end in (self._held, self._lifeline):
            if end is not None:
                end.close()
        self._pool = self._held = self._lifeline = None
