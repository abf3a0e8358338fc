"""Loading LLaMA-format state dicts (Hugging Face key names) into a SpikeLLM.

Place in the picture (STYLE.md): the *models/* entry for weights trained elsewhere (e.g. TinyLlama); the
network's module names already follow HF LLaMA (`spikellm_network`), so loading is checking keys and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .spikellm_network import SpikeLLM, SpikeLLMConfig, SpikeLLMError

IGNORED_KEY_SUFFIXES = ("rotary_emb.inv_freq",)  # old HF checkpoints save this non-weight buffer


def _require(sd: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in sd:
        raise SpikeLLMError(f"LLaMA state dict: missing key {key!r}")
    return sd[key]


# Hugging Face LlamaConfig fields → ours (transformers `configuration_llama.py`); read, never guessed.
HF_FIELDS = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_hidden_layers": "n_layers",
             "num_attention_heads": "n_heads", "num_key_value_heads": "n_kv_heads",
             "intermediate_size": "intermediate_size", "max_position_embeddings": "max_seq_len",
             "rope_theta": "rope_theta", "rms_norm_eps": "rms_norm_eps", "tie_word_embeddings": "tie_word_embeddings"}
HF_DEFAULTS = {"num_key_value_heads": None, "rope_theta": 10000.0, "tie_word_embeddings": False}  # LlamaConfig's
# LlamaConfig options our decoder does not implement: refused by name rather than silently run differently.
HF_UNSUPPORTED = {"rope_scaling": None, "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
                  "pretraining_tp": 1}


def config_from_hf(hf: Mapping[str, Any], *, limits: Mapping[str, int | float] | None = None,
                   **overrides: Any) -> SpikeLLMConfig:
    """Our config from a Hugging Face LLaMA `config.json` (rms_norm_eps, max_position_embeddings → max_seq_len,
    heads, rope_theta, …). `limits`: the largest value each of our fields may take, checked before anything is
    built (models/checkpoint.py caps). Raises SpikeLLMError naming the field and value."""
    model_type = hf.get("model_type", "llama")
    if model_type != "llama":
        raise SpikeLLMError(f"config.json: model_type {str(model_type)[:40]!r} is not 'llama'")
    for name, default in HF_UNSUPPORTED.items():
        value = hf.get(name, default)
        if value != default and not (name == "pretraining_tp" and isinstance(value, int)):
            raise SpikeLLMError(f"config.json: {name} = {str(value)[:40]} is not supported (only {default!r})")
    fields: dict[str, Any] = {}
    for hf_name, ours in HF_FIELDS.items():
        if hf_name not in hf and hf_name not in HF_DEFAULTS:
            raise SpikeLLMError(f"config.json: missing field {hf_name!r}")
        value = hf.get(hf_name, HF_DEFAULTS.get(hf_name))
        limit = (limits or {}).get(ours)
        kind = bool if ours == "tie_word_embeddings" else float if ours in ("rope_theta", "rms_norm_eps") else int
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = isinstance(value, bool) if kind is bool else numeric and (kind is float or isinstance(value, int))
        if not fits and not (value is None and ours == "n_kv_heads"):
            raise SpikeLLMError(f"config.json: {hf_name} = {value!r:.40} is not a{'n' * (kind is int)} "
                                f"{kind.__name__}")
        if limit is not None and numeric and not 0 < value <= limit:
            raise SpikeLLMError(f"config.json: {hf_name} = {value} is outside 1..{limit}")
        fields[ours] = value
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * fields["n_heads"] != fields["hidden_size"]:
        raise SpikeLLMError(f"config.json: head_dim {head_dim} × num_attention_heads {fields['n_heads']} is not "
                            f"hidden_size {fields['hidden_size']}")
    fields["rope_theta"] = float(fields["rope_theta"])
    fields["rms_norm_eps"] = float(fields["rms_norm_eps"])
    fields.update(overrides)
    return SpikeLLMConfig(**fields)


def infer_config(sd: Mapping[str, Tensor], *, n_heads: int | None = None, hf_config: Mapping[str, Any] | None = None,
                 **overrides: Any) -> SpikeLLMConfig:
    """Our config: from the Hugging Face `hf_config` (config.json) when given (`config_from_hf`), else sizes from
    HF key shapes. Without a config the head count has no shape of its own: `n_heads`, else head_dim 64 is
    assumed (TinyLlama's; LLaMA-7B's is 128), and rms_norm_eps, rope_theta and the context are our defaults
    (1e-5, 1e4, 64) — pass the config.json to avoid those guesses. `overrides` set other config fields.
    """
    if hf_config is not None:
        return config_from_hf(hf_config, **overrides)
    vocab, hidden = _require(sd, "model.embed_tokens.weight").shape
    n_layers = 0
    while f"model.layers.{n_layers}.input_layernorm.weight" in sd:
        n_layers += 1
    if n_layers == 0:
        raise SpikeLLMError("LLaMA state dict: missing key 'model.layers.0.input_layernorm.weight'")
    intermediate = _require(sd, "model.layers.0.mlp.gate_proj.weight").shape[0]
    if n_heads is None:
        if hidden % 64:
            raise SpikeLLMError(f"cannot infer n_heads for hidden_size {hidden}: pass n_heads or a config")
        n_heads = hidden // 64
    head_dim = hidden // n_heads
    kv_dim = _require(sd, "model.layers.0.self_attn.k_proj.weight").shape[0]
    if hidden % n_heads or kv_dim % head_dim:
        raise SpikeLLMError(f"n_heads {n_heads} does not fit hidden_size {hidden} and k_proj rows {kv_dim}")
    fields: dict[str, Any] = {
        "vocab_size": int(vocab), "hidden_size": int(hidden), "n_layers": n_layers, "n_heads": n_heads,
        "n_kv_heads": kv_dim // head_dim, "intermediate_size": int(intermediate),
        "tie_word_embeddings": "lm_head.weight" not in sd,
    }
    fields.update(overrides)
    return SpikeLLMConfig(**fields)


def llama_weights(sd: Mapping[str, Tensor], cfg: SpikeLLMConfig) -> dict[str, Tensor]:
    """The state dict's weights under our keys (a tied head filled from the embedding, `rotary_emb.inv_freq`
    dropped, salient masks left out), checked against the config on the meta device (no memory): the first
    missing key, a shape mismatch (the key and both shapes), the first unexpected keys."""
    with torch.device("meta"):
        expected = SpikeLLM(cfg).state_dict()
    weights = {k: v for k, v in sd.items() if not k.endswith(IGNORED_KEY_SUFFIXES)}
    if cfg.tie_word_embeddings:
        weights.setdefault("lm_head.weight", _require(sd, "model.embed_tokens.weight"))
    for key, target in expected.items():
        if key.endswith("salient_mask"):
            continue
        value = _require(weights, key)
        if tuple(value.shape) != tuple(target.shape):
            raise SpikeLLMError(f"LLaMA state dict: {key!r} has shape {tuple(value.shape)}, "
                                f"config expects {tuple(target.shape)}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise SpikeLLMError(f"LLaMA state dict: unexpected keys {unexpected[:5]}")
    return weights


def load_llama_state_dict(sd: Mapping[str, Tensor], config: SpikeLLMConfig | None = None, *,
                          n_heads: int | None = None) -> SpikeLLM:
    """Build a SpikeLLM from a LLaMA state dict with HF key names (shapes checked, missing keys named).

    `config` None: sizes inferred from shapes (`infer_config`). Salient masks absent from `sd` stay all-False
    (every channel b-bit) until `calibrate_saliency` is run.
    """
    cfg = config if config is not None else infer_config(sd, n_heads=n_heads)
    weights = llama_weights(sd, cfg)
    model = SpikeLLM(cfg)
    expected = model.state_dict()
    with torch.no_grad():
        for key, value in weights.items():
            expected[key].copy_(value.to(expected[key].dtype))
    return model
