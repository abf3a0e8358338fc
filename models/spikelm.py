"""SpikeLM: a BERT-style spiking transformer encoder and a causal spiking decoder (REFERENCE.md §1) — its
public names.

Place in the picture (STYLE.md): the *models/* end; our own code, following the equations of REFERENCE.md
§1.1–1.2 (not a port of `Xingrun-Xing/SpikeLM`). Callers import the family from here, and `models/registry.py`
looks its functions up by name on this module (train_encoder, train_decoder, evaluate, generate); the code
lives in modules named for what they hold:

- `spikelm_network`: `SpikeLMConfig`, the K/V re-spike, `SpikeLinear`, attention, FFN, blocks, the encoder
  and decoder, and their spiking sites (the architecture and its equations are described there; the elastic
  bi-spiking neuron itself is `models/bispike.py`);
- `spikelm_tasks`: MLM masking, shuffle classification, validation windows, batches and losses, and the losses
  with distillation from the ANN twin (whose terms are `models/distill.py`);
- `spikelm_train`: training (frozen or elastic α, optionally with a teacher), evaluation, checkpoints, greedy
  generation and model-card metrics.
"""

from __future__ import annotations

from .spikelm_network import (
    SpikeBlock,
    SpikeFeedForward,
    SpikeLinear,
    SpikeLM,
    SpikeLMBackbone,
    SpikeLMConfig,
    SpikeLMDecoder,
    SpikeLMEncoder,
    SpikeSelfAttention,
    StatelessBiSpike,
    firing_rates,
    spiking_sites,
)
from .spikelm_tasks import (
    MLM_FRACTION,
    decoder_distill_terms,
    decoder_loss,
    encoder_batch,
    encoder_distill_terms,
    encoder_loss,
    mask_characters,
    shuffle_windows,
    validation_windows,
)
from .spikelm_train import (
    DECODER_TRAINING,
    ENCODER_TRAINING,
    EVAL_CHARS,
    EVAL_SEED,
    FAMILY_DECODER,
    FAMILY_ENCODER,
    TrainSettings,
    _train,  # noqa: F401  (not public; tests drive the training loop directly)
    card_metric,
    evaluate,
    evaluate_model,
    generate,
    load_checkpoint,
    load_teacher,
    train_decoder,
    train_encoder,
)

__all__ = [
    "DECODER_TRAINING",
    "ENCODER_TRAINING",
    "EVAL_CHARS",
    "EVAL_SEED",
    "FAMILY_DECODER",
    "FAMILY_ENCODER",
    "MLM_FRACTION",
    "SpikeBlock",
    "SpikeFeedForward",
    "SpikeLM",
    "SpikeLMBackbone",
    "SpikeLMConfig",
    "SpikeLMDecoder",
    "SpikeLMEncoder",
    "SpikeLinear",
    "SpikeSelfAttention",
    "StatelessBiSpike",
    "TrainSettings",
    "card_metric",
    "decoder_distill_terms",
    "decoder_loss",
    "encoder_batch",
    "encoder_distill_terms",
    "encoder_loss",
    "evaluate",
    "evaluate_model",
    "firing_rates",
    "generate",
    "load_checkpoint",
    "load_teacher",
    "mask_characters",
    "shuffle_windows",
    "spiking_sites",
    "train_decoder",
    "train_encoder",
    "validation_windows",
]
