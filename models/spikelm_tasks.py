"""SpikeLM's tasks: batches and losses of the encoder's two tasks and the decoder's one, on fixed or random windows.

Place in the picture (STYLE.md): the *models/* end — what `spikelm_train` trains and evaluates the networks
of `spikelm_network` on.

Tasks, on the pydoc corpus of `models/data.py`: encoder — MLM on 15 % of characters (BERT's rate) and a
binary "is this window the original text or a character-shuffled copy?" classification; decoder — next
character (bits per character).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import load_corpus
from .distill import DistillWeights, hidden_mse, kd_logits_loss
from .spikelm_network import SpikeLMDecoder, SpikeLMEncoder

MLM_FRACTION = 0.15  # BERT's masking rate (SpikeLM pre-trains BERT's MLM, REFERENCE.md §1.3; rate not stated)


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


def classification_examples(context: int, n_windows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The card's classification examples: `n_windows` consecutive `context`-character validation windows, every
    other one character-shuffled (`shuffle_windows`, rng `seed`); (ids [n, context], labels [n], 1 = shuffled)."""
    return shuffle_windows(validation_windows(context, n_windows)[:, :-1], np.random.default_rng(seed))


@torch.no_grad()
def class_logits(model: SpikeLMEncoder, ids: np.ndarray) -> np.ndarray:
    """The float encoder's class logits (float64 [B, classes]) of ids [B, L], all of one length L ≤ context."""
    model.eval()
    _, logits = model(torch.from_numpy(np.asarray(ids, dtype=np.int64)))
    return logits.double().numpy()


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


# -------------------- distillation from the ANN twin (models/distill.py has the terms and their sources)


def _teacher_outputs(teacher: SpikeLMDecoder | SpikeLMEncoder, ids: torch.Tensor):
    with torch.no_grad():
        hidden = teacher.backbone.hidden_states(ids)
        return hidden, teacher.heads(hidden[-1])


def decoder_distill_terms(model: SpikeLMDecoder, teacher: SpikeLMDecoder, batch: tuple[torch.Tensor, ...],
                          weights: DistillWeights) -> dict[str, torch.Tensor]:
    """{"task", "logits", "hidden", "total"}: next-character CE, KL to the teacher's next-character distribution
    (every position), hidden-state MSE, and task + w_logits·logits + w_hidden·hidden."""
    (windows,) = batch
    ids = windows[:, :-1]
    hidden = model.backbone.hidden_states(ids)
    logits = model.heads(hidden[-1])
    teacher_hidden, teacher_logits = _teacher_outputs(teacher, ids)
    task = nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
    kd = kd_logits_loss(logits, teacher_logits, weights.temperature)
    rep = hidden_mse(hidden, teacher_hidden)
    return {"task": task, "logits": kd, "hidden": rep, "total": task + weights.logits * kd + weights.hidden * rep}


def encoder_distill_terms(model: SpikeLMEncoder, teacher: SpikeLMEncoder, batch: tuple[torch.Tensor, ...],
                          weights: DistillWeights) -> dict[str, torch.Tensor]:
    """As `decoder_distill_terms` for the encoder: the logits term adds the KL of the MLM logits at the masked
    positions of the MLM half and of the class logits of the classification half (the learner's `mlm_dist_loss`
    and `cls_dist_loss`, weight 1 each)."""
    ids, mlm_targets, labels = batch
    hidden = model.backbone.hidden_states(ids)
    mlm_logits, cls_logits = model.heads(hidden[-1])
    teacher_hidden, (teacher_mlm, teacher_cls) = _teacher_outputs(teacher, ids)
    half = len(mlm_targets)
    chosen = mlm_targets != -100
    mlm = nn.functional.cross_entropy(mlm_logits[:half].flatten(0, 1), mlm_targets.flatten(), ignore_index=-100)
    task = mlm + nn.functional.cross_entropy(cls_logits[half:], labels)
    kd = (kd_logits_loss(mlm_logits[:half][chosen], teacher_mlm[:half][chosen], weights.temperature)
          + kd_logits_loss(cls_logits[half:], teacher_cls[half:], weights.temperature))
    rep = hidden_mse(hidden, teacher_hidden)
    return {"task": task, "logits": kd, "hidden": rep, "total": task + weights.logits * kd + weights.hidden * rep}
