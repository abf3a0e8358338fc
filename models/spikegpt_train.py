"""Training, evaluation and generation of the character SpikeGPT (wired to `spikestack train spikegpt`,
`spikestack generate`, and `models/registry.py`, which finds these functions by name on `spikegpt`).

Place in the picture (STYLE.md): the *models/* end — trains the float `SpikeGPT` of `spikegpt_network` on the
pydoc corpus of `models/data.py` and writes the checkpoints under models/checkpoints/ that export reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from spikestack.models.data import load_corpus, random_windows
from spikestack.models.threads import one_torch_thread
from torch import Tensor, nn

from spikestack.errors import SpikestackError

from .checkpoint import (
    FLAG,
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
from .distill import DistillWeights, kd_logits_loss
from .spikegpt_load import CheckpointFormatError
from .spikegpt_network import FFN_EXPANSION, SpikeGPT, SpikeGPTConfig

TRAIN_BATCH = 32  # windows per step: the 2 x 64 config of §3.6 (upstream uses 12, §3.2)
# Peak lr 3e-3, not upstream's 6e-4 (§3.2): at 2 x 64 and a few hundred steps 6e-4 is far from converged
# (measured, 250 steps, seed 0: val 3.97 BPC at 6e-4 vs 3.07 at 3e-3). Decay shape and end value are §3.2's.
LR_INITIAL, LR_FINAL = 3e-3, 1e-5  # Adam, cosine decay
ADAM_BETAS = (0.9, 0.99)  # §3.2
GRAD_CLIP = 1.0  # global norm (§3.2)
CURVE_EVERY = 200  # steps between validation points of the stored gap-vs-steps curve (~1 s each, one thread)


def _bits_per_char(logits: Tensor, targets: Tensor) -> float:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item() / math.log(2)


def evaluate_model(model: SpikeGPT, val_ids: np.ndarray, *, n_chars: int = 20000) -> dict:
    """Validation bits per character and LIF firing rates on consecutive windows from the start of `val_ids`.

    Deterministic: windows of ctx_len + 1 ids starting every ctx_len characters, covering the first n_chars
    targets; the state resets per window, as in training. Firing rate = mean spikes per neuron per token.
    """
    ctx = model.cfg.ctx_len
    n_windows = max(1, min(n_chars, len(val_ids) - 1) // ctx)
    windows = torch.from_numpy(np.stack([val_ids[i * ctx : i * ctx + ctx + 1] for i in range(n_windows)]))
    spike_sums: dict[str, float] = {}

    def record(name: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            spike_sums[name] = output.mean().item()

        return hook

    handles = []
    for layer_id, block in enumerate(model.blocks):
        handles.append(block.lif1.register_forward_hook(record(f"blocks.{layer_id}.lif1")))
        handles.append(block.lif2.register_forward_hook(record(f"blocks.{layer_id}.lif2")))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(windows[:, :-1])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    rates = spike_sums if model.cfg.spiking else {}
    val_bpc = _bits_per_char(logits, windows[:, 1:])
    return {"val_bpc": val_bpc, "val_chars": n_windows * ctx, "firing_rates": rates}


def train(
    out_path: Path,
    *,
    steps: int,
    seed: int = 0,
    spiking: bool = True,
    progress: bool = True,
    lr: float = LR_INITIAL,
    eval_chars: int = 20000,
    curve_every: int = CURVE_EVERY,
    teacher: Path | None = None,
    distill_weights: DistillWeights | None = None,
    width: int = 64,
) -> dict:
    """Train the 2 x 64 character SpikeGPT (or its ANN twin) on `load_corpus()` and save a checkpoint dict.

    Adam as §3.2 (betas 0.9/0.99, cosine decay to 1e-5, clip 1.0) but peak lr 3e-3 (see LR_INITIAL); batch 32
    windows of 64 characters (§3.6); `seed` drives both the init and the window sampler. The stored (and
    returned) metrics: `evaluate_model` on the first `eval_chars` validation characters, plus training facts and
    `val_bpc_curve`, [step, val BPC] every `curve_every` steps (the card's gap-vs-steps table; evaluation uses no
    random numbers, so recording it leaves the trained weights unchanged).

    `teacher` (the ANN twin's checkpoint, same width and depth) adds logits distillation, τ²·KL(teacher ‖ student)
    of the next-character distribution (models/distill.py; SpikeGPT itself trains without a teacher, so this is
    SpikeLM's lever tried on it), weighted by `distill_weights` (its `hidden` is unused: the spiking residual
    stream carries spikes, the twin's real values). `width`: the config's n_embd (FFN 4 · width).
    """
    if steps < 1:
        raise SpikestackError(f"train spikegpt: steps must be >= 1, got {steps}")
    with one_torch_thread():
        return _train(
            Path(out_path),
            steps=steps,
            seed=seed,
            spiking=spiking,
            progress=progress,
            lr=lr,
            eval_chars=eval_chars,
            curve_every=curve_every,
            teacher=teacher,
            distill_weights=distill_weights,
            width=width,
        )


def _load_teacher(path: Path, cfg: SpikeGPTConfig) -> SpikeGPT:
    """The ANN twin at `path`, checked to fit a student of `cfg` (same vocabulary, width, depth, context)."""
    twin, _ = load_checkpoint(path)
    if twin.cfg.spiking:
        raise CheckpointFormatError(f"{path}: teacher must be the ANN twin (config 'spiking' = False), got True")
    for field in ("vocab_size", "n_layer", "n_embd", "ctx_len"):
        have, want = getattr(twin.cfg, field), getattr(cfg, field)
        if have != want:
            raise CheckpointFormatError(f"{path}: teacher config {field!r} = {have}, the student's is {want}")
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def _train(
    out_path: Path, *, steps: int, seed: int, spiking: bool, progress: bool, lr: float, eval_chars: int,
    curve_every: int, teacher: Path | None, distill_weights: DistillWeights | None, width: int
) -> dict:
    from tqdm import tqdm

    corpus = load_corpus()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = SpikeGPTConfig(vocab_size=corpus.vocab_size, spiking=spiking, n_embd=width)
    model = SpikeGPT(cfg)
    twin = None if teacher is None else _load_teacher(Path(teacher), cfg)
    weights = distill_weights or DistillWeights()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS)
    started = time.perf_counter()
    bar = tqdm(range(steps), desc="train spikegpt", disable=not progress, unit="step")
    train_bpc = float("nan")
    curve: list[list[float]] = []
    for step in bar:
        lr_now = LR_FINAL + 0.5 * (lr - LR_FINAL) * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        batch = torch.from_numpy(random_windows(corpus.train_ids, cfg.ctx_len, TRAIN_BATCH, rng))
        logits = model(batch[:, :-1])
        task = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        loss = task
        if twin is not None:
            with torch.no_grad():
                teacher_logits = twin(batch[:, :-1])
            loss = task + weights.logits * kd_logits_loss(logits, teacher_logits, weights.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        train_bpc = task.item() / math.log(2)
        bar.set_postfix(bpc=f"{train_bpc:.3f}", lr=f"{lr_now:.1e}")
        if curve_every and (step + 1) % curve_every == 0 and step + 1 < steps:
            point = evaluate_model(model, corpus.val_ids, n_chars=eval_chars)["val_bpc"]
            curve.append([step + 1, round(point, 4)])
    train_wall_s = time.perf_counter() - started  # evaluations for the curve included
    final = evaluate_model(model, corpus.val_ids, n_chars=eval_chars)
    metrics = {
        "steps": steps,
        "seed": seed,
        "lr_peak": lr,
        "train_bpc_last_batch": train_bpc,
        "train_wall_s": train_wall_s,
        **final,
        "val_bpc_curve": [*curve, [steps, round(final["val_bpc"], 4)]],
    }
    if twin is not None:  # only then, so the default recipe's checkpoint keeps its exact contents
        metrics["teacher"] = Path(teacher).name
        metrics["distill"] = {"temperature": weights.temperature, "logits": weights.logits}  # no hidden term
    out_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "family": "spikegpt",
        "config": asdict(cfg),
        "state_dict": model.state_dict(),
        "vocab": corpus.vocab,
        "metrics": metrics,
    }
    torch.save(checkpoint, out_path)
    return metrics


def parameter_count(cfg: dict) -> int:
    """State-dict elements of `SpikeGPT(cfg)`, from the config alone (checked before any model is built)."""
    v, c, layers = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"]
    time_mix = 4 * c * c + 5 * c  # key, value, receptance, output; decay, bonus and three mixes
    channel_mix = 2 * FFN_EXPANSION * c * c + c * c + 2 * c  # key, value, receptance; two mixes
    block = time_mix + channel_mix + 2 * 2 * c  # + ln1, ln2
    return v * c + layers * block + 2 * c + 2 * c + c * v  # emb, blocks, ln0 (block 0 only), ln_out, head


CHECKPOINT_SPEC = CheckpointSpec(
    families=("spikegpt",),
    fields={"vocab_size": count(MAX_VOCAB), "n_layer": count(MAX_LAYERS), "n_embd": count(MAX_WIDTH),
            "ctx_len": count(MAX_CONTEXT), "binary_embedding": FLAG, "spiking": FLAG,
            "v_threshold": real(1e-6, 1e6), "tau": real(1.0, 1e6)},  # tau < 1 token would overshoot the input
    vocab_field="vocab_size",
    parameter_count=parameter_count,
    build=lambda family, cfg: _for_loading(SpikeGPTConfig(**cfg)),
)


def _for_loading(cfg: SpikeGPTConfig) -> SpikeGPT:
    """A model whose every parameter `load_model` overwrites (it checks the state dict's keys and shapes first,
    and SpikeGPT has no buffers), so the random init is skipped: 3.3 s at the 216M shape. On the meta device
    (the reference for the checks) it is the same model."""
    device = torch.empty(0).device  # the caller's default device: meta for the reference
    with torch.device("meta"):
        model = SpikeGPT(cfg)
    return model if device.type == "meta" else model.to_empty(device=device)


def load_checkpoint(path: Path) -> tuple[SpikeGPT, str | None]:
    """A checkpoint written by `train`, checked by models/checkpoint.py -> (model in eval mode, vocabulary string;
    None for a checkpoint whose tokenizer is not a character one)."""
    model, checkpoint = load_model(path, CHECKPOINT_SPEC)
    return model, checkpoint_tokenizer(checkpoint).chars


def evaluate(path: Path, *, n_chars: int = 20000) -> dict:
    """Validation BPC and firing rates of a checkpoint on the first n_chars of the validation split."""
    model, vocab = load_checkpoint(path)
    corpus = load_corpus()
    if vocab != corpus.vocab:
        raise CheckpointFormatError(f"{path}: vocabulary differs from load_corpus() (Python version?)")
    with one_torch_thread():
        return evaluate_model(model, corpus.val_ids, n_chars=n_chars)


def generate(path: Path, prompt: str, n_tokens: int) -> str:
    """`prompt` and its greedy continuation by `n_tokens` characters, token by token in the recurrent form (every
    family's `generate` returns the prompt too, as the CLI prints it). The checkpoint's tokenizer encodes the
    prompt (a piece it cannot encode is one error line) and decodes the continuation."""
    from .tokenizer import continuation

    model, checkpoint = load_model(path, CHECKPOINT_SPEC)
    tokenizer = checkpoint_tokenizer(checkpoint)
    prompt_ids = tokenizer.encode(prompt, "prompt")
    ids = prompt_ids or [tokenizer.encode(" ", "prompt")[0] if tokenizer.chars and " " in tokenizer.chars else 0]
    state = model.initial_state(1)
    out: list[int] = []
    with torch.no_grad(), one_torch_thread():
        for token in ids:
            logits, state = model.step(torch.tensor([token]), state)
        for _ in range(n_tokens):
            token = int(logits[0].argmax())
            out.append(token)
            logits, state = model.step(torch.tensor([token]), state)
    return continuation(tokenizer, prompt, prompt_ids, out)
