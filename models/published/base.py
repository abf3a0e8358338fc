"""What a published checkpoint layout is: a test on the file's keys and a converter to our native checkpoint dict.

Place in the picture (STYLE.md): the *models/* border for weights trained by the seed projects' own code. A
published file (SpikeGPT's `.pth`, a Hugging Face LLaMA directory, SpikeLLM's saved layout, SpikeLM's BERT) is read
once without executing anything (`models/published/__init__.py` → `read_source`), recognised by one `Layout` here,
and *converted* to the dict `models/checkpoint.py` `load_model` checks (`{"family", "config", "state_dict", "vocab",
…}`). From there it takes the same safe path as a checkpoint we trained ourselves, so every command that takes a
native checkpoint takes a published one with no other change.

A layout module (`spikegpt_pth`, `hf_llama`, …) defines one or more `Layout`s and calls `register` at import;
`LAYOUTS` is filled by `models/published/__init__.py` importing those modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from spikestack.errors import SpikestackError


class PublishedFormatError(SpikestackError, ValueError):
    """A published checkpoint that matches no layout, or one whose keys, shapes or config cannot be converted; the
    message names the file, the key and both values (one line)."""


@dataclass(frozen=True)
class Source:
    """A published checkpoint as read from disk, before any layout is chosen.

    `state` maps key → tensor (memory-mapped where the format allows: zip `.pth`, `.safetensors`), so detecting a
    layout and checking its shapes reads no weights. `config` is the `config.json` beside or inside the source
    (Hugging Face), `tokenizer_path` the tokenizer or vocabulary file found next to it (tokenizer.json,
    vocab.json, vocab.txt, tokenizer.model) or the user's `--tokenizer` file when given.
    """

    path: Path
    state: Mapping[str, torch.Tensor]
    config: dict | None = None
    tokenizer_path: Path | None = None
    text_path: Path | None = None  # the user's text (`--text`): what a layout calibrates on, where it does


@dataclass(frozen=True)
class Layout:
    """One published layout: `matches` says whether a source has it (keys only, cheap); `convert` builds the native
    checkpoint dict (raising PublishedFormatError naming the key for a wrong shape). `expected` is one line shown
    when a file matches no layout ("emb.weight, blocks.{l}.att.*, head.weight")."""

    name: str
    family: str  # a models/families.py name: the native checkpoint's `family`
    expected: str
    matches: Callable[[Source], bool]
    convert: Callable[[Source], dict]
    required: tuple[str, ...] = ()  # keys every file of this layout holds: for "first missing key" in errors
    key_pattern: str = ""  # a regex every key of this layout matches: for "first unexpected key" in errors


LAYOUTS: list[Layout] = []


def register(layout: Layout) -> Layout:
    """Add a layout to the registry (idempotent by name, so a re-imported module does not add it twice)."""
    if all(existing.name != layout.name for existing in LAYOUTS):
        LAYOUTS.append(layout)
    return layout


def count_layers(has: Callable[[str], bool], first_key: str, fail: Callable[[str], Exception]) -> int:
    """Blocks 0, 1, … while `first_key.format(i)` is present; at least one, else `fail` names block 0's key."""
    n = 0
    while has(first_key.format(n)):
        n += 1
    if n == 0:
        raise fail(f"missing key {first_key.format(0)!r}")
    return n


def attention_heads(config: Mapping | None, hidden: int, fail: Callable[[str], Exception]) -> int:
    """config.json's `num_attention_heads` (no shape says it): a positive integer dividing the hidden size."""
    if config is None:
        raise fail("no config.json beside the weights (it gives num_attention_heads, which no shape does)")
    heads = config.get("num_attention_heads")
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or hidden % heads:
        raise fail(f"config.json field 'num_attention_heads' = {heads!r}: expected a positive integer dividing "
                   f"the hidden size {hidden}")
    return heads
