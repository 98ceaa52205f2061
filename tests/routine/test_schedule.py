"""Scheduling: FSRS's own due dates, new sheets in the seed's order, none skipped, the budget."""

from __future__ import annotations

import random
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import fsrs

from mlgrind.routine import log
from mlgrind.routine.log import PanelMark
from mlgrind.routine.schedule import SheetInfo, cards, curriculum, due_day, plan

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 3, 2)


def sheets(n: int, panels: int = 3) -> list[SheetInfo]:
    return [SheetInfo(f"s{i}", i, f"Sheet {i}", tuple((f"p{j}", f"Panel {j}") for j in range(panels)))
            for i in range(1, n + 1)]


def mark(db_path: Path, day: date, sheet: SheetInfo, ratings: list[int]) -> None:
    with log.transaction(db_path) as db:
        log.add_entry(db, day.isoformat(), sheet.id, None, "t",
                      [PanelMark(k, r) for (k, _), r in zip(sheet.panels, ratings, strict=True)])


def read(db_path: Path) -> list[log.Entry]:
    with log.transaction(db_path, write=False) as db:
        return log.entries(db)


def test_six_weeks_of_marks_give_the_due_dates_fsrs_gives(tmp_path: Path) -> None:
    """A random learner marks whatever is printed, for six weeks; each day, what is printed is
    exactly the sheets with a panel that fsrs.Scheduler, driven here from the same marks, says
    is due, and the final due dates are FSRS's."""
    db_path, rng = tmp_path / "log.sqlite3", random.Random(6)
    curriculum_ = sheets(4)
    oracle = fsrs.Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)
    cards_: dict[tuple[str, str], fsrs.Card] = {}
    for n in range(42):
        day = START + timedelta(days=n)
        today = plan(curriculum_, read(db_path), day, new=1, pages=99)
        expected_due = {s.id for s in curriculum_ if any(
            (s.id, k) in cards_ and cards_[s.id, k].due.date() <= day for k, _ in s.panels)}
        assert {i.sheet.id for i in today.items if not i.new} == expected_due, day
        for item in today.items:
            ratings = [rng.choice([1, 2, 3, 3, 3, 4]) for _ in item.sheet.panels]
            mark(db_path, day, item.sheet, ratings)
            at = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            for (key, _), r in zip(item.sheet.panels, ratings):
                card = cards_.get((item.sheet.id, key), fsrs.Card())
                cards_[item.sheet.id, key], _ = oracle.review_card(card, fsrs.Rating(r), at)
    ours = cards(read(db_path))
    assert ours.keys() == cards_.keys() and len(ours) == 12
    assert {k: due_day(c) for k, c in ours.items()} == {k: c.due.date() for k, c in cards_.items()}
    assert len({c.due.date() for c in cards_.values()}) > 3  # the ratings did spread them


def test_new_sheets_enter_in_the_seeds_order_only(tmp_path: Path) -> None:
    db_path = tmp_path / "log.sqlite3"
    curriculum_ = sheets(6)
    mark(db_path, START, curriculum_[4], [3, 3, 3])  # the learner did sheet 5 on their own
    entered = []
    for n in range(1, 6):
        day = START + timedelta(days=n)
        today = plan(curriculum_, read(db_path), day, new=1, pages=99)
        entered += [i.sheet.position for i in today.items if i.new]
        for item in today.items:
            mark(db_path, day, item.sheet, [3, 3, 3])
    assert entered == [1, 2, 3, 4, 6]
    two_a_day = plan(sheets(6), [], START, new=2, pages=99)
    assert [i.sheet.position for i in two_a_day.items] == [1, 2]


def test_a_sheet_never_marked_is_never_skipped(tmp_path: Path) -> None:
    """Printed as new on day 1 and never marked: it is today's new sheet every day after, and
    the next sheet never enters before it."""
    db_path = tmp_path / "log.sqlite3"
    curriculum_ = sheets(3)
    mark(db_path, START, curriculum_[0], [3, 3, 3])
    for n in range(1, 15):
        today = plan(curriculum_, read(db_path), START + timedelta(days=n), new=1, pages=99)
        assert [i.sheet.id for i in today.items if i.new] == ["s2"]


def test_the_page_budget_keeps_the_seeds_order(tmp_path: Path) -> None:
    """A two-page sheet over the budget still goes in alone; a new sheet that does not fit
    holds back the ones after it, even if they would fit."""
    curriculum_ = sheets(3)
    pages = {"s1": 2, "s2": 2, "s3": 1}
    alone = plan(curriculum_, [], START, new=1, pages=1, pages_of=lambda s: pages[s.id])
    assert [i.sheet.id for i in alone.items] == ["s1"]
    db_path = tmp_path / "log.sqlite3"
    mark(db_path, START, curriculum_[0], [1, 1, 1])  # again: due the next day
    today = plan(curriculum_, read(db_path), START + timedelta(days=1), new=2, pages=3,
                 pages_of=lambda s: pages[s.id])
    assert [i.sheet.id for i in today.items] == ["s1"]
    assert [i.sheet.id for i in today.postponed] == ["s2", "s3"]
    # a new sheet never takes the room of a due review, even one that did not fit
    curriculum_ = sheets(4)
    pages = {"s1": 1, "s2": 2, "s3": 1, "s4": 1}
    db_path = tmp_path / "two.sqlite3"
    for sheet in curriculum_[:2]:
        mark(db_path, START, sheet, [1, 1, 1])
    today = plan(curriculum_, read(db_path), START + timedelta(days=1), new=1, pages=2,
                 pages_of=lambda s: pages[s.id])
    assert [i.sheet.id for i in today.items] == ["s1"]
    assert [(i.sheet.id, i.new) for i in today.postponed] == [("s2", False), ("s3", True)]


def test_renaming_a_panel_title_keeps_its_history(tmp_path: Path) -> None:
    for folder in ("onepagers", "cards", "templates"):
        (tmp_path / folder).mkdir()
    (source,) = (ROOT / "onepagers").glob("01-*.yaml")
    shutil.copy(source, tmp_path / "onepagers" / source.name)
    (before,) = curriculum(tmp_path)
    key, title = before.panels[0]
    db_path = tmp_path / "log.sqlite3"
    mark(db_path, START, before, [4] * len(before.panels))
    text = source.read_text(encoding="utf-8")
    assert text.count(f"title: {title}") == 1
    (tmp_path / "onepagers" / source.name).write_text(text.replace(f"title: {title}", "title: Renamed"))
    (after,) = curriculum(tmp_path)
    assert after.panels[0] == (key, "Renamed")
    today = plan([after], read(db_path), START + timedelta(days=1), new=1, pages=99)
    assert today.items == []  # every panel, the renamed one too, still has its easy mark
