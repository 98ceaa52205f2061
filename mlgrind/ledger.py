"""The notes ledger (`notes.lock.json`): what the deck last published, so updates are safe.

Anki updates a note on re-import only when the package's copy is newer, so each note carries a
modification time that moves exactly when its content changes: a fixed time would block
updates, "now" on every build would overwrite a learner's own edits for nothing. The ledger
remembers, per note, a digest of its content and that time; per note type, its schema and a
digest of its templates and CSS. Notes that left the YAML stay in the ledger, and in the deck
with a `mlgrind::retired` tag, since Anki's import never deletes.

Commit the ledger with the sources, like a lock file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .deck import RETIRED_TAG, AnkiNote, TypeSpec
from .errors import Problem

LEDGER_FILE = "notes.lock.json"
FORMAT = 1


@dataclass
class Ledger:
    note_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sheets: dict[str, dict[str, Any]] = field(default_factory=dict)  # edition dates

    def dumps(self) -> bytes:
        data = {"format": FORMAT, "note_types": self.note_types, "notes": self.notes,
                "sheets": self.sheets}
        return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def load(path: Path, name: str) -> tuple[Ledger, list[Problem]]:
    """The ledger at `path`; an empty one if there is none yet."""
    if not path.exists():
        return Ledger(), []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        return Ledger(data["note_types"], data["notes"], data.get("sheets", {})), []
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return Ledger(), [Problem(name, 0, 0, f"unreadable notes ledger ({error}); restore it from "
                                  "version control, or delete it to start a new one (every note "
                                  "then counts as changed)")]


@dataclass
class Changes:
    """What this build does to the learner's collection, for the build to report."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # newly retired in this build
    warnings: list[str] = field(default_factory=list)


def _stamp(previous: dict[str, Any] | None, digest: str, now: int) -> int:
    """The modification time of an item whose content has `digest`: kept while the digest is,
    else `max(now, previous + 1)`, strictly later even when two builds share a second or the
    clock is pinned (SOURCE_DATE_EPOCH)."""
    if previous is None:
        return now
    if previous["digest"] == digest:
        return int(previous["mod"])
    return max(now, int(previous["mod"]) + 1)


def sheet_dates(old: Ledger, digests: dict[str, str], now: int) -> dict[str, int]:
    """Each sheet's edition time, printed in its footer: it moves only when the sheet does, so
    an unchanged sheet keeps byte-identical PDFs."""
    return {sheet_id: _stamp(old.sheets.get(sheet_id), digest, now)
            for sheet_id, digest in digests.items()}


def _digest(note: AnkiNote) -> str:
    text = json.dumps([note.type, note.deck, note.fields, note.tags])
    return hashlib.sha256(text.encode()).hexdigest()


def update(old: Ledger, notes: list[AnkiNote], specs: dict[str, TypeSpec],
           now: int) -> tuple[Ledger, list[AnkiNote], dict[str, int], dict[str, int], Changes]:
    """The new ledger; every note to package (current ones, then retired ones, each with a
    retired tag); each note's and note type's modification time; and what changed.

    Modification times follow `_stamp`.
    """
    changes = Changes()
    new = Ledger()

    type_mods = {}
    for key, spec in specs.items():
        before = old.note_types.get(key)
        if before is not None and before["schema"] != spec.schema:
            if before["schema"]["version"] == spec.schema["version"]:
                changes.warnings.append(
                    f"note type {key!r} changed its fields or cards at version "
                    f"{spec.schema['version']}: Anki will not update existing notes of this type. "
                    "Bump NoteType.version in mlgrind/deck.py (README: Upgrading note types).")
            else:
                changes.warnings.append(
                    f"note type {key!r} is now version {spec.schema['version']}: learners must "
                    "follow README, Upgrading note types, before importing.")
        type_mods[key] = _stamp(old.note_types.get(key), spec.digest, now)
        new.note_types[key] = {"schema": spec.schema, "digest": spec.digest, "mod": type_mods[key]}

    current = {note.id for note in notes}
    retired = [AnkiNote(**{**entry["note"], "fields": tuple(map(tuple, entry["note"]["fields"])),
                           "tags": tuple(sorted({*entry["note"]["tags"], RETIRED_TAG}))})
               for note_id, entry in sorted(old.notes.items())
               if note_id not in current and entry["note"]["type"] in specs]
    note_mods = {}
    for note in [*notes, *retired]:
        digest = _digest(note)
        before = old.notes.get(note.id)
        note_mods[note.id] = _stamp(before, digest, now)
        if before is None:
            changes.added.append(note.id)
        elif before["digest"] != digest:
            was_retired = RETIRED_TAG in before["note"]["tags"]
            is_retired = RETIRED_TAG in note.tags
            (changes.retired if is_retired and not was_retired else changes.updated).append(note.id)
        new.notes[note.id] = {"digest": digest, "mod": note_mods[note.id], "note": asdict(note)}
    return new, [*notes, *retired], note_mods, type_mods, changes
