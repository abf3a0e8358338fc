"""Model families by CLI name: where their train/evaluate/generate functions live (imported lazily).

A checkpoint's family is read through models/checkpoint.py, the one border where checkpoint files are opened
(nothing in a file is executed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from spikestack.errors import SpikestackError

from .checkpoint import InMemoryCheckpoint, family_of, read_checkpoint
from .families import FAMILIES


def _module(family: str):
    if family not in FAMILIES:
        raise SpikestackError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(FAMILIES[family][0])
    except ModuleNotFoundError as exc:
        raise SpikestackError(f"model family {family!r} is not available in this build ({exc})") from None


def train_function(family: str) -> Callable:
    return getattr(_module(family), FAMILIES[family][1])


def checkpoint_family(path: Path | InMemoryCheckpoint) -> str:
    """The `family` of a checkpoint file, or of a published one converted in memory (an InMemoryCheckpoint from
    models/published: its dict, no temporary file); CheckpointError (one line naming the file) for a missing,
    unreadable, unsafe or foreign file. The full check of config and weights happens in the family's
    `load_checkpoint`, which takes either kind."""
    return family_of(read_checkpoint(path), path, FAMILIES)


def family_function(path: Path | InMemoryCheckpoint, name: str) -> Callable:
    """The family's function `name` for a checkpoint path or an in-memory converted checkpoint dict."""
    family = checkpoint_family(path)
    fn = getattr(_module(family), name, None)
    if fn is None:
        raise SpikestackError(f"{path}: family {family!r} has no {name}()")
    return fn
