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


def infer_config(sd: Mapping[str, Tensor], *, n_heads: int | None = None, **overrides: Any) -> SpikeLLMConfig:
    """Sizes from HF key shapes. The head count has no shape of its own: `n_heads`, else head_dim 64 is
    assumed (TinyLlama's; LLaMA-7B's is 128, so pass n_heads for it). `overrides` set other config fields.
    """
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


def load_llama_state_dict(sd: Mapping[str, Tensor], config: SpikeLLMConfig | None = None, *,
                          n_heads: int | None = None) -> SpikeLLM:
    """Build a SpikeLLM from a LLaMA state dict with HF key names (shapes checked, missing keys named).

    `config` None: sizes inferred from shapes (`infer_config`). Salient masks absent from `sd` stay all-False
    (every channel b-bit) until `calibrate_saliency` is run.
    """
    cfg = config if config is not None else infer_config(sd, n_heads=n_heads)
    model = SpikeLLM(cfg)
    expected = model.state_dict()
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
    with torch.no_grad():
        for key, value in weights.items():
            expected[key].copy_(value.to(expected[key].dtype))
    return model
