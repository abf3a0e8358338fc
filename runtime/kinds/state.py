"""A chip layer's state in the numpy reference between calls, shared by every kind's step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerState:
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    s: np.ndarray | None = None
    saturations: int = 0
    extra: dict = field(default_factory=dict)
    lean: bool = False  # big projections keep their int16 mantissas and convert per call (runtime/hybrid/chip.py)


def cached(state: LayerState, key: str, build: Callable[[], Any]) -> Any:
    """state.extra[key], built by `build()` at the layer's first call: per-layer constants derived from the
    artifact (bi-spike tables, LIF fields, the grouped weight) are not rebuilt per call — SpikeGPT makes one call
    per token."""
    value = state.extra.get(key)
    if value is None:
        value = state.extra[key] = build()
    return value
