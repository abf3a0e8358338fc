"""Streaming compile (compiler/hybrid/stream.py, spikestack/compilation.py `compile_stream`): a Hugging Face LLaMA
folder in sharded safetensors compiled one decoder block at a time gives the in-memory compile's artifact byte for
byte; bad folders are one line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import spikestack as ss
from spikestack.cli import main
from spikestack.compilation import compile_stream
from tests.models.published_factories import LLAMA_CONFIG, bpe_tokenizer_json, llama_state

CONFIG_3 = {**LLAMA_CONFIG, "num_hidden_layers": 3}  # 3 blocks, grouped k/v heads (2 in the file, 4 used)


def write_sharded_llama(folder: Path, config: dict = CONFIG_3, shards: int = 3, state: dict | None = None) -> Path:
    """A HF LLaMA folder with its weights split over `shards` safetensors files and model.safetensors.index.json,
    keys dealt round-robin so every shard holds pieces of several blocks."""
    state = llama_state(config) if state is None else state
    folder.mkdir(parents=True)
    names = [f"model-{k + 1:05d}-of-{shards:05d}.safetensors" for k in range(shards)]
    weight_map = {key: names[i % shards] for i, key in enumerate(sorted(state))}
    for name in names:
        save_file({k: v.contiguous() for k, v in state.items() if weight_map[k] == name}, str(folder / name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(bpe_tokenizer_json(config["vocab_size"]))
    return folder


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_streamed_artifact_is_the_in_memory_compiles_byte_for_byte(tmp_path):
    folder = write_sharded_llama(tmp_path / "llama")
    ss.save(ss.compile(folder, "loihi2"), tmp_path / "whole")
    program = compile_stream(folder, tmp_path / "streamed", "loihi2")
    whole, streamed = _files(tmp_path / "whole"), _files(tmp_path / "streamed")
    # 3 blocks × 7 GIF layers, each projection's weight and groups; 13 stages and 13 decode stages (4 per block + 1)
    assert sum(k.endswith(".weight.npy") for k in whole) == 21 and sum(k.endswith(".onnx") for k in whole) == 26
    assert streamed == whole
    # the masks came from the block-by-block saliency run: round(0.1 · 16) = 2 salient inputs per q/k/v/o/gate/up
    groups = np.load(tmp_path / "streamed" / "arrays" / "proj.model.layers.2.self_attn.q_proj.groups.npy")
    assert groups.shape == (16,) and int((groups == 1).sum()) == 2
    # the program's chip weights are the artifact's files mapped read-only, not copies
    for la in program.layers:
        weight, base = la.projection.weight, la.projection.weight.base
        while isinstance(base, np.ndarray | memoryview):
            base = base.obj if isinstance(base, memoryview) else base.base
        assert not weight.flags.writeable and isinstance(base, mmap.mmap)
    loaded = ss.load(tmp_path / "streamed")
    ids = np.array([[5, 17, 99, 3, 42, 7]])
    assert np.array_equal(ss.run(loaded, ids).logits, ss.run(ss.load(tmp_path / "whole"), ids).logits)


def test_cli_streams_a_hugging_face_folder_and_says_so(tmp_path, capsys):
    """One model.safetensors with tied embeddings (the head read from the embedding): streamed by `compile
    --calibrate 0`, in memory with the per-layer error report, which changes the manifest's report only."""
    config = {**LLAMA_CONFIG, "tie_word_embeddings": True}
    state = {k: v for k, v in llama_state(config).items() if k != "lm_head.weight"}
    folder = tmp_path / "llama"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(bpe_tokenizer_json(config["vocab_size"]))
    text = tmp_path / "mine.txt"  # the calibration text of both paths (saliency reads the shipped corpus in both)
    text.write_text("the tea at the inn is hot; tie the net. " * 40)
    assert main(["compile", str(folder), "--calibrate", "0", "--text", str(text), "-o", str(tmp_path / "art")]) == 0
    out = capsys.readouterr().out
    assert "(spikellm), streamed block by block" in out and "14 chip layers" in out
    assert main(["compile", str(folder), "--calibrate", "4", "--text", str(text), "-o", str(tmp_path / "report")]) == 0
    assert "streamed" not in capsys.readouterr().out  # the per-layer error report needs the whole model
    assert "calibration" in json.loads((tmp_path / "report" / "manifest.json").read_text())["report"]
    streamed, whole = _files(tmp_path / "art"), _files(tmp_path / "report")
    assert streamed.pop("manifest.json") != whole.pop("manifest.json") and streamed == whole


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikestack: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", ["missing-shard", "layer-shape", "index-key-absent"])
def test_bad_sharded_folder_is_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    state = llama_state(CONFIG_3)
    if case == "layer-shape":  # block 2's up_proj is 16 × 16, config.json says intermediate_size 24
        state["model.layers.2.mlp.up_proj.weight"] = torch.zeros(16, 16)
    folder = write_sharded_llama(tmp_path / "llama", state=state)
    if case == "missing-shard":
        (folder / "model-00002-of-00003.safetensors").unlink()
        expected = "shard 'model-00002-of-00003.safetensors' not found in"
    elif case == "layer-shape":
        expected = "'model.layers.2.mlp.up_proj.weight' has shape (16, 16), config expects (24, 16)"
    else:  # the index names a key its shard does not hold
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"]["model.layers.1.mlp.extra.weight"] = "model-00001-of-00003.safetensors"
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        expected = "key 'model.layers.1.mlp.extra.weight' is not in its shard 'model-00001-of-00003.safetensors'"
    assert main(["compile", str(folder), "--calibrate", "0", "-o", str(tmp_path / "art")]) == 2
    assert expected in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama"]  # no artifact, no temporary sibling
