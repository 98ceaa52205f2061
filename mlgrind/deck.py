"""Stage 4c, render the deck: card sets → one Anki package, with identities that never drift.

A learner's review history hangs on three ids. Note GUIDs come from the YAML note id
(`genanki.guid_for`), note-type ids from the note type's name and version, deck ids from the
sheet id: none from text, so editing a card's wording updates it in place on re-import.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import genanki

from . import palette
from .render import Templates

GUID_NAMESPACE = "mlgrind"
DECK_ROOT = "ML Grind"


def stable_id(name: str) -> int:
    """A positive 63-bit id from a stable name (Anki ids are signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class NoteType:
    """A note type: its fields and card templates (files in templates/anki/)."""

    key: str
    name: str
    fields: tuple[str, ...]
    cards: tuple[tuple[str, str], ...]  # (card name, template file stem)
    cloze: bool = False
    version: int = 1  # bump when fields or card names change: Anki then sees a new note type


NOTE_TYPES = {
    nt.key: nt
    for nt in [
        NoteType("basic", "mlgrind Basic", ("Front", "Back", "Extra", "Sheet", "Source"),
                 (("Card 1", "basic"),)),
        NoteType("reverse", "mlgrind Basic + reverse", ("Front", "Back", "Extra", "Sheet", "Source"),
                 (("Card 1", "basic"), ("Card 2", "reverse"))),
        NoteType("type-in", "mlgrind Type-in", ("Front", "Answer", "Extra", "Sheet", "Source"),
                 (("Card 1", "type-in"),)),
        NoteType("cloze", "mlgrind Cloze", ("Text", "Extra", "Sheet", "Source"),
                 (("Cloze", "cloze"),), cloze=True),
    ]
}

# Which YAML field fills which Anki field, per note type (Sheet is the back link).
_FIELD_SOURCES = {"Front": "front", "Back": "back", "Answer": "back", "Text": "text",
                  "Extra": "extra", "Source": "source"}


def note_type_id(nt: NoteType) -> int:
    return stable_id(f"mlgrind note type {nt.key} v{nt.version}")


def deck_id(sheet_id: str) -> int:
    return stable_id(f"mlgrind deck {sheet_id}")


def note_guid(note_id: str) -> str:
    return genanki.guid_for(GUID_NAMESPACE, note_id)


def _models(templates: Templates) -> dict[str, genanki.Model]:
    css = templates.read("card.css") + "\n" + palette.css()
    return {
        nt.key: genanki.Model(
            note_type_id(nt), nt.name,
            fields=[{"name": f} for f in nt.fields],
            templates=[{"name": card, "qfmt": templates.read(f"anki/{stem}-front.html"),
                        "afmt": templates.read(f"anki/{stem}-back.html")} for card, stem in nt.cards],
            css=css,
            model_type=genanki.Model.CLOZE if nt.cloze else genanki.Model.FRONT_BACK,
        )
        for nt in NOTE_TYPES.values()
    }


@dataclass(frozen=True)
class DeckSpec:
    sheet_id: str
    name: str  # full deck path, "ML Grind::01 Title"
    notes: list[dict[str, Any]]  # from render.card_fields, with "backlink" and "tags" added


def package(decks: list[DeckSpec], templates: Templates) -> bytes:
    """The .apkg bytes for all decks."""
    models = _models(templates)
    anki_decks = []
    for spec in decks:
        deck = genanki.Deck(deck_id(spec.sheet_id), spec.name)
        for item in spec.notes:
            note = item["note"]
            nt = NOTE_TYPES[note.type]
            values = {**{f: str(item["fields"].get(_FIELD_SOURCES.get(f, ""), "") or "")
                         for f in nt.fields}, "Sheet": item["backlink"]}
            deck.add_note(genanki.Note(
                model=models[nt.key], fields=[values[f] for f in nt.fields],
                guid=note_guid(note.id), tags=item["tags"]))
        anki_decks.append(deck)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deck.apkg"
        genanki.Package(anki_decks).write_to_file(path)
        return path.read_bytes()
