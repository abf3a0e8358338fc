"""The user's text drives evaluation (spikestack/text.py, spikestack/evaluation.py), and a tokenizer travels
checkpoint → NIR → artifact → generate (models/nir/export_tokenizer.py, compiler/artifact_tokenizer.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from spikestack.models.spikegpt_network import SpikeGPT, SpikeGPTConfig
from spikestack.models.tokenizer import Tokenizer

import spikestack
from spikestack.cli import main
from spikestack.errors import ArtifactError, SpikestackError
from spikestack.text import byte_prefix, text_metrics
from tests.models.test_tokenizer import byte_bpe


def test_bits_per_byte_by_hand():
    # 4 equal logits: every target costs exactly 2 bits; 3 targets over 6 UTF-8 bytes → 1 bit per byte
    logits, targets = np.zeros((1, 3, 4)), np.array([[0, 3, 1]])
    assert text_metrics(logits, targets, 6) == {"bits_per_byte": 1.0, "perplexity": 4.0}
    # p(target) = 1/2 (logits ln 3, 0, 0, 0 → e^ln3 / (3 + 3) = 1/2): 1 bit each, 2 targets over 4 bytes
    logits = np.array([[np.log(3), 0, 0, 0], [np.log(3), 0, 0, 0]])
    assert text_metrics(logits, np.array([0, 0]), 4) == {"bits_per_byte": 0.5, "perplexity": 2.0}


def test_byte_prefix_counts_utf8_bytes():
    assert byte_prefix("aé€😀").tolist() == [0, 1, 3, 6, 10]


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    """A tiny SpikeGPT whose checkpoint holds a byte-level BPE tokenizer and no "vocab", and its artifact."""
    root = tmp_path_factory.mktemp("bpe")
    hf = byte_bpe()
    torch.manual_seed(0)
    cfg = SpikeGPTConfig(vocab_size=hf.get_vocab_size(), n_layer=1, n_embd=16, ctx_len=16)
    model = SpikeGPT(cfg)
    with torch.no_grad():
        model.head.weight.mul_(8)  # wide logit gaps: greedy ids do not hinge on quantisation error
    ckpt = root / "bpe.pt"
    torch.save({"family": "spikegpt", "config": asdict(cfg), "state_dict": model.state_dict(),
                "tokenizer": hf.to_str()}, ckpt)
    art = root / "art"
    assert main(["compile", str(ckpt), "-o", str(art), "--calibrate", "0"]) == 0
    return ckpt, art


def test_tokenizer_travels_to_the_artifact_and_generate_matches_the_float_model(bpe_model):
    ckpt, art = bpe_model
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["report"]["tokenizer"]["kind"] == "bpe" and manifest["report"]["tokenizer"]["vocab_size"] == 300
    program = spikestack.load(art)
    float_text = spikestack.generate(ckpt, "the fox", 12)
    assert spikestack.generate(program, "the fox", 12) == float_text
    tok = Tokenizer.from_json(program.report["tokenizer"]["json"])
    assert float_text.startswith("the fox") and len(tok.encode(float_text)) >= len(tok.encode("the fox")) + 1


def test_text_on_run_changes_the_metric_and_names_the_file(bpe_model, tmp_path, capsys):
    _, art = bpe_model
    assert main(["run", str(art), "--tokens", "16"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["text"].startswith("shipped corpus (pydoc_data.topics validation split, re-encoded by the "
                                      "program's bpe tokenizer")
    text = tmp_path / "mine.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 8, encoding="utf-8")
    assert main(["run", str(art), "--tokens", "16", "--text", str(text)]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert mine["text"] == str(text) and mine["inputs"] == "user text"
    assert "bpc" not in mine and mine["bits_per_byte"] != default["bits_per_byte"]  # BPE: no per-character figure
    assert mine["bits_per_byte"] > 0 and mine["perplexity"] > 1


@pytest.mark.parametrize("content, says", [
    ("café\n".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 3); save it as UTF-8"),
    (b"", "empty (no text to evaluate on)"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "a binary file (NUL byte at offset 8), not text"),
])
def test_bad_text_is_one_line_and_writes_nothing(bpe_model, tmp_path, capsys, content, says):
    _, art = bpe_model
    text = tmp_path / "bad.txt"
    text.write_bytes(content)
    trace = tmp_path / "t.npz"
    assert main(["run", str(art), "--text", str(text), "--trace", str(trace)]) == 2
    err = capsys.readouterr().err
    assert err == f"spikestack: error: --text {text}: {says}\n"
    assert not trace.exists()


def test_shipped_character_programs_keep_their_figures(tmp_path):
    """The default text of a corpus program is still exactly the corpus's ids: bpc equals bits per byte (ASCII),
    and with the corpus's own characters as --text the figures match the default run."""
    from spikestack.models.data import load_corpus

    from tests.conftest import make_nir_chain

    program = spikestack.compile(make_nir_chain(vocab=95, out=95))  # a next-character readout
    default = spikestack.run(program, tokens=24).to_dict()
    assert default["text"] == "shipped corpus (pydoc_data.topics validation split)"
    assert default["bpc"] == default["bits_per_byte"]
    corpus = load_corpus()
    text = tmp_path / "val.txt"
    text.write_text(corpus.decode(corpus.val_ids[:200]), encoding="utf-8")
    mine = spikestack.run(program, tokens=24, text=text).to_dict()
    assert mine["bpc"] == default["bpc"] and mine["bits_per_byte"] == default["bits_per_byte"]


def test_a_tampered_tokenizer_file_is_refused(bpe_model, tmp_path):
    import shutil

    _, art = bpe_model
    copy = tmp_path / "art"
    shutil.copytree(art, copy)
    (copy / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"tokenizer.json: sha256 mismatch"):
        spikestack.load(copy)


def test_unknown_prompt_is_one_line_for_a_character_artifact(tmp_path, capsys):
    from tests.conftest import make_nir_chain

    program = spikestack.compile(make_nir_chain(vocab=95))
    with pytest.raises(SpikestackError, match=r"prompt: 1 unknown characters \(not in the 95-character "
                                                 r"vocabulary\), first 'é'"):
        spikestack.generate(program, "Thé", 2)
