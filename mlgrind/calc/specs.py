"""Model specs read from Hugging Face `config.json` files: the dimensions every calculator needs.

Dimension letters are the suffix sheet's (`mlgrind.ref.notation`): V vocabulary, D model, F MLP
hidden, H query heads, G kv heads, K key (and query) head size, E experts, C MLA latent, R MLA
RoPE key. One spec covers the families we bundle:

    gpt2                          LayerNorm, learned positions, GELU MLP, biases everywhere, tied
    llama, mistral, qwen2         RMSNorm, RoPE, SwiGLU MLP, GQA (qwen2: q/k/v biases)
    mixtral                       llama attention, every MLP a top-k mixture of SwiGLU experts
    deepseek_v3                   MLA attention, first k layers dense, then routed + shared experts

A bundled config keeps the values of the public file, with a `_source` key naming it.

Every field read is checked for its type and range before any calculator sees it, and a file is
checked before it is parsed (a regular file, at most 1 MB, UTF-8, strict JSON): a bad config is a
one-line `SpecError` naming the file and the field, never a traceback or a meaningless answer.
Sizes and counts are integers from 1 (0 where the field says "none": q_lora_rank,
n_shared_experts, first_k_dense_replace, ...) to 2^31, far beyond any real model and small
enough that every product the calculators form stays a finite float.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MAX_CONFIG_BYTES = 1_000_000  # a config.json is a few kB; more is the wrong file (weights, a log)
MAX_SIZE = 2**31


class SpecError(Exception):
    """A config we cannot read: unknown architecture, missing or malformed field."""


@dataclass(frozen=True)
class MLA:
    """DeepSeek's multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section 2.1)."""

    q_rank: int  # query low-rank compression (0: queries are projected directly)
    C: int  # kv latent, cached
    R: int  # decoupled RoPE key per head, the shared key is cached
    K_nope: int  # per-head key/query part without RoPE


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    model_type: str
    V: int
    D: int
    n_layers: int
    H: int
    G: int  # kv heads; G = H is MHA
    K: int  # query/key head size (MLA: K_nope + R)
    K_v: int  # value head size
    F: int  # dense MLP hidden size
    context: int
    learned_positions: int  # rows of a learned position table (0 for RoPE)
    norm: str  # "layernorm" (gain and bias) or "rmsnorm" (gain)
    mlp_gated: bool  # SwiGLU: three matrices instead of two
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tied: bool  # output head shares the token embedding
    E: int = 0  # routed experts; 0 = dense model
    top_k: int = 0
    F_expert: int = 0
    n_shared_experts: int = 0
    first_dense: int = 0  # leading layers with a dense MLP instead of experts
    router_bias: bool = False  # DeepSeek-V3's per-expert bias for load balancing
    mla: MLA | None = None
    mtp_layers: int = 0  # DeepSeek's multi-token-prediction modules, outside the main model

    @property
    def moe_layers(self) -> int:
        return self.n_layers - self.first_dense if self.E else 0

    @property
    def dense_layers(self) -> int:
        return self.n_layers - self.moe_layers


def _brief(value) -> str:
    """A value cut short so that a message stays one line: quoted like the field names beside
    it if a string, as JSON writes it otherwise (`true`, not `True`)."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text):,} characters)"


def _field(config: dict, key: str, where: str, kind: type = int, default=None, low: int = 1):
    """`config[key]` (or `default` when absent or null), checked: an int from `low` to MAX_SIZE,
    a bool or a str, as `kind` says."""
    if config.get(key) is None:
        if default is not None:
            return default
        raise SpecError(f"{where}: missing field {key!r}")
    value = config[key]
    # bool is an int in Python; a flag where a size is expected is a mistake in the file.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{where}: field {key!r} must be an integer, not {_brief(value)}")
    if kind is int and not low <= value <= MAX_SIZE:
        raise SpecError(f"{where}: field {key!r} is {_brief(value)}; it must be from {low} to "
                        f"{MAX_SIZE:,} (2^31)")
    if kind is bool and not isinstance(value, bool):
        raise SpecError(f"{where}: field {key!r} must be true or false, not {_brief(value)}")
    if kind is str and not isinstance(value, str):
        raise SpecError(f"{where}: field {key!r} must be a string, not {_brief(value)}")
    return value


def _experts(c: dict, where: str, experts_key: str) -> tuple[int, int]:
    """(E, top_k): a token cannot be routed to more experts than there are."""
    E, top_k = _field(c, experts_key, where), _field(c, "num_experts_per_tok", where)
    if top_k > E:
        raise SpecError(f"{where}: field 'num_experts_per_tok' is {top_k}, more than the {E} experts "
                        f"of {experts_key!r}")
    return E, top_k


def _gpt2(c: dict, name: str, source: str, where: str) -> ModelSpec:
    D, H = _field(c, "n_embd", where), _field(c, "n_head", where)
    if D % H:
        raise SpecError(f"{where}: n_embd {D} is not a multiple of n_head {H}")
    positions = _field(c, "n_positions", where)
    return ModelSpec(
        name, source, "gpt2", V=_field(c, "vocab_size", where), D=D,
        n_layers=_field(c, "n_layer", where), H=H, G=H, K=D // H, K_v=D // H,
        F=_field(c, "n_inner", where, default=4 * D), context=positions,
        learned_positions=positions, norm="layernorm", mlp_gated=False,
        qkv_bias=True, o_bias=True, mlp_bias=True,
        tied=_field(c, "tie_word_embeddings", where, bool, default=True),
    )


def _llama_like(c: dict, name: str, source: str, where: str) -> ModelSpec:
    """llama, mistral, qwen2 and mixtral share attention, norms and the SwiGLU MLP."""
    model_type = c["model_type"]
    D, H = _field(c, "hidden_size", where), _field(c, "num_attention_heads", where)
    if D % H and c.get("head_dim") is None:
        raise SpecError(f"{where}: hidden_size {D} is not a multiple of num_attention_heads {H}")
    K = _field(c, "head_dim", where, default=D // H)
    G = _field(c, "num_key_value_heads", where, default=H)
    if H % G:
        raise SpecError(f"{where}: {H} attention heads cannot share {G} key/value heads evenly")
    attention_bias = _field(c, "attention_bias", where, bool, default=False)
    moe = {}
    if model_type == "mixtral":
        E, top_k = _experts(c, where, "num_local_experts")
        moe = {"E": E, "top_k": top_k, "F_expert": _field(c, "intermediate_size", where)}
    return ModelSpec(
        name, source, model_type, V=_field(c, "vocab_size", where), D=D,
        n_layers=_field(c, "num_hidden_layers", where), H=H, G=G, K=K, K_v=K,
        F=_field(c, "intermediate_size", where),
        context=_field(c, "max_position_embeddings", where), learned_positions=0,
        norm="rmsnorm", mlp_gated=True,
        qkv_bias=model_type == "qwen2" or attention_bias, o_bias=attention_bias,
        mlp_bias=_field(c, "mlp_bias", where, bool, default=False),
        tied=_field(c, "tie_word_embeddings", where, bool, default=False), **moe,
    )


def _deepseek_v3(c: dict, name: str, source: str, where: str) -> ModelSpec:
    if _field(c, "moe_layer_freq", where, default=1) != 1:
        raise SpecError(f"{where}: only moe_layer_freq 1 (every layer after the dense ones) is supported")
    H, L = _field(c, "num_attention_heads", where), _field(c, "num_hidden_layers", where)
    K_nope = _field(c, "qk_nope_head_dim", where)
    R = _field(c, "qk_rope_head_dim", where, low=0)  # 0: no decoupled RoPE key
    mla = MLA(q_rank=_field(c, "q_lora_rank", where, default=0, low=0), C=_field(c, "kv_lora_rank", where),
              R=R, K_nope=K_nope)
    E, top_k = _experts(c, where, "n_routed_experts")
    first_dense = _field(c, "first_k_dense_replace", where, default=0, low=0)
    if first_dense >= L:  # an MoE config whose every layer is dense has experts nowhere
        raise SpecError(f"{where}: field 'first_k_dense_replace' is {first_dense}, which leaves none "
                        f"of the {L} layers (num_hidden_layers) for the experts")
    return ModelSpec(
        name, source, "deepseek_v3", V=_field(c, "vocab_size", where),
        D=_field(c, "hidden_size", where), n_layers=L,
        H=H, G=H, K=K_nope + R, K_v=_field(c, "v_head_dim", where),
        F=_field(c, "intermediate_size", where),
        context=_field(c, "max_position_embeddings", where), learned_positions=0,
        norm="rmsnorm", mlp_gated=True, qkv_bias=False, o_bias=False, mlp_bias=False,
        tied=_field(c, "tie_word_embeddings", where, bool, default=False),
        E=E, top_k=top_k, F_expert=_field(c, "moe_intermediate_size", where),
        n_shared_experts=_field(c, "n_shared_experts", where, default=0, low=0),
        first_dense=first_dense,
        router_bias=_field(c, "topk_method", where, str, default="") == "noaux_tc", mla=mla,
        mtp_layers=_field(c, "num_nextn_predict_layers", where, default=0, low=0),
    )


FAMILIES = {
    "gpt2": _gpt2,
    "llama": _llama_like,
    "mistral": _llama_like,
    "qwen2": _llama_like,
    "mixtral": _llama_like,
    "deepseek_v3": _deepseek_v3,
}


def from_config(config: dict, name: str, where: str) -> ModelSpec:
    """A spec from the dict of a config.json; `where` names the file in error messages."""
    if not isinstance(config, dict):
        raise SpecError(f"{where}: a config.json holds a JSON object {{...}}, not {_brief(config)}")
    model_type = _field(config, "model_type", where, str)
    if model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise SpecError(f"{where}: field 'model_type' is {_brief(model_type)}; supported: {known}")
    return FAMILIES[model_type](config, name, _field(config, "_source", where, str, default=where), where)


# A NaN or Infinity outside a string: Python's json reads them, JSON has no such numbers.
_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


def _parse(data: bytes, where: str) -> dict:
    """The JSON object in `data`, or a SpecError at `where:line:col`."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # an editor's byte-order mark is not an error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise SpecError(f"{where}:{line}:{column}: not UTF-8 (byte 0x{data[error.start]:02x})") from None

    def constant(literal: str):
        at = next(m.start(1) for m in _CONSTANT.finditer(text) if m.group(1))
        raise json.JSONDecodeError(f"{literal} is not a JSON number", text, at)

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as error:
        raise SpecError(f"{where}:{error.lineno}:{error.colno}: not JSON ({error.msg})") from None
    except RecursionError:
        raise SpecError(f"{where}: not a config (JSON nested too deeply to read)") from None
    except ValueError:  # an integer longer than Python converts (4,300 digits)
        raise SpecError(f"{where}: not a config (an integer too long to read)") from None


def load_config(path: Path) -> ModelSpec:
    """A spec from a config.json file of the user's: checked to be a regular file of at most
    MAX_CONFIG_BYTES before it is read, so that a FIFO, a device or a checkpoint neither hangs
    nor fills memory."""
    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise SpecError(f"{path}: not a regular file")
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise SpecError(f"{path}: cannot read ({error.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SpecError(f"{path}: larger than {MAX_CONFIG_BYTES // 10**6} MB; a config.json is a few kB")
    return from_config(_parse(data, str(path)), path.stem, str(path))


def _bundled():
    return resources.files("mlgrind.calc") / "models"


def model_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in _bundled().iterdir() if p.name.endswith(".json"))


def load_model(name: str) -> ModelSpec:
    """A bundled model by name, in any case (`mlgrind calc models` lists them). Only a listed
    name becomes a path, so no name reaches a file outside the bundle."""
    names = {n.lower(): n for n in model_names()}
    if name.lower() not in names:
        close = difflib.get_close_matches(name.lower(), list(names), n=1)
        hint = f"; did you mean {names[close[0]]!r}?" if close else ";"
        raise SpecError(f"unknown model {name!r}{hint} bundled: {', '.join(names.values())}")
    name = names[name.lower()]
    where = f"models/{name}.json"
    return from_config(_parse((_bundled() / f"{name}.json").read_bytes(), where), name, where)
