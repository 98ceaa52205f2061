"""Static against continuous batching, drawn from the timelines `mlgrind.ref.batching` simulates.

One row per batch slot, time to the right, the same seeded Poisson workload for both schedulers
(`facts.decoding.served`). A request's box runs from the iteration it joins to the one that
emits its last token, in the KV cache's colour (a slot holds one sequence's cache); under static
batching a finished request's slot stays in the batch until the batch's longest output ends:
that idle hold is hatched. Arrivals are ticks on the top row, so waiting shows as the gap
between a tick and its box.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgrind.facts.decoding import SCHEDULERS, served, workload
from mlgrind.figures import args
from mlgrind.figures.canvas import (
    ASCENT,
    DESCENT,
    SMALL,
    Canvas,
    Drawing,
    Run,
    fact,
    fact_width,
    text_width,
    width_of,
)
from mlgrind.figures.registry import figure
from mlgrind.palette import PAPER, ROLES, RULE
from mlgrind.ref.batching import Timeline

RUNNING = {"fill": ROLES["kv-cache"].colour}
HELD = {"hatch": "idle", "stroke": RULE, "line": 0.4}
ROW, PITCH = 8, 9.5  # pt: a slot's box height, and the distance between slots


@dataclass(frozen=True)
class Lane:
    """One request's stay in a slot, in ms: running from `start` to `finish`, then held (static
    batching only) until `release`."""

    slot: int
    request: int
    start: float
    finish: float
    release: float


def lanes(scheduler: str, timeline: Timeline, slots: int) -> list[Lane]:
    """Which slot each request ran in. Static: a batch is the requests that started together,
    in slot order, all released when its longest output ends. Continuous: a request takes the
    lowest slot free at its start (a slot frees the moment its request emits its last token)."""
    order = sorted(range(len(timeline.start)), key=lambda r: (timeline.start[r], r))
    out: list[Lane] = []
    if scheduler == "static":
        batches: dict[float, list[int]] = {}
        for r in order:
            batches.setdefault(timeline.start[r], []).append(r)
        for members in batches.values():
            release = max(timeline.finish[r] for r in members)
            out += [Lane(s, r, timeline.start[r], timeline.finish[r], release)
                    for s, r in enumerate(members)]
        return out
    free_at = [float("-inf")] * slots
    for r in order:
        slot = next(s for s in range(slots) if free_at[s] <= timeline.start[r])
        free_at[slot] = timeline.finish[r]
        out.append(Lane(slot, r, timeline.start[r], timeline.finish[r], timeline.finish[r]))
    return out


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


@figure(worst=["batching_timeline(requests=40, slots=8, rate=0.1, seed=0)"])
def batching_timeline(width: float, requests: int = 12, slots: int = 4, rate: float = 3,
                      seed: int = 0) -> Drawing:
    """requests 1–40 Poisson arrivals at `rate` 0.1–100 per second (seed 0–2^31), on slots
    1–8; prompt and output lengths as in `facts.decoding.workload`."""
    n = args.integer("requests", requests, 1, 40)
    s = args.integer("slots", slots, 1, 8)
    r = args.number("rate", rate, 0.1, 100)
    seed = args.integer("seed", seed, 0, 2**31)
    arrivals = [q.arrival for q in workload(n, r, seed)]
    runs = {name: served(name, r, n, s, seed) for name in SCHEDULERS}
    return args.fit(lambda w: _draw(w, arrivals, runs, s), width,
                    f"{n} requests on {s} slots")


def _draw(width: float, arrivals: list[float], runs: dict, slots: int) -> Drawing:
    left = text_width("arrivals", SMALL) + 4
    end = max(max(t.finish) for t, _ in runs.values())
    plot = width - left - fact_width("00.0 s", SMALL) / 2 - 1  # room for the centred end tick
    if plot < 120:  # below this a short request is a sliver
        raise args.NoRoom
    unit = plot / end

    def x(ms: float) -> float:
        return left + ms * unit

    c = Canvas(width)
    y = ASCENT * SMALL + 1
    c.text(left - 4, y + 2, "arrivals", anchor="end")
    for a in arrivals:  # an upward tick at each arrival
        c.polygon([(x(a), y - 4), (x(a) - 1.8, y + 2), (x(a) + 1.8, y + 2)])
    y += 5
    facts: dict[str, float | int | str] = {}
    for name, (timeline, report) in runs.items():
        done, latency = max(timeline.finish), report.latency_mean
        facts[f"{name}_makespan_ms"], facts[f"{name}_latency_ms"] = done, latency
        y += SMALL * 1.3
        label = (Run(name, bold=True), ": all done at ", fact(_seconds(done)), ", mean latency ",
                 fact(_seconds(latency)))
        if left + width_of(*label) > width:
            raise args.NoRoom
        c.text(left, y, *label)
        top = y + DESCENT * SMALL + 2
        for slot in range(slots):
            c.text(left - 4, top + slot * PITCH + ROW / 2 + 0.36 * SMALL, f"slot {slot + 1}",
                   anchor="end")
            c.line(left, top + slot * PITCH + ROW, x(end), top + slot * PITCH + ROW, colour=RULE,
                   line=0.3)
        for lane in lanes(name, timeline, slots):
            row = top + lane.slot * PITCH
            run_w = (lane.finish - lane.start) * unit
            c.rect(x(lane.start) + 0.3, row, max(run_w - 0.6, 0.4), ROW, **RUNNING)
            if lane.release > lane.finish:
                c.rect(x(lane.finish), row, (lane.release - lane.finish) * unit, ROW, **HELD)
            label = str(lane.request + 1)
            if run_w >= text_width(label, SMALL) + 2:  # request numbers name boxes, as stages do
                c.text(x(lane.start) + run_w / 2, row + ROW / 2 + 0.36 * SMALL,
                       Run(label, PAPER, bold=True), anchor="middle")
        y = top + slots * PITCH
    axis = y + 1
    c.line(left, axis, x(end), axis, colour=RULE)
    tick = axis + 2 + ASCENT * SMALL
    c.text(left, tick, "0")
    c.text((left + x(end)) / 2, tick, "time →", anchor="middle")
    c.text(x(end), tick, fact(_seconds(end)), anchor="middle")
    y = c.flow(0, tick + 10, width, [
        (RUNNING, ("decoding (holds its KV cache)",)),
        (HELD, ("held idle until the batch's longest ends",)),
        (None, ("numbers: request; ▲ arrival",)),
    ])
    alt = (f"Static and continuous batching of {len(arrivals)} Poisson requests on {slots} slots: "
           f"static finishes at {_seconds(facts['static_makespan_ms'])} with mean latency "
           f"{_seconds(facts['static_latency_ms'])}, continuous at "
           f"{_seconds(facts['continuous_makespan_ms'])} with mean latency "
           f"{_seconds(facts['continuous_latency_ms'])}.")
    return c.drawing(y + DESCENT * SMALL + 1, title=f"Static and continuous batching, "
                     f"{len(arrivals)} requests on {slots} slots", alt=alt, facts=facts)

