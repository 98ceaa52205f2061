"""`mlgrind exercise list | start | check`: the seed's slow & painful practice.

Exit status: 0 success (for check: every check passes), 1 failing checks, a refused
overwrite or an unusable progress file, 2 usage errors (an unknown exercise lists the valid
ones, a --dir that cannot be a folder).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click

from .grade import MEMORY_LIMIT, OUTPUT_LIMIT, TIMEOUT

# The catalog (NumPy, the reference package) is imported inside the commands, so that
# `mlgrind --help` never pays for it.


def _folder(ctx: click.Context, param: click.Parameter, folder: Path) -> Path:
    """--dir may not exist yet (start makes it), but it may not be, or be below, a file."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise click.BadParameter(f"{p} is a file, not a folder", ctx, param)
            break
    return folder


DIR = click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    callback=_folder,
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


def _passed(records: dict[str, dict]) -> set[str]:
    return {n for n, r in records.items() if any(a["passed"] for a in r.get("attempts", []))}


def _next(folder: Path, records: dict[str, dict], after: str | None = None) -> str:
    """What to do next: the first exercise in the seed's order (after `after`, else from the
    start) not yet passed, started or not."""
    from .catalog import names

    order = names()
    passed = _passed(records)
    later = order[order.index(after) + 1 :] if after else order
    todo = [n for n in later if n not in passed] or [n for n in order if n not in passed]
    if not todo:
        return f"All {len(order)} exercises pass."
    n = todo[0]
    verb = "check" if (folder / f"{n}.py").exists() else "start"
    return f"Next in the seed's order: mlgrind exercise {verb} {n}{_dir_option(folder)}"


def _status(folder: Path, name: str, record: dict | None) -> str:
    """One line about how the learner did: best and latest result, attempts, hints seen."""
    from .progress import best, score

    attempts = (record or {}).get("attempts", [])
    if not attempts:
        return "started, not checked yet" if (folder / f"{name}.py").exists() else ""
    top, last = best(attempts), attempts[-1]
    if top["passed"]:
        parts = [click.style(f"✓ passed {top['date'][:10]}", fg="green")]
    else:
        parts = [click.style(f"✗ best {score(top)}", fg="red")]
    if last is not top:
        mark = "✓" if last["passed"] else "✗"
        parts.append(f"latest {mark} {score(last)} {last['date'][:10]}")
    elif not top["passed"]:
        parts[0] += f" {top['date'][:10]}"
    hints = record.get("hints", 0)
    parts.append(f"{len(attempts)} attempt{'s' * (len(attempts) != 1)}")
    parts.append(f"{hints} hint{'s' * (hints != 1)}")
    return " · ".join(parts)


@exercise.command("list")
@DIR
def list_command(folder: Path) -> None:
    """The exercises in the seed's order, each with its goal and how you did: the best and the
    latest result, attempts and hints used."""
    from .catalog import exercises
    from .progress import entries

    records = _progress(lambda: entries(folder))
    rows = exercises()
    width = max(len(e.name) for e in rows)
    for i, e in enumerate(rows, start=1):
        click.echo(f"{i:2}  {e.name:{width}}  {e.goal}")
        status = _status(folder, e.name, records.get(e.name))
        if status:
            click.echo(f"    {'':{width}}  {status}")
    click.echo(
        f"\n{len(_passed(records) & {e.name for e in rows})} of {len(rows)} passed"
        f"{'' if folder == Path('.') else f' in {folder}'}. {_next(folder, records)}"
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
    except OSError as error:
        click.echo(f"✗ cannot write in {folder}: {error.strerror}", err=True)
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
    help="After the report, show the next nudge not yet seen (one at a time, never the "
    "solution): one tied to a failing check when there is one, else the next in order.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help=f"How long each check may run before it fails. Your code runs in a separate process, "
    f"with at most {MEMORY_LIMIT // 2**30} GB of memory (on Linux) and "
    f"{OUTPUT_LIMIT // 2**20} MB of printing per check.",
)
def check_command(name: str, folder: Path, hint: bool, timeout: float) -> None:
    """Grade NAME.py against the reference: the checks of test_NAME.py, plus a record."""
    from .catalog import names
    from .grade import run
    from .progress import FILE, entries, record, take_hint

    e = _exercise(name)
    module = folder / f"{e.name}.py"
    if not module.is_file():
        raise click.UsageError(
            f"no {module}: run `mlgrind exercise start {e.name}{_dir_option(folder)}` first"
        )
    _progress(lambda: entries(folder))  # an unusable record stops us before grading, not after
    order = names()
    click.echo(f"{e.name}: {e.title} (exercise {order.index(e.name) + 1} of {len(order)})")
    results = run(e.name, module, timeout, refuse_answer_key=True)
    said: set[str] = set()
    for r in results:
        if r.passed:
            click.echo(click.style("  ✓ ", fg="green") + r.check)
            continue
        click.echo(click.style("  ✗ ", fg="red") + r.check)
        # Many checks fail for one cause while a function is unwritten: say it once.
        click.echo("      (the same as above)" if r.message in said else _indented(r.message))
        if r.output and r.output not in said:
            click.echo(_printed(r.output))
        said |= {r.message, r.output}
    failed = [r.check for r in results if not r.passed]
    _progress(lambda: record(folder, e.name, failed, len(results)))
    where = folder / FILE
    if failed:
        click.echo(
            f"\n{len(results) - len(failed)} of {len(results)} checks pass (recorded in {where})."
        )
    else:
        click.echo(
            click.style(f"\n✓ all {len(results)} checks pass", fg="green")
            + f" (recorded in {where}). {_next(folder, _progress(lambda: entries(folder)), e.name)}"
        )
    fitting: dict[int, str] = {}  # hint → the first failing check it fits
    for c in failed:
        if c in e.hint_for:
            fitting.setdefault(e.hint_for[c], c)
    if hint:
        i = _progress(lambda: take_hint(folder, e.name, len(e.hints), list(fitting)))
        if i is None:
            click.echo(
                f"\nNo nudges left: all {len(e.hints)} were shown. Re-read the contract's "
                f"docstrings and the first failing message above; it names the entry."
            )
        else:
            about = f" (for {fitting[i]})" if i in fitting else ""
            click.echo(
                f"\nHint {i + 1} of {len(e.hints)}{about}:\n" + _indented(e.hints[i], "  ")
            )
    elif failed:
        click.echo(
            f"Stuck? mlgrind exercise check {e.name}{_dir_option(folder)} --hint "
            f"gives one nudge at a time."
        )
    sys.exit(1 if failed else 0)


def _printed(output: str, lines: int = 10, width: int = 100) -> str:
    """What the learner's code printed, a few lines of it: enough to debug by, never a flood."""
    rows = output.splitlines()
    shown = [row if len(row) <= width else row[:width] + " …" for row in rows[:lines]]
    more = "\n      │ … (more not shown)" if len(rows) > lines else ""
    return "      printed:\n" + "\n".join(f"      │ {row}" for row in shown) + more
