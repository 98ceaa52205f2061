"""The pipeline, top to bottom: load → validate → compute/render → write.

`compile_project` does everything in memory and raises `ContentError` with every problem found;
only when it succeeds does `build` write, so a failed build never leaves half its outputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import escape

from .errors import ContentError, Problem, display_path
from .load import Source, load_yaml
from .render import Templates, card_fields, sheet_view
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
    decks: list[Any] = field(default_factory=list)


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

    from .deck import DECK_ROOT, DeckSpec

    by_id = {sheet.id: sheet for _, sheet in sheets}
    for source, cards in sorted(cardsets, key=lambda c: by_id[c[1].sheet].position
                                if c[1].sheet in by_id else 0):
        notes = card_fields(cards, source, problems)
        sheet = by_id.get(cards.sheet)
        if sheet is None:
            continue
        for item in notes:
            note = item["note"]
            where = f" · {note.panel}" if note.panel else ""
            item["backlink"] = str(escape(f"Sheet {sheet.position:02d} · {sheet.title}{where}"))
            item["tags"] = sorted({*cards.tags, *note.tags, f"mlgrind::{sheet.position:02d}-{sheet.id}"})
        content.decks.append(DeckSpec(sheet.id, f"{DECK_ROOT}::{sheet.position:02d} {sheet.title}", notes))
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


def compile_project(project: Project, *, papers: tuple[str, ...] = PAPERS, only: list[str] = [],
                    cache: Path | None = None, write_cache: bool = True,
                    progress: Progress | None = None, with_deck: bool = True) -> list[Output]:
    """Every output in memory, or ContentError with every problem found."""
    from . import deck  # genanki loads only when a deck is built

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

    if with_deck:
        if progress:
            progress(DECK_FILE)
        start = time.perf_counter()
        try:
            data = deck.package(content.decks, templates)
            outputs.append(Output(DECK_FILE, data, time.perf_counter() - start))
        except OSError as error:
            problems.append(Problem("templates/anki", 0, 0, f"cannot read card template: {error}"))
    if problems:
        raise ContentError(problems)
    return outputs


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


def build(project: Project, out: Path, **options: Any) -> list[Output]:
    outputs = compile_project(project, cache=out / ".cache", **options)
    for output in outputs:
        output.written = write_atomic(out / output.path, output.data)
    return outputs
