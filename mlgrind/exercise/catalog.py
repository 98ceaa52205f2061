"""The exercises, in the seed's order: what each asks for, its nudges, and how it is checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Check:
    """One graded fact about the learner's module; `run` raises compare.Mismatch when wrong."""

    name: str
    run: Callable[[ModuleType], None]

    def __str__(self) -> str:  # the pytest id of the test that runs this check
        return self.name


@dataclass(frozen=True)
class Exercise:
    name: str  # also the learner's module: NAME.py, test_NAME.py
    title: str
    goal: str  # one line, shown by `mlgrind exercise list`
    contract: str  # the scaffold's code: docstrings, signatures, NotImplementedError bodies
    hints: tuple[str, ...]  # graded: each one a smaller step towards the answer, never the answer
    checks: tuple[Check, ...]
    # check name → index of the hint that fits its failure: --hint shows that one first
    hint_for: dict[str, int] = field(default_factory=dict, hash=False)


class UnknownExercise(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no exercise named {name!r}; the exercises are: {', '.join(names())}")


def exercises() -> list[Exercise]:
    """All of them in the seed's order. The topic modules import NumPy and the reference
    package, so they load on demand, not when the CLI starts."""
    from .topics import attention, context, drills, inference, mlp, moe, schedules, sharding

    return [
        *drills.EXERCISES,
        *mlp.EXERCISES,
        *attention.EXERCISES,
        *inference.EXERCISES,
        *sharding.EXERCISES,
        *schedules.EXERCISES,
        *moe.EXERCISES,
        *context.EXERCISES,
    ]


def names() -> list[str]:
    return [e.name for e in exercises()]


def get(name: str) -> Exercise:
    """The exercise called name; `mlp-batched` finds `mlp_batched` (module names need `_`)."""
    wanted = name.strip().replace("-", "_")
    for exercise in exercises():
        if exercise.name == wanted:
            return exercise
    raise UnknownExercise(name)
