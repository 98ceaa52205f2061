"""Content errors: what a user did wrong, where, and what was expected.

Every stage reports problems as `Problem`s (file:line:col + message) and keeps going, so one
run lists every mistake; the CLI prints them and exits 1, never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.message}"


class ContentError(Exception):
    """Raised with every problem found in a run; the CLI turns it into exit status 1."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(map(str, self.problems)))


def display_path(path: Path, root: Path) -> str:
    """Paths in messages are relative to the project, as the user typed them."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
