"""Issue #13, done-when: a published checkpoint goes import → compile → run on the user's text → verify on Lava →
simulate → generate decoded text. Tiny state dicts with the published key names and shapes
(tests/models/published_factories.py): SpikeGPT's `.pth` with its 77-character vocab.json, and a Hugging Face
LLaMA folder with a BPE tokenizer.json."""

from __future__ import annotations

import pytest

from spikestack import api
from tests.models.published_factories import write_llama_folder, write_spikegpt_pth

pytestmark = pytest.mark.lava

TEXT = "A BAD CAB FED A BIG HEAD; a bad cab fed a big head. " * 12  # within both vocabularies (chr 32..107)


@pytest.mark.parametrize("layout", ["spikegpt-pth", "hf-llama"])
def test_published_checkpoint_end_to_end_on_lava(tmp_path, layout):
    source = (write_spikegpt_pth(tmp_path / "gpt") if layout == "spikegpt-pth"
              else write_llama_folder(tmp_path / "llama"))
    text = tmp_path / "mine.txt"
    text.write_text(TEXT, encoding="utf-8")
    native = tmp_path / "model.pt"
    note = api.import_checkpoint(source, native, text=text)
    assert native.is_file() and note  # the converted, fully checked checkpoint
    # SpikeGPT with the dataflow fold: its stream Linears go onto cores behind relays (its embedding is real-valued)
    program = api.compile(native, "loihi2", text=text, dataflow=layout == "spikegpt-pth")
    run = api.run(program, tokens=8, text=text).to_dict()
    assert run["text"] == str(text) and run["bits_per_byte"] > 0  # scored on the user's text, not random ids
    result = api.verify(program, ("reference", "torch", "lava"), tokens=2, text=text)
    assert result.bit_exact, result.problems
    report = api.simulate(program, tokens=8, text=text).to_dict()
    assert report["sops"] > 0 and report["energy_per_token_j"] > 0
    out = api.generate(program, "a bad", 3)
    assert out.startswith("a bad") and len(out) > len("a bad")  # decoded by the model's own tokenizer
