"""The numpy step of ``gif`` layers (compiler/kinds/gif.py): the input is the unsigned charge, emptied in
K = `steps` steps of at most L − 1 (`gif_step`, all of a call in `gif_call`); a negative input counts as a
saturation."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import gif_call, gif_charge
from .state import LayerState


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    x = np.asarray(x)
    if x.size and x.min() < 0:  # rare: one reduction instead of a mask on the usual path
        x, negative = gif_charge(x)
        state.saturations += int(negative.sum())
    return gif_call(x, int(layer.levels), int(layer.steps))
