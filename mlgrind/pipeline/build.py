"""The pipeline, top to bottom: load → validate → compute/render → write.

`compile_project` does everything in memory and raises `ContentError` with every problem found;
only when it succeeds does `build` write, so a failed build never leaves half its outputs.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import importlib.metadata
import io
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import deck, ledger, maths
from .deck import AnkiNote, card_notes
from .problems import ContentError, Problem, display_path
from .load import Loc, Source, load_yaml
from .ledger import Changes
from .render import Templates, sheet_view
from .schema import CardSet, Sheet
from .validate import cross_check, to_model
from .write import write_all

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
            folders = ", ".join(f"{d}/" for d in missing)
            raise UsageError(f"{root} is not an mlgrind project: it has no {folders} (run mlgrind "
                             "in the project folder, or pass --root)")
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

    @functools.cached_property
    def digest(self) -> str:
        """Everything the sheet's pages show, but the date: its edition date moves with it."""
        return hashlib.sha256(repr(self.views).encode()).hexdigest()


@dataclass
class Content:
    """Everything validated and rendered to views, ready for templates."""

    sheets: list[SheetContent] = field(default_factory=list)  # in the seed's order
    notes: list[AnkiNote] = field(default_factory=list)  # in the seed's order
    note_locations: dict[str, tuple[Source, Loc]] = field(default_factory=dict)  # of `type:`


Progress = Callable[[str], None]


def load_content(project: Project, drawings: maths.Drawings | None = None) -> Content:
    """Every source loaded, validated and rendered to views and notes; ContentError if any
    problem. `drawings` keeps typeset formulas between builds."""
    drawings = drawings if drawings is not None else maths.Drawings.load(None)
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
        views = {edition: sheet_view(sheet, source, problems, drawings, recall=edition == "recall")
                 for edition in EDITIONS}
        content.sheets.append(SheetContent(source, sheet, views))

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in sorted(cardsets, key=lambda c: by_id[c[1].sheet].position
                                if c[1].sheet in by_id else 0):
        content.notes += card_notes(cards, by_id.get(cards.sheet), source, problems)
        content.note_locations |= {note.id: (source, ("notes", n, "type"))
                                   for n, note in enumerate(cards.notes)}
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
    cache_files: list[tuple[Path, bytes]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # outputs of sheets that are gone


def clock() -> int:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return int(time.time())
    if not epoch.isdigit() or int(epoch) >= 2**32:  # the PDF dates stop at year 9999
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    return int(epoch)


def compile_project(project: Project, *, papers: tuple[str, ...] = PAPERS,
                    only: list[str] | tuple[str, ...] = (), cache: Path | None = None,
                    progress: Progress | None = None) -> Result:
    """Every output in memory, or ContentError with every problem found. Reads the ledger and
    the caches; writes nothing (`build` does)."""
    now = clock()
    drawings = maths.Drawings.load(cache / "maths.json" if cache else None)
    content = load_content(project, drawings)
    templates = Templates(project.templates)
    problems: list[Problem] = []
    outputs: list[Output] = []

    old, found = ledger.load(project.root / ledger.LEDGER_FILE, ledger.LEDGER_FILE)
    if found:  # edition dates come from the ledger: no page can be right without it
        raise ContentError(found)
    digests = {e.sheet.id: e.digest for e in content.sheets}
    sheet_dates = ledger.sheet_dates(old, digests, now)
    selected = select(content, only)
    pages: list[Page] = []
    for entry in selected:
        date = time.strftime("%Y-%m-%d", time.gmtime(sheet_dates[entry.sheet.id]))
        colophon = {"version": _version("mlgrind"), "date": date,
                    "digest": entry.digest[:10]}
        for edition in EDITIONS:
            for paper in papers:
                html, found = templates.render("sheet.html.j2", sheet=entry.views[edition],
                                               paper=paper, colophon=colophon)
                problems += found
                if html is not None:
                    pages.append(Page(entry, edition, paper, html, sheet_dates[entry.sheet.id]))

    assets = _assets_digest(project.templates)
    keys = [pdf_cache_key(page.html, page.epoch, assets) for page in pages]
    cache_files: list[tuple[Path, bytes]] = [] if cache is None else [
        (cache / "maths.json", drawings.dumps())]
    for page, key, pdf in zip(pages, keys, _render_pages(pages, keys, project, cache, progress),
                              strict=True):
        sheet = page.entry.sheet
        what = f"sheet {sheet.id!r}{' (recall edition)' if page.edition == 'recall' else ''}"
        if pdf.error:
            problems.append(page.entry.source.problem((), f"{what} on {page.paper}: {pdf.error}"))
        elif pdf.pages != 1:
            problems.append(page.entry.source.problem((), (
                f"{what} overflows on {page.paper}: {pdf.pages} pages, must be 1 "
                "(shorten it, or drop a panel)")))
        else:
            outputs.append(Output(page.name, pdf.data, pdf.seconds, pdf.cached))
            if cache is not None and not pdf.cached:
                cache_files.append((cache / f"{key}.pdf", pdf.data))

    if selected and not only and not problems:  # a booklet holds every sheet, in order
        for edition in EDITIONS:
            for paper in papers:
                sheet_pdfs = [o.data for e in selected for o in outputs
                              if o.path == pdf_name(e.sheet, edition, paper)]
                outputs.append(Output(booklet_name(edition, paper), _booklet(sheet_pdfs), 0.0))

    if progress:
        progress(DECK_FILE)
    start = time.perf_counter()
    try:
        specs = deck.type_specs(templates)
    except (OSError, UnicodeError) as error:
        problems.append(Problem("templates/", 0, 0, f"cannot read the card templates: {error}"))
        specs = {}
    if problems:
        raise ContentError(problems)
    up = ledger.update(old, content.notes, specs, digests, sheet_dates, now)
    for note_id in up.changes.retyped:
        source, loc = content.note_locations[note_id]
        problems.append(source.problem(loc, (
            f"note {note_id!r} changed its type; Anki cannot change a note's type on import "
            "(it would refuse the update): give the note a new id, the old one is then retired")))
    if problems:
        raise ContentError(problems)
    data = deck.package(up.notes, specs, up.note_mods, up.type_mods)
    outputs.append(Output(DECK_FILE, data, time.perf_counter() - start))
    return Result(outputs, up.ledger.dumps(), up.changes, cache_files)


def _assets_digest(templates: Path) -> str:
    """Every file under templates/: a page may fetch any of them (an image, a font)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(templates)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


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


class Rendered(NamedTuple):
    data: bytes
    pages: int
    error: str  # a refused URL, a missing asset, a WeasyPrint warning
    seconds: float
    cached: bool


def _render_pages(pages: list[Page], keys: list[str], project: Project, cache: Path | None,
                  progress: Progress | None) -> list[Rendered]:
    """Each page's PDF, in order. Cache hits are read; misses are rendered, in parallel across
    the cores when there are several, since WeasyPrint spends about a second on each page."""
    results: list[Rendered | None] = []
    misses: list[int] = []
    for i, (page, key) in enumerate(zip(pages, keys, strict=True)):
        hit = cache / f"{key}.pdf" if cache else None
        if hit is not None and hit.is_file():
            results.append(Rendered(hit.read_bytes(), 1, "", 0.0, True))
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
        context.set_forkserver_preload(["mlgrind.pipeline.pdf"])
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(pdf.render_job, *job): i for i, job in zip(misses, jobs)}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = Rendered(*future.result())
                if progress:
                    progress(pages[futures[future]].name)
    else:
        for i, job in zip(misses, jobs):
            results[i] = Rendered(*pdf.render_job(*job))
            if progress:
                progress(pages[i].name)
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


@functools.cache
def _version(package: str) -> str:
    """An installed package's version: read from its metadata once per run, not per page."""
    return importlib.metadata.version(package)


def pdf_cache_key(html: str, epoch: int, assets: str) -> str:
    """Everything a page's bytes depend on: its HTML (styles inlined), the time stamped into
    its fonts, the files it may fetch, and the renderer."""
    renderer = _version("weasyprint")
    return hashlib.sha256(f"weasyprint {renderer}\n{epoch}\n{assets}\n{html}".encode()).hexdigest()


def build(project: Project, out: Path, **options: Any) -> Result:
    """Compile, then write every output, the caches and the ledger; nothing is written if
    compiling fails, and outputs of sheets that no longer exist are removed (full builds)."""
    result = compile_project(project, cache=out / ".cache", **options)
    files = [(out / o.path, o.data) for o in result.outputs]
    # The ledger goes last: if writing an output failed, it must not claim it was published.
    written = write_all([*files, *result.cache_files, (project.root / ledger.LEDGER_FILE,
                                                        result.ledger)])
    for output, was_written in zip(result.outputs, written, strict=False):
        output.written = was_written
    if not options.get("only"):
        produced = {path for path, _ in files}
        result.removed = [p for p in [*out.glob("onepagers/*.pdf"), *out.glob("booklet*.pdf")]
                          if p not in produced]
        for path in result.removed:
            path.unlink()
    return result
