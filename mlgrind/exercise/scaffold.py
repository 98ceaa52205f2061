"""Write an exercise's two files: NAME.py (the contract to fill in) and test_NAME.py (its checks).

The test file holds no checks of its own: it hands the catalog's checks to pytest, so
`python -m pytest test_NAME.py` and `mlgrind exercise check NAME` grade with the same ones.
"""

from __future__ import annotations

from pathlib import Path

from .catalog import Exercise, exercises


class WouldOverwrite(FileExistsError):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        super().__init__(", ".join(str(p) for p in paths))


def module_source(exercise: Exercise) -> str:
    order = [e.name for e in exercises()]
    n = exercise.name
    header = (
        f"# mlgrind exercise {order.index(n) + 1} of {len(order)}: {n}, {exercise.title}\n"
        f"# Goal: {exercise.goal}\n"
        f"# Fill in every function with NumPy and the standard library only.\n"
        f"# Check:  mlgrind exercise check {n}   (or: python -m pytest test_{n}.py)\n"
        f"# Nudge:  mlgrind exercise check {n} --hint\n"
    )
    if any(c.name.startswith("backward:") for c in exercise.checks):
        header += "# The backward checks run your forward first: its `saved` feeds your backward.\n"
    header += "\n"
    return header + exercise.contract


def test_source(exercise: Exercise) -> str:
    n = exercise.name
    return f'''"""Checks for {n}.py against mlgrind's NumPy reference (mlgrind.ref).

The same checks `mlgrind exercise check {n}` runs (which also records your progress), in
the same way: your code runs in a separate process with a time limit per check. This file
only hands them to pytest: python -m pytest test_{n}.py
"""

from pathlib import Path

import pytest

from mlgrind.exercise import grade

LEARNER = Path(__file__).with_name("{n}.py")


@pytest.mark.parametrize("check", grade.checks("{n}"), ids=str)
def test_{n}(check):
    failure = grade.run_check(check, LEARNER, refuse_answer_key=True)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
'''


def paths(exercise: Exercise, folder: Path) -> tuple[Path, Path]:
    return folder / f"{exercise.name}.py", folder / f"test_{exercise.name}.py"


def write(exercise: Exercise, folder: Path, force: bool = False) -> tuple[Path, Path]:
    """Write both files into folder (made if missing). A learner's file is their work:
    nothing is overwritten unless force, and then both files are."""
    module, test = paths(exercise, folder)
    existing = [p for p in (module, test) if p.exists()]
    if existing and not force:
        raise WouldOverwrite(existing)
    folder.mkdir(parents=True, exist_ok=True)
    module.write_text(module_source(exercise), encoding="utf-8")
    test.write_text(test_source(exercise), encoding="utf-8")
    return module, test
