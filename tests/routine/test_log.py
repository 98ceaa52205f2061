"""Data safety: the log survives kill -9 mid-write, concurrent writers, read-only and missing
folders, and export → wipe → import gives back the same log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlgrind.routine import log
from mlgrind.routine.log import Mistake, PanelMark

from tests.conftest import run

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
PANELS, MISTAKES = 7, 150  # per entry: a transaction long enough for kills to land inside it

# Writes entries forever, each in its own transaction, and prints each id once committed.
WRITER = textwrap.dedent(f"""
    import sys
    from pathlib import Path
    from mlgrind.routine import log
    from mlgrind.routine.log import Mistake, PanelMark
    marks = [PanelMark(f"p{{i}}", 2, {MISTAKES}, [Mistake(f"slip {{j}}", "confused", "x" * 40)
                                                  for j in range({MISTAKES})]) for i in range({PANELS})]
    while True:
        with log.transaction(Path(sys.argv[1])) as db:
            entry = log.add_entry(db, "2026-03-02", "s1", None, "t", marks)
        print(entry, flush=True)
""")


def rows(db_path: Path) -> dict[int, tuple[int, int]]:
    """Each entry in the file → its (ratings, mistakes), once the file's integrity is checked."""
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        ratings = dict(db.execute("SELECT entry, count(*) FROM rating GROUP BY entry"))
        mistakes = dict(db.execute("SELECT entry, count(*) FROM mistake GROUP BY entry"))
        return {e: (ratings.get(e, 0), mistakes.get(e, 0)) for (e,) in db.execute("SELECT id FROM entry")}


def test_kill_9_while_writing_loses_at_most_the_entry_being_written(tmp_path: Path) -> None:
    db_path = tmp_path / "log.sqlite3"
    before: set[int] = set()
    reported = 0
    for n in range(12):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path)], env=ENV,
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.2 + 0.011 * n)  # varied: start-up, then somewhere in a write
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        committed = {int(line) for line in out.split()}
        found = rows(db_path)
        assert all(counts == (PANELS, PANELS * MISTAKES) for counts in found.values()), found
        new = set(found) - before
        assert committed <= new  # everything reported committed survived the kill
        assert len(new - committed) <= 1  # and at most the entry whose report the kill cut off
        before, reported = set(found), reported + len(committed)
    assert reported > 12  # the kills did land among writes


def test_kill_9_during_mlgrind_mark(tmp_path: Path, one_sheet: Path) -> None:
    db_path = tmp_path / "log.sqlite3"
    args = [sys.executable, "-m", "mlgrind", "mark", "01", "--date", "2026-03-02", "--panel",
            "the-naming-rule", "--mistakes", "2", "--mistake", "BLD order", "--mistake", "S",
            "--why", "shape", "--db", str(db_path), "--root", str(one_sheet)]
    start = time.perf_counter()
    assert subprocess.run(args, env=ENV, capture_output=True).returncode == 0
    took = time.perf_counter() - start
    for fraction in (0.7, 0.9, 0.97, 1.0):
        child = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(took * fraction)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert set(rows(db_path).values()) == {(1, 2)}


def test_a_writer_waits_for_another_instead_of_failing(tmp_path: Path, one_sheet: Path) -> None:
    """`morning` holds the log while it writes its pack; a `mark` meanwhile waits its turn."""
    db_path = tmp_path / "log.sqlite3"
    held = threading.Event()
    committed: list[float] = []

    def slow_morning() -> None:
        with log.transaction(db_path) as db:
            log.add_pack(db, "ABCD", "2026-03-02", "suffixes-einsum", "t")
            held.set()
            time.sleep(2.5)  # longer than the mark's start-up: it must meet the lock
        committed.append(time.monotonic())

    thread = threading.Thread(target=slow_morning)
    thread.start()
    held.wait()
    marked = subprocess.run([sys.executable, "-m", "mlgrind", "mark", "01", "--date", "2026-03-02",
                             "--rating", "good", "--db", str(db_path), "--root", str(one_sheet)],
                            env=ENV, capture_output=True, text=True)
    done = time.monotonic()
    thread.join()
    assert marked.returncode == 0, marked.stderr
    assert done > committed[0]  # it waited for the other writer, then wrote
    with log.transaction(db_path, write=False) as db:
        (entry,) = log.entries(db)
        assert log.packs(db) == {"ABCD": ("2026-03-02", "suffixes-einsum")}
    assert (entry.day, len(entry.marks)) == ("2026-03-02", 7)


def test_a_missing_folder_is_a_clear_error(tmp_path: Path, one_sheet: Path) -> None:
    result = run("mark", "01", "--rating", "good", "--db", tmp_path / "nowhere" / "log.sqlite3",
                 "--root", one_sheet)
    assert result.code == 1
    assert "nowhere" in result.err and "does not exist" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "nowhere").exists()


def _read_only(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`mlgrind ARGS` with `folder` read-only: a private read-only bind mount when we are root
    (root writes through file modes), the folder's mode otherwise."""
    command = [sys.executable, "-m", "mlgrind", *args]
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, env=ENV, capture_output=True, text=True)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare(1): cannot make a folder read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), *command], env=ENV,
                            capture_output=True, text=True)
    if "mount" in result.stderr and result.returncode != 0 and "mlgrind" not in result.stderr:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    return result


def test_a_read_only_folder_is_a_clear_error_and_still_reads(tmp_path: Path, one_sheet: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    db_path = folder / "log.sqlite3"
    assert run("mark", "01", "--rating", "good", "--db", db_path, "--root", one_sheet).code == 0
    before = db_path.read_bytes()
    wrote = _read_only(folder, "mark", "01", "--rating", "hard", "--db", str(db_path),
                       "--root", str(one_sheet))
    assert wrote.returncode == 1, wrote.stderr
    assert "read-only" in wrote.stderr and str(db_path) in wrote.stderr.replace("\n", "")
    assert "Traceback" not in wrote.stderr
    assert db_path.read_bytes() == before
    read = _read_only(folder, "mark", "--list", "--db", str(db_path))
    assert read.returncode == 0 and "7 good" in read.stdout, read.stderr


def test_export_wipe_import_gives_the_same_log(tmp_path: Path) -> None:
    db_path = tmp_path / "log.sqlite3"
    with log.transaction(db_path) as db:
        log.add_pack(db, "K7QX", "2026-03-02", "mlp", "2026-03-02T07:00:00")
        log.add_pack(db, "M3PA", "2026-03-03", "mlp", "2026-03-03T07:00:00")  # printed, never marked
        log.add_entry(db, "2026-03-02", "mlp", "K7QX", "2026-03-02T08:10:00", [
            PanelMark("the-network", 1, 4, [Mistake("x_BD, not x_D", "shape", "batch first"),
                                            Mistake("K vs H, \"again\"", "confused", "")]),
            PanelMark("loss-and-d-y", 4)])
        log.add_entry(db, "2026-03-03", "attention", None, "2026-03-03T08:00:00",
                      [PanelMark("scale-mask-softmax", 2, 1, [Mistake("√K, not √D", "forgot", "é, ü, 中")])])
        undone = log.add_entry(db, "2026-03-03", "attention", None, "t", [PanelMark("x", 3)])
        log.delete_entry(db, undone)  # a gap in the entry numbers is kept too
        state = log.dump(db)
    for suffix in (".json", ".csv"):
        export = tmp_path / f"export{suffix}"
        assert run("progress", "--export", export, "--db", db_path).code == 0
        fresh = tmp_path / f"fresh{suffix}.sqlite3"
        result = run("progress", "--import", export, "--db", fresh)
        assert result.code == 0, result.err
        with log.transaction(fresh, write=False) as db:
            assert log.dump(db) == state, suffix
        again = run("progress", "--import", export, "--db", fresh)
        assert again.code == 1 and "already holds" in again.err
    assert json.loads((tmp_path / "export.json").read_text())["entries"][0]["marks"][0]["rating"] == "again"


def test_a_log_from_a_newer_mlgrind_is_refused(tmp_path: Path) -> None:
    db_path = tmp_path / "log.sqlite3"
    with log.transaction(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(log.MIGRATIONS),)
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA user_version = 99")
    result = run("progress", "--export", tmp_path / "x.json", "--db", db_path)
    assert result.code == 1 and "newer mlgrind" in result.err and "Traceback" not in result.err
