"""Loading SpikeGPT weights in the published upstream layout (`SpikeGPT-216M.pth`, REFERENCE.md §3.2).

Place in the picture (STYLE.md): the *models/* entry for weights trained elsewhere; the model it builds is the
same `SpikeGPT` our own training produces (module names already follow the published state-dict layout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from spikestack.errors import SpikestackError

from .spikegpt_network import SpikeGPT, SpikeGPTConfig


class CheckpointFormatError(SpikestackError, ValueError):
    """A state dict or checkpoint does not have the SpikeGPT layout (REFERENCE.md §3.2)."""


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def published_config(state_dict: Mapping[str, Tensor], *, binary_embedding: bool | None = None,
                     ctx_len: int = 1024) -> SpikeGPTConfig:
    """The SpikeGPTConfig of a published-layout state dict: n_layer from the `blocks.{l}.` keys, vocabulary and
    width from `emb.weight` [V, C] (REFERENCE.md §3.2). `binary_embedding=None` follows the upstream inference
    rule in spirit (§3.5): binary for character vocabularies (V < 256), float for BPE. ctx_len 1024 is upstream's
    training window (§3.2); the recurrent form has no limit."""
    if "emb.weight" not in state_dict:
        raise CheckpointFormatError("SpikeGPT state dict: missing key 'emb.weight'")
    shape = tuple(state_dict["emb.weight"].shape)
    if len(shape) != 2:
        raise CheckpointFormatError(f"SpikeGPT state dict: key 'emb.weight' has shape {shape}, expected [V, C]")
    vocab_size, n_embd = shape
    layer_ids = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    n_layer = max(layer_ids) + 1 if layer_ids else 0
    if n_layer == 0:
        raise CheckpointFormatError("SpikeGPT state dict: no 'blocks.{l}.*' keys")
    if binary_embedding is None:
        binary_embedding = vocab_size < 256
    return SpikeGPTConfig(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, ctx_len=ctx_len,
                          binary_embedding=binary_embedding)


def converted_state_dict(state_dict: Mapping[str, Tensor], cfg: SpikeGPTConfig) -> dict[str, Tensor]:
    """The state dict in our model's exact shapes and float32: time_mix_* stored as [C] or [1, 1, C] both
    accepted (same element count). Raises CheckpointFormatError naming the first missing or unexpected key, or a
    key with the wrong shape (both shapes). Nothing is built: the shapes come from a meta-device model."""
    with torch.device("meta"):
        expected = SpikeGPT(cfg).state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing:
        raise CheckpointFormatError(
            f"SpikeGPT state dict: missing key {missing[0]!r} ({len(missing)} missing in all)"
        )
    if unexpected:
        raise CheckpointFormatError(
            f"SpikeGPT state dict: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)"
        )
    converted = {}
    for key, target in expected.items():
        value = state_dict[key]
        if value.numel() != target.numel():
            raise CheckpointFormatError(
                f"SpikeGPT state dict: key {key!r} has shape {tuple(value.shape)}, "
                f"expected {tuple(target.shape)}"
            )
        converted[key] = value.detach().to(torch.float32).reshape(target.shape)
    return converted


def load_published_state_dict(
    state_dict: Mapping[str, Tensor], *, binary_embedding: bool | None = None, ctx_len: int = 1024
) -> tuple[SpikeGPTConfig, SpikeGPT]:
    """Build a SpikeGPT from a state dict of the published layout (`SpikeGPT-216M.pth`, REFERENCE.md §3.2):
    `published_config` then `converted_state_dict` (see both for the rules and errors)."""
    cfg = published_config(state_dict, binary_embedding=binary_embedding, ctx_len=ctx_len)
    converted = converted_state_dict(state_dict, cfg)
    model = SpikeGPT(cfg)
    model.load_state_dict(converted)
    return cfg, model
