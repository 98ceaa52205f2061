"""Stage 4b, render to PDF: WeasyPrint, fetching nothing but the project's own template assets.

The URL fetcher refuses every URL that is not a `file:` path inside `templates/` (no network, no
`data:`, no `/etc/passwd` through `<link rel="attachment">`), and a refusal stops the rendering:
a sheet never silently ships with a hole in it, or with a file it should not hold.
Document metadata (title, author, subject, language, dates) comes from the page's own <head>.

Fonts are subset by HarfBuzz from the uharfbuzz wheel, on every machine: WeasyPrint would use the
system's libharfbuzz-subset where there is one and fontTools elsewhere, 20x slower (0.75 s of a
0.9 s write) and with other bytes, so the same sheet would print differently per machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import uharfbuzz
import weasyprint
from weasyprint.pdf import fonts
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from .pages import Rendered


class RefusedURL(FatalURLFetchingError):
    pass


class AssetFetcher(URLFetcher):
    """Serves `file:` URLs under `root` and refuses everything else."""

    def __init__(self, root: Path):
        super().__init__(allowed_protocols={"file"}, fail_on_errors=True)
        self.root = root.resolve()

    def fetch(self, url: str, headers: dict[str, str] | None = None):  # type: ignore[override]
        parsed = urlparse(url)
        path = Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None
        if path is None or parsed.netloc or not path.is_relative_to(self.root):
            raise RefusedURL(f"refused to fetch {url!r}: sheets may only use files in templates/")
        return super().fetch(url, headers)


_DROPPED_TABLES = (b"BASE", b"DSIG", b"EBDT", b"EBLC", b"EBSC", b"GPOS", b"GSUB", b"JSTF",
                   b"LTSH", b"PCLT", b"SVG ")


def _subset(font: fonts.Font, to_unicode: dict[int, str], hinting: bool) -> None:
    """WeasyPrint's own HarfBuzz subsetting (`Font._harfbuzz_subset`, WeasyPrint 70) through
    uharfbuzz: keep the used glyphs at their ids, then cut the empty ids after the last one."""
    if not to_unicode:
        return
    flags = uharfbuzz.SubsetFlags.PASSTHROUGH_UNRECOGNIZED | uharfbuzz.SubsetFlags.DESUBROUTINIZE
    if font.missing:
        flags |= uharfbuzz.SubsetFlags.NOTDEF_OUTLINE
    used = uharfbuzz.SubsetInput()
    used.glyph_set.update(sorted(to_unicode))
    used.flags = flags | uharfbuzz.SubsetFlags.RETAIN_GIDS
    used.drop_table_tag_set.update(int.from_bytes(tag, "big") for tag in _DROPPED_TABLES)
    head = uharfbuzz.SubsetInput()
    head.glyph_set.add_range(0, max(to_unicode))
    head.flags = flags if hinting else flags | uharfbuzz.SubsetFlags.NO_HINTING
    try:
        face = uharfbuzz.Face(uharfbuzz.Blob(font.file_content), font.index)
        font.file_content = bytes(uharfbuzz.subset(uharfbuzz.subset(face, used), head).blob.data)
    except RuntimeError:  # a warning, so the page's error: never a silently huge PDF
        fonts.LOGGER.warning('Unable to subset "%s" with HarfBuzz', font.family)


fonts.Font.subset = _subset  # type: ignore[assignment]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def render_pdf(html: str, assets: Path, *, epoch: int = 0, fits: int | None = None,
               write: bool = True) -> Rendered:
    """The page laid out, its page count, and its PDF; WeasyPrint's warnings are its error.
    Raises RefusedURL.

    The PDF is written only when `write` and the layout takes at most `fits` pages (any number
    when None): a layout that runs over is laid out again or reported, never printed, and
    writing costs time for nothing. Without it, the data is empty and the rest (page count,
    panel heights, too-wide panels) is the same.
    `epoch` is the time fontTools stamps into a font WeasyPrint re-saves (a variable or colour
    font; it reads SOURCE_DATE_EPOCH), so the same page gives the same bytes.
    """
    capture = _Warnings()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(capture)
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        document = weasyprint.HTML(
            string=html, base_url=assets.resolve().as_uri() + "/",
            url_fetcher=AssetFetcher(assets)).render()
        measured = _measured(document)
        pages = len(document.pages)
        data = (document.write_pdf() if measured is None and write and (fits is None or
                                                                         pages <= fits) else b"")
        # After writing: subsetting a font may warn too.
        error = "WeasyPrint: " + "; ".join(capture.messages) if capture.messages else ""
        if measured is not None:
            return dataclasses.replace(measured, error=error, too_wide=_too_wide(document))
        heights, spilled = _panel_heights(document) if pages > 1 else ((), None)
        return Rendered(data if not error else b"", pages, error,
                        panel_mm=heights, spilled=spilled, too_wide=_too_wide(document))
    finally:
        logger.removeHandler(capture)
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved


def _measured(document: weasyprint.document.Document) -> Rendered | None:
    """Of a side laid out to be measured (`measure` in the page template: one page, as tall as
    its content), what laying it out on its paper would give, without the page breaks that
    make an overflowing layout cost twice a fitting one, and each panel's content height.
    The panel that "spilled" is the first that ends below the room a first side of two has
    (its paper less its footer): where side 2 should begin. Pages: one when the side fits its
    paper; else two when the panels from the spilled one on, as they lie here, fit the room a
    second side has (its paper less header, sources and footer), and three when they do not
    (side 2 would run over: build.py compacts before it lays out both sides). None for a
    page that is not measured."""
    page = document.pages[0]._page_box
    body = next(box for box in page.descendants() if box.element_tag == "body")
    height = body.element.get("data-page-height")
    if height is None:
        return None
    last_line = float(height) / MM_PER_PX - page.margin_bottom
    side = next(box for box in body.descendants() if box.element_tag == "div"
                and "side" in (box.element.get("class") or "").split())
    parts = {box.element_tag: box.margin_height() for box in side.children
             if box.element_tag in ("header", "p", "footer")}  # p: the sources
    panels = {index: box for _, index, box in _panel_boxes(document)}
    spilled = min((index for index, box in panels.items()
                   if box.position_y + box.margin_height() > last_line - parts["footer"]),
                  default=None)
    heights, _ = _panel_heights(document)
    if side.position_y + side.margin_height() <= last_line:
        return Rendered(b"", 1, panel_mm=heights, spilled=spilled)
    first = max(1, spilled if spilled is not None else len(panels) - 1)  # as build.py splits
    rest = [box for index, box in panels.items() if index >= first]
    room = last_line - side.position_y - sum(parts.values())
    taller = (max(box.position_y + box.margin_height() for box in rest)
              - min(box.position_y for box in rest)) > room
    return Rendered(b"", 3 if taller else 2, panel_mm=heights, spilled=spilled)


def _panel_boxes(document: weasyprint.document.Document):  # type: ignore[no-untyped-def]
    """(page number, panel index, its box) for every panel fragment (`data-panel` sections).
    WeasyPrint has no public API for which element landed on which page, hence its private
    page box."""
    for number, page in enumerate(document.pages):
        for box in page._page_box.descendants():
            index = box.element.get("data-panel", "") if box.element_tag == "section" else ""
            if index.isdigit():
                yield number, int(index), box


def _panel_heights(document: weasyprint.document.Document) -> tuple[tuple[float, ...], int | None]:
    """Each panel's content height in mm (summed over the pages it spans), and the first panel
    with content past the first page: where to look when a sheet overflows."""
    heights: dict[int, float] = {}
    spilled = []
    for number, index, box in _panel_boxes(document):
        height = sum(child.margin_height() for child in box.children
                     if not _is_room(child)) * MM_PER_PX
        heights[index] = heights.get(index, 0.0) + height
        if number and height:
            spilled.append(index)
    return tuple(heights.get(i, 0.0) for i in range(max(heights, default=-1) + 1)), min(
        spilled, default=None)


def _is_room(box) -> bool:  # type: ignore[no-untyped-def]
    """A recall panel's ruled free space: it grows with the panel, it is not content."""
    element = getattr(box, "element", None)
    return element is not None and "room" in (element.get("class") or "").split()


def _too_wide(document: weasyprint.document.Document) -> tuple[tuple[int, float], ...]:
    """(panel, mm) for each panel whose content reaches past its right edge by more than half
    a millimetre: an unbreakable line, a table or formula wider than its column, drawn over
    the next panel or off the page."""
    worst: dict[int, float] = {}
    for _, index, box in _panel_boxes(document):
        right = box.content_box_x() + box.width
        past = max((d.position_x + d.margin_width() - right for d in box.descendants()
                    if d is not box), default=0.0) * MM_PER_PX
        if past > 0.5:
            worst[index] = max(past, worst.get(index, 0.0))
    return tuple(sorted(worst.items()))


MM_PER_PX = 25.4 / 96  # WeasyPrint lays out in CSS px


def render_job(html: str, assets: str, epoch: int, fits: int | None = None,
               write: bool = True) -> Rendered:
    """`render_pdf` for a worker process, timed, with a refused URL as the error. A warning is
    an error too: something on the page is not what the template asked for."""
    start = time.perf_counter()
    try:
        rendered = render_pdf(html, Path(assets), epoch=epoch, fits=fits, write=write)
    except FatalURLFetchingError as refused:  # refused, or a template's asset is missing
        cause = f": {refused.__cause__}" if refused.__cause__ else ""
        return Rendered(b"", 0, f"{refused}{cause}")
    except Exception as crash:  # noqa: BLE001 - WeasyPrint's own bug must not be a traceback
        # Seen as `assert not page_is_empty` when a panel is far longer than its page.
        what = f"{type(crash).__name__}: {crash}" if str(crash) else type(crash).__name__
        return Rendered(b"", 0, f"could not be laid out (WeasyPrint failed with {what}); it is "
                                "probably far too long for one page: shorten it, or split it")
    return dataclasses.replace(rendered, seconds=time.perf_counter() - start)
