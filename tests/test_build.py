"""The build end to end: one-page PDFs on both papers, atomic writes, a fetcher that refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader

from conftest import run
from mlgrind.pipeline.pdf import RefusedURL, render_pdf

SHEETS = sorted(p.stem for p in (Path(__file__).parent.parent / "onepagers").glob("*.yaml"))


def test_build_writes_the_deck_a_pdf_per_sheet_edition_and_paper_and_booklets(built: Path) -> None:
    pdfs = sorted(p.name for p in (built / "build/onepagers").glob("*.pdf"))
    assert pdfs == sorted(f"{s}{edition}-{paper}.pdf" for s in SHEETS
                          for edition in ("", "-recall") for paper in ("a4", "letter"))
    assert (built / "build/mlgrind.apkg").stat().st_size > 0
    for edition in ("", "-recall"):
        for paper in ("a4", "letter"):
            booklet = PdfReader(built / f"build/booklet{edition}-{paper}.pdf")
            # In the seed's order: the booklet's pages are the sheets' own pages; in the recall
            # booklet, printed on both sides, each sheet starts a leaf (a blank back if need be).
            expected = []
            for sheet in SHEETS:
                pages = PdfReader(built / f"build/onepagers/{sheet}{edition}-{paper}.pdf").pages
                expected += [page.extract_text() for page in pages]
                if edition and len(pages) % 2:
                    expected.append("")
            assert [page.extract_text() for page in booklet.pages] == expected


@pytest.mark.parametrize("sheet", SHEETS)
@pytest.mark.parametrize("edition", ["", "-recall"])
@pytest.mark.parametrize("paper,width_mm", [("a4", (210, 297)), ("letter", (215.9, 279.4))])
def test_each_key_is_one_page_and_each_recall_one_sheet_of_its_paper(
        built: Path, sheet: str, edition: str, paper: str, width_mm: tuple[float, float]) -> None:
    reader = PdfReader(built / f"build/onepagers/{sheet}{edition}-{paper}.pdf")
    assert len(reader.pages) in ((1, 2) if edition else (1,))  # a recall: both sides at most
    for page in reader.pages:
        size_mm = sorted(round(float(v) * 25.4 / 72, 1) for v in (page.mediabox.width,
                                                                  page.mediabox.height))
        assert size_mm == pytest.approx(sorted(width_mm), abs=0.5)


def test_pdf_text_holds_computed_values(built: Path) -> None:
    import numpy as np

    text = PdfReader(built / "build/onepagers/90-numpy-shapes-a4.pdf").pages[0].extract_text()
    assert str(np.broadcast_shapes((9, 1, 3), (4, 1))) in text
    assert str(np.zeros((32, 3, 224, 224)).reshape(32, -1).shape) in text


def test_rebuild_with_no_change_rewrites_no_pdf(built: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (built / "build/onepagers").glob("*.pdf")}
    result = run("build", "--root", built)
    assert result.code == 0
    assert "up to date" in result.out
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_failed_build_leaves_previous_outputs_byte_identical(built: Path, tmp_path: Path) -> None:
    out = built / "build"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts}
    # Break the deck's card template: every PDF renders fine first, then the build fails.
    card_template = built / "templates/anki/cloze-back.html"
    saved = card_template.read_bytes()
    card_template.unlink()
    try:
        sheet = built / "onepagers/90-numpy-shapes.yaml"
        sheet_text = sheet.read_text()
        sheet.write_text(sheet_text.replace("Adding a bias", "Adding a bias vector"))
        result = run("build", "--root", built)
        assert result.code == 1
        assert "cloze-back.html" in result.err
        after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts}
        assert after == before
    finally:
        card_template.write_bytes(saved)
        sheet.write_text(sheet_text)


def test_only_renders_the_named_sheet(project: Path) -> None:
    result = run("build", "--only", "90", "--paper", "letter", "--root", project)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (project / "build/onepagers").iterdir()) == [
        "90-numpy-shapes-letter.pdf", "90-numpy-shapes-recall-letter.pdf"]
    assert not list((project / "build").glob("booklet*"))  # a booklet needs every sheet
    assert (project / "build/mlgrind.apkg").exists()


def test_out_option_writes_elsewhere(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    assert run("build", "--only", "90", "--paper", "a4", "--out", out, "--root", project).code == 0
    assert (out / "onepagers/90-numpy-shapes-a4.pdf").exists()
    assert not (project / "build/onepagers").exists()


# The URL fetcher ------------------------------------------------------------------------------


@pytest.mark.parametrize("html", [
    '<link rel="attachment" href="file:///etc/passwd"><p>x</p>',
    '<img src="http://example.com/x.png"><p>x</p>',
    '<img src="https://example.com/x.png"><p>x</p>',
    '<img src="data:image/png;base64,iVBORw0KGgo="><p>x</p>',
    '<link rel="stylesheet" href="../../../etc/passwd"><p>x</p>',
])
def test_fetcher_refuses_everything_outside_templates(project: Path, html: str) -> None:
    with pytest.raises(RefusedURL):
        render_pdf(html, project / "templates")


def test_refused_attachment_never_reaches_a_pdf(small_project: Path) -> None:
    template = small_project / "templates/sheet.html.j2"
    template.write_text(template.read_text().replace(
        "<main", '<link rel="attachment" href="file:///etc/passwd"><main', 1))
    result = run("build", "--root", small_project)
    assert result.code == 1
    assert "refused to fetch 'file:///etc/passwd'" in result.err
    assert not (small_project / "build/onepagers").exists()


def test_fetcher_serves_the_projects_own_assets(project: Path) -> None:
    # A 1×1 PNG inside templates/ is allowed and embedded.
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
    (project / "templates/assets").mkdir(exist_ok=True)
    (project / "templates/assets/dot.png").write_bytes(png)
    rendered = render_pdf("<img src=\"assets/dot.png\">", project / "templates")
    assert rendered.pages == 1 and rendered.error == ""
    assert b"/Image" in rendered.data


def test_fonts_are_subset_to_the_glyphs_used_with_the_same_bytes_each_time(tmp_path: Path) -> None:
    import io

    import pypdfium2 as pdfium
    from fontTools.ttLib import TTFont

    text = "Subset me: 8 GPUs"
    html = (f"<p style='font-family: DejaVu Sans'>{text}</p>"
            f"<p style='font-family: DejaVu Sans Mono; font-weight: 700'>{text}</p>")
    rendered = render_pdf(html, tmp_path)
    assert rendered.error == "" and render_pdf(html, tmp_path).data == rendered.data
    assert pdfium.PdfDocument(rendered.data)[0].get_textpage().get_text_range().split() == (
        text.split() * 2)
    embedded = [font["/DescendantFonts"][0].get_object()["/FontDescriptor"]["/FontFile2"]
                for font in PdfReader(io.BytesIO(rendered.data)).pages[0]["/Resources"]["/Font"]
                .values()]
    assert len(embedded) == 2
    for stream in embedded:
        glyf = TTFont(io.BytesIO(stream.get_object().get_data()))["glyf"]
        drawn = [name for name in glyf.keys() if glyf[name].numberOfContours]
        assert len(drawn) <= len(set(text.replace(" ", ""))) + 1  # and .notdef, at most


def test_a_failed_write_changes_nothing_and_says_why(project: Path) -> None:
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    out = project / "build/onepagers"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lock = (project / "notes.lock.json").read_bytes()
    edit = project / "onepagers/90-numpy-shapes.yaml"
    edit.write_text(edit.read_text().replace("Adding a bias", "Adding a bias vector"))
    # The recall PDF cannot be replaced: its path is now a folder.
    (out / "90-numpy-shapes-recall-a4.pdf").unlink()
    (out / "90-numpy-shapes-recall-a4.pdf").mkdir()
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 1
    assert "cannot write" in result.err and "Traceback" not in result.err
    assert (out / "90-numpy-shapes-a4.pdf").read_bytes() == before["90-numpy-shapes-a4.pdf"]
    assert (project / "notes.lock.json").read_bytes() == lock


def test_outputs_get_ordinary_file_permissions(project: Path) -> None:
    import os
    import stat

    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in [project / "build/mlgrind.apkg", project / "notes.lock.json",
                 project / "build/onepagers/90-numpy-shapes-a4.pdf"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_pdfs_of_a_sheet_that_is_gone_are_removed(small_project: Path) -> None:
    assert run("build", "--root", small_project).code == 0
    for folder in ("onepagers", "cards"):
        (small_project / folder / "90-numpy-shapes.yaml").unlink()
    result = run("build", "--root", small_project)
    assert result.code == 0, result.err
    assert not list((small_project / "build/onepagers").glob("90-*"))
    assert "removed   build/onepagers/90-numpy-shapes-a4.pdf" in result.out.replace(str(small_project) + "/", "")


def test_a_missing_template_asset_is_an_error_not_a_crash(project: Path) -> None:
    template = project / "templates/sheet.html.j2"
    template.write_text(template.read_text().replace("<main", '<img src="assets/missing.png"><main', 1))
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 1
    assert "missing.png" in result.err and "Traceback" not in result.err


def test_undecodable_card_template_is_an_error(project: Path) -> None:
    (project / "templates/anki/basic-front.html").write_bytes(b"\xff\xfe{{Front}}")
    result = run("check", "--root", project)
    assert result.code == 1
    assert "cannot read the card templates" in result.err


@pytest.mark.parametrize("epoch", ["abc", "99999999999999999999"])
def test_a_bad_source_date_epoch_is_a_usage_error(project: Path, epoch: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    for command in ("check", "build"):
        result = run(command, "--root", project)
        assert result.code == 2 and "SOURCE_DATE_EPOCH" in result.err


def test_a_damaged_cached_page_is_rendered_again(project: Path) -> None:
    assert run("build", "--only", "90", "--paper", "a4", "--root", project).code == 0
    good = (project / "build/onepagers/90-numpy-shapes-a4.pdf").read_bytes()
    for cached in (project / "build/.cache").glob("*.pdf"):
        if cached.read_bytes() == good:
            cached.write_bytes(good[:100])  # a write cut short
    result = run("build", "--only", "90", "--paper", "a4", "--root", project)
    assert result.code == 0, result.err
    assert (project / "build/onepagers/90-numpy-shapes-a4.pdf").read_bytes() == good
    assert "90-numpy-shapes-a4.pdf" in result.out and "unchanged" in result.out
