"""Compiling, top to bottom: every output of a build in memory. `compile_project` runs its
phases in order, each a function below, and stops at the end of the first phase that found
problems, with all of them:

    load_content   load, validate and cross-check every source; render sheets to views (both
                   editions) and card sets to notes
    read_ledger    the notes ledger: edition dates of sheets, modification times of notes
    note_types     the card templates and CSS
    page_html      each selected sheet's views → page HTML, per edition and paper
    render_pdfs    HTML → PDFs, a key on one side, a recall edition on one or both (from the
                   cache, or WeasyPrint in parallel)
    booklets       every sheet in one PDF, per edition and paper (full builds)
    package_deck   notes → the .apkg, and the new ledger

Everything happens in memory; only `build` (build.py) writes, and only when compiling succeeded,
so a failed build never leaves half its outputs. This module imports every stage (NumPy and the
reference code, pydantic, Markdown, genanki…): `build` imports it only when it has to compile.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import compute, deck, ledger, maths, workers
from .build import LEDGER_FILE, Output, Project, Result, UsageError, clock
from .deck import AnkiNote, TypeSpec, card_notes
from .ledger import Ledger
from .load import Loc, Source, load_yaml
from .pages import (
    EDITIONS,
    MAX_PAGES,
    PAPER_MM,
    PAPERS,
    Page,
    Rendered,
    booklet_name,
    pdf_name,
)
from .problems import ContentError, Problem, Problems, display_path
from .render import Templates, sheet_views
from .schema import CardSet, Sheet
from .validate import cross_check, to_model

DECK_FILE = "mlgrind.apkg"


@dataclass
class SheetContent:
    source: Source
    sheet: Sheet
    views: dict[str, dict[str, Any]]  # per edition

    @property
    def stem(self) -> str:
        return f"{self.sheet.position:02d}-{self.sheet.id}"

    @functools.cached_property
    def digest(self) -> str:
        """Everything the sheet's pages show, but the date: its edition date moves with it.
        The views are plain data (strings, numbers, lists, dicts), hashed as sorted JSON."""
        text = json.dumps(self.views, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Content:
    """Everything validated and rendered to views, ready for templates."""

    sheets: list[SheetContent] = field(default_factory=list)  # in the seed's order
    notes: list[AnkiNote] = field(default_factory=list)  # in the seed's order
    media: dict[str, bytes] = field(default_factory=dict)  # the cards' figures, by file name
    note_locations: dict[str, tuple[Source, Loc]] = field(default_factory=dict)  # of `type:`


Progress = Callable[[str], None]


def compile_project(project: Project, *, papers: tuple[str, ...] = PAPERS,
                    only: list[str] | tuple[str, ...] = (), cache: Path | None = None,
                    progress: Progress | None = None, jobs: int | None = None,
                    write: bool = True) -> Result:
    """Every output in memory, or ContentError with every problem found. Reads the ledger and
    the caches; writes nothing (`build` does). Renders with at most `jobs` processes (default:
    one per core). Without `write` (`check`), pages are laid out and counted but no PDF is
    made: the outputs' PDFs are empty, there are no booklets, and the cache files are the
    layouts learnt, which a later build goes straight to."""
    now = clock()
    typeset = maths.Typeset.load(cache / "maths.json" if cache else None)
    values = compute.Values.load(cache / "values.json" if cache else None)
    content = load_content(project, typeset, values)
    templates = Templates(project.templates)
    specs = note_types(templates)
    old, recovered = read_ledger(project, content, specs, cache.parent / DECK_FILE if cache else None)
    digests = {e.sheet.id: e.digest for e in content.sheets}
    dates = ledger.sheet_dates(old, digests, now)
    selected = select(content, only)
    pages = page_html(selected, templates, dates, papers)
    by_id, assets = {entry.sheet.id: entry for entry in selected}, _assets_digest(templates.root)
    pdfs, layouts = render_pdfs(pages, project, cache, progress, lambda page, *layout: _page(
        by_id[page.sheet], page.edition, page.paper, templates, dates, assets, *layout),
        jobs=jobs, write=write)
    outputs = [Output(page.name, pdf.data, pdf.seconds, pdf.cached) for page, pdf in pdfs]
    cache_files = [] if cache is None else [(cache / "maths.json", typeset.dumps()),
                                            (cache / "values.json", values.dumps())] + [
        (cache / f"{page.key}.pdf", pdf.data) for page, pdf in pdfs if pdf.data and not pdf.cached] + [
        (cache / f"{key}.layout", layout) for key, layout in sorted(layouts.items())]
    if selected and not only and write:  # a booklet holds every sheet, in order
        made = booklets(outputs, selected, papers, cache=cache,
                        keys={page.name: page.key for page, _ in pdfs})
        outputs += made
        cache_files += [] if cache is None else [
            (cache / f"{o.path}.key", _booklet_stamp(o)) for o in made if o.key]
    if progress:
        progress(DECK_FILE)
    deck_output, up = package_deck(content, specs, old, digests, dates, now)
    if recovered:
        up.changes.warnings.append(
            f"{LEDGER_FILE} was missing: rebuilt from {recovered}, so only notes whose "
            "content changed since that build are updated (commit the ledger with the sources)")
    return Result([*outputs, deck_output], up.ledger.dumps(), up.changes, cache_files)


def load_content(project: Project, typeset: maths.Typeset | None = None,
                 values: compute.Values | None = None) -> Content:
    """Every source loaded, validated and rendered to views and notes; ContentError if any
    problem. `typeset` keeps typeset formulas between builds, `values` computed values."""
    typeset = typeset if typeset is not None else maths.Typeset.load(None)
    values = values if values is not None else compute.Values({})
    problems = Problems()
    sheets: list[tuple[Source, Sheet]] = []
    cardsets: list[tuple[Source, CardSet]] = []
    for folder, model, into in (("onepagers", Sheet, sheets), ("cards", CardSet, cardsets)):
        for path, name in project.sources(folder):
            source = load_yaml(path, name, problems)
            parsed = to_model(source, model, problems) if source is not None else None
            if parsed is not None:
                into.append((source, parsed))  # type: ignore[arg-type]
    # A sheet that failed to load has an unknown id: don't also blame the cards that name it.
    sheets_complete = len(sheets) == len(project.sources("onepagers"))
    cross_check(sheets, cardsets, problems, sheets_complete=sheets_complete)

    content = Content()
    for source, sheet in sorted(sheets, key=lambda s: s[1].position):
        content.sheets.append(SheetContent(source, sheet, sheet_views(sheet, source, problems,
                                                                      typeset, values)))
    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in sorted(cardsets, key=lambda c: by_id[c[1].sheet].position
                                if c[1].sheet in by_id else 0):
        notes, media = card_notes(cards, by_id.get(cards.sheet), source, problems, values)
        content.notes += notes
        content.media |= media
        content.note_locations |= {note.id: (source, ("notes", n, "type"))
                                   for n, note in enumerate(cards.notes)}
    problems.check()
    return content


def read_ledger(project: Project, content: Content, specs: dict[str, TypeSpec],
                package: Path | None) -> tuple[Ledger, str]:
    """The notes ledger (edition dates, modification times, positions: no page or note can be
    right without it), and where it came from if it had to be rebuilt: when the file is gone,
    from the last package built, which still holds every current note as published."""
    path = project.ledger
    if not path.exists() and package is not None:
        recovered = ledger.recover(package, content.notes, specs)
        if recovered is not None:
            return recovered, display_path(package, project.root)
    problems = Problems()
    old = ledger.load(path, LEDGER_FILE, problems)
    problems.check()
    return old, ""


def note_types(templates: Templates) -> dict[str, TypeSpec]:
    try:
        return deck.type_specs(templates)
    except (OSError, UnicodeError) as error:
        raise ContentError([Problem("templates/", 0, 0,
                                    f"cannot read the card templates: {error}")]) from None


def select(content: Content, only: list[str] | tuple[str, ...]) -> list[SheetContent]:
    """Sheets named by id, by number (`1`, `01`) or by file stem (`01-suffixes-einsum`)."""
    if not only:
        return content.sheets
    names: dict[str, int] = {}
    for i, entry in enumerate(content.sheets):
        s = entry.sheet
        names |= {s.id: i, f"{s.position:02d}": i, str(s.position): i, entry.stem: i}
    unknown = [n for n in only if n not in names]
    if unknown:
        known = ", ".join(e.stem for e in content.sheets)
        raise UsageError(f"no sheet named {', '.join(unknown)} (sheets: {known})")
    picked = sorted({names[n] for n in only})
    return [content.sheets[i] for i in picked]


def page_html(selected: list[SheetContent], templates: Templates, dates: dict[str, int],
              papers: tuple[str, ...]) -> list[Page]:
    """Each selected sheet's page, per edition and paper, from the page template. A template
    that fails, fails the same way on every page: it is reported once."""
    assets = _assets_digest(templates.root)
    return [_page(entry, edition, paper, templates, dates, assets, measure=edition == "recall")
            for entry in selected for edition in EDITIONS for paper in papers]


def _page(entry: SheetContent, edition: str, paper: str, templates: Templates,
          dates: dict[str, int], assets: str, split: int | None = None,
          compact: int = 0, measure: bool = False) -> Page:
    """One page's HTML; a recall edition with `split` on both sides of the sheet, side 2 from
    that panel on, and with `compact` its hidden answers' room capped (1: two lines, 2: one);
    to `measure`, one side as tall as its content (`render_pdfs`)."""
    problems = Problems()
    epoch = dates[entry.sheet.id]
    colophon = {"version": _version("mlgrind"), "digest": entry.digest[:10],
                "date": time.strftime("%Y-%m-%d", time.gmtime(epoch))}
    width, height = PAPER_MM[paper][::-1 if entry.sheet.orientation == "landscape" else 1]
    html = templates.render("sheet.html.j2", problems, sheet=entry.views[edition], paper=paper,
                            colophon=colophon, split=split, compact=compact,
                            measure={"width": width, "height": height} if measure else None)
    problems.check()
    key = page_key(html, epoch, assets)  # type: ignore[arg-type]
    return Page(entry.sheet.id, entry.stem, entry.source, edition, paper, html,  # type: ignore[arg-type]
                epoch, key, split, compact, measure)


Relayout = Callable[[Page, "int | None", int, bool], Page]  # (page, split, compact, measure)


def render_pdfs(pages: list[Page], project: Project, cache: Path | None,
                progress: Progress | None, relayout: Relayout, *, jobs: int | None = None,
                write: bool = True) -> tuple[list[tuple[Page, Rendered]], dict[str, bytes]]:
    """Each page's PDF, in order: cache hits are read; misses are rendered, in parallel across
    `jobs` processes (default: the cores), since WeasyPrint spends about a second on each page.

    An answer key must fit one page. A recall edition is first measured: laid out on one
    endless side (`measure`), at about half the cost of a layout that runs over its paper
    (most do), to see whether it fits one side. If not, it is laid out on both sides of one
    sheet (`relayout`), side 2 from the first panel that ends below what side 1 holds (or an
    earlier one, while side 1 still runs over); if side 2 runs over too, or the measure says
    it would, with each hidden answer's room capped at two lines, then one (`compact`),
    measured afresh. It must then fit. A layout that runs over is never written to PDF (only laid out), nor is any
    without `write`.
    Also returns, by each first page's cache key, the layout it ended with (`KEY.layout` in
    the cache): a rebuild, or a check, goes straight to it, and a check trusts it to fit."""
    final = list(pages)
    results: dict[int, Rendered] = {}
    todo = []
    for i, page in enumerate(pages):
        known = _cached_layout(cache / f"{page.key}.layout", page, relayout) if cache else None
        if known is not None:
            final[i] = known[0]
        hit = _from_cache(final[i], cache, write, known[1] if known else None)
        if hit is None:
            todo.append(i)
            continue
        results[i] = hit
        if progress:
            progress(page.name)

    def then(i: int, rendered: Rendered) -> workers.Job | None:
        """After a page's layout: the next one it needs, unless that is cached or none is."""
        if progress:
            progress(final[i].name)
        results[i] = rendered
        layout = _next_layout(final[i], rendered) if _runs_over(final[i], rendered) else None
        if layout is None:
            return None
        final[i] = relayout(final[i], *layout)
        if (hit := _from_cache(final[i], cache, write)) is None:
            return _job(final[i], project, write)
        results[i] = hit
        return None

    # Measures first, as they lead to more layouts, then the longest pages: the last to
    # finish are short ones.
    todo.sort(key=lambda i: (not final[i].measure, -len(final[i].html)))
    with workers.Renderer(jobs) as renderer:
        renderer.run([_job(final[i], project, write) for i in todo],
                     lambda n, rendered: then(todo[n], rendered))

    problems = Problems()
    rendered = [results[i] for i in range(len(pages))]
    for page, pdf in zip(final, rendered, strict=True):
        if pdf.error:
            problems.add(page.problem(f"on {page.paper}: {pdf.error}"))
        elif pdf.pages > MAX_PAGES[page.edition]:
            problems.add(_overflow(page, pdf))
        for panel, mm in pdf.too_wide:
            problems.add(page.problem(
                f"on {page.paper}: panel {panel + 1}, this one, runs {mm:.1f} mm past its right "
                "edge (an unbreakable line, or a table or formula wider than its column): "
                "shorten it, let it wrap, or span more columns", ("panels", panel, "title")))
    problems.check()
    layouts = {page.key: _layout_line(done, pdf.pages)
               for page, done, pdf in zip(pages, final, rendered, strict=True)}
    return list(zip(final, rendered, strict=True)), layouts


def _sides(page: Page) -> int:
    """The pages a layout may take: one side, or both sides of a recall edition's sheet."""
    return 1 if page.split is None else 2


def _layout_line(page: Page, pages: int) -> bytes:
    """`KEY.layout`: the layout a page ended with, its page count, and the cache key of the page
    laid out that way; written only when every page fitted, so it says: this layout fits."""
    split = "-" if page.split is None else str(page.split)
    return f"{split} {page.compact} {pages} {page.key}\n".encode()


def _cached_layout(path: Path, page: Page, relayout: Relayout) -> tuple[Page, int] | None:
    """The page in the layout it ended with last time, and its page count; None when the file
    is missing or damaged: the key it names must be that of the page laid out as it says."""
    try:
        split, compact, pages, key = path.read_text(encoding="ascii").split()
        known = (None if split == "-" else int(split)), int(compact)
        count = int(pages)
    except (OSError, UnicodeError, ValueError):
        return None
    final = (page if known == (page.split, page.compact) and not page.measure
             else relayout(page, *known, False))
    if final.key != key or not 1 <= count <= _sides(final):
        return None
    return final, count


def _runs_over(page: Page, pdf: Rendered) -> bool:
    """A recall edition measured (never final), or with more pages than its sides."""
    return (page.edition == "recall" and not pdf.error
            and (page.measure or pdf.pages > _sides(page)))


def _next_layout(page: Page, pdf: Rendered) -> tuple[int | None, int, bool] | None:
    """The layout to try after `page` was measured or ran over, or None when none is left."""
    if page.measure and pdf.pages == 1:  # it fits one side
        return None, page.compact, False
    if page.measure and pdf.pages > 2 and page.compact < 2:  # side 2 would run over
        return None, page.compact + 1, True
    if page.split is None:  # one side: side 2 begins at the first panel that ran over
        spilled = pdf.spilled if pdf.spilled is not None else len(pdf.panel_mm) - 1
        return max(1, spilled), page.compact, False
    if pdf.spilled is not None and pdf.spilled < page.split and page.split > 1:
        return pdf.spilled, page.compact, False  # side 1 still ran over
    return None if page.compact == 2 else (None, page.compact + 1, True)  # side 2 ran over


def _from_cache(page: Page, cache: Path | None, write: bool, count: int | None = None
                ) -> Rendered | None:
    """A page's rendering without WeasyPrint, if the cache has it: known to fit (`count`, its
    page count from its layout: a check needs nothing more), or its PDF. A cached PDF's page
    count is its layout's, when known: reading it from the PDF costs more than reading the PDF."""
    if count is not None and not write:
        return Rendered(b"", count, cached=True)
    data = _cached_pdf(cache / f"{page.key}.pdf") if cache else None
    if data is None:
        return None
    return Rendered(data, count if count is not None else _page_count(data), cached=True)


def _job(page: Page, project: Project, write: bool) -> workers.Job:
    return (page.html, str(project.templates), page.epoch, _sides(page),
            write and not page.measure)


def _page_count(pdf: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(pdf)).pages)


def _overflow(page: Page, pdf: Rendered) -> Problem:
    """An overflow, at the longest panel: shortening it is the likeliest fix."""
    most = MAX_PAGES[page.edition]
    sides = "1" if most == 1 else f"at most {most} (both sides of one sheet)"
    message = f"overflows on {page.paper}: {pdf.pages} pages, must be {sides}"
    if not pdf.panel_mm:
        return page.problem(f"{message} (shorten it, or drop a panel)")
    longest = max(range(len(pdf.panel_mm)), key=pdf.panel_mm.__getitem__)
    where = ("" if pdf.spilled in (None, longest) or page.split is not None else
             f"; panel {pdf.spilled + 1} is the first to run onto page 2")
    return page.problem(f"{message}{where}; the longest is panel {longest + 1}, this one "
                        f"({pdf.panel_mm[longest]:.0f} mm of content): shorten it, or split the "
                        "sheet", ("panels", longest, "title"))


def _cached_pdf(path: Path) -> bytes | None:
    """A cached page, unless it is missing or damaged (a truncated write, a disk error): a whole
    PDF starts with its header and ends with its trailer; anything else is rendered again."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF") else None


def booklets(outputs: list[Output], selected: list[SheetContent], papers: tuple[str, ...], *,
             cache: Path | None = None, keys: dict[str, str] | None = None) -> list[Output]:
    """Per edition and paper, every sheet's pages in one PDF, in the seed's order; the same
    inputs give the same bytes. The recall booklet is for printing on both sides: each sheet
    starts on the front of a new leaf (a one-side sheet is followed by a blank back), so the
    learner takes one leaf per sheet. The answer keys are one side each, one after the other.

    With `cache` (OUT/.cache) and each page's cache key (`keys`, by output path), a booklet whose
    pages did not change is the one in OUT, as long as it still holds the bytes last built
    (`.cache/booklet-…pdf.key` holds its key and digest): most rebuilds change no booklet."""
    by_name = {o.path: o.data for o in outputs}
    made = []
    for edition in EDITIONS:
        for paper in papers:
            names = [pdf_name(entry.stem, edition, paper) for entry in selected]
            recall = " (recall editions)" if edition == "recall" else ""
            metadata = {
                "/Title": f"mlgrind: {len(selected)} sheets{recall}, {paper.upper()}",
                "/Author": "mlgrind",
                "/Subject": "ML systems interview prep, in the seed's order: "
                            + ", ".join(f"{e.sheet.position:02d} {e.sheet.title}" for e in selected)}
            name, key = booklet_name(edition, paper), ""
            if keys is not None:
                key = hashlib.sha256(json.dumps(
                    [f"pypdf {_version('pypdf')}", edition, metadata, [keys[n] for n in names]],
                    sort_keys=True).encode()).hexdigest()
                if cache is not None and (data := _built_booklet(cache, name, key)) is not None:
                    made.append(Output(name, data, 0.0, cached=True, key=key))
                    continue
            made.append(Output(name, _booklet([by_name[n] for n in names], edition, metadata),
                               0.0, key=key))
    return made


def _booklet(pdfs: list[bytes], edition: str, metadata: dict[str, str]) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in pdfs:
        writer.append(PdfReader(io.BytesIO(data)))
        if edition == "recall" and len(writer.pages) % 2:
            last = writer.pages[-1].mediabox
            writer.add_blank_page(last.width, last.height)
    writer.add_metadata(metadata)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _booklet_stamp(booklet: Output) -> bytes:
    return f"{booklet.key} {hashlib.sha256(booklet.data).hexdigest()}\n".encode()


def _built_booklet(cache: Path, name: str, key: str) -> bytes | None:
    """The booklet `name` as the last build wrote it into OUT, if it was built from `key` and
    still holds the bytes written then."""
    try:
        stamp = (cache / f"{name}.key").read_text(encoding="ascii").split()
        data = (cache.parent / name).read_bytes()
    except (OSError, UnicodeError):
        return None
    ok = stamp == [key, hashlib.sha256(data).hexdigest()]
    return data if ok else None


def package_deck(content: Content, specs: dict[str, TypeSpec], old: Ledger,
                 digests: dict[str, str], dates: dict[str, int],
                 now: int) -> tuple[Output, ledger.Update]:
    """The .apkg of every note, stamped by the ledger, and the ledger's update."""
    start = time.perf_counter()
    sheet_positions = {entry.sheet.id: entry.sheet.position for entry in content.sheets}
    up = ledger.update(old, content.notes, specs, digests, dates, now, sheet_positions)
    problems = Problems()
    for note_id in up.changes.retyped:
        source, loc = content.note_locations[note_id]
        problems.add(source.problem(loc, (
            f"note {note_id!r} changed its type; Anki cannot change a note's type on import "
            "(it would refuse the update): give the note a new id, the old one is then retired")))
    problems.check()
    data = deck.package(up.notes, specs, up.note_mods, up.type_mods, up.dues, content.media)
    return Output(DECK_FILE, data, time.perf_counter() - start), up


@functools.cache
def _version(package: str) -> str:
    """An installed package's version: read from its metadata once per run, not per page."""
    return importlib.metadata.version(package)


def _assets_digest(templates: Path) -> str:
    """Every file under templates/: a page may fetch any of them (an image, a font)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(templates)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def page_key(html: str, epoch: int, assets: str) -> str:
    """A page's cache key: everything its bytes depend on, its HTML (styles inlined), the time
    stamped into its fonts, the files it may fetch, the renderer and its font subsetter."""
    renderer = f"{_version('weasyprint')} uharfbuzz {_version('uharfbuzz')}"
    return hashlib.sha256(f"weasyprint {renderer}\n{epoch}\n{assets}\n{html}".encode()).hexdigest()
