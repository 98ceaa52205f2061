"""`mlgrind morning` and `mlgrind mark` on a real sheet: the pack, its stamps, the mistakes
page, an empty day, corrections, concurrency and bad input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from mlgrind.routine import log
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def texts(path: Path) -> list[str]:
    return [page.get_textpage().get_text_range() for page in pdfium.PdfDocument(path)]


def smallest_font(path: Path, index: int) -> float:
    page = pdfium.PdfDocument(path)[index]
    text = page.get_textpage()
    sizes = [pdfium_c.FPDFText_GetFontSize(text.raw, i) for i in range(text.count_chars())
             if text.get_text_range(i, 1).strip()]
    return min(sizes)


def codes(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT code, day, sheet FROM pack ORDER BY day").fetchall()


def test_a_week_of_one_sheet(tmp_path: Path, one_sheet: Path) -> None:
    db = tmp_path / "log.sqlite3"
    common = ("--db", db, "--root", one_sheet, "--paper", "a4")
    (one_sheet / "build/morning/2026-03-04-a4.pdf").unlink(missing_ok=True)
    first = run("morning", "--date", "2026-03-02", *common)
    assert first.code == 0, first.err
    assert "01-suffixes-einsum" in first.out and "new: next in the seed's order" in first.out
    [(code, day, sheet)] = codes(db)
    assert (day, sheet) == ("2026-03-02", "suffixes-einsum") and code in first.out
    pack = one_sheet / "build/morning/2026-03-02-a4.pdf"
    recall = one_sheet / "build/onepagers/01-suffixes-einsum-recall-a4.pdf"
    key = one_sheet / "build/onepagers/01-suffixes-einsum-a4.pdf"
    n_recall, n_key = len(pdfium.PdfDocument(recall)), len(pdfium.PdfDocument(key))
    pages = texts(pack)
    # recall pages, a blank one if they are odd (no key on the back of a recall page), keys
    assert len(pages) == n_recall + n_recall % 2 + n_key
    assert all(f"Mon 2 Mar 2026 · code {code}" in p for p in pages[:n_recall])
    assert all(line in pages[0] for line in texts(recall)[0].splitlines()[:6])  # the sheet itself
    assert all("answer key" in p and code in p for p in pages[-n_key:])

    marked = run("mark", code.lower(), "--panel", "the-naming-rule", "--mistakes", "2",
                 "--mistake", "swapped B and L", "--why", "confused", "--mistake", "forgot S",
                 "--why", "forgot", "--note", "B batch, L length", "--note", "", *common[:4])
    assert marked.code == 0, marked.err
    assert "2026-03-02" in marked.out and "1 hard" in marked.out
    others = [a for k in ("the-suffix-letters", "einsum-in-four-rules", "the-mlp-read-off-the-names",
                          "einsum-numpy", "attention-read-off-the-names", "why-bother")
              for a in ("--panel", k)]
    assert run("mark", code, "--rating", "easy", *others, *common[:4]).code == 0

    second = run("morning", "--date", "2026-03-03", *common)  # hard: due again the next day
    assert second.code == 0, second.err
    assert "review: 1 of 7 panels due today" in second.out and "The naming rule" in second.out
    pack = one_sheet / "build/morning/2026-03-03-a4.pdf"
    last = texts(pack)[-1]
    assert "swapped B and L" in last and "confused" in last and "B batch, L length" in last
    assert smallest_font(pack, len(texts(pack)) - 1) >= 7
    [_, (code2, _, _)] = codes(db)
    assert code2 != code

    assert run("mark", code2, "--rating", "good", *common[:4]).code == 0
    empty = run("morning", "--date", "2026-03-04", *common)
    assert empty.code == 0 and "Nothing to write" in empty.out and "No pack written" in empty.out
    assert not (one_sheet / "build/morning/2026-03-04-a4.pdf").exists()


def test_undo_and_edit(tmp_path: Path, one_sheet: Path) -> None:
    db = tmp_path / "log.sqlite3"
    where = ("--db", db, "--root", one_sheet)
    assert run("mark", "01", "--date", "2026-03-02", "--rating", "good", *where).code == 0
    assert run("mark", "01", "--date", "2026-03-03", "--rating", "again", *where).code == 0
    undone = run("mark", "--undo", "--db", db)
    assert undone.code == 0 and "#2" in undone.out and "7 again" in undone.out
    edited = run("mark", "--edit", "1", "--date", "2026-03-01", "--panel", "why-bother",
                 "--mistakes", "1", "--mistake", "left it blank", "--why", "never-understood", *where)
    assert edited.code == 0, edited.err
    listed = run("mark", "--list", "--db", db)
    assert listed.out.count("#") == 1 and "2026-03-01" in listed.out and "6 good, 1 hard" in listed.out
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT what, why FROM mistake").fetchall() == [("left it blank", "never-understood")]


def test_mark_and_morning_at_the_same_time(tmp_path: Path, one_sheet: Path) -> None:
    db = tmp_path / "log.sqlite3"
    base = [sys.executable, "-m", "mlgrind"]
    where = ["--db", str(db), "--root", str(one_sheet)]
    morning = subprocess.Popen([*base, "morning", "--date", "2026-04-06", "--paper", "a4", *where], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # marked on a later day than the pack's, so that the pack has its sheet whoever goes first
    marks = [subprocess.run([*base, "mark", "01", "--date", "2026-04-09", "--rating", "good", *where],
                            env=ENV, capture_output=True, text=True) for _ in range(3)]
    out, err = morning.communicate()
    assert morning.returncode == 0, err
    assert all(m.returncode == 0 for m in marks), [m.stderr for m in marks]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert c.execute("SELECT count(*) FROM entry").fetchone() == (3,)
        assert c.execute("SELECT count(*) FROM rating").fetchone() == (21,)
    assert len(codes(db)) == 1 and (one_sheet / "build/morning/2026-04-06-a4.pdf").exists()


def test_bad_input_is_a_clear_error(tmp_path: Path, one_sheet: Path) -> None:
    where = ("--db", tmp_path / "log.sqlite3", "--root", one_sheet)
    for args, said in [
        (("mark", "QQQQ", "--rating", "good"), "no printed page has the code 'QQQQ'"),
        (("mark", "mlp", "--rating", "good"), "neither a printed page's code nor a sheet"),
        (("mark", "01", "--panel", "nope", "--rating", "good"), "has no panel nope"),
        (("mark", "01", "--date", "2026-02-30", "--rating", "good"), "bad --date '2026-02-30'"),
        (("morning", "--date", "yesterday"), "bad --date 'yesterday'"),
        (("mark", "01"), "stdin is not a terminal"),
        (("mark", "01", "--panel", "why-bother", "--mistake", "x"), "needs a --why"),
        (("mark", "--edit", "9", "--rating", "good"), "no entry #9"),
        (("mark", "--undo"), "nothing to undo"),
    ]:
        result = run(*args, *where)
        assert result.code == 2, (args, result.err)
        assert said in result.err.replace("\n", " "), (args, result.err)
        assert "Traceback" not in result.err
    with log.transaction(tmp_path / "log.sqlite3", write=False) as db:
        assert log.dump(db) == {"version": 1, "packs": [], "entries": []}
