"""Sheet 02's computations (mlgrind/facts/mlp.py) against the reference code itself: einsum strings
against the ones ref.mlp runs, the x_BLD form against the batch form on B·L rows and against
finite differences, shapes against the arrays ref.mlp returns, FLOPs against the counter run on
real arrays and against the closed forms, model sizes against the config files read directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlgrind.facts import CALC, TABLES
from mlgrind.pipeline.compute import ExpressionError, call, expand
from mlgrind.ref import mlp
from mlgrind.ref.einsum import count_flops
from tests.ref.helpers import numerical_grad

MODELS = Path(__file__).resolve().parent.parent / "mlgrind" / "calc" / "models"
B, L, D, F = 3, 4, 5, 7  # distinct, so a shape names its letters
LETTER = {B: "B", L: "L", D: "D", F: "F"}
BACKWARD = ["d_w_out", "d_a", "d_w_in", "d_x"]


def arrays(rng, *batch):
    return (rng.standard_normal((*batch, D)), rng.standard_normal((D, F)) / np.sqrt(D),
            rng.standard_normal((F, D)) / np.sqrt(F), rng.standard_normal((*batch, D)))


def traced(forward, backward, x, w_in, w_out, t):
    """The einsum strings ref.mlp runs, in its order, forward then backward."""
    with count_flops() as fwd:
        y, saved = forward(x, w_in, w_out)
    with count_flops() as bwd:
        backward(mlp.l2_loss(y, t)[1], saved)
    return list(fwd.by_spec), list(bwd.by_spec)


@pytest.mark.parametrize("form, forward, backward, batch", [
    ("example", mlp.mlp_forward_D, mlp.mlp_backward_D, ()),
    ("batch", mlp.mlp_forward, mlp.mlp_backward, (B,)),
])
def test_einsum_strings_are_the_ones_ref_mlp_runs(form, forward, backward, batch) -> None:
    fwd, bwd = traced(forward, backward, *arrays(np.random.default_rng(0), *batch))
    assert [expand(f"${{ calc.mlp_einsum('{s}', '{form}') }}") for s in ("h", "y")] == fwd
    assert [CALC["mlp_einsum"](s, form) for s in BACKWARD] == bwd


def sequence_steps(x, w_in, w_out, t):
    """The sheet's x_BLD einsums, run with np.einsum: y and the three gradients."""
    spec = {s: CALC["mlp_einsum"](s, "sequence") for s in ["h", "y", *BACKWARD]}
    h = np.einsum(spec["h"], x, w_in)
    a = np.maximum(h, 0)
    y = np.einsum(spec["y"], a, w_out)
    d_y = y - t
    d_w_out = np.einsum(spec["d_w_out"], a, d_y)
    d_h = np.einsum(spec["d_a"], d_y, w_out) * (h > 0)
    return y, np.einsum(spec["d_x"], d_h, w_in), np.einsum(spec["d_w_in"], x, d_h), d_w_out


def test_sequence_form_is_the_batch_form_on_b_times_l_rows() -> None:
    x, w_in, w_out, t = arrays(np.random.default_rng(1), B, L)
    y, saved = mlp.mlp_forward(x.reshape(B * L, D), w_in, w_out)
    d_x, d_w_in, d_w_out = mlp.mlp_backward(mlp.l2_loss(y, t.reshape(B * L, D))[1], saved)
    ours = sequence_steps(x, w_in, w_out, t)
    for mine, theirs in zip(ours, (y, d_x, d_w_in, d_w_out), strict=True):
        np.testing.assert_allclose(mine.reshape(theirs.shape), theirs)


def test_sequence_form_gradients_match_finite_differences() -> None:
    x, w_in, w_out, t = arrays(np.random.default_rng(2), 2, 2)

    def loss(x_, w_in_, w_out_):
        return mlp.l2_loss(np.maximum(x_ @ w_in_, 0) @ w_out_, t)[0]

    _, d_x, d_w_in, d_w_out = sequence_steps(x, w_in, w_out, t)
    np.testing.assert_allclose(d_x, numerical_grad(lambda v: loss(v, w_in, w_out), x), atol=1e-6)
    np.testing.assert_allclose(d_w_in, numerical_grad(lambda v: loss(x, v, w_out), w_in),
                               atol=1e-6)
    np.testing.assert_allclose(d_w_out, numerical_grad(lambda v: loss(x, w_in, v), w_out),
                               atol=1e-6)


def letters(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(LETTER[n] for n in shape) + ("," if len(shape) == 1 else "") + ")"


def test_shapes_are_those_of_the_arrays_ref_mlp_returns() -> None:
    for form, forward, backward, batch in (("example", mlp.mlp_forward_D, mlp.mlp_backward_D, ()),
                                           ("batch", mlp.mlp_forward, mlp.mlp_backward, (B,))):
        x, w_in, w_out, t = arrays(np.random.default_rng(3), *batch)
        y, saved = forward(x, w_in, w_out)
        d_y = mlp.l2_loss(y, t)[1]
        d_x, d_w_in, d_w_out = backward(d_y, saved)
        made = {"y": y, "d_y": d_y, "h": saved[3], "d_x": d_x, "d_w_in": d_w_in,
                "d_w_out": d_w_out, "d_a": saved[3], "d_h": saved[3]}  # d_a, d_h: h's shape
        for name, array in made.items():
            assert CALC["mlp_shape"](name, form) == letters(array.shape), (form, name)
    assert CALC["mlp_shape"]("d_h", "sequence") == letters((B, L, F))


def test_tensor_table_names_carry_the_shapes_ref_mlp_makes() -> None:
    x, w_in, w_out, _ = arrays(np.random.default_rng(4), B)
    y, (_, _, _, h) = mlp.mlp_forward(x, w_in, w_out)
    shapes = {"x": x.shape, "w_in": w_in.shape, "h": h.shape, "a": h.shape, "w_out": w_out.shape,
              "y": y.shape}
    rows = {row[0].strip("`"): row for row in TABLES["mlp_tensors"]()}
    for stem, shape in shapes.items():
        assert rows[stem][2] == f"`{stem}_{letters(shape).strip('(,)').replace(', ', '')}`"


def test_a_weight_gradient_sums_the_per_example_gradients() -> None:
    """What "sums B" means: the batch gradient is the sum of the one-example gradients."""
    x, w_in, w_out, t = arrays(np.random.default_rng(5), B)
    y, saved = mlp.mlp_forward(x, w_in, w_out)
    _, d_w_in, d_w_out = mlp.mlp_backward(mlp.l2_loss(y, t)[1], saved)
    singles = [mlp.mlp_backward_D(mlp.l2_loss(y_D, t_D)[1], saved_D)
               for y_D, saved_D, t_D in ((*mlp.mlp_forward_D(x_D, w_in, w_out), t_D)
                                         for x_D, t_D in zip(x, t))]
    np.testing.assert_allclose(d_w_in, sum(s[1] for s in singles))
    np.testing.assert_allclose(d_w_out, sum(s[2] for s in singles))
    assert CALC["mlp_summed"]("d_w_in", "batch") == "[B]{.contract}"
    assert "nothing" in CALC["mlp_summed"]("d_w_in", "example")
    assert CALC["mlp_summed"]("d_w_out", "sequence") == "[B]{.contract} [L]{.contract}"


def config_dims(model: str) -> tuple[int, int]:
    """D and F read straight from the bundled config (GPT-2's format: F defaults to 4·D)."""
    config = json.loads((MODELS / f"{model}.json").read_text())
    return config["n_embd"], config.get("n_inner") or 4 * config["n_embd"]


def exact(text: str) -> int:
    """The exact count in `9.66 GFLOP (9,663,676,416)`."""
    return int(re.search(r"\(([\d,]+)\)", text)[1].replace(",", ""))


def test_flops_match_the_counter_on_real_arrays_of_the_models_sizes() -> None:
    d, f = config_dims("gpt2")
    batch, length = 2, 4  # tokens are what a count scales with; D and F are GPT-2's
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch * length, d))
    w_in, w_out = rng.standard_normal((d, f)), rng.standard_normal((f, d))
    with count_flops() as fwd:
        y, saved = mlp.mlp_forward(x, w_in, w_out)
    with count_flops() as bwd:
        mlp.mlp_backward(mlp.l2_loss(y, np.zeros_like(y))[1], saved)
    flops = {part: exact(CALC["mlp_flops"](part, "gpt2", batch, length))
             for part in ("forward", "backward", "step")}
    assert flops == {"forward": fwd.total, "backward": bwd.total, "step": fwd.total + bwd.total}
    per_matmul = dict(zip(["h", "y", *BACKWARD], [*fwd.by_spec.values(), *bwd.by_spec.values()]))
    for step, count in per_matmul.items():
        assert exact(CALC["mlp_flops"](step, "gpt2", batch, length)) == count
    rows = TABLES["mlp_flops_steps"]("gpt2", batch, length)
    assert [exact(row[3]) for row in rows[:6]] == list(per_matmul.values())
    assert [exact(row[3]) for row in rows[6:]] == [fwd.total, bwd.total]
    assert CALC["mlp_ratio"]("backward", "forward", "gpt2", batch, length) == \
        f"{bwd.total / fwd.total:g}"
    assert CALC["mlp_ratio"]("step") == f"{(fwd.total + bwd.total) / fwd.total:g}"


def test_flops_at_scale_match_the_closed_forms() -> None:
    """GPT-3 175B on one 2,048-token sequence: too large to run, so the closed forms of ref.mlp
    and 2·T·D·F per matmul (Kaplan et al. 2020, section 2.1) are the oracle."""
    d, f = config_dims("gpt3-175b")
    tokens = 2048
    assert exact(CALC["mlp_flops"]("forward", "gpt3-175b", 1, tokens)) == \
        mlp.mlp_flops(tokens, d, f) == 2 * (2 * tokens * d * f)
    assert exact(CALC["mlp_flops"]("backward", "gpt3-175b", 1, tokens)) == \
        mlp.mlp_backward_flops(tokens, d, f) == 4 * (2 * tokens * d * f)
    assert CALC["mlp_dims"]("gpt3-175b") == f"D = {d:,}, F = {f:,}"
    assert CALC["mlp_sizes"]("gpt2", 8, 1024) == \
        "B·L = {:,} tokens, D = {:,}, F = {:,}".format(8 * 1024, *config_dims("gpt2"))


def test_the_step_tables_hold_the_ref_strings() -> None:
    _, bwd = traced(mlp.mlp_forward, mlp.mlp_backward, *arrays(np.random.default_rng(7), B))
    rows = TABLES["mlp_steps"]("backward")
    assert [row[2].strip("`") for row in rows if row[0] != "`d_h`"] == bwd
    assert [row[0] for row in rows] == ["`d_w_out`", "`d_a`", "`d_h`", "`d_w_in`", "`d_x`"]


def test_a_step_table_of_fewer_forms_is_the_full_one_without_their_columns() -> None:
    """The forward table on the sheet shows the one-example and batch forms only: the same
    einsum cells as the full table, and the sums of its last form (the batch)."""
    full = TABLES["mlp_steps"]("forward")
    two = call("mlp_steps('forward', 'example, batch')", TABLES, "table")
    assert [row[:3] for row in two] == [row[:3] for row in full]
    assert [row[3] for row in two] == [
        "nothing" if row[1] == "elementwise" else CALC["mlp_summed"](row[0].split("`")[1], "batch")
        for row in two]
    with pytest.raises(ExpressionError, match="forms must be distinct and in the order"):
        call("mlp_steps('forward', 'batch, example')", TABLES, "table")
    with pytest.raises(ExpressionError, match="form must be one of"):
        call("mlp_steps('forward', 'batch, tokens')", TABLES, "table")


def test_the_old_flops_table_still_counts_backward_as_twice_forward() -> None:
    rows = call("mlp_flops_table(B=4, D=8, F=16)", TABLES, "table")
    assert rows[-2][2] == f"**{2 * (2 * 4 * 8 * 16):,}**"
    assert rows[-1][2].startswith(f"**{4 * (2 * 4 * 8 * 16):,}**")


@pytest.mark.parametrize("text, message", [
    ("${ calc.mlp_einsum('d_h') }", "step must be one of h, y, d_w_out"),
    ("${ calc.mlp_einsum('h', 'tokens') }", "form must be one of example, batch, sequence"),
    ("${ calc.mlp_shape('z') }", "tensor must be one of"),
    ("${ calc.mlp_flops('forward', 'llama-3-8b') }", "gated"),
    ("${ calc.mlp_flops('forward', 'gpt-5') }", "model must be one of"),
    ("${ calc.mlp_flops('forward', 'gpt2', 0) }", "B must be a positive integer"),
    ("${ calc.mlp_flops('forward', 'gpt2', 1, 16777217) }", "L must be a positive integer up to"),
    ("${ calc.mlp_ratio('backward', 'step2') }", "of must be one of"),
    ("${ calc.mlp_einsum(1) }", "step must be a string"),
])
def test_arguments_are_refused_naming_the_choices(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        expand(text)
