"""Two weeks of mornings, simulated: the acceptance run of the morning routine (issue 16).

A seeded random learner runs `mlgrind morning` each day from 2026-11-16 to 2026-11-29, checks
each recall page against its key and runs `mlgrind mark` for it: most panels go well, and
better each time a panel is practised; a few get 1-3 mistakes (forgot, arithmetic, shape); and
one pair of facts keeps being confused, K (the size of one head) with H (the number of heads),
on every sheet whose panel asks for it. It then runs `mlgrind progress`.

    python docs/two-weeks.py            # from the project folder; about a minute and a half

Writes build/two-weeks/ (the log, every pack, PNGs of days 1, 7 and 14) and docs/progress.png.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlgrind.cli import main  # noqa: E402
from mlgrind.routine.schedule import curriculum  # noqa: E402

OUT = ROOT / "build" / "two-weeks"
DB = OUT / "log.sqlite3"
FIRST = date(2026, 11, 16)
DAYS = 14
# The two facts this learner keeps confusing, and the panels that ask for them.
CONFUSED = {("suffixes-einsum", "the-suffix-letters"), ("suffixes-einsum", "attention-read-off-the-names"),
            ("attention", "the-forward-pass-line-by-line"), ("attention", "scale-mask-softmax"),
            ("gqa-mla", "one-knob-g-kv-heads")}
SLIPS = [("dropped a factor 2 in the FLOPs", "arithmetic"), ("wrote the einsum output axes in the wrong order", "shape"),
         ("left a row blank", "forgot"), ("summed over the wrong index", "shape"),
         ("multiplied instead of divided", "arithmetic"), ("could not rebuild the derivation", "never-understood")]


def run(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--db", str(DB), "--root", str(ROOT)])
    if result.exit_code != 0:
        raise SystemExit(f"mlgrind {' '.join(args)} failed:\n{result.output}{result.exception or ''}")
    return result.output


def learner_marks(rng: random.Random, code: str, sheet, seen: dict, day: date) -> None:  # type: ignore[no-untyped-def]
    good = []
    for key, _ in sheet.panels:
        practice = seen.get((sheet.id, key), 0)
        seen[sheet.id, key] = practice + 1
        if (sheet.id, key) in CONFUSED and rng.random() < 0.8:
            run("mark", code, "--date", day.isoformat(), "--panel", key, "--mistakes", "1",
                "--mistake", "swapped K (size of one head) and H (number of heads)", "--why", "confused",
                "--note", "K is per head; H heads; D = H·K")
        elif rng.random() < 0.45 / (1 + practice):
            n = rng.choice([1, 1, 2, 3])
            args = ["mark", code, "--date", day.isoformat(), "--panel", key, "--mistakes", str(n)]
            for what, why in rng.sample(SLIPS, min(n, 2)):
                args += ["--mistake", what, "--why", why]
            run(*args)
        else:
            good.append(key)
    if good:
        rating = "easy" if rng.random() < 0.15 else "good"
        run("mark", code, "--date", day.isoformat(), "--rating", rating, *[a for k in good for a in ("--panel", k)])


def to_png(pdf: Path, folder: Path) -> list[Path]:
    import pypdfium2 as pdfium

    paths = []
    document = pdfium.PdfDocument(pdf)
    for i in range(len(document)):
        path = folder / f"{pdf.stem}-p{i + 1}.png"
        document[i].render(scale=100 / 72).to_pil().save(path)
        paths.append(path)
    return paths


def main_() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    rng = random.Random(16)
    sheets = {s.id: s for s in curriculum(ROOT)}
    seen: dict = {}
    for n in range(DAYS):
        day = FIRST + timedelta(days=n)
        print(f"--- day {n + 1}: mlgrind morning --date {day}")
        print(run("morning", "--date", day.isoformat(), "--out", str(OUT), "--pages", "4"), end="")
        with sqlite3.connect(DB) as db:
            printed = db.execute("SELECT code, sheet FROM pack WHERE day = ?", (day.isoformat(),)).fetchall()
        for code, sheet in printed:
            learner_marks(rng, code, sheets[sheet], seen, day)
        if n + 1 in (1, 7, 14):
            to_png(OUT / "morning" / f"{day}-a4.pdf", OUT)
    last = FIRST + timedelta(days=DAYS - 1)
    print(f"--- mlgrind progress --date {last}")
    print(run("progress", "--date", last.isoformat(), "--out", str(OUT)), end="")
    shutil.copy(OUT / "progress.png", ROOT / "docs" / "progress.png")


if __name__ == "__main__":
    main_()
