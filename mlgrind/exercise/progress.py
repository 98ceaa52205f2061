"""The learner's progress, in DIR/.mlgrind-progress.json beside their exercise files.

    {"version": 1,
     "exercises": {"mlp": {"hints": 2,
                           "attempts": [{"date": "2025-05-01T08:30:12", "passed": false,
                                         "failed": ["backward: d_w_out_FD"]}]}}}

One file per exercise folder, so two folders (two attempts at the whole grind) keep separate
records. It is plain JSON: delete it to start the record over.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

FILE = ".mlgrind-progress.json"


class ProgressError(Exception):
    """The progress file exists but cannot be read; it is never silently replaced."""


def path(folder: Path) -> Path:
    return folder / FILE


def load(folder: Path) -> dict:
    p = path(folder)
    if not p.exists():
        return {"version": 1, "exercises": {}}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ProgressError(f"cannot read {p}: {error}; fix it or delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("exercises"), dict):
        raise ProgressError(f"cannot read {p}: no 'exercises' object; fix it or delete it")
    return data


def _save(folder: Path, data: dict) -> None:
    p = path(folder)
    partial = p.with_name(p.name + ".tmp")
    partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, p)  # never a half-written file, even if interrupted


def _entry(data: dict, name: str) -> dict:
    return data["exercises"].setdefault(name, {"hints": 0, "attempts": []})


def record(folder: Path, name: str, failed: list[str], when: datetime | None = None) -> dict:
    """Append one attempt (passed when nothing failed); returns it."""
    data = load(folder)
    attempt = {
        "date": (when or datetime.now()).isoformat(timespec="seconds"),
        "passed": not failed,
        "failed": failed,
    }
    _entry(data, name)["attempts"].append(attempt)
    _save(folder, data)
    return attempt


def take_hint(folder: Path, name: str, available: int) -> int | None:
    """The index of the next hint not yet shown (and remember it was shown); None when all
    `available` hints have been shown."""
    data = load(folder)
    entry = _entry(data, name)
    if entry["hints"] >= available:
        return None
    entry["hints"] += 1
    _save(folder, data)
    return entry["hints"] - 1


def latest(folder: Path) -> dict[str, dict]:
    """Each exercise's latest attempt, by name."""
    return {
        name: entry["attempts"][-1]
        for name, entry in load(folder)["exercises"].items()
        if entry.get("attempts")
    }
