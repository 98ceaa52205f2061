"""The pages a build makes: each sheet in two editions on each paper, and what rendering gives.

`Page` is one sheet's HTML on its way to a PDF; `Rendered` is what came back for it, from
WeasyPrint (`pdf.render_job`, in a worker process) or from the cache: one type either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the build imports this module to find a build up to date: no YAML parser
    from .load import Source
    from .problems import Problem

PAPERS = ("a4", "letter")
PAPER_MM = {"a4": (210, 297), "letter": (215.9, 279.4)}  # portrait width, height


@dataclass(frozen=True)
class Page:
    """One sheet, in one edition, on one paper: HTML waiting to become a PDF."""

    sheet: str  # the sheet's id
    stem: str  # its file stem, NN-id
    source: Source  # its YAML, where problems with the page are reported
    edition: str  # "key" or "recall"
    paper: str
    html: str
    epoch: int  # the sheet's edition time, stamped into its fonts
    key: str  # for the cache: a digest of everything the PDF's bytes depend on
    split: int | None = None  # a recall edition on both sides: the first panel of side 2
    compact: int = 0  # a recall edition with each hidden answer's room capped: 1 at 2 lines, 2 at 1
    measure: bool = False  # laid out on one endless side, only to measure it (never printed)

    @property
    def name(self) -> str:
        """The PDF's path under the output folder."""
        return pdf_name(self.stem, self.edition, self.paper)

    def problem(self, message: str, loc: tuple[str | int, ...] = ()) -> Problem:
        recall = " (recall edition)" if self.edition == "recall" else ""
        return self.source.problem(loc, f"sheet {self.sheet!r}{recall} {message}")


@dataclass(frozen=True)
class Rendered:
    """A page's PDF, or why there is none (`error`: a refused URL, a missing asset, a
    WeasyPrint warning). Of a page that overflows: its panels' content heights (mm), and the
    first panel (index) that runs past the first page; of any page, the panels whose content
    runs past their right edge."""

    data: bytes
    pages: int
    error: str = ""
    panel_mm: tuple[float, ...] = ()
    spilled: int | None = None
    too_wide: tuple[tuple[int, float], ...] = ()  # (panel, mm past its right edge)
    seconds: float = 0.0
    cached: bool = False


EDITIONS = ("key", "recall")  # the full sheet (the answer key), and the blank one to fill in
# The answer key is one side of a sheet; the recall edition, with room to write, may take both.
MAX_PAGES = {"key": 1, "recall": 2}


def pdf_name(stem: str, edition: str, paper: str) -> str:
    return f"onepagers/{stem}{'-recall' if edition == 'recall' else ''}-{paper}.pdf"


def booklet_name(edition: str, paper: str) -> str:
    return f"booklet{'-recall' if edition == 'recall' else ''}-{paper}.pdf"
