"""The one way the exercise tests grade a source: written as NAME.py, run by the grader."""

from __future__ import annotations

from mlgrind.exercise import grade


def graded(tmp_path, name: str, source: str) -> dict[str, grade.Result]:
    """Each check's result, by check name, for `source` as the learner's NAME.py."""
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return {r.check: r for r in grade.run(name, path)}


def assert_fails_exactly(results: dict[str, grade.Result], failing: dict) -> None:
    """The checks in `failing` fail, no others, each message holding all of its words."""
    assert {c for c, r in results.items() if not r.passed} == set(failing)
    for check, words in failing.items():
        for word in words:
            assert word in results[check].message, (check, results[check].message)
