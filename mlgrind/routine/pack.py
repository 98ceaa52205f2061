"""The morning pack: today's recall pages, stamped with the date and a code, then their keys,
then a page of the learner's recent mistakes on those sheets.

The sheets come from `mlgrind build` (the same cached PDFs), so the pack never differs from
what `build` prints. The date and code go into the top margin (8 mm) by overlaying a small
WeasyPrint page with pypdf, so they do not depend on the sheet templates. Printed double-sided,
each multi-page recall edition starts on a fresh sheet of paper and the keys never share a sheet
with a recall page (a blank page is added where needed, and says why).
"""

from __future__ import annotations

import hashlib
import html
import io
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .log import Entry
from .schedule import Plan, SheetInfo, spoken

# No 0/O, 1/I/L: a code copied by hand from paper reads back the same.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def code_for(day: date, sheet: str, taken: dict[str, tuple[str, str]]) -> str:
    """Four characters from a hash of the day and sheet; rehashed in the rare case the code
    already names another day's or sheet's page, so a code is never ambiguous."""
    for salt in range(1000):
        digest = int.from_bytes(hashlib.sha256(f"{day.isoformat()} {sheet} {salt}".encode()).digest())
        code = "".join(ALPHABET[(digest >> (5 * i)) % len(ALPHABET)] for i in range(4))
        if taken.get(code, (day.isoformat(), sheet)) == (day.isoformat(), sheet):
            return code
    raise RuntimeError("no free code")  # 1000 collisions in a row: the log holds ~1M pages


def built(root: Path, out: Path, sheets: list[SheetInfo], papers: tuple[str, ...]) -> None:
    """Build (or find in the cache) the sheets' key and recall PDFs under out/onepagers/."""
    from ..pipeline.build import Project, build

    build(Project.at(root), out, papers=papers, only=[s.id for s in sheets])


def sheet_pdf(out: Path, sheet: SheetInfo, paper: str, *, recall: bool) -> Path:
    return out / "onepagers" / f"{sheet.stem}{'-recall' if recall else ''}-{paper}.pdf"


def page_count(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)


@dataclass
class Recent:
    """A mistake as the mistakes page shows it: grouped by what went wrong in which panel."""

    sheet: SheetInfo
    panel: str
    what: str
    last: str
    times: int
    why: Counter
    note: str


def recent_mistakes(sheets: list[SheetInfo], entries: list[Entry], today: date, *,
                    days: int = 42, limit: int = 36) -> tuple[list[Recent], int]:
    """Mistakes of the last `days` on these sheets, the same slip (same panel, same words)
    merged with a count, most repeated first; at most `limit`, and how many were left out."""
    by_id = {s.id: s for s in sheets}
    found: dict[tuple[str, str, str], Recent] = {}
    for entry in entries:
        age = (today - date.fromisoformat(entry.day)).days
        if entry.sheet not in by_id or not 0 <= age <= days:
            continue
        for mark in entry.marks:
            for m in mark.details:
                key = (entry.sheet, mark.panel, " ".join(m.what.lower().split()))
                r = found.setdefault(key, Recent(by_id[entry.sheet], mark.panel, m.what, entry.day,
                                                 0, Counter(), ""))
                r.times += 1
                r.why[m.why] += 1
                r.last = max(r.last, entry.day)
                r.note = m.note or r.note
    order = {s.id: i for i, s in enumerate(sheets)}
    ranked = sorted(found.values(), key=lambda r: (-r.times, order[r.sheet.id], r.last))
    return ranked[:limit], max(0, len(ranked) - limit)


def _stamps(pages: list[tuple[float, float, str]]) -> list:  # type: ignore[type-arg]
    """For each (width, height, text): a transparent page of that size with the text centred
    in its top margin. One WeasyPrint document for all: its start-up is most of the cost."""
    import weasyprint
    from pypdf import PdfReader

    sizes = sorted({(w, h) for w, h, _ in pages})
    css = "".join(f"@page s{i} {{ size: {w}pt {h}pt; margin: 0 }} .s{i} {{ page: s{i} }}"
                  for i, (w, h) in enumerate(sizes))
    body = "".join(f'<section class="s{sizes.index((w, h))}"><p>{text}</p></section>'
                   for w, h, text in pages)
    document = f"""<html><head><style>{css}
      body {{ margin: 0; font-family: "DejaVu Sans Condensed", "DejaVu Sans", sans-serif;
              font-size: 7.5pt; color: #000 }}
      section {{ break-after: page; position: relative }}
      p {{ margin: 3.4mm 0 0; text-align: center; line-height: 1 }}
      b {{ font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; letter-spacing: 0.08em }}
    </style></head><body>{body}</body></html>"""
    return list(PdfReader(io.BytesIO(weasyprint.HTML(string=document).write_pdf())).pages)


def _mistakes_html(plan: Plan, codes: dict[str, str], recent: list[Recent], left_out: int,
                   size: str) -> str:
    rows = []
    for r in recent:
        why = ", ".join(f"{w}{f' ×{n}' if n > 1 else ''}" for w, n in r.why.most_common())
        rows.append(f"<tr><td>{r.sheet.position:02d}</td><td>{html.escape(r.sheet.panel_title(r.panel))}</td>"
                    f"<td>{html.escape(r.what)}{f'<div class=note>{html.escape(r.note)}</div>' if r.note else ''}</td>"
                    f"<td>{why}</td><td class=n>{r.times}</td><td>{r.last[5:]}</td></tr>")
    more = f"<p class=more>… and {left_out} more, less often repeated.</p>" if left_out else ""
    sheets = ", ".join(f"{i.sheet.position:02d} {html.escape(i.sheet.title)} (<b>{codes[i.sheet.id]}</b>)"
                       for i in plan.items)
    return f"""<html><head><meta charset="utf-8"><title>mlgrind morning pack {plan.day}: mistakes</title><style>
      @page {{ size: {size}; margin: 12mm 12mm 10mm }}
      body {{ font-family: "DejaVu Sans Condensed", "DejaVu Sans", sans-serif; font-size: 8.5pt }}
      h1 {{ font-size: 13pt; margin: 0 0 1mm }}
      p {{ margin: 0 0 3mm; color: #333 }}
      table {{ border-collapse: collapse; width: 100% }}
      th {{ text-align: left; border-bottom: 0.8pt solid #000; padding: 1mm 2mm 1mm 0; white-space: nowrap }}
      td {{ border-bottom: 0.4pt solid #999; padding: 1.4mm 2mm 1.4mm 0; vertical-align: top }}
      td.n {{ text-align: right; font-weight: bold }}
      .note {{ color: #444; font-style: italic; font-size: 7.5pt }}
      .more {{ margin-top: 2mm }}
    </style></head><body>
    <h1>Your recent mistakes on today's sheets</h1>
    <p>{spoken(plan.day)} · {sheets}. The same slip logged again counts up: read these
    before you start, and look for them when you check against the key.</p>
    <table><tr><th>Sheet</th><th>Panel</th><th>What went wrong</th><th>Why (as logged)</th>
    <th>Times</th><th>Last</th></tr>{"".join(rows)}</table>{more}
    </body></html>"""


def assemble(plan: Plan, codes: dict[str, str], out: Path, paper: str,
             recent: tuple[list[Recent], int]) -> tuple[bytes, dict[str, int]]:
    """The pack as PDF bytes, and its page counts by part (recall, key, blank, mistakes)."""
    import weasyprint
    from pypdf import PageObject, PdfReader, PdfWriter

    writer = PdfWriter()
    counts: Counter = Counter()
    queue: list[tuple[object, str]] = []  # (page, the text for its top margin)

    def blank(like, why: str) -> None:  # type: ignore[no-untyped-def]
        queue.append((PageObject.create_blank_page(width=like.mediabox.width,
                                                   height=like.mediabox.height), why))
        counts["blank"] += 1

    day = spoken(plan.day, short=True)
    for item in plan.items:
        pages = PdfReader(sheet_pdf(out, item.sheet, paper, recall=True)).pages
        if len(pages) > 1 and len(queue) % 2:
            blank(pages[0], "(blank, so that the next recall page starts a fresh sheet when printed double-sided)")
        code = codes[item.sheet.id]
        for n, page in enumerate(pages, 1):
            side = f" · side {n} of {len(pages)}" if len(pages) > 1 else ""
            queue.append((page, f"{day} · code <b>{code}</b>{side} · afterwards: mlgrind mark {code}"))
            counts["recall"] += 1
    if len(queue) % 2:
        blank(queue[-1][0], "(blank, so that no answer key is on the back of a recall page)")
    for item in plan.items:
        for page in PdfReader(sheet_pdf(out, item.sheet, paper, recall=False)).pages:
            queue.append((page, f"answer key · {day} · code <b>{codes[item.sheet.id]}</b>"))
            counts["key"] += 1
    stamps = _stamps([(float(p.mediabox.width), float(p.mediabox.height), text)  # type: ignore[attr-defined]
                      for p, text in queue])
    for (page, _), stamp in zip(queue, stamps, strict=True):
        writer.add_page(page).merge_page(stamp)  # pypdf merges only into a writer's page
    if recent[0]:
        size = "A4 portrait" if paper == "a4" else "letter portrait"
        sheet_html = _mistakes_html(plan, codes, recent[0], recent[1], size)
        for page in PdfReader(io.BytesIO(weasyprint.HTML(string=sheet_html).write_pdf())).pages:
            writer.add_page(page)
            counts["mistakes"] += 1
    writer.add_metadata({"/Title": f"mlgrind morning pack {plan.day.isoformat()} ({paper})",
                         "/Creator": "mlgrind morning"})
    data = io.BytesIO()
    writer.write(data)
    return data.getvalue(), dict(counts)
