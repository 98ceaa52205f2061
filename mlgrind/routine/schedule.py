"""What is due today: FSRS per panel, rebuilt from the log; new sheets in the seed's order.

Each (sheet id, panel key) is one FSRS card, replayed from every rating in the log in the order
logged, so an undo or an edit reschedules as if the mark had always been so. A morning of pen
and paper is reviewed once a day, so there are no learning steps (FSRS would otherwise ask for
the panel again ten minutes later) and no fuzz (the same log always gives the same pack); a
review counts at 00:00 UTC of its day, so due dates are whole days.

A sheet is due when any of its panels is; a sheet marked before has every unmarked panel due
(a panel added to the YAML since). A sheet never marked is *new*: new sheets enter one after
another in the seed's order (`position`), `new` per day at most, and the next one waits until
it has been marked, so none is skipped and none is reordered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import fsrs

from .log import Entry

SCHEDULER = fsrs.Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)


@dataclass(frozen=True)
class SheetInfo:
    id: str
    position: int
    title: str
    panels: tuple[tuple[str, str], ...]  # (key, title) in the sheet's order

    @property
    def stem(self) -> str:
        return f"{self.position:02d}-{self.id}"

    def panel_title(self, key: str) -> str:
        return dict(self.panels).get(key, key)


def curriculum(root: Path) -> list[SheetInfo]:
    """The sheets in the seed's order with their panels, from the schema alone (no computing,
    no rendering); ContentError as `mlgrind check` would report it."""
    from ..pipeline.build import Project
    from ..pipeline.load import load_yaml
    from ..pipeline.problems import Problems
    from ..pipeline.schema import Sheet
    from ..pipeline.validate import to_model

    problems = Problems()
    sheets = []
    for path, name in Project.at(root).sources("onepagers"):
        source = load_yaml(path, name, problems)
        sheet = to_model(source, Sheet, problems) if source is not None else None
        if sheet is not None:
            sheets.append(SheetInfo(sheet.id, sheet.position, sheet.title,
                                    tuple((p.key, p.title) for p in sheet.panels)))
    problems.check()
    return sorted(sheets, key=lambda s: s.position)


def spoken(day: date, *, short: bool = False, year: bool = True) -> str:
    """`Sunday 22 November 2026` or `Sun 22 Nov 2026` (strftime's %-d is not portable)."""
    weekday, month = (f"{day:%a}", f"{day:%b}") if short else (f"{day:%A}", f"{day:%B}")
    return f"{weekday} {day.day} {month}" + (f" {day.year}" if year else "")


def moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def cards(entries: Iterable[Entry]) -> dict[tuple[str, str], fsrs.Card]:
    """Every (sheet, panel) ever rated → its FSRS card after all its ratings."""
    state: dict[tuple[str, str], fsrs.Card] = {}
    for entry in entries:
        when = moment(date.fromisoformat(entry.day))
        for mark in entry.marks:
            card = state.get((entry.sheet, mark.panel)) or fsrs.Card(card_id=len(state) + 1, due=when)
            state[entry.sheet, mark.panel], _ = SCHEDULER.review_card(card, fsrs.Rating(mark.rating), when)
    return state


def due_day(card: fsrs.Card) -> date:
    return card.due.astimezone(timezone.utc).date()


@dataclass
class Item:
    """One sheet in today's pack, and why."""

    sheet: SheetInfo
    new: bool
    due: list[tuple[str, int]] = field(default_factory=list)  # (panel key, days overdue)
    pages: int = 1

    @property
    def reason(self) -> str:
        if self.new:
            return "new: next in the seed's order"
        n, total = len(self.due), len(self.sheet.panels)
        late = max(d for _, d in self.due)
        when = "due today" if late == 0 else f"overdue {late} day{'s' * (late != 1)}"
        return f"review: {n} of {total} panels {when}"


@dataclass
class Plan:
    day: date
    items: list[Item]  # what to print, reviews (most overdue first) then new sheets
    postponed: list[Item]  # due or next, but over the page budget
    next_due: tuple[date, SheetInfo] | None  # the earliest due date after today, if any
    new_today: int  # new sheets already started today (they count against --new)


def candidates(sheets: list[SheetInfo], entries: list[Entry], today: date,
               new: int) -> tuple[list[Item], list[Item], tuple[date, SheetInfo] | None, int]:
    """Due reviews (most overdue first, then in the seed's order), the next `new` sheets never
    marked (fewer if some entered today already), and the next due date after today."""
    state = cards(e for e in entries if date.fromisoformat(e.day) <= today)
    first_day: dict[str, str] = {}
    for e in entries:
        first_day[e.sheet] = min(first_day.get(e.sheet, e.day), e.day)
    reviews, fresh = [], []
    later: tuple[date, SheetInfo] | None = None
    started_today = sum(day == today.isoformat() for day in first_day.values())
    for sheet in sheets:
        if sheet.id not in first_day or first_day[sheet.id] > today.isoformat():
            if len(fresh) < new - started_today:
                fresh.append(Item(sheet, new=True))
            continue
        due = []
        for key, _ in sheet.panels:
            card = state.get((sheet.id, key))
            when = due_day(card) if card else today
            if when <= today:
                due.append((key, (today - when).days))
            elif later is None or when < later[0]:
                later = (when, sheet)
        if due:
            reviews.append(Item(sheet, new=False, due=due))
    reviews.sort(key=lambda item: -max(d for _, d in item.due))  # stable: seed order in ties
    return reviews, fresh, later, started_today


def plan(sheets: list[SheetInfo], entries: list[Entry], today: date, *, new: int, pages: int,
         pages_of: Callable[[SheetInfo], int] = lambda sheet: 1) -> Plan:
    """Today's pack within `pages` recall pages (one sheet always goes in, however long). Once
    a sheet does not fit, no new sheet enters: new material never displaces a due review, and
    a later, shorter new sheet never jumps ahead of the next one."""
    reviews, fresh, later, started_today = candidates(sheets, entries, today, new)
    items: list[Item] = []
    postponed: list[Item] = []
    used = 0
    for item in [*reviews, *fresh]:
        item.pages = pages_of(item.sheet)
        blocked = item.new and bool(postponed)  # reviews first, and new ones in order
        if not blocked and (not items or used + item.pages <= pages):
            items.append(item)
            used += item.pages
        else:
            postponed.append(item)
    return Plan(today, items, postponed, later, started_today)


def retrievability(card: fsrs.Card, day: date) -> float:
    return SCHEDULER.get_card_retrievability(card, moment(day))


def rating_from_mistakes(n: int) -> int:
    """0 mistakes → good, 1–2 → hard, 3 or more → again (easy only when said)."""
    return 3 if n == 0 else 2 if n <= 2 else 1
