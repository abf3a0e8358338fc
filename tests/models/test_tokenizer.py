"""models/tokenizer.py: every kind built with the `tokenizers` library, round trips, bounded and strict reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spikestack.models.checkpoint import CheckpointError, read_checkpoint
from spikestack.models.spikegpt_train import load_checkpoint
from spikestack.models.tokenizer import (
    MAX_TOKENIZER_BYTES,
    Tokenizer,
    TokenizerError,
    continuation,
    read_tokenizer,
)
from tokenizers import Tokenizer as HF
from tokenizers import decoders, models, pre_tokenizers, trainers

from spikestack.cli import main

CHECKPOINTS = Path(__file__).resolve().parents[2] / "models" / "checkpoints"
LOCAL_TEXT = ["the quick brown fox jumps over the lazy dog", "a spiking model reads one token at a time",
              "def main(): return 0", "import numpy as np"] * 5


def byte_bpe(vocab_size: int = 300) -> HF:
    """A byte-level BPE like GPT-NeoX-20B's (SpikeGPT-216M): every UTF-8 text is encodable."""
    hf = HF(models.BPE(unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(LOCAL_TEXT, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return hf


def test_char_tokenizer_ids_are_vocab_positions_and_round_trip():
    tok = Tokenizer.from_chars("\n abc")
    assert tok.kind == "char" and tok.vocab_size == 5 and tok.chars == "\n abc"
    assert tok.encode("ab c\n") == [2, 3, 1, 4, 0]
    assert tok.decode([2, 3, 1, 4, 0]) == "ab c\n"
    back = Tokenizer.from_json(tok.to_json())
    assert back == tok and back.kind == "char" and back.chars == "\n abc"
    with pytest.raises(TokenizerError, match=r"prompt: 1 unknown characters \(not in the 5-character vocabulary\), "
                                                r"first 'z'"):
        tok.encode("abz", "prompt")


@pytest.mark.parametrize("vocab", [{"0": "\n", "1": " ", "2": "a"}, {"\n": 0, " ": 1, "a": 2}])
def test_upstream_char_vocab_json_either_way_round(tmp_path, vocab):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    tok = read_tokenizer(path)
    assert tok.kind == "char" and tok.chars == "\n a" and tok.encode("a a") == [2, 1, 2]


def test_byte_level_bpe_round_trips_any_text_and_names_its_kind():
    tok = Tokenizer.from_json(byte_bpe().to_str())
    assert tok.kind == "bpe" and tok.vocab_size == 300 and tok.chars is None
    text = "the fox é 😀"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) < len(text.encode())  # merges learned: fewer ids than bytes
    assert continuation(tok, "the", tok.encode("the"), tok.encode(" fox")) == "the fox"


def test_bpe_without_unknown_token_refuses_what_it_would_drop():
    hf = HF(models.BPE(unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator(LOCAL_TEXT, trainers.BpeTrainer(vocab_size=80, show_progress=False))
    tok = Tokenizer.from_json(hf.to_str())
    assert tok.decode(tok.encode("the fox")).replace(" ", "") == "thefox"
    with pytest.raises(TokenizerError, match=r"text: 1 pieces cannot be encoded by this tokenizer, first \['Z'\]"):
        tok.encode("the Z fox")


def test_wordpiece_vocab_txt_lowercases_an_uncased_vocabulary(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nfox\n##es\nquick\n")
    tok = read_tokenizer(path)
    assert tok.kind == "wordpiece" and tok.vocab_size == 8
    assert tok.encode("The foxes") == [4, 5, 6]
    assert tok.decode([4, 5, 6]) == "the foxes"
    assert Tokenizer.from_json(tok.to_json()).encode("quick fox") == [7, 5]
    with pytest.raises(TokenizerError, match=r"1 pieces cannot be encoded by this tokenizer, first \['cat'\]"):
        tok.encode("the cat")


def test_malformed_and_oversized_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match=r"bad.json: not JSON \(Expecting property name"):
        read_tokenizer(bad)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(100 * 2**20)  # sparse: refused from its size, never read
    with pytest.raises(TokenizerError) as caught:
        read_tokenizer(huge)
    assert str(caught.value) == f"{huge}: tokenizer file: 104,857,600 bytes, over the limit of {MAX_TOKENIZER_BYTES:,}"
    no_model = tmp_path / "t.json"
    no_model.write_text(json.dumps({"model": {"type": "Nope"}}))
    with pytest.raises(TokenizerError, match="not a usable tokenizer.json"):
        read_tokenizer(no_model)
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(TokenizerError, match=r"ids must be 0..1; id 1 is missing"):
        read_tokenizer(gap)


# ------------------------------------------------------------------------------------------ checkpoint border
def _shipped_with(**top) -> dict:
    return dict(read_checkpoint(CHECKPOINTS / "spikegpt-char-2x64.pt"), **top)


def test_checkpoint_tokenizer_instead_of_vocab_loads_and_old_ones_unchanged(tmp_path):
    raw = read_checkpoint(CHECKPOINTS / "spikegpt-char-2x64.pt")
    path = tmp_path / "tok.pt"
    torch.save({k: v for k, v in raw.items() if k != "vocab"} | {"tokenizer": Tokenizer.from_chars(raw["vocab"])
                                                                   .to_json()}, path)
    assert load_checkpoint(path)[1] == raw["vocab"] == load_checkpoint(CHECKPOINTS / "spikegpt-char-2x64.pt")[1]


def test_tokenizer_size_must_equal_embedding_rows(tmp_path, capsys):
    path = tmp_path / "wrong.pt"
    torch.save(_shipped_with(tokenizer=byte_bpe().to_str()), path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (f"{path}: 'tokenizer' (bpe) has 300 tokens, config field 'vocab_size' says 95 "
                                 "embedding rows")
    out = tmp_path / "m.nir"
    assert main(["export", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikestack: error: ") and "300 tokens" in err
    assert not out.exists()


def test_malformed_tokenizer_in_a_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save(_shipped_with(tokenizer="{not json"), path)
    with pytest.raises(CheckpointError, match=r"bad.pt: 'tokenizer': not JSON"):
        load_checkpoint(path)
    torch.save(_shipped_with(tokenizer=7), path)
    with pytest.raises(CheckpointError, match=r"'tokenizer': tokenizer is a int, expected tokenizer.json text"):
        load_checkpoint(path)
