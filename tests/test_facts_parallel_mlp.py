"""Sheet 03's computations: the sharded MLPs against the unsharded one and finite differences,
bytes per rank against the ring formulas, shapes against the Megatron-LM paper's layout, and the
figure against the same runs and the print rules."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from importlib import resources

import numpy as np
import pytest

from mlgrind import palette
from mlgrind.facts import CALC, TABLES, WORST
from mlgrind.facts import parallel_mlp as pm
from mlgrind.facts.core import size_text
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.ref import mlp
from mlgrind.ref.collectives import ring_all_gather_bytes, ring_all_reduce_bytes

SCHEMES = list(pm.SCHEMES)


def unsharded(B: int, D: int, F: int):
    x_BD, w_in_DF, w_out_FD, d_y_BD = pm.inputs(B, D, F, np.float64)
    y_BD, saved = mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    return y_BD, mlp.mlp_backward(d_y_BD, saved)


# -- sharded = unsharded -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("B", "D", "F", "S"), [(6, 4, 12, 2), (7, 5, 10, 3), (8, 3, 16, 4)])
def test_sharded_output_and_gradients_equal_the_unsharded_mlp(scheme, B, D, F, S) -> None:
    run = pm.run(scheme, B, D, F, S, dtype=np.float64)  # (7, 5, 10, 3): uneven blocks
    y_BD, grads = unsharded(B, D, F)
    np.testing.assert_allclose(run.y_BD, y_BD, rtol=1e-12, atol=1e-12)
    for got, expected in zip(run.grads, grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def sharded_loss(scheme: str, x_BD, w_in_DF, w_out_FD, d_y_BD, S: int) -> float:
    """sum(y · d_y) through the sharded forward alone: its gradient in y is d_y."""
    from mlgrind.ref.collectives import Comm, shard

    comm = Comm(S)
    if scheme == "row":
        y_BD, _ = mlp.row_parallel_forward(comm, x_BD, w_in_DF, shard(w_out_FD, S, axis=0))
    elif scheme == "column":
        y_BD, _ = mlp.column_parallel_forward(comm, x_BD, shard(w_in_DF, S, axis=1), w_out_FD)
    elif scheme == "megatron":
        y_BD, _ = mlp.megatron_forward(comm, x_BD, shard(w_in_DF, S, axis=1),
                                       shard(w_out_FD, S, axis=0))
    else:
        y_BD = np.concatenate(mlp.data_parallel_forward(shard(x_BD, S), w_in_DF, w_out_FD)[0])
    return float(np.sum(y_BD * d_y_BD))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sharded_gradients_match_finite_differences(scheme: str) -> None:
    B, D, F, S, eps = 6, 3, 8, 2, 1e-6
    x_BD, w_in_DF, w_out_FD, d_y_BD = pm.inputs(B, D, F, np.float64, seed=1)
    d_x_BD, d_w_in_DF, d_w_out_FD = pm.run(scheme, B, D, F, S, np.float64, seed=1).grads
    arrays = [x_BD, w_in_DF, w_out_FD]
    for which, grad in enumerate((d_x_BD, d_w_in_DF, d_w_out_FD)):
        for index in [(0, 0), (1, 2), (grad.shape[0] - 1, grad.shape[1] - 1)]:
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[which][index] += eps
            minus[which][index] -= eps
            numeric = (sharded_loss(scheme, *plus, d_y_BD, S)
                       - sharded_loss(scheme, *minus, d_y_BD, S)) / (2 * eps)
            assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-8)


# -- what each rank holds and which collective runs where --------------------------------------

# The layout of Megatron-LM (Shoeybi et al. 2019, §3): the first weight cut by columns (F), the
# second by rows (F); data parallelism cuts the batch and replicates the weights.
HOLDS = {
    "row": {"x": "(B, D)", "w_in": "(D, F)", "a": "(B, F/S)", "w_out": "(F/S, D)", "y": "(B, D)"},
    "column": {"x": "(B, D)", "w_in": "(D, F/S)", "a": "(B, F/S)", "w_out": "(F, D)",
               "y": "(B, D)"},
    "megatron": {"x": "(B, D)", "w_in": "(D, F/S)", "a": "(B, F/S)", "w_out": "(F/S, D)",
                 "y": "(B, D)"},
    "data": {"x": "(B/S, D)", "w_in": "(D, F)", "a": "(B/S, F)", "w_out": "(F, D)",
             "y": "(B/S, D)"},
}
# (pass, collective, tensor, elements of the ring formulas' n as a function of B, D, F)
COLLECTIVES = {
    "row": [("forward", "all_reduce", "y_BD", lambda B, D, F: B * D),
            ("backward", "all_gather", "d_a_BF", lambda B, D, F: B * F)],
    "column": [("forward", "all_gather", "a_BF", lambda B, D, F: B * F),
               ("backward", "all_reduce", "d_x_BD", lambda B, D, F: B * D)],
    "megatron": [("forward", "all_reduce", "y_BD", lambda B, D, F: B * D),
                 ("backward", "all_reduce", "d_x_BD", lambda B, D, F: B * D)],
    "data": [("backward", "all_reduce", "d_w_in_DF", lambda B, D, F: D * F),
             ("backward", "all_reduce", "d_w_out_FD", lambda B, D, F: F * D)],
}
RING = {"all_reduce": ring_all_reduce_bytes, "all_gather": ring_all_gather_bytes}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_rank_holds_the_megatron_layout(scheme: str) -> None:
    for tensor, shape in HOLDS[scheme].items():
        assert CALC["pmlp_holds"](scheme, tensor) == shape


@pytest.mark.parametrize("scheme", SCHEMES)
def test_collectives_run_in_the_expected_pass_on_the_expected_tensor(scheme: str) -> None:
    found = [(c.phase, c.collective, c.tensor) for c in pm.run(scheme, 8, 4, 16, 4).collectives]
    assert found == [(p, c, t) for p, c, t, _ in COLLECTIVES[scheme]]
    for phase in pm.PHASES:
        text = CALC["pmlp_collective"](scheme, phase)
        mine = [(c, t) for p, c, t, _ in COLLECTIVES[scheme] if p == phase]
        assert text == (", ".join(f"[{c.replace('_', '-')}]{{.{c.replace('_', '-')}}} of `{t}`"
                                  for c, t in mine) or "none")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("B", "D", "F", "S"), [(8, 4, 16, 2), (12, 6, 24, 3), (16, 8, 64, 8)])
def test_bytes_per_rank_off_the_ledger_equal_the_ring_formulas(scheme, B, D, F, S) -> None:
    itemsize = np.dtype(pm.DTYPE).itemsize
    run = pm.run(scheme, B, D, F, S)
    for c, (_, collective, _, elements) in zip(run.collectives, COLLECTIVES[scheme], strict=True):
        n = elements(B, D, F) * itemsize
        assert c.full_bytes == n
        expected = RING[collective](n, S)
        assert c.sent == c.received == c.busiest == expected  # every rank alike: even blocks
        share = Fraction(2 * (S - 1), S) if collective == "all_reduce" else Fraction(S - 1, S)
        assert pm.factor(c) == share
    for phase in pm.PHASES:
        total = sum(RING[c](e(B, D, F) * itemsize, S)
                    for p, c, _, e in COLLECTIVES[scheme] if p == phase)
        assert CALC["pmlp_bytes"](scheme, phase, B, D, F, S) == size_text(total)


def test_the_table_reads_the_same_ledger() -> None:
    B, D, F, S = 16, 8, 32, 4
    rows = TABLES["pmlp_comm_table"](B=B, D=D, F=F, S=S)
    expected = [(scheme, p, c, t, e) for scheme in SCHEMES for p, c, t, e in COLLECTIVES[scheme]]
    assert len(rows) == len(expected)
    for row, (scheme, phase, collective, tensor, elements) in zip(rows, expected, strict=True):
        n = elements(B, D, F) * 4
        assert row[0] == pm.SCHEMES[scheme] and row[1] == phase
        assert collective.replace("_", "-") in row[2] and f"`{tensor}`" in row[3]
        assert row[4] == f"**{size_text(RING[collective](n, S))}**"
        share = "3/2" if collective == "all_reduce" else "3/4"  # 2(S−1)/S and (S−1)/S at S = 4
        assert row[5] == f"{share} × {size_text(n)}"


def test_column_alone_gathers_f_over_2d_times_megatrons_forward_bytes() -> None:
    # (S−1)/S · B·F against 2(S−1)/S · B·D: F / 2D
    for B, D, F, S in [(32, 16, 64, 4), (8, 4, 32, 2)]:
        ratio = CALC["pmlp_ratio"]("column", "forward", "megatron", "forward", B, D, F, S)
        assert float(ratio) == pytest.approx(F / (2 * D))


def test_real_model_bytes_use_the_config_and_the_ring_formula() -> None:
    config = json.loads(resources.files("mlgrind.calc").joinpath(
        "models/llama-3-8b.json").read_text())
    D, F = config["hidden_size"], config["intermediate_size"]
    assert CALC["pmlp_model_dim"]("llama-3-8b", "D") == f"{D:,}"
    assert CALC["pmlp_model_dim"]("llama-3-8b", "F") == f"{F:,}"
    tokens, S = 8 * 4096, 8
    activation = tokens * D * 2  # bf16
    assert CALC["pmlp_model_tensor"]("llama-3-8b", "activation", tokens) == size_text(activation)
    assert CALC["pmlp_model_bytes"]("llama-3-8b", "activation", tokens, S) \
        == size_text(2 * (S - 1) / S * activation)
    grads = 3 * D * F * 2  # SwiGLU: gate, up and down
    assert CALC["pmlp_model_bytes"]("llama-3-8b", "mlp_grads", 1, S) \
        == size_text(2 * (S - 1) / S * grads)
    assert CALC["pmlp_model_matrices"]("llama-3-8b") == "three"
    assert CALC["pmlp_model_matrices"]("gpt2") == "two"
    assert CALC["pmlp_ring_factor"](8) == "7/4" and CALC["pmlp_ring_factor"](2) == "1"


@pytest.mark.parametrize(("call", "named"), [
    (lambda: CALC["pmlp_holds"]("tensor", "x"), "scheme"),
    (lambda: CALC["pmlp_holds"]("row", "h"), "tensor"),
    (lambda: CALC["pmlp_collective"]("row", "fwd"), "phase"),
    (lambda: CALC["pmlp_bytes"]("row", "forward", 10, 4, 16, 4), "B = 10"),
    (lambda: CALC["pmlp_bytes"]("row", "forward", 8, 4, 16, 17), "S must be"),
    (lambda: CALC["pmlp_bytes"]("row", "forward", 4096, 512, 4096, 4), "elements"),
    (lambda: TABLES["pmlp_comm_table"](B=256, D=256, F=512, S=4), "multiplies at most"),
    (lambda: CALC["pmlp_model_bytes"]("llama-9", "activation"), "model"),
    (lambda: CALC["pmlp_model_bytes"]("gpt2", "weights"), "what"),
    (lambda: CALC["pmlp_model_tensor"]("gpt2", "activation", 4, "int4"), "dtype"),
])
def test_bad_arguments_are_refused_by_name(call, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        call()


def test_every_computation_declares_its_worst_case() -> None:
    mine = [name for name in [*CALC, *TABLES] if name.startswith("pmlp_")]
    assert mine and all(WORST.get(name) for name in mine)
    assert FIGURES["parallel_mlp_flow"].worst


# -- the figure ---------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_the_figure_shows_the_runs_holdings_and_collectives(ranks: int) -> None:
    d = FIGURES["parallel_mlp_flow"](width=495, ranks=ranks)
    for scheme, holds in HOLDS.items():
        for tensor, shape in holds.items():
            assert d.facts[f"{scheme}.{tensor}"] == shape
        for phase, collective, tensor, _ in COLLECTIVES[scheme]:
            assert d.facts[f"{scheme}.{phase}.{tensor}"] == collective
    key, blank = "\n".join(texts(d.svg("key"))), "\n".join(texts(d.svg("blank")))
    assert "(F/S, D)" in key and "(F/S, D)" not in blank and BLANK_RULE in blank
    assert "Megatron" in blank and "w_in_" in blank  # structure stays
    assert not texts(d.svg("frame"))


@pytest.mark.parametrize("width", [226, 260, 300, 495, 780])
@pytest.mark.parametrize("scheme", ["all", "row", "data"])
def test_figure_text_stays_inside_apart_and_in_palette(width: int, scheme: str) -> None:
    d = FIGURES["parallel_mlp_flow"](width=width, scheme=scheme)
    boxes = d.text_boxes()
    for text, (left, top, right, bottom) in boxes:
        assert 0 <= left and right <= d.width and 0 <= top and bottom <= d.height, text
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert (box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1]
                    or box_b[3] <= box_a[1]), (a, b)
    svg = ET.fromstring(d.svg())
    patterns = {p.get("id") for p in svg.iter(f"{SVG}pattern")}
    for element in svg.iter():
        if element.get("font-size") is not None:
            assert float(element.get("font-size")) >= 7
        for attribute in ("fill", "stroke"):
            value = element.get(attribute)
            if value and value != "none":
                target = re.fullmatch(r"url\(#([\w-]+)\)", value)
                assert (target.group(1) in patterns) if target else value in palette.colours()
    assert FIGURES["parallel_mlp_flow"](width=width, scheme=scheme).svg() == d.svg()


def test_figure_refuses_a_width_it_cannot_fill_naming_the_least() -> None:
    with pytest.raises(ValueError, match="needs at least 226 pt"):
        FIGURES["parallel_mlp_flow"](width=200)
    with pytest.raises(ValueError, match="ranks"):
        FIGURES["parallel_mlp_flow"](width=400, ranks=9)
    with pytest.raises(ValueError, match="scheme"):
        FIGURES["parallel_mlp_flow"](width=400, scheme="pipeline")
