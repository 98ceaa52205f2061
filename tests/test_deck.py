"""The deck in the real Anki engine: it imports, and an edit updates notes in place."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from anki.collection import Collection, ImportAnkiPackageOptions, ImportAnkiPackageRequest

from conftest import run


def import_deck(col: Collection, apkg: Path) -> None:
    col.import_anki_package(ImportAnkiPackageRequest(
        package_path=str(apkg), options=ImportAnkiPackageOptions(with_scheduling=True)))


def yaml_notes(project: Path) -> dict[str, dict]:
    """Notes as a learner wrote them, read independently of mlgrind."""
    notes = {}
    for path in (project / "cards").glob("*.yaml"):
        for note in yaml.safe_load(path.read_text())["notes"]:
            notes[note["id"]] = note
    return notes


@pytest.fixture
def col(tmp_path: Path):
    (tmp_path / "learner").mkdir()
    collection = Collection(str(tmp_path / "learner" / "collection.anki2"))
    yield collection
    collection.close()


def test_deck_imports_with_every_note_and_a_deck_per_sheet(project: Path, col: Collection) -> None:
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    import_deck(col, project / "build/mlgrind.apkg")

    assert col.note_count() == len(yaml_notes(project))
    sheets = [yaml.safe_load(p.read_text()) for p in (project / "onepagers").glob("*.yaml")]
    decks = {d.name for d in col.decks.all_names_and_ids()}
    for sheet in sheets:
        assert f"ML Grind::{sheet['position']:02d} {sheet['title']}" in decks


def test_card_shows_value_computed_by_numpy(project: Path, col: Collection) -> None:
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    import_deck(col, project / "build/mlgrind.apkg")
    expected = str(np.broadcast_shapes((8, 1, 6, 1), (7, 1, 5)))
    [card_id] = col.find_cards('"front:*(8, 1, 6, 1) and (7, 1, 5)*"')
    card = col.get_card(card_id)
    assert "(8, 1, 6, 1)" in card.question()
    # A type-in card's back compares the typed text with this field (the reviewer renders it).
    assert card.note()["Answer"] == expected
    assert "[[type:Answer]]" in card.answer()


def test_editing_text_updates_the_note_in_place(project: Path, col: Collection) -> None:
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    import_deck(col, project / "build/mlgrind.apkg")
    [note_id] = col.find_notes('"front:How do you add a per-example scale*"')
    guid = col.get_note(note_id).guid
    count = col.note_count()
    note_types = col.models.all_names_and_ids()
    decks = col.decks.all_names_and_ids()

    cards = project / "cards/90-numpy-shapes.yaml"
    cards.write_text(cards.read_text().replace(
        "How do you add a per-example scale", "How do you multiply by a per-example scale"))
    time.sleep(1.1)  # Anki updates a note when the package's copy is newer, to the second
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    import_deck(col, project / "build/mlgrind.apkg")

    assert col.note_count() == count
    assert col.models.all_names_and_ids() == note_types
    assert col.decks.all_names_and_ids() == decks
    note = col.get_note(note_id)
    assert note.guid == guid
    assert "multiply by a per-example scale" in note["Front"]
