"""Knowledge distillation from a float teacher: the two loss terms and their weights.

Place in the picture (STYLE.md): the *models/* end — training only; nothing downstream of the checkpoint sees it.

SpikeLM's public code (`spikeLM-BERT/learner.py`, REFERENCE.md §1.3) trains from scratch with the teacher set to
None, but keeps the distillation learner's slots: a temperature of 1.0, an MSE loss, and a total loss that adds
`cls_dist_loss + mlm_dist_loss + rep_dist_loss + real_loss`, all with weight 1. The KD learner of the same lineage
(BiT, Liu et al., NeurIPS 2022: SpikeLM's `spiking.py` is BiT's quantiser, Meta header kept) fills them as:

    logits term  = soft cross-entropy of the student's softmax(z_s/τ) against the teacher's softmax(z_t/τ)
    hidden term  = mean over hidden states (embedding output + every block output) of MSE(h_s, h_t)
    total        = task loss + logits term + hidden term

We use the KL divergence KL(p_t ‖ p_s) for the logits term: the same gradient as the soft cross-entropy (they
differ by the teacher's entropy, a constant), but zero when the student matches, so "the KD loss fell" is readable.
Unlike BiT's `(-p_t·log p_s).mean()`, which averages over the vocabulary axis too (dividing the term by the
vocabulary size, 95 here, next to a task loss that is not), we sum over the vocabulary and average over
positions, so the KL is in nats per character like the cross-entropy it sits beside. Hinton et al. (2015) scale
by τ² to keep gradient sizes independent of τ; at SpikeLM's τ = 1 this is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class DistillWeights:
    """Temperature and weights of the distillation terms (SpikeLM's learner: τ = 1, every term weight 1)."""

    temperature: float = 1.0
    logits: float = 1.0
    hidden: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0 or self.logits < 0 or self.hidden < 0:
            raise ValueError(f"DistillWeights needs temperature > 0 and weights >= 0, got {self}")


def kd_logits_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), summed over the last (class) axis, averaged over all other axes.

    The teacher's logits are detached: the teacher is fixed."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    log_p_s = nn.functional.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = nn.functional.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * temperature**2


def hidden_mse(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over hidden states of the element-mean squared error (BiT/SpikeLM's `rep_dist_loss`)."""
    if len(student_hidden) != len(teacher_hidden) or not student_hidden:
        raise ValueError(f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}")
    terms = [nn.functional.mse_loss(s, t.detach()) for s, t in zip(student_hidden, teacher_hidden, strict=True)]
    return torch.stack(terms).mean()
