"""`mlgrind calc` as a user runs it: topics, lists, JSON, errors, and a start that stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlgrind.calc import hardware
from mlgrind.calc.specs import model_names
from tests.conftest import run

TOPICS = ["params", "flops", "train", "memory", "comms", "kv", "serve", "rl"]


def test_help_lists_every_topic_and_the_lists():
    result = run("calc", "--help")
    assert result.code == 0
    for topic in TOPICS + ["models", "hardware"]:
        assert f"  {topic} " in result.out


def test_models_and_hardware_list_everything_bundled():
    models = run("calc", "models")
    assert models.code == 0
    for name in model_names():
        assert f"\n{name}:" in models.out  # with its source
    machines = run("calc", "hardware", "--json")
    assert set(json.loads(machines.out)) == set(hardware.load_all())
    assert {"h100-sxm", "h100-pcie", "h200", "a100-40gb", "a100-80gb", "b200"} <= set(hardware.load_all())


def test_every_bundled_model_and_hardware_entry_cites_a_source():
    listed = json.loads(run("calc", "models", "--json").out)
    assert [e["name"] for e in listed] == model_names()
    assert all(e["source"].startswith(("https://huggingface.co/", "Brown et al.", "Narayanan et al."))
               for e in listed)
    assert all(h.source for h in hardware.load_all().values())


@pytest.mark.parametrize("topic, extra", [
    ("params", []), ("flops", []), ("train", ["--gpus", "1024"]), ("memory", ["--tp", "8", "--pp", "2", "--dp", "4"]),
    ("comms", ["--tp", "2", "--dp", "4", "--ep", "4"]), ("kv", []), ("serve", []), ("rl", []),
    ("plan", ["--gpus", "64", "--batch", "256"]),
])
def test_every_topic_shows_its_working_within_80_columns_on_an_moe_model(topic, extra):
    table = run("calc", topic, "--model", "mixtral-8x7b", *extra)
    assert table.code == 0, table.err
    # Not a terminal here: 80 columns, wrapped (`table_text` below shows nothing is cut short).
    assert max(len(line) for line in table.out.splitlines()) <= 80
    assert "assumptions" in table.out
    data = json.loads(run("calc", topic, "--model", "mixtral-8x7b", *extra, "--json").out)
    assert data["model"] == "mixtral-8x7b"
    rows = data["collectives"] if topic == "comms" else [data]
    for row in rows:  # every result derived, not just stated: a formula and what it assumes
        assert row["formula"] and row["assumptions"]


def test_lists_fit_80_columns_or_turn_into_blocks():
    for listing in ("models", "hardware"):
        out = run("calc", listing).out
        assert max(len(line) for line in out.splitlines()) <= 80
    # A table too wide for its width becomes one block per row, every cell kept whole.
    from mlgrind.calc.working import table_text
    wide = table_text("t", ["name", "a long column", "another one"], [["x", "1,234,567,890", "9" * 30]], width=40)
    assert "1,234,567,890" in wide and "9" * 30 in wide
    assert wide.splitlines()[1] == "x"


def test_params_json_keys_hold_the_exact_counts():
    data = json.loads(run("calc", "params", "--model", "gpt2", "--json").out)
    assert data["total"] == 124_439_808  # the published GPT-2 small count
    assert data["total"] == data["embedding"] + data["attention"] + data["mlp"] + data["vectors"]


def test_a_users_config_is_read(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                                  "intermediate_size": 11008, "num_attention_heads": 32,
                                  "num_hidden_layers": 32, "max_position_embeddings": 4096}))
    data = json.loads(run("calc", "params", "--config", config, "--json").out)
    assert data["total"] == 6_738_415_616  # Llama-2-7B again: kv heads default to the query heads


@pytest.mark.parametrize("content, message", [
    ({"model_type": "mamba"}, "field 'model_type' is 'mamba'"),
    ({"model_type": "llama", "hidden_size": 64}, "missing field 'num_attention_heads'"),
    ({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": True, "n_positions": 8,
      "vocab_size": 10}, "field 'n_layer' must be"),
])
def test_a_bad_config_is_one_line_naming_the_field_and_exit_1(tmp_path, content, message):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(content))
    result = run("calc", "params", "--config", config)
    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_not_json_names_the_place(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"model_type": "llama",\n  oops}')
    result = run("calc", "params", "--config", config)
    assert result.code == 1 and "config.json:2:" in result.err


@pytest.mark.parametrize("args", [
    ["calc", "params"],
    ["calc", "params", "--model", "gpt2", "--config", "x.json"],
    ["calc", "train", "--model", "gpt2"],
    ["calc", "memory", "--model", "gpt2", "--zero", "4"],
])
def test_usage_errors_exit_2(args):
    assert run(*args).code == 2


def test_impossible_requests_exit_1():
    assert run("calc", "memory", "--model", "llama-2-7b", "--tp", "3").code == 1  # 32 heads
    assert run("calc", "params", "--model", "gpt-5").code == 1
    assert run("calc", "train", "--model", "gpt2", "--gpus", "8", "--hw", "a100-80gb", "--dtype", "fp8").code == 1


def test_calc_help_imports_nothing_heavy():
    # -X importtime lists every module imported; `calc` must start without the build pipeline.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlgrind", "calc", "--help"],
                            capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert not imported & {"weasyprint", "pydantic", "genanki", "jinja2", "numpy", "yaml", "markdown_it"}


def test_every_precision_recipe_is_offered_where_memory_is_planned():
    from mlgrind.calc import memory
    from mlgrind.calc.cli import PRECISIONS

    assert PRECISIONS == list(memory.RECIPES)  # one list for `memory` and `plan`
