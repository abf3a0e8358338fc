"""SpikeLM's BERT-base encoder (Hugging Face BERT key names plus its spike clip values) → a native `spikelm-enc`
checkpoint.

Place in the picture (STYLE.md): one layout of the *models/* border (`models/published/base.py`). SpikeLM (Xing et
al., ICML 2024, arXiv 2406.03287; code `Xingrun-Xing/SpikeLM`, `spikeLM-BERT/spike_bert.py` and `spiking.py`)
edits Hugging Face's BERT: the inputs of query, key, value, attention-output, intermediate and output dense layers
are elastic bi-spiking neurons with one α per step (`<dense>.act_clip_val.{t}`), K and V are re-spiked with
`attention.self.clip_key.{t}` / `clip_value.{t}`, and the encoder repeats the embedding T times and averages its
output over T. Its state dict therefore holds, beside BERT's `.weight`/`.bias` keys:

    bert.encoder.layer.N.attention.self.{query,key,value}.act_clip_val.{t}     → …attn.{query,key,value}.spike.alpha[t]
    bert.encoder.layer.N.attention.self.clip_{key,value}.{t}                   → …attn.{key,value}_spike.alpha[t]
    bert.encoder.layer.N.attention.output.dense.act_clip_val.{t}               → …attn.output.spike.alpha[t]
    bert.encoder.layer.N.{intermediate,output}.dense.act_clip_val.{t}          → …ffn.{up,down}.spike.alpha[t]
    <dense>.weight_clip_val                                                    dropped: weights are fp32 (32 bits)

and the rest maps one to one onto models/spikelm_network.py (post-LayerNorm blocks, exact GELU, as ours). Where
our encoder lacked a BERT piece:

- token-type embeddings: single-segment input has type 0 everywhere, so row 0 is added to every position
  embedding (`pos_emb = position_embeddings + token_type_embeddings[0]`); sentence-pair input (type 1) has no
  counterpart and is not supported;
- [MASK]: our encoder's mask id is one past the vocabulary, so the word-embedding table gets one more row, a copy
  of the tokenizer's `[MASK]` row: masking with either id gives the same input;
- LayerNorm ε (1e-12) and BERT's heads (MLM transform + decoder, tanh pooler on [CLS]) are the config fields
  `layer_norm_eps` and `bert_heads`; `cls.predictions.*` is the MLM head, `cls.seq_relationship` (next-sentence
  prediction, 2 classes) or `classifier` (a fine-tuned sentence classifier) the classification head. A file
  without one of the two heads gets zeros there (its logits are then constant) and `source.absent_heads` says so;
  config.json's `id2label`, when it names exactly the head's classes, is kept as the checkpoint's "labels" (the
  names a labelled file may use, spikestack/labels.py).

Sizes come from config.json (BertConfig: `num_attention_heads`, `layer_norm_eps`); T from the number of clip values.
The tokenizer is the WordPiece vocab.txt beside the weights (models/tokenizer.py).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import torch
from torch import Tensor

from .base import Layout, PublishedFormatError, Source, attention_heads, count_layers, register

WORD = "bert.embeddings.word_embeddings.weight"
# spike_bert.py's dense layers → our SpikeLinear names, inside one block
DENSES = {"attention.self.query": "attn.query", "attention.self.key": "attn.key",
          "attention.self.value": "attn.value", "attention.output.dense": "attn.output",
          "intermediate.dense": "ffn.up", "output.dense": "ffn.down"}
NORMS = {"attention.output.LayerNorm": "norm1", "output.LayerNorm": "norm2"}
RESPIKES = {"attention.self.clip_key": "attn.key_spike", "attention.self.clip_value": "attn.value_spike"}
_LAYER = r"bert\.encoder\.layer\.\d+\."
_DENSE = r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
KEY_PATTERN = (r"bert\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight|"
               r"bert\.embeddings\.LayerNorm\.(weight|bias)|bert\.embeddings\.position_ids|"
               rf"{_LAYER}{_DENSE}\.(weight|bias|weight_clip_val|act_clip_val\.\d+)|"
               rf"{_LAYER}attention\.self\.clip_(key|value)\.\d+|"
               rf"{_LAYER}(attention\.output|output)\.LayerNorm\.(weight|bias)|"
               r"bert\.pooler\.dense\.(weight|bias)|"
               r"cls\.predictions\.(bias|decoder\.weight|decoder\.bias|transform\.dense\.(weight|bias)|"
               r"transform\.LayerNorm\.(weight|bias))|"
               r"cls\.seq_relationship\.(weight|bias)|classifier\.(weight|bias)")
DEFAULT_EPS = 1e-12  # BertConfig's layer_norm_eps; spike_bert.py hard-codes it in the blocks too


def matches(source: Source) -> bool:
    """BERT's word embeddings and first block (with or without SpikeLM's clip values)."""
    return WORD in source.state and any(k.startswith("bert.encoder.layer.0.") for k in source.state)


def _fail(source: Source, message: str) -> PublishedFormatError:
    return PublishedFormatError(f"{source.path}: SpikeLM BERT layout: {message}")


class _Keys:
    """The source's tensors with one-line errors for a missing key or a wrong shape."""

    def __init__(self, source: Source) -> None:
        self.source, self.state, self.used = source, source.state, set()

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> Tensor:
        if key not in self.state:
            raise _fail(self.source, f"missing key {key!r}")
        tensor = self.state[key]
        if shape is not None and tuple(tensor.shape) != shape:
            raise _fail(self.source, f"key {key!r} has shape {tuple(tensor.shape)}, expected {shape}")
        self.used.add(key)
        return tensor.to(torch.float32)

    def has(self, key: str) -> bool:
        return key in self.state


def _config(source: Source, keys: _Keys) -> dict[str, Any]:
    """Our SpikeLMConfig fields from shapes and config.json."""
    vocab, d = (int(n) for n in keys.state[WORD].shape)
    fail = partial(_fail, source)
    layers = count_layers(keys.has, "bert.encoder.layer.{}.attention.self.query.weight", fail)
    heads = attention_heads(source.config, d, fail)
    config = source.config
    if config.get("input_bits", 2) == 1:
        raise _fail(source, "config.json field 'input_bits' = 1 (binary sign spikes) has no counterpart; ours are "
                            "ternary (input_bits 2)")
    steps = 0
    while keys.has(f"bert.encoder.layer.0.attention.self.query.act_clip_val.{steps}"):
        steps += 1
    head_key = next((k for k in ("cls.seq_relationship.weight", "classifier.weight") if keys.has(k)), None)
    position_key = "bert.embeddings.position_embeddings.weight"
    if not keys.has(position_key):
        raise _fail(source, f"missing key {position_key!r}")
    return {
        "vocab": vocab, "context": int(keys.state[position_key].shape[0]), "d_model": d, "heads": heads,
        "layers": layers, "ffn": int(keys.get("bert.encoder.layer.0.intermediate.dense.weight").shape[0]),
        "steps": max(steps, 1), "levels": 1, "learnable_alpha": False, "spiking": steps > 0, "causal": False,
        "classes": int(keys.state[head_key].shape[0]) if head_key else 2,
        "layer_norm_eps": float(config.get("layer_norm_eps", DEFAULT_EPS)), "bert_heads": True,
    }


def _alphas(keys: _Keys, prefix: str, steps: int) -> Tensor:
    """T scalar clip values `prefix.{t}` → α [T]."""
    values = []
    for t in range(steps):
        value = keys.get(f"{prefix}.{t}")
        if value.numel() != 1:
            raise _fail(keys.source, f"key '{prefix}.{t}' has shape {tuple(value.shape)}, expected () (one α)")
        values.append(value.reshape(()))
    return torch.stack(values)


def _block(keys: _Keys, cfg: dict, layer: int) -> dict[str, Tensor]:
    src, dst = f"bert.encoder.layer.{layer}", f"backbone.blocks.{layer}"
    d, ffn, steps = cfg["d_model"], cfg["ffn"], cfg["steps"]
    shapes = {"attention.self.query": (d, d), "attention.self.key": (d, d), "attention.self.value": (d, d),
              "attention.output.dense": (d, d), "intermediate.dense": (ffn, d), "output.dense": (d, ffn)}
    out: dict[str, Tensor] = {}
    for name, ours in DENSES.items():
        rows, cols = shapes[name]
        out[f"{dst}.{ours}.linear.weight"] = keys.get(f"{src}.{name}.weight", (rows, cols))
        out[f"{dst}.{ours}.linear.bias"] = keys.get(f"{src}.{name}.bias", (rows,))
        if cfg["spiking"]:
            out[f"{dst}.{ours}.spike.alpha"] = _alphas(keys, f"{src}.{name}.act_clip_val", steps)
    if cfg["spiking"]:
        for name, ours in RESPIKES.items():
            out[f"{dst}.{ours}.alpha"] = _alphas(keys, f"{src}.{name}", steps)
    for name, ours in NORMS.items():
        out[f"{dst}.{ours}.weight"] = keys.get(f"{src}.{name}.weight", (d,))
        out[f"{dst}.{ours}.bias"] = keys.get(f"{src}.{name}.bias", (d,))
    return out


def _mask_id(source: Source, tokenizer) -> int:
    vocab = tokenizer.hf.get_vocab()
    if "[MASK]" not in vocab:
        raise _fail(source, f"tokenizer {source.tokenizer_path} has no [MASK] token")
    return int(vocab["[MASK]"])


def _embeddings(keys: _Keys, cfg: dict, mask_id: int) -> dict[str, Tensor]:
    v, d, context = cfg["vocab"], cfg["d_model"], cfg["context"]
    word = keys.get(WORD, (v, d))
    position = keys.get("bert.embeddings.position_embeddings.weight", (context, d))
    if keys.has("bert.embeddings.token_type_embeddings.weight"):
        types = keys.get("bert.embeddings.token_type_embeddings.weight")
        if types.ndim != 2 or types.shape[1] != d:
            raise _fail(keys.source, f"key 'bert.embeddings.token_type_embeddings.weight' has shape "
                                     f"{tuple(types.shape)}, expected (types, {d})")
        position = position + types[0]  # single-segment input: every token has type 0 (module docstring)
    return {"backbone.tok_emb.weight": torch.cat([word, word[mask_id:mask_id + 1]]),
            "backbone.pos_emb.weight": position,
            "backbone.emb_norm.weight": keys.get("bert.embeddings.LayerNorm.weight", (d,)),
            "backbone.emb_norm.bias": keys.get("bert.embeddings.LayerNorm.bias", (d,))}


def _heads(keys: _Keys, cfg: dict, word: Tensor) -> tuple[dict[str, Tensor], list[str]]:
    """BERT's MLM and classification heads (zeros where the file has none); and which heads are absent."""
    v, d, classes = cfg["vocab"], cfg["d_model"], cfg["classes"]
    out: dict[str, Tensor] = {}
    absent: list[str] = []
    if keys.has("cls.predictions.transform.dense.weight"):
        p = "cls.predictions"
        out["mlm_transform.dense.weight"] = keys.get(f"{p}.transform.dense.weight", (d, d))
        out["mlm_transform.dense.bias"] = keys.get(f"{p}.transform.dense.bias", (d,))
        out["mlm_transform.norm.weight"] = keys.get(f"{p}.transform.LayerNorm.weight", (d,))
        out["mlm_transform.norm.bias"] = keys.get(f"{p}.transform.LayerNorm.bias", (d,))
        tied = not keys.has(f"{p}.decoder.weight")  # HF ties the decoder to the word embeddings
        out["mlm_head.weight"] = word if tied else keys.get(f"{p}.decoder.weight", (v, d))
        out["mlm_head.bias"] = keys.get(f"{p}.bias" if keys.has(f"{p}.bias") else f"{p}.decoder.bias", (v,))
        if keys.has(f"{p}.decoder.bias") and keys.has(f"{p}.bias"):
            keys.get(f"{p}.decoder.bias", (v,))  # HF saves the shared bias under both names
    else:
        absent.append("mlm")
        out.update({"mlm_transform.dense.weight": torch.zeros(d, d), "mlm_transform.dense.bias": torch.zeros(d),
                    "mlm_transform.norm.weight": torch.ones(d), "mlm_transform.norm.bias": torch.zeros(d),
                    "mlm_head.weight": torch.zeros(v, d), "mlm_head.bias": torch.zeros(v)})
    head = next((k for k in ("cls.seq_relationship", "classifier") if keys.has(f"{k}.weight")), None)
    if head is not None and keys.has("bert.pooler.dense.weight"):
        out["pooler.weight"] = keys.get("bert.pooler.dense.weight", (d, d))
        out["pooler.bias"] = keys.get("bert.pooler.dense.bias", (d,))
        out["cls_head.weight"] = keys.get(f"{head}.weight", (classes, d))
        out["cls_head.bias"] = keys.get(f"{head}.bias", (classes,))
    else:
        absent.append("classification")
        out.update({"pooler.weight": torch.zeros(d, d), "pooler.bias": torch.zeros(d),
                    "cls_head.weight": torch.zeros(classes, d), "cls_head.bias": torch.zeros(classes)})
    return out, absent


def convert(source: Source) -> dict:
    """The native `spikelm-enc` checkpoint dict (checked later by models/checkpoint.py `load_model`)."""
    pattern = re.compile(KEY_PATTERN)
    unexpected = next((k for k in sorted(source.state) if not pattern.fullmatch(k)), None)
    if unexpected is not None:
        raise _fail(source, f"unexpected key {unexpected!r} (no counterpart in our SpikeLM encoder)")
    keys = _Keys(source)
    if not keys.has(WORD):
        raise _fail(source, f"missing key {WORD!r}")
    cfg = _config(source, keys)
    tokenizer = _tokenizer(source, cfg["vocab"])
    state = _embeddings(keys, cfg, _mask_id(source, tokenizer))
    for layer in range(cfg["layers"]):
        state.update(_block(keys, cfg, layer))
    heads, absent = _heads(keys, cfg, state["backbone.tok_emb.weight"][:-1])
    state.update(heads)
    leftover = next((k for k in sorted(source.state) if k not in keys.used and not _ignored(k)), None)
    if leftover is not None:
        raise _fail(source, f"unexpected key {leftover!r} (beyond the {cfg['layers']} layers, {cfg['steps']} steps "
                            "or heads this file describes)")
    native = {"family": "spikelm-enc", "config": cfg, "state_dict": state, "tokenizer": tokenizer.to_json(),
              "source": {"layout": "spikelm-bert", "path": str(source.path), "absent_heads": absent,
                         "note": "token type 0 folded into the position embeddings; [MASK] row copied to id vocab"}}
    names = _label_names(source, cfg["classes"]) if "classification" not in absent else None
    if names is not None:
        native["labels"] = names  # what a labelled file may name its classes by (spikestack/labels.py)
    return native


def _label_names(source: Source, classes: int) -> list[str] | None:
    """config.json's `id2label` (BertConfig: {"0": "NEGATIVE", …}) as a list by class index, when it names exactly
    the head's classes; None when the file has none or names other classes (then only indices label them)."""
    id2label = source.config.get("id2label")
    if not isinstance(id2label, dict):
        return None
    names: dict[int, str] = {}
    for key, value in id2label.items():
        if not (isinstance(key, str | int) and str(key).isdigit() and isinstance(value, str) and value.strip()):
            return None
        names[int(key)] = value
    if sorted(names) != list(range(classes)) or len(set(names.values())) != classes:
        return None
    return [names[i] for i in range(classes)]


def _ignored(key: str) -> bool:
    """Keys read for their shape only or with no effect on the forward: HF's position-id buffer, the unused
    weight clip, a head whose partner is missing, the token types (folded)."""
    return (key.endswith("weight_clip_val") or key == "bert.embeddings.position_ids"
            or key.startswith(("bert.pooler.", "cls.seq_relationship.", "classifier.", "cls.predictions."))
            or key == "bert.embeddings.token_type_embeddings.weight")


def _tokenizer(source: Source, vocab: int):
    from .vocabulary import checked_tokenizer

    return checked_tokenizer(source, vocab, missing="SpikeLM BERT layout: no vocab.txt (WordPiece) beside the "
                             "weights; pass --tokenizer")


LAYOUT = register(Layout(
    name="spikelm-bert",
    family="spikelm-enc",
    expected="bert.embeddings.*, bert.encoder.layer.{l}.attention.self.{query,key,value}.act_clip_val.{t}, "
             "clip_key/clip_value.{t}, cls.predictions.* | classifier.* (SpikeLM's BERT)",
    matches=matches,
    convert=convert,
    required=(WORD, "bert.encoder.layer.0.attention.self.query.weight"),
    key_pattern=KEY_PATTERN,
))
