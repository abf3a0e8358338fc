"""The spine network: a character-level n-gram language model built from elastic bi-spiking linear blocks.

    ids[ctx] ──emb──▶ flatten ──▶ spike1 → fc1 ──▶ spike2 → fc2 ──▶ spike3 → head ──mean over T──▶ logits

Each `spikeN → fcN` pair is one SpikeLM `SpikeLinear` (spikes at the *input* of a linear layer, REFERENCE.md §1.2).
The embedding output is repeated for T steps (SpikeLM repeats the embedding T times) and the logits are the mean
over T of the head's output. Real-valued, host-side ops: the embedding lookup and the final mean; everything
between is spikes and synapses. The ANN twin swaps the spiking sites for identity (site 1: the embedding is
already real) and GELU (sites 2, 3), as BERT's FFN does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bispike import ElasticBiSpike
from .checkpoint import (
    FLAG,
    MAX_CONTEXT,
    MAX_LEVELS,
    MAX_STEPS,
    MAX_VOCAB,
    MAX_WIDTH,
    CheckpointSpec,
    count,
    load_model,
)
from .data import load_corpus, random_windows
from .threads import one_torch_thread

FAMILY = "bispike-mlp"


@dataclass(frozen=True, slots=True)
class BiSpikeMLPConfig:
    vocab: int = 95
    context: int = 8  # characters seen per prediction
    emb_dim: int = 16
    hidden: int = 128
    steps: int = 4  # T, SpikeLM's default (REFERENCE.md §1.1)
    levels: int = 1  # K: spikes in -K..K; 1 = SpikeLM's ternary spike
    spiking: bool = True


class BiSpikeMLP(nn.Module):
    def __init__(self, cfg: BiSpikeMLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d_in = cfg.context * cfg.emb_dim
        self.emb = nn.Embedding(cfg.vocab, cfg.emb_dim)
        self.flatten = nn.Flatten(start_dim=-2)
        self.fc1 = nn.Linear(d_in, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.vocab)
        if cfg.spiking:
            self.spike1: nn.Module = ElasticBiSpike(cfg.steps, cfg.levels)
            self.spike2: nn.Module = ElasticBiSpike(cfg.steps, cfg.levels)
            self.spike3: nn.Module = ElasticBiSpike(cfg.steps, cfg.levels)
        else:
            self.spike1, self.spike2, self.spike3 = nn.Identity(), nn.GELU(), nn.GELU()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, context] int64 → logits [B, vocab]."""
        x = self.flatten(self.emb(ids))
        steps = self.cfg.steps if self.cfg.spiking else 1
        xs = x.unsqueeze(0).expand(steps, *x.shape)
        y = self.head(self.spike3(self.fc2(self.spike2(self.fc1(self.spike1(xs))))))
        return y.mean(0)

    def spiking_sites(self) -> list[ElasticBiSpike]:
        return [m for m in (self.spike1, self.spike2, self.spike3) if isinstance(m, ElasticBiSpike)]


def context_windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next character) pairs of a text: inputs [N, context], targets [N]."""
    n = len(ids) - context
    idx = np.arange(n)[:, None] + np.arange(context)[None, :]
    return ids[idx], ids[context:]


def evaluation_set(n_chars: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The fixed validation windows every metric of this family is reported on (first n_chars of val split)."""
    corpus = load_corpus()
    cfg = BiSpikeMLPConfig()
    return context_windows(corpus.val_ids[: n_chars + cfg.context], cfg.context)


def bits_per_char(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float(nn.functional.cross_entropy(logits, targets)) / math.log(2)


def train(
    out_path: Path, *, steps: int = 1500, seed: int = 0, spiking: bool = True, progress: bool = True
) -> dict:
    """Train on pydoc topics (next character from the previous 8) and save a checkpoint; returns its metrics."""
    with one_torch_thread():  # see models/threads.py: bit-reproducible, faster on small cores
        return _train(Path(out_path), steps=steps, seed=seed, spiking=spiking, progress=progress)


def _train(out_path: Path, *, steps: int, seed: int, spiking: bool, progress: bool) -> dict:
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = load_corpus()
    cfg = BiSpikeMLPConfig(vocab=corpus.vocab_size, spiking=spiking)
    model = BiSpikeMLP(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-4)
    for _ in tqdm(range(steps), desc=f"train {FAMILY}", disable=not progress):
        batch = torch.from_numpy(random_windows(corpus.train_ids, cfg.context, 256, rng))
        loss = nn.functional.cross_entropy(model(batch[:, :-1]), batch[:, -1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    ckpt = {"family": FAMILY, "config": asdict(cfg), "state_dict": model.state_dict(), "vocab": corpus.vocab}
    ckpt["metrics"] = evaluate_model(model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_path)
    return ckpt["metrics"]


@torch.no_grad()
def evaluate_model(model: BiSpikeMLP, n_chars: int = 4096) -> dict:
    model.eval()
    x, y = evaluation_set(n_chars)
    logits = model(torch.from_numpy(x))
    metrics: dict = {"val_bpc": round(bits_per_char(logits, torch.from_numpy(y)), 4), "val_chars": int(len(y))}
    if model.cfg.spiking:
        metrics["firing_rate"] = {
            f"spike{i + 1}": round(float((m.last_spikes != 0).float().mean()), 4)
            for i, m in enumerate(model.spiking_sites())
        }
    return metrics


def parameter_count(cfg: dict) -> int:
    """State-dict elements of `BiSpikeMLP(cfg)`, from the config alone (checked before any model is built)."""
    v, c, e, h = cfg["vocab"], cfg["context"], cfg["emb_dim"], cfg["hidden"]
    alphas = 3 * cfg["steps"] if cfg["spiking"] else 0
    return v * e + (c * e * h + h) + (h * h + h) + (h * v + v) + alphas


CHECKPOINT_SPEC = CheckpointSpec(
    families=(FAMILY,),
    fields={"vocab": count(MAX_VOCAB), "context": count(MAX_CONTEXT), "emb_dim": count(MAX_WIDTH),
            "hidden": count(MAX_WIDTH), "steps": count(MAX_STEPS), "levels": count(MAX_LEVELS), "spiking": FLAG},
    vocab_field="vocab",
    parameter_count=parameter_count,
    build=lambda family, cfg: BiSpikeMLP(BiSpikeMLPConfig(**cfg)),
)


def load_checkpoint(path: Path) -> tuple[BiSpikeMLP, str]:
    """(model in eval mode, vocabulary) from a checked `bispike-mlp` checkpoint (models/checkpoint.py)."""
    model, ckpt = load_model(path, CHECKPOINT_SPEC)
    return model, ckpt["vocab"]


def evaluate(path: Path, *, n_chars: int = 4096) -> dict:
    model, _ = load_checkpoint(path)
    return evaluate_model(model, n_chars)


@torch.no_grad()
def generate(path: Path, prompt: str, n_tokens: int) -> str:
    """Greedy continuation of `prompt` (left-padded with spaces to the context length)."""
    model, vocab = load_checkpoint(path)
    index = {c: i for i, c in enumerate(vocab)}
    text = " " * model.cfg.context + prompt
    for _ in range(n_tokens):
        ids = torch.tensor([[index.get(c, index[" "]) for c in text[-model.cfg.context:]]])
        text += vocab[int(model(ids).argmax(-1))]
    return text[model.cfg.context:]
