"""Seed "ROPE and positional embeddings in general" (sheet 06): rotary position embeddings run on
the reference code (`ref.rope`), beside the two additive schemes they replaced, learned absolute
positions (GPT-2) and the sinusoids of Vaswani et al. (2017).

`ref.rope` pairs channels the RoFormer way, interleaved: (2i, 2i+1). GPT-NeoX and Hugging Face's
Llama pair split halves, (i, i + K/2), through `rotate_half`; `_rope_halves` below is that form,
and `rope_pairing_permutation` checks that the two agree up to one fixed permutation of a head's
channels. Model facts (base, head size, context) come from the bundled configs in calc/models.
"""

from __future__ import annotations

import inspect
import json
from importlib import resources

import numpy as np

from ..calc.specs import ModelSpec, load_model, model_names
from ..ref import rope as ref_rope
from .core import (
    MAX_TABLE_ELEMENTS,
    calc,
    check_elements,
    int_arg,
    int_text,
    is_int,
    shape_text,
    sig_text,
    shown,
    table,
    text_arg,
)

MAX_HEAD = 1024  # channels of one head (K); real models use 64 to 256
MAX_SCORED_HEAD = 256  # K of the relative-position scores: two K×K weight matrices
MAX_SHOWN_HEAD = 32  # a permutation printed on a sheet: at most this many channels
MAX_POSITION = 1 << 24  # a position index; 16M tokens is past every bundled context
MAX_PAIRS = 8  # (m, n) rows of the relative-position table
MAX_MODELS = 8  # rows of the bases table
BASES = (2.0, 1e9)  # a RoPE base: 10,000 (RoFormer) to 1,000,000 (Qwen2.5) in real models


def _head(K: object, high: int = MAX_HEAD) -> int:
    """A head size: an even integer, since RoPE rotates channel pairs."""
    K = int_arg("K", K, 2, high)
    if K % 2:
        raise ValueError(f"K must be even (RoPE rotates channel pairs), got {K}")
    return K


def _base(base: object) -> float:
    if isinstance(base, bool) or not isinstance(base, int | float) or not (
            BASES[0] <= base <= BASES[1]):
        raise ValueError(f"base must be a number from {BASES[0]:g} to {BASES[1]:g}, "
                         f"got {shown(base)}")
    return float(base)


def _model(name: object) -> tuple[ModelSpec, dict]:
    """A bundled model's spec and its raw config (the spec keeps no RoPE base)."""
    known = model_names()
    if text_arg("model", name) not in known:
        raise ValueError(f"unknown model {name!r}; bundled: {', '.join(known)}")
    path = resources.files("mlgrind.calc") / "models" / f"{name}.json"
    return load_model(name), json.loads(path.read_text(encoding="utf-8"))


def _rope_model(name: object) -> tuple[ModelSpec, float]:
    spec, config = _model(name)
    if "rope_theta" not in config or spec.mla is not None:
        raise ValueError(f"{name} does not rotate whole query and key heads with RoPE "
                         f"({'MLA' if spec.mla else 'learned positions'})")
    return spec, float(config["rope_theta"])


def frequencies(K: int, base: float) -> np.ndarray:
    """θ_i of each channel pair, read off the reference code: the angle at position 1."""
    return ref_rope.rope_angles(np.array([1.0]), K, base)[0]


def wavelengths(K: int, base: float) -> np.ndarray:
    """Tokens per full turn of each pair: 2π / θ_i."""
    return 2 * np.pi / frequencies(K, base)


def _rope_halves(x_BLHK: np.ndarray, positions_L: np.ndarray, base: float) -> np.ndarray:
    """RoPE as GPT-NeoX and Hugging Face's Llama write it: channel i pairs with i + K/2, and
    x·cos + rotate_half(x)·sin, with rotate_half(x) = (−x2, x1) for the halves x1, x2."""
    K = x_BLHK.shape[-1]
    angles = ref_rope.rope_angles(positions_L, K, base)
    angles = np.concatenate([angles, angles], axis=-1)[None, :, None, :]
    x1, x2 = x_BLHK[..., : K // 2], x_BLHK[..., K // 2:]
    rotated_half = np.concatenate([-x2, x1], axis=-1)
    return x_BLHK * np.cos(angles) + rotated_half * np.sin(angles)


def pairing_permutation(K: int) -> np.ndarray:
    """Interleaved channel order → split-halves order: even channels first, then odd."""
    return np.concatenate([np.arange(0, K, 2), np.arange(1, K, 2)])


@calc(worst=["rope_default_base()"])
def rope_default_base() -> str:
    """The base `ref.rope` uses unless told otherwise: RoFormer's."""
    return int_text(int(inspect.signature(ref_rope.rope).parameters["theta"].default))


@calc(worst=["rope_base('qwen2.5-72b')"])
def rope_base(model: str) -> str:
    """A model's RoPE base (`rope_theta` in its config.json)."""
    base = _rope_model(model)[1]
    return int_text(int(base)) if base.is_integer() else f"{base:g}"


@calc(worst=[f"rope_wavelength({MAX_HEAD}, {MAX_HEAD // 2 - 1}, {BASES[1]:g})"])
def rope_wavelength(K: int, pair: int, base: float = 10000) -> str:
    """Tokens per full turn of channel pair `pair` (0 = the fastest) in a head of size K."""
    K, base = _head(K), _base(base)
    pair = int_arg("pair", pair, 0, K // 2 - 1)
    return sig_text(wavelengths(K, base)[pair])


@table(worst=[f"rope_bases_table(models={('llama-3.1-405b',) * MAX_MODELS!r})"])
def rope_bases_table(models: tuple[str, ...] = ("llama-2-7b", "llama-3-8b")) -> list[list[str]]:
    """Each model's base, head size, the wavelength of its slowest pair (from ref.rope_angles;
    the fastest turns one radian per token whatever the base) and its config's context."""
    if not isinstance(models, tuple | list) or not 1 <= len(models) <= MAX_MODELS:
        raise ValueError(f"models must be a tuple of 1 to {MAX_MODELS} bundled models, "
                         f"got {shown(models)}")
    rows = []
    for name in models:
        spec, base = _rope_model(name)
        waves = wavelengths(spec.K, base)
        rows.append([name, int_text(int(base)), str(spec.K), sig_text(waves[-1]),
                     int_text(spec.context)])
    return rows


def _positions_arg(pairs: object) -> list[tuple[int, int]]:
    ok = isinstance(pairs, tuple | list) and 1 <= len(pairs) <= MAX_PAIRS and all(
        isinstance(p, tuple | list) and len(p) == 2 and all(
            is_int(v) and 0 <= v <= MAX_POSITION for v in p) for p in pairs)
    if not ok:
        raise ValueError(f"pairs must be 1 to {MAX_PAIRS} (m, n) position pairs, each from 0 to "
                         f"{MAX_POSITION:,}, like ((2, 0), (9, 7)); got {shown(pairs)}")
    return [tuple(p) for p in pairs]


def relative_scores(K: int, pairs: list[tuple[int, int]], base: float,
                    seed: int = 0) -> list[tuple[float, float]]:
    """For each (m, n): the score of one fixed query at m against one fixed key at n, with
    RoPE (`ref.rope` on the projected q and k) and with Vaswani's sinusoid added to the input
    before the projections. Same token vectors and weights in every row."""
    rng = np.random.default_rng(seed)
    x_q, x_k = rng.standard_normal(K), rng.standard_normal(K)
    w_q_DK, w_k_DK = rng.standard_normal((K, K)), rng.standard_normal((K, K))
    q, k = x_q @ w_q_DK, x_k @ w_k_DK
    out = []
    for m, n in pairs:
        q_m = ref_rope.rope(q[None, None, None, :], np.array([m]), base)[0, 0, 0]
        k_n = ref_rope.rope(k[None, None, None, :], np.array([n]), base)[0, 0, 0]
        added_q = (x_q + sinusoid(m, K, base)) @ w_q_DK
        added_k = (x_k + sinusoid(n, K, base)) @ w_k_DK
        out.append((float(q_m @ k_n), float(added_q @ added_k)))
    return out


def sinusoid(position: int, D: int, base: float = 10000.0) -> np.ndarray:
    """Vaswani et al.'s encoding of one position: sin on channel 2i, cos on 2i+1, at the
    frequencies θ_i that RoPE also uses."""
    angles = position * frequencies(D, base)
    pe = np.empty(D)
    pe[0::2], pe[1::2] = np.sin(angles), np.cos(angles)
    return pe


@table(worst=[(f"rope_relative_table(K={MAX_SCORED_HEAD}, "
               f"pairs={((MAX_POSITION, 0),) * MAX_PAIRS!r}, base={BASES[1]:g})")])
def rope_relative_table(K: int = 8, pairs: tuple = ((2, 0), (9, 7), (4096, 4094), (3, 0)),
                        base: float = 10000) -> list[list[str]]:
    """One query and one key placed at several (m, n): with RoPE the score depends on m − n
    only; with a sinusoid added to the input it depends on m and n. The first column, the
    placement, is what the question gives (the recall edition keeps it)."""
    K, base, pairs = _head(K, MAX_SCORED_HEAD), _base(base), _positions_arg(pairs)
    return [[f"({int_text(m)}, {int_text(n)})", int_text(m - n), _signed(rope), _signed(added)]
            for (m, n), (rope, added) in zip(pairs, relative_scores(K, pairs, base))]


def _signed(value: float) -> str:
    return f"{value:.4f}".replace("-", "−")  # a minus sign, not a hyphen


@calc(worst=[f"rope_score({MAX_POSITION}, 0, K={MAX_SCORED_HEAD}, base={BASES[1]:g})"])
def rope_score(m: int, n: int, K: int = 8, base: float = 10000) -> str:
    """The RoPE score of `rope_relative_table`'s query at m against its key at n."""
    K, base, pairs = _head(K, MAX_SCORED_HEAD), _base(base), _positions_arg(((m, n),))
    return _signed(relative_scores(K, pairs, base)[0][0])


@calc(worst=[f"rope_pairing_permutation({MAX_SHOWN_HEAD})"])
def rope_pairing_permutation(K: int) -> tuple[int, ...]:
    """The channel order that turns interleaved RoPE (ref.rope) into split-halves RoPE:
    rope_halves(x[perm]) == rope(x)[perm], checked on random vectors before it is returned."""
    K = _head(K)
    if K > MAX_SHOWN_HEAD:
        raise ValueError(f"K is {K}; a permutation shown on a sheet has at most "
                         f"{MAX_SHOWN_HEAD} channels")
    perm = pairing_permutation(K)
    x_BLHK = np.random.default_rng(0).standard_normal((1, 5, 2, K))
    positions = np.array([0, 1, 7, 100, 4095])
    if not np.allclose(_rope_halves(x_BLHK[..., perm], positions, 10000.0),
                       ref_rope.rope(x_BLHK, positions)[..., perm]):
        raise AssertionError(f"the two RoPE pairings disagree under {perm}")
    return tuple(int(c) for c in perm)


@calc(worst=[f"rope_angles_shape({MAX_TABLE_ELEMENTS}, 2)"])
def rope_angles_shape(L: int, K: int) -> str:
    """Shape of the angle table (one angle per position and channel pair), from ref.rope_angles
    on L positions: its cos and sin are what an implementation caches."""
    K = _head(K)
    L = int_arg("L", L, 1, MAX_TABLE_ELEMENTS)
    check_elements(L * K // 2, f"an angle table of L={L:,} positions × K/2={K // 2} pairs",
                   MAX_TABLE_ELEMENTS, "the angle table is computed with at most")
    return shape_text(ref_rope.rope_angles(np.arange(L), K).shape)


@calc(worst=["learned_positions_params('megatron-1t')"])
def learned_positions_params(model: str) -> str:
    """Parameters of a learned absolute position table: one D-vector per position."""
    spec, _ = _model(model)
    if not spec.learned_positions:
        raise ValueError(f"{model} has no learned position table")
    return int_text(spec.learned_positions * spec.D)


@calc(worst=["learned_positions_rows('megatron-1t')"])
def learned_positions_rows(model: str) -> str:
    """Rows of a learned absolute position table: the longest sequence the model can read."""
    spec, _ = _model(model)
    if not spec.learned_positions:
        raise ValueError(f"{model} has no learned position table")
    return int_text(spec.learned_positions)


def rope_flops(spec: ModelSpec) -> tuple[int, int]:
    """Per token and layer: RoPE's FLOPs (each rotated channel is two products and a sum, on
    H query heads and G key heads) and the q, k, v, o projections' (2·D per output element)."""
    rotated = (spec.H + spec.G) * spec.K
    projections = 2 * spec.D * (2 * spec.H * spec.K + 2 * spec.G * spec.K)
    return 3 * rotated, projections


@calc(worst=["rope_flops_per_token('llama-3.1-405b')"])
def rope_flops_per_token(model: str) -> str:
    return int_text(rope_flops(_rope_model(model)[0])[0])


@calc(worst=["rope_flops_share('llama-3.1-405b')"])
def rope_flops_share(model: str) -> str:
    """RoPE's FLOPs as a share of the attention projections', per token and layer."""
    rope, projections = rope_flops(_rope_model(model)[0])
    return f"{100 * rope / projections:.2g} %"
