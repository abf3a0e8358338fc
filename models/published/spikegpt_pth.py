"""SpikeGPT's published `GPT(model_type='RWKV')` state dict (`SpikeGPT-216M.pth`, `BookCorpus-SpikeGPT.pth`).

Place in the picture (STYLE.md): one layout of the *models/* border for published checkpoints. The key names are
upstream's module names (ridgerchu/SpikeGPT `src/model.py`), which our `SpikeGPT` already uses, so the conversion
is models/spikegpt_load.py's: sizes from `emb.weight` [V, C] and the `blocks.{l}.` keys, float32 weights in our
shapes. Upstream's 216M is 18 × 768 with the 50,277-id GPT-NeoX BPE tokenizer (`20B_tokenizer.json`, a float
embedding); its BookCorpus model uses 77 characters (a binary embedding). The vocabulary comes from the file
beside the checkpoint (models/published/vocabulary.py).
"""

from __future__ import annotations

from dataclasses import asdict

from ..spikegpt_load import CheckpointFormatError, converted_state_dict, published_config
from .base import Layout, PublishedFormatError, Source, register
from .vocabulary import vocabulary_entries

REQUIRED = ("emb.weight", "blocks.0.ln0.weight", "blocks.0.att.time_decay", "blocks.0.att.key.weight",
            "blocks.0.ffn.key.weight", "ln_out.weight", "head.weight")
KEY_PATTERN = (r"emb\.weight|head\.weight|ln_out\.(weight|bias)|blocks\.\d+\.(ln[012]\.(weight|bias)"
               r"|att\.(time_decay|time_first|time_mix_[kvr]|(key|value|receptance|output)\.weight)"
               r"|ffn\.(time_mix_[kr]|(key|value|receptance)\.weight))")


def _matches(source: Source) -> bool:
    return "emb.weight" in source.state and "blocks.0.att.time_decay" in source.state


def _convert(source: Source) -> dict:
    from ..data import load_corpus

    try:
        cfg = published_config(source.state)
        state_dict = converted_state_dict(source.state, cfg)
    except CheckpointFormatError as exc:
        raise PublishedFormatError(f"{source.path}: {exc}") from None
    vocabulary = vocabulary_entries(source, cfg.vocab_size, shipped=load_corpus().vocab)
    note = vocabulary.pop("vocabulary")
    return {"family": "spikegpt", "config": asdict(cfg), "state_dict": state_dict, **vocabulary,
            "published": {"source": str(source.path), "layout": "spikegpt-pth", "vocabulary": note,
                          "binary_embedding": "characters (V < 256)" if cfg.binary_embedding else "float (BPE)"}}


LAYOUT = register(Layout(
    name="spikegpt-pth", family="spikegpt",
    expected="SpikeGPT GPT(model_type='RWKV'): emb.weight [V, C], blocks.{l}.att|ffn.*, ln_out.*, head.weight",
    matches=_matches, convert=_convert, required=REQUIRED, key_pattern=KEY_PATTERN))
