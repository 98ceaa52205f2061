"""`mlgrind exercise list | start | check`: the seed's slow & painful practice.

Exit status: 0 success (for check: every check passes), 1 failing checks or a refused
overwrite, 2 usage errors (an unknown exercise lists the valid ones).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click

# The catalog (NumPy, the reference package) is imported inside the commands, so that
# `mlgrind --help` never pays for it.

DIR = click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder of your exercise files (and of .mlgrind-progress.json).",
)
NAME = click.argument("name", metavar="NAME")


def _exercise(name: str):  # type: ignore[no-untyped-def]
    from .catalog import UnknownExercise, get

    try:
        return get(name)
    except UnknownExercise as error:
        raise click.UsageError(str(error)) from None


def _progress(call):  # type: ignore[no-untyped-def]
    from .progress import ProgressError

    try:
        return call()
    except ProgressError as error:
        click.echo(f"✗ {error}", err=True)
        sys.exit(1)


def _dir_option(folder: Path) -> str:
    """How to repeat --dir in a suggested command: nothing for the current folder."""
    return "" if folder == Path(".") else f" --dir {folder}"


def _indented(message: str, indent: str = "      ") -> str:
    """Wrap each line of a message for the terminal, keeping its own line breaks."""
    return "\n".join(
        textwrap.fill(line, width=100, initial_indent=indent, subsequent_indent=indent + "  ")
        for line in message.splitlines()
    )


@click.group("exercise", context_settings={"help_option_names": ["-h", "--help"]})
def exercise() -> None:
    """Slow & painful practice: NumPy scaffolds, graded against the reference package.

    `start NAME` writes NAME.py (signatures and docstrings in suffix notation, bodies to fill
    in) and test_NAME.py; `check NAME` grades your NAME.py against mlgrind.ref and records the
    result in DIR/.mlgrind-progress.json; `list` shows every exercise and how you did.
    """


@exercise.command("list")
@DIR
def list_command(folder: Path) -> None:
    """The exercises in the seed's order, with a one-line goal and your latest result."""
    from .catalog import exercises
    from .progress import latest

    done = _progress(lambda: latest(folder))
    rows = exercises()
    width = max(len(e.name) for e in rows)
    for i, e in enumerate(rows, start=1):
        attempt = done.get(e.name)
        if attempt is None:
            status = "started" if (folder / f"{e.name}.py").exists() else ""
        elif attempt["passed"]:
            status = click.style(f"✓ passed {attempt['date'][:10]}", fg="green")
        else:
            status = click.style(
                f"✗ {len(attempt['failed'])} failing {attempt['date'][:10]}", fg="red"
            )
        click.echo(f"{i:2}  {e.name:{width}}  {e.goal}" + (f"  {status}" if status else ""))
    passed = sum(1 for a in done.values() if a["passed"])
    click.echo(
        f"\n{passed} of {len(rows)} passed"
        f"{'' if folder == Path('.') else f' in {folder}'}. "
        f"Start one: mlgrind exercise start NAME{_dir_option(folder)}"
    )


@exercise.command("start")
@NAME
@DIR
@click.option("--force", is_flag=True, help="Overwrite NAME.py and test_NAME.py if they exist.")
def start_command(name: str, folder: Path, force: bool) -> None:
    """Write NAME.py (the contract, bodies raise NotImplementedError) and test_NAME.py."""
    from .scaffold import WouldOverwrite, write

    e = _exercise(name)
    try:
        module, test = write(e, folder, force=force)
    except WouldOverwrite as error:
        files = " and ".join(str(p) for p in error.paths)
        click.echo(
            f"✗ {files} already exist{'s' * (len(error.paths) == 1)}: nothing written. "
            f"It may be your work; --force overwrites it.",
            err=True,
        )
        sys.exit(1)
    click.echo(
        f"wrote {module} and {test}\n\n{e.title}: {e.goal}\n\n"
        f"Fill in every function of {module.name} (NumPy and the standard library only),"
        f" then:\n  mlgrind exercise check {e.name}{_dir_option(folder)}"
        f"     (or: python -m pytest {test})\n"
        f"Stuck? add --hint for a nudge ({len(e.hints)} of them, one at a time)."
    )


@exercise.command("check")
@NAME
@DIR
@click.option(
    "--hint",
    is_flag=True,
    help="After the report, show the next nudge (one at a time, never the solution).",
)
def check_command(name: str, folder: Path, hint: bool) -> None:
    """Grade NAME.py against the reference: the checks of test_NAME.py, plus a record."""
    from .catalog import exercises
    from .grade import run
    from .progress import FILE, record, take_hint

    e = _exercise(name)
    module = folder / f"{e.name}.py"
    if not module.exists():
        raise click.UsageError(
            f"no {module}: run `mlgrind exercise start {e.name}{_dir_option(folder)}` first"
        )
    order = [x.name for x in exercises()]
    click.echo(f"{e.name}: {e.title} (exercise {order.index(e.name) + 1} of {len(order)})")
    results = run(e.name, module)
    shown: set[str] = set()
    for r in results:
        if r.passed:
            click.echo(click.style("  ✓ ", fg="green") + r.check)
            continue
        click.echo(click.style("  ✗ ", fg="red") + r.check)
        # Many checks fail for one cause while a function is unwritten: say it once.
        click.echo("      (the same as above)" if r.message in shown else _indented(r.message))
        shown.add(r.message)
    failed = [r.check for r in results if not r.passed]
    _progress(lambda: record(folder, e.name, failed))
    where = folder / FILE
    if failed:
        click.echo(
            f"\n{len(results) - len(failed)} of {len(results)} checks pass (recorded in {where})."
        )
    else:
        after = order.index(e.name) + 1
        nxt = (
            f" Next in the seed's order: mlgrind exercise start {order[after]}{_dir_option(folder)}"
            if after < len(order)
            else " That was the last one."
        )
        click.echo(
            click.style(f"\n✓ all {len(results)} checks pass", fg="green")
            + f" (recorded in {where}).{nxt}"
        )
    if hint:
        i = _progress(lambda: take_hint(folder, e.name, len(e.hints)))
        if i is None:
            click.echo(
                f"\nNo nudges left: all {len(e.hints)} were shown. Re-read the contract's "
                f"docstrings and the first failing message above; it names the entry."
            )
        else:
            click.echo(f"\nHint {i + 1} of {len(e.hints)}:\n" + _indented(e.hints[i], "  "))
    elif failed:
        click.echo(
            f"Stuck? mlgrind exercise check {e.name}{_dir_option(folder)} --hint "
            f"gives one nudge at a time."
        )
    sys.exit(1 if failed else 0)
