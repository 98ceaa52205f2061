"""A one-sheet project (sheet 01 alone, built once), for the tests that need real sheets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def one_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one-sheet")
    shutil.copytree(ROOT / "templates", root / "templates")
    for folder in ("onepagers", "cards"):
        (root / folder).mkdir()
        for path in (ROOT / folder).glob("01-*.yaml"):
            shutil.copy(path, root / folder)
    shutil.copy(ROOT / "notes.lock.json", root)
    return root
