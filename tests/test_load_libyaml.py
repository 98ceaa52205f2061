"""libyaml's C parser under our composer reads every document as pure-Python PyYAML does: the
same data, the same position for every value, and the same refusals at the same place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlgrind.pipeline import load
from mlgrind.pipeline.problems import Problems

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted([*ROOT.glob("onepagers/*.yaml"), *ROOT.glob("cards/*.yaml")])

VALID = {
    "plain": "id: x\nitems: [1, 2.5, true, null, ~, 0x1F, 1e3, '01', 2026-01-02]\n",
    "non-ASCII before a value": "a: «ü — 𝑥»\nb: 'tail'\n",
    "escapes": 'a: "tab\\there \\u00e9 \\x41"\nb: "x"\n',
    "block scalars": "a: |\n  one\n  two\nb: >-\n  folded\n  text\nc: 3\n",
    "CRLF line ends": "a: 1\r\nb:\r\n  - x\r\n  - y\r\n",
    "anchor without alias": "a: &anchor 1\nb: 2\n",
    "nesting at the limit": "a: " + "[" * (load.MAX_DEPTH - 1) + "]" * (load.MAX_DEPTH - 1) + "\n",
    "other line breaks": "a: 'one\u2028two\x85three'\nb: 2\n",
    "explicit document": "---\na: 1\n...\n",
    "a duplicate key (ours to report, not the parser's)": "a: 1\na: 2\n",
    "a control character escape (ours to report)": 'a: "x\\x1fy"\n',
}

# libyaml's offsets start after a byte-order mark, PyYAML's at it: load_yaml drops the mark first.
LOADED_ALIKE = {**VALID, "byte-order mark, and an escape to point at": '\ufeffa: 1\nb: "x\\x1fy"\n'}

BROKEN = {
    "alias": "a: &a [1]\nb: *a\n",
    "alias bomb": "a: &a ['x','x']\nb: &b [*a,*a]\nc: &c [*b,*b]\n",
    "too deep, flow": "a: " + "[" * 400 + "]" * 400 + "\n",
    "too deep, block": "".join(" " * i + f"k{i}:\n" for i in range(40)) + " " * 40 + "v\n",
    "unclosed flow": "a: [1, 2\nb: 3\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
    "tab indentation": "a:\n\tb: 1\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "python tag": "a: !!python/object:os.system ls\n",
    "unknown tag": "a: !shout x\n",
    "unclosed quote": "a: 'open\nb: 2\n",
    "stray colon in a plain scalar": "a: b: c\n",
    "undefined anchor": "a: *nowhere\n",
    "empty": "",
    "only a comment": "# nothing\n",
}


def _positions(node: yaml.Node) -> list[tuple[int, int, int, int]]:
    """Line, column, start and end offset of every node, in document order."""
    found = [(node.start_mark.line, node.start_mark.column, node.start_mark.index,
              node.end_mark.index)]
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found += _positions(key) + _positions(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _positions(item)
    return found


def _compose(text: str, loader: type) -> tuple[object, list] | tuple[int, int, str]:
    try:
        node, data = load._compose(text, loader)
    except load._Refused as refused:
        return refused.args
    return data, _positions(node)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bundled_sources_read_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    c, python = _compose(text, load._CLoader), _compose(text, load._Loader)
    assert isinstance(python[1], list), "a bundled source parses"
    assert c == python


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_valid_documents_read_alike(text: str) -> None:
    python = _compose(text, load._Loader)
    assert isinstance(python[1], list)
    assert _compose(text, load._CLoader) == python


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_broken_documents_refused_by_both(text: str) -> None:
    """libyaml refuses what PyYAML refuses (so the pure-Python reading, whose message we show,
    always happens); where the refusal is ours, both loaders name the same place."""
    python, c = _compose(text, load._Loader), _compose(text, load._CLoader)
    assert isinstance(python[0], int) and isinstance(c[0], int), (python, c)
    if "aliases (" in python[2] or "levels deep" in python[2]:
        assert c == python


@pytest.mark.parametrize("text", [*LOADED_ALIKE.values(), *BROKEN.values()],
                         ids=[*LOADED_ALIKE.keys(), *BROKEN.keys()])
def test_load_yaml_reports_as_pure_python(text: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text(text, encoding="utf-8", newline="")

    def run() -> tuple[object, list[str]]:
        problems = Problems()
        source = load.load_yaml(path, "doc.yaml", problems)
        return (source.data, source.values) if source else None, [str(p) for p in problems.found]

    fast = run()
    monkeypatch.setattr(load, "LOADERS", (load._Loader,))
    assert fast == run()


def test_libyaml_is_used() -> None:
    """The fast path is the one taken: a large document parses with the C parser."""
    assert load.LOADERS[0] is load._CLoader
    assert issubclass(load._CLoader, yaml._yaml.CParser)
