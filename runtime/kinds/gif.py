"""The numpy step of ``gif`` layers (compiler/kinds/gif.py): the input is the unsigned charge, emptied in
K = `steps` steps of at most L − 1 (`gif_step`); a negative input counts as a saturation."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import gif_charge, gif_step
from .state import LayerState


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    u, negative = gif_charge(x)
    state.saturations += int(negative.sum())
    out = np.empty((layer.steps, *x.shape), np.int64)
    for k in range(layer.steps):
        u, out[k] = gif_step(u, layer.levels)
    return out
