"""The numpy step of ``readout`` layers (compiler/kinds/readout.py): the chain's token accumulator
(`readout_step`: restart at t = call mod period = 0, saturate at ±state_max), kept in `state.u`; no events."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import readout_step
from .state import LayerState


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    t = call % layer.period
    state.u, saturated = readout_step(state.u if t else None, x, t, target.state_max)
    state.saturations += int(saturated.sum())
    return np.zeros((1, *state.u.shape), np.int16)  # accumulators send nothing: their value is the output
