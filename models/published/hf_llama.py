"""A Hugging Face LLaMA model (a folder with config.json, or one weights file with config.json beside it).

Place in the picture (STYLE.md): one layout of the *models/* border for published checkpoints. Our `SpikeLLM` uses
HF LLaMA's module names (models/spikellm_network.py), so the weights map one to one (models/spikellm_load.py
`llama_weights`); the sizes, `rms_norm_eps`, `max_position_embeddings` (our context), the head counts (grouped-
query attention included, its k/v heads repeated per query head) and `rope_theta` come from config.json
(`config_from_hf`), never guessed.

SpikeLLM's salient-channel masks (REFERENCE.md §2.2) are not part of a LLaMA checkpoint; they are calibrated here
(`calibrate_saliency`) on text — the user's text with the model's tokenizer when given, else the shipped corpus —
and the converted checkpoint's `published.saliency` says which.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..checkpoint import (
    MAX_BITS,
    MAX_CONTEXT,
    MAX_LAYERS,
    MAX_VOCAB,
    MAX_WIDTH,
    InMemoryCheckpoint,
    checkpoint_tokenizer,
    load_model,
)
from ..spikellm_load import config_from_hf, llama_weights
from ..spikellm_network import SpikeLLMConfig, SpikeLLMError
from .base import Layout, PublishedFormatError, Source, register
from .vocabulary import vocabulary_entries

REQUIRED = ("model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.gate_proj.weight", "model.norm.weight")
KEY_PATTERN = (r"model\.embed_tokens\.weight|model\.norm\.weight|lm_head\.weight|model\.layers\.\d+\."
               r"(input_layernorm|post_attention_layernorm|self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight"
               r"|model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
LIMITS = {"vocab_size": MAX_VOCAB, "hidden_size": MAX_WIDTH, "n_layers": MAX_LAYERS, "n_heads": MAX_WIDTH,
          "n_kv_heads": MAX_WIDTH, "intermediate_size": MAX_WIDTH, "max_seq_len": MAX_CONTEXT,
          "rope_theta": 1e12, "rms_norm_eps": 1.0, "act_bits": MAX_BITS}  # models/checkpoint.py caps
CALIBRATION_WINDOWS = 8  # windows of text the saliency scores average over (training uses 32, spikellm_train)
CALIBRATION_TOKENS = 128  # tokens per window at most (the model's context if shorter)


def _matches(source: Source) -> bool:
    return "model.embed_tokens.weight" in source.state and "model.layers.0.self_attn.q_proj.weight" in source.state


def _config(source: Source) -> SpikeLLMConfig:
    if source.config is None:
        raise PublishedFormatError(f"{source.path}: a Hugging Face LLaMA needs its config.json beside the weights "
                                   "(rms_norm_eps, heads and context are read from it, not guessed)")
    try:
        return config_from_hf(source.config, limits=LIMITS)
    except SpikeLLMError as exc:
        raise PublishedFormatError(f"{source.path}: {exc}") from None


def _text_ids(native: dict, text_path: Path | None) -> tuple[torch.Tensor, str]:
    """Calibration windows [n, length] of token ids, and a note naming the text they came from."""
    from ..data import load_corpus

    corpus = load_corpus()
    if text_path is not None:
        where = f"{text_path.name} (--text)"
        try:
            text = text_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PublishedFormatError(f"{text_path}: not UTF-8 text (byte {exc.start})") from None
    else:
        text = corpus.decode(corpus.train_ids[: 8 * CALIBRATION_WINDOWS * CALIBRATION_TOKENS])
        where = "the shipped corpus (pydoc_data.topics, training split)"
    tokenizer = checkpoint_tokenizer(native)
    if text_path is None and tokenizer.chars is not None:  # the corpus holds characters a small vocabulary lacks
        text = "".join(c for c in text if c in set(tokenizer.chars))
    ids = tokenizer.encode(text, where)
    length = min(CALIBRATION_TOKENS, native["config"]["max_seq_len"])
    n = min(CALIBRATION_WINDOWS, len(ids) // length)
    if n == 0:
        raise PublishedFormatError(f"{where}: {len(ids)} tokens, fewer than one calibration window of {length}")
    return torch.tensor(ids[: n * length]).reshape(n, length), where


def convert_with_text(source: Source) -> dict:
    """The native checkpoint of a HF LLaMA, salient masks calibrated on `source.text_path` (else the shipped
    corpus)."""
    from ..spikellm_saliency import calibrate_saliency
    from ..spikellm_train import CHECKPOINT_SPEC

    cfg = _config(source)
    try:
        weights = llama_weights(source.state, cfg)
    except SpikeLLMError as exc:
        raise PublishedFormatError(f"{source.path}: {exc}") from None
    weights, cfg, grouped = _without_grouped_kv(weights, cfg)
    masks = {f"{name}.salient_mask": torch.zeros(layer.in_features, dtype=torch.bool)
             for name, layer in _spike_linear_shapes(cfg)}
    vocabulary = vocabulary_entries(source, cfg.vocab_size)
    note = vocabulary.pop("vocabulary")
    native = {"family": "spikellm", "config": asdict(cfg), "state_dict": {**weights, **masks}, **vocabulary}
    model, _ = load_model(InMemoryCheckpoint(source.path, native), CHECKPOINT_SPEC)  # every check, then build
    windows, where = _text_ids(native, source.text_path)
    calibrate_saliency(model, windows, cfg.salient_fraction)
    for name, layer in model.spike_linears():
        native["state_dict"][f"{name}.salient_mask"] = layer.salient_mask.clone()
    native["published"] = {"source": str(source.path), "layout": "hf-llama", "vocabulary": note,
                           "saliency": {"text": where, "windows": int(windows.shape[0]),
                                        "tokens_per_window": int(windows.shape[1]),
                                        "salient_fraction": cfg.salient_fraction}}
    if grouped:
        native["published"]["key_value_heads"] = f"{grouped} in the file, each repeated to {cfg.n_heads}"
    return native


def _without_grouped_kv(weights: dict, cfg: SpikeLLMConfig) -> tuple[dict, SpikeLLMConfig, int]:
    """Grouped-query attention as plain multi-head attention: each k/v head's rows repeated n_heads / kv_heads
    times, in the order `Attention.forward` repeats them (`repeat_interleave` over heads), so the outputs are the
    same. Why: the NIR export and the compiler take one k/v head per query head. Returns the file's kv head count
    (0 when there was no grouping)."""
    if cfg.kv_heads == cfg.n_heads:
        return weights, cfg, 0
    repeat, head_dim = cfg.n_heads // cfg.kv_heads, cfg.head_dim
    weights = dict(weights)
    for key in [k for k in weights if k.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight"))]:
        value = weights[key]
        weights[key] = value.reshape(cfg.kv_heads, head_dim, -1).repeat_interleave(repeat, 0).reshape(
            cfg.n_heads * head_dim, -1)
    return weights, replace(cfg, n_kv_heads=cfg.n_heads), cfg.kv_heads


def _spike_linear_shapes(cfg: SpikeLLMConfig):
    from ..spikellm_network import SpikeLLM

    with torch.device("meta"):
        return list(SpikeLLM(cfg).spike_linears())


LAYOUT = register(Layout(
    name="hf-llama", family="spikellm",
    expected="Hugging Face LLaMA: config.json + model.embed_tokens.weight, model.layers.{l}.self_attn|mlp.*, "
             "model.norm.weight",
    matches=_matches, convert=convert_with_text, required=REQUIRED, key_pattern=KEY_PATTERN))
