"""The deck in the real Anki engine (the `anki` package): a learner's collection over
edit → rebuild → re-import cycles keeps its notes, its reviews and its order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from anki.collection import Collection, ImportAnkiPackageOptions, ImportAnkiPackageRequest

from conftest import run

SHEET_90 = "ML Grind::90 NumPy shapes: broadcasting, matmul, reshape"


def build(project: Path) -> str:
    """Build (one small PDF; the deck always holds every card) and return what it reported."""
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 0, result.err
    return result.err


def import_deck(col: Collection, project: Path):  # type: ignore[no-untyped-def]
    """Import as a learner does (File → Import, scheduling not imported); the import log."""
    return col.import_anki_package(ImportAnkiPackageRequest(
        package_path=str(project / "build/mlgrind.apkg"),
        options=ImportAnkiPackageOptions(with_scheduling=False))).log


def yaml_note_ids(project: Path) -> list[str]:
    """Note ids in the seed's order, read from the YAML independently of mlgrind."""
    sets = []
    for path in (project / "cards").glob("*.yaml"):
        cards = yaml.safe_load(path.read_text())
        sheet = next(yaml.safe_load(p.read_text()) for p in (project / "onepagers").glob("*.yaml")
                     if yaml.safe_load(p.read_text())["id"] == cards["sheet"])
        sets.append((sheet["position"], [n["id"] for n in cards["notes"]]))
    return [note_id for _, ids in sorted(sets) for note_id in ids]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"test setup: {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def scheduling(col: Collection) -> dict[int, tuple]:
    return {row[0]: tuple(row[1:]) for row in col.db.all(
        "select id, nid, did, due, ivl, type, queue, reps, lapses, factor from cards")}


@pytest.fixture
def col(tmp_path: Path):
    (tmp_path / "learner").mkdir()
    collection = Collection(str(tmp_path / "learner" / "collection.anki2"))
    yield collection
    collection.close()


def test_deck_imports_with_every_note_in_a_deck_per_sheet(project: Path, col: Collection) -> None:
    build(project)
    log = import_deck(col, project)
    assert len(log.new) == col.note_count() == len(yaml_note_ids(project))
    assert not (log.conflicting or log.missing_notetype or log.empty_first_field or log.duplicate)
    decks = {d.name for d in col.decks.all_names_and_ids()}
    for path in (project / "onepagers").glob("*.yaml"):
        sheet = yaml.safe_load(path.read_text())
        assert f"ML Grind::{sheet['position']:02d} {sheet['title']}" in decks


def test_three_edit_cycles_update_in_place_and_keep_reviews(project: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "collection.anki2")
    col = Collection(path)
    build(project)
    import_deck(col, project)
    col.decks.select(col.decks.id_for_name(SHEET_90))
    for _ in range(4):  # the learner studies a few cards
        card = col.sched.getCard()
        card.start_timer()
        col.sched.answerCard(card, 3)
    revlog = col.db.all("select * from revlog order by id")
    before = scheduling(col)
    notes = col.note_count()
    [note_id] = col.find_notes('"front:How do you add a per-example scale*"')
    col.close()

    cards_yaml = project / "cards/90-numpy-shapes.yaml"
    for cycle in range(3):
        edit(cards_yaml, "per-example scale", f"per-example scale (v{cycle})")
        edit(project / "templates/anki/basic-back.html", "<hr id=\"answer\">",
             f"<hr id=\"answer\"><!-- cycle {cycle} -->")
        edit(project / "templates/card.css", ".card {", f"/* cycle {cycle} */\n.card {{")
        assert "1 updated" in build(project)  # seconds apart: times must still move forward

        col = Collection(path)  # the learner opens Anki again
        log = import_deck(col, project)
        assert (len(log.new), len(log.conflicting)) == (0, 0)
        assert [n.id.nid for n in log.updated] == [note_id]
        assert col.note_count() == notes  # nothing duplicated
        assert f"per-example scale (v{cycle})" in col.get_note(note_id)["Front"]
        col.close()
        col = Collection(path)  # a fresh look, past the Python layer's note-type cache
        basic = col.models.by_name("mlgrind Basic")
        assert f"cycle {cycle}" in basic["css"]
        assert f"cycle {cycle}" in basic["tmpls"][0]["afmt"]
        assert col.db.all("select * from revlog order by id") == revlog
        assert scheduling(col) == before
        col.close()


def test_reimporting_an_unchanged_build_changes_nothing(project: Path, col: Collection) -> None:
    build(project)
    first = (project / "build/mlgrind.apkg").read_bytes()
    import_deck(col, project)
    mods = col.db.all("select id, mod from notes order by id")
    assert "deck:" not in build(project)  # no note changed since the last build
    assert (project / "build/mlgrind.apkg").read_bytes() == first
    log = import_deck(col, project)
    assert (len(log.new), len(log.updated), len(log.conflicting)) == (0, 0, 0)
    assert col.db.all("select id, mod from notes order by id") == mods


def test_new_cards_come_in_the_seeds_order(project: Path, col: Collection) -> None:
    build(project)
    import_deck(col, project)
    rows = col.db.all("select n.guid from cards c join notes n on c.nid = n.id "
                      "where c.type = 0 order by c.due, c.ord")
    guid_to_id = {col.get_note(nid).guid: col.get_note(nid)["Sheet"] for nid in col.find_notes("")}
    import genanki
    expected = [genanki.guid_for("mlgrind", note_id) for note_id in yaml_note_ids(project)]
    assert list(dict.fromkeys(guid for (guid,) in rows)) == expected
    assert guid_to_id  # every note carries its back link


def test_notes_added_later_meet_the_learner_in_the_curriculums_place(project: Path,
                                                                     col: Collection) -> None:
    build(project)
    import_deck(col, project)
    # A note inserted in the middle of a card set, and a new sheet between 01 and 90 with a note.
    path = project / "cards/90-numpy-shapes.yaml"
    ids = [n["id"] for n in yaml.safe_load(path.read_text())["notes"]]
    before, after = ids[4], ids[5]
    text = path.read_text()
    at = text.index(f"  - id: {after}\n")
    path.write_text(text[:at] + "  - id: inserted-later\n    front: 'inserted'\n    back: 'x'\n"
                    + text[at:])
    (project / "onepagers/50-new.yaml").write_text(
        "id: new-sheet\ntitle: New sheet\nposition: 50\nseed: s\npanels:\n"
        "  - title: P\n    blocks:\n      - note: n\n")
    (project / "cards/50-new.yaml").write_text(
        "sheet: new-sheet\nnotes:\n  - id: on-the-new-sheet\n    front: 'new'\n    back: 'y'\n")
    build(project)
    import_deck(col, project)
    import genanki

    dues = {col.get_note(nid).guid: due for nid, due in col.db.all(
        "select nid, due from cards where ord = 0")}

    def due(note_id: str) -> int:  # the position Anki will show this new card at
        return dues[genanki.guid_for("mlgrind", note_id)]

    assert due(before) < due("inserted-later") < due(after)
    sets = {Path(p).stem: [n["id"] for n in yaml.safe_load(Path(p).read_text())["notes"]]
            for p in (project / "cards").glob("*.yaml")}
    assert (due(sets["01-suffixes-einsum"][-1]) < due("on-the-new-sheet")
            < due(sets["90-numpy-shapes"][0]))


def test_cards_render_computed_values_and_escaped_text(project: Path, col: Collection) -> None:
    edit(project / "cards/90-numpy-shapes.yaml", "    front: \"How do you add a per-example scale",
         "    extra: \"A mask keeps `m <= l` & drops `m > l`.\"\n    front: \"How do you add a per-example scale")
    build(project)
    import_deck(col, project)

    [card_id] = col.find_cards('"front:*(8, 1, 6, 1) and (7, 1, 5)*"')
    card = col.get_card(card_id)
    assert "(8, 1, 6, 1)" in card.question()
    # A type-in card's back compares the typed text with this field (the reviewer renders it).
    assert card.note()["Answer"] == str(np.broadcast_shapes((8, 1, 6, 1), (7, 1, 5)))

    [card_id] = col.find_cards('"front:*per-example scale*"')
    answer = col.get_card(card_id).answer()
    assert "m &lt;= l" in answer and "m &gt; l" in answer and "&amp; drops" in answer
    assert "Sheet 90 · NumPy shapes: broadcasting, matmul, reshape · Broadcast or not?" in answer

    # The letter cards show the meaning from the notation table, both ways round.
    from mlgrind.ref.notation import LETTERS

    cards = [col.get_card(c) for c in col.find_cards('"front:*Suffix letter*M*"')]
    assert len(cards) == 2
    assert any(LETTERS["M"].meaning in c.answer() and LETTERS["M"].meaning not in c.question()
               for c in cards)
    assert any(LETTERS["M"].meaning in c.question() for c in cards)


def test_a_figure_on_a_card_is_packaged_as_media_and_shown_with_the_answer(
        project: Path, col: Collection) -> None:
    from mlgrind.ref.pipeline import bubble_fraction_formula

    edit(project / "cards/90-numpy-shapes.yaml", "    front: \"How do you add a per-example scale",
         "    figure: pipeline_schedule(stages=4, microbatches=8, schedule='gpipe')\n"
         "    front: \"How do you add a per-example scale")
    build(project)
    import_deck(col, project)
    [card_id] = col.find_cards('"front:*per-example scale*"')
    card = col.get_card(card_id)
    [name] = re.findall(r'<img class="figure" src="(mlgrind-[0-9a-f]{16}\.svg)"', card.answer())
    assert "mlgrind-" not in card.question()
    svg = (Path(col.media.dir()) / name).read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert f"{bubble_fraction_formula(4, 8):.0%}".replace("%", " %") in svg  # its computed bubble
    # The figure changes: a new file, and the same note updated in place.
    before = col.note_count()
    edit(project / "cards/90-numpy-shapes.yaml", "microbatches=8", "microbatches=4")
    build(project)
    import_deck(col, project)
    assert col.note_count() == before
    [new] = re.findall(r'src="(mlgrind-[0-9a-f]{16}\.svg)"', col.get_card(card_id).answer())
    assert new != name and (Path(col.media.dir()) / new).is_file()


def test_a_lost_ledger_is_rebuilt_from_the_last_package_and_keeps_learner_edits(
        project: Path, col: Collection) -> None:
    build(project)
    import_deck(col, project)
    [nid] = col.find_notes('"front:*per-example scale*"')
    mine = col.get_note(nid)
    mine["Extra"] = "my own mnemonic"
    col.update_note(mine)
    (project / "notes.lock.json").unlink()
    edit(project / "cards/90-numpy-shapes.yaml", "Shape of K @ K?", "Shape of K @ K (1-D)?")
    report = build(project)
    assert "notes.lock.json was missing: rebuilt from build/mlgrind.apkg" in report
    assert "deck: 1 updated" in report  # only the note whose content changed
    assert "updated matmul-vec-vec: re-importing replaces" in report  # named, to check in Anki
    log = import_deck(col, project)
    assert len(log.updated) == 1 and len(log.new) == 0
    assert col.get_note(nid)["Extra"] == "my own mnemonic"  # the learner's edit survived


def test_removed_note_is_retired_not_lost(project: Path, col: Collection) -> None:
    build(project)
    import_deck(col, project)
    [note_id] = col.find_notes('"front:How do you add a per-example scale*"')
    cards_yaml = project / "cards/90-numpy-shapes.yaml"
    text = cards_yaml.read_text()
    start = text.index("  - id: broadcast-per-example")
    end = text.index("  - id:", start + 1)
    cards_yaml.write_text(text[:start] + text[end:])

    report = build(project)
    assert "retired broadcast-per-example" in report
    import_deck(col, project)
    assert col.get_note(note_id).has_tag("mlgrind::retired")
    assert "broadcast-per-example" in json.loads((project / "notes.lock.json").read_text())["notes"]

    cards_yaml.write_text(text)  # brought back: the tag goes again
    build(project)
    import_deck(col, project)
    assert not col.get_note(note_id).has_tag("mlgrind::retired")


def test_schema_change_without_version_bump_warns(project: Path) -> None:
    lock = project / "notes.lock.json"
    data = json.loads(lock.read_text())
    data["note_types"]["basic"]["schema"]["fields"].append("Hint")  # as if a field was removed
    lock.write_text(json.dumps(data))
    report = build(project)
    assert re.search(r"warning note type 'basic' changed its fields or cards at version 1", report)


def test_tags_are_hierarchical_by_sheet_and_topic(project: Path, col: Collection) -> None:
    build(project)
    import_deck(col, project)
    tags = set(col.tags.all())
    assert {"mlgrind::90-numpy-shapes", "mlgrind::01-suffixes-einsum",
            "mlgrind::topic::numpy", "mlgrind::topic::einsum"} <= tags


def test_retired_note_of_an_older_note_type_layout_is_still_packaged(project: Path,
                                                                     col: Collection) -> None:
    # As after the README's upgrade path: the ledger holds a retired cloze note published when
    # the note type had one field fewer (no "Source").
    lock = project / "notes.lock.json"
    data = json.loads(lock.read_text())
    data["notes"]["old-cloze"] = {"digest": "x", "mod": 1, "note": {
        "id": "old-cloze", "type": "cloze", "sheet_id": "numpy-shapes", "deck": SHEET_90,
        "fields": [["Text", "old {{c1::fact}}"], ["Extra", ""], ["Sheet", "Sheet 90"]],
        "tags": ["mlgrind::retired"]}}
    lock.write_text(json.dumps(data))
    build(project)
    import_deck(col, project)
    [note_id] = col.find_notes('"text:old*"')
    note = col.get_note(note_id)
    assert note.has_tag("mlgrind::retired") and note["Source"] == ""


def test_changing_a_notes_type_is_an_error_at_its_line(project: Path) -> None:
    build(project)
    cards_yaml = project / "cards/90-numpy-shapes.yaml"
    edit(cards_yaml, "  - id: broadcast-per-example\n", "  - id: broadcast-per-example\n    type: reverse\n")
    line = cards_yaml.read_text().splitlines().index("    type: reverse", ) + 1
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 1
    assert re.search(rf"cards/90-numpy-shapes\.yaml:{line}:\d+: note 'broadcast-per-example' "
                     r"changed its type", result.err), result.err


def test_renaming_a_sheet_warns_that_anki_keeps_cards_in_the_old_deck(project: Path) -> None:
    build(project)
    edit(project / "onepagers/90-numpy-shapes.yaml", 'title: "NumPy shapes: broadcasting, matmul, reshape"',
         'title: "NumPy shapes"')
    report = build(project)
    assert re.search(rf"warning \d+ note\(s\) move from deck '{re.escape(SHEET_90)}' to "
                     r"'ML Grind::90 NumPy shapes'", report), report


def test_a_type_in_answer_must_be_plain_text(project: Path) -> None:
    edit(project / "cards/90-numpy-shapes.yaml", 'back: "${ calc.matmul(\'K\', \'K\') }"',
         'back: "**${ calc.matmul(\'K\', \'K\') }**"')
    result = run("check", "--root", project)
    assert result.code == 1
    assert re.search(r"cards/90-numpy-shapes\.yaml:\d+:\d+: a type-in answer must be plain text",
                     result.err), result.err


@pytest.mark.parametrize("ledger", [
    '{"format": 1, "notes": []}',
    '{"format": 1, "notes": {"x": {"digest": "d", "mod": "abc", "note": {}}}}',
    '{"format": 1, "note_types": {"basic": {"digest": "d", "mod": 1, "schema": null}}}',
    '{"format": 2}',
    "not json",
])
def test_a_damaged_ledger_is_reported_not_half_read(project: Path, ledger: str) -> None:
    (project / "notes.lock.json").write_text(ledger)
    result = run("check", "--root", project)
    assert result.code == 1
    assert "notes.lock.json: unreadable notes ledger" in result.err
    assert "Traceback" not in result.err
