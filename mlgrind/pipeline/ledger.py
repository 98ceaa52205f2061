"""The notes ledger (`notes.lock.json`): what the deck last published, so updates are safe.

Anki updates a note on re-import only when the package's copy is newer, so each note carries a
modification time that moves exactly when its content changes: a fixed time would block
updates, "now" on every build would overwrite a learner's own edits for nothing. The ledger
remembers, per note, a digest of its content and that time; per note type, its schema and a
digest of its templates and CSS; per sheet, its edition date. Notes that left the YAML stay in
the ledger, and in the deck with a `mlgrind::retired` tag, since Anki's import never deletes.

Commit the ledger with the sources, like a lock file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import sqlite3
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .build import Changes
from .deck import NOTE_TYPES, RETIRED_TAG, AnkiNote, TypeSpec, note_guid
from .problems import Problem, Problems


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest: str
    mod: int = Field(ge=0, lt=2**40)


class _Schema(BaseModel):
    version: int
    fields: list[str]
    cards: list[str]


class TypeEntry(_Entry):
    note_schema: _Schema = Field(alias="schema")


class NoteEntry(_Entry):
    note: AnkiNote
    due: int | None = None  # its new-card position as published (older ledgers: none)


class Ledger(BaseModel):
    """The file's one schema: a ledger that does not match it is reported, never half-read."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    format: Literal[1] = 1
    note_types: dict[str, TypeEntry] = {}
    notes: dict[str, NoteEntry] = {}
    sheets: dict[str, _Entry] = {}

    def dumps(self) -> bytes:
        data = self.model_dump(mode="json", by_alias=True)
        return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def load(path: Path, name: str, problems: Problems) -> Ledger:
    """The ledger at `path`; an empty one if there is none yet, or if it is unreadable (then
    with a problem: no page or note can be stamped right without it)."""
    if not path.exists():
        return Ledger()
    try:
        return Ledger.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        reason = error.strerror if isinstance(error, OSError) else _first_error(error)
        problems.add(Problem(name, 0, 0, f"unreadable notes ledger ({reason}); restore it from "
                             "version control, or delete it to start a new one (every note "
                             "then counts as changed once)"))
        return Ledger()


def recover(package: Path, notes: list[AnkiNote], specs: dict[str, TypeSpec]) -> Ledger | None:
    """A lost ledger, rebuilt from the last .apkg the build wrote: each current note's published
    content, modification time and position, read back by its GUID, and each note type's. With
    it, the next build bumps only what really changed, so a re-import does not replace a
    learner's own edits on every note. None if there is no package or it cannot be read (retired
    notes cannot be recovered: a GUID does not give back the id it came from)."""
    by_guid = {note_guid(note.id): note for note in notes}
    by_model = {spec.note_type.id: spec for spec in specs.values()}
    try:
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(package) as archive:
            archive.extract("collection.anki2", tmp)
            with contextlib.closing(sqlite3.connect(Path(tmp) / "collection.anki2")) as db:
                models = json.loads(db.execute("select models from col").fetchone()[0])
                decks = json.loads(db.execute("select decks from col").fetchone()[0])
                rows = db.execute("select n.guid, n.mid, n.mod, n.flds, n.tags, c.did, c.due "
                                  "from notes n join cards c on c.nid = n.id and c.ord = 0")
                found = rows.fetchall()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, sqlite3.Error):
        return None
    ledger = Ledger()
    for model in models.values():
        spec = by_model.get(int(model["id"]))
        if spec is None:
            continue
        published = TypeSpec(spec.note_type, tuple((t["name"], t["qfmt"], t["afmt"])
                                                   for t in model["tmpls"]), model["css"])
        ledger.note_types[spec.note_type.key] = TypeEntry(
            digest=published.digest, mod=model["mod"], schema=_Schema(**spec.schema))
    for guid, mid, mod, fields, tags, did, due in found:
        current, spec = by_guid.get(guid), by_model.get(mid)
        if current is None or spec is None:
            continue
        names = spec.note_type.fields
        note = dataclasses.replace(
            current, type=spec.note_type.key, deck=decks[str(did)]["name"],
            fields=tuple(zip(names, fields.split("\x1f"), strict=False)),
            tags=tuple(sorted(tags.split())))
        ledger.notes[current.id] = NoteEntry(digest=_digest(note), mod=mod, note=note, due=due)
    return ledger


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(map(str, first['loc'])) or 'file'}: {first['msg']}"


def _stamp(previous: _Entry | None, digest: str, now: int) -> int:
    """The modification time of an item whose content has `digest`: kept while the digest is,
    else `max(now, previous + 1)`, strictly later even when two builds share a second or the
    clock is pinned (SOURCE_DATE_EPOCH)."""
    if previous is None:
        return now
    if previous.digest == digest:
        return previous.mod
    return max(now, previous.mod + 1)


def sheet_dates(old: Ledger, digests: dict[str, str], now: int) -> dict[str, int]:
    """Each sheet's edition time, printed in its footer: it moves only when the sheet does, so
    an unchanged sheet keeps byte-identical PDFs."""
    return {sheet_id: _stamp(old.sheets.get(sheet_id), digest, now)
            for sheet_id, digest in digests.items()}


def _digest(note: AnkiNote) -> str:
    text = json.dumps([note.type, note.deck, note.fields, note.tags])
    return hashlib.sha256(text.encode()).hexdigest()


def _retire(note: AnkiNote) -> AnkiNote:
    """A note that left the YAML, as last published, tagged, with its fields laid onto its note
    type's current fields by name (a field added since stays empty, one removed is dropped)."""
    values = dict(note.fields)
    fields = tuple((name, values.get(name, "")) for name in NOTE_TYPES[note.type].fields)
    return dataclasses.replace(note, fields=fields, tags=tuple(sorted({*note.tags, RETIRED_TAG})))


# New-card positions. Anki keeps a card's position once imported, so a note inserted later must
# get a position between its neighbours' as published: positions leave gaps. Each sheet has its
# own range (a sheet added between two others falls between them, for every learner), and a new
# note takes the gap after the note before it, or half the room up to the next one.
SHEET_SPAN, GAP = 1_000_000, 1024
RETIRED_BASE = 100 * SHEET_SPAN  # after every sheet (positions are 1 to 99)


def positions(notes: list[AnkiNote], sheet_positions: dict[str, int],
              old: Ledger) -> dict[str, int]:
    """Each note's new-card position: the one it was published with, or a free one in place."""
    dues: dict[str, int] = {}
    for sheet_id, group in itertools.groupby(notes, key=lambda note: note.sheet_id):
        members = list(group)
        base = sheet_positions[sheet_id] * SHEET_SPAN
        published = [_published(old, note.id) for note in members]
        low = base
        for i, note in enumerate(members):
            due = published[i]
            if due is None:
                high = next((d for d in published[i + 1:] if d is not None), base + SHEET_SPAN)
                due = low + GAP if low + GAP < high else (low + high + 1) // 2
            dues[note.id] = due
            low = max(low, due)
    return dues


def _published(old: Ledger, note_id: str) -> int | None:
    entry = old.notes.get(note_id)
    return entry.due if entry is not None else None


@dataclass
class Update:
    ledger: Ledger  # the new ledger
    notes: list[AnkiNote]  # to package: current notes, then retired ones
    note_mods: dict[str, int]
    type_mods: dict[str, int]
    dues: dict[str, int]  # new-card positions
    changes: Changes


def update(old: Ledger, notes: list[AnkiNote], specs: dict[str, TypeSpec],
           sheet_digests: dict[str, str], dates: dict[str, int], now: int,
           sheet_positions: dict[str, int]) -> Update:
    """Modification times (see `_stamp`) and new-card positions (see `positions`) for every
    note and note type, and what changed."""
    changes = Changes()
    new = Ledger()

    type_mods = {}
    for key, spec in specs.items():
        before = old.note_types.get(key)
        schema = _Schema(**spec.schema)
        if before is not None and before.note_schema != schema:
            if before.note_schema.version == schema.version:
                changes.warnings.append(
                    f"note type {key!r} changed its fields or cards at version {schema.version}: "
                    "Anki will not update existing notes of this type. Bump NoteType.version in "
                    "mlgrind/deck.py (README: Upgrading note types).")
            else:
                changes.warnings.append(
                    f"note type {key!r} is now version {schema.version}: learners must follow "
                    "README, Upgrading note types, before importing.")
        type_mods[key] = _stamp(before, spec.digest, now)
        new.note_types[key] = TypeEntry(digest=spec.digest, mod=type_mods[key], schema=schema)

    current = {note.id for note in notes}
    retired = [_retire(entry.note) for note_id, entry in sorted(old.notes.items())
               if note_id not in current and entry.note.type in specs]
    dues = positions(notes, sheet_positions, old) | {
        note.id: _published(old, note.id) or RETIRED_BASE + i for i, note in enumerate(retired)}
    note_mods = {}
    for note in [*notes, *retired]:
        digest = _digest(note)
        before = old.notes.get(note.id)
        note_mods[note.id] = _stamp(before, digest, now)
        if before is None:
            changes.added.append(note.id)
        elif before.digest != digest:
            if before.note.type != note.type:
                changes.retyped.append(note.id)
            if before.note.deck != note.deck:
                changes.moved.setdefault((before.note.deck, note.deck), []).append(note.id)
            was_retired, is_retired = RETIRED_TAG in before.note.tags, RETIRED_TAG in note.tags
            (changes.retired if is_retired and not was_retired else changes.updated).append(note.id)
        new.notes[note.id] = NoteEntry(digest=digest, mod=note_mods[note.id], note=note,
                                       due=dues[note.id])
    new.sheets = {i: _Entry(digest=sheet_digests[i], mod=dates[i]) for i in sheet_digests}
    return Update(new, [*notes, *retired], note_mods, type_mods, dues, changes)
