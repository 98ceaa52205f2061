"""The block registry: every kind complete, every kind on the page in both editions; problems
reported once; card-set defaults; tables computed by running the reference code."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run
from mlgrind.pipeline.blocks import KINDS
from mlgrind.pipeline.compiler import Project, load_content, page_html
from mlgrind.pipeline.fields import Strict
from mlgrind.pipeline.problems import ContentError
from mlgrind.pipeline.render import Templates


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    for folder in ("onepagers", "cards", "templates"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "notes.lock.json", tmp_path)
    return tmp_path


def add_sheet(root: Path, blocks: list[dict], **panel: object) -> None:
    sheet = {"id": "test-sheet", "title": "Test sheet", "position": 98, "seed": "tests",
             "columns": 2, "panels": [{"title": "Blocks", **panel, "blocks": blocks}]}
    (root / "onepagers/98-test-sheet.yaml").write_text(yaml.safe_dump(sheet, sort_keys=False))


def html_of(root: Path) -> dict[str, str]:
    """The test sheet's page HTML per edition (A4), without rendering PDFs."""
    content = load_content(Project.at(root))
    entry = next(e for e in content.sheets if e.sheet.id == "test-sheet")
    pages = page_html([entry], Templates(root / "templates"), {"test-sheet": 0}, ("a4",))
    return {page.edition: page.html for page in pages}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_declares_model_view_template_and_recall(name: str) -> None:
    kind = KINDS[name]
    assert issubclass(kind.model, Strict)
    assert callable(kind.view)
    assert (ROOT / "templates" / kind.template).is_file(), kind.template
    assert len(kind.recall) > 20  # says, in words, what the recall edition does
    assert kind.model.model_validate(kind.example)  # its example is a valid block of its kind
    assert next(iter(kind.example)) == name  # and is told apart by its key


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_reaches_the_page_in_both_editions(sources: Path, name: str) -> None:
    add_sheet(sources, [KINDS[name].example])
    html = html_of(sources)
    panels = {edition: page.split("<h2>Blocks</h2>", 1)[1].split("</section>", 1)[0]
              for edition, page in html.items()}
    for edition, panel in panels.items():
        assert re.search(r"<[a-z]", panel), (edition, panel)  # the kind's part drew elements
    assert panels["recall"] != panels["key"]  # and the recall edition hid its example's facts


def test_json_schema_says_what_each_kind_does_in_the_recall_edition() -> None:
    from mlgrind.pipeline.schema import json_schema

    text = str(json_schema())
    for kind in KINDS.values():
        assert kind.recall in text, kind.name


# One problem, one report ------------------------------------------------------------------------


def test_a_bad_card_answer_is_reported_once(sources: Path) -> None:
    path = sources / "cards/90-numpy-shapes.yaml"
    text = path.read_text()
    path.write_text(text.replace("back: \"${ calc.", "back: \"${ calc.nope(1) } ${ calc.", 1))
    result = run("check", "--root", sources)
    assert result.code == 1
    assert len(re.findall("unknown computed value calc.nope", result.err)) == 1, result.err
    assert "1 problem" in result.err


def test_a_bad_sheet_value_is_reported_once_not_once_per_edition(sources: Path) -> None:
    add_sheet(sources, [{"note": "${ calc.nope(1) }"}])
    with pytest.raises(ContentError) as error:
        load_content(Project.at(sources))
    assert [p.message for p in error.value.problems].count(
        next(p.message for p in error.value.problems if "calc.nope" in p.message)) == 1


# Card-set defaults ------------------------------------------------------------------------------


CARDS = """\
sheet: numpy-shapes
source: "The seed, appendix"
panel: Matmul shapes
notes:
  - id: default-one
    front: "one"
    back: "un"
  - id: default-two
    front: "two"
    back: "deux"
    source: "Its own source"
    panel: Broadcasting in three rules
"""


def test_a_card_set_gives_source_and_panel_once_and_a_note_overrides(sources: Path) -> None:
    (sources / "cards/98-defaults.yaml").write_text(CARDS)
    notes = {n.id: dict(n.fields) for n in load_content(Project.at(sources)).notes}
    assert notes["default-one"]["Source"] == "The seed, appendix"
    assert notes["default-one"]["Sheet"].endswith("· Matmul shapes")
    assert notes["default-two"]["Source"] == "Its own source"
    assert notes["default-two"]["Sheet"].endswith("· Broadcasting in three rules")


def test_a_card_set_default_panel_must_exist_and_is_blamed_at_its_line(sources: Path) -> None:
    (sources / "cards/98-defaults.yaml").write_text(CARDS.replace("panel: Matmul shapes",
                                                                  "panel: Matmul shape"))
    result = run("check", "--root", sources)
    assert result.code == 1
    assert re.search(r"cards/98-defaults\.yaml:3:8: sheet 'numpy-shapes' has no panel titled "
                     r"'Matmul shape'", result.err), result.err


# Tables computed by the reference ----------------------------------------------------------------


def table_cells(root: Path, rows_from: str) -> list[list[str]]:
    add_sheet(root, [{"table": {"rows_from": rows_from}}])
    content = load_content(Project.at(root))
    view = next(e for e in content.sheets if e.sheet.id == "test-sheet").views["key"]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in row]
            for row in view["panels"][0]["blocks"][0]["rows"]]


def test_collective_bytes_come_from_the_simulated_ranks(sources: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlgrind.ref import collectives

    cells = table_cells(sources, "collective_table(ranks=4, shape=(8, 128), dtype='fp32')")
    # All-reduce of 8×128 fp32 (4 KiB) on 4 ranks: 2·(4−1)/4 of it, the ring's closed form.
    assert cells[0][:4] == ["all-reduce", "(8, 128)", "(8, 128)", "6"]
    assert cells[0][4] == f"{collectives.ring_all_reduce_bytes(8 * 128 * 4, 4) / 1024:.3g} KiB"

    real = collectives.Comm._move

    def doubled(record, src, dst, payload, *args, **kwargs):  # type: ignore[no-untyped-def]
        if src != dst:  # a ledger that counts every message twice
            record.sent[src] += payload.nbytes
        return real(record, src, dst, payload, *args, **kwargs)

    monkeypatch.setattr(collectives.Comm, "_move", staticmethod(doubled))
    changed = table_cells(sources, "collective_table(ranks=4, shape=(8, 128), dtype='fp32')")
    assert changed[0][4] == f"{2 * collectives.ring_all_reduce_bytes(8 * 128 * 4, 4) / 1024:.3g} KiB"


def test_mlp_flops_come_from_the_counted_einsums(sources: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlgrind.ref import mlp
    from mlgrind.ref.einsum import einsum

    cells = table_cells(sources, "mlp_flops_table(B=2, D=3, F=5)")
    assert [row[1] for row in cells[:2]] == ["bd,df->bf", "bf,fd->bd"]
    assert cells[0][2] == f"{2 * 2 * 3 * 5:,}"
    assert cells[-1][2].startswith(f"{4 * (2 * 2 * 3 * 5):,} (= 2 × forward)")  # 4 matmuls back

    real = mlp.mlp_backward

    def recomputing(d_y_BD, saved):  # type: ignore[no-untyped-def]
        x_BD, w_in_DF, _, _ = saved
        einsum("bd,df->bf", x_BD, w_in_DF)  # the forward's first matmul, once more
        return real(d_y_BD, saved)

    monkeypatch.setattr(mlp, "mlp_backward", recomputing)
    changed = table_cells(sources, "mlp_flops_table(B=2, D=3, F=5)")
    assert changed[2] == ["backward", "bd,df->bf", f"{2 * 2 * 3 * 5:,}"]
    assert changed[-1][2].startswith(f"{5 * (2 * 2 * 3 * 5):,} (= 2.5 × forward)")


@pytest.mark.parametrize("rows_from,message", [
    ("collective_table(ranks=99)", "ranks must be an integer from 2 to 16"),
    ("collective_table(shape=(7, 3))", "must split evenly over 4 ranks"),
    ("mlp_flops_table(B=-1)", "B must be a positive integer"),
    ("mlp_flops_table(B=open)", "arguments must be literals"),
    ("nope()", "unknown table 'nope'"),
])
def test_bad_table_arguments_are_reported_at_rows_from(sources: Path, rows_from: str,
                                                       message: str) -> None:
    add_sheet(sources, [{"table": {"header": ["a"], "rows_from": rows_from}}])
    with pytest.raises(ContentError) as error:
        load_content(Project.at(sources))
    (problem,) = error.value.problems
    assert problem.file == "onepagers/98-test-sheet.yaml" and message in problem.message
    line = (sources / problem.file).read_text().splitlines()[problem.line - 1]
    assert "rows_from" in line


def test_a_note_role_is_in_the_legend(sources: Path) -> None:
    """Sheet 03's pitfalls are notes marked with the pitfall glyph: the legend says what it means."""
    from mlgrind.pipeline import compiler

    project = Project.at(sources)
    content = load_content(project)
    [entry] = [e for e in content.sheets if e.sheet.id == "parallel-mlp"]
    assert any(getattr(b, "role", None) == "pitfall" for p in entry.sheet.panels for b in p.blocks)
    [page] = compiler.page_html([entry], compiler.Templates(project.templates), {entry.sheet.id: 0},
                             ("a4",))[:1]
    legend = page.html.split('class="legend"')[1].split("</footer>")[0]
    assert "common mistake" in legend


def test_a_role_whose_name_holds_a_digit_is_in_the_legend(sources: Path) -> None:
    """`p2p` (send / recv) was used on sheets but never listed: the legend's class pattern
    stopped at the digit."""
    add_sheet(sources, [{"note": "Pipeline stages [send]{.p2p} activations downstream."}])
    legend = html_of(sources)["key"].split('class="legend"')[1]
    assert "send / recv" in legend


def test_roles_coloured_only_inside_maths_are_in_the_legend(sources: Path) -> None:
    """Formulas are drawn as paths, so their colours never reach the HTML's classes: sheet 15's
    legend missed the dimension letters its formulas are coloured with."""
    add_sheet(sources, [{"formula": r"t = \dim{BL} \cdot \role{kv-cache}{c} / \beta"}])
    legend = html_of(sources)["key"].split('class="legend"')[1]
    assert "batch / sequence" in legend and "KV cache" in legend
    assert "model / hidden" not in legend  # only what the sheet uses
