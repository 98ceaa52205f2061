"""The printed sheets: one page, nothing outside the margins, no tiny text, recall editions
that hide every fact of their answer key, honest metadata and reproducible bytes."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
import yaml
from pypdf import PdfReader

from conftest import run
from mlgrind.pipeline.compute import expand

ROOT = Path(__file__).resolve().parent.parent
SHEETS = sorted(p.stem for p in (ROOT / "onepagers").glob("*.yaml"))
MM = 72 / 25.4
MARGINS_MM = {"top": 8, "right": 9, "bottom": 7, "left": 9}  # templates/sheet.css @page


def chars(path: Path) -> list[tuple[str, float, tuple[float, float, float, float]]]:
    """Every drawn character, on every page (a recall edition may take both sides): text,
    font size (pt), box (left, bottom, right, top) in pt on its page."""
    out = []
    for page in pdfium.PdfDocument(path):
        text = page.get_textpage()
        for i in range(text.count_chars()):
            char = text.get_text_range(i, 1)
            if char.strip():  # pdfium also reports the spaces and line breaks it infers
                out.append((char, pdfium_c.FPDFText_GetFontSize(text.raw, i), text.get_charbox(i)))
    return out


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("sheet", SHEETS)
@pytest.mark.parametrize("edition", ["", "-recall"])
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_text_stays_inside_the_margins_and_is_at_least_7pt(built: Path, sheet: str,
                                                          edition: str, paper: str) -> None:
    path = built / f"build/onepagers/{sheet}{edition}-{paper}.pdf"
    width, height = pdfium.PdfDocument(path)[0].get_size()
    found = chars(path)
    assert found
    tolerance = 0.5  # pt: glyph boxes may overhang the line box by a hair
    for char, size, (left, bottom, right, top) in found:
        assert size >= 7, (char, size)
        assert left >= MARGINS_MM["left"] * MM - tolerance, char
        assert right <= width - MARGINS_MM["right"] * MM + tolerance, char
        assert bottom >= MARGINS_MM["bottom"] * MM - tolerance, char
        assert top <= height - MARGINS_MM["top"] * MM + tolerance, char


def facts(sheet: str) -> tuple[list[str], list[str]]:
    """The sheet's facts, found without mlgrind's renderer: every computed value, and the prose
    of every list item (after its bold lead-in) and note."""
    data = yaml.safe_load((ROOT / f"onepagers/{sheet}.yaml").read_text())
    values, prose = [], []

    def plain(markup: str) -> str:
        return re.sub(r"\[([^\]]*)\]\{[^}]*\}|[*`]", r"\1", markup)

    def walk(node, key=None):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
        elif isinstance(node, str) and key != "formula":  # typeset as paths, no text to find
            for expression in re.findall(r"\$\{[^}]*\}", node):
                values.append(plain(expand(expression)))
            if key in ("list", "note") and "${" not in node:
                prose.append(plain(re.sub(r"^\*\*[^*]+\*\*:?", "", node)).strip())

    walk(data["panels"])
    # A value that the sheet also shows as an input, like (5, 4) or 8192 (8,192), is no secret.
    typed = flat(re.sub(r"\$\{[^}]*\}", "", yaml.safe_dump(data["panels"], width=10**6))).replace(",", "")
    return [v for v in values
            if len(flat(v)) >= 3 and "\\" not in v and flat(v).replace(",", "") not in typed], prose


def shown(fact: str, text: str) -> bool:
    """`fact` (its first 40 characters) in the flattened `text`, not as digits of a longer
    number: 162 is not in "bf16" followed by the source marks "2,3"."""
    head = flat(fact)[:40]
    before = r"(?<!\d)" if head[:1].isdigit() else ""
    after = r"(?!\d)" if head[-1:].isdigit() and len(flat(fact)) <= 40 else ""
    return re.search(before + re.escape(head) + after, text) is not None


@pytest.mark.parametrize("sheet", SHEETS)
def test_recall_edition_hides_every_fact_of_its_answer_key(built: Path, sheet: str) -> None:
    key = flat("".join(c for c, _, _ in chars(built / f"build/onepagers/{sheet}-a4.pdf")))
    recall = flat("".join(c for c, _, _ in chars(built / f"build/onepagers/{sheet}-recall-a4.pdf")))
    values, prose = facts(sheet)
    assert values  # every sheet computes facts; not every one has prose without them
    for fact in [*values, *prose]:
        assert flat(fact)[:40] in key, fact  # the check can see this fact ...
        assert not shown(fact, recall), fact  # ... and the recall edition hides it
    # The structure stays: every panel title is on both.
    for panel in yaml.safe_load((ROOT / f"onepagers/{sheet}.yaml").read_text())["panels"]:
        assert flat(panel["title"]) in recall


def test_pdfs_carry_their_metadata(built: Path) -> None:
    sheet = yaml.safe_load((ROOT / "onepagers/90-numpy-shapes.yaml").read_text())
    reader = PdfReader(built / "build/onepagers/90-numpy-shapes-letter.pdf")
    meta = reader.metadata
    assert meta.title == f"{sheet['position']} · {sheet['title']}"
    assert meta.author == "mlgrind"
    assert meta.subject == sheet["seed"]
    assert reader.trailer["/Root"]["/Lang"] == "en"
    fonts = {f for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert fonts and all("/FontFile2" in f.get_object()["/DescendantFonts"][0].get_object()
                         ["/FontDescriptor"].get_object() for f in fonts)  # embedded


def test_same_input_gives_byte_identical_pdfs(project: Path, tmp_path: Path) -> None:
    # Two builds with separate caches: the second renders everything again.
    for out in ("first", "second"):
        assert run("build", "--only", "90", "--paper", "a4", "--out", tmp_path / out,
                   "--root", project).code == 0
    first = sorted((tmp_path / "first").rglob("*.pdf"))
    assert first
    for path in first:
        assert path.read_bytes() == (tmp_path / "second" / path.relative_to(tmp_path / "first")).read_bytes()


def test_a_weasyprint_warning_fails_the_build(project: Path) -> None:
    css = project / "templates/sheet.css"
    css.write_text(css.read_text() + "\nheader { colr: red; }\n")
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 1
    assert re.search(r"onepagers/90-numpy-shapes\.yaml:\d+:\d+: sheet 'numpy-shapes' on a4: "
                     r"WeasyPrint: .*colr", result.err), result.err


@pytest.mark.parametrize("sheet", SHEETS)
@pytest.mark.parametrize("edition", ["", "-recall"])
def test_nothing_is_drawn_in_the_margins(built: Path, sheet: str, edition: str) -> None:
    """Rendered to an image: panels, rules, maths and text all stay off the printer's margin."""
    for page in pdfium.PdfDocument(built / f"build/onepagers/{sheet}{edition}-letter.pdf"):
        scale = 100 / 72  # 100 dpi
        image = page.render(scale=scale, grayscale=True).to_numpy()
        image = image if image.ndim == 2 else image[..., 0]
        px = {side: int((mm - 1) * MM * scale) for side, mm in MARGINS_MM.items()}  # 1 mm slack
        bands = [image[: px["top"]], image[-px["bottom"]:], image[:, : px["left"]],
                 image[:, -px["right"]:]]
        assert all(band.min() > 245 for band in bands)  # white paper only
