"""Seed step 2: the 2-layer ReLU MLP, forward and backward, read off the reference code.

The sheet writes every step with suffixed names (`a_BF, d_y_BD -> d_w_out_FD`), in three
forms: one example (x_D), a batch (x_BD), a batch of sequences (x_BLD). Those names are a
program: `_run` executes them and `_checked` compares the result with `ref.mlp` (the x_BLD form
against the batch form on B·L rows), and checks that each einsum string they give is the one the
reference code runs at that step. FLOPs are counted on the reference code (`ref.einsum`), for
any sizes: its einsum strings are traced once on small arrays, then counted at the sizes asked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..calc.specs import load_model, model_names
from ..ref import einsum as ref_einsum
from ..ref import mlp
from ..ref.notation import split_suffix
from .core import MAX_TABLE_ELEMENTS, calc, check_elements, int_arg, table, text_arg
from .shapes import einsum_contracted, einsum_flops, einsum_spec


@dataclass(frozen=True)
class Step:
    out: str  # the tensor it makes, without suffix: "d_w_in"
    backward: bool
    names: tuple[str, str, str] | None  # einsum per form, as the sheet writes it; None: elementwise
    numpy: str  # the same step in NumPy, batch form


FORMS = ("example", "batch", "sequence")

# The forward, the loss's gradient, then the backward, in the order ref.mlp runs them.
STEPS = [
    Step("h", False, ("x_D, w_in_DF -> h_F", "x_BD, w_in_DF -> h_BF",
                      "x_BLD, w_in_DF -> h_BLF"), "x @ w_in"),
    Step("a", False, None, "np.maximum(h, 0)"),
    Step("y", False, ("a_F, w_out_FD -> y_D", "a_BF, w_out_FD -> y_BD",
                      "a_BLF, w_out_FD -> y_BLD"), "a @ w_out"),
    Step("d_y", True, None, "y - t"),
    Step("d_w_out", True, ("a_F, d_y_D -> d_w_out_FD", "a_BF, d_y_BD -> d_w_out_FD",
                           "a_BLF, d_y_BLD -> d_w_out_FD"), "a.T @ d_y"),
    Step("d_a", True, ("d_y_D, w_out_FD -> d_a_F", "d_y_BD, w_out_FD -> d_a_BF",
                       "d_y_BLD, w_out_FD -> d_a_BLF"), "d_y @ w_out.T"),
    Step("d_h", True, None, "d_a * (h > 0)"),
    Step("d_w_in", True, ("x_D, d_h_F -> d_w_in_DF", "x_BD, d_h_BF -> d_w_in_DF",
                          "x_BLD, d_h_BLF -> d_w_in_DF"), "x.T @ d_h"),
    Step("d_x", True, ("d_h_F, w_in_DF -> d_x_D", "d_h_BF, w_in_DF -> d_x_BD",
                       "d_h_BLF, w_in_DF -> d_x_BLD"), "d_h @ w_in.T"),
]
BY_NAME = {step.out: step for step in STEPS}
MATMULS = [step.out for step in STEPS if step.names]
# What each elementwise step computes, from the tensors already made.
ELEMENTWISE = {"a": lambda t: mlp.relu(t["h"]),
               "d_y": lambda t: mlp.l2_loss(t["y"], t["t"])[1],
               "d_h": lambda t: t["d_a"] * (t["h"] > 0)}
# The letters of the tensors the steps start from, for one example: a form puts its batch
# letters in front of the input's and the target's. Elementwise results keep their input's.
START = {"x": "D", "w_in": "DF", "w_out": "FD", "t": "D"}
BATCHED = {"x", "t"}
FORM_LETTERS = {"example": "", "batch": "B", "sequence": "BL"}
KEEPS = {"a": "h", "d_y": "y", "d_h": "d_a"}
# Distinct sizes, so that a shape names its letters and a FLOP count its factors.
TRACE_SIZES = {"B": 2, "L": 7, "D": 3, "F": 5}


def _choice(name: str, value: object, options: list[str]) -> str:
    if text_arg(name, value) not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def _suffix(stem: str, form: str) -> str:
    """The suffix of a tensor in a form, read off the names of the steps."""
    if stem in START:
        return (FORM_LETTERS[form] if stem in BATCHED else "") + START[stem]
    if stem in KEEPS:
        return _suffix(KEEPS[stem], form)
    names = BY_NAME[stem].names[FORMS.index(form)]
    return split_suffix(names.split("->")[1].strip())[1]


def _stems(names: str) -> tuple[list[str], str]:
    lhs, _, rhs = names.partition("->")
    return ([split_suffix(n.strip())[0] for n in lhs.split(",")],
            split_suffix(rhs.strip())[0])


def _run(form: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every step of the sheet in `form`, executed: each einsum from its names."""
    t = dict(tensors)
    for step in STEPS:
        if step.names is None:
            t[step.out] = ELEMENTWISE[step.out](t)
        else:
            names = step.names[FORMS.index(form)]
            inputs, out = _stems(names)
            t[out] = ref_einsum.einsum(einsum_spec(names), *(t[s] for s in inputs))
    return t


def _inputs(form: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {stem: rng.standard_normal([TRACE_SIZES[c] for c in _suffix(stem, form)])
            for stem in START}


@functools.cache
def _checked() -> dict[str, dict[str, str]]:
    """Each step's einsum string per form, after checking the sheet's names against ref.mlp:
    the strings are the ones it runs, in its order, and every result is its result."""
    rng = np.random.default_rng(0)
    specs: dict[str, dict[str, str]] = {form: {} for form in FORMS}
    refs = {"example": (mlp.mlp_forward_D, mlp.mlp_backward_D),
            "batch": (mlp.mlp_forward, mlp.mlp_backward)}
    for form in FORMS:
        t = _inputs(form, rng)
        with ref_einsum.count_flops() as ours:
            mine = _run(form, t)
        B, L = TRACE_SIZES["B"], TRACE_SIZES["L"]
        flat = {k: (v.reshape(B * L, -1) if form == "sequence" and k in ("x", "t") else v)
                for k, v in t.items()}
        forward, backward = refs.get(form, refs["batch"])
        with ref_einsum.count_flops() as theirs:
            y, saved = forward(flat["x"], flat["w_in"], flat["w_out"])
            d_x, d_w_in, d_w_out = backward(mlp.l2_loss(y, flat["t"])[1], saved)
        for name, value in (("y", y), ("d_x", d_x), ("d_w_in", d_w_in), ("d_w_out", d_w_out)):
            got = mine[name]
            if form == "sequence" and name in ("y", "d_x"):  # B L rows, compared as B·L rows
                got = got.reshape(B * L, -1)
            if got.shape != value.shape or not np.allclose(got, value):
                raise ValueError(f"the sheet's {form} steps disagree with ref.mlp on {name}")
        if ours.total != theirs.total:
            raise ValueError(f"the sheet's {form} steps count other FLOPs than ref.mlp")
        for step in STEPS:
            if step.names:
                specs[form][step.out] = einsum_spec(step.names[FORMS.index(form)])
        if form != "sequence" and list(specs[form].values()) != list(theirs.by_spec):
            raise ValueError(f"the sheet's {form} einsums are not ref.mlp's, in its order")
    return specs


def _step(name: str, matmul: bool = False) -> Step:
    options = MATMULS if matmul else [s.out for s in STEPS]
    return BY_NAME[_choice("step", name, options)]


def _form(form: str) -> int:
    return FORMS.index(_choice("form", form, list(FORMS)))


@calc(worst=["mlp_einsum('d_w_in', 'sequence')"])
def mlp_einsum(step: str, form: str = "batch") -> str:
    """The einsum string of a matmul step (`h`, `y`, `d_w_out`, `d_a`, `d_w_in`, `d_x`), checked
    to be the one ref.mlp runs."""
    step_, i = _step(step, matmul=True), _form(form)
    return _checked()[FORMS[i]][step_.out]


@calc(worst=["mlp_names('d_w_in', 'sequence')"])
def mlp_names(step: str, form: str = "batch") -> str:
    """The step's operands and result with their suffixes: `a_BF`, `d_y_BD` → `d_w_out_FD`."""
    step_, i = _step(step, matmul=True), _form(form)
    lhs, rhs = step_.names[i].split("->")
    return ", ".join(f"`{n.strip()}`" for n in lhs.split(",")) + f" → `{rhs.strip()}`"


@calc(worst=["mlp_summed('d_w_in', 'sequence')"])
def mlp_summed(step: str, form: str = "batch") -> str:
    """The letters a matmul step sums over (coloured as contracted), or "nothing"."""
    step_, i = _step(step, matmul=True), _form(form)
    _checked()
    summed = einsum_contracted(step_.names[i])
    return "nothing (an outer product)" if summed == "none" else summed


@calc(worst=["mlp_shape('d_w_in', 'sequence')"])
def mlp_shape(tensor: str, form: str = "batch") -> str:
    """A tensor's shape as letters, like (D, F), read off an array made by running the steps."""
    stems = list(START) + [s.out for s in STEPS]
    stem, form = _choice("tensor", tensor, stems), FORMS[_form(form)]
    _checked()
    made = _run(form, _inputs(form, np.random.default_rng(0)))[stem]
    letters = {size: letter for letter, size in TRACE_SIZES.items()}
    return "(" + ", ".join(letters[n] for n in made.shape) + ("," if made.ndim == 1 else "") + ")"


@table(worst=["mlp_tensors()"])
def mlp_tensors() -> list[list[str]]:
    """Each tensor of the forward in the three forms, its suffix read off an array made by
    running the steps; and what it is."""
    _checked()
    made = {form: _run(form, _inputs(form, np.random.default_rng(0))) for form in FORMS}
    letters = {size: letter for letter, size in TRACE_SIZES.items()}
    what = {"x": "input", "w_in": "weight", "h": "pre-activation", "a": "activation",
            "w_out": "weight", "y": "output"}
    return [[f"`{stem}`"] + [f"`{stem}_{''.join(letters[n] for n in made[f][stem].shape)}`"
                             for f in FORMS] + [role]
            for stem, role in what.items()]


@table(worst=["mlp_steps('backward')"])
def mlp_steps(which: str = "backward", forms: str = "example, batch, sequence") -> list[list[str]]:
    """The forward or the backward, a row per step: its einsum in each of `forms` (a comma-
    separated choice of example, batch, sequence, in that order; checked against ref.mlp) and
    what the last of them sums over. A forward row starts with the step in NumPy; a backward
    row starts with the gradient's name and ends with the NumPy, whose transposes are the facts
    to learn. The backward starts after d_y, which the sheet derives on its own."""
    backward = _choice("which", which, ["forward", "backward"]) == "backward"
    chosen = [f.strip() for f in text_arg("forms", forms).split(",")]
    for form in chosen:
        _choice("form", form, list(FORMS))
    if chosen != [f for f in FORMS if f in chosen]:
        raise ValueError(f"forms must be distinct and in the order {', '.join(FORMS)}, "
                         f"got {forms!r}")
    specs = _checked()
    rows = []
    for step in STEPS:
        if step.backward != backward or step.out == "d_y":
            continue
        if step.names is None:
            cells = ["elementwise"] * len(chosen) + ["nothing"]
        else:
            cells = [f"`{specs[f][step.out]}`" for f in chosen]
            cells.append(mlp_summed(step.out, chosen[-1]))
        rows.append([f"`{step.out}`", *cells, f"`{step.numpy}`"] if backward else
                    [f"`{step.out}` = `{step.numpy}`", *cells])
    return rows


# FLOPs ----------------------------------------------------------------------------------------


def _counted(B: int, D: int, F: int) -> tuple[ref_einsum.FlopCounter, ref_einsum.FlopCounter]:
    """The FLOPs of one forward and one backward pass of ref.mlp on random arrays of these
    sizes, counted by einsum string."""
    rng = np.random.default_rng(0)
    x_BD, w_in_DF, w_out_FD = (rng.standard_normal(s) for s in ((B, D), (D, F), (F, D)))
    with ref_einsum.count_flops() as forward:
        y_BD, saved = mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with ref_einsum.count_flops() as backward:
        mlp.mlp_backward(mlp.l2_loss(y_BD, np.zeros_like(y_BD))[1], saved)
    return forward, backward


@functools.cache
def _traced() -> dict[str, tuple[str, bool]]:
    """Each matmul's einsum string as ref.mlp runs it (batch form) and whether it is backward,
    traced on arrays of distinct sizes; each string must have run exactly once."""
    B, D, F = (TRACE_SIZES[c] for c in "BDF")
    forward, backward = _counted(B, D, F)
    sizes = {"b": B, "d": D, "f": F}
    traced = []
    for is_backward, counter in ((False, forward), (True, backward)):
        for spec, count in counter.by_spec.items():
            if count != ref_einsum.flops(spec, sizes):
                raise ValueError(f"ref.mlp ran {spec} more than once")
            traced.append((spec, is_backward))
    if [spec for spec, _ in traced] != [_checked()["batch"][m] for m in MATMULS]:
        raise ValueError("ref.mlp's matmuls are not the sheet's steps")
    return dict(zip(MATMULS, traced, strict=True))


MAX_TOKENS = 1 << 24  # B and L each; a count is arithmetic, so any size costs the same


def _sizes(model: str, B: int, L: int) -> dict[str, int]:
    """The model's D and F (its bundled config); B·L tokens stand in the batch letter."""
    spec = load_model(_choice("model", model, model_names()))
    int_arg("B", B, 1, MAX_TOKENS)
    int_arg("L", L, 1, MAX_TOKENS)
    if spec.mlp_gated:
        raise ValueError(f"{model} has a gated (SwiGLU) MLP, three matrices: this sheet's MLP "
                         "has two; pick a model without one, like gpt2")
    return {"b": B * L, "d": spec.D, "f": spec.F}


def _counts(model: str, B: int, L: int) -> dict[str, int]:
    """Each matmul's FLOPs, counted by ref.einsum on the string ref.mlp runs for it."""
    sizes = _sizes(model, B, L)
    return {m: ref_einsum.flops(spec, sizes) for m, (spec, _) in _traced().items()}


def _totals(counts: dict[str, int]) -> dict[str, int]:
    backward = {m for m, (_, b) in _traced().items() if b}
    fwd = sum(n for m, n in counts.items() if m not in backward)
    bwd = sum(n for m, n in counts.items() if m in backward)
    return {"forward": fwd, "backward": bwd, "step": fwd + bwd}


_PREFIXES = ((10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))


def flops_text(n: int) -> str:
    """`9.66 GFLOP (9,663,676,416)`: three significant digits under a decimal prefix, then the
    exact count."""
    scale, prefix = next(((s, p) for s, p in _PREFIXES if n >= s), (1, ""))
    return f"{n / scale:.3g} {prefix}FLOP ({n:,})"


@calc(worst=["mlp_flops('step', 'megatron-1t', 16777216, 16777216)"])
def mlp_flops(part: str, model: str = "gpt2", B: int = 1, L: int = 1024) -> str:
    """FLOPs of one matmul (`h`, `y`, `d_w_out`, `d_a`, `d_w_in`, `d_x`) or of a pass
    (`forward`, `backward`, `step` = both) of the model's MLP on B·L tokens."""
    _choice("part", part, MATMULS + ["forward", "backward", "step"])
    counts = _counts(model, B, L)
    return flops_text({**counts, **_totals(counts)}[part])


@calc(worst=["mlp_ratio('step', 'forward', 'megatron-1t', 16777216, 16777216)"])
def mlp_ratio(part: str, of: str = "forward", model: str = "gpt2", B: int = 1,
              L: int = 1024) -> str:
    """One pass's FLOPs over another's (`forward`, `backward`, `step`), as counted."""
    passes = ["forward", "backward", "step"]
    _choice("part", part, passes)
    _choice("of", of, passes)
    totals = _totals(_counts(model, B, L))
    return f"{totals[part] / totals[of]:g}"


@calc(worst=["mlp_sizes('megatron-1t', 16777216, 16777216)"])
def mlp_sizes(model: str = "gpt2", B: int = 1, L: int = 1024) -> str:
    """The sizes the counts use: B·L tokens, D and F from the model's config."""
    sizes = _sizes(model, B, L)
    return f"B·L = {sizes['b']:,} tokens, D = {sizes['d']:,}, F = {sizes['f']:,}"


@calc(worst=["mlp_dims('megatron-1t')"])
def mlp_dims(model: str = "gpt2") -> str:
    """The model's D and F, read from its bundled config."""
    sizes = _sizes(model, 1, 1)
    return f"D = {sizes['d']:,}, F = {sizes['f']:,}"


@table(worst=["mlp_flops_steps('megatron-1t', 16777216, 16777216)"])
def mlp_flops_steps(model: str = "gpt2", B: int = 1, L: int = 1024) -> list[list[str]]:
    """Each matmul of the model's MLP on B·L tokens, forward then backward: its names (x_BLD
    form), FLOP formula and FLOPs counted on ref.mlp's einsum; each pass's total and their
    ratio to the forward."""
    counts = _counts(model, B, L)
    totals = _totals(counts)
    rows = [[f"`{m}`", mlp_names(m, "sequence"), einsum_flops(BY_NAME[m].names[2]),
             flops_text(counts[m])] for m in MATMULS]
    for part in ("forward", "backward"):
        ratio = f"{totals[part] / totals['forward']:g} × forward"
        rows.append([f"**{part}**", "", "" if part == "forward" else ratio,
                     f"**{flops_text(totals[part])}**"])
    return rows


@table(worst=["mlp_flops_table(B=1024, D=1024, F=1024)"])
def mlp_flops_table(B: int = 8, D: int = 16, F: int = 64) -> list[list[str]]:
    """Each matmul of the 2-layer MLP, forward then backward, with the FLOPs counted while the
    reference code (`ref.mlp`) ran it on arrays of these sizes; then each pass's total.
    B·D, D·F and B·F are each at most `MAX_TABLE_ELEMENTS`, so B·D·F ≤ 2^30: ~0.5 s."""
    for name, n in (("B", B), ("D", D), ("F", F)):
        int_arg(name, n, 1, MAX_TABLE_ELEMENTS)
    check_elements(max(B * D, D * F, B * F), f"B·D, D·F or B·F with B={B}, D={D}, F={F}",
                    MAX_TABLE_ELEMENTS, "a table runs the reference code on arrays of")
    forward, backward = _counted(B, D, F)
    rows = [[name, f"`{spec}`", f"{count:,}"] for name, counter in
            (("forward", forward), ("backward", backward)) for spec, count in counter.by_spec.items()]
    ratio = backward.total / forward.total
    return rows + [["**forward total**", "", f"**{forward.total:,}**"],
                   ["**backward total**", "", f"**{backward.total:,}** (= {ratio:g} × forward)"]]
