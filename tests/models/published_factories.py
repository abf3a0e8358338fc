"""Small published checkpoints with the exact upstream key names and shapes (tiny widths), written to disk as the
seed projects' code writes them: SpikeGPT `.pth` (time_mix stored flat [C] as some upstream saves do, plus
vocab.json id → character), a Hugging Face LLaMA folder (config.json + model.safetensors + tokenizer.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from spikestack.models.spikegpt_network import SpikeGPT, SpikeGPTConfig
from spikestack.models.spikellm_network import SpikeLLM, SpikeLLMConfig
from tokenizers import Tokenizer, models, pre_tokenizers

CHARS_77 = "".join(chr(c) for c in range(32, 32 + 76)) + "\n"  # 77 characters like upstream BookCorpus


def spikegpt_state(vocab: int = 77, layers: int = 2, width: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A SpikeGPT state dict in the published layout (REFERENCE.md §3.2), random weights, time_mix as [C]."""
    torch.manual_seed(seed)
    model = SpikeGPT(SpikeGPTConfig(vocab_size=vocab, n_layer=layers, n_embd=width))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key in state:
        if "time_mix" in key:
            state[key] = state[key].reshape(-1)
        if key.endswith("time_decay") or key.endswith("time_first"):
            state[key] = torch.randn(width) * 0.5
    return state


def write_spikegpt_pth(folder: Path, *, vocab: int = 77, chars: str | None = CHARS_77) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "SpikeGPT.pth"
    torch.save(spikegpt_state(vocab=vocab), path)
    if chars is not None:
        (folder / "vocab.json").write_text(json.dumps({str(i): c for i, c in enumerate(chars)}))
    return path


def bpe_tokenizer_json(size: int) -> str:
    """A BPE tokenizer.json with exactly `size` tokens: printable ASCII, newline, then two-letter merges."""
    base = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(base)}
    merges = []
    letters = "etaoinshrdlucmfwy"  # 17² = 289 merges at most
    for a in letters:
        for b in letters:
            if len(vocab) >= size:
                break
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    assert len(vocab) == size
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="isolated")
    return tok.to_str()


LLAMA_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 120, "hidden_size": 16,
                "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 32, "rms_norm_eps": 1e-6,
                "rope_theta": 500.0, "tie_word_embeddings": False, "hidden_act": "silu"}


def llama_state(config: dict = LLAMA_CONFIG, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF LLaMA key names and shapes (no salient masks: a LLaMA checkpoint has none)."""
    torch.manual_seed(seed)
    cfg = SpikeLLMConfig(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                         n_layers=config["num_hidden_layers"], n_heads=config["num_attention_heads"],
                         n_kv_heads=config["num_key_value_heads"], intermediate_size=config["intermediate_size"],
                         max_seq_len=config["max_position_embeddings"])
    state = SpikeLLM(cfg).state_dict()
    return {k: v.detach().clone() for k, v in state.items() if not k.endswith("salient_mask")}


def write_llama_folder(folder: Path, *, config: dict = LLAMA_CONFIG, state: dict | None = None,
                       tokenizer: bool = True) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state if state is not None else llama_state(config), str(folder / "model.safetensors"))
    if tokenizer:
        (folder / "tokenizer.json").write_text(bpe_tokenizer_json(config["vocab_size"]))
    return folder
