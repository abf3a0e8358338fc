"""The numpy step of ``bispike`` layers (compiler/kinds/bispike.py): `bispike_step` at step index t = call mod T,
state reset at t = 0; payload a_t·s."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import bispike_step_count, narrow_dtype, tables_for
from .state import LayerState, cached


def payload_dtype(layer: QChipLayer) -> type:
    """int16 where every payload a_t·s fits it (max |a_t| · K < 2^15), else int64: the executor records payloads
    as int16 (executor.run_call), so these need no conversion there, and the payload and the projection's float
    conversion move a quarter of int64's bytes (every SpikeLM layer and call, over all positions)."""
    peak = int(np.abs(np.asarray(layer.amplitude, np.int64)).max(initial=0)) * int(layer.levels)
    return np.int16 if peak < 1 << 15 else np.int64


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    t = call % layer.period
    tables = cached(state, "tables", lambda: tables_for(layer, target.state_max))  # a layer has a pop's tables
    word = cached(state, "word", lambda: narrow_dtype(tables))  # int32 where exact: host inputs are within
    u, s, sat = bispike_step_count(state.u if t else None, state.s if t else None, x, t, tables, word)  # ±state_max
    state.u, state.s = u, s
    state.saturations += sat
    dtype = cached(state, "payload_dtype", lambda: payload_dtype(layer))
    return np.multiply(s, dtype(layer.amplitude[t]), dtype=dtype)[None]  # one pass
