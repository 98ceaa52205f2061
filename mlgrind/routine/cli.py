"""`mlgrind morning | mark | progress`: the seed's daily loop on paper, logged.

Exit status: 0 success, 1 when the log or the content cannot be read or written, 2 usage errors
(an unknown code, panel or sheet, a bad date). A user's mistake never shows a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import click
from rich.console import Console

from .log import ENV, RATINGS, WHY, LogError, Mistake, PanelMark

# fsrs, the pipeline, WeasyPrint and matplotlib are imported inside the commands (and by the
# modules they import), so that `mlgrind --help` starts at once.

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

DB = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help=f"The log (SQLite)  [default: ${ENV}, else log.sqlite3 in your user data "
                       "folder]")
ROOT = click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                    show_default=True, help="Project folder (holds onepagers/, cards/, templates/).")
DATE = click.option("--date", "day", metavar="YYYY-MM-DD", default=None,
                    help="The day  [default: today]")


def _day(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.UsageError(f"bad --date {text!r}: expected a day as YYYY-MM-DD") from None


def _db(path: Path | None) -> Path:
    from .log import default_path

    return path if path is not None else default_path()


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """The log's and the content's problems as one clear message, exit 1."""
    from ..pipeline.build import UsageError
    from ..pipeline.problems import ContentError

    try:
        yield
    except LogError as error:
        err.print(f"[red]✗[/red] {error}", soft_wrap=True, markup=False)
        sys.exit(1)
    except ContentError as error:
        from ..cli import _report

        _report(error)
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    except OSError as error:  # the pack or the plot: a read-only build folder, a full disk
        err.print(f"[red]✗[/red] cannot write {error.filename or 'the output'}: "
                  f"{error.strerror or error}", soft_wrap=True)
        sys.exit(1)


def _curriculum(root: Path):  # type: ignore[no-untyped-def]
    from .schedule import curriculum

    return curriculum(root)


def _read(db_path: Path):  # type: ignore[no-untyped-def]
    from . import log

    with log.transaction(db_path, write=False) as db:
        return log.entries(db), log.packs(db)


# morning ------------------------------------------------------------------------------------


@click.command("morning")
@DATE
@click.option("--new", "new", type=click.IntRange(0), default=1, show_default=True,
              help="New sheets that may enter today, in the seed's order.")
@click.option("--pages", type=click.IntRange(1), default=4, show_default=True,
              help="Recall pages to write today, at most (one sheet always goes in).")
@click.option("--paper", type=click.Choice(["a4", "letter", "both"]), default="a4", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder  [default: ROOT/build]")
@DB
@ROOT
def morning(day: str | None, new: int, pages: int, paper: str, out_dir: Path | None,
            db_path: Path | None, root: Path) -> None:
    """Write today's pack: OUT/morning/YYYY-MM-DD-PAPER.pdf.

    \b
    1. the recall pages due today, each stamped with the date and a 4-letter code;
    2. their answer keys;
    3. your recent mistakes on those sheets, with the reasons you logged.

    What is due is scheduled per panel by FSRS from your marks (`mlgrind mark`); a sheet is due
    when any of its panels is. Sheets you have never marked enter in the seed's order, NEW a
    day, and the next one waits until you mark it: none is skipped. Due reviews come first,
    the most overdue first, within PAGES recall pages. Printed double-sided, the keys never
    fall on the back of a recall page.
    """
    from . import log, pack
    from .schedule import plan as make_plan

    start = time.perf_counter()
    today = _day(day)
    papers = ("a4", "letter") if paper == "both" else (paper,)
    db_file = _db(db_path)
    out_dir = out_dir if out_dir is not None else root / "build"
    with _errors():
        sheets = _curriculum(root)
        entries, _ = _read(db_file)
        from .schedule import candidates

        reviews, fresh, _, _ = candidates(sheets, entries, today, new)
        wanted = [i.sheet for i in (*reviews, *fresh)]
        if wanted:
            with err.status(f"building {len(wanted)} sheet(s) (cached when unchanged)…"):
                pack.built(root, out_dir, wanted, papers)
        plan = make_plan(sheets, entries, today, new=new, pages=pages,
                         pages_of=lambda s: pack.page_count(pack.sheet_pdf(out_dir, s, papers[0],
                                                                           recall=True)))
        if not plan.items:
            _nothing_due(plan, sheets, new)
            return
        recent = pack.recent_mistakes([i.sheet for i in plan.items], entries, today)
        folder = out_dir / "morning"
        written = []
        with log.transaction(db_file) as db:
            taken = log.packs(db)
            codes = {}
            for item in plan.items:
                codes[item.sheet.id] = pack.code_for(today, item.sheet.id, taken)
                taken[codes[item.sheet.id]] = (today.isoformat(), item.sheet.id)
                log.add_pack(db, codes[item.sheet.id], today.isoformat(), item.sheet.id,
                             datetime.now().isoformat(timespec="seconds"))
            for p in papers:
                data, counts = pack.assemble(plan, codes, out_dir, p, recent)
                written.append((_write(folder / f"{today.isoformat()}-{p}.pdf", data), counts))
    _say_pack(plan, codes, written, recent, new, pages, time.perf_counter() - start)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)  # a killed morning never leaves half a pack
    return path


def _say_pack(plan, codes, written, recent, new, pages, seconds) -> None:  # type: ignore[no-untyped-def]
    from .schedule import spoken

    used = sum(i.pages for i in plan.items)
    out.print(f"[bold]Morning pack for {spoken(plan.day)}[/bold]: {len(plan.items)} sheet(s), "
              f"{used} recall page(s) of your {pages}", soft_wrap=True)
    for item in plan.items:
        why = item.reason + (f" ({new} new a day)" if item.new else "")
        out.print(f"  [bold]{codes[item.sheet.id]}[/bold]  {item.sheet.stem:24} {why}", soft_wrap=True)
        if not item.new:
            late = sorted(item.due, key=lambda d: -d[1])[:3]
            titles = "; ".join(item.sheet.panel_title(k) + (f" (+{d} d)" if d else "") for k, d in late)
            more = f"; +{len(item.due) - 3} more" if len(item.due) > 3 else ""
            out.print(f"        [dim]{titles}{more}[/dim]", soft_wrap=True)
    for item in plan.postponed:
        why = "waits for room" if item.new else item.reason
        out.print(f"  [yellow]later[/yellow] {item.sheet.stem:24} {why}: over the {pages}-page budget "
                  "(--pages)", soft_wrap=True)
    shown, left = recent
    for path, counts in written:
        parts = ", ".join(f"{n} {what}" for what, n in counts.items())
        out.print(f"  wrote {path}  [dim]({parts})[/dim]", soft_wrap=True)
    if not shown:
        out.print("  [dim]no mistakes logged on these sheets yet: no mistakes page[/dim]")
    out.print(f"After checking each page against its key: [bold]mlgrind mark CODE[/bold]  "
              f"[dim]({seconds:.1f} s)[/dim]")


def _nothing_due(plan, sheets, new) -> None:  # type: ignore[no-untyped-def]
    from .schedule import spoken

    out.print(f"Nothing to write on {spoken(plan.day)}: no panel is due", end="")
    if new == 0:
        out.print(" and --new 0 lets no new sheet in.")
    elif plan.new_today:
        out.print(f", and today's {plan.new_today} new sheet(s) are in already.")
    else:
        out.print(f", and all {len(sheets)} sheets are started.")
    if plan.next_due:
        when, sheet = plan.next_due
        out.print(f"Next due: {spoken(when, year=False)} ({sheet.stem}). No pack written.")
    else:
        out.print("No pack written.")


# mark ---------------------------------------------------------------------------------------


@click.command("mark")
@click.argument("target", required=False, metavar="CODE|SHEET")
@DATE
@click.option("--panel", "panels", multiple=True, metavar="ID",
              help="Panel id (repeat for more)  [default: every panel of the sheet]")
@click.option("--rating", type=click.Choice(RATINGS), help="How the recall went.")
@click.option("--mistakes", type=click.IntRange(0), help="Count of mistakes (gives the rating).")
@click.option("--mistake", "whats", multiple=True, metavar="WHAT",
              help="One mistake, in your words (repeat; needs one --panel).")
@click.option("--why", "whys", multiple=True, type=click.Choice(WHY),
              help="Why, per --mistake in order (or one for all).")
@click.option("--note", "notes", multiple=True, metavar="TEXT",
              help="A note per --mistake in order (optional).")
@click.option("--undo", is_flag=True, help="Remove the last entry.")
@click.option("--edit", "edit", type=int, metavar="ENTRY",
              help="Change a past entry: the panels given replace theirs; --date moves it.")
@click.option("--list", "listing", is_flag=True, help="Show the last entries with their numbers.")
@DB
@ROOT
def mark(target: str | None, day: str | None, panels: tuple[str, ...], rating: str | None,
         mistakes: int | None, whats: tuple[str, ...], whys: tuple[str, ...], notes: tuple[str, ...],
         undo: bool, edit: int | None, listing: bool, db_path: Path | None, root: Path) -> None:
    """Log how today's recall of a sheet went, per panel.

    CODE is the 4-letter code printed on the recall page (its day is the pack's); SHEET is a
    sheet's id, number or file stem (its day is today, or --date).

    \b
    Interactive (a terminal, no --rating/--mistakes/--mistake): one prompt per panel.
    Scripted:  mlgrind mark K7QX --rating good
               mlgrind mark K7QX --panel scale-mask-softmax --mistakes 2 \\
                   --mistake "sqrt(d) not sqrt(K)" --why confused
    Mistakes → rating: 0 → good, 1–2 → hard, 3 or more → again (--rating wins if given;
    easy only when you say so). Reasons: forgot, confused (two things), arithmetic,
    shape (or axis order), never-understood.
    Correct it: --undo removes the last entry; --list shows entries and their numbers;
    --edit N with the same flags replaces those panels' marks in entry N.
    """
    from . import log

    db_file = _db(db_path)
    scripted = rating is not None or mistakes is not None or bool(whats)
    if sum(map(bool, (undo, edit is not None, listing))) > 1:
        raise click.UsageError("give one of --undo, --edit and --list")
    if (undo or listing) and (target or scripted or panels):
        raise click.UsageError(f"--{'undo' if undo else 'list'} takes no CODE|SHEET and no marks")
    with _errors():
        if listing:
            _list(db_file)
            return
        if undo:
            with log.transaction(db_file) as db:
                last = log.last_entry(db)
                if last is None:
                    raise click.UsageError("the log is empty: nothing to undo")
                entry = log.entries(db, ids=[last])[0]
                log.delete_entry(db, last)
            out.print(f"✓ removed entry #{entry.id}: {entry.sheet} on {entry.day} "
                      f"({_summary(entry.marks)})")
            return
        sheets = _curriculum(root)
        # What is being marked, then the marks (prompts may take minutes: no lock is held),
        # then one write transaction that checks again and records them.
        with log.transaction(db_file, write=False) as db:
            sheet, when, code, before = _marking(db, sheets, target, edit, day)
        if scripted:
            marks = _scripted(sheet, panels, rating, mistakes, whats, whys, notes)
        elif panels or whys or notes:
            raise click.UsageError("--panel, --why and --note need --rating, --mistakes or --mistake")
        elif sys.stdin.isatty():
            try:
                marks = _interactive(sheet, before)
            except click.Abort:
                err.print("[red]✗[/red] stopped: nothing was recorded")
                sys.exit(130)
        else:
            raise click.UsageError("stdin is not a terminal: give --rating, --mistakes or "
                                   "--mistake (see --help)")
        if not marks:
            raise click.UsageError("no panel marked: nothing recorded")
        with log.transaction(db_file) as db:
            if edit is not None:
                if not log.entries(db, ids=[edit]):
                    raise click.UsageError(f"entry #{edit} was removed meanwhile")
                log.put_marks(db, edit, marks)
                log.move_entry(db, edit, when.isoformat())
                number = edit
            else:
                number = log.add_entry(db, when.isoformat(), sheet.id, code,
                                       datetime.now().isoformat(timespec="seconds"), marks)
            entries = log.entries(db)
    _say_mark(number, "changed" if edit is not None else "logged", sheet, when, marks, entries)


def _marking(db, sheets, target: str | None, edit: int | None, day: str | None):  # type: ignore[no-untyped-def]
    """(sheet, day, code, the entry's marks so far) of the entry to write or to edit."""
    from . import log

    if edit is not None:
        found = log.entries(db, ids=[edit])
        if not found:
            raise click.UsageError(f"no entry #{edit} (see mlgrind mark --list)")
        entry = found[0]
        when = _day(day) if day else date.fromisoformat(entry.day)
        sheet, code, before = _sheet(sheets, entry.sheet), entry.code, entry.marks
    elif not target:
        raise click.UsageError("name the page: mlgrind mark CODE (printed on it) or SHEET")
    else:
        (sheet, when, code), before = _target(target, sheets, log.packs(db), day), []
    if when > date.today():
        raise click.UsageError(f"--date {when} is in the future")
    return sheet, when, code, before


def _sheet(sheets, sheet_id: str):  # type: ignore[no-untyped-def]
    for s in sheets:
        if s.id == sheet_id:
            return s
    raise click.UsageError(f"sheet {sheet_id!r} is in the log but no longer in onepagers/")


def _target(target: str, sheets, codes: dict[str, tuple[str, str]], day: str | None):  # type: ignore[no-untyped-def]
    code = target.upper()
    if code in codes:
        printed, sheet_id = codes[code]
        return _sheet(sheets, sheet_id), _day(day) if day else date.fromisoformat(printed), code
    for s in sheets:
        if target in (s.id, s.stem, str(s.position), f"{s.position:02d}"):
            return s, _day(day), None
    from .pack import ALPHABET

    if len(target) == 4 and all(c in ALPHABET for c in code):
        raise click.UsageError(f"no printed page has the code {target!r} (is it from another log? "
                               "see --db), and no sheet is named so")
    names = ", ".join(s.stem for s in sheets)
    raise click.UsageError(f"{target!r} is neither a printed page's code nor a sheet (sheets: {names})")


def _scripted(sheet, panels, rating, mistakes, whats, whys, notes) -> list[PanelMark]:  # type: ignore[no-untyped-def]
    from .schedule import rating_from_mistakes

    keys = [k for k, _ in sheet.panels]
    unknown = [p for p in panels if p not in keys]
    if unknown:
        raise click.UsageError(f"sheet {sheet.stem} has no panel {', '.join(unknown)} "
                               f"(its panels: {', '.join(keys)})")
    if whats and len(panels) != 1:
        raise click.UsageError("--mistake needs the one --panel it happened in")
    if whats and not whys:
        raise click.UsageError(f"--mistake needs a --why ({', '.join(WHY)})")
    if whys and len(whys) not in (1, len(whats)):
        raise click.UsageError(f"{len(whys)} --why for {len(whats)} --mistake: give one per mistake, "
                               "or one for all")
    if notes and len(notes) != len(whats):
        raise click.UsageError(f"{len(notes)} --note for {len(whats)} --mistake: give one per mistake")
    if mistakes is not None and len(whats) > mistakes:
        raise click.UsageError(f"--mistakes {mistakes} but {len(whats)} --mistake given")
    count = mistakes if mistakes is not None else (len(whats) if whats else None)
    score = RATINGS.index(rating) + 1 if rating else rating_from_mistakes(count or 0)
    details = [Mistake(w, whys[i] if len(whys) > 1 else whys[0], notes[i] if notes else "")
               for i, w in enumerate(whats)]
    return [PanelMark(k, score, count, details) for k in (panels or keys)]


def _interactive(sheet, before: list[PanelMark]) -> list[PanelMark]:  # type: ignore[no-untyped-def]
    from .schedule import rating_from_mistakes

    had = {m.panel: m for m in before}
    out.print(f"[bold]{sheet.stem}[/bold]: per panel, the number of mistakes (Enter = 0), or a "
              "rating a/h/g/e (again, hard, good, easy), or s to skip a panel you did not write")
    marks = []
    for n, (key, title) in enumerate(sheet.panels, 1):
        now = had.get(key)
        default = ("s" if before else "0") if now is None else \
            (str(now.mistakes) if now.mistakes is not None else RATINGS[now.rating - 1][0])
        answer = click.prompt(f"[{n}/{len(sheet.panels)}] {title}", default=default,
                              show_default=bool(before), err=True).strip().lower()
        while not (answer.isdigit() or answer in ("a", "h", "g", "e", "s")):
            answer = click.prompt("  a number, or a/h/g/e/s", err=True).strip().lower()
        if answer == "s":
            continue
        if not answer.isdigit():
            marks.append(PanelMark(key, "ahge".index(answer) + 1))
            continue
        count = int(answer)
        details = []
        for i in range(1, count + 1):
            what = click.prompt(f"  mistake {i}: what (Enter to stop describing)", default="",
                                show_default=False, err=True).strip()
            if not what:
                break
            why = click.prompt(f"  why ({', '.join(WHY)})", err=True,
                               value_proc=_why).strip()
            note = click.prompt("  note (optional)", default="", show_default=False, err=True).strip()
            details.append(Mistake(what, why, note))
        marks.append(PanelMark(key, rating_from_mistakes(count), count, details))
    return marks


def _why(text: str) -> str:
    """A reason by its name or first letter (c → confused)."""
    text = text.strip().lower()
    found = [w for w in WHY if w == text or (text and w.startswith(text))]
    if len(found) != 1:
        raise click.BadParameter(f"one of {', '.join(WHY)}")
    return found[0]


def _summary(marks: list[PanelMark]) -> str:
    counts = Counter(RATINGS[m.rating - 1] for m in marks)
    parts = [f"{counts[r]} {r}" for r in reversed(RATINGS) if counts[r]]
    logged = sum(len(m.details) for m in marks)
    return ", ".join(parts) + (f"; {logged} mistake(s) described" if logged else "")


def _say_mark(number, verb, sheet, when, marks, entries) -> None:  # type: ignore[no-untyped-def]
    from .schedule import cards, due_day, spoken

    state = cards(entries)
    dues = sorted((due_day(state[sheet.id, k]), k) for k, _ in sheet.panels if (sheet.id, k) in state)
    out.print(f"✓ entry #{number} {verb}: {sheet.stem} on {when}: {_summary(marks)}")
    if dues:
        first, key = dues[0]
        out.print(f"  next due {spoken(first, short=True, year=False)} ({sheet.panel_title(key)})", soft_wrap=True)
    unmarked = [t for k, t in sheet.panels if (sheet.id, k) not in state]
    if unmarked:
        out.print(f"  never marked, so due: {'; '.join(unmarked)}", soft_wrap=True)


def _list(db_file: Path) -> None:
    from . import log

    with log.transaction(db_file, write=False) as db:
        recent = log.entries(db, last=12)
    if not recent:
        out.print("The log is empty.")
    for e in recent:
        out.print(f"  #{e.id:<4} {e.day}  {e.sheet:20} {e.code or '':4}  {_summary(e.marks)}",
                  soft_wrap=True)


# progress -----------------------------------------------------------------------------------


@click.command("progress")
@DATE
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the plot goes  [default: ROOT/build]")
@click.option("--export", "export", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the whole log to FILE.json or FILE.csv (and nothing else).")
@click.option("--import", "import_", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Restore an export (.json or .csv) into an empty log.")
@DB
@ROOT
def progress(day: str | None, out_dir: Path | None, export: Path | None, import_: Path | None,
             db_path: Path | None, root: Path) -> None:
    """Your streak, what is due, your weakest panels and most frequent reasons, and a plot of
    mistakes and retention per sheet over time: OUT/progress.png and OUT/progress.pdf.

    --export writes everything the log holds (printed codes, entries, ratings, mistakes) as
    JSON, or as CSV for a spreadsheet (one row per record, the `record` column says which);
    --import reads either back into an empty log, entry numbers and all.
    """
    from . import log
    from . import progress as report

    db_file = _db(db_path)
    if export and import_:
        raise click.UsageError("give --export or --import, not both")
    with _errors():
        if import_ is not None:
            data = report.read_export(import_)
            with log.transaction(db_file) as db:
                log.load(db, data)
            out.print(f"✓ imported {len(data['entries'])} entries and {len(data['packs'])} printed "
                      f"pages from {import_} into {db_file}")
            return
        if export is not None:
            with log.transaction(db_file, write=False) as db:
                data = log.dump(db)
            report.write_export(data, export)
            out.print(f"✓ wrote {len(data['entries'])} entries and {len(data['packs'])} printed "
                      f"pages to {export}")
            return
        today = _day(day)
        sheets = _curriculum(root)
        entries, _ = _read(db_file)
        for line in report.summary(sheets, entries, today):
            out.print(line, soft_wrap=True)
        out.print(f"  log file: {db_file}", soft_wrap=True, markup=False)
        if entries:
            folder = out_dir if out_dir is not None else root / "build"
            paths = report.plot(sheets, entries, today, folder / "progress")
            out.print(f"  plot: {', '.join(map(str, paths))}")
