"""SpikeLLM: a LLaMA-style causal decoder whose linear-layer inputs are GIF multi-level spikes — its public names.

Place in the picture (STYLE.md): a `models/` family in torch, exported later to NIR; our own implementation of
REFERENCE.md §2 (SpikeLLM, ICLR 2025, arXiv 2407.04752). Callers import the family from here, and
`models/registry.py` looks its functions up by name on this module (train, evaluate, generate); the code lives
in modules named for what they hold:

- `spikellm_neurons`: the GIF neuron, the per-token two-group code and `SpikeLinear` (QUANT and SPIKE paths),
  with the choices made where upstream is silent or wrong;
- `spikellm_network`: `SpikeLLMConfig`, RMSNorm, RoPE, attention, SwiGLU, `SpikeLLM` and `ann_twin`;
- `spikellm_saliency`: Optimal Brain Spiking (`calibrate_saliency`);
- `spikellm_load`: LLaMA-format (Hugging Face) state dicts;
- `spikellm_train`: training, evaluation, our checkpoints and greedy generation.
"""

from __future__ import annotations

from .spikellm_load import IGNORED_KEY_SUFFIXES, infer_config, load_llama_state_dict
from .spikellm_network import (
    MLP,
    Attention,
    DecoderBody,
    DecoderLayer,
    RMSNorm,
    SpikeLLM,
    SpikeLLMConfig,
    SpikeLLMError,
    ann_twin,
    apply_rope,
    rope_tables,
)
from .spikellm_neurons import (
    MIN_STEP,
    SpikeLinear,
    SpikeMode,
    SpikeStats,
    TokenCode,
    dequantize,
    gif_step,
    gif_steps,
    quantize_per_token,
)
from .spikellm_saliency import calibrate_saliency
from .spikellm_train import LN2, TrainSettings, evaluate, generate, load_checkpoint, train, validation_windows

__all__ = [
    "IGNORED_KEY_SUFFIXES",
    "LN2",
    "MIN_STEP",
    "MLP",
    "Attention",
    "DecoderBody",
    "DecoderLayer",
    "RMSNorm",
    "SpikeLLM",
    "SpikeLLMConfig",
    "SpikeLLMError",
    "SpikeLinear",
    "SpikeMode",
    "SpikeStats",
    "TokenCode",
    "TrainSettings",
    "ann_twin",
    "apply_rope",
    "calibrate_saliency",
    "dequantize",
    "evaluate",
    "generate",
    "gif_step",
    "gif_steps",
    "infer_config",
    "load_checkpoint",
    "load_llama_state_dict",
    "quantize_per_token",
    "rope_tables",
    "train",
    "validation_windows",
]
