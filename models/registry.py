"""Model families by CLI name: where their train/evaluate/generate functions live (imported lazily)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from spikestack.errors import SpikestackError

# family → (module, train function)
FAMILIES: dict[str, tuple[str, str]] = {
    "bispike-mlp": ("spikestack.models.bispike_mlp", "train"),
    "spikegpt": ("spikestack.models.spikegpt", "train"),
    "spikellm": ("spikestack.models.spikellm", "train"),
    "spikelm-enc": ("spikestack.models.spikelm", "train_encoder"),
    "spikelm-dec": ("spikestack.models.spikelm", "train_decoder"),
}


def _module(family: str):
    if family not in FAMILIES:
        raise SpikestackError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(FAMILIES[family][0])
    except ModuleNotFoundError as exc:
        raise SpikestackError(f"model family {family!r} is not available in this build ({exc})") from None


def train_function(family: str) -> Callable:
    return getattr(_module(family), FAMILIES[family][1])


def checkpoint_family(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise SpikestackError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise SpikestackError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    family = ckpt.get("family") if isinstance(ckpt, dict) else None
    if family not in FAMILIES:
        raise SpikestackError(f"{path}: unknown checkpoint family {family!r}")
    return family


def family_function(path: Path, name: str) -> Callable:
    family = checkpoint_family(path)
    fn = getattr(_module(family), name, None)
    if fn is None:
        raise SpikestackError(f"{path}: family {family!r} has no {name}()")
    return fn
