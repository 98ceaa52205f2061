"""The learner's progress: a terminal summary, a plot, and the log exported or imported.

Retention as plotted is measured, not predicted: the share of a sheet's panels marked good or
easy on a morning (FSRS keeps its prediction near 90 % by design, so it would show little).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from .log import RATINGS, Entry, LogError
from .schedule import SheetInfo, candidates, cards, retrievability, spoken


def streak(entries: list[Entry], today: date) -> int:
    """Days in a row with a mark, ending today (or yesterday, if today is not marked yet)."""
    days = {date.fromisoformat(e.day) for e in entries}
    day = today if today in days else today - timedelta(days=1)
    n = 0
    while day in days:
        n += 1
        day -= timedelta(days=1)
    return n


def summary(sheets: list[SheetInfo], entries: list[Entry], today: date) -> list[str]:
    if not entries:
        return ["Nothing logged yet. Start with `mlgrind morning`, then `mlgrind mark CODE`."]
    past = [e for e in entries if date.fromisoformat(e.day) <= today]
    reviews, fresh, _, _ = candidates(sheets, past, today, new=1)
    started = {e.sheet for e in past}
    ratings = [m for e in past for m in e.marks]
    mistakes = [(e, m, d) for e in past for m in e.marks for d in m.details]
    lines = [f"[bold]Progress on {spoken(today)}[/bold]",
             f"  streak: {streak(past, today)} day(s); {len({e.day for e in past})} days marked in all",
             f"  sheets: {len(started & {s.id for s in sheets})} of {len(sheets)} started; due today: "
             f"{len(reviews)} sheet(s), {sum(len(i.due) for i in reviews)} panel(s)"
             + (f"; next new: {fresh[0].sheet.stem}" if fresh else ""),
             f"  log: {len(past)} entries, {len(ratings)} panel marks ("
             + ", ".join(f"{n} {r}" for r, n in zip(RATINGS, (sum(m.rating == i + 1 for m in ratings)
                                                               for i in range(4)))) + "), "
             f"{sum(m.mistakes or 0 for m in ratings)} mistakes counted, {len(mistakes)} described"]
    state = cards(past)
    by_id = {s.id: s for s in sheets}
    lapses = Counter((e.sheet, m.panel) for e in past for m in e.marks if m.rating == 1)
    slips = Counter((e.sheet, m.panel) for e in past for m in e.marks for _ in range(m.mistakes or 0))
    # Weakest = least stable memory: FSRS's stability is the days until recall falls to 90 %.
    # A panel's first review says little (a new sheet's are all weak): from the second on.
    reviews = Counter((e.sheet, m.panel) for e in past for m in e.marks)
    known = [key for key in state if key[0] in by_id and key[1] in dict(by_id[key[0]].panels)]
    weakest = sorted((state[key].stability, -slips[key], key) for key in known
                     if reviews[key] > 1 or all(reviews[k] == 1 for k in known))[:5]
    if weakest:
        lines.append("  weakest panels (FSRS stability: days until your recall falls to 9 in 10):")
        for stability, _, (sheet, panel) in weakest:
            extra = "".join(f", {label} ×{n}" for label, n in (("again", lapses[sheet, panel]),
                                                               ("mistakes", slips[sheet, panel])) if n)
            lines.append(f"    {stability:5.1f} d  {by_id[sheet].stem} · {by_id[sheet].panel_title(panel)}"
                         f"  [dim]recall today {retrievability(state[sheet, panel], today):.0%}{extra}[/dim]")
    reasons = Counter(d.why for _, _, d in mistakes)
    if reasons:
        lines.append("  most frequent reasons: " + ", ".join(f"{w} {n}" for w, n in reasons.most_common()))
        repeated: dict[str, list] = {}
        for e, m, d in mistakes:
            repeated.setdefault(" ".join(d.what.lower().split()), []).append((e, m, d))
        what, seen = max(repeated.items(), key=lambda kv: len(kv[1]))
        if len(seen) > 1:
            places = sorted({f"{by_id[e.sheet].position:02d} {by_id[e.sheet].panel_title(m.panel)}"
                             for e, m, _ in seen if e.sheet in by_id})
            lines.append(f"  most repeated mistake, {len(seen)} times ({seen[-1][2].why}): "
                         f"“{seen[-1][2].what}” in {'; '.join(places[:4])}"
                         + (f" and {len(places) - 4} more panel{'s' * (len(places) > 5)}"
                            if len(places) > 4 else ""))
    return lines


def plot(sheets: list[SheetInfo], entries: list[Entry], today: date, stem: Path) -> list[Path]:
    """Per sheet and day, the share of panels recalled cleanly (good or easy) and the count of
    mistakes; below, the mistakes of each day by the reason logged. stem.png and stem.pdf."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt
    import numpy as np

    from .log import WHY

    past = [e for e in entries if date.fromisoformat(e.day) <= today]
    first = min(date.fromisoformat(e.day) for e in past)
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    column = {d.isoformat(): i for i, d in enumerate(days)}
    shown = [s for s in sheets if any(e.sheet == s.id for e in past)]
    row = {s.id: i for i, s in enumerate(shown)}
    clean_SD = np.zeros((len(shown), len(days)))
    marked_SD = np.zeros((len(shown), len(days)))
    mistakes_SD = np.zeros((len(shown), len(days)), dtype=int)
    reasons_WD = np.zeros((len(WHY), len(days)), dtype=int)
    for e in past:
        if e.sheet not in row:
            continue
        s, d = row[e.sheet], column[e.day]
        for m in e.marks:
            marked_SD[s, d] += 1
            clean_SD[s, d] += m.rating >= 3
            mistakes_SD[s, d] += m.mistakes if m.mistakes is not None else len(m.details)
            for detail in m.details:
                reasons_WD[WHY.index(detail.why), d] += 1
    share_SD = np.where(marked_SD > 0, 100 * clean_SD / np.maximum(marked_SD, 1), np.nan)

    plt.rcParams.update({"font.size": 8, "font.family": "DejaVu Sans", "hatch.linewidth": 0.6})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 2.2 + 0.28 * len(shown) + 1.8),
                                      gridspec_kw={"height_ratios": [0.28 * len(shown) + 0.6, 1.8]},
                                      layout="constrained")
    image = top.imshow(share_SD, aspect="auto", cmap="Greens", vmin=0, vmax=100,
                       interpolation="nearest")
    for s in range(len(shown)):
        for d in range(len(days)):
            if marked_SD[s, d]:
                dark = share_SD[s, d] > 60
                top.text(d, s, str(mistakes_SD[s, d]) if mistakes_SD[s, d] else "·", ha="center",
                         va="center", fontsize=7, color="white" if dark else "black")
    top.set_yticks(range(len(shown)), [s.stem for s in shown])
    top.set_xticks(range(len(days)), [])  # the days are read off the bars below, aligned
    top.tick_params(length=0)
    top.set_title("Each sheet's mornings: green = share of its panels recalled cleanly (good or easy); "
                  "number = mistakes", loc="left", fontsize=8.5)
    bar = fig.colorbar(image, ax=[top, bottom], fraction=0.025, pad=0.01)  # both: days align
    bar.set_label("% clean", fontsize=7)
    base = np.zeros(len(days))
    hatches = ["", "///", "...", "xxx", "\\\\"]
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    for w, why in enumerate(WHY):
        bottom.bar(range(len(days)), reasons_WD[w], bottom=base, color=colours[w], hatch=hatches[w],
                   edgecolor="white", linewidth=0.4, label=why)
        base += reasons_WD[w]
    bottom.set_xticks(range(len(days)), [f"{d:%d %b}" for d in days], rotation=90)
    bottom.set_xlim(-0.5, len(days) - 0.5)
    bottom.set_ylabel("mistakes, by the reason logged")
    bottom.spines[["top", "right"]].set_visible(False)
    bottom.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=len(WHY), fontsize=7, frameon=False,
                  borderaxespad=0.2)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Title": "mlgrind progress", "CreationDate": None})
    plt.close(fig)
    return paths


# Export and import: JSON is the dump as is; CSV is one row per record ----------------------

CSV_FIELDS = ["record", "entry", "day", "sheet", "code", "logged", "panel", "rating", "mistakes",
              "what", "why", "note"]


def write_export(data: dict, path: Path) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    if path.suffix != ".csv":
        raise LogError(f"cannot export to {path}: name a .json or .csv file")
    with path.open("w", newline="", encoding="utf-8") as f:
        rows = csv.DictWriter(f, CSV_FIELDS)
        rows.writeheader()
        rows.writerow({"record": "version", "entry": data["version"]})
        for p in data["packs"]:
            rows.writerow({"record": "pack", "code": p["code"], "day": p["day"], "sheet": p["sheet"],
                           "logged": p["printed"]})
        for e in data["entries"]:
            rows.writerow({"record": "entry", "entry": e["id"], "day": e["day"], "sheet": e["sheet"],
                           "code": e["code"] or "", "logged": e["logged"]})
            for m in e["marks"]:
                rows.writerow({"record": "mark", "entry": e["id"], "panel": m["panel"],
                               "rating": m["rating"], "mistakes": "" if m["mistakes"] is None else m["mistakes"]})
                for d in m["details"]:
                    rows.writerow({"record": "mistake", "entry": e["id"], "panel": m["panel"], **d})


def read_export(path: Path) -> dict:
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv":
            data = _from_csv(path)
        else:
            raise LogError(f"cannot import {path}: a .json or .csv export is expected")
        if not isinstance(data, dict) or data.get("version") != 1 or not {"packs", "entries"} <= data.keys():
            raise LogError(f"{path} is not an mlgrind log export (version 1)")
        return data
    except (ValueError, KeyError, TypeError) as error:
        raise LogError(f"cannot import {path}: {error}") from None


def _from_csv(path: Path) -> dict:
    data: dict = {"packs": [], "entries": []}
    by_id: dict[int, dict] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind = row["record"]
            if kind == "version":
                data["version"] = int(row["entry"])
            elif kind == "pack":
                data["packs"].append({"code": row["code"], "day": row["day"], "sheet": row["sheet"],
                                      "printed": row["logged"]})
            elif kind == "entry":
                by_id[int(row["entry"])] = {"id": int(row["entry"]), "day": row["day"],
                                            "sheet": row["sheet"], "code": row["code"] or None,
                                            "logged": row["logged"], "marks": []}
                data["entries"].append(by_id[int(row["entry"])])
            elif kind == "mark":
                by_id[int(row["entry"])]["marks"].append(
                    {"panel": row["panel"], "rating": row["rating"],
                     "mistakes": int(row["mistakes"]) if row["mistakes"] else None, "details": []})
            elif kind == "mistake":
                mark = next(m for m in by_id[int(row["entry"])]["marks"] if m["panel"] == row["panel"])
                mark["details"].append({"what": row["what"], "why": row["why"], "note": row["note"]})
            else:
                raise ValueError(f"unknown record {kind!r}")
    return data
