"""Training, evaluation and generation of the SpikeLM encoder and decoder (wired to `spikestack train
spikelm-enc|spikelm-dec` / `spikestack generate`, and `models/registry.py`, which finds these functions by name
on `spikelm`). Place in the picture (STYLE.md): the *models/* end — trains the networks of `spikelm_network` on
the tasks of `spikelm_tasks` and writes the checkpoints under models/checkpoints/ that export reads.

The encoder trains on 16-character windows: at 64 characters a model this size was still on the MLM unigram
plateau (always predict a space) after 1000–1500 steps, its attention not yet reading neighbours (measured, ANN
twin and stock `nn.TransformerEncoder` alike), beyond the 3-minute training budget; at 16 it leaves the plateau
after ~500 steps."""

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

from .bispike import ALPHA_FLOOR
from .checkpoint import (
    FLAG,
    MAX_CONTEXT,
    MAX_LAYERS,
    MAX_LEVELS,
    MAX_STEPS,
    MAX_VOCAB,
    MAX_WIDTH,
    CheckpointError,
    CheckpointSpec,
    checkpoint_tokenizer,
    count,
    load_model,
    read_checkpoint,
    real,
)
from .data import load_corpus, random_windows
from .distill import DistillWeights
from .spikelm_network import SpikeLM, SpikeLMConfig, SpikeLMDecoder, SpikeLMEncoder, firing_rates, spiking_sites
from .spikelm_tasks import (
    decoder_distill_terms,
    decoder_loss,
    encoder_batch,
    encoder_distill_terms,
    encoder_loss,
    validation_windows,
)
from .threads import one_torch_thread

FAMILY_ENCODER = "spikelm-enc"
FAMILY_DECODER = "spikelm-dec"
EVAL_CHARS = 8192  # characters per evaluation: 8192 // context fixed validation windows
EVAL_SEED = 1234  # masks and shuffles of the validation windows
CURVE_EVERY = 250  # steps between points of the stored validation curve (one evaluation each, ~1-3 s)
CURVE_METRICS = {True: ("val_bpc",), False: ("mlm_accuracy", "cls_accuracy")}  # by `causal`


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


def _alpha_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [site.alpha for site in spiking_sites(model).values() if site.alpha.requires_grad]


def _scale_alpha_gradients(model: nn.Module) -> None:
    """LSQ's gradient scale g = 1/√(N·K) on each α_t, N = elements that α_t quantised in this forward, K = levels
    (SpikeLM `spiking.py`'s `grad_scale` with Qp = K; Esser et al., ICLR 2020). Without it α's gradient is a sum
    over ~10⁵ elements and dominates the global gradient-norm clip of every other parameter."""
    for site in spiking_sites(model).values():
        if site.alpha.grad is not None and site.last_spikes is not None:
            per_step = site.last_spikes[0].numel()
            site.alpha.grad.mul_(1.0 / math.sqrt(per_step * site.levels))


def _train(
    model: SpikeLM,
    settings: TrainSettings,
    next_batch: Callable[[], tuple[torch.Tensor, ...]],
    loss_fn: Callable[[SpikeLM, tuple[torch.Tensor, ...]], torch.Tensor],
    steps: int,
    progress: bool,
    after_step: Callable[[int], None] | None = None,
) -> list[float]:
    """AdamW, linear warm-up, cosine decay; the α's are initialised by the first forward, then frozen, or with
    `learnable_alpha` trained (LSQ-scaled gradient, no weight decay, kept at or above the 1e-5 floor the forward
    applies, so the stored α is the one used). `after_step(n)` runs after the n-th update (the validation curve).
    Returns the loss of every step."""
    from tqdm import tqdm

    alphas = _alpha_parameters(model)
    alpha_ids = {id(a) for a in alphas}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in alpha_ids]
    params = others + alphas
    # α is a step size, not a weight: decaying it towards 0 would only raise the firing rate
    opt = torch.optim.AdamW([{"params": others}, {"params": alphas, "weight_decay": 0.0}], lr=settings.lr,
                            weight_decay=0.01)
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
    losses = []
    for i in bar:
        loss = loss_fn(model, first_batch if i == 0 else next_batch())
        opt.zero_grad()
        loss.backward()
        _scale_alpha_gradients(model)
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for alpha in alphas:
                alpha.clamp_(min=ALPHA_FLOOR)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if after_step is not None:
            after_step(i + 1)
    return losses


def _family(model: nn.Module) -> str:
    return FAMILY_DECODER if isinstance(model, SpikeLMDecoder) else FAMILY_ENCODER


def _config_fields(cfg: SpikeLMConfig) -> dict:
    """The config as stored: the BERT-only fields only where they differ from the character models' defaults, so
    a trained checkpoint is read by CHECKPOINT_SPEC (decoder included) and not by BERT_CHECKPOINT_SPEC."""
    fields = asdict(cfg)
    if not cfg.bert_heads and cfg.layer_norm_eps == SpikeLMConfig().layer_norm_eps:
        del fields["bert_heads"], fields["layer_norm_eps"]
    return fields


def _save(model: SpikeLM, out_path: Path, vocab: str, train: dict, curve: list[list[float]]) -> dict:
    metrics = evaluate_model(model)  # then [step, metric...] during training and at the end:
    metrics["curve"] = [*curve, [train["steps"], *(metrics[n] for n in CURVE_METRICS[model.cfg.causal])]]
    ckpt = {"family": _family(model), "config": _config_fields(model.cfg), "state_dict": model.state_dict(),
            "vocab": vocab, "metrics": metrics, "train": train}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_path)
    return ckpt["metrics"]


def _train_record(settings: TrainSettings, steps: int, seed: int, started_s: float) -> dict:
    """What the checkpoint keeps about its training (the model card is written from it)."""
    return {**asdict(settings), "steps": steps, "seed": seed, "wall_s": round(time.time() - started_s, 1)}


def load_teacher(path: Path, student: SpikeLM) -> SpikeLM:
    """The float ANN twin at `path` (read through models/checkpoint.py), checked to fit `student`: same family,
    not spiking, same vocabulary, context, width and depth (distillation matches logits and every hidden state)."""
    teacher, _ = load_checkpoint(path)
    if _family(teacher) != _family(student):
        raise CheckpointError(f"{path}: teacher is a {_family(teacher)!r} checkpoint, the student a "
                              f"{_family(student)!r}")
    if teacher.cfg.spiking:
        raise CheckpointError(f"{path}: teacher must be the ANN twin (config 'spiking' = False), got spiking = True")
    for field in ("vocab", "context", "d_model", "layers"):
        have, want = getattr(teacher.cfg, field), getattr(student.cfg, field)
        if have != want:
            raise CheckpointError(f"{path}: teacher config {field!r} = {have}, the student's is {want}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _total_of(terms: Callable, teacher: SpikeLM, weights: DistillWeights) -> Callable:
    """A `loss_fn(model, batch)` for `_train`: the task loss plus distillation from `teacher`."""
    return lambda model, batch: terms(model, teacher, batch, weights)["total"]


def _train_family(out_path: Path, *, causal: bool, steps: int, seed: int, spiking: bool, progress: bool,
                  learnable_alpha: bool, teacher: Path | None = None, **options) -> dict:
    """The encoder and decoder share everything but their settings, model class, batches and loss; `options`
    (decoder): `time_steps` T and `levels` K of the config, `distill_weights` (default: the learner's)."""
    started_s = time.time()
    settings = DECODER_TRAINING if causal else ENCODER_TRAINING
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = load_corpus()
    cfg = SpikeLMConfig(vocab=corpus.vocab_size, context=settings.context, spiking=spiking, causal=causal,
                        learnable_alpha=learnable_alpha, steps=options.get("time_steps", 4),
                        levels=options.get("levels", 1))
    model: SpikeLM = SpikeLMDecoder(cfg) if causal else SpikeLMEncoder(cfg)

    def next_batch() -> tuple[torch.Tensor, ...]:
        if causal:
            return (torch.from_numpy(random_windows(corpus.train_ids, settings.context, settings.batch_windows, rng)),)
        windows = random_windows(corpus.train_ids, settings.context - 1, settings.batch_windows, rng)
        return encoder_batch(windows, corpus.vocab_size, rng, corrupt=True)

    loss = decoder_loss if causal else encoder_loss
    distill: dict = {}
    if teacher is not None:
        twin, weights = load_teacher(Path(teacher), model), options.get("distill_weights") or DistillWeights()
        terms = decoder_distill_terms if causal else encoder_distill_terms
        loss = _total_of(terms, twin, weights)
        distill = {"teacher": Path(teacher).name, "distill": asdict(weights)}
    curve: list[list[float]] = []

    def record_curve(done: int) -> None:
        # evaluation draws no training random numbers and α is already initialised: the weights do not change
        if done % CURVE_EVERY == 0 and done < steps:
            metrics = evaluate_model(model)
            curve.append([done, *(metrics[name] for name in CURVE_METRICS[causal])])
            model.train()

    with one_torch_thread():  # the cards' one-thread timing; bit-reproducible (models/threads.py)
        _train(model, settings, next_batch, loss, steps, progress, record_curve)  # type: ignore[arg-type]
        record = {**_train_record(settings, steps, seed, started_s), **distill}
        return _save(model, out_path, corpus.vocab, record, curve)


def train_encoder(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
                  learnable_alpha: bool = False, teacher: Path | None = None) -> dict:
    """Train the encoder on MLM + shuffle classification over pydoc windows; save; return its metrics. With
    `teacher` (the ANN twin's checkpoint) the loss adds distillation from it (models/distill.py)."""
    return _train_family(out_path, causal=False, steps=steps, seed=seed, spiking=spiking, progress=progress,
                         learnable_alpha=learnable_alpha, teacher=teacher)


def train_decoder(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
                  learnable_alpha: bool = False, teacher: Path | None = None, time_steps: int = 4, levels: int = 1,
                  distill_weights: DistillWeights | None = None) -> dict:
    """Train the causal decoder on next-character prediction over pydoc windows; save; return its metrics. With
    `teacher` (the ANN twin's checkpoint) the loss adds distillation from it (models/distill.py), weighted by
    `distill_weights` (default: the learner's). `time_steps` T and `levels` K: the bi-spike's resolution."""
    return _train_family(out_path, causal=True, steps=steps, seed=seed, spiking=spiking, progress=progress,
                         learnable_alpha=learnable_alpha, teacher=teacher, time_steps=time_steps, levels=levels,
                         distill_weights=distill_weights)


# -------------------- checkpoints


def parameter_count(cfg: dict) -> int:
    """State-dict elements of the encoder or decoder of `cfg`, from the config alone (checked before any model
    is built): embeddings, blocks, heads; spiking sites add one α per step (6 SpikeLinears + K and V re-spikes)."""
    v, d, ffn, steps = cfg["vocab"], cfg["d_model"], cfg["ffn"], cfg["steps"]
    alphas = 8 * steps if cfg["spiking"] else 0
    block = 4 * (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 2 * 2 * d + alphas
    n_ids = v if cfg["causal"] else v + 1  # the encoder's [MASK] id
    backbone = n_ids * d + cfg["context"] * d + 2 * d + cfg["layers"] * block
    heads = d * v + v if cfg["causal"] else (d * v + v) + (d * cfg["classes"] + cfg["classes"])
    if cfg.get("bert_heads"):
        heads += (d * d + d + 2 * d) + (d * d + d)  # MLM transform (dense, LayerNorm) and pooler
    return backbone + heads


def _config_rules(family: str, cfg: dict) -> str | None:
    """Shape rules the SpikeLM constructors do not check themselves (a wrong split fails only in forward)."""
    if cfg["d_model"] % cfg["heads"]:
        return f"field 'd_model' = {cfg['d_model']} is not divisible by field 'heads' = {cfg['heads']}"
    if cfg["causal"] != (family == FAMILY_DECODER):
        return f"field 'causal' = {cfg['causal']} does not match family {family!r}"
    return None


def _build(family: str, cfg: dict) -> SpikeLM:
    config = SpikeLMConfig(**cfg)
    return SpikeLMDecoder(config) if family == FAMILY_DECODER else SpikeLMEncoder(config)


CHECKPOINT_SPEC = CheckpointSpec(
    families=(FAMILY_ENCODER, FAMILY_DECODER),
    fields={"vocab": count(MAX_VOCAB), "context": count(MAX_CONTEXT), "d_model": count(MAX_WIDTH),
            "heads": count(MAX_WIDTH), "layers": count(MAX_LAYERS), "ffn": count(MAX_WIDTH), "steps": count(MAX_STEPS),
            "levels": count(MAX_LEVELS), "learnable_alpha": FLAG, "spiking": FLAG, "causal": FLAG,
            "classes": count(MAX_WIDTH)},
    vocab_field="vocab",
    parameter_count=parameter_count,
    build=_build,
    rules=_config_rules,
)
# A checkpoint converted from SpikeLM's BERT layout (models/published/spikelm_bert.py) carries the config fields
# added for BERT; the shipped ones predate them. Each file is checked against exactly its own field set.
BERT_CHECKPOINT_SPEC = CheckpointSpec(
    families=(FAMILY_ENCODER,),
    fields={**CHECKPOINT_SPEC.fields, "layer_norm_eps": real(1e-15, 1.0), "bert_heads": FLAG},
    vocab_field="vocab",
    parameter_count=parameter_count,
    build=_build,
    rules=_config_rules,
)


def checkpoint_spec(path) -> CheckpointSpec:
    """BERT_CHECKPOINT_SPEC for a config with the BERT fields, else CHECKPOINT_SPEC (`path` as `load_model` takes
    it: a file, read memory-mapped, or an in-memory converted checkpoint)."""
    config = read_checkpoint(path).get("config")
    return BERT_CHECKPOINT_SPEC if isinstance(config, dict) and "bert_heads" in config else CHECKPOINT_SPEC


def load_checkpoint(path: Path) -> tuple[SpikeLM, str | None]:
    """(model in eval mode, vocabulary string; None for a tokenizer that is not a character one) from a
    `spikelm-enc` or `spikelm-dec` checkpoint checked by models/checkpoint.py."""
    model, ckpt = load_model(path, checkpoint_spec(path))
    return model, checkpoint_tokenizer(ckpt).chars


def evaluate(path: Path, *, n_chars: int = EVAL_CHARS) -> dict:
    """Metrics of a checkpoint on the fixed validation windows (the numbers its model card quotes)."""
    model, _ = load_checkpoint(path)
    return evaluate_model(model, n_chars)


@torch.no_grad()
def generate(path: Path, prompt: str, n_tokens: int) -> str:
    """Greedy continuation of `prompt` by a decoder checkpoint (prompt included), encoded and decoded with the
    checkpoint's tokenizer (a piece it cannot encode is one error line); only the last `context` tokens are seen.
    An empty prompt starts from a newline where the vocabulary has one (id 0 otherwise)."""
    from .tokenizer import continuation

    model, ckpt = load_model(path, checkpoint_spec(path))
    if not isinstance(model, SpikeLMDecoder):
        raise CheckpointError(f"{path}: generate needs a {FAMILY_DECODER!r} checkpoint, got {FAMILY_ENCODER!r}")
    tokenizer = checkpoint_tokenizer(ckpt)
    prompt_ids = tokenizer.encode(prompt, "prompt")
    ids = list(prompt_ids) or [tokenizer.encode("\n")[0] if tokenizer.chars and "\n" in tokenizer.chars else 0]
    start = len(ids)
    for _ in range(n_tokens):
        window = torch.tensor([ids[-model.cfg.context :]])
        ids.append(int(model(window)[0, -1].argmax()))
    return continuation(tokenizer, prompt, prompt_ids, ids[start:])


def card_metric(card_text: str, name: str) -> float:
    """A metric from a model card line `- **name**: value` (what the reproduction test compares with)."""
    match = re.search(rf"\*\*{re.escape(name)}\*\*: ([0-9.]+)", card_text)
    if match is None:
        raise ValueError(f"model card has no '**{name}**: value' line")
    return float(match.group(1))
