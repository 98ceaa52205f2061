"""Sheet 06, RoPE and positions: the computations against independent oracles.

The oracle for a rotation is complex multiplication: a channel pair (a, b) at position m, read as
a + ib, times e^{imθ_i} with θ_i = b^(−2i/K) written out here, not read from the code under test.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from importlib import resources

import numpy as np
import pytest

from mlgrind import palette
from mlgrind.calc.specs import load_model
from mlgrind.facts import positions as P
from mlgrind.figures import FIGURES
from mlgrind.figures.canvas import BLANK_RULE
from mlgrind.pipeline.compute import expand
from mlgrind.ref import einsum as ref_einsum
from mlgrind.ref import rope as ref_rope

RNG = np.random.default_rng(6)


def theta(K: int, base: float = 10000.0) -> np.ndarray:
    return base ** (-2.0 * np.arange(K // 2) / K)


def rope_complex(x: np.ndarray, positions: np.ndarray, base: float = 10000.0,
                 halves: bool = False) -> np.ndarray:
    """RoPE as complex multiplication, on x[..., L, K] with positions[L]: the pair is (2i, 2i+1)
    or, with `halves`, (i, i + K/2). Counterclockwise: times e^{+imθ_i}."""
    K = x.shape[-1]
    re_, im_ = (x[..., : K // 2], x[..., K // 2:]) if halves else (x[..., 0::2], x[..., 1::2])
    z = (re_ + 1j * im_) * np.exp(1j * positions[:, None] * theta(K, base))
    out = np.empty_like(x)
    if halves:
        out[..., : K // 2], out[..., K // 2:] = z.real, z.imag
    else:
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def calc(expression: str) -> str:
    return expand("${ calc." + expression + " }")


def config(model: str) -> dict:
    return json.loads((resources.files("mlgrind.calc") / "models" / f"{model}.json").read_text())


# -- the reference code -------------------------------------------------------------------------


def test_ref_rope_is_a_counterclockwise_rotation_of_interleaved_pairs() -> None:
    x_BLHK = RNG.standard_normal((2, 5, 3, 16))
    positions = np.array([0, 1, 7, 300, 4095])
    expected = rope_complex(x_BLHK.transpose(0, 2, 1, 3), positions).transpose(0, 2, 1, 3)
    assert np.allclose(ref_rope.rope(x_BLHK, positions), expected)


def test_scores_depend_on_m_minus_n_only() -> None:
    """q·k after RoPE is unchanged when both positions shift by the same amount, and equals
    q·R_{n−m}k built from explicit 2×2 rotation matrices."""
    K = 16
    q_BLHK, k_BMHK = RNG.standard_normal((1, 6, 2, K)), RNG.standard_normal((1, 6, 2, K))
    pos_L, pos_M = np.arange(6), np.array([0, 3, 4, 9, 10, 11])

    def scores(shift: int) -> np.ndarray:
        return np.einsum("blhk,bmhk->bhlm", ref_rope.rope(q_BLHK, pos_L + shift),
                         ref_rope.rope(k_BMHK, pos_M + shift))

    for shift in (1, 17, 100_000):
        assert np.allclose(scores(0), scores(shift), atol=1e-9)
    s = scores(0)
    for l, m in [(0, 0), (5, 2), (2, 5)]:
        R = np.zeros((K, K))
        for i, t in enumerate(theta(K)):
            a = (pos_M[m] - pos_L[l]) * t
            R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[math.cos(a), -math.sin(a)],
                                                       [math.sin(a), math.cos(a)]]
        assert s[0, 1, l, m] == pytest.approx(q_BLHK[0, l, 1] @ R @ k_BMHK[0, m, 1])


def test_rotation_keeps_norms_and_its_backward_is_its_transpose() -> None:
    x_BLHK, y_BLHK = RNG.standard_normal((2, 2, 7, 3, 32))
    positions = np.array([0, 1, 2, 50, 1000, 65535, 1 << 20])
    rotated = ref_rope.rope(x_BLHK, positions)
    assert np.allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x_BLHK, axis=-1))
    assert np.allclose(ref_rope.rope_backward(rotated, positions), x_BLHK)
    # A linear map's gradient is its transpose: <R x, y> = <x, R^T y>.
    assert np.sum(rotated * y_BLHK) == pytest.approx(
        np.sum(x_BLHK * ref_rope.rope_backward(y_BLHK, positions)))


def test_the_two_pairings_agree_up_to_one_permutation_of_the_channels() -> None:
    K = 12
    p = P.pairing_permutation(K)
    x_BLHK = RNG.standard_normal((1, 4, 2, K))
    positions = np.array([0, 3, 8, 2047])
    halves = P._rope_halves(x_BLHK[..., p], positions, 10000.0)
    assert np.allclose(halves, ref_rope.rope(x_BLHK, positions)[..., p])
    # The split-halves form is the complex rotation of (i, i + K/2) pairs.
    oracle = rope_complex(x_BLHK[..., p].transpose(0, 2, 1, 3), positions, halves=True)
    assert np.allclose(halves, oracle.transpose(0, 2, 1, 3))
    # Permuting q and k alike leaves every score unchanged.
    q, k = RNG.standard_normal((2, 1, 4, 2, K))
    assert np.allclose(
        np.einsum("blhk,bmhk->bhlm", ref_rope.rope(q, positions), ref_rope.rope(k, positions)),
        np.einsum("blhk,bmhk->bhlm", P._rope_halves(q[..., p], positions, 10000.0),
                  P._rope_halves(k[..., p], positions, 10000.0)))


def test_the_permutation_is_hugging_faces_permute_for_sliced_rotary() -> None:
    """convert_llama_weights_to_hf.py: w.view(n_heads, K // 2, 2, D).transpose(1, 2): output
    row j·K/2 + i of a head takes interleaved row 2i + j."""
    for K in (2, 8, 32):
        hf = np.arange(K).reshape(K // 2, 2).T.reshape(-1)
        assert calc(f"rope_pairing_permutation({K})") == str(tuple(int(c) for c in hf))


# -- frequencies and bases ----------------------------------------------------------------------


def test_frequencies_and_wavelengths_are_the_closed_forms() -> None:
    for K, base in [(8, 10000.0), (128, 500000.0), (64, 1e6)]:
        assert np.allclose(P.frequencies(K, base), theta(K, base))
        assert np.allclose(P.wavelengths(K, base), 2 * np.pi * base ** (2 * np.arange(K // 2) / K))
    assert calc("rope_wavelength(128, 0)") == "6.28"  # 2π: one radian per token, any base
    slowest = float(calc("rope_wavelength(128, 63, 500000)").replace(",", ""))
    assert slowest == pytest.approx(2 * math.pi * 500000 ** (126 / 128), rel=5e-3)


def test_bases_come_from_the_configs_and_the_published_values() -> None:
    # Su et al. 2021 (RoFormer, eq. 15): 10,000; Dubey et al. 2024 (Llama 3, §3.2): 500,000.
    assert calc("rope_default_base()") == "10,000"
    assert calc("rope_base('llama-3-8b')") == "500,000"
    rows = P.rope_bases_table(("llama-2-7b", "llama-3-8b", "qwen2.5-7b"))
    for row, name in zip(rows, ("llama-2-7b", "llama-3-8b", "qwen2.5-7b")):
        c = config(name)
        K = c["hidden_size"] // c["num_attention_heads"]
        b = c["rope_theta"]
        assert row[:3] == [name, f"{int(b):,}", str(K)]
        slowest = 2 * math.pi * b ** ((K - 2) / K)
        assert float(row[3].replace(",", "")) == pytest.approx(slowest, rel=5e-3)
        assert row[4] == f"{c['max_position_embeddings']:,}"


def test_angle_table_is_one_angle_per_position_and_pair() -> None:
    assert calc("rope_angles_shape(8192, 128)") == "(8192, 64)"
    assert calc("rope_angles_shape(1, 6)") == "(1, 3)"


# -- the relative-position table ----------------------------------------------------------------


def test_relative_table_equal_offsets_equal_rope_scores_but_not_sinusoid_scores() -> None:
    pairs = ((2, 0), (9, 7), (4096, 4094), (3, 0), (4099, 4096))
    rows = P.rope_relative_table(K=8, pairs=pairs)
    by_offset: dict[str, list[list[str]]] = {}
    for row, (m, n) in zip(rows, pairs):
        assert row[0] == f"({m:,}, {n:,})" and row[1] == f"{m - n:,}"
        by_offset.setdefault(row[1], []).append(row)
    for same in by_offset.values():
        assert len({r[2] for r in same}) == 1  # RoPE: one score per offset
        assert len({r[3] for r in same}) == len(same)  # added sinusoid: one per placement
    assert len({same[0][2] for same in by_offset.values()}) == len(by_offset)
    assert calc("rope_score(4096, 4094)") == calc("rope_score(2, 0)") == rows[0][2]


def test_sinusoid_at_m_plus_k_is_a_fixed_rotation_of_its_value_at_m() -> None:
    """Vaswani et al. (2017), §3.5: PE(pos + k) is a linear function of PE(pos)."""
    D, k = 16, 5
    for i, t in enumerate(theta(D)):
        # (sin, cos) pairs: the map that shifts by k is the same for every position.
        M = np.array([[math.cos(k * t), math.sin(k * t)], [-math.sin(k * t), math.cos(k * t)]])
        for m in (0, 3, 1000):
            assert np.allclose(P.sinusoid(m + k, D)[2 * i: 2 * i + 2],
                               M @ P.sinusoid(m, D)[2 * i: 2 * i + 2])


# -- positions compared, costs ------------------------------------------------------------------


def test_gpt2_position_table_is_n_positions_by_n_embd() -> None:
    c = config("gpt2")
    assert calc("learned_positions_rows('gpt2')") == f"{c['n_positions']:,}"
    assert calc("learned_positions_params('gpt2')") == f"{c['n_positions'] * c['n_embd']:,}"


class Counting(np.ndarray):
    """An array that counts the elementwise multiplies, adds and subtracts done on it."""

    ops = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(a) if isinstance(a, Counting) else a for a in inputs]
        result = getattr(ufunc, method)(*plain, **kwargs)
        if ufunc in (np.multiply, np.add, np.subtract) and method == "__call__":
            Counting.ops += np.size(result)
        return result.view(Counting) if isinstance(result, np.ndarray) else result


def test_rope_flops_are_counted_on_the_reference_code() -> None:
    spec = load_model("llama-3-8b")
    x = RNG.standard_normal((1, 1, spec.H + spec.G, spec.K)).view(Counting)
    Counting.ops = 0
    ref_rope.rope(x, np.array([5]))
    rope, projections = P.rope_flops(spec)
    assert Counting.ops == rope
    sizes = {"b": 1, "l": 1, "d": spec.D, "h": spec.H, "g": spec.G, "k": spec.K}
    counted = sum(ref_einsum.flops(s, sizes) for s in
                  ("bld,dhk->blhk", "bld,dgk->blgk", "bld,dgk->blgk", "blhk,hkd->bld"))
    assert projections == counted
    assert calc("rope_flops_per_token('llama-3-8b')") == f"{rope:,}"
    assert calc("rope_flops_share('llama-3-8b')") == f"{100 * rope / counted:.2g} %"


@pytest.mark.parametrize("expression, named", [
    ("rope_wavelength(7, 0)", "even"),
    ("rope_wavelength(8, 4)", "pair"),
    ("rope_wavelength(8, 0, 1)", "base"),
    ("rope_base('gpt2')", "learned positions"),
    ("rope_base('deepseek-v3')", "MLA"),
    ("rope_base('llama-9')", "unknown model"),
    ("rope_score(-1, 0)", "pairs"),
    ("rope_pairing_permutation(64)", "at most"),
    ("learned_positions_params('llama-3-8b')", "no learned position table"),
    ("rope_angles_shape(1048576, 128)", "at most"),
])
def test_bad_arguments_are_refused_by_name(expression: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        calc(expression)


# -- figures ------------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
DRAWN = [("rope_rotation", {}),
         ("rope_rotation", {"placements": ((0, 0), (5, 1), (200, 3))}),
         ("rope_rotation", {"placements": ((7, 7),), "pair": 3, "K": 8}),
         ("rope_wavelengths", {}),
         ("rope_wavelengths", {"K": 64, "bases": (10000,), "context": None}),
         ("rope_wavelengths", {"K": 1024, "bases": (2, 1e9, 10000), "context": 1 << 24})]


def test_rotation_figure_shows_equal_scores_for_equal_offsets() -> None:
    facts = FIGURES["rope_rotation"](width=230, placements=((3, 1), (9, 7))).facts
    # q = (1, 0) and k = (0.6, 0) rotated by 3 and 1 radians (pair 0): q·k = 0.6 cos 2.
    for m, n in ((3, 1), (9, 7)):
        assert facts[f"angle_{m}_{n}"] == pytest.approx(2.0)
        assert facts[f"score_{m}_{n}"] == pytest.approx(0.6 * math.cos(2.0))


def test_wavelength_figure_plots_the_closed_form() -> None:
    facts = FIGURES["rope_wavelengths"](width=230, K=128, bases=(10000, 500000)).facts
    for b in (10000, 500000):
        assert facts[f"fastest_{b:g}"] == pytest.approx(2 * math.pi)
        assert facts[f"slowest_{b:g}"] == pytest.approx(2 * math.pi * b ** (126 / 128))


@pytest.mark.parametrize("name, kwargs", DRAWN)
@pytest.mark.parametrize("width", [230, 500])
def test_figures_follow_the_print_rules(name: str, kwargs: dict, width: int) -> None:
    try:
        d = FIGURES[name](width=width, **kwargs)
    except ValueError as error:  # too narrow: it names the least width, which works
        needed = re.search(r"needs at least (\d+) pt", str(error))
        assert needed and int(needed.group(1)) > width, str(error)
        width = int(needed.group(1))
        d = FIGURES[name](width=width, **kwargs)
    for left, top, right, bottom in (box for _, box in d.text_boxes()):
        assert 0 <= left and right <= d.width and 0 <= top and bottom <= d.height
    boxes = [box for _, box in d.text_boxes()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    svg = ET.fromstring(d.svg())
    for element in svg.iter():
        if element.get("font-size") is not None:
            assert float(element.get("font-size")) >= 7
        for attribute in ("fill", "stroke"):
            value = element.get(attribute)
            assert value in (None, "none") or value in palette.colours(), value
    assert d.svg() == FIGURES[name](width=width, **kwargs).svg()  # deterministic
    blank = "".join("".join(t.itertext()) for t in ET.fromstring(d.svg("blank")).iter(f"{SVG}text"))
    assert BLANK_RULE in blank and not re.search(r"q·k = −?\d", blank)
