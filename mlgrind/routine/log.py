"""The learner's log: one SQLite file, the only copy of their marks, so it is handled with care.

Tables: `pack` (a recall page printed for a day, with the short code written on it), `entry`
(one `mark` of one sheet on one day), `rating` (per panel of an entry: again/hard/good/easy, and
the count of mistakes if one was given) and `mistake` (what went wrong in a panel, and why).
Sheets and panels are stored by their stable ids, so renaming a title keeps the history.

Safety: every command writes in one transaction (BEGIN IMMEDIATE, so two writers queue instead
of failing midway; `mark` asks its questions before it takes the lock), with the rollback
journal and synchronous=FULL: a kill at any moment leaves either the whole entry or none of it.
The rollback journal rather than WAL: reading a log in a read-only folder still works. The schema is versioned by `PRAGMA user_version`;
MIGRATIONS[i] upgrades version i to i + 1 in the same transaction as the version bump.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENV = "MLGRIND_DB"
FILE = "log.sqlite3"
WHY = ("forgot", "confused", "arithmetic", "shape", "never-understood")
RATINGS = ("again", "hard", "good", "easy")  # FSRS ratings 1..4
BUSY_MS = 30_000  # a `morning` writing its pack makes a concurrent `mark` wait, not fail

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE pack (
             code TEXT PRIMARY KEY,
             day TEXT NOT NULL,
             sheet TEXT NOT NULL,
             printed TEXT NOT NULL,
             UNIQUE (day, sheet))""",
        """CREATE TABLE entry (
             id INTEGER PRIMARY KEY,
             day TEXT NOT NULL,
             sheet TEXT NOT NULL,
             code TEXT REFERENCES pack(code),
             logged TEXT NOT NULL)""",
        "CREATE INDEX entry_by_sheet ON entry (sheet, day)",
        """CREATE TABLE rating (
             entry INTEGER NOT NULL REFERENCES entry(id) ON DELETE CASCADE,
             panel TEXT NOT NULL,
             rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 4),
             mistakes INTEGER CHECK (mistakes >= 0),
             PRIMARY KEY (entry, panel))""",
        f"""CREATE TABLE mistake (
             id INTEGER PRIMARY KEY,
             entry INTEGER NOT NULL,
             panel TEXT NOT NULL,
             what TEXT NOT NULL,
             why TEXT NOT NULL CHECK (why IN ({", ".join(f"'{w}'" for w in WHY)})),
             note TEXT NOT NULL DEFAULT '',
             FOREIGN KEY (entry, panel) REFERENCES rating (entry, panel) ON DELETE CASCADE)""",
    ],
]


class LogError(Exception):
    """The log cannot be opened, read or written; the message names the file and what to do."""


def default_path() -> Path:
    """$MLGRIND_DB, else log.sqlite3 in the user data folder (platformdirs)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    import platformdirs

    return Path(platformdirs.user_data_dir("mlgrind", appauthor=False)) / FILE


@dataclass
class Mistake:
    what: str
    why: str
    note: str = ""


@dataclass
class PanelMark:
    panel: str
    rating: int  # 1 again … 4 easy
    mistakes: int | None = None  # counted, if the learner counted
    details: list[Mistake] = field(default_factory=list)


@dataclass
class Entry:
    id: int
    day: str
    sheet: str
    code: str | None
    logged: str
    marks: list[PanelMark]


@contextlib.contextmanager
def transaction(path: Path, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One command's work on the log, committed whole or not at all. A write makes the file
    if missing (and the default data folder; a folder named by --db must exist); a read of a
    missing log sees an empty one and makes nothing."""
    db = _connect(path, write=write)
    try:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        _migrate(db, path, write)
        yield db
        db.execute("COMMIT")
    except sqlite3.Error as error:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise LogError(_explain(path, error)) from None
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()


def _connect(path: Path, *, write: bool) -> sqlite3.Connection:
    folder = path.parent
    chosen = path != default_path() or ENV in os.environ  # by --db or $MLGRIND_DB
    if not folder.is_dir() and (chosen or not write):
        if chosen:
            raise LogError(f"the folder of the log {path} does not exist (create it, or choose "
                           f"another file with --db or ${ENV})")
        uri = "file::memory:"  # no data folder yet, and only a read: an empty log
    elif not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LogError(f"cannot create the data folder {folder}: {error.strerror}") from None
        uri = f"{path.resolve().as_uri()}?mode=rwc"
    elif not write and (not path.exists() or path.stat().st_size == 0):
        uri = "file::memory:"  # nothing logged yet: an empty log, and no file made by a read
    elif write and not os.access(folder, os.W_OK):
        raise LogError(f"cannot write the log {path}: its folder is read-only (the journal "
                       f"that keeps it safe needs the folder writable; use --db or ${ENV})")
    elif write and path.exists() and not os.access(path, os.W_OK):
        raise LogError(f"cannot write the log {path}: the file is read-only")
    else:
        uri = f"{path.resolve().as_uri()}?mode={'rwc' if write else 'ro'}"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_MS / 1000)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        if write:
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as error:
        raise LogError(_explain(path, error)) from None
    return db


def _migrate(db: sqlite3.Connection, path: Path, write: bool) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LogError(f"{path} was written by a newer mlgrind (log version {version}, this one "
                       f"knows {len(MIGRATIONS)}): upgrade mlgrind")
    if version == len(MIGRATIONS):
        return
    in_memory = db.execute("PRAGMA database_list").fetchone()[2] == ""
    if not write and not in_memory:
        raise LogError(f"{path} has log version {version}: run `mlgrind mark` or `mlgrind "
                       "morning` once to upgrade it")
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _explain(path: Path, error: sqlite3.Error) -> str:
    text = str(error)
    if "readonly" in text or "read-only" in text:
        return f"cannot write the log {path}: {text} (check the permissions, or use --db)"
    if "not a database" in text or "malformed" in text:
        return f"{path} is not a readable mlgrind log ({text}); restore it from an export"
    if "locked" in text or "busy" in text:
        return f"the log {path} is locked by another mlgrind for over {BUSY_MS // 1000} s ({text})"
    if "unable to open" in text:
        return f"cannot open the log {path}: {text}"
    return f"the log {path}: {text}"


# Reads and writes, each inside a transaction() ---------------------------------------------


def add_entry(db: sqlite3.Connection, day: str, sheet: str, code: str | None, logged: str,
              marks: list[PanelMark]) -> int:
    entry = db.execute("INSERT INTO entry (day, sheet, code, logged) VALUES (?, ?, ?, ?)",
                       (day, sheet, code, logged)).lastrowid
    assert entry is not None
    put_marks(db, entry, marks)
    return entry


def put_marks(db: sqlite3.Connection, entry: int, marks: list[PanelMark]) -> None:
    """Each panel's mark in the entry, replacing what the entry held for that panel."""
    for mark in marks:
        db.execute("DELETE FROM rating WHERE entry = ? AND panel = ?", (entry, mark.panel))
        db.execute("INSERT INTO rating (entry, panel, rating, mistakes) VALUES (?, ?, ?, ?)",
                   (entry, mark.panel, mark.rating, mark.mistakes))
        db.executemany("INSERT INTO mistake (entry, panel, what, why, note) VALUES (?, ?, ?, ?, ?)",
                       [(entry, mark.panel, m.what, m.why, m.note) for m in mark.details])


def entries(db: sqlite3.Connection, *, sheet: str | None = None, ids: list[int] | None = None,
            last: int | None = None) -> list[Entry]:
    """Entries in the order they count for scheduling: by day, then as logged."""
    where, args = [], []
    if sheet is not None:
        where.append("sheet = ?")
        args.append(sheet)
    if ids is not None:
        where.append(f"id IN ({', '.join('?' * len(ids))})")
        args += ids
    sql = f"SELECT id, day, sheet, code, logged FROM entry {'WHERE ' + ' AND '.join(where) if where else ''}"
    if last is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT {int(last)})"
    rows = db.execute(f"{sql} ORDER BY day, id", args).fetchall()
    found = {r[0]: Entry(*r, marks=[]) for r in rows}
    if not found:
        return []
    marks: dict[tuple[int, str], PanelMark] = {}
    for entry, panel, rating, mistakes in db.execute(
            f"SELECT entry, panel, rating, mistakes FROM rating WHERE entry IN "
            f"({', '.join('?' * len(found))}) ORDER BY rowid", list(found)):
        marks[entry, panel] = PanelMark(panel, rating, mistakes)
        found[entry].marks.append(marks[entry, panel])
    for entry, panel, what, why, note in db.execute(
            f"SELECT entry, panel, what, why, note FROM mistake WHERE entry IN "
            f"({', '.join('?' * len(found))}) ORDER BY id", list(found)):
        marks[entry, panel].details.append(Mistake(what, why, note))
    return list(found.values())


def last_entry(db: sqlite3.Connection) -> int | None:
    row = db.execute("SELECT max(id) FROM entry").fetchone()
    return row[0]


def delete_entry(db: sqlite3.Connection, entry: int) -> None:
    db.execute("DELETE FROM entry WHERE id = ?", (entry,))


def move_entry(db: sqlite3.Connection, entry: int, day: str) -> None:
    db.execute("UPDATE entry SET day = ? WHERE id = ?", (day, entry))


def packs(db: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """Every printed code → (day, sheet)."""
    return {code: (day, sheet) for code, day, sheet in db.execute("SELECT code, day, sheet FROM pack")}


def add_pack(db: sqlite3.Connection, code: str, day: str, sheet: str, printed: str) -> None:
    db.execute("INSERT OR IGNORE INTO pack (code, day, sheet, printed) VALUES (?, ?, ?, ?)",
               (code, day, sheet, printed))


# The whole log as plain data: export, import, and the state tests compare -----------------


def dump(db: sqlite3.Connection) -> dict:
    return {
        "version": len(MIGRATIONS),
        "packs": [dict(zip(("code", "day", "sheet", "printed"), row)) for row in
                  db.execute("SELECT code, day, sheet, printed FROM pack ORDER BY day, sheet")],
        "entries": [{"id": e.id, "day": e.day, "sheet": e.sheet, "code": e.code, "logged": e.logged,
                     "marks": [{"panel": m.panel, "rating": RATINGS[m.rating - 1],
                                "mistakes": m.mistakes,
                                "details": [vars(d) for d in m.details]} for m in e.marks]}
                    for e in entries(db)],
    }


def load(db: sqlite3.Connection, data: dict) -> None:
    """Restore a dump into an empty log (ids kept, so `mark --edit N` still means the same)."""
    if db.execute("SELECT count(*) FROM entry").fetchone()[0] or \
            db.execute("SELECT count(*) FROM pack").fetchone()[0]:
        raise LogError("the log already holds entries: import into an empty log (move the file "
                       "away, or choose a new one with --db)")
    for p in data["packs"]:
        db.execute("INSERT INTO pack (code, day, sheet, printed) VALUES (?, ?, ?, ?)",
                   (p["code"], p["day"], p["sheet"], p["printed"]))
    for e in data["entries"]:
        db.execute("INSERT INTO entry (id, day, sheet, code, logged) VALUES (?, ?, ?, ?, ?)",
                   (e["id"], e["day"], e["sheet"], e["code"], e["logged"]))
        put_marks(db, e["id"], [PanelMark(m["panel"], RATINGS.index(m["rating"]) + 1, m["mistakes"],
                                          [Mistake(**d) for d in m["details"]])
                                for m in e["marks"]])
