"""How fast the daily loop is, as ratios that hold from one machine to the next.

    python bench/bench.py                 the real curriculum and a synthetic one (24 sheets,
                                          1,000 notes), 3 runs each (medians)
    python bench/bench.py --quick         2 sheets and a 3-sheet synthetic set, 1 run: a check
                                          that the benchmark itself works
    python bench/bench.py --json out.json writes every figure, to compare across commits

Run it from the project root. Every build runs as the user runs it (`python -m mlgrind …`, a
fresh process) in a copy of the sources under a temporary folder, never in the project.

The yardstick is "raw": WeasyPrint (as a fresh `pip install` leaves it) rendering the same
pages' HTML one after the other in one process pinned to one core: each page once, in the
layout it is printed in (a recall edition on both sides where the build put it there), the HTML
taken from the pipeline's own page stage and the layouts from the first full build's cache.
What a renderer that knew every final layout beforehand would cost. The ratios:

    full/raw          a build from scratch (no cache, no output) vs the raw sum
    jobs2/jobs1       the same build with 2 workers vs 1 (needs `build --jobs`)
    noop/full         a rebuild with nothing changed
    card/full         a rebuild after one card's text changed
    sheet/raw_sheet   a rebuild after one sheet's text changed vs that sheet's raw renders
    check/full        `mlgrind check` on a cold cache
and `calc` as process time (user + system) of `mlgrind calc params --model llama-2-7b`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLGRIND = [sys.executable, "-m", "mlgrind"]
CALC = [*MLGRIND, "calc", "params", "--model", "llama-2-7b"]


# ------------------------------------------------------------------------------ projects


def real_project(dest: Path, only: list[str] | None = None) -> Path:
    """The bundled sources (or the sheets whose file names start with `only`), copied."""
    shutil.copytree(ROOT / "templates", dest / "templates")
    for folder in ("onepagers", "cards"):
        (dest / folder).mkdir(parents=True)
        for path in sorted((ROOT / folder).glob("*.yaml")):
            if only is None or path.name.startswith(tuple(only)):
                shutil.copy(path, dest / folder)
    shutil.copy(ROOT / "notes.lock.json", dest)
    return dest


def synthetic_project(dest: Path, sheets: int, notes: int, base: list[str] | None = None) -> Path:
    """The real sheets (or those in `base`), then copies of them with new ids and positions up
    to `sheets`; notes copied with new ids, spread over the copies, up to `notes` in all."""
    real_project(dest, base)
    real = sorted((dest / "onepagers").glob("*.yaml"))
    existing = sum(len(_note_ids(p.read_text(encoding="utf-8")))
                   for p in (dest / "cards").glob("*.yaml"))
    copies = sheets - len(real)
    positions = iter(p for p in range(1, 90) if p not in {_position(s) for s in real})
    for i in range(copies):
        source = real[i % len(real)]
        sheet_text = source.read_text(encoding="utf-8")
        old_id = _field("id", sheet_text)
        new_id, position = f"{old_id}-copy{i}", next(positions)
        sheet_text = re.sub(r"^id: \S+", f"id: {new_id}", sheet_text, count=1, flags=re.MULTILINE)
        sheet_text = re.sub(r"^position: \d+", f"position: {position}", sheet_text, count=1,
                            flags=re.MULTILINE)
        (dest / "onepagers" / f"{position:02d}-{new_id}.yaml").write_text(sheet_text, "utf-8")
        cards = (dest / "cards" / source.name).read_text(encoding="utf-8")
        head, body = cards.split("\nnotes:\n", 1)
        head = re.sub(r"^sheet: \S+", f"sheet: {new_id}", head, count=1, flags=re.MULTILINE)
        want = (notes - existing) // copies + (i < (notes - existing) % copies)
        blocks = re.split(r"(?m)^(?=  - id: )", body)
        blocks = [b for b in blocks if b.startswith("  - id: ")]
        made = []
        for k in range(want):
            block = blocks[k % len(blocks)]
            made.append(re.sub(r"^  - id: (\S+)", rf"  - id: \1-copy{i}-{k}", block, count=1,
                               flags=re.MULTILINE).rstrip("\n") + "\n")
        (dest / "cards" / f"{position:02d}-{new_id}.yaml").write_text(
            head + "\nnotes:\n" + "".join(made), "utf-8")
    return dest


def _field(name: str, text: str) -> str:
    """A top-level `name: value` of a YAML source, as written."""
    found = re.search(rf"^{name}: (\S+)", text, re.MULTILINE)
    assert found, f"no {name}: in a source"
    return found.group(1)


def _position(sheet: Path) -> int:
    return int(_field("position", sheet.read_text(encoding="utf-8")))


def _note_ids(text: str) -> list[str]:
    return re.findall(r"(?m)^  - id: (\S+)", text)


# ------------------------------------------------------------------------------ timing


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, process seconds: user + system of it and its children); fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(command[2:])} failed in {cwd}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """(max − min) / median: how noisy a figure was."""
    return (max(values) - min(values)) / median(values) if len(values) > 1 else 0.0


def has_jobs() -> bool:
    done = subprocess.run([*MLGRIND, "build", "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    return "--jobs" in done.stdout


def _touch_text(path: Path, pattern: str, stamp: str) -> None:
    """Make one edit that gives new text each run (text seen before would come from the cache)."""
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(pattern, lambda m: f"{m.group(0)[:-1]} {stamp}\"", text, count=1)
    assert n == 1, f"no text to edit in {path}"
    path.write_text(new, encoding="utf-8")


# ------------------------------------------------------------------------------ raw renders


RAW_RENDER = """
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import weasyprint
times = {}
for path in sys.argv[2:]:
    html = open(path, encoding="utf-8").read()
    start = time.perf_counter()
    weasyprint.HTML(string=html, base_url=sys.argv[1]).write_pdf()
    times[os.path.basename(path)] = time.perf_counter() - start
print(json.dumps(times))
"""


def raw_renders(project: Path, scratch: Path) -> dict[str, float]:
    """Seconds WeasyPrint takes for each page's HTML, in its printed layout (read from the
    cache of the full build just made in `project`), one process, one core."""
    sys.path.insert(0, str(ROOT))
    from mlgrind.pipeline import compiler, ledger, maths
    from mlgrind.pipeline.render import Templates

    proj = compiler.Project.at(project)
    content = compiler.load_content(proj, maths.Typeset.load(None))
    templates = Templates(proj.templates)
    old, _ = compiler.read_ledger(proj, content, compiler.note_types(templates), None)
    digests = {e.sheet.id: e.digest for e in content.sheets}
    dates = ledger.sheet_dates(old, digests, compiler.clock())
    by_id, assets = {e.sheet.id: e for e in content.sheets}, compiler._assets_digest(proj.templates)
    cache = project / "build" / ".cache"
    scratch.mkdir(parents=True, exist_ok=True)
    files = []
    for first in compiler.page_html(content.sheets, templates, dates, compiler.PAPERS):
        known = compiler._cached_layout(cache / f"{first.key}.layout", first, lambda page, *layout: (
            compiler._page(by_id[page.sheet], page.edition, page.paper, templates, dates, assets,
                        *layout)))
        if known is None:
            sys.exit(f"bench: the full build left no layout for {first.name}")
        page = known[0]
        path = scratch / f"{page.stem}__{page.edition}__{page.paper}.html"
        path.write_text(page.html, encoding="utf-8")
        files.append(str(path))
    done = subprocess.run([sys.executable, "-c", RAW_RENDER, proj.templates.as_uri() + "/",
                           *files], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: raw rendering failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ one curriculum


def bench(name: str, make: Callable[[Path], Path], runs: int, jobs: bool, work: Path) -> dict:
    """Every figure for one curriculum: `make(dest)` builds its sources in `dest`."""
    print(f"== {name}", flush=True)
    figures: dict[str, list[float]] = {k: [] for k in (
        "full", "jobs1", "jobs2", "noop", "card", "sheet", "check")}
    raw: dict[str, float] = {}
    for r in range(runs):
        project = make(work / f"{name}-{r}")
        out = project / "build"
        sheet = min((project / "onepagers").glob("*.yaml"))
        figures["full"].append(run([*MLGRIND, "build"], project)[0])
        if r == 0:
            sheets = len(list((project / "onepagers").glob("*.yaml")))
            notes = sum(len(_note_ids(p.read_text(encoding="utf-8")))
                        for p in (project / "cards").glob("*.yaml"))
            raw = raw_renders(project, work / f"{name}-html")
            first = sheet.stem
        figures["noop"].append(run([*MLGRIND, "build"], project)[0])
        _touch_text(project / "cards" / sheet.name, r'(?m)^    front: "[^"\n$]*"', f"(bench {r})")
        figures["card"].append(run([*MLGRIND, "build"], project)[0])
        _touch_text(sheet, r'(?m)^\s+- "[^"\n$]*"', f"(bench {r})")
        figures["sheet"].append(run([*MLGRIND, "build"], project)[0])
        shutil.rmtree(out)  # `check` after the builds: it may fill the cache they would use
        figures["check"].append(run([*MLGRIND, "check"], project)[0])
        if jobs:
            for n in (1, 2):
                shutil.rmtree(out, ignore_errors=True)
                figures[f"jobs{n}"].append(
                    run([*MLGRIND, "build", "--jobs", str(n)], project)[0])
        shutil.rmtree(project)
    raw_sum = sum(raw.values())
    raw_sheet = sum(t for page, t in raw.items() if page.startswith(first + "__"))
    med = {k: median(v) for k, v in figures.items() if v}
    ratios = {
        "full/raw": med["full"] / raw_sum,
        "noop/full": med["noop"] / med["full"],
        "card/full": med["card"] / med["full"],
        "sheet/raw_sheet": med["sheet"] / raw_sheet if raw_sheet else None,
        "check/full": med["check"] / med["full"],
    }
    if jobs:
        ratios |= {"jobs2/jobs1": med["jobs2"] / med["jobs1"], "jobs1/raw": med["jobs1"] / raw_sum,
                   "jobs2/raw": med["jobs2"] / raw_sum}
    return {"sheets": sheets, "notes": notes, "pages_raw": len(raw), "raw_sum_s": raw_sum,
            "raw_sheet_s": raw_sheet, "seconds": med, "spread": {k: spread(v) for k, v in
                                                                figures.items() if v},
            "runs": figures, "ratios": ratios}


def calc_time(runs: int) -> dict:
    cpu = [run(CALC, ROOT)[1] for _ in range(runs + 1)][1:]  # the first warms the disk cache
    return {"process_s": median(cpu), "spread": spread(cpu), "runs": cpu}


def show(name: str, figures: dict) -> None:
    print(f"\n{name}: {figures['sheets']} sheets, {figures['notes']} notes; raw sum "
          f"{figures['raw_sum_s']:.2f} s over {figures['pages_raw']} pages")
    for key, seconds in figures["seconds"].items():
        print(f"  {key:6} {seconds:8.2f} s   (spread {figures['spread'][key]:.0%})")
    for key, ratio in figures["ratios"].items():
        print(f"  {key:16} {'n/a' if ratio is None else f'{ratio:.3f}'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 sheets, 1 run: checks the bench")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure [3; quick: 1]")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--skip", choices=["real", "synthetic"], action="append", default=[],
                        help="leave out a curriculum")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    jobs = has_jobs()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT, check=False).stdout.strip()
    report = {"commit": commit, "quick": args.quick, "runs": runs, "cores": os.cpu_count(),
              "notes": [] if jobs else ["`build --jobs` does not exist: jobs2/jobs1 not measured"]}
    with tempfile.TemporaryDirectory(prefix="mlgrind-bench-") as tmp:
        work = Path(tmp)
        if "real" not in args.skip:
            make = (lambda d: real_project(d, ["01-", "90-"])) if args.quick else real_project
            report["real"] = bench("real", make, runs, jobs, work)
        if "synthetic" not in args.skip:
            make = ((lambda d: synthetic_project(d, 3, 120, ["01-", "90-"])) if args.quick
                    else (lambda d: synthetic_project(d, 24, 1000)))
            report["synthetic"] = bench("synthetic", make, runs, jobs, work)
    report["calc"] = calc_time(max(runs, 5))
    for name in ("real", "synthetic"):
        if name in report:
            show(name, report[name])
    print(f"\ncalc: {report['calc']['process_s']:.3f} s of process time "
          f"(spread {report['calc']['spread']:.0%})")
    for note in report["notes"]:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
