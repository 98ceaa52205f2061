"""Writing outputs: the manifest decides what a build may remove, the journal makes replacing
many files recoverable, and the render workers never outlive the build."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run
from mlgrind.pipeline import write


def _drop_sheet(project: Path, stem: str) -> None:
    (project / f"onepagers/{stem}.yaml").unlink()
    (project / f"cards/{stem}.yaml").unlink()


def _edit_a_card(project: Path) -> None:
    """A change to the deck and the ledger that renders no page."""
    cards = project / "cards/90-numpy-shapes.yaml"
    text = cards.read_text()
    assert "meets the last axis." in text
    cards.write_text(text.replace("meets the last axis.", "meets the last axis, on the right."))


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp")]


# The manifest: only what mlgrind wrote is ever removed ----------------------------------------


def test_a_full_build_into_a_shared_folder_removes_only_what_mlgrind_wrote(small_project: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "Documents"
    shutil.copytree(small_project / "build/.cache", out / ".cache")  # warm: nothing renders
    mine = [out / "thesis.pdf", out / "booklet-mine.pdf", out / "onepagers/notes.pdf"]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"%PDF-1.7 my own " + path.name.encode())
    # A manifest that names a file outside the folder is not obeyed either.
    thesis_sha = hashlib.sha256(mine[0].read_bytes()).hexdigest()
    (out / ".mlgrind-manifest.json").write_text(json.dumps({"files": {
        "../Documents/thesis.pdf": thesis_sha, str(mine[0]): thesis_sha}}))

    assert run("build", "--out", out, "--root", small_project).code == 0
    ours = sorted(p.name for p in (out / "onepagers").glob("90-*"))
    assert len(ours) == 4
    _drop_sheet(small_project, "90-numpy-shapes")
    result = run("build", "--out", out, "--root", small_project)

    assert result.code == 0, result.err
    assert not list((out / "onepagers").glob("90-*"))
    assert sorted(line.split()[1].rsplit("/", 1)[1] for line in result.out.splitlines()
                  if line.split()[0] == "removed") == ours
    for path in mine:
        assert path.read_bytes() == b"%PDF-1.7 my own " + path.name.encode()


def test_the_first_build_without_a_manifest_removes_nothing(small_project: Path) -> None:
    out = small_project / "build"
    theirs = [out / "onepagers/42-old-sheet-a4.pdf", out / "booklet-recall-legal.pdf"]
    for path in theirs:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"%PDF stale, or someone's")
    result = run("build", "--root", small_project)
    assert result.code == 0, result.err
    assert all(path.exists() for path in theirs)
    assert "removed" not in result.out


def test_an_output_edited_since_is_left_in_place_with_a_warning(small_project: Path) -> None:
    assert run("build", "--root", small_project).code == 0
    annotated = small_project / "build/onepagers/90-numpy-shapes-a4.pdf"
    annotated.write_bytes(annotated.read_bytes() + b"% my annotations\n")
    _drop_sheet(small_project, "90-numpy-shapes")
    result = run("build", "--root", small_project)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (small_project / "build/onepagers").glob("90-*")) == [annotated.name]
    assert "left build/onepagers/90-numpy-shapes-a4.pdf in place" in result.err
    # It is the user's now: the next build neither removes it nor warns again.
    again = run("build", "--root", small_project)
    assert annotated.exists() and "90-numpy-shapes-a4.pdf" not in again.err + again.out


def test_a_partial_build_keeps_the_record_of_earlier_outputs(small_project: Path) -> None:
    assert run("build", "--root", small_project).code == 0
    assert run("build", "--only", "90", "--paper", "a4", "--root", small_project).code == 0
    _drop_sheet(small_project, "01-suffixes-einsum")
    result = run("build", "--root", small_project)
    assert result.code == 0, result.err
    assert not list((small_project / "build/onepagers").glob("01-*"))
    assert result.out.count("removed") == 4


# The journal: a replacement is completed, or says truthfully what it did ---------------------


@pytest.mark.parametrize("k", [1, 3])
def test_a_failed_rename_says_which_files_were_replaced(project: Path, k: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = project / "build"
    lock = project / "notes.lock.json"
    old_lock = lock.read_bytes()
    _edit_a_card(project)
    real, calls = os.replace, []

    def fail_kth(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == k:
            raise PermissionError(errno.EPERM, "Operation not permitted", src, dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_kth)
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    monkeypatch.undo()

    assert result.code == 1 and "Traceback" not in result.err
    err = result.err.replace(str(project) + "/", "")
    replaced = [line.split()[-1] for line in err.splitlines() if line.split()[:1] == ["replaced"]]
    kept = [line.split()[-1] for line in err.splitlines()
            if line.split()[:2] == ["not", "replaced"] and " in " not in line]
    assert len(replaced) == k - 1 and kept[-1] == "notes.lock.json"
    assert f"cannot replace {kept[0]}: Operation not permitted" in err
    assert ("nothing was replaced" in err) == (k == 1)
    # What it says is what happened: none of the outputs existed before; the ledger is last.
    assert all((project / path).exists() for path in replaced)
    assert not any((project / path).exists() for path in kept[:-1])
    assert lock.read_bytes() == old_lock
    assert not _temporaries(project) and not (out / write.JOURNAL).exists()

    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 0, result.err
    assert lock.read_bytes() != old_lock
    assert not _temporaries(project)


class _Killed(BaseException):
    """Stands for SIGKILL: no handler and no `finally` runs after it."""


def _killed_while_replacing(project: Path, after: int, monkeypatch: pytest.MonkeyPatch) -> list:
    """A build of sheet 90 killed after `after` renames: its journal and temporary files stay."""
    def replace_then_die(pending: list[tuple[str, Path]], journal: Path) -> None:
        for tmp, path in pending[:after]:
            os.replace(tmp, path)
        raise _Killed

    monkeypatch.setattr(write, "_replace", replace_then_die)
    with pytest.raises(_Killed):
        run("build", "--only", "90", "--paper", "a4", "--root", project)
    monkeypatch.undo()
    return json.loads((project / "build" / write.JOURNAL).read_text())["replace"]


def test_a_build_killed_while_replacing_is_completed_by_the_next(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edit_a_card(project)
    journal = _killed_while_replacing(project, 2, monkeypatch)
    left = [Path(entry["temp"]) for entry in journal[2:]]
    assert left and all(tmp.exists() for tmp in left)
    assert any(entry["target"].endswith("notes.lock.json") for entry in journal[2:])

    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 0, result.err
    assert f"completed the replacement of {len(left)} file(s)" in result.err
    for entry in journal:  # every target holds what the killed build meant to write
        assert hashlib.sha256(Path(entry["target"]).read_bytes()).hexdigest() == entry["sha256"]
    assert "written" not in result.out  # ... which is what this build makes too
    assert not _temporaries(project) and not (project / "build" / write.JOURNAL).exists()


def test_a_damaged_temporary_file_rolls_the_replacement_back(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edit_a_card(project)
    lock = project / "notes.lock.json"
    old_lock = lock.read_bytes()
    journal = _killed_while_replacing(project, 1, monkeypatch)
    damaged = Path(journal[-1]["temp"])
    damaged.write_bytes(damaged.read_bytes()[:10])

    assert write.recover(project / "build" / write.JOURNAL) == []
    assert lock.read_bytes() == old_lock  # not half of a ledger, nor a ledger without its deck
    assert not _temporaries(project) and not (project / "build" / write.JOURNAL).exists()
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    assert lock.read_bytes() != old_lock


def test_stale_temporary_files_beside_outputs_are_removed(project: Path) -> None:
    out = project / "build"
    (out / "onepagers").mkdir()
    stale = [project / ".notes.lock.json.k2l5x0wq.tmp", out / ".mlgrind.apkg.a_b1c2d3.tmp",
             out / "onepagers/.90-numpy-shapes-a4.pdf.8zzq1mno.tmp"]
    someone_elses = project / ".thesis.tex.u1v2w3x4.tmp"
    for path in [*stale, someone_elses]:
        path.write_bytes(b"half")
    (out / write.JOURNAL).write_text('{"replace": [{"temp": "/etc/pass')  # torn by a kill
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 0, result.err
    assert _temporaries(project) == [someone_elses]
    assert not (out / write.JOURNAL).exists()


def test_an_interrupt_while_replacing_completes_the_replacement(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edit_a_card(project)
    real, calls = os.replace, []

    def interrupted(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    monkeypatch.undo()
    assert result.code == 130 and "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1].startswith("✗ stopped by Ctrl-C")
    assert not _temporaries(project)
    again = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert "written" not in again.out  # the interrupted build had put all of it in place


# The render workers die with the build --------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:  # the process is gone
        return found
    for children in tasks:
        try:
            kids = [int(c) for c in children.read_text().split()]
        except OSError:  # the thread is gone
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie stays if PID 1 does not reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists() or (os.cpu_count() or 1) < 2,
                    reason="needs Linux's /proc, and two cores for a pool of render workers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_a_build_leaves_no_process_behind(tmp_path: Path, sig: signal.Signals) -> None:
    project = tmp_path / "project"  # no PDF cache: every page renders
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copy(ROOT / "notes.lock.json", project)
    pages = 4 * len(list((project / "onepagers").glob("*.yaml")))  # 2 editions × 2 papers
    log = tmp_path / "stderr"
    with open(log, "wb") as stderr:  # not a pipe: an orphan holding it would hang the test
        build = subprocess.Popen([sys.executable, "-m", "mlgrind", "build", "--root", project],
                                 cwd=project, stdout=subprocess.DEVNULL, stderr=stderr)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until every worker is up: its lifeline is watched
            seen |= set(_descendants(build.pid))
            servers = [pid for pid in seen if "multiprocessing.forkserver" in _cmdline(pid)]
            workers = [pid for server in servers for pid in _descendants(server) if _alive(pid)]
            if len(workers) == min(pages, os.cpu_count() or 1) and all(
                    len(list(Path(f"/proc/{pid}/task").glob("*"))) > 1 for pid in workers):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the render workers did not start within 30 s")
        seen |= set(_descendants(build.pid))
        build.send_signal(sig)
        code = build.wait(timeout=10)

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(_alive, seen)):
            time.sleep(0.05)
        assert not [pid for pid in seen if _alive(pid)]
        strays = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                  if str(project) in _cmdline(pid) and _alive(pid)]
        assert not strays
    finally:
        for pid in [build.pid, *seen]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    if sig == signal.SIGTERM:
        err = log.read_text().strip()
        assert code == 143, err
        assert err.splitlines() == ["✗ stopped by SIGTERM: no file is left half-written"], err
        assert not _temporaries(project)
