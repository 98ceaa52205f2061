"""Model specs read from Hugging Face `config.json` files: the dimensions every calculator needs.

Dimension letters are the suffix sheet's (`mlgrind.ref.notation`): V vocabulary, D model, F MLP
hidden, H query heads, G kv heads, K key (and query) head size, E experts, C MLA latent, R MLA
RoPE key. One spec covers the families we bundle:

    gpt2                          LayerNorm, learned positions, GELU MLP, biases everywhere, tied
    llama, mistral, qwen2         RMSNorm, RoPE, SwiGLU MLP, GQA (qwen2: q/k/v biases)
    mixtral                       llama attention, every MLP a top-k mixture of SwiGLU experts
    deepseek_v3                   MLA attention, first k layers dense, then routed + shared experts

A bundled config keeps the values of the public file, with a `_source` key naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


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


def _field(config: dict, key: str, where: str, kind: type = int, default=None):
    if key not in config or config[key] is None:
        if default is not None:
            return default
        raise SpecError(f"{where}: missing field {key!r}")
    value = config[key]
    # bool is an int in Python; a flag where a size is expected is a mistake in the file.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise SpecError(f"{where}: field {key!r} must be a non-negative integer, not {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise SpecError(f"{where}: field {key!r} must be true or false, not {value!r}")
    return value


def _gpt2(c: dict, name: str, source: str, where: str) -> ModelSpec:
    D, H = _field(c, "n_embd", where), _field(c, "n_head", where)
    if H == 0 or D % H:
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
    if H == 0 or (D % H and "head_dim" not in c):
        raise SpecError(f"{where}: hidden_size {D} is not a multiple of num_attention_heads {H}")
    K = _field(c, "head_dim", where, default=D // H)
    G = _field(c, "num_key_value_heads", where, default=H)
    if G == 0 or H % G:
        raise SpecError(f"{where}: {H} attention heads cannot share {G} key/value heads evenly")
    attention_bias = _field(c, "attention_bias", where, bool, default=False)
    moe = {}
    if model_type == "mixtral":
        moe = {"E": _field(c, "num_local_experts", where),
               "top_k": _field(c, "num_experts_per_tok", where),
               "F_expert": _field(c, "intermediate_size", where)}
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
    H = _field(c, "num_attention_heads", where)
    K_nope, R = _field(c, "qk_nope_head_dim", where), _field(c, "qk_rope_head_dim", where)
    mla = MLA(q_rank=_field(c, "q_lora_rank", where, default=0), C=_field(c, "kv_lora_rank", where),
              R=R, K_nope=K_nope)
    return ModelSpec(
        name, source, "deepseek_v3", V=_field(c, "vocab_size", where),
        D=_field(c, "hidden_size", where), n_layers=_field(c, "num_hidden_layers", where),
        H=H, G=H, K=K_nope + R, K_v=_field(c, "v_head_dim", where),
        F=_field(c, "intermediate_size", where),
        context=_field(c, "max_position_embeddings", where), learned_positions=0,
        norm="rmsnorm", mlp_gated=True, qkv_bias=False, o_bias=False, mlp_bias=False,
        tied=_field(c, "tie_word_embeddings", where, bool, default=False),
        E=_field(c, "n_routed_experts", where), top_k=_field(c, "num_experts_per_tok", where),
        F_expert=_field(c, "moe_intermediate_size", where),
        n_shared_experts=_field(c, "n_shared_experts", where, default=0),
        first_dense=_field(c, "first_k_dense_replace", where, default=0),
        router_bias=c.get("topk_method") == "noaux_tc", mla=mla,
        mtp_layers=_field(c, "num_nextn_predict_layers", where, default=0),
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
        raise SpecError(f"{where}: a config.json holds a JSON object")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise SpecError(f"{where}: field 'model_type' is {model_type!r}; supported: {known}")
    return FAMILIES[model_type](config, name, config.get("_source", where), where)


def load_config(path: Path) -> ModelSpec:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{path}: cannot read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"{path}:{error.lineno}:{error.colno}: not JSON ({error.msg})") from None
    return from_config(config, path.stem, str(path))


def _bundled():
    return resources.files("mlgrind.calc") / "models"


def model_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in _bundled().iterdir() if p.name.endswith(".json"))


def load_model(name: str) -> ModelSpec:
    """A bundled model by name (`mlgrind calc models` lists them)."""
    path = _bundled() / f"{name}.json"
    if not path.is_file():
        raise SpecError(f"unknown model {name!r}; bundled: {', '.join(model_names())}")
    return from_config(json.loads(path.read_text(encoding="utf-8")), name, f"models/{name}.json")
