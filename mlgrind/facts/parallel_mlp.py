"""Seed steps "row-sharded (tensor-parallel) MLP", "sharded column-parallel MLP" and
"data-parallel MLP" (sheet 03), run on simulated ranks.

Each scheme is the reference code itself (`ref.mlp`: row_parallel_*, column_parallel_*,
megatron_* and data_parallel_*) run forward and backward on a `ref.collectives.Comm`. What a rank
holds is read off the per-rank arrays, which collective runs in which pass off the communicator's
log, and the bytes each rank sends off its ledger; nothing is a closed form except the
real-model sizes (`pmlp_model_bytes`), which are too large to simulate and use the ring formulas
of `ref.collectives` that tests/test_facts_parallel_mlp.py checks against the ledger.

Shapes are written symbolically, `(D, F/S)`: the scheme is run on sizes B = 5S, D = 3, F = 7S,
whose every block length is distinct, and each length is read back as the letter it came from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..ref import collectives as co
from ..ref import mlp
from .core import calc, check_elements, int_arg, size_text, table, text_arg

SCHEMES = {"row": "row-parallel", "column": "column-parallel",
           "megatron": "Megatron: column then row", "data": "data-parallel"}
PHASES = ("forward", "backward")
# The tensors of the MLP in the order data flows through them, by their suffixed names.
TENSORS = {"x": "x_BD", "w_in": "w_in_DF", "a": "a_BF", "w_out": "w_out_FD", "y": "y_BD"}
ROLE = {"all_reduce": "all-reduce", "all_gather": "all-gather", "reduce_scatter": "reduce-scatter"}
MAX_RANKS = 16
# One run's arrays (B·D, D·F, B·F elements) and its work (B·D·F): the table runs the four schemes
# forward and backward in a fraction of a second, and S = 16 replicas of D·F stay within ~100 MB.
MAX_ELEMENTS, MAX_WORK = 1 << 18, 1 << 24
DTYPE = np.float32  # the simulated runs' dtype: 4 bytes per element
_DTYPES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass
class _Watched(co.Comm):
    """A communicator that also notes, for each collective, the pass it ran in and the shape
    each rank got back (the log keeps only what went in)."""

    phase: str = "forward"
    phases: list[str] = field(default_factory=list)
    outputs: list[tuple[int, ...]] = field(default_factory=list)

    def _note(self, out: list[np.ndarray]) -> list[np.ndarray]:
        self.phases.append(self.phase)
        self.outputs.append(out[0].shape)
        return out

    def all_reduce(self, xs, tag=""):
        return self._note(super().all_reduce(xs, tag))

    def all_gather(self, xs, axis=0, tag=""):
        return self._note(super().all_gather(xs, axis, tag))

    def reduce_scatter(self, xs, axis=0, tag=""):
        return self._note(super().reduce_scatter(xs, axis, tag))


@dataclass(frozen=True)
class Collective:
    """One collective of a scheme: in which pass, what it carried, and what rank 0 sent."""

    phase: str
    collective: str  # "all_reduce"
    tensor: str  # the suffixed name the reference tags it with: "y_BD", "d_a_BF"
    shape_in: tuple[int, ...]  # what rank 0 puts in
    shape_out: tuple[int, ...]  # what rank 0 gets back
    sent: int  # bytes rank 0 sent, from the ledger
    received: int  # bytes rank 0 received, from the ledger
    busiest: int  # bytes the busiest rank sent
    steps: int
    itemsize: int

    @property
    def full_bytes(self) -> int:
        """The n of the ring formulas: what each rank holds for an all-reduce, the gathered
        whole for an all-gather, the unscattered whole for a reduce-scatter."""
        shape = self.shape_out if self.collective == "all_gather" else self.shape_in
        return int(np.prod(shape)) * self.itemsize


@dataclass(frozen=True)
class Run:
    """One scheme, forward and backward, on simulated ranks; arrays reassembled whole."""

    scheme: str
    S: int
    owned: dict[str, tuple[int, ...]]  # rank 0's block of each tensor of TENSORS
    collectives: tuple[Collective, ...]
    y_BD: np.ndarray
    grads: tuple[np.ndarray, np.ndarray, np.ndarray]  # d_x_BD, d_w_in_DF, d_w_out_FD


def inputs(B: int, D: int, F: int, dtype=DTYPE, seed: int = 0):
    """x_BD, w_in_DF, w_out_FD and the upstream gradient d_y_BD, random and scaled."""
    rng = np.random.default_rng(seed)
    x_BD = rng.standard_normal((B, D)).astype(dtype)
    w_in_DF = (rng.standard_normal((D, F)) / np.sqrt(D)).astype(dtype)
    w_out_FD = (rng.standard_normal((F, D)) / np.sqrt(F)).astype(dtype)
    d_y_BD = rng.standard_normal((B, D)).astype(dtype)
    return x_BD, w_in_DF, w_out_FD, d_y_BD


def run(scheme: str, B: int, D: int, F: int, S: int, dtype=DTYPE, seed: int = 0) -> Run:
    """Run `scheme` of the reference code forward, then backward from a random d_y_BD, on S
    simulated ranks. Sizes are checked by the callers (`_sizes`)."""
    x_BD, w_in_DF, w_out_FD, d_y_BD = inputs(B, D, F, dtype, seed)
    comm = _Watched(S)
    w_in_ranks, w_out_ranks = co.shard(w_in_DF, S, axis=1), co.shard(w_out_FD, S, axis=0)
    x_ranks = co.shard(x_BD, S, axis=0)
    if scheme == "row":
        y_BD, saved = mlp.row_parallel_forward(comm, x_BD, w_in_DF, w_out_ranks)
        comm.phase = "backward"
        d_x_BD, d_w_in_DF, d_w_out = mlp.row_parallel_backward(comm, d_y_BD, saved)
        grads = (d_x_BD, d_w_in_DF, np.concatenate(d_w_out, axis=0))
        held = {"x": x_BD, "w_in": w_in_DF, "w_out": w_out_ranks[0]}
    elif scheme == "column":
        y_BD, saved = mlp.column_parallel_forward(comm, x_BD, w_in_ranks, w_out_FD)
        comm.phase = "backward"
        d_x_BD, d_w_in, d_w_out_FD = mlp.column_parallel_backward(comm, d_y_BD, saved)
        grads = (d_x_BD, np.concatenate(d_w_in, axis=1), d_w_out_FD)
        held = {"x": x_BD, "w_in": w_in_ranks[0], "w_out": w_out_FD}
    elif scheme == "megatron":
        y_BD, saved = mlp.megatron_forward(comm, x_BD, w_in_ranks, w_out_ranks)
        comm.phase = "backward"
        d_x_BD, d_w_in, d_w_out = mlp.megatron_backward(comm, d_y_BD, saved)
        grads = (d_x_BD, np.concatenate(d_w_in, axis=1), np.concatenate(d_w_out, axis=0))
        held = {"x": x_BD, "w_in": w_in_ranks[0], "w_out": w_out_ranks[0]}
    else:
        y_ranks, saved = mlp.data_parallel_forward(x_ranks, w_in_DF, w_out_FD, comm)
        comm.phase = "backward"
        d_x_ranks, d_w_in_DF, d_w_out_FD = mlp.data_parallel_backward(
            comm, co.shard(d_y_BD, S, axis=0), saved)
        y_BD = np.concatenate(y_ranks, axis=0)
        grads = (np.concatenate(d_x_ranks, axis=0), d_w_in_DF, d_w_out_FD)
        held = {"x": x_ranks[0], "w_in": w_in_DF, "w_out": w_out_FD}
    # Rank 0's block of a_BF: its rows of x by the F block its second matmul reads (the rows
    # of its w_out when w_out is split, else the columns of its w_in).
    f_block = held["w_out"].shape[0] if scheme in ("row", "megatron") else held["w_in"].shape[1]
    owned = {"x": held["x"].shape, "w_in": held["w_in"].shape, "a": (held["x"].shape[0], f_block),
             "w_out": held["w_out"].shape, "y": (held["x"].shape[0], D)}
    collectives = tuple(
        Collective(phase, record.collective, record.tag, record.shapes[0], out, record.sent[0],
                   record.received[0], max(record.sent), record.steps, np.dtype(dtype).itemsize)
        for record, phase, out in zip(comm.log, comm.phases, comm.outputs, strict=True))
    return Run(scheme, S, owned, collectives, y_BD, grads)


def _scheme(scheme: str) -> str:
    if text_arg("scheme", scheme) not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    return scheme


def _phase(phase: str) -> str:
    if text_arg("phase", phase) not in PHASES:
        raise ValueError(f"phase must be 'forward' or 'backward', got {phase!r}")
    return phase


def _sizes(B: int, D: int, F: int, S: int) -> None:
    """Bounds of a simulated run: B and F split evenly over S (so every rank sends the same
    bytes and the ring formulas hold exactly), each array at most MAX_ELEMENTS."""
    int_arg("S", S, 2, MAX_RANKS)
    for name, n in (("B", B), ("D", D), ("F", F)):
        int_arg(name, n, 1, MAX_ELEMENTS)
    for name, n in (("B", B), ("F", F)):
        if n % S:
            raise ValueError(f"{name} = {n} must split evenly over S = {S} ranks")
    check_elements(max(B * D, D * F, B * F), f"B·D, D·F or B·F with B={B}, D={D}, F={F}",
                   MAX_ELEMENTS, "a run of the reference code takes arrays of")
    check_elements(B * D * F, f"B·D·F with B={B}, D={D}, F={F}", MAX_WORK,
                   "a run of the reference code multiplies at most")


@functools.lru_cache(maxsize=64)
def _collectives(scheme: str, B: int, D: int, F: int, S: int) -> tuple[Collective, ...]:
    """The collectives of one scheme at these sizes (cached: a sheet and its cards ask often)."""
    return run(scheme, B, D, F, S).collectives


# -- symbolic shapes ------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def symbolic(scheme: str, S: int = 2) -> Run:
    """The scheme run on B = 5S, D = 3, F = 7S: every length it meets names one letter (any
    S ≥ 2 gives the same letters)."""
    return run(scheme, 5 * S, 3, 7 * S, S, dtype=np.float64)


def _letters(S: int) -> dict[int, str]:
    return {5 * S: "B", 5: "B/S", 3: "D", 7 * S: "F", 7: "F/S"}


def symbol(shape: tuple[int, ...], S: int = 2) -> str:
    """A shape of the symbolic run in letters: (10, 3) → "(B, D)", (10, 7) → "(B, F/S)"."""
    return "(" + ", ".join(_letters(S)[n] for n in shape) + ")"


def blocked(shape: tuple[int, ...], S: int = 2) -> list[int]:
    """The axes of a symbolic-run shape that hold one rank's block: (3, 7) → [1]."""
    return [i for i, n in enumerate(shape) if _letters(S)[n].endswith("/S")]


def holds(scheme: str, tensor: str) -> str:
    return symbol(symbolic(scheme).owned[tensor])


def collectives_in(scheme: str, phase: str) -> list[Collective]:
    return [c for c in symbolic(scheme).collectives if c.phase == phase]


def carried(c: Collective) -> str:
    """What one rank puts in and gets back, in letters: "(B, D)" or "(B, F/S) → (B, F)"."""
    shape_in, shape_out = symbol(c.shape_in), symbol(c.shape_out)
    return shape_in if shape_in == shape_out else f"{shape_in} → {shape_out}"


# -- values for sheets and cards --------------------------------------------------------------


@calc(worst=["pmlp_holds('data', 'a')"])
def pmlp_holds(scheme: str, tensor: str) -> str:
    """The block of `tensor` (x, w_in, a, w_out, y) rank s holds under `scheme`: "(D, F/S)"."""
    if text_arg("tensor", tensor) not in TENSORS:
        raise ValueError(f"tensor must be one of {', '.join(TENSORS)}, got {tensor!r}")
    return holds(_scheme(scheme), tensor)


@calc(worst=["pmlp_collective('data', 'backward')"])
def pmlp_collective(scheme: str, phase: str) -> str:
    """The collectives of one pass, each with the tensor it carries: "[all-reduce]{.all-reduce}
    of `y_BD`", or "none"."""
    found = collectives_in(_scheme(scheme), _phase(phase))
    return ", ".join(f"[{ROLE[c.collective]}]{{.{ROLE[c.collective]}}} of `{c.tensor}`"
                     for c in found) or "none"


@calc(worst=["pmlp_carried('data', 'backward')"])
def pmlp_carried(scheme: str, phase: str) -> str:
    """The per-rank shape each collective of a pass takes (→ what it gives back, if it
    differs): "(B, F/S) → (B, F)"; "none" when the pass communicates nothing."""
    found = collectives_in(_scheme(scheme), _phase(phase))
    return ", ".join(carried(c) for c in found) or "none"


def pass_bytes(scheme: str, phase: str, B: int, D: int, F: int, S: int) -> int:
    """Bytes rank 0 sent in one pass, every argument checked before the run."""
    scheme, phase = _scheme(scheme), _phase(phase)
    _sizes(B, D, F, S)
    return sum(c.sent for c in _collectives(scheme, B, D, F, S) if c.phase == phase)


@calc(worst=["pmlp_bytes('data', 'backward', B=64, D=256, F=1024, S=16)",
             "pmlp_bytes('column', 'forward', B=64, D=256, F=1024, S=2)"])
def pmlp_bytes(scheme: str, phase: str, B: int = 128, D: int = 128, F: int = 512,
               S: int = 4) -> str:
    """Bytes one rank sends in one pass (fp32), read off the simulated ranks' ledger."""
    return size_text(pass_bytes(scheme, phase, B, D, F, S))


_WORST_RATIO = "pmlp_ratio('row', 'backward', 'megatron', 'forward', B=64, D=256, F=1024, S=16)"


@calc(worst=[_WORST_RATIO])
def pmlp_ratio(scheme: str, phase: str, than_scheme: str, than_phase: str, B: int = 128,
               D: int = 128, F: int = 512, S: int = 4) -> str:
    """How many times the bytes of one pass are those of another, both off the ledger: "2"."""
    for name, value in (("than_scheme", than_scheme), ("scheme", scheme)):
        if text_arg(name, value) not in SCHEMES:
            raise ValueError(f"{name} must be one of {', '.join(SCHEMES)}, got {value!r}")
    _phase(than_phase)
    ours = pass_bytes(scheme, phase, B, D, F, S)
    theirs = pass_bytes(than_scheme, than_phase, B, D, F, S)
    if not theirs:
        raise ValueError(f"{than_scheme} {than_phase} sends nothing: no ratio")
    return f"{ours / theirs:.3g}"


def factor(c: Collective) -> Fraction:
    """What the ledger says a rank sent, as a fraction of the ring formulas' n."""
    return Fraction(c.sent, c.full_bytes)


def _fraction(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


@table(worst=["pmlp_comm_table(B=64, D=256, F=1024, S=16)",
              "pmlp_comm_table(B=64, D=256, F=1024, S=2)"])
def pmlp_comm_table(B: int = 128, D: int = 128, F: int = 512, S: int = 4) -> list[list[str]]:
    """Every collective of the four schemes, forward and backward, from one run of each on S
    simulated ranks in fp32: the tensor and the shape each rank puts in (→ gets back), and the
    bytes rank 0 sent, as read off the ledger and as that share of the ring formulas' n."""
    _sizes(B, D, F, S)
    rows = []
    for scheme, label in SCHEMES.items():
        found = _collectives(scheme, B, D, F, S)
        for phase in PHASES:
            for c in (c for c in found if c.phase == phase):  # a pass with none has no row
                role = ROLE[c.collective]
                shape = (f"({', '.join(map(str, c.shape_in))})" if c.shape_in == c.shape_out
                         else f"({', '.join(map(str, c.shape_in))}) → "
                              f"({', '.join(map(str, c.shape_out))})")
                rows.append([label, phase, f"[{role}]{{.{role}}}", f"`{c.tensor}` {shape}",
                             f"**{size_text(c.sent)}**",
                             f"{_fraction(factor(c))} × {size_text(c.full_bytes)}"])
    return rows


# -- a real model: too large to simulate, so the ring formulas (checked against the ledger) ----


def _model(model: str):
    from ..calc.specs import SpecError, load_model, model_names

    names = model_names()
    if text_arg("model", model) not in names:
        raise ValueError(f"model must be one of {', '.join(names)}, got {model!r}")
    try:
        return load_model(model)
    except SpecError as error:
        raise ValueError(str(error)) from None


@calc(worst=["pmlp_model_dim('deepseek-v3', 'F')"])
def pmlp_model_dim(model: str, letter: str) -> str:
    """A bundled model's D or F (its dense MLP's hidden size), from its config.json."""
    if text_arg("letter", letter) not in ("D", "F"):
        raise ValueError(f"letter must be 'D' or 'F', got {letter!r}")
    return f"{getattr(_model(model), letter):,}"


@calc(worst=["pmlp_model_matrices('deepseek-v3')"])
def pmlp_model_matrices(model: str) -> str:
    """Weight matrices in one dense MLP: three for a gated (SwiGLU) MLP, two otherwise."""
    return "three" if _model(model).mlp_gated else "two"


def model_tensor_bytes(model: str, what: str, tokens: int, dtype: str) -> int:
    """n of the ring formulas: the activation y_BD of `tokens` tokens ("activation"), or one
    dense MLP layer's weight gradients ("mlp_grads")."""
    spec = _model(model)
    int_arg("tokens", tokens, 1, 1 << 24)
    if text_arg("dtype", dtype) not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if text_arg("what", what) == "activation":
        return tokens * spec.D * _DTYPES[dtype]
    if what == "mlp_grads":
        return (3 if spec.mlp_gated else 2) * spec.D * spec.F * _DTYPES[dtype]
    raise ValueError(f"what must be 'activation' or 'mlp_grads', got {what!r}")


@calc(worst=["pmlp_model_tensor('deepseek-v3', 'activation', 16777216, 'fp32')"])
def pmlp_model_tensor(model: str, what: str, tokens: int = 4096, dtype: str = "bf16") -> str:
    return size_text(model_tensor_bytes(model, what, tokens, dtype))


@calc(worst=["pmlp_model_bytes('deepseek-v3', 'activation', 16777216, 16, 'fp32')"])
def pmlp_model_bytes(model: str, what: str, tokens: int = 4096, S: int = 8,
                     dtype: str = "bf16") -> str:
    """Bytes one rank sends to all-reduce that tensor over S ranks (ring: 2(S−1)/S · n)."""
    n = model_tensor_bytes(model, what, tokens, dtype)
    return size_text(co.ring_all_reduce_bytes(n, int_arg("S", S, 2, 1024)))


@calc(worst=["pmlp_ring_factor(1024)"])
def pmlp_ring_factor(S: int) -> str:
    """The ring all-reduce's share 2(S−1)/S of the tensor, as a fraction: "7/4" for S = 8."""
    return _fraction(Fraction(2 * (int_arg("S", S, 2, 1024) - 1), S))
