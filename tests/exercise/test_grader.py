"""The grader cannot be hung, ended or fooled by the code it grades, and bad input never shows
a traceback: each hostile solution ends as a recorded failure of the check it broke."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlgrind.cli import main
from mlgrind.exercise import catalog, grade, scaffold
from tests.exercise.implementations import REFERENCE

# Written by hand for these tests, independently of mlgrind.ref (which a solution may not import).
MLP_SOLUTION = """
import numpy as np


def mlp_forward_D(x_D, w_in_DF, w_out_FD):
    h_F = x_D @ w_in_DF
    return np.maximum(h_F, 0) @ w_out_FD, (x_D, w_in_DF, w_out_FD, h_F)


def mlp_backward_D(d_y_D, saved):
    x_D, w_in_DF, w_out_FD, h_F = saved
    # BODY
    d_h_F = (w_out_FD @ d_y_D) * (h_F > 0)
    return w_in_DF @ d_h_F, np.outer(x_D, d_h_F), np.outer(np.maximum(h_F, 0), d_y_D)
"""

PROGRESS = ".mlgrind-progress.json"


def mlgrind(*args: str | Path):
    result = CliRunner().invoke(main, ["exercise", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def solution(folder: Path, body: str = "", once: bool = True) -> Path:
    """The MLP solution with `body` run in its backward: once only (the first backward call, so
    in the first backward check, `backward: d_x_D`), or on every call."""
    if once:
        mark = folder / "ran-once"
        body = f"import os\n    if not os.path.exists({str(mark)!r}):\n" + (
            f"        open({str(mark)!r}, 'w').close()\n        {body}"
        )
    path = folder / "mlp.py"
    path.write_text(MLP_SOLUTION.replace("# BODY", body), encoding="utf-8")
    return path


def attempts(folder: Path) -> list[dict]:
    return json.loads((folder / PROGRESS).read_text())["exercises"]["mlp"]["attempts"]


def test_the_hand_written_solution_passes(tmp_path):
    solution(tmp_path)
    assert mlgrind("check", "mlp", "--dir", tmp_path)[0] == 0


HOSTILE = {
    "an infinite loop": ("while True: pass", "timed out after 1 s"),
    "sys.exit(0)": ("import sys; sys.exit(0)", "exited with sys.exit(0)"),
    "os._exit(0)": ("os._exit(0)", "ended the process with exit status 0"),
    "a kill": ("os.kill(os.getpid(), 9)", "killed by signal 9"),
    "a segfault": ("import ctypes; ctypes.string_at(0)", "crashed: killed by signal 11"),
    "a 10 GB allocation": ("np.ones(10 * 2**30 // 8)", "ran out of memory"),
    "50 MB of printing": ("print('x' * 50_000_000)", "printed more than 1 MB"),
}


@pytest.mark.parametrize("what", HOSTILE)
def test_hostile_code_fails_its_check_is_recorded_and_the_other_checks_still_run(tmp_path, what):
    body, says = HOSTILE[what]
    if what == "a 10 GB allocation" and not sys.platform.startswith("linux"):
        pytest.skip("the memory limit needs RLIMIT_AS, which only Linux enforces")
    solution(tmp_path, body)
    began = time.monotonic()
    code, out, err = mlgrind("check", "mlp", "--dir", tmp_path, "--timeout", 1)
    assert time.monotonic() - began < 8  # one timeout, plus a fresh child for the next checks
    assert code == 1
    assert f"✗ backward: d_x_D\n      {says}" in out
    # A fresh child graded the checks after the one that broke: they pass.
    for check in ("forward: y_D", "backward: d_w_in_DF", "backward: d_w_out_FD"):
        assert f"✓ {check}" in out
    assert len(out) + len(err) < 5000  # the terminal is not flooded
    assert [(a["passed"], a["failed"]) for a in attempts(tmp_path)] == [
        (False, ["backward: d_x_D"])
    ]


def test_a_file_that_hangs_while_loading_fails_every_check_after_one_timeout(tmp_path):
    (tmp_path / "mlp.py").write_text("import numpy as np\nwhile True:\n    pass\n")
    began = time.monotonic()
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path, "--timeout", 1)
    assert time.monotonic() - began < 3.5  # not one timeout per check: 4 checks would take 4 s
    assert code == 1
    assert "mlp.py fails while loading: timed out after 1 s in the module's body" in out
    assert out.count("(the same as above)") == 3
    assert len(attempts(tmp_path)[0]["failed"]) == 4


def test_a_loop_that_swallows_the_alarm_is_still_stopped(tmp_path):
    body = (
        "while True:\n        try:\n            while True: pass\n"
        "        except BaseException: pass"
    )
    solution(tmp_path, body, once=False)
    began = time.monotonic()
    results = grade.run("mlp", tmp_path / "mlp.py", timeout=0.5)
    assert time.monotonic() - began < 8
    assert [r.passed for r in results] == [True, False, False, False]
    assert all("timed out after 0.5 s" in r.message for r in results[1:])


def test_what_the_code_printed_is_shown_under_its_failure_a_few_lines_of_it(tmp_path):
    solution(tmp_path, "print('\\n'.join(f'line {i}' for i in range(500))); raise ValueError('no')")
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 1
    assert "ValueError: no" in out and "│ line 0\n" in out and "│ line 9\n" in out
    assert "│ line 10" not in out and "│ … (more not shown)" in out


BACKWARD = ["backward: d_x_D", "backward: d_w_in_DF", "backward: d_w_out_FD"]


@pytest.mark.parametrize(
    ("line", "failing"),
    [
        # spelled out in the source: the whole file is refused before it runs
        ("from mlgrind import ref", ["forward: y_D", *BACKWARD]),
        ("import mlgrind.ref.mlp as answers", ["forward: y_D", *BACKWARD]),
        ("from mlgrind.ref.mlp import mlp_backward_D", ["forward: y_D", *BACKWARD]),
        # computed at runtime: refused where it runs, here in the backward
        ("import importlib; importlib.import_module('mlgrind.' + 'r' + 'ef')", BACKWARD),
        ("__import__('mlgrind.r' + 'ef.mlp')", BACKWARD),
    ],
)
def test_a_solution_that_imports_the_answer_key_is_refused(tmp_path, line, failing):
    solution(tmp_path, line, once=False)
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 1
    said = " ".join(out.split())
    assert "the answer key" in said and "mlgrind's reference implementation" in said
    assert attempts(tmp_path)[0]["failed"] == failing


def test_the_reference_itself_dropped_in_is_refused_by_check_but_graded_by_the_tests(tmp_path):
    (tmp_path / "mlp.py").write_text(REFERENCE["mlp"])
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 1 and " ".join(out.split()).count("the answer key") == 1
    # mlgrind's own tests grade the reference as a solution: run() allows it unless asked
    assert all(r.passed for r in grade.run("mlp", tmp_path / "mlp.py"))


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["start", "mlp"], ["check", "mlp"], ["list"]])
def test_a_dir_below_a_regular_file_is_a_one_line_usage_error(tmp_path, command):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = mlgrind(*command, "--dir", tmp_path / "notes.txt" / "sub")
    assert code == 2
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", [["check", "mlp"], ["list"], ["check", "mlp", "--hint"]])
def test_a_progress_file_that_is_a_folder_is_reported_and_left_alone(tmp_path, command):
    solution(tmp_path)
    (tmp_path / PROGRESS).mkdir()
    (tmp_path / PROGRESS / "keep").write_text("x")
    code, _, err = mlgrind(*command, "--dir", tmp_path)
    assert code == 1
    assert err.strip() == (
        f"✗ {tmp_path / PROGRESS} is a folder, not the progress file: move it elsewhere"
    )
    assert (tmp_path / PROGRESS / "keep").read_text() == "x"


DAMAGED = {
    "not JSON": "{not json",
    "exercises is a list": '{"version": 1, "exercises": []}',
    "attempts is not a list": '{"version": 1, "exercises": {"mlp": {"hints": 0, "attempts": 3}}}',
    "hints is a string": '{"version": 1, "exercises": {"mlp": {"hints": "two", "attempts": []}}}',
    "an attempt without a date": (
        '{"version": 1, "exercises": {"mlp": {"hints": 0, "attempts": [{"passed": true}]}}}'
    ),
    "nested too deeply": "[" * 100_000 + "]" * 100_000,
    "not UTF-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("command", ["check", "list"])
@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_progress_file_is_moved_aside_whole_and_the_learner_told(
    tmp_path, damage, command
):
    solution(tmp_path)
    content = DAMAGED[damage]
    content = content if isinstance(content, bytes) else content.encode()
    (tmp_path / PROGRESS).write_bytes(content)
    code, _, err = mlgrind(command, *(["mlp"] if command == "check" else []), "--dir", tmp_path)
    assert code == 1
    (aside,) = tmp_path.glob(PROGRESS + ".damaged-*")
    assert aside.read_bytes() == content
    assert not (tmp_path / PROGRESS).exists()
    assert len(err.strip().splitlines()) == 1 and f"moved it to {aside.name}" in err
    # the next run starts a new record
    assert mlgrind("check", "mlp", "--dir", tmp_path)[0] == 0
    assert attempts(tmp_path)[0]["passed"]


# --- progress that helps -----------------------------------------------------------------------


def test_list_shows_the_best_and_the_latest_result_attempts_and_hints(tmp_path):
    wrong = MLP_SOLUTION.replace("np.outer(np.maximum(h_F, 0), d_y_D)", "np.outer(d_y_D, h_F)")
    for source, hint in ((wrong, True), (MLP_SOLUTION, False), (wrong, False)):
        (tmp_path / "mlp.py").write_text(source)
        mlgrind("check", "mlp", "--dir", tmp_path, *(["--hint"] if hint else []))
    (tmp_path / "mlp_batched.py").write_text("")
    _, out, _ = mlgrind("list", "--dir", tmp_path)
    lines = out.splitlines()
    status = lines[next(i for i, s in enumerate(lines) if " mlp  " in s) + 1]
    today = time.strftime("%Y-%m-%d")
    assert status.split() == (
        f"✓ passed {today} · latest ✗ 3 of 4 checks {today} · 3 attempts · 1 hint".split()
    )
    batched = lines[next(i for i, s in enumerate(lines) if " mlp_batched  " in s) + 1]
    assert batched.strip() == "started, not checked yet"
    # mlp passed; the first exercise not passed is einsum_drills, which has no file yet
    assert out.rstrip().endswith("Next in the seed's order: mlgrind exercise start einsum_drills"
                                 f" --dir {tmp_path}")


def test_a_pass_suggests_the_next_exercise_not_yet_passed_with_check_when_it_exists(tmp_path):
    record = {"hints": 0, "attempts": [{"date": "2025-01-01T00:00:00", "passed": True,
                                        "failed": []}]}
    (tmp_path / PROGRESS).write_text(
        json.dumps({"version": 1, "exercises": {"mlp_batched": record}})
    )
    (tmp_path / "row_parallel.py").write_text("")
    solution(tmp_path)
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 0
    assert f"Next in the seed's order: mlgrind exercise check row_parallel --dir {tmp_path}" in out


def test_a_hint_that_fits_the_failing_check_comes_first(tmp_path, monkeypatch):
    mlp = catalog.get("mlp")
    tied = catalog.Exercise(
        **{**mlp.__dict__, "hint_for": {"backward: d_w_out_FD": 2, "forward: y_D": 0}}
    )
    everything = catalog.exercises()
    monkeypatch.setattr(catalog, "exercises", lambda: [tied if e is mlp else e for e in everything])
    wrong = MLP_SOLUTION.replace("np.outer(np.maximum(h_F, 0), d_y_D)", "np.outer(d_y_D, h_F)")
    (tmp_path / "mlp.py").write_text(wrong)
    _, out, _ = mlgrind("check", "mlp", "--dir", tmp_path, "--hint")
    assert f"Hint 3 of {len(mlp.hints)} (for backward: d_w_out_FD):" in out
    assert " ".join(mlp.hints[2].split()[:6]) in " ".join(out.split())
    # that one seen, the rest come in order
    _, out, _ = mlgrind("check", "mlp", "--dir", tmp_path, "--hint")
    assert f"Hint 1 of {len(mlp.hints)}:" in out
    _, out, _ = mlgrind("check", "mlp", "--dir", tmp_path, "--hint")
    assert f"Hint 2 of {len(mlp.hints)}:" in out
    entry = json.loads((tmp_path / PROGRESS).read_text())["exercises"]["mlp"]
    assert entry["shown"] == [2, 0, 1] and entry["hints"] == 3


def test_an_older_progress_file_counting_hints_only_keeps_working(tmp_path):
    old = {"version": 1, "exercises": {"mlp": {"hints": 2, "attempts": [
        {"date": "2025-01-01T00:00:00", "passed": False, "failed": ["forward: y_D"]}]}}}
    (tmp_path / PROGRESS).write_text(json.dumps(old))
    solution(tmp_path)
    _, out, _ = mlgrind("check", "mlp", "--dir", tmp_path, "--hint")
    assert "Hint 3 of" in out  # the first two were counted as seen
    _, out, _ = mlgrind("list", "--dir", tmp_path)
    assert "✓ passed" in out and "2 attempts · 3 hints" in out


def test_the_generated_test_file_grades_as_check_does_refusing_the_answer_key():
    # (tests/exercise/test_exercise_cli.py runs one under pytest, with a crashing solution)
    source = scaffold.test_source(catalog.get("mlp"))
    assert "grade.run_check(check, LEARNER, refuse_answer_key=True)" in source
