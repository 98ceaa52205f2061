"""Costs: every registered computation is bounded by its arguments, checked before any work.

Each computation declares its worst legal arguments below, spelled as a sheet writes them; one
child process runs them all, in turn, through the same door a sheet uses (`expand`, `call`),
under an address-space limit 1.5 GB above that of an interpreter that imported mlgrind. A
computation registered without a worst case fails the first test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlgrind import facts
from mlgrind.facts import CALC, TABLES
from mlgrind.figures import FIGURES
from mlgrind.figures.args import WIDTH
from mlgrind.pipeline.compute import ExpressionError, _format, call, expand
from mlgrind.ref.notation import LETTERS

ROOT = Path(__file__).resolve().parent.parent
HEADROOM = 3 << 29  # 1.5 GiB of address space above the interpreter's own
CASE_SECONDS = 10  # each case, measured in the child
CHILD_SECONDS = 60  # the whole child: a case that hangs in C code never returns to be measured


def spelled(name: str, *args: object, **kwargs: object) -> str:
    """`name(args…)` as a sheet writes it: repr of ints, strings, tuples and None is also the
    content language's literal syntax."""
    return f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"


def reversed_axes(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 1, -1, -1))


def merges(rank: int, count: int) -> list[object]:
    """Steps that each copy the whole array the slowest way found: reverse the axes of a
    contiguous array of 2s, then merge the last two, which NumPy can only do by copying."""
    shape, steps = (2,) * rank, []
    for _ in range(count):
        steps += ["transpose", reversed_axes(len(shape))]
        shape = shape[:-2] + (shape[-2] * shape[-1],)
        steps += ["reshape", shape]
    return steps


# Shape operations: an array of MAX_ELEMENTS one-byte elements, shaped as 24 axes of 2.
RANK = facts.MAX_ELEMENTS.bit_length() - 1
ARRAY = (2,) * RANK
PAIRS = facts.MAX_STEPS // 2
SMALL = (2,) * (RANK - facts.MAX_COPIES.bit_length() + 1)  # MAX_COPIES of these: ARRAY's size
# Eight tensors of eight letters each, every letter used: the widest einsum allowed.
_ALL = "".join(LETTERS)
EINSUM = ", ".join(f"t{i}_{(_ALL * 2)[i:i + 8]}" for i in range(facts.MAX_OPERANDS)) \
    + f" -> out_{_ALL[:8]}"
# MAX_SHAPES shapes of MAX_RANK dims of 3, the last clashing in its last dim (3**32 < 2**63).
SHAPES = [(3,) * facts.MAX_RANK] * (facts.MAX_SHAPES - 1) + [(3,) * (facts.MAX_RANK - 1) + (2,)]
BROADCASTS = [(3,) * facts.MAX_RANK] * facts.MAX_SHAPES
LONGEST = 10**18 - 1  # the longest integer literal a sheet may write

WORST_CALC: dict[str, list[str]] = {
    "letter": [spelled("letter", "S")],
    "einsum_spec": [spelled("einsum_spec", EINSUM)],
    "einsum_contracted": [spelled("einsum_contracted", EINSUM)],
    "einsum_flops": [spelled("einsum_flops", EINSUM)],
    "einsum_flops_tex": [spelled("einsum_flops_tex", EINSUM)],
    "broadcast": [spelled("broadcast", *BROADCASTS)],
    "broadcast_or_error": [spelled("broadcast_or_error", *SHAPES)],
    "right_aligned": [spelled("right_aligned", (1,), *SHAPES[1:])],
    "matmul": [spelled("matmul", "... M K", "... K N")],
    "reshape": [spelled("reshape", ARRAY, (1,) * (facts.MAX_RANK - RANK) + ARRAY)],
    "shape_after": [
        spelled("shape_after", ARRAY, *merges(RANK, PAIRS)),
        # the most copies stack and concatenate make, of a transposed array; then more copies
        spelled("shape_after", SMALL, "transpose", reversed_axes(len(SMALL)),
                "stack", facts.MAX_COPIES, "reshape", ARRAY, *merges(RANK, PAIRS - 2),
                "transpose", reversed_axes(RANK - PAIRS + 2)),
        spelled("shape_after", SMALL, "transpose", reversed_axes(len(SMALL)),
                "concatenate", (facts.MAX_COPIES, 0), "reshape", ARRAY, *merges(RANK, PAIRS - 3),
                "transpose", reversed_axes(RANK - PAIRS + 3), "sum", (), "expand_dims", 0),
        # an empty array, as many copies as allowed, its dims as long as allowed
        spelled("shape_after", (0, facts.MAX_ELEMENTS // facts.MAX_COPIES), "stack",
                facts.MAX_COPIES, "sum", 0),
        spelled("shape_after", (0,), "reshape", (0, facts.MAX_ELEMENTS), "sum", 0),
    ],
    "contiguous": [spelled("contiguous", ARRAY, *merges(RANK, PAIRS))],
    # three copies in the steps, then the reshape asked about copies a fourth time
    "reshape_is_view": [spelled("reshape_is_view", ARRAY, -1, *merges(RANK, PAIRS - 1),
                                "transpose", reversed_axes(RANK - PAIRS + 1),
                                "expand_dims", 0)],
    "size": [spelled("size", (3,) * facts.MAX_RANK), spelled("size", (LONGEST,)),
             spelled("size", (0, LONGEST) + (1,) * (facts.MAX_RANK - 2))],
}
WORST_TABLES: dict[str, list[str]] = {
    "suffix_letters": ["suffix_letters"],
    "einsum_idioms": ["einsum_idioms"],
    "mlp_flops_table": [spelled("mlp_flops_table", B=1024, D=1024, F=1024)],
    "collective_table": [
        spelled("collective_table", ranks=16, shape=(facts.MAX_ELEMENTS // 16,), dtype="fp32"),
        spelled("collective_table", ranks=2, shape=(facts.MAX_ELEMENTS // 2,), dtype="fp32"),
        spelled("collective_table", ranks=16, shape=(16,) + (2,) * (RANK - 8), dtype="fp32"),
    ],
}
NARROW, WIDE = WIDTH  # the narrowest width searches the most widths for one that fits
WORST_FIGURES: dict[str, list[tuple[str, float]]] = {
    # the most stages and microbatches, and the most that fit the widest panel (16 × 17)
    "pipeline_schedule": [(spelled("pipeline_schedule", stages=16, microbatches=m,
                                   schedule=s), w) for s in ("1f1b", "gpipe")
                          for m in (64, 17) for w in (NARROW, WIDE)],
    "ring_collective": [(spelled("ring_collective", collective=c, ranks=r, elements=n,
                                 dtype="fp32"), w)
                        for c in ("all_reduce", "all_gather") for r, n in ((16, 32768), (2, 262144))
                        for w in (NARROW, WIDE)],
    "roofline": [(spelled("roofline", hardware=h, model="deepseek-v3", prompt=1 << 20,
                          batch=4096, context=1 << 20), w)
                 for h in ("tpu-v4", "b200") for w in (NARROW, WIDE)],
    "zero_memory": [(spelled("zero_memory", model=m, dp=4096, micro_batch=256,
                             seq_len=1 << 20, recompute="none", hardware="h200"), w)
                    for m in ("megatron-1t", "deepseek-v3") for w in (NARROW, WIDE)],
    # the most FLOPs allowed, with the most heads (the slowest einsums) or the most elements
    "attention_flow": [(spelled("attention_flow", **dict(zip("BLDHK", sizes))), w)
                       for sizes in ((1, 128, 64, 16, 128), (1, 128, 1, 8, 256),
                                     (16, 128, 64, 1, 128))
                       for w in (NARROW, WIDE)],
}

# Computations registered with `worst=[…]` declare their worst cases there; the ones above are
# spelled from this file's constants.
for _name, _texts in facts.WORST.items():
    (WORST_CALC if _name in CALC else WORST_TABLES).setdefault(_name, _texts)
for _name, _draw in FIGURES.items():
    if _draw.worst:
        WORST_FIGURES.setdefault(_name, [(text, w) for text in _draw.worst for w in (NARROW, WIDE)])

CHILD = textwrap.dedent("""
    import json, re, resource, sys, time
    from mlgrind.facts import TABLES
    from mlgrind.figures import FIGURES
    from mlgrind.pipeline.compute import ExpressionError, call, expand

    def status(key):
        return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read())[1]) << 10

    baseline = status("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (baseline + int(sys.argv[1]),) * 2)
    print(json.dumps({"baseline": baseline}), flush=True)
    for kind, text, width in json.load(sys.stdin):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak RSS back to the current RSS
        before = status("VmRSS")
        start = time.perf_counter()
        try:
            if kind == "calc":
                expand("${ calc." + text + " }")
            elif kind == "table":
                call(text, TABLES, "table")
            else:
                drawing = call(text, FIGURES, "figure", width=width)
                drawing.svg("key"), drawing.svg("blank"), drawing.svg_file("frame")
            outcome = "value"
        except ExpressionError as error:
            outcome = str(error)
        except MemoryError:
            outcome = "MemoryError"
        print(json.dumps({"text": text, "width": width, "outcome": outcome,
                          "seconds": time.perf_counter() - start,
                          "peak": status("VmHWM") - before}), flush=True)
""")


def cases() -> list[tuple[str, str, float | None]]:
    return ([("calc", text, None) for texts in WORST_CALC.values() for text in texts]
            + [("table", text, None) for texts in WORST_TABLES.values() for text in texts]
            + [("figure", text, width) for pairs in WORST_FIGURES.values()
               for text, width in pairs])


def by_module(batch: list[tuple[str, str, float | None]]) -> list[list[tuple[str, str, float | None]]]:
    """The cases grouped by the module that registers them: one child each, so the child's time
    limit bounds one topic's worst cases, not the sum over a growing curriculum."""
    registries = {"calc": CALC, "table": TABLES, "figure": FIGURES}
    groups: dict[str, list[tuple[str, str, float | None]]] = {}
    for case in batch:
        kind, text, _ = case
        groups.setdefault(registries[kind][text.split("(")[0]].__module__, []).append(case)
    return list(groups.values())


def run(batch: list[tuple[str, str, float | None]], headroom: int = HEADROOM) -> list[dict]:
    """Each case's outcome ("value" or the refusal), seconds and peak RSS above the RSS before
    it, measured in one child process limited to `headroom` above its address space."""
    # A fixed mmap threshold: malloc returns each large array to the system when it is freed,
    # so one case's peak is not hidden in the heap another case left behind.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 16)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(headroom)], input=json.dumps(batch),
                          env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=CHILD_SECONDS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()][1:]


@pytest.fixture(scope="module")
def measured() -> list[dict]:
    return [r for group in by_module(cases()) for r in run(group)]


def test_the_memory_limit_bites() -> None:
    # The collective table at its worst takes ~190 MB: under a 64 MB limit NumPy cannot
    # allocate, and the harness sees it.
    (result,) = run([("table", WORST_TABLES["collective_table"][0], None)], headroom=1 << 26)
    assert "MemoryError" in result["outcome"]


def test_every_registered_computation_declares_its_worst_case() -> None:
    for registry, worst in ((CALC, WORST_CALC), (TABLES, WORST_TABLES),
                            (FIGURES, WORST_FIGURES)):
        assert set(registry) - set(worst) == set(), "registered without a worst case"
        assert set(worst) - set(registry) == set(), "a worst case for nothing registered"


def line(r: dict) -> str:
    where = "" if r["width"] is None else f" @ {r['width']} pt"
    return (f"{r['seconds']:6.2f} s {r['peak'] / 2**20:6.0f} MB  {r['text'][:70]}{where}  "
            f"{r['outcome'][:60]}")


def test_worst_cases_finish_in_time_within_the_memory_limit(measured: list[dict]) -> None:
    assert len(measured) == len(cases())
    report = "\n".join(map(line, measured))
    print(report)
    for r in measured:
        assert r["seconds"] < CASE_SECONDS, report
        assert r["peak"] < HEADROOM and "MemoryError" not in r["outcome"], report
        # The worst legal case computes, or its figure does not fit the panel: never a
        # refusal of its arguments, which would leave the bound untested.
        assert r["outcome"] == "value" or "too narrow" in r["outcome"], report


# -- what used to run for minutes, or raise a traceback, is refused at once, naming the limit --

HUGE = 10**5000  # past Python's 4,300-digit limit on printing an integer


def short(value: object) -> str:
    """A test id: the start of the argument (some are thousands of digits long)."""
    return (value if isinstance(value, str) else facts.shown(value, 50))[:50]


@pytest.mark.parametrize("text, message", [
    ("${ calc.shape_after((1,), 'stack', 16777216) }", "positive integer up to 1,024, got 16777216"),
    ("${ calc.shape_after((0,), 'stack', 100000000) }", "positive integer up to 1,024"),
    ("${ calc.shape_after((0,), 'concatenate', (100000000, 0)) }", "up to 1,024"),
    ("${ calc.shape_after((0,), 'reshape', (0, 100000000), 'sum', 0) }", "at most 16,777,216"),
    ("${ calc.shape_after((0, 100000000), 'sum', 0) }", "at most 16,777,216"),
    ("${ calc.shape_after((1, 0), 'stack', 1024, 'reshape', (1024, 0, 100000)) }",
     "at most 16,777,216"),
    ("${ calc.reshape((0,), (0, 999999999999999999)) }", "at most 16,777,216"),
    ("${ calc.size((" + "9" * 5000 + ",)) }", "5,000 digits; at most 18"),
    ("${ calc.size((10_000_000_000_000_000_000,)) }", "20 digits; at most 18"),
    ("${ calc.size((4294967296, 4294967296)) }", "at most 9,223,372,036,854,775,807"),
    ("${ calc.size((0, 4294967296, 4294967296)) }", "an empty axis counted as 1"),
    ("${ calc.size((" + "1, " * 33 + ")) }", "at most 32 entries"),
    ("${ calc.broadcast((4294967296, 1), (1, 4294967296)) }", "at most 9,223,372,036,854,775,807"),
    ("${ calc.broadcast(" + "(1,), " * 9 + ") }", "at most 8 broadcast together"),
    ("${ calc.shape_after((2,)" + ", 'squeeze', none" * 9 + ") }", "at most 8 chain together"),
    ("${ calc.shape_after((2, 3), 'transpose', (0, 100000000)) }", "from -64 to 63"),
    ("${ calc.shape_after((2, 3), 'swapaxes', 1) }", "a tuple of 2 axes"),
    ("${ calc.einsum_spec('" + "x_B, " * 8 + "x_B -> y_B') }", "at most 8"),
    ("${ calc.letter('" + "B" * 300 + "') }", "at most 200"),
], ids=short)
def test_reproductions_are_refused_at_once_naming_the_limit(text: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=message):
        expand(text)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("registry, text, message", [
    (TABLES, "mlp_flops_table(B=" + "9" * 5000 + ")", "5,000 digits; at most 18"),
    (TABLES, "mlp_flops_table(B=4096, D=4096, F=4096)", "at most 1,048,576"),
    (TABLES, "collective_table(shape=(0, 999999999999999999))", "at most 16,777,216"),
    (FIGURES, "ring_collective(ranks=" + "9" * 5000 + ")", "5,000 digits; at most 18"),
    (FIGURES, "attention_flow(B=1, L=512, D=64, H=1, K=4096)", "B·L·H·K"),
], ids=short)
def test_tables_and_figures_refuse_long_literals_and_large_sizes(registry, text, message) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=message):
        call(text, registry, "figure" if registry is FIGURES else "table",
             **({"width": 400} if registry is FIGURES else {}))
    assert time.perf_counter() - start < 1


# Called from Python, past the literal guard: the computations' own bounds still hold.
REGISTRIES = {"calc": CALC, "table": TABLES, "figure": FIGURES}


@pytest.mark.parametrize("kind, name, args, kwargs, message", [
    ("calc", "size", ((HUGE,),), {}, r"got \(an integer of 5,001 digits,\)"),
    ("calc", "size", ((2, -HUGE),), {}, r"each at most 9,223,372,036,854,775,807"),
    ("calc", "size", (tuple(range(10**6)),), {}, r"1,000,000 entries"),
    ("calc", "reshape", ((2, 3), (HUGE,)), {}, r"from -1 to 9,223,372,036,854,775,807"),
    ("calc", "reshape", ((2, 3), (10**100, -1)), {}, r"\(an integer of 101 digits, -1\)"),
    ("calc", "shape_after", ((0,), "stack", HUGE), {}, r"up to 1,024, got an integer of 5,001"),
    ("calc", "shape_after", ((0,), "sum", (HUGE,)), {}, r"from -64 to 63"),
    ("calc", "shape_after", ((1,), *["squeeze", None] * 10**6), {}, r"1,000,000 steps"),
    ("calc", "broadcast", ((1,),) * 10**6, {}, r"1,000,000 shapes"),
    ("calc", "letter", (("B",) * 10**6,), {}, r"must be a string"),
    ("calc", "matmul", ("M " * 10**6, "K"), {}, r"one to three of M, K, N"),
    ("table", "mlp_flops_table", (), {"B": HUGE}, r"B must be a positive integer up to 1,048,576"),
    ("table", "mlp_flops_table", (), {"D": True}, r"D must be a positive integer"),
    ("table", "collective_table", (), {"ranks": HUGE}, r"ranks must be an integer from 2 to 16"),
    ("table", "collective_table", (), {"dtype": ["fp32"]}, r"dtype must be a string"),
    ("figure", "ring_collective", (), {"width": 400, "ranks": HUGE}, r"an integer of 5,001"),
    ("figure", "ring_collective", (), {"width": 400, "ranks": 4.0}, r"whole number"),
    ("figure", "ring_collective", (), {"width": 400, "dtype": HUGE}, r"dtype must be one of"),
    ("figure", "roofline", (), {"width": float("nan")}, r"width must be a number from 100"),
    ("figure", "roofline", (), {"width": float("inf")}, r"width must be a number from 100"),
    ("figure", "roofline", (), {"width": -HUGE}, r"an integer of 5,001 digits"),
    ("figure", "roofline", (), {"width": 400, "batch": True}, r"batch must be a whole number"),
    ("figure", "zero_memory", (), {"width": 400, "model": ["gpt2"]}, r"model must be one of"),
    ("figure", "zero_memory", (), {"width": 400, "model": "g" * 10**6}, r"model must be one of"),
], ids=short)
def test_arguments_from_python_are_bounded_too(kind, name, args, kwargs, message) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as error:
        REGISTRIES[kind][name](*args, **kwargs)
    assert len(str(error.value)) < 400  # the message names the value, cut short
    assert time.perf_counter() - start < 1


def test_formatting_a_result_never_meets_the_int_to_str_limit() -> None:
    assert _format(HUGE) == "1.000e+5000"
    assert _format(-7 * HUGE) == "-7.000e+5000"
    assert _format((HUGE, 3)) == "(1.000e+5000, 3)"
    assert _format(10**21 - 1) == "999,999,999,999,999,999,999"
    assert facts.shown([HUGE, 2]) == "[an integer of 5,001 digits, 2]"
    assert facts.shown({1: HUGE}) == "a dict holding an integer of more than 4,300 digits"
    assert facts.shown(tuple(range(10**6))).endswith("…") and len(facts.shown((1,) * 99)) == 60
