"""Published checkpoints (models/published): converted to our native checkpoint dict and loaded through the safe
path; factories in published_factories.py carry the upstream key names and shapes at tiny widths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from spikestack.models.checkpoint import CheckpointError, InMemoryCheckpoint, read_checkpoint
from spikestack.models.published import (
    PublishedFormatError,
    checkpoint_source,
    detect,
    is_published,
    read_source,
    to_native,
)
from spikestack.models.spikegpt import load_checkpoint as load_spikegpt
from spikestack.models.spikegpt_load import load_published_state_dict
from spikestack.models.spikellm import load_checkpoint as load_spikellm
from spikestack.models.spikellm_load import config_from_hf, load_llama_state_dict

from .published_factories import (
    CHARS_77,
    LLAMA_CONFIG,
    bpe_tokenizer_json,
    llama_state,
    spikegpt_state,
    write_llama_folder,
    write_spikegpt_pth,
)


def test_spikegpt_pth_converts_to_the_model_spikegpt_load_builds_bit_for_bit(tmp_path):
    path = write_spikegpt_pth(tmp_path)
    native = to_native(path)
    assert native["family"] == "spikegpt" and native["vocab"] == CHARS_77
    assert native["config"]["n_layer"] == 2 and native["config"]["n_embd"] == 16
    assert native["config"]["binary_embedding"] is True  # 77 characters < 256 (REFERENCE.md §3.5)
    assert native["published"]["layout"] == "spikegpt-pth"
    converted, _ = load_spikegpt(InMemoryCheckpoint(path, native))
    _, direct = load_published_state_dict(spikegpt_state())
    ids = torch.tensor([[3, 14, 15, 9, 2, 6, 5, 35]])
    with torch.no_grad():
        assert torch.equal(converted(ids), direct(ids))


def test_safetensors_file_gives_the_same_logits_as_the_pth(tmp_path):
    from safetensors.torch import save_file

    pth = write_spikegpt_pth(tmp_path / "a")
    (tmp_path / "b").mkdir()
    save_file(spikegpt_state(), str(tmp_path / "b" / "model.safetensors"))
    (tmp_path / "b" / "vocab.json").write_text((tmp_path / "a" / "vocab.json").read_text())
    a, _ = load_spikegpt(checkpoint_source(pth))
    b, _ = load_spikegpt(checkpoint_source(tmp_path / "b" / "model.safetensors"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))


def test_bpe_spikegpt_carries_its_tokenizer_and_a_float_embedding(tmp_path):
    path = write_spikegpt_pth(tmp_path, vocab=300, chars=None)
    (tmp_path / "20B_tokenizer.json").write_text(bpe_tokenizer_json(300))
    native = to_native(path)
    assert native["config"]["binary_embedding"] is False and native["config"]["vocab_size"] == 300
    assert "vocab" not in native and json.loads(native["tokenizer"])["model"]["type"] == "BPE"
    load_spikegpt(InMemoryCheckpoint(path, native))  # passes every check of load_model


def test_tokenizer_of_another_size_names_both(tmp_path):
    path = write_spikegpt_pth(tmp_path, vocab=300, chars=None)
    (tmp_path / "tokenizer.json").write_text(bpe_tokenizer_json(299))
    with pytest.raises(PublishedFormatError, match=r"299 tokens, the checkpoint's embedding 300 rows"):
        to_native(path)


def test_native_checkpoint_is_not_published_and_is_passed_through(tmp_path):
    path = write_spikegpt_pth(tmp_path)
    native_path = tmp_path / "native.pt"
    torch.save(to_native(path), native_path)
    assert is_published(path) and not is_published(native_path)
    assert checkpoint_source(native_path) == native_path
    with pytest.raises(CheckpointError, match=r"family 'spikegpt', not --family 'spikellm'"):
        checkpoint_source(native_path, "spikellm")


def _llama_logits(model, ids):
    with torch.no_grad():
        return model.set_spiking(False)(ids)


def test_hf_llama_folder_reads_its_config_and_matches_load_llama_state_dict(tmp_path):
    folder = write_llama_folder(tmp_path / "llama")
    native = to_native(folder)
    cfg = native["config"]
    assert (cfg["rms_norm_eps"], cfg["max_seq_len"], cfg["rope_theta"], cfg["n_heads"]) == (1e-6, 32, 500.0, 4)
    assert cfg["n_kv_heads"] == 4 and native["published"]["key_value_heads"] == "2 in the file, each repeated to 4"
    converted, _ = load_spikellm(InMemoryCheckpoint(folder, native))
    direct = load_llama_state_dict(llama_state(), config_from_hf(LLAMA_CONFIG))
    ids = torch.tensor([[5, 17, 99, 3, 42, 7]])
    assert torch.allclose(_llama_logits(converted, ids), _llama_logits(direct, ids), rtol=0, atol=1e-5)


def test_salient_masks_are_calibrated_on_the_shipped_corpus_or_the_users_text(tmp_path):
    folder = write_llama_folder(tmp_path / "llama")
    native = to_native(folder)
    masks = {k: v for k, v in native["state_dict"].items() if k.endswith("salient_mask")}
    assert len(masks) == 2 * 7
    for key, mask in masks.items():  # round(0.1 · in_features): 2 of 16 inputs, 2 of 24 for down_proj
        assert int(mask.sum()) == 2, key
    assert native["published"]["saliency"]["text"].startswith("the shipped corpus")
    text = tmp_path / "mine.txt"
    text.write_text("the tea at the inn is hot; tie the net. " * 40)
    mine = to_native(folder, text=text)
    assert mine["published"]["saliency"]["text"] == "mine.txt (--text)"
    assert mine["published"]["saliency"]["windows"] == 8


def test_rms_norm_eps_from_config_json_sets_the_logits_as_hand_computed(tmp_path):
    """All layer projections zero: every residual add is 0, so logits = W_head · (e / sqrt(mean(e²) + eps) · g)."""
    state = llama_state()
    for key in state:
        if key.startswith("model.layers.") and key.endswith("proj.weight"):
            state[key] = torch.zeros_like(state[key])
    emb, gain, head = (state[k].double().numpy() for k in ("model.embed_tokens.weight", "model.norm.weight",
                                                             "lm_head.weight"))
    token = 11
    results = {}
    for eps in (1e-6, 0.5):
        folder = write_llama_folder(tmp_path / f"eps{eps}", config={**LLAMA_CONFIG, "rms_norm_eps": eps},
                                    state=state)
        model, _ = load_spikellm(checkpoint_source(folder))
        got = _llama_logits(model, torch.tensor([[token]]))[0, 0].double().numpy()
        e = emb[token]
        want = head @ (e / math.sqrt(float(np.mean(e * e)) + eps) * gain)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        results[eps] = got
    assert np.abs(results[1e-6] - results[0.5]).max() > 1e-3  # the file's eps matters


def test_sharded_safetensors_index_is_read(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "sharded"
    folder.mkdir()
    state = llama_state()
    keys = sorted(state)
    half = len(keys) // 2
    save_file({k: state[k] for k in keys[:half]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    source = read_source(folder)
    assert sorted(source.state) == keys and detect(source).name == "hf-llama"
    assert torch.equal(source.state[keys[0]], state[keys[0]])


# ------------------------------------------------------------------------------------------------- bad input
def test_state_dict_of_no_family_lists_the_layouts_and_first_unexpected_and_missing_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3), "emb.weight": torch.zeros(5, 3)}, path)
    with pytest.raises(PublishedFormatError) as info:
        to_native(path)
    message = str(info.value)
    assert "match no published layout" in message and "\n" not in message
    assert "spikegpt-pth (spikegpt): SpikeGPT GPT(model_type='RWKV')" in message
    assert "hf-llama (spikellm): Hugging Face LLaMA" in message
    assert "against spikegpt-pth: first unexpected key 'encoder.weight'; first missing key " \
           "'blocks.0.ln0.weight'" in message


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    state = spikegpt_state()
    state["blocks.1.att.key.weight"] = torch.zeros(16, 15)
    torch.save(state, tmp_path / "bad.pth")
    (tmp_path / "vocab.json").write_text(json.dumps({str(i): c for i, c in enumerate(CHARS_77)}))
    with pytest.raises(PublishedFormatError, match=r"'blocks.1.att.key.weight' has shape \(16, 15\), expected "
                                                   r"\(16, 16\)"):
        to_native(tmp_path / "bad.pth")


def test_llama_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    state = llama_state()
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(25, 16)
    folder = write_llama_folder(tmp_path / "llama", state=state)
    with pytest.raises(PublishedFormatError, match=r"'model.layers.1.mlp.up_proj.weight' has shape \(25, 16\), "
                                                   r"config expects \(24, 16\)"):
        to_native(folder)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"emb.weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        checkpoint_source(path)
    assert not marker.exists()


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", 10**9, r"hidden_size = 1000000000 is outside 1\.\.65536"),
    ("max_position_embeddings", 10**12, r"max_position_embeddings = 1000000000000 is outside 1\.\.1048576"),
    ("num_attention_heads", 2.5, r"num_attention_heads = 2\.5 is not an int"),
    ("rope_scaling", {"type": "linear", "factor": 2.0}, r"rope_scaling = .* is not supported"),
])
def test_config_json_values_are_capped_before_anything_is_built(tmp_path, field, value, message):
    folder = write_llama_folder(tmp_path / "llama", config={**LLAMA_CONFIG, field: value}, state=llama_state())
    with pytest.raises(PublishedFormatError, match=message):
        to_native(folder)


def test_sharded_index_pointing_outside_the_folder_is_refused(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(llama_state(), str(tmp_path / "outside.safetensors"))
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    weight_map = {k: "../outside.safetensors" for k in llama_state()}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(PublishedFormatError, match=r"shard '../outside.safetensors' is not a file name inside"):
        read_source(folder)
    (folder / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: "link.safetensors" for k in llama_state()}}))
    with pytest.raises(PublishedFormatError, match=r"shard 'link.safetensors' points outside"):
        read_source(folder)


def test_forced_family_converts_with_that_layout_and_reports_its_error(tmp_path):
    path = write_spikegpt_pth(tmp_path)
    with pytest.raises(PublishedFormatError, match=r"missing key 'model.embed_tokens.weight'"):
        to_native(path, "spikellm")
    with pytest.raises(PublishedFormatError, match=r"--family 'nir-lif' has no published layout"):
        to_native(path, "nir-lif")
    assert read_checkpoint(path)["emb.weight"].shape == (77, 16)  # the source itself is untouched


def test_layer_count_and_heads_shared_by_every_layout():
    """models/published/base.py: blocks counted while their first key exists; heads from config.json only, a
    positive integer dividing the hidden size — each failure one message naming the key or field."""
    from spikestack.models.published.base import PublishedFormatError, attention_heads, count_layers

    def fail(message):
        return PublishedFormatError(f"model.pth: {message}")

    keys = {"layers.0.w", "layers.1.w", "layers.3.w"}
    assert count_layers(keys.__contains__, "layers.{}.w", fail) == 2  # stops at the first gap
    with pytest.raises(PublishedFormatError, match=r"model.pth: missing key 'blocks.0.w'"):
        count_layers(keys.__contains__, "blocks.{}.w", fail)
    assert attention_heads({"num_attention_heads": 4}, 64, fail) == 4
    for bad in ({"num_attention_heads": 5}, {"num_attention_heads": True}, {}, None):
        with pytest.raises(PublishedFormatError, match=r"model.pth: (config.json field 'num_attention_heads'|no "
                                                        r"config.json)"):
            attention_heads(bad, 64, fail)


def test_parameter_caps_mapped_and_read_whole(tmp_path, monkeypatch):
    """A pickled state dict is read whole, so it keeps the in-memory cap; safetensors are mapped and read key by
    key (the streaming compile of a 7B folder), so theirs is MAX_MAPPED_PARAMETERS. Each cap names the file."""
    from safetensors.torch import save_file
    from spikestack.models.published import reading

    state = {"a": torch.zeros(4, 3), "b": torch.zeros(5)}  # 17 elements
    save_file(state, str(tmp_path / "m.safetensors"))
    torch.save(state, tmp_path / "m.bin")
    monkeypatch.setattr(reading, "MAX_PARAMETERS", 16)
    assert sorted(reading._safetensors([tmp_path / "m.safetensors"])) == ["a", "b"]  # 17 > 16: mapped, allowed
    with pytest.raises(PublishedFormatError, match=r"m\.bin: more than 16 parameters, over the limit"):
        reading._torch_file(tmp_path / "m.bin")
    monkeypatch.setattr(reading, "MAX_MAPPED_PARAMETERS", 16)
    with pytest.raises(PublishedFormatError, match=r"m\.safetensors: more than 16 parameters, over the limit"):
        reading._safetensors([tmp_path / "m.safetensors"])
