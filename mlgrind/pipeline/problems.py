"""Problems: what a user did wrong, where, and what was expected; the one way stages report.

Every stage adds `Problem`s (file:line:col + message) to the run's `Problems` and keeps going, so
one run lists every mistake; the build checks it at the end of each phase (`check`), and the CLI
prints them and exits 1, never with a traceback. Nothing is de-duplicated: a problem reported
twice is a stage doing its work twice, and should show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class Problems:
    """Every problem found so far in a run, in the order found."""

    found: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.found.append(problem)

    def __len__(self) -> int:
        return len(self.found)

    def check(self) -> None:
        """End of a phase: stop here if anything went wrong, with everything that did."""
        if self.found:
            raise ContentError(self.found)


class ContentError(Exception):
    """Raised with every problem found in a run; the CLI turns it into exit status 1."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(map(str, self.problems)))


def display_path(path: Path, root: Path) -> str:
    """Paths in messages are relative to the project, as the user typed them."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
