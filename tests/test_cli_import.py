"""`spikestack import` and published checkpoints on every command that takes a checkpoint: SpikeGPT .pth and a
Hugging Face LLaMA folder through import → compile → run → generate; bad inputs: one line, exit 2, nothing
written."""

from __future__ import annotations

import json

import pytest
import torch

from spikestack.cli import main
from tests.models.published_factories import (
    LLAMA_CONFIG,
    bpe_tokenizer_json,
    llama_state,
    write_llama_folder,
    write_spikegpt_pth,
)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikestack: error: ") and "Traceback" not in err, err
    return lines[0]


def test_spikegpt_pth_import_compile_run_generate(tmp_path, capsys):
    pth = write_spikegpt_pth(tmp_path / "up")
    native = tmp_path / "model.pt"
    assert main(["import", str(pth), "-o", str(native)]) == 0
    note = json.loads(capsys.readouterr().out)
    assert note["family"] == "spikegpt" and note["layout"] == "spikegpt-pth"
    assert note["vocabulary"] == "char tokenizer vocab.json"
    assert main(["import", str(pth), "-o", str(native)]) == 2  # exists: refused without --force
    assert "exists" in _one_line_error(capsys)
    assert main(["import", str(native), "-o", str(tmp_path / "again.pt")]) == 2
    assert "already a native checkpoint" in _one_line_error(capsys)
    assert not (tmp_path / "again.pt").exists()

    for source, art in ((native, "art_native"), (pth, "art_pth")):
        assert main(["compile", str(source), "--calibrate", "0", "-o", str(tmp_path / art)]) == 0
    capsys.readouterr()
    assert ((tmp_path / "art_native" / "manifest.json").read_bytes()
            == (tmp_path / "art_pth" / "manifest.json").read_bytes())  # the same program either way
    assert main(["run", str(tmp_path / "art_pth"), "--tokens", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "spikegpt"
    assert main(["generate", str(pth), "--prompt", "ab", "--tokens", "4"]) == 0
    from_pth = capsys.readouterr().out
    assert main(["generate", str(native), "--prompt", "ab", "--tokens", "4"]) == 0
    assert capsys.readouterr().out == from_pth and from_pth.startswith("ab") and len(from_pth) == 7


def test_hf_llama_folder_compile_export_generate(tmp_path, capsys):
    folder = write_llama_folder(tmp_path / "llama")
    assert main(["export", str(folder), "-o", str(tmp_path / "m.nir")]) == 0
    assert main(["compile", str(folder), "--calibrate", "0", "-o", str(tmp_path / "art")]) == 0
    assert "(spikellm)" in capsys.readouterr().out
    assert main(["generate", str(folder), "--family", "hf-llama", "--prompt", "the ", "--tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    text = tmp_path / "mine.txt"
    text.write_text("the tea at the inn is hot; tie the net. " * 40)
    assert main(["import", str(folder), "--text", str(text), "-o", str(tmp_path / "llama.pt")]) == 0
    note = json.loads(capsys.readouterr().out)
    assert note["layout"] == "hf-llama" and note["saliency"]["text"] == "mine.txt (--text)"
    assert torch.load(tmp_path / "llama.pt", weights_only=True)["config"]["rms_norm_eps"] == 1e-6


def test_sweep_takes_a_published_checkpoint(tmp_path, capsys):
    pth = write_spikegpt_pth(tmp_path / "up")
    assert main(["sweep", str(pth), "--tokens", "4", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "loihi2" in out.splitlines()[1]


@pytest.mark.parametrize("case", ["no-family", "shape", "pickle", "huge-config", "outside-index", "tokenizer-size"])
def test_bad_published_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    marker = tmp_path / "pwned"
    if case == "no-family":
        source = tmp_path / "x.pth"
        torch.save({"encoder.layer.weight": torch.zeros(2, 2)}, source)
        expected = "match no published layout"
    elif case == "shape":
        state = llama_state()
        state["model.norm.weight"] = torch.zeros(17)
        source = write_llama_folder(tmp_path / "hf", state=state)
        expected = "'model.norm.weight' has shape (17,), config expects (16,)"
    elif case == "pickle":
        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        source = tmp_path / "evil.pth"
        torch.save({"emb.weight": Payload()}, source)
        expected = "refuses to unpickle"
    elif case == "huge-config":
        source = write_llama_folder(tmp_path / "hf", config={**LLAMA_CONFIG, "intermediate_size": 10**8},
                                    state=llama_state())
        expected = "intermediate_size = 100000000 is outside 1..65536"
    elif case == "outside-index":
        source = tmp_path / "hf"
        source.mkdir()
        (source / "config.json").write_text(json.dumps(LLAMA_CONFIG))
        (source / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "/etc/passwd"}}))
        expected = "is not a file name inside"
    else:
        source = write_spikegpt_pth(tmp_path / "up", vocab=300, chars=None)
        (source.parent / "tokenizer.json").write_text(bpe_tokenizer_json(290))
        expected = "290 tokens, the checkpoint's embedding 300 rows"
    for argv in (["import", str(source), "-o", str(tmp_path / "out.pt")],
                 ["compile", str(source), "--calibrate", "0", "-o", str(tmp_path / "art")],
                 ["export", str(source), "-o", str(tmp_path / "out.nir")]):
        assert main(argv) == 2
        assert expected in _one_line_error(capsys)
    assert not any((tmp_path / name).exists() for name in ("out.pt", "art", "out.nir", "pwned"))
