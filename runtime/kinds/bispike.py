"""The numpy step of ``bispike`` layers (compiler/kinds/bispike.py): `bispike_step` at step index t = call mod T,
state reset at t = 0; payload a_t·s."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import BiSpikeTables, bispike_step
from .state import LayerState, cached


def _tables(layer: QChipLayer, target: Target) -> BiSpikeTables:
    return BiSpikeTables(thresholds=np.asarray(layer.thresholds, np.int64), carry=np.asarray(layer.carry, np.int64),
                         carry_shift=int(layer.carry_shift), levels=int(layer.levels), state_max=target.state_max)


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    t = call % layer.period
    tables = cached(state, "tables", lambda: _tables(layer, target))
    u, s, sat = bispike_step(state.u if t else None, state.s if t else None, x, t, tables)
    state.u, state.s = u, s
    state.saturations += int(sat.sum())
    return (s * int(layer.amplitude[t]))[None]
