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

import numpy as np
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


# ------------------------------------------------------------------------------------------- streaming compile
class LlamaStream:
    """A Hugging Face LLaMA folder read one decoder block at a time, for the streaming compile
    (compiler/hybrid/stream.py): nothing but one block's weights is held at once.

    `skeleton` is the NIR graph of a narrow twin (same layers, heads, vocabulary, context and tokenizer, width two
    per head): its node names, edges and metadata are those of the full model's export, so the compiler plans the
    cut on it. `pieces()` then yields the real nodes in graph order: the embedding, each decoder block, the head.
    Each block's salient masks are calibrated on the same windows as `convert_with_text`, one block at a time:
    the float residual stream [windows, tokens, hidden] is carried from block to block through the same modules,
    so the masks are the whole-model run's bit for bit (tests/compiler/test_stream.py)."""

    def __init__(self, path: Path | str, *, text: Path | str | None = None,
                 tokenizer: Path | str | None = None) -> None:
        from . import detect
        from .reading import read_source

        source = read_source(path, tokenizer=tokenizer, text=text)
        if detect(source, "hf-llama").name != "hf-llama":
            raise PublishedFormatError(f"{source.path}: not a Hugging Face LLaMA folder")
        self.source, self.file_cfg = source, _config(source)
        try:  # every key and shape against config.json from the files' headers, before any weight is read
            self.keys = sorted(llama_weights(_header_shapes(source.state), self.file_cfg))
        except SpikeLLMError as exc:
            raise PublishedFormatError(f"{source.path}: {exc}") from None
        self.cfg = replace(self.file_cfg, n_kv_heads=self.file_cfg.n_heads)  # _without_grouped_kv's repeat
        self.shards = _shard_files(source.path)
        vocabulary = vocabulary_entries(source, self.cfg.vocab_size)
        self.vocabulary_note = vocabulary.pop("vocabulary")
        self.vocabulary = vocabulary
        self.skeleton = self._twin_graph()

    def _twin_graph(self):
        from ..checkpoint import InMemoryCheckpoint
        from ..nir.export import checkpoint_to_nir
        from ..spikellm_network import SpikeLLM

        twin_cfg = replace(self.cfg, hidden_size=2 * self.cfg.n_heads, intermediate_size=2)
        torch.manual_seed(0)
        twin = SpikeLLM(twin_cfg)
        native = {"family": "spikellm", "config": asdict(twin_cfg), "state_dict": twin.state_dict(),
                  **self.vocabulary}
        return checkpoint_to_nir(InMemoryCheckpoint(self.source.path, native))  # load_model's checks, then export

    def _tensors(self, keys: list[str]) -> dict[str, torch.Tensor]:
        """The named tensors as float32 (the in-memory path's `copy_` into float32 parameters), read through a
        `safe_open` handle per shard that is closed afterwards: its mapping goes, and with it the pages the read
        touched (a handle kept open would hold every block read so far in the resident set, 13 GB at 7B)."""
        from safetensors import safe_open

        tied = self.cfg.tie_word_embeddings and "lm_head.weight" not in self.source.state
        stored = {key: "model.embed_tokens.weight" if tied and key == "lm_head.weight" else key for key in keys}
        if not self.shards:  # a torch file: already in memory
            return {key: self.source.state[name].to(torch.float32) for key, name in stored.items()}
        out: dict[str, torch.Tensor] = {}
        for shard in sorted({self.shards[name] for name in stored.values()}):
            with safe_open(str(shard), framework="pt") as handle:
                out.update({key: handle.get_tensor(name).to(torch.float32) for key, name in stored.items()
                            if self.shards[name] == shard})
        return out

    def _tensor(self, key: str) -> torch.Tensor:
        return self._tensors([key])[key]

    def decoder_layer(self, index: int):
        """Block `index` as our DecoderLayer (float32, k/v heads repeated, masks all False)."""
        from ..spikellm_network import DecoderLayer
        from ..spikellm_neurons import SpikeLinear

        prefix = f"model.layers.{index}."
        weights = self._tensors([k for k in self.keys if k.startswith(prefix)])
        weights, _, _ = _without_grouped_kv(weights, self.file_cfg)
        with torch.device("meta"):
            layer = DecoderLayer(self.cfg)
        state = {k[len(prefix):]: v for k, v in weights.items()}
        state.update({f"{n}.salient_mask": torch.zeros(m.in_features, dtype=torch.bool)
                      for n, m in layer.named_modules() if isinstance(m, SpikeLinear)})
        layer.load_state_dict(state, assign=True)
        return layer.eval()

    def pieces(self):
        """The real NIR nodes in graph order: {embedding, flatten}, then each block's nodes, then {norm, head}."""
        import nir

        from ..nir.builder import GraphBuilder
        from ..nir.export_spikellm import _layer, _rms_norm
        from ..nir.nodes import Embedding
        from ..spikellm_network import RMSNorm, rope_tables
        from ..spikellm_saliency import calibrate_saliency

        cfg = self.cfg
        native = {"family": "spikellm", "config": asdict(cfg), **self.vocabulary}
        windows, self.saliency_text = _text_ids(native, self.source.text_path)
        self.saliency_windows = windows
        embed = self._tensor("model.embed_tokens.weight")
        # embedding and head in float32, not the exporter's float64 (`to_numpy`): the same values, which every
        # consumer widens (the float64 calibration run) or narrows (the float32 host stages) exactly; 2 GB less at 7B
        yield {"model.embed_tokens": Embedding(weight=embed.numpy(), context=1),
               "embed_flat": nir.Flatten(input_type={"input": np.array([1, cfg.hidden_size])}, start_dim=0,
                                         end_dim=-1)}
        x = embed[windows]  # nn.Embedding's forward: the rows of the table
        del embed
        cos, sin = rope_tables(windows.shape[1], cfg.head_dim, cfg.rope_theta, x.dtype)
        residual = "embed_flat"
        for i in range(cfg.n_layers):
            block = _SaliencyBlock(i, self.decoder_layer(i), cos, sin)
            calibrate_saliency(block, x, cfg.salient_fraction)
            x = block.out
            builder = GraphBuilder()
            residual = _layer(builder, i, block.layer, residual, block)
            del block
            yield builder.nodes
            del builder  # before the next block is read: one block's nodes at a time
        with torch.device("meta"):
            norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        norm.load_state_dict({"weight": self._tensor("model.norm.weight")}, assign=True)
        yield {"model.norm": _rms_norm(norm), "lm_head": nir.Linear(weight=self._tensor("lm_head.weight").numpy())}


class _SaliencyBlock(torch.nn.Module):
    """One decoder block as `calibrate_saliency` sees a model: its SpikeLinears under the whole model's names, the
    spiking switch, and a forward over the residual stream (kept in `out` for the next block)."""

    def __init__(self, index: int, layer, cos: torch.Tensor, sin: torch.Tensor) -> None:
        super().__init__()
        self.index, self.layer, self.cos, self.sin = index, layer, cos, sin
        self.cfg = layer.self_attn.cfg  # what export_spikellm._layer reads of a model
        self.out: torch.Tensor | None = None

    def spike_linears(self):
        from ..spikellm_neurons import SpikeLinear

        return [(f"model.layers.{self.index}.{n}", m) for n, m in self.layer.named_modules()
                if isinstance(m, SpikeLinear)]

    def set_spiking(self, enabled: bool) -> _SaliencyBlock:
        for _, m in self.spike_linears():
            m.spiking = enabled
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.out = self.layer(x, self.cos, self.sin)
        return self.out


def _header_shapes(state) -> dict[str, torch.Tensor]:
    """Key → an empty meta tensor of the key's shape: read from the safetensors headers (models/published/reading.py
    keeps one open `safe_open` handle per key) or from an already loaded torch file, never a weight."""
    where = getattr(state, "_where", None)
    if where is None:
        return {k: torch.empty(tuple(state[k].shape), device="meta") for k in state}
    return {k: torch.empty(tuple(h.get_slice(k).get_shape()), device="meta") for k, h in where.items()}


def _shard_files(path: Path) -> dict[str, Path]:
    """Key → the safetensors file holding it, as reading.py chose (model.safetensors before a sharded index; the
    index's names were checked to be files inside the folder by `read_source`); empty for a torch file."""
    from .reading import HF_WEIGHT_FILES, read_json

    if path.suffix == ".safetensors":
        return {key: path for key in _keys_of(path)}
    name = next((n for n in HF_WEIGHT_FILES if (path / n).is_file()), "")
    if name == "model.safetensors":
        return {key: path / name for key in _keys_of(path / name)}
    if name == "model.safetensors.index.json":
        return {key: path / shard for key, shard in read_json(path / name, "shard index")["weight_map"].items()}
    return {}


def _keys_of(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())

