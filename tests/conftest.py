"""Shared fixtures: a private copy of the bundled project, and the CLI run in-process."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlgrind.cli import main

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def project(tmp_path: Path, built: Path) -> Path:
    """The bundled content, templates and all, copied where a test may break it, with the PDF
    cache of one full build (as a user has after their first build): unchanged sheets are not
    rendered again, edited ones are."""
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "notes.lock.json", tmp_path)
    shutil.copytree(built / "build/.cache", tmp_path / "build/.cache")
    return tmp_path


@pytest.fixture
def small_project(project: Path) -> Path:
    """The project with sheets 01 and 90 only: for the tests of the pipeline itself (errors,
    writes, removals) that need real sheets but not the whole curriculum's rendering time."""
    for folder in ("onepagers", "cards"):
        for path in (project / folder).glob("*.yaml"):
            if not path.name.startswith(("01-", "90-")):
                path.unlink()
    return project


@pytest.fixture(scope="session")
def one_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sheet 01 alone, with its cards and the templates: the morning routine's tests print it
    (rendered once, on first use, into its build/)."""
    root = tmp_path_factory.mktemp("one-sheet")
    shutil.copytree(ROOT / "templates", root / "templates")
    for folder in ("onepagers", "cards"):
        (root / folder).mkdir()
        for path in (ROOT / folder).glob("01-*.yaml"):
            shutil.copy(path, root / folder)
    shutil.copy(ROOT / "notes.lock.json", root)
    return root


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full build of the bundled project, shared by the tests that only read it (a test
    that edits it puts it back)."""
    root = tmp_path_factory.mktemp("built")
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copy(ROOT / "notes.lock.json", root)
    result = run("build", "--root", root)
    assert result.code == 0, result.err
    return root


def run(*args: str | Path) -> Result:
    """`mlgrind ARGS`, in-process. An uncaught exception fails the test instead of exiting 1."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def calc_json(*args: str | int | float) -> dict:
    """`mlgrind calc ARGS --json`, parsed: what a learner would get from the calculators."""
    import json

    result = run("calc", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def card_field(sheet_file: str, note_id: str, field: str = "back") -> str:
    """One field of one note of `cards/<sheet_file>`, its `${ calc.… }` computed as the build
    computes them: what the learner reads on the card."""
    import yaml

    from mlgrind.pipeline.compute import expand

    notes = yaml.safe_load((ROOT / "cards" / sheet_file).read_text(encoding="utf-8"))["notes"]
    (note,) = [n for n in notes if n["id"] == note_id]
    return expand(note[field])
