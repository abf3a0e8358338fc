"""SpikeLM: a BERT-style spiking transformer encoder and a causal spiking decoder (REFERENCE.md §1).

Place in the picture (STYLE.md): the *models/* end — the float PyTorch definition that is trained here,
exported to NIR and compiled later. Our own code, following the equations of REFERENCE.md §1.1–1.2 (not a port
of `Xingrun-Xing/SpikeLM`).

    h = LN_emb(tok_emb[ids] + pos_emb)                       real; repeated T times → [T, B, L, D]
    block (post-LN, as BERT):
        q = W_q S_q(h);  k = R_K(W_k S_k(h));  v = R_V(W_v S_v(h))
        a = softmax(q kᵀ/√d_head + mask) v                   per head, per step
        h = LN_1(h + W_o S_o(a))
        h = LN_2(h + W_down S_down(GELU(W_up S_up(h))))
    out = mean over T of h                                   → MLM + classification heads, or LM head

S_* are elastic bi-spiking neurons with a membrane over T (`ElasticBiSpike`, §1.1: ternary for K = 1, α per
step from 2·mean|u| on the first training batch, then frozen; multiplicative reset; straight-through
surrogate). R_K, R_V are *stateless* re-spikes with their own α per step (SpikeLM's `clip_key[t]`,
`clip_value[t]`, §1.2), so k = α_K,t·s_K and v = α_V,t·s_V with s ∈ {-K..K}: q kᵀ and P v become signed
additions scaled once by α.

Real-valued ops (host side for the compiler, §1.2 table and §1.4 "Host"): token and position embeddings, all
LayerNorms, Q (not re-spiked), the q·kᵀ and P·v products (two activations, no static weights), the 1/√d_head
scale and the causal mask, softmax, GELU (exact erf), residual adds, the final mean over T, and every head.

ANN twin: `SpikeLMConfig(spiking=False)` replaces every spiking site (S_* and R_*) by the identity and runs
one step (T identical copies would average to the same value). Same parameters and state-dict keys except the
α's, so spiking vs ANN isolates the spikes.

Tasks, on the pydoc corpus of `models/data.py`: encoder — MLM on 15 % of characters (BERT's rate) and a
binary "is this window the original text or a character-shuffled copy?" classification; decoder — next
character (bits per character). The encoder trains on 16-character windows: at 64 characters a model this size
was still on the MLM unigram plateau (always predict a space) after 1000–1500 steps, its attention not yet
reading neighbours (measured, ANN twin and stock `nn.TransformerEncoder` alike), beyond the 3-minute training
budget; at 16 it leaves the plateau after ~500 steps.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bispike import ALPHA_FLOOR, ElasticBiSpike, _STEBiSpike, spike_levels
from .data import load_corpus, random_windows

FAMILY_ENCODER = "spikelm-enc"
FAMILY_DECODER = "spikelm-dec"
MLM_FRACTION = 0.15  # BERT's masking rate (SpikeLM pre-trains BERT's MLM, REFERENCE.md §1.3; rate not stated)
EVAL_CHARS = 8192  # characters per evaluation: 8192 // context fixed validation windows
EVAL_SEED = 1234  # masks and shuffles of the validation windows


@dataclass(frozen=True, slots=True)
class SpikeLMConfig:
    """Shape and switches of one SpikeLM model; stored as a dict in checkpoints, so fields are plain values."""

    vocab: int = 95  # characters of the corpus (the encoder adds one [MASK] id)
    context: int = 64  # characters per window
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ffn: int = 256  # 4 · d_model, as BERT
    steps: int = 4  # T, hard-coded 4 in SpikeLM (REFERENCE.md §1.1)
    levels: int = 1  # K: spikes in -K..K; 1 = SpikeLM's ternary spike
    learnable_alpha: bool = False  # SpikeLM freezes α after its first-batch init (§1.1)
    spiking: bool = True  # False = ANN twin
    causal: bool = False  # True for the decoder
    classes: int = 2  # encoder classification head

    @property
    def run_steps(self) -> int:
        return self.steps if self.spiking else 1


class StatelessBiSpike(nn.Module):
    """K/V re-spike: s_t = clip(round(x_t/α_t), -K, K), o_t = α_t·s_t, no membrane (REFERENCE.md §1.2).

    α has one scalar per step, initialised to 2·mean|x_t| on the first training forward and frozen, like
    `ElasticBiSpike`, and uses the same straight-through surrogate.
    """

    def __init__(self, steps: int, levels: int = 1, learnable_alpha: bool = False) -> None:
        super().__init__()
        self.steps = steps
        self.levels = levels
        self.alpha = nn.Parameter(torch.ones(steps), requires_grad=learnable_alpha)
        self.last_spikes: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.steps:
            raise ValueError(f"StatelessBiSpike expects {self.steps} steps on axis 0, got shape {tuple(x.shape)}")
        outputs, spikes = [], []
        for t in range(self.steps):
            if self.training and float(self.alpha.detach()[t]) == 1.0:
                with torch.no_grad():
                    self.alpha[t] = torch.clamp(2.0 * x[t].abs().mean(), min=ALPHA_FLOOR)
            alpha_t = torch.clamp(self.alpha[t], min=ALPHA_FLOOR)
            outputs.append(_STEBiSpike.apply(x[t], alpha_t, self.levels))
            spikes.append(spike_levels(x[t].detach(), alpha_t.detach(), self.levels))
        self.last_spikes = torch.stack(spikes)
        return torch.stack(outputs)


class SpikeLinear(nn.Module):
    """SpikeLM's `SpikeLinear`: an elastic bi-spiking neuron at the input of a linear layer, [T, ..., C]."""

    def __init__(self, d_in: int, d_out: int, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.spike: nn.Module = (
            ElasticBiSpike(cfg.steps, cfg.levels, cfg.learnable_alpha) if cfg.spiking else nn.Identity()
        )
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.spike(x))


def _respike(cfg: SpikeLMConfig) -> nn.Module:
    """A K or V re-spike site, or the identity in the ANN twin."""
    return StatelessBiSpike(cfg.steps, cfg.levels, cfg.learnable_alpha) if cfg.spiking else nn.Identity()


class SpikeSelfAttention(nn.Module):
    """Multi-head self-attention whose four projections take spikes and whose K, V are re-spiked (§1.2)."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.query, self.key, self.value = (
            SpikeLinear(d, d, cfg),
            SpikeLinear(d, d, cfg),
            SpikeLinear(d, d, cfg),
        )
        self.key_spike, self.value_spike = _respike(cfg), _respike(cfg)
        self.output = SpikeLinear(d, d, cfg)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, L, D] → [T, B, H, L, D/H]."""
        t, b, l, d = x.shape
        return x.reshape(t, b, l, self.cfg.heads, d // self.cfg.heads).transpose(2, 3)

    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (real), k = α_K·s_K and v = α_V·s_V (re-spiked), each [T, B, H, L, D/H]."""
        q = self.query(h)
        k = self.key_spike(self.key(h))
        v = self.value_spike(self.value(h))
        return self._heads(q), self._heads(k), self._heads(v)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q·kᵀ/√d_head plus the causal mask; with ternary k each entry is α_K·(sum of ±q), i.e. additions."""
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if self.cfg.causal:
            length = q.shape[-2]
            future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=q.device), diagonal=1)
            s = s.masked_fill(future, float("-inf"))
        return s

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(h)
        a = torch.softmax(self.scores(q, k), dim=-1) @ v  # P·v: additions of probabilities, scaled by α_V
        t, b, _, l, _ = a.shape
        return self.output(a.transpose(2, 3).reshape(t, b, l, self.cfg.d_model))


class SpikeFeedForward(nn.Module):
    """BERT's FFN with spikes at the input of both linears: GELU's real output is re-encoded by S_down."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.up = SpikeLinear(cfg.d_model, cfg.ffn, cfg)
        self.down = SpikeLinear(cfg.ffn, cfg.d_model, cfg)
        self.act = nn.GELU(approximate="none")  # exact erf GELU, hard-coded in SpikeLM (§1.2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(h)))


class SpikeBlock(nn.Module):
    """Post-LayerNorm block, as BERT: every spiking input Q/K/V and FFN-up sees a LayerNorm output."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.attn = SpikeSelfAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.ffn = SpikeFeedForward(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + self.attn(h))
        return self.norm2(h + self.ffn(h))


class SpikeLMBackbone(nn.Module):
    """Embeddings, T-fold repetition, blocks, mean over T: ids [B, L] → hidden [B, L, D]."""

    def __init__(self, cfg: SpikeLMConfig, n_ids: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(n_ids, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.emb_norm = nn.LayerNorm(cfg.d_model)
        self.blocks = nn.ModuleList(SpikeBlock(cfg) for _ in range(cfg.layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[-1] > self.cfg.context:
            raise ValueError(f"SpikeLM context is {self.cfg.context} characters, got {ids.shape[-1]}")
        pos = torch.arange(ids.shape[-1], device=ids.device)
        x = self.emb_norm(self.tok_emb(ids) + self.pos_emb(pos))
        h = x.unsqueeze(0).expand(self.cfg.run_steps, *x.shape)
        for block in self.blocks:
            h = block(h)
        return h.mean(0)


class SpikeLMEncoder(nn.Module):
    """Bidirectional encoder: an MLM head per position, a classification head on the mean over positions."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        if cfg.causal:
            raise ValueError("SpikeLMEncoder needs causal=False")
        self.cfg = cfg
        self.mask_id = cfg.vocab  # one id past the characters
        self.backbone = SpikeLMBackbone(cfg, cfg.vocab + 1)
        self.mlm_head = nn.Linear(cfg.d_model, cfg.vocab)
        self.cls_head = nn.Linear(cfg.d_model, cfg.classes)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, L] → (MLM logits [B, L, vocab], class logits [B, classes])."""
        h = self.backbone(ids)
        return self.mlm_head(h), self.cls_head(h.mean(1))


class SpikeLMDecoder(nn.Module):
    """Causal decoder (SpikeLM's generative variant; its code is unpublished, §1.3) with an LM head."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        if not cfg.causal:
            raise ValueError("SpikeLMDecoder needs causal=True")
        self.cfg = cfg
        self.backbone = SpikeLMBackbone(cfg, cfg.vocab)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] → next-character logits [B, L, vocab]."""
        return self.lm_head(self.backbone(ids))


SpikeLM = SpikeLMEncoder | SpikeLMDecoder


def spiking_sites(model: nn.Module) -> dict[str, ElasticBiSpike | StatelessBiSpike]:
    """Every spiking site by module name, e.g. `backbone.blocks.0.attn.key.spike`, `...attn.key_spike`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ElasticBiSpike | StatelessBiSpike)}


def firing_rates(model: nn.Module) -> dict[str, float]:
    """Fraction of non-zero spikes (over T × tokens × channels) per site, from the latest forward."""
    return {
        n: round(float((m.last_spikes != 0).float().mean()), 4)
        for n, m in spiking_sites(model).items()
        if m.last_spikes is not None
    }


# -------------------- tasks


def mask_characters(
    ids: np.ndarray, vocab: int, rng: np.random.Generator, *, corrupt: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of 15 % of positions: (inputs, targets), targets = -100 where not masked.

    With `corrupt` (training) a chosen position becomes [MASK] 80 %, a random character 10 %, itself 10 %
    (BERT's rule, which SpikeLM's MLM pre-training inherits); evaluation masks every chosen position.
    """
    chosen = rng.random(ids.shape) < MLM_FRACTION
    targets = np.where(chosen, ids, -100)
    inputs = ids.copy()
    if not corrupt:
        inputs[chosen] = vocab
        return inputs, targets
    roll = rng.random(ids.shape)
    inputs[chosen & (roll < 0.8)] = vocab
    randomised = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[randomised] = rng.integers(0, vocab, size=int(randomised.sum()))
    return inputs, targets


def shuffle_windows(ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the characters of every other window: (windows, labels), label 1 = "not the original text".

    Same characters, lost order: the classifier must read the sequence, not the character counts. A shuffle
    that reproduces its window (e.g. all spaces) keeps label 0, so labels always say what the model can see.
    """
    out = ids.copy()
    for i in range(1, len(out), 2):
        out[i] = rng.permutation(out[i])
    labels = (out != ids).any(axis=1).astype(np.int64)
    return out, labels


def validation_windows(context: int, n_windows: int) -> np.ndarray:
    """Fixed evaluation windows: consecutive, non-overlapping `context + 1` ids from the val split's start."""
    ids = load_corpus().val_ids
    stride = context + 1
    return np.stack([ids[i * stride : (i + 1) * stride] for i in range(n_windows)])


def encoder_batch(
    windows: np.ndarray, vocab: int, rng: np.random.Generator, *, corrupt: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward's inputs: the first half for MLM, the second (unmasked) half for classification.

    For N windows returns (ids [N, L], MLM targets [N/2, L], class labels [N/2]); the two tasks are kept
    apart because masking would hide shuffled characters and shuffling would corrupt MLM targets.
    """
    half = len(windows) // 2
    mlm_in, mlm_targets = mask_characters(windows[:half], vocab, rng, corrupt=corrupt)
    cls_in, labels = shuffle_windows(windows[half:], rng)
    ids = torch.from_numpy(np.concatenate([mlm_in, cls_in]))
    return ids, torch.from_numpy(mlm_targets), torch.from_numpy(labels)


def encoder_loss(model: SpikeLMEncoder, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    ids, mlm_targets, labels = batch
    mlm_logits, cls_logits = model(ids)
    half = len(mlm_targets)
    mlm = nn.functional.cross_entropy(mlm_logits[:half].flatten(0, 1), mlm_targets.flatten(), ignore_index=-100)
    return mlm + nn.functional.cross_entropy(cls_logits[half:], labels)


def decoder_loss(model: SpikeLMDecoder, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    (windows,) = batch
    logits = model(windows[:, :-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


# -------------------- evaluation


@torch.no_grad()
def evaluate_model(model: SpikeLM, n_chars: int = EVAL_CHARS) -> dict:
    """Deterministic metrics on fixed validation windows: BPC (decoder) or MLM + classification accuracy."""
    model.eval()
    cfg = model.cfg
    windows = validation_windows(cfg.context, n_chars // cfg.context)
    if isinstance(model, SpikeLMDecoder):
        batch = torch.from_numpy(windows)
        loss = decoder_loss(model, (batch,))
        metrics: dict = {
            "val_bpc": round(float(loss) / math.log(2), 4),
            "val_chars": int(batch[:, 1:].numel()),
        }
    else:
        rng = np.random.default_rng(EVAL_SEED)
        both = np.concatenate([windows[:, :-1], windows[:, :-1]])  # every window once per task
        ids, mlm_targets, labels = encoder_batch(both, cfg.vocab, rng, corrupt=False)
        mlm_logits, cls_logits = model(ids)
        half = len(mlm_targets)
        chosen = mlm_targets != -100
        mlm_hits = (mlm_logits[:half].argmax(-1) == mlm_targets)[chosen]
        cls_hits = cls_logits[half:].argmax(-1) == labels
        metrics = {
            "mlm_accuracy": round(float(mlm_hits.float().mean()), 4),
            "mlm_masked_chars": int(chosen.sum()),
            "cls_accuracy": round(float(cls_hits.float().mean()), 4),
            "cls_windows": int(len(labels)),
        }
    if cfg.spiking:
        metrics["firing_rate"] = firing_rates(model)
    return metrics


# -------------------- training


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Per-task training choices (ours, tuned by short sweeps on one CPU thread; SpikeLM's bert-base used AdamW
    lr 2e-4 and batch 8 × 64, REFERENCE.md §1.3)."""

    context: int  # characters per window
    batch_windows: int  # windows per step (encoder: half MLM, half classification)
    lr: float  # AdamW peak
    warmup_steps: int = 50


# Both see 1024 characters per step (~0.15–0.45 s/step for the spiking model on one shared CPU thread).
ENCODER_TRAINING = TrainSettings(context=16, batch_windows=64, lr=3e-3)  # 1e-2 stayed on the MLM plateau
DECODER_TRAINING = TrainSettings(context=64, batch_windows=16, lr=1e-2)  # best of 2e-3, 5e-3, 1e-2, 2e-2


def _train(
    model: SpikeLM,
    settings: TrainSettings,
    next_batch: Callable[[], tuple[torch.Tensor, ...]],
    loss_fn: Callable[[SpikeLM, tuple[torch.Tensor, ...]], torch.Tensor],
    steps: int,
    progress: bool,
) -> None:
    """AdamW, linear warm-up, cosine decay; the α's are initialised by the first forward, then frozen."""
    from tqdm import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    warmup = settings.warmup_steps

    def lr_factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    model.train()
    first_batch = next_batch()
    if model.cfg.learnable_alpha:
        # The α-initialising forward writes α in place, which autograd rejects once α requires grad; a no-grad
        # forward on the same first batch sets the same α values beforehand.
        with torch.no_grad():
            loss_fn(model, first_batch)
    bar = tqdm(range(steps), desc=f"train {_family(model)}", disable=not progress)
    for i in bar:
        loss = loss_fn(model, first_batch if i == 0 else next_batch())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")


def _family(model: nn.Module) -> str:
    return FAMILY_DECODER if isinstance(model, SpikeLMDecoder) else FAMILY_ENCODER


def _save(model: SpikeLM, out_path: Path, vocab: str, train: dict) -> dict:
    ckpt = {
        "family": _family(model),
        "config": asdict(model.cfg),
        "state_dict": model.state_dict(),
        "vocab": vocab,
        "metrics": evaluate_model(model),
        "train": train,
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_path)
    return ckpt["metrics"]


def _train_record(settings: TrainSettings, steps: int, seed: int, started_s: float) -> dict:
    """What the checkpoint keeps about its training (the model card is written from it)."""
    return {**asdict(settings), "steps": steps, "seed": seed, "wall_s": round(time.time() - started_s, 1)}


def _train_family(out_path: Path, *, causal: bool, steps: int, seed: int, spiking: bool, progress: bool,
                  learnable_alpha: bool) -> dict:
    """The encoder and decoder share everything but their settings, model class, batches and loss."""
    started_s = time.time()
    settings = DECODER_TRAINING if causal else ENCODER_TRAINING
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = load_corpus()
    cfg = SpikeLMConfig(vocab=corpus.vocab_size, context=settings.context, spiking=spiking, causal=causal,
                        learnable_alpha=learnable_alpha)
    model: SpikeLM = SpikeLMDecoder(cfg) if causal else SpikeLMEncoder(cfg)

    def next_batch() -> tuple[torch.Tensor, ...]:
        if causal:
            return (torch.from_numpy(random_windows(corpus.train_ids, settings.context, settings.batch_windows, rng)),)
        windows = random_windows(corpus.train_ids, settings.context - 1, settings.batch_windows, rng)
        return encoder_batch(windows, corpus.vocab_size, rng, corrupt=True)

    loss = decoder_loss if causal else encoder_loss
    _train(model, settings, next_batch, loss, steps, progress)  # type: ignore[arg-type]
    return _save(model, out_path, corpus.vocab, _train_record(settings, steps, seed, started_s))


def train_encoder(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
                  learnable_alpha: bool = False) -> dict:
    """Train the encoder on MLM + shuffle classification over pydoc windows; save; return its metrics."""
    return _train_family(out_path, causal=False, steps=steps, seed=seed, spiking=spiking, progress=progress,
                         learnable_alpha=learnable_alpha)


def train_decoder(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
                  learnable_alpha: bool = False) -> dict:
    """Train the causal decoder on next-character prediction over pydoc windows; save; return its metrics."""
    return _train_family(out_path, causal=True, steps=steps, seed=seed, spiking=spiking, progress=progress,
                         learnable_alpha=learnable_alpha)


# -------------------- checkpoints


def load_checkpoint(path: Path) -> tuple[SpikeLM, str]:
    """(model in eval mode, vocabulary) from a `spikelm-enc` or `spikelm-dec` checkpoint."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    family = ckpt.get("family")
    if family not in (FAMILY_ENCODER, FAMILY_DECODER):
        raise ValueError(f"{path}: checkpoint family is {family!r}, expected {FAMILY_ENCODER!r} or {FAMILY_DECODER!r}")
    cfg = SpikeLMConfig(**ckpt["config"])
    model: SpikeLM = SpikeLMDecoder(cfg) if family == FAMILY_DECODER else SpikeLMEncoder(cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt["vocab"]


def evaluate(path: Path, *, n_chars: int = EVAL_CHARS) -> dict:
    """Metrics of a checkpoint on the fixed validation windows (the numbers its model card quotes)."""
    model, _ = load_checkpoint(path)
    return evaluate_model(model, n_chars)


@torch.no_grad()
def generate(path: Path, prompt: str, n_tokens: int) -> str:
    """Greedy continuation of `prompt` by a decoder checkpoint (prompt included); characters outside the
    vocabulary become spaces, and only the last `context` characters are seen."""
    model, vocab = load_checkpoint(path)
    if not isinstance(model, SpikeLMDecoder):
        raise ValueError(f"{path}: generate needs a {FAMILY_DECODER!r} checkpoint, got {FAMILY_ENCODER!r}")
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index.get(c, index.get(" ", 0)) for c in (prompt or "\n")]
    for _ in range(n_tokens):
        window = torch.tensor([ids[-model.cfg.context :]])
        ids.append(int(model(window)[0, -1].argmax()))
    text = "".join(vocab[i] for i in ids)
    return text if prompt else text[1:]


def card_metric(card_text: str, name: str) -> float:
    """A metric from a model card line `- **name**: value` (what the reproduction test compares with)."""
    match = re.search(rf"\*\*{re.escape(name)}\*\*: ([0-9.]+)", card_text)
    if match is None:
        raise ValueError(f"model card has no '**{name}**: value' line")
    return float(match.group(1))
