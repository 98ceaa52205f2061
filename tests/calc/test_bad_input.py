"""Hostile input to `mlgrind calc`: config files and model names. Each ends in one line naming the
file and the field (exit 1) or a usage error (exit 2), never a traceback, a hang or an answer
computed from nonsense; a config that passes the checks gives finite numbers in every topic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlgrind.calc import specs
from mlgrind.calc.specs import MAX_SIZE, SpecError
from tests.conftest import ROOT, run

# Every calc topic with the options it cannot run without (comms: a group to communicate in).
TOPICS = {"params": [], "flops": [], "train": ["--gpus", "8"], "memory": [], "comms": ["--dp", "2"],
          "kv": [], "serve": [], "rl": []}

GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 128, "vocab_size": 100}
LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
         "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
         "max_position_embeddings": 128}
MIXTRAL = {**LLAMA, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2}
DEEPSEEK = {"model_type": "deepseek_v3", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_hidden_layers": 3, "max_position_embeddings": 128,
            "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "kv_lora_rank": 32,
            "q_lora_rank": 48, "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
            "n_shared_experts": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "num_nextn_predict_layers": 1, "topk_method": "noaux_tc"}
FAMILIES = {"gpt2": GPT2, "llama": LLAMA, "mixtral": MIXTRAL, "deepseek_v3": DEEPSEEK}

# Every field specs.py reads, by family, with the least value it allows: 1 for a size or a
# count, 0 where 0 means "none" (no query compression, no shared expert, no dense layer first).
INTS = {
    "gpt2": {"n_embd": 1, "n_head": 1, "n_layer": 1, "n_positions": 1, "vocab_size": 1, "n_inner": 1},
    "llama": {"hidden_size": 1, "num_attention_heads": 1, "head_dim": 1, "num_key_value_heads": 1,
              "vocab_size": 1, "num_hidden_layers": 1, "intermediate_size": 1, "max_position_embeddings": 1},
    "deepseek_v3": {"moe_layer_freq": 1, "num_attention_heads": 1, "num_hidden_layers": 1,
                    "qk_nope_head_dim": 1, "qk_rope_head_dim": 0, "q_lora_rank": 0, "kv_lora_rank": 1,
                    "v_head_dim": 1, "vocab_size": 1, "hidden_size": 1, "intermediate_size": 1,
                    "max_position_embeddings": 1, "n_routed_experts": 1, "num_experts_per_tok": 1,
                    "moe_intermediate_size": 1, "n_shared_experts": 0, "first_k_dense_replace": 0,
                    "num_nextn_predict_layers": 0},
}
INTS["mixtral"] = {**INTS["llama"], "num_local_experts": 1, "num_experts_per_tok": 1}
BOOLS = {"gpt2": ["tie_word_embeddings"], "llama": ["attention_bias", "mlp_bias", "tie_word_embeddings"],
         "mixtral": ["attention_bias", "mlp_bias", "tie_word_embeddings"], "deepseek_v3": ["tie_word_embeddings"]}
STRS = {family: ["model_type", "_source"] for family in FAMILIES} | {
    "deepseek_v3": ["model_type", "_source", "topk_method"]}


def _cases(table: dict, bad_values) -> list:
    return [pytest.param(family, field, bad, id=f"{family}-{field}-{bad!r}"[:60])
            for family, fields in table.items() for field, low in (
                fields.items() if isinstance(fields, dict) else ((f, None) for f in fields))
            for bad in bad_values(low)]


def _one_line_error(result, *fragments: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1, result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


def _write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


# ----------------------------------------------------------------------------- every field


@pytest.mark.parametrize("family, field, bad", _cases(
    INTS, lambda low: [low - 1, MAX_SIZE + 1, 10**400, "8", 8.5, True, [8], {"n": 8}]))
def test_every_integer_field_is_checked_for_type_and_range(family, field, bad):
    with pytest.raises(SpecError, match=rf"^config\.json: field '{field}' (is|must be)"):
        specs.from_config({**FAMILIES[family], field: bad}, "m", "config.json")


@pytest.mark.parametrize("family, field, bad", _cases(BOOLS, lambda _: [1, "true", [True]]))
def test_every_flag_field_must_be_true_or_false(family, field, bad):
    with pytest.raises(SpecError, match=rf"^config\.json: field '{field}' must be true or false"):
        specs.from_config({**FAMILIES[family], field: bad}, "m", "config.json")


@pytest.mark.parametrize("family, field, bad", _cases(STRS, lambda _: [["llama"], 7, {"a": 1}]))
def test_every_string_field_must_be_a_string(family, field, bad):
    # A list as model_type used to be looked up in a dict: TypeError, unhashable type.
    with pytest.raises(SpecError, match=rf"^config\.json: field '{field}' must be a string"):
        specs.from_config({**FAMILIES[family], field: bad}, "m", "config.json")


@pytest.mark.parametrize("config, message", [
    ({**MIXTRAL, "num_experts_per_tok": 5}, "'num_experts_per_tok' is 5, more than the 4 experts"),
    ({**DEEPSEEK, "num_experts_per_tok": 9}, "'num_experts_per_tok' is 9, more than the 8 experts"),
    ({**DEEPSEEK, "first_k_dense_replace": 3}, "'first_k_dense_replace' is 3, which leaves none of the 3"),
    ({**DEEPSEEK, "moe_layer_freq": 2}, "only moe_layer_freq 1"),
    ({**LLAMA, "hidden_size": 66}, "hidden_size 66 is not a multiple of num_attention_heads 4"),
    ({**LLAMA, "num_key_value_heads": 3}, "4 attention heads cannot share 3 key/value heads"),
    ({**LLAMA, "num_key_value_heads": 8}, "4 attention heads cannot share 8 key/value heads"),
    ({**GPT2, "n_head": 5}, "n_embd 64 is not a multiple of n_head 5"),
])
def test_fields_that_must_agree_with_each_other(config, message):
    with pytest.raises(SpecError, match=f"^config\\.json: .*{re.escape(message)}"):
        specs.from_config(config, "m", "config.json")


@pytest.mark.parametrize("config", [
    {**DEEPSEEK, "q_lora_rank": None},  # DeepSeek-V2-Lite projects queries directly
    {**DEEPSEEK, "q_lora_rank": 0, "n_shared_experts": 0, "first_k_dense_replace": 0,
     "num_nextn_predict_layers": 0, "qk_rope_head_dim": 0},
    {**LLAMA, "hidden_size": 66, "head_dim": 16},  # a head_dim of its own need not divide D
    {**LLAMA, "head_dim": None},  # null: D / H, as Hugging Face reads it
    {**MIXTRAL, "num_experts_per_tok": 4},  # every expert
])
def test_the_zeros_and_nulls_a_real_config_uses_are_accepted(config):
    specs.from_config(config, "m", "config.json")


# ----------------------------------------------------------------------------- the file


@pytest.mark.parametrize("content, fragments", [
    pytest.param(b'{"model_type": "llama",\n "_source": "caf\xe9"}', [":2:17: not UTF-8 (byte 0xe9)"],
                 id="latin-1"),  # was a UnicodeDecodeError
    pytest.param(b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"], id="nested"),  # RecursionError
    pytest.param(("{\n  " + '"_pad": "' + "x" * 1_100_000 + '"}').encode(), ["larger than 1 MB"], id="1.1 MB"),
    pytest.param(b'{"model_type": "llama",\n "hidden_size": NaN}', [":2:17: not JSON (NaN is not a JSON number)"],
                 id="NaN"),
    pytest.param(b'{"_source": "NaN", "rms_norm_eps": -Infinity}',
                 [":1:36: not JSON (-Infinity is not a JSON number)"], id="-Infinity"),
    pytest.param(json.dumps({**LLAMA, "hidden_size": 10**400}).encode(), ["'hidden_size' is 1000", "2^31"],
                 id="10^400"),  # was an OverflowError
    pytest.param(b'{"vocab_size": ' + b"9" * 5000 + b"}", ["an integer too long"],
                 id="5000 digits"),  # Python's 4,300-digit limit: was a ValueError
    pytest.param(json.dumps({**LLAMA, "model_type": ["llama"]}).encode(), ["'model_type' must be a string"],
                 id="list type"),  # was a TypeError
    pytest.param(json.dumps({**LLAMA, "model_type": "x" * 10_000}).encode(),
                 ["'model_type' is 'xxx", "(10,002 characters); supported: deepseek_v3"], id="long type"),
    pytest.param(json.dumps({**LLAMA, "num_hidden_layers": 0}).encode(), ["'num_hidden_layers' is 0"],
                 id="no layers"),
    pytest.param(b"[1, 2]", ["holds a JSON object {...}, not [1, 2]"], id="array"),
])
def test_a_hostile_file_is_one_line_naming_it(tmp_path, content, fragments):
    config = _write(tmp_path / "config.json", content)
    _one_line_error(run("calc", "params", "--config", config), f"{config}", *fragments)


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    config = _write(tmp_path / "config.json", b"\xef\xbb\xbf" + json.dumps(GPT2).encode())
    assert run("calc", "params", "--config", config).code == 0


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    # In a child process: reading a FIFO with no writer used to block forever.
    result = subprocess.run([sys.executable, "-m", "mlgrind", "calc", "params", "--config", str(fifo)],
                            check=False, capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert result.returncode == 1 and result.stderr == f"error: {fifo}: not a regular file\n"


def test_a_device_is_refused():
    # /dev/null used to read as an empty file ("not JSON"); /dev/zero would fill memory.
    _one_line_error(run("calc", "params", "--config", "/dev/null"), "/dev/null: not a regular file")


def test_a_directory_or_a_missing_file_is_refused(tmp_path):
    assert run("calc", "params", "--config", tmp_path).code == 2  # click: "is a directory"
    _one_line_error(run("calc", "params", "--config", tmp_path / "nope.json"),
                    "nope.json: cannot read (No such file or directory)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_an_unreadable_file_is_refused(tmp_path):
    config = _write(tmp_path / "config.json", GPT2)
    config.chmod(0)
    _one_line_error(run("calc", "params", "--config", config), "config.json: cannot read (Permission denied)")


# ----------------------------------------------------------------------------- --model


def test_model_takes_a_bundled_name_not_a_path(tmp_path):
    # Today's `--model` joined the name to the package's models folder: a relative path read any
    # JSON file. A path is a usage error now, pointing at --config.
    _write(tmp_path / "elsewhere.json", GPT2)
    models = Path(specs.__file__).parent / "models"
    escape = os.path.relpath(tmp_path / "elsewhere", models)
    result = run("calc", "params", "--model", escape)
    assert result.code == 2 and "--config" in result.err and "Traceback" not in result.err
    assert run("calc", "params", "--model", "gpt2.json").code == 2


def test_model_names_are_case_insensitive():
    result = run("calc", "params", "--model", "Llama-3-8B", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["model"] == "llama-3-8b"


@pytest.mark.parametrize("name, hint", [("lama-3-8b", "did you mean 'llama-3-8b'?"),
                                        ("mixtral-8x7", "did you mean 'mixtral-8x7b'?"),
                                        ("gpt-5", "bundled: deepseek-v3, gpt2")])
def test_an_unknown_model_suggests_the_nearest_name(name, hint):
    _one_line_error(run("calc", "params", "--model", name), f"unknown model {name!r}", hint)


# ----------------------------------------------------------------------------- every topic

# Each is refused by the checks, whichever topic reads it.
HOSTILE = {
    "not-utf-8": b'{"model_type": "\xff"}',
    "nested": b"[" * 50_000 + b"]" * 50_000,
    "nan": b'{"model_type": "llama", "hidden_size": NaN}',
    "beyond-float": json.dumps({**LLAMA, "hidden_size": 10**400}).encode(),
    "zero-hidden": json.dumps({**LLAMA, "hidden_size": 0}).encode(),
    "zero-layers": json.dumps({**GPT2, "n_layer": 0}).encode(),
    "negative-heads": json.dumps({**MIXTRAL, "num_attention_heads": -4}).encode(),
    "list-type": json.dumps({**LLAMA, "model_type": ["llama"]}).encode(),
    "string-size": json.dumps({**LLAMA, "vocab_size": "32000"}).encode(),
    "top-k-over-experts": json.dumps({**MIXTRAL, "num_experts_per_tok": 8}).encode(),
    "all-dense-moe": json.dumps({**DEEPSEEK, "first_k_dense_replace": 3}).encode(),
    "not-an-object": b'"llama"',
}

# Each passes the checks: every topic answers with finite numbers or refuses in one line.
BIG = MAX_SIZE
EXTREME = {
    "all-ones": {**LLAMA, **dict.fromkeys(INTS["llama"], 1)},
    "huge-llama": {**LLAMA, **dict.fromkeys(INTS["llama"], BIG)},
    "huge-mixtral": {**MIXTRAL, **dict.fromkeys(INTS["mixtral"], BIG)},
    "huge-gpt2": {**GPT2, **dict.fromkeys(INTS["gpt2"], BIG)},
    "huge-deepseek": {**DEEPSEEK, **dict.fromkeys(INTS["deepseek_v3"], BIG), "moe_layer_freq": 1,
                      "first_k_dense_replace": BIG - 1},
    "one-kv-head-odd-head-dim": {**LLAMA, "hidden_size": 10, "num_attention_heads": 3, "head_dim": 7,
                                 "num_key_value_heads": 1},
    "one-expert": {**MIXTRAL, "num_local_experts": 1, "num_experts_per_tok": 1},
    "deepseek-zeros": {**DEEPSEEK, **{k: 0 for k, low in INTS["deepseek_v3"].items() if low == 0}},
}


def _no_infinity_or_nan(text: str) -> None:
    """JSON output holds a non-finite float as NaN or Infinity (Python's json writes them)."""
    def refuse(literal):
        raise AssertionError(f"{literal} in the output")
    json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("name", HOSTILE)
def test_every_topic_refuses_a_hostile_config_in_one_line(tmp_path, name, topic):
    config = _write(tmp_path / "config.json", HOSTILE[name])
    result = run("calc", topic, "--config", config, *TOPICS[topic], "--json")
    _one_line_error(result, str(config))


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("name", EXTREME)
def test_every_topic_answers_an_extreme_config_in_finite_numbers(tmp_path, name, topic):
    config = _write(tmp_path / "config.json", EXTREME[name])
    result = run("calc", topic, "--config", config, *TOPICS[topic], "--json")
    if result.code:
        _one_line_error(result)  # an impossible request (no GPU holds it), said in one line
        return
    _no_infinity_or_nan(result.out)


@pytest.mark.parametrize("args", [
    ["flops", "--model", "gpt2", "--seq-len"], ["memory", "--model", "gpt2", "--seq-len"],
    ["memory", "--model", "gpt2", "--micro-batch"], ["comms", "--model", "gpt2", "--dp"],
    ["plan", "--model", "gpt2", "--gpus", "8", "--batch", "8", "--tp"],
])
def test_a_count_beyond_2_53_is_a_usage_error_and_at_2_53_a_finite_answer(args):
    # Integers beyond float range (10^400) were tracebacks (OverflowError) in formulas and times.
    assert run("calc", *args, str(10**400)).code == 2
    assert run("calc", *args, str(2**53 + 1)).code == 2
    at_limit = run("calc", *args, str(2**53), "--json")
    assert at_limit.code in (0, 1) and "Traceback" not in at_limit.err
    if at_limit.code == 0:
        assert "Infinity" not in at_limit.out and "NaN" not in at_limit.out


def test_a_tensor_shape_beyond_2_53_elements_is_refused():
    result = run("calc", "comms", "--op", "all-reduce", "--shape", f"{2**53}x2", "--ranks", "8")
    assert result.code == 1 and "2^53" in result.err


@pytest.mark.parametrize("args", [
    ["train", "--gpus", "1", "--days", "1e300", "--hw", "h100"],
    ["flops", "--model", "llama-3-8b", "--tokens", "1e308"],
    ["train", "--model", "llama-3-8b", "--gpus", str(2**53), "--days", "1e300"],
    ["train", "--model", "llama-3-8b", "--gpus", "1", "--tokens-per-second", "1e300"],
])
def test_a_result_beyond_float_range_is_one_line_not_a_traceback(args):
    # Each was an OverflowError traceback (formatting infinity) or printed `inf%`.
    result = run("calc", *args)
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1
    assert "inf" not in result.err.replace("floating", "")


def test_a_measured_throughput_above_the_peak_is_refused():
    # 1e6 tokens/s of Llama-3-8B on 8 H100s is 6 × the bf16 peak: a typo, not a 610 % MFU.
    result = run("calc", "train", "--model", "llama-3-8b", "--gpus", "8", "--tokens-per-second", "1e6")
    assert result.code == 1 and "610%" in result.err and "--tokens-per-second" in result.err
