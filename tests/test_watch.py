"""`mlgrind watch`: each save is built as `mlgrind build` builds it, a failed round writes
nothing and the watch goes on, and the watcher sees the files a build reads and only those."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run

from mlgrind.pipeline.build import Project
from mlgrind.pipeline.watch import Saves, rounds

SHEET = "onepagers/01-suffixes-einsum.yaml"
CARDS = "cards/01-suffixes-einsum.yaml"


@pytest.fixture
def sheet_01(tmp_path: Path) -> Path:
    """Sheet 01 alone, with its cards and the templates."""
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    for name in (SHEET, CARDS):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "notes.lock.json", tmp_path)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_rounds_rebuild_each_save_and_go_on_after_an_error(sheet_01: Path) -> None:
    out = sheet_01 / "build"
    key_pdf = out / "onepagers/01-suffixes-einsum-a4.pdf"
    seen: dict[str, Any] = {}

    def saves() -> Iterator[list[str]]:
        seen["first"] = key_pdf.read_bytes()
        # A card's text: the deck changes, no page is rendered again.
        _edit(sheet_01 / CARDS, "L and M can be equal in size", "L and M may be equal in size")
        yield [CARDS]
        # A sheet broken at a line this test knows (a second title): reported there, nothing
        # written.
        text = (sheet_01 / SHEET).read_text(encoding="utf-8")
        seen["broken_line"] = text.count("\n", 0, text.index("title: Shape suffixes")) + 2
        _edit(sheet_01 / SHEET, "title: Shape suffixes & einsum\n",
              "title: Shape suffixes & einsum\ntitle: again\n")
        yield [SHEET]
        # Fixed (as it was: its pages come from the cache, rendering a sheet costs seconds).
        seen["before fix"] = key_pdf.read_bytes()
        _edit(sheet_01 / SHEET, "title: Shape suffixes & einsum\ntitle: again\n",
              "title: Shape suffixes & einsum\n")
        yield [SHEET]

    done = list(rounds(Project.at(sheet_01), out, saves(), papers=("a4",)))
    assert [d.changed for d in done] == [[], [CARDS], [SHEET], [SHEET]]
    first, card, broken, fixed = done

    assert first.result is not None and {o.path for o in first.rendered} == {
        "onepagers/01-suffixes-einsum-a4.pdf", "onepagers/01-suffixes-einsum-recall-a4.pdf"}
    assert card.result is not None and card.rendered == []
    assert [o.path for o in card.written] == ["mlgrind.apkg"]

    assert broken.result is None and broken.problems
    assert {(p.file, p.line) for p in broken.problems} == {(SHEET, seen["broken_line"])}
    assert seen["before fix"] == seen["first"]  # the failed round wrote nothing

    assert fixed.result is not None and not fixed.problems and fixed.rendered == []
    assert {o.path for o in fixed.result.outputs} == {o.path for o in first.result.outputs}
    assert all(d.seconds > 0 for d in done)


def test_watcher_reports_sources_and_templates_only(sheet_01: Path) -> None:
    project = Project.at(sheet_01)
    batches: list[list[str]] = []
    with Saves(project, sheet_01 / "build", debounce_ms=50) as saved:
        reader = threading.Thread(target=lambda: batches.append(next(iter(saved))), daemon=True)
        reader.start()
        time.sleep(0.5)  # the watcher starts on its own thread
        for name in ("cards/notes.txt", "cards/.01.yaml.swp", "cards/01.yaml~", "build/x.yaml",
                     "cards/new.yaml", "templates/extra.css"):
            (sheet_01 / name).parent.mkdir(exist_ok=True)
            (sheet_01 / name).write_text("x", encoding="utf-8")
        reader.join(timeout=20)
    assert batches == [["cards/new.yaml", "templates/extra.css"]]


def test_watch_refuses_an_unknown_sheet(sheet_01: Path) -> None:
    result = run("watch", "--root", sheet_01, "--only", "nosuch")
    assert result.code == 2
    assert "no sheet named nosuch" in result.err
    assert "Traceback" not in result.err
