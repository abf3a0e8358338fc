"""Loading SpikeGPT weights in the published upstream layout (`SpikeGPT-216M.pth`, REFERENCE.md §3.2).

Place in the picture (STYLE.md): the *models/* entry for weights trained elsewhere; the model it builds is the
same `SpikeGPT` our own training produces (module names already follow the published state-dict layout).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from spikestack.errors import SpikestackError

from .spikegpt_network import SpikeGPT, SpikeGPTConfig


class CheckpointFormatError(SpikestackError, ValueError):
    """A state dict or checkpoint does not have the SpikeGPT layout (REFERENCE.md §3.2)."""


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def load_published_state_dict(
    state_dict: dict[str, Tensor], *, binary_embedding: bool | None = None, ctx_len: int = 1024
) -> tuple[SpikeGPTConfig, SpikeGPT]:
    """Build a SpikeGPT from a state dict of the published layout (`SpikeGPT-216M.pth`, REFERENCE.md §3.2).

    n_layer, n_embd and vocab come from the keys and `emb.weight` [V, C]. `binary_embedding=None` follows the
    upstream inference rule in spirit (§3.5): binary for character vocabularies (V < 256), float for BPE.
    time_mix_* may be stored as [C] or [1, 1, C]. Weights are converted to float32. Raises
    CheckpointFormatError naming the first missing or unexpected key, or a key with the wrong element count.
    """
    if "emb.weight" not in state_dict:
        raise CheckpointFormatError("SpikeGPT state dict: missing key 'emb.weight'")
    vocab_size, n_embd = state_dict["emb.weight"].shape
    layer_ids = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    n_layer = max(layer_ids) + 1 if layer_ids else 0
    if n_layer == 0:
        raise CheckpointFormatError("SpikeGPT state dict: no 'blocks.{l}.*' keys")
    if binary_embedding is None:
        binary_embedding = vocab_size < 256
    cfg = SpikeGPTConfig(
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_embd=n_embd,
        ctx_len=ctx_len,
        binary_embedding=binary_embedding,
    )
    model = SpikeGPT(cfg)
    expected = model.state_dict()
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
        value = state_dict[key].detach().to(torch.float32)
        if value.numel() != target.numel():
            raise CheckpointFormatError(
                f"SpikeGPT state dict: key {key!r} has shape {tuple(value.shape)}, "
                f"expected {tuple(target.shape)}"
            )
        converted[key] = value.reshape(target.shape)
    model.load_state_dict(converted)
    return cfg, model
