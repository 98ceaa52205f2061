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
