"""Published checkpoints in, native checkpoint dicts out: `read_source`, `detect`, `to_native`, `is_published`.

Place in the picture (STYLE.md): the *models/* border for weights trained by the seed projects' own code. Every
file is read without executing anything (torch `weights_only=True` through models/checkpoint.py, `safetensors`
`safe_open`), memory-mapped where the format allows, and checked against size caps before any tensor is used:

    read_source(path)         .pth/.pt/.bin (raw state dict) | .safetensors | a Hugging Face directory
                              (config.json + model.safetensors | model.safetensors.index.json | pytorch_model.bin)
    detect(source, family)    the one Layout whose `matches` accepts the keys (`family` forces a layout)
    to_native(path, family)   Layout.convert → {"family", "config", "state_dict", "vocab", …}
    checkpoint_source(path)   the path itself (native checkpoint) or an InMemoryCheckpoint (converted), for
                              every loader that takes a checkpoint path

The converted dict then goes through models/checkpoint.py `load_model` like any checkpoint we trained ourselves.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from ..checkpoint import CheckpointError, InMemoryCheckpoint, read_checkpoint
from .base import LAYOUTS, Layout, PublishedFormatError, Source
from .reading import read_config, read_source, tokenizer_beside

__all__ = ["LAYOUTS", "Layout", "PublishedFormatError", "Source", "checkpoint_source", "detect", "is_published",
           "read_config", "read_source", "to_native", "tokenizer_beside"]

# Ours first, then H4's (SpikeLLM's saved layout, SpikeLM's BERT), imported only when they exist in this build.
_LAYOUT_MODULES = ("spikegpt_pth", "hf_llama", "spikellm_saved", "spikelm_bert")
NATIVE_KEYS = ("family", "config", "state_dict")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def _load_layouts() -> list[Layout]:
    for name in _LAYOUT_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the module exists but something it imports does not
                raise
    return LAYOUTS


def _first_missing(layout: Layout, keys: set[str]) -> str | None:
    return next((k for k in layout.required if k not in keys), None)


def _first_unexpected(layout: Layout, keys: list[str]) -> str | None:
    if not layout.key_pattern:
        return None
    pattern = re.compile(layout.key_pattern)
    return next((k for k in keys if not pattern.fullmatch(k)), None)


def _no_match(source: Source, candidates: list[Layout]) -> PublishedFormatError:
    """One line: each layout's expected keys, and against the closest layout the first unexpected and missing key."""
    keys = sorted(source.state)
    key_set = set(keys)

    def distance(layout: Layout) -> tuple[int, int]:
        """Closest: most of the file's keys are this layout's, then fewest of its required keys missing."""
        pattern = re.compile(layout.key_pattern) if layout.key_pattern else None
        matched = sum(bool(pattern.fullmatch(k)) for k in keys) if pattern else 0
        return -matched, sum(k not in key_set for k in layout.required)

    closest = min(candidates, key=distance)
    unexpected, missing = _first_unexpected(closest, keys), _first_missing(closest, key_set)
    against = [f"first unexpected key {unexpected!r}" if unexpected else "",
               f"first missing key {missing!r}" if missing else ""]
    detail = "; ".join(a for a in against if a) or "keys differ"
    expected = "; ".join(f"{la.name} ({la.family}): {la.expected}" for la in candidates)
    return PublishedFormatError(f"{source.path}: {len(keys)} keys match no published layout (expected {expected}); "
                                f"against {closest.name}: {detail}")


def detect(source: Source, family: str | None = None) -> Layout:
    """The layout of `source`. `family` (a family or layout name) narrows the choice: if it names one layout,
    that one converts without its `matches` test, so a near miss gets the converter's precise error."""
    layouts = list(_load_layouts())
    if family is not None:
        layouts = [la for la in layouts if family in (la.name, la.family)]
        if not layouts:
            known = ", ".join(sorted({la.family for la in LAYOUTS} | {la.name for la in LAYOUTS}))
            raise PublishedFormatError(f"{source.path}: --family {family!r} has no published layout; known: {known}")
        if len(layouts) == 1:
            return layouts[0]
    for layout in layouts:
        if layout.matches(source):
            return layout
    raise _no_match(source, layouts)


def to_native(path: Path | str, family: str | None = None, *, tokenizer: Path | str | None = None,
              text: Path | str | None = None) -> dict:
    """The native checkpoint dict of a published file or directory (checked later by `load_model`); `tokenizer`
    replaces the tokenizer file found beside it, `text` is what a layout calibrates on (else the shipped corpus)."""
    source = read_source(path, tokenizer=tokenizer, text=text)
    return detect(source, family).convert(source)


def _is_weights_path(path: Path) -> bool:
    return path.is_dir() or path.suffix in WEIGHT_SUFFIXES


def is_published(path: Path | str) -> bool:
    """True for a file or folder `read_source` accepts that is not a native checkpoint (a native one holds the
    `family`, `config` and `state_dict` keys). A `.pt`/`.pth`/`.bin` is read (memory-mapped) to tell."""
    path = Path(path)
    if not path.exists() or not _is_weights_path(path):
        return False
    if path.is_dir() or path.suffix == ".safetensors":
        return True
    return not _is_native(read_checkpoint(path))


def _is_native(top: dict) -> bool:
    return all(key in top for key in NATIVE_KEYS)


def checkpoint_source(path: Path | str, family: str | None = None, *, tokenizer: Path | str | None = None,
                      text: Path | str | None = None) -> Path | InMemoryCheckpoint:
    """What every checkpoint loader takes: the path of a native checkpoint, or the published file converted in
    memory (no temporary file). `family` forces a published layout; on a native checkpoint it must agree."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_file() and path.suffix != ".safetensors":
        top = read_checkpoint(path)
        if _is_native(top):
            if family is not None and top.get("family") != family:
                raise CheckpointError(f"{path}: a native checkpoint of family {top.get('family')!r}, not "
                                      f"--family {family!r}")
            return path
    return InMemoryCheckpoint(path, to_native(path, family, tokenizer=tokenizer, text=text))
