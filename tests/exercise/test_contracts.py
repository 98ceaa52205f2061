"""The scaffolds: NumPy and the standard library only, no solution inside, suffixes everywhere,
and the same names and signatures as the reference functions that grade them."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys

import numpy as np
import pytest

import mlgrind.ref
from mlgrind.exercise import scaffold
from mlgrind.exercise.catalog import exercises, get
from mlgrind.exercise.topics.drills import DRILLS
from mlgrind.ref.notation import split_suffix

EXERCISES = exercises()
# Parameters that are not tensors, so carry no suffix.
NOT_TENSORS = {
    "comm",
    "saved",
    "saved_ranks",
    "w",
    "model",
    "cache",
    "theta",
    "spec",
    "sizes",
    "target",
    "draft",
    "context",
    "gamma",
    "rng",
    "alpha",
    "n_new",
    # pipeline and checkpointing: counts, sizes and schedules, not arrays
    "p",
    "m",
    "orders",
    "ops",
    "t_fwd",
    "t_bwd",
    "every",
    "checkpoints",
    "n_layers",
    "B",
    "D",
    "F",
    "itemsize",
    "k",  # top-k, a count
}
# zero: a stage, counts and indices, dicts of named tensors, the optimizer, a byte count
NOT_TENSORS |= {"stage", "S", "r", "t", "params", "ranks", "shapes", "tag", "adam", "n_param_bytes"}
# A list of one array per rank, pipeline stage or layer: the suffix is the array's.
LISTS = re.compile(r"_(ranks|stages|layers)$")
CARRIED_OVER = {"rope", "gqa_attend"}  # pasted from an earlier exercise into a later one


def functions(source: str) -> list[ast.FunctionDef]:
    return [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]


def reference_functions() -> dict[str, list[inspect.Signature]]:
    found: dict[str, list[inspect.Signature]] = {}
    for info in pkgutil.iter_modules(mlgrind.ref.__path__):
        module = importlib.import_module(f"mlgrind.ref.{info.name}")
        for name, f in inspect.getmembers(module, inspect.isfunction):
            if f.__module__ == module.__name__:
                found.setdefault(name, []).append(inspect.signature(f))
    return found


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_a_scaffold_imports_only_numpy_and_the_standard_library(exercise):
    imported = set()
    for node in ast.walk(ast.parse(scaffold.module_source(exercise))):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert "numpy" in imported
    assert imported - {"numpy"} <= set(sys.stdlib_module_names)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_every_function_is_a_docstring_and_raise_not_implemented_error(exercise):
    defs = functions(scaffold.module_source(exercise))
    assert defs
    for f in defs:
        docstring, body = f.body[0], f.body[1:]
        assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
        assert [ast.unparse(s) for s in body] == ["raise NotImplementedError"], f.name


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_every_tensor_argument_carries_a_shape_suffix(exercise):
    for f in functions(exercise.contract):
        for a in f.args.args:
            name = LISTS.sub("", a.arg)
            assert a.arg in NOT_TENSORS or split_suffix(name) is not None, (f.name, a.arg)


@pytest.mark.parametrize(
    "exercise", [e for e in EXERCISES if e.name != "einsum_drills"], ids=lambda e: e.name
)
def test_the_contract_is_the_reference_functions_own_signature(exercise):
    """So that the reference module, dropped in, is a solution: one truth, not a copy. The
    reference may take more parameters, all optional."""
    reference = reference_functions()
    for f in functions(exercise.contract):
        mine = [a.arg for a in f.args.args]
        candidates = reference.get(f.name, [])
        assert any(
            list(p)[: len(mine)] == mine
            and all(q.default is not q.empty for q in list(p.values())[len(mine) :])
            for p in (c.parameters for c in candidates)
        ), f.name


def test_drill_specs_are_spelled_by_the_suffixes():
    specs = {d.function: d.spec for d in DRILLS}
    assert specs["project"] == "bld,df->blf"
    assert specs["weight_grad"] == "bld,blf->df"
    assert specs["heads_first"] == "blhk->bhlk"
    assert specs["merge_heads"] == "blhk,hkd->bld"


def test_no_scaffold_and_no_hint_gives_away_a_drill_spec():
    specs = {d.spec for d in DRILLS}
    for e in EXERCISES:
        for text in (scaffold.module_source(e), *e.hints):
            assert not any(spec in text for spec in specs), e.name


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_hints_are_graded_nudges_without_code(exercise):
    assert len(exercise.hints) >= 3
    for hint in exercise.hints:
        assert not re.search(r"\b[a-z]+(,[a-z]+)*->[a-z]+", hint), hint  # no einsum spec
        assert "np." not in hint and "def " not in hint and "return " not in hint, hint


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_the_test_file_hands_the_catalog_checks_to_pytest(exercise):
    source = scaffold.test_source(exercise)
    compile(source, f"test_{exercise.name}.py", "exec")
    assert f'grade.checks("{exercise.name}")' in source
    assert f'with_name("{exercise.name}.py")' in source


def test_names_with_hyphens_find_their_exercise():
    assert get("mlp-batched").name == "mlp_batched"
    assert get(" kv-cache ").name == "kv_cache"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_comm_doc_says_a_collective_returns_one_array_per_rank():
    from mlgrind.exercise.topics.common import COMM_DOC
    from mlgrind.ref.collectives import Comm

    comm = Comm(3)
    x_ranks = [np.full((2, 2), s, dtype=float) for s in range(3)]
    for collective in (comm.all_reduce, comm.all_gather, comm.reduce_scatter):
        result = collective(x_ranks)
        assert isinstance(result, list) and len(result) == 3
    assert "returns a per-rank list (S arrays: what each rank holds afterwards)" in flat(COMM_DOC)


def test_the_rope_scaffold_states_the_reference_rotation_direction():
    from mlgrind.ref.rope import rope

    # channel 0 of pair 0 alone, at position 1 (angle 1 rad): counter-clockwise turns it towards
    # channel 1, so channel 1 gets +sin 1
    x_BLHK = np.zeros((1, 1, 1, 2))
    x_BLHK[..., 0] = 1.0
    y_BLHK = rope(x_BLHK, np.array([1]))
    assert np.allclose(y_BLHK[0, 0, 0], [np.cos(1), np.sin(1)])
    text = flat(get("rope").contract)
    assert "rotated counter-clockwise" in text
    assert "y_2i+1 = x_2i · sin a + x_2i+1 · cos a" in text


def test_the_gqa_scaffold_excludes_the_fully_masked_row_the_reference_cannot_softmax():
    from mlgrind.ref.attention import gqa_attend

    rng = np.random.default_rng(0)
    mask_LM = np.array([[True, False], [False, False]])  # query 1 may read no key
    with np.errstate(invalid="ignore"):
        out_BLHK, _ = gqa_attend(
            rng.standard_normal((1, 2, 2, 3)), *rng.standard_normal((2, 1, 2, 1, 3)), mask_LM
        )
    assert np.isfinite(out_BLHK[:, 0]).all() and np.isnan(out_BLHK[:, 1]).all()
    assert "Every row holds at least one True" in flat(get("gqa").contract)
