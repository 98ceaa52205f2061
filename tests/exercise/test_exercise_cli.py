"""`mlgrind exercise` as a learner meets it: start, refuse to overwrite, check, record, hint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlgrind.cli import main
from mlgrind.exercise import scaffold
from mlgrind.exercise.catalog import get, names
from tests.exercise.test_grader import MLP_SOLUTION, solution


def mlgrind(*args: str | Path):
    result = CliRunner().invoke(main, ["exercise", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_start_writes_the_scaffold_and_its_test_file(tmp_path):
    code, out, _ = mlgrind("start", "mlp", "--dir", tmp_path / "grind")
    assert code == 0
    module, test = tmp_path / "grind" / "mlp.py", tmp_path / "grind" / "test_mlp.py"
    assert module.read_text() == scaffold.module_source(get("mlp"))
    assert test.read_text() == scaffold.test_source(get("mlp"))
    assert f"mlgrind exercise check mlp --dir {tmp_path / 'grind'}" in out


def test_start_never_overwrites_without_force(tmp_path):
    mlgrind("start", "mlp", "--dir", tmp_path)
    (tmp_path / "mlp.py").write_text("# my work\n")
    code, _, err = mlgrind("start", "mlp", "--dir", tmp_path)
    assert code == 1
    assert "already exist" in err and "--force" in err
    assert (tmp_path / "mlp.py").read_text() == "# my work\n"
    assert mlgrind("start", "mlp", "--dir", tmp_path, "--force")[0] == 0
    assert (tmp_path / "mlp.py").read_text() == scaffold.module_source(get("mlp"))


@pytest.mark.parametrize("command", ["start", "check"])
def test_an_unknown_name_lists_every_valid_one(tmp_path, command):
    code, _, err = mlgrind(command, "transformer", "--dir", tmp_path)
    assert code == 2
    assert "no exercise named 'transformer'" in err
    assert all(name in err for name in names())
    assert not list(tmp_path.iterdir())


def test_a_hyphenated_name_starts_its_exercise(tmp_path):
    assert mlgrind("start", "mlp-batched", "--dir", tmp_path)[0] == 0
    assert (tmp_path / "mlp_batched.py").exists()


def test_check_before_start_says_what_to_run(tmp_path):
    code, _, err = mlgrind("check", "rope", "--dir", tmp_path)
    assert code == 2
    assert "mlgrind exercise start rope" in err


def test_check_reports_records_and_list_shows_the_pass(tmp_path):
    mlgrind("start", "mlp", "--dir", tmp_path)
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 1
    assert out.count("mlp_forward_D() is not implemented yet") == 1  # then "the same as above"
    assert out.count("(the same as above)") == 3

    # d_w_out_FD transposed: the weight gradient built as outer(d_y, a)
    wrong = MLP_SOLUTION.replace("np.outer(np.maximum(h_F, 0), d_y_D)", "np.outer(d_y_D, h_F)")
    (tmp_path / "mlp.py").write_text(wrong)
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 1
    assert "✗ backward: d_w_out_FD" in out and "✓ backward: d_x_D" in out
    assert "3 of 4 checks pass" in out

    (tmp_path / "mlp.py").write_text(MLP_SOLUTION)
    code, out, _ = mlgrind("check", "mlp", "--dir", tmp_path)
    assert code == 0
    assert "all 4 checks pass" in out and "mlgrind exercise start mlp_batched" in out

    attempts = json.loads((tmp_path / ".mlgrind-progress.json").read_text())["exercises"]["mlp"][
        "attempts"
    ]
    assert [(a["passed"], a["failed"], a["checks"]) for a in attempts] == [
        (
            False,
            ["forward: y_D", "backward: d_x_D", "backward: d_w_in_DF", "backward: d_w_out_FD"],
            4,
        ),
        (False, ["backward: d_w_out_FD"], 4),
        (True, [], 4),
    ]
    assert attempts[-1]["date"].startswith(date.today().isoformat())

    code, out, _ = mlgrind("list", "--dir", tmp_path)
    assert code == 0
    # each exercise's row, and under it the learner's record when there is one
    text = out.splitlines()
    rows = {
        m.group(1): i for i, line in enumerate(text) if (m := re.match(r" ?\d+  (\w+)  ", line))
    }
    assert list(rows) == names()
    assert text[rows["mlp"] + 1].split() == (
        f"✓ passed {date.today().isoformat()} · 3 attempts · 0 hints".split()
    )
    assert rows["mlp_batched"] + 1 == rows["row_parallel"]  # no record: no line under it
    assert f"1 of {len(names())} passed" in out


def test_hints_come_one_at_a_time_in_order_then_run_out(tmp_path):
    hints = get("rope").hints
    mlgrind("start", "rope", "--dir", tmp_path)
    for i, hint in enumerate(hints, start=1):
        code, out, _ = mlgrind("check", "rope", "--dir", tmp_path, "--hint")
        assert code == 1
        assert f"Hint {i} of {len(hints)}:" in out
        assert " ".join(hint.split()[:6]) in " ".join(out.split())
    _, out, _ = mlgrind("check", "rope", "--dir", tmp_path, "--hint")
    assert "No nudges left" in out
    progress = json.loads((tmp_path / ".mlgrind-progress.json").read_text())
    assert progress["exercises"]["rope"]["hints"] == len(hints)


def test_an_unreadable_progress_file_is_moved_aside_not_replaced(tmp_path):
    mlgrind("start", "mlp", "--dir", tmp_path)
    (tmp_path / ".mlgrind-progress.json").write_text("{not json")
    code, _, err = mlgrind("check", "mlp", "--dir", tmp_path)
    (aside,) = tmp_path.glob(".mlgrind-progress.json.damaged-*")
    assert code == 1 and f"moved it to {aside.name}, nothing lost" in err
    assert aside.read_text() == "{not json"


def test_the_generated_test_file_runs_under_plain_pytest(tmp_path):
    mlgrind("start", "mlp", "--dir", tmp_path)

    def pytest_run():
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mlp.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,  # a failing exercise exits 1: that is the point
        )

    failing = pytest_run()
    assert failing.returncode == 1
    assert "4 failed" in failing.stdout
    assert "mlp_forward_D() is not implemented yet (mlp.py line" in failing.stdout
    # pytest grades in the protected runner too: a solution that ends the process in its first
    # backward call fails that check alone, and the others pass
    solution(tmp_path, "os._exit(0)")
    crashing = pytest_run()
    assert crashing.returncode == 1 and "1 failed, 3 passed" in crashing.stdout
    assert "FAILED test_mlp.py::test_mlp[backward: d_x_D]" in crashing.stdout
    assert "ended the process with exit status 0 (as os._exit(0) does)" in crashing.stdout


def test_the_exercise_commands_start_without_the_build_pipeline():
    script = (
        "import sys; from click.testing import CliRunner; from mlgrind.cli import main; "
        "r = CliRunner().invoke(main, ['exercise', 'list']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('weasyprint', 'jinja2', 'genanki', 'pydantic') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
