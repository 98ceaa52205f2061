"""Incremental builds and `check` against a clean build: the same bytes, whatever the cache
holds (nothing, a check's layouts, damaged files) and whatever the number of processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run

SHEET = "onepagers/90-numpy-shapes.yaml"


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a build wrote, but its cache and manifest."""
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and ".cache" not in p.parts and not p.name.startswith(".mlgrind")}


@pytest.fixture
def sheet90(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sheet 90 alone (the smallest), with its cards and the templates, at a fixed clock."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1780000000")
    root = tmp_path / "project"
    shutil.copytree(ROOT / "templates", root / "templates")
    for folder in ("onepagers", "cards"):
        (root / folder).mkdir(parents=True)
        shutil.copy(ROOT / folder / "90-numpy-shapes.yaml", root / folder)
    shutil.copy(ROOT / "notes.lock.json", root)
    return root


def build(root: Path, out: Path, *options: str) -> dict[str, bytes]:
    result = run("build", "--paper", "a4", "--root", root, "--out", out, *options)
    assert result.code == 0, result.err
    return outputs(out)


def test_parallel_build_leaves_weasyprint_to_the_workers_and_matches_one_job(sheet90: Path) -> None:
    # In a fresh interpreter: this one has imported WeasyPrint for other tests.
    script = ("import sys; from mlgrind.cli import main\n"
              "try: main(sys.argv[1:])\n"
              "except SystemExit as stop: assert not stop.code, stop.code\n"
              "print('weasyprint' in sys.modules, file=sys.stderr)")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, "build", "--paper", "a4", "--jobs", "2",
                           "--root", str(sheet90), "--out", str(sheet90 / "two")],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("False"), done.stderr
    assert outputs(sheet90 / "two") == build(sheet90, sheet90 / "one", "--jobs", "1")


def test_an_incremental_build_gives_a_clean_builds_bytes(sheet90: Path) -> None:
    # With one job and two (a clean build's bytes are the same for both: the test above).
    before = build(sheet90, sheet90 / "inc", "--jobs", "1")
    sheet = sheet90 / SHEET
    sheet.write_text(sheet.read_text().replace("Adding a bias", "Adding a bias vector"))
    incremental = build(sheet90, sheet90 / "inc", "--jobs", "2")
    assert incremental != before
    assert incremental == build(sheet90, sheet90 / "clean", "--jobs", "1")
    assert build(sheet90, sheet90 / "inc", "--jobs", "2") == incremental  # a no-op


def test_a_damaged_or_missing_cache_file_changes_no_byte(sheet90: Path) -> None:
    out = sheet90 / "build"
    clean = build(sheet90, out)
    cache = out / ".cache"
    layouts = sorted(cache.glob("*.layout"))
    assert layouts and sorted(cache.glob("*.pdf")) and sorted(cache.glob("booklet-*.key"))
    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def plausible(path: Path) -> None:
        # Parses, but is not what the page ended with: another side 2, another booklet key.
        key = path.read_text().split()[-1]
        path.write_text(f"2 1 2 {key}" if path.suffix == ".layout" else f"{'0' * 64} {key}")

    def retyped(path: Path) -> None:
        # Still JSON, but each typeset formula or computed value a number (the code digest kept).
        def number(value: object, key: str = "") -> object:
            if isinstance(value, dict):
                return {k: number(v, k) for k, v in value.items()}
            return value if key == "code" else 0
        path.write_text(json.dumps(number(json.loads(path.read_text()))))

    assert {p.name for p in cache.glob("*.json")} == {"maths.json", "values.json"}
    assert json.loads((cache / "values.json").read_text())["values"]
    rounds = [
        {".pdf": Path.unlink, ".layout": lambda p: p.write_bytes(b"\xff\x00 not a layout"),
         ".key": truncate, ".json": truncate},
        {".pdf": truncate, ".layout": plausible, ".key": plausible, ".json": retyped},
    ]
    for n, damage in enumerate(rounds):
        for path in sorted(cache.iterdir()):
            if path.suffix in damage:
                damage[path.suffix](path)
        # Without its manifest the build compiles: up to date, it would read no cache file.
        (out / ".mlgrind-manifest.json").unlink()
        assert build(sheet90, out) == clean, n
    # A booklet edited in place is rebuilt, not kept for its cache stamp.
    booklet = out / "booklet-a4.pdf"
    booklet.write_bytes(booklet.read_bytes() + b"\n% edited\n")
    assert build(sheet90, out) == clean


def test_check_lays_out_without_writing_and_a_build_after_it_gives_the_same_bytes(
        sheet90: Path) -> None:
    clean = build(sheet90, sheet90 / "clean")
    result = run("check", "--root", sheet90, "--jobs", "2")
    assert result.code == 0, result.err
    out = sheet90 / "build"
    assert not outputs(out)  # only the cache
    assert not list((out / ".cache").glob("*.pdf"))
    # Each page's layout, as learnt by the check (both papers) and by the build (A4), is the same.
    learnt = {p.name: p.read_bytes() for p in (out / ".cache").glob("*.layout")}
    built = {p.name: p.read_bytes() for p in (sheet90 / "clean/.cache").glob("*.layout")}
    assert len(learnt) == 2 * len(built) == 4  # two editions on two papers; on one paper
    assert {name: learnt.get(name) for name in built} == built
    assert build(sheet90, out) == clean
    again = run("check", "--root", sheet90)  # after a build: from the cache
    assert again.code == 0 and "all good" in again.err, again.err


# Up to date: a full build that finds its inputs unchanged does nothing ---------------------------


def stamps(root: Path) -> dict[str, int]:
    """Every file of the project, outputs, cache and ledger included, by its modification time."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def up_to_date(root: Path, out: Path, *options: str) -> bool:
    result = run("build", "--root", root, "--out", out, *options)
    assert result.code == 0, result.err
    if "up to date" not in result.out:
        assert "unchanged" in result.out or "written" in result.out, result.out
        return False
    return True


def test_a_build_with_nothing_changed_is_up_to_date_and_writes_nothing(sheet90: Path) -> None:
    out = sheet90 / "build"
    built = build(sheet90, out)
    manifest = json.loads((out / ".mlgrind-manifest.json").read_text())
    assert set(manifest["files"]) == set(built) and manifest["inputs"]
    before = stamps(sheet90)
    result = run("build", "--paper", "a4", "--root", sheet90, "--out", out)
    assert result.code == 0, result.err
    assert f"up to date: nothing changed since the last build ({len(built)} files checked)" in result.out
    assert "unchanged" not in result.out and "written" not in result.out
    assert stamps(sheet90) == before
    assert json.loads((out / ".mlgrind-manifest.json").read_text()) == manifest
    assert outputs(out) == built


def test_every_input_and_every_output_is_checked_and_a_rebuild_gives_a_clean_builds_bytes(
        sheet90: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlgrind.pipeline import build as pipeline
    from mlgrind.pipeline import fresh

    out = sheet90 / "build"
    options = ["--paper", "a4"]
    build(sheet90, out, *options)
    assert up_to_date(sheet90, out, *options)

    def edit(relative: str, old: str, new: str) -> None:
        path = sheet90 / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    def reformat_ledger() -> None:  # the same ledger, other bytes
        path = sheet90 / "notes.lock.json"
        path.write_text(json.dumps(json.loads(path.read_text()), indent=4))

    def letter() -> None:
        options[1] = "letter"

    def in_process() -> None:  # the code changed: only the digest of mlgrind's code tells
        monkeypatch.setattr(fresh, "code_digest", lambda: "another version of mlgrind")
        result = pipeline.build(pipeline.Project.at(sheet90), out, papers=(options[1],))
        assert not result.up_to_date and not result.changes.warnings
        assert not any(o.written for o in result.outputs)  # compiled, to the same bytes

    changes = {
        "a source": lambda: edit(SHEET, "Adding a bias", "Adding a bias vector"),
        "a template": lambda: edit("templates/sheet.html.j2", "<main", "{# a comment #}<main"),
        "the ledger": reformat_ledger,
        "a deleted output": (out / "onepagers/90-numpy-shapes-a4.pdf").unlink,
        "an output's bytes": lambda: (out / "booklet-a4.pdf").write_bytes(b"%PDF-1.7 not mine"),
        "the paper": letter,
        "SOURCE_DATE_EPOCH": lambda: monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000"),
        "an --only build": lambda: build(sheet90, out, "--only", "90", *options),
        "mlgrind's code": in_process,
    }
    for n, (what, change) in enumerate(changes.items()):
        change()
        if what == "an --only build":
            assert "inputs" not in json.loads((out / ".mlgrind-manifest.json").read_text())
        clean_root = tmp_path / f"clean-{n}"  # the project as this build reads it, built afresh
        shutil.copytree(sheet90, clean_root, ignore=shutil.ignore_patterns("build"))
        if what != "mlgrind's code":
            assert not up_to_date(sheet90, out, *options), what
        assert outputs(out) == build(clean_root, clean_root / "build", *options), what
        assert up_to_date(sheet90, out, *options), what


def test_a_build_with_a_warning_records_no_inputs(sheet90: Path) -> None:
    out = sheet90 / "build"
    build(sheet90, out)
    (sheet90 / "notes.lock.json").unlink()  # rebuilt from the deck, with a warning
    result = run("build", "--paper", "a4", "--root", sheet90, "--out", out)
    assert result.code == 0 and "notes.lock.json was missing" in result.err, result.err
    assert "inputs" not in json.loads((out / ".mlgrind-manifest.json").read_text())
    assert not up_to_date(sheet90, out, "--paper", "a4")  # compiles, now without a warning
    assert up_to_date(sheet90, out, "--paper", "a4")


def test_an_up_to_date_build_imports_no_stage(sheet90: Path) -> None:
    # In a fresh interpreter, through the CLI's entry: this one has imported everything.
    out = sheet90 / "build"
    build(sheet90, out)
    script = ("import sys; from mlgrind.cli import main\n"
              "try: main(sys.argv[1:])\n"
              "except SystemExit as stop: assert not stop.code, stop.code\n"
              "heavy = ('numpy', 'pydantic', 'genanki', 'weasyprint', 'markdown_it', 'yaml',\n"
              "         'mlgrind.facts', 'mlgrind.figures', 'mlgrind.ref', 'mlgrind.pipeline.compiler')\n"
              "print(sorted(name for name in heavy if name in sys.modules), file=sys.stderr)")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, "build", "--paper", "a4", "--root",
                           str(sheet90), "--out", str(out)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout, done.stdout
    assert done.stderr.strip().endswith("[]"), done.stderr
