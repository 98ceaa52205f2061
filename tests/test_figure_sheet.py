"""Figures on a printed sheet: a sample sheet of every registered drawing, built on both papers
in both editions, one page each, its text at least 7 pt and inside the margins, its numbers
those of the simulations, and the recall edition without them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from conftest import ROOT, run
from mlgrind.calc import hardware
from mlgrind.figures import FIGURES
from mlgrind.ref.pipeline import bubble_fraction_formula
from test_sheets import MARGINS_MM, MM, chars, flat

SAMPLE = ROOT / "tests/fixtures/50-figures.yaml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("figures")
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copy(ROOT / "notes.lock.json", root)
    shutil.copy(SAMPLE, root / "onepagers")
    result = run("build", "--only", "50", "--root", root)
    assert result.code == 0, result.err
    return root / "build/onepagers"


def test_every_registered_drawing_is_printed_on_the_sample_or_a_bundled_sheet() -> None:
    """The curriculum's own sheets go through the same checks (tests/test_sheets.py)."""
    named = set()
    for path in [SAMPLE, *sorted((ROOT / "onepagers").glob("*.yaml"))]:
        named |= set(re.findall(r"figure: ([a-z_]+)\(", path.read_text()))
    assert named == set(FIGURES)


@pytest.mark.parametrize("edition", ["", "-recall"])
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_one_page_text_at_least_7pt_inside_the_margins(sample: Path, edition: str,
                                                        paper: str) -> None:
    path = sample / f"50-figures{edition}-{paper}.pdf"
    document = pdfium.PdfDocument(path)
    assert len(document) == 1
    width, height = document[0].get_size()
    found = chars(path)
    assert len(found) > 200  # the figures' labels are real text
    for char, size, (left, bottom, right, top) in found:
        assert size >= 7 - 0.01, (char, size)
        assert MARGINS_MM["left"] * MM - 0.5 <= left and right <= width - MARGINS_MM["right"] * MM + 0.5
        assert MARGINS_MM["bottom"] * MM - 0.5 <= bottom and top <= height - MARGINS_MM["top"] * MM + 0.5


def test_printed_numbers_are_the_simulations_and_the_recall_edition_hides_them(
        sample: Path) -> None:
    key = flat("".join(c for c, _, _ in chars(sample / "50-figures-a4.pdf")))
    recall = flat("".join(c for c, _, _ in chars(sample / "50-figures-recall-a4.pdf")))
    h100 = hardware.load("h100-sxm")
    numbers = [f"{round(100 * bubble_fraction_formula(4, 8))}%",  # the 1F1B bubble
               f"{h100.ops_per_byte:.0f}FLOP/B"]  # the roofline's ridge
    for number in numbers:
        assert number in key and number not in recall, number
    for structure in ("stage0", "ZeRO-3", "arithmeticintensity"):  # labels stay
        assert structure in key and structure in recall


def test_a_frame_recall_leaves_the_figure_out_but_keeps_its_room(sample: Path) -> None:
    recall = flat("".join(c for c, _, _ in chars(sample / "50-figures-recall-a4.pdf")))
    assert "rank0" in flat("".join(c for c, _, _ in chars(sample / "50-figures-a4.pdf")))
    assert "rank0" not in recall and "emptyframe" in recall  # its caption stays




@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_figures_fit_their_panels_without_pushing_the_grid(sample: Path, paper: str) -> None:
    """A figure is laid out at the width mlgrind computes for its panel (render.panel_width,
    from the geometry of templates/sheet.css). Were that too wide, the grid would widen the
    figure's column at the others' expense: in WeasyPrint's own layout of the page, every panel
    must keep its equal share of the grid, on both papers."""
    import weasyprint

    from mlgrind.pipeline.compiler import Project, load_content, page_html
    from mlgrind.pipeline.render import Templates

    project = Project.at(sample.parent.parent)
    entry = next(e for e in load_content(project).sheets if e.sheet.id == "figures")
    [page, _] = page_html([entry], Templates(project.templates), {"figures": 0}, (paper,))
    layout = weasyprint.HTML(string=page.html, base_url=str(project.templates) + "/").render()

    def find(box, tag):  # type: ignore[no-untyped-def]
        found = [box] if getattr(box, "element_tag", None) == tag else []
        return found + [b for child in getattr(box, "children", []) for b in find(child, tag)]

    [grid] = find(layout.pages[0]._page_box, "main")
    gap, columns = grid.style["column_gap"].value, entry.sheet.columns
    column = (grid.width - (columns - 1) * gap) / columns
    sections = find(grid, "section")
    assert len(find(grid, "figure")) == len(re.findall(r"figure: [a-z_]+\(", SAMPLE.read_text()))
    for section, panel in zip(sections, entry.sheet.panels, strict=True):
        share = panel.span * column + (panel.span - 1) * gap
        assert section.border_width() == pytest.approx(share, abs=0.01), panel.title
