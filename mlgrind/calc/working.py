"""What every calculator answers with: results that carry their working.

A `Line` is one result: its value in base units (for `--json`), how it reads with its units, the
formula with the numbers substituted, and the assumptions it rests on. A `Report` is a titled
list of lines. An interview answer *is* the derivation, so a line without a formula is only
one that was given (an input echoed back). `cli` renders reports; nothing here prints.

Formatting helpers live here too, so that a formula and its result are written the same way.
"""

from __future__ import annotations

import math
import shutil
import textwrap
from dataclasses import dataclass, field

from mlgrind.calc.specs import SpecError


@dataclass(frozen=True)
class Line:
    label: str
    value: object  # base units: parameters, FLOPs, bytes, seconds, tokens/s
    shown: str  # with its unit: "2.147 GB (2.00 GiB)"
    formula: str = ""  # "2 · G · K · layers · bytes = 2 · 8 · 128 · 32 · 2 = 131,072 B"
    assumptions: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.label.lower()).strip("_").replace("__", "_")


@dataclass
class Report:
    title: str
    lines: list[Line] = field(default_factory=list)
    context: dict = field(default_factory=dict)  # model, hardware: echoed in JSON

    def add(self, label: str, value: object, shown: str, formula: str = "", *assumptions: str) -> Line:
        if isinstance(value, float):
            finite(value, label)
        line = Line(label, value, shown, formula, tuple(a for a in assumptions if a))
        self.lines.append(line)
        return line

    def as_json(self) -> dict:
        """Values under their keys (as before), the working beside them under `formula` and
        `assumptions`, keyed the same way."""
        data = dict(self.context)
        data.update({line.key: line.value for line in self.lines})
        data["formula"] = {line.key: line.formula for line in self.lines if line.formula}
        data["assumptions"] = {line.key: list(line.assumptions) for line in self.lines if line.assumptions}
        return data

    def as_text(self, width: int | None = None) -> str:
        """Label and value, then the formula indented under them; assumptions numbered once at
        the foot and referred to as [n]. Wraps to `width` and never cuts a number."""
        width = width or terminal_width()
        notes: list[str] = []
        label_width = min(max((len(line.label) for line in self.lines), default=0), width // 3)
        out = [*textwrap.wrap(self.title, width)] or [""]
        for line in self.lines:
            refs = []
            for a in line.assumptions:
                if a not in notes:
                    notes.append(a)
                refs.append(notes.index(a) + 1)
            head = f"  {line.label:<{label_width}}  {line.shown}"
            out += _wrap(head, width, " " * (label_width + 4))
            working = line.formula + ("  " + "".join(f"[{r}]" for r in refs) if refs else "")
            if working:
                out += _wrap(working, width, " " * 6, first=" " * 6)
        if notes:
            out.append("assumptions")
            for i, note in enumerate(notes, 1):
                out += _wrap(f"[{i}] {note}", width, " " * (5 + len(str(i))), first="  ")
        return "\n".join(out)


def finite(x: float, what: str = "a result") -> float:
    """`x`, or the one-line error that inputs this large deserve (not `inf` or a traceback)."""
    if not math.isfinite(x):
        raise SpecError(f"{what} is beyond floating-point range: give smaller inputs")
    return x


def _wrap(text: str, width: int, indent: str, first: str = "") -> list[str]:
    return textwrap.wrap(first + text.lstrip() if first else text, width, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [""]


def terminal_width() -> int:
    """The terminal's columns; 80 when stdout is not a terminal (a pipe, a file, a test)."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def table_text(title: str, columns: list[str], rows: list[list[str]], width: int | None = None) -> str:
    """Aligned columns when they fit the width; otherwise one block per row, `column: value`
    lines, so that nothing is ever truncated."""
    width = width or terminal_width()
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    out = textwrap.wrap(title, width) if title else []
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        def fmt(cells):
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        out += [fmt(columns), fmt(["─" * w for w in widths])] + [fmt(r) for r in rows]
        return "\n".join(out)
    label = max(len(c) for c in columns[1:]) if len(columns) > 1 else 0
    for row in rows:
        out.append(row[0])
        for column, cell in zip(columns[1:], row[1:], strict=True):
            out += _wrap(f"  {column:<{label}}  {cell}", width, " " * (label + 4))
    return "\n".join(out)


# ----------------------------------------------------------------------------- numbers


def num(x: float) -> str:
    """A number inside a formula: integers below a million exactly, with separators; otherwise
    four significant digits (0.4, 6.738e9; 989.5 TFLOP/s is 9.895e14)."""
    if abs(x) < 1e6 and float(x).is_integer():
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return _sci(x)
    return f"{x:.4g}"


def _sci(x: float) -> str:
    finite(x)
    exponent = math.floor(math.log10(abs(x)))
    mantissa = round(x / 10**exponent, 3)
    if abs(mantissa) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.4g}e{exponent}"


def count_text(x: float) -> str:
    """Count with thousands separators and a short form: 6,738,415,616 (6.74 B)."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x:,.0f} ({x / scale:.3g} {unit})"
    return f"{x:,.0f}"


def flops_text(x: float) -> str:
    return f"{_sci(x) if x else '0'} FLOPs"


def size(x: float) -> str:
    """Bytes in decimal units: 70.272 kB, 1.34 GB."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(x) >= scale:
            return f"{x / scale:,.3f} {unit}"
    return f"{x:,.0f} B"


def gb(x: float) -> str:
    """Bytes with the binary reading beside the decimal one: 2.147 GB (2.00 GiB)."""
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{size(x)} ({x / scale:,.2f} {unit})"
    return size(x)


def dur(seconds: float) -> str:
    if seconds == 0:
        return "0 s"
    if seconds >= 86_400:
        return f"{seconds / 86_400:,.1f} days"
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.3f} ms"
    return f"{seconds * 1e6:,.2f} µs"


def rate(x: float, unit: str) -> str:
    """Per-second quantities: 3.35 TB/s, 450 GB/s, 1.2 k tokens/s."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= scale:
            return f"{x / scale:,.4g} {prefix}{unit}/s"
    return f"{x:,.4g} {unit}/s"
