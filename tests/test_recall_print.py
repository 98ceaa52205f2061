"""Recall editions a learner can write on, and the print defects of issue 16, checked on real
PDFs of three sheets: 01 (its letter table is what colour used to give away), 13 (table-heavy:
its recall needs both sides of the sheet) and 90 (its footer used to float), on both papers."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest
from pypdf import PdfReader

from mlgrind import palette
from mlgrind.pipeline import compiler
from mlgrind.pipeline.pages import Rendered
from mlgrind.pipeline.pdf import render_pdf
from mlgrind.pipeline.problems import Problems
from mlgrind.pipeline.render import Templates, writing_lines

ROOT = Path(__file__).resolve().parent.parent
SHEETS = ("01", "13", "90")
DPI = 300
MM = DPI / 25.4  # pixels per mm at DPI


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    """Every page of the three sheets, compiled in memory (nothing written, no cache)."""
    result = compiler.compile_project(compiler.Project.at(ROOT), only=list(SHEETS))
    return {o.path.removeprefix("onepagers/"): o.data for o in result.outputs
            if o.path.startswith("onepagers/")}


def recall(pdfs: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in pdfs.items() if "-recall-" in name}


def images(data: bytes, *, grey: bool = True) -> list[np.ndarray]:
    """Each page at DPI: grey levels (height × width), or colour channels (height × width × 3).
    Lines are drawn without smoothing: the edge of a black rule is no mid-grey row."""
    out = []
    for page in pdfium.PdfDocument(data):
        image = page.render(scale=DPI / 72, grayscale=grey, no_smoothpath=True).to_numpy()
        out.append((image[..., 0] if image.ndim == 3 else image) if grey else image[..., :3])
    return out


def rules(image: np.ndarray) -> list[tuple[float, float, float]]:
    """The writing rules of a page as (y, x0, x1) in mm: horizontal runs at least 12 mm long of
    the rule grey (#808080), found in the image; rows of one rule are merged. Panel borders
    (#999), table headers (ink) and text are other greys or too short."""
    mask = np.abs(image.astype(int) - 0x80) <= 5  # greyed figure hues are 119 and darker
    mask[:, 1:-1] |= mask[:, :-2] & mask[:, 2:]  # a table's rule, drawn cell by cell, may
    # leave a pixel's seam between cells
    found: list[tuple[float, float, float]] = []
    for y in range(mask.shape[0]):
        row = np.concatenate(([0], mask[y].astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(row))
        for x0, x1 in zip(edges[::2], edges[1::2], strict=True):
            if x1 - x0 >= 12 * MM - 2:
                found.append((y / MM, x0 / MM, x1 / MM))
    merged: list[tuple[float, float, float]] = []
    for y, x0, x1 in sorted(found, key=lambda r: r[1] - r[2]):  # 0.2 mm thick: rows, longest first
        if any(abs(y - my) < 0.6 and x0 < mx1 and mx0 < x1 for my, mx0, mx1 in merged):
            continue
        merged.append((y, x0, x1))
    return sorted(merged)


def test_ruled_lines_and_table_rows_are_at_least_7mm_apart(pdfs: dict[str, bytes]) -> None:
    checked = 0
    for name, data in recall(pdfs).items():
        for page in images(data):
            found = rules(page)
            for y, x0, x1 in found:
                # the nearest rule below this one that shares at least 5 mm of its width
                below = [oy - y for oy, ox0, ox1 in found
                         if oy > y and min(x1, ox1) - max(x0, ox0) >= 5]
                if below:
                    checked += 1
                    assert min(below) >= 7 - 0.3, (name, round(y, 1), round(min(below), 2))
    assert checked > 100  # the page is ruled: lists, notes, table rows and free panel space


def test_every_blank_is_one_width_and_at_least_12mm(pdfs: dict[str, bytes]) -> None:
    """A blank in text or code (a computed value) is an underline shorter than any panel's
    rule; all have one width, so none tells the length of what it hides."""
    widths = [x1 - x0 for data in recall(pdfs).values() for page in images(data)
              for _, x0, x1 in rules(page) if x1 - x0 < 25]
    assert len(widths) >= 4  # sheet 01's code and 13's captions hide values inline
    assert min(widths) >= 12
    assert max(widths) - min(widths) < 0.3


def test_prose_room_comes_in_bands_not_in_the_answers_length() -> None:
    width = 200.0  # pt, a one-column panel: a printed line holds about 50 characters
    rooms = [writing_lines("x" * n, width) for n in range(1, 2001)]
    assert rooms == sorted(rooms)  # a longer answer never gets less room
    for n, lines in enumerate(rooms, 1):  # and at least the lines the print itself needs
        assert lines * width >= n * 1.4 * 72 / 25.4 - 1e-6
    # Each room is shared by a line's worth of lengths or more, beyond four lines by two
    # lines' worth: the room tells roughly how much to write, not how long the answer is.
    shared = {lines: rooms.count(lines) for lines in set(rooms[:-60])}
    assert min(shared.values()) >= 40
    assert min(count for lines, count in shared.items() if lines > 4) >= 75


def test_recall_pages_are_ink_only(pdfs: dict[str, bytes]) -> None:
    """No hue on a recall page: not in text, code, panel edges, notes or figures (sheet 13's
    ring figure, sheet 01's letters). Greys only: channels differ by antialiasing at most."""
    for name, data in recall(pdfs).items():
        for page in images(data, grey=False):
            rgb = page.astype(int)
            saturation = rgb.max(axis=2) - rgb.min(axis=2)
            assert (saturation > 24).sum() == 0, name
    # ... while the answer key keeps its colours: the check can see them.
    key = images(pdfs["01-suffixes-einsum-a4.pdf"], grey=False)[0].astype(int)
    assert ((key.max(axis=2) - key.min(axis=2)) > 24).sum() > 1000


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def footer_text(data: bytes) -> str:
    """The text of each page's bottom 14 mm: its footer, where the legend is."""
    return "\n".join(page.get_textpage().get_text_bounded(0, 0, page.get_size()[0], 14 * 72 / 25.4)
                     for page in pdfium.PdfDocument(data))


def test_recall_legend_names_no_role_it_could_give_away(pdfs: dict[str, bytes]) -> None:
    shown = {r.kind for r in palette.ROLES.values() if r.name in palette.RECALL_ROLES}
    hidden = [r.label for r in palette.ROLES.values() if r.name not in palette.RECALL_ROLES] + [
        label for kind, label in palette.KINDS.items() if kind not in shown]
    for name, data in pdfs.items():
        legend = footer_text(data)
        leaks = [label for label in hidden if label in legend]
        if "-recall-" in name:
            assert not leaks, name
        elif name.startswith("01-"):  # the check can see them: sheet 01's key lists its letters
            assert "batch / sequence (B L M)" in leaks and "Dimension letters" in leaks


def test_the_key_is_one_page_and_a_recall_at_most_two_saying_so(pdfs: dict[str, bytes]) -> None:
    sides = {}
    for name, data in pdfs.items():
        reader = PdfReader(io.BytesIO(data))
        sides[name] = len(reader.pages)
        if "-recall-" not in name:
            assert sides[name] == 1, name
            continue
        assert sides[name] <= 2, name
        pages = [re.sub(r"\s+", " ", p.extract_text()) for p in reader.pages]
        if sides[name] == 2:
            assert "side 1 of 2 · turn over" in pages[0] and "side 2 of 2" in pages[1], name
            assert "turn over" not in pages[1]
        else:
            assert "side 1 of" not in pages[0], name
    # Sheet 13's tables, ruled 7 mm a row, need both sides: the rule above is exercised.
    assert 2 in sides.values()


def test_legend_entries_do_not_break_and_the_footer_sits_on_the_bottom_margin(
        pdfs: dict[str, bytes]) -> None:
    for sheet in ("01-suffixes-einsum", "13-collectives", "90-numpy-shapes"):
        for paper in ("a4", "letter"):
            page = pdfium.PdfDocument(pdfs[f"{sheet}-{paper}.pdf"])[0]
            text = page.get_textpage()
            chars = text.get_text_range()
            boxes = [text.get_charbox(i) for i in range(len(chars))]
            _, height = page.get_size()
            lowest = min(bottom for (_, bottom, _, _), c in zip(boxes, chars, strict=True)
                         if c.strip())
            # the footer's last line ends just above the 7-mm bottom margin, wherever the
            # panels end (sheet 90 used to leave 25 mm under it)
            assert lowest <= (7 + 4) * 72 / 25.4, (sheet, paper, lowest)
            for label in ("(B L M)", "(D F V)", "(an input)", "(summed) index"):
                at = chars.find(label)
                if at >= 0:
                    first, last = boxes[at], boxes[at + len(label) - 1]
                    assert abs(first[1] - last[1]) < 1, (sheet, paper, label)


def test_booklets_carry_a_title_and_the_recall_one_starts_each_sheet_on_a_front(
        pdfs: dict[str, bytes]) -> None:
    project = compiler.Project.at(ROOT)
    selected = compiler.select(compiler.load_content(project), list(SHEETS))
    outputs = [compiler.Output(f"onepagers/{name}", data, 0.0) for name, data in pdfs.items()]
    made = {o.path: PdfReader(io.BytesIO(o.data)) for o in compiler.booklets(outputs, selected, ("a4",))}
    for path, reader in made.items():
        meta = reader.metadata
        assert meta.author == "mlgrind" and "3 sheets" in meta.title, path
        assert "Shape suffixes" in meta.subject and "collective" in meta.subject.lower()
    assert len(made["booklet-a4.pdf"].pages) == len(selected)
    assert len(made["booklet-recall-a4.pdf"].pages) == 2 * len(selected)  # one leaf each
    assert "recall" in made["booklet-recall-a4.pdf"].metadata.title
    # A recall edition on one side (sheet 01's key stands in for one) gets a blank back.
    one_side = [o if o.path != "onepagers/01-suffixes-einsum-recall-a4.pdf" else
                compiler.Output(o.path, pdfs["01-suffixes-einsum-a4.pdf"], 0.0) for o in outputs]
    [_, recall_booklet] = compiler.booklets(one_side, selected, ("a4",))
    pages = PdfReader(io.BytesIO(recall_booklet.data)).pages
    assert len(pages) == 2 * len(selected)
    assert "Shape suffixes" in pages[0].extract_text() and not pages[1].extract_text().strip()


def test_a_stamp_is_printed_on_the_recall_edition_only_when_given() -> None:
    project = compiler.Project.at(ROOT)
    [entry] = compiler.select(compiler.load_content(project), ["01"])
    templates = compiler.Templates(project.templates)
    colophon = {"version": "0", "digest": "0", "date": "2026-12-03"}

    def html(edition: str, **stamp: str) -> str:
        out = templates.render("sheet.html.j2", Problems(), sheet=entry.views[edition],
                               paper="a4", colophon=colophon, **stamp)
        assert out is not None
        return out

    assert '<span class="stamp">2026-12-03 · K7Q2</span>' in html("recall", stamp="2026-12-03 · K7Q2")
    assert 'class="stamp"' not in html("key", stamp="2026-12-03 · K7Q2")
    assert 'class="stamp"' not in html("recall")


@pytest.mark.parametrize("sheet,edition,compact", [("13", "recall", 0), ("13", "recall", 1),
                                                   ("90", "key", 0)])
def test_a_measured_side_says_whether_it_fits_and_where_side_2_begins(
        sheet: str, edition: str, compact: int) -> None:
    # A build measures each recall edition on one endless side before laying it out on its
    # paper: the measure must give that layout's page count (one, or more: two), and a side 2
    # that begins late enough to leave side 1 full but early enough for side 1 to fit, and
    # whether side 2 then holds the rest. Sheet 13's recall runs over one side, and its side
    # 2 over its paper until compacted once; a key fits.
    project = compiler.Project.at(ROOT)
    entry = next(e for e in compiler.load_content(project).sheets if e.stem.startswith(sheet))
    templates = Templates(project.templates)
    assets = compiler._assets_digest(project.templates)

    def layout(**options: Any) -> Rendered:
        page = compiler._page(entry, edition, "a4", templates, {entry.sheet.id: 0}, assets,
                           compact=compact, **options)
        return render_pdf(page.html, project.templates, write=False)

    real, measured = layout(), layout(measure=True)
    assert real.error == measured.error == ""
    assert (measured.pages == 1) == (real.pages == 1)
    if real.pages == 1:
        return
    split = measured.spilled
    assert split is not None
    both = layout(split=split)
    assert both.spilled in (None, split)  # side 1 holds what it was given
    assert layout(split=split + 1).spilled is not None  # and no more would fit
    assert (both.pages > 2) == (measured.pages > 2)  # side 2 runs over as the measure said

