"""The pipeline, top to bottom: load → validate → compute/render → write.

`compile_project` does everything in memory and raises `ContentError` with every problem found;
only when it succeeds does `build` write, so a failed build never leaves half its outputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ContentError, Problem, display_path
from .load import Source, load_yaml
from . import deck, ledger
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


@dataclass
class Content:
    """Everything validated and rendered to views, ready for templates."""

    sheets: list[tuple[Source, Sheet, dict[str, Any]]] = field(default_factory=list)
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
        content.sheets.append((source, sheet, sheet_view(sheet, source, problems)))

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in sorted(cardsets, key=lambda c: by_id[c[1].sheet].position
                                if c[1].sheet in by_id else 0):
        content.notes += card_notes(cards, by_id.get(cards.sheet), source, problems)
    if problems:
        raise ContentError(problems)
    return content


def pdf_name(sheet: Sheet, paper: str) -> str:
    return f"onepagers/{sheet.position:02d}-{sheet.id}-{paper}.pdf"


def select(content: Content, only: list[str]) -> list[tuple[Source, Sheet, dict[str, Any]]]:
    """Sheets named by id, by number (`1`, `01`) or by file stem (`01-suffixes-einsum`)."""
    if not only:
        return content.sheets
    names = {s.id: i for i, (_, s, _) in enumerate(content.sheets)}
    names |= {f"{s.position:02d}": i for i, (_, s, _) in enumerate(content.sheets)}
    names |= {f"{s.position:02d}-{s.id}": i for i, (_, s, _) in enumerate(content.sheets)}
    names |= {str(s.position): i for i, (_, s, _) in enumerate(content.sheets)}
    unknown = [n for n in only if n not in names]
    if unknown:
        known = ", ".join(f"{s.position:02d}-{s.id}" for _, s, _ in content.sheets)
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


def compile_project(project: Project, *, papers: tuple[str, ...] = PAPERS, only: list[str] = [],
                    cache: Path | None = None, write_cache: bool = True,
                    progress: Progress | None = None) -> Result:
    """Every output in memory, or ContentError with every problem found."""
    now = clock()
    content = load_content(project)
    templates = Templates(project.templates)
    problems: list[Problem] = []
    outputs: list[Output] = []

    for source, sheet, view in select(content, only):
        for paper in papers:
            if progress:
                progress(pdf_name(sheet, paper))
            start = time.perf_counter()
            html, found = templates.render("sheet.html.j2", sheet=view, paper=paper)
            problems += found
            if html is None:
                continue
            try:
                data, pages, cached = _sheet_pdf(html, project, cache, write_cache,
                                                 title=f"{sheet.position:02d} {sheet.title}")
            except SheetError as error:
                problems.append(source.problem((), f"sheet {sheet.id!r} on {paper}: {error}"))
                continue
            if pages != 1:
                problems.append(source.problem((), f"sheet {sheet.id!r} overflows on {paper}: "
                                               f"{pages} pages, must be 1 (shorten it, or drop a panel)"))
                continue
            outputs.append(Output(pdf_name(sheet, paper), data, time.perf_counter() - start, cached))

    if progress:
        progress(DECK_FILE)
    start = time.perf_counter()
    old, found = ledger.load(project.root / ledger.LEDGER_FILE, ledger.LEDGER_FILE)
    problems += found
    try:
        specs = deck.type_specs(templates)
    except OSError as error:
        problems.append(Problem("templates/anki", 0, 0, f"cannot read card template: {error}"))
    if problems:
        raise ContentError(problems)
    new, notes, note_mods, type_mods, changes = ledger.update(old, content.notes, specs, now)
    data = deck.package(notes, specs, note_mods, type_mods)
    outputs.append(Output(DECK_FILE, data, time.perf_counter() - start))
    return Result(outputs, new.dumps(), changes)


def pdf_cache_key(html: str) -> str:
    """Everything a page depends on is inlined in its HTML, except the renderer itself."""
    renderer = importlib.metadata.version("weasyprint")
    return hashlib.sha256(f"weasyprint {renderer}\n{html}".encode()).hexdigest()


class SheetError(Exception):
    """The sheet's page asked for something it may not have, or rendered with warnings."""


def _sheet_pdf(html: str, project: Project, cache: Path | None, write_cache: bool, *,
               title: str) -> tuple[bytes, int, bool]:
    """PDF bytes, page count, and whether they came from the cache (which holds one-pagers only)."""
    hit = cache / f"{pdf_cache_key(html)}.pdf" if cache else None
    if hit is not None and hit.exists():
        return hit.read_bytes(), 1, True

    from . import pdf  # WeasyPrint takes most of a second to import: only on a cache miss

    try:
        rendered, warnings = pdf.render_pdf(html, project.templates, title=title)
    except pdf.RefusedURL as error:
        raise SheetError(str(error)) from None
    if warnings:  # a warning means something on the page is not what the template asked for
        raise SheetError("WeasyPrint: " + "; ".join(warnings))
    if rendered.pages == 1 and hit is not None and write_cache:
        write_atomic(hit, rendered.data)
    return rendered.data, rendered.pages, False


def build(project: Project, out: Path, **options: Any) -> Result:
    """Compile, then write every output and the ledger; nothing is written if compiling fails."""
    result = compile_project(project, cache=out / ".cache", **options)
    for output in result.outputs:
        output.written = write_atomic(out / output.path, output.data)
    # Last: if writing an output failed, the ledger must not claim it was published.
    write_atomic(project.root / ledger.LEDGER_FILE, result.ledger)
    return result
