"""Training, evaluation and generation of the char-level SpikeLLM (wired to `spikestack train spikellm` /
`spikestack generate`, and `models/registry.py`, which finds these functions by name on `spikellm`).

Place in the picture (STYLE.md): the *models/* end — trains the `SpikeLLM` of `spikellm_network` on the pydoc
corpus of `models/data.py` and writes the checkpoints under models/checkpoints/ that export reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from spikestack.models.threads import one_torch_thread
from torch import Tensor, nn

from .checkpoint import (
    FLAG,
    MAX_BITS,
    MAX_CONTEXT,
    MAX_LAYERS,
    MAX_VOCAB,
    MAX_WIDTH,
    CheckpointSpec,
    checkpoint_tokenizer,
    count,
    load_model,
    real,
)
from .spikellm_network import SpikeLLM, SpikeLLMConfig, SpikeLLMError
from .spikellm_neurons import SpikeMode, SpikeStats
from .spikellm_saliency import calibrate_saliency

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TrainSettings:
    """Optimizer and schedule of `train`; the numbers were picked by hand for ≤ 3 min on one CPU thread."""

    batch_size: int = 32
    learning_rate: float = 3e-3  # AdamW peak, cosine decay to 10 %
    weight_decay: float = 0.01
    warmup_steps: int = 50
    float_fraction: float = 0.5  # first half float (ANN), then saliency calibration, then quantization-aware
    calibration_windows: int = 32
    grad_clip: float = 1.0


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
          config: SpikeLLMConfig | None = None, settings: TrainSettings | None = None) -> dict[str, Any]:
    """Train the char-level SpikeLLM on `load_corpus()` and save a checkpoint; returns its metrics.

    Schedule (our choice): the first `float_fraction` of steps train the ANN path; saliency is then calibrated
    on training windows (masks frozen from there on) and the remaining steps train the spiking path (QUANT
    mode, straight-through gradients) so the weights adapt to the 4-bit code. `spiking=False` trains the ANN
    only (masks still calibrated at the end so the checkpoint can be run spiking, post-training). Runs on one
    torch thread (restored afterwards) so a seed gives the same checkpoint bit for bit.
    """
    from spikestack.models.data import load_corpus

    settings = settings or TrainSettings()
    corpus = load_corpus()
    cfg = SpikeLLMConfig(**{**asdict(config or SpikeLLMConfig()), "vocab_size": corpus.vocab_size,
                            "spiking": spiking})
    with one_torch_thread():
        start, cpu_start = time.perf_counter(), time.process_time()
        model, final_loss = _train_loop(cfg, settings, corpus.train_ids, steps, seed, progress)
        metrics: dict[str, Any] = {
            "train_steps": steps, "seed": seed, "final_train_bpc": final_loss / LN2,
            "train_wall_s": time.perf_counter() - start, "train_cpu_s": time.process_time() - cpu_start,
        }
        checkpoint = {"family": "spikellm", "config": asdict(cfg), "state_dict": model.state_dict(),
                      "vocab": corpus.vocab, "metrics": metrics}
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, out_path)
        metrics.update(evaluate(out_path))
        torch.save(checkpoint, out_path)  # again, now carrying its validation metrics
    return metrics


def _train_loop(cfg: SpikeLLMConfig, settings: TrainSettings, train_ids: np.ndarray, steps: int, seed: int,
                progress: bool) -> tuple[SpikeLLM, float]:
    from spikestack.models.data import random_windows
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SpikeLLM(cfg).set_spiking(False).set_mode(SpikeMode.QUANT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay, betas=(0.9, 0.95))
    switch_step = int(steps * settings.float_fraction) if cfg.spiking else steps
    bar = tqdm(range(steps), desc="train spikellm", disable=not progress)
    loss_value = float("nan")
    for step in bar:
        if step == switch_step:
            _calibrate_on_train(model, train_ids, cfg, settings, rng)
            model.set_spiking(True)
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * _lr_factor(step, steps, settings.warmup_steps)
        batch = torch.from_numpy(random_windows(train_ids, cfg.max_seq_len, settings.batch_size, rng))
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        loss_value = loss.item()
        bar.set_postfix(bpc=f"{loss_value / LN2:.3f}", path="spike" if step >= switch_step else "float")
    if switch_step >= steps:
        _calibrate_on_train(model, train_ids, cfg, settings, rng)
    return model.set_spiking(cfg.spiking), loss_value


def _calibrate_on_train(model: SpikeLLM, train_ids: np.ndarray, cfg: SpikeLLMConfig, settings: TrainSettings,
                        rng: np.random.Generator) -> None:
    from spikestack.models.data import random_windows

    windows = random_windows(train_ids, cfg.max_seq_len, settings.calibration_windows, rng)
    calibrate_saliency(model, torch.from_numpy(windows[:, :-1]), cfg.salient_fraction)


def parameter_count(cfg: dict) -> int:
    """State-dict elements of `SpikeLLM(cfg)` (a tied head counted twice, as the state dict holds it twice),
    from the config alone (checked before any model is built). Each SpikeLinear adds its salient mask."""
    v, h, ffn, layers = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["n_layers"]
    heads = cfg["n_heads"]
    kv_heads = heads if cfg["n_kv_heads"] is None else cfg["n_kv_heads"]
    head_dim = h // heads
    attention = (h * heads * head_dim + h) + 2 * (h * kv_heads * head_dim + h) + (heads * head_dim * (h + 1))
    mlp = 2 * (h * ffn + h) + (ffn * h + ffn)
    return v * h + layers * (attention + mlp + 2 * h) + h + h * v  # embed, layers (+ 2 norms), norm, lm_head


CHECKPOINT_SPEC = CheckpointSpec(
    families=("spikellm",),
    fields={"vocab_size": count(MAX_VOCAB), "hidden_size": count(MAX_WIDTH), "n_layers": count(MAX_LAYERS),
            "n_heads": count(MAX_WIDTH), "n_kv_heads": count(MAX_WIDTH, optional=True),
            "intermediate_size": count(MAX_WIDTH), "max_seq_len": count(MAX_CONTEXT),
            "rope_theta": real(1.0, 1e12), "rms_norm_eps": real(1e-12, 1.0), "tie_word_embeddings": FLAG,
            "act_bits": count(MAX_BITS), "add_bits": count(MAX_BITS, low=0), "salient_fraction": real(0.0, 1.0),
            "spiking": FLAG},
    vocab_field="vocab_size",
    parameter_count=parameter_count,
    build=lambda family, cfg: SpikeLLM(SpikeLLMConfig(**cfg)),  # its __post_init__ checks the head layout
)


def load_checkpoint(path: Path) -> tuple[SpikeLLM, str | None]:
    """(model in eval mode, on its checkpoint's spiking setting, QUANT mode; vocabulary string, None for a
    tokenizer that is not a character one), checked by models/checkpoint.py."""
    model, checkpoint = load_model(path, CHECKPOINT_SPEC)
    return model, checkpoint_tokenizer(checkpoint).chars


@torch.no_grad()
def _bits_per_char(model: SpikeLLM, ids: Tensor, batch_size: int = 64) -> float:
    total_nats = 0.0
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start:start + batch_size]
        logits = model(chunk[:, :-1])
        total_nats += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                      reduction="sum").item()
    return total_nats / (ids.shape[0] * (ids.shape[1] - 1)) / LN2


def validation_windows(n_chars: int, seq_len: int) -> Tensor:
    """Consecutive non-overlapping windows over the first n_chars of validation text, [n, seq_len + 1]."""
    from spikestack.models.data import load_corpus

    val = torch.from_numpy(load_corpus().val_ids)
    n_windows = min(n_chars, len(val) - 1) // seq_len
    if n_windows == 0:
        raise SpikeLLMError(f"n_chars {n_chars} is shorter than one window of {seq_len} characters")
    starts = torch.arange(n_windows) * seq_len
    return torch.stack([val[s:s + seq_len + 1] for s in starts.tolist()])


def evaluate(path: Path, *, n_chars: int = 20000) -> dict[str, Any]:
    """Validation bits per character of the spiking path (SPIKE mode) and the ANN twin, plus spike traffic.

    Windows: non-overlapping, `max_seq_len` characters each, from the start of the validation split; each
    scores its `max_seq_len` next characters, so `val_chars` = n_windows · max_seq_len.
    """
    model, _ = load_checkpoint(path)
    windows = validation_windows(n_chars, model.cfg.max_seq_len)
    model.set_spiking(True).set_mode(SpikeMode.SPIKE)
    layers = dict(model.spike_linears())
    for layer in layers.values():
        layer.stats = SpikeStats()
    spiking_bpc = _bits_per_char(model, windows)
    stats = {name: layer.stats for name, layer in layers.items() if layer.stats is not None}
    for layer in layers.values():
        layer.stats = None
    ann_bpc = _bits_per_char(model.set_spiking(False), windows)
    salient_slots = max(sum(st.tokens * st.salient_channels for st in stats.values()), 1)
    return {
        "val_chars": int(windows.shape[0] * (windows.shape[1] - 1)),
        "val_bpc_spiking": spiking_bpc,
        "val_bpc_ann": ann_bpc,
        # per token and salient channel, pooled over all SpikeLinears: GIF events (≤ K) and binary spikes
        "salient_events_per_channel": sum(st.salient_events for st in stats.values()) / salient_slots,
        "salient_binary_spikes_per_channel":
            sum(st.salient_binary_spikes for st in stats.values()) / salient_slots,
        "firing_rate_by_layer": {name: st.summary()["firing_rate"] for name, st in stats.items()},
    }


@torch.no_grad()
def generate(path: Path, prompt: str, n_tokens: int, *, spiking: bool = True) -> str:
    """`prompt` and its greedy continuation by `n_tokens` characters (every family's `generate` returns the prompt
    too, as the CLI prints it). The checkpoint's tokenizer encodes the prompt (a piece it cannot encode is one
    error line) and decodes the continuation."""
    from .tokenizer import continuation

    model, checkpoint = load_model(path, CHECKPOINT_SPEC)
    tokenizer = checkpoint_tokenizer(checkpoint)
    model.set_spiking(spiking)
    prompt_ids = tokenizer.encode(prompt, "prompt")
    ids = prompt_ids or [tokenizer.encode(" ", "prompt")[0] if tokenizer.chars and " " in tokenizer.chars else 0]
    out: list[int] = []
    for _ in range(n_tokens):
        context = torch.tensor([(ids + out)[-model.cfg.max_seq_len:]])
        out.append(int(model(context)[0, -1].argmax()))
    return continuation(tokenizer, prompt, prompt_ids, out)
