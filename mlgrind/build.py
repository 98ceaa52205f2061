"""The pipeline, top to bottom: load → validate → compute/render → write.

`compile_project` does everything in memory and raises `ContentError` with every problem found;
only when it succeeds does `build` write, so a failed build never leaves half its outputs.
"""

from __future__ import annotations

import hashlib
import concurrent.futures
import io
import importlib.metadata
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ContentError, Problem, display_path
from .load import Source, load_yaml
from . import deck, ledger, maths
from .deck import AnkiNote, card_notes
from .ledger import Changes
from .render import Templates, sheet_view
from .schema import CardSet, Sheet
from .validate import cross_check, to_model
from .write import write_atomic

PAPERS = ("a4", "letter")
DECK_FILE = "mlgrind.apkg"


class UsageError(Exception):
    """A mistake in how mlgrind was called (exit 2), as opposed to in the content (exit 1)."""


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def at(cls, root: Path) -> Project:
        project = cls(root.resolve())
        missing = [d for d in ("onepagers", "cards", "templates") if not (project.root / d).is_dir()]
        if missing:
            raise UsageError(f"{root} is not an mlgrind project: no {', '.join(missing)}/ folder "
                             "(run mlgrind in the project folder, or pass --root)")
        return project

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def sources(self, folder: str) -> list[tuple[Path, str]]:
        return [(p, display_path(p, self.root)) for p in sorted((self.root / folder).glob("*.yaml"))]


@dataclass
class Output:
    path: str  # relative to the output folder
    data: bytes
    seconds: float
    cached: bool = False
    written: bool = False


EDITIONS = ("key", "recall")  # the full sheet (the answer key), and the blank one to fill in


@dataclass
class SheetContent:
    source: Source
    sheet: Sheet
    views: dict[str, dict[str, Any]]  # per edition

    @property
    def digest(self) -> str:
        """Everything the sheet's pages show, but the date: its edition date moves with it."""
        return hashlib.sha256(repr(self.views).encode()).hexdigest()


@dataclass
class Content:
    """Everything validated and rendered to views, ready for templates."""

    sheets: list[SheetContent] = field(default_factory=list)  # in the seed's order
    notes: list[AnkiNote] = field(default_factory=list)  # in the seed's order


Progress = Callable[[str], None]


def load_content(project: Project) -> Content:
    problems: list[Problem] = []
    sheets: list[tuple[Source, Sheet]] = []
    cardsets: list[tuple[Source, CardSet]] = []
    for folder, model, into in (("onepagers", Sheet, sheets), ("cards", CardSet, cardsets)):
        for path, name in project.sources(folder):
            source, found = load_yaml(path, name)
            problems += found
            if source is not None:
                parsed, found = to_model(source, model)
                problems += found
                if parsed is not None:
                    into.append((source, parsed))  # type: ignore[arg-type]
    # A sheet that failed to load has an unknown id: don't also blame the cards that name it.
    sheets_complete = len(sheets) == len(project.sources("onepagers"))
    problems += cross_check(sheets, cardsets, sheets_complete=sheets_complete)

    content = Content()
    for source, sheet in sorted(sheets, key=lambda s: s[1].position):
        views = {edition: sheet_view(sheet, source, problems, recall=edition == "recall")
                 for edition in EDITIONS}
        content.sheets.append(SheetContent(source, sheet, views))

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in sorted(cardsets, key=lambda c: by_id[c[1].sheet].position
                                if c[1].sheet in by_id else 0):
        content.notes += card_notes(cards, by_id.get(cards.sheet), source, problems)
    if problems:
        raise ContentError(problems)
    return content


def pdf_name(sheet: Sheet, edition: str, paper: str) -> str:
    recall = "-recall" if edition == "recall" else ""
    return f"onepagers/{sheet.position:02d}-{sheet.id}{recall}-{paper}.pdf"


def booklet_name(edition: str, paper: str) -> str:
    return f"booklet{'-recall' if edition == 'recall' else ''}-{paper}.pdf"


def select(content: Content, only: list[str] | tuple[str, ...]) -> list[SheetContent]:
    """Sheets named by id, by number (`1`, `01`) or by file stem (`01-suffixes-einsum`)."""
    if not only:
        return content.sheets
    names: dict[str, int] = {}
    for i, entry in enumerate(content.sheets):
        s = entry.sheet
        names |= {s.id: i, f"{s.position:02d}": i, str(s.position): i, f"{s.position:02d}-{s.id}": i}
    unknown = [n for n in only if n not in names]
    if unknown:
        known = ", ".join(f"{e.sheet.position:02d}-{e.sheet.id}" for e in content.sheets)
        raise UsageError(f"no sheet named {', '.join(unknown)} (sheets: {known})")
    picked = sorted({names[n] for n in only})
    return [content.sheets[i] for i in picked]


@dataclass
class Result:
    outputs: list[Output]
    ledger: bytes  # the new notes ledger, written beside the sources
    changes: Changes


def clock() -> int:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return int(time.time())
    if not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    return int(epoch)


def compile_project(project: Project, *, papers: tuple[str, ...] = PAPERS, only: list[str] | tuple[str, ...] = (),
                    cache: Path | None = None, write_cache: bool = True,
                    progress: Progress | None = None) -> Result:
    """Every output in memory, or ContentError with every problem found."""
    now = clock()
    drawings = maths.Drawings(cache / "maths.json" if cache else None)
    maths.use(drawings)
    content = load_content(project)
    templates = Templates(project.templates)
    problems: list[Problem] = []
    outputs: list[Output] = []

    old, found = ledger.load(project.root / ledger.LEDGER_FILE, ledger.LEDGER_FILE)
    problems += found
    digests = {e.sheet.id: e.digest for e in content.sheets}
    sheet_dates = ledger.sheet_dates(old, digests, now)
    selected = select(content, only)
    pages: list[Page] = []
    for entry in selected:
        date = time.strftime("%Y-%m-%d", time.gmtime(sheet_dates[entry.sheet.id]))
        colophon = {"version": importlib.metadata.version("mlgrind"), "date": date,
                    "digest": entry.digest[:10]}
        for edition in EDITIONS:
            for paper in papers:
                html, found = templates.render("sheet.html.j2", sheet=entry.views[edition],
                                               paper=paper, colophon=colophon)
                problems += found
                if html is not None:
                    pages.append(Page(entry, edition, paper, html, sheet_dates[entry.sheet.id]))

    for page, (data, count, error, seconds, cached) in zip(
            pages, _render_pages(pages, project, cache, write_cache, progress), strict=True):
        sheet = page.entry.sheet
        what = f"sheet {sheet.id!r}{' (recall edition)' if page.edition == 'recall' else ''}"
        if error:
            problems.append(page.entry.source.problem((), f"{what} on {page.paper}: {error}"))
        elif count != 1:
            problems.append(page.entry.source.problem((), (
                f"{what} overflows on {page.paper}: {count} pages, must be 1 "
                "(shorten it, or drop a panel)")))
        else:
            outputs.append(Output(page.name, data, seconds, cached))

    if not only and not problems:  # a booklet holds every sheet, in the seed's order
        for edition in EDITIONS:
            for paper in papers:
                pages = [o.data for e in selected for o in outputs
                         if o.path == pdf_name(e.sheet, edition, paper)]
                outputs.append(Output(booklet_name(edition, paper), _booklet(pages), 0.0))

    if progress:
        progress(DECK_FILE)
    start = time.perf_counter()
    try:
        specs = deck.type_specs(templates)
    except OSError as error:
        problems.append(Problem("templates/anki", 0, 0, f"cannot read card template: {error}"))
    if problems:
        raise ContentError(problems)
    new, notes, note_mods, type_mods, changes = ledger.update(old, content.notes, specs, now)
    new.sheets = {i: {"digest": digests[i], "mod": sheet_dates[i]} for i in digests}
    if write_cache:
        drawings.save()
    data = deck.package(notes, specs, note_mods, type_mods)
    outputs.append(Output(DECK_FILE, data, time.perf_counter() - start))
    return Result(outputs, new.dumps(), changes)


@dataclass(frozen=True)
class Page:
    """One sheet, in one edition, on one paper: HTML waiting to become a PDF."""

    entry: SheetContent
    edition: str
    paper: str
    html: str
    epoch: int  # the sheet's edition time, stamped into its fonts

    @property
    def name(self) -> str:
        return pdf_name(self.entry.sheet, self.edition, self.paper)


def _render_pages(pages: list[Page], project: Project, cache: Path | None, write_cache: bool,
                  progress: Progress | None) -> list[tuple[bytes, int, str, float, bool]]:
    """(PDF bytes, page count, error, seconds, cached) per page, in order. Cache hits are read;
    misses are rendered, in parallel across the cores when there are several, since
    WeasyPrint spends about a second on each sheet."""
    results: list[tuple[bytes, int, str, float, bool] | None] = []
    misses: list[int] = []
    for i, page in enumerate(pages):
        hit = cache / f"{pdf_cache_key(page.html)}.pdf" if cache else None
        if hit is not None and hit.exists():
            results.append((hit.read_bytes(), 1, "", 0.0, True))
            if progress:
                progress(page.name)
        else:
            results.append(None)
            misses.append(i)

    if not misses:
        return results  # type: ignore[return-value]
    from . import pdf  # WeasyPrint takes most of a second to import: only on a cache miss

    jobs = [(pages[i].html, str(project.templates), pages[i].epoch) for i in misses]
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        # A fork server imports WeasyPrint once and forks each worker from it; forking this
        # process instead would copy rich's progress thread mid-flight.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mlgrind.pdf"])
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(pdf.render_job, *job): i for i, job in zip(misses, jobs)}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                if progress:
                    progress(pages[futures[future]].name)
    else:
        for i, job in zip(misses, jobs):
            results[i] = pdf.render_job(*job)
            if progress:
                progress(pages[i].name)

    for i in misses:
        data, count, error, _, _ = results[i]  # type: ignore[misc]
        if cache is not None and write_cache and not error and count == 1:
            write_atomic(cache / f"{pdf_cache_key(pages[i].html)}.pdf", data)
    return results  # type: ignore[return-value]


def _booklet(pdfs: list[bytes]) -> bytes:
    """One PDF of all pages, in order; the same inputs give the same bytes."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in pdfs:
        writer.append(PdfReader(io.BytesIO(data)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_cache_key(html: str) -> str:
    """Everything a page depends on is inlined in its HTML, except the renderer itself."""
    renderer = importlib.metadata.version("weasyprint")
    return hashlib.sha256(f"weasyprint {renderer}\n{html}".encode()).hexdigest()


def build(project: Project, out: Path, **options: Any) -> Result:
    """Compile, then write every output and the ledger; nothing is written if compiling fails."""
    result = compile_project(project, cache=out / ".cache", **options)
    for output in result.outputs:
        output.written = write_atomic(out / output.path, output.data)
    # Last: if writing an output failed, the ledger must not claim it was published.
    write_atomic(project.root / ledger.LEDGER_FILE, result.ledger)
    return result
