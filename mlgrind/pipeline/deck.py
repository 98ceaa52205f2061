"""Stage 4c, render the deck: card sets → one Anki package, with identities that never drift.

A learner's review history hangs on three ids. Note GUIDs come from the YAML note id
(`genanki.guid_for`), note-type ids from the note type's key and version, deck ids from the
sheet id: none from text, so editing a card's wording updates it in place on re-import.
Modification times come from the ledger (`ledger.py`): a note's changes only when its content
does, which is what makes Anki take the update and leave everything else alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import genanki
from markupsafe import escape

from .. import palette
from ..figures import FIGURES
from .compute import ExpressionError, Values
from .load import Source
from .problems import Problems
from .render import Templates, Texts
from .schema import CardSet, Sheet

GUID_NAMESPACE = "mlgrind"
DECK_ROOT = "ML Grind"
RETIRED_TAG = "mlgrind::retired"


def stable_id(name: str) -> int:
    """A positive 63-bit id from a stable name (Anki ids are signed 64-bit)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class NoteType:
    """A note type: its fields and card templates (files in templates/anki/).

    Changing `fields` or the card names makes a different note type for Anki, which then
    refuses to update existing notes: bump `version` with such a change (README, "Upgrading
    note types"). Template text and CSS may change freely at the same version.
    """

    key: str
    name: str
    fields: tuple[str, ...]
    cards: tuple[tuple[str, str], ...]  # (card name, template file stem)
    cloze: bool = False
    version: int = 1

    @property
    def id(self) -> int:
        return stable_id(f"mlgrind note type {self.key} v{self.version}")


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

# Which YAML field fills which Anki field (Sheet is the back link, filled by the build).
FIELD_SOURCES = {"Front": "front", "Back": "back", "Answer": "back", "Text": "text",
                 "Extra": "extra", "Source": "source"}


def deck_id(sheet_id: str) -> int:
    return stable_id(f"mlgrind deck {sheet_id}")


def note_guid(note_id: str) -> str:
    return genanki.guid_for(GUID_NAMESPACE, note_id)


@dataclass(frozen=True)
class AnkiNote:
    """One note as Anki will hold it: field values are final HTML."""

    id: str
    type: str
    sheet_id: str
    deck: str  # full deck path, "ML Grind::01 Title"
    fields: tuple[tuple[str, str], ...]  # (Anki field name, HTML), in the note type's order
    tags: tuple[str, ...]


# A card's figure is drawn this wide (pt) and scaled to the card: about 1.6 × on a desktop, so
# its 7-pt labels read like the card's text (320: the widest figure a card draws, sheet 11's
# 4-stage schedule, needs 304 with room for its recall blanks).
CARD_FIGURE_WIDTH = 320


def card_notes(cards: CardSet, sheet: Sheet | None, source: Source, problems: Problems,
               values: Values | None = None) -> tuple[list[AnkiNote], dict[str, bytes]]:
    """The card set's notes with every field rendered, in file order, and the media files their
    figures need. Without its sheet (one that failed to load) the fields are still rendered, to
    report their problems too. A note without `source` or `panel` takes the card set's."""
    text = Texts(source, problems, "card", values=values)
    default_source = text(cards.source, ("source",))  # rendered once, for every note without one
    notes = []
    media: dict[str, bytes] = {}
    for n, note in enumerate(cards.notes):
        values = {}
        for anki_field in NOTE_TYPES[note.type].fields:
            key = FIELD_SOURCES.get(anki_field)
            if key == "source" and note.source is None:
                values[anki_field] = str(default_source or "")
            elif key is not None:
                # The answer side bears facts; so does a reverse note's front, asked for too.
                facts = key in ("back", "text", "extra") or note.type == "reverse"
                values[anki_field] = str(text(getattr(note, key), ("notes", n, key),
                                              facts=facts) or "")
        if note.figure is not None:
            try:
                drawing = text.computed(note.figure, FIGURES, "figure", width=CARD_FIGURE_WIDTH)
            except ExpressionError as error:
                text.problem(("notes", n, "figure"), str(error))
            else:
                svg = drawing.svg_file().encode()
                # Named by content: an edited figure is a new file, which Anki's import takes.
                name = f"mlgrind-{hashlib.sha256(svg).hexdigest()[:16]}.svg"
                media[name] = svg
                values["Extra"] += f'<img class="figure" src="{name}" alt="{escape(drawing.alt)}">'
        if note.type == "type-in" and "<" in values["Answer"]:
            text.problem(("notes", n, "back"), (
                "a type-in answer must be plain text, since the learner types it: no `code`, "
                "**bold**, maths or role spans"))
        if sheet is None:
            continue
        panel = note.panel or cards.panel
        where = f" · {panel}" if panel else ""
        values["Sheet"] = str(escape(f"Sheet {sheet.position:02d} · {sheet.title}{where}"))
        tags = {f"mlgrind::{sheet.position:02d}-{sheet.id}",
                *(f"mlgrind::topic::{t}" for t in [*cards.tags, *note.tags])}
        notes.append(AnkiNote(note.id, note.type, sheet.id, f"{DECK_ROOT}::{sheet.position:02d} {sheet.title}",
                              tuple((f, values[f]) for f in NOTE_TYPES[note.type].fields),
                              tuple(sorted(tags))))
    return notes, media


@dataclass(frozen=True)
class TypeSpec:
    """A note type with its template texts and CSS read from templates/: what Anki receives."""

    note_type: NoteType
    templates: tuple[tuple[str, str, str], ...]  # (card name, front, back)
    css: str

    @property
    def schema(self) -> dict[str, object]:
        """What must not change at one version: field names and card names."""
        return {"version": self.note_type.version, "fields": list(self.note_type.fields),
                "cards": [name for name, _ in self.note_type.cards]}

    @property
    def digest(self) -> str:
        """Everything Anki receives of the note type: its schema, templates and CSS."""
        nt = self.note_type
        text = json.dumps({"key": nt.key, "name": nt.name, "fields": nt.fields, "cards": nt.cards,
                           "cloze": nt.cloze, "version": nt.version, "templates": self.templates,
                           "css": self.css})
        return hashlib.sha256(text.encode()).hexdigest()


def type_specs(templates: Templates) -> dict[str, TypeSpec]:
    """Every note type with its templates and CSS (the sheets' palette, appended)."""
    css = templates.read("card.css") + "\n" + palette.css(night=True)
    return {
        nt.key: TypeSpec(nt, tuple((card, templates.read(f"anki/{stem}-front.html"),
                                    templates.read(f"anki/{stem}-back.html"))
                                   for card, stem in nt.cards), css)
        for nt in NOTE_TYPES.values()
    }


class _Model(genanki.Model):
    """A genanki model whose modification time is ours, not the build's clock."""

    def __init__(self, spec: TypeSpec, mod: int):
        nt = spec.note_type
        super().__init__(
            nt.id, nt.name, fields=[{"name": f} for f in nt.fields],
            templates=[{"name": n, "qfmt": q, "afmt": a} for n, q, a in spec.templates],
            css=spec.css, model_type=genanki.Model.CLOZE if nt.cloze else genanki.Model.FRONT_BACK)
        self.mod = mod

    def to_json(self, timestamp: float, deck_id: int):  # type: ignore[no-untyped-def]
        return super().to_json(self.mod, deck_id)


class _Note(genanki.Note):
    """A genanki note whose modification time is ours, not the build's clock."""

    def __init__(self, mod: int, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.mod = mod

    def write_to_db(self, cursor, timestamp: float, deck_id, id_gen):  # type: ignore[no-untyped-def]
        super().write_to_db(cursor, self.mod, deck_id, id_gen)


def package(notes: list[AnkiNote], specs: dict[str, TypeSpec], note_mods: dict[str, int],
            type_mods: dict[str, int], dues: dict[str, int], media: dict[str, bytes]) -> bytes:
    """The .apkg bytes, with the media files the notes name; each note's cards at its new-card
    position (`ledger.positions`)."""
    models = {key: _Model(spec, type_mods[key]) for key, spec in specs.items()}
    decks: dict[str, genanki.Deck] = {}
    for note in notes:
        deck = decks.setdefault(note.deck, genanki.Deck(deck_id(note.sheet_id), note.deck))
        deck.add_note(_Note(
            note_mods[note.id], model=models[note.type], fields=[html for _, html in note.fields],
            guid=note_guid(note.id), tags=list(note.tags), due=dues[note.id]))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, data in sorted(media.items()):
            (Path(tmp) / name).write_bytes(data)
            files.append(str(Path(tmp) / name))
        path = Path(tmp) / "deck.apkg"
        # Fixed from the content, so the ids genanki draws for the package are too.
        timestamp = max([*note_mods.values(), *type_mods.values()], default=0)
        genanki.Package(list(decks.values()), media_files=files).write_to_file(path,
                                                                               timestamp=timestamp)
        return _repack(path)


def _repack(path: Path) -> bytes:
    """The package zip with fixed entry times, so the same deck gives the same bytes (genanki
    stamps entries with its temporary files' times)."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                         src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()
