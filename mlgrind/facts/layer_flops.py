"""Seed "FLOPs of a single transformer block (FWD); multiply by the number of blocks; BWD = 2×FWD;
full step = 3×FWD", and the one-pager "per-layer FLOPs" (sheet 10).

Every matmul of one block is named here as the sheet names it (`MATMULS`): its forward einsum
and the two backward einsums it needs, the gradients of its two operands (for the attention core
both operands are activations). Those names are checked against the einsums the reference runs:

- attention: `ref.attention.gqa_forward` / `gqa_backward`, run once on tiny arrays under
  `count_flops()`; the specs it runs, with their multiplicities, must be the sheet's (plus the
  softmax's row sum Σ p·d_p, which is no matmul);
- a whole decoder: `ref.inference.forward` (blocks of GQA and a two-matrix MLP, then the output
  head), counted, must cost exactly n_layers × (the sheet's block) + the sheet's head;
- the two-matrix MLP: `ref.mlp` on B·L rows, counted forward and backward;
- the router and experts: `ref.moe`, counted: FLOPs grow with top_k, not with E.

- the gated MLP: `ref.mlp.swiglu_forward` / `swiglu_backward`, traced with the attention: its
  specs must be the sheet's gate, up and down.

A model's FLOPs are then priced from the traced specs by the same counter
(`ref.einsum.flops`), and every total is compared with `mlgrind.calc.flops` before it is shown,
so the sheet, the calculator and the reference cannot drift apart.

One caveat of the reference's GQA names: inside `q_BLGHK`, `scores_BGHLM`, `probs_BGHLM` and
`out_BLGHK` the H axis counts the query heads of one group, H / G of them; a spec holding `g` is
priced with h = H / G, so G·(H/G) = H and the core costs what MHA's does.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..calc import flops as calc_flops
from ..calc.params import count
from ..calc.specs import ModelSpec, SpecError, load_model, model_names
from ..ref import attention as ref_attention
from ..ref import einsum as ref_einsum
from ..ref import inference as ref_inference
from ..ref import mlp as ref_mlp
from ..ref import moe as ref_moe
from ..ref.notation import split_suffix
from .core import calc, int_arg, table, text_arg
from .mlp import flops_text
from .shapes import einsum_spec


@dataclass(frozen=True)
class Matmul:
    key: str
    label: str
    part: str  # "projections", "core", "mlp" or "head"
    forward: str  # names, as the sheet writes them
    backward: tuple[str, str]  # the gradients of the first and of the second operand
    gated_only: bool = False  # the gate of a SwiGLU MLP; a two-matrix MLP has up and down

    def names(self, grad: str | None = None) -> str:
        if grad is None:
            return self.forward
        for names in self.backward:
            if _stems(names)[1] == f"d_{grad}":
                return names
        grads = [_stems(n)[1][2:] for n in self.backward]
        raise ValueError(f"the {self.key} matmul has gradients {' and '.join(grads)}, not {grad!r}")


MATMULS = [
    Matmul("q", "q", "projections", "x_BLD, w_q_DHK -> q_BLHK",
           ("d_q_BLHK, w_q_DHK -> d_x_BLD", "x_BLD, d_q_BLHK -> d_w_q_DHK")),
    Matmul("k", "k (G heads)", "projections", "x_BMD, w_k_DGK -> k_BMGK",
           ("d_k_BMGK, w_k_DGK -> d_x_BMD", "x_BMD, d_k_BMGK -> d_w_k_DGK")),
    Matmul("v", "v (G heads)", "projections", "x_BMD, w_v_DGK -> v_BMGK",
           ("d_v_BMGK, w_v_DGK -> d_x_BMD", "x_BMD, d_v_BMGK -> d_w_v_DGK")),
    Matmul("scores", "scores q·k", "core", "q_BLGHK, k_BMGK -> scores_BGHLM",
           ("d_scores_BGHLM, k_BMGK -> d_q_BLGHK", "d_scores_BGHLM, q_BLGHK -> d_k_BMGK")),
    Matmul("mix", "probs · v", "core", "probs_BGHLM, v_BMGK -> out_BLGHK",
           ("d_out_BLGHK, v_BMGK -> d_probs_BGHLM", "probs_BGHLM, d_out_BLGHK -> d_v_BMGK")),
    Matmul("o", "o", "projections", "out_BLHK, w_o_HKD -> y_BLD",
           ("d_y_BLD, w_o_HKD -> d_out_BLHK", "out_BLHK, d_y_BLD -> d_w_o_HKD")),
    Matmul("gate", "gate", "mlp", "x_BLD, w_gate_DF -> gate_BLF",
           ("d_gate_BLF, w_gate_DF -> d_x_BLD", "x_BLD, d_gate_BLF -> d_w_gate_DF"), True),
    Matmul("up", "up", "mlp", "x_BLD, w_up_DF -> up_BLF",
           ("d_up_BLF, w_up_DF -> d_x_BLD", "x_BLD, d_up_BLF -> d_w_up_DF")),
    Matmul("down", "down", "mlp", "a_BLF, w_down_FD -> y_BLD",
           ("d_y_BLD, w_down_FD -> d_a_BLF", "a_BLF, d_y_BLD -> d_w_down_FD")),
]
HEAD = Matmul("head", "output head", "head", "x_BLD, w_head_DV -> logits_BLV",
              ("d_logits_BLV, w_head_DV -> d_x_BLD", "x_BLD, d_logits_BLV -> d_w_head_DV"))
BY_KEY = {m.key: m for m in [*MATMULS, HEAD]}
PARTS = {"projections": "attention projections", "core": "attention core", "mlp": "MLP"}
# The softmax's backward sums p·d_p over M for every query: an einsum the reference counts, but
# no matmul (2·B·H·L·M, 1/K of the scores' FLOPs).
ROW_SUM = "probs_BGHLM, d_probs_BGHLM -> dot_BGHL"
# FLOP symbols are written in this letter order: batch and sequence, then model, then heads.
ORDER = "BLMDFVHGKE"


def _stems(names: str) -> tuple[list[str], str]:
    lhs, _, rhs = names.partition("->")
    return [split_suffix(n.strip())[0] for n in lhs.split(",")], split_suffix(rhs.strip())[0]


def _letters(names: str) -> set[str]:
    return {c for n in names.replace("->", ",").split(",") for c in split_suffix(n.strip())[1]}


def _check_backward_sizes() -> None:
    """BWD = 2 × FWD, structurally: each backward einsum names exactly its forward's letters, so
    it multiplies and adds over the same index space."""
    for m in [*MATMULS, HEAD]:
        for names in m.backward:
            if _letters(names) != _letters(m.forward):
                raise AssertionError(f"{names} does not span the letters of {m.forward}")


_check_backward_sizes()


# Sizes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    """What a block's FLOPs depend on: the suffix letters' sizes and the MLP's kind."""

    D: int
    H: int
    G: int
    K: int
    F: int
    V: int
    gated: bool
    n_layers: int = 1

    def sizes(self, B: int, L: int, spec: str) -> dict[str, int]:
        """Each einsum letter's size in `spec`; self-attention, so M = L. In a spec with g, the
        h axis holds the H / G query heads of one group (see the module's docstring)."""
        h = self.H // self.G if "g" in spec else self.H
        return {"b": B, "l": L, "m": L, "d": self.D, "h": h, "g": self.G, "k": self.K,
                "f": self.F, "v": self.V}

    def matmuls(self) -> list[Matmul]:
        return [m for m in MATMULS if self.gated or not m.gated_only]


def _price(dims: Dims, B: int, L: int, names: str) -> int:
    spec = einsum_spec(names)
    return ref_einsum.flops(spec, dims.sizes(B, L, spec))


MAX_T = 1 << 24  # tokens of a sequence; counts are arithmetic, so any size costs the same
MAX_B = 1 << 12  # sequences


def _spec(model: str, dense: bool = True) -> ModelSpec:
    if text_arg("model", model) not in model_names():
        raise ValueError(f"model must be one of {', '.join(model_names())}, got {model!r}")
    try:
        spec = load_model(model)
    except SpecError as error:
        raise ValueError(str(error)) from None
    if spec.mla is not None or spec.K_v != spec.K:
        raise ValueError(f"{model} has MLA attention; this sheet prices GQA and MHA blocks")
    if dense and spec.moe_layers:
        raise ValueError(f"{model} is a mixture of experts: its MLP is priced by the MoE table "
                         f"(moe_block_table), not as a dense block")
    return spec


def _dims(spec: ModelSpec) -> Dims:
    return Dims(spec.D, spec.H, spec.G, spec.K, spec.F, spec.V, spec.mlp_gated, spec.n_layers)


def _tokens(B: int, T: int) -> tuple[int, int]:
    return int_arg("B", B, 1, MAX_B), int_arg("T", T, 1, MAX_T)


# The output head, run by the sheet's names (ref.inference has no backward) ----------------------


def _run(key: str, *operands: np.ndarray, grad: str | None = None) -> np.ndarray:
    return ref_einsum.einsum(einsum_spec(BY_KEY[key].names(grad)), *operands)


def head_forward(x_BLD, w_head_DV):
    return _run("head", x_BLD, w_head_DV), (x_BLD, w_head_DV)


def head_backward(d_logits_BLV, saved):
    x_BLD, w_head_DV = saved
    return (_run("head", d_logits_BLV, w_head_DV, grad="x"),
            _run("head", x_BLD, d_logits_BLV, grad="w_head"))


# Tracing the reference at tiny sizes --------------------------------------------------------

# Distinct sizes per letter (H / G = 11 too), so that a letter priced at the wrong size, or an
# einsum run a different number of times, cannot agree with the counter by coincidence.
TINY = Dims(D=5, H=77, G=7, K=4, F=17, V=19, gated=True, n_layers=2)
TINY_B, TINY_L = 2, 3


def _multiplicities(counter: ref_einsum.FlopCounter, dims: Dims, B: int, L: int) -> Counter:
    """How many times each spec ran: its counted FLOPs over one run's, priced here."""
    runs = Counter()
    for spec, n in counter.by_spec.items():
        one = ref_einsum.flops(spec, dims.sizes(B, L, spec))
        if n % one:
            raise AssertionError(f"{spec} counted {n:,} FLOPs, not a multiple of {one:,}")
        runs[spec] = n // one
    return runs


def _tiny_block(rng: np.random.Generator, dims: Dims = TINY, B: int = TINY_B, L: int = TINY_L):
    D, H, G, K, F = dims.D, dims.H, dims.G, dims.K, dims.F
    x_BLD = rng.standard_normal((B, L, D))
    attention = (rng.standard_normal((D, H, K)), rng.standard_normal((D, G, K)),
                 rng.standard_normal((D, G, K)), rng.standard_normal((H, K, D)))
    mlp = (rng.standard_normal((D, F)) / np.sqrt(D), rng.standard_normal((D, F)) / np.sqrt(D),
           rng.standard_normal((F, D)) / np.sqrt(F))
    return x_BLD, attention, mlp


@dataclass(frozen=True)
class Traced:
    """The reference's einsums of one block (GQA + SwiGLU), forward and backward, counted."""

    forward: Counter
    backward: Counter
    forward_flops: int
    backward_flops: int


@functools.cache
def _traced_block() -> Traced:
    """Runs one block at TINY sizes under the counter and checks that the specs are the
    sheet's: the attention's those of ref.attention.gqa_forward / gqa_backward, the MLP's those
    of ref.mlp's SwiGLU."""
    x_BLD, attention, mlp = _tiny_block(np.random.default_rng(0))
    with ref_einsum.count_flops() as fwd:
        y_BLD, saved_attention = ref_attention.gqa_forward(x_BLD, *attention)
        z_BLD, saved_mlp = ref_mlp.swiglu_forward(y_BLD, *mlp)
    with ref_einsum.count_flops() as bwd:
        d_y_BLD = ref_mlp.swiglu_backward(np.ones_like(z_BLD), saved_mlp)[0]
        ref_attention.gqa_backward(d_y_BLD, saved_attention)
    forward = _multiplicities(fwd, TINY, TINY_B, TINY_L)
    backward = _multiplicities(bwd, TINY, TINY_B, TINY_L)
    ours_forward = Counter(einsum_spec(m.forward) for m in MATMULS)
    ours_backward = Counter(einsum_spec(n) for m in MATMULS for n in m.backward)
    ours_backward[einsum_spec(ROW_SUM)] += 1
    if forward != ours_forward:
        raise AssertionError(f"the reference block runs {dict(forward)}, not the sheet's "
                             f"{dict(ours_forward)}")
    if backward != ours_backward:
        raise AssertionError(f"the reference block's backward runs {dict(backward)}, not the "
                             f"sheet's {dict(ours_backward)}")
    return Traced(forward, backward, fwd.total, bwd.total)


@functools.cache
def _checked_decoder() -> None:
    """ref.inference.forward, a whole decoder (GQA blocks, a two-matrix ReLU MLP, the output
    head), counted on a prompt: it must cost n_layers × the sheet's block + the sheet's head."""
    config = ref_inference.Config(V=TINY.V, D=TINY.D, H=TINY.H, G=TINY.G, K=TINY.K, F=TINY.F,
                                  n_layers=TINY.n_layers)
    rng = np.random.default_rng(1)
    model = ref_inference.init_model(config, rng)
    tokens_BL = rng.integers(0, config.V, size=(TINY_B, TINY_L))
    with ref_einsum.count_flops() as counted:
        ref_inference.forward(model, tokens_BL)
    two_matrix = replace(TINY, gated=False)
    ours = forward_parts(two_matrix, TINY_B, TINY_L)
    expected = TINY.n_layers * sum(ours.values()) + _price(TINY, TINY_B, TINY_L, HEAD.forward)
    if counted.total != expected:
        raise AssertionError(f"ref.inference.forward counts {counted.total:,} FLOPs, the sheet's "
                             f"blocks and head {expected:,}")
    if list(counted.by_spec)[-1] != einsum_spec(HEAD.forward):
        raise AssertionError("the reference's output head is not the sheet's")


@functools.cache
def _checked_two_matrix_mlp() -> None:
    """ref.mlp on B·L rows, forward and backward, counted: the sheet's up and down, with their
    gradients, at the same sizes."""
    B, L, D, F = TINY_B, TINY_L, TINY.D, TINY.F
    rng = np.random.default_rng(2)
    x_BD, w_in_DF, w_out_FD = (rng.standard_normal(s) for s in ((B * L, D), (D, F), (F, D)))
    with ref_einsum.count_flops() as fwd:
        y_BD, saved = ref_mlp.mlp_forward(x_BD, w_in_DF, w_out_FD)
    with ref_einsum.count_flops() as bwd:
        ref_mlp.mlp_backward(np.ones_like(y_BD), saved)
    dims = replace(TINY, gated=False)
    ours = [m for m in dims.matmuls() if m.part == "mlp"]
    if fwd.total != sum(_price(dims, B, L, m.forward) for m in ours):
        raise AssertionError("ref.mlp's forward costs other FLOPs than the sheet's up and down")
    if bwd.total != sum(_price(dims, B, L, n) for m in ours for n in m.backward):
        raise AssertionError("ref.mlp's backward costs other FLOPs than the sheet's gradients")


@functools.cache
def _checked_head() -> None:
    """The sheet's head, forward and backward, counted at TINY sizes: what it is priced at."""
    rng = np.random.default_rng(4)
    x_BLD, w_head_DV = (rng.standard_normal(s) for s in ((TINY_B, TINY_L, TINY.D),
                                                          (TINY.D, TINY.V)))
    with ref_einsum.count_flops() as fwd:
        logits_BLV, saved = head_forward(x_BLD, w_head_DV)
    with ref_einsum.count_flops() as bwd:
        head_backward(np.ones_like(logits_BLV), saved)
    if (fwd.total, bwd.total) != (_price(TINY, TINY_B, TINY_L, HEAD.forward),
                                  sum(_price(TINY, TINY_B, TINY_L, n) for n in HEAD.backward)):
        raise AssertionError("the head's einsums cost other FLOPs than the sheet prices")


def _checked() -> None:
    _traced_block()
    _checked_decoder()
    _checked_two_matrix_mlp()
    _checked_head()


# Pricing a block ----------------------------------------------------------------------------


def forward_parts(dims: Dims, B: int, L: int) -> dict[str, int]:
    """Each matmul's forward FLOPs in one block, B sequences of L tokens."""
    return {m.key: _price(dims, B, L, m.forward) for m in dims.matmuls()}


def backward_parts(dims: Dims, B: int, L: int) -> dict[str, tuple[int, int]]:
    return {m.key: tuple(_price(dims, B, L, n) for n in m.backward) for m in dims.matmuls()}


@dataclass(frozen=True)
class Priced:
    dims: Dims
    forward: dict[str, int]
    backward: dict[str, tuple[int, int]]
    head_forward: int
    head_backward: tuple[int, int]

    def part(self, name: str) -> int:
        return sum(n for k, n in self.forward.items() if BY_KEY[k].part == name)

    @property
    def block_forward(self) -> int:
        return sum(self.forward.values())

    @property
    def block_backward(self) -> int:
        return sum(sum(pair) for pair in self.backward.values())

    @property
    def model_forward(self) -> int:
        return self.dims.n_layers * self.block_forward + self.head_forward

    @property
    def model_backward(self) -> int:
        return self.dims.n_layers * self.block_backward + sum(self.head_backward)

    def total(self, what: str) -> int:
        return {"block-forward": self.block_forward, "block-backward": self.block_backward,
                "block-step": self.block_forward + self.block_backward,
                "head": self.head_forward, "head-backward": sum(self.head_backward),
                "model-forward": self.model_forward, "model-backward": self.model_backward,
                "model-step": self.model_forward + self.model_backward,
                **{p: self.part(p) for p in PARTS}}[what]


TOTALS = ["block-forward", "block-backward", "block-step", "head", "head-backward",
          "model-forward", "model-backward", "model-step", *PARTS]


def priced(spec: ModelSpec, B: int, T: int) -> Priced:
    """The model's block and head at B sequences of T tokens, checked against the reference
    (tiny runs) and against mlgrind.calc.flops (the totals it reports)."""
    _checked()
    dims = _dims(spec)
    p = Priced(dims, forward_parts(dims, B, T), backward_parts(dims, B, T),
               _price(dims, B, T, HEAD.forward),
               tuple(_price(dims, B, T, n) for n in HEAD.backward))
    calc_parts = calc_flops.layer_forward_flops(spec, B, T, moe=False)
    ours = {"attention projections": p.part("projections"),
            "attention scores + weighted sum": p.part("core"), "MLP": p.part("mlp")}
    if ours != calc_parts:
        raise AssertionError(f"{spec.name}: the block's parts {ours} are not calc's {calc_parts}")
    if p.model_forward != calc_flops.forward_flops(spec, B, T):
        raise AssertionError(f"{spec.name}: layers × block + head is not calc's forward")
    if B * T * calc_flops.training_flops_per_token(spec, T) != p.total("model-step"):
        raise AssertionError(f"{spec.name}: forward + backward is not calc's training step")
    return p


def _priced(model: str, B: int, T: int) -> Priced:
    B, T = _tokens(B, T)
    return priced(_spec(model), B, T)


# Formatting ---------------------------------------------------------------------------------


def si(n: float) -> str:
    """Three significant digits under a decimal prefix: `137 G`, `2.06 T`."""
    for scale, prefix in ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"),
                          (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}"
    return f"{n:.3g}"


def percent(part: float, whole: float) -> str:
    p = 100 * part / whole
    return f"{p:.0f} %" if p >= 10 else f"{p:.2g} %"


def _symbol(names: str) -> str:
    """2·B·L·D·H·K: the letters of the einsum, where G·H in a grouped spec is written H (the
    group's H / G query heads times G groups)."""
    letters = _letters(names)
    if {"G", "H"} <= letters:
        letters.discard("G")
    return "2·" + "·".join(sorted(letters, key=ORDER.index))


def _specs(m: Matmul) -> tuple[str, ...]:
    return tuple(einsum_spec(n) for n in (m.forward, *m.backward))


def _choice(name: str, value: object, options: list[str]) -> str:
    if text_arg(name, value) not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def _matmul(key: str) -> Matmul:
    return BY_KEY[_choice("matmul", key, list(BY_KEY))]


# Values for sheets and cards ----------------------------------------------------------------


@calc(worst=["block_einsum('mix', 'v')"])
def block_einsum(matmul: str, grad: str | None = None) -> str:
    """A matmul's forward einsum string, or (`grad`: the operand, like `x`, `w_q`, `k`) the
    backward einsum giving that operand's gradient; checked to be one the reference runs."""
    m = _matmul(matmul)
    names = m.names(None if grad is None else text_arg("grad", grad))
    _checked()
    return einsum_spec(names)


@calc(worst=["block_symbol('mix')"])
def block_symbol(matmul: str) -> str:
    """The matmul's FLOPs in letters, `2·B·L·D·H·K`."""
    return _symbol(_matmul(matmul).forward)


def _value(what: str, model: str, T: int, B: int) -> int:
    _choice("what", what, [*BY_KEY, *TOTALS])
    p = _priced(model, B, T)
    if what == "head":
        return p.head_forward
    return p.forward[what] if what in p.forward else p.total(what)


@calc(worst=["block_flops('model-step', 'llama-3.1-405b', 16777216, 4096)"])
def block_flops(what: str, model: str = "llama-3-8b", T: int = 4096, B: int = 1) -> str:
    """FLOPs of one matmul's forward (`q`, `k`, …, `head`), of a part of the block forward
    (`projections`, `core`, `mlp`), or a total (`block-forward`, `block-backward`,
    `block-step`, `head`, `head-backward`, `model-forward`, `model-backward`, `model-step`), at
    B sequences of T tokens: `137 GFLOP (137,438,953,472)`."""
    return flops_text(_value(what, model, T, B))


@calc(worst=["block_short('model-step', 'llama-3.1-405b', 16777216, 4096)"])
def block_short(what: str, model: str = "llama-3-8b", T: int = 4096, B: int = 1) -> str:
    """The same as `block_flops`, three significant digits only: `137 GFLOP`."""
    return si(_value(what, model, T, B)) + "FLOP"


@calc(worst=["block_share('core', 'llama-3.1-405b', 16777216)"])
def block_share(what: str, model: str = "llama-3-8b", T: int = 4096) -> str:
    """A matmul's or a part's share of the block forward."""
    _choice("what", what, [m.key for m in MATMULS] + list(PARTS))
    p = _priced(model, 1, T)
    value = p.forward.get(what, 0) if what in BY_KEY else p.part(what)
    return percent(value, p.block_forward)


@calc(worst=["block_ratio('step', 'llama-3.1-405b')"])
def block_ratio(part: str = "backward", model: str = "llama-3-8b", T: int = 4096) -> str:
    """The block's backward (or step: forward + backward) over its forward, summed over the
    matmuls: `2`, `3`."""
    _choice("part", part, ["backward", "step"])
    p = _priced(model, 1, T)
    value = p.block_backward + (p.block_forward if part == "step" else 0)
    return f"{Fraction(value, p.block_forward)}"


@calc(worst=["block_counted_ratio()"])
def block_counted_ratio() -> str:
    """Backward over forward of one block as the reference's counter measures it, softmax row
    sum included (tiny sizes, K = 4: the row sum weighs 1/K of the scores there)."""
    traced = _traced_block()
    return f"{traced.backward_flops / traced.forward_flops:.3f}"


@calc(worst=["block_row_sum('llama-3.1-405b', 16777216)"])
def block_row_sum(model: str = "llama-3-8b", T: int = 4096) -> str:
    """The softmax backward's row sum Σ_m p·d_p against the block's backward matmuls."""
    spec = _spec(model)
    dims = _dims(spec)
    p = _priced(model, 1, T)
    return percent(_price(dims, 1, T, ROW_SUM), p.block_backward)


@calc(worst=["block_count('matmuls')"])
def block_count(what: str = "matmuls", mlp: str = "gated") -> str:
    """How many matmuls a block runs forward (`matmuls`), or backward (`backward`), with a
    `gated` (SwiGLU) or `two-matrix` (GELU, ReLU) MLP; in words."""
    _choice("what", what, ["matmuls", "backward"])
    _choice("mlp", mlp, ["gated", "two-matrix"])
    dims = replace(TINY, gated=mlp == "gated")
    n = len(dims.matmuls()) * (2 if what == "backward" else 1)
    words = {9: "nine", 8: "eight", 18: "eighteen", 16: "sixteen"}
    return words.get(n, str(n))


# Per token: the shortcut, from the calculator ------------------------------------------------

PER_TOKEN = ["n-total", "n-matmul", "forward-weights", "attention", "forward", "step", "6n",
             "attention-share"]


@calc(worst=["block_per_token('attention-share', 'llama-3.1-405b', 16777216)"])
def block_per_token(what: str, model: str = "llama-3-8b", T: int = 4096,
                    attention: str = "palm") -> str:
    """Per token of a training sequence of T tokens, from mlgrind.calc: parameters (`n-total`,
    `n-matmul`: those a token is multiplied by), forward FLOPs of the weights (2N), of the
    attention core (`attention`, by the calculator's `attention` convention), `forward`,
    `step` (3 × forward), `6n`, and how much attention adds to 6N (`attention-share`)."""
    _choice("what", what, PER_TOKEN)
    _choice("attention", attention, list(calc_flops.ATTENTION))
    spec = _spec(model, dense=False)
    T = int_arg("T", T, 1, MAX_T)
    c = count(spec)
    forward = calc_flops.forward_flops_per_token(spec, T, attention)
    attention_flops = calc_flops.attention_flops_per_token(spec, T, attention)
    values = {"n-total": c.total, "n-matmul": c.matmul_per_token,
              "forward-weights": forward - attention_flops, "attention": attention_flops,
              "forward": forward,
              "step": calc_flops.training_flops_per_token(spec, T, False, attention),
              "6n": calc_flops.six_n_d(c.matmul_per_token, 1)}
    if what == "attention-share":
        return percent(values["step"] - values["6n"], values["6n"])
    if what.startswith("n-"):
        return f"{values[what]:,}"
    return si(values[what]) + "FLOP"


CONVENTIONS = {"palm": "dense (einsum, PaLM)", "causal": "causal (FlashAttention)",
               "kaplan": "Kaplan Table 1", "none": "none (6N)"}


@table(worst=["block_conventions_table('llama-3.1-405b', 16777216)"])
def block_conventions_table(model: str = "llama-3-8b", T: int = 4096) -> list[list[str]]:
    """How each convention of mlgrind.calc counts attention, per token of a T-token training
    sequence: the core's forward FLOPs, the training step, and what it adds to 6N."""
    spec = _spec(model, dense=False)
    T = int_arg("T", T, 1, MAX_T)
    six_n = calc_flops.six_n_d(count(spec).matmul_per_token, 1)
    rows = []
    for convention, label in CONVENTIONS.items():
        core = calc_flops.attention_flops_per_token(spec, T, convention)
        step = calc_flops.training_flops_per_token(spec, T, attention=convention)
        rows.append([label, si(core) + "FLOP" if core else "0", si(step) + "FLOP",
                     "+" + percent(step - six_n, six_n) if step > six_n else "—"])
    return rows


# Which term dominates: attention core against the weights ----------------------------------


def weights_per_token(dims: Dims) -> int:
    """One block's weight matmuls (everything but the core) per token: linear in B·L."""
    return sum(n for k, n in forward_parts(dims, 1, 1).items() if BY_KEY[k].part != "core")


def core_per_token_per_position(dims: Dims) -> int:
    """The core's forward FLOPs per token grow as c·L (dense): c, from L = 1."""
    return sum(n for k, n in forward_parts(dims, 1, 1).items() if BY_KEY[k].part == "core")


def causal_factor(spec: ModelSpec, T: int = 4096) -> Fraction:
    """What a causal kernel runs of the dense core: mlgrind.calc's causal convention over its
    dense one (one half: the masked blocks are skipped)."""
    return Fraction(calc_flops.attention_flops_per_token(spec, T, "causal"),
                    calc_flops.attention_flops_per_token(spec, T, "palm"))


def crossover(dims: Dims, spec: ModelSpec, counting: str) -> Fraction:
    """The sequence length at which the core costs as much as every weight matmul of the block:
    weights = c·L (dense), or c·L·(causal factor) when the kernel skips the masked half."""
    _checked()
    factor = Fraction(1) if counting == "dense" else causal_factor(spec)
    return Fraction(weights_per_token(dims)) / (core_per_token_per_position(dims) * factor)


def _length(n: Fraction) -> str:
    return f"{int(n):,}" if n.denominator == 1 else f"{float(n):,.1f}"


@calc(worst=["block_crossover('llama-3.1-405b', 'causal')"])
def block_crossover(model: str = "llama-3-8b", counting: str = "dense") -> str:
    """The L at which the attention core's forward FLOPs equal all the block's weight matmuls'."""
    _choice("counting", counting, ["dense", "causal"])
    spec = _spec(model)
    return _length(crossover(_dims(spec), spec, counting))


@calc(worst=["block_crossover_per_d('llama-3.1-405b', 'causal')"])
def block_crossover_per_d(model: str = "llama-3-8b", counting: str = "dense") -> str:
    """The crossover in units of the model's D, to three significant digits."""
    _choice("counting", counting, ["dense", "causal"])
    spec = _spec(model)
    return f"{float(crossover(_dims(spec), spec, counting) / spec.D):.3g}"


def _mha_rule_dims(D: int) -> Dims:
    """GPT-3's shape rule: MHA with H·K = D, a two-matrix MLP with F = 4D (Kaplan's d_attn =
    d_model, d_ff = 4·d_model)."""
    H = 8
    return Dims(D=D, H=H, G=H, K=D // H, F=4 * D, V=1, gated=False)


@calc(worst=["block_crossover_rule('causal')"])
def block_crossover_rule(counting: str = "dense") -> str:
    """The crossover in units of D for MHA with H·K = D and F = 4D: `6` dense, `12` causal
    (the same at any D: checked at two widths)."""
    _choice("counting", counting, ["dense", "causal"])
    spec = _spec("gpt3-175b")
    ratios = {crossover(_mha_rule_dims(D), spec, counting) / D for D in (512, 4096)}
    if len(ratios) != 1:
        raise AssertionError(f"the crossover is not proportional to D: {ratios}")
    return str(ratios.pop())


@calc(worst=["block_coefficient('core', 4)"])
def block_coefficient(term: str, passes: int = 1) -> str:
    """MHA with H·K = D, F = 4D, per layer: the weight matmuls cost c·B·L·D² (`weights`), the
    core c·B·L²·D (`core`), in `passes` passes (1 forward, 3 a step, 4 with full
    recomputation): 24 and 4 forward, Narayanan et al.'s 72 and 12, 96 and 16."""
    _choice("term", term, ["weights", "core"])
    passes = int_arg("passes", passes, 1, 4)
    D = 4096
    dims = _mha_rule_dims(D)
    value = (Fraction(weights_per_token(dims), D**2) if term == "weights" else
             Fraction(core_per_token_per_position(dims), D))
    return f"{value * passes}"


@calc(worst=["block_head_blocks('llama-3.1-405b')"])
def block_head_blocks(model: str = "llama-3-8b") -> str:
    """The output head's FLOPs per token in units of one block's weight matmuls."""
    spec = _spec(model)
    dims = _dims(spec)
    return f"{_price(dims, 1, 1, HEAD.forward) / weights_per_token(dims):.3g}"


@table(worst=[("block_crossover_table(models=('gpt3-175b', 'llama-3-8b', 'llama-3-70b', "
               "'llama-3.1-405b', 'qwen2.5-72b', 'mistral-7b', 'llama-2-70b', 'gpt2'))")])
def block_crossover_table(models: tuple[str, ...] = ("gpt3-175b", "llama-3-8b", "llama-3-70b",
                                                     "llama-3.1-405b")) -> list[list[str]]:
    """Per model: D, the crossover L* (dense and causal), L*/D, and the model's context (bold
    when it passes L*: at full context its core costs more than its weights)."""
    if not (isinstance(models, tuple) and 1 <= len(models) <= 8):
        raise ValueError(f"models must be a tuple of one to eight model names, got {models!r}")
    rows = []
    for model in models:
        spec = _spec(model)
        dims = _dims(spec)
        dense, causal = (crossover(dims, spec, c) for c in ("dense", "causal"))
        context = f"{spec.context:,}"
        rows.append([model, f"{spec.D:,}", _length(dense), f"{float(dense / spec.D):.3g}",
                     _length(causal), f"**{context}**" if spec.context > dense else context])
    return rows


@table(worst=["block_flops_table('llama-3.1-405b', 16777216, 'llama-3-70b', 4096)"])
def block_flops_table(model: str = "llama-3-8b", T: int = 4096, compare: str = "llama-3-70b",
                      B: int = 1) -> list[list[str]]:
    """One block, a row per matmul: its forward einsum, its two backward einsums (gradients of
    the first and of the second operand), FLOPs in letters, then the forward FLOPs and share
    for `model` and for `compare` at B sequences of T tokens; then the block's totals, the
    output head, the whole model and a training step, each checked against mlgrind.calc."""
    ours, theirs = _priced(model, B, T), _priced(compare, B, T)
    if ours.dims.gated != theirs.dims.gated:
        raise ValueError("compare two models with the same kind of MLP (both SwiGLU or not)")
    rows = []

    def numbers(value: tuple[int, int], whole: tuple[int, int] | None, bold: bool = False):
        cells = []
        for v, w in zip(value, whole or (None, None), strict=True):
            text = si(v)
            cells += [f"**{text}**" if bold else text, percent(v, w) if w else ""]
        return cells

    whole = (ours.block_forward, theirs.block_forward)
    # Matmuls running the same einsums (k and v; gate and up) share a row, priced each.
    groups: list[list[Matmul]] = []
    for m in ours.dims.matmuls():
        if groups and _specs(groups[-1][0]) == _specs(m):
            groups[-1].append(m)
        else:
            groups.append([m])
    for group in groups:
        m = group[0]
        label = ", ".join(g.label.split(" (")[0] for g in group) + (
            f" ({m.label.split(' (')[1]}" if " (" in m.label else "") + (
            ", each" if len(group) > 1 else "")
        rows.append([label, f"`{einsum_spec(m.forward)}`",
                     " · ".join(f"`{einsum_spec(n)}`" for n in m.backward), _symbol(m.forward),
                     *numbers((ours.forward[m.key], theirs.forward[m.key]), whole)])
    ratio = Fraction(ours.block_backward, ours.block_forward)
    if ratio != Fraction(theirs.block_backward, theirs.block_forward):
        raise AssertionError("the backward ratio depends on the model")
    rows.append(["**block forward**", "", "", "",
                 *numbers((ours.block_forward, theirs.block_forward), None, bold=True)])
    rows.append(["**block backward**", "", "", f"{ratio} × forward",
                 *numbers((ours.block_backward, theirs.block_backward), None, bold=True)])
    rows.append([HEAD.label + ", once", f"`{einsum_spec(HEAD.forward)}`",
                 " · ".join(f"`{einsum_spec(n)}`" for n in HEAD.backward), _symbol(HEAD.forward),
                 *numbers((ours.head_forward, theirs.head_forward), None)])
    rows.append(["**model forward**", "", "", "× layers, + head",
                 *numbers((ours.model_forward, theirs.model_forward), None, bold=True)])
    step = Fraction(ours.total("model-step"), ours.model_forward)
    rows.append(["**training step**", "", "", f"{step} × forward",
                 *numbers((ours.total("model-step"), theirs.total("model-step")), None, bold=True)])
    return rows


@calc(worst=["block_layers('llama-3.1-405b')"])
def block_layers(model: str = "llama-3-8b") -> int:
    return _spec(model, dense=False).n_layers


@calc(worst=["block_dims('llama-3.1-405b')"])
def block_dims(model: str = "llama-3-8b") -> str:
    """The sizes the block's FLOPs use, from the model's bundled config."""
    spec = _spec(model, dense=False)
    F = spec.F_expert if spec.moe_layers else spec.F
    return (f"D = {spec.D:,}, H = {spec.H}, G = {spec.G}, K = {spec.K}, F = {F:,}, "
            f"V = {spec.V:,}, {spec.n_layers} layers")


# A mixture-of-experts layer -------------------------------------------------------------------


@functools.cache
def _checked_moe() -> None:
    """ref.moe, counted: the router's FLOPs plus top_k two-matrix MLPs per token, whatever E:
    what mlgrind.calc charges an MoE layer's experts (with three matrices when gated)."""
    B, D, F, E, k = 6, 5, 7, 4, 2
    rng = np.random.default_rng(3)
    x_BD = rng.standard_normal((B, D))
    weights = (rng.standard_normal((D, E)), rng.standard_normal((E, D, F)),
               rng.standard_normal((E, F, D)))
    with ref_einsum.count_flops() as counted:
        ref_moe.moe_forward(x_BD, *weights, k)
    router = ref_einsum.flops("bd,de->be", {"b": B, "d": D, "e": E})
    dims = Dims(D=D, H=1, G=1, K=1, F=F, V=1, gated=False)
    experts = sum(n for key, n in forward_parts(dims, B, 1).items() if BY_KEY[key].part == "mlp")
    if counted.total != router + k * experts:
        raise AssertionError("ref.moe does not cost the router plus top_k experts per token")


ROUTER = "x_BLD, w_router_DE -> logits_BLE"


def moe_parts(spec: ModelSpec, B: int, T: int) -> dict[str, int]:
    """An MoE layer's forward: the router, the top_k routed and the shared experts, the same
    had every token gone through all E experts, and the attention as in a dense block."""
    _checked()
    _checked_moe()
    expert = Dims(spec.D, spec.H, spec.G, spec.K, spec.F_expert, spec.V, spec.mlp_gated)
    one_expert = sum(n for key, n in forward_parts(expert, B, T).items()
                     if BY_KEY[key].part == "mlp")
    sizes = {"b": B, "l": T, "d": spec.D, "e": spec.E}
    p = forward_parts(expert, B, T)
    parts = {"projections": sum(n for key, n in p.items() if BY_KEY[key].part == "projections"),
             "core": sum(n for key, n in p.items() if BY_KEY[key].part == "core"),
             "router": ref_einsum.flops(einsum_spec(ROUTER), sizes),
             "experts": (spec.top_k + spec.n_shared_experts) * one_expert,
             "all-experts": (spec.E + spec.n_shared_experts) * one_expert}
    calc_parts = calc_flops.layer_forward_flops(spec, B, T, moe=True)
    if (parts["router"], parts["experts"]) != (calc_parts["router"],
                                               calc_parts["experts (top-k + shared)"]):
        raise AssertionError(f"{spec.name}: the MoE layer is not calc's {calc_parts}")
    return parts


def _moe_spec(model: str) -> ModelSpec:
    spec = _spec(model, dense=False)
    if not spec.moe_layers:
        raise ValueError(f"{model} has no mixture-of-experts layers")
    return spec


@table(worst=["moe_block_table('mixtral-8x7b', 16777216)"])
def moe_block_table(model: str = "mixtral-8x7b", T: int = 4096) -> list[list[str]]:
    """One MoE layer of the model on one sequence of T tokens: each part's einsum, FLOPs in
    letters, forward FLOPs and share; then the same layer had every expert run."""
    spec = _moe_spec(model)
    T = int_arg("T", T, 1, MAX_T)
    parts = moe_parts(spec, 1, T)
    layer = sum(v for k, v in parts.items() if k != "all-experts")
    k = spec.top_k + spec.n_shared_experts
    gated = 3 if spec.mlp_gated else 2
    rows = [["attention, as dense", "", si(parts["projections"] + parts["core"]),
             percent(parts["projections"] + parts["core"], layer)],
            [f"router `{einsum_spec(ROUTER)}`", _symbol(ROUTER), si(parts["router"]),
             percent(parts["router"], layer)],
            [f"experts: top {k} of {spec.E}", f"2·B·L·{gated}·D·F·k", si(parts["experts"]),
             percent(parts["experts"], layer)],
            ["**layer forward**", "", f"**{si(layer)}**", ""],
            [f"all {spec.E} experts run", f"2·B·L·{gated}·D·F·E", si(parts["all-experts"]),
             f"{Fraction(parts['all-experts'], parts['experts'])} × experts"]]
    return rows


@calc(worst=["moe_block_ratio('mixtral-8x7b')"])
def moe_block_ratio(model: str = "mixtral-8x7b") -> str:
    """How many times more expert FLOPs every expert would cost than the top_k a token takes:
    E / top_k, while the expert parameters are all there."""
    spec = _moe_spec(model)
    parts = moe_parts(spec, 1, 1)
    return f"{Fraction(parts['all-experts'], parts['experts'])}"


@calc(worst=["moe_block_flops('experts', 'mixtral-8x7b', 16777216)"])
def moe_block_flops(what: str, model: str = "mixtral-8x7b", T: int = 4096) -> str:
    """One MoE layer's forward part (`router`, `experts`, `all-experts`) on T tokens."""
    _choice("what", what, ["router", "experts", "all-experts"])
    spec = _moe_spec(model)
    return flops_text(moe_parts(spec, 1, int_arg("T", T, 1, MAX_T))[what])


@calc(worst=["moe_block_top_k('mixtral-8x7b')"])
def moe_block_top_k(model: str = "mixtral-8x7b") -> str:
    spec = _moe_spec(model)
    return f"top {spec.top_k} of {spec.E} experts" + (
        f" + {spec.n_shared_experts} shared" if spec.n_shared_experts else "")


@calc(worst=["block_step_coefficient('attention', 4)"])
def block_step_coefficient(term: str, passes: int = 3) -> str:
    """Per token, in `passes` passes (3: a training step): c·N for the weights (`n`: 6 in a
    step, the 6N rule), c·n_layers·L·H·K for the dense core (`attention`: PaLM's
    12·L·H·Q·T), read off the sheet's matmuls at unit sizes."""
    _choice("term", term, ["n", "attention"])
    passes = int_arg("passes", passes, 1, 4)
    unit = Dims(D=1, H=1, G=1, K=1, F=1, V=1, gated=True)
    per_pass = (_price(unit, 1, 1, HEAD.forward) if term == "n"  # FLOPs per weight and token
                else core_per_token_per_position(unit))
    return str(passes * per_pass)


@calc(worst=["moe_block_einsum()"])
def moe_block_einsum() -> str:
    """The router's einsum: every token scored against every expert."""
    return einsum_spec(ROUTER)


@calc(worst=["moe_block_short('all-experts', 'mixtral-8x7b', 16777216)"])
def moe_block_short(what: str, model: str = "mixtral-8x7b", T: int = 4096) -> str:
    """`moe_block_flops` to three significant digits: `2.89 TFLOP`."""
    _choice("what", what, ["router", "experts", "all-experts"])
    spec = _moe_spec(model)
    return si(moe_parts(spec, 1, int_arg("T", T, 1, MAX_T))[what]) + "FLOP"


@calc(worst=["moe_block_share('experts', 'mixtral-8x7b', 16777216)"])
def moe_block_share(what: str, model: str = "mixtral-8x7b", T: int = 4096) -> str:
    """A part's share of the MoE layer's forward (attention, router, top-k experts)."""
    _choice("what", what, ["router", "experts"])
    parts = moe_parts(_moe_spec(model), 1, int_arg("T", T, 1, MAX_T))
    layer = sum(v for k, v in parts.items() if k != "all-experts")
    return percent(parts[what], layer)


@calc(worst=["block_head_denominator(4)"])
def block_head_denominator(layer_passes: int = 4) -> str:
    """The head's term in Narayanan et al.'s per-iteration FLOPs, V / (c·l·h): the layers run
    `layer_passes` passes (4 with full recomputation, 3 without), the head always 3 (it is not
    recomputed), so c = layer_passes·24 / (3·2): 16, or 12 without recomputation."""
    passes = int_arg("layer_passes", layer_passes, 3, 4)
    return str(Fraction(block_coefficient("weights", passes)) / int(block_step_coefficient("n")))


@calc(worst=["block_mlp_coefficient('two-matrix')"])
def block_mlp_coefficient(mlp: str = "gated") -> str:
    """The MLP's forward FLOPs per token in units of D·F: `gated` (SwiGLU: gate, up, down) or
    `two-matrix` (GELU, ReLU: up, down), read off the sheet's matmuls at unit sizes."""
    _choice("mlp", mlp, ["gated", "two-matrix"])
    unit = Dims(D=1, H=1, G=1, K=1, F=1, V=1, gated=mlp == "gated")
    return str(sum(n for k, n in forward_parts(unit, 1, 1).items() if BY_KEY[k].part == "mlp"))


@calc(worst=["block_gqa_growth('llama-3.1-405b', 16777216)"])
def block_gqa_growth(model: str = "llama-3-70b", T: int = 4096) -> str:
    """How much one block's forward would grow with a kv head per query head (MHA, G = H)
    instead of the model's G: only the k and v projections change."""
    spec = _spec(model)
    T = int_arg("T", T, 1, MAX_T)
    _checked()
    dims = _dims(spec)
    gqa = sum(forward_parts(dims, 1, T).values())
    mha = sum(forward_parts(replace(dims, G=dims.H), 1, T).values())
    return "+" + percent(mha - gqa, gqa)
