"""The numpy step of ``relay`` layers (compiler/kinds/relay.py): host-injected graded events, no neuron state; the
payload is the input, clipped to ±`levels` (each clipped value counts as a saturation)."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from .state import LayerState


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    if x.size and (x.max() > layer.levels or x.min() < -layer.levels):  # two reductions on the usual path
        state.saturations += int((np.abs(x) > layer.levels).sum())
        x = np.clip(x, -layer.levels, layer.levels)
    return x[None]
