"""The drawing layer: a canvas that records shapes and text, a Drawing that emits them as SVG.

Coordinates are SVG user units, which are pt at the width a figure was laid out for: the page
scales an inline figure to its panel (only ever up, by a few per cent). Every piece of text is a
sequence of runs, each marked fact (a number, a tensor name: what a recall card hides) or
structure (axis titles, stage names, legends: what it keeps). Text is laid out with
`text_width`, a deliberately generous estimate of the font, so that labels never collide even
when DejaVu Sans stands in for its condensed cut.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import drawsvg as dw

from mlgrind import palette
from mlgrind.figures.args import NoRoom

FONT = "DejaVu Sans Condensed, DejaVu Sans, sans-serif"
SMALL, NORMAL = 7, 8  # pt: the sheet's smallest text, and labels that lead
RECALL = ("key", "blank", "frame")
# A recall blank: a rule 12 mm long for every fact, room to write a number by hand, and one
# length for all, so it gives nothing away. Figures are only ever scaled up, so it stays >= 12 mm.
BLANK_WIDTH = 12 / 25.4 * 72  # pt
BLANK_RULE = "_" * 11  # drawn as text, so it follows the words before it wherever they end
ASCENT, DESCENT = 0.78, 0.25  # em above and below the baseline that any glyph reaches
SWATCH = (9, 6)  # pt: a legend's sample of a fill or hatch
HALO = 2  # pt of paper around a haloed text, so a line does not seem to run on through it

# Advance widths in em, rounded up over DejaVu Sans and its condensed and bold cuts.
_EM = {
    **dict.fromkeys("'ijlIJ.,:;|!/\\ ·", 0.36),
    **dict.fromkeys("frt-()[]_\"*`", 0.48),
    **dict.fromkeys("ABCDGHKNOQRUVXw#&+<=>^~×→≈≥−√Ψ", 0.8),
    **dict.fromkeys("mMW%@", 1.0),
}
_EM_OTHER = 0.66  # digits, most lower case and the narrower capitals


def text_width(text: str, size: float) -> float:
    return size * sum(_EM.get(c, _EM_OTHER) for c in text)


def fact_width(text: str, size: float) -> float:
    """Room for a fact in both editions: its text, or the blank that replaces it."""
    return max(text_width(text, size), BLANK_WIDTH)


@dataclass(frozen=True)
class Run:
    """A piece of text in one style; consecutive fact runs become one blank."""

    text: str
    colour: str = palette.INK[0]
    fact: bool = False
    bold: bool = False


def fact(text: str, **style) -> Run:
    return Run(text, fact=True, **style)


def blanked(runs: tuple[Run, ...]) -> tuple[Run, ...]:
    """The recall edition's runs: each stretch of facts one empty fact run, a blank."""
    out: list[Run] = []
    for run in runs:
        if not run.fact:
            out.append(run)
        elif not (out and out[-1].fact):
            out.append(fact(""))
    return tuple(out)


def _runs_width(runs: tuple[Run, ...], size: float) -> float:
    return sum(BLANK_WIDTH if r.fact and not r.text else text_width(r.text, size) for r in runs)


Box = tuple[float, float, float, float]  # left, top, right, bottom
Segment = tuple[tuple[float, float], tuple[float, float]]


def crosses(box: Box, segments: list[Segment]) -> bool:
    """Whether any segment passes through box or the halo around it (sampled every half pt):
    where a label would sit on a drawn line."""
    margin = HALO + 0.5
    for (x1, y1), (x2, y2) in segments:
        if (max(x1, x2) < box[0] - margin or min(x1, x2) > box[2] + margin
                or max(y1, y2) < box[1] - margin or min(y1, y2) > box[3] + margin):
            continue  # the segment's bounding box misses the label's
        n = max(2, int(math.hypot(x2 - x1, y2 - y1) * 2))
        for i in range(n + 1):
            x, y = x1 + (x2 - x1) * i / n, y1 + (y2 - y1) * i / n
            if box[0] - margin <= x <= box[2] + margin and box[1] - margin <= y <= box[3] + margin:
                return True
    return False


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    runs: tuple[Run, ...]
    size: float
    anchor: str  # "start", "middle" or "end"
    halo: bool  # a paper background hides the lines it sits on

    @property
    def width(self) -> float:
        """Room the text takes in either edition, so both share one geometry."""
        return max(_runs_width(self.runs, self.size), _runs_width(blanked(self.runs), self.size))

    @property
    def box(self) -> Box:
        left = self.x - self.width * {"start": 0, "middle": 0.5, "end": 1}[self.anchor]
        return left, self.y - ASCENT * self.size, left + self.width, self.y + DESCENT * self.size

    def element(self, recall: str) -> dw.Text:
        runs = self.runs if recall == "key" else blanked(self.runs)
        common = dict(font_size=self.size, x=_r(self.x), y=_r(self.y))
        if self.anchor != "start":
            common["text_anchor"] = self.anchor
        if len(runs) == 1 and runs[0].text:
            return dw.Text(runs[0].text, **common, **_style(runs[0]))
        element = dw.Text([], **common)
        for run in runs:
            if run.fact and not run.text:  # a blank: underscores stretched to its exact length
                element.append(dw.TSpan(BLANK_RULE, fill=run.colour, **{
                    "textLength": _r(BLANK_WIDTH), "lengthAdjust": "spacingAndGlyphs"}))
            else:
                element.append(dw.TSpan(run.text, **_style(run)))
        return element


def runs_of(parts: tuple[Run | str, ...]) -> tuple[Run, ...]:
    """Plain strings are structure."""
    return tuple(p if isinstance(p, Run) else Run(p) for p in parts)


def text_box(x: float, y: float, *parts: Run | str, size: float = SMALL,
             anchor: str = "start") -> Box:
    """Where `Canvas.text` with these arguments would put its text."""
    return Text(x, y, runs_of(parts), size, anchor, False).box


def width_of(*parts: Run | str, size: float = SMALL) -> float:
    """The room text made of these runs takes, in either edition."""
    return Text(0, 0, runs_of(parts), size, "start", False).width


def _style(run: Run) -> dict:
    return {"fill": run.colour, **({"font_weight": "bold"} if run.bold else {})}


def _r(v: float) -> float:
    """Two decimals of a pt are far below what a printer resolves, and keep the bytes stable."""
    return round(v, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Hatches: one tile per name, 4 pt square, drawn in the name's role colour.
_TILES = {
    "/": "M-1,1 L1,-1 M0,4 L4,0 M3,5 L5,3",
    "\\": "M-1,3 L1,5 M0,0 L4,4 M3,-1 L5,1",
    "x": "M-1,1 L1,-1 M0,4 L4,0 M3,5 L5,3 M-1,3 L1,5 M0,0 L4,4 M3,-1 L5,1",
    "-": "M0,1 L4,1 M0,3 L4,3",
    "|": "M1,0 L1,4 M3,0 L3,4",
}
HATCHES = {  # name: (tile, colour, line width)
    "idle": ("/", palette.RULE, 0.5),
    "params": ("/", palette.ROLES["params"].colour, 0.7),
    "grads": ("\\", palette.ROLES["grads"].colour, 0.7),
    "optimizer": ("x", palette.ROLES["optimizer"].colour, 0.6),
    "activations": ("-", palette.ROLES["activations"].colour, 0.7),
    "kv-cache": ("|", palette.ROLES["kv-cache"].colour, 0.7),
}


def _pattern(name: str, prefix: str) -> dw.Pattern:
    tile, colour, line = HATCHES[name]
    pattern = dw.Pattern(4, 4, id=f"{prefix}-{name}")
    pattern.append(dw.Path(_TILES[tile], stroke=colour, stroke_width=line, fill="none"))
    return pattern


def _paint(colour: str | None) -> str:
    if colour is None:
        return "none"
    if colour not in palette.colours():
        raise ValueError(f"{colour} is not a palette colour")  # a figure's bug, never YAML's
    return colour


# A shape as recorded: a drawsvg element class and its keywords; `hatch` names a pattern, whose
# id only the rendering knows.
Shape = tuple[type, dict]


class Canvas:
    """Shapes and text for one figure, `width` pt wide; `drawing()` freezes it."""

    def __init__(self, width: float) -> None:
        self.width = width
        self.shapes: list[Shape] = []
        self.texts: list[Text] = []

    def rect(self, x: float, y: float, w: float, h: float, *, fill: str | None = None,
             hatch: str | None = None, stroke: str | None = None, line: float = 0.5,
             dash: str | None = None) -> None:
        if hatch is not None and hatch not in HATCHES:
            raise ValueError(f"no hatch {hatch!r}")  # a figure's bug, never YAML's
        self.shapes.append((dw.Rectangle, dict(
            x=_r(x), y=_r(y), width=_r(w), height=_r(h), fill=_paint(fill), hatch=hatch,
            stroke=_paint(stroke), stroke_width=line, stroke_dasharray=dash)))

    def line(self, x1: float, y1: float, x2: float, y2: float, *,
             colour: str = palette.INK[0], line: float = 0.5, dash: str | None = None) -> None:
        self.polyline([(x1, y1), (x2, y2)], colour=colour, line=line, dash=dash)

    def polyline(self, points: list[tuple[float, float]], *, colour: str = palette.INK[0],
                 line: float = 0.5, dash: str | None = None) -> None:
        d = "M" + " L".join(f"{_r(x)},{_r(y)}" for x, y in points)
        self.shapes.append((dw.Path, dict(d=d, stroke=_paint(colour), stroke_width=line,
                                          fill="none", stroke_dasharray=dash)))

    def polygon(self, points: list[tuple[float, float]], *, fill: str | None = palette.INK[0],
                stroke: str | None = None, line: float = 0.5) -> None:
        d = "M" + " L".join(f"{_r(x)},{_r(y)}" for x, y in points) + " Z"
        self.shapes.append((dw.Path, dict(d=d, fill=_paint(fill), stroke=_paint(stroke),
                                          stroke_width=line)))

    def circle(self, x: float, y: float, radius: float, *, fill: str | None = palette.INK[0],
               stroke: str | None = None, line: float = 0.5) -> None:
        self.shapes.append((dw.Circle, dict(cx=_r(x), cy=_r(y), r=_r(radius), fill=_paint(fill),
                                            stroke=_paint(stroke), stroke_width=line)))

    def arrow(self, x1: float, y1: float, x2: float, y2: float, *,
              colour: str = palette.INK[0], line: float = 0.6, head: float = 3.5) -> None:
        """A straight arrow whose head ends exactly at (x2, y2)."""
        length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        bx, by = x2 - ux * head, y2 - uy * head  # the shaft stops where the head begins
        self.line(x1, y1, bx, by, colour=colour, line=line)
        half = head * 0.45
        self.polygon([(x2, y2), (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)],
                     fill=colour)

    def text(self, x: float, y: float, *runs: Run | str, size: float = SMALL,
             anchor: str = "start", halo: bool = False) -> Text:
        """Text at baseline y; plain strings are structure, `fact(...)` runs are facts."""
        for run in runs:
            if isinstance(run, Run):
                _paint(run.colour)
        text = Text(x, y, runs_of(runs), size, anchor, halo)
        self.texts.append(text)
        return text

    def flow(self, x: float, y: float, width: float,
             items: list[tuple[dict | None, tuple[Run | str, ...]]], *, size: float = SMALL,
             gap: float = 6) -> float:
        """Lay out items (an optional swatch, given as `rect` keywords, then text runs) left to
        right from baseline y, wrapping within `width`; returns the last line's baseline."""
        left, pitch = x, size * 1.4
        for swatch, runs in items:
            runs = runs_of(runs)
            lead = SWATCH[0] + 2.5 if swatch else 0
            need = lead + width_of(*runs, size=size)
            if need > width:
                raise NoRoom
            if x > left and x + need > left + width:
                x, y = left, y + pitch
            if swatch:
                self.rect(x + 0.25, y - size * 0.7, SWATCH[0] - 0.5, SWATCH[1], **swatch)
            self.text(x + lead, y, *runs, size=size)
            x += need + gap
        return y

    def paragraph(self, x: float, y: float, width: float, chunks: list[tuple[Run | str, ...]],
                  *, size: float = SMALL) -> float:
        """Text wrapped within `width` between chunks (each kept on one line), one text element
        per line so the font spaces it; returns the last line's baseline."""
        lines: list[list[Run]] = [[]]
        for chunk in chunks:
            runs = list(runs_of(chunk))
            candidate = lines[-1] + ([Run(" ")] if lines[-1] else []) + runs
            if width_of(*candidate, size=size) <= width:
                lines[-1] = candidate
            elif lines[-1]:
                lines.append(runs)
            else:
                raise NoRoom
        for i, line in enumerate(lines):
            self.text(x, y + i * size * 1.3, *line, size=size)
        return y + (len(lines) - 1) * size * 1.3

    def free(self, box: Box) -> bool:
        """True when box is inside the canvas's width and clear of every text placed so far."""
        return 0 <= box[0] and box[2] <= self.width and not any(
            overlaps(box, t.box) for t in self.texts)

    def drawing(self, height: float, *, title: str, alt: str,
                facts: dict[str, float | int | str]) -> Drawing:
        return Drawing(self.width, height, alt, facts, title, tuple(self.shapes),
                       tuple(self.texts))


@dataclass(frozen=True)
class Drawing:
    """A finished figure. `alt` describes it with its numbers; `title` names it without them
    (the accessible name of its recall editions, which must not give the answers away)."""

    width: float  # pt
    height: float  # pt
    alt: str
    facts: dict[str, float | int | str]
    title: str
    shapes: tuple[Shape, ...] = field(repr=False)
    texts: tuple[Text, ...] = field(repr=False)

    @property
    def ident(self) -> str:
        """What this figure's ids start with: a digest of its title, alt text (which holds its
        numbers) and size. Ids live in the page's namespace, so two figures on one page must
        not share one; an id that depends on nothing else keeps the bytes deterministic."""
        text = f"{self.title}\n{self.alt}\n{self.width:g}x{self.height:g}"
        return "fig-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def svg(self, recall: str = "key") -> str:
        """An inline <svg> scaled to its container's width (1 user unit = 1 pt as laid out)."""
        return self._render(recall, width="100%", height=None, header="", paper=False)

    def svg_file(self, recall: str = "key") -> str:
        """A standalone SVG document at its natural size, for a card's media folder. It brings
        its own paper: a card in night mode is dark behind the image, and the ink is dark too."""
        return self._render(recall, width=f"{_r(self.width):g}pt",
                            height=f"{_r(self.height):g}pt",
                            header='<?xml version="1.0" encoding="UTF-8"?>\n', paper=True)

    def text_boxes(self) -> list[tuple[str, Box]]:
        """Each text's estimated box: the layout's own promise that nothing collides."""
        return [("".join(r.text for r in t.runs), t.box) for t in self.texts]

    def _render(self, recall: str, *, width: str, height: str | None, header: str,
                paper: bool) -> str:
        if recall not in RECALL:
            raise ValueError(f"recall must be one of {', '.join(RECALL)}, not {recall!r}")
        label = self.alt if recall == "key" else self.title
        d = dw.Drawing(_r(self.width), _r(self.height), role="img",
                       aria_label=escape(label, {'"': "&quot;"}), font_family=FONT)
        d.svg_args.update(width=width, height=height)
        if recall != "frame":  # a frame is to draw in: it has no text, not even a tooltip
            d.append(dw.Title(label))
        if paper:
            d.append(dw.Rectangle(0, 0, _r(self.width), _r(self.height), fill=palette.PAPER))
        if recall == "frame":
            d.append(dw.Rectangle(0.25, 0.25, _r(self.width - 0.5), _r(self.height - 0.5),
                                  fill="none", stroke=palette.RULE, stroke_width=0.5))
            return d.as_svg(header=header)
        patterns: dict[str, dw.Pattern] = {}  # one object per hatch, so drawsvg defines it once
        for kind, keywords in self.shapes:
            keywords = dict(keywords)
            if hatch := keywords.pop("hatch", None):
                keywords["fill"] = patterns.setdefault(
                    hatch, _pattern(hatch, f"{self.ident}-{recall}"))
            d.append(kind(**keywords))
        for text in self.texts:  # all halos before any text: a halo never hides a neighbour
            if text.halo:
                left, top, right, bottom = text.box
                d.append(dw.Rectangle(_r(left - HALO), _r(top - HALO),
                                      _r(right - left + 2 * HALO), _r(bottom - top + 2 * HALO),
                                      fill=palette.PAPER))
        d.extend(text.element(recall) for text in self.texts)
        return d.as_svg(header=header)
