"""The learner's progress, in DIR/.mlgrind-progress.json beside their exercise files.

    {"version": 1,
     "exercises": {"mlp": {"hints": 2, "shown": [0, 3],
                           "attempts": [{"date": "2025-05-01T08:30:12", "passed": false,
                                         "failed": ["backward: d_w_out_FD"], "checks": 4}]}}}

`hints` counts the hints seen and `shown` says which (older files have only the count: the first
ones); `checks` (missing in older files) is how many checks the attempt ran. One file per
exercise folder, so two folders (two attempts at the whole grind) keep separate records. It is
plain JSON: delete it to start the record over. A file that is not such JSON is never
overwritten: it is moved aside, and the learner told where.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

FILE = ".mlgrind-progress.json"


class ProgressError(Exception):
    """The progress file cannot be used; the message says why and what was done about it."""


def path(folder: Path) -> Path:
    return folder / FILE


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _attempt_problem(a: object) -> str | None:
    if not isinstance(a, dict):
        return "an attempt is not an object"
    if not isinstance(a.get("date"), str) or not isinstance(a.get("passed"), bool):
        return "an attempt lacks its date or whether it passed"
    failed = a.get("failed")
    if not isinstance(failed, list) or not all(isinstance(c, str) for c in failed):
        return "an attempt's 'failed' is not a list of check names"
    if "checks" in a and not _is_int(a["checks"]):
        return "an attempt's 'checks' is not a count"
    return None


def _problem(data: object) -> str | None:
    """What makes data something other than a progress record, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("version") != 1:
        return f"version {data.get('version')!r}, not 1"
    if not isinstance(data.get("exercises"), dict):
        return "no 'exercises' object"
    for name, entry in data["exercises"].items():
        if not isinstance(entry, dict):
            return f"{name!r} is not an object"
        if not _is_int(entry.get("hints", 0)):
            return f"{name!r}: 'hints' is not a count"
        shown = entry.get("shown", [])
        if not isinstance(shown, list) or not all(_is_int(i) for i in shown):
            return f"{name!r}: 'shown' is not a list of hint numbers"
        attempts = entry.get("attempts", [])
        if not isinstance(attempts, list):
            return f"{name!r}: 'attempts' is not a list"
        for a in attempts:
            if problem := _attempt_problem(a):
                return f"{name!r}: {problem}"
    return None


def _set_aside(p: Path, reason: str) -> ProgressError:
    """Move a damaged file out of the way, keeping it whole, and say so."""
    aside = p.with_name(f"{p.name}.damaged-{datetime.now():%Y%m%dT%H%M%S}")
    try:
        os.replace(p, aside)
    except OSError as error:
        return ProgressError(f"{p} is damaged ({reason}) and cannot be moved aside "
                             f"({error.strerror}): fix it or delete it")
    return ProgressError(
        f"{p} was damaged ({reason}): moved it to {aside.name}, nothing lost; "
        f"run again to start a new record"
    )


def load(folder: Path) -> dict:
    p = path(folder)
    if p.is_dir():
        raise ProgressError(f"{p} is a folder, not the progress file: move it elsewhere")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": 1, "exercises": {}}
    except OSError as error:
        raise ProgressError(f"cannot read {p}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise _set_aside(p, "not UTF-8 text") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise _set_aside(p, "JSON nested too deeply") from None
    except ValueError as error:
        raise _set_aside(p, f"not JSON: {error}") from None
    if problem := _problem(data):
        raise _set_aside(p, problem)
    return data


def _save(folder: Path, data: dict) -> None:
    p = path(folder)
    partial = p.with_name(p.name + ".tmp")
    try:
        partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(partial, p)  # never a half-written file, even if interrupted
    except OSError as error:
        raise ProgressError(f"cannot write {p}: {error.strerror}") from None


def _entry(data: dict, name: str) -> dict:
    return data["exercises"].setdefault(name, {"hints": 0, "attempts": []})


def shown(entry: dict) -> list[int]:
    """The hints already seen, by index; an older file only counted them: the first ones."""
    return entry.get("shown", list(range(entry.get("hints", 0))))


def record(
    folder: Path, name: str, failed: list[str], checks: int, when: datetime | None = None
) -> dict:
    """Append one attempt of `checks` checks (passed when nothing failed); returns it."""
    data = load(folder)
    attempt = {
        "date": (when or datetime.now()).isoformat(timespec="seconds"),
        "passed": not failed,
        "failed": failed,
        "checks": checks,
    }
    _entry(data, name).setdefault("attempts", []).append(attempt)
    _save(folder, data)
    return attempt


def take_hint(folder: Path, name: str, available: int, fitting: Sequence[int] = ()) -> int | None:
    """The index of the hint to show now (and remember it was shown): the first of `fitting`
    (hints that fit the failing checks) not yet shown, else the first not yet shown; None when
    all `available` hints have been shown."""
    data = load(folder)
    entry = _entry(data, name)
    seen = shown(entry)
    unseen = [i for i in (*fitting, *range(available)) if i not in seen and i < available]
    if not unseen:
        return None
    entry["shown"] = [*seen, unseen[0]]
    entry["hints"] = len(entry["shown"])
    _save(folder, data)
    return unseen[0]


def entries(folder: Path) -> dict[str, dict]:
    """Each exercise's record (hints, shown, attempts), by name."""
    return load(folder)["exercises"]


def score(attempt: dict) -> str:
    """`3 of 4 checks`, or `1 failing` for an attempt recorded before counts were kept."""
    if "checks" in attempt:
        return f"{attempt['checks'] - len(attempt['failed'])} of {attempt['checks']} checks"
    return f"{len(attempt['failed'])} failing"


def best(attempts: list[dict]) -> dict | None:
    """The first passing attempt, else the one with the fewest failing checks (the earliest)."""
    if not attempts:
        return None
    passing = [a for a in attempts if a["passed"]]
    return passing[0] if passing else min(attempts, key=lambda a: len(a["failed"]))
