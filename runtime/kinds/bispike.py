"""The numpy step of ``bispike`` layers (compiler/kinds/bispike.py): `bispike_step` at step index t = call mod T,
state reset at t = 0; payload a_t·s."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import BiSpikeTables, bispike_step, narrow_dtype
from .state import LayerState, cached


def _tables(layer: QChipLayer, target: Target) -> BiSpikeTables:
    return BiSpikeTables(thresholds=np.asarray(layer.thresholds, np.int64), carry=np.asarray(layer.carry, np.int64),
                         carry_shift=int(layer.carry_shift), levels=int(layer.levels), state_max=target.state_max)


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    t = call % layer.period
    tables = cached(state, "tables", lambda: _tables(layer, target))
    word = cached(state, "word", lambda: narrow_dtype(tables))  # int32 where exact: host inputs are within
    u, s, sat = bispike_step(state.u if t else None, state.s if t else None, x, t, tables, word)  # ±state_max
    state.u, state.s = u, s
    state.saturations += int(sat.sum())
    return np.multiply(s, np.int64(layer.amplitude[t]), dtype=np.int64)[None]  # one pass, int64 payloads
