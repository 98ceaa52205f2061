"""Figures: every number against an independent computation, the print rules, the recall
editions, and the glyphs WeasyPrint really draws."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest

from mlgrind import palette
from mlgrind.calc import hardware, specs
from mlgrind.calc.params import count
from mlgrind.figures import FIGURES, fmt
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.pipeline.pdf import render_pdf
from mlgrind.ref import collectives as co
from mlgrind.ref.attention import mha_flops, mha_forward
from mlgrind.ref.einsum import count_flops
from mlgrind.ref.pipeline import bubble_fraction_formula

from conftest import ROOT

SVG = "{http://www.w3.org/2000/svg}"
# Arguments each figure is drawn with at a narrow and at a wide panel.
CASES = {
    180: {"pipeline_schedule": dict(stages=3, microbatches=3), "ring_collective": dict(ranks=3),
          "zero_memory": {}, "roofline": {}, "attention_flow": {}},
    520: {"pipeline_schedule": {}, "ring_collective": {},
          "zero_memory": dict(hardware="a100-40gb"), "roofline": dict(batch=64),
          "attention_flow": dict(B=2, L=16, D=64, H=4, K=16)},
}
DRAWN = [(name, width) for width in CASES for name in CASES[width]]


def draw(name: str, width: float):
    return FIGURES[name](width=width, **CASES[width][name])


def root(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in root(svg).iter(f"{SVG}text")]


def test_the_five_drawings_are_registered() -> None:
    assert {"pipeline_schedule", "ring_collective", "zero_memory", "roofline",
            "attention_flow"} <= set(FIGURES)


# -- the numbers, each against a computation that does not use the figure's code ----------------


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
@pytest.mark.parametrize(("p", "m"), [(1, 1), (2, 3), (4, 8), (4, 16), (8, 8)])
def test_pipeline_bubble_makespan_and_held_activations(schedule: str, p: int, m: int) -> None:
    facts = FIGURES["pipeline_schedule"](width=780, stages=p, microbatches=m,
                                         schedule=schedule).facts
    assert facts["bubble_fraction"] == pytest.approx(bubble_fraction_formula(p, m))
    assert facts["makespan"] == 3 * (m + p - 1)  # fill and drain of F = 1 and B = 2 units
    held = [m] * p if schedule == "gpipe" else [min(p - s, m) for s in range(p)]
    assert facts["peak_in_flight"] == ", ".join(map(str, held))


CLOSED_FORMS = {"all_reduce": (co.ring_all_reduce_bytes, 2), "reduce_scatter":
                (co.ring_reduce_scatter_bytes, 1), "all_gather": (co.ring_all_gather_bytes, 1)}


@pytest.mark.parametrize("collective", CLOSED_FORMS)
@pytest.mark.parametrize("S", [2, 3, 8])
@pytest.mark.parametrize(("dtype", "itemsize"), [("bf16", 2), ("fp32", 4)])
def test_ring_bytes_from_the_ledger_equal_the_closed_forms(collective, S, dtype, itemsize) -> None:
    elements = S * 1000
    facts = FIGURES["ring_collective"](width=520, collective=collective, ranks=S,
                                       elements=elements, dtype=dtype).facts
    closed, phases = CLOSED_FORMS[collective]
    total = closed(elements * itemsize, S)
    assert facts["steps"] == phases * (S - 1)
    assert facts["bytes_per_rank"] == total
    assert facts["bytes_per_rank_per_step"] == total / facts["steps"]


@pytest.mark.parametrize("model", ["llama-3-8b", "gpt2", "mixtral-8x7b"])
@pytest.mark.parametrize("dp", [1, 8, 64])
def test_zero_totals_are_16_psi_sharded_plus_activations(model: str, dp: int) -> None:
    spec = specs.load_model(model)
    psi = count(spec).total
    seq, batch = 4096, 1
    activations = 2 * seq * batch * spec.D * spec.n_layers  # full recompute: 2-byte layer inputs
    facts = FIGURES["zero_memory"](width=520, model=model, dp=dp, seq_len=seq,
                                   micro_batch=batch, recompute="full").facts
    for stage in range(4):
        states = (2 * psi / (dp if stage >= 3 else 1) + 2 * psi / (dp if stage >= 2 else 1)
                  + 12 * psi / (dp if stage >= 1 else 1))
        assert facts[f"zero{stage}_gb"] == pytest.approx((states + activations) / 1e9)
    assert facts["zero0_gb"] == pytest.approx((16 * psi + activations) / 1e9)
    assert facts["zero3_gb"] == pytest.approx((16 * psi / dp + activations) / 1e9)


@pytest.mark.parametrize(("gpu", "model", "batch"), [("h100-sxm", "llama-3-8b", 1),
                                                     ("a100-80gb", "llama-2-70b", 64)])
def test_roofline_ridge_and_intensities(gpu: str, model: str, batch: int) -> None:
    """Each phase sits at its FLOPs over its HBM bytes, as sheet 07 counts them kernel by kernel
    from the einsums (facts.inference.step); calc.inference adds only the norm vectors and one
    embedding row per token to the bytes."""
    from mlgrind.facts import inference as sheet

    prompt, context = 2048, 4096
    facts = FIGURES["roofline"](width=520, hardware=gpu, model=model, prompt=prompt,
                                batch=batch, context=context).facts
    hw = hardware.load(gpu)

    def intensity(phase: str, tokens: int) -> float:
        parts = sheet.step(model, gpu, phase, batch, tokens).parts
        return sum(p.flops for p in parts) / sum(p.bytes for p in parts)

    ridge = hw.bf16_flops / hw.hbm_bw
    assert facts["ridge"] == pytest.approx(ridge)
    assert facts["decode_intensity"] == pytest.approx(intensity("decode", context), rel=1e-3)
    assert facts["prefill_intensity"] == pytest.approx(intensity("prefill", prompt), rel=1e-3)
    assert facts["decode_bound"] == "memory" and facts["prefill_bound"] == "compute"


def test_attention_flops_are_counted_from_the_reference_forward() -> None:
    B, L, D, H, K = 2, 16, 64, 4, 16
    facts = FIGURES["attention_flow"](width=520, B=B, L=L, D=D, H=H, K=K).facts
    assert facts["forward_flops"] == mha_flops(B, L, D, H, K)
    for key in ("q", "k", "v", "y"):
        assert facts[f"flops_{key}"] == 2 * B * L * D * H * K
    assert facts["flops_scores"] == facts["flops_out"] == 2 * B * H * L * L * K
    # The specs drawn are exactly the ones the reference forward runs.
    rng = np.random.default_rng(0)
    with count_flops() as counter:
        mha_forward(rng.standard_normal((1, 3, 4)), *[rng.standard_normal((4, 2, 2))] * 3,
                    rng.standard_normal((2, 2, 4)))
    assert {v for k, v in facts.items() if k.startswith("spec_")} == set(counter.by_spec)


def test_numbers_are_formatted_for_people() -> None:
    assert fmt.si(3_145_728, "B") == "3.15 MB"
    assert fmt.si(524_288, "B") == "524 kB"
    assert fmt.si(999_700, "B") == "1 MB"
    assert fmt.si(989.5e12, "FLOP/s") == "990 TFLOP/s"
    assert fmt.percent(3 / 11) == "27 %" and fmt.percent(0.027) == "2.7 %"
    assert fmt.sig(2017.2) == "2,020" and fmt.sig(0.98494) == "0.985"
    assert fmt.words(8_030_261_248) == "8.03 billion"


# -- recall editions --------------------------------------------------------------------------

RECALL = {  # figure: (arguments at 520 pt, printed numbers computed apart, structure kept)
    "pipeline_schedule": ({}, [f"{round(100 * bubble_fraction_formula(4, 8))} %", "33"],
                          ["stage 0", "held", "time →", "idle (bubble)"]),
    "ring_collective": (dict(ranks=4, elements=96_000),
                        [fmt.si(co.ring_all_reduce_bytes(2 * 96_000, 4), "B"),
                         fmt.si(co.ring_all_reduce_bytes(2 * 96_000, 4) / 6, "B"), "c3"],
                        ["rank 0", "step", "reduce-scatter: receiver adds it"]),
    "zero_memory": ({}, [fmt.si(16 * count(specs.load_model("llama-3-8b")).total
                                + 2 * 4096 * 4096 * 32, "B"), "80 GB"],
                    ["ZeRO-3", "parameters", "optimizer states"]),
    "roofline": ({}, [fmt.sig(989.5 / 3.35), "compute-bound", "memory-bound", "990 TFLOP/s"],
                 ["FLOP/s", "arithmetic intensity, FLOP/B", "decode, batch 1"]),
    "attention_flow": (dict(B=2, L=16, D=64, H=4, K=16),
                       ["q_BLHK", "scores_BHLM", "bld,dhk→blhk", "w_o_HKD",
                        fmt.si(mha_flops(2, 16, 64, 4, 16), "FLOP")],
                       ["softmax over", "q projection", "forward FLOPs per einsum"]),
}


def accessible(svg: str) -> str:
    """What a reader gets without seeing: the aria-label and the <title>."""
    element = root(svg)
    title = element.find(f"{SVG}title")
    return element.get("aria-label", "") + (title.text if title is not None else "")


@pytest.mark.parametrize("name", RECALL)
def test_key_prints_the_numbers_blank_hides_them_frame_is_empty(name: str) -> None:
    kwargs, printed, structure = RECALL[name]
    d = FIGURES[name](width=520, **kwargs)
    key, blank = "\n".join(texts(d.svg("key"))), "\n".join(texts(d.svg("blank")))
    for number in printed:
        assert number in key, number
        assert number not in blank and number not in accessible(d.svg("blank")), number
    assert BLANK_RULE in blank
    for label in structure:
        assert label in key and label in blank, label
    frame = d.svg("frame")
    assert not texts(frame) and root(frame).find(f"{SVG}title") is None
    assert root(frame).get("viewBox") == root(d.svg()).get("viewBox")


def test_a_blank_is_12_mm_whatever_it_hides() -> None:
    """Room to write a number by hand, and one length for all: its length tells nothing."""
    lengths = set()
    for name, width in DRAWN:
        for span in root(draw(name, width).svg("blank")).iter(f"{SVG}tspan"):
            if re.fullmatch(r"_{3,}", span.text or ""):
                assert span.get("lengthAdjust") == "spacingAndGlyphs"  # stretched to exactly
                lengths.add(float(span.get("textLength")))
    assert lengths == {round(12 / 25.4 * 72, 2)}  # 12 mm in pt (a figure only scales up)


# -- print rules ------------------------------------------------------------------------------

PAINTS = ("fill", "stroke", "stop-color", "color")


@pytest.mark.parametrize(("name", "width"), DRAWN)
def test_only_palette_colours(name: str, width: float) -> None:
    allowed = palette.colours()
    for recall in ("key", "blank", "frame"):
        svg = root(draw(name, width).svg(recall))
        patterns = {p.get("id") for p in svg.iter(f"{SVG}pattern")}
        for element in svg.iter():
            style = dict(re.findall(r"([\w-]+)\s*:\s*([^;]+)", element.get("style", "")))
            for attribute in PAINTS:
                for value in (element.get(attribute), style.get(attribute)):
                    if value is None or value == "none":
                        continue
                    target = re.fullmatch(r"url\(#([\w-]+)\)", value)
                    assert (target.group(1) in patterns) if target else value in allowed, value


@pytest.mark.parametrize(("name", "width"), DRAWN)
def test_text_is_at_least_7pt_in_the_sheet_font(name: str, width: float) -> None:
    svg = root(draw(name, width).svg())
    assert svg.get("font-family").startswith("DejaVu Sans Condensed, DejaVu Sans")
    for element in svg.iter():
        if element.tag == f"{SVG}text":
            assert element.get("font-size") is not None
        if element.get("font-size") is not None:
            assert float(element.get("font-size")) >= 7


@pytest.mark.parametrize(("name", "width"), DRAWN)
def test_svg_parses_declares_its_geometry_and_is_deterministic(name: str, width: float) -> None:
    d = draw(name, width)
    inline = root(d.svg())
    assert inline.tag == f"{SVG}svg" and inline.get("width") == "100%"
    assert [float(v) for v in inline.get("viewBox").split()] == pytest.approx(
        [0, 0, d.width, d.height], abs=0.01)
    assert inline.get("role") == "img" and inline.get("aria-label") == d.alt
    assert inline.find(f"{SVG}title").text == d.alt and d.facts
    document = d.svg_file()
    assert document.startswith("<?xml")
    assert [float(root(document).get(side).removesuffix("pt")) for side in ("width", "height")] \
        == pytest.approx([d.width, d.height], abs=0.01)
    again = draw(name, width)
    for recall in ("key", "blank", "frame"):
        assert again.svg(recall) == d.svg(recall)
    assert again.svg_file() == document


SWEEP = {
    "pipeline_schedule": [dict(stages=s, microbatches=m, schedule=k) for s, m in
                          [(1, 1), (2, 8), (4, 8), (8, 16), (16, 64)] for k in ("1f1b", "gpipe")],
    "ring_collective": [dict(collective=k, ranks=r) for r in (2, 4, 8, 16)
                        for k in ("all_reduce", "reduce_scatter", "all_gather")],
    "zero_memory": [{}, dict(model="gpt2", dp=1, hardware=None),
                    dict(model="llama-3.1-405b", dp=1024, recompute="none", hardware="h200")],
    "roofline": [{}, dict(batch=4096, context=0), dict(model="gpt2", prompt=1, batch=1),
                 dict(hardware="a100-40gb", model="deepseek-v3", prompt=1 << 20)],
    "attention_flow": [{}, dict(B=1, L=8, D=16, H=2, K=8)],
}


@pytest.mark.parametrize("name", SWEEP)
@pytest.mark.parametrize("width", [170, 260, 520, 780])
def test_text_stays_inside_and_apart_or_the_width_is_refused(name: str, width: int) -> None:
    for kwargs in SWEEP[name]:
        try:
            d = FIGURES[name](width=width, **kwargs)
        except ValueError as error:  # too narrow: it says how wide, and that width works
            if "more than the widest panel" in str(error):
                continue
            needed = re.search(r"width .* needs at least (\d+) pt", str(error))
            assert needed and int(needed.group(1)) > width, str(error)
            with pytest.raises(ValueError, match="too narrow"):  # the least width, to the pt
                FIGURES[name](width=int(needed.group(1)) - 1, **kwargs)
            d = FIGURES[name](width=int(needed.group(1)), **kwargs)
        boxes = d.text_boxes()
        for text, (left, top, right, bottom) in boxes:
            assert 0 <= left and right <= d.width and 0 <= top and bottom <= d.height, text
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                apart = (box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1]
                         or box_b[3] <= box_a[1])
                assert apart, (name, kwargs, a, b)


BAD = [
    ("pipeline_schedule", dict(stages=0), "stages"),
    ("pipeline_schedule", dict(stages=17), "16"),
    ("pipeline_schedule", dict(stages=True), "stages"),
    ("pipeline_schedule", dict(microbatches=65), "microbatches"),
    ("pipeline_schedule", dict(schedule="zb-h1"), "schedule"),
    ("pipeline_schedule", dict(stages=16, microbatches=64, width=300), "width"),
    ("pipeline_schedule", dict(stage=4), "stage"),
    ("ring_collective", dict(collective="broadcast"), "collective"),
    ("ring_collective", dict(ranks=1), "ranks"),
    ("ring_collective", dict(ranks=17), "16"),
    ("ring_collective", dict(ranks=3, elements=1000), "elements"),
    ("ring_collective", dict(elements=1 << 30), "elements"),
    ("ring_collective", dict(dtype="fp8"), "dtype"),
    ("zero_memory", dict(model="llama-9"), "model"),
    ("zero_memory", dict(dp=0), "dp"),
    ("zero_memory", dict(precision="fp8"), "precision"),
    ("zero_memory", dict(recompute="some"), "recompute"),
    ("zero_memory", dict(hardware="tpu-v5"), "hardware"),
    ("roofline", dict(hardware="h100"), "hardware"),
    ("roofline", dict(prompt=0), "prompt"),
    ("roofline", dict(batch=1 << 20), "batch"),
    ("attention_flow", dict(B=2), "B, L, D, H and K"),
    ("attention_flow", dict(B=1, L=5000, D=8, H=1, K=8), "L"),
    ("attention_flow", dict(B=64, L=4096, D=8, H=1, K=8), "sizes"),
    ("roofline", dict(width=20), "width"),
]


@pytest.mark.parametrize(("name", "kwargs", "named"), BAD)
def test_bad_arguments_raise_a_value_error_naming_them(name: str, kwargs: dict, named: str):
    kwargs = {"width": 400, **kwargs}
    with pytest.raises(ValueError, match=re.escape(named)):
        FIGURES[name](**kwargs)


# -- through WeasyPrint, as a sheet and a card see them ----------------------------------------


EDITIONS = {180: ("key", "blank"), 520: ("key",)}  # blanks where room is tightest


@pytest.fixture(scope="module")
def pdf() -> tuple[pdfium.PdfDocument, str]:
    """One PDF with a page per width (CSS named pages), each holding that width's five figures
    stacked as a sheet holds them, made as a sheet is (`render_pdf`), and its error: the
    warnings WeasyPrint logged while making it."""
    pages = "".join(f"@page w{width} {{ size: {width + 20}pt 3600pt; margin: 10pt }} "
                    f".w{width} {{ page: w{width}; width: {width}pt; margin-bottom: 12pt }} "
                    for width in CASES)
    divs = "".join(f'<div class="w{width}">{draw(name, width).svg(recall)}</div>'
                   for width in CASES for name in CASES[width] for recall in EDITIONS[width])
    rendered = render_pdf(f"<html><head><style>{pages} body {{ margin: 0 }}</style></head>"
                          f"<body>{divs}</body></html>", ROOT / "templates")
    return pdfium.PdfDocument(rendered.data), rendered.error


def glyphs(page: pdfium.PdfPage) -> list[tuple[str, float, tuple]]:
    """Every drawn character: text, font size (pt), box (left, bottom, right, top) in pt."""
    text = page.get_textpage()
    out = []
    for i in range(text.count_chars()):
        char = text.get_text_range(i, 1)
        if char.strip():
            out.append((char, pdfium_c.FPDFText_GetFontSize(text.raw, i), text.get_charbox(i)))
    return out


def test_weasyprint_renders_the_patterns_without_warnings(pdf) -> None:
    document, error = pdf
    assert error == ""
    assert [page.get_size()[0] for page in document] == [width + 20 for width in CASES]


@pytest.mark.parametrize("page", range(len(CASES)))
def test_weasyprint_draws_the_text_at_7pt_or_more(pdf, page: int) -> None:
    width = list(CASES)[page]
    text = pdf[0][page].get_textpage().get_text_range()
    for label in ("stage 0", "rank 0", "ZeRO-3", "FLOP/s", "softmax over", "q_BLHK"):
        assert label in text
    assert (BLANK_RULE in text) == ("blank" in EDITIONS[width])
    found = glyphs(pdf[0][page])
    assert len(found) > 500
    for char, size, (left, _, right, _) in found:
        assert size >= 7 - 0.01, (char, size)
        assert 10 - 0.5 <= left and right <= 10 + width + 0.5, char  # inside the figure's width


def test_weasyprint_prints_every_blank_12_mm_wide(pdf) -> None:
    """The stretched underscores as printed: each run on one baseline is one blank (a lone
    underscore is a tensor name's, x_BD)."""
    runs: list[list[float]] = []  # [left, right, bottom, underscores]
    for char, _, (left, bottom, right, _) in glyphs(pdf[0][0]):  # the width with blanks
        if char != "_":
            continue
        if runs and abs(runs[-1][2] - bottom) < 0.5 and left - runs[-1][1] < 1:
            runs[-1][1] = max(runs[-1][1], right)
            runs[-1][3] += 1
        else:
            runs.append([left, right, bottom, 1])
    widths = [(right - left) * 25.4 / 72 for left, right, _, n in runs if n == len(BLANK_RULE)]
    assert len(widths) > 20
    assert min(widths) >= 12 - 0.05 and max(widths) <= 12 + 0.3, sorted(widths)


@pytest.mark.parametrize("page", range(len(CASES)))
def test_weasyprint_glyphs_never_collide(pdf, page: int) -> None:
    shrink = 0.35  # pt: neighbours within a word touch, and underscores overlap by a hair
    boxes = sorted((left + shrink, bottom + shrink, right - shrink, top - shrink, char)
                   for char, _, (left, bottom, right, top) in glyphs(pdf[0][page]))
    for i, (left, bottom, right, top, char) in enumerate(boxes):
        for other in boxes[i + 1:]:
            if other[0] >= right:
                break  # sorted by left edge: nothing further can reach back
            assert other[3] <= bottom or top <= other[1], (char, other[4], left, bottom)


def test_a_positional_argument_names_the_keywords_a_drawing_takes() -> None:
    with pytest.raises(ValueError, match=r"takes named arguments only, like "
                       r"pipeline_schedule\(stages=…\); it takes stages, microbatches, schedule"):
        FIGURES["pipeline_schedule"](4, width=300)
