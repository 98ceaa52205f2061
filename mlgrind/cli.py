"""The `mlgrind` command: build, check, schema; `calc` and `exercise` are groups of their own;
`morning`, `mark` and `progress` (the daily routine) live in routine/cli.py.

Exit status: 0 success, 1 content errors (each printed as file:line:col: message), 2 usage
errors. A user's mistake never shows a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click

from .pipeline.problems import ContentError, display_path

# The pipeline (pydantic, Jinja, Markdown, and WeasyPrint on a cache miss) is imported inside
# the commands that build, rich when something is printed through it, and the other command
# groups when they are called (`_Commands`), so that a command starts with only what it uses:
# `mlgrind calc` imports neither rich nor the pipeline (`python -X importtime` shows it).


class _Console:
    """rich's Console, made on first use (rich takes ~30 ms to import); rich's progress display
    also enters it as a context."""

    def __init__(self, **options: object) -> None:
        self._options, self._console = options, None

    def __getattr__(self, name: str) -> object:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)

    def __enter__(self) -> object:
        return self.__getattr__("__enter__")()

    def __exit__(self, *exc: object) -> None:
        self.__getattr__("__exit__")(*exc)


err = _Console(stderr=True, highlight=False)
stdout = _Console(highlight=False)


class _Commands(click.Group):
    """A group whose commands from other modules (name → "module:attribute") are imported only
    when one is called, or listed by --help."""

    def __init__(self, *args: object, elsewhere: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.elsewhere = elsewhere

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.elsewhere])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.elsewhere and name not in self.commands:
            module, attribute = self.elsewhere[name].split(":")
            self.add_command(getattr(importlib.import_module(module, __package__), attribute), name)
        return super().get_command(ctx, name)

ROOT = click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                    show_default=True, help="Project folder (holds onepagers/, cards/, templates/).")


def _project(root: Path):  # type: ignore[no-untyped-def]
    from .pipeline.build import Project, UsageError

    try:
        return Project.at(root)
    except UsageError as error:
        raise click.UsageError(str(error)) from None


def _report(error: ContentError) -> None:
    for problem in error.problems:
        err.print(str(problem), markup=False, soft_wrap=True)
    n = len(error.problems)
    err.print(f"[red]✗ {n} problem{'s' * (n != 1)}[/red]; nothing was written")
    sys.exit(1)


def _shown(path: Path) -> str:
    return display_path(path, Path.cwd())


def _size(n: int) -> str:
    return f"{n / 1024:,.0f} kB" if n >= 1024 else f"{n} B"


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]},
             elsewhere={"calc": ".calc.cli:calc", "exercise": ".exercise.cli:exercise",
                        "morning": ".routine.cli:morning", "mark": ".routine.cli:mark",
                        "progress": ".routine.cli:progress"})
@click.version_option(package_name="mlgrind")
def main() -> None:
    """mlgrind: YAML study sources → printable one-pagers (PDF) and an Anki deck.

    Run it in the project folder: `mlgrind build` writes build/; `mlgrind check` validates.
    """


@main.command("build")
@click.option("--paper", type=click.Choice(["a4", "letter", "both"]), default="both",
              show_default=True, help="Paper size of the PDFs.")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Render only this sheet (id, number or file stem); repeat for more. "
                   "The deck always holds every card.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder  [default: ROOT/build]")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, metavar="N",
              help="Render with N processes; the PDFs are the same for every N.  "
                   "[default: the number of cores]")
@ROOT
def build_command(paper: str, only: tuple[str, ...], out: Path | None, jobs: int | None,
                  root: Path) -> None:
    """Write the Anki deck, the one-page PDFs and their recall editions.

    \b
    OUT/mlgrind.apkg                          the deck, one sub-deck per sheet
    OUT/onepagers/NN-name-PAPER.pdf           each sheet (NN = its place in the seed's sequence)
    OUT/onepagers/NN-name-recall-PAPER.pdf    the same sheet with its facts blanked
    OUT/booklet[-recall]-PAPER.pdf            all sheets in order (full builds only)
    ROOT/notes.lock.json                      the notes ledger: commit it with the sources

    Nothing is written unless everything builds; files whose bytes did not change are left
    untouched, and unchanged sheets come from a cache in OUT/.cache/. OUT/.mlgrind-manifest.json
    lists what mlgrind wrote: a full build removes those files it no longer makes (unless they
    were edited since), and never any other file in OUT. It also records what the build read
    (sources, templates, ledger, papers, mlgrind's code and dependencies' versions,
    SOURCE_DATE_EPOCH): a full build that finds all of it unchanged, and every output intact,
    says "up to date" and does nothing. SOURCE_DATE_EPOCH, if set, is the build's clock.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .pipeline.build import PAPERS, UsageError, build
    from .pipeline.write import PartialWrite

    project = _project(root)
    out_dir = out if out is not None else project.root / "build"
    papers = PAPERS if paper == "both" else (paper,)
    start = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[item]}"),
                        TimeElapsedColumn(), console=err, transient=True)
    task = progress.add_task("building", total=None, item="")
    try:
        with _sigterm_unwinds(), progress:
            result = build(project, out_dir, papers=papers, only=list(only), jobs=jobs,
                           progress=lambda item: progress.update(task, item=item, advance=1))
    except ContentError as error:
        _report(error)
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    except PartialWrite as error:
        _report_partial(error, out_dir)
    except OSError as error:
        err.print(f"cannot write {error.filename or out_dir}: {error.strerror or error}; "
                  "nothing was replaced", soft_wrap=True, markup=False)
        sys.exit(1)
    except KeyboardInterrupt as stop:
        name, code = ("SIGTERM", 143) if isinstance(stop, _Terminated) else ("Ctrl-C", 130)
        err.print(f"[red]✗[/red] stopped by {name}: no file is left half-written", soft_wrap=True)
        sys.exit(code)
    outputs = result.outputs
    if result.up_to_date:  # one line, not one per file: none was even compiled
        stdout.print(f"  up to date: nothing changed since the last build ({len(outputs)} files "
                     "checked)")
    else:
        for o in outputs:
            state = "written" if o.written else "unchanged"
            how = "cached" if o.cached else f"{o.seconds:.2f} s"
            stdout.print(f"  {state:9} {_shown(out_dir / o.path)}  "
                         f"[dim]{_size(len(o.data))}, {how}[/dim]", soft_wrap=True)
    for path in result.removed:
        stdout.print(f"  removed   {_shown(path)}  [dim](no longer built)[/dim]", soft_wrap=True)
    _report_changes(result.changes)
    err.print(f"[green]✓[/green] {len(outputs)} files in {time.perf_counter() - start:.2f} s")


def _report_partial(error, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """A rename failed midway: which files hold this build's bytes, and which the last one's."""
    err.print(f"cannot replace {_shown(Path(error.filename))}: {error.strerror or error}",
              soft_wrap=True, markup=False)
    cache = out_dir / ".cache"
    for state, paths in (("replaced", error.replaced), ("not replaced", error.kept)):
        for path in paths:
            if path.parent != cache:
                err.print(f"  {state:12}  {_shown(path)}", soft_wrap=True, markup=False)
        if n := sum(path.parent == cache for path in paths):
            err.print(f"  {state:12}  {n} file{'s' * (n != 1)} in {_shown(cache)}/", soft_wrap=True,
                      markup=False)
    done = "partly replaced" if error.replaced else "nothing was replaced"
    err.print(f"[red]✗[/red] {done}: the next build writes the rest")
    sys.exit(1)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that the render workers stop and temporary files go."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_changes(changes) -> None:  # type: ignore[no-untyped-def]
    """What re-importing the deck will do to a learner's collection."""
    parts = [f"{len(ids)} {what}" for what, ids in
             (("new", changes.added), ("updated", changes.updated), ("retired", changes.retired)) if ids]
    if parts:
        err.print(f"  deck: {', '.join(parts)} note(s) since the last build")
    if changes.updated:
        err.print(f"  [yellow]updated[/yellow] {', '.join(changes.updated)}: re-importing replaces "
                  "these notes' fields, tags and your own edits to them in Anki", soft_wrap=True,
                  highlight=False)
    for note_id in changes.retired:
        err.print(f"  [yellow]retired[/yellow] {note_id}: no longer in cards/; tagged mlgrind::retired "
                  "(Anki's import never deletes: delete it in Anki if you wish)", soft_wrap=True)
    _warn(changes)


def _warn(changes) -> None:  # type: ignore[no-untyped-def]
    """What a learner must do by hand after importing: Anki moves no cards between decks."""
    for (old, new), ids in changes.moved.items():
        err.print(f"  [yellow]warning[/yellow] {len(ids)} note(s) move from deck '{old}' to '{new}': "
                  f"Anki keeps their cards in '{old}' (in Anki: Browse, select them, Change Deck)",
                  soft_wrap=True, highlight=False)
    for warning in changes.warnings:
        err.print(f"  [yellow]warning[/yellow] {warning}", soft_wrap=True)


@main.command("check")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, metavar="N",
              help="Lay out pages with N processes.  [default: the number of cores]")
@ROOT
def check_command(jobs: int | None, root: Path) -> None:
    """Validate everything (schema, ids, computed values, one-page fit); write no output.

    Pages are laid out and counted, not made into PDFs. What the check learns (each page's
    layout) goes into the build's cache, ROOT/build/.cache/, so that the next build goes
    straight to it; pages the cache already knows to fit are not laid out again.
    """
    from .pipeline.build import UsageError, check

    project = _project(root)
    start = time.perf_counter()
    try:
        with err.status("checking…"):
            result = check(project, project.root / "build", jobs=jobs)
    except ContentError as error:
        _report(error)
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    _warn(result.changes)
    pdfs = [o.path for o in result.outputs if o.path.startswith("onepagers/")]
    recall = sum("-recall-" in path for path in pdfs)
    err.print(f"[green]✓[/green] all good: {len(pdfs) - recall} answer keys fit one page each, "
              f"{recall} recall editions one sheet (both sides at most), the deck builds "
              f"({time.perf_counter() - start:.2f} s)")


@main.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the YAML sources (for yaml-language-server and editors)."""
    from .pipeline.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command("watch")
@click.option("--paper", type=click.Choice(["a4", "letter", "both"]), default="both",
              show_default=True, help="Paper size of the PDFs.")
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Render only this sheet (id, number or file stem); repeat for more.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder  [default: ROOT/build]")
@ROOT
def watch_command(paper: str, only: tuple[str, ...], out: Path | None, root: Path) -> None:
    """Build, then rebuild each time a source or template is saved; Ctrl-C stops.

    Each rebuild is `mlgrind build` with the same options: only what the save changed is
    rendered again. It prints what it rebuilt and how long that took; a rebuild that fails
    shows each problem at its file:line:col, writes nothing, and the watch goes on.
    """
    from .pipeline.build import PAPERS, UsageError
    from .pipeline.watch import WATCHED, Saves, rounds

    project = _project(root)
    out_dir = out if out is not None else project.root / "build"
    papers = PAPERS if paper == "both" else (paper,)
    folders = ", ".join(f"{name}/" for name in WATCHED)
    try:
        with _sigterm_unwinds(), Saves(project, out_dir) as saved:
            for done in rounds(project, out_dir, saved, papers=papers, only=list(only)):
                _report_round(done, out_dir)
                err.print(f"[dim]watching {folders} (Ctrl-C stops)[/dim]")
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    except KeyboardInterrupt as stop:  # mid-build too: a build leaves no file half-written
        terminated = isinstance(stop, _Terminated)
        err.print(f"stopped watching{' (SIGTERM)' * terminated}")
        if terminated:
            sys.exit(143)


def _report_round(done, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """One rebuild: what set it off, what it rendered and wrote, or what is wrong."""
    if done.changed:
        err.print(f"saved {', '.join(done.changed)}", soft_wrap=True, markup=False)
    for problem in done.problems:
        err.print(str(problem), markup=False, soft_wrap=True)
    if done.error:
        err.print(done.error, markup=False, soft_wrap=True)
    if done.result is None:
        n = len(done.problems)
        what = f"{n} problem{'s' * (n != 1)}" if n else "failed"
        err.print(f"[red]✗[/red] {what} ({done.seconds:.2f} s): nothing was written; save a fix")
        return
    rendered = {o.path for o in done.rendered}
    for o in done.result.outputs:
        if o.path in rendered:
            stdout.print(f"  rendered  {_shown(out_dir / o.path)}  [dim]{o.seconds:.2f} s[/dim]",
                         soft_wrap=True)
        elif o.written:
            stdout.print(f"  written   {_shown(out_dir / o.path)}", soft_wrap=True)
    _report_changes(done.result.changes)
    err.print(f"[green]✓[/green] {len(rendered)} page(s) rendered, {len(done.written)} file(s) "
              f"written in {done.seconds:.2f} s")
