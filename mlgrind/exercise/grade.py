"""Run an exercise's checks on the learner's module; every failure becomes one short message.

The generated test_NAME.py and `mlgrind exercise check NAME` both call `run_check` here, so
pytest and the CLI grade with the same checks. The learner's file is compiled from its source
on every run (no import cache, no .pyc), so an edit is always what gets graded.
"""

from __future__ import annotations

import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from .catalog import Check, get
from .compare import Mismatch


@dataclass(frozen=True)
class Result:
    check: str
    passed: bool
    message: str = ""


def checks(name: str) -> tuple[Check, ...]:
    return get(name).checks


class LoadError(Exception):
    """The learner's file does not run as a module (syntax error, failing import…)."""


def load(path: Path) -> types.ModuleType:
    """Execute the learner's file as a fresh module. Its folder goes on sys.path while it
    loads, so it may import the learner's own earlier exercises (`from rope import rope`)."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as error:
        raise LoadError(f"cannot read {path.name}: {error.strerror}") from None
    module = types.ModuleType(f"mlgrind_exercise.{path.stem}")
    module.__file__ = str(path)
    # dataclasses and pickling look a class's module up in sys.modules.
    sys.modules[module.__name__] = module
    sys.path.insert(0, str(path.parent))
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - it is their code
    except SyntaxError as error:
        raise LoadError(f"{path.name} line {error.lineno}: SyntaxError: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 - whatever their module raises is reported
        raise LoadError(f"{path.name} fails while loading: {_explain(error, path)}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _explain(error: BaseException, path: Path) -> str:
    """The exception, located at the innermost line of the learner's file that led to it."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    if isinstance(error, NotImplementedError) and frames:
        return (
            f"{frames[-1].name}() is not implemented yet ({path.name} line {frames[-1].lineno}):"
            f" replace its `raise NotImplementedError` with your code"
        )
    what = f"{type(error).__name__}: {error}"
    if not frames:
        return what
    f = frames[-1]
    return f"{f.name}() raised {what}\n  {path.name} line {f.lineno}: {(f.line or '').strip()}"


def run_check(check: Check, path: Path) -> str | None:
    """None if the check passes, else the message for the learner."""
    path = Path(path).resolve()
    try:
        check.run(load(path))
    except Mismatch as error:
        return str(error)
    except LoadError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - their code failed: say where, not how we got there
        return _explain(error, path)
    return None


def run(name: str, path: Path) -> list[Result]:
    results = []
    for check in checks(name):
        message = run_check(check, path)
        results.append(Result(check.name, message is None, message or ""))
    return results
