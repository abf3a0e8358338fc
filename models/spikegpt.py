"""SpikeGPT: a spiking RWKV language model, the second seed family (REFERENCE.md §3) — its public names.

Place in the picture (STYLE.md): the *models/* end. Callers import the family from here, and
`models/registry.py` looks its functions up by name on this module (train, evaluate, generate); the code lives
in modules named for what they hold:

- `spikegpt_neurons`: the Heaviside spike with its ATan surrogate and the LIF neuron;
- `spikegpt_wkv`: the stable WKV recurrence and its direct-formula oracle;
- `spikegpt_network`: `SpikeGPTConfig`, the blocks and `SpikeGPT` (parallel and recurrent forms; the
  architecture and its equations are described there);
- `spikegpt_load`: the published upstream state-dict layout, and `CheckpointFormatError`;
- `spikegpt_train`: training, evaluation, our checkpoints and greedy generation.
"""

from __future__ import annotations

from .spikegpt_load import CheckpointFormatError, load_published_state_dict
from .spikegpt_network import FFN_EXPANSION, Block, ChannelMix, LayerState, SpikeGPT, SpikeGPTConfig, TimeMix
from .spikegpt_neurons import ATAN_ALPHA, LIF, heaviside_atan, lif_sequence, lif_step
from .spikegpt_train import (
    ADAM_BETAS,
    GRAD_CLIP,
    LR_FINAL,
    LR_INITIAL,
    TRAIN_BATCH,
    evaluate,
    evaluate_model,
    generate,
    load_checkpoint,
    train,
)
from .spikegpt_wkv import WKV_P0, WKVState, wkv_direct, wkv_initial_state, wkv_sequence, wkv_step

__all__ = [
    "ADAM_BETAS",
    "ATAN_ALPHA",
    "FFN_EXPANSION",
    "GRAD_CLIP",
    "LIF",
    "LR_FINAL",
    "LR_INITIAL",
    "TRAIN_BATCH",
    "WKV_P0",
    "Block",
    "ChannelMix",
    "CheckpointFormatError",
    "LayerState",
    "SpikeGPT",
    "SpikeGPTConfig",
    "TimeMix",
    "WKVState",
    "evaluate",
    "evaluate_model",
    "generate",
    "heaviside_atan",
    "lif_sequence",
    "lif_step",
    "load_checkpoint",
    "load_published_state_dict",
    "train",
    "wkv_direct",
    "wkv_initial_state",
    "wkv_sequence",
    "wkv_step",
]
